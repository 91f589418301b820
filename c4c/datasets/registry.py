"""Pick the annotation reader for a dataset name.

Each reader is a function ``read_<name>(path, **options) -> list[VideoRecord]`` in its own module,
imported only when it is used.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Iterable

from c4c.datasets.records import SPLITS, VideoRecord
from c4c.errors import C4CError

DATASETS = ("msrvtt", "msvd", "lsmdc", "activitynet", "didemo", "howto100m", "jsonl")

# dataset -> (module, reader function, keyword options the reader accepts)
_READERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "msrvtt": ("c4c.datasets.msrvtt", "read_msrvtt", ("msrvtt_train",)),
    "msvd": ("c4c.datasets.msvd", "read_msvd", ()),
    "lsmdc": ("c4c.datasets.lsmdc", "read_lsmdc", ()),
    "activitynet": ("c4c.datasets.activitynet", "read_activitynet", ("val2_as_val",)),
    "didemo": ("c4c.datasets.didemo", "read_didemo", ()),
    "howto100m": ("c4c.datasets.howto100m", "read_howto100m", ("categories",)),
    "jsonl": ("c4c.datasets.jsonl", "read_jsonl", ()),
}


def reader_options(dataset: str) -> tuple[str, ...]:
    """The keyword options the reader of ``dataset`` accepts."""
    _check_dataset(dataset)
    return _READERS[dataset][2]


def read_annotations(dataset: str, path: str | Path, **options: Any) -> list[VideoRecord]:
    """Read the annotations of ``dataset`` found at ``path`` (its folder, or a file inside it)."""
    _check_dataset(dataset)
    module_name, function_name, accepted = _READERS[dataset]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        valid = ", ".join(accepted) if accepted else "none"
        raise C4CError(f"unknown option(s) for the {dataset} reader: {', '.join(unknown)}",
                       hint=f"valid options: {valid}")
    reader = getattr(importlib.import_module(module_name), function_name)
    records = reader(path, **options)
    if not records:  # every reader: an empty file (or one of blank lines) is never an empty dataset
        raise C4CError(f"no {dataset} annotations in it (empty, or only blank lines)", path=path,
                       hint="give the annotation file or folder with the videos' captions")
    return records


def split_records(records: Iterable[VideoRecord], split: str) -> list[VideoRecord]:
    """The records of one split ("train", "val" or "test"), in their original order."""
    if split not in SPLITS:
        raise C4CError(f"unknown split {split!r}", hint=f"choose one of: {', '.join(SPLITS)}")
    return [record for record in records if record.split == split]


def _check_dataset(dataset: str) -> None:
    if dataset not in _READERS:
        raise C4CError(f"unknown dataset {dataset!r}", hint=f"choose one of: {', '.join(DATASETS)}")
