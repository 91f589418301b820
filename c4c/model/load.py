"""Build a model from its spec, and load a trained run (finetune, pretrain or caption) for use.

:func:`build_model` is the one way c4c makes a CLIP4Clip (or captioner): from pretrained CLIP weights,
or from the weights of another run (``init``). :func:`load_run` rebuilds a run's model from its
config.json and loads a checkpoint; the backbone is rebuilt without pretrained weights (nothing is
downloaded), so this works offline.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from c4c.errors import C4CError
from c4c.model.backbone import build_clip
from c4c.model.clip4clip import CLIP4Clip
from c4c.model.heads import mark_loaded
from c4c.run import checkpoint
from c4c.run import export_format as export
from c4c.run.folder import ModelSpec, RunFolder

log = logging.getLogger(__name__)

DEFAULTS = {"clip": "ViT-B-32", "sim": "meanP", "patch": "2d", "temporal_layers": 4}


@dataclass
class LoadedRun:
    """A model ready for inference and the facts about it that downstream files record."""

    model: object                 # CLIP4Clip (or CaptionModel) in eval mode
    config: dict                  # the run's config.json
    run_dir: Path
    checkpoint: Path              # the checkpoint folder the weights came from
    spec: ModelSpec | None = None


def resolve_spec(settings, decoder: dict | None = None) -> ModelSpec:
    """The model to build for a stage's :class:`~c4c.train.settings.ModelSettings`: explicit values,
    else the ``init`` run's, else :data:`DEFAULTS`. With ``init`` the weights come from that run, and
    so does the activation."""

    base: ModelSpec | None = None
    if settings.init is not None:
        source = export.resolve_source(settings.init)
        if not source.is_dir():
            raise C4CError("--init run folder not found", path=source)
        if export.is_export(source):
            base = export.load_export(source)[1]
        else:
            init = RunFolder(source)
            base = init.model_spec() if init.is_run() else None
    values = {}
    for key, default in DEFAULTS.items():
        explicit = getattr(settings, key)
        values[key] = explicit if explicit is not None else (getattr(base, key) if base else default)
    activation = settings.activation
    if base is not None and activation == "auto":
        activation = base.activation
    return ModelSpec(clip=str(values["clip"]), pretrained="none" if settings.init is not None else settings.pretrained,
                     activation=activation, clip_fp16=settings.clip_fp16, sim=str(values["sim"]),
                     patch=str(values["patch"]), temporal_layers=int(values["temporal_layers"]), decoder=decoder)


def check_max_words(max_words: int, backbone) -> None:
    """C4CError unless captions of ``max_words`` tokens fit the text tower's context (``BackboneInfo``)."""
    if max_words > backbone.context_length:
        raise C4CError(f"--max-words {max_words} is above the text context of {backbone.name} "
                       f"({backbone.context_length} tokens)", hint=f"pass --max-words {backbone.context_length} or fewer")


def build_model(spec: ModelSpec, device: str = "cpu", init: Path | None = None):
    """``(model, BackboneInfo, spec with the activation resolved)``; ``init``: a run or checkpoint folder
    whose weights are loaded (CLIP and head; a caption decoder too when the shapes match)."""

    clip, info = build_clip(spec.clip, spec.pretrained, fp16_weights=spec.clip_fp16, activation=spec.activation)
    spec = replace(spec, activation=info.activation)
    if spec.decoder is not None:
        from c4c.model.decoder import CaptionModel, DecoderConfig

        model = CaptionModel(clip, sim=spec.sim, patch=spec.patch, temporal_layers=spec.temporal_layers,
                             decoder=DecoderConfig(**spec.decoder))
    else:
        model = CLIP4Clip(clip, sim=spec.sim, patch=spec.patch, temporal_layers=spec.temporal_layers)
    if init is not None:
        _load_init(model, Path(init), spec)
    return model.to(device), info, spec


def _init_state(init: Path) -> tuple[dict, Path]:
    """``(state dict, where it came from)`` of ``--init``: a run (best/, else its newest checkpoint), a
    checkpoint folder, an exported folder, or ``hf-hub:ORG/NAME``."""

    init = export.resolve_source(init)
    if export.is_export(init):
        _, _, state, weights = export.load_export(init)
        return state, weights
    folder = RunFolder(init)
    if folder.is_run() or folder.latest_path.exists() or folder.best_dir.exists():
        ckpt = folder.checkpoint("best")
    else:
        ckpt = checkpoint.resolve(init)  # a checkpoint folder itself
    return checkpoint.load_model_state(ckpt), ckpt


def _load_init(model, init: Path, spec: ModelSpec) -> None:
    """Load another run's weights: missing head weights keep their fresh init, missing CLIP weights or
    weights the model has no place for are an error; a 2-D run's patch seeds a 3-D patch."""
    state, folder = _init_state(init)
    decoder_state = {k[len("decoder."):]: v for k, v in state.items() if k.startswith("decoder.")}
    encoder_state = {k: v for k, v in state.items() if not k.startswith("decoder.")}
    hint = "use the --clip, --sim, --patch and --temporal-layers of that run"
    try:
        missing, unexpected = model.load_state_dict(encoder_state, strict=False)
    except RuntimeError as exc:
        raise C4CError(f"--init weights do not fit: {str(exc).splitlines()[0]}", path=folder, hint=hint) from None

    mark_loaded(model, missing)  # head blocks the --init run gives no longer keep their random init
    if spec.patch == "3d" and "clip.visual.conv2.weight" in missing:
        from c4c.model.clip4clip import make_patch3d

        model.clip.visual.conv2 = make_patch3d(model.clip.visual.conv1)
        missing = [k for k in missing if not k.startswith("clip.visual.conv2.")]
    missing = [k for k in missing if not k.startswith("decoder.")]
    clip_missing = [k for k in missing if k.startswith("clip.")]
    if clip_missing or unexpected:
        raise C4CError(f"--init checkpoint does not fit: {len(clip_missing)} CLIP weights missing "
                       f"(e.g. {clip_missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})",
                       path=folder, hint=hint)
    loaded_decoder = False
    if decoder_state and getattr(model, "decoder", None) is not None:
        try:
            model.decoder.load_state_dict(decoder_state)
            loaded_decoder = True
        except RuntimeError:
            raise C4CError("the --init run's caption decoder has another shape", path=folder,
                           hint="use its --decoder-layers and --decoder-heads") from None
    log.info("initialised from %s (%d head weights keep their fresh init%s)", folder, len(missing),
             "; decoder loaded" if loaded_decoder else "")


def read_run_config(run_dir: Path) -> dict:
    """The run's config.json, checked (see :class:`c4c.run.folder.RunFolder`)."""
    return RunFolder(Path(run_dir)).read_config()


def checkpoint_folder(run_dir: Path, which: str = "best") -> Path:
    """``best`` (falls back to the newest checkpoint), ``latest``, or a checkpoint folder."""
    return RunFolder(Path(run_dir)).checkpoint(which)


def load_run(run_dir: Path, *, device: str = "cpu", which: str | None = "best") -> LoadedRun:
    """Rebuild a run's model from its config and load the weights of ``which`` checkpoint; ``run_dir``
    may also be an exported folder (:mod:`c4c.export`) or ``hf-hub:ORG/NAME``."""

    source = export.resolve_source(run_dir)
    if export.is_export(source):
        config, spec, state, ckpt = export.load_export(source)
    else:
        folder = RunFolder(source)
        config = folder.read_config()
        spec = folder.model_spec()
        ckpt = folder.checkpoint(which)
        state = checkpoint.load_model_state(ckpt)
    model, _, spec = build_model(replace(spec, pretrained="none"), "cpu")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise C4CError(f"checkpoint does not fit the run's config.json: {str(exc).splitlines()[0]}",
                       path=ckpt) from None
    if missing or unexpected:
        raise C4CError(f"checkpoint does not fit the run's model: {len(missing)} weights missing "
                       f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})", path=ckpt)
    model.to(device).eval()
    log.info("loaded %s (%s, %s) from %s", source, spec.clip, spec.sim, ckpt)
    return LoadedRun(model=model, config=config, run_dir=source, checkpoint=ckpt, spec=spec)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; anything else is checked and returned."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise C4CError(f"--device {device} asked for, but no CUDA GPU is available", hint="use --device cpu")
    return device
