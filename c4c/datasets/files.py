"""Small file helpers shared by the annotation readers: every problem becomes a C4CError naming the file."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Iterator

from c4c.errors import C4CError

_EMPTY_HINT = "was it cut short or not written yet? give the full annotation file"


def dataset_dir(path: str | Path) -> Path:
    """The dataset folder: ``path`` itself if it is a folder, its parent if it is a file."""
    path = Path(path)
    if path.is_dir():
        return path
    if path.is_file():
        return path.parent
    raise C4CError("no such file or folder", path=path, hint="give the folder holding the annotation files")


def require_file(folder: Path, name: str) -> Path:
    """``folder / name``, or a C4CError naming the missing file."""
    path = folder / name
    if not path.is_file():
        raise C4CError(f"missing annotation file {name}", path=path,
                       hint=f"put {name} in {folder} or point to the right folder")
    return path


def read_json(path: Path) -> Any:
    """Parse a JSON file; errors name the file and, for bad syntax, the line."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise C4CError("file not found", path=path) from None
    except json.JSONDecodeError as error:
        if not error.doc.strip():
            raise C4CError("empty file (no JSON in it)", path=path, hint=_EMPTY_HINT) from None
        raise C4CError(f"invalid JSON: {error.msg} (column {error.colno})", path=path,
                       line=error.lineno) from None
    except UnicodeDecodeError:
        raise C4CError("not UTF-8 text", path=path) from None
    except OSError as error:
        raise C4CError(f"cannot read the file: {error.strerror}", path=path) from None


def iter_text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for every line of a UTF-8 file (1-based, line end removed)."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise C4CError("file not found", path=path) from None
    except OSError as error:
        raise C4CError(f"cannot read the file: {error.strerror}", path=path) from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise C4CError("line is not valid UTF-8 text", path=path, line=number) from None
            if number == 1 and text.startswith("\ufeff"):
                text = text[1:]
            yield number, text.rstrip("\r\n")


def iter_nonblank_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for every line of ``path`` that is not blank, text stripped."""
    for number, text in iter_text_lines(path):
        text = text.strip()
        if text:
            yield number, text


def iter_split_lines(files: dict[str, Path]) -> Iterator[tuple[str, Path, int, str]]:
    """Yield ``(split, path, line_number, text)`` for the non-blank lines of each split's file, in order."""
    for split, path in files.items():
        for number, text in iter_nonblank_lines(path):
            yield split, path, number, text


def iter_csv_rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line_number, row)`` for each data row of a CSV file with a header holding ``columns``."""
    try:
        handle = open(path, encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise C4CError("file not found", path=path) from None
    except OSError as error:
        raise C4CError(f"cannot read the file: {error.strerror}", path=path) from None
    with handle:
        reader = csv.DictReader(handle)
        try:
            header = reader.fieldnames
            if not header:
                raise C4CError(f"empty file; expected a CSV header with {', '.join(columns)}", path=path)
            missing = [name for name in columns if name not in header]
            if missing:
                raise C4CError(f"the CSV header lacks column(s) {', '.join(missing)}", path=path, line=1,
                               hint=f"found: {', '.join(header)}")
            rows = 0
            for row in reader:
                absent = [name for name in columns if row.get(name) is None]
                if absent:
                    raise C4CError(f"row has no value for {', '.join(absent)}", path=path,
                                   line=reader.line_num)
                rows += 1
                yield reader.line_num, row
            if not rows:
                raise C4CError("no rows after the CSV header", path=path, hint=_EMPTY_HINT)
        except csv.Error as error:
            raise C4CError(f"malformed CSV: {error}", path=path, line=reader.line_num) from None
        except UnicodeDecodeError:
            raise C4CError("not UTF-8 text", path=path) from None


def is_number(value: Any) -> bool:
    """True for finite ints and floats (booleans excluded)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def split_files(folder: Path, names: dict[str, str], dataset: str) -> dict[str, Path]:
    """The split files of ``names`` (split -> file name) present in ``folder``; C4CError if none is."""
    found = {split: folder / name for split, name in names.items() if (folder / name).is_file()}
    if not found:
        raise C4CError(f"no {dataset} annotation files found (expected {', '.join(names.values())})",
                       path=folder)
    return found
