"""One writer per output: an exclusive ``fcntl.flock`` on ``<output>.lock`` beside it.

Every command that writes holds the lock of each of its outputs (a frame store or each shard of a shard
set it works on, a run folder, EMB.h5, an index or library folder, captions, plots, exports; see
:mod:`c4c.outputs`) from before it touches them until it ends. A second run on the same file
stops at once with a message naming the holder (pid and host, written into the lock file), or waits
for it with ``wait=True``. The kernel drops the lock when the holder dies, even by SIGKILL, so a lock
is never stale; the file itself is removed on release. On NFS, Linux maps ``flock`` to byte-range
locks shared by every client, so machines working on other shards of one set never block each other
and two machines on one shard do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from c4c.errors import C4CError

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"


def lock_path(target: Path) -> Path:
    """The lock file of the store (or shard) ``target``: ``<name>.lock`` beside it."""
    target = Path(target)
    return target.with_name(target.name + LOCK_SUFFIX)


def holder(target: Path) -> str:
    """Who holds the lock of ``target``, as its lock file says (``pid 123 on host h since 12:00:01``)."""
    try:
        text = lock_path(target).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        text = ""
    return text or "a process that has not written its name yet"


def _acquire(target: Path, wait: bool, command: str, can_wait: bool) -> int:
    import fcntl

    path = lock_path(target)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = holder(target)
            if not wait:
                os.close(fd)
                raise C4CError(f"another {command} is writing it ({who})", path=target,
                               hint="one writer per output: wait for it to end"
                                    + (", or pass --wait to start when it does" if can_wait else "")) from None
            log.warning("%s: waiting for %s (%s) to end", target, command, who)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        # The holder removes the file as it lets go: a lock on a removed file locks nothing, so check
        # that the file locked is still the one at the path, else take the new one.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:  # who holds it, for the message of the next one (best effort: a full disk must not stop this)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"
                     .encode())
    except OSError:
        pass
    return fd


def _release(target: Path, fd: int) -> None:
    lock_path(target).unlink(missing_ok=True)  # while still held: a waiter then sees that its file is gone
    os.close(fd)


@contextmanager
def writer_lock(targets: Iterable[Path], *, wait: bool = False, command: str = "c4c extract",
                can_wait: bool = True) -> Iterator[None]:
    """Hold the writer lock of every file in ``targets`` (in sorted order, so two runs never deadlock)
    for the duration of the block; C4CError naming the first one another process holds, unless ``wait``
    (``can_wait``: the command has a ``--wait`` option to suggest)."""
    held: list[tuple[Path, int]] = []
    made: list[Path] = []  # folders made for the lock files: removed again if the work left them empty
    try:
        for target in sorted(set(Path(t) for t in targets)):
            made += _make_folders(target.parent)
            held.append((target, _acquire(target, wait, command, can_wait)))
        yield
    finally:
        for target, fd in reversed(held):
            _release(target, fd)
        for folder in reversed(made):
            with contextlib.suppress(OSError):  # not empty: the work wrote into it, and it stays
                folder.rmdir()


def _make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; the ones created, outermost first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for f in reversed(missing):
        f.mkdir(exist_ok=True)
    return list(reversed(missing))
