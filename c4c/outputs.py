"""The output guard: the one place that decides whether a command may write where it was told to.

Every command that writes names its outputs (:class:`Output`: the path, what it is, and how to tell a
file of its own format) and its inputs, and runs its work inside :func:`guard`, which

1. refuses an output that is one of the command's inputs (the same path, a link to it, or a hard link:
   the same file), or a folder that holds one of them;
2. refuses an output that exists and is not of the command's own format (c4c replaces only files it
   wrote: never a file beside an output that merely has the same name), whatever ``--overwrite`` says;
3. refuses an output that cannot be written (a read-only file system, no permission) in one line
   naming it, before any work is done;
4. holds the writer lock of every output (:mod:`c4c.lock`) until the work ends, so a second command
   writing the same output at the same time stops at once, naming the first.

The checks are run again once the locks are held, so two commands started together cannot both pass
them. Failures to write that only show during the work (a disk that fills, a folder made read-only
under a running command) are :class:`CannotWrite` or :class:`c4c.atomic.DiskFull`: one line, exit 1.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from c4c.atomic import CannotWrite, write_failure
from c4c.errors import C4CError
from c4c.lock import writer_lock

@dataclass(frozen=True)
class Output:
    """One thing a command writes: ``path``, what it is (``kind``, for messages), and ``ours``: True when
    what already exists at ``path`` is of this output's own format (so it may be replaced or continued).
    ``folder``: the output is a folder (an empty folder is always ours)."""

    path: Path
    kind: str
    ours: Callable[[Path], bool]
    folder: bool = False


def _same_place(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # a hard link: another name of the same file
    except OSError:
        return False


def _inside(inner: Path, folder: Path) -> bool:
    try:
        Path(os.path.realpath(inner)).relative_to(os.path.realpath(folder))
        return True
    except ValueError:
        return False


def _nearest_existing(path: Path) -> Path:
    p = Path(os.path.abspath(path))
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def unwritable_reason(folder: Path) -> str | None:
    """Why files cannot be created in ``folder`` (an existing folder), or None when they can."""
    with contextlib.suppress(OSError):  # no statvfs here: os.access below still answers
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "read-only file system"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"no permission to write in {folder}"
    return None


def _check_one(out: Output, inputs: Sequence[Path]) -> None:
    path = Path(out.path)
    for given in inputs:
        if _same_place(path, given):
            raise C4CError(f"the {out.kind} to write is also an input of this command ({given})", path=path,
                           hint="write it somewhere else: nothing was written")
        if out.folder and os.path.lexists(given) and _inside(given, path) and os.path.lexists(path):
            raise C4CError(f"the {out.kind} to write holds an input of this command ({given})", path=path,
                           hint="write it somewhere else: nothing was written")
    if os.path.islink(path) and not path.exists():
        raise C4CError(f"the {out.kind} to write is a broken link", path=path, hint="remove the link, or choose "
                                                                                    "another path")
    if path.exists():
        if out.folder and not path.is_dir():
            raise C4CError(f"exists and is a file, not a {out.kind}", path=path, hint="choose another path")
        if not out.folder and path.is_dir():
            raise C4CError(f"exists and is a folder, not a {out.kind}", path=path, hint="choose another path")
        empty_folder = out.folder and not any(path.iterdir())
        if not empty_folder and not out.ours(path):
            raise C4CError(f"exists and is not a c4c {out.kind}", path=path,
                           hint="c4c replaces only its own files: choose another path, or move it away")
    parent = _nearest_existing(path.parent)
    if not parent.is_dir():
        raise C4CError(f"{parent} is not a folder", path=path, hint="choose another path")
    why = unwritable_reason(parent)
    if why is None and path.is_dir():
        why = unwritable_reason(path)
    if why is not None:
        raise CannotWrite(path, why)


def check_outputs(outputs: Sequence[Output], inputs: Iterable[str | Path | None] = ()) -> None:
    """C4CError (or :class:`CannotWrite`) for the first output that may not be written; writes nothing."""
    given = [Path(p) for p in inputs if p is not None and str(p) != ""]
    for i, out in enumerate(outputs):
        for other in outputs[i + 1:]:
            if _same_place(out.path, other.path):
                raise C4CError(f"the {out.kind} and the {other.kind} are one path", path=out.path,
                               hint="give them different paths")
        _check_one(out, given)


@contextmanager
def guard(outputs: Sequence[Output], inputs: Iterable[str | Path | None] = (), *, command: str,
          wait: bool = False, can_wait: bool = False, lock: bool = True) -> Iterator[None]:
    """Check ``outputs`` against ``inputs`` (:func:`check_outputs`), then hold the writer lock of each output
    for the duration of the block (checked again under the locks). Writes nothing when a check fails.
    ``lock=False``: check only (the other processes of one distributed run, whose first process locks)."""
    outputs = list(outputs)
    inputs = [p for p in inputs if p is not None and str(p) != ""]
    check_outputs(outputs, inputs)
    try:
        with writer_lock([Path(o.path) for o in outputs] if lock else [], wait=wait, command=command,
                         can_wait=can_wait):
            check_outputs(outputs, inputs)
            yield
    except OSError as exc:
        failure = write_failure(exc)
        if failure is None:
            raise
        raise failure from exc


# --- how to tell a file of one's own format --------------------------------------------------------------


def json_with_format(*formats: str, also: Callable[[object], bool] | None = None) -> Callable[[Path], bool]:
    """``ours`` for a JSON file: an object whose ``format`` is one of ``formats`` (or for which ``also``,
    a test of the parsed content, holds: files of older c4c versions without a format key)."""

    def ours(path: Path) -> bool:
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return False
        if isinstance(data, dict) and data.get("format") in formats:
            return True
        return bool(also and also(data))

    return ours


def hdf5_with_format(*formats: str) -> Callable[[Path], bool]:
    """``ours`` for an HDF5 file whose root attribute ``format`` is one of ``formats``."""

    def ours(path: Path) -> bool:
        try:
            with open(path, "rb") as handle:
                if handle.read(8) != b"\x89HDF\r\n\x1a\n":
                    return False
            import h5py

            with h5py.File(path, "r", locking=False) as f:
                value = f.attrs.get("format")
        except (OSError, ValueError, RuntimeError):
            return False
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        return value in formats

    return ours


def folder_holding(*names: str) -> Callable[[Path], bool]:
    """``ours`` for a folder: it holds at least one of ``names`` (its own files)."""

    def ours(path: Path) -> bool:
        return path.is_dir() and any((path / name).exists() for name in names)

    return ours
