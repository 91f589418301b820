"""`python -m c4c.mini --out DIR`: run the six experiments and write DIR/report.md and DIR/results.json.

The experiments live in :mod:`c4c.mini` (an application on top of the library); this is only its
command line, which shares the console, progress and error handling of `c4c`.
"""

from pathlib import Path
from typing import Optional

import typer

from c4c import option_rules
from c4c.cli import options as opt
from c4c.cli import ui

MINI_RULES = {"seeds": option_rules.count(1, 100), "threads": option_rules.count(0, 1024)}

app = typer.Typer(add_completion=False, no_args_is_help=False)


def _parse_only(text: Optional[str]) -> tuple[int, ...]:
    from c4c.errors import C4CError

    if not text:
        return (1, 2, 3, 4, 5, 6)
    try:
        numbers = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise C4CError(f"--only takes experiment numbers like 1,3, got {text!r}") from None
    return numbers


@app.command()
def mini(
    out: Path = typer.Option(..., help="Output folder: cached data, training runs, results/, report.md, "
                                       "results.json and the PNG charts."),
    seeds: int = typer.Option(3, help="Training seeds per arm; tables show mean ± std over them."),
    quick: bool = typer.Option(False, "--quick", help="Tiny budgets: a smoke test of the whole pipeline (about a "
                                                      "minute); its numbers mean little."),
    only: Optional[str] = typer.Option(None, help="Run only these experiments, e.g. 1,3 (1 image-text pretraining, "
                                                  "2 post-pretraining, 3 heads, 4 patch, 5 sampling, 6 lr)."),
    threads: int = typer.Option(0, help="torch CPU threads (0: 1 on machines with 2 cores or fewer, else half "
                                        "the cores)."),
    quiet: opt.Quiet = False,
) -> None:
    """Answer the CLIP4Clip paper's empirical questions on synthetic data, on a CPU.

    Six experiments, each fine-tuning a tiny CLIP4Clip on one cached `c4c synth` set: (1) image-text
    pretraining vs random init, (2) post-pretraining, (3) similarity heads on order-contrast queries,
    (4) 2-D vs 3-D patch, (5) head/tail/uniform frame sampling, (6) learning rate. Each (experiment,
    arm, seed) result is saved when done; rerunning the same command skips finished ones.

    Examples:

        python -m c4c.mini --out reports/mini                     # everything, 3 seeds (under 30 min on 2 cores)

        python -m c4c.mini --out /tmp/mini-quick --quick --seeds 1

        python -m c4c.mini --out reports/mini --only 3,6          # heads and learning rate only
    """
    import time

    option_rules.check_all({"seeds": seeds, "threads": threads}, MINI_RULES)
    from c4c.mini import experiments
    from c4c.mini.config import MiniConfig, quick_config

    ui.setup_logging(quiet=True)
    only_numbers = _parse_only(only)
    if quick:
        cfg = quick_config(out, seeds=seeds, only=only_numbers, threads=threads)
    else:
        cfg = MiniConfig(out=out, seeds=seeds, only=only_numbers, threads=threads)
    t0 = time.perf_counter()
    with ui.progress(quiet, "runs") as progress:
        overall = progress.add_task("data", total=None)
        training = progress.add_task("", total=None, visible=False)
        state = {"label": ""}

        def on_event(event: dict) -> None:
            kind = event.get("event")
            if kind == "data":
                progress.update(overall, description=f"data: {event['name']}")
            elif kind == "plan":
                cached = event["tasks"] - event["pending"]
                progress.update(overall, total=event["pending"], completed=0,
                                description=f"experiments ({cached} of {event['tasks']} results cached)")
            elif kind == "task":
                state["label"] = f"{event['experiment']}. {event['arm']}, seed {event['seed']}"
                progress.update(overall, description=state["label"])
            elif kind == "task_done":
                progress.advance(overall)
            elif kind == "epoch_start":
                progress.reset(training, total=event["steps"], completed=event["done_steps"], visible=True,
                               description=f"  epoch {event['epoch'] + 1}")
            elif kind == "pretrain_start":
                progress.reset(training, total=event["steps"], completed=event["done_steps"], visible=True,
                               description="  post-pretraining")
            elif kind in ("step", "tick"):
                progress.advance(training)

        summary = experiments.run(cfg, on_event=on_event)
    console = ui.console()
    from rich.table import Table

    table = Table(title=f"c4c mini ({summary['seeds']} seed(s), chance R@1 {summary['chance_R@1']:.1f})")
    table.add_column("question", style="bold")
    table.add_column("answer")
    for section in summary["experiments"]:
        table.add_row(f"{section['number']}. {section['title']}", section["answer"])
    console.print(table)
    console.print(f"report: {out / 'report.md'}   results: {out / 'results.json'}")
    console.print(f"total time {time.perf_counter() - t0:.0f} s")


def main(argv: list[str] | None = None) -> None:
    """Run the command with the error handling of `c4c` (user errors: one line, exit 2)."""
    from c4c.cli.app import run_app

    run_app(app, argv, prog_name="python -m c4c.mini")
