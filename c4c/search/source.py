"""Making the model a :class:`c4c.run.source.ModelSource` names: the source of a loaded run, zero-shot CLIP
built the same way every time (random parts from a fixed seed), and the model behind a recorded source,
checked against its fingerprint."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from c4c.errors import C4CError
from c4c.model.load import build_model, load_run
from c4c.run.folder import ModelSpec
from c4c.run.source import (_SPEC_KEYS, RUN, WEIGHTS_FILE, ZERO_SHOT, ZERO_SHOT_SEED, ModelSource, check_same_model,
                            file_digest)


def run_source(loaded, known_weights: dict | None = None) -> ModelSource:
    """The source of a :class:`c4c.model.load.LoadedRun`: hashes its weights file (``known_weights``, a
    recorded digest, is reused when the file's size and time still match)."""
    spec = loaded.spec.as_dict() if loaded.spec is not None else {}
    weights_path = Path(loaded.checkpoint) / WEIGHTS_FILE
    weights = file_digest(weights_path, known_weights) if weights_path.is_file() else None
    return ModelSource(kind=RUN, spec={k: spec.get(k) for k in _SPEC_KEYS}, run=str(Path(loaded.run_dir).resolve()),
                       checkpoint=str(Path(loaded.checkpoint).resolve()), weights=weights)


def zero_shot_spec(clip: str, pretrained: str = "openai", activation: str = "auto", clip_fp16: bool = False):
    """The ModelSpec of zero-shot CLIP (meanP, 2-D patch) for an open_clip name / ``tiny`` / JSON config."""
    return ModelSpec(clip=str(clip), pretrained=str(pretrained), activation=activation, clip_fp16=bool(clip_fp16),
                     sim="meanP", patch="2d")


def build_zero_shot(spec, device: str = "cpu", known_weights: dict | None = None):
    """``(model in eval mode, ModelSource)`` of zero-shot ``spec``; random parts come from a fixed seed, so
    the same spec always gives the same model."""
    import torch

    pre = str(spec.pretrained).strip()
    weights = None
    if pre.lower() not in ("", "none") and Path(pre).is_file():
        spec = replace(spec, pretrained=str(Path(pre).resolve()))
        weights = file_digest(spec.pretrained, known_weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ZERO_SHOT_SEED)
        model, _, spec = build_model(spec, "cpu")
    model.to(device).eval()
    full = spec.as_dict()
    source = ModelSource(kind=ZERO_SHOT, spec={k: full.get(k) for k in _SPEC_KEYS}, weights=weights)
    return model, source


def load_source(source: ModelSource, device: str = "cpu", *, force: bool = False):
    """``(model in eval mode, the run's config or {}, ModelSource as found now)`` for a recorded source.

    A run whose checkpoint weights no longer match the recorded digest is a C4CError (a warning with
    ``force``): its text tower would not match the stored vectors.
    """
    if source.kind == ZERO_SHOT:
        spec = ModelSpec(**{k: source.spec[k] for k in _SPEC_KEYS if k in source.spec})
        model, now = build_zero_shot(spec, device, known_weights=source.weights)
        check_same_model(now, source, have_what="the model rebuilt now", want_what="the recorded one", force=force,
                         hint="the zero-shot weights file changed since; re-encode, or pass --force")
        return model, {}, now

    if not source.run:
        raise C4CError("the file does not say which run made its vectors", hint="pass --run RUN_DIR")
    loaded = load_run(Path(source.run), device=device, which=source.checkpoint or "best")
    now = run_source(loaded, source.weights)
    check_same_model(now, source, have_what=f"the checkpoint {loaded.checkpoint} now",
                     want_what="the recorded one", force=force,
                     hint="the run's weights changed since the vectors were encoded; re-encode, or pass --force")
    return loaded.model, loaded.config, now

