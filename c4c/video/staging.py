"""Getting videos into a frame store without ever leaving it half-written.

The store is only ever replaced whole, by rename. Workers write each finished video to its own small
HDF5 file, a *part*, in ``<store>.parts/`` (temp name, then rename); :func:`merge_parts` copies the
store, appends the parts, and renames the copy over the store. A SIGKILL at any moment leaves the old
or the new store (both open) and finished parts that the next run merges; a video already in the
store is never added twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
from collections.abc import Collection, Mapping
from pathlib import Path

from c4c.atomic import TEMP_MARK, atomic_path, disk_full_is_an_error, ensure_space, write_bytes
from c4c.errors import C4CError, first_line
from c4c.video.layout import (StoreSettings, check_video, open_h5, read_settings, refuse_link,
                              settings_from_attrs, write_root, write_video)

log = logging.getLogger(__name__)


def part_path(parts_dir: Path, video_id: str) -> Path:
    """Where the staged part of ``video_id`` goes (hashed name: safe for any id)."""
    digest = hashlib.sha1(video_id.encode("utf-8")).hexdigest()[:20]
    return parts_dir / f"{digest}.h5"


def parts_dir_for(store_path: Path) -> Path:
    """The staging folder of the store ``store_path``: ``<store>.parts``."""
    return store_path.with_name(store_path.name + ".parts")


def count_videos(n: int) -> str:
    """``1 video``, ``3 videos``: for messages."""
    return f"{n} video" + ("" if n == 1 else "s")


_SLACK = 1 << 20  # bytes kept free beyond what a write needs (file system metadata, the folder entry)


def part_image(video_id: str, sample, settings: StoreSettings, source_path: str) -> bytes:
    """The bytes of the part file of one sampled video (an HDF5 file built in memory)."""
    import h5py

    # in memory: HDF5 never meets a full disk half-way through a file (its clean-up after a failed
    # write is where h5py has crashed)
    name = f"c4c-part-{os.getpid()}-{threading.get_ident()}-{part_path(Path(), video_id).stem}"
    with h5py.File(name, "w", driver="core", backing_store=False) as f:
        write_root(f, settings)
        f.attrs["video_id"] = video_id
        write_video(f["videos"].create_group(video_id), sample, settings, source_path)
        f.flush()
        return f.id.get_file_image()


def write_part(parts_dir: Path, video_id: str, sample, settings: StoreSettings, source_path: str) -> Path:
    """Write one finished video to its own part file atomically; return the part's path.

    :class:`c4c.atomic.DiskFull` when it does not fit (nothing is left behind).
    """
    final = part_path(parts_dir, video_id)
    image = part_image(video_id, sample, settings, source_path)
    ensure_space(parts_dir, len(image) + _SLACK, path=final, largest_file=len(image))
    # Not durable: a part only has to survive the process being killed (the page cache keeps it);
    # after a power loss an unreadable part is dropped by list_parts and that video is redone.
    write_bytes(final, image)
    return final


def list_parts(parts_dir: Path, known: Mapping[str, Path] | None = None) -> dict[str, Path]:
    """Finished parts by video id; removes leftovers of interrupted writes and unreadable parts.

    ``known``: parts this process wrote (video id -> path); those are taken without opening them.
    """
    found: dict[str, Path] = {}
    if not parts_dir.is_dir():
        return found
    id_of = {path.name: vid for vid, path in (known or {}).items()}
    for p in sorted(parts_dir.iterdir()):
        if TEMP_MARK in p.name:
            p.unlink(missing_ok=True)
            continue
        if p.suffix != ".h5":
            continue
        if p.name in id_of:
            found[id_of[p.name]] = p
            continue
        try:
            with open_h5(p) as f:
                vid = str(f.attrs["video_id"])
        except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
            log.warning("removing unreadable staged part %s (%s); its video is extracted again", p, first_line(exc))
            p.unlink(missing_ok=True)
            continue
        found[vid] = p
    return found


def stored_ids(store_path: Path) -> set[str]:
    """Ids of the videos already in the store (empty when the store does not exist)."""
    if not store_path.exists():
        return set()
    with open_h5(store_path) as f:
        return set(f["videos"].keys())


def _usable_part(path: Path, video_id: str, settings: StoreSettings) -> bool:
    """Whether the staged part ``path`` holds the whole of ``video_id`` (every frame read back against its
    checksum). A damaged part is removed with a warning (its video is extracted again); a part made with
    other settings is an error."""
    try:
        with open_h5(path) as src:
            if settings_from_attrs(src, path) != settings:
                raise C4CError("staged part was made with other settings than the store", path=path,
                               hint="delete the .parts folder or use a new output")
            refuse_link(src["videos"], video_id, path, video_id)
            check_video(src["videos"][video_id], video_id, settings, path, verify=True)
        return True
    except C4CError as exc:
        if "other settings" in exc.problem:
            raise
        reason = exc.problem
    except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
        reason = f"{type(exc).__name__}: {first_line(exc)}"
    log.warning("removing damaged staged part %s of video %r (%s); it is extracted again", path, video_id, reason)
    path.unlink(missing_ok=True)
    return False


def merge_parts(store_path: Path, parts: dict[str, Path], trusted: Collection[str] = ()) -> int:
    """Move staged parts into the store with one atomic replace; return how many videos were added.

    Parts of videos already in the store (left by a run killed after its last merge) are dropped, and
    damaged ones too (their videos are extracted again): every part is read back against its checksums
    except those of ``trusted`` videos, which this process wrote from memory in this run.
    :class:`c4c.atomic.DiskFull` when the copy would not fit: checked before it starts; the store and the
    parts are left as they were.
    """
    if not parts:
        return 0
    settings = read_settings(store_path)
    present = stored_ids(store_path)
    trusted = frozenset(trusted)
    fresh = {vid: p for vid, p in parts.items()
             if vid not in present and (vid in trusted or _usable_part(p, vid, settings))}
    if fresh:
        hint = (f"{count_videos(len(fresh))} finished and kept in {parts_dir_for(store_path)}/; free space and "
                "re-run to merge")
        need = store_path.stat().st_size + sum(p.stat().st_size for p in fresh.values())
        ensure_space(store_path.parent, need + need // 64 + _SLACK, path=store_path, largest_file=need + need // 64,
                     hint=hint)
        with disk_full_is_an_error(store_path, hint), atomic_path(store_path, durable=True) as tmp:
            shutil.copyfile(store_path, tmp)
            with open_h5(tmp, "r+") as dst:
                videos = dst["videos"]
                for vid, p in fresh.items():
                    with open_h5(p) as src:
                        src.copy(src["videos"][vid], videos, name=vid)
    for p in parts.values():
        p.unlink(missing_ok=True)
    return len(fresh)


def remove_stale_merges(store_path: Path) -> None:
    """Delete temp copies left by a merge or a create that was killed."""
    # ".merge-*": the temp name of merges before c4c.atomic
    for pattern in (".merge-*", TEMP_MARK + "*"):
        for p in store_path.parent.glob(store_path.name + pattern):
            p.unlink(missing_ok=True)
