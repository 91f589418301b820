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
import shutil
from pathlib import Path

from c4c.atomic import TEMP_MARK, atomic_path
from c4c.errors import C4CError
from c4c.video.layout import StoreSettings, read_settings, settings_from_attrs, write_root, write_video

log = logging.getLogger(__name__)


def part_path(parts_dir: Path, video_id: str) -> Path:
    """Where the staged part of ``video_id`` goes (hashed name: safe for any id)."""
    digest = hashlib.sha1(video_id.encode("utf-8")).hexdigest()[:20]
    return parts_dir / f"{digest}.h5"


def parts_dir_for(store_path: Path) -> Path:
    """The staging folder of the store ``store_path``: ``<store>.parts``."""
    return store_path.with_name(store_path.name + ".parts")


def write_part(parts_dir: Path, video_id: str, sample, settings: StoreSettings, source_path: str) -> Path:
    """Write one finished video to its own part file atomically; return the part's path."""
    import h5py

    final = part_path(parts_dir, video_id)
    # Not durable: a part only has to survive the process being killed (the page cache keeps it);
    # after a power loss an unreadable part is dropped by list_parts and that video is redone.
    with atomic_path(final) as tmp:
        with h5py.File(tmp, "w") as f:
            write_root(f, settings)
            f.attrs["video_id"] = video_id
            write_video(f["videos"].create_group(video_id), sample, settings, source_path)
    return final


def list_parts(parts_dir: Path) -> dict[str, Path]:
    """Finished parts by video id; removes leftovers of interrupted writes and unreadable parts."""
    import h5py

    found: dict[str, Path] = {}
    if not parts_dir.is_dir():
        return found
    for p in sorted(parts_dir.iterdir()):
        if TEMP_MARK in p.name:
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
    import h5py

    if not store_path.exists():
        return set()
    with h5py.File(store_path, "r") as f:
        return set(f["videos"].keys())


def merge_parts(store_path: Path, parts: dict[str, Path]) -> int:
    """Move staged parts into the store with one atomic replace; return how many videos were added.

    Parts of videos already in the store (left by a run killed after its last merge) are dropped.
    """
    import h5py

    if not parts:
        return 0
    settings = read_settings(store_path)
    present = stored_ids(store_path)
    fresh = {vid: p for vid, p in parts.items() if vid not in present}
    if fresh:
        with atomic_path(store_path, durable=True) as tmp:
            shutil.copyfile(store_path, tmp)
            with h5py.File(tmp, "r+") as dst:
                videos = dst["videos"]
                for vid, p in fresh.items():
                    with h5py.File(p, "r") as src:
                        if settings_from_attrs(src, p) != settings:
                            raise C4CError("staged part was made with other settings than the store",
                                           path=p, hint="delete the .parts folder or use a new output")
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
