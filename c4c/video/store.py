"""The HDF5 frame store (FRAMES.h5): the only module that knows its layout.

Layout, format version 1 (documented in data/README.md)::

    /                        attrs: format="c4c-frames", format_version=1, fps, size, codec,
                                    jpeg_quality (0 for raw), c4c_version
    /videos/<video_id>/      attrs: source_path, duration, source_fps, source_width,
                                    source_height, rotation, num_frames, decode_errors
        frames               raw:  uint8 [T, size, size, 3]
                             jpeg: 1-D variable-length uint8 [T], one JPEG image each
        timestamps           float32 [T], seconds from the start of the video

Crash safety: the store is only ever replaced whole, by rename. Workers write each finished video
to its own small HDF5 file in ``<store>.parts/`` (temp name, then rename); :func:`merge_parts`
copies the store, appends the parts, and renames the copy over the store. A SIGKILL at any moment
leaves the old or the new store (both open) and finished parts that the next run merges; a video
already in the store is never added twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from c4c import __version__
from c4c.errors import C4CError

log = logging.getLogger(__name__)

FORMAT = "c4c-frames"
FORMAT_VERSION = 1
CODECS = ("raw", "jpeg")
_VIDEO_ATTRS = ("source_path", "duration", "source_fps", "source_width", "source_height", "rotation",
                "num_frames", "decode_errors")


@dataclass(frozen=True)
class StoreSettings:
    """How the frames of a store were sampled and stored; fixed for the life of a store."""

    fps: float = 1.0
    size: int = 224
    codec: str = "jpeg"
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if self.codec != "jpeg":  # quality means nothing for raw frames; keep comparisons honest
            object.__setattr__(self, "jpeg_quality", 0)

    def describe(self) -> str:
        """``fps=1 size=224 codec=jpeg (quality 95)``, for messages."""
        text = f"fps={self.fps:g} size={self.size} codec={self.codec}"
        return text + (f" (quality {self.jpeg_quality})" if self.codec == "jpeg" else "")

    def as_attrs(self) -> dict:
        return {"fps": float(self.fps), "size": int(self.size), "codec": self.codec,
                "jpeg_quality": int(self.jpeg_quality)}


def _h5py():
    import h5py

    return h5py


def _write_root_attrs(f, settings: StoreSettings) -> None:
    f.attrs["format"] = FORMAT
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["c4c_version"] = __version__
    for key, value in settings.as_attrs().items():
        f.attrs[key] = value
    f.require_group("videos")


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        _fsync_path(path)
    except OSError:  # some file systems do not allow opening directories
        pass


def create_store(path: Path, settings: StoreSettings) -> None:
    """Create an empty store at ``path`` atomically."""
    h5py = _h5py()
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    with h5py.File(tmp, "w") as f:
        _write_root_attrs(f, settings)
    _fsync_path(tmp)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def read_settings(path: Path) -> StoreSettings:
    """Validate the root of a store and return its settings; C4CError when it is not a usable store."""
    h5py = _h5py()
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise C4CError("frame store not found", path=path, hint="create it with `c4c extract`") from None
    except OSError as exc:
        raise C4CError(f"not a readable HDF5 file ({exc})", path=path) from None
    with f:
        return _settings_from_attrs(f, path)


def _settings_from_attrs(f, path: Path) -> StoreSettings:
    attrs = f.attrs
    if attrs.get("format") != FORMAT:
        raise C4CError(f"not a c4c frame store (format attribute is {attrs.get('format')!r}, "
                       f"expected {FORMAT!r})", path=path)
    version = int(attrs.get("format_version", -1))
    if version > FORMAT_VERSION:
        raise C4CError(f"frame store format version {version} is newer than this c4c supports "
                       f"({FORMAT_VERSION})", path=path, hint="upgrade c4c")
    if version < 1:
        raise C4CError(f"invalid format_version {version}", path=path)
    missing = [k for k in ("fps", "size", "codec") if k not in attrs]
    if missing or "videos" not in f:
        raise C4CError(f"frame store is missing {', '.join(missing) or 'the videos group'}", path=path)
    codec = str(attrs["codec"])
    if codec not in CODECS:
        raise C4CError(f"unknown frame codec {codec!r}", path=path)
    return StoreSettings(fps=float(attrs["fps"]), size=int(attrs["size"]), codec=codec,
                         jpeg_quality=int(attrs.get("jpeg_quality", 0)))


def _write_video(group, sample, settings: StoreSettings, source_path: str) -> None:
    """Write one sampled video (a :class:`c4c.video.decode.SampledVideo`) into ``group``."""
    h5py = _h5py()
    t = sample.num_frames
    if settings.codec == "raw":
        group.create_dataset("frames", data=np.asarray(sample.frames, dtype=np.uint8))
    else:
        ds = group.create_dataset("frames", shape=(t,), dtype=h5py.vlen_dtype(np.uint8))
        for i, data in enumerate(sample.frames):
            ds[i] = np.frombuffer(data, dtype=np.uint8)
    group.create_dataset("timestamps", data=np.asarray(sample.timestamps, dtype=np.float32))
    info = sample.info
    group.attrs["source_path"] = source_path
    group.attrs["duration"] = float(info.duration) if info.duration is not None else float("nan")
    group.attrs["source_fps"] = float(info.fps) if info.fps is not None else float("nan")
    group.attrs["source_width"] = int(info.width or 0)
    group.attrs["source_height"] = int(info.height or 0)
    group.attrs["rotation"] = int(info.rotation)
    group.attrs["num_frames"] = int(t)
    group.attrs["decode_errors"] = int(len(sample.decode_errors))


def part_path(parts_dir: Path, video_id: str) -> Path:
    """Where the staged part of ``video_id`` goes (hashed name: safe for any id)."""
    digest = hashlib.sha1(video_id.encode("utf-8")).hexdigest()[:20]
    return parts_dir / f"{digest}.h5"


def parts_dir_for(store_path: Path) -> Path:
    return store_path.with_name(store_path.name + ".parts")


def write_part(parts_dir: Path, video_id: str, sample, settings: StoreSettings, source_path: str) -> Path:
    """Write one finished video to its own part file atomically; return the part's path."""
    h5py = _h5py()
    parts_dir.mkdir(parents=True, exist_ok=True)
    final = part_path(parts_dir, video_id)
    tmp = final.with_name(final.name + f".tmp-{os.getpid()}")
    with h5py.File(tmp, "w") as f:
        _write_root_attrs(f, settings)
        f.attrs["video_id"] = video_id
        _write_video(f["videos"].create_group(video_id), sample, settings, source_path)
    # No fsync here: a part only has to survive the process being killed (the page cache keeps it);
    # after a power loss an unreadable part is dropped by list_parts and that video is redone.
    os.replace(tmp, final)
    return final


def list_parts(parts_dir: Path) -> dict[str, Path]:
    """Finished parts by video id; removes leftovers of interrupted writes and unreadable parts."""
    h5py = _h5py()
    found: dict[str, Path] = {}
    if not parts_dir.is_dir():
        return found
    for p in sorted(parts_dir.iterdir()):
        if ".tmp-" in p.name:
            p.unlink(missing_ok=True)
            continue
        if p.suffix != ".h5":
            continue
        try:
            with h5py.File(p, "r") as f:
                vid = str(f.attrs["video_id"])
        except (OSError, KeyError):
            log.warning("removing unreadable staged part %s", p)
            p.unlink(missing_ok=True)
            continue
        found[vid] = p
    return found


def stored_ids(store_path: Path) -> set[str]:
    """Ids of the videos already in the store (empty when the store does not exist)."""
    h5py = _h5py()
    if not store_path.exists():
        return set()
    with h5py.File(store_path, "r") as f:
        return set(f["videos"].keys())


def merge_parts(store_path: Path, parts: dict[str, Path]) -> int:
    """Move staged parts into the store with one atomic replace; return how many videos were added.

    Parts of videos already in the store (left by a run killed after its last merge) are dropped.
    """
    h5py = _h5py()
    if not parts:
        return 0
    settings = read_settings(store_path)
    present = stored_ids(store_path)
    fresh = {vid: p for vid, p in parts.items() if vid not in present}
    if fresh:
        tmp = store_path.with_name(store_path.name + f".merge-{os.getpid()}")
        shutil.copyfile(store_path, tmp)
        try:
            with h5py.File(tmp, "r+") as dst:
                videos = dst["videos"]
                for vid, p in fresh.items():
                    with h5py.File(p, "r") as src:
                        if _settings_from_attrs(src, p) != settings:
                            raise C4CError("staged part was made with other settings than the store",
                                           path=p, hint="delete the .parts folder or use a new output")
                        src.copy(src["videos"][vid], videos, name=vid)
            _fsync_path(tmp)
            os.replace(tmp, store_path)
            _fsync_dir(store_path.parent)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    for p in parts.values():
        p.unlink(missing_ok=True)
    return len(fresh)


def remove_stale_merges(store_path: Path) -> None:
    """Delete temp copies left by a merge or a create that was killed."""
    for p in store_path.parent.glob(store_path.name + ".merge-*"):
        p.unlink(missing_ok=True)
    for p in store_path.parent.glob(store_path.name + ".tmp-*"):
        p.unlink(missing_ok=True)


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
    """Read frames and timestamps from FRAMES.h5.

    The HDF5 file is opened lazily and re-opened after a fork, so one instance can be shared with
    data-loader worker processes.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.settings = read_settings(self.path)
        self._file = None
        self._pid: int | None = None

    def _f(self):
        if self._file is None or self._pid != os.getpid():
            self._file = _h5py().File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __enter__(self) -> "FrameStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        return {"path": self.path, "settings": self.settings}

    def __setstate__(self, state: dict) -> None:
        self.path, self.settings = state["path"], state["settings"]
        self._file, self._pid = None, None

    def ids(self) -> list[str]:
        """All video ids, sorted."""
        return sorted(self._f()["videos"].keys())

    def __contains__(self, video_id: str) -> bool:
        return video_id in self._f()["videos"]

    def __len__(self) -> int:
        return len(self._f()["videos"])

    def _group(self, video_id: str):
        videos = self._f()["videos"]
        if video_id not in videos:
            raise C4CError(f"video {video_id!r} is not in the frame store", path=self.path)
        g = videos[video_id]
        if "frames" not in g or "timestamps" not in g:
            raise C4CError(f"video {video_id!r} lacks frames or timestamps", path=self.path)
        return g

    def info(self, video_id: str) -> dict:
        """The per-video attributes (source path, duration, source fps/size, rotation, ...)."""
        g = self._group(video_id)
        return {k: (v.item() if hasattr(v, "item") else v) for k, v in g.attrs.items()}

    def timestamps(self, video_id: str) -> np.ndarray:
        """float32 ``[T]`` seconds of each stored frame."""
        return self._group(video_id)["timestamps"][()]

    def num_frames(self, video_id: str) -> int:
        return int(self._group(video_id)["timestamps"].shape[0])

    def read(self, video_id: str, indices: Sequence[int] | None = None) -> np.ndarray:
        """uint8 ``[n, size, size, 3]`` RGB frames (all, or those at ``indices``, in that order)."""
        g = self._group(video_id)
        ds = g["frames"]
        t = int(g["timestamps"].shape[0])
        if ds.shape[0] != t:
            raise C4CError(f"video {video_id!r}: {ds.shape[0]} frames but {t} timestamps", path=self.path)
        idx = list(range(t)) if indices is None else [int(i) for i in indices]
        if any(i < 0 or i >= t for i in idx):
            raise IndexError(f"frame index out of range 0..{t - 1} for video {video_id!r}")
        if not idx:
            return np.zeros((0, self.settings.size, self.settings.size, 3), np.uint8)
        if self.settings.codec == "raw":
            return _read_rows(ds, idx)
        from c4c.video.decode import decode_jpeg

        return np.stack([decode_jpeg(data) for data in _read_rows(ds, idx)])

    def iter_ids(self, ids: Iterable[str] | None = None) -> Iterable[str]:
        return iter(self.ids() if ids is None else ids)
