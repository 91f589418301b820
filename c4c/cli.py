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

    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=_console(stderr=True), show_path=False)], force=True)


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
    videos: int = typer.Option(24, "--videos", "-n", help="Number of videos."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives the same dataset."),
    duration: float = typer.Option(4.0, help="Seconds of motion per video."),
    fps: int = typer.Option(10, help="Frame rate of the generated files."),
    width: int = typer.Option(128, help="Frame width in pixels (even)."),
    height: int = typer.Option(96, help="Frame height in pixels (even)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Generate a small captioned video dataset of moving coloured shapes (deterministic from --seed).

    Captions name shape, colour and motion; some name the ORDER of two motions ("a red circle moves
    left then up") and come with a time-reversed twin, so a model that ignores frame order cannot
    separate them. Writes the generic JSONL annotation format (see data/README.md).

    Examples:

        c4c synth data/synth --videos 48 --seed 1

        c4c synth /tmp/big --videos 8 --width 1280 --height 720 --duration 20
    """
    from c4c.stages import synth

    _setup_logging(quiet)
    config = synth.SynthConfig(out_dir=out_dir, videos=videos, seed=seed, duration=duration, fps=fps,
                               width=width, height=height)
    with _progress(quiet, "videos") as progress:
        task = progress.add_task("synth", total=videos)
        result = synth.run(config, on_video=lambda done, total: progress.update(task, completed=done))
    _print_table("c4c synth", [("videos", result.videos), ("captions", result.captions),
                               *[(f"{k} videos", v) for k, v in result.splits.items()],
                               ("annotations", str(result.annotations)), ("seconds", f"{result.seconds:.1f}")])


@app.command("extract")
def extract_cmd(
    source: Path = typer.Argument(..., help="A folder of videos, or an annotation file (with --dataset and --videos)."),
    out: Path = typer.Option(..., "--out", "-o", help="The HDF5 frame store to write (FRAMES.h5)."),
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
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Log lines instead of a progress bar."),
) -> None:
    """Decode videos with ffmpeg and store frames sampled at --fps, resized and centre-cropped, in HDF5.

    Re-running resumes: videos already in the store are skipped. Killing the run loses no finished
    video. Bad videos (corrupt, truncated, empty, audio-only, missing) do not stop the batch: they
    are listed with their reason in OUT's .failed.tsv, and the exit status is 1.

    Examples:

        c4c extract my_videos/ --out my_frames.h5

        c4c extract data/msrvtt/msrvtt_data --dataset msrvtt --videos data/msrvtt/videos --out data/msrvtt/frames.h5 -j 8

        c4c extract data/synth/annotations.jsonl --dataset jsonl --videos data/synth/videos --out frames.h5 --codec raw
    """
    from c4c.stages import extract

    _setup_logging(quiet)
    config = extract.ExtractConfig(source=source, out=out, videos_dir=videos, dataset=dataset, fps=fps,
                                   size=size, codec=codec, jpeg_quality=jpeg_quality, workers=workers,
                                   ffmpeg_threads=ffmpeg_threads, commit_every=commit_every, batch=batch)
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
    if result.with_decode_errors:
        rows.append(("decoded with errors", len(result.with_decode_errors)))
    _print_table("c4c extract", rows)
    if result.failed:
        _print_failures(result)
        raise typer.Exit(code=1)


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
