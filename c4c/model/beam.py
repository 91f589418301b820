"""Batched beam search for the caption decoder (:mod:`c4c.model.decoder`).

Batched over videos and beams, with a key/value cache (one token per step: self-attention keys/values are appended to a per-layer cache, the memory's
keys/values are computed once per video and shared by its beams). A hypothesis ends at EOT or is
cut after ``max_len`` tokens; hypotheses are ranked by ``log p / ((5 + len) / 6) ** alpha`` (GNMT's
length penalty; ``len`` counts the generated tokens including EOT). The search stops for a video
as soon as no live beam can still beat its ``beam`` finished hypotheses, which is exact for
``alpha >= 0``. ``beam = 1`` is greedy decoding (the length penalty is not applied: there is
nothing to compare). SOT is never generated, and EOT not as the first token (no empty captions). Everything is deterministic: no sampling, and ties
in ``topk`` resolve the same way on every run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch

from c4c.choices import DEFAULT_ALPHA
from c4c.data.text import EOT, SOT
from c4c.errors import C4CError


class Stepper(Protocol):
    """What :func:`beam_search` drives: a decoder fed one token per row and step."""

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens: [N]`` (each row's newest token) -> log-probabilities of the next token ``[N, V]``."""

    def reorder(self, rows: torch.Tensor) -> None:
        """Row ``i`` continues from old row ``rows[i]`` (``rows: [N]``, always within the same video)."""


@dataclass
class Hypothesis:
    """The caption chosen for one video."""

    tokens: list[int]       # generated token ids, EOT excluded
    score: float            # log_prob / length_penalty(length, alpha)
    log_prob: float         # sum of the tokens' log-probabilities (EOT included when finished)
    finished: bool          # ended with EOT (False: cut at max_len)


def length_penalty(length: int | torch.Tensor, alpha: float):
    """GNMT's ``((5 + length) / 6) ** alpha``."""
    return ((5.0 + length) / 6.0) ** alpha


def beam_search(stepper: Stepper, videos: int, *, beam: int = 5, max_len: int = 20,
                alpha: float = DEFAULT_ALPHA, sot: int = SOT, eot: int = EOT) -> list[Hypothesis]:
    """The best hypothesis per video; ``stepper`` holds ``videos * beam`` rows, video-major.

    Per step: every live beam is extended by every token; of the ``2 * beam`` best extensions (by
    log-probability), those ending in EOT *and* ranked within the first ``beam`` enter the video's
    pool of finished hypotheses (scored with the length penalty; the pool keeps the ``beam`` best),
    and the ``beam`` best that do not end go on. A video is done when its pool is full and no live
    beam can reach its worst entry (``alpha >= 0``: a live beam's final score is at most
    ``log p / length_penalty(max_len)``). Live beams left after ``max_len`` tokens are cut and
    compete as they are. EOT cannot be the first token. ``beam = 1`` with ``alpha = 0`` is exactly
    greedy decoding.
    """
    if beam < 1:
        raise C4CError(f"--beam must be at least 1, got {beam}")
    if max_len < 1:
        raise C4CError(f"--max-len must be at least 1, got {max_len}")
    if alpha < 0 or not math.isfinite(alpha):
        raise C4CError(f"the length penalty alpha must be >= 0, got {alpha}")
    b, k = videos, beam
    neg_inf = float("-inf")
    last = torch.full((b * k,), sot, dtype=torch.int64)
    logp = stepper.step(last)
    device = logp.device
    scores = torch.full((b, k), neg_inf, device=device)
    scores[:, 0] = 0.0                           # all beams start as the same empty prefix: use one
    seqs = torch.zeros((b, k, max_len), dtype=torch.int64, device=device)
    pool = _Pool(b, k, max_len, device)
    done = torch.zeros(b, dtype=torch.bool, device=device)
    video_rows = torch.arange(b, device=device)[:, None] * k
    for t in range(max_len):
        if t > 0:
            logp = stepper.step(last)
        else:  # a caption has at least one token (an undertrained model may prefer to end at once)
            logp = logp.clone()
            logp[:, eot] = neg_inf
        vocab = logp.shape[-1]
        cand = (scores[:, :, None] + logp.float().view(b, k, vocab)).view(b, k * vocab)
        n = min(2 * k, k * vocab)
        top, idx = cand.topk(n, dim=1)                                   # [B, n], best first
        origin, token = idx // vocab, idx % vocab
        rank = torch.arange(n, device=device)[None, :]
        ends = token == eot
        enter = ends & (top > neg_inf) & (rank < k) & ~done[:, None]
        if bool(enter.any()):
            prefix = seqs.gather(1, origin[:, :, None].expand(-1, -1, max_len))
            pool.add(torch.where(enter, top / length_penalty(t + 1, alpha), neg_inf), top,
                     torch.full_like(top, t, dtype=torch.int64), prefix, finished=True)
        # the best `k` extensions that do not end go on (there are at least k: one EOT per beam)
        keep = torch.where(ends, rank + n, rank).argsort(dim=1)[:, :k]   # [B, k]
        scores = top.gather(1, keep)
        origin, token = origin.gather(1, keep), token.gather(1, keep)
        seqs = seqs.gather(1, origin[:, :, None].expand(-1, -1, max_len)).clone()
        seqs[:, :, t] = token
        best_live = scores.max(dim=1).values / length_penalty(max_len, alpha)
        done |= (pool.score[:, -1] > neg_inf) & (pool.score[:, -1] >= best_live)
        if bool(done.all()) or t == max_len - 1:
            break
        stepper.reorder((video_rows + origin).view(-1))
        last = token.view(-1)
    if not bool(done.all()):
        cut = torch.where(done[:, None] | (scores == neg_inf), neg_inf, scores / length_penalty(max_len, alpha))
        pool.add(cut, scores, torch.full_like(scores, max_len, dtype=torch.int64), seqs, finished=False)
    return pool.best()


class _Pool:
    """The ``k`` best finished hypotheses of every video (sorted best first)."""

    def __init__(self, b: int, k: int, max_len: int, device) -> None:
        self.k = k
        self.score = torch.full((b, k), float("-inf"), device=device)
        self.log_prob = torch.full((b, k), float("-inf"), device=device)
        self.length = torch.zeros((b, k), dtype=torch.int64, device=device)
        self.seqs = torch.zeros((b, k, max_len), dtype=torch.int64, device=device)
        self.finished = torch.zeros((b, k), dtype=torch.bool, device=device)

    def add(self, score, log_prob, length, seqs, *, finished: bool) -> None:
        """Merge candidates (``score = -inf``: not a candidate); the pool keeps its ``k`` best."""
        all_score = torch.cat([self.score, score], dim=1)
        best, idx = all_score.topk(self.k, dim=1)
        self.score = best
        self.log_prob = torch.cat([self.log_prob, log_prob], dim=1).gather(1, idx)
        self.length = torch.cat([self.length, length], dim=1).gather(1, idx)
        fin = torch.cat([self.finished, torch.full_like(score, finished, dtype=torch.bool)], dim=1)
        self.finished = fin.gather(1, idx)
        all_seqs = torch.cat([self.seqs, seqs], dim=1)
        self.seqs = all_seqs.gather(1, idx[:, :, None].expand(-1, -1, all_seqs.shape[-1]))

    def best(self) -> list[Hypothesis]:
        out = []
        for i in range(self.score.shape[0]):
            n = int(self.length[i, 0])
            out.append(Hypothesis(tokens=self.seqs[i, 0, :n].tolist(), score=float(self.score[i, 0]),
                                  log_prob=float(self.log_prob[i, 0]), finished=bool(self.finished[i, 0])))
        return out


# --------------------------------------------------------------------------------------------
# The captioning model
# --------------------------------------------------------------------------------------------
