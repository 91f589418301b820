"""Option types shared by the commands: one name, one meaning, one help text, everywhere.

Choices are ``Literal`` types from :mod:`c4c.choices`, so ``--help`` lists them and a bad value is a
usage error before anything runs. Options that mirror a stage config's field take their default from
that field (:func:`with_settings`), so a default is written once, in the config.
"""

import inspect
import math
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Annotated, Callable, List, Optional

import typer

from c4c import choices
from c4c.errors import C4CError

MODEL = "Model"
OPTIM = "Optimiser"
LOOP = "Training loop"
CLIPS = "Clips"
DATA = "Data"

# --- options every command that has them shares --------------------------------------------------
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors: no progress bar, no info lines.")]
Device = Annotated[str, typer.Option(help="auto (a CUDA GPU when there is one), cpu, cuda or cuda:N.")]
Amp = Annotated[choices.Amp, typer.Option(help="Autocast precision: auto (bf16 on GPU, none on CPU), bf16, fp16 or none.")]
Workers = Annotated[int, typer.Option("--workers", "-j", help="Worker processes reading the input "
                                                              "(0: read in the main process).")]
DatasetOpt = Annotated[Optional[choices.Dataset], typer.Option("--dataset", help="Annotation format (see data/README.md).")]
Ann = Annotated[Optional[Path], typer.Option(help="Annotation file or folder (with --dataset; see data/README.md).")]
Frames = Annotated[Path, typer.Option(help="Frame store from `c4c extract`: FRAMES.h5, or a shard-set folder.")]
SplitOpt = Annotated[choices.Split, typer.Option(help="Split of the annotations: train, val or test.")]
MsrvttTrain = Annotated[Optional[choices.MsrvttTrain], typer.Option(
    help="MSR-VTT training split: 9k, 7k or full (the 6,513/497/2,990 captioning split) "
         "[default: 9k for retrieval, full for captioning].")]
ActivityNetVal2 = Annotated[bool, typer.Option(
    "--activitynet-val2-as-val", help="ActivityNet: read val_2.json as the val split. Every one of its videos is also "
                                      "in val_1, the test split, so selecting on it sees test videos.")]
Checkpoint = Annotated[str, typer.Option(help="Weights of the run: best (falls back to the newest), latest, "
                                              "or a checkpoint folder.")]
SkipMissing = Annotated[bool, typer.Option(help="Drop annotated videos that are not in the frame store "
                                                "(counted in the log) instead of stopping.")]
Overwrite = Annotated[bool, typer.Option(help="Replace an existing output.")]
Out = Annotated[Path, typer.Option("--out", "-o", help="Where to write.")]
Force = Annotated[bool, typer.Option(help="Go on although the files were made by different models (a warning "
                                          "instead of an error).")]

# --- the model that encodes your own videos: a trained run, or zero-shot CLIP --------------------
RunOpt = Annotated[Optional[Path], typer.Option(
    "--run", help="Run folder of `c4c finetune`, `c4c pretrain` or `c4c caption train` (or --clip for zero-shot).")]
ZeroShotClip = Annotated[Optional[str], typer.Option(
    "--clip", help="Zero-shot CLIP instead of a run: an open_clip model name (ViT-B-32, ...), 'tiny', or a JSON "
                   "model config; the video is its frames' mean.")]
ZeroShotPretrained = Annotated[Optional[str], typer.Option(
    "--pretrained", help="With --clip: an open_clip pretrained tag, a local weights file, or 'none' "
                         "(random, seeded) [default: openai].")]
ZeroShotActivation = Annotated[choices.Activation, typer.Option(
    "--activation", help="With --clip: CLIP's activation: auto (QuickGELU for OpenAI weights), quickgelu or gelu.")]
Window = Annotated[Optional[float], typer.Option(
    help="Own videos: one embedding per window of this many seconds (moments), not one per video; at least one "
         "frame interval of the stored frames.")]
Stride = Annotated[Optional[float], typer.Option(help="Seconds from one window's start to the next, from one frame "
                                                      "interval up to the window [default: half the window, at least "
                                                      "one frame interval].")]

# --- training options, by config field -----------------------------------------------------------
def _opt(kind: object, help: str, panel: str, *decls: str) -> object:
    return Annotated[kind, typer.Option(*decls, help=help, rich_help_panel=panel)]


_FOLLOWS = "[default: the --init run's, else {}]"
TRAINING: dict[str, object] = {
    "dataset": _opt(choices.Dataset, "Annotation format (see data/README.md).", DATA),
    "ann": _opt(Path, "Annotation file or folder (see data/README.md).", DATA),
    "frames": _opt(Path, "Frame store from `c4c extract`: FRAMES.h5, or a shard-set folder.", DATA),
    "out": _opt(Path, "Run folder to write (or to continue with --resume).", DATA, "--out", "-o"),
    "sim": _opt(Optional[choices.Sim], "Similarity head " + _FOLLOWS.format("meanP") + ".", MODEL),
    "clip": _opt(Optional[str], "open_clip model name, 'tiny', or a JSON model config " + _FOLLOWS.format("ViT-B-32") + ".", MODEL),
    "pretrained": _opt(str, "open_clip pretrained tag, a local weights file, or 'none' (ignored with --init).", MODEL),
    "activation": _opt(choices.Activation, "CLIP's activation: auto (QuickGELU for OpenAI weights), quickgelu or gelu.", MODEL),
    "init": _opt(Optional[Path], "Start from another c4c run (its best/ or newest checkpoint); unset --clip/--sim/--patch/--temporal-layers follow that run.", MODEL),
    "clip_fp16": _opt(bool, "Store CLIP weights in fp16 as the reference does (GPU; slow on CPU).", MODEL),
    "patch": _opt(Optional[choices.Patch], "Linear patch: 2d, or 3d (Conv3d over 3 frames, initialised from 2d) " + _FOLLOWS.format("2d") + ".", MODEL),
    "temporal_layers": _opt(Optional[int], "Layers of the seqTransf / tightTransf transformer " + _FOLLOWS.format("4") + ".", MODEL),
    "freeze_layers": _opt(int, "Freeze CLIP's embeddings and blocks below N (-1: train all).", MODEL),
    "lr": _opt(float, "Learning rate of new parameters.", OPTIM),
    "coef_lr": _opt(float, "CLIP parameters learn at lr x coef-lr.", OPTIM),
    "weight_decay": _opt(float, "Decoupled weight decay (not on biases and norms).", OPTIM),
    "warmup": _opt(float, "Warm-up as a fraction of all steps.", OPTIM),
    "schedule": _opt(choices.Schedule, "Learning-rate schedule (the reference-* ones reproduce the paper's code).", OPTIM),
    "optimizer": _opt(choices.Optimizer, "adamw, or bertadam (the reference's Adam without bias correction, per-tensor clip 1.0).", OPTIM),
    "grad_clip": _opt(float, "Clip the global gradient norm to this (0: off).", OPTIM),
    "epochs": _opt(int, "Passes over the training items.", LOOP),
    "batch_size": _opt(int, "Global batch, all processes together (the contrastive batch).", LOOP),
    "grad_accum": _opt(int, "Micro-batches per optimiser step (less memory); the loose heads' contrastive batch stays --batch-size.", LOOP),
    "amp": Amp,
    "seed": _opt(int, "Seed of every random choice (same seed, same run).", LOOP),
    "workers": Workers,
    "device": Device,
    "frame_decoder": _opt(choices.FrameDecoder, "Where the JPEG frames of a training batch are decoded: cpu (in the loader's workers), cuda (one nvJPEG batch on the GPU, through torchvision) or auto (cuda when the model is on CUDA and torchvision's decoder is there).", LOOP),
    "skip_missing": SkipMissing,
    "overwrite": Overwrite,
    "resume": _opt(bool, "Continue the run in --out where it stopped, with its saved settings.", LOOP),
    "save_every": _opt(int, "Also checkpoint every N optimiser steps (0: epoch ends only).", LOOP),
    "keep_checkpoints": _opt(int, "Step checkpoints kept (the newest).", LOOP),
    "log_every": _opt(int, "Optimiser steps between metrics.jsonl lines.", LOOP),
    "max_steps": _opt(Optional[int], "Stop after N optimiser steps (smoke runs; 0 saves the starting weights); --resume continues.", LOOP),
    "report_to": _opt(choices.ReportTo, "Also send loss, lr, clips/s, each epoch's metrics and the config to TensorBoard (RUN/tensorboard/) or wandb.", LOOP),
    "eval_batch_size": _opt(int, "Clips per batch when evaluating.", LOOP),
    "max_words": _opt(int, "CLIP tokens per caption, SOT and EOT included.", CLIPS),
    "max_frames": _opt(int, "Frames per clip (the paper: 12; 64 for ActivityNet, DiDeMo).", CLIPS),
    "sampling": _opt(choices.Sampling, "Which frames a longer video keeps: head, tail or uniform.", CLIPS),
    "fps": _opt(Optional[float], "Thin the stored frames to this rate [default: as stored].", CLIPS),
    "train_order": _opt(choices.FrameOrder, "Frame order in training: keep, reverse or shuffle (ablations).", CLIPS),
    "expand_sentences": _opt(bool, "One training item per caption (else one random caption per video).", DATA),
    "val_from_train": _opt(Optional[str], "Hold out this part of the training videos as the val split for selection, e.g. 5% or 500 (deterministic).", DATA),
    "allow_overlap": _opt(bool, "Train even when videos of the training split are also in the test split.", DATA),
}

MODEL_OPTIONS = ("sim", "clip", "pretrained", "activation", "init", "clip_fp16", "patch", "temporal_layers",
                 "freeze_layers")
OPTIM_OPTIONS = ("lr", "coef_lr", "weight_decay", "warmup", "schedule", "optimizer", "grad_clip")
LOOP_OPTIONS = ("batch_size", "grad_accum", "amp", "seed", "workers", "device", "frame_decoder", "skip_missing", "resume",
                "save_every", "keep_checkpoints", "log_every", "max_steps", "report_to")
CLIP_OPTIONS = ("max_words", "max_frames", "sampling")
PAIR_OPTIONS = ("dataset", "ann", "frames", "out", "epochs", "fps", "train_order", "expand_sentences", "val_from_train", "allow_overlap",
                "eval_batch_size")
SHARED_TRAINING = MODEL_OPTIONS + OPTIM_OPTIONS + LOOP_OPTIONS + CLIP_OPTIONS


def with_settings(config_cls: type, names: tuple[str, ...]) -> Callable:
    """Decorator: the command also takes the options ``names`` (types from :data:`TRAINING`, defaults
    from ``config_cls``'s fields); their values arrive in the command's ``**settings``."""
    defaults = {f.name: f.default for f in fields(config_cls)}

    def decorate(func: Callable) -> Callable:
        hints = typing.get_type_hints(func, include_extras=True)
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation))
               for p in inspect.signature(func).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        taken = {p.name for p in own}
        extra = []
        for name in names:
            if name in taken:
                continue
            default = defaults[name]
            extra.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                           default=inspect.Parameter.empty if default is MISSING else default,
                                           annotation=TRAINING[name]))
        func.__signature__ = inspect.Signature(own + extra)
        func.__annotations__ = {p.name: p.annotation for p in own + extra}
        return func

    return decorate


def choice_list(allowed: tuple[str, ...]) -> Callable:
    """A typer callback that checks every value of a repeatable option against ``allowed``
    (typer cannot take a list of a ``Literal``)."""

    def check(values: List[str]) -> List[str]:
        for value in values or []:
            if value not in allowed:
                raise typer.BadParameter(f"{value!r} is not one of {', '.join(map(repr, allowed))}.")
        return values

    return check


def config_fields(config_cls: type, values: dict) -> dict:
    """The entries of ``values`` that are fields of ``config_cls``."""
    names = {f.name for f in fields(config_cls)}
    return {k: v for k, v in values.items() if k in names}


def parse_params(pairs: List[str], option: str, *, nested: bool = False, whole: bool = False) -> dict:
    """``NAME=VALUE`` pairs (``METHOD.NAME=VALUE`` when ``nested``) with numeric values, as a dict.

    ``--param nprobe=32`` -> ``{"nprobe": 32}``; ``--rerank-param dsl.temperature=1`` ->
    ``{"dsl": {"temperature": 1}}``. Whole numbers become ints; every value is finite (and whole with
    ``whole``)."""
    example = "dsl.temperature=1" if nested else "nprobe=32"
    params: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if nested:
            method, dot, name = key.partition(".")
        else:
            method, dot, name = "", ".", key
        if not sep or not dot or not name or (nested and not method):
            raise C4CError(f"{option} {pair!r}: write {'METHOD.' if nested else ''}NAME=VALUE, e.g. {example}")
        try:
            number = float(value)
        except ValueError:
            raise C4CError(f"{option} {pair!r}: the value must be a number") from None
        if not math.isfinite(number) or (whole and not number.is_integer()):
            raise C4CError(f"{option} {pair}: the value must be a finite {'whole ' if whole else ''}number")
        number = int(number) if number.is_integer() else number
        if nested:
            params.setdefault(method, {})[name] = number
        else:
            params[name] = number
    return params
