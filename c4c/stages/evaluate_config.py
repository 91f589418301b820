"""The options of `c4c evaluate`, declared once (light: the command line reads them before it parses).

Scoring an embedding file (:mod:`c4c.stages.evaluate`) needs numpy and the model; this module only
says what its options are. Scoring captions (:mod:`c4c.stages.score_captions`) shares ``--out``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from c4c import choices
from c4c.option_rules import count
from c4c.options import Forced, OnDevice, option, rules_of


@dataclass(kw_only=True)
class MetricsOut:
    """Where the metrics JSON goes."""

    out: Path | None = option(None, "Metrics JSON [default: next to PATH].", flags=("--out", "-o"))


@dataclass(kw_only=True)
class EvaluateConfig(MetricsOut, OnDevice, Forced):
    """Options of `c4c evaluate` for an embedding file."""

    PANEL: ClassVar[str] = "Retrieval"
    emb: Path                               # EMB.h5 from `c4c encode`
    rerank: list[str] = field(default_factory=list)   # extra methods beside "none": dsl, qbnorm, sinkhorn (--rerank)
    bank: Path | None = option(None, "EMB.h5 of the training split (same model), for --rerank qbnorm.")
    rerank_params: dict = field(default_factory=dict)  # e.g. {"dsl": {"temperature": 1.0}} (--rerank-param)
    run: Path | None = option(None, "tightTransf: the run folder [default: the one EMB.h5 names].")
    chunk: int = option(2048, "Rows scored at once; memory is about chunk x N x 4 bytes.", rule=count(1, 1_000_000))
    pair_chunk: int = option(128, "tightTransf: texts x videos per cross-encoder batch.", rule=count(1, 1_000_000))
    ties: choices.Ties = option("reference", "Tie policy of the ranks.")


RULES = rules_of(EvaluateConfig)  # the numbers `c4c evaluate` takes, checked before anything is read
