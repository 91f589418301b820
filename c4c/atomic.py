"""Atomic writes: a file is either its old content or its new content, never half of either.

Every writer goes through :func:`atomic_path`: the content is written to a temporary sibling,
``<name>.tmp-<host>-<pid>`` (unique across the machines sharing a folder), which is renamed over the
target (``os.replace``, atomic within a folder) on success and removed on any exception. A killed
process leaves at most such a temp file; readers never see it as the target.

``durable=True`` also flushes the file to disk before the rename and the folder after it, so that
the new content survives a power loss and not only a killed process. It costs a disk round trip:
use it for files that are expensive to redo (a frame store), not for every summary.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TEMP_MARK = ".tmp-"  # in the name of every temp file: clean-ups look for it


def temp_path(path: Path) -> Path:
    """The temporary sibling that ``path`` is written as before the rename."""
    path = Path(path)
    return path.with_name(f"{path.name}{TEMP_MARK}{socket.gethostname()}-{os.getpid()}")


def fsync_file(path: Path) -> None:
    """Flush the content of the file ``path`` to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush the entries of the folder ``path`` (a rename into it) to disk, where the file system allows."""
    try:
        fsync_file(path)
    except OSError:  # some file systems do not allow opening folders
        pass


@contextmanager
def atomic_path(path: Path, *, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed over ``path``, on any exception removed.

    Parent folders are created. One writer per target and process at a time.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        if durable:
            fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def write_bytes(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path, text: str, *, durable: bool = False) -> None:
    """Write ``text`` to ``path`` atomically, as UTF-8 with the newlines given."""
    with atomic_path(path, durable=durable) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)


def write_json(path: Path, data: Any, *, indent: int | None = 2) -> None:
    """Write ``data`` as UTF-8 JSON (``indent`` spaces; None: one line) atomically (values JSON cannot
    hold, such as paths, are written as strings)."""
    write_text(path, json.dumps(data, indent=indent, ensure_ascii=False, default=str) + "\n")
