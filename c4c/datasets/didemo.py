"""DiDeMo annotations (paragraph-to-video retrieval).

Files read from the dataset folder, for each split that has a list:

* ``{train,val,test}_list.txt``: video file names (with extension), one per line;
* ``{train,val,test}_data.json``: a JSON list of ``{"video", "description", "times"}`` objects.

Each listed video with descriptions becomes one record whose single caption is the paragraph of its
descriptions (JSON order), over the fixed window ``[0, 31]`` seconds as in the reference. Records
follow the order in which videos first appear in the data json.
"""

from __future__ import annotations

import logging
from pathlib import Path

from c4c.datasets.records import SPLITS, VideoRecord, check_video_id
from c4c.datasets.files import dataset_dir, iter_nonblank_lines, read_json, require_file
from c4c.errors import C4CError

log = logging.getLogger(__name__)

WINDOW_END = 31.0  # the reference overwrites every window with [0, 31]: annotations cover <= 30 s


def read_didemo(path: str | Path) -> list[VideoRecord]:
    """Read DiDeMo: one paragraph record per listed, annotated video, splits in train/val/test order."""
    folder = dataset_dir(path)
    splits = [split for split in SPLITS if (folder / f"{split}_list.txt").is_file()]
    if not splits:
        names = ", ".join(f"{split}_list.txt" for split in SPLITS)
        raise C4CError(f"no DiDeMo split lists found (expected {names})", path=folder)
    records = []
    for split in splits:
        listed = _read_list(folder / f"{split}_list.txt")
        data_path = require_file(folder, f"{split}_data.json")
        records.extend(_read_split(data_path, listed, split))
    return records


def _read_list(path: Path) -> set[str]:
    return {check_video_id(name, path=str(path), line=line) for line, name in iter_nonblank_lines(path)}


def _read_split(path: Path, listed: set[str], split: str) -> list[VideoRecord]:
    data = read_json(path)
    if not isinstance(data, list):
        raise C4CError("expected a JSON list of annotations", path=path)
    descriptions: dict[str, list[str]] = {}
    times: dict[str, list] = {}
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise C4CError(f"entry at index {index} is not an object", path=path)
        for key, kind in (("video", str), ("description", str), ("times", list)):
            if not isinstance(item.get(key), kind):
                raise C4CError(f"entry at index {index} has no {kind.__name__} field {key!r}", path=path)
        name = item["video"]
        if name not in listed:
            continue
        descriptions.setdefault(name, []).append(item["description"])
        times.setdefault(name, []).append(item["times"])

    missing = len(listed) - len(descriptions)
    if missing:
        log.info("%s: %d listed videos have no descriptions and were left out", path, missing)
    records = []
    for name, texts in descriptions.items():
        paragraph = " ".join(text.strip() for text in texts if text.strip())
        if not paragraph:
            raise C4CError(f"video {name!r} has only empty descriptions", path=path)
        records.append(VideoRecord(
            video_id=check_video_id(Path(name).stem, path=str(path)),
            captions=[paragraph],
            split=split,
            start=0.0,
            end=WINDOW_END,
            source_name=name,
            extra={"descriptions": texts, "times": times[name]},
        ))
    return records
