"""The annotated (video, caption) splits that `c4c finetune` and `c4c caption train` train and select on."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from c4c.datasets.registry import DATASETS, read_annotations, split_records
from c4c.errors import C4CError

log = logging.getLogger(__name__)


def dataset_options(dataset: str | None, msrvtt_train: str | None, *, task: str = "retrieval",
                    activitynet_val2: bool = False) -> dict:
    """Reader options of the command line: the format's defaults for ``task`` (MSR-VTT's training split:
    9k for retrieval, full, the 6,513 / 497 / 2,990 captioning split, for captions), then the flags
    its reader takes: ``msrvtt_train``; ``activitynet_val2``, whether ActivityNet's val_2.json is read
    as the val split (all its videos are test videos, so it is off by default)."""
    if dataset not in DATASETS:
        return {}
    fmt = DATASETS[dataset]
    flags = {"msrvtt_train": msrvtt_train, "val2_as_val": activitynet_val2}
    return {**fmt.task_defaults.get(task, {}), **{k: v for k, v in flags.items() if v and k in fmt.options}}


@dataclass
class PairSplits:
    """Training and selection records, checked against the frame store."""

    store: object                         # FrameStore
    train: list                           # VideoRecord
    select: list                          # records of the selection split ([] with selection "last")
    selection: str                        # val | test | last (resolved)
    paragraph: bool                       # captions joined into one paragraph
    options: dict                         # the reader options used


def load_pair_splits(cfg, *, task: str, default_options: dict | None = None) -> PairSplits:
    """Read ``cfg.dataset`` at ``cfg.ann``, open ``cfg.frames`` and pick the train and selection splits."""
    from c4c.data.video_text import check_videos
    from c4c.video.store import FrameStore

    if cfg.dataset not in DATASETS:
        raise C4CError(f"unknown --dataset {cfg.dataset!r}", hint=f"choose one of: {', '.join(DATASETS)}")
    options = {**(default_options or {}), **(cfg.dataset_options or {})}
    records = read_annotations(cfg.dataset, cfg.ann, **options)
    if getattr(cfg, "val_from_train", None):
        from c4c.datasets.splits import hold_out_val

        if split_records(records, "val"):
            log.warning("%s has a val split; --val-from-train replaces it with %s of the training videos",
                        cfg.ann, cfg.val_from_train)
            records = [r for r in records if r.split != "val"]
        records = hold_out_val(records, cfg.val_from_train, seed=cfg.seed)
    _check_overlap(records, cfg)
    store = FrameStore(cfg.frames)
    train = check_videos(split_records(records, "train"), store, skip_missing=cfg.skip_missing, store_path=cfg.frames)
    if not train:
        raise C4CError("no training videos in the annotations", path=cfg.ann)
    selection = cfg.select_on
    select = split_records(records, selection) if selection != "last" else []
    if selection == "val" and not select:
        log.warning("no val split in %s: the last epoch is kept (--val-from-train 5%% holds out training "
                    "videos for selection; --select-on test is the reference's protocol)", cfg.ann)
        selection = "last"
    if select:
        select = check_videos(select, store, skip_missing=cfg.skip_missing, store_path=cfg.frames)
    paragraph = cfg.paragraph if cfg.paragraph is not None else DATASETS[cfg.dataset].paragraph
    return PairSplits(store=store, train=train, select=select, selection=selection, paragraph=paragraph,
                      options=options)


def _check_overlap(records: list, cfg) -> None:
    """Warn when a video is in two splits; training on test videos needs ``allow_overlap``."""
    from c4c.datasets.splits import split_overlap

    for a, b in (("train", "test"), ("val", "test"), ("train", "val")):
        shared = split_overlap(records, a, b)
        if not shared:
            continue
        message = (f"{len(shared)} videos are in both the {a} and the {b} split of {Path(cfg.ann)} "
                   f"(first: {', '.join(shared[:3])})")
        if a == "train" and b == "test" and not cfg.allow_overlap:
            raise C4CError(message, hint="test figures would be inflated; fix the annotations, or pass "
                                         "--allow-overlap to train anyway")
        log.warning("%s", message)
