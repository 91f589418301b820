"""The HDF5 frame store's layout (format "c4c-frames" version 1): its settings, creating a store, and
writing one video's group. :mod:`c4c.video.store` reads stores, :mod:`c4c.video.staging` fills them,
:mod:`c4c.video.shards` groups them; all three build on this module.
"""

from __future__ import annotations

import os
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from c4c import __version__
from c4c.atomic import write_bytes
from c4c.choices import CODECS, READERS
from c4c.errors import C4CError, first_line


FORMAT = "c4c-frames"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class StoreSettings:
    """How the frames of a store were sampled and stored; fixed for the life of a store."""

    fps: float = 1.0
    size: int = 224
    codec: str = "jpeg"
    jpeg_quality: int = 95
    reader: str = "c4c"               # c4c (true sampling times) | reference (the paper's reader, exactly)

    def __post_init__(self) -> None:
        if self.codec != "jpeg":  # quality means nothing for raw frames; keep comparisons honest
            object.__setattr__(self, "jpeg_quality", 0)

    def describe(self) -> str:
        """``fps=1 size=224 codec=jpeg (quality 95)``, for messages."""
        text = f"fps={self.fps:g} size={self.size} codec={self.codec}"
        text += f" (quality {self.jpeg_quality})" if self.codec == "jpeg" else ""
        return text + (" reader=reference" if self.reader == "reference" else "")

    def as_attrs(self) -> dict:
        return {"fps": float(self.fps), "size": int(self.size), "codec": self.codec,
                "jpeg_quality": int(self.jpeg_quality), "reader": self.reader}


def _h5py():  # imported on first use: `import c4c` stays fast
    import h5py

    return h5py


def open_h5(path: str | Path, mode: str = "r"):
    """Open an HDF5 file of a store without HDF5's own file locks. c4c never needs them (one writer per
    store holds :mod:`c4c.lock`; readers only see whole files, renamed into place), and they
    fail on file systems without flock (NFS, Lustre: errno 38) and when a killed run's child process
    still holds a copy of the descriptor (errno 11)."""
    return _h5py().File(path, mode, locking=False)


def write_root(f, settings: StoreSettings) -> None:
    """Give the open HDF5 file ``f`` the root attributes of a store and its ``videos`` group."""
    f.attrs["format"] = FORMAT
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["c4c_version"] = __version__
    for key, value in settings.as_attrs().items():
        f.attrs[key] = value
    f.require_group("videos")


def frame_checksums(frames) -> np.ndarray:
    """uint32 ``[T]``: the CRC-32 of each stored frame's bytes (raw ``[size, size, 3]`` pixels, or the JPEG)."""
    return np.array([zlib.crc32(np.ascontiguousarray(f, dtype=np.uint8) if isinstance(f, np.ndarray) else f)
                     for f in frames], dtype=np.uint32)


def timestamps_checksum(timestamps: np.ndarray) -> int:
    """The CRC-32 of a video's float32 timestamps."""
    return zlib.crc32(np.ascontiguousarray(timestamps, dtype=np.float32))


def write_video(group, sample, settings: StoreSettings, source_path: str) -> None:
    """Write one sampled video (a :class:`c4c.video.decode.SampledVideo`) into the HDF5 ``group``."""
    h5py = _h5py()
    t = sample.num_frames
    if settings.codec == "raw":
        group.create_dataset("frames", data=np.asarray(sample.frames, dtype=np.uint8))
    else:
        ds = group.create_dataset("frames", shape=(t,), dtype=h5py.vlen_dtype(np.uint8))
        if t:
            # one low-level write for every frame (per-frame writes cost ~0.2 ms each; h5py's own
            # ds[...] = rows misreads rows of equal length as a 2-D array)
            rows = np.empty(t, dtype=ds.dtype)
            for i, data in enumerate(sample.frames):
                rows[i] = np.frombuffer(data, dtype=np.uint8)
            ds.id.write(h5py.h5s.ALL, h5py.h5s.ALL, rows)
    timestamps = np.asarray(sample.timestamps, dtype=np.float32)
    group.create_dataset("timestamps", data=timestamps)
    # checksums: a damaged file is an error on read, never other pixels
    group.create_dataset("crc32", data=frame_checksums(sample.frames))
    group.attrs["timestamps_crc32"] = timestamps_checksum(timestamps)
    info = sample.info
    group.attrs["source_path"] = source_path
    group.attrs["duration"] = float(info.duration) if info.duration is not None else float("nan")
    group.attrs["source_fps"] = float(info.fps) if info.fps is not None else float("nan")
    group.attrs["source_width"] = int(info.width or 0)
    group.attrs["source_height"] = int(info.height or 0)
    group.attrs["rotation"] = int(info.rotation)
    group.attrs["num_frames"] = int(t)
    group.attrs["decode_errors"] = int(len(sample.decode_errors))


def create_store(path: Path, settings: StoreSettings) -> None:
    """Create an empty store at ``path`` atomically (flushed to disk)."""
    # built in memory, written with one plain write: a full disk is a clean DiskFull, not an HDF5 error
    with _h5py().File(f"c4c-new-store-{os.getpid()}-{threading.get_ident()}", "w", driver="core",
                      backing_store=False) as f:
        write_root(f, settings)
        f.flush()
        image = f.id.get_file_image()
    write_bytes(path, image, durable=True)


def damaged_hint(path: Path) -> str:
    """What to do about a store that cannot be read (truncated by a crash, a full disk, a copy cut short)."""
    path = Path(path)
    return (f"if a crash or a copy cut it short, move it aside (mv {path.name} {path.name}.damaged) and "
            f"re-run `c4c extract`: finished videos staged in {path.name}.parts/ are merged into a new store "
            "and the rest are extracted again")


def read_settings(path: Path) -> StoreSettings:
    """Validate the root of a store and return its settings; C4CError when it is not a usable store."""
    try:
        f = open_h5(path)
    except FileNotFoundError:
        raise C4CError("frame store not found", path=path, hint="create it with `c4c extract`") from None
    except OSError as exc:
        raise C4CError(f"not a readable HDF5 file ({first_line(exc)})", path=path,
                       hint=damaged_hint(path)) from None
    with f:
        try:
            return settings_from_attrs(f, path)
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:  # h5py on a damaged file
            raise C4CError(f"unreadable frame store ({type(exc).__name__}: {first_line(exc)})", path=path,
                           hint=damaged_hint(path)) from None


def settings_from_attrs(f, path: Path) -> StoreSettings:
    """The settings of the open store ``f`` (``path`` names it in errors); C4CError when it is not one."""
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
    refuse_link(f, "videos", path)
    codec = str(attrs["codec"])
    if codec not in CODECS:
        raise C4CError(f"unknown frame codec {codec!r}", path=path)
    reader = str(attrs.get("reader", "c4c"))  # stores written before the attribute used the c4c reader
    if reader not in READERS:
        raise C4CError(f"unknown frame reader {reader!r}", path=path)
    return StoreSettings(fps=float(attrs["fps"]), size=int(attrs["size"]), codec=codec,
                         jpeg_quality=int(attrs.get("jpeg_quality", 0)), reader=reader)


def refuse_link(group, name: str, path: Path, video_id: str | None = None) -> None:
    """C4CError unless ``group[name]`` is the store's own object: a soft or external link would read
    another object's or another file's frames (c4c never writes links)."""
    h5py = _h5py()
    link = group.get(name, getlink=True)
    if link is None or isinstance(link, h5py.HardLink):
        return
    what = f"{'video ' + repr(video_id) if video_id is not None else group.name.rstrip('/') + '/' + name}"
    if video_id is not None and name != video_id:
        what += f" ({name})"
    if isinstance(link, h5py.ExternalLink):
        target = f"an external link to {link.filename}:{link.path}"
    elif isinstance(link, h5py.SoftLink):
        target = f"a soft link to {link.path}"
    else:
        target = f"a link of unknown kind ({type(link).__name__})"
    raise C4CError(f"{what} is {target}; a frame store holds its own frames and c4c never writes links",
                   path=path, hint="refused: re-extract the store from the videos")


def check_video(group, video_id: str, settings: StoreSettings, path: Path, *, verify: bool = False) -> None:
    """C4CError naming ``path`` unless the HDF5 ``group`` is a whole video of a store with ``settings``:
    no links, frames of the store's size and codec, one timestamp per frame, a checksum per frame.

    ``verify``: also read every frame and timestamp and compare them with their checksums.
    """
    h5py = _h5py()
    for name in ("frames", "timestamps", "crc32"):
        refuse_link(group, name, path, video_id)
    if "frames" not in group or "timestamps" not in group:
        raise C4CError(f"video {video_id!r} lacks frames or timestamps", path=path)
    frames, stamps = group["frames"], group["timestamps"]
    size = settings.size
    if settings.codec == "raw":
        ok = frames.ndim == 4 and frames.shape[1:] == (size, size, 3) and frames.dtype == np.uint8
        expected = f"uint8 [T, {size}, {size}, 3]"
    else:
        ok = frames.ndim == 1 and h5py.check_vlen_dtype(frames.dtype) == np.uint8
        expected = "one JPEG per frame"
    if not ok:
        raise C4CError(f"video {video_id!r}: frames are {frames.dtype} {list(frames.shape)}, but the store holds "
                       f"{expected} ({settings.describe()})", path=path, hint="re-extract the store")
    if stamps.ndim != 1 or stamps.shape[0] != frames.shape[0]:
        raise C4CError(f"video {video_id!r}: {frames.shape[0]} frames but {stamps.shape} timestamps", path=path)
    crc = group.get("crc32")
    if crc is not None and crc.shape != (frames.shape[0],):
        raise C4CError(f"video {video_id!r}: {crc.shape} checksums for {frames.shape[0]} frames", path=path)
    if verify:
        check_timestamps(video_id, stamps[()], group.attrs.get("timestamps_crc32"), path)
        if crc is not None:
            check_frames(video_id, frames[()], crc[()], range(frames.shape[0]), path)


def check_timestamps(video_id: str, timestamps: np.ndarray, expected, path: Path) -> None:
    """C4CError when the timestamps read do not match the checksum stored with them (None: not stored)."""
    if expected is not None and timestamps_checksum(timestamps) != int(expected):
        raise C4CError(f"video {video_id!r}: timestamps do not match their checksum (the file is damaged)",
                       path=path, hint=damaged_hint(path))


def check_frames(video_id: str, rows, expected: np.ndarray, indices, path: Path) -> None:
    """C4CError when stored frames ``rows`` (at ``indices``) do not match their checksums ``expected`` [T]."""
    have = frame_checksums(rows)
    want = np.asarray(expected, dtype=np.uint32)[np.asarray(list(indices), dtype=np.int64)]
    if not np.array_equal(have, want):
        bad = int(np.asarray(list(indices))[np.flatnonzero(have != want)[0]])
        raise C4CError(f"video {video_id!r}: frame {bad} does not match its checksum (the file is damaged)",
                       path=path, hint=damaged_hint(path))
