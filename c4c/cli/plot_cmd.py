"""`c4c plot`: the training curves of run folders as a PNG, their numbers as JSON beside it."""

from pathlib import Path
from typing import Annotated, List

import typer

from c4c.cli import options as opt
from c4c.cli import ui


def plot_cmd(
    runs: Annotated[List[Path], typer.Argument(
        metavar="RUN...", help="Run folders of `c4c finetune`, `c4c pretrain` or `c4c caption train` (one or more).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG to write; the numbers go to the .json beside it.")],
    quiet: opt.Quiet = False,
) -> None:
    """Plot training curves: the loss per logged step and, per epoch, the metric the run selects on.

    Losses of different kinds (contrastive for retrieval and pretraining, token cross entropy for
    captioning) get a panel each. Retrieval runs show val t2v R@1 per epoch (test R@1 with --select-on
    test), caption runs the val caption loss; pretraining runs have the loss only. The kept (best) epoch
    is circled. One colour and marker per run, named by its folder. A run still training can be
    plotted: its curves so far.

    Examples:

        c4c plot runs/msrvtt-meanP --out curves.png

        c4c plot runs/meanP runs/seqTransf runs/tightTransf --out heads.png

        c4c plot runs/caption-msrvtt --out runs/caption-msrvtt/curves.png
    """
    from c4c.plots import plot_runs

    ui.setup_logging(quiet)
    result = plot_runs(list(runs), out)
    rows: list[tuple[str, object]] = []
    for c in result.runs:
        summary = f"{c.task}, {c.optimiser_steps} steps"  # the optimiser's, not the logged lines
        last = next((v for v in reversed(c.loss) if v is not None), None)
        if last is not None:
            summary += f", loss {last:.3f}"
        scored = [(e, v) for e, v in zip(c.epoch, c.value) if v is not None]
        kept = dict(scored).get(c.best_epoch)
        metric = f"{c.split} {c.metric}" if c.split else c.metric
        if kept is not None:
            summary += f", kept epoch {c.best_epoch}: {metric} {kept:.2f}"
        elif scored:
            summary += f", epoch {scored[-1][0]}: {metric} {scored[-1][1]:.2f}"
        rows.append((c.name, summary))
    rows += [("chart", str(result.png)), ("numbers", str(result.json))]
    ui.print_table("c4c plot", rows)


def register(app: typer.Typer) -> None:
    app.command("plot")(plot_cmd)
