"""Reading the small JSON files c4c writes (configs, pointers, results) with one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from c4c.errors import C4CError, first_line


def read_json_object(path: Path, what: str = "JSON file") -> dict:
    """A JSON object from ``path``; garbage, binary or a non-object is a one-line user error."""
    path = Path(path)
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise C4CError(f"{what} not found", path=path) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise C4CError(f"unreadable {what}: {first_line(exc)}", path=path) from None
    if not isinstance(data, dict):
        raise C4CError(f"unreadable {what}: expected a JSON object", path=path)
    return data
