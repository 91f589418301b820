"""The one table of annotation formats, :data:`DATASETS`, and reading them.

Each reader is a function ``read_<name>(path, **options) -> list[VideoRecord]`` in its own module,
imported only when it is used. A new format is that module and an entry of :data:`DATASETS`; the
``--dataset`` choices (:data:`DatasetName`, :data:`ExtractDatasetName`) and every check that needs
the names come from the table.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal

from c4c.datasets.records import SPLITS, VideoRecord
from c4c.errors import C4CError


@dataclass(frozen=True)
class DatasetFormat:
    """One annotation format: where its reader is and what the rest of c4c needs to know of it."""

    module: str                           # the reader's module, imported when a file is read
    reader: str                           # its function: reader(path, **options) -> list[VideoRecord]
    options: tuple[str, ...] = ()         # the keyword options the reader accepts
    task_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> options set unless given
    paragraph: bool = False               # a video's captions are trained on as one paragraph by default
    retrieval: bool = True                # has splits to train and score on; False: `c4c extract` (pretraining) only


DATASETS: dict[str, DatasetFormat] = {
    "msrvtt": DatasetFormat("c4c.datasets.msrvtt", "read_msrvtt", ("msrvtt_train",),
                            task_defaults={"retrieval": {"msrvtt_train": "9k"}, "caption": {"msrvtt_train": "full"}}),
    "msvd": DatasetFormat("c4c.datasets.msvd", "read_msvd"),
    "lsmdc": DatasetFormat("c4c.datasets.lsmdc", "read_lsmdc"),
    "activitynet": DatasetFormat("c4c.datasets.activitynet", "read_activitynet", ("val2_as_val",), paragraph=True),
    "didemo": DatasetFormat("c4c.datasets.didemo", "read_didemo", paragraph=True),
    "howto100m": DatasetFormat("c4c.datasets.howto100m", "read_howto100m", ("categories",), retrieval=False),
    "jsonl": DatasetFormat("c4c.datasets.jsonl", "read_jsonl"),
}

RETRIEVAL_NAMES: tuple[str, ...] = tuple(name for name, fmt in DATASETS.items() if fmt.retrieval)
DatasetName = Literal[RETRIEVAL_NAMES]        # --dataset of the commands that train, encode and score
ExtractDatasetName = Literal[tuple(DATASETS)]  # --dataset of `c4c extract`: every format


def dataset_format(dataset: str) -> DatasetFormat:
    """The :data:`DATASETS` entry of ``dataset``; C4CError naming the choices when there is none."""
    if dataset not in DATASETS:
        raise C4CError(f"unknown dataset {dataset!r}", hint=f"choose one of: {', '.join(DATASETS)}")
    return DATASETS[dataset]


def reader_options(dataset: str) -> tuple[str, ...]:
    """The keyword options the reader of ``dataset`` accepts."""
    return dataset_format(dataset).options


def read_annotations(dataset: str, path: str | Path, **options: Any) -> list[VideoRecord]:
    """Read the annotations of ``dataset`` found at ``path`` (its folder, or a file inside it)."""
    fmt = dataset_format(dataset)
    unknown = sorted(set(options) - set(fmt.options))
    if unknown:
        valid = ", ".join(fmt.options) if fmt.options else "none"
        raise C4CError(f"unknown option(s) for the {dataset} reader: {', '.join(unknown)}",
                       hint=f"valid options: {valid}")
    reader = getattr(importlib.import_module(fmt.module), fmt.reader)
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
