"""`c4c finetune`, `c4c pretrain` and `c4c caption train`: the training commands.

Their shared options come from the stage configs' fields (:func:`c4c.cli.options.with_settings`);
each command declares only what is its own.
"""

from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from c4c import choices
from c4c.cli import options as opt
from c4c.cli import ui
from c4c.stages.caption import CaptionTrainConfig
from c4c.stages.finetune import FinetuneConfig
from c4c.stages.pretrain import PretrainConfig
from c4c.train.start import validate_settings

RUN_OUT = Annotated[Path, typer.Option("--out", "-o", help="Run folder to write (or to continue with --resume).")]


def fill_from_saved_run(ctx: typer.Context, config_cls: type, values: dict) -> dict:
    """With --resume, every option the user did not type takes the run's saved value (those that may
    change included, so a run made with --pretrained none resumes without it; the stage refuses the
    ones typed differently); --max-steps and --out are this command's own."""
    from c4c.run.folder import RunFolder
    from c4c.train.settings import NOT_TAKEN_ON_RESUME

    if not values.get("resume"):
        return values
    folder = RunFolder(Path(values["out"]))
    if not folder.is_run():
        return values  # the stage says there is nothing to resume
    saved = folder.read_config()
    filled = dict(values)
    for name in opt.config_fields(config_cls, values):
        if name in NOT_TAKEN_ON_RESUME or name not in saved:
            continue
        source = ctx.get_parameter_source(name)
        if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT"):
            continue
        value = saved[name]
        filled[name] = tuple(value) if isinstance(value, list) else value
    return filled


def _train(stage_run: Callable, cfg, quiet: bool, title: str, rows: Callable) -> None:
    with ui.progress(quiet, "clips") as bar:
        result = stage_run(cfg, on_event=ui.training_progress(bar, cfg.batch_size, quiet))
    if ui.is_main_process():
        ui.print_table(title, rows(result))


def _retrieval_rows(result) -> list:
    rows = [("run", str(result.run_dir)), ("steps", result.steps), ("seconds", f"{result.seconds:.1f}"),
            *ui.selection_rows(result)]
    if result.best_metrics:
        rows += [(f"t2v {k}", f"{result.best_metrics['t2v'][k]:.1f}") for k in ("R@1", "R@5", "R@10", "MdR", "MnR")]
    return rows + [("results", str(result.run_dir / "results.json"))]


@opt.with_settings(FinetuneConfig, opt.SHARED_TRAINING + opt.PAIR_OPTIONS)
def finetune_cmd(
    ctx: typer.Context,
    msrvtt_train: opt.MsrvttTrain = None,
    activitynet_val2: opt.ActivityNetVal2 = False,
    select_on: Annotated[choices.SelectOn, typer.Option(
        help="Model selection split: val, test (the reference's protocol: optimistic) or last.")] = "val",
    quiet: opt.Quiet = False,
    **settings,
) -> None:
    """Fine-tune CLIP4Clip for text-video retrieval; evaluate every epoch, keep the best weights.

    Writes RUN/config.json, metrics.jsonl, checkpoints/, latest.json, best/ and results.json (the
    layout is in data/README.md). For several GPUs or machines: `torchrun --nproc_per_node N -m c4c.cli
    finetune ...`.

    Examples:

        c4c finetune --dataset msrvtt --ann data/msrvtt/msrvtt_data --frames data/msrvtt/frames.h5 --sim seqTransf --out runs/msrvtt-seqTransf

        c4c finetune --dataset jsonl --ann demo-out/synth/annotations.jsonl --frames demo-out/frames.h5 --clip tiny --pretrained none --batch-size 16 --lr 1e-3 --coef-lr 1 --out runs/synth

        c4c finetune --dataset activitynet --ann data/activitynet --frames data/activitynet/frames.h5 --val-from-train 5% --max-frames 64 --out runs/anet

        c4c finetune --dataset msrvtt --ann data/msrvtt/msrvtt_data --frames data/msrvtt/frames.h5 --out runs/msrvtt-seqTransf --resume
    """
    from c4c.stages import finetune
    from c4c.stages.pairs import dataset_options

    ui.setup_logging(quiet)
    values = fill_from_saved_run(ctx, FinetuneConfig, {
        **settings, "select_on": select_on, "dataset_options": dataset_options(settings["dataset"], msrvtt_train,
                                                                     activitynet_val2=activitynet_val2)})
    cfg = FinetuneConfig(**opt.config_fields(FinetuneConfig, values))
    validate_settings(cfg)  # every option checked before torch is imported
    _train(finetune.run, cfg, quiet, "c4c finetune", _retrieval_rows)


@opt.with_settings(PretrainConfig, opt.SHARED_TRAINING + ("min_words", "min_seconds", "max_seconds", "max_gap"))
def pretrain_cmd(
    ctx: typer.Context,
    ann: Annotated[Path, typer.Option(help="HowTo100M folder: caption.json and HowTo100M_v1.csv.")],
    frames: opt.Frames,
    out: RUN_OUT,
    categories: Annotated[str, typer.Option(
        help="category_1 values to keep, separated by ';' ('all' keeps every video).")] = "Food and Entertaining",
    steps: Annotated[Optional[int], typer.Option(help="Optimiser steps in all [default: one epoch, one clip per video].",
                                       show_default=False)] = None,
    min_words: Annotated[int, typer.Option(help="Join ASR fragments until the text has this many words ...",
                                           rich_help_panel=opt.CLIPS)] = 8,
    min_seconds: Annotated[float, typer.Option(help="... and spans this many seconds (short windows are widened).",
                                               rich_help_panel=opt.CLIPS)] = 4.0,
    max_seconds: Annotated[float, typer.Option(help="Never make a clip longer than this (s).",
                                               rich_help_panel=opt.CLIPS)] = 12.0,
    max_gap: Annotated[float, typer.Option(help="Never join fragments across a pause longer than this (s).",
                                           rich_help_panel=opt.CLIPS)] = 2.0,
    quiet: opt.Quiet = False,
    **settings,
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

        c4c pretrain --ann data/howto100m --frames data/howto100m/frames --out runs/howto-meanP --resume
    """
    from c4c.stages import pretrain

    ui.setup_logging(quiet)
    wanted = (None if categories.strip().lower() == "all"
              else tuple(c.strip() for c in categories.split(";") if c.strip()))
    values = fill_from_saved_run(ctx, PretrainConfig, {
        **settings, "ann": ann, "frames": frames, "out": out, "categories": wanted, "steps": steps,
        "min_words": min_words, "min_seconds": min_seconds, "max_seconds": max_seconds,
        "max_gap": max_gap})
    cfg = PretrainConfig(**opt.config_fields(PretrainConfig, values))
    validate_settings(cfg)  # every option checked before torch is imported

    def rows(result) -> list:
        return [("run", str(result.run_dir)), ("videos", result.videos), ("steps", result.steps),
                ("clips", result.clips), ("finished", "yes" if result.finished else "no (--resume continues)"),
                ("last loss", "-" if result.last_loss is None else f"{result.last_loss:.4f}"),
                ("seconds", f"{result.seconds:.1f}"),
                ("checkpoint", str(result.checkpoint) if result.checkpoint else "-"),
                ("results", str(result.run_dir / "results.json")), ("next", f"c4c finetune --init {result.run_dir} ...")]

    _train(pretrain.run, cfg, quiet, "c4c pretrain", rows)


@opt.with_settings(CaptionTrainConfig, opt.SHARED_TRAINING + opt.PAIR_OPTIONS)
def caption_train_cmd(
    ctx: typer.Context,
    msrvtt_train: opt.MsrvttTrain = None,
    activitynet_val2: opt.ActivityNetVal2 = False,
    retrieval_loss_weight: Annotated[float, typer.Option(
        help="W in loss = caption + W x retrieval (the paper's joint loss: 1); 0 trains the caption loss alone.")] = 1.0,
    decoder_layers: Annotated[int, typer.Option(help="Caption decoder layers (UniVL: 3).")] = 3,
    decoder_heads: Annotated[int, typer.Option(help="Decoder attention heads (0: those of CLIP's text tower).")] = 0,
    decoder_dropout: Annotated[float, typer.Option(help="Decoder dropout.")] = 0.1,
    select_on: Annotated[choices.CaptionSelectOn, typer.Option(
        help="Keep the epoch with the lowest val token loss (val) or the last.")] = "val",
    quiet: opt.Quiet = False,
    **settings,
) -> None:
    """Train a caption decoder on CLIP4Clip, jointly with the retrieval loss by default.

    Teacher forcing on CLIP BPE tokens; the epoch with the lowest val token loss is kept in RUN/best.
    Writes the run folder of `c4c finetune` (task "caption"). For several GPUs: `torchrun
    --nproc_per_node N -m c4c.cli caption train ...`.

    Examples:

        c4c caption train --dataset msrvtt --ann data/msrvtt/msrvtt_data --frames data/msrvtt/frames.h5 --init runs/msrvtt-seqTransf --out runs/caption-msrvtt

        c4c caption train --dataset jsonl --ann demo-out/synth/annotations.jsonl --frames demo-out/frames.h5 --clip tiny --pretrained none --sim seqTransf --batch-size 16 --lr 1e-3 --coef-lr 1 --out runs/caption-synth

        c4c caption train --dataset msrvtt --ann data/msrvtt/msrvtt_data --frames data/msrvtt/frames.h5 --retrieval-loss-weight 0 --out runs/caption-only
    """
    from c4c.stages import caption
    from c4c.stages.pairs import dataset_options

    ui.setup_logging(quiet)
    values = fill_from_saved_run(ctx, CaptionTrainConfig, {
        **settings, "select_on": select_on,
        "dataset_options": dataset_options(settings["dataset"], msrvtt_train, task="caption",
                                           activitynet_val2=activitynet_val2),
        "retrieval_loss_weight": retrieval_loss_weight, "decoder_layers": decoder_layers,
        "decoder_heads": decoder_heads, "decoder_dropout": decoder_dropout})
    cfg = CaptionTrainConfig(**opt.config_fields(CaptionTrainConfig, values))
    validate_settings(cfg)  # every option checked before torch is imported

    def rows(result) -> list:
        rows = [("run", str(result.run_dir)), ("steps", result.steps), ("seconds", f"{result.seconds:.1f}"),
                *ui.selection_rows(result)]
        if result.best_metrics:
            rows += [("val caption loss", f"{result.best_metrics['caption_loss']:.4f}"),
                     ("val perplexity", f"{result.best_metrics['perplexity']:.2f}")]
            if "retrieval_loss" in result.best_metrics:
                rows.append(("val retrieval loss", f"{result.best_metrics['retrieval_loss']:.4f}"))
        return rows + [("results", str(result.run_dir / "results.json"))]

    _train(caption.run, cfg, quiet, "c4c caption train", rows)


def register(app: typer.Typer, caption_app: typer.Typer) -> None:
    app.command("finetune")(finetune_cmd)
    app.command("pretrain")(pretrain_cmd)
    caption_app.command("train")(caption_train_cmd)
