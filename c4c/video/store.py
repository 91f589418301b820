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

Shard sets (format ``c4c-frames-shards`` version 1, for corpora too large for one file): a folder of
ordinary version-1 stores ``frames-<k>-of-<S>.h5`` (``k = 0..S-1``, 5 digits each) plus
``manifest.json``, which names the format, the settings, and every shard file with its size and its
sorted video ids. A video belongs to shard ``sha1(video_id) mod S`` (first 8 bytes, big-endian),
so machines can extract different shards at once without talking to each other.
:class:`FrameStore` opens a shard folder (or its manifest) like a single file; each shard file is
opened only when one of its videos is read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from c4c import __version__
from c4c.errors import C4CError

log = logging.getLogger(__name__)

FORMAT = "c4c-frames"
FORMAT_VERSION = 1
CODECS = ("raw", "jpeg")
SHARDS_FORMAT = "c4c-frames-shards"
SHARDS_VERSION = 1
MANIFEST = "manifest.json"
_SHARD_NAME = re.compile(r"^frames-(\d{5})-of-(\d{5})\.h5$")
_MAX_OPEN_SHARDS = 64  # shard files a FrameStore keeps open at once (least recently used are closed)
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


# --- shard sets -------------------------------------------------------------------------------------


def shard_name(index: int, count: int) -> str:
    """File name of shard ``index`` of a set of ``count``: ``frames-00003-of-00016.h5``."""
    return f"frames-{index:05d}-of-{count:05d}.h5"


def shard_of(video_id: str, count: int) -> int:
    """The shard a video belongs to: the first 8 bytes of ``sha1(video_id)`` (big-endian) mod ``count``."""
    digest = hashlib.sha1(video_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % int(count)


def is_shard_set(path: str | Path) -> bool:
    """Whether ``path`` names a shard set (a folder, or its manifest ``.json``) rather than one FRAMES.h5."""
    path = Path(path)
    return path.is_dir() or path.suffix.lower() == ".json"


def find_shards(folder: Path) -> tuple[int, dict[int, Path]]:
    """``(S, {k: path of shard k})`` for the shard files in ``folder``; ``(0, {})`` when there are none.

    C4CError when the folder mixes files of sets of different sizes.
    """
    folder = Path(folder)
    found: dict[int, Path] = {}
    counts: set[int] = set()
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            m = _SHARD_NAME.match(p.name)
            if m and p.is_file():
                found[int(m.group(1))] = p
                counts.add(int(m.group(2)))
    if len(counts) > 1:
        raise C4CError(f"shard files of sets of {', '.join(map(str, sorted(counts)))} shards are mixed",
                       path=folder, hint="keep one shard set per folder")
    count = counts.pop() if counts else 0
    beyond = [found[k].name for k in found if k >= count]
    if beyond:
        raise C4CError(f"shard index out of range in {beyond[0]}", path=folder)
    return count, found


def pending_shard_parts(folder: Path) -> list[Path]:
    """Staging folders of shard files that still hold unmerged videos (an extraction running, or killed)."""
    return [p for p in sorted(Path(folder).glob("frames-*-of-*.h5.parts"))
            if p.is_dir() and any(p.iterdir())]


def write_manifest(folder: Path) -> Path:
    """Scan the shard files of ``folder`` and write its ``manifest.json`` atomically; return its path.

    C4CError when a shard file is missing or unreadable, shards were made with different settings,
    or a video is stored in two shards.
    """
    h5py = _h5py()
    folder = Path(folder)
    count, found = find_shards(folder)
    if count == 0:
        raise C4CError("no shard files (frames-KKKKK-of-SSSSS.h5) in this folder", path=folder,
                       hint="write them with `c4c extract ... --shards S`")
    missing = [shard_name(k, count) for k in range(count) if k not in found]
    if missing:
        raise C4CError(f"{len(missing)} of {count} shard files are missing (first: {missing[0]})", path=folder,
                       hint="extract the missing shards first (`c4c extract ... --shards S --shard-index K`)")
    settings: StoreSettings | None = None
    owner: dict[str, str] = {}
    shards = []
    for k in range(count):
        path = found[k]
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise C4CError(f"not a readable HDF5 file ({exc})", path=path) from None
        with f:
            have = _settings_from_attrs(f, path)
            ids = sorted(f["videos"].keys())
        if settings is None:
            settings = have
        elif have != settings:
            raise C4CError(f"shard made with {have.describe()}, but {shards[0]['file']} with "
                           f"{settings.describe()}", path=path, hint="re-extract it with the same settings")
        for vid in ids:
            if vid in owner:
                raise C4CError(f"video {vid!r} is stored in two shards ({owner[vid]} and {path.name})", path=folder,
                               hint="delete it from one of them")
            owner[vid] = path.name
        shards.append({"file": path.name, "bytes": path.stat().st_size, "videos": ids})
    manifest = {"format": SHARDS_FORMAT, "format_version": SHARDS_VERSION, "c4c_version": __version__,
                "settings": settings.as_attrs(), "num_shards": count,
                "assignment": "sha1(video_id), first 8 bytes big-endian, mod num_shards",
                "videos": len(owner), "shards": shards}
    target = folder / MANIFEST
    # several machines may finish at once: a temp name unique across hosts, then an atomic rename
    tmp = folder / f".{MANIFEST}.tmp-{socket.gethostname()}-{os.getpid()}"
    tmp.write_text(json.dumps(manifest) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    log.info("wrote %s: %d videos in %d shards", target, len(owner), count)
    return target


@dataclass
class ShardSet:
    """A validated shard manifest: settings, the shard files (index = shard number) and where each video is."""

    manifest: Path
    settings: StoreSettings
    files: list[Path]
    where: dict[str, int]


def read_manifest(path: str | Path) -> ShardSet:
    """Read and check a shard set's manifest (``path``: the folder or the manifest file).

    C4CError naming the file when the manifest is missing, malformed or of a newer version, a shard file
    is missing or has changed size since the manifest was written, or a video is listed twice.
    """
    path = Path(path)
    manifest = path / MANIFEST if path.is_dir() else path
    rebuild = f"rebuild the manifest with `c4c extract --index {manifest.parent}`"
    if not manifest.is_file():
        hint = "create it with `c4c extract ... --shards S`"
        if path.is_dir() and find_shards(path)[0]:
            hint = f"the shard files are there: {rebuild} once every shard is extracted"
        raise C4CError("frame store not found: no shard manifest", path=manifest, hint=hint)
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise C4CError(f"unreadable shard manifest ({exc})", path=manifest) from None
    if not isinstance(data, dict) or data.get("format") != SHARDS_FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise C4CError(f"not a c4c shard manifest (format is {found!r}, expected {SHARDS_FORMAT!r})", path=manifest)
    version = data.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise C4CError(f"invalid format_version {version!r}", path=manifest)
    if version > SHARDS_VERSION:
        raise C4CError(f"shard manifest format version {version} is newer than this c4c supports "
                       f"({SHARDS_VERSION})", path=manifest, hint="upgrade c4c")
    try:
        raw = data["settings"]
        settings = StoreSettings(fps=float(raw["fps"]), size=int(raw["size"]), codec=str(raw["codec"]),
                                 jpeg_quality=int(raw.get("jpeg_quality", 0)))
        entries = list(data["shards"])
        count = int(data["num_shards"])
        if settings.codec not in CODECS:
            raise ValueError(f"unknown codec {settings.codec!r}")
        if len(entries) != count:
            raise ValueError(f"{len(entries)} shards listed, num_shards is {count}")
        files: list[Path] = []
        where: dict[str, int] = {}
        for k, entry in enumerate(entries):
            name = str(entry["file"])
            if Path(name).name != name or name in ("", ".", ".."):
                raise ValueError(f"shard file {name!r} is not a plain file name")
            file = manifest.parent / name
            if not file.is_file():
                raise C4CError(f"shard file {name} named by the manifest is missing", path=file,
                               hint="copy it back, or re-extract that shard")
            size = file.stat().st_size
            if "bytes" in entry and int(entry["bytes"]) != size:
                raise C4CError(f"shard file has changed since the manifest was written ({size:,} bytes; the "
                               f"manifest says {int(entry['bytes']):,})", path=file, hint=rebuild)
            for vid in entry["videos"]:
                if vid in where:
                    raise C4CError(f"video {vid!r} is listed in two shards ({files[where[vid]].name} and {name})",
                                   path=manifest, hint=rebuild)
                where[str(vid)] = k
            files.append(file)
    except (KeyError, TypeError, ValueError) as exc:
        raise C4CError(f"malformed shard manifest ({type(exc).__name__}: {exc})", path=manifest) from None
    return ShardSet(manifest=manifest, settings=settings, files=files, where=where)


def decode_jpegs(rows: Sequence[np.ndarray]) -> np.ndarray:
    """Decode stored JPEG frames (1-D uint8 arrays) to uint8 ``[n, H, W, 3]`` RGB, straight into one array.

    Pillow (libjpeg-turbo), told the format so that it does not probe its other plugins. (torchvision's
    decoder is 3x faster on 32 px frames but deprecated since torchvision 0.29.)
    """
    import io

    from PIL import Image

    out = None
    for i, row in enumerate(rows):
        with Image.open(io.BytesIO(row.tobytes() if isinstance(row, np.ndarray) else row), formats=("JPEG",)) as img:
            img.load()
            frame = np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
        if out is None:
            out = np.empty((len(rows),) + frame.shape, np.uint8)
        out[i] = frame
    return out


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
            f = _h5py().File(self.path, "r")
        else:
            path = self.shards.files[k]
            try:
                f = _h5py().File(path, "r")
            except OSError as exc:
                raise C4CError(f"not a readable HDF5 file ({exc})", path=path) from None
            if k not in self._checked:
                have = _settings_from_attrs(f, path)
                if have != self.settings:
                    f.close()
                    raise C4CError(f"shard made with {have.describe()}, but its manifest says "
                                   f"{self.settings.describe()}", path=path,
                                   hint="rebuild the manifest with `c4c extract --index "
                                        f"{self.shards.manifest.parent}`")
                self._checked.add(k)
        self._files[k] = f
        if len(self._files) > _MAX_OPEN_SHARDS:
            _, oldest = self._files.popitem(last=False)
            oldest.close()
        return f

    def _f(self):
        return self._open(0)

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
        return {"path": self.path, "settings": self.settings, "shards": self.shards, "checked": self._checked}

    def __setstate__(self, state: dict) -> None:
        self.path, self.settings = state["path"], state["settings"]
        self.shards, self._checked = state.get("shards"), set(state.get("checked", ()))
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

    def _datasets(self, video_id: str):
        """``(frames, timestamps)`` datasets of a video (h5py look-ups are slow: as few as possible)."""
        if self.shards is None:
            f, where = self._open(0), self.path
        else:
            k = self.shards.where.get(video_id)
            if k is None:
                raise C4CError(f"video {video_id!r} is not in the frame store", path=self.path)
            f, where = self._open(k), self.shards.files[k]
        try:
            g = f["videos"][video_id]
        except KeyError:
            if self.shards is None:
                raise C4CError(f"video {video_id!r} is not in the frame store", path=self.path) from None
            raise C4CError(f"the manifest puts video {video_id!r} in this shard, but it is not there",
                           path=where, hint=f"rebuild the manifest with `c4c extract --index "
                                            f"{self.shards.manifest.parent}`") from None
        try:
            return g["frames"], g["timestamps"]
        except KeyError:
            raise C4CError(f"video {video_id!r} lacks frames or timestamps", path=where) from None

    def _group(self, video_id: str):
        return self._datasets(video_id)[1].parent

    def info(self, video_id: str) -> dict:
        """The per-video attributes (source path, duration, source fps/size, rotation, ...)."""
        g = self._group(video_id)
        return {k: (v.item() if hasattr(v, "item") else v) for k, v in g.attrs.items()}

    def timestamps(self, video_id: str) -> np.ndarray:
        """float32 ``[T]`` seconds of each stored frame."""
        return self._datasets(video_id)[1][()]

    def num_frames(self, video_id: str) -> int:
        return int(self._datasets(video_id)[1].shape[0])

    def read(self, video_id: str, indices: Sequence[int] | None = None) -> np.ndarray:
        """uint8 ``[n, size, size, 3]`` RGB frames (all, or those at ``indices``, in that order)."""
        ds, ts = self._datasets(video_id)
        return self._read(video_id, ds, int(ts.shape[0]), indices)

    def read_clip(self, video_id: str,
                  choose: Callable[[np.ndarray], Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Frames chosen from a video's timestamps in one visit: ``choose(timestamps float32 [T])`` gives
        the indices; returns ``(frames uint8 [n, size, size, 3], indices int64 [n])``."""
        ds, ts = self._datasets(video_id)
        idx = np.asarray(choose(ts[()]), dtype=np.int64).reshape(-1)
        return self._read(video_id, ds, int(ts.shape[0]), idx), idx

    def _read(self, video_id: str, ds, t: int, indices) -> np.ndarray:
        if ds.shape[0] != t:
            raise C4CError(f"video {video_id!r}: {ds.shape[0]} frames but {t} timestamps", path=ds.file.filename)
        idx = list(range(t)) if indices is None else [int(i) for i in indices]
        if any(i < 0 or i >= t for i in idx):
            raise IndexError(f"frame index out of range 0..{t - 1} for video {video_id!r}")
        if not idx:
            return np.zeros((0, self.settings.size, self.settings.size, 3), np.uint8)
        if self.settings.codec == "raw":
            return _read_rows(ds, idx)
        return decode_jpegs(_read_rows(ds, idx))

    def iter_ids(self, ids: Iterable[str] | None = None) -> Iterable[str]:
        return iter(self.ids() if ids is None else ids)
