"""`c4c evaluate captions.json`: score generated captions against the annotations' reference captions.

Writes ``captions.metrics.json`` (format "c4c-caption-metrics" v1) next to the captions, or to ``out``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from c4c import choices
from c4c.atomic import write_json
from c4c.errors import C4CError
from c4c.options import AnnotatedSplit, option
from c4c.outputs import Output, guard, json_with_format
from c4c.stages.evaluate_config import MetricsOut

FORMAT = "c4c-caption-metrics"
FORMAT_VERSION = 1


@dataclass(kw_only=True)
class ScoreConfig(MetricsOut, AnnotatedSplit):
    """Options of `c4c evaluate` for captions.json (the annotations hold the reference captions)."""

    PANEL: ClassVar[str] = "Captions"
    captions: Path                        # captions.json from `c4c caption generate`
    dataset_options: dict | None = None   # MSR-VTT: the captioning split ("full") unless told otherwise
    tokenize: choices.CaptionTokenize = option("ptb", "Captions: ptb (Stanford PTB, Java), simple (pure Python) or "
                                                      "none (white space, as UniVL).")
    allow_missing: bool = option(False, "Captions: score only the videos that have a caption.")


@dataclass
class ScoreResult:
    scores: dict
    videos: int
    out: Path


def run(cfg: ScoreConfig) -> ScoreResult:
    """Score the captions; write the metrics JSON."""
    if cfg.dataset is None or cfg.ann is None:
        raise C4CError("scoring captions needs --dataset and --ann (the reference captions)")
    captions = Path(cfg.captions)
    target = Path(cfg.out) if cfg.out is not None else captions.with_name(captions.stem + ".metrics.json")
    with guard([Output(target, "caption metrics file", json_with_format(FORMAT))], [captions, cfg.ann],
               command="c4c evaluate"):
        return _score(cfg, target)


def _score(cfg: ScoreConfig, target: Path) -> ScoreResult:
    from c4c.datasets.registry import read_annotations, split_records
    from c4c.metrics.captions import load_captions_json, references_from_records, score_captions
    from c4c.stages.pairs import dataset_options

    hypotheses = load_captions_json(cfg.captions)
    options = {**dataset_options(cfg.dataset, None, task="caption"), **(cfg.dataset_options or {})}
    references = references_from_records(split_records(read_annotations(cfg.dataset, cfg.ann, **options), cfg.split))
    scores = score_captions(hypotheses, references, tokenize=cfg.tokenize, allow_missing=cfg.allow_missing)
    captions = Path(cfg.captions)
    write_json(target, {"format": FORMAT, "format_version": FORMAT_VERSION, "scores": scores,
                        "captions": str(captions.resolve()), "dataset": cfg.dataset, "ann": str(cfg.ann),
                        "dataset_options": options, "split": cfg.split, "videos": len(hypotheses)})
    return ScoreResult(scores=scores, videos=len(hypotheses), out=target)
