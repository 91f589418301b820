"""The vector index (c4c.search.index): exact and approximate search, the INDEX_DIR contract, errors."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, fields
from typing import get_args

import numpy as np
import pytest

from c4c.errors import C4CError
from c4c.search.exact import exact_topk, recall_at_k
from c4c.search.index import VectorIndex, build_index
from c4c.search.index_dir import INDEX_FORMAT, INDEX_VERSION, read_manifest, settings_of
from c4c.search.settings import (INDEX_KINDS, PARAMS, IndexKindName, IndexSettings, auto_nlist, auto_pq_m,
                                 resolve_settings)

APPROXIMATE = [kind for kind in INDEX_KINDS if kind != "flat"]  # flat is the exact reference


@pytest.fixture(scope="module", autouse=True)
def one_faiss_thread():
    """faiss's OpenMP threads wait badly on a busy shared machine (20x slower builds); one thread keeps
    these small tests fast. The results do not depend on the thread count."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _random(n: int, dim: int, seed: int) -> np.ndarray:
    return _unit(np.random.default_rng(seed).standard_normal((n, dim)))


def _clustered(n: int, dim: int, centres: int, seed: int) -> np.ndarray:
    """Unit vectors around random centres (cosine to the centre about 0.7), like real embeddings."""
    rng = np.random.default_rng(seed)
    c = _random(centres, dim, seed + 1)
    noise = rng.standard_normal((n, dim)) / np.sqrt(dim)
    return _unit(c[rng.integers(0, centres, n)] + noise)


def _ids(n: int) -> list[str]:
    return [f"video{i}" for i in range(n)]


@pytest.fixture(scope="module")
def clustered_set():
    """12,000 vectors (enough to train ivfpq's 256-centroid codebooks) and 200 held-out queries."""
    x = _clustered(12_200, 32, centres=100, seed=0)
    return x[:12_000], x[12_000:]


@pytest.fixture(scope="module")
def built(clustered_set):
    """One in-memory index of each kind, with default settings, over the clustered set."""
    x, _ = clustered_set
    return {kind: VectorIndex.from_vectors(x, _ids(len(x)), IndexSettings(kind=kind)) for kind in INDEX_KINDS}


# --- references ------------------------------------------------------------------------------


def test_exact_topk_matches_a_full_sort_across_blocks():
    x, q = _random(300, 8, 0), _random(7, 8, 1)
    scores, rows = exact_topk(x, q, 5, block=64)
    full = q @ x.T
    expected = np.argsort(-full, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(full, expected, axis=1), rtol=1e-6)


def test_exact_topk_breaks_ties_by_lower_row():
    x = _unit(np.array([[1, 0], [0, 1], [1, 0], [1, 0], [0, 1]], dtype=np.float32))
    _, rows = exact_topk(x, np.array([[1.0, 0.0]], dtype=np.float32), 2, block=2)
    np.testing.assert_array_equal(rows, [[0, 2]])


def test_recall_counts_overlap_of_top_k_and_ignores_missing():
    approx = np.array([[1, 2, 3], [4, 5, -1]])
    exact = np.array([[3, 2, 9], [4, 6, 7]])
    assert recall_at_k(approx, exact, 3) == pytest.approx(3 / 6)  # 2 of 3, then 1 of 3
    assert recall_at_k(approx, exact, 1) == pytest.approx(1 / 2)  # 1 vs 3 misses, 4 vs 4 hits


def test_auto_parameters():
    assert auto_nlist(1_000_000) == 4096 and auto_nlist(100_000) == 1024
    assert auto_nlist(10_000) == 256  # 512 would leave fewer than 39 training vectors per list
    assert auto_pq_m(512) == 64 and auto_pq_m(32) == 4 and auto_pq_m(30) == 3


# --- exact search ------------------------------------------------------------------------------


def test_flat_search_equals_brute_force():
    x, q = _random(500, 16, 0), _random(20, 16, 1)
    index = VectorIndex.from_vectors(x, _ids(500), IndexSettings(kind="flat"))
    scores, ids = index.search(q, 10)
    exact_scores, rows = exact_topk(x, q, 10)
    assert ids == [[f"video{r}" for r in row] for row in rows]
    np.testing.assert_allclose(scores, exact_scores, atol=1e-6)


def test_scores_are_cosines_whatever_the_vector_and_query_lengths():
    x, q = _random(50, 8, 0), _random(3, 8, 1)
    index = VectorIndex.from_vectors(3.0 * x, _ids(50), IndexSettings())
    scores, ids = index.search(5.0 * q, 4)
    exact_scores, rows = exact_topk(x, q, 4)
    np.testing.assert_allclose(scores, exact_scores, atol=1e-6)
    assert ids == [[f"video{r}" for r in row] for row in rows]


def test_a_single_query_vector_is_one_query():
    x = _random(20, 8, 0)
    scores, ids = VectorIndex.from_vectors(x, _ids(20), IndexSettings()).search(x[3], 1)
    assert ids == [["video3"]] and scores.shape == (1, 1) and scores[0, 0] == pytest.approx(1.0, abs=1e-6)


def test_k_larger_than_the_collection_returns_every_video():
    x = _random(5, 8, 0)
    scores, ids = VectorIndex.from_vectors(x, _ids(5), IndexSettings()).search(_random(2, 8, 1), 10)
    assert scores.shape == (2, 5)
    assert [sorted(row) for row in ids] == [sorted(_ids(5))] * 2


# --- approximate kinds ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", APPROXIMATE)
def test_approximate_kind_reaches_high_recall_on_clustered_data_with_defaults(kind, built, clustered_set):
    x, q = clustered_set
    index = built[kind]
    assert index.kind == kind  # built as asked, not the small-collection fallback
    _, ids = index.search(q, 10)
    _, exact = exact_topk(x, q, 10)
    rows = np.array([[int(v[len("video"):]) for v in row] for row in ids])
    assert recall_at_k(rows, exact, 10) >= 0.95


def test_ivfflat_scanning_every_list_is_exact(built, clustered_set):
    x, q = clustered_set
    index = built["ivfflat"]
    index.set_search_params(nprobe=10_000)  # clipped to nlist
    try:
        assert index.settings.nprobe == index.settings.nlist
        _, ids = index.search(q[:20], 10)
        _, exact = exact_topk(x, q[:20], 10)
        assert ids == [[f"video{r}" for r in row] for row in exact]
    finally:
        index.set_search_params(nprobe=IndexSettings().nprobe or 16)


def test_ivfpq_reranking_recovers_what_the_codes_alone_miss(built, clustered_set):
    x, q = clustered_set
    codes_only = VectorIndex.from_vectors(x, _ids(len(x)), IndexSettings(kind="ivfpq", k_factor=0))
    assert codes_only.settings.nlist == built["ivfpq"].settings.nlist
    _, exact = exact_topk(x, q, 10)
    recall = {}
    for name, index in (("codes", codes_only), ("reranked", built["ivfpq"])):
        _, ids = index.search(q, 10)
        recall[name] = recall_at_k(np.array([[int(v[len("video"):]) for v in row] for row in ids]), exact, 10)
    assert 0.3 <= recall["codes"] < 0.9 and recall["reranked"] >= 0.95


def test_small_collection_falls_back_to_flat_with_a_warning(caplog):
    x = _random(500, 16, 0)
    with caplog.at_level(logging.WARNING, logger="c4c.search.index"):
        index = VectorIndex.from_vectors(x, _ids(500), IndexSettings(kind="ivfpq"))
    assert index.kind == "flat" and index.manifest["requested_kind"] == "ivfpq"
    assert "too few" in caplog.text
    assert resolve_settings(IndexSettings(kind="ivfflat"), 600, 16).kind == "flat"
    assert resolve_settings(IndexSettings(kind="ivfflat"), 700, 16).kind == "ivfflat"
    assert resolve_settings(IndexSettings(kind="hnsw"), 5, 16).kind == "hnsw"


def test_explicit_nlist_too_large_for_the_collection_is_an_error():
    with pytest.raises(C4CError, match="nlist=64 needs at least 2496 vectors"):
        VectorIndex.from_vectors(_random(1000, 16, 0), _ids(1000), IndexSettings(kind="ivfflat", nlist=64))


def test_hnsw_returns_k_results_even_above_ef_search():
    x = _random(300, 8, 0)
    index = VectorIndex.from_vectors(x, _ids(300), IndexSettings(kind="hnsw", ef_search=16))
    scores, ids = index.search(_random(3, 8, 1), 50)
    assert [len(row) for row in ids] == [50, 50, 50] and np.isfinite(scores).all()


# --- saving and reopening -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(INDEX_KINDS))
def test_saved_and_reopened_index_gives_identical_results(kind, built, clustered_set, tmp_path):
    _, q = clustered_set
    index = built[kind]
    before = index.search(q, 10)
    index.save(tmp_path / "idx")
    after = VectorIndex.open(tmp_path / "idx", device="cpu").search(q, 10)
    np.testing.assert_array_equal(before[0], after[0])
    assert before[1] == after[1]


def test_unusual_ids_round_trip(tmp_path):
    ids = ["a b", "ünïcødé", "视频", "tab\there", 'quote"s', "new\nline", "emoji 🎬", "  padded  ", "a/b\\c"]
    x = _random(len(ids), 8, 0)
    build_index(x, ids, IndexSettings(), tmp_path / "idx")
    index = VectorIndex.open(tmp_path / "idx", device="cpu")
    assert index.ids == ids
    _, found = index.search(x, 1)
    assert [row[0] for row in found] == ids


def test_manifest_describes_the_index(tmp_path, clustered_set):
    x, _ = clustered_set
    meta = {"embeddings": "/runs/a/EMB.h5", "run": "/runs/a"}
    build_index(x[:2000], _ids(2000), IndexSettings(kind="ivfflat"), tmp_path / "idx", meta=meta)
    manifest = read_manifest(tmp_path / "idx")
    assert manifest["format"] == INDEX_FORMAT == "c4c-index" and manifest["version"] == INDEX_VERSION == 2
    assert manifest["kind"] == "ivfflat" and manifest["count"] == 2000 and manifest["dim"] == 32
    assert manifest["metric"] == "ip" and manifest["normalised"] is True and manifest["meta"] == meta
    assert manifest["settings"]["nlist"] == auto_nlist(2000) == 32 and manifest["settings"]["nprobe"] == 16
    assert "faiss_version" in manifest and manifest["build_seconds"] >= 0
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == ["ids.json", "index.faiss", "index.json",
                                                                    "moments.json"]
    assert manifest["moments"] is False
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    assert VectorIndex.open(tmp_path / "idx", device="cpu").meta == meta


def test_progress_reports_training_and_adding():
    calls = []
    VectorIndex.from_vectors(_random(2000, 8, 0), _ids(2000), IndexSettings(kind="ivfflat"),
                             progress=lambda stage, done, total: calls.append((stage, done, total)))
    # 2000 vectors: 32 lists (2000 // 39 = 51 caps 4*sqrt(2000) ~ 179 to 32), trained on 39 * 32 = 1248 vectors
    assert calls[:2] == [("train", 0, 1248), ("train", 1248, 1248)] and calls[-1] == ("add", 2000, 2000)


def test_non_empty_folder_is_refused_unless_overwrite(tmp_path):
    x = _random(10, 8, 0)
    build_index(x, _ids(10), IndexSettings(), tmp_path / "idx")
    with pytest.raises(C4CError, match="not empty"):
        build_index(x[:5], _ids(5), IndexSettings(), tmp_path / "idx")
    build_index(x[:5], _ids(5), IndexSettings(), tmp_path / "idx", overwrite=True)
    assert VectorIndex.open(tmp_path / "idx", device="cpu").count == 5


def test_overwrite_never_replaces_a_folder_that_is_not_an_index(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "thesis.tex").write_text("keep me")
    with pytest.raises(C4CError, match="not a c4c index"):
        build_index(_random(10, 8, 0), _ids(10), IndexSettings(), tmp_path / "docs", overwrite=True)
    assert (tmp_path / "docs" / "thesis.tex").read_text() == "keep me"


def test_an_empty_existing_folder_is_used(tmp_path):
    (tmp_path / "idx").mkdir()
    build_index(_random(10, 8, 0), _ids(10), IndexSettings(), tmp_path / "idx")
    assert VectorIndex.open(tmp_path / "idx", device="cpu").count == 10


# --- validation of a saved index -----------------------------------------------------------------


def _edit_json(path, **changes):
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data), encoding="utf-8")


def _other_index_file(d):
    other = d.parent / "other"
    build_index(_random(6, 8, 1), _ids(6), IndexSettings(), other)
    (d / "index.faiss").write_bytes((other / "index.faiss").read_bytes())


CORRUPTIONS = {
    "manifest missing": (lambda d: (d / "index.json").unlink(), "index.json", "index.json is missing"),
    "not json": (lambda d: (d / "index.json").write_text("{oops"), "index.json", "unreadable index manifest"),
    "wrong format": (lambda d: _edit_json(d / "index.json", format="c4c-frames"), "index.json",
                     "not a c4c index manifest"),
    "newer version": (lambda d: _edit_json(d / "index.json", version=3), "index.json", "version 3 is not supported"),
    "unknown kind": (lambda d: _edit_json(d / "index.json", kind="lsh"), "index.json", "unknown index kind"),
    "ids missing": (lambda d: (d / "ids.json").unlink(), "ids.json", "id list is missing"),
    "ids count": (lambda d: (d / "ids.json").write_text('["a", "b"]'), "ids.json", "holds 2 ids, the manifest says 5"),
    "ids not strings": (lambda d: (d / "ids.json").write_text("[1, 2, 3, 4, 5]"), "ids.json", "list of strings"),
    "duplicate ids": (lambda d: (d / "ids.json").write_text('["a", "b", "c", "b", "e"]'), "ids.json",
                      "duplicate id 'b' at rows 1 and 3"),
    "moments missing": (lambda d: (d / "moments.json").unlink(), "moments.json", "moments.json is missing"),
    "moments count": (lambda d: _edit_json(d / "moments.json", row_video=[0, 1], start=[0, 0], end=[1, 1]),
                      "moments.json", "row table has 2 rows, the index 5"),
    "faiss missing": (lambda d: (d / "index.faiss").unlink(), "index.faiss", "faiss index file is missing"),
    "faiss corrupt": (lambda d: (d / "index.faiss").write_bytes(b"garbage"), "index.faiss", "unreadable faiss index"),
    "faiss count": (_other_index_file, "index.faiss", "holds 6 vectors"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_opening_a_broken_index_names_the_file(case, tmp_path):
    corrupt, name, message = CORRUPTIONS[case]
    d = tmp_path / "idx"
    build_index(_random(5, 8, 0), _ids(5), IndexSettings(), d)
    corrupt(d)
    with pytest.raises(C4CError, match=message) as err:
        VectorIndex.open(d, device="cpu")
    assert err.value.path == str(d / name)


def test_a_version_1_folder_still_opens_with_one_row_per_video(tmp_path):
    d = tmp_path / "idx"
    x = _random(5, 8, 0)
    build_index(x, _ids(5), IndexSettings(), d)
    (d / "moments.json").unlink()  # what c4c wrote before moments
    _edit_json(d / "index.json", version=1)
    index = VectorIndex.open(d, device="cpu")
    assert index.rows.videos == _ids(5) and np.isnan(index.rows.start).all()
    _, found = index.search(x, 1)
    assert [row[0] for row in found] == _ids(5)


def test_opening_a_missing_folder_is_an_error(tmp_path):
    with pytest.raises(C4CError, match="index folder not found"):
        VectorIndex.open(tmp_path / "nope")


# --- input validation ---------------------------------------------------------------------------


@pytest.mark.parametrize("vectors, ids, message", [
    (np.zeros((0, 8), np.float32), [], "empty"),
    (np.ones(8, np.float32), ["a"], "2-D"),
    (np.array([[1.0, np.nan], [1.0, 0.0]], np.float32), ["a", "b"], "NaN"),
    (np.array([[1.0, 0.0], [0.0, 0.0]], np.float32), ["a", "b"], "all-zero"),
    (np.eye(2, dtype=np.float32), ["a"], "1 ids for 2 vectors"),
    (np.eye(2, dtype=np.float32), ["a", "a"], "duplicate id 'a'"),
    (np.eye(2, dtype=np.float32), ["a", ""], "non-empty strings"),
    (np.array([["x"]]), ["a"], "must be numbers"),
])
def test_bad_collections_are_refused(vectors, ids, message, tmp_path):
    with pytest.raises(C4CError, match=message):
        build_index(vectors, ids, IndexSettings(), tmp_path / "idx")
    assert not (tmp_path / "idx").exists()


@pytest.mark.parametrize("settings, message", [
    (IndexSettings(kind="annoy"), "unknown index kind 'annoy'"),
    (IndexSettings(kind="ivfpq", pq_m=5), "pq_m=5 does not divide the dimension 32"),
    (IndexSettings(kind="ivfflat", nprobe=0), "nprobe must be at least 1"),
    (IndexSettings(kind="hnsw", hnsw_m=0), "hnsw_m must be at least 1"),
])
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(C4CError, match=message):
        resolve_settings(settings, 20_000, 32)


def test_query_of_the_wrong_dimension_is_an_error():
    index = VectorIndex.from_vectors(_random(10, 8, 0), _ids(10), IndexSettings())
    with pytest.raises(C4CError, match="queries have dimension 16, the index has 8"):
        index.search(_random(2, 16, 1), 3)


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_k_must_be_a_positive_whole_number(k):
    index = VectorIndex.from_vectors(_random(10, 8, 0), _ids(10), IndexSettings())
    with pytest.raises(C4CError, match="k must be"):
        index.search(_random(1, 8, 1), k)


def test_nan_query_is_an_error():
    index = VectorIndex.from_vectors(_random(10, 8, 0), _ids(10), IndexSettings())
    with pytest.raises(C4CError, match="NaN"):
        index.search(np.full((1, 8), np.nan, np.float32), 3)


def test_gpu_device_without_a_gpu_is_an_error(tmp_path):
    import faiss

    if faiss.get_num_gpus() > 0:
        pytest.skip("this machine has a GPU")
    build_index(_random(5, 8, 0), _ids(5), IndexSettings(), tmp_path / "idx")
    with pytest.raises(C4CError, match="no GPU"):
        VectorIndex.open(tmp_path / "idx", device="gpu")
    assert not VectorIndex.open(tmp_path / "idx", device="auto").on_gpu


def test_an_index_that_cannot_move_to_the_gpu_stays_on_the_cpu(tmp_path, monkeypatch, caplog):
    from c4c.search import index as index_module

    build_index(_random(5, 8, 0), _ids(5), IndexSettings(), tmp_path / "idx")
    monkeypatch.setattr(index_module, "_gpu_count", lambda: 1)
    moves = []
    monkeypatch.setattr(index_module, "_to_gpu", lambda index, kind: moves.append(kind))  # returns None: failed
    index = VectorIndex.open(tmp_path / "idx", device="auto")
    assert moves == ["flat"] and not index.on_gpu
    assert index.search(_random(1, 8, 0), 1)[1] == [["video0"]]


@pytest.mark.parametrize("kind", list(INDEX_KINDS))
def test_only_the_kinds_faiss_has_on_the_gpu_are_moved_there(kind, built, tmp_path, monkeypatch):
    from c4c.search import index as index_module

    built[kind].save(tmp_path / "idx")
    monkeypatch.setattr(index_module, "_gpu_count", lambda: 1)
    moves = []
    monkeypatch.setattr(index_module, "_to_gpu", lambda index, kind: moves.append(kind))
    assert not VectorIndex.open(tmp_path / "idx", device="gpu").on_gpu
    assert moves == ([kind] if INDEX_KINDS[kind].gpu else [])


# --- the table of kinds ---------------------------------------------------------------------------


def test_the_command_line_offers_the_kinds_of_the_table():
    assert get_args(IndexKindName) == tuple(INDEX_KINDS)


def test_every_setting_is_read_by_some_kind_and_every_search_parameter_is_a_setting():
    read = {name for kind in INDEX_KINDS.values() for name in kind.params}
    assert read | {"train_size", "seed"} == set(PARAMS)
    assert all(set(kind.search) <= set(kind.params) for kind in INDEX_KINDS.values())


@pytest.mark.parametrize("kind", list(INDEX_KINDS))
def test_each_kind_is_described_by_its_parameters(kind, built):
    s = built[kind].settings
    assert s.describe() == " ".join([kind] + [f"{name}={getattr(s, name)}" for name in INDEX_KINDS[kind].params])


@pytest.mark.parametrize("kind", list(INDEX_KINDS))
def test_only_the_kinds_that_train_report_training(kind, clustered_set):
    x, _ = clustered_set
    stages = set()
    VectorIndex.from_vectors(x[:2000], _ids(2000), IndexSettings(kind=kind, pq_bits=4),
                             progress=lambda stage, done, total: stages.add(stage))
    assert stages == ({"train", "add"} if INDEX_KINDS[kind].trains else {"add"})


@pytest.mark.parametrize("kind", list(INDEX_KINDS))
def test_search_parameters_change_only_what_a_kind_reads_when_searched(kind, built):
    index = built[kind]
    before = asdict(index.settings)
    asked = {"nprobe": 3, "ef_search": 40, "k_factor": 5}
    index.set_search_params(**asked)
    try:
        changed = {name for name in before if getattr(index.settings, name) != before[name]}
        assert changed == set(INDEX_KINDS[kind].search) & set(asked)
    finally:
        index.set_search_params(**{name: before[name] for name in INDEX_KINDS[kind].search})


@pytest.mark.parametrize("kind", list(INDEX_KINDS))
def test_every_parameter_of_a_kind_is_accepted_and_an_unknown_one_is_a_user_error(kind):
    params = {f.name: f.default for f in fields(IndexSettings) if f.name in INDEX_KINDS[kind].params}
    assert settings_of(kind, params) == IndexSettings(kind=kind, **params)
    with pytest.raises(C4CError, match="unknown index parameter 'nprobes'"):
        settings_of(kind, {"nprobes": 4})
