"""`c4c export`: open_clip loads the exported towers bit for bit; c4c commands take the folder as --run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from c4c import export, synth
from c4c.run import export_format
from c4c.errors import C4CError
from c4c.model.load import build_model, load_run, resolve_spec
from c4c.stages import extract
from c4c.stages.finetune import FinetuneConfig, run


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("export")
    synth.run(synth.SynthConfig(out_dir=d / "synth", videos=16, seed=6, duration=2.0, width=64, height=48))
    frames = d / "frames.h5"
    assert extract.run(extract.ExtractConfig(source=d / "synth" / "annotations.jsonl", dataset="jsonl",
                                             videos_dir=d / "synth" / "videos", out=frames, size=32, fps=2.0)).ok
    ann = d / "synth" / "annotations.jsonl"
    run(FinetuneConfig(dataset="jsonl", ann=ann, frames=frames, out=d / "run", clip="tiny", pretrained="none",
                       sim="seqTransf", temporal_layers=1, patch="3d", epochs=1, batch_size=4, workers=0, lr=1e-3,
                       coef_lr=1.0))
    result = export.export_run(d / "run", d / "exported")
    return {"run": d / "run", "out": d / "exported", "frames": frames, "ann": ann, "result": result}


def test_open_clip_loads_the_exported_towers_bit_for_bit(trained):
    """open_clip's model from the folder computes exactly what the run's CLIP weights compute in open_clip;
    c4c's own towers (batch-first attention, the same weights) agree to float rounding."""
    import open_clip

    from c4c.model.backbone import build_clip
    from c4c.run import checkpoint

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{trained['out']}")
    model.eval()
    reference, _ = build_clip("tiny", "none")
    state = checkpoint.load_model_state(trained["result"].checkpoint)
    reference.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("clip.") and ".conv2." not in k})
    reference.eval()
    towers = load_run(trained["run"]).model.clip.eval()
    torch.manual_seed(0)
    images = torch.randn(3, 3, 32, 32)
    text = open_clip.get_tokenizer("ViT-B-32")(["a red circle moves left", "a blue square", "x"])
    with torch.no_grad():
        assert torch.equal(model.encode_image(images), reference.encode_image(images))
        assert torch.equal(model.encode_text(text), reference.encode_text(text))
        torch.testing.assert_close(towers.encode_image(images), model.encode_image(images), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(towers.encode_text(text), model.encode_text(text), atol=1e-5, rtol=1e-5)
    assert type(model.transformer.resblocks[0].mlp.gelu).__name__ == type(towers.transformer.resblocks[0].mlp.gelu).__name__


def test_the_folder_holds_the_head_config_card_and_hashes(trained):
    out = trained["out"]
    info = json.loads((out / "c4c_run.json").read_text())
    assert info["format"] == "c4c-export" and info["task"] == "retrieval" and info["model"]["sim"] == "seqTransf"
    for name, digest in info["sha256"].items():
        assert export_format.sha256_file(out / name) == digest
    from safetensors.torch import load_file

    extra = load_file(str(out / "c4c_extra.safetensors"))
    assert any(k.startswith("head.") for k in extra) and "clip.visual.conv2.weight" in extra
    card = (out / "README.md").read_text()
    assert "seqTransf" in card and "| t2v |" in card and info["sha256"]["open_clip_model.safetensors"] in card
    assert "open_clip.create_model_and_transforms" in card


def test_an_exported_folder_loads_as_the_run_does(trained):
    a = load_run(trained["run"]).model.state_dict()
    b = load_run(trained["out"]).model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_encode_from_the_exported_folder_equals_encode_from_the_run(trained, tmp_path):
    from c4c.data.embeddings import Embeddings
    from c4c.stages import encode

    for name, source in (("run", trained["run"]), ("export", trained["out"])):
        encode.run(encode.EncodeConfig(run=source, frames=trained["frames"], out=tmp_path / f"{name}.h5",
                                       dataset="jsonl", ann=trained["ann"], workers=0, device="cpu"))
    a, b = Embeddings(tmp_path / "run.h5"), Embeddings(tmp_path / "export.h5")
    assert (a.video_emb() == b.video_emb()).all() and (a.text_emb() == b.text_emb()).all()
    assert a.video_ids == b.video_ids and a.captions == b.captions


def test_finetune_can_start_from_an_exported_folder(trained, tmp_path):
    cfg = FinetuneConfig(dataset="jsonl", ann=trained["ann"], frames=trained["frames"], out=tmp_path / "ft",
                         init=trained["out"])
    spec = resolve_spec(cfg)
    assert (spec.clip, spec.sim, spec.patch, spec.temporal_layers) == ("tiny", "seqTransf", "3d", 1)
    model, _, _ = build_model(spec, init=trained["out"])
    mine, theirs = model.state_dict(), load_run(trained["run"]).model.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)


def test_a_missing_hub_model_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(C4CError, match="hf-hub:nobody/no-such-model") as info:
        export_format.resolve_source("hf-hub:nobody/no-such-model")
    assert time.monotonic() - start < 10 and "--run" in str(info.value)


def test_export_refuses_a_non_empty_folder_and_a_non_run(trained, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep").write_text("mine")
    for overwrite in (False, True):  # --overwrite replaces an export, never a folder of other files
        with pytest.raises(C4CError, match="exists and is not a c4c export folder"):
            export.export_run(trained["run"], tmp_path / "x", overwrite=overwrite)
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["keep"]
    with pytest.raises(C4CError, match="is also an input"):
        export.export_run(trained["run"], trained["run"], overwrite=True)
    with pytest.raises(C4CError, match="config.json"):
        export.export_run(tmp_path / "x", tmp_path / "y")
