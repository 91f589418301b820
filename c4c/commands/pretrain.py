"""`c4c pretrain`: post-pretraining on HowTo100M (step-based, resumable, DDP under torchrun)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer


def pretrain_cmd(
    ann: Path = typer.Option(..., help="HowTo100M folder holding caption.json and HowTo100M_v1.csv."),
    frames: Path = typer.Option(..., help="FRAMES.h5, or a shard set (folder or manifest.json), from `c4c extract`."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to write."),
    categories: str = typer.Option(
        "Food and Entertaining", help="category_1 values to keep, separated by ';' ('all' keeps every video)."),
    sim: str = typer.Option("meanP", help="Similarity head (the paper post-pretrains meanP)."),
    clip: str = typer.Option("ViT-B-32", help="open_clip model name, 'tiny', or a JSON model config."),
    pretrained: str = typer.Option("openai", help="open_clip pretrained tag, a local weights file, or 'none'."),
    init: Optional[Path] = typer.Option(None, help="Start from another c4c run instead of --pretrained."),
    clip_fp16: bool = typer.Option(False, help="Store CLIP weights in fp16 as the reference does (GPU)."),
    patch: str = typer.Option("2d", help="Linear patch: 2d or 3d."),
    temporal_layers: int = typer.Option(4, help="Layers of the seqTransf / tightTransf transformer."),
    freeze_layers: int = typer.Option(0, help="Freeze CLIP embeddings and blocks below N (-1: train all)."),
    steps: Optional[int] = typer.Option(None, help="Optimiser steps in all (default: one epoch, one clip per video)."),
    batch_size: int = typer.Option(128, help="Global contrastive batch (all processes together)."),
    grad_accum: int = typer.Option(1, help="Micro-batches per step; the contrastive batch stays --batch-size."),
    lr: float = typer.Option(1e-4, help="Learning rate of new parameters."),
    coef_lr: float = typer.Option(1e-3, help="CLIP parameters learn at lr x coef-lr."),
    weight_decay: float = typer.Option(0.2),
    warmup: float = typer.Option(0.1, help="Warm-up fraction of all steps."),
    schedule: str = typer.Option("cosine", help="cosine, reference-cosine, reference-linear or constant."),
    optimizer: str = typer.Option("adamw", help="adamw or bertadam."),
    amp: str = typer.Option("auto", help="auto (bf16 on GPU, none on CPU), bf16, fp16 or none."),
    seed: int = typer.Option(42),
    max_words: int = typer.Option(32, help="CLIP BPE tokens per caption (with start and end)."),
    max_frames: int = typer.Option(12, help="Frames per clip (a longer window is subsampled by --sampling)."),
    sampling: str = typer.Option("uniform", help="Frames kept from longer windows: head, tail or uniform."),
    min_words: int = typer.Option(8, help="Join ASR fragments until the text has this many words ..."),
    min_seconds: float = typer.Option(4.0, help="... and spans this many seconds (short windows are widened to it)."),
    max_seconds: float = typer.Option(12.0, help="Never join fragments beyond a window this long."),
    max_gap: float = typer.Option(2.0, help="Never join fragments across a pause longer than this (s)."),
    workers: int = typer.Option(2, help="Data-loader processes."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    skip_missing: bool = typer.Option(False, help="Drop videos that are not in FRAMES (counted in the log)."),
    resume: bool = typer.Option(False, help="Continue the run in --out exactly where it stopped."),
    save_every: int = typer.Option(1000, help="Checkpoint every N steps (and at each epoch end)."),
    keep_checkpoints: int = typer.Option(2, help="Step checkpoints kept (the newest)."),
    log_every: int = typer.Option(10, help="Steps between metrics.jsonl lines."),
    max_steps: Optional[int] = typer.Option(None, help="Stop after N of the --steps (smoke runs); --resume continues."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Log lines instead of a progress bar."),
) -> None:
    """Post-pretrain CLIP4Clip on HowTo100M video clips and their ASR captions (contrastive, step-based).

    Each step draws one clip per video: a window of merged caption fragments and its frames.
    Checkpoints every --save-every steps; --resume continues exactly, mid-epoch included. Start
    fine-tuning from the result with `c4c finetune --init RUN`. For several GPUs or machines:
    `torchrun --nproc_per_node N -m c4c.cli pretrain ...`.

    Examples:

        c4c pretrain --ann data/howto100m --frames data/howto100m/frames --out runs/howto-meanP --steps 30000 --batch-size 128

        torchrun --nproc_per_node 8 -m c4c.cli pretrain --ann data/howto100m --frames data/howto100m/frames --out runs/howto-meanP --steps 30000

        c4c pretrain --ann demo/howto --frames demo/howto-frames --clip tiny --pretrained none --steps 200 --batch-size 16 --lr 1e-3 --coef-lr 1 --out runs/howto-tiny

        c4c pretrain ... --out runs/howto-meanP --resume
    """
    from c4c.cli import _print_table, _progress, _setup_logging
    from c4c.stages import pretrain

    _setup_logging(quiet)
    wanted = (None if categories.strip().lower() == "all"
              else tuple(c.strip() for c in categories.split(";") if c.strip()))
    cfg = pretrain.PretrainConfig(
        ann=ann, frames=frames, out=out, categories=wanted, sim=sim, clip=clip, pretrained=pretrained, init=init,
        clip_fp16=clip_fp16, patch=patch, temporal_layers=temporal_layers, freeze_layers=freeze_layers,
        steps=steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr, coef_lr=coef_lr,
        weight_decay=weight_decay, warmup=warmup, schedule=schedule, optimizer=optimizer, amp=amp, seed=seed,
        max_words=max_words, max_frames=max_frames, sampling=sampling, min_words=min_words,
        min_seconds=min_seconds, max_seconds=max_seconds, max_gap=max_gap, workers=workers, device=device,
        skip_missing=skip_missing, resume=resume, save_every=save_every, keep_checkpoints=keep_checkpoints,
        log_every=log_every, max_steps=max_steps)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    with _progress(quiet or not rank0, "clips") as progress:
        state: dict = {"task": None}

        def on_event(event: dict) -> None:
            kind = event.get("event")
            if kind == "pretrain_start":
                state["task"] = progress.add_task("pretrain", total=event["steps"] * batch_size,
                                                  completed=event["done_steps"] * batch_size)
            elif kind in ("step", "tick") and state["task"] is not None:
                progress.advance(state["task"], batch_size)
                progress.update(state["task"], description=f"step {event['step']} loss {event['loss']:.3f}")

        result = pretrain.run(cfg, on_event=on_event)
    if rank0:
        rows = [("run", str(result.run_dir)), ("videos", result.videos), ("steps", result.steps),
                ("clips", result.clips), ("finished", "yes" if result.finished else "no (--resume continues)"),
                ("last loss", "-" if result.last_loss is None else f"{result.last_loss:.4f}"),
                ("seconds", f"{result.seconds:.1f}"),
                ("checkpoint", str(result.checkpoint) if result.checkpoint else "-"),
                ("results", str(result.run_dir / "results.json")),
                ("next", f"c4c finetune --init {result.run_dir} ...")]
        _print_table("c4c pretrain", rows)


def register(app: "typer.Typer") -> None:
    """Add `c4c pretrain` to ``app``."""
    app.command("pretrain")(pretrain_cmd)
