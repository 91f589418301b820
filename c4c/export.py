"""`c4c export RUN --out DIR`: a trained run as a folder that open_clip itself loads, plus what c4c needs.

    DIR/open_clip_config.json        {"model_cfg": the CLIP config (quick_gelu as trained), "preprocess_cfg"}
    DIR/open_clip_model.safetensors  the CLIP towers: open_clip.create_model_and_transforms("local-dir:DIR")
    DIR/c4c_extra.safetensors        what open_clip has no place for: the head ("head.*"), a 3-D patch
                                     ("clip.visual.conv2.*"), a caption decoder ("decoder.*")
    DIR/c4c_run.json                 format "c4c-export" v1: the run's resolved config, its model block,
                                     the checkpoint it came from, results, sha256 of both weight files
    DIR/README.md                    a model card: task, data, head, protocol, metrics, command, sha256

Every command that takes ``--run`` also takes such a folder, or ``hf-hub:ORG/NAME`` (a folder like
this on the Hugging Face Hub, fetched through huggingface_hub's cache).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from c4c.atomic import atomic_path, write_json, write_text
from c4c.choices import CLIP_MEAN, CLIP_STD
from c4c.errors import C4CError
from c4c.model.backbone import BUILTIN
from c4c.model.heads import HEADS
from c4c.outputs import Output, guard
from c4c.run import checkpoint
from c4c.run.export_format import (CLIP_FILE, CONFIG_FILE, EXTRA_FILE, FORMAT, FORMAT_VERSION, RUN_FILE, is_export,
                                   sha256_file)
from c4c.run.folder import ModelSpec, RunFolder

log = logging.getLogger(__name__)

_EXTRA_PREFIXES = ("head.", "decoder.")
_PATCH3D_PREFIX = "clip.visual.conv2."  # c4c's 3-D patch on a ViT (a ResNet's own conv2 is CLIP's)


@dataclass
class ExportResult:
    out: Path
    checkpoint: Path                      # the run checkpoint the weights came from
    sha256: dict[str, str]                # weight file name -> sha256
    clip_tensors: int
    extra_tensors: int


def _clip_model_config(spec: ModelSpec) -> dict:
    """The open_clip model config of the run's CLIP, with its activation spelled out."""
    import open_clip

    if spec.clip in BUILTIN or spec.clip.endswith(".json"):
        config = json.loads(Path(BUILTIN.get(spec.clip, spec.clip)).read_text(encoding="utf-8"))
        config = config.get("model_cfg", config)
    else:
        config = open_clip.get_model_config(spec.clip)
        if config is None:
            raise C4CError(f"open_clip has no config for {spec.clip!r}")
    return {**config, "quick_gelu": spec.activation == "quickgelu"}


def export_run(run: Path, out: Path, *, which: str | None = "best", overwrite: bool = False) -> ExportResult:
    """Write ``out`` (see the module docstring) from ``which`` checkpoint of the run folder ``run``."""
    with guard([Output(Path(out), "export folder", is_export, folder=True)], [run], command="c4c export"):
        return _export(run, out, which=which, overwrite=overwrite)


def _export(run: Path, out: Path, *, which: str | None, overwrite: bool) -> ExportResult:
    from safetensors.torch import save_file

    folder = RunFolder(Path(run))
    config = folder.read_config()
    spec = folder.model_spec()
    if spec.activation not in ("quickgelu", "gelu"):
        from c4c.model.backbone import resolve_activation

        spec = ModelSpec(**{**spec.as_dict(), "activation": resolve_activation(spec.clip, "none")[0]})
    ckpt = folder.checkpoint(which)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise C4CError("export folder is not empty", path=out, hint="choose a new --out, or pass --overwrite")
    state = checkpoint.load_model_state(ckpt)
    prefixes = _EXTRA_PREFIXES + ((_PATCH3D_PREFIX,) if spec.patch == "3d" else ())
    clip_state = {k[len("clip."):]: v for k, v in state.items() if k.startswith("clip.") and not k.startswith(prefixes)}
    extra = {k: v for k, v in state.items() if k.startswith(prefixes)}
    model_cfg = _clip_model_config(spec)
    image_size = model_cfg["vision_cfg"]["image_size"]
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / CLIP_FILE) as tmp:
        save_file({k: v.contiguous() for k, v in clip_state.items()}, str(tmp))
    with atomic_path(out / EXTRA_FILE) as tmp:
        save_file({k: v.contiguous() for k, v in extra.items()}, str(tmp))
    write_json(out / CONFIG_FILE, {"model_cfg": model_cfg, "preprocess_cfg": {
        "size": image_size, "mode": "RGB", "mean": list(CLIP_MEAN), "std": list(CLIP_STD),
        "interpolation": "bicubic", "resize_mode": "shortest", "fill_color": 0}})
    sha = {name: sha256_file(out / name) for name in (CLIP_FILE, EXTRA_FILE)}
    results = folder.read_results() if folder.results_path.is_file() else None
    write_json(out / RUN_FILE, {"format": FORMAT, "format_version": FORMAT_VERSION, "task": folder.task(),
                                "model": spec.as_dict(), "config": config, "results": results,
                                "source_run": str(folder.path.resolve()), "checkpoint": str(ckpt), "sha256": sha,
                                "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    write_text(out / "README.md", model_card(folder.task(), spec, config, results, sha, out.name))
    log.info("exported %s (%s) to %s", folder.path, ckpt.name, out)
    return ExportResult(out=out, checkpoint=ckpt, sha256=sha, clip_tensors=len(clip_state), extra_tensors=len(extra))


def model_card(task: str, spec: ModelSpec, config: dict, results: dict | None, sha: dict[str, str], name: str) -> str:
    """The exported folder's README.md."""
    metrics = (results or {}).get("metrics") or {}
    lines = [f"# {name}", "", f"A CLIP4Clip {task} model trained with c4c (CLIP4Clip, Luo et al., arXiv 2104.08860).", "",
             "| | |", "|---|---|",
             f"| task | {task} |", f"| CLIP | {spec.clip} ({spec.activation}), patch {spec.patch} |",
             f"| head | {spec.sim}" + (f", {spec.temporal_layers} temporal layers"
                                       if HEADS[spec.sim].temporal_layers else "") + " |",
             f"| data | {config.get('dataset', 'howto100m' if task == 'pretrain' else '-')} ({config.get('ann', '-')}), "
             f"options {config.get('dataset_options') or {}} |",
             f"| selection | {(results or {}).get('protocol', config.get('selection_resolved', '-'))} |",
             f"| optimiser | {config.get('optimizer')} lr {config.get('lr')} x coef {config.get('coef_lr')}, "
             f"{config.get('schedule')} schedule, batch {config.get('batch_size')}, CLIP fp16 {spec.clip_fp16} |",
             f"| frames | {config.get('max_frames')} ({config.get('sampling')}), words {config.get('max_words')} |", ""]
    if metrics.get("t2v"):
        cols = [c for c in ("R@1", "R@5", "R@10", "MdR", "MnR") if c in metrics["t2v"]]
        lines += [f"Metrics on {metrics.get('split', 'the selection split')} (best epoch "
                  f"{(results or {}).get('best_epoch')}):", "", "| direction | " + " | ".join(cols) + " |",
                  "|---" * (len(cols) + 1) + "|"]
        for direction in ("t2v", "v2t"):
            if direction in metrics:
                lines.append(f"| {direction} | " + " | ".join(f"{metrics[direction][c]:.1f}" for c in cols) + " |")
        lines.append("")
    elif metrics:
        lines += ["Metrics: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float))), ""]
    command = config.get("command")
    lines += ["Made with:", "", "```", command or "(the command was not recorded by this c4c version)", "```", "",
              "Load the CLIP towers with open_clip:", "", "```python", "import open_clip",
              f'model, _, preprocess = open_clip.create_model_and_transforms("local-dir:{name}")', "```", "",
              "or use the whole model with c4c: `c4c encode --run " + name + " ...`.", "", "sha256:", ""]
    lines += [f"- `{file}`: `{digest}`" for file, digest in sha.items()]
    return "\n".join(lines) + "\n"
