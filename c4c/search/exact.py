"""Exact references for tests and benchmarks: brute-force top-k in NumPy and recall@k of an approximate
search against it."""

from __future__ import annotations

import numpy as np


def exact_topk(vectors: np.ndarray, queries: np.ndarray, k: int, *, block: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-k by inner product in NumPy: scores [Q, k] float32 and rows [Q, k] int64,
    best first, ties broken by the lower row. ``k`` is clipped to N. Vectors are used as given."""
    x = np.asarray(vectors, dtype=np.float32)
    q = np.asarray(queries, dtype=np.float32)
    n, nq = len(x), len(q)
    k = min(int(k), n)
    if k < 1:
        raise ValueError("exact_topk needs k >= 1 and a non-empty collection")
    block = block or max(1024, (1 << 26) // max(1, nq))  # ~256 MB of scores per block
    best_s = np.full((nq, 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((nq, 0), dtype=np.int64)
    for start in range(0, n, block):
        sim = q @ x[start:start + block].T                                  # [Q, B]
        cand_s = np.concatenate([best_s, sim], axis=1)
        cand_i = np.concatenate([best_i, np.broadcast_to(np.arange(start, start + sim.shape[1]), sim.shape)], axis=1)
        if cand_s.shape[1] > k:
            part = np.argpartition(-cand_s, k - 1, axis=1)[:, :k]
            # argpartition may cut inside a tie at the k-th score; keep the lower rows of that tie
            kth = np.take_along_axis(cand_s, part, axis=1).min(axis=1, keepdims=True)
            above = cand_s > kth
            tie_rank = np.cumsum(cand_s == kth, axis=1) * (cand_s == kth)
            need = k - above.sum(axis=1, keepdims=True)
            keep = above | ((tie_rank > 0) & (tie_rank <= need))
            best_s = cand_s[keep].reshape(nq, k)
            best_i = cand_i[keep].reshape(nq, k)
        else:
            best_s, best_i = cand_s, np.ascontiguousarray(cand_i)
    order = np.lexsort((best_i, -best_s)) if nq else np.zeros((0, k), dtype=np.int64)
    return np.take_along_axis(best_s, order, axis=1), np.take_along_axis(best_i, order, axis=1)


def recall_at_k(approx_idx: np.ndarray, exact_idx: np.ndarray, k: int) -> float:
    """Mean over queries of |approx top-k ∩ exact top-k| / k (rows; -1 in ``approx_idx`` never matches)."""
    a = np.asarray(approx_idx)
    e = np.asarray(exact_idx)
    if a.ndim != 2 or e.ndim != 2 or len(a) != len(e):
        raise ValueError(f"recall_at_k needs two [Q, k] arrays of the same Q, got {a.shape} and {e.shape}")
    if k < 1 or a.shape[1] < k or e.shape[1] < k:
        raise ValueError(f"recall_at_k: k={k} but the arrays have {a.shape[1]} and {e.shape[1]} columns")
    if len(a) == 0:
        return 0.0
    hits = [len((set(row_a[:k].tolist()) - {-1}) & set(row_e[:k].tolist())) for row_a, row_e in zip(a, e)]
    return float(np.sum(hits)) / (k * len(a))
