"""`c4c finetune` end to end on synthetic data with the tiny CLIP: run folder, resume, DDP, accumulation."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from c4c import synth
from c4c.errors import C4CError
from c4c.model.heads import HEADS
from c4c.stages import extract
from c4c.stages.finetune import FinetuneConfig, run
from c4c.run import checkpoint


@pytest.fixture(scope="module")
def synth_frames(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("ft")
    synth.run(synth.SynthConfig(out_dir=d / "synth", videos=24, seed=5, duration=2.0, width=64, height=48))
    out = d / "frames.h5"
    result = extract.run(extract.ExtractConfig(source=d / "synth" / "annotations.jsonl", dataset="jsonl",
                                               videos_dir=d / "synth" / "videos", out=out, size=32, fps=2.0))
    assert result.ok
    return d / "synth" / "annotations.jsonl", out


def _cfg(synth_frames, out: Path, **kw) -> FinetuneConfig:
    ann, frames = synth_frames
    base = dict(dataset="jsonl", ann=ann, frames=frames, out=out, clip="tiny", pretrained="none", epochs=2,
                batch_size=8, lr=1e-3, coef_lr=1.0, workers=0, temporal_layers=2, log_every=1, eval_batch_size=16)
    base.update(kw)
    return FinetuneConfig(**base)


def _weights(run_dir: Path, name: str | None = None) -> dict[str, torch.Tensor]:
    folder = run_dir / "checkpoints" / name if name else checkpoint.latest(run_dir)
    return checkpoint.load_model_state(folder)


def _assert_same_weights(a: dict, b: dict, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0 if atol == 0 else 1e-5, msg=k)


@pytest.mark.parametrize("sim", list(HEADS))
def test_a_run_folder_has_config_metrics_checkpoints_and_best(synth_frames, tmp_path, sim):
    result = run(_cfg(synth_frames, tmp_path / "run", sim=sim, epochs=1))
    run_dir = tmp_path / "run"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["sim"] == sim and config["backbone"]["name"] == "tiny" and config["selection_resolved"] == "val"
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in lines if x["event"] == "step"]
    assert steps and all("loss" in x and "lr" in x and "clips_per_s" in x for x in steps)
    epoch = [x for x in lines if x["event"] == "epoch"][0]
    assert set(epoch["metrics"]["t2v"]) >= {"R@1", "R@5", "R@10", "MdR", "MnR"}
    assert (run_dir / "best" / "model.safetensors").is_file() and checkpoint.latest(run_dir) is not None
    assert result.best_epoch == 0 and json.loads((run_dir / "results.json").read_text())["selection"] == "val"


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(synth_frames, tmp_path):
    full = _cfg(synth_frames, tmp_path / "full", sim="seqTransf", train_order="shuffle", save_every=1)
    run(full)
    # stop in the middle of the first epoch, then resume
    part = replace(full, out=tmp_path / "part", max_steps=3)
    run(part)
    assert checkpoint.load_meta(checkpoint.latest(tmp_path / "part"))["step"] == 3
    run(replace(part, max_steps=None, resume=True))
    _assert_same_weights(_weights(tmp_path / "full"), _weights(tmp_path / "part"))


def test_gradient_accumulation_keeps_the_contrastive_batch(synth_frames, tmp_path):
    # reference-cosine keeps update 0 at lr 0, so the two runs differ by one Adam update: Adam turns the
    # float noise of gradients that are zero in exact arithmetic (attention key biases) into lr-sized
    # steps, and a second update would compare that noise, not the accumulation
    one = _cfg(synth_frames, tmp_path / "one", sim="seqTransf", epochs=1, max_steps=2, schedule="reference-cosine")
    run(one)
    run(replace(one, out=tmp_path / "two", grad_accum=2))
    _assert_same_weights(_weights(tmp_path / "one"), _weights(tmp_path / "two"), atol=2e-6)


def test_missing_videos_are_an_error_unless_skipped(synth_frames, tmp_path):
    ann, frames = synth_frames
    extra = tmp_path / "ann.jsonl"
    extra.write_text(ann.read_text() + json.dumps({"video_id": "ghost", "caption": "a ghost", "split": "train"}) + "\n")
    with pytest.raises(C4CError, match="ghost"):
        run(_cfg(synth_frames, tmp_path / "a", ann=extra, max_steps=1))
    result = run(_cfg(synth_frames, tmp_path / "b", ann=extra, max_steps=1, skip_missing=True))
    assert result.steps == 1


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(synth_frames, tmp_path, monkeypatch):
    from c4c.train import loop

    real = loop.contrastive_step
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        value = real(*args, **kwargs)
        return float("nan") if calls["n"] == 3 else value

    monkeypatch.setattr("c4c.stages.finetune.contrastive_step", flaky, raising=False)
    monkeypatch.setattr(loop, "contrastive_step", flaky)
    with pytest.raises(C4CError, match="step 3"):
        run(_cfg(synth_frames, tmp_path / "run", save_every=1))
    assert checkpoint.load_meta(checkpoint.latest(tmp_path / "run"))["step"] == 2


def test_a_folder_of_other_files_is_not_taken_for_a_run(synth_frames, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("x")
    for resume in (False, True):
        with pytest.raises(C4CError, match="exists and is not a c4c run folder"):
            run(_cfg(synth_frames, tmp_path / "run", resume=resume))
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["x"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(synth_frames, tmp_path):
    ann, frames = synth_frames
    script = tmp_path / "ddp_run.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from c4c.stages.finetune import FinetuneConfig, run
        run(FinetuneConfig(dataset="jsonl", ann=Path({str(ann)!r}), frames=Path({str(frames)!r}),
                           out=Path(sys.argv[1]), clip="tiny", pretrained="none", sim="seqTransf", epochs=1,
                           batch_size=8, lr=1e-3, coef_lr=1.0, workers=0, temporal_layers=2, max_steps=2,
                           log_every=1, device="cpu"))
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, str(script), str(tmp_path / "single")], env=env,
                            capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", str(_free_port()), str(script), str(tmp_path / "ddp")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    losses = {}
    for name in ("single", "ddp"):
        lines = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        losses[name] = [x["loss"] for x in lines if x["event"] == "step"]
    assert losses["single"] == pytest.approx(losses["ddp"], abs=1e-5)
    _assert_same_weights(_weights(tmp_path / "single"), _weights(tmp_path / "ddp"), atol=1e-5)
