"""Ctrl-C for the long-running commands: the first stops at the next safe point, the second at once.

Python turns SIGINT into a KeyboardInterrupt wherever the main thread happens to be, and drops it
when that is a ``__del__``, a callback or a library's cleanup: a stop that depends on where the
exception lands is lost now and then. Inside :func:`graceful` the first SIGINT only sets a flag and
says so on stderr; the work tests the flag at its safe points (:func:`requested`, :func:`stop_here`)
and stops there with :class:`Interrupted`, which says what was kept and how to go on. A second
SIGINT raises KeyboardInterrupt at once.

The terminal sends SIGINT to the whole process group: DataLoader workers ignore it
(:func:`ignore_in_child`, their ``worker_init_fn``), so only the main process decides how to stop.
Stdlib only (no torch), so the CLI can use it before any heavy import.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path
from typing import Callable, Iterator

FIRST_NOTICE = "stopping at the next safe point; Ctrl-C again to stop at once"
AGAIN = "run the same command again to continue"
RESUME = "run the same command with --resume to continue"


class Interrupted(KeyboardInterrupt):
    """A stop at a safe point after Ctrl-C: what was kept (``kept``) and how to go on (``again``).

    A KeyboardInterrupt, so cleanup written for Ctrl-C runs for it too, and no ``except Exception``
    swallows it."""

    def __init__(self, kept: str = "finished work was kept", *, path: str | Path | None = None,
                 again: str = AGAIN) -> None:
        self.kept = kept
        self.path = None if path is None else str(path)
        self.again = again
        super().__init__(self.render())
        global _last
        _last = self  # typer turns a KeyboardInterrupt into exit status 130: the CLI finds the words here

    def render(self) -> str:
        """The one line the CLI prints after ``interrupted:``."""
        where = f"{self.path}: " if self.path else ""
        return f"{where}{self.kept} ({self.again})" if self.again else f"{where}{self.kept}"


_lock = threading.Lock()
_depth = 0                       # nested graceful() blocks (a library update runs extract and encode)
_requested = False               # the first SIGINT arrived
_owner = 0                       # the process that installed the handler (forked children inherit it)
_previous: object = None         # the handler graceful() replaced
_last: Interrupted | None = None  # the newest stop at a safe point of this process


def last_stop() -> Interrupted | None:
    """The newest :class:`Interrupted` made in this process (what the CLI reports after exit status 130)."""
    return _last


def requested() -> bool:
    """True once a first Ctrl-C asked the work to stop at its next safe point."""
    return _requested


def stop_here(kept: str | Callable[[], str], *, path: str | Path | None = None, again: str = AGAIN) -> None:
    """A safe point: raise :class:`Interrupted` (saying ``kept``, a text or a function giving it) when a stop
    was requested; otherwise return at once."""
    if _requested:
        raise Interrupted(kept() if callable(kept) else kept, path=path, again=again)


def _handler(signum: int, frame) -> None:
    global _requested
    if os.getpid() != _owner:  # a forked child before it set its own disposition: not its call
        return
    if _requested:
        raise KeyboardInterrupt
    _requested = True
    # os.write, not print: the main thread may be inside a write to stderr (a progress bar)
    with contextlib.suppress(OSError):
        os.write(2, (FIRST_NOTICE + "\n").encode())


@contextlib.contextmanager
def graceful() -> Iterator[None]:
    """Within this block the first SIGINT sets a flag (and says so), the second raises KeyboardInterrupt.

    Installs the handler in the main thread only (elsewhere, and nested, it changes nothing) and puts the
    previous one back on the way out; the flag is cleared when the outermost block ends."""
    global _depth, _requested, _owner, _previous
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with _lock:
        outermost = _depth == 0
        if outermost:
            _requested = False
            _owner = os.getpid()
            _previous = signal.signal(signal.SIGINT, _handler)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if outermost:
                signal.signal(signal.SIGINT, _previous if _previous is not None else signal.default_int_handler)
                _requested = False


def ignore_in_child(*_: object) -> None:
    """``worker_init_fn`` of DataLoaders: a worker ignores the terminal's SIGINT (the main process stops them)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _reset_for_tests() -> None:
    """Forget a requested stop (unit tests that simulate one)."""
    global _requested
    _requested = False
