"""`c4c synth` and `c4c extract`: make videos, and turn videos into stored frames."""

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from c4c import choices, option_rules
from c4c.cli import options as opt
from c4c.cli import ui
from c4c.errors import C4CError
from c4c.options import check_config, rules_of
from c4c.synth.clips import COLOURS, SHAPES, SynthSettings
from c4c.stages.extract_config import ExtractConfig


# The numbers `c4c synth` takes: more videos, frames or pixels than this is a typo, not a dataset.
DURATION = option_rules.positive(3600.0)
SYNTH_RULES: dict[str, option_rules.Rule] = {**rules_of(SynthSettings), "duration": DURATION}


@opt.from_config(SynthSettings)
def synth_cmd(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write videos/*.mp4, annotations.jsonl and synth.json into.")],
    kind: Annotated[choices.SynthKind, typer.Option(
        help="retrieval (short captioned clips) or howto (long videos with timed ASR-like captions in the "
             "HowTo100M files caption.json and HowTo100M_v1.csv, for `c4c pretrain`).")] = "retrieval",
    duration: Annotated[Optional[float], typer.Option(
        help="Seconds of motion per video [default: 4]; with --kind howto the longest video [default: 60; "
             "lengths are drawn from a third of it up to it].")] = None,
    shapes: Annotated[str, typer.Option(help="Comma-separated shapes to use.")] = ",".join(SHAPES),
    colours: Annotated[str, typer.Option(help="Comma-separated colours to use.")] = ",".join(COLOURS),
    quiet: opt.Quiet = False,
    **settings,
) -> None:
    """Generate a small captioned video dataset of moving coloured shapes (deterministic from --seed).

    Captions name shape, colour and motion; some name the ORDER of two motions ("a red circle moves
    left then up") and come with a time-reversed twin, so a model that ignores frame order cannot
    separate them. Writes the generic JSONL annotation format (see data/README.md).

    --kind howto writes a HowTo100M-like corpus of the same shapes, colours and motions instead:
    long videos of several actions, narrated in short timed ASR-style fragments, in caption.json
    and HowTo100M_v1.csv (some videos in other categories than Food and Entertaining).

    Examples:

        c4c synth data/synth --count 48 --seed 1

        c4c synth data/howto --kind howto --count 60 --duration 40 --fps 4 --width 64 --height 48

        c4c synth /tmp/big --count 8 --width 1280 --height 720 --duration 20

        c4c synth /tmp/motion --count 400 --shapes circle --colours red   # only motion tells captions apart
    """
    check_config(SynthSettings(out_dir=out_dir, **settings))
    option_rules.check("duration", duration, DURATION)
    from c4c import synth

    ui.setup_logging(quiet)
    common = dict(out_dir=out_dir, shapes=tuple(s.strip() for s in shapes.split(",")),
                  colours=tuple(c.strip() for c in colours.split(",")), **settings)
    if duration is not None:
        common["duration"] = duration
    config, make = (synth.HowToConfig(**common), synth.run_howto) if kind == "howto" else \
        (synth.SynthConfig(**common), synth.run)
    with ui.progress(quiet, "videos") as bar:
        task = bar.add_task("synth", total=config.videos)
        result = make(config, on_video=lambda done, total: bar.update(task, completed=done))
    ui.print_table("c4c synth", [("videos", result.videos), ("captions", result.captions),
                                 *[(f"{k} videos", v) for k, v in result.splits.items()],
                                 ("annotations", str(result.annotations)), ("seconds", f"{result.seconds:.1f}")])


@opt.from_config(ExtractConfig, opt.MsrvttFlag)
def extract_cmd(
    source: Annotated[Optional[Path], typer.Argument(
        help="A folder of videos, or an annotation file or folder (with --dataset and --videos).")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="The HDF5 frame store to write (FRAMES.h5), or a folder with --shards.")] = None,
    shard_index: Annotated[Optional[str], typer.Option(
        help="Only extract these shards, e.g. 3, 0-7 or 0,4,8-11 (one machine's share; run the other shards "
             "elsewhere into the same folder).")] = None,
    write_manifest: Annotated[Optional[Path], typer.Option(
        help="Write the manifest.json of the shard set in this folder from its shard files, then stop (after "
             "extracting on several machines).")] = None,
    quiet: opt.Quiet = False,
    **settings,
) -> None:
    """Decode videos with ffmpeg and store frames sampled at --fps, resized and centre-cropped, in HDF5.

    Re-running resumes: videos already in the store are skipped. Killing the run loses no finished
    video. Bad videos (corrupt, truncated, empty, audio-only, missing) do not stop the batch: they
    are listed with their reason in OUT's .failed.tsv, and the exit status is 1. Files that are not
    taken as videos (other extensions, hidden files, macOS ._ files) are listed in OUT's .extract.json.
    A full disk stops the run with one line and exit status 1; finished videos are kept.

    With --shards S, OUT is a folder of S files frames-KKKKK-of-SSSSS.h5 (video v goes to shard
    sha1(v) mod S) and a manifest.json that every c4c command reading frames accepts as --frames.
    Several machines can fill one set at once, each with its own --shard-index.

    Examples:

        c4c extract my_videos/ --out my_frames.h5

        c4c extract data/msrvtt/msrvtt_data --dataset msrvtt --videos data/msrvtt/videos --out data/msrvtt/frames.h5 -j 8

        c4c extract data/synth/annotations.jsonl --dataset jsonl --videos data/synth/videos --out frames.h5 --codec raw

        c4c extract data/howto100m --dataset howto100m --videos data/howto100m/videos --out data/howto100m/frames --shards 400 -j 16

        c4c extract data/howto100m --dataset howto100m --videos /mnt/videos --out /shared/frames --shards 400 --shard-index 0-99

        c4c extract --write-manifest /shared/frames      # once every machine is done
    """
    from c4c.atomic import DiskFull
    from c4c.stages import extract
    from c4c.video import shards as shard_sets

    ui.setup_logging(quiet)
    if write_manifest is not None:
        if source is not None or out is not None:
            raise C4CError("--write-manifest DIR only writes the manifest of DIR: give no SOURCE or --out with it")
        manifest = shard_sets.index_shards(write_manifest)
        ui.print_table("c4c extract --write-manifest", [("manifest", str(manifest))])
        return
    if source is None or out is None:
        raise C4CError("give SOURCE and --out (or --write-manifest DIR to write a shard set's manifest)")
    config = ExtractConfig(source=source, out=out, dataset_options=opt.reader_options(settings),
                           shard_index=None if shard_index is None else shard_sets.parse_shard_index(shard_index),
                           **settings)
    check_config(config)  # before the progress bar
    log = logging.getLogger("c4c.extract")
    with ui.progress(quiet, "videos") as bar:
        task = None

        def on_start(pending: int, skipped: int) -> None:
            nonlocal task
            task = bar.add_task("extract", total=pending)
            if skipped:
                log.info("%d videos already in %s: skipped", skipped, out)

        def on_video(outcome) -> None:
            if task is not None:
                bar.advance(task)
            if not outcome.ok:
                log.warning("failed %s: %s", outcome.path or outcome.video_id, outcome.reason)
            elif not quiet and bar.disable:
                log.info("done %s (%d frames)", outcome.video_id, outcome.frames)

        try:
            result = extract.run(config, on_start=on_start, on_video=on_video)
        except DiskFull as exc:  # not a usage error: exit 1, as for videos that failed
            bar.stop()
            ui.console(stderr=True).print(f"[bold red]error:[/] {exc.render()}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=exc.exit_code) from None
    rows = [("videos done", result.done), ("videos skipped", result.skipped),
            ("videos failed", len(result.failed)), ("frames", result.frames),
            ("bytes", f"{result.bytes:,}"), ("seconds", f"{result.seconds:.1f}"),
            ("output", str(result.out)), ("summary", str(result.summary_json))]
    if result.shards:
        rows.append(("shards worked on", len(result.shards)))
        rows.append(("manifest", str(result.manifest) if result.manifest else
                     "not yet (other shards missing or running; `c4c extract --write-manifest` writes it)"))
    if result.with_decode_errors:
        rows.append(("decoded with errors", len(result.with_decode_errors)))
    if result.ignored:
        rows.append(("files not videos or hidden", f"{len(result.ignored)} (listed in the summary)"))
    ui.print_table("c4c extract", rows)
    if result.failed:
        _print_failures(result)
        raise typer.Exit(code=1)


def _print_failures(result) -> None:
    from rich.table import Table

    table = Table(title=f"failed videos (also in {result.failed_tsv})")
    table.add_column("video_id")
    table.add_column("reason")
    for f in result.failed[:50]:
        table.add_row(f.video_id, f.reason)
    if len(result.failed) > 50:
        table.add_row("...", f"{len(result.failed) - 50} more")
    ui.console().print(table)


def register(app: typer.Typer) -> None:
    app.command("synth")(synth_cmd)
    app.command("extract")(extract_cmd)
