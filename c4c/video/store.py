"""The HDF5 frame store (FRAMES.h5): its layout, creating one, and reading frames back.

Layout, format version 1 (documented in data/README.md)::

    /                        attrs: format="c4c-frames", format_version=1, fps, size, codec,
                                    jpeg_quality (0 for raw), c4c_version
    /videos/<video_id>/      attrs: source_path, duration, source_fps, source_width,
                                    source_height, rotation, num_frames, decode_errors
        frames               raw:  uint8 [T, size, size, 3]
                             jpeg: 1-D variable-length uint8 [T], one JPEG image each
        timestamps           float32 [T], seconds from the start of the video
        crc32                uint32 [T], CRC-32 of each frame's stored bytes (attr timestamps_crc32:
                             of the timestamps); stores written before checksums lack both

Reading refuses soft and external links (they would give another object's or another file's frames),
frames of another size than the store's, and frames or timestamps that do not match their checksums.

How videos get in without ever leaving a half-written store is :mod:`c4c.video.staging`; sets of
stores for corpora too large for one file are :mod:`c4c.video.shards`. :class:`FrameStore` reads
both alike. These three modules are the only code that knows the layout.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np

from c4c.errors import C4CError, first_line
from c4c.video.jpeg import decode_jpegs
from c4c.video.layout import (check_frames, check_timestamps, check_video, damaged_hint, open_h5, read_settings,
                              refuse_link, settings_from_attrs)
from c4c.video.shards import is_shard_set, read_manifest

if TYPE_CHECKING:
    from c4c.video.shards import ShardSet

log = logging.getLogger(__name__)

# what h5py and Pillow raise on a damaged file (truncated, overwritten): a user error naming the file
_DAMAGED = (OSError, RuntimeError, KeyError, ValueError, TypeError)

_MAX_OPEN_SHARDS = 64  # shard files a FrameStore keeps open at once (least recently used are closed)


def _read_rows(ds, idx: list[int]):
    """Rows ``idx`` of a dataset, fast: h5py's fancy indexing is ~50x slower than a contiguous read,
    so read the covering slab when it is not much larger than what is asked, else row by row."""
    lo, hi = min(idx), max(idx)
    if hi - lo + 1 <= 4 * len(idx):
        slab = ds[lo:hi + 1]
        return slab[[i - lo for i in idx]]
    if ds.dtype == object:
        return [ds[i] for i in idx]
    out = np.empty((len(idx),) + ds.shape[1:], ds.dtype)
    for j, i in enumerate(idx):
        ds.read_direct(out, np.s_[i], np.s_[j])
    return out


class FrameStore:
    """Read frames and timestamps from FRAMES.h5, or from a shard set (its folder or its manifest.json):
    the same API for both.

    HDF5 files are opened lazily (a shard file when one of its videos is first read; at most 64 stay
    open) and re-opened after a fork, so one instance can be shared with data-loader worker processes.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.shards: ShardSet | None = None
        if is_shard_set(self.path):
            self.shards = read_manifest(self.path)
            self.settings = self.shards.settings
        else:
            self.settings = read_settings(self.path)
        self._files: OrderedDict = OrderedDict()  # shard number (0 for a single file) -> open h5py.File
        self._checked: set[int] = set()  # shard files whose settings were compared with the manifest
        self._valid: dict[str, tuple] = {}  # videos checked by check_video -> (has checksums, timestamps crc)
        self._pid: int | None = None

    def _open(self, k: int = 0):
        """The open HDF5 file of shard ``k`` (the store itself when not sharded)."""
        if self._pid != os.getpid():  # new process (fork): never touch the parent's handles
            self._files = OrderedDict()
            self._pid = os.getpid()
        f = self._files.get(k)
        if f is not None:
            self._files.move_to_end(k)
            return f
        if self.shards is None:
            try:
                f = open_h5(self.path)
            except OSError as exc:
                raise C4CError(f"not a readable HDF5 file ({first_line(exc)})", path=self.path,
                               hint=damaged_hint(self.path)) from None
        else:
            path = self.shards.files[k]
            try:
                f = open_h5(path)
            except OSError as exc:
                raise C4CError(f"not a readable HDF5 file ({first_line(exc)})", path=path,
                               hint=damaged_hint(path)) from None
            if k not in self._checked:
                have = settings_from_attrs(f, path)
                if have != self.settings:
                    f.close()
                    raise C4CError(f"shard made with {have.describe()}, but its manifest says "
                                   f"{self.settings.describe()}", path=path,
                                   hint="rebuild the manifest with `c4c extract --write-manifest "
                                        f"{self.shards.manifest.parent}`")
                self._checked.add(k)
        self._files[k] = f
        if len(self._files) > _MAX_OPEN_SHARDS:
            _, oldest = self._files.popitem(last=False)
            oldest.close()
        return f

    def close(self) -> None:
        if self._pid == os.getpid():
            for f in self._files.values():
                f.close()
        self._files = OrderedDict()

    def __enter__(self) -> "FrameStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        return {"path": self.path, "settings": self.settings, "shards": self.shards, "checked": self._checked,
                "valid": self._valid}

    def __setstate__(self, state: dict) -> None:
        self.path, self.settings = state["path"], state["settings"]
        self.shards, self._checked = state.get("shards"), set(state.get("checked", ()))
        self._valid = dict(state.get("valid", {}))
        self._files, self._pid = OrderedDict(), None

    @property
    def sharded(self) -> bool:
        """True when reading a shard set."""
        return self.shards is not None

    def ids(self) -> list[str]:
        """All video ids, sorted."""
        if self.shards is not None:
            return sorted(self.shards.where)
        return sorted(self._open(0)["videos"].keys())

    def __contains__(self, video_id: str) -> bool:
        if self.shards is not None:
            return video_id in self.shards.where
        return video_id in self._open(0)["videos"]

    def __len__(self) -> int:
        if self.shards is not None:
            return len(self.shards.where)
        return len(self._open(0)["videos"])

    def _where(self, video_id: str) -> tuple[object, Path]:
        """The open file holding ``video_id`` and its path."""
        if self.shards is None:
            return self._open(0), self.path
        k = self.shards.where.get(video_id)
        if k is None:
            raise C4CError(f"video {video_id!r} is not in the frame store", path=self.path)
        return self._open(k), self.shards.files[k]

    def _datasets(self, video_id: str):
        """``(frames, timestamps, crc32 or None, file path)`` of a video (h5py look-ups are slow: as few as
        possible). The first visit of a video checks its links and shapes (:func:`check_video`)."""
        f, where = self._where(video_id)
        try:
            videos = f["videos"]
            if video_id not in self._valid:
                refuse_link(videos, video_id, where, video_id)
            g = videos[video_id]
        except KeyError as exc:
            if "doesn't exist" not in str(exc):  # h5py's KeyError for an object it cannot read: damaged
                raise self._damaged(video_id, where, exc) from None
            if self.shards is None:
                raise C4CError(f"video {video_id!r} is not in the frame store", path=self.path) from None
            raise C4CError(f"the manifest puts video {video_id!r} in this shard, but it is not there",
                           path=where, hint=f"rebuild the manifest with `c4c extract --write-manifest "
                                            f"{self.shards.manifest.parent}`") from None
        except C4CError:
            raise
        except _DAMAGED as exc:
            raise self._damaged(video_id, where, exc) from None
        try:
            if video_id not in self._valid:
                check_video(g, video_id, self.settings, where)
                crc = g.get("crc32")
                self._valid[video_id] = (crc is not None, g.attrs.get("timestamps_crc32"))
            has_crc, _ = self._valid[video_id]
            return g["frames"], g["timestamps"], (g["crc32"] if has_crc else None), where
        except C4CError:
            raise
        except _DAMAGED as exc:
            raise self._damaged(video_id, where, exc) from None

    @staticmethod
    def _damaged(video_id: str, where: Path, exc: BaseException) -> C4CError:
        return C4CError(f"video {video_id!r} cannot be read ({type(exc).__name__}: {first_line(exc)})", path=where,
                        hint=damaged_hint(where))

    def _group(self, video_id: str):
        return self._datasets(video_id)[1].parent

    def info(self, video_id: str) -> dict:
        """The per-video attributes (source path, duration, source fps/size, rotation, ...)."""
        g = self._group(video_id)
        return {k: (v.item() if hasattr(v, "item") else v) for k, v in g.attrs.items()}

    def _timestamps(self, video_id: str, ts, where: Path) -> np.ndarray:
        try:
            stamps = ts[()]
        except _DAMAGED as exc:
            raise self._damaged(video_id, where, exc) from None
        check_timestamps(video_id, stamps, self._valid[video_id][1], where)
        return stamps

    def timestamps(self, video_id: str) -> np.ndarray:
        """float32 ``[T]`` seconds of each stored frame."""
        _, ts, _, where = self._datasets(video_id)
        return self._timestamps(video_id, ts, where)

    def num_frames(self, video_id: str) -> int:
        return int(self._datasets(video_id)[1].shape[0])

    def read(self, video_id: str, indices: Sequence[int] | None = None, *, encoded: bool = False):
        """uint8 ``[n, size, size, 3]`` RGB frames (all, or those at ``indices``, in that order).

        ``encoded`` (JPEG stores only): the stored JPEG bytes instead, checked against their checksums,
        as a list of n 1-D uint8 arrays (for decoding later, on a GPU: :mod:`c4c.data.device_frames`).
        """
        ds, ts, crc, where = self._datasets(video_id)
        return self._read(video_id, ds, crc, int(ts.shape[0]), indices, where, encoded)

    def read_clip(self, video_id: str, choose: Callable[[np.ndarray], Sequence[int]], *,
                  encoded: bool = False) -> tuple:
        """Frames chosen from a video's timestamps in one visit: ``choose(timestamps float32 [T])`` gives
        the indices; returns ``(frames uint8 [n, size, size, 3], indices int64 [n])`` (``encoded``: the
        JPEG bytes, as :meth:`read`)."""
        ds, ts, crc, where = self._datasets(video_id)
        idx = np.asarray(choose(self._timestamps(video_id, ts, where)), dtype=np.int64).reshape(-1)
        return self._read(video_id, ds, crc, int(ts.shape[0]), idx, where, encoded), idx

    def _read(self, video_id: str, ds, crc, t: int, indices, where: Path, encoded: bool = False):
        if encoded and self.settings.codec != "jpeg":
            raise C4CError("frames can only be decoded on the GPU from a JPEG store; this one holds raw frames",
                           path=where, hint="use --frame-decoder cpu, or extract with --codec jpeg")
        idx = list(range(t)) if indices is None else [int(i) for i in indices]
        if any(i < 0 or i >= t for i in idx):
            raise IndexError(f"frame index out of range 0..{t - 1} for video {video_id!r}")
        size = self.settings.size
        if not idx:
            return [] if encoded else np.zeros((0, size, size, 3), np.uint8)
        try:
            rows = _read_rows(ds, idx)
            if crc is not None:
                check_frames(video_id, rows, crc[()], idx, where)
            if encoded:
                return list(rows)
            frames = rows if self.settings.codec == "raw" else decode_jpegs(rows)
        except C4CError:
            raise
        except _DAMAGED as exc:
            raise self._damaged(video_id, where, exc) from None
        if frames.shape[1:] != (size, size, 3):
            raise C4CError(f"video {video_id!r}: frames are {frames.shape[2]}x{frames.shape[1]}, but the store's "
                           f"size is {size}", path=where, hint="re-extract the store")
        return frames

    def iter_ids(self, ids: Iterable[str] | None = None) -> Iterable[str]:
        return iter(self.ids() if ids is None else ids)
