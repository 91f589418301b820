"""--report-to: the TensorBoard event files read back (with TensorBoard's own reader) hold what
metrics.jsonl holds; wandb logs offline where it is installed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from c4c import synth
from c4c.errors import C4CError
from c4c.run.folder import RunFolder
from c4c.stages import extract
from c4c.stages.finetune import FinetuneConfig, run
from c4c.train.tracking import Tracker, record_scalars


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("track")
    synth.run(synth.SynthConfig(out_dir=d / "synth", videos=16, seed=4, duration=2.0, width=64, height=48))
    frames = d / "frames.h5"
    assert extract.run(extract.ExtractConfig(source=d / "synth" / "annotations.jsonl", dataset="jsonl",
                                             videos_dir=d / "synth" / "videos", out=frames, size=32, fps=2.0)).ok
    return d / "synth" / "annotations.jsonl", frames


def _cfg(data, out: Path, **kw) -> FinetuneConfig:
    ann, frames = data
    return FinetuneConfig(**{**dict(dataset="jsonl", ann=ann, frames=frames, out=out, clip="tiny", pretrained="none",
                                    epochs=2, batch_size=4, workers=0, log_every=1, lr=1e-3, coef_lr=1.0), **kw})


def test_step_and_epoch_records_become_scalars():
    step, tags = record_scalars({"event": "step", "step": 7, "epoch": 0, "loss": 2.5, "lr": [1e-4, 1e-7],
                                 "clips_per_s": 30.0})
    assert step == 7 and tags == {"train/loss": 2.5, "train/clips_per_s": 30.0, "train/lr/group0": 1e-4,
                                  "train/lr/group1": 1e-7}
    step, tags = record_scalars({"event": "epoch", "epoch": 1, "step": 8,
                                 "metrics": {"split": "val", "t2v": {"R@1": 12.5}, "v2t": {"MdR": 3.0}}})
    assert step == 8 and tags == {"val/t2v/R@1": 12.5, "val/v2t/MdR": 3.0, "epoch": 1.0}
    assert record_scalars({"event": "tick", "step": 3, "loss": 1.0}) == (3, {})


def test_tensorboard_event_files_hold_the_logged_scalars(data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    run(_cfg(data, out, report_to="tensorboard"))
    history = RunFolder(out).history()
    steps = [r for r in history if r["event"] == "step"]
    epochs = [r for r in history if r["event"] == "epoch"]
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [r["step"] for r in steps]
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in steps], rel=1e-6)
    r1 = events.Scalars("val/t2v/R@1")
    assert [e.step for e in r1] == [r["step"] for r in epochs]
    assert [e.value for e in r1] == pytest.approx([r["metrics"]["t2v"]["R@1"] for r in epochs], rel=1e-6)
    assert "train/lr/group0" in events.Tags()["scalars"] and "train/clips_per_s" in events.Tags()["scalars"]
    config = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert json.loads(config.strip("`\n"))["report_to"] == "tensorboard"


def test_an_unknown_reporter_is_an_error_before_anything_runs(data, tmp_path):
    with pytest.raises(C4CError, match="--report-to"):
        run(_cfg(data, tmp_path / "run", report_to="mlflow"))
    assert not (tmp_path / "run").exists()
    with pytest.raises(C4CError, match="--report-to"):
        Tracker("mlflow", tmp_path, {})


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb is not installed (pip install 'c4c[wandb]')")
def test_wandb_logs_offline(data, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    run(_cfg(data, out, report_to="wandb", epochs=1))
    assert list((out / "wandb").glob("offline-run-*")), "no offline wandb run was written"
