"""Atomic writes: a file is either its old content or its new content, never half of either.

Every writer goes through :func:`atomic_path`: the content is written to a temporary sibling,
``<name>.tmp-<host>-<pid>`` (unique across the machines sharing a folder), which is renamed over the
target (``os.replace``, atomic within a folder) on success and removed on any exception. A killed
process leaves at most such a temp file; readers never see it as the target.

``durable=True`` also flushes the file to disk before the rename and the folder after it, so that
the new content survives a power loss and not only a killed process. It costs a disk round trip:
use it for files that are expensive to redo (a frame store), not for every summary.

A full disk (or quota, or file size limit) is a :class:`DiskFull` error, never a traceback: the temp
file is removed and the target keeps its old content. :func:`ensure_space` checks before a large write
that it can fit, so that h5py never runs out of space half-way through a file.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from c4c.errors import C4CError

TEMP_MARK = ".tmp-"  # in the name of every temp file: clean-ups look for it

_FULL = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
         errno.EFBIG: "file too large for the file system or the file size limit (ulimit -f)"}
# h5py reports the C library's errno inside its message ("errno = 28"), safetensors the strerror text
_FULL_TEXT = re.compile(r"errno = (\d+)|No space left on device|Disk quota exceeded|File too large")
_FULL_WORDS = {"No space left on device": errno.ENOSPC, "Disk quota exceeded": errno.EDQUOT,
               "File too large": errno.EFBIG}


class DiskFull(C4CError):
    """A write failed for want of space (ENOSPC, EDQUOT or EFBIG); what was there before is intact.

    ``errno`` says which; ``exit_code`` is 1: nothing is wrong with the input, run again with space.
    """

    exit_code = 1

    def __init__(self, path: str | Path, code: int = errno.ENOSPC, *, hint: str | None = None) -> None:
        self.errno = code if code in _FULL else errno.ENOSPC
        super().__init__(_FULL[self.errno], path=path, hint=hint or "free space and run again")


# errno values that say "this place cannot be written", whatever the cause
_CANNOT_WRITE = {errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
                 errno.EROFS: "read-only file system"}


class CannotWrite(C4CError):
    """An output cannot be written (read-only file system, no permission). Exit status 1: the input is
    fine, the place is not."""

    exit_code = 1

    def __init__(self, path: str | Path, why: str, *, hint: str | None = None) -> None:
        super().__init__(f"cannot write: {why}", path=path,
                         hint=hint or "choose a writable --out, or fix the folder's permissions")


def _errno_in_chain(exc: BaseException | None, codes: dict, in_text: Callable[[str], int | None]) -> int | None:
    """The first errno of ``codes`` that ``exc`` or an exception it was raised from carries, as its
    ``errno`` or (libraries that only say it in words: h5py, safetensors, torch) in its message."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        code = getattr(exc, "errno", None)
        if code in codes:
            return code
        if not isinstance(exc, C4CError):
            code = in_text(str(exc))
            if code in codes:
                return code
        exc = exc.__cause__ or exc.__context__
    return None


def _refused_in_text(text: str) -> int | None:
    return next((code for code in _CANNOT_WRITE if f"errno = {code}," in text), None)


def _full_in_text(text: str) -> int | None:
    for m in _FULL_TEXT.finditer(text):
        code = int(m.group(1)) if m.group(1) else _FULL_WORDS[m.group(0)]
        if code in _FULL:
            return code
    return None


def cannot_write_errno(exc: BaseException | None) -> int | None:
    """EACCES, EPERM or EROFS when ``exc`` (or an exception it was raised from) is a refused write."""
    return _errno_in_chain(exc, _CANNOT_WRITE, _refused_in_text)


def write_failure(exc: BaseException, path: str | Path | None = None) -> CannotWrite | None:
    """The :class:`CannotWrite` that ``exc`` amounts to (naming ``path``, else the file the error names),
    or None when it is not a refused write."""
    code = cannot_write_errno(exc)
    if code is None:
        return None
    where = path if path is not None else (getattr(exc, "filename", None) or "output")
    return CannotWrite(where, _CANNOT_WRITE[code])


def disk_full_errno(exc: BaseException | None) -> int | None:
    """ENOSPC, EDQUOT or EFBIG when ``exc`` (or an exception it was raised from) is a write that ran out
    of space; None for any other error."""
    return _errno_in_chain(exc, _FULL, _full_in_text)


@contextmanager
def disk_full_is_an_error(path: str | Path, hint: str | None = None) -> Iterator[None]:
    """Turn a write that runs out of space inside the block into :class:`DiskFull` naming ``path``."""
    try:
        yield
    except BaseException as exc:
        code = disk_full_errno(exc)
        if code is None:
            raise
        raise DiskFull(path, code, hint=hint or getattr(exc, "hint", None)) from exc


def file_size_limit() -> int | None:
    """The largest file this process may write (``ulimit -f``, RLIMIT_FSIZE), or None when unlimited."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def free_bytes(folder: Path) -> int:
    """Bytes free for this user on the file system of ``folder`` (or of its nearest existing parent)."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def ensure_space(folder: Path, needed: int, *, path: str | Path, largest_file: int | None = None,
                 hint: str | None = None) -> None:
    """DiskFull naming ``path`` unless ``needed`` more bytes fit in ``folder`` and a file of ``largest_file``
    bytes is within the file size limit. Checked before a write that cannot be cut short cleanly."""
    limit = file_size_limit()
    if limit is not None and largest_file is not None and largest_file > limit:
        raise DiskFull(path, errno.EFBIG, hint=f"it would reach {_size(largest_file)}, the file size limit is "
                                                f"{_size(limit)}; " + (hint or "raise it and run again"))
    free = free_bytes(folder)
    if needed > free:
        raise DiskFull(path, errno.ENOSPC, hint=f"needs about {_size(needed)}, {_size(free)} free; "
                                                + (hint or "free space and run again"))


def _size(n: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)  # pragma: no cover


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

    Parent folders are created. One writer per target and process at a time. Running out of space is
    :class:`DiskFull` naming ``path`` (which keeps its old content).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        if durable:
            fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        code = disk_full_errno(exc)
        if code is None and not isinstance(exc, C4CError):
            failure = write_failure(exc, path)
            if failure is not None:
                raise failure from exc
        if code is None or isinstance(exc, DiskFull):
            raise
        kept = "it keeps its previous content" if path.exists() else "nothing was written"
        raise DiskFull(path, code, hint=f"{kept}; free space and run again") from exc
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
