"""`c4c finetune` and `c4c pretrain`: the retrieval training commands (`c4c caption train` is in
:mod:`c4c.cli.caption_cmds`).

Their options are the stage configs' fields (:func:`c4c.cli.options.from_config`); a command
declares only what is no field: how the command line says a value the config holds otherwise.
"""

from pathlib import Path
from typing import Annotated, Callable

import typer

from c4c.cli import options as opt
from c4c.cli import ui
from c4c.stages.finetune import FinetuneConfig
from c4c.stages.pretrain import DEFAULT_CATEGORIES, PretrainConfig
from c4c.train.start import validate_settings

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


def pair_config(ctx: typer.Context, config_cls: type, settings: dict, *, task: str):
    """The config of a command that trains on an annotated dataset: the reader flags made reader options,
    the saved values of a resumed run filled in, every option checked (before torch is imported)."""
    reader = opt.reader_options(settings, task=task)
    values = fill_from_saved_run(ctx, config_cls, {**settings, "dataset_options": reader})
    cfg = config_cls(**opt.config_fields(config_cls, values))
    validate_settings(cfg)
    return cfg


def train(stage_run: Callable, cfg, quiet: bool, title: str, rows: Callable) -> None:
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


@opt.from_config(FinetuneConfig, opt.ReaderFlags)
def finetune_cmd(ctx: typer.Context, quiet: opt.Quiet = False, **settings) -> None:
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

    ui.setup_logging(quiet)
    cfg = pair_config(ctx, FinetuneConfig, settings, task="retrieval")
    train(finetune.run, cfg, quiet, "c4c finetune", _retrieval_rows)


@opt.from_config(PretrainConfig)
def pretrain_cmd(
    ctx: typer.Context,
    categories: Annotated[str, typer.Option(
        help="category_1 values to keep, separated by ';' ('all' keeps every video).",
        rich_help_panel="Data")] = "; ".join(DEFAULT_CATEGORIES),
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
    values = fill_from_saved_run(ctx, PretrainConfig, {**settings, "categories": wanted})
    cfg = PretrainConfig(**opt.config_fields(PretrainConfig, values))
    validate_settings(cfg)  # every option checked before torch is imported

    def rows(result) -> list:
        return [("run", str(result.run_dir)), ("videos", result.videos), ("steps", result.steps),
                ("clips", result.clips), ("finished", "yes" if result.finished else "no (--resume continues)"),
                ("last loss", "-" if result.last_loss is None else f"{result.last_loss:.4f}"),
                ("seconds", f"{result.seconds:.1f}"),
                ("checkpoint", str(result.checkpoint) if result.checkpoint else "-"),
                ("results", str(result.run_dir / "results.json")), ("next", f"c4c finetune --init {result.run_dir} ...")]

    train(pretrain.run, cfg, quiet, "c4c pretrain", rows)


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune_cmd)
    app.command("pretrain")(pretrain_cmd)
