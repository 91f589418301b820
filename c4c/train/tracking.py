"""Experiment tracking (`--report-to tensorboard|wandb|none`): the loop's step and epoch records, sent on.

The run folder's ``metrics.jsonl`` is always written; a tracker adds a view of the same numbers:
``train/loss``, ``train/lr/group<i>``, ``train/clips_per_s`` per logged step, every number of an
epoch's evaluation as ``<split>/<name>`` (``val/t2v/R@1``, ``val/caption_loss``, ...) at the epoch's
step, and the resolved config as hyperparameters. TensorBoard event files go to ``RUN/tensorboard/``;
wandb runs go to ``RUN/wandb/`` (offline when ``WANDB_MODE=offline``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from c4c.atomic import write_text
from c4c.choices import REPORTERS
from c4c.errors import C4CError

log = logging.getLogger(__name__)



def _scalars(prefix: str, value: Any) -> dict[str, float]:
    """Every number inside ``value`` as ``{"prefix/key/...": number}``."""
    if isinstance(value, bool):
        return {}
    if isinstance(value, (int, float)):
        return {prefix: float(value)}
    if isinstance(value, dict):
        out: dict[str, float] = {}
        for key, inner in value.items():
            out.update(_scalars(f"{prefix}/{key}", inner))
        return out
    return {}


def record_scalars(record: dict) -> tuple[int, dict[str, float]]:
    """``(step, {tag: value})`` of a loop record (``event`` step or epoch); other records give nothing."""
    step = int(record.get("step", 0))
    if record.get("event") == "step":
        tags = {"train/loss": float(record["loss"]), "train/clips_per_s": float(record["clips_per_s"])}
        tags.update({f"train/lr/group{i}": float(lr) for i, lr in enumerate(record.get("lr", []))})
        return step, tags
    if record.get("event") == "epoch" and record.get("metrics"):
        metrics = dict(record["metrics"])
        split = str(metrics.pop("split", "val"))
        tags = _scalars(split, metrics)
        tags["epoch"] = float(record["epoch"])
        return step, tags
    return step, {}


def hyperparameters(config: dict) -> dict[str, Any]:
    """The config flattened to the scalar types trackers take (lists and dicts as JSON strings)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, (bool, int, float, str)):
            flat[key] = value
        elif value is None:
            flat[key] = "none"
        else:
            flat[key] = json.dumps(value, sort_keys=True, default=str)
    return flat


class Tracker:
    """Sends loop records to nothing (``none``), TensorBoard or wandb."""

    def __init__(self, kind: str, run_dir: Path, config: dict) -> None:
        if kind not in REPORTERS:
            raise C4CError(f"unknown --report-to {kind!r}", hint=f"choose one of: {', '.join(REPORTERS)}")
        self.kind, self.writer, self.wandb_run = kind, None, None
        if kind == "tensorboard":
            self._open_tensorboard(Path(run_dir) / "tensorboard", config)
        elif kind == "wandb":
            self._open_wandb(Path(run_dir), config)

    def _open_tensorboard(self, folder: Path, config: dict) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
            from torch.utils.tensorboard.summary import hparams
        except ImportError:
            raise C4CError("--report-to tensorboard needs the tensorboard package",
                           hint="pip install tensorboard") from None
        self.writer = SummaryWriter(log_dir=str(folder))
        for summary in hparams(hyperparameters(config), {}):
            self.writer.file_writer.add_summary(summary)
        self.writer.add_text("config", "```\n" + json.dumps(config, indent=2, default=str) + "\n```")

    def _open_wandb(self, run_dir: Path, config: dict) -> None:
        try:
            import wandb
        except ImportError:
            raise C4CError("--report-to wandb needs the wandb package",
                           hint="pip install 'c4c[wandb]' (set WANDB_MODE=offline to log without an account)") from None
        self.wandb_run = wandb.init(dir=str(run_dir), config=hyperparameters(config), name=run_dir.name,
                                    resume="allow", id=_wandb_id(run_dir))

    def log(self, record: dict) -> None:
        step, tags = record_scalars(record)
        if not tags:
            return
        if self.writer is not None:
            for tag, value in tags.items():
                self.writer.add_scalar(tag, value, global_step=step)
        if self.wandb_run is not None:
            self.wandb_run.log(tags, step=step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def _wandb_id(run_dir: Path) -> str:
    """One wandb id per run folder, kept in it, so a resumed run continues the same wandb run."""
    import secrets

    path = run_dir / "wandb-id"
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()

    run_id = secrets.token_hex(8)
    write_text(path, run_id + "\n")
    return run_id
