"""What the commands show a person: the console, log lines, progress bars and result tables."""

import logging
import os
from typing import Callable

_CONSOLES: dict = {}


def console(stderr: bool = False):
    """The rich console on stdout (results) or stderr (progress, logs, errors)."""
    if stderr not in _CONSOLES:
        from rich.console import Console

        _CONSOLES[stderr] = Console(stderr=stderr)
    return _CONSOLES[stderr]


def is_main_process() -> bool:
    """False in the non-zero ranks of a torchrun launch (they neither draw bars nor print tables)."""
    return int(os.environ.get("RANK", "0")) == 0


def setup_logging(quiet: bool) -> None:
    """Log lines through rich on stderr: INFO and up, or WARNING and up with --quiet."""
    from rich.logging import RichHandler

    handler = RichHandler(console=console(stderr=True), show_path=False)
    # open_clip logs its chatter on the root logger (and warns on every deliberate random init)
    handler.addFilter(lambda record: record.levelno >= logging.ERROR
                      or ("open_clip" not in record.pathname
                          and not record.getMessage().startswith("No pretrained weights loaded")))
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s",
                        handlers=[handler], force=True)
    for noisy in ("open_clip", "huggingface_hub", "urllib3", "faiss", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def progress(quiet: bool, unit: str):
    """A rich progress bar with items/s and ETA (off with --quiet, in other ranks, or when not a terminal)."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("-- " + unit + "/s" if speed is None else f"{speed:.2f} {unit}/s")

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    console=console(stderr=True), disable=quiet or not is_main_process(), transient=False)


def print_table(title: str, rows: list[tuple[str, object]]) -> None:
    """A two-column table of results (name, value) on stdout."""
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key, value in rows:
        table.add_row(str(key), str(value))
    console().print(table)


def warn(message: str) -> None:
    console(stderr=True).print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def epoch_table(event: dict):
    """The metrics of one epoch as a table: retrieval metrics, or caption-loss metrics."""
    from rich.table import Table

    m = event["metrics"]
    table = Table(title=f"epoch {event['epoch']} ({m.get('split', '')})" + (" best so far" if event.get("best") else ""))
    if "t2v" in m:
        for col in ("", "R@1", "R@5", "R@10", "MdR", "MnR"):
            table.add_column(col, justify="right")
        for direction in ("t2v", "v2t"):
            if direction in m:
                table.add_row(direction, *[f"{m[direction][k]:.1f}" for k in ("R@1", "R@5", "R@10", "MdR", "MnR")])
        return table
    columns = [("caption loss", "caption_loss", "{:.4f}"), ("perplexity", "perplexity", "{:.2f}"),
               ("tokens", "tokens", "{}"), ("retrieval loss", "retrieval_loss", "{:.4f}")]
    present = [c for c in columns if c[1] in m]
    for title, _, _ in present:
        table.add_column(title, justify="right")
    table.add_row(*[fmt.format(m[key]) for _, key, fmt in present])
    return table


def training_progress(bar, batch_size: int, quiet: bool = False) -> Callable[[dict], None]:
    """The ``on_event`` of a training stage: one bar per epoch (or one for a step-based run), the loss in
    its description, and each epoch's evaluation printed above the bar (not with --quiet)."""
    state: dict = {"task": None}

    def on_event(event: dict) -> None:
        kind = event.get("event")
        if kind == "epoch_start" and not state.get("steps"):
            if state["task"] is not None:
                bar.remove_task(state["task"])
            state["epoch"] = event["epoch"]
            state["task"] = bar.add_task(f"epoch {event['epoch']}", total=event["steps"] * batch_size,
                                         completed=event["done_steps"] * batch_size)
        elif kind == "pretrain_start":
            state["steps"] = True
            state["task"] = bar.add_task("pretrain", total=event["steps"] * batch_size,
                                         completed=event["done_steps"] * batch_size)
        elif kind in ("step", "tick") and state["task"] is not None:
            bar.advance(state["task"], batch_size)
            label = f"step {event['step']} loss" if state.get("steps") else f"epoch {state.get('epoch')} loss"
            bar.update(state["task"], description=f"{label} {event['loss']:.3f}")
        elif kind == "epoch" and event.get("metrics") and is_main_process() and not quiet:
            (bar.console if not bar.disable else console()).print(epoch_table(event))

    return on_event


def selection_rows(result) -> list[tuple[str, object]]:
    """Rows saying which epoch was kept and why."""
    if result.selection == "last":
        kept = result.history[-1]["epoch"] if result.history else "-"
        return [("selection", "last epoch kept: no selection split"), ("kept epoch", kept)]
    return [("selection", f"best epoch on {result.selection}"), ("best epoch", result.best_epoch)]
