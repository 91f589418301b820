"""Load a trained retrieval run (from `c4c finetune` or `c4c pretrain`) for inference.

A run folder holds ``config.json`` (how the model was built) and checkpoints (see
``c4c.train.checkpoint``). The backbone is rebuilt without pretrained weights (nothing is downloaded)
and every weight comes from the checkpoint, so this works offline.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from c4c.errors import C4CError

log = logging.getLogger(__name__)

CHECKPOINT_CHOICES = ("best", "latest")
_REQUIRED_KEYS = ("sim", "clip")


@dataclass
class LoadedRun:
    """A retrieval model ready for inference and the facts about it that downstream files record."""

    model: object                 # CLIP4Clip in eval mode
    config: dict                  # the run's config.json
    run_dir: Path
    checkpoint: Path              # the checkpoint folder the weights came from


def read_run_config(run_dir: Path) -> dict:
    """The run's ``config.json``, checked for the keys needed to rebuild its model."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise C4CError("not a c4c run folder (config.json missing)", path=run_dir,
                       hint="pass the --out folder of `c4c finetune` or `c4c pretrain`")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise C4CError(f"unreadable run config: {exc}", path=path) from None
    if not isinstance(config, dict) or any(k not in config for k in _REQUIRED_KEYS):
        raise C4CError(f"run config lacks {', '.join(_REQUIRED_KEYS)}", path=path)
    return config


def checkpoint_folder(run_dir: Path, which: str = "best") -> Path:
    """``best`` (falls back to the latest checkpoint when the run kept no best/), ``latest``, or a path."""
    from c4c.train import checkpoint

    run_dir = Path(run_dir)
    if which not in CHECKPOINT_CHOICES:
        folder = Path(which)
        if not folder.is_absolute() and not folder.exists():
            folder = run_dir / which
        return checkpoint.resolve(folder)
    if which == "best":
        try:
            return checkpoint.resolve(run_dir / "best")
        except C4CError:
            pass
    folder = checkpoint.latest(run_dir)
    if folder is None:
        raise C4CError("the run has no checkpoint yet", path=run_dir,
                       hint="train it first, or point --checkpoint at a checkpoint folder")
    return checkpoint.resolve(folder)


def load_run(run_dir: Path, *, device: str = "cpu", which: str = "best") -> LoadedRun:
    """Rebuild a run's CLIP4Clip from its config and load the weights of ``which`` checkpoint."""
    from c4c.model.backbone import build_clip, run_quick_gelu, set_activation
    from c4c.model.clip4clip import CLIP4Clip
    from c4c.train import checkpoint

    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    folder = checkpoint_folder(run_dir, which)
    clip, _ = build_clip(config["clip"], "none", fp16_weights=bool(config.get("clip_fp16", False)))
    quick_gelu = run_quick_gelu(config)
    if quick_gelu is not None:
        set_activation(clip, quick_gelu)  # OpenAI-initialised runs use QuickGELU, which no weight records
    model = CLIP4Clip(clip, sim=config["sim"], patch=config.get("patch", "2d"),
                      temporal_layers=int(config.get("temporal_layers", 4)))
    state = checkpoint.load_model_state(folder)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise C4CError(f"checkpoint does not fit the run's model: {len(missing)} weights missing "
                       f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})",
                       path=folder)
    model.to(device).eval()
    log.info("loaded %s (%s, %s) from %s", run_dir, config["clip"], config["sim"], folder)
    return LoadedRun(model=model, config=config, run_dir=run_dir, checkpoint=folder)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; anything else is checked and returned."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise C4CError(f"--device {device} asked for, but no CUDA GPU is available", hint="use --device cpu")
    return device
