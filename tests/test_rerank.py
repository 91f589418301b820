"""Re-ranking: dual softmax, QB-Norm, Sinkhorn (full and bank bias), against hand-worked cases."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from c4c.errors import C4CError
from c4c.metrics.rerank import (
    RERANKERS,
    TRANSDUCTIVE,
    QBNorm,
    apply_bias,
    dual_softmax,
    qb_norm,
    rerank,
    sinkhorn,
    sinkhorn_bank_bias,
)

# Video 0 is a hub: it is the raw best match of all three queries, though query i describes video i.
HUB_SIM = np.array([
    [90.0, 80.0, 10.0],
    [85.0, 80.0, 20.0],
    [80.0, 10.0, 75.0],
], dtype=np.float32)


def random_sim(rows: int, cols: int, seed: int = 0, scale: float = 3.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((rows, cols)) * scale).astype(np.float32)


def py_log_sum_exp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def py_sinkhorn_log(s: list[list[float]], eps: float, iters: int, v: list[float]) -> tuple[list, list]:
    """Plain-Python Sinkhorn: returns (u, v) after ``iters`` rounds from the given ``v``."""
    k = [[math.exp(x / eps) for x in row] for row in s]
    u = [1.0] * len(s)
    for _ in range(iters):
        u = [1.0 / sum(k[i][j] * v[j] for j in range(len(v))) for i in range(len(s))]
        v = [1.0 / sum(k[i][j] * u[i] for i in range(len(s))) for j in range(len(v))]
    return u, v


# --------------------------------------------------------------------------- dual softmax

def test_dual_softmax_matches_hand_computed_2x2():
    s = [[2.0, 1.0], [0.5, 3.0]]
    out = dual_softmax(np.array(s, dtype=np.float32), temperature=1.0)
    for i in range(2):
        for j in range(2):
            prior = math.exp(s[i][j]) / (math.exp(s[0][j]) + math.exp(s[1][j]))
            assert out[i, j] == pytest.approx(s[i][j] * prior, rel=1e-6)


def test_dual_softmax_temperature_divides_the_scores_inside_the_softmax():
    s = [[0.2, 0.1], [0.3, 0.25]]
    out = dual_softmax(np.array(s), temperature=0.01)
    prior_00 = math.exp(20.0) / (math.exp(20.0) + math.exp(30.0))
    assert out[0, 0] == pytest.approx(0.2 * prior_00, rel=1e-9)
    assert out.dtype == np.float64  # float64 in, float64 out


def test_dual_softmax_takes_the_hub_away_from_queries_that_are_not_its_own():
    assert (HUB_SIM.argmax(axis=1) == 0).all()
    out = dual_softmax(HUB_SIM)
    np.testing.assert_array_equal(out.argmax(axis=1), [0, 1, 2])


def test_dual_softmax_chunked_equals_one_block():
    sim = random_sim(37, 23)
    whole = dual_softmax(sim)
    for rows in (1, 4, 36):
        np.testing.assert_allclose(dual_softmax(sim, chunk_rows=rows), whole, rtol=1e-6, atol=1e-7)


def test_dual_softmax_in_place_equals_a_new_array():
    sim = random_sim(20, 9, seed=1)
    expected = dual_softmax(sim)
    result = dual_softmax(sim, out=sim, chunk_rows=3)
    assert result is sim
    np.testing.assert_allclose(sim, expected, rtol=1e-6, atol=1e-7)


def test_rerankers_accept_a_transposed_view_without_a_copy():
    sim = random_sim(13, 8, seed=17)
    for method in ("dsl", "sinkhorn"):
        np.testing.assert_array_equal(rerank(method, sim.T, chunk_rows=3),
                                      rerank(method, np.ascontiguousarray(sim.T), chunk_rows=3))


def test_dual_softmax_in_place_needs_no_full_float64_copy():
    sim = random_sim(400, 300, seed=2)
    tracemalloc.start()
    try:
        dual_softmax(sim, out=sim, chunk_rows=10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A float64 copy of sim alone would be 2 * sim.nbytes; row blocks of 10 rows stay far below.
    assert peak < sim.nbytes / 2


def test_dual_softmax_is_finite_on_large_logit_scaled_scores():
    sim = (100.0 * np.random.default_rng(3).uniform(0.1, 0.5, (50, 40))).astype(np.float32)
    sim[:, 0] = 60.0  # a strong hub column
    out = dual_softmax(sim, temperature=0.01)  # exponents up to 6000
    assert np.isfinite(out).all()


# --------------------------------------------------------------------------- QB-Norm

BANK = [[0.9, 0.1, 0.2], [0.8, 0.3, 0.1]]  # both bank queries retrieve video 0: hubs = {0}
QUERIES = [[0.7, 0.6, 0.1], [0.2, 0.5, 0.4]]  # query 0's best is the hub, query 1's is not


def test_qb_norm_matches_hand_computed_case():
    out = qb_norm(np.array(QUERIES), np.array(BANK), beta=1.0)
    for j in range(3):
        log_norm = math.log(math.exp(BANK[0][j]) + math.exp(BANK[1][j]))
        assert out[0, j] == pytest.approx(QUERIES[0][j] - log_norm, rel=1e-12)
    np.testing.assert_array_equal(out[1], QUERIES[1])
    assert out[0].argmax() == 1  # the hub lost its first place


def test_qb_norm_ranks_rows_as_the_exponential_inverted_softmax():
    rng = np.random.default_rng(4)
    bank, sim = rng.uniform(-0.2, 0.5, (4, 20)), rng.uniform(-0.2, 0.5, (30, 20))
    out = qb_norm(sim, bank, beta=20.0)
    inverted = np.exp(20.0 * sim) / np.exp(20.0 * bank).sum(axis=0)
    hub_rows = np.isin(sim.argmax(axis=1), np.unique(bank.argmax(axis=1)))
    assert hub_rows.any() and not hub_rows.all()
    np.testing.assert_allclose(out[hub_rows], np.log(inverted[hub_rows]), rtol=1e-10)
    np.testing.assert_array_equal(out[~hub_rows], sim[~hub_rows])


def test_qb_norm_changes_only_rows_whose_best_video_is_a_hub():
    rng = np.random.default_rng(5)
    bank, sim = rng.standard_normal((5, 10)), rng.standard_normal((40, 10))
    hubs = {int(j) for j in bank.argmax(axis=1)}
    assert 0 < np.isin(sim.argmax(axis=1), list(hubs)).sum() < sim.shape[0]
    out = qb_norm(sim, bank, beta=2.0)
    for i in range(sim.shape[0]):
        changed = not np.array_equal(out[i], sim[i])
        assert changed == (int(sim[i].argmax()) in hubs)


def test_qb_norm_k_takes_the_union_of_each_bank_rows_top_k():
    bank = np.array([[0.9, 0.8, 0.1, 0.0], [0.1, 0.2, 0.7, 0.0]])
    assert np.flatnonzero(QBNorm(bank, k=1).is_hub).tolist() == [0, 2]
    assert np.flatnonzero(QBNorm(bank, k=2).is_hub).tolist() == [0, 1, 2]


def test_qbnorm_apply_on_single_rows_equals_the_whole_matrix():
    rng = np.random.default_rng(6)
    bank = rng.standard_normal((6, 12)).astype(np.float32)
    sim = rng.standard_normal((20, 12)).astype(np.float32)
    norm = QBNorm(bank, beta=3.0)
    whole = qb_norm(sim, bank, beta=3.0)
    assert 0 < norm.normalised_rows(sim).sum() < sim.shape[0]
    rows = np.stack([norm.apply(sim[i]) for i in range(sim.shape[0])])
    np.testing.assert_array_equal(rows, whole)
    np.testing.assert_array_equal(norm.normalised_rows(sim), ~np.all(whole == sim, axis=1))


def test_qb_norm_chunked_equals_one_block():
    rng = np.random.default_rng(7)
    bank, sim = rng.standard_normal((33, 9)), rng.standard_normal((17, 9))
    whole = qb_norm(sim, bank, beta=4.0)
    np.testing.assert_allclose(qb_norm(sim, bank, beta=4.0, chunk_rows=2), whole, rtol=1e-12)


def test_qb_norm_is_finite_where_the_exponentials_overflow():
    rng = np.random.default_rng(8)
    bank = (100.0 * rng.uniform(0.1, 0.5, (40, 10))).astype(np.float32)
    sim = (100.0 * rng.uniform(0.1, 0.5, (15, 10))).astype(np.float32)
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.exp(20.0 * bank)).all()  # the literal formula overflows
    out = qb_norm(sim, bank, beta=20.0)
    assert np.isfinite(out).all()


def test_qb_norm_does_not_modify_its_input():
    sim = np.array(QUERIES)
    qb_norm(sim, np.array(BANK), beta=1.0)
    np.testing.assert_array_equal(sim, QUERIES)


# --------------------------------------------------------------------------- Sinkhorn

def test_sinkhorn_one_round_matches_hand_computed_2x2():
    e = math.e
    out = sinkhorn(np.array([[2.0, 0.0], [1.0, 0.0]]), epsilon=1.0, iters=1)
    u = [1 / (e ** 2 + 1), 1 / (e + 1)]  # u = 1 / (K v) with v = 1
    v = [1 / (e ** 2 * u[0] + e * u[1]), 1 / (u[0] + u[1])]  # v = 1 / (K^T u)
    s = [[2.0, 0.0], [1.0, 0.0]]
    for i in range(2):
        for j in range(2):
            assert out[i, j] == pytest.approx(math.log(u[i]) + s[i][j] + math.log(v[j]), rel=1e-12)


def test_sinkhorn_matches_plain_python_iterations_with_epsilon():
    s = [[0.3, 0.1, 0.2], [0.25, 0.05, 0.0], [0.1, 0.4, 0.35]]
    u, v = py_sinkhorn_log(s, 0.1, 3, [1.0, 1.0, 1.0])
    out = sinkhorn(np.array(s), epsilon=0.1, iters=3)
    expected = [[math.log(u[i]) + s[i][j] / 0.1 + math.log(v[j]) for j in range(3)] for i in range(3)]
    np.testing.assert_allclose(out, expected, rtol=1e-10)


def test_sinkhorn_output_is_nearly_doubly_stochastic():
    out = sinkhorn(random_sim(6, 6, seed=9, scale=1.0), epsilon=1.0, iters=300)
    p = np.exp(out.astype(np.float64))
    np.testing.assert_allclose(p.sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)


def test_sinkhorn_chunked_equals_one_block():
    sim = random_sim(29, 31, seed=10)
    whole = sinkhorn(sim, iters=5)
    for rows in (1, 7):
        np.testing.assert_allclose(sinkhorn(sim, iters=5, chunk_rows=rows), whole, rtol=1e-5, atol=1e-4)


def test_sinkhorn_in_place_equals_a_new_array():
    sim = random_sim(15, 11, seed=16)
    expected = sinkhorn(sim)
    assert sinkhorn(sim, out=sim, chunk_rows=4) is sim
    np.testing.assert_allclose(sim, expected, rtol=1e-5, atol=1e-4)


def test_sinkhorn_moves_the_hub_away_from_other_queries():
    np.testing.assert_array_equal(sinkhorn(HUB_SIM, iters=10).argmax(axis=1), [0, 1, 2])


def test_sinkhorn_is_finite_on_large_logit_scaled_scores():
    sim = (100.0 * np.random.default_rng(11).uniform(0.1, 0.5, (30, 30))).astype(np.float32)
    out = sinkhorn(sim, epsilon=0.01, iters=4)  # exponents up to 5000
    assert np.isfinite(out).all()


def test_sinkhorn_bank_bias_matches_plain_python_iterations():
    bank = [[0.9, 0.1, 0.2], [0.8, 0.3, 0.1]]
    first_v = [1.0 / sum(math.exp(bank[b][j]) for b in range(2)) for j in range(3)]
    _, v = py_sinkhorn_log(bank, 1.0, 2, first_v)
    logs = [math.log(x) for x in v]
    expected = [x - py_log_sum_exp(logs) for x in logs]
    np.testing.assert_allclose(sinkhorn_bank_bias(np.array(bank), epsilon=1.0, iters=2), expected,
                               rtol=1e-10)


def test_sinkhorn_bank_bias_is_in_the_units_of_the_sims():
    bank = random_sim(20, 6, seed=12, scale=0.1)
    unit = sinkhorn_bank_bias(100.0 * bank, epsilon=1.0)
    cosine = sinkhorn_bank_bias(bank, epsilon=0.01)
    np.testing.assert_allclose(100.0 * cosine, unit, rtol=1e-4, atol=1e-4)


def test_sinkhorn_bank_bias_chunked_equals_one_block_and_is_finite_at_scale():
    bank = (100.0 * np.random.default_rng(13).uniform(0.1, 0.5, (41, 12))).astype(np.float32)
    whole = sinkhorn_bank_bias(bank)
    np.testing.assert_allclose(sinkhorn_bank_bias(bank, chunk_rows=5), whole, rtol=1e-6, atol=1e-6)
    assert np.isfinite(whole).all()


def test_apply_bias_adds_one_value_per_video_column():
    out = apply_bias(np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32), np.array([0.5, -1.0]))
    np.testing.assert_array_equal(out, [[1.5, 1.0], [3.5, 3.0]])
    assert out.dtype == np.float32


# --------------------------------------------------------------------------- registry and errors

def test_registry_names_and_transductive_labels():
    assert RERANKERS == ("none", "dsl", "qbnorm", "sinkhorn")
    assert TRANSDUCTIVE == {"dsl", "sinkhorn"}


def test_rerank_dispatches_with_parameters():
    sim = random_sim(10, 7, seed=14)
    bank = random_sim(15, 7, seed=15)
    assert rerank("none", sim) is sim
    np.testing.assert_array_equal(rerank("dsl", sim, temperature=2.0), dual_softmax(sim, temperature=2.0))
    np.testing.assert_array_equal(rerank("qbnorm", sim, bank_sim=bank, beta=0.5, k=2),
                                  qb_norm(sim, bank, beta=0.5, k=2))
    np.testing.assert_array_equal(rerank("sinkhorn", sim, epsilon=2.0, iters=3),
                                  sinkhorn(sim, epsilon=2.0, iters=3))


def test_rerank_rejects_unknown_method():
    with pytest.raises(C4CError, match="unknown re-ranking method 'softmax'.*dsl"):
        rerank("softmax", HUB_SIM)


def test_rerank_qbnorm_needs_a_bank():
    with pytest.raises(C4CError, match="qbnorm needs a query bank"):
        rerank("qbnorm", HUB_SIM)


def test_rerank_rejects_a_bank_scored_against_another_gallery():
    with pytest.raises(C4CError, match="bank_sim has 4 columns but sim has 3 videos"):
        rerank("qbnorm", HUB_SIM, bank_sim=np.zeros((5, 4)))


def test_rerank_rejects_unknown_parameters():
    with pytest.raises(C4CError, match="unknown parameter.*beta.*'dsl'"):
        rerank("dsl", HUB_SIM, beta=3.0)


@pytest.mark.parametrize("bad", [np.zeros(3), np.zeros((0, 3)), np.zeros((2, 2, 2))])
def test_rerankers_reject_non_matrices(bad):
    with pytest.raises(C4CError, match="sim"):
        dual_softmax(bad)


def test_rerankers_reject_non_finite_scores():
    sim = HUB_SIM.copy()
    sim[1, 2] = np.nan
    with pytest.raises(C4CError, match="non-finite values \\(first in row 1\\)"):
        dual_softmax(sim)
    with pytest.raises(C4CError, match="non-finite"):
        sinkhorn(sim)
    with pytest.raises(C4CError, match="non-finite"):
        qb_norm(sim, HUB_SIM)


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": 0.0}, "temperature must be a positive"),
    ({"temperature": float("inf")}, "temperature must be a positive"),
    ({"chunk_rows": 0}, "chunk_rows must be a positive integer"),
])
def test_dual_softmax_rejects_bad_parameters(kwargs, message):
    with pytest.raises(C4CError, match=message):
        dual_softmax(HUB_SIM, **kwargs)


def test_qbnorm_rejects_bad_k_beta_and_row_width():
    with pytest.raises(C4CError, match="k \\(4\\) is larger than the gallery"):
        QBNorm(HUB_SIM, k=4)
    with pytest.raises(C4CError, match="beta must be a positive"):
        QBNorm(HUB_SIM, beta=-1.0)
    with pytest.raises(C4CError, match="query rows have 2 columns"):
        QBNorm(HUB_SIM).apply(np.zeros(2))


def test_sinkhorn_rejects_zero_iterations_and_bias_of_wrong_length():
    with pytest.raises(C4CError, match="iters must be an integer >= 1"):
        sinkhorn(HUB_SIM, iters=0)
    with pytest.raises(C4CError, match="one value per video \\(3\\)"):
        apply_bias(HUB_SIM, np.zeros(2))


def test_out_of_the_wrong_shape_is_rejected():
    with pytest.raises(C4CError, match="out must be a float array of shape"):
        dual_softmax(HUB_SIM, out=np.empty((2, 3), dtype=np.float32))
