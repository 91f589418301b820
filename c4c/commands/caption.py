"""`c4c caption train` and `c4c caption generate` (the stage is :mod:`c4c.stages.caption`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer


def register(app: "typer.Typer") -> None:
    """Add the `caption` command group (train, generate) to ``app``."""
    sub = typer.Typer(name="caption", no_args_is_help=True, add_completion=False, rich_markup_mode="markdown",
                      help="Video captioning: train a caption decoder on CLIP4Clip's video encoder, then caption "
                           "videos (an annotated split or every video of a frame store).")
    sub.command("train")(train_cmd)
    sub.command("generate")(generate_cmd)
    app.add_typer(sub, name="caption")


def train_cmd(
    dataset: str = typer.Option(..., help="Annotation format: msrvtt, msvd, lsmdc, activitynet, didemo, jsonl."),
    ann: Path = typer.Option(..., help="Annotation file or folder (see data/README.md)."),
    frames: Path = typer.Option(..., help="FRAMES.h5 written by `c4c extract`."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to write."),
    init: Optional[Path] = typer.Option(None, help="Start from a finetune / pretrain / caption run (its best/ weights); "
                                                   "unset --clip/--sim/--patch/--temporal-layers follow that run."),
    retrieval_loss_weight: float = typer.Option(1.0, help="W in loss = caption + W x retrieval (the paper's joint "
                                                          "loss: 1); 0 trains the caption loss alone."),
    sim: Optional[str] = typer.Option(None, help="Head whose temporal output the decoder reads: meanP, seqLSTM, "
                                                 "seqTransf, tightTransf [default: meanP, or the --init run's]."),
    clip: Optional[str] = typer.Option(None, help="open_clip model name, 'tiny', or a JSON config [default: ViT-B-32]."),
    pretrained: str = typer.Option("openai", help="open_clip tag, weights file or 'none' (ignored with --init)."),
    patch: Optional[str] = typer.Option(None, help="Linear patch: 2d or 3d [default: 2d]."),
    temporal_layers: Optional[int] = typer.Option(None, help="seqTransf / tightTransf layers [default: 4]."),
    decoder_layers: int = typer.Option(3, help="Caption decoder layers (UniVL: 3)."),
    decoder_heads: int = typer.Option(0, help="Decoder attention heads (0: those of CLIP's text tower)."),
    decoder_dropout: float = typer.Option(0.1, help="Decoder dropout."),
    freeze_layers: int = typer.Option(0, help="Freeze CLIP embeddings and blocks below N (-1: train all)."),
    epochs: int = typer.Option(5),
    batch_size: int = typer.Option(128, help="Global batch (the contrastive batch of the retrieval term)."),
    grad_accum: int = typer.Option(1, help="Micro-batches per step (each its own contrastive batch)."),
    lr: float = typer.Option(1e-4, help="Learning rate of new parameters (decoder, head)."),
    coef_lr: float = typer.Option(1e-3, help="CLIP parameters learn at lr x coef-lr."),
    weight_decay: float = typer.Option(0.2),
    warmup: float = typer.Option(0.1, help="Warm-up fraction of all steps."),
    schedule: str = typer.Option("cosine", help="cosine, reference-cosine, reference-linear or constant."),
    optimizer: str = typer.Option("adamw", help="adamw or bertadam."),
    amp: str = typer.Option("auto", help="auto (bf16 on GPU, none on CPU), bf16, fp16 or none."),
    seed: int = typer.Option(42),
    max_words: int = typer.Option(32, help="CLIP tokens per caption, SOT and EOT included."),
    max_frames: int = typer.Option(12),
    sampling: str = typer.Option("uniform", help="Frames kept from longer videos: head, tail or uniform."),
    fps: Optional[float] = typer.Option(None, help="Thin the stored frames to this rate."),
    train_order: str = typer.Option("keep", help="Frame order in training: keep, reverse or shuffle."),
    msrvtt_train: str = typer.Option("full", help="MSR-VTT split: full (the captioning split), 9k or 7k."),
    select_on: str = typer.Option("val", help="Keep the epoch with the lowest val token loss (val) or the last."),
    eval_batch_size: int = typer.Option(64),
    workers: int = typer.Option(2, help="Data-loader processes."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    skip_missing: bool = typer.Option(False, help="Drop annotated videos that are not in FRAMES.h5."),
    resume: bool = typer.Option(False, help="Continue the run in --out exactly where it stopped."),
    save_every: int = typer.Option(0, help="Also checkpoint every N steps."),
    max_steps: Optional[int] = typer.Option(None, help="Stop after N optimiser steps (smoke runs)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Log lines instead of a progress bar."),
) -> None:
    """Train a caption decoder on CLIP4Clip, jointly with the retrieval loss by default.

    Teacher forcing on CLIP BPE tokens; the epoch with the lowest val token loss is kept in RUN/best.

    Writes RUN/config.json, metrics.jsonl, checkpoints/, best/ and results.json, like `c4c finetune`.
    For several GPUs: `torchrun --nproc_per_node N -m c4c.cli caption train ...`.

    Examples:

        c4c caption train --dataset msrvtt --ann data/msrvtt/msrvtt_data --frames data/msrvtt/frames.h5 --init runs/msrvtt-seqTransf --out runs/caption-msrvtt

        c4c caption train --dataset jsonl --ann demo-out/synth/annotations.jsonl --frames demo-out/frames.h5 --clip tiny --pretrained none --sim seqTransf --batch-size 16 --lr 1e-3 --coef-lr 1 --out runs/caption-synth

        c4c caption train ... --retrieval-loss-weight 0 --out runs/caption-only     # the ablation without the retrieval loss

        c4c caption train ... --out runs/caption-msrvtt --resume
    """
    from c4c.cli import _print_table, _progress, _setup_logging
    from c4c.stages import caption

    _setup_logging(quiet)
    options = {"msrvtt_train": msrvtt_train} if dataset == "msrvtt" else {}
    cfg = caption.CaptionTrainConfig(
        dataset=dataset, ann=ann, frames=frames, out=out, init=init, retrieval_loss_weight=retrieval_loss_weight,
        sim=sim, clip=clip, pretrained=pretrained, patch=patch, temporal_layers=temporal_layers,
        decoder_layers=decoder_layers, decoder_heads=decoder_heads, decoder_dropout=decoder_dropout,
        freeze_layers=freeze_layers, epochs=epochs, batch_size=batch_size, grad_accum=grad_accum, lr=lr,
        coef_lr=coef_lr, weight_decay=weight_decay, warmup=warmup, schedule=schedule, optimizer=optimizer, amp=amp,
        seed=seed, max_words=max_words, max_frames=max_frames, sampling=sampling, fps=fps, train_order=train_order,
        dataset_options=options, select_on=select_on, eval_batch_size=eval_batch_size, workers=workers,
        device=device, skip_missing=skip_missing, resume=resume, save_every=save_every, max_steps=max_steps)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    with _progress(quiet or not rank0, "clips") as progress:
        state = {"task": None}

        def on_event(event: dict) -> None:
            kind = event.get("event")
            if kind == "epoch_start":
                if state["task"] is not None:
                    progress.remove_task(state["task"])
                state["task"] = progress.add_task(f"epoch {event['epoch']}", total=event["steps"] * batch_size,
                                                  completed=event["done_steps"] * batch_size)
            elif kind in ("step", "tick") and state["task"] is not None:
                progress.advance(state["task"], batch_size)
                progress.update(state["task"], description=f"epoch loss {event['loss']:.3f}")
            elif kind == "epoch" and event.get("metrics") and rank0:
                _print_epoch(event)

        result = caption.run(cfg, on_event=on_event)
    if rank0:
        rows = [("run", str(result.run_dir)), ("steps", result.steps), ("seconds", f"{result.seconds:.1f}"),
                ("selection", result.selection), ("best epoch", result.best_epoch)]
        if result.best_metrics:
            rows += [("val caption loss", f"{result.best_metrics['caption_loss']:.4f}"),
                     ("val perplexity", f"{result.best_metrics['perplexity']:.2f}")]
            if "retrieval_loss" in result.best_metrics:
                rows.append(("val retrieval loss", f"{result.best_metrics['retrieval_loss']:.4f}"))
        rows.append(("results", str(result.run_dir / "results.json")))
        _print_table("c4c caption train", rows)


def _print_epoch(event: dict) -> None:
    from rich.table import Table

    from c4c.cli import _console

    m = event["metrics"]
    table = Table(title=f"epoch {event['epoch']} ({m.get('split', '')})" + (" best so far" if event.get("best") else ""))
    columns = [("caption loss", "caption_loss", "{:.4f}"), ("perplexity", "perplexity", "{:.2f}"),
               ("tokens", "tokens", "{}"), ("retrieval loss", "retrieval_loss", "{:.4f}")]
    present = [c for c in columns if c[1] in m]
    for title, _, _ in present:
        table.add_column(title, justify="right")
    table.add_row(*[fmt.format(m[key]) for _, key, fmt in present])
    _console().print(table)


def generate_cmd(
    run: Path = typer.Option(..., help="A run folder written by `c4c caption train`."),
    frames: Path = typer.Option(..., help="FRAMES.h5 with the videos to caption."),
    out: Path = typer.Option(..., "--out", "-o", help="captions.json to write ({video_id: caption})."),
    dataset: Optional[str] = typer.Option(None, help="With --ann: caption the videos of one split of these annotations."),
    ann: Optional[Path] = typer.Option(None, help="Annotation file or folder (leave out to caption every video in FRAMES.h5)."),
    split: str = typer.Option("test", help="Split to caption with --ann: train, val or test."),
    msrvtt_train: str = typer.Option("full", help="MSR-VTT split: full (the captioning split), 9k or 7k."),
    beam: int = typer.Option(5, help="Beam size (1: greedy)."),
    max_len: int = typer.Option(20, help="Tokens generated at most (EOT included)."),
    alpha: float = typer.Option(0.6, help="Length penalty exponent: score = log p / ((5 + len) / 6)^alpha (0: none)."),
    batch_size: int = typer.Option(32, help="Videos decoded together (each with --beam rows)."),
    checkpoint: str = typer.Option("best", help="Weights: best (falls back to the latest) or latest."),
    amp: str = typer.Option("auto", help="auto (bf16 on GPU, none on CPU), bf16, fp16 or none."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    workers: int = typer.Option(2, help="Data-loader processes."),
    skip_missing: bool = typer.Option(False, help="Skip annotated videos that are not in FRAMES.h5."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Caption videos with a trained caption run: beam search (or greedy with --beam 1), batched.

    Writes OUT (a JSON object mapping each video_id to its caption) and OUT's .meta.json (run,
    checkpoint, frames, beam, max_len, alpha, seconds). Without --dataset/--ann every video in
    FRAMES.h5 is captioned, e.g. your own videos after `c4c extract my_videos/ --out my_frames.h5`.

    Examples:

        c4c caption generate --run runs/caption-msrvtt --frames data/msrvtt/frames.h5 --dataset msrvtt --ann data/msrvtt/msrvtt_data --split test --out captions.json

        c4c caption generate --run runs/caption-msrvtt --frames my_frames.h5 --out my_captions.json

        c4c caption generate --run runs/caption-synth --frames demo-out/frames.h5 --beam 1 --out greedy.json
    """
    from c4c.cli import _console, _print_table, _progress, _setup_logging
    from c4c.stages import caption

    _setup_logging(quiet)
    options = {"msrvtt_train": msrvtt_train} if dataset == "msrvtt" else {}
    cfg = caption.GenerateConfig(run=run, frames=frames, out=out, dataset=dataset, ann=ann, split=split,
                                 dataset_options=options, beam=beam, max_len=max_len, alpha=alpha,
                                 batch_size=batch_size, checkpoint=checkpoint, amp=amp, device=device,
                                 workers=workers, skip_missing=skip_missing)
    with _progress(quiet, "videos") as progress:
        state = {"task": None}

        def on_event(event: dict) -> None:
            if event["event"] == "start":
                state["task"] = progress.add_task("caption", total=event["videos"])
            elif event["event"] == "batch" and state["task"] is not None:
                progress.update(state["task"], completed=event["done"])

        result = caption.run(cfg, on_event=on_event)
    if not quiet and result.captions:
        from rich.table import Table

        sample = Table(title=f"first captions (of {result.videos})")
        sample.add_column("video_id")
        sample.add_column("caption")
        for vid, text in list(result.captions.items())[:5]:
            sample.add_row(vid, text)
        _console().print(sample)
    _print_table("c4c caption generate", [
        ("videos", result.videos), ("beam", beam), ("max len", max_len), ("alpha", alpha if beam > 1 else 0.0),
        ("seconds", f"{result.seconds:.1f}"), ("captions/s", f"{result.captions_per_s:.2f}"),
        ("checkpoint", str(result.checkpoint)), ("captions", str(result.out)), ("meta", str(result.meta))])
