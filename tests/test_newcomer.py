"""Small things a newcomer trips on: the frame count in EMB.encode.json, `--help` at 80 columns, and the
"temporal layers keep their random init" warning said once, when a run is made."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from c4c import synth
from c4c.data.embeddings import EmbeddingWriter, Embeddings, partial_path
from c4c.stages import encode, extract
from c4c.stages.finetune import FinetuneConfig, run as finetune_run
from c4c.video.store import FrameStore

from helpers import cli_commands

RANDOM_INIT = "temporal layers 2.. keep their random init"  # tiny CLIP has 2 text layers


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """Eight 2-second synthetic videos stored at 2 fps and a tiny seqTransf run with 3 temporal layers."""
    d = tmp_path_factory.mktemp("newcomer")
    synth.run(synth.SynthConfig(out_dir=d / "synth", videos=8, seed=4, duration=2.0, width=64, height=48))
    frames = d / "frames.h5"
    ann = d / "synth" / "annotations.jsonl"
    assert extract.run(extract.ExtractConfig(source=ann, dataset="jsonl", videos_dir=d / "synth" / "videos",
                                             out=frames, size=32, fps=2.0)).ok
    return {"dir": d, "ann": ann, "frames": frames}


def _train(data, out: Path, **kw) -> Path:
    base = dict(dataset="jsonl", ann=data["ann"], frames=data["frames"], out=out, clip="tiny", pretrained="none",
                sim="seqTransf", temporal_layers=3, epochs=1, batch_size=4, lr=1e-3, coef_lr=1.0, workers=0,
                select_on="last", max_frames=4)
    finetune_run(FinetuneConfig(**{**base, **kw}))
    return out


@pytest.fixture(scope="module")
def run_dir(data, tmp_path_factory) -> Path:
    return _train(data, tmp_path_factory.mktemp("runs") / "seqTransf3")


def _encode(data, run_dir: Path, out: Path) -> encode.EncodeResult:
    # --max-frames 12 is more than any 2-second video stores at 2 fps: every stored frame is encoded
    return encode.run(encode.EncodeConfig(run=run_dir, frames=data["frames"], out=out, dataset="jsonl",
                                          ann=data["ann"], split="test", device="cpu", workers=0, batch_size=1,
                                          max_frames=12))


def _stored_frames(data, video_ids: list[str]) -> int:
    store = FrameStore(data["frames"])
    return sum(len(store.timestamps(v)) for v in video_ids)


# --- EMB.encode.json counts the frames it encoded ----------------------------------------------------

def test_the_encode_summary_counts_the_frames_of_every_encoded_video(data, run_dir, tmp_path):
    result = _encode(data, run_dir, tmp_path / "e.h5")
    summary = json.loads((tmp_path / "e.encode.json").read_text())
    ids = Embeddings(result.out).video_ids
    assert len(ids) == summary["videos"] >= 1
    assert summary["frames_this_run"] == result.frames == _stored_frames(data, ids) > 0
    assert summary["resumed"] is False and "frames" not in summary


def test_a_resumed_encode_counts_the_frames_it_encoded_itself(data, run_dir, tmp_path, monkeypatch):
    original = EmbeddingWriter.write_videos
    calls = {"n": 0}

    def interrupted(self, start, emb, mask=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        original(self, start, emb, mask)

    monkeypatch.setattr(EmbeddingWriter, "write_videos", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _encode(data, run_dir, tmp_path / "cut.h5")
    with h5py.File(partial_path(tmp_path / "cut.h5"), "r") as f:
        done = int(f.attrs["videos_done"])
    assert done == 1
    monkeypatch.setattr(EmbeddingWriter, "write_videos", original)
    result = _encode(data, run_dir, tmp_path / "cut.h5")
    summary = json.loads((tmp_path / "cut.encode.json").read_text())
    ids = Embeddings(result.out).video_ids
    assert summary["resumed"] is True
    assert summary["frames_this_run"] == _stored_frames(data, ids[done:]) < _stored_frames(data, ids)


# --- the random-init warning: once, when the run is made ---------------------------------------------

def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and RANDOM_INIT in r.getMessage()]


def test_a_run_started_from_init_warns_only_when_its_init_lacks_those_layers(data, run_dir, tmp_path, caplog):
    meanp = _train(data, tmp_path / "meanP", sim="meanP")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        _train(data, tmp_path / "from-meanP", init=meanp, clip=None, sim="seqTransf", temporal_layers=3)
    assert len(_warnings(caplog)) == 1  # meanP has no temporal layers to give
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        _train(data, tmp_path / "from-seqTransf", init=run_dir, clip=None, sim=None, temporal_layers=None)
    assert _warnings(caplog) == []  # all three layers come from the --init run


def test_the_warning_is_said_when_the_run_is_made_and_not_by_what_loads_it(data, tmp_path, caplog):
    from c4c.model.load import load_run

    with caplog.at_level(logging.WARNING):
        run_dir = _train(data, tmp_path / "fresh")
    assert len(_warnings(caplog)) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_run(run_dir)                              # evaluate --run, search, export
        _encode(data, run_dir, tmp_path / "e.h5")
        _train(data, run_dir, resume=True)
    assert _warnings(caplog) == []


# --- --help at 80 columns --------------------------------------------------------------------------

def _commands():
    return cli_commands()


@pytest.mark.parametrize("path", [" ".join(p) for p, _ in _commands()])
def test_help_at_80_columns_shows_every_option_name_whole_and_no_bool_metavar(path):
    command = dict((" ".join(p), c) for p, c in _commands())[path]
    env = {**os.environ, "COLUMNS": "80", "TERMINAL_WIDTH": "80"}
    done = subprocess.run([sys.executable, "-m", "c4c.cli", *path.split(), "--help"], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert max(len(line) for line in text.splitlines()) <= 80
    names = [n for p in command.params if not getattr(p, "hidden", False)
             for n in (*p.opts, *getattr(p, "secondary_opts", [])) if n.startswith("-")]
    assert names
    missing = [n for n in names if not any(n in line.replace(",", " ").replace("/", " ").split()
                                           for line in text.splitlines())]
    assert missing == []
    assert "<bool>" not in text and "…" not in text
