"""Retrieval metrics as the reference CLIP4Clip code computes them (R@K, MdR, MnR).

How the reference defines each number (``metrics.py``; spec section 6):

* A similarity matrix ``sim: [N_query, N_item]`` has queries as rows; for the plain protocol the
  positive of row ``i`` is column ``i``. Text-to-video ranks ``sim``, video-to-text ranks ``sim.T``.
* The rank of a positive is its 0-based position in its row sorted best-first (higher score =
  better), so a perfect hit has rank 0.
* ``R@K = 100 * #{rank < K} / len(ranks)`` (a percentage), ``MdR = median(ranks) + 1`` and
  ``MnR = mean(ranks) + 1`` (1-based, lower is better).
* Plain protocol: NumPy median, i.e. the mean of the two middle values for an even count.
* Multi-sentence protocol (MSVD): text-to-video ranks every caption against all videos and takes the
  *lower* middle value for an even count (``torch.median``); video-to-text first scores each video
  against each caption group by the group's best caption (a ``[N_video, N_video]`` matrix), then
  applies the plain protocol to it.

The quirk of tie rows: the reference finds a positive by sorting the row and matching its score
exactly, so a row whose positive ties with ``k - 1`` other columns contributes ``k`` ranks
(``r, r + 1, ..., r + k - 1``), and the rank list can be longer than the number of queries. Rows whose
positive score is not finite (NaN or +-inf) match nothing and contribute no rank at all. With
continuous scores neither case happens; ``ties="reference"`` reproduces both, the other policies give
exactly one rank per query (see :data:`TIES`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from c4c.errors import C4CError

TIES = ("reference", "optimistic", "pessimistic", "mean")
"""Tie policies. ``reference``: one rank per tied column, as the reference code (see module doc);
``optimistic``: number of strictly better columns; ``pessimistic``: rank after all ties;
``mean``: average of the two."""

MEDIANS = ("numpy", "lower")
"""Median rules: ``numpy`` averages the two middle values, ``lower`` takes the lower one (torch)."""

_CHUNK_ROWS = 1024  # rows compared at once: bounds the [rows, M] boolean temporaries
_BLOCK_ELEMENTS = 1 << 24  # scores per block in blockwise_metrics (64 MB of float32)


def _check_choice(value: str, allowed: Sequence[str], what: str) -> None:
    if value not in allowed:
        raise C4CError(f"unknown {what} {value!r}", hint=f"use one of {', '.join(allowed)}")


def _as_scores(scores: np.ndarray, what: str = "scores") -> np.ndarray:
    """A 2-D floating array (float32 kept as is: comparisons are exact in any float type)."""
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise C4CError(f"{what} must be a 2-D matrix, got shape {scores.shape}")
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    return scores


def _check_positives(positives: np.ndarray, n_rows: int, n_cols: int) -> np.ndarray:
    positives = np.asarray(positives)
    if positives.shape != (n_rows,):
        raise C4CError(f"positives must have shape ({n_rows},), got {positives.shape}")
    if n_rows and not np.issubdtype(positives.dtype, np.integer):
        raise C4CError(f"positives must be integer column indices, got dtype {positives.dtype}")
    positives = positives.astype(np.int64)
    if n_rows and (positives.min() < 0 or positives.max() >= n_cols):
        raise C4CError(f"positive column index out of range [0, {n_cols})")
    return positives


def _nan_to_neg_inf(chunk: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(chunk), -np.inf, chunk) if np.isnan(chunk).any() else chunk


def _chunk_ranks(chunk: np.ndarray, pos: np.ndarray, ties: str) -> np.ndarray:
    """Ranks for one block of rows ``chunk: [n, M]`` with positives ``pos: [n]``."""
    rows = np.arange(len(pos))
    if ties == "reference":
        # NaN never beats anything (np.sort puts it last); a non-finite positive matches nothing.
        own = chunk[rows, pos][:, None]
        greater = np.count_nonzero(chunk > own, axis=1)
        equal = np.count_nonzero(chunk == own, axis=1)  # includes the positive itself
        equal[~np.isfinite(own[:, 0])] = 0
        starts = np.cumsum(equal) - equal
        offsets = np.arange(int(equal.sum())) - np.repeat(starts, equal)
        return (np.repeat(greater, equal) + offsets).astype(np.float64)
    chunk = _nan_to_neg_inf(chunk)
    own = chunk[rows, pos][:, None]
    better = np.count_nonzero(chunk > own, axis=1).astype(np.float64)
    if ties == "optimistic":
        return better
    after_ties = np.count_nonzero(chunk >= own, axis=1) - 1.0
    if ties == "pessimistic":
        return after_ties
    return (better + after_ties) / 2.0


def positive_ranks(scores: np.ndarray, positives: np.ndarray, ties: str = "reference") -> np.ndarray:
    """0-based rank of each row's positive column among that row's scores (higher = better).

    ``scores: [N, M]`` may be any block of rows of a larger matrix (ranks of row blocks concatenate
    to the ranks of the whole, so callers can stream a 10k x 10k matrix); ``positives: [N]`` holds
    each row's positive column. With ``ties="reference"`` the result can be longer than ``N`` (one
    rank per tied column) or shorter (rows with a non-finite positive give none); with the other
    policies it has exactly ``N`` entries and NaN scores count as -inf. Returns float64.
    """
    _check_choice(ties, TIES, "tie policy")
    scores = _as_scores(scores)
    positives = _check_positives(positives, *scores.shape)
    parts = [_chunk_ranks(scores[s:s + _CHUNK_ROWS], positives[s:s + _CHUNK_ROWS], ties)
             for s in range(0, scores.shape[0], _CHUNK_ROWS)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)


def _stable_ranks(scores: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """One rank per row as a stable best-first sort gives it: ties are broken by column index
    (a tied column to the left of the positive ranks ahead of it, one to its right behind it).

    c4c's fixed stand-in for the reference's double ``torch.argsort`` in multi-sentence
    text-to-video, whose tie order is not defined (see :func:`multi_sentence_metrics`).
    """
    parts = []
    for s in range(0, scores.shape[0], _CHUNK_ROWS):
        chunk = _nan_to_neg_inf(scores[s:s + _CHUNK_ROWS])
        pos = positives[s:s + _CHUNK_ROWS]
        own = chunk[np.arange(len(pos)), pos][:, None]
        earlier = np.arange(chunk.shape[1])[None, :] < pos[:, None]
        ahead = (chunk > own) | ((chunk == own) & earlier)
        parts.append(np.count_nonzero(ahead, axis=1).astype(np.float64))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)


def _median(values: np.ndarray, rule: str) -> float:
    if rule == "numpy":
        return float(np.median(values))
    return float(np.sort(values)[(len(values) - 1) // 2])


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int] = (1, 5, 10, 50),
                       median: str = "numpy") -> dict[str, float]:
    """``{"R@K": %, ..., "MdR", "MnR", "count"}`` from 0-based ranks.

    ``R@K = 100 * #{rank < K} / count``; ``MdR = median(rank) + 1`` with ``median="numpy"`` (mean of
    the two middle values) or ``"lower"`` (torch.median: the lower one); ``MnR = mean(rank) + 1``.
    """
    _check_choice(median, MEDIANS, "median rule")
    ranks = np.asarray(ranks, dtype=np.float64).ravel()
    if ranks.size == 0:
        raise C4CError("no ranks to score", hint="every query was dropped or the matrix is empty")
    out: dict[str, float] = {f"R@{k}": 100.0 * np.count_nonzero(ranks < k) / ranks.size for k in ks}
    out["MdR"] = _median(ranks, median) + 1.0
    out["MnR"] = float(ranks.mean()) + 1.0
    out["count"] = int(ranks.size)
    return out


def retrieval_metrics(sim: np.ndarray, ties: str = "reference") -> dict[str, dict[str, float]]:
    """Plain protocol: ``sim: [N, N]``, text ``i``'s positive is video ``i``.

    Returns ``{"t2v": metrics of sim, "v2t": metrics of sim.T}`` (NumPy median).
    """
    sim = _as_scores(sim, "sim")
    if sim.shape[0] != sim.shape[1]:
        raise C4CError(f"sim must be square (text i matches video i), got shape {sim.shape}",
                       hint="use multi_sentence_metrics when videos have several captions")
    diagonal = np.arange(sim.shape[0])
    return {
        "t2v": metrics_from_ranks(positive_ranks(sim, diagonal, ties)),
        "v2t": metrics_from_ranks(positive_ranks(sim.T, diagonal, ties)),
    }


def _check_groups(video_of_caption: np.ndarray, n_captions: int, n_videos: int) -> np.ndarray:
    groups = np.asarray(video_of_caption)
    if groups.shape != (n_captions,):
        raise C4CError(f"video_of_caption must have one entry per sim row ({n_captions}), "
                       f"got shape {groups.shape}")
    if n_captions and not np.issubdtype(groups.dtype, np.integer):
        raise C4CError(f"video_of_caption must hold integer video columns, got dtype {groups.dtype}")
    groups = groups.astype(np.int64)
    if n_captions and (groups.min() < 0 or groups.max() >= n_videos):
        raise C4CError(f"video_of_caption holds a column outside [0, {n_videos})")
    missing = np.flatnonzero(np.bincount(groups, minlength=n_videos) == 0)
    if missing.size:
        raise C4CError(f"{missing.size} video(s) have no caption (first: column {missing[0]})",
                       hint="every sim column needs at least one caption row")
    return groups


def best_caption_sim(sim: np.ndarray, video_of_caption: np.ndarray) -> np.ndarray:
    """``[N_video, N_video]``: entry ``(j, k)`` = best score of video ``j`` over video ``k``'s captions.

    NaN counts as -inf. The diagonal holds each video's own caption set.
    """
    sim = _nan_to_neg_inf(_as_scores(sim, "sim"))
    groups = _check_groups(video_of_caption, *sim.shape)
    order = np.argsort(groups, kind="stable")
    starts = np.searchsorted(groups[order], np.arange(sim.shape[1]))
    by_group = np.maximum.reduceat(sim[order], starts, axis=0)  # [group k, video j]
    return np.ascontiguousarray(by_group.T)


def multi_sentence_metrics(sim: np.ndarray, video_of_caption: np.ndarray,
                           ties: str = "reference") -> dict[str, dict[str, float]]:
    """Multi-sentence protocol (MSVD): ``sim: [N_caption, N_video]``, caption ``i`` shows video
    ``video_of_caption[i]``; groups need not be contiguous or equally sized.

    t2v: every caption is a query ranked against all videos, lower (torch) median; captions whose
    own score is NaN or +-inf are dropped, as the reference drops its padding.
    v2t: plain metrics of :func:`best_caption_sim`. NaN scores count as -inf throughout.

    Ties in t2v with ``ties="reference"``: the reference ranks by a double ``torch.argsort``, which
    is not a stable sort, so which of two tied videos comes first there depends on the torch
    version and device (it is implementation-defined). No order is "the" reference's, so c4c fixes
    one: ties are broken by column index, as a stable best-first sort would (a tied video in an
    earlier column ranks ahead of the positive). That keeps every caption at exactly one rank,
    makes the numbers reproducible across machines, and lets the blockwise path give the same
    ranks as the full matrix. It also means that, with ties, the result depends on the column
    order of the gallery; ``ties="optimistic"``, ``"pessimistic"`` or ``"mean"`` do not. With
    continuous scores there are no ties and all policies agree.
    """
    _check_choice(ties, TIES, "tie policy")
    sim = _as_scores(sim, "sim")
    groups = _check_groups(video_of_caption, *sim.shape)
    keep = np.isfinite(sim[np.arange(sim.shape[0]), groups])
    kept, kept_groups = sim[keep], groups[keep]
    if ties == "reference":
        t2v_ranks = _stable_ranks(kept, kept_groups)
    else:
        t2v_ranks = positive_ranks(kept, kept_groups, ties)
    v2t_sim = best_caption_sim(sim, groups)
    diagonal = np.arange(v2t_sim.shape[0])
    return {
        "t2v": metrics_from_ranks(t2v_ranks, median="lower"),
        "v2t": metrics_from_ranks(positive_ranks(v2t_sim, diagonal, ties)),
    }


def _group_max(block: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """``block: [n, Nt]`` -> ``[n, n_groups]``: per row, the best score within each caption group
    (-inf for a group without captions). NaN counts as -inf."""
    block = _nan_to_neg_inf(block)
    order = np.argsort(groups, kind="stable")
    present, starts = np.unique(groups[order], return_index=True)
    out = np.full((block.shape[0], n_groups), -np.inf, dtype=block.dtype)
    if present.size:
        out[:, present] = np.maximum.reduceat(block[:, order], starts, axis=1)
    return out


def protocol_of(video_of_caption: np.ndarray, n_videos: int) -> str:
    """``plain`` when every video has exactly one caption (text i <-> video i up to order), else
    ``multi-sentence`` (the reference's rule for MSVD-style sets)."""
    counts = np.bincount(np.asarray(video_of_caption, dtype=np.int64), minlength=n_videos)
    return "plain" if counts.size and (counts == 1).all() else "multi-sentence"


def blockwise_metrics(t2v_rows, v2t_rows, video_of_caption: np.ndarray, n_videos: int, *,
                      chunk: int = 2048, ties: str = "reference") -> dict:
    """Retrieval metrics without ever holding the whole similarity matrix.

    ``t2v_rows(start, stop)`` returns the scores of captions ``start:stop`` against every video
    (``[n, Nv]``), ``v2t_rows(start, stop)`` those of videos ``start:stop`` against every caption
    (``[n, Nt]``); blocks hold at most ``chunk`` rows and about 16M scores. The protocol follows :func:`protocol_of`; the numbers equal
    :func:`retrieval_metrics` (plain) and :func:`multi_sentence_metrics` on the full matrix. Videos
    without captions are distractors in text-to-video and are not queries in video-to-text.
    Returns ``{"t2v": ..., "v2t": ..., "protocol": ...}``.
    """
    _check_choice(ties, TIES, "tie policy")
    groups = np.asarray(video_of_caption, dtype=np.int64)
    n_texts = groups.shape[0]
    if n_texts == 0:
        raise C4CError("no captions to evaluate", hint="encode with --dataset and --ann to get captions")
    if groups.min() < 0 or groups.max() >= n_videos:
        raise C4CError(f"video_of_caption holds a column outside [0, {n_videos})")
    protocol = protocol_of(groups, n_videos)
    t2v: list[np.ndarray] = []
    rows_t2v = max(1, min(chunk, _BLOCK_ELEMENTS // max(n_videos, 1)))
    rows_v2t = max(1, min(chunk, _BLOCK_ELEMENTS // max(n_texts, 1)))
    for start in range(0, n_texts, rows_t2v):
        block = _as_scores(t2v_rows(start, min(start + rows_t2v, n_texts)))
        pos = groups[start:start + block.shape[0]]
        if protocol == "plain":
            t2v.append(positive_ranks(block, pos, ties))
            continue
        keep = np.isfinite(block[np.arange(len(pos)), pos])
        block, pos = block[keep], pos[keep]
        t2v.append(_stable_ranks(block, pos) if ties == "reference" else positive_ranks(block, pos, ties))
    has_caption = np.bincount(groups, minlength=n_videos) > 0
    v2t: list[np.ndarray] = []
    for start in range(0, n_videos, rows_v2t):
        block = _group_max(_as_scores(v2t_rows(start, min(start + rows_v2t, n_videos))), groups, n_videos)
        rows = np.arange(start, start + block.shape[0])
        wanted = has_caption[rows]
        v2t.append(positive_ranks(block[wanted], rows[wanted], ties))
    return {
        "t2v": metrics_from_ranks(np.concatenate(t2v), median="numpy" if protocol == "plain" else "lower"),
        "v2t": metrics_from_ranks(np.concatenate(v2t)),
        "protocol": protocol,
    }


def matrix_metrics(sim: np.ndarray, video_of_caption: np.ndarray, *, chunk: int = 2048,
                   ties: str = "reference") -> dict:
    """:func:`blockwise_metrics` of a full ``sim: [Nt, Nv]`` matrix (e.g. after re-ranking)."""
    sim = _as_scores(sim, "sim")
    return blockwise_metrics(lambda a, b: sim[a:b], lambda a, b: sim[:, a:b].T, video_of_caption, sim.shape[1],
                             chunk=chunk, ties=ties)
