"""The run folder written by `c4c finetune`, `c4c pretrain` and `c4c caption train`: the one module
that knows its layout.

    RUN/config.json          format "c4c-run" v1: task, the model block (what to rebuild), every option
    RUN/metrics.jsonl        one JSON object per logged step and per epoch
    RUN/checkpoints/step-N/  model.safetensors + train_state.pt + meta.json (resumable)
    RUN/latest.json          names the newest complete checkpoint
    RUN/best/                the weights of the best epoch (finetune, caption)
    RUN/results.json         the final summary

Runs written before the format key existed (retrieval runs with flat keys, caption runs of format
"c4c-caption-run" v1) still read: :meth:`RunFolder.model_spec` rebuilds their model block.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager

from c4c.atomic import write_json
from c4c.choices import QUICKGELU_TAGS
from c4c.errors import C4CError
from c4c.outputs import Output, guard
from c4c.jsonfile import read_json_object

FORMAT = "c4c-run"
FORMAT_VERSION = 1
LEGACY_CAPTION_FORMAT = "c4c-caption-run"
TASKS = ("retrieval", "pretrain", "caption")
# files a start that died before its first checkpoint may leave; a fresh run may reuse such a folder
_START_FILES = {"config.json", "metrics.jsonl", "checkpoints", "tensorboard", "wandb", "wandb-id"}


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a run's model (weights come from a checkpoint or ``pretrained``)."""

    clip: str = "ViT-B-32"                # open_clip model name, "tiny", or a JSON model config
    pretrained: str = "openai"            # open_clip tag, weights file, or "none"
    activation: str = "auto"              # quickgelu | gelu once resolved (auto: decided by the weights)
    clip_fp16: bool = False               # CLIP weights stored in fp16, as the reference
    sim: str = "meanP"                    # meanP | seqLSTM | seqTransf | tightTransf
    patch: str = "2d"                     # 2d | 3d linear patch
    temporal_layers: int = 4              # seqTransf / tightTransf depth
    decoder: dict | None = None           # caption decoder (DecoderConfig fields); None: retrieval only

    def as_dict(self) -> dict:
        return {"clip": self.clip, "pretrained": self.pretrained, "activation": self.activation,
                "clip_fp16": self.clip_fp16, "sim": self.sim, "patch": self.patch,
                "temporal_layers": self.temporal_layers, "decoder": self.decoder}


class RunFolder:
    """A run folder: its paths, its config, its checkpoints and results."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.metrics_path = self.path / "metrics.jsonl"
        self.results_path = self.path / "results.json"
        self.latest_path = self.path / "latest.json"
        self.best_dir = self.path / "best"
        self.checkpoints_dir = self.path / "checkpoints"
        self._config: dict | None = None

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def step_dir(self, step: int) -> Path:
        return self.checkpoints_dir / f"step-{step:07d}"

    # --- state -----------------------------------------------------------------------------------
    def is_run(self) -> bool:
        return self.config_path.is_file()

    def startable(self) -> bool:
        """Whether a fresh run may start here: no folder, an empty one, or one a failed start left
        (only c4c's start files and no complete checkpoint)."""
        if not self.path.exists():
            return True
        if not self.path.is_dir():
            raise C4CError("the run folder is a file", path=self.path, hint="choose another --out")
        names = {p.name for p in self.path.iterdir()}
        return not names or (names <= _START_FILES and self.latest() is None)

    def check_fresh(self) -> None:
        if not self.startable():
            raise C4CError("run folder is not empty", path=self.path,
                           hint="pass --resume to continue it, or choose a new --out")

    # --- config ----------------------------------------------------------------------------------
    def read_config(self) -> dict:
        """config.json, checked: readable, an object, a known format and version."""
        if self._config is not None:
            return self._config
        if not self.path.is_dir():
            raise C4CError("run folder not found", path=self.path)
        if not self.config_path.is_file():
            raise C4CError("not a c4c run folder (config.json missing)", path=self.path,
                           hint="pass the --out folder of `c4c finetune`, `c4c pretrain` or `c4c caption train`")
        config = read_json_object(self.config_path, "run config")
        fmt = config.get("format")
        if fmt not in (None, FORMAT, LEGACY_CAPTION_FORMAT):
            raise C4CError(f"not a c4c run config (format {fmt!r})", path=self.config_path)
        if fmt == FORMAT and _version(config, self.config_path) > FORMAT_VERSION:
            raise C4CError(f"run format version {config.get('format_version')} is newer than this c4c "
                           f"understands ({FORMAT_VERSION})", path=self.config_path, hint="upgrade c4c")
        if fmt is None and not all(k in config for k in ("sim", "clip")):
            raise C4CError("run config lacks sim, clip", path=self.config_path)
        self._config = config
        return config

    def write_config(self, config: dict) -> None:
        write_json(self.config_path, config)
        self._config = config

    def task(self) -> str:
        config = self.read_config()
        if config.get("format") == LEGACY_CAPTION_FORMAT:
            return "caption"
        if "task" in config:
            return str(config["task"])
        return "pretrain" if config.get("stage") == "pretrain" else "retrieval"

    def model_spec(self) -> ModelSpec:
        """The model block of the run (rebuilt from the keys of runs older than the format)."""
        config = self.read_config()
        block = config.get("model") if config.get("format") == FORMAT else None
        if isinstance(block, dict):
            return ModelSpec(**{k: block[k] for k in ModelSpec.__dataclass_fields__ if k in block})
        arch = config.get("architecture") if config.get("format") == LEGACY_CAPTION_FORMAT else None
        source = arch if isinstance(arch, dict) else config
        quick = run_quick_gelu(config)
        return ModelSpec(clip=str(source["clip"]), pretrained="none",
                         activation="auto" if quick is None else ("quickgelu" if quick else "gelu"),
                         clip_fp16=bool(config.get("clip_fp16", False)), sim=str(source["sim"]),
                         patch=str(source.get("patch", "2d")), temporal_layers=int(source.get("temporal_layers", 4)),
                         decoder=source.get("decoder") if arch else None)

    # --- checkpoints -----------------------------------------------------------------------------
    def latest(self) -> Path | None:
        """The newest complete checkpoint named by latest.json, or None when there is none yet."""
        from c4c.run import checkpoint

        return checkpoint.latest(self.path)

    def checkpoint(self, which: str | None = "best") -> Path:
        """``best`` (falls back to the newest checkpoint when the run kept no best/; None too), ``latest``,
        or a checkpoint folder (absolute, or relative to the run)."""
        from c4c.run import checkpoint

        which = which or "best"
        if which not in ("best", "latest"):
            folder = Path(which)
            if not folder.is_absolute() and not folder.exists():
                folder = self.path / which
            return checkpoint.resolve(folder)
        if which == "best":
            try:
                return checkpoint.resolve(self.best_dir)
            except C4CError:
                pass
        folder = self.latest()
        if folder is None:
            raise C4CError("the run has no checkpoint yet (no best/ and no latest.json)", path=self.path,
                           hint="train it first, or point --checkpoint at a checkpoint folder")
        return checkpoint.resolve(folder)

    # --- results ---------------------------------------------------------------------------------
    def write_results(self, results: dict[str, Any]) -> None:
        write_json(self.results_path, results)

    def read_results(self) -> dict:
        return read_json_object(self.results_path, "run results")

    def history(self) -> list[dict]:
        """Every record of metrics.jsonl (a torn last line, left by a kill, is skipped)."""
        if not self.metrics_path.is_file():
            return []
        records = []
        for line in self.metrics_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records


def _version(config: dict, path: Path) -> int:
    try:
        return int(config.get("format_version", 0))
    except (TypeError, ValueError):
        raise C4CError(f"bad format_version {config.get('format_version')!r}", path=path) from None


def guard_run(out: str | Path, inputs: Iterable[str | Path | None], *, command: str) -> ContextManager[None]:
    """The output guard (:func:`c4c.outputs.guard`) of a training command writing the run folder ``out``:
    not one of ``inputs``, a run folder (or empty, or absent), writable, and one writer at a time (the first
    process of a distributed run holds the lock)."""
    def ours(path: Path) -> bool:
        folder = RunFolder(path)
        return folder.is_run() or folder.startable()

    first = int(os.environ.get("RANK", "0")) == 0
    return guard([Output(Path(out), "run folder", ours, folder=True)], inputs, command=command, lock=first)


def quick_gelu_of(pretrained: str) -> bool:
    """Whether a run saved without its activation used QuickGELU, from its ``pretrained`` (tag or file).

    For a file this is the rule c4c applied before activations were recorded (``.pt`` with "vit" in
    the name), so it says what those runs were built with; new runs record ``activation`` instead.
    """
    tag = str(pretrained).strip()
    if tag.lower().replace("-", "_") in QUICKGELU_TAGS:
        return True
    path = Path(tag)
    return path.suffix == ".pt" and "vit" in path.name.lower()  # OpenAI's TorchScript files


def run_quick_gelu(run_config: dict, _depth: int = 0) -> bool | None:
    """The activation a saved run's CLIP used: recorded in its ``backbone``, else implied by its
    pretrained tag or by its ``--init`` run (None when it cannot be told)."""
    backbone = run_config.get("backbone") or {}
    if "quick_gelu" in backbone:
        return bool(backbone["quick_gelu"])
    if backbone.get("activation") in ("quickgelu", "gelu"):
        return backbone["activation"] == "quickgelu"
    arch = run_config.get("architecture") or {}
    if "quick_gelu" in arch:
        return bool(arch["quick_gelu"])
    init = run_config.get("init")
    if init and _depth < 8:
        path = Path(str(init)) / "config.json"
        try:
            return run_quick_gelu(json.loads(path.read_text()), _depth + 1)
        except (OSError, ValueError):
            return None
    pretrained = str(run_config.get("pretrained") or "").strip()
    if pretrained.lower() in ("", "none"):
        return None  # random init: the model config's own activation
    return quick_gelu_of(pretrained)
