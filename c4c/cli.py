"""The `c4c` command line: one command per pipeline stage. Parses options, calls the stage, prints.

Heavy libraries (torch, open_clip, h5py, faiss) are imported inside the commands, so `c4c --help`
answers at once.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

import typer

from c4c.errors import C4CError

app = typer.Typer(
    name="c4c",
    help="CLIP4Clip as a toolkit: turn videos into frames, train and evaluate CLIP-based video-text "
         "retrieval, and search your own videos.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
)


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr)


def _setup_logging(quiet: bool) -> None:
    from rich.logging import RichHandler

    handler = RichHandler(console=_console(stderr=True), show_path=False)
    # open_clip logs its chatter on the root logger (and warns on every deliberate random init)
    handler.addFilter(lambda record: record.levelno >= logging.ERROR
                      or ("open_clip" not in record.pathname
                          and not record.getMessage().startswith("No pretrained weights loaded")))
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s",
                        handlers=[handler], force=True)
    for noisy in ("open_clip", "huggingface_hub", "urllib3", "faiss", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _progress(quiet: bool, unit: str):
    """A rich progress bar with items/s and ETA (disabled with --quiet or when not a terminal)."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("-- " + unit + "/s" if speed is None else f"{speed:.2f} {unit}/s")

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    console=_console(stderr=True), disable=quiet, transient=False)


@app.command("synth")
def synth_cmd(
    out_dir: Path = typer.Argument(..., help="Folder to write videos/*.mp4, annotations.jsonl and synth.json into."),
    kind: str = typer.Option(
        "retrieval", help="retrieval (short captioned clips) or howto (long videos with timed ASR-like captions "
                          "in the HowTo100M files caption.json and HowTo100M_v1.csv, for `c4c pretrain`)."),
    videos: int = typer.Option(24, "--videos", "-n", help="Number of videos."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives the same dataset."),
    duration: Optional[float] = typer.Option(
        None, help="Seconds of motion per video (default 4); with --kind howto the longest video "
                   "(default 60; lengths are drawn from a third of it up to it)."),
    fps: int = typer.Option(10, help="Frame rate of the generated files."),
    width: int = typer.Option(128, help="Frame width in pixels (even)."),
    height: int = typer.Option(96, help="Frame height in pixels (even)."),
    shapes: str = typer.Option("circle,square,triangle", help="Comma-separated shapes to use."),
    colours: str = typer.Option("red,green,blue,yellow,white,magenta", help="Comma-separated colours to use."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Generate a small captioned video dataset of moving coloured shapes (deterministic from --seed).

    Captions name shape, colour and motion; some name the ORDER of two motions ("a red circle moves
    left then up") and come with a time-reversed twin, so a model that ignores frame order cannot
    separate them. Writes the generic JSONL annotation format (see data/README.md).

    --kind howto writes a HowTo100M-like corpus of the same shapes, colours and motions instead:
    long videos of several actions, narrated in short timed ASR-style fragments, in caption.json
    and HowTo100M_v1.csv (some videos in other categories than Food and Entertaining).

    Examples:

        c4c synth data/synth --videos 48 --seed 1

        c4c synth data/howto --kind howto --videos 60 --duration 40 --fps 4 --width 64 --height 48

        c4c synth /tmp/big --videos 8 --width 1280 --height 720 --duration 20

        c4c synth /tmp/motion --videos 400 --shapes circle --colours red   # only motion tells captions apart
    """
    from c4c.stages import synth

    _setup_logging(quiet)
    if kind not in ("retrieval", "howto"):
        raise C4CError(f"unknown --kind {kind!r}; choose retrieval or howto")
    if kind == "howto":
        config = synth.HowToConfig(out_dir=out_dir, videos=videos, seed=seed,
                                   duration=60.0 if duration is None else duration, fps=fps, width=width,
                                   height=height, shapes=tuple(shapes.split(",")), colours=tuple(colours.split(",")))
        make = synth.run_howto
    else:
        config = synth.SynthConfig(out_dir=out_dir, videos=videos, seed=seed,
                                   duration=4.0 if duration is None else duration, fps=fps,
                                   width=width, height=height, shapes=tuple(shapes.split(",")),
                                   colours=tuple(colours.split(",")))
        make = synth.run
    with _progress(quiet, "videos") as progress:
        task = progress.add_task("synth", total=videos)
        result = make(config, on_video=lambda done, total: progress.update(task, completed=done))
    _print_table("c4c synth", [("videos", result.videos), ("captions", result.captions),
                               *[(f"{k} videos", v) for k, v in result.splits.items()],
                               ("annotations", str(result.annotations)), ("seconds", f"{result.seconds:.1f}")])


@app.command("extract")
def extract_cmd(
    source: Optional[Path] = typer.Argument(
        None, help="A folder of videos, or an annotation file (with --dataset and --videos)."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="The HDF5 frame store to write (FRAMES.h5), or a folder with --shards."),
    videos: Optional[Path] = typer.Option(None, "--videos", help="Folder of the videos named by the annotations."),
    dataset: Optional[str] = typer.Option(
        None, "--dataset", help="Annotation format of SOURCE: msrvtt, msvd, lsmdc, activitynet, didemo, howto100m, jsonl."),
    fps: float = typer.Option(1.0, help="Frames sampled per second of video time (the paper uses 1)."),
    size: int = typer.Option(224, help="Short side resized to this (bicubic), then centre crop size x size."),
    workers: int = typer.Option(2, "--workers", "-j", help="Videos decoded at once (ffmpeg processes)."),
    codec: str = typer.Option("jpeg", help="Frame storage: jpeg (about 8x smaller) or raw uint8."),
    jpeg_quality: int = typer.Option(95, help="JPEG quality (1-100) with --codec jpeg."),
    ffmpeg_threads: int = typer.Option(0, help="Decoder threads per ffmpeg process; 0 = ffmpeg's own choice."),
    commit_every: int = typer.Option(
        0, help="Also merge finished videos into OUT after this many (0: at the end; finished videos are kept "
                "in OUT.parts/ until then, so a killed run loses none)."),
    batch: int = typer.Option(8, help="Up to this many small files (< 256 kB) decoded by one ffmpeg process; 1 = never."),
    shards: int = typer.Option(
        0, help="Write a shard set: OUT is a folder of this many HDF5 files plus manifest.json (for large "
                "corpora; 0 = one file). Resuming an existing set needs no --shards."),
    shard_index: Optional[str] = typer.Option(
        None, help="Only extract these shards, e.g. 3, 0-7 or 0,4,8-11 (one machine's share; run the other "
                   "shards elsewhere into the same folder)."),
    index: Optional[Path] = typer.Option(
        None, "--index", help="Write the manifest.json of the shard set in this folder from its shard files, "
                              "then stop (after extracting on several machines)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Log lines instead of a progress bar."),
) -> None:
    """Decode videos with ffmpeg and store frames sampled at --fps, resized and centre-cropped, in HDF5.

    Re-running resumes: videos already in the store are skipped. Killing the run loses no finished
    video. Bad videos (corrupt, truncated, empty, audio-only, missing) do not stop the batch: they
    are listed with their reason in OUT's .failed.tsv, and the exit status is 1.

    With --shards S, OUT is a folder of S files frames-KKKKK-of-SSSSS.h5 (video v goes to shard
    sha1(v) mod S) and a manifest.json that every c4c command reading frames accepts as --frames.
    Several machines can fill one set at once, each with its own --shard-index.

    Examples:

        c4c extract my_videos/ --out my_frames.h5

        c4c extract data/msrvtt/msrvtt_data --dataset msrvtt --videos data/msrvtt/videos --out data/msrvtt/frames.h5 -j 8

        c4c extract data/synth/annotations.jsonl --dataset jsonl --videos data/synth/videos --out frames.h5 --codec raw

        c4c extract data/howto100m --dataset howto100m --videos data/howto100m/videos --out data/howto100m/frames --shards 400 -j 16

        c4c extract data/howto100m --dataset howto100m --videos /mnt/videos --out /shared/frames --shards 400 --shard-index 0-99

        c4c extract --index /shared/frames      # once every machine is done
    """
    from c4c.stages import extract

    _setup_logging(quiet)
    if index is not None:
        if source is not None or out is not None:
            raise C4CError("--index DIR only writes the manifest of DIR: give no SOURCE or --out with it")
        manifest = extract.index_shards(index)
        _print_table("c4c extract --index", [("manifest", str(manifest))])
        return
    if source is None or out is None:
        raise C4CError("give SOURCE and --out (or --index DIR to write a shard set's manifest)")
    config = extract.ExtractConfig(source=source, out=out, videos_dir=videos, dataset=dataset, fps=fps,
                                   size=size, codec=codec, jpeg_quality=jpeg_quality, workers=workers,
                                   ffmpeg_threads=ffmpeg_threads, commit_every=commit_every, batch=batch,
                                   shards=shards,
                                   shard_index=None if shard_index is None else extract.parse_shard_index(shard_index))
    log = logging.getLogger("c4c.extract")
    with _progress(quiet, "videos") as progress:
        task = None

        def on_start(pending: int, skipped: int) -> None:
            nonlocal task
            task = progress.add_task("extract", total=pending)
            if skipped:
                log.info("%d videos already in %s: skipped", skipped, out)

        def on_video(outcome: extract.Outcome) -> None:
            if task is not None:
                progress.advance(task)
            if not outcome.ok:
                log.warning("failed %s: %s", outcome.path or outcome.video_id, outcome.reason)
            elif quiet is False and progress.disable:
                log.info("done %s (%d frames)", outcome.video_id, outcome.frames)

        result = extract.run(config, on_start=on_start, on_video=on_video)
    rows = [("videos done", result.done), ("videos skipped", result.skipped),
            ("videos failed", len(result.failed)), ("frames", result.frames),
            ("bytes", f"{result.bytes:,}"), ("seconds", f"{result.seconds:.1f}"),
            ("output", str(result.out)), ("summary", str(result.summary_json))]
    if result.shards:
        rows.append(("shards worked on", len(result.shards)))
        rows.append(("manifest", str(result.manifest) if result.manifest else
                     "not yet (other shards missing or running; `c4c extract --index` writes it)"))
    if result.with_decode_errors:
        rows.append(("decoded with errors", len(result.with_decode_errors)))
    _print_table("c4c extract", rows)
    if result.failed:
        _print_failures(result)
        raise typer.Exit(code=1)


@app.command("finetune")
def finetune_cmd(
    dataset: str = typer.Option(..., help="Annotation format: msrvtt, msvd, lsmdc, activitynet, didemo, jsonl."),
    ann: Path = typer.Option(..., help="Annotation file or folder (see data/README.md)."),
    frames: Path = typer.Option(..., help="FRAMES.h5 written by `c4c extract`."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to write."),
    sim: str = typer.Option("meanP", help="Similarity head: meanP, seqLSTM, seqTransf or tightTransf."),
    clip: str = typer.Option("ViT-B-32", help="open_clip model name, 'tiny', or a JSON model config."),
    pretrained: str = typer.Option("openai", help="open_clip pretrained tag, a local weights file, or 'none'."),
    init: Optional[Path] = typer.Option(None, help="Start from another c4c run (e.g. `c4c pretrain` output)."),
    clip_fp16: bool = typer.Option(False, help="Store CLIP weights in fp16 as the reference does (for exact reproduction on GPU)."),
    patch: str = typer.Option("2d", help="Linear patch: 2d, or 3d (Conv3d over 3 frames, initialised from 2d)."),
    temporal_layers: int = typer.Option(4, help="Layers of the seqTransf / tightTransf transformer."),
    freeze_layers: int = typer.Option(0, help="Freeze CLIP embeddings and blocks below N (-1: train all)."),
    epochs: int = typer.Option(5),
    batch_size: int = typer.Option(128, help="Global contrastive batch (all processes together)."),
    grad_accum: int = typer.Option(1, help="Micro-batches per step; the contrastive batch stays --batch-size."),
    lr: float = typer.Option(1e-4, help="Learning rate of new parameters."),
    coef_lr: float = typer.Option(1e-3, help="CLIP parameters learn at lr x coef-lr."),
    weight_decay: float = typer.Option(0.2),
    warmup: float = typer.Option(0.1, help="Warm-up fraction of all steps."),
    schedule: str = typer.Option("cosine", help="cosine, reference-cosine, reference-linear or constant."),
    optimizer: str = typer.Option("adamw", help="adamw, or bertadam (the reference's Adam without bias correction)."),
    amp: str = typer.Option("auto", help="auto (bf16 on GPU, none on CPU), bf16, fp16 or none."),
    seed: int = typer.Option(42),
    max_words: int = typer.Option(32),
    max_frames: int = typer.Option(12),
    sampling: str = typer.Option("uniform", help="Frames kept from longer videos: head, tail or uniform."),
    fps: Optional[float] = typer.Option(None, help="Thin the stored frames to this rate."),
    train_order: str = typer.Option("keep", help="Frame order in training: keep, reverse or shuffle."),
    expand_sentences: bool = typer.Option(True, help="One training item per caption (else one random caption per video)."),
    msrvtt_train: str = typer.Option("9k", help="MSR-VTT training split: 9k, 7k or full."),
    select_on: str = typer.Option("val", help="Model selection split: val, test (the reference's protocol) or last."),
    eval_batch_size: int = typer.Option(64),
    workers: int = typer.Option(2, help="Data-loader processes."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    skip_missing: bool = typer.Option(False, help="Drop annotated videos that are not in FRAMES.h5 (counted in the log)."),
    resume: bool = typer.Option(False, help="Continue the run in --out exactly where it stopped."),
    save_every: int = typer.Option(0, help="Also checkpoint every N steps."),
    max_steps: Optional[int] = typer.Option(None, help="Stop after N optimiser steps (smoke runs)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Log lines instead of a progress bar."),
) -> None:
    """Fine-tune CLIP4Clip for text-video retrieval; evaluate every epoch, keep the best weights.

    Writes RUN/config.json, metrics.jsonl, checkpoints/, best/ and results.json. For several GPUs or
    machines: `torchrun --nproc_per_node N -m c4c.cli finetune ...`.

    Examples:

        c4c finetune --dataset msrvtt --ann data/msrvtt/msrvtt_data --frames data/msrvtt/frames.h5 --sim seqTransf --out runs/msrvtt-seqTransf

        c4c finetune --dataset jsonl --ann demo-out/synth/annotations.jsonl --frames demo-out/frames.h5 --clip tiny --pretrained none --batch-size 16 --lr 1e-3 --coef-lr 1 --out runs/synth

        c4c finetune ... --out runs/msrvtt-seqTransf --resume
    """
    from c4c.stages import finetune

    _setup_logging(quiet)
    options = {"msrvtt_train": msrvtt_train} if dataset == "msrvtt" else {}
    cfg = finetune.FinetuneConfig(
        dataset=dataset, ann=ann, frames=frames, out=out, sim=sim, clip=clip, pretrained=pretrained, init=init,
        clip_fp16=clip_fp16,
        patch=patch, temporal_layers=temporal_layers, freeze_layers=freeze_layers, epochs=epochs,
        batch_size=batch_size, grad_accum=grad_accum, lr=lr, coef_lr=coef_lr, weight_decay=weight_decay,
        warmup=warmup, schedule=schedule, optimizer=optimizer, amp=amp, seed=seed, max_words=max_words,
        max_frames=max_frames, sampling=sampling, fps=fps, train_order=train_order,
        expand_sentences=expand_sentences, dataset_options=options, select_on=select_on,
        eval_batch_size=eval_batch_size, workers=workers, device=device, skip_missing=skip_missing, resume=resume,
        save_every=save_every, max_steps=max_steps)
    rank0 = int(__import__("os").environ.get("RANK", "0")) == 0
    with _progress(quiet or not rank0, "clips") as progress:
        state = {"task": None, "batch": batch_size}

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
            elif kind == "epoch" and event.get("metrics"):
                _print_epoch_metrics(event)

        result = finetune.run(cfg, on_event=on_event)
    if rank0:
        rows = [("run", str(result.run_dir)), ("steps", result.steps), ("seconds", f"{result.seconds:.1f}"),
                ("selection", result.selection), ("best epoch", result.best_epoch)]
        if result.best_metrics:
            for k in ("R@1", "R@5", "R@10", "MdR", "MnR"):
                rows.append((f"t2v {k}", f"{result.best_metrics['t2v'][k]:.1f}"))
        _print_table("c4c finetune", rows)


def _print_epoch_metrics(event: dict) -> None:
    from rich.table import Table

    metrics = event["metrics"]
    table = Table(title=f"epoch {event['epoch']} ({metrics.get('split', '')})" + (" best so far" if event.get("best") else ""))
    for col in ("", "R@1", "R@5", "R@10", "MdR", "MnR"):
        table.add_column(col, justify="right")
    for direction in ("t2v", "v2t"):
        if direction in metrics:
            m = metrics[direction]
            table.add_row(direction, *[f"{m[k]:.1f}" for k in ("R@1", "R@5", "R@10", "MdR", "MnR")])
    _console().print(table)


def _print_table(title: str, rows: list[tuple[str, object]]) -> None:
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key, value in rows:
        table.add_row(str(key), str(value))
    _console().print(table)


def _print_failures(result) -> None:
    from rich.table import Table

    table = Table(title=f"failed videos (also in {result.failed_tsv})")
    table.add_column("video_id")
    table.add_column("reason")
    for f in result.failed[:50]:
        table.add_row(f.video_id, f.reason)
    if len(result.failed) > 50:
        table.add_row("...", f"{len(result.failed) - 50} more")
    _console().print(table)


def _register_commands() -> None:
    """Commands that live in c4c/commands/ (each module adds its own)."""
    from c4c.commands import caption, pretrain, retrieval

    pretrain.register(app)
    retrieval.register(app)
    caption.register(app)


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the app and turns user errors into one clear line and exit status 2."""
    try:
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except C4CError as exc:
        _console(stderr=True).print(f"[bold red]error:[/] {exc.render()}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        _console(stderr=True).print("interrupted; finished work was kept")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click's own usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        raise


if __name__ == "__main__":  # pragma: no cover
    main()
