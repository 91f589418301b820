"""HowTo100M annotations (pre-training).

Files read (``path`` is their folder, or the caption json itself with the csv beside it):

* ``caption.json``: a dict ``video_id -> {"start": [s...], "end": [s...], "text": [str...]}`` of
  ASR captions with their time spans;
* ``HowTo100M_v1.csv``: header ``video_id,category_1,category_2,rank,task_id``; used to keep only the
  videos whose ``category_1`` is one of ``categories`` (not needed when ``categories=None``).

Every kept video becomes one "train" record with all its captions and their ``caption_times``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

from c4c.datasets.records import VideoRecord, check_video_id
from c4c.datasets.files import iter_csv_rows, read_json, require_file
from c4c.errors import C4CError

log = logging.getLogger(__name__)

CAPTION_JSON = "caption.json"
META_CSV = "HowTo100M_v1.csv"
DEFAULT_CATEGORIES = ("Food and Entertaining",)


def read_howto100m(path: str | Path, *,
                   categories: Iterable[str] | None = DEFAULT_CATEGORIES) -> list[VideoRecord]:
    """Read HowTo100M captions, keeping videos whose first category is in ``categories`` (None: all)."""
    path = Path(path)
    if path.is_dir():
        caption_path = require_file(path, CAPTION_JSON)
    elif path.is_file():
        caption_path = require_file(path.parent, CAPTION_JSON) if path.name == META_CSV else path
    else:
        raise C4CError("no such file or folder", path=path,
                       hint=f"give the folder holding {CAPTION_JSON} and {META_CSV}")

    wanted: set[str] | None = None
    if categories is not None:
        categories = (categories,) if isinstance(categories, str) else tuple(categories)
        if not categories or not all(isinstance(name, str) for name in categories):
            raise C4CError("categories must be a non-empty list of category names, or None for all")
        wanted = _videos_in_categories(require_file(caption_path.parent, META_CSV), set(categories))

    data = read_json(caption_path)
    if not isinstance(data, dict):
        raise C4CError("expected a JSON object of video id -> captions", path=caption_path)
    records = []
    for video_id, entry in data.items():
        if wanted is not None and video_id not in wanted:
            continue
        record = _record(video_id, entry, caption_path)
        if record is not None:
            records.append(record)
    log.info("%s: %d videos kept", caption_path, len(records))
    return records


def _videos_in_categories(csv_path: Path, categories: set[str]) -> set[str]:
    return {row["video_id"] for _, row in iter_csv_rows(csv_path, ("video_id", "category_1"))
            if row["category_1"] in categories}


def _record(video_id: str, entry: object, path: Path) -> VideoRecord | None:
    """One video's record, or None when it has no captions."""
    check_video_id(video_id, path=str(path))
    if not isinstance(entry, dict):
        raise C4CError(f"video {video_id!r}: expected an object with start, end and text", path=path)
    starts, ends, texts = entry.get("start"), entry.get("end"), entry.get("text")
    if not all(isinstance(values, list) for values in (starts, ends, texts)):
        raise C4CError(f"video {video_id!r}: 'start', 'end' and 'text' must be lists", path=path)
    if not len(starts) == len(ends) == len(texts):
        raise C4CError(f"video {video_id!r}: {len(starts)} starts, {len(ends)} ends and {len(texts)} "
                       "texts; the lists must have equal lengths", path=path)
    if not texts:
        return None
    try:
        times = [(float(start), float(end)) for start, end in zip(starts, ends)]
    except (TypeError, ValueError):
        raise C4CError(f"video {video_id!r}: caption times must be numbers", path=path) from None
    if not all(isinstance(text, str) for text in texts):
        raise C4CError(f"video {video_id!r}: caption texts must be strings", path=path)
    return VideoRecord(video_id=video_id, captions=list(texts), split="train", caption_times=times)
