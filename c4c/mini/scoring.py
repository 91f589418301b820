"""Scoring the mini runs: test metrics, reversal-twin accuracy, loss curves, and the per-arm statistics."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Callable

from c4c.atomic import write_text
from c4c.data.frames import clip_spec
from c4c.data.text import CaptionTokenizer
from c4c.data.video_text import EvalSet
from c4c.datasets.registry import read_annotations, split_records
from c4c.evaluation import encode_eval_set, similarity_matrix
from c4c.metrics.retrieval import metrics_from_ranks, positive_ranks
from c4c.mini.config import TEST_FORMAT, VERSION, Experiment
from c4c.mini.data import MiniData
from c4c.model.load import load_run
from c4c.video.store import FrameStore

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# evaluation


def evaluate_run(run_dir: Path, data: MiniData, clip: tuple[int, str] | None = None) -> dict:
    """Test-split text-to-video metrics of a run's best (else newest) weights, cached in ``run_dir/test.json``.

    ``clip`` = (max_frames, sampling) overrides the run's own (zero-shot tests of pretraining runs, whose
    clips differ from fine-tuning's; cached in ``test-<frames>-<sampling>.json``).

    ``all``, ``order`` (captions of videos with a time-reversed twin in the test split) and ``other``:
    R@1/5/10, MdR, MnR with ties at their expected rank; ``twin_accuracy``: % of order queries whose own
    video scores above its twin (a tie counts one half).
    """
    cached = run_dir / ("test.json" if clip is None else f"test-{clip[0]}-{clip[1]}.json")
    if cached.exists():
        try:
            found = json.loads(cached.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            found = None
        if isinstance(found, dict) and found.get("format") == TEST_FORMAT and found.get("version") == VERSION:
            return found["metrics"]
        log.warning("%s is not a %s version %d file: evaluating again", cached, TEST_FORMAT, VERSION)
    import torch

    loaded = load_run(run_dir, which="best")
    spec = clip_spec({**loaded.config, **(dict(zip(("max_frames", "sampling"), clip)) if clip else {})})
    records = split_records(read_annotations("jsonl", data.ann), "test")
    evalset = EvalSet(records, FrameStore(data.frames), CaptionTokenizer(int(loaded.config["max_words"])), spec)
    with torch.no_grad():
        text, video, mask = encode_eval_set(loaded.model, evalset, batch_size=64)
        sim = similarity_matrix(loaded.model, text, video, mask)  # [Nt, Nv]
    result = score_test(sim, evalset.video_of_caption, evalset.video_ids, data.twins)
    write_text(cached, json.dumps({"format": TEST_FORMAT, "version": VERSION, "metrics": result}, indent=2) + "\n")
    return result


def score_test(sim, video_of_caption, video_ids: list[str], twins: dict[str, str]) -> dict:
    """Metrics of a ``sim: [Nt, Nv]`` test matrix (see :func:`evaluate_run`)."""
    import numpy as np

    video_of_caption = np.asarray(video_of_caption)
    ranks = positive_ranks(sim, video_of_caption, ties="mean")
    column = {vid: j for j, vid in enumerate(video_ids)}
    is_order = np.array([video_ids[v] in twins for v in video_of_caption], dtype=bool)
    wins = []
    for i, v in enumerate(video_of_caption):
        twin = twins.get(video_ids[v])
        if twin is not None:
            own, other = sim[i, v], sim[i, column[twin]]
            wins.append(1.0 if own > other else 0.5 if own == other else 0.0)
    return {"all": metrics_from_ranks(ranks),
            "order": metrics_from_ranks(ranks[is_order]) if is_order.any() else None,
            "other": metrics_from_ranks(ranks[~is_order]) if (~is_order).any() else None,
            "twin_accuracy": 100.0 * float(np.mean(wins)) if wins else None,
            "test_videos": len(video_ids), "order_videos": sum(v in twins for v in video_ids),
            "order_queries": int(is_order.sum()),
            "other_queries": int((~is_order).sum())}


def loss_curve(run_dir: Path) -> dict[str, list]:
    """``{"step": [...], "loss": [...]}`` from the run's metrics.jsonl step lines; ``val_r1`` per epoch."""
    steps, losses, val = [], [], []
    if not (run_dir / "metrics.jsonl").exists():
        return {"step": steps, "loss": losses, "val_r1": val}
    with open(run_dir / "metrics.jsonl", encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            if record.get("event") == "step":
                steps.append(int(record["step"]))
                losses.append(float(record["loss"]))
            elif record.get("event") == "epoch" and record.get("metrics"):
                val.append(float(record["metrics"]["t2v"]["R@1"]))
    return {"step": steps, "loss": losses, "val_r1": val}


# ---------------------------------------------------------------------------------------------
# summary statistics


def mean_std(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (n - 1; 0 for a single value) of ``values``."""
    n = len(values)
    if n == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "n": n}


METRICS: dict[str, Callable[[dict], float | None]] = {
    "R@1": lambda t: t["all"]["R@1"],
    "R@5": lambda t: t["all"]["R@5"],
    "MnR": lambda t: t["all"]["MnR"],
    "twin": lambda t: t["twin_accuracy"],
    "R@1 order": lambda t: t["order"]["R@1"] if t["order"] else None,
    "R@1 other": lambda t: t["other"]["R@1"] if t["other"] else None,
}


def mean_curve(curves: list[dict]) -> dict[str, list[float]]:
    """The mean loss per step over runs (steps all runs logged) and its sample spread."""
    if not curves:
        return {"step": [], "loss": [], "std": []}
    common = set(curves[0]["step"])
    for c in curves[1:]:
        common &= set(c["step"])
    steps = sorted(common)
    by_run = [dict(zip(c["step"], c["loss"])) for c in curves]
    stats = [mean_std([r[s] for r in by_run]) for s in steps]
    return {"step": steps, "loss": [s["mean"] for s in stats], "std": [s["std"] for s in stats]}


def summarise(experiment: Experiment, results: dict[str, list[dict]]) -> dict:
    """Per arm: per-seed values and mean ± std of every metric, and the mean loss curve."""
    arms = []
    for arm in experiment.arms:
        runs = sorted(results.get(arm.key, []), key=lambda r: r["seed"])
        if not runs:
            continue
        values = {name: [get(r["test"]) if r.get("test") else None for r in runs] for name, get in METRICS.items()}
        finished = [r for r in runs if not r.get("diverged")]
        arms.append({"key": arm.key, "label": arm.label, "seeds": [r["seed"] for r in runs],
                     "values": values, "diverged": len(runs) - len(finished),
                     "stats": {name: mean_std([v for v in vs if v is not None]) for name, vs in values.items()},
                     "curve": mean_curve([r["curve"] for r in finished if r["curve"]["step"]]),
                     "order_videos": max((r["test"].get("order_videos", 0) for r in finished), default=0),
                     "trained": arm.train,
                     "lr": arm.lr, "runs": [r["run"] for r in runs]})
    return {"number": experiment.number, "key": experiment.key, "title": experiment.title,
            "question": experiment.question, "baseline": experiment.baseline, "contrast": experiment.contrast,
            "arms": arms}


