"""The settings every training stage shares, declared once.

`c4c finetune`, `c4c pretrain` and `c4c caption train` compose their configs from these groups
(keyword-only dataclasses, so a stage config is still built flat: ``FinetuneConfig(lr=1e-3, ...)``).
Each field is an option (:func:`c4c.options.option`): its type, default, help and numeric rule are
written here and nowhere else; the command line and :func:`check_training_options` read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from c4c import choices
from c4c import option_rules as rules
from c4c.datasets.registry import DatasetName
from c4c.option_rules import FRACTION, SEED, count, non_negative
from c4c.options import Hardware, StoredFrames, check_config, option

_FOLLOWS = "[default: the --init run's, else {}]"


@dataclass(kw_only=True)
class ModelSettings:
    """What model to build. Unset values follow the ``init`` run, else the defaults in the help."""

    PANEL: ClassVar[str] = "Model"
    sim: choices.Sim | None = option(None, "Similarity head " + _FOLLOWS.format("meanP") + ".")
    clip: str | None = option(None, "open_clip model name, 'tiny', or a JSON model config "
                                    + _FOLLOWS.format("ViT-B-32") + ".")
    pretrained: str = option("openai", "open_clip pretrained tag, a local weights file, or 'none' (ignored with "
                                       "--init).")
    activation: choices.Activation = option("auto", "CLIP's activation: auto (QuickGELU for OpenAI weights), "
                                                    "quickgelu or gelu.")
    clip_fp16: bool = option(False, "Store CLIP weights in fp16 as the reference does (GPU; slow on CPU).")
    init: Path | None = option(None, "Start from another c4c run (its best/ or newest checkpoint); unset --clip/--sim/"
                                     "--patch/--temporal-layers follow that run.")
    patch: choices.Patch | None = option(None, "Linear patch: 2d, or 3d (Conv3d over 3 frames, initialised from 2d) "
                                               + _FOLLOWS.format("2d") + ".")
    temporal_layers: int | None = option(None, "Layers of the seqTransf / tightTransf transformer "
                                               + _FOLLOWS.format("4") + ".", rule=count(1, 64))
    freeze_layers: int = option(0, "Freeze CLIP's embeddings and blocks below N (-1: train all).",
                                rule=count(-1, 1000))


@dataclass(kw_only=True)
class OptimSettings:
    """The optimiser and its schedule (the paper's fine-tuning values)."""

    PANEL: ClassVar[str] = "Optimiser"
    lr: float = option(1e-4, "Learning rate of new parameters.", rule=non_negative(10.0))
    coef_lr: float = option(1e-3, "CLIP parameters learn at lr x coef-lr.", rule=non_negative(1000.0))
    weight_decay: float = option(0.2, "Decoupled weight decay (not on biases and norms).", rule=non_negative(100.0))
    warmup: float = option(0.1, "Warm-up as a fraction of all steps.", rule=FRACTION)
    schedule: choices.Schedule = option("cosine", "Learning-rate schedule (the reference-* ones reproduce the paper's "
                                                  "code).")
    optimizer: choices.Optimizer = option("adamw", "adamw, or bertadam (the reference's Adam without bias correction, "
                                                   "per-tensor clip 1.0).")
    grad_clip: float = option(1.0, "Clip the global gradient norm to this (0: off).", rule=non_negative())
    loss: choices.Loss = option("auto", "Contrastive loss: softmax (the paper's symmetric cross entropy), sigmoid "
                                        "(pairwise, as SigLIP; a CLIP with a logit bias and a loose head) or auto "
                                        "(softmax; see the README's backbones).")


@dataclass(kw_only=True)
class LoopSettings(Hardware):
    """How the loop runs: batch, precision, processes, checkpoints."""

    PANEL: ClassVar[str] = "Training loop"
    batch_size: int = option(128, "Global batch, all processes together (the contrastive batch).", rule=count(1))
    grad_accum: int = option(1, "Micro-batches per optimiser step (less memory); the loose heads' contrastive batch "
                                "stays --batch-size.", rule=count(1))
    seed: int = option(42, "Seed of every random choice (same seed, same run).", rule=SEED)
    frame_decoder: choices.FrameDecoder = option(
        "auto", "Where the JPEG frames of a training batch are decoded: cpu (in the loader's workers), cuda (one "
                "nvJPEG batch on the GPU, through torchvision) or auto (cuda when the model is on CUDA and "
                "torchvision's decoder is there).")
    resume: bool = option(False, "Continue the run in --out where it stopped, with its saved settings.")
    save_every: int = option(0, "Also checkpoint every N optimiser steps (0: epoch ends only).", rule=count(0))
    keep_checkpoints: int = option(2, "Step checkpoints kept (the newest).", rule=count(1, 100_000))
    log_every: int = option(10, "Optimiser steps between metrics.jsonl lines.", rule=count(1))
    max_steps: int | None = option(None, "Stop after N optimiser steps (smoke runs; 0 saves the starting weights); "
                                         "--resume continues.", rule=count(0))
    report_to: choices.ReportTo = option("none", "Also send loss, lr, clips/s, each epoch's metrics and the config to "
                                                 "TensorBoard (RUN/tensorboard/) or wandb.")


@dataclass(kw_only=True)
class ClipSettings:
    """How a caption and a video become model input."""

    PANEL: ClassVar[str] = "Clips"
    max_words: int = option(32, "CLIP tokens per caption, SOT and EOT included.",
                            rule=count(2, 77))  # SOT and EOT at least; CLIP's text context is 77
    max_frames: int = option(12, "Frames per clip (the paper: 12; 64 for ActivityNet, DiDeMo).", rule=count(1, 1024))
    sampling: choices.Sampling = option("uniform", "Which frames a longer video keeps: head, tail or uniform.")
    fps: float | None = option(None, "Thin the stored frames to this rate [default: as stored].", rule=rules.FPS)
    train_order: choices.FrameOrder = option("keep", "Frame order in training: keep, reverse or shuffle (ablations).")


@dataclass(kw_only=True)
class RunOut:
    """The run folder a training command writes."""

    PANEL: ClassVar[str] = "Data"
    out: Path = option(help="Run folder to write (or to continue with --resume).", flags=("--out", "-o"))


@dataclass(kw_only=True)
class PairSettings(StoredFrames, RunOut):
    """Training on (video, caption) pairs of an annotated dataset (finetune, caption train)."""

    PANEL: ClassVar[str] = "Data"
    dataset: DatasetName = option(help="Annotation format (see data/README.md).")
    ann: Path = option(help="Annotation file or folder (see data/README.md).")
    epochs: int = option(5, "Passes over the training items.", rule=count(1, 100_000), panel="Training loop")
    expand_sentences: bool = option(True, "One training item per caption (else one random caption per video).")
    paragraph: bool | None = None         # join captions into one paragraph (default: the dataset's own)
    dataset_options: dict | None = None   # reader options, e.g. {"msrvtt_train": "9k"} (from --msrvtt-train, ...)
    val_from_train: str | None = option(None, "Hold out this part of the training videos as the val split for "
                                              "selection, e.g. 5% or 500 (deterministic).")
    allow_overlap: bool = option(False, "Train even when videos of the training split are also in the test split.")
    eval_batch_size: int = option(64, "Clips per batch when evaluating.", rule=count(1), panel="Training loop")


# Options that may differ when a run is resumed: they change how it runs, not what it computes.
MAY_CHANGE_ON_RESUME = frozenset({"resume", "workers", "device", "frame_decoder", "max_steps", "save_every", "keep_checkpoints",
                                  "log_every", "eval_batch_size", "out", "ann", "frames", "init", "pretrained",
                                  "report_to"})
# Options a resumed run never takes from its saved config when left out: they are about this command
# only (--max-steps stops this invocation; a resumed run without it goes on to the end). Every other
# option left out takes the saved value, those that may change included.
NOT_TAKEN_ON_RESUME = frozenset({"resume", "max_steps", "out"})


def check_training_options(cfg) -> None:
    """Every option of a training config one of its choices, finite, in range and consistent with the
    others (light: no torch)."""
    check_config(cfg)
    batch, accum = getattr(cfg, "batch_size", None), getattr(cfg, "grad_accum", None)
    if batch is not None and accum is not None:
        rules.need(batch % accum == 0, f"--grad-accum {accum} does not divide --batch-size {batch}",
                   hint="each optimiser step splits the batch into --grad-accum equal micro-batches")
    low, high = getattr(cfg, "min_seconds", None), getattr(cfg, "max_seconds", None)
    if low is not None and high is not None:
        rules.need(low <= high, f"--min-seconds {low} is above --max-seconds {high}")
