"""(text, video) datasets over the frame store: training pairs and evaluation sets."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from c4c.data.device_frames import JPEG_KEYS, collate_jpeg, pack_rows
from c4c.data.frames import ClipSpec, select_frames
from c4c.data.text import CaptionTokenizer
from c4c.datasets.records import VideoRecord
from c4c.errors import C4CError
from c4c.video.store import FrameStore

log = logging.getLogger(__name__)

# Streams of the per-item random generators, so caption choice and frame order never share draws.
_CAPTION_STREAM = 1
_FRAMES_STREAM = 2


def check_videos(records: list[VideoRecord], store: FrameStore, *, skip_missing: bool = False,
                 store_path: str | Path | None = None) -> list[VideoRecord]:
    """The records whose video is in ``store``; C4CError for missing videos unless ``skip_missing``."""
    path = store.path if store_path is None else store_path
    present = set(store.ids())
    missing: list[str] = []
    for vid in dict.fromkeys(r.video_id for r in records):
        if vid not in present:
            missing.append(vid)
    if not missing:
        return list(records)
    total = len({r.video_id for r in records})
    first = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
    if not skip_missing or len(missing) == total:
        raise C4CError(f"{len(missing)} of {total} videos of the annotations are not in the frame store "
                       f"(first: {first})", path=path,
                       hint="run `c4c extract` for them, check that the store and annotations match"
                            + ("" if skip_missing else ", or pass --skip-missing to drop them"))
    gone = set(missing)
    kept = [r for r in records if r.video_id not in gone]
    log.warning("skipping %d of %d videos (%d records) not in the frame store %s (first: %s)",
                len(missing), total, len(records) - len(kept), path, first)
    return kept


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in key])


def load_clip(store: FrameStore, video_id: str, clip: ClipSpec, *, start: float | None = None,
              end: float | None = None,
              rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``video`` uint8 ``[M, S, S, 3]`` (zero-padded at the end) and ``video_mask`` bool ``[M]`` of one clip."""
    idx = select_frames(store.timestamps(video_id), max_frames=clip.max_frames, sampling=clip.sampling,
                        fps=clip.fps, start=start, end=end, order=clip.order, rng=rng)
    size = store.settings.size
    video = np.zeros((clip.max_frames, size, size, 3), np.uint8)  # [M, S, S, 3]
    mask = np.zeros(clip.max_frames, bool)  # [M]
    if idx.size:
        video[: idx.size] = store.read(video_id, idx)
        mask[: idx.size] = True
    else:
        log.warning("video %r has no stored frames: its clip is empty (all-zero mask)", video_id)
    return torch.from_numpy(video), torch.from_numpy(mask)


def load_clip_jpeg(store: FrameStore, video_id: str, clip: ClipSpec, *, start: float | None = None,
                   end: float | None = None, rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
    """The frames :func:`load_clip` picks, still JPEG-encoded: ``video_jpeg``, ``video_jpeg_lengths`` and
    ``video_mask`` (:mod:`c4c.data.device_frames`; decoded on the model's device after batching)."""
    idx = select_frames(store.timestamps(video_id), max_frames=clip.max_frames, sampling=clip.sampling,
                        fps=clip.fps, start=start, end=end, order=clip.order, rng=rng)
    rows = store.read(video_id, idx, encoded=True) if idx.size else []
    data, lengths, mask = pack_rows(rows, clip.max_frames)
    return {"video_jpeg": data, "video_jpeg_lengths": lengths, "video_mask": mask}


def _caption_text(record: VideoRecord, paragraph: bool) -> list[str]:
    """The texts of a record: its captions, or one paragraph of them joined with single spaces."""
    if paragraph:
        return [" ".join(record.captions)] if record.captions else []
    return list(record.captions)


class TrainPairs(Dataset):
    """Training items (text, video) for the contrastive loss.

    ``expand_sentences``: one item per (record, caption) in record/caption order; otherwise one item per
    captioned record with a caption drawn from ``(seed, epoch, index)`` (call :meth:`set_epoch` before each
    epoch's DataLoader iterator is created; workers get a copy, so avoid ``persistent_workers``).
    ``paragraph`` joins a record's captions into one text (one item per record). A caption with a time
    span (``caption_times``, HowTo100M) uses that span as its clip window, else the record's window.
    Items: ``text_ids`` int64 ``[W]``, ``text_mask`` bool ``[W]``, ``video`` uint8 ``[M, S, S, 3]``,
    ``video_mask`` bool ``[M]``, ``index`` int.
    """

    def __init__(self, records: list[VideoRecord], store: FrameStore, tokenizer: CaptionTokenizer,
                 clip: ClipSpec, *, expand_sentences: bool = True, seed: int = 42,
                 paragraph: bool = False) -> None:
        self.records = list(records)
        self.store = store
        self.tokenizer = tokenizer
        self.clip = clip
        self.expand_sentences = expand_sentences
        self.paragraph = paragraph
        self.seed = int(seed)
        self.epoch = 0
        self.encoded_frames = False  # True: items carry JPEG bytes, decoded on the device (device_frames)
        # (record index, caption index or -1 = drawn per epoch / the paragraph)
        self.items: list[tuple[int, int]] = []
        for r, record in enumerate(self.records):
            if not record.captions:
                continue
            if paragraph or not expand_sentences:
                self.items.append((r, -1))
            else:
                self.items.extend((r, j) for j in range(len(record.captions)))
        log.info("%d training items from %d records", len(self.items), len(self.records))

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch that seeds caption choice and frame shuffling."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def caption_index(self, index: int) -> int:
        """Which caption of its record item ``index`` uses this epoch (-1 for a paragraph)."""
        r, j = self.items[index]
        if j >= 0 or self.paragraph:
            return j
        n = len(self.records[r].captions)
        return int(_rng(self.seed, self.epoch, index, _CAPTION_STREAM).integers(n))

    def __getitem__(self, index: int) -> dict:
        r, _ = self.items[index]
        record = self.records[r]
        j = self.caption_index(index)
        text = " ".join(record.captions) if j < 0 else record.captions[j]
        start, end = record.start, record.end
        if j >= 0 and record.caption_times:
            start, end = record.caption_times[j]
        rng = _rng(self.seed, self.epoch, index, _FRAMES_STREAM) if self.clip.order == "shuffle" else None
        if self.encoded_frames:
            frames = load_clip_jpeg(self.store, record.video_id, self.clip, start=start, end=end, rng=rng)
        else:
            video, video_mask = load_clip(self.store, record.video_id, self.clip, start=start, end=end, rng=rng)
            frames = {"video": video, "video_mask": video_mask}
        ids, mask = self.tokenizer([text])
        return {"text_ids": ids[0], "text_mask": mask[0], **frames, "index": index}


class _TextItems(Dataset):
    """Tokenised captions: dict(text_ids, text_mask, index)."""

    def __init__(self, captions: list[str], tokenizer: CaptionTokenizer) -> None:
        self.captions = captions
        self.tokenizer = tokenizer

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int) -> dict:
        ids, mask = self.tokenizer([self.captions[index]])
        return {"text_ids": ids[0], "text_mask": mask[0], "index": index}


class _VideoItems(Dataset):
    """Clips of distinct videos: dict(video, video_mask, index)."""

    def __init__(self, store: FrameStore, video_ids: list[str], windows: list[tuple[float | None, float | None]],
                 clip: ClipSpec, seed: int) -> None:
        self.store = store
        self.video_ids = video_ids
        self.windows = windows
        self.clip = clip
        self.seed = seed

    def __len__(self) -> int:
        return len(self.video_ids)

    def __getitem__(self, index: int) -> dict:
        start, end = self.windows[index]
        rng = _rng(self.seed, index, _FRAMES_STREAM) if self.clip.order == "shuffle" else None
        video, video_mask = load_clip(self.store, self.video_ids[index], self.clip, start=start, end=end, rng=rng)
        return {"video": video, "video_mask": video_mask, "index": index}


class EvalSet:
    """The distinct videos of ``records`` and all their captions, for evaluation and encoding.

    ``video_ids``: distinct ids in first-appearance order (a video is clipped with the window of its first
    record); ``captions``: every caption in record order (one paragraph per record with ``paragraph``);
    ``video_of_caption``: int64 ``[Nt]`` index into ``video_ids``. Videos without captions are kept
    (encoded, never a ground truth).
    """

    def __init__(self, records: list[VideoRecord], store: FrameStore, tokenizer: CaptionTokenizer,
                 clip: ClipSpec, *, paragraph: bool = False, seed: int = 42) -> None:
        self.store = store
        self.tokenizer = tokenizer
        self.clip = clip
        self.paragraph = paragraph
        self.seed = int(seed)
        self.video_ids: list[str] = []
        self.windows: list[tuple[float | None, float | None]] = []
        self.captions: list[str] = []
        position: dict[str, int] = {}
        of_caption: list[int] = []
        for record in records:
            v = position.get(record.video_id)
            if v is None:
                v = position[record.video_id] = len(self.video_ids)
                self.video_ids.append(record.video_id)
                self.windows.append((record.start, record.end))
            elif self.windows[v] != (record.start, record.end):
                log.warning("video %r appears with windows %s and %s: using the first", record.video_id,
                            self.windows[v], (record.start, record.end))
            texts = _caption_text(record, paragraph)
            self.captions.extend(texts)
            of_caption.extend([v] * len(texts))
        self.video_of_caption = np.asarray(of_caption, dtype=np.int64)  # [Nt]
        counts = np.bincount(self.video_of_caption, minlength=len(self.video_ids))
        self.multi_sentence = bool(counts.size and counts.max() > 1)
        log.info("evaluation set: %d videos, %d captions%s", len(self.video_ids), len(self.captions),
                 " (multi-sentence)" if self.multi_sentence else "")

    def text_dataset(self) -> Dataset:
        """Dataset of dict(text_ids int64 [W], text_mask bool [W], index)."""
        return _TextItems(self.captions, self.tokenizer)

    def video_dataset(self) -> Dataset:
        """Dataset of dict(video uint8 [M, S, S, 3], video_mask bool [M], index)."""
        return _VideoItems(self.store, self.video_ids, self.windows, self.clip, self.seed)


def collate(items: list[dict]) -> dict[str, torch.Tensor]:
    """Stack the items' tensors into a batch; ``index`` (and other plain numbers) become int64 tensors."""
    batch: dict[str, torch.Tensor] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if key in JPEG_KEYS:
            batch[key] = collate_jpeg(values, key)
        elif isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)
        elif key == "index" or isinstance(values[0], (int, np.integer)):
            batch[key] = torch.tensor([int(v) for v in values], dtype=torch.int64)
        else:
            batch[key] = torch.as_tensor(np.asarray(values))
    return batch
