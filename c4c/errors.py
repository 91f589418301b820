"""The one exception type for problems the user can fix (bad input, missing files, wrong options)."""

from __future__ import annotations

from pathlib import Path


class C4CError(Exception):
    """A user-facing error: the CLI prints it as one line and exits non-zero.

    Say which file (if any), what is wrong, and what to do about it.
    """

    def __init__(self, problem: str, *, path: str | Path | None = None, line: int | None = None,
                 hint: str | None = None) -> None:
        self.problem = problem
        self.path = None if path is None else str(path)
        self.line = line
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        """The single-line message shown to the user."""
        where = ""
        if self.path is not None:
            where = self.path if self.line is None else f"{self.path}:{self.line}"
            where += ": "
        text = f"{where}{self.problem}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class TrainingDiverged(C4CError):
    """The training loss became NaN or infinite; the run stopped without saving that step."""


def first_line(exc: BaseException, limit: int = 120) -> str:
    """The first line of an exception's message, cut to ``limit`` characters (for one-line errors)."""
    lines = str(exc).splitlines()
    return (lines[0] if lines else type(exc).__name__)[:limit]
