"""The generic c4c annotation format: JSON Lines.

Reads one ``.jsonl`` file, one object per line (blank lines skipped)::

    {"video_id": "cooking_01", "caption": "a man slices onions", "split": "train"}
    {"video_id": "cooking_01", "caption": "onions on a board", "split": "train", "start": 4.0, "end": 9.5}

``video_id``, ``caption`` (non-empty strings) and ``split`` (train/val/test) are required; ``start`` and
``end`` (seconds, ``end > start >= 0``) restrict the video to a window. Lines with the same
``(video_id, split, start, end)`` form one record whose captions keep file order; records come in
order of first appearance. Any other keys are kept in ``extra`` (from the record's first line).
"""

from __future__ import annotations

import json
from pathlib import Path

from c4c.datasets.records import SPLITS, VideoRecord, check_video_id
from c4c.datasets.files import is_number, iter_text_lines
from c4c.errors import C4CError

KNOWN_KEYS = ("video_id", "caption", "split", "start", "end")


def read_jsonl(path: str | Path) -> list[VideoRecord]:
    """Read a c4c JSON Lines annotation file into records grouped by (video, split, window)."""
    path = Path(path)
    if not path.is_file():
        raise C4CError("no such file" if not path.exists() else "expected a .jsonl file, not a folder",
                       path=path)
    records: dict[tuple, VideoRecord] = {}
    for line, text in iter_text_lines(path):
        if not text.strip():
            continue
        try:
            item = json.loads(text)
        except json.JSONDecodeError as error:
            raise C4CError(f"invalid JSON: {error.msg} (column {error.colno})", path=path,
                           line=line) from None
        if not isinstance(item, dict):
            raise C4CError("expected a JSON object on each line", path=path, line=line)
        video_id, caption, split = item.get("video_id"), item.get("caption"), item.get("split")
        if not isinstance(video_id, str) or not video_id:
            raise C4CError("missing or empty string 'video_id'", path=path, line=line)
        check_video_id(video_id, path=str(path), line=line)
        if not isinstance(caption, str) or not caption.strip():
            raise C4CError("missing or empty string 'caption'", path=path, line=line)
        if split not in SPLITS:
            raise C4CError(f"'split' must be one of {', '.join(SPLITS)}, got {split!r}", path=path, line=line)
        start, end = _window(item, path, line)

        key = (video_id, split, start, end)
        record = records.get(key)
        if record is None:
            extra = {name: value for name, value in item.items() if name not in KNOWN_KEYS}
            records[key] = VideoRecord(video_id=video_id, captions=[caption], split=split,
                                       start=start, end=end, extra=extra)
        else:
            record.captions.append(caption)
    return list(records.values())


def _window(item: dict, path: Path, line: int) -> tuple[float | None, float | None]:
    """The optional ``start``/``end`` of one line, checked: numbers, ``end > start >= 0``."""
    start, end = item.get("start"), item.get("end")
    for name, value in (("start", start), ("end", end)):
        if value is not None and not is_number(value):
            raise C4CError(f"'{name}' must be a number of seconds, got {value!r}", path=path, line=line)
    start = None if start is None else float(start)
    end = None if end is None else float(end)
    if start is not None and start < 0:
        raise C4CError(f"'start' must be >= 0, got {start}", path=path, line=line)
    if end is not None and end <= (start if start is not None else 0.0):
        raise C4CError(f"'end' ({end}) must be greater than 'start' ({start or 0.0})", path=path, line=line)
    return start, end
