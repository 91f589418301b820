"""The HDF5 frame store's layout (format "c4c-frames" version 1): its settings, creating a store, and
writing one video's group. :mod:`c4c.video.store` reads stores, :mod:`c4c.video.staging` fills them,
:mod:`c4c.video.shards` groups them; all three build on this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from c4c import __version__
from c4c.atomic import atomic_path
from c4c.choices import CODECS, READERS
from c4c.errors import C4CError


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


def write_root(f, settings: StoreSettings) -> None:
    """Give the open HDF5 file ``f`` the root attributes of a store and its ``videos`` group."""
    f.attrs["format"] = FORMAT
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["c4c_version"] = __version__
    for key, value in settings.as_attrs().items():
        f.attrs[key] = value
    f.require_group("videos")


def write_video(group, sample, settings: StoreSettings, source_path: str) -> None:
    """Write one sampled video (a :class:`c4c.video.decode.SampledVideo`) into the HDF5 ``group``."""
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


def create_store(path: Path, settings: StoreSettings) -> None:
    """Create an empty store at ``path`` atomically (flushed to disk)."""
    with atomic_path(path, durable=True) as tmp:
        with _h5py().File(tmp, "w") as f:
            write_root(f, settings)


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
        return settings_from_attrs(f, path)


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
    codec = str(attrs["codec"])
    if codec not in CODECS:
        raise C4CError(f"unknown frame codec {codec!r}", path=path)
    reader = str(attrs.get("reader", "c4c"))  # stores written before the attribute used the c4c reader
    if reader not in READERS:
        raise C4CError(f"unknown frame reader {reader!r}", path=path)
    return StoreSettings(fps=float(attrs["fps"]), size=int(attrs["size"]), codec=codec,
                         jpeg_quality=int(attrs.get("jpeg_quality", 0)), reader=reader)
