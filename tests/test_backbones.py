"""Any open_clip backbone: one small configuration of each family, offline and with random weights.

Families (tests/configs/): OpenAI's ViT (c4c's ``tiny``), ResNet (ModifiedResNet), ConvNeXt and
FastViT (MobileCLIP's image tower) through timm, a timm ViT as EVA02 has it, with a custom text tower,
and a SigLIP-like custom text tower (no causal mask, last-token pooling, projection bias, a logit
bias). For each: c4c's frame and text features equal open_clip's own ``encode_image`` and
``encode_text`` with the same weights, every loose head trains, zero-shot encode -> index -> search
runs through the command line, and ``--patch 3d`` is refused in one line where the tower has no ViT
patch convolution.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import open_clip
import pytest
import torch

from c4c.cli.app import main
from c4c.data.text import CaptionTokenizer
from c4c.errors import C4CError
from c4c.model.backbone import build_clip
from c4c.model.clip4clip import CLIP4Clip
from c4c.model.heads import HEADS
from c4c.model.towers import is_openai_vit

from helpers import annotated_set

CONFIGS = Path(__file__).resolve().parent / "configs"
FAMILIES = ["tiny"] + sorted(str(p) for p in CONFIGS.glob("clip-*.json"))
CAPTIONS = ["a red circle moves left", "a green square moves up then right", "a dog"]


def _name(family: str) -> str:
    return Path(family).stem


@pytest.fixture(scope="module", params=FAMILIES, ids=_name)
def built(request):
    torch.manual_seed(0)
    clip, info = build_clip(request.param, "none")
    return request.param, clip.eval(), info


def test_the_families_are_all_here():
    assert {_name(f) for f in FAMILIES} >= {"tiny", "clip-rn", "clip-convnext", "clip-eva", "clip-fastvit",
                                            "clip-siglip"}


def test_frame_and_text_features_equal_open_clips_own(built):
    family, clip, info = built
    model = CLIP4Clip(clip).eval()
    size = model.image_size
    video = torch.randint(0, 256, (2, 3, size, size, 3), dtype=torch.uint8)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    ids, _ = CaptionTokenizer(min(32, info.context_length))(CAPTIONS)
    with torch.no_grad():
        frames = model.encode_frames(video, mask)
        reference = clip.encode_image(model._pixels(video[mask]))
        text = model.encode_text(ids)
        reference_text = clip.encode_text(open_clip.tokenize(CAPTIONS, context_length=info.context_length))
    torch.testing.assert_close(frames[mask], reference, rtol=1e-5, atol=1e-5)
    assert not frames[~mask].any()
    torch.testing.assert_close(text, reference_text, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sim", list(HEADS))
def test_every_head_trains_on_every_family(built, sim):
    family, clip, info = built
    model = CLIP4Clip(copy.deepcopy(clip).train(), sim=sim, temporal_layers=1)
    size = model.image_size
    video = torch.randint(0, 256, (3, 2, size, size, 3), dtype=torch.uint8)
    mask = torch.ones(3, 2, dtype=torch.bool)
    ids, _ = CaptionTokenizer(min(16, info.context_length))(CAPTIONS)
    loss = model(ids, video, mask)
    loss.backward()
    assert loss.isfinite()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.head.parameters()) or sim == "meanP"


def test_the_3d_patch_needs_a_vit_patch_convolution(built):
    family, clip, _ = built
    if is_openai_vit(clip.visual):
        assert CLIP4Clip(copy.deepcopy(clip), patch="3d").patch == "3d"
    else:
        with pytest.raises(C4CError, match="--patch 3d widens the patch convolution of a ViT image tower"):
            CLIP4Clip(copy.deepcopy(clip), patch="3d")


@pytest.fixture(scope="module")
def annotated(tmp_path_factory) -> tuple[Path, Path]:
    return annotated_set(tmp_path_factory.mktemp("backbones-ann"), videos=8, seed=5)


@pytest.mark.parametrize("family", FAMILIES, ids=_name)
def test_zero_shot_encode_index_and_search_run_on_every_family(family, annotated, tmp_path, capsys):
    frames = annotated[1]
    emb, index = tmp_path / "emb.h5", tmp_path / "index"
    main(["encode", "--clip", family, "--pretrained", "none", "--frames", str(frames), "--out", str(emb),
          "--max-frames", "4", "--device", "cpu", "-j", "0", "-q"])
    main(["index", str(emb), "--out", str(index), "-q"])
    capsys.readouterr()
    main(["search", str(index), "a red circle moves left", "-k", "3", "--json", "--device", "cpu"])
    results = json.loads(capsys.readouterr().out)[0]["results"]
    assert len(results) == 3 and all(r["video_id"] for r in results)


def _finetune(family: str, ann: Path, frames: Path, out: Path, *extra: str) -> None:
    main(["finetune", "--dataset", "jsonl", "--ann", str(ann), "--frames", str(frames), "--clip", family,
          "--pretrained", "none", "--batch-size", "4", "--max-steps", "2", "--epochs", "1", "--max-frames", "3",
          "--temporal-layers", "1", "--out", str(out), "-j", "0", "-q", *extra])


@pytest.mark.parametrize("family", FAMILIES, ids=_name)
def test_a_finetuned_seqtransf_run_exports_a_folder_open_clip_loads(family, annotated, tmp_path):
    ann, frames = annotated
    _, info = build_clip(family, "none")
    run, export = tmp_path / "run", tmp_path / "export"
    _finetune(family, ann, frames, run, "--sim", "seqTransf", "--max-words", str(min(32, info.context_length)))
    main(["export", str(run), "--out", str(export), "-q"])
    loaded = open_clip.create_model(f"local-dir:{export}")
    assert type(loaded).__name__ == ("CustomTextCLIP" if hasattr(loaded, "text") else "CLIP")
    from safetensors.torch import load_file

    trained = {k.removeprefix("clip."): v for k, v in load_file(run / "best" / "model.safetensors").items()
               if k.startswith("clip.")} if (run / "best").exists() else None
    if trained:
        for key, value in loaded.state_dict().items():
            if key in trained:
                torch.testing.assert_close(value, trained[key], rtol=0, atol=0, msg=key)


def test_captions_longer_than_the_text_context_are_refused_before_anything_is_written(annotated, tmp_path, capsys):
    ann, frames = annotated
    family = str(CONFIGS / "clip-siglip.json")   # a 16-token text context
    with pytest.raises(SystemExit) as exit_info:
        _finetune(family, ann, frames, tmp_path / "run", "--max-words", "32")
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--max-words 32 is above the text context" in err
    assert not (tmp_path / "run").exists()


def test_a_model_that_reads_another_tokenizer_is_refused_in_one_line(tmp_path):
    config = json.loads((CONFIGS / "clip-siglip.json").read_text())
    config["text_cfg"]["hf_tokenizer_name"] = "timm/ViT-B-16-SigLIP2"
    path = tmp_path / "hf.json"
    path.write_text(json.dumps(config))
    for clip in (str(path), "ViT-B-16-SigLIP2"):
        with pytest.raises(C4CError, match="Hugging Face tokenizer timm/ViT-B-16-SigLIP2"):
            build_clip(clip, "none")


def test_the_pairwise_sigmoid_loss_is_siglips():
    from c4c.model.clip4clip import pairwise_sigmoid

    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
    expected = -(torch.nn.functional.logsigmoid(torch.tensor([2.0, 1.0, -0.5, 3.0]))).sum() / 2
    torch.testing.assert_close(pairwise_sigmoid(logits), expected)


def test_the_sigmoid_loss_needs_a_logit_bias_and_a_loose_head():
    with_bias, _ = build_clip(str(CONFIGS / "clip-siglip.json"), "none")
    without, _ = build_clip("tiny", "none")
    assert CLIP4Clip(copy.deepcopy(with_bias)).use_loss("sigmoid") == "sigmoid"
    assert CLIP4Clip(copy.deepcopy(without)).use_loss("auto") == "softmax"
    with pytest.raises(C4CError, match="--loss sigmoid needs a CLIP with a logit bias"):
        CLIP4Clip(copy.deepcopy(without)).use_loss("sigmoid")
    with pytest.raises(C4CError, match="tightTransf is a cross encoder"):
        CLIP4Clip(copy.deepcopy(with_bias), sim="tightTransf").use_loss("sigmoid")


def test_a_sigmoid_step_moves_the_logit_bias(annotated, tmp_path):
    ann, frames = annotated
    family = str(CONFIGS / "clip-siglip.json")
    _finetune(family, ann, frames, tmp_path / "run", "--loss", "sigmoid", "--max-words", "16", "--lr", "1e-2",
              "--coef-lr", "1")
    from safetensors.torch import load_file

    config = json.loads((tmp_path / "run" / "config.json").read_text())
    state = load_file(str(next((tmp_path / "run" / "checkpoints").glob("*/model.safetensors"))))
    assert config["loss_resolved"] == "sigmoid" and float(state["clip.logit_bias"]) != -10.0


def test_freezing_the_embeddings_leaves_every_familys_blocks_training(built):
    from c4c.train.optim import freeze_clip_layers

    family, clip, _ = built
    model = CLIP4Clip(copy.deepcopy(clip))
    freeze_clip_layers(model, 0)
    trainable = {n for n, p in model.clip.named_parameters() if p.requires_grad}
    frozen = {n for n, p in model.clip.named_parameters() if not p.requires_grad}
    assert any(n.startswith("visual.") for n in trainable) and any(not n.startswith("visual.") for n in trainable)
    assert any("token_embedding" in n for n in frozen)                  # the text embedding, as the paper
    assert "logit_scale" in trainable and ("logit_bias" in trainable or not hasattr(clip, "logit_bias")
                                           or clip.logit_bias is None)


@pytest.mark.parametrize("family", FAMILIES, ids=_name)
def test_a_caption_decoder_trains_and_captions_on_every_family(family, annotated, tmp_path):
    ann, frames = annotated
    _, info = build_clip(family, "none")
    run, captions = tmp_path / "run", tmp_path / "captions.json"
    main(["caption", "train", "--dataset", "jsonl", "--ann", str(ann), "--frames", str(frames), "--clip", family,
          "--pretrained", "none", "--batch-size", "4", "--max-steps", "2", "--epochs", "1", "--max-frames", "3",
          "--max-words", str(min(16, info.context_length)), "--decoder-layers", "1", "--out", str(run), "-j", "0",
          "-q"])
    main(["caption", "generate", "--run", str(run), "--frames", str(frames), "--out", str(captions), "--beam", "1",
          "--max-len", "4", "-j", "0", "-q"])
    written = json.loads(captions.read_text())
    assert written and all(isinstance(text, str) for text in written.values())
