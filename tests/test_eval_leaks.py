"""Evaluation that cannot leak: positives are found by id, never by position; unequal numbers of
queries and videos are scored correctly; re-ranking never sees which column is the positive.

The numbers are compared with a brute-force ranking written out here (continuous scores, so there are
no ties and every tie policy agrees)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from c4c.data.embeddings import EmbeddingWriter, Layout
from c4c.metrics import rerank as rerank_module
from c4c.metrics.retrieval import matrix_metrics, multi_sentence_metrics, retrieval_metrics
from c4c.stages import evaluate

METHODS = ("dsl", "qbnorm", "sinkhorn")


def brute_force(sim: np.ndarray, video_of_caption: np.ndarray) -> dict:
    """Ranks by counting, query by query. t2v: every caption against every video (videos without
    captions included); v2t: every video with captions against the caption groups, a group scored by
    its best caption. Medians: NumPy's for one caption per video, the lower middle otherwise."""
    nt, nv = sim.shape
    t2v = [sum(sim[i, j] > sim[i, video_of_caption[i]] for j in range(nv)) for i in range(nt)]
    owners = sorted(set(int(v) for v in video_of_caption))
    group = {k: [i for i in range(nt) if video_of_caption[i] == k] for k in owners}
    v2t = []
    for j in owners:
        best = {k: max(sim[i, j] for i in group[k]) for k in owners}
        v2t.append(sum(best[k] > best[j] for k in owners))
    plain = nt == nv and sorted(video_of_caption.tolist()) == list(range(nv))

    def numbers(ranks: list[int], lower: bool) -> dict:
        r = np.sort(np.asarray(ranks, dtype=np.float64))
        out = {f"R@{k}": 100.0 * np.mean(r < k) for k in (1, 5, 10, 50)}
        out["MdR"] = (r[(len(r) - 1) // 2] if lower else float(np.median(r))) + 1.0
        out["MnR"] = float(r.mean()) + 1.0
        out["count"] = len(r)
        return out

    return {"t2v": numbers(t2v, lower=not plain), "v2t": numbers(v2t, lower=False)}


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def embeddings(rng: np.random.Generator, video_of_caption: np.ndarray, n_videos: int, d: int = 16):
    """Video embeddings and caption embeddings near their own video (so the metrics are not trivial)."""
    video = unit_rows(rng, n_videos, d)
    text = video[video_of_caption] + 0.9 * rng.normal(size=(len(video_of_caption), d)).astype(np.float32)
    return video, text / np.linalg.norm(text, axis=1, keepdims=True)


def write_emb(path, video_ids, video, captions, video_of_caption, text, logit_scale: float = 100.0):
    layout = Layout(video_ids=list(video_ids), captions=list(captions), video_index=np.asarray(video_of_caption),
                    dim=video.shape[1], loose=True, max_frames=0,
                    attrs={"sim": "meanP", "logit_scale": logit_scale, "run": "", "dataset": "test", "split": "test"})
    writer = EmbeddingWriter(path, layout, fingerprint="test")
    writer.write_videos(0, video)
    writer.write_texts(0, text)
    return writer.finish()


def shuffled(rng, video_ids, video, captions, video_of_caption, text):
    """The same set with the gallery rows and the caption rows in another order (positives follow by id)."""
    vperm, tperm = rng.permutation(len(video_ids)), rng.permutation(len(captions))
    new_row = np.empty_like(vperm)
    new_row[vperm] = np.arange(len(vperm))               # old video row -> new video row
    return ([video_ids[i] for i in vperm], video[vperm], [captions[i] for i in tperm],
            new_row[video_of_caption[tperm]], text[tperm])


def metric_part(m: dict) -> dict:
    return {"t2v": m["t2v"], "v2t": m["v2t"], "protocol": m["protocol"],
            "rerank": {k: {"t2v": v["t2v"], "v2t": v["v2t"]} for k, v in m.get("rerank", {}).items()}}


# --------------------------------------------------------------------------------------- the library

def test_plain_metrics_do_not_change_when_the_gallery_is_shuffled():
    rng = np.random.default_rng(0)
    video, text = embeddings(rng, np.arange(30), 30)
    sim = text @ video.T
    perm = rng.permutation(30)                             # column c of the shuffled matrix is video perm[c]
    where = np.argsort(perm)                               # video v sits in column where[v]
    assert matrix_metrics(sim[:, perm], where) == matrix_metrics(sim, np.arange(30))
    want = retrieval_metrics(sim)
    got = matrix_metrics(sim[:, perm], where)
    assert got["t2v"] == want["t2v"] and got["v2t"] == want["v2t"]
    assert got["t2v"] == pytest.approx(brute_force(sim, np.arange(30))["t2v"])


def test_multi_sentence_metrics_do_not_change_when_gallery_and_queries_are_shuffled():
    rng = np.random.default_rng(1)
    groups = rng.integers(0, 12, size=40)
    groups[:12] = np.arange(12)                            # every video has a caption
    video, text = embeddings(rng, groups, 12)
    sim = text @ video.T
    vperm, tperm = rng.permutation(12), rng.permutation(40)
    moved = sim[tperm][:, vperm]
    moved_groups = np.argsort(vperm)[groups[tperm]]
    assert multi_sentence_metrics(moved, moved_groups) == multi_sentence_metrics(sim, groups)
    assert matrix_metrics(moved, moved_groups) == matrix_metrics(sim, groups)


def test_unequal_queries_and_videos_with_captionless_videos_match_brute_force():
    rng = np.random.default_rng(2)
    groups = np.array([0, 0, 1, 3, 3, 3, 4, 6, 6, 7, 1, 4, 0])   # videos 2, 5 and 8 have no caption
    video, text = embeddings(rng, groups, 9)
    sim = text @ video.T
    got = matrix_metrics(sim, groups, chunk=4)
    want = brute_force(sim, groups)
    assert got["protocol"] == "multi-sentence"
    assert got["t2v"] == pytest.approx(want["t2v"]) and got["v2t"] == pytest.approx(want["v2t"])
    assert got["t2v"]["count"] == 13 and got["v2t"]["count"] == 6


def test_more_videos_than_captions_one_each_is_scored_with_distractors():
    rng = np.random.default_rng(3)
    groups = rng.permutation(20)[:8]                      # 8 captions, 20 videos, 12 pure distractors
    video, text = embeddings(rng, groups, 20)
    sim = text @ video.T
    got, want = matrix_metrics(sim, groups), brute_force(sim, groups)
    assert got["t2v"] == pytest.approx(want["t2v"]) and got["v2t"] == pytest.approx(want["v2t"])


def test_training_time_evaluation_finds_positives_by_id(monkeypatch):
    """evaluate_retrieval (used by finetune) on an eval set whose captions are not in video order."""
    from types import SimpleNamespace

    from c4c import evaluation as inference

    rng = np.random.default_rng(4)
    order = rng.permutation(15)                            # caption i shows video order[i]
    video, text = embeddings(rng, order, 15)
    sim = text @ video.T
    monkeypatch.setattr(inference, "encode_eval_set", lambda model, evalset, **kw: (None, None, None))
    monkeypatch.setattr(inference, "similarity_matrix", lambda model, t, v, m, **kw: sim)
    evalset = SimpleNamespace(multi_sentence=False, video_ids=[f"v{i}" for i in range(15)],
                              captions=[f"c{i}" for i in range(15)], video_of_caption=order)
    got = inference.evaluate_retrieval(None, evalset)
    want = brute_force(sim, order)
    assert got["t2v"] == pytest.approx(want["t2v"]) and got["v2t"] == pytest.approx(want["v2t"])


# --------------------------------------------------------------------------------------- re-ranking

@pytest.mark.parametrize("method", METHODS)
def test_reranking_is_permutation_equivariant(method):
    """Shuffling queries and gallery shuffles the re-ranked scores the same way: nothing in a
    re-ranker depends on where a positive sits."""
    rng = np.random.default_rng(5)
    sim = 100.0 * rng.normal(scale=0.2, size=(25, 18))
    bank = 100.0 * rng.normal(scale=0.2, size=(40, 18))
    rows, cols, bank_rows = rng.permutation(25), rng.permutation(18), rng.permutation(40)
    kw = {"bank_sim": bank} if method == "qbnorm" else {}
    moved_kw = {"bank_sim": bank[bank_rows][:, cols]} if method == "qbnorm" else {}
    base = rerank_module.rerank(method, sim, **kw)
    moved = rerank_module.rerank(method, sim[rows][:, cols], **moved_kw)
    np.testing.assert_allclose(moved, base[rows][:, cols], rtol=1e-10, atol=1e-9)


def test_rerankers_take_no_ground_truth():
    names = {"positives", "labels", "targets", "video_index", "video_of_caption", "groups", "gt", "truth"}
    for fn in (rerank_module.rerank, rerank_module.dual_softmax, rerank_module.qb_norm, rerank_module.sinkhorn,
               rerank_module.sinkhorn_bank_bias, rerank_module.QBNorm):
        assert not names & set(inspect.signature(fn).parameters), fn


# --------------------------------------------------------------------------------------- EMB.h5 path

@pytest.fixture()
def sets(tmp_path):
    """A multi-sentence test set with captionless videos, the same set shuffled, and a query bank."""
    rng = np.random.default_rng(6)
    groups = np.array([0, 0, 1, 2, 2, 2, 4, 5, 5, 1, 7, 7, 0, 8, 9, 9, 4, 10, 11, 11])  # 3, 6 have none
    ids = [f"video{i:02d}" for i in range(12)]
    captions = [f"caption {i}" for i in range(len(groups))]
    video, text = embeddings(rng, groups, 12)
    original = write_emb(tmp_path / "a.emb.h5", ids, video, captions, groups, text)
    other = shuffled(rng, ids, video, captions, groups, text)
    moved = write_emb(tmp_path / "b.emb.h5", *other)
    bank_groups = rng.integers(0, 30, size=50)
    bank_video, bank_text = embeddings(rng, bank_groups, 30)
    bank = write_emb(tmp_path / "bank.emb.h5", [f"t{i}" for i in range(30)], bank_video,
                     [f"b{i}" for i in range(50)], bank_groups, bank_text)
    return {"original": original, "moved": moved, "bank": bank, "sim": 100.0 * (text @ video.T), "groups": groups,
            "dir": tmp_path}


def test_emb_file_metrics_match_brute_force_with_unequal_queries_and_videos(sets):
    got = evaluate.run(evaluate.EvaluateConfig(emb=sets["original"], out=sets["dir"] / "m.json", chunk=3)).metrics
    want = brute_force(sets["sim"], sets["groups"])
    assert (got["texts"], got["videos"], got["protocol"]) == (20, 12, "multi-sentence")
    assert got["t2v"] == pytest.approx(want["t2v"]) and got["v2t"] == pytest.approx(want["v2t"])


def test_emb_file_metrics_do_not_change_when_its_rows_are_shuffled(sets):
    def evaluated(path, out):
        cfg = evaluate.EvaluateConfig(emb=path, out=sets["dir"] / out, rerank=list(METHODS), bank=sets["bank"],
                                      chunk=4)
        return evaluate.run(cfg).metrics

    a, b = evaluated(sets["original"], "a.json"), evaluated(sets["moved"], "b.json")
    assert set(a["rerank"]) == set(METHODS)
    for direction in ("t2v", "v2t"):
        assert b[direction] == pytest.approx(a[direction], abs=1e-9)
        for method in METHODS:
            assert b["rerank"][method][direction] == pytest.approx(a["rerank"][method][direction], abs=1e-9), method
    assert a["rerank"]["dsl"]["transductive"] and not a["rerank"]["qbnorm"]["transductive"]


def test_the_evaluation_hands_rerankers_scores_only(sets, monkeypatch):
    """What `c4c evaluate --rerank` passes to a re-ranker: the score matrix (and a bank), never the
    caption -> video map."""
    seen = []
    real = rerank_module.rerank

    def spy(method, sim, *, bank_sim=None, **params):
        seen.append((method, np.asarray(sim).shape, None if bank_sim is None else np.asarray(bank_sim).shape,
                     sorted(params)))
        return real(method, sim, bank_sim=bank_sim, **params)

    monkeypatch.setattr(rerank_module, "rerank", spy)
    evaluate.run(evaluate.EvaluateConfig(emb=sets["original"], out=sets["dir"] / "s.json", rerank=list(METHODS),
                                         bank=sets["bank"]))
    assert {m for m, *_ in seen} == set(METHODS)
    for method, shape, bank_shape, params in seen:
        assert shape in ((20, 12), (12, 20))
        assert set(params) <= {"beta", "k", "temperature", "epsilon", "iters", "chunk_rows"}, params
