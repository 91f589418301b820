"""Inference-time re-ranking of similarity matrices: dual softmax, QB-Norm and Sinkhorn.

Every function takes ``sim: [Nq, Ng]`` with text queries as rows and gallery videos as columns (for
video-to-text, pass ``sim.T``) and returns a matrix whose rows rank the gallery; rows are ranked on
their own, so values need not be comparable across rows. Definitions follow spec/landscape.md
section 2.

Scale of the inputs: c4c's similarity matrices are logit-scaled, i.e. cosine similarity times
``exp(logit_scale)`` (about 100 after training), as the reference CLIP4Clip computes them. The
defaults of :func:`dual_softmax`, :func:`sinkhorn` and :func:`sinkhorn_bank_bias` assume that
scale; for raw cosine similarities divide their temperature by 100. QB-Norm's ``beta`` is the
paper's value for cosine similarities (see :func:`qb_norm`).

Two methods are *transductive* (:data:`TRANSDUCTIVE`): they look at the whole test query set, which a
deployed search never has, so their numbers must be labelled as such. QB-Norm and the Sinkhorn bank
bias only use a query bank (e.g. training captions) and work one query at a time.

Memory: each function streams over blocks of rows, so the scratch space is a few float64 blocks of
``chunk_rows`` rows (about 64 MiB by default) plus ``[Ng]`` vectors, never a float64 copy of ``sim``.
"""

from __future__ import annotations

import inspect
import logging
import math

import numpy as np

from c4c import choices
from c4c.errors import C4CError

log = logging.getLogger(__name__)

RERANKERS = ("none",) + choices.RERANKERS
"""Methods accepted by :func:`rerank` (``none``: the scores as they are)."""

TRANSDUCTIVE = frozenset({"dsl", "sinkhorn"})
"""Methods that use the whole test query set at once (label their results as transductive)."""

_BLOCK_BYTES = 64 << 20  # float64 scratch of one row block


# --------------------------------------------------------------------------- helpers

def _as_matrix(sim: np.ndarray, what: str) -> np.ndarray:
    """A non-empty 2-D floating array (float arrays kept as they are, others as float32)."""
    sim = np.asarray(sim)
    if sim.ndim != 2:
        raise C4CError(f"{what} must be a 2-D matrix, got shape {sim.shape}")
    if 0 in sim.shape:
        raise C4CError(f"{what} is empty (shape {sim.shape})")
    if not np.issubdtype(sim.dtype, np.floating):
        sim = sim.astype(np.float32)
    return sim


def _block_rows(n_cols: int, chunk_rows: int | None) -> int:
    if chunk_rows is None:
        return max(1, _BLOCK_BYTES // (8 * n_cols))
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1:
        raise C4CError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    return int(chunk_rows)


def _positive(value: float, what: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise C4CError(f"{what} must be a positive number, got {value!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise C4CError(f"{what} must be a positive finite number, got {value!r}")
    return value


def _count(value: int, what: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise C4CError(f"{what} must be an integer >= {low}, got {value!r}")
    return int(value)


def _block(sim: np.ndarray, start: int, stop: int, scale: float, what: str) -> np.ndarray:
    """``scale * sim[start:stop]`` as a fresh float64 block; non-finite entries are an error."""
    block = sim[start:stop].astype(np.float64)
    if not np.isfinite(block).all():
        bad = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
        raise C4CError(f"{what} holds non-finite values (first in row {bad})",
                       hint="re-ranking needs finite scores; drop padded or masked rows first")
    block *= scale
    return block


def _output(sim: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    if out is None:
        return np.empty_like(sim)
    if not isinstance(out, np.ndarray) or out.shape != sim.shape or not np.issubdtype(out.dtype, np.floating):
        raise C4CError(f"out must be a float array of shape {sim.shape}")
    return out


def _column_logsumexp(sim: np.ndarray, scale: float, chunk: int, what: str,
                      row_bias: np.ndarray | None = None) -> np.ndarray:
    """``[Ng]`` float64: ``log sum_i exp(scale * sim[i, j] + row_bias[i])``, one row block at a time.

    Keeps a running column maximum and a sum of exponentials relative to it (rescaled whenever the
    maximum grows), so no exponential overflows.
    """
    n_rows, n_cols = sim.shape
    top = np.full(n_cols, -np.inf)
    total = np.zeros(n_cols)
    for start in range(0, n_rows, chunk):
        block = _block(sim, start, start + chunk, scale, what)
        if row_bias is not None:
            block += row_bias[start:start + chunk, None]
        new_top = np.maximum(top, block.max(axis=0))
        total *= np.exp(top - new_top)
        block -= new_top
        np.exp(block, out=block)
        total += block.sum(axis=0)
        top = new_top
    return top + np.log(total)


def _row_logsumexp(sim: np.ndarray, scale: float, chunk: int, what: str,
                   col_bias: np.ndarray) -> np.ndarray:
    """``[Nq]`` float64: ``log sum_j exp(scale * sim[i, j] + col_bias[j])``."""
    parts = []
    for start in range(0, sim.shape[0], chunk):
        block = _block(sim, start, start + chunk, scale, what)
        block += col_bias
        top = block.max(axis=1, keepdims=True)
        block -= top
        np.exp(block, out=block)
        parts.append(top[:, 0] + np.log(block.sum(axis=1)))
    return np.concatenate(parts)


# --------------------------------------------------------------------------- dual softmax

def dual_softmax(sim: np.ndarray, temperature: float = 1.0, *, out: np.ndarray | None = None,
                 chunk_rows: int | None = None) -> np.ndarray:
    """Dual softmax (DSL, Cheng et al. 2021): ``S' = S * softmax(S / temperature, axis=0)``.

    The softmax runs down each column, over all test queries: a video that scores high for many
    queries (a hub) is shared out among them. Transductive: it needs the whole query set.

    ``temperature=1.0`` is for c4c's logit-scaled sims (cosine x ~100): ``softmax(S)`` is then the
    ``softmax(100 * cos)`` that CLIP-ViP and T-MASS apply to cosine sims, TS2-Net's form, and the
    temperature the CAMoE author recommends at inference. For raw cosine sims pass ``0.01``.
    Note ``S * P`` keeps the sign of ``S``: a negative score gets more negative as its prior grows.

    Two passes over row blocks (column log-sum-exp, then rescaling) keep the extra memory to a few
    blocks: a 50k x 50k float32 matrix needs no second full copy when ``out=sim`` (in place) or a
    preallocated ``out``. Returns ``out`` (a new array of ``sim``'s dtype by default).
    """
    sim = _as_matrix(sim, "sim")
    temperature = _positive(temperature, "temperature")
    chunk = _block_rows(sim.shape[1], chunk_rows)
    out = _output(sim, out)
    log_norm = _column_logsumexp(sim, 1.0 / temperature, chunk, "sim")
    for start in range(0, sim.shape[0], chunk):
        scores = sim[start:start + chunk].astype(np.float64)
        prior = scores / temperature
        prior -= log_norm
        np.exp(prior, out=prior)
        prior *= scores
        out[start:start + chunk] = prior
    return out


# --------------------------------------------------------------------------- QB-Norm

class QBNorm:
    """QB-Norm's dynamic inverted softmax (Bogolin et al., CVPR 2022), prepared from a query bank.

    ``bank_sim: [Nb, Ng]`` scores bank queries (e.g. training captions) against the gallery. Built
    once, it holds the per-video normaliser ``log_norm[j] = logsumexp_b(beta * bank_sim[b, j])`` and
    the hub set ``is_hub[j]`` (videos among the top-``k`` of some bank query; ties among the top
    scores of a bank row are broken by column index when ``k == 1``, arbitrarily otherwise). Then
    :meth:`apply` normalises any batch of query rows, so it serves search over an index too, as long
    as the caller has each query's full score row.
    """

    def __init__(self, bank_sim: np.ndarray, beta: float = 20.0, k: int = 1, *,
                 chunk_rows: int | None = None) -> None:
        bank = _as_matrix(bank_sim, "bank_sim")
        self.beta = _positive(beta, "beta")
        self.k = _count(k, "k")
        n_videos = bank.shape[1]
        if self.k > n_videos:
            raise C4CError(f"k ({self.k}) is larger than the gallery ({n_videos} videos)")
        self.chunk_rows = chunk_rows
        chunk = _block_rows(n_videos, chunk_rows)
        self.log_norm = _column_logsumexp(bank, self.beta, chunk, "bank_sim")  # [Ng] float64
        self.is_hub = np.zeros(n_videos, dtype=bool)  # [Ng]
        for start in range(0, bank.shape[0], chunk):
            block = bank[start:start + chunk]
            if self.k == 1:
                top = np.argmax(block, axis=1)
            else:
                top = np.argpartition(-block, self.k - 1, axis=1)[:, :self.k]
            self.is_hub[top.ravel()] = True

    @property
    def n_videos(self) -> int:
        """Gallery size ``Ng`` the bank was scored against."""
        return self.is_hub.shape[0]

    def normalised_rows(self, rows: np.ndarray) -> np.ndarray:
        """``[n]`` bool: which query rows :meth:`apply` replaces (their best video is a hub)."""
        rows = self._check_rows(rows)
        return self.is_hub[np.argmax(rows, axis=1)]

    def apply(self, rows: np.ndarray) -> np.ndarray:
        """Re-ranked copy of ``rows: [n, Ng]`` (or one row ``[Ng]``).

        A row whose best video is a hub becomes ``beta * S_ij - log_norm[j]``, the log of the
        inverted softmax ``exp(beta * S_ij) / sum_b exp(beta * S^B_bj)``: same order within the row,
        and no overflow where the exponentials would (e.g. ``beta=20`` on logit-scaled sims). Other
        rows are kept as they are. The result has ``rows``' float dtype.
        """
        single = np.ndim(rows) == 1
        rows = self._check_rows(rows)
        out = np.array(rows, copy=True)
        chunk = _block_rows(self.n_videos, self.chunk_rows)
        for start in range(0, rows.shape[0], chunk):
            block = _block(rows, start, start + chunk, 1.0, "sim")
            hit = self.is_hub[np.argmax(block, axis=1)]
            if hit.any():
                out[start:start + chunk][hit] = self.beta * block[hit] - self.log_norm
        return out[0] if single else out

    def _check_rows(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        if rows.ndim == 1:
            rows = rows[None, :]
        rows = _as_matrix(rows, "sim")
        if rows.shape[1] != self.n_videos:
            raise C4CError(f"query rows have {rows.shape[1]} columns but the bank was scored against "
                           f"{self.n_videos} videos", hint="score the bank against the same gallery")
        return rows


def qb_norm(sim: np.ndarray, bank_sim: np.ndarray, beta: float = 20.0, k: int = 1, *,
            chunk_rows: int | None = None) -> np.ndarray:
    """QB-Norm with a dynamic inverted softmax: ``QBNorm(bank_sim, beta, k).apply(sim)``.

    ``sim: [Nq, Ng]`` test queries, ``bank_sim: [Nb, Ng]`` bank queries against the same gallery.
    A row whose argmax is a hub (top-``k`` video of some bank query) is replaced by
    ``beta * S_ij - logsumexp_b(beta * S^B_bj)``; other rows are unchanged. Not transductive.

    ``beta=20`` is the paper's value and assumes cosine similarities; c4c's logit-scaled sims
    (cosine x ~100) need ``beta=0.2`` for the same sharpness.
    """
    return QBNorm(bank_sim, beta, k, chunk_rows=chunk_rows).apply(sim)


# --------------------------------------------------------------------------- Sinkhorn

def _sinkhorn_potentials(sim: np.ndarray, epsilon: float, iters: int, chunk: int, what: str,
                         log_v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``iters`` rounds of ``u = 1 / (K v)``, ``v = 1 / (K^T u)`` for ``K = exp(sim / epsilon)``,
    in logs: returns ``(log u [Nq], log v [Ng])``."""
    log_u = np.zeros(sim.shape[0])
    for _ in range(iters):
        log_u = -_row_logsumexp(sim, 1.0 / epsilon, chunk, what, log_v)
        log_v = -_column_logsumexp(sim, 1.0 / epsilon, chunk, what, log_u)
    return log_u, log_v


def sinkhorn(sim: np.ndarray, epsilon: float = 1.0, iters: int = 4, *, out: np.ndarray | None = None,
             chunk_rows: int | None = None) -> np.ndarray:
    """Full-matrix Sinkhorn normalisation (Yakovlev et al., SIGIR 2023); returns ``log S'``.

    ``K = exp(S / epsilon)``; starting from ``v = 1``, ``iters`` rounds of ``u = 1 / (K v)`` and
    ``v = 1 / (K^T u)``; ``S' = diag(u) K diag(v)``, whose columns sum to 1 and rows to about 1
    (exactly doubly stochastic in the limit, for a square matrix). Everything runs on logs
    (log-sum-exp updates), so ``log S'_ij = log u_i + S_ij / epsilon + log v_j`` is returned: it
    ranks each row as ``S'`` does and cannot overflow. Within a row this is ``S / epsilon`` plus a
    per-video bias learnt from all test queries: transductive.

    ``epsilon=1.0`` suits c4c's logit-scaled sims (``exp(S)`` = ``exp(100 * cos)``, the sharpness of
    :func:`dual_softmax`'s default); use ``0.01`` for cosine sims. ``iters=4`` as UCoFiA's
    Sinkhorn step. Each round reads the matrix twice, one row block at a time.
    """
    sim = _as_matrix(sim, "sim")
    epsilon = _positive(epsilon, "epsilon")
    iters = _count(iters, "iters")
    chunk = _block_rows(sim.shape[1], chunk_rows)
    out = _output(sim, out)
    log_u, log_v = _sinkhorn_potentials(sim, epsilon, iters, chunk, "sim", np.zeros(sim.shape[1]))
    for start in range(0, sim.shape[0], chunk):
        block = sim[start:start + chunk].astype(np.float64)
        block /= epsilon
        block += log_v
        block += log_u[start:start + chunk, None]
        out[start:start + chunk] = block
    return out


def sinkhorn_bank_bias(bank_sim: np.ndarray, epsilon: float = 1.0, iters: int = 4, *,
                       chunk_rows: int | None = None) -> np.ndarray:
    """Per-video additive bias ``[Ng]`` from a query bank (UCoFiA's "SK-norm").

    Sinkhorn over ``K = exp(bank_sim / epsilon)`` (bank queries x gallery), starting from
    ``v = 1 / colsum(K)``, ``iters`` rounds as in :func:`sinkhorn`; the bias is
    ``epsilon * log_softmax(log v)``, in the units of the sims, so :func:`apply_bias` ranks a row
    by ``S / epsilon + log_softmax(log v)``. With ``epsilon=1`` (c4c's logit-scaled sims) this is
    UCoFiA's rule. A fixed prior per video: safe in production and compatible with an ANN index
    (add it to the stored scores of each item). Returns float64.
    """
    bank = _as_matrix(bank_sim, "bank_sim")
    epsilon = _positive(epsilon, "epsilon")
    iters = _count(iters, "iters")
    chunk = _block_rows(bank.shape[1], chunk_rows)
    first_v = -_column_logsumexp(bank, 1.0 / epsilon, chunk, "bank_sim")
    _, log_v = _sinkhorn_potentials(bank, epsilon, iters, chunk, "bank_sim", first_v)
    top = log_v.max()
    log_softmax = log_v - (top + np.log(np.exp(log_v - top).sum()))
    return epsilon * log_softmax


def apply_bias(sim: np.ndarray, bias: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """``sim + bias[None, :]``: add a per-video bias ``[Ng]`` to every query row ``sim: [Nq, Ng]``."""
    sim = _as_matrix(sim, "sim")
    bias = np.asarray(bias, dtype=np.float64)
    if bias.shape != (sim.shape[1],):
        raise C4CError(f"bias must have one value per video ({sim.shape[1]}), got shape {bias.shape}")
    if not np.isfinite(bias).all():
        raise C4CError("bias holds non-finite values")
    out = _output(sim, out)
    chunk = _block_rows(sim.shape[1], None)
    for start in range(0, sim.shape[0], chunk):
        out[start:start + chunk] = sim[start:start + chunk] + bias
    return out


# --------------------------------------------------------------------------- registry

_FUNCTIONS = {"dsl": dual_softmax, "qbnorm": qb_norm, "sinkhorn": sinkhorn}


def _parameters(method: str) -> tuple[str, ...]:
    """Keyword parameters ``method``'s function accepts through :func:`rerank`."""
    skip = {"sim", "bank_sim"}
    return tuple(name for name in inspect.signature(_FUNCTIONS[method]).parameters if name not in skip)


def rerank(method: str, sim: np.ndarray, *, bank_sim: np.ndarray | None = None,
           **params) -> np.ndarray:
    """Re-rank ``sim: [Nq, Ng]`` with one of :data:`RERANKERS`.

    ``none`` returns ``sim`` itself; ``dsl`` -> :func:`dual_softmax`, ``qbnorm`` -> :func:`qb_norm`
    (needs ``bank_sim: [Nb, Ng]``), ``sinkhorn`` -> :func:`sinkhorn`. ``params`` go to that function
    (e.g. ``temperature``, ``beta``/``k``, ``epsilon``/``iters``, ``chunk_rows``); a bank given to a
    method without one is ignored.
    """
    if method not in RERANKERS:
        raise C4CError(f"unknown re-ranking method {method!r}", hint=f"use one of {', '.join(RERANKERS)}")
    sim = _as_matrix(sim, "sim")
    if method == "none":
        if params:
            raise C4CError(f"re-ranking 'none' takes no parameters, got {', '.join(sorted(params))}")
        return sim
    allowed = _parameters(method)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise C4CError(f"unknown parameter(s) {', '.join(unknown)} for re-ranking {method!r}",
                       hint=f"{method} takes {', '.join(allowed)}")
    if method == "qbnorm":
        if bank_sim is None:
            raise C4CError("qbnorm needs a query bank: bank_sim, the bank (e.g. training captions) "
                           "scored against the test videos")
        bank_sim = _as_matrix(bank_sim, "bank_sim")
        if bank_sim.shape[1] != sim.shape[1]:
            raise C4CError(f"bank_sim has {bank_sim.shape[1]} columns but sim has {sim.shape[1]} videos",
                           hint="score the bank against the same test videos, in the same order")
        return qb_norm(sim, bank_sim, **params)
    if bank_sim is not None:
        log.debug("re-ranking %s uses no query bank; bank_sim ignored", method)
    return _FUNCTIONS[method](sim, **params)
