"""Choose which stored frames make up a clip: time window, frame rate, max_frames, order."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from c4c.choices import ORDERS, SAMPLINGS
from c4c.errors import C4CError

log = logging.getLogger(__name__)

_EPS = 1e-3  # seconds; stored timestamps are float32 and sit at/after their sampling instant


def check_sampling(sampling: str) -> str:
    """Return ``sampling`` if it is one of :data:`SAMPLINGS`; C4CError if not."""
    if sampling not in SAMPLINGS:
        raise C4CError(f"unknown frame sampling {sampling!r}", hint=f"choose one of: {', '.join(SAMPLINGS)}")
    return sampling


def check_order(order: str) -> str:
    """Return ``order`` if it is one of :data:`ORDERS`; C4CError if not."""
    if order not in ORDERS:
        raise C4CError(f"unknown frame order {order!r}", hint=f"choose one of: {', '.join(ORDERS)}")
    return order


@dataclass
class ClipSpec:
    """How a clip is made from the stored frames of a video."""

    max_frames: int = 12  # frames per clip (M); shorter clips are zero-padded at the end
    sampling: str = "uniform"  # head | tail | uniform: which M frames of a longer window
    fps: float | None = None  # thin the stored frames to this rate (None: use every stored frame)
    order: str = "keep"  # keep | reverse | shuffle

    def __post_init__(self) -> None:
        check_sampling(self.sampling)
        check_order(self.order)
        if int(self.max_frames) < 1:
            raise C4CError(f"max_frames must be at least 1, got {self.max_frames}")
        if self.fps is not None and not self.fps > 0:
            raise C4CError(f"clip frame rate must be positive, got {self.fps}")


def clip_spec(settings: Mapping[str, Any] | Any, *, training: bool = False) -> ClipSpec:
    """The :class:`ClipSpec` of a config, or of a run's saved config (a dict): its ``max_frames``,
    ``sampling`` and ``fps``; with ``training``, its ``train_order`` too (evaluation keeps the order)."""
    def get(name: str, default: Any = None) -> Any:
        return settings.get(name, default) if isinstance(settings, Mapping) else getattr(settings, name, default)

    return ClipSpec(max_frames=int(get("max_frames", 12)), sampling=get("sampling", "uniform"), fps=get("fps"),
                    order=get("train_order", "keep") if training else "keep")


def _window(t: np.ndarray, start: float | None, end: float | None) -> np.ndarray:
    """Positions of the frames in whole seconds ``start..end`` inclusive (``start <= t < end + 1``)."""
    lo = 0.0 if start is None else float(start)
    keep = t >= lo - _EPS
    if end is not None:
        keep &= t < float(end) + 1.0 - _EPS
    idx = np.flatnonzero(keep)
    if idx.size == 0 and t.size:
        idx = np.array([int(np.argmin(np.abs(t - lo)))])
    return idx


def _thin(t: np.ndarray, idx: np.ndarray, fps: float, origin: float) -> np.ndarray:
    """Keep the first frame at/after each instant ``origin + k / fps`` (instants without a frame are skipped)."""
    kept = []
    next_instant = -np.inf
    for i in idx:
        ti = float(t[i])
        if ti >= next_instant - _EPS:
            kept.append(i)
            k = np.floor((ti - origin) * fps + _EPS * fps) + 1  # the first instant strictly after this frame
            next_instant = origin + k / fps
    return np.asarray(kept, dtype=np.int64)


def _subsample(n: int, max_frames: int, sampling: str) -> np.ndarray:
    """Positions (into ``n`` frames) of at most ``max_frames`` frames."""
    if n <= max_frames:
        return np.arange(n)
    if sampling == "head":
        return np.arange(max_frames)
    if sampling == "tail":
        return np.arange(n - max_frames, n)
    return np.linspace(0, n - 1, num=max_frames, dtype=int)  # the reference's uniform positions


def select_frames(timestamps: np.ndarray, *, max_frames: int, sampling: str = "uniform",
                  fps: float | None = None, start: float | None = None, end: float | None = None,
                  order: str = "keep", rng: np.random.Generator | None = None) -> np.ndarray:
    """Indices (int64) of the stored frames to use, in the order to present them.

    ``timestamps``: float ``[T]`` seconds of the stored frames, ascending. The window keeps frames with
    ``start <= t < end + 1`` (whole seconds ``start..end`` inclusive, as the reference reads them; no
    upper bound when ``end`` is None); an empty window falls back to the frame nearest ``start``.
    ``fps`` thins the window to the first frame at/after each instant ``start + k / fps``. More than
    ``max_frames`` frames are cut down by ``sampling`` (head, tail, uniform = the reference's
    ``np.linspace(0, L - 1, M, dtype=int)``); ``order`` keeps, reverses or shuffles them (``rng``).
    """
    check_sampling(sampling)
    check_order(order)
    if int(max_frames) < 1:
        raise C4CError(f"max_frames must be at least 1, got {max_frames}")
    if fps is not None and not fps > 0:
        raise C4CError(f"frame rate must be positive, got {fps}")
    if order == "shuffle" and rng is None:
        raise ValueError("order='shuffle' needs an rng (np.random.Generator) so that runs are reproducible")
    t = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    idx = _window(t, start, end)
    if fps is not None and idx.size > 1:
        idx = _thin(t, idx, float(fps), 0.0 if start is None else float(start))
    idx = idx[_subsample(idx.size, int(max_frames), sampling)].astype(np.int64)
    if order == "reverse":
        idx = idx[::-1].copy()
    elif order == "shuffle":
        idx = rng.permutation(idx)
    return idx
