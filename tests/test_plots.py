"""`c4c plot` and :mod:`c4c.plots`: the training curves of run folders, read from metrics.jsonl (a tiny trained
run and crafted ones), as a PNG and the same numbers as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from c4c import synth
from c4c.cli.app import main
from c4c.errors import C4CError
from c4c.plots import plot_runs, read_curves
from c4c.run.folder import RunFolder
from c4c.stages import extract
from c4c.stages.finetune import FinetuneConfig, run


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("plots")
    synth.run(synth.SynthConfig(out_dir=d / "synth", videos=16, seed=3, duration=2.0, width=64, height=48))
    frames = d / "frames.h5"
    assert extract.run(extract.ExtractConfig(source=d / "synth" / "annotations.jsonl", dataset="jsonl",
                                             videos_dir=d / "synth" / "videos", out=frames, size=32, fps=2.0)).ok
    return d / "synth" / "annotations.jsonl", frames


def _cfg(data, out: Path, **kw) -> FinetuneConfig:
    ann, frames = data
    base = dict(dataset="jsonl", ann=ann, frames=frames, out=out, clip="tiny", pretrained="none", epochs=1,
                batch_size=4, workers=0, temporal_layers=1)
    return FinetuneConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "meanP-tiny"
    run(_cfg(data, out, epochs=2, log_every=1))
    return out


def _crafted(folder: Path, task: str, records: list[dict]) -> Path:
    """A run folder with a config.json of ``task`` and ``records`` as its metrics.jsonl."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"format": "c4c-run", "format_version": 1, "task": task}))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def _step(step: int, loss: float, epoch: int = 0) -> dict:
    return {"event": "step", "step": step, "epoch": epoch, "loss": loss, "lr": [1e-4], "clips_per_s": 10.0}


def test_a_trained_run_is_drawn_with_the_numbers_of_its_metrics(trained, tmp_path):
    result = plot_runs([trained], tmp_path / "curves.png")
    assert result.png == tmp_path / "curves.png" and result.json == tmp_path / "curves.json"
    with Image.open(result.png) as image:
        image.verify()
    with Image.open(result.png) as image:
        assert image.format == "PNG"
        width, height = image.size
        assert 800 <= width <= 2000 and 300 <= height <= 1000
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 50  # drawn, not blank
    history = RunFolder(trained).history()
    steps = [r for r in history if r["event"] == "step"]
    epochs = [r for r in history if r["event"] == "epoch"]
    saved = json.loads(result.json.read_text())
    assert saved["format"] == "c4c-curves" and saved["version"] == 1 and saved["png"] == "curves.png"
    (curves,) = saved["runs"]
    assert curves["name"] == "meanP-tiny" and curves["task"] == "retrieval"
    assert curves["steps"]["step"] == [r["step"] for r in steps] and len(steps) >= 2
    assert curves["steps"]["loss"] == [r["loss"] for r in steps]
    assert curves["epochs"]["epoch"] == [r["epoch"] for r in epochs] == [0, 1]
    assert curves["epochs"]["value"] == [r["metrics"]["t2v"]["R@1"] for r in epochs]
    assert curves["epochs"]["metric"] == "t2v R@1" and curves["epochs"]["split"] == epochs[0]["metrics"]["split"]
    assert curves["epochs"]["best_epoch"] == max(r["epoch"] for r in epochs if r.get("best"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.json", "curves.png"]  # no temp files left


def test_the_command_plots_runs_and_prints_what_it_wrote(trained, tmp_path, capsys):
    main(["plot", str(trained), "--out", str(tmp_path / "c.png")])
    out = capsys.readouterr().out
    assert "c4c plot" in out and "meanP-tiny" in out and "kept epoch" in out
    assert (tmp_path / "c.png").is_file() and (tmp_path / "c.json").is_file()


def test_a_missing_folder_is_one_line_and_exit_2(tmp_path, capsys):
    missing = tmp_path / "no-such-run"
    with pytest.raises(SystemExit) as info:
        main(["plot", str(missing), "--out", str(tmp_path / "c.png")])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.startswith("error:") and str(missing) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c.png").exists()


def test_a_folder_that_is_not_a_run_is_named(tmp_path):
    (tmp_path / "videos").mkdir()
    with pytest.raises(C4CError, match="not a c4c run folder") as info:
        plot_runs([tmp_path / "videos"], tmp_path / "c.png")
    assert str(tmp_path / "videos") in str(info.value)


def test_a_run_with_no_metrics_yet_is_named_and_nothing_is_written(tmp_path):
    fresh = _crafted(tmp_path / "fresh", "retrieval", [])
    good = _crafted(tmp_path / "good", "retrieval", [_step(1, 2.0)])
    with pytest.raises(C4CError, match="no metrics yet") as info:
        plot_runs([good, fresh], tmp_path / "c.png")
    assert str(fresh) in str(info.value)
    assert not (tmp_path / "c.png").exists() and not (tmp_path / "c.json").exists()


def test_the_chart_must_be_a_png(tmp_path):
    good = _crafted(tmp_path / "good", "retrieval", [_step(1, 2.0)])
    with pytest.raises(C4CError, match=r"\.png"):
        plot_runs([good], tmp_path / "curves.json")


def test_a_resumed_run_counts_each_step_and_epoch_once_with_the_last_values(tmp_path):
    # killed after step 3 with its checkpoint at step 1: the resume logs steps 2 and 3 again
    records = [_step(1, 3.0), _step(2, 2.5), _step(3, 2.4),
               {"event": "epoch", "epoch": 0, "step": 3, "metrics": {"t2v": {"R@1": 5.0}, "split": "val"}},
               _step(2, 2.2), _step(3, 2.0),
               {"event": "epoch", "epoch": 0, "step": 3, "metrics": {"t2v": {"R@1": 7.5}, "split": "val"},
                "best": True}]
    curves = read_curves(_crafted(tmp_path / "resumed", "retrieval", records))
    assert curves.step == [1, 2, 3] and curves.loss == [3.0, 2.2, 2.0]
    assert curves.epoch == [0] and curves.value == [7.5] and curves.best_epoch == 0


def test_a_caption_run_plots_its_val_caption_loss(tmp_path):
    records = [_step(1, 5.0), {"event": "epoch", "epoch": 0, "step": 1,
                               "metrics": {"caption_loss": 4.0, "perplexity": 54.6, "split": "val"}, "best": True},
               _step(2, 4.5, epoch=1), {"event": "epoch", "epoch": 1, "step": 2,
                                        "metrics": {"caption_loss": 4.2, "perplexity": 66.7, "split": "val"}}]
    result = plot_runs([_crafted(tmp_path / "cap", "caption", records)], tmp_path / "c.png")
    (epochs,) = [r["epochs"] for r in json.loads(result.json.read_text())["runs"]]
    assert epochs == {"epoch": [0, 1], "step": [1, 2], "metric": "caption loss", "split": "val", "value": [4.0, 4.2],
                      "best_epoch": 0}


def test_a_pretraining_run_has_the_loss_panel_only(tmp_path):
    steps = [_step(s, 3.0 - 0.01 * s) for s in range(1, 101)]
    pretrain = plot_runs([_crafted(tmp_path / "pre", "pretrain", steps)], tmp_path / "pre.png")
    retrieval = plot_runs([_crafted(tmp_path / "ret", "retrieval", steps + [
        {"event": "epoch", "epoch": 0, "step": 100, "metrics": {"t2v": {"R@1": 5.0}, "split": "val"}}])],
        tmp_path / "ret.png")
    assert pretrain.runs[0].metric is None and pretrain.runs[0].epoch == []
    with Image.open(pretrain.png) as one, Image.open(retrieval.png) as two:
        assert one.size[0] < two.size[0]  # one panel against two


def test_runs_with_the_same_folder_name_are_told_apart_in_the_legend(tmp_path):
    a = _crafted(tmp_path / "a" / "run", "retrieval", [_step(1, 2.0)])
    b = _crafted(tmp_path / "b" / "run", "retrieval", [_step(1, 1.0)])
    result = plot_runs([a, b], tmp_path / "c.png")
    assert [c.name for c in result.runs] == ["a/run", "b/run"]


def test_a_loss_that_is_not_finite_is_null_in_the_json(tmp_path):
    folder = _crafted(tmp_path / "nan", "retrieval", [])
    (folder / "metrics.jsonl").write_text('{"event": "step", "step": 1, "epoch": 0, "loss": 2.0}\n'
                                          '{"event": "step", "step": 2, "epoch": 0, "loss": NaN}\n')
    result = plot_runs([folder], tmp_path / "c.png")
    assert json.loads(result.json.read_text())["runs"][0]["steps"]["loss"] == [2.0, None]


def test_importing_the_plot_modules_loads_no_matplotlib():
    code = ("import sys, c4c.plots, c4c.mini.plot, c4c.mini.report, c4c.cli.app; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"


def _epoch(epoch: int, step: int, r1: float, best: bool = False) -> dict:
    return {"event": "epoch", "epoch": epoch, "step": step, "metrics": {"t2v": {"R@1": r1}, "split": "val"},
            "best": best}


def test_the_step_count_is_the_runs_optimiser_steps_not_its_logged_lines(tmp_path, capsys):
    # 8 optimiser steps, logged every 4: two step lines
    folder = _crafted(tmp_path / "eight", "retrieval", [_step(4, 2.9), _epoch(0, 4, 10.0),
                                                         _step(8, 2.8, epoch=1), _epoch(1, 8, 12.0, best=True)])
    assert read_curves(folder).optimiser_steps == 8
    main(["plot", str(folder), "--out", str(tmp_path / "c.png")])
    assert "retrieval, 8 steps" in capsys.readouterr().out
    assert json.loads((tmp_path / "c.json").read_text())["runs"][0]["optimiser_steps"] == 8


def test_a_run_with_one_point_is_drawn_over_a_run_with_more(tmp_path):
    import numpy as np

    one = _crafted(tmp_path / "one", "retrieval", [_step(4, 2.9), _epoch(0, 4, 10.0)])
    two = _crafted(tmp_path / "two", "retrieval", [_step(4, 2.9), _epoch(0, 4, 10.0), _step(8, 2.8, epoch=1),
                                                   _epoch(1, 8, 12.0)])
    result = plot_runs([one, two], tmp_path / "c.png")  # "one" is first: the first colour, C0
    with Image.open(result.png) as image:
        pixels = np.asarray(image.convert("RGB")).astype(int)
    panels = pixels[: int(pixels.shape[0] * 0.8)]  # above the legend, which shows every run anyway
    c0 = np.array([0x1F, 0x77, 0xB4])
    assert (np.abs(panels - c0).sum(axis=-1) < 40).sum() > 20  # its point shows in both panels


def test_caption_and_retrieval_losses_get_a_panel_each(tmp_path):
    retrieval = _crafted(tmp_path / "ret", "retrieval", [_step(1, 2.9), _step(2, 2.8)])
    caption = _crafted(tmp_path / "cap", "caption", [_step(1, 13.4), _step(2, 13.1)])
    both = plot_runs([retrieval, caption], tmp_path / "both.png")
    assert both.panels == ["training contrastive loss per logged step", "training caption loss per logged step"]
    alone = plot_runs([retrieval], tmp_path / "alone.png")
    assert alone.panels == ["training loss per logged step"]
