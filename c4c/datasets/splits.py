"""Split protocol helpers: hold out part of the training videos as a val split, and find videos that
sit in two splits.

The reference selects its best epoch on the test split (spec 5.6). A clean protocol selects on a
val split that shares no video with the test split; where a dataset has none (MSR-VTT 9k,
ActivityNet, whose val_2 videos are all in val_1 = test), :func:`hold_out_val` takes one from the
training videos.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterable

from c4c.datasets.records import SPLITS, VideoRecord
from c4c.errors import C4CError

_SPEC_HINT = "give a percentage of the training videos ('5%'), a count ('500' or 500) or a fraction (0.05)"


def held_out_count(spec: str | int | float, n_videos: int) -> int:
    """How many of ``n_videos`` training videos ``spec`` holds out: ``"5%"`` (rounded to the nearest
    video, halves up), ``"N"`` or ``N`` (a count) or a float fraction in (0, 1).

    Raises C4CError for a malformed spec, or one that leaves no val or no training video.
    """
    count: int
    if isinstance(spec, bool):
        raise C4CError(f"bad held-out val size {spec!r}", hint=_SPEC_HINT)
    if isinstance(spec, str):
        text = spec.strip()
        try:
            if text.endswith("%"):
                percent = float(text[:-1])
                if not (math.isfinite(percent) and 0.0 < percent < 100.0):
                    raise ValueError
                count = math.floor(n_videos * percent / 100.0 + 0.5)
            elif text.isdigit():
                count = int(text)
            else:
                return held_out_count(float(text), n_videos)
        except ValueError:
            raise C4CError(f"bad held-out val size {spec!r}", hint=_SPEC_HINT) from None
    elif isinstance(spec, int):
        count = spec
    elif isinstance(spec, float):
        if not (math.isfinite(spec) and 0.0 < spec < 1.0):
            raise C4CError(f"bad held-out val size {spec!r}: a float must be a fraction in (0, 1)", hint=_SPEC_HINT)
        count = math.floor(n_videos * spec + 0.5)
    else:
        raise C4CError(f"bad held-out val size {spec!r}", hint=_SPEC_HINT)
    if count < 1:
        raise C4CError(f"held-out val size {spec!r} of {n_videos} training videos holds out no video",
                       hint="ask for a larger part")
    if count >= n_videos:
        raise C4CError(f"held-out val size {spec!r} leaves none of the {n_videos} training videos to train on",
                       hint="ask for a smaller part")
    return count


def _draw_key(video_id: str, seed: int) -> bytes:
    """A pseudo-random but fixed sort key of one video: depends on its id and the seed only."""
    return hashlib.sha256(f"{seed}\x00{video_id}".encode("utf-8")).digest()


def hold_out_val(records: Iterable[VideoRecord], spec: str | int | float, seed: int = 0) -> list[VideoRecord]:
    """The records with part of the **train** videos moved to a new ``val`` split.

    ``spec`` as :func:`held_out_count` reads it, counted in distinct training video ids (every
    training record of a chosen video moves). Which videos move depends only on their ids and
    ``seed``, not on the order of ``records``. The records keep their order; the input is not
    changed. Raises C4CError when ``records`` already have a val split (drop it first) or when
    ``spec`` is malformed or too small/large.
    """
    records = list(records)
    if any(record.split == "val" for record in records):
        raise C4CError("the annotations already have a val split; holding out training videos would mix "
                       "two kinds of val", hint="drop the existing val records first, or select on them")
    train_ids = sorted({record.video_id for record in records if record.split == "train"})
    if not train_ids:
        raise C4CError("no training videos to hold out a val split from")
    count = held_out_count(spec, len(train_ids))
    chosen = set(sorted(train_ids, key=lambda video_id: (_draw_key(video_id, seed), video_id))[:count])
    return [dataclasses.replace(record, split="val") if record.split == "train" and record.video_id in chosen
            else record for record in records]


def split_overlap(records: Iterable[VideoRecord], a: str, b: str) -> list[str]:
    """The video ids that have records in both split ``a`` and split ``b``, sorted."""
    for split in (a, b):
        if split not in SPLITS:
            raise C4CError(f"unknown split {split!r}", hint=f"choose one of: {', '.join(SPLITS)}")
    ids: dict[str, set[str]] = {a: set(), b: set()}
    for record in records:
        if record.split in ids:
            ids[record.split].add(record.video_id)
    return sorted(ids[a] & ids[b])
