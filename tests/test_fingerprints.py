"""Files remember the model that made them: `c4c search --run` and `c4c evaluate --bank` refuse another
model (naming both) unless --force; a run moved elsewhere is the same model; weights changed in place
are noticed. And the index path is checked for what it is."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from c4c import synth
from c4c.errors import C4CError
from c4c.stages import encode, evaluate, extract, search
from c4c.stages.finetune import FinetuneConfig, run as finetune_run

ENTRY_POINT = Path(sys.executable).parent / "c4c"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> dict:
    """Two tiny meanP runs of other seeds on the same synthetic videos, an index of run a, EMB files."""
    d = tmp_path_factory.mktemp("fp")
    synth.run(synth.SynthConfig(out_dir=d / "synth", videos=12, seed=2, duration=2.0, width=64, height=48))
    frames = d / "frames.h5"
    ann = d / "synth" / "annotations.jsonl"
    assert extract.run(extract.ExtractConfig(source=d / "synth" / "videos", out=frames, size=32, fps=2.0)).ok
    runs = {}
    for name, seed in (("a", 1), ("b", 2)):
        runs[name] = d / f"run-{name}"
        finetune_run(FinetuneConfig(dataset="jsonl", ann=ann, frames=frames, out=runs[name], clip="tiny",
                                    pretrained="none", sim="meanP", epochs=1, batch_size=4, lr=1e-3, coef_lr=1.0,
                                    workers=0, select_on="last", max_frames=4, seed=seed))
    emb = {}
    for name in ("a", "b"):
        for split in ("train", "test"):
            emb[name, split] = encode.run(encode.EncodeConfig(
                frames=frames, out=d / f"{name}-{split}.h5", run=runs[name], dataset="jsonl", ann=ann, split=split,
                device="cpu", workers=0)).out
    own = encode.run(encode.EncodeConfig(frames=frames, out=d / "own.h5", run=runs["a"], device="cpu",
                                         workers=0)).out
    search.build(search.IndexConfig(emb=own, out=d / "index"))
    return {"dir": d, "runs": runs, "emb": emb, "own": own, "index": d / "index"}


def test_search_with_another_runs_text_tower_is_an_error_naming_both(two_runs):
    with pytest.raises(C4CError) as err:
        search.Searcher(two_runs["index"], run=two_runs["runs"]["b"], device="cpu")
    message = err.value.render()
    assert f"--run {two_runs['runs']['b']}" in message and str(two_runs["runs"]["b"].resolve()) in message
    assert str(two_runs["runs"]["a"].resolve()) in message and "--force" in message


def test_force_searches_anyway(two_runs, caplog):
    searcher = search.Searcher(two_runs["index"], run=two_runs["runs"]["b"], device="cpu", force=True)
    assert len(searcher.search(["a red circle"], 2)[0]) == 2
    assert "--force" in caplog.text


def test_the_same_run_moved_elsewhere_is_the_same_model(two_runs, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(two_runs["runs"]["a"], moved)
    searcher = search.Searcher(two_runs["index"], run=moved, device="cpu")
    assert searcher.search(["a red circle"], 1)[0][0].video_id


def test_weights_changed_in_place_since_the_index_are_noticed(two_runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(two_runs["runs"]["a"], run)
    own = encode.run(encode.EncodeConfig(frames=two_runs["dir"] / "frames.h5", out=tmp_path / "own.h5", run=run,
                                         device="cpu", workers=0)).out
    search.build(search.IndexConfig(emb=own, out=tmp_path / "index"))
    shutil.copyfile(two_runs["runs"]["b"] / "best" / "model.safetensors", run / "best" / "model.safetensors")
    with pytest.raises(C4CError, match="weights changed"):
        search.Searcher(tmp_path / "index", device="cpu")


def test_a_qbnorm_bank_of_another_model_is_an_error_naming_both(two_runs):
    test, bank = two_runs["emb"]["a", "test"], two_runs["emb"]["b", "train"]
    with pytest.raises(C4CError) as err:
        evaluate.run(evaluate.EvaluateConfig(emb=test, rerank=["qbnorm"], bank=bank))
    message = err.value.render()
    assert str(bank) in message and str(test) in message
    assert str(two_runs["runs"]["a"].resolve()) in message and str(two_runs["runs"]["b"].resolve()) in message
    forced = evaluate.run(evaluate.EvaluateConfig(emb=test, rerank=["qbnorm"], bank=bank, force=True))
    assert "qbnorm" in forced.metrics["rerank"]
    same = evaluate.run(evaluate.EvaluateConfig(emb=test, rerank=["qbnorm"], bank=two_runs["emb"]["a", "train"]))
    assert "qbnorm" in same.metrics["rerank"]


def test_an_index_records_the_model_and_its_fingerprint(two_runs):
    from c4c.data.embeddings import Embeddings
    from c4c.search.index_dir import read_manifest

    meta = read_manifest(two_runs["index"])["meta"]
    emb = Embeddings(two_runs["own"])
    assert meta["model_fingerprint"] == emb.attrs["model_fingerprint"] == meta["model"]["fingerprint"]
    assert meta["model"]["run"] == str(two_runs["runs"]["a"].resolve())


@pytest.mark.skipif(not ENTRY_POINT.exists(), reason="the c4c entry point is not installed next to this python")
def test_searching_an_embedding_file_says_what_it_is_and_what_to_run(two_runs, tmp_path):
    done = subprocess.run([str(ENTRY_POINT), "search", str(two_runs["own"]), "a dog"], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1 and "embedding file" in line and "not found" not in line
    assert f"c4c index {two_runs['own']} --out INDEX" in line


def test_model_options_with_an_embedding_file_are_refused(two_runs, tmp_path):
    from c4c.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["index", str(two_runs["own"]), "--out", str(tmp_path / "i"), "--window", "4"])
    assert exc.value.code == 2 and not (tmp_path / "i").exists()
