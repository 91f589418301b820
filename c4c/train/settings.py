"""The settings every training stage shares, declared once.

`c4c finetune`, `c4c pretrain` and `c4c caption train` compose their configs from these groups
(keyword-only dataclasses, so a stage config is still built flat: ``FinetuneConfig(lr=1e-3, ...)``);
the command line builds its options from the same fields, so a default is written in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from c4c import option_rules as rules
from c4c.option_rules import FRACTION, SEED, WORKERS, Rule, count, non_negative, positive


@dataclass(kw_only=True)
class ModelSettings:
    """What model to build. Unset values follow the ``init`` run, else the defaults below."""

    sim: str | None = None                # meanP | seqLSTM | seqTransf | tightTransf (default meanP)
    clip: str | None = None               # open_clip model name, "tiny", or a JSON config (default ViT-B-32)
    pretrained: str = "openai"            # open_clip tag, weights file, or "none" (ignored with init)
    activation: str = "auto"              # auto | quickgelu | gelu: CLIP's activation for the weights
    clip_fp16: bool = False               # store CLIP weights in fp16 like the reference (GPU; slow on CPU)
    init: Path | None = None              # start from a c4c run (its best/ or newest checkpoint)
    patch: str | None = None              # 2d | 3d linear patch embedding (default 2d)
    temporal_layers: int | None = None    # seqTransf / tightTransf depth (default 4)
    freeze_layers: int = 0                # reference freeze_layer_num (-1: train everything)


@dataclass(kw_only=True)
class OptimSettings:
    """The optimiser and its schedule (the paper's fine-tuning values)."""

    lr: float = 1e-4                      # new parameters
    coef_lr: float = 1e-3                 # CLIP parameters get lr * coef_lr
    weight_decay: float = 0.2
    warmup: float = 0.1                   # warm-up fraction of all steps
    schedule: str = "cosine"              # cosine | reference-cosine | reference-linear | constant
    optimizer: str = "adamw"              # adamw | bertadam (the reference's Adam without bias correction)
    grad_clip: float = 1.0                # global gradient-norm clipping (0: off)


@dataclass(kw_only=True)
class LoopSettings:
    """How the loop runs: batch, precision, processes, checkpoints."""

    batch_size: int = 128                 # global contrastive batch (all processes together)
    grad_accum: int = 1                   # micro-batches per step; the contrastive batch stays batch_size
    amp: str = "auto"                     # auto (bf16 on GPU, none on CPU) | bf16 | fp16 | none
    seed: int = 42
    workers: int = 2                      # data-loader processes
    device: str = "auto"                  # auto | cpu | cuda | cuda:N
    frame_decoder: str = "auto"           # auto | cpu | cuda: where JPEG frames are decoded (cuda: nvJPEG batches)
    skip_missing: bool = False            # drop annotated videos missing from the frame store
    resume: bool = False                  # continue the run in ``out``
    save_every: int = 0                   # also checkpoint every N optimiser steps (0: epoch ends only)
    keep_checkpoints: int = 2             # step checkpoints kept (the newest)
    log_every: int = 10                   # optimiser steps between metrics.jsonl lines
    max_steps: int | None = None          # stop after N optimiser steps (smoke runs); resumable
    report_to: str = "none"               # none | tensorboard | wandb: also send the metrics there


@dataclass(kw_only=True)
class ClipSettings:
    """How a caption and a video become model input."""

    max_words: int = 32                   # CLIP tokens per caption, SOT and EOT included
    max_frames: int = 12                  # frames per clip (the paper: 12; 64 for ActivityNet/DiDeMo)
    sampling: str = "uniform"             # head | tail | uniform: which frames of a longer video


@dataclass(kw_only=True)
class PairSettings:
    """Training on (video, caption) pairs of an annotated dataset (finetune, caption train)."""

    dataset: str                          # msrvtt | msvd | lsmdc | activitynet | didemo | jsonl
    ann: Path                             # annotation file or folder
    frames: Path                          # FRAMES.h5 (or a shard set) from `c4c extract`
    out: Path                             # run folder
    epochs: int = 5
    fps: float | None = None              # thin stored frames to this rate (None: as stored)
    train_order: str = "keep"             # keep | reverse | shuffle
    expand_sentences: bool = True         # one item per caption (else one random caption per video)
    paragraph: bool | None = None         # join captions into one paragraph (default: ActivityNet, DiDeMo)
    dataset_options: dict | None = None   # reader options, e.g. {"msrvtt_train": "9k"}
    val_from_train: str | None = None     # hold out this part of the training videos as val ("5%" or "N")
    allow_overlap: bool = False           # train even when a training video is also a test video
    eval_batch_size: int = 64


# Options that may differ when a run is resumed: they change how it runs, not what it computes.
MAY_CHANGE_ON_RESUME = frozenset({"resume", "workers", "device", "frame_decoder", "max_steps", "save_every", "keep_checkpoints",
                                  "log_every", "eval_batch_size", "out", "ann", "frames", "init", "pretrained",
                                  "report_to"})
# Options a resumed run never takes from its saved config when left out: they are about this command
# only (--max-steps stops this invocation; a resumed run without it goes on to the end). Every other
# option left out takes the saved value, those that may change included.
NOT_TAKEN_ON_RESUME = frozenset({"resume", "max_steps", "out"})


# The numbers every training option takes (finite, in range), checked before anything is imported or
# written (:func:`check_training_options`); pretrain's and caption train's own numbers included.
RULES: dict[str, Rule] = {
    "temporal_layers": count(1, 64),
    "freeze_layers": count(-1, 1000),
    "lr": non_negative(10.0),
    "coef_lr": non_negative(1000.0),
    "weight_decay": non_negative(100.0),
    "warmup": FRACTION,
    "grad_clip": non_negative(),
    "epochs": count(1, 100_000),
    "batch_size": count(1),
    "grad_accum": count(1),
    "seed": SEED,
    "workers": WORKERS,
    "save_every": count(0),
    "keep_checkpoints": count(1, 100_000),
    "log_every": count(1),
    "max_steps": count(0),
    "max_words": count(2, 77),            # SOT and EOT at least; CLIP's text context is 77
    "max_frames": count(1, 1024),
    "fps": rules.FPS,
    "eval_batch_size": count(1),
    # pretrain
    "steps": count(1),
    "min_words": count(1, 10_000),
    "min_seconds": positive(rules.SECONDS.high),
    "max_seconds": positive(rules.SECONDS.high),
    "max_gap": non_negative(rules.SECONDS.high),
    # caption train
    "retrieval_loss_weight": non_negative(1000.0),
    "decoder_layers": count(1, 64),
    "decoder_heads": count(0, 1024),
    "decoder_dropout": FRACTION,
}


def check_training_options(cfg) -> None:
    """Every number of a training config finite, in range and consistent with the others (light: no torch)."""
    rules.check_all(cfg, RULES)
    batch, accum = getattr(cfg, "batch_size", None), getattr(cfg, "grad_accum", None)
    if batch is not None and accum is not None:
        rules.need(batch % accum == 0, f"--grad-accum {accum} does not divide --batch-size {batch}",
                   hint="each optimiser step splits the batch into --grad-accum equal micro-batches")
    low, high = getattr(cfg, "min_seconds", None), getattr(cfg, "max_seconds", None)
    if low is not None and high is not None:
        rules.need(low <= high, f"--min-seconds {low} is above --max-seconds {high}")


def field_names(*groups: type) -> list[str]:
    """The field names of dataclass types, in declaration order."""
    return [f.name for group in groups for f in fields(group)]
