"""`c4c encode` and `c4c evaluate`: EMB.h5 contents, metrics equal to the training-time evaluation,
blockwise == full-matrix metrics, resume, own videos, and the failure paths."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from c4c import synth
from c4c.data.embeddings import Embeddings, partial_path
from c4c.errors import C4CError
from c4c.metrics.retrieval import (blockwise_metrics, matrix_metrics, multi_sentence_metrics, protocol_of,
                                   retrieval_metrics)
from c4c.stages import encode, evaluate, extract
from c4c.stages.finetune import FinetuneConfig, run as finetune_run


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("enc")
    synth.run(synth.SynthConfig(out_dir=d / "synth", videos=24, seed=3, duration=2.0, width=64, height=48))
    frames = d / "frames.h5"
    assert extract.run(extract.ExtractConfig(source=d / "synth" / "annotations.jsonl", dataset="jsonl",
                                             videos_dir=d / "synth" / "videos", out=frames, size=32, fps=2.0)).ok
    ann = d / "synth" / "annotations.jsonl"
    runs = {}
    for sim in ("meanP", "tightTransf"):
        runs[sim] = d / f"run-{sim}"
        finetune_run(FinetuneConfig(dataset="jsonl", ann=ann, frames=frames, out=runs[sim], clip="tiny",
                                    pretrained="none", sim=sim, epochs=1, batch_size=8, lr=1e-3, coef_lr=1.0,
                                    workers=0, temporal_layers=1, eval_batch_size=16, select_on="last",
                                    max_frames=4))
    return {"dir": d, "ann": ann, "frames": frames, "runs": runs}


def _encode(data, sim: str, out: Path, **kw) -> encode.EncodeResult:
    base = dict(run=data["runs"][sim], frames=data["frames"], out=out, dataset="jsonl", ann=data["ann"],
                split="test", device="cpu", workers=0, batch_size=3)
    base.update(kw)
    return encode.run(encode.EncodeConfig(**base))


def _reference_metrics(data, sim: str) -> dict:
    """What `c4c finetune` reports for the same run on the same split (its own evaluation path)."""
    from c4c.data.text import CaptionTokenizer
    from c4c.data.frames import ClipSpec
    from c4c.data.video_text import EvalSet
    from c4c.datasets.registry import read_annotations, split_records
    from c4c.evaluation import evaluate_retrieval
    from c4c.model.load import load_run
    from c4c.video.store import FrameStore

    loaded = load_run(data["runs"][sim])
    records = split_records(read_annotations("jsonl", data["ann"]), "test")
    evalset = EvalSet(records, FrameStore(data["frames"]), CaptionTokenizer(32), ClipSpec(max_frames=4))
    return evaluate_retrieval(loaded.model, evalset, batch_size=5)


# --- metrics over blocks ------------------------------------------------------------------------------

def test_blockwise_metrics_equal_the_plain_protocol_on_the_full_matrix():
    rng = np.random.default_rng(0)
    sim = rng.normal(size=(37, 37)).astype(np.float32)
    sim[np.arange(37), np.arange(37)] += 1.0
    order = rng.permutation(37)  # caption i shows video order[i]
    permuted = np.empty_like(sim)
    permuted[:, order] = sim
    got = blockwise_metrics(lambda a, b: permuted[a:b], lambda a, b: permuted[:, a:b].T, order, 37, chunk=5)
    want = retrieval_metrics(sim)
    assert got["protocol"] == "plain"
    for direction in ("t2v", "v2t"):
        assert got[direction] == pytest.approx(want[direction])


def test_blockwise_metrics_equal_the_multi_sentence_protocol_with_ties_and_nan():
    rng = np.random.default_rng(1)
    groups = np.array([0, 0, 1, 2, 2, 2, 3, 1, 4, 4])
    sim = rng.integers(0, 4, size=(10, 5)).astype(np.float32)  # many exact ties
    sim[3, 2] = np.nan
    got = matrix_metrics(sim, groups, chunk=3)
    want = multi_sentence_metrics(sim, groups)
    assert got["protocol"] == "multi-sentence"
    for direction in ("t2v", "v2t"):
        assert got[direction] == pytest.approx(want[direction])


def test_hand_computed_three_by_three_case():
    # t2v ranks: row0 positive 0.9 is best -> 0; row1 positive 0.2 < 0.8, 0.5 -> 2; row2 0.7 > 0.1, 0.6 -> 0
    sim = np.array([[0.9, 0.1, 0.3],
                    [0.8, 0.2, 0.5],
                    [0.1, 0.6, 0.7]], np.float32)
    m = matrix_metrics(sim, np.arange(3))
    assert m["t2v"]["R@1"] == pytest.approx(200 / 3) and m["t2v"]["MdR"] == 1.0
    assert m["t2v"]["MnR"] == pytest.approx(1 + 2 / 3)
    # v2t (columns): video0 {0.9, 0.8, 0.1} -> 0; video1 {0.1, 0.2, 0.6} -> 1; video2 {0.3, 0.5, 0.7} -> 0
    assert m["v2t"]["R@1"] == pytest.approx(200 / 3) and m["v2t"]["MnR"] == pytest.approx(1 + 1 / 3)


def test_protocol_is_plain_only_with_one_caption_per_video():
    assert protocol_of(np.array([1, 0, 2]), 3) == "plain"
    assert protocol_of(np.array([0, 0, 1]), 2) == "multi-sentence"
    assert protocol_of(np.array([0, 1]), 3) == "multi-sentence"  # a video without caption


# --- encode -------------------------------------------------------------------------------------------

def test_encode_writes_normalised_embeddings_with_ids_and_caption_owners(data, tmp_path):
    result = _encode(data, "meanP", tmp_path / "test.emb.h5")
    emb = Embeddings(result.out)
    assert emb.loose and emb.sim == "meanP" and result.texts == len(emb.captions) > result.videos == len(emb.video_ids)
    np.testing.assert_allclose(np.linalg.norm(emb.video_emb(), axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb.text_emb(), axis=1), 1.0, atol=1e-5)
    records = [json.loads(x) for x in data["ann"].read_text().splitlines()]
    truth = {r["caption"]: r["video_id"] for r in records if r.get("split") == "test"}
    assert all(truth[c] == emb.video_ids[v] for c, v in zip(emb.captions, emb.video_index))
    assert (tmp_path / "test.emb.encode.json").is_file() and not partial_path(result.out).exists()


@pytest.mark.parametrize("sim", ["meanP", "tightTransf"])
def test_evaluate_on_embeddings_equals_the_training_time_evaluation(data, tmp_path, sim):
    out = _encode(data, sim, tmp_path / "e.h5").out
    metrics = evaluate.run(evaluate.EvaluateConfig(emb=out, device="cpu", chunk=4, pair_chunk=3)).metrics
    want = _reference_metrics(data, sim)
    for direction in ("t2v", "v2t"):
        for key in ("R@1", "R@5", "R@10", "MdR", "MnR"):
            assert metrics[direction][key] == pytest.approx(want[direction][key], abs=1e-6), (direction, key)
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert set(written["t2v"]) >= {"R@1", "R@5", "R@10", "R@50", "MdR", "MnR"}
    assert written["protocol"] == "multi-sentence" and written["rerank"] == {}


def test_tight_embeddings_hold_frame_features_and_masks(data, tmp_path):
    emb = Embeddings(_encode(data, "tightTransf", tmp_path / "t.h5").out)
    frames, mask = emb.video_frames()
    assert frames.shape[:2] == mask.shape == (len(emb.video_ids), 4)
    assert not frames[~mask].any()  # padded frames are zero
    with pytest.raises(C4CError, match="cross encoder"):
        emb.video_emb()


def test_an_interrupted_encode_resumes_to_the_same_file(data, tmp_path, monkeypatch):
    full = Embeddings(_encode(data, "meanP", tmp_path / "full.h5").out)
    from c4c.data.embeddings import EmbeddingWriter

    original = EmbeddingWriter.write_videos
    calls = {"n": 0}

    def failing(self, start, emb, mask=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        original(self, start, emb, mask)

    monkeypatch.setattr(EmbeddingWriter, "write_videos", failing)
    with pytest.raises(KeyboardInterrupt):
        _encode(data, "meanP", tmp_path / "cut.h5")
    partial = partial_path(tmp_path / "cut.h5")
    with h5py.File(partial, "r") as f:
        assert f.attrs["videos_done"] == 3 and f.attrs["texts_done"] == len(full.captions)
    monkeypatch.setattr(EmbeddingWriter, "write_videos", original)
    result = _encode(data, "meanP", tmp_path / "cut.h5")
    assert result.resumed
    resumed = Embeddings(result.out)
    np.testing.assert_array_equal(resumed.video_emb(), full.video_emb())
    np.testing.assert_array_equal(resumed.text_emb(), full.text_emb())


def test_own_videos_are_encoded_without_text_and_evaluate_says_why_it_cannot_score(data, tmp_path):
    result = _encode(data, "meanP", tmp_path / "own.h5", dataset=None, ann=None)
    emb = Embeddings(result.out)
    with h5py.File(data["frames"], "r") as f:
        assert sorted(emb.video_ids) == sorted(f["videos"].keys())
    assert emb.captions == []
    with pytest.raises(C4CError, match="no captions"):
        evaluate.run(evaluate.EvaluateConfig(emb=result.out))


def test_encode_refuses_to_overwrite_and_checks_the_run_folder(data, tmp_path):
    out = _encode(data, "meanP", tmp_path / "a.h5").out
    with pytest.raises(C4CError, match="output exists"):
        _encode(data, "meanP", out)
    assert _encode(data, "meanP", out, overwrite=True).out == out
    with pytest.raises(C4CError, match="config.json missing"):
        _encode(data, "meanP", tmp_path / "b.h5", run=tmp_path)


def test_evaluate_rejects_files_that_are_not_complete_embeddings(tmp_path):
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(C4CError, match="not a c4c embedding file"):
        Embeddings(bad)
    (tmp_path / "x.h5").write_text("not hdf5")
    with pytest.raises(C4CError, match="not a readable HDF5"):
        Embeddings(tmp_path / "x.h5")
    partial_path(tmp_path / "y.h5").write_text("")
    with pytest.raises(C4CError, match="unfinished encode"):
        Embeddings(tmp_path / "y.h5")


def test_evaluate_writes_where_asked_and_qbnorm_needs_a_bank(data, tmp_path):
    out = _encode(data, "meanP", tmp_path / "e.h5").out
    with pytest.raises(C4CError, match="--bank"):
        evaluate.run(evaluate.EvaluateConfig(emb=out, rerank=["qbnorm"]))
    result = evaluate.run(evaluate.EvaluateConfig(emb=out, out=tmp_path / "sub" / "m.json"))
    assert json.loads((tmp_path / "sub" / "m.json").read_text())["t2v"] == result.metrics["t2v"]


def test_reranked_rows_are_reported_beside_the_raw_ones_and_labelled(data, tmp_path):
    from c4c.metrics.rerank import dual_softmax

    test_emb = _encode(data, "meanP", tmp_path / "test.h5").out
    bank = _encode(data, "meanP", tmp_path / "train.h5", split="train").out
    result = evaluate.run(evaluate.EvaluateConfig(emb=test_emb, rerank=["dsl", "qbnorm", "sinkhorn"], bank=bank))
    m = result.metrics
    assert set(m["rerank"]) == {"dsl", "qbnorm", "sinkhorn"}
    assert m["rerank"]["dsl"]["transductive"] and m["rerank"]["sinkhorn"]["transductive"]
    assert not m["rerank"]["qbnorm"]["transductive"]
    emb = Embeddings(test_emb)
    sim = emb.logit_scale * emb.text_emb() @ emb.video_emb().T
    want = matrix_metrics(dual_softmax(sim), emb.video_index)
    assert m["rerank"]["dsl"]["t2v"] == pytest.approx(want["t2v"], rel=1e-6)
    raw = evaluate.run(evaluate.EvaluateConfig(emb=test_emb)).metrics
    assert raw["t2v"] == m["t2v"]  # re-ranking never changes the raw numbers
    with pytest.raises(C4CError, match="unknown --rerank"):
        evaluate.run(evaluate.EvaluateConfig(emb=test_emb, rerank=["magic"]))


def test_a_run_trained_from_quickgelu_weights_is_rebuilt_with_quickgelu(tmp_path):
    """Activations hold no weights: a run whose CLIP used QuickGELU (OpenAI weights) must be rebuilt
    with it by load_run and by finetune --init, or its features silently change."""
    from c4c.model.backbone import build_clip, set_activation, uses_quick_gelu
    from c4c.model.clip4clip import CLIP4Clip
    from c4c.model.load import build_model, load_run, resolve_spec
    from c4c.run import checkpoint

    clip, info = build_clip("tiny", "none")
    assert info.quick_gelu == uses_quick_gelu(clip)
    set_activation(clip, not info.quick_gelu)  # the other activation than the config's default
    model = CLIP4Clip(clip, sim="meanP")
    run_dir = tmp_path / "run"
    checkpoint.save(run_dir / "best", model.state_dict(), None, {"step": 0})
    (run_dir / "config.json").write_text(json.dumps({"sim": "meanP", "clip": "tiny", "pretrained": "none",
                                                     "backbone": {"quick_gelu": not info.quick_gelu}}))
    assert uses_quick_gelu(load_run(run_dir).model.clip) != info.quick_gelu
    ids = torch.randint(1, 100, (2, 8))
    torch.testing.assert_close(load_run(run_dir).model.encode_text(ids), model.eval().encode_text(ids))
    cfg = FinetuneConfig(dataset="jsonl", ann=tmp_path, frames=tmp_path, out=tmp_path / "ft", clip="tiny",
                         init=run_dir)
    child, child_info, _ = build_model(resolve_spec(cfg), "cpu", init=cfg.init)
    assert uses_quick_gelu(child.clip) == child_info.quick_gelu != info.quick_gelu


def test_old_runs_without_a_recorded_activation_follow_their_pretrained_tag():
    from c4c.run.folder import run_quick_gelu

    assert run_quick_gelu({"pretrained": "openai"}) is True
    assert run_quick_gelu({"pretrained": "laion2b_s34b_b79k"}) is False
    assert run_quick_gelu({"pretrained": "none", "backbone": {"quick_gelu": True}}) is True
    assert run_quick_gelu({"init": "/nonexistent/run"}) is None
    assert run_quick_gelu({"pretrained": "none"}) is None  # the model config decides
