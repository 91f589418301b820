"""Post-pretraining clips from HowTo100M: ASR caption fragments merged into (text, time window) pairs.

HowTo100M's captions come from speech recognition: short fragments (a few words, a second or a few),
filler words, speech only loosely aligned with what is shown. One training item is one video; each
epoch draws one clip from it, deterministically from ``(seed, epoch, index)`` so that a resumed run
sees exactly the clips an uninterrupted one does:

1. pick a starting fragment uniformly among the video's fragments;
2. append the following fragments while the text has fewer than ``min_words`` words or spans less
   than ``min_seconds``, as long as the next fragment starts at most ``max_gap`` seconds after the
   current end and the window stays within ``max_seconds``; when the speech ends (or a pause or the
   length cap stops it) before both minimums are met, prepend earlier fragments by the same rules;
3. a window still shorter than ``min_seconds`` is widened around its centre to ``min_seconds``
   (clamped at 0), the way MIL-NCE's HowTo100M loader widens clips to its ``min_time`` of 4 s;
4. the clip is the stored frames with ``start <= t < end`` (the frame nearest the window's centre
   when none is inside), thinned to ``fps`` from the window's start when it is set, cut down to
   ``max_frames`` by ``sampling`` (uniform by default, as in fine-tuning) and put in the training
   order (kept by default; reversed or shuffled from ``(seed, epoch, index)`` for ablations), all as
   fine-tuning makes its clips (:class:`c4c.data.frames.ClipSpec`); the text is the merged fragments
   joined by spaces, tokenised to ``max_words``.

Why merge: single fragments are often 2-4 words ("um so now", "to the left") that name nothing a
frame shows; joining neighbours until about a sentence (8 words) and 4 s (4 frames at 1 fps) gives
pairs closer to the captions of the retrieval datasets. Why a random start rather than a fixed
segmentation: every epoch sees differently cut windows of the same speech (augmentation for free).

The captions are held in flat NumPy arrays (:class:`CaptionCorpus`) rather than one Python object per
fragment, so data-loader workers share them without copy-on-write growth on a 380k-video corpus.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from c4c.data.device_frames import pack_rows
from c4c.data.frames import ClipSpec, select_frames
from c4c.data.text import CaptionTokenizer
from c4c.datasets.records import VideoRecord
from c4c.errors import C4CError
from c4c.video.store import FrameStore

log = logging.getLogger(__name__)

_EPS = 1e-3  # seconds; stored timestamps are float32 and sit at/after their sampling instant
_START_STREAM = 3  # random stream of the starting fragment (video_text uses 1 and 2)
_FRAMES_STREAM = 4  # random stream of the frame order (--train-order shuffle)


@dataclass(frozen=True)
class MergeRule:
    """How ASR fragments are joined into one clip (see the module docstring)."""

    min_words: int = 8          # join fragments until the text has this many words ...
    min_seconds: float = 4.0    # ... and spans this long (then widen the window to it if still short)
    max_seconds: float = 12.0   # never join beyond a window this long (12 frames at 1 fps)
    max_gap: float = 2.0        # never join across a pause longer than this (s)

    def __post_init__(self) -> None:
        if self.min_words < 1:
            raise C4CError(f"--min-words must be at least 1, got {self.min_words}")
        if not 0 < self.min_seconds <= self.max_seconds:
            raise C4CError(f"need 0 < --min-seconds <= --max-seconds, got {self.min_seconds} and {self.max_seconds}")
        if self.max_gap < 0:
            raise C4CError(f"--max-gap must be 0 or more, got {self.max_gap}")


def merge_window(starts: np.ndarray, ends: np.ndarray, words: np.ndarray, first: int,
                 rule: MergeRule) -> tuple[int, int, float, float]:
    """``(lo, hi, start, end)``: the fragments ``lo..hi`` (inclusive) merged from fragment ``first``, and
    the clip's time window in seconds. ``starts``, ``ends``, ``words``: ``[n]`` of one video, by start."""
    n = len(starts)
    lo = hi = int(first)
    start, end = float(starts[lo]), float(ends[lo])
    count = int(words[lo])

    def short() -> bool:
        return count < rule.min_words or end - start < rule.min_seconds

    while short() and hi + 1 < n:
        nxt = hi + 1
        if float(starts[nxt]) - end > rule.max_gap or max(end, float(ends[nxt])) - start > rule.max_seconds:
            break
        hi, count, end = nxt, count + int(words[nxt]), max(end, float(ends[nxt]))
    while short() and lo > 0:
        prev = lo - 1
        if start - float(ends[prev]) > rule.max_gap or end - min(start, float(starts[prev])) > rule.max_seconds:
            break
        lo, count, start = prev, count + int(words[prev]), min(start, float(starts[prev]))
    if end - start < rule.min_seconds:
        centre = (start + end) / 2.0
        start = max(0.0, centre - rule.min_seconds / 2.0)
        end = start + rule.min_seconds
    return lo, hi, start, end


def window_frames(timestamps: np.ndarray, start: float, end: float, clip: ClipSpec = ClipSpec(),
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """Indices (int64) of the stored frames of the window ``start <= t < end``, thinned to ``clip.fps``
    from the window's start, at most ``clip.max_frames`` (chosen by ``clip.sampling``), in ``clip.order``
    (``rng`` shuffles); the frame nearest the window's centre when none is inside."""
    t = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    inside = np.flatnonzero((t >= start - _EPS) & (t < end - _EPS))
    if inside.size == 0:
        if t.size == 0:
            return inside.astype(np.int64)
        inside = np.array([int(np.argmin(np.abs(t - (start + end) / 2.0)))])
    pos = select_frames(t[inside] - start, max_frames=clip.max_frames, sampling=clip.sampling, fps=clip.fps,
                        order=clip.order, rng=rng)
    return inside[pos].astype(np.int64)


class CaptionCorpus:
    """The caption fragments of every video, flat: fragment ``f`` of video ``v`` for
    ``offsets[v] <= f < offsets[v + 1]``, sorted by start time; empty fragments dropped.

    ``starts``, ``ends``: float64 ``[F]`` seconds; ``words``: int32 ``[F]``; the texts are one UTF-8
    buffer cut by ``text_offsets`` int64 ``[F + 1]`` (white space normalised to single spaces).
    """

    def __init__(self, records: list[VideoRecord]) -> None:
        ids: list[str] = []
        offsets = [0]
        starts: list[float] = []
        ends: list[float] = []
        words: list[int] = []
        texts: list[bytes] = []
        for record in records:
            if not record.caption_times:
                raise C4CError(f"video {record.video_id!r} has captions without time spans",
                               hint="post-pretraining reads HowTo100M-style captions (caption.json)")
            frags = sorted((s, e, " ".join(text.split()))
                           for (s, e), text in zip(record.caption_times, record.captions))
            frags = [f for f in frags if f[2]]
            if not frags:
                continue
            ids.append(record.video_id)
            for s, e, text in frags:
                starts.append(float(s))
                ends.append(max(float(e), float(s)))
                words.append(len(text.split(" ")))
                texts.append(text.encode("utf-8"))
            offsets.append(len(starts))
        self.video_ids = np.array(ids, dtype=str)  # [V] (no Python object per id)
        self.offsets = np.asarray(offsets, dtype=np.int64)  # [V + 1]
        self.starts = np.asarray(starts, dtype=np.float64)  # [F]
        self.ends = np.asarray(ends, dtype=np.float64)  # [F]
        self.words = np.asarray(words, dtype=np.int32)  # [F]
        lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        self.text_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)  # [F + 1]
        self.text = np.frombuffer(b"".join(texts), dtype=np.uint8)  # the UTF-8 bytes of all texts

    def __len__(self) -> int:
        return len(self.video_ids)

    @property
    def fragments(self) -> int:
        return int(self.offsets[-1])

    def video_id(self, v: int) -> str:
        return str(self.video_ids[v])

    def span(self, v: int) -> tuple[int, int]:
        """``(first, end)``: the fragment range of video ``v``."""
        return int(self.offsets[v]), int(self.offsets[v + 1])

    def text_of(self, lo: int, hi: int) -> str:
        """Fragments ``lo..hi`` (inclusive, corpus numbering) joined by spaces."""
        return " ".join(bytes(self.text[self.text_offsets[f]:self.text_offsets[f + 1]]).decode("utf-8")
                        for f in range(lo, hi + 1))


@dataclass(frozen=True)
class HowToClip:
    """One drawn clip: the merged text and its time window (s) in video ``video_id``."""

    video_id: str
    text: str
    start: float
    end: float
    fragments: tuple[int, int]  # (first, last) fragment of the video, 0-based within the video


class HowToClips(Dataset):
    """Post-pretraining items: one per video; each epoch one clip drawn from ``(seed, epoch, index)``.

    Call :meth:`set_epoch` before each epoch's DataLoader iterator is created. Items:
    ``text_ids`` int64 ``[W]``, ``text_mask`` bool ``[W]``, ``video`` uint8 ``[M, S, S, 3]`` (zero-padded),
    ``video_mask`` bool ``[M]``, ``index`` int.
    """

    def __init__(self, corpus: CaptionCorpus, store: FrameStore, tokenizer: CaptionTokenizer, *,
                 clip: ClipSpec = ClipSpec(), rule: MergeRule = MergeRule(), seed: int = 42) -> None:
        self.corpus = corpus
        self.store = store
        self.tokenizer = tokenizer
        self.spec = clip
        self.max_frames = int(clip.max_frames)
        self.rule = rule
        self.seed = int(seed)
        self.epoch = 0
        self.encoded_frames = False  # True: items carry JPEG bytes, decoded on the device (device_frames)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.corpus)

    def clip(self, index: int) -> HowToClip:
        """The clip item ``index`` uses this epoch."""
        c = self.corpus
        a, b = c.span(index)
        first = int(np.random.default_rng([self.seed, self.epoch, int(index), _START_STREAM]).integers(b - a))
        lo, hi, start, end = merge_window(c.starts[a:b], c.ends[a:b], c.words[a:b], first, self.rule)
        return HowToClip(c.video_id(index), c.text_of(a + lo, a + hi), start, end, (lo, hi))

    def frame_rng(self, index: int) -> np.random.Generator | None:
        """The generator that shuffles item ``index``'s frames this epoch (None unless the order shuffles)."""
        if self.spec.order != "shuffle":
            return None
        return np.random.default_rng([self.seed, self.epoch, int(index), _FRAMES_STREAM])

    def load_frames(self, video_id: str, start: float, end: float,
                    rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``video`` uint8 ``[M, S, S, 3]`` (zero-padded at the end) and ``video_mask`` bool ``[M]``."""
        frames, idx = self.store.read_clip(video_id, lambda t: window_frames(t, start, end, self.spec, rng))
        size = self.store.settings.size
        video = np.zeros((self.max_frames, size, size, 3), np.uint8)  # [M, S, S, 3]
        mask = np.zeros(self.max_frames, bool)  # [M]
        if idx.size:
            video[: idx.size] = frames
            mask[: idx.size] = True
        else:
            log.warning("video %r has no stored frames: its clip is empty (all-zero mask)", video_id)
        return torch.from_numpy(video), torch.from_numpy(mask)

    def load_jpeg(self, video_id: str, start: float, end: float,
                  rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
        """The frames :meth:`load_frames` picks, still JPEG-encoded (:func:`c4c.data.device_frames.pack_rows`)."""
        rows, _ = self.store.read_clip(video_id, lambda t: window_frames(t, start, end, self.spec, rng), encoded=True)
        data, lengths, mask = pack_rows(rows, self.max_frames)
        return {"video_jpeg": data, "video_jpeg_lengths": lengths, "video_mask": mask}

    def __getitem__(self, index: int) -> dict:
        clip = self.clip(index)
        rng = self.frame_rng(index)
        if self.encoded_frames:
            frames = self.load_jpeg(clip.video_id, clip.start, clip.end, rng)
        else:
            video, video_mask = self.load_frames(clip.video_id, clip.start, clip.end, rng)
            frames = {"video": video, "video_mask": video_mask}
        ids, mask = self.tokenizer([clip.text])
        return {"text_ids": ids[0], "text_mask": mask[0], **frames, "index": index}
