"""Shard sets: one frame store spread over many files, for corpora too large for one.

Format ``c4c-frames-shards`` version 1: a folder of ordinary version-1 stores ``frames-<k>-of-<S>.h5``
(``k = 0..S-1``, 5 digits each) plus ``manifest.json``, which names the format, the settings, and
every shard file with its size and its sorted video ids. A video belongs to shard
``sha1(video_id) mod S`` (first 8 bytes, big-endian), so machines can extract different shards at
once without talking to each other. :class:`c4c.video.store.FrameStore` opens a shard folder (or its
manifest) like a single file; each shard file is opened only when one of its videos is read.

While a run works on a shard, ``frames-<k>-of-<S>.h5.running`` marks it (and it holds the shard's
writer lock ``frames-<k>-of-<S>.h5.lock``, :mod:`c4c.lock`: one writer per shard, any number of
machines on other shards); the manifest can be written once every shard is present and none is running
or has unmerged videos (:func:`shard_set_state`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from c4c import __version__
from c4c.atomic import disk_full_is_an_error, write_json
from c4c.choices import CODECS
from c4c.errors import C4CError, first_line
from c4c.video.layout import StoreSettings, damaged_hint, open_h5, settings_from_attrs

log = logging.getLogger(__name__)

SHARDS_FORMAT = "c4c-frames-shards"
SHARDS_VERSION = 1
MANIFEST = "manifest.json"
_SHARD_NAME = re.compile(r"^frames-(\d{5})-of-(\d{5})\.h5$")
_RUNNING = ".running"


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
            f = open_h5(path)
        except OSError as exc:
            raise C4CError(f"not a readable HDF5 file ({first_line(exc)})", path=path, hint=damaged_hint(path)) from None
        with f:
            have = settings_from_attrs(f, path)
            try:
                ids = sorted(f["videos"].keys())
            except (OSError, RuntimeError, KeyError, ValueError) as exc:
                raise C4CError(f"unreadable list of videos ({first_line(exc)})", path=path,
                               hint=damaged_hint(path)) from None
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
    write_json(target, manifest, indent=None)  # several machines may finish at once: the temp name is per host
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
    rebuild = f"rebuild the manifest with `c4c extract --write-manifest {manifest.parent}`"
    if not manifest.is_file():
        hint = "create it with `c4c extract ... --shards S`"
        if path.is_dir() and find_shards(path)[0]:
            hint = f"the shard files are there: {rebuild} once every shard is extracted"
        raise C4CError("frame store not found: no shard manifest", path=manifest, hint=hint)
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
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
                                 jpeg_quality=int(raw.get("jpeg_quality", 0)), reader=str(raw.get("reader", "c4c")))
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
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise C4CError(f"malformed shard manifest ({type(exc).__name__}: {first_line(exc)})", path=manifest) from None
    return ShardSet(manifest=manifest, settings=settings, files=files, where=where)


# --- choosing the shards of a run ----------------------------------------------------------------


def parse_shard_index(spec: str) -> tuple[int, ...]:
    """``"3"``, ``"0-7"`` or ``"0,4,8-11"`` -> sorted distinct shard numbers; C4CError on bad syntax."""
    chosen: set[int] = set()
    for part in str(spec).replace(" ", "").split(","):
        lo, dash, hi = part.partition("-")
        try:
            a = int(lo)
            b = int(hi) if dash else a
        except ValueError:
            raise C4CError(f"bad --shard-index {spec!r}",
                           hint="give shard numbers and ranges: 3, 0-7 or 0,4,8-11") from None
        if a < 0 or b < a:
            raise C4CError(f"bad shard range {part!r} in --shard-index {spec!r}")
        chosen.update(range(a, b + 1))
    return tuple(sorted(chosen))


def shard_count(out: Path, shards: int, shard_index: tuple[int, ...] | None) -> int:
    """Shards of the set to write at ``out`` (0: one FRAMES.h5), from the ``--shards`` and ``--shard-index``
    asked and what is already there; C4CError when they disagree."""
    existing = 0
    if out.is_dir():
        existing, _ = find_shards(out)
    elif out.exists():
        if shards or shard_index is not None:
            raise C4CError("is a file, but a shard set is a folder", path=out,
                           hint="give --out a folder name for --shards, or drop --shards")
        return 0
    if shards and existing and shards != existing:
        raise C4CError(f"already holds a set of {existing} shards; this run asks for {shards}", path=out,
                       hint=f"pass --shards {existing} to resume it, or choose another --out")
    count = shards or existing
    if count and out.suffix.lower() == ".h5":
        raise C4CError("a shard set is a folder: give --out a name without .h5", path=out)
    if not count and out.is_dir():
        raise C4CError("is a folder", path=out,
                       hint="pass --shards S to write a shard set into it, or a file name for one FRAMES.h5")
    if shard_index is not None:
        if not count:
            raise C4CError("--shard-index needs --shards (the size of the shard set)")
        beyond = [k for k in shard_index if not 0 <= k < count]
        if beyond or not shard_index:
            raise C4CError(f"--shard-index must name shards 0..{count - 1}, got {list(shard_index)}")
    return count


# --- which shards are being worked on ---------------------------------------------------------------


def running_marker(shard: Path) -> Path:
    """The file that says a run is working on ``shard`` (removed when it ends)."""
    return shard.with_name(shard.name + _RUNNING)


def mark_running(shards: Iterable[Path]) -> None:
    """Mark each shard file as being worked on by this process (the caller holds its writer lock, so an
    earlier mark is a killed run's)."""
    text = f"{socket.gethostname()} pid {os.getpid()}\n"
    for path in shards:
        marker = running_marker(path)
        if marker.exists():
            log.info("%s was marked as being extracted by %s, a run that was killed: resuming it", path.name,
                     marker.read_text(errors="replace").strip())
        with disk_full_is_an_error(marker):
            marker.write_text(text, encoding="utf-8")


def unmark_running(shards: Iterable[Path]) -> None:
    """Remove the marks of :func:`mark_running`."""
    for path in shards:
        running_marker(path).unlink(missing_ok=True)


def shard_set_state(folder: Path) -> tuple[int, list[str]]:
    """``(S, reasons)``: why the manifest of the shard set in ``folder`` cannot be written yet (empty: it can)."""
    count, found = find_shards(folder)
    reasons = [f"{shard_name(k, count)} is missing" for k in range(count) if k not in found]
    reasons += [f"{p.name[:-len(_RUNNING)]} is being extracted ({p.read_text(errors='replace').strip() or '?'})"
                for p in sorted(folder.glob("frames-*-of-*.h5" + _RUNNING))]
    reasons += [f"{p.name[:-len('.parts')]} has unmerged videos" for p in pending_shard_parts(folder)]
    return count, reasons


def index_shards(folder: Path) -> Path:
    """Write ``manifest.json`` of the shard set in ``folder`` from its shard files (``c4c extract --write-manifest``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise C4CError("not a folder", path=folder, hint="give the folder of a shard set (frames-*-of-*.h5)")
    _, reasons = shard_set_state(folder)
    for reason in reasons:
        if "missing" not in reason:  # missing shards are an error of write_manifest
            log.warning("%s: %s (its videos so far are indexed)", folder, reason)
    return write_manifest(folder)
