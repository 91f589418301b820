"""ActivityNet Captions annotations (paragraph-to-video retrieval).

Files read from the dataset folder:

* ``train.json`` (split "train") and ``val_1.json`` (split "test": the reference reports on val_1);
  each a dict ``v_<id> -> {"duration": seconds, "timestamps": [[start, end], ...],
  "sentences": [str, ...]}``;
* ``val_2.json`` (same format) only with ``val2_as_val=True``, as split "val". Every video of
  val_2 is also in val_1, so selecting a model on it selects on test videos; by default it is not
  read. :func:`c4c.datasets.splits.hold_out_val` makes a val split from training videos instead;
* optional ``train_ids.json`` / ``val_ids.json``: JSON lists of ``v_<id>`` that restrict train.json /
  the val files to the listed videos.

Each video becomes one record whose single caption is the paragraph of all its sentences, over the
window ``[0, ceil(duration)]``; the per-sentence data is kept in ``extra``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from c4c.datasets.records import VideoRecord, check_video_id
from c4c.datasets.files import dataset_dir, is_number, read_json, require_file
from c4c.errors import C4CError

log = logging.getLogger(__name__)

# (captions file, split, ids file that restricts it, required)
SPLIT_FILES = (
    ("train.json", "train", "train_ids.json", True),
    ("val_1.json", "test", "val_ids.json", True),
    ("val_2.json", "val", "val_ids.json", False),
)
VAL_2 = "val_2.json"


def read_activitynet(path: str | Path, *, val2_as_val: bool = False) -> list[VideoRecord]:
    """Read ActivityNet Captions: one paragraph record per video (train, then val_1 as test, then
    val_2 as val when ``val2_as_val``; val_2's videos are all val_1 = test videos)."""
    folder = dataset_dir(path)
    sources = []
    for name, split, ids_name, required in SPLIT_FILES:
        if required:
            sources.append((require_file(folder, name), split, folder / ids_name))
        elif name == VAL_2 and not val2_as_val:
            if (folder / name).is_file():
                log.info("%s not read: its videos are test (val_1) videos; val2_as_val=True reads it as val",
                         folder / name)
        elif (folder / name).is_file():
            sources.append((folder / name, split, folder / ids_name))

    records = []
    for captions_path, split, ids_path in sources:
        keep = _read_ids(ids_path) if ids_path.is_file() else None
        data = read_json(captions_path)
        if not isinstance(data, dict):
            raise C4CError("expected a JSON object of video id -> annotations", path=captions_path)
        skipped = 0
        for source_name, entry in data.items():
            if keep is not None and source_name not in keep:
                skipped += 1
                continue
            records.append(_record(source_name, entry, split, captions_path))
        if skipped:
            log.info("%s: %d videos not listed in %s were left out", captions_path, skipped, ids_path.name)
    if val2_as_val:
        from c4c.datasets.splits import split_overlap

        shared = split_overlap(records, "val", "test")
        if shared:
            log.warning("%d of the val (val_2) videos are also test (val_1) videos: selecting on val "
                        "selects on test videos", len(shared))
    return records


def _read_ids(path: Path) -> set[str]:
    ids = read_json(path)
    if not isinstance(ids, list) or not all(isinstance(item, str) for item in ids):
        raise C4CError("expected a JSON list of video ids", path=path)
    return set(ids)


def _record(source_name: str, entry: object, split: str, path: Path) -> VideoRecord:
    video_id = source_name[2:] if source_name.startswith("v_") else source_name
    check_video_id(video_id, path=str(path))
    if not isinstance(entry, dict):
        raise C4CError(f"entry {source_name!r} is not an object", path=path)
    duration, timestamps, sentences = entry.get("duration"), entry.get("timestamps"), entry.get("sentences")
    if not is_number(duration) or duration < 0:
        raise C4CError(f"entry {source_name!r} has no valid 'duration' (seconds)", path=path)
    if not isinstance(sentences, list) or not sentences or not all(isinstance(s, str) for s in sentences):
        raise C4CError(f"entry {source_name!r} needs a non-empty list of string 'sentences'", path=path)
    if not isinstance(timestamps, list):
        raise C4CError(f"entry {source_name!r} has no 'timestamps' list", path=path)
    if len(timestamps) != len(sentences):
        raise C4CError(f"entry {source_name!r} has {len(timestamps)} timestamps but {len(sentences)} "
                       "sentences", path=path)
    spans = []
    for span in timestamps:
        if not isinstance(span, list) or len(span) != 2 or not all(is_number(t) for t in span):
            raise C4CError(f"entry {source_name!r} has a timestamp that is not a [start, end] pair",
                           path=path)
        spans.append([float(span[0]), float(span[1])])
    paragraph = " ".join(sentence.strip() for sentence in sentences if sentence.strip())
    if not paragraph:
        raise C4CError(f"entry {source_name!r} has only empty sentences", path=path)
    return VideoRecord(
        video_id=video_id,
        captions=[paragraph],
        split=split,
        start=0.0,
        end=float(math.ceil(duration)),
        source_name=source_name,
        extra={"sentences": list(sentences), "timestamps": spans},
    )
