"""Moments: windows of long videos, one embedding each, and how search results are grouped.

`c4c encode --window W --stride S` cuts each video into windows ``[k*S, k*S + W)`` (seconds); the last
window ends at the video's end, and a video shorter than ``W`` is one window ``[0, duration)``.
Every window has ``start < end``, together they cover the video, and there are at most
``duration / S + 1`` of them: :func:`check_window` refuses a stride longer than the window (the
seconds between windows would never be searched) and, given the stored frame rate, a window or
stride shorter than one frame interval (windows that see no frame of their own, or the same frames
as their neighbour, and a count that grows without bound as the stride shrinks).
Each window is encoded from the stored frames inside it (at most ``max_frames``, chosen by
``sampling`` as a clip would be). :func:`plan_video` works out which stored frames every window
needs, so that each frame goes through the image tower once however much the windows overlap.

At search time the index returns windows; :func:`group_hits` merges the windows of one video that
overlap into one moment: **the best window's score and span are kept** (temporal non-maximum
suppression: an overlapping, lower-scoring window of the same video adds nothing but a wider span,
and a wider span only lowers the overlap with what was asked for). ``group="video"`` keeps one
moment per video: its best window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from c4c.choices import GROUPS  # moment | video
from c4c.data.embeddings import span_problem
from c4c.data.frames import select_frames
from c4c.errors import C4CError

_EPS = 1e-6  # seconds: stored timestamps are float32
_REL = 1e-6  # relative slack when comparing a window or stride with another length


@dataclass
class WindowPlan:
    """The work for one video: the stored frames to encode and, per window, which of them it uses."""

    video_id: str
    frames: np.ndarray                 # int64 [U] stored frame indices, ascending, each once
    spans: list[tuple[float, float]]   # (start, end) seconds per window
    members: list[np.ndarray]          # per window: int64 positions into ``frames``, in clip order
    source: str = ""                   # the video file (frame store's source_path)


def check_window(window: float | None, stride: float | None, fps: float | None = None, *,
                 path: str | Path | None = None) -> tuple[float | None, float | None]:
    """``(window, stride)`` validated; stride defaults to half the window (at least one frame interval, when
    ``fps`` is given); no window: ``(None, None)``.

    ``fps``: the rate of the stored frames (of ``path``, the frame store or library it is named by); a
    window or stride shorter than one frame interval ``1 / fps`` is refused. A stride longer than the
    window is refused (it would leave seconds of every video out of the windows)."""
    if window is None:
        if stride is not None:
            raise C4CError("--stride needs --window (the length of a moment in seconds)")
        return None, None
    if isinstance(window, bool) or not (isinstance(window, (int, float)) and math.isfinite(window) and window > 0):
        raise C4CError(f"--window must be a positive number of seconds, got {window}")
    if stride is None:  # half the window, but at least one frame interval (never more than the window)
        stride = window / 2
        if fps is not None and isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0:
            stride = min(window, max(stride, 1.0 / float(fps)))
    if isinstance(stride, bool) or not (isinstance(stride, (int, float)) and math.isfinite(stride) and stride > 0):
        raise C4CError(f"--stride must be a positive number of seconds, got {stride}")
    window, stride = float(window), float(stride)
    if stride > window * (1 + _REL):
        raise C4CError(f"--stride {stride:g} is longer than --window {window:g}: the {stride - window:g} s between "
                       "windows would never be searched", hint=f"use a --stride of at most {window:g}")
    stride = min(stride, window)  # equal within float rounding: the windows tile the video
    if fps is not None and isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0:
        interval = 1.0 / float(fps)
        for name, value in (("--window", window), ("--stride", stride)):
            if value < interval * (1 - _REL):
                raise C4CError(f"{name} {value:g} s is shorter than one frame interval ({interval:g} s at "
                               f"{float(fps):g} frames per second stored)", path=path,
                               hint=f"use a {name} of at least {interval:g} s, or store more frames per second")
    return window, stride


def window_spans(duration: float, window: float | None, stride: float | None) -> list[tuple[float, float]]:
    """The windows of a video of ``duration`` seconds (module notes); no window: the whole video.

    ``window`` and ``stride`` are as :func:`check_window` returns them (``0 < stride <= window``)."""
    duration = max(float(duration), 0.0)
    if window is None or duration <= window + _EPS:
        return [(0.0, duration)]
    if not (0 < stride <= window * (1 + _REL)):
        raise ValueError(f"stride {stride} must be in (0, window {window}]: check_window first")
    # the last window is the first whose end reaches the video's end (module notes)
    count = max(1, math.ceil((duration - _EPS - window) / stride) + 1)
    while count > 1 and (count - 2) * stride + window >= duration - _EPS:  # float rounding of the ceil
        count -= 1
    while (count - 1) * stride + window < duration - _EPS:
        count += 1
    starts = [k * stride for k in range(count)]
    return [(a, a + window) for a in starts[:-1]] + [(starts[-1], duration)]


def video_duration(timestamps: np.ndarray, info: dict, store_fps: float) -> float:
    """Seconds a stored video covers: its recorded duration when that is past its last frame, else one frame
    interval past the last frame (so a video with a frame never lasts 0 s)."""
    last = float(timestamps[-1]) + 1.0 / float(store_fps) if len(timestamps) else 0.0
    recorded = info.get("duration")
    try:
        recorded = float(recorded)
    except (TypeError, ValueError):
        recorded = math.nan
    if math.isfinite(recorded) and recorded > float(timestamps[-1] if len(timestamps) else 0.0):
        return recorded
    return last


def plan_video(video_id: str, timestamps: np.ndarray, duration: float, *, window: float | None,
               stride: float | None, max_frames: int, sampling: str, fps: float | None,
               source: str = "") -> WindowPlan:
    """Which stored frames each window of a video uses (at most ``max_frames``, by ``sampling``, thinned
    to ``fps``), and their union. Without a window: one clip of the whole video, as `c4c finetune` sees it."""

    t = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    spans = window_spans(duration, window, stride)
    chosen: list[np.ndarray] = []
    for i, (start, end) in enumerate(spans):
        if window is None:
            idx = select_frames(t, max_frames=max_frames, sampling=sampling, fps=fps)
        else:
            last = i == len(spans) - 1
            inside = np.flatnonzero((t >= start - _EPS) & ((t < end - _EPS) | last))
            if inside.size == 0 and t.size:  # a window between two stored frames: the nearest one
                inside = np.array([int(np.argmin(np.abs(t - (start + end) / 2)))])
            pos = select_frames(t[inside], max_frames=max_frames, sampling=sampling, fps=fps, start=start)
            idx = inside[pos]
        chosen.append(np.asarray(idx, dtype=np.int64))
    frames = np.unique(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)
    members = [np.searchsorted(frames, idx).astype(np.int64) for idx in chosen]
    return WindowPlan(video_id=video_id, frames=frames, spans=spans, members=members, source=source)


# ---------------------------------------------------------------------------------------------
# the rows of an index, and grouping hits


@dataclass
class Moment:
    """One search result: a span of a video, its score (cosine), and where the video is."""

    rank: int
    video_id: str
    start: float | None      # seconds (None: whole video, span unknown)
    end: float | None
    score: float
    path: str | None = None  # the video file

    def as_dict(self) -> dict:
        return {"rank": self.rank, "video_id": self.video_id, "start": self.start, "end": self.end,
                "score": round(self.score, 6), "path": self.path}


class RowTable:
    """What each row of an index is: its video, start and end; per video its file and frame store.

    Stored as ``moments.json`` in INDEX_DIR (c4c.search.index_dir); relative frame-store paths are
    relative to the index folder.
    """

    def __init__(self, videos: list[str], row_video: np.ndarray, start: np.ndarray, end: np.ndarray,
                 paths: list[str | None] | None = None, frames: list[str | None] | None = None) -> None:
        self.videos = list(videos)
        self.row_video = np.asarray(row_video, dtype=np.int64)
        self.start = np.asarray(start, dtype=np.float64)
        self.end = np.asarray(end, dtype=np.float64)
        self.paths = list(paths) if paths is not None else [None] * len(self.videos)
        self.frames = list(frames) if frames is not None else [None] * len(self.videos)
        n = len(self.row_video)
        if len(self.start) != n or len(self.end) != n or len(self.paths) != len(self.videos) \
                or len(self.frames) != len(self.videos):
            raise ValueError("row table columns disagree in length")
        if n and (self.row_video.min() < 0 or self.row_video.max() >= len(self.videos)):
            raise ValueError("a row points at a video that does not exist")
        problem = span_problem(self.start, self.end, [self.videos[v] for v in self.row_video])
        if problem:
            raise ValueError(problem)

    def __len__(self) -> int:
        return len(self.row_video)

    @classmethod
    def from_rows(cls, video_ids: list[str], start, end, sources: list[str] | None = None,
                  frames: str | list[str | None] | None = None) -> "RowTable":
        """From per-row video ids (repeating for moments), spans and video files; ``frames``: one frame
        store for all videos, or one per row."""
        order: dict[str, int] = {}
        row_video = np.array([order.setdefault(v, len(order)) for v in video_ids], dtype=np.int64)
        videos = list(order)
        paths: list[str | None] = [None] * len(videos)
        stores: list[str | None] = [None] * len(videos)
        for r, v in enumerate(row_video):
            if sources is not None and sources[r] and paths[v] is None:
                paths[v] = sources[r]
            if isinstance(frames, list):
                stores[v] = stores[v] or frames[r]
            elif frames:
                stores[v] = str(frames)
        return cls(videos, row_video, start, end, paths, stores)

    @classmethod
    def whole_videos(cls, ids: list[str]) -> "RowTable":
        """One row per video, spans unknown (indexes of format version 1)."""
        n = len(ids)
        return cls(list(ids), np.arange(n), np.full(n, np.nan), np.full(n, np.nan))

    def row_keys(self) -> list[str]:
        """Unique ids of the rows for ids.json: the video id when a video has one row, else ``id#k``
        (k-th window of the video in row order)."""
        counts = np.bincount(self.row_video, minlength=len(self.videos))
        seen = np.zeros(len(self.videos), dtype=np.int64)
        keys = []
        for v in self.row_video:
            keys.append(self.videos[v] if counts[v] == 1 else f"{self.videos[v]}#{seen[v]}")
            seen[v] += 1
        return keys

    def to_json(self) -> dict:
        def num(x: float) -> float | None:
            return None if not math.isfinite(x) else round(float(x), 6)

        return {"videos": self.videos, "paths": self.paths, "frames": self.frames,
                "row_video": self.row_video.tolist(), "start": [num(x) for x in self.start],
                "end": [num(x) for x in self.end]}

    @classmethod
    def from_json(cls, data: dict) -> "RowTable":
        def arr(key: str) -> np.ndarray:
            return np.array([math.nan if x is None else float(x) for x in data[key]], dtype=np.float64)

        return cls(data["videos"], np.asarray(data["row_video"], dtype=np.int64), arr("start"), arr("end"),
                   data.get("paths"), data.get("frames"))

    def frame_store(self, video: int, index_dir: Path | None) -> Path | None:
        """The frame store holding video number ``video`` (relative paths resolved against ``index_dir``)."""
        store = self.frames[video]
        if not store:
            return None
        p = Path(store)
        return p if p.is_absolute() or index_dir is None else (Path(index_dir) / p)

    def moment(self, row: int, score: float, rank: int) -> Moment:
        v = int(self.row_video[row])
        s, e = float(self.start[row]), float(self.end[row])
        return Moment(rank=rank, video_id=self.videos[v], start=s if math.isfinite(s) else None,
                      end=e if math.isfinite(e) else None, score=float(score), path=self.paths[v])


def group_hits(table: RowTable, scores: np.ndarray, rows: np.ndarray, k: int, group: str = "moment"
               ) -> list[Moment]:
    """The ``k`` best moments of one query from its hits (``rows``, best first, -1 = none).

    ``group="moment"``: a window overlapping a better one of the same video is absorbed by it (the best
    window's score and span stay; windows that only touch do not overlap). ``group="video"``: one
    moment per video, its best window.
    """
    if group not in GROUPS:
        raise C4CError(f"unknown --group {group!r}", hint=f"choose one of: {', '.join(GROUPS)}")
    kept: list[tuple[int, float]] = []          # (row, score)
    by_video: dict[int, list[int]] = {}         # video -> rows kept
    for row, score in zip(rows, scores):
        row = int(row)
        if row < 0:
            continue
        v = int(table.row_video[row])
        mine = by_video.setdefault(v, [])
        if group == "video" and mine:
            continue
        s, e = table.start[row], table.end[row]
        if any(s < table.end[r] and table.start[r] < e for r in mine):
            continue
        if len(kept) == k:
            break
        mine.append(row)
        kept.append((row, float(score)))
    return [table.moment(row, score, rank + 1) for rank, (row, score) in enumerate(kept)]
