"""Training curves of run folders (`c4c plot`), and the matplotlib basics every c4c chart shares.

:func:`plot_runs` draws, for one or more run folders, the training loss per logged step and, per epoch,
the metric the run selects its best epoch on (val t2v R@1 for retrieval runs, val caption loss for
caption runs; pretraining runs have none), one colour per run, into a PNG; the same numbers go to a JSON
file beside it (format ``c4c-curves`` version 1):

    {"format": "c4c-curves", "version": 1, "png": "curves.png",
     "runs": [{"name", "path", "task",
               "steps":  {"step": [...], "epoch": [...], "loss": [...], "lr": [[...], ...]},
               "epochs": {"epoch": [...], "step": [...], "metric": "t2v R@1" | "caption loss" | null,
                          "split": "val" | "test" | null, "value": [...], "best_epoch": int | null}}]}

Runs are read through :class:`c4c.run_folder.RunFolder` only. A value that is not finite is ``null``.

:func:`figure` and :func:`save_png` give every chart (``c4c.mini``'s too) a headless Agg figure and an
atomic PNG write. matplotlib is imported only when a chart is drawn, so importing this module is cheap.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from c4c.atomic import atomic_path, write_text
from c4c.errors import C4CError
from c4c.run_folder import RunFolder

CURVES_FORMAT = "c4c-curves"
CURVES_VERSION = 1
DPI = 100
GRID = "0.88"            # grey of the grid lines
SMOOTH_ABOVE = 60        # loss curves with more logged steps than this also get a moving average
# the per-epoch metric each kind of epoch record carries: (name, axis label, higher is better)
METRICS = {"t2v R@1": ("t2v R@1 (%)", True), "caption loss": ("caption loss (token cross entropy)", False)}


# ---------------------------------------------------------------------------------------------
# the shared basics


def figure(size: tuple[int, int] = (800, 450), ncols: int = 1) -> tuple[Any, list[Any]]:
    """A headless matplotlib figure of ``size`` pixels (constrained layout) and its ``ncols`` axes.

    The figure draws on an Agg canvas of its own: no pyplot, no GUI backend, no global state.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width, height = size
    if width < 200 or height < 150:
        raise C4CError(f"a chart needs at least 200 x 150 pixels, got {width} x {height}")
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(1, ncols, squeeze=False)[0])
    for ax in axes:
        ax.grid(True, color=GRID, linewidth=0.8)
        ax.set_axisbelow(True)
        ax.spines[["top", "right"]].set_visible(False)
    return fig, axes


def save_png(fig: Any, path: Path) -> Path:
    """Write ``fig`` as a PNG of exactly its pixel size at ``path``, atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Mean of each value and up to ``window - 1`` values before it (the first ones average fewer)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


# ---------------------------------------------------------------------------------------------
# reading a run's curves


@dataclass
class RunCurves:
    """The curves of one run: per logged step and per evaluated epoch (see the module docstring)."""

    name: str                                            # shown in the legend
    path: Path
    task: str                                            # retrieval | pretrain | caption
    step: list[int] = field(default_factory=list)        # logged optimiser steps, ascending
    step_epoch: list[int] = field(default_factory=list)  # the epoch of each logged step
    loss: list[float | None] = field(default_factory=list)
    lr: list[Any] = field(default_factory=list)          # per logged step: the lr of every parameter group
    epoch: list[int] = field(default_factory=list)       # evaluated epochs, ascending
    epoch_step: list[int] = field(default_factory=list)  # the optimiser step each evaluated epoch ended at
    metric: str | None = None                            # "t2v R@1", "caption loss", or None (no evaluation)
    split: str | None = None                             # the split the metric was measured on
    value: list[float | None] = field(default_factory=list)
    best_epoch: int | None = None                        # the epoch kept in best/ (the last one marked best)

    def as_dict(self) -> dict:
        return {"name": self.name, "path": str(self.path), "task": self.task,
                "steps": {"step": self.step, "epoch": self.step_epoch, "loss": self.loss, "lr": self.lr},
                "epochs": {"epoch": self.epoch, "step": self.epoch_step, "metric": self.metric, "split": self.split,
                           "value": self.value, "best_epoch": self.best_epoch}}


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _epoch_metric(metrics: dict) -> tuple[str, float | None] | None:
    """(metric name, value) of an epoch record's metrics, or None when it has neither known metric."""
    t2v = metrics.get("t2v")
    if isinstance(t2v, dict) and "R@1" in t2v:
        return "t2v R@1", _finite(t2v["R@1"])
    if "caption_loss" in metrics:
        return "caption loss", _finite(metrics["caption_loss"])
    return None


def read_curves(path: Path, name: str | None = None) -> RunCurves:
    """The curves in a run folder's metrics.jsonl.

    A step or epoch logged twice (a resumed run repeats what came after its checkpoint) counts once,
    with the values logged last. A folder that is not a run, or a run that has logged nothing yet, is a
    :class:`~c4c.errors.C4CError` naming the folder.
    """
    folder = RunFolder(path)
    folder.read_config()  # not a run folder: one clear error
    task = folder.task()
    steps: dict[int, dict] = {}
    epochs: dict[int, dict] = {}
    for record in folder.history():
        try:
            if record.get("event") == "step":
                steps[int(record["step"])] = record
            elif record.get("event") == "epoch" and isinstance(record.get("metrics"), dict):
                epochs[int(record["epoch"])] = record
        except (KeyError, TypeError, ValueError):
            continue  # a line without its step or epoch number: nothing to place on an axis
    metric_epochs = {e: r for e, r in epochs.items() if _epoch_metric(r["metrics"]) is not None}
    if not steps and not metric_epochs:
        raise C4CError("the run has no metrics yet (metrics.jsonl has no logged step or evaluated epoch)",
                       path=folder.path, hint="plot it after its first logged step")
    curves = RunCurves(name=name or folder.path.name, path=folder.path, task=task)
    for step in sorted(steps):
        record = steps[step]
        curves.step.append(step)
        curves.step_epoch.append(int(record.get("epoch", 0)))
        curves.loss.append(_finite(record.get("loss")))
        curves.lr.append(record.get("lr"))
    names = {_epoch_metric(r["metrics"])[0] for r in metric_epochs.values()}
    if len(names) > 1:
        raise C4CError(f"the run's epochs carry different metrics ({', '.join(sorted(names))})",
                       path=folder.metrics_path)
    for epoch in sorted(metric_epochs):
        record = metric_epochs[epoch]
        metric, value = _epoch_metric(record["metrics"])
        curves.metric = metric
        split = record["metrics"].get("split")
        curves.split = str(split) if split is not None else curves.split
        curves.epoch.append(epoch)
        curves.epoch_step.append(int(record.get("step", 0)))
        curves.value.append(value)
        if record.get("best"):
            curves.best_epoch = epoch
    return curves


def _legend_names(paths: Sequence[Path]) -> list[str]:
    """Each run's folder name; where two share one, as much of their paths as tells them apart."""
    names = [p.name or str(p) for p in paths]
    for depth in range(2, 1 + max(len(p.parts) for p in paths)):
        clashes = {n for n in names if names.count(n) > 1}
        if not clashes:
            break
        names = [str(Path(*p.parts[-depth:])) if n in clashes else n for n, p in zip(names, paths)]
    seen: dict[str, int] = {}
    unique = []
    for n in names:  # the same folder given twice
        seen[n] = seen.get(n, 0) + 1
        unique.append(n if seen[n] == 1 else f"{n} ({seen[n]})")
    return unique


# ---------------------------------------------------------------------------------------------
# the chart


@dataclass
class PlotResult:
    """What :func:`plot_runs` wrote and the curves it drew."""

    png: Path
    json: Path
    runs: list[RunCurves]


def plot_runs(runs: Sequence[Path], out: Path, *, size: tuple[int, int] | None = None) -> PlotResult:
    """Draw the training curves of ``runs`` into the PNG ``out`` and write their numbers to ``out`` with
    a .json suffix.

    Panels: training loss per logged step (a moving average on top when a run logged many steps), then
    one panel per kind of epoch metric among the runs (val t2v R@1, val caption loss), the kept (best)
    epoch circled. One colour per run, named by its folder in the legend. Both files are written
    atomically, after every run has been read.
    """
    out = Path(out)
    if not runs:
        raise C4CError("no run folders given")
    if out.suffix.lower() != ".png":
        raise C4CError("the chart is a PNG: give an output path ending in .png", path=out)
    paths = [Path(r) for r in runs]
    curves = [read_curves(p, name) for p, name in zip(paths, _legend_names(paths))]
    kinds = [m for m in METRICS if any(c.metric == m for c in curves)]
    fig, axes = figure(size or (560 * (1 + len(kinds)), 480), ncols=1 + len(kinds))
    colours = [f"C{i % 10}" for i in range(len(curves))]
    styles = ["-", "--", ":", "-."]
    _loss_panel(axes[0], curves, colours, styles)
    for ax, kind in zip(axes[1:], kinds):
        _metric_panel(ax, kind, curves, colours, styles)
    mixed = len({(c.metric, c.split) for c in curves if c.metric}) > len(kinds)  # one metric on several splits
    _legend(fig, curves, colours, styles, circled=any(c.best_epoch is not None for c in curves), splits=mixed)
    fig.suptitle("Training curves of " + (curves[0].name if len(curves) == 1 else f"{len(curves)} runs"),
                 fontsize=13)
    json_path = out.with_suffix(".json")
    save_png(fig, out)
    payload = {"format": CURVES_FORMAT, "version": CURVES_VERSION, "png": out.name,
               "runs": [c.as_dict() for c in curves]}
    write_text(json_path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return PlotResult(png=out, json=json_path, runs=curves)


def _nan(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else v for v in values]


def _loss_panel(ax, curves: list[RunCurves], colours: list[str], styles: list[str]) -> None:
    window = 1
    for i, c in enumerate(curves):
        if not c.step:
            continue
        style = styles[(i // 10) % len(styles)]
        loss = _nan(c.loss)
        if len(c.step) > SMOOTH_ABOVE:
            window = max(window, len(c.step) // 25)
            ax.plot(c.step, loss, color=colours[i], linewidth=0.8, alpha=0.3)
            shown = [v for v in loss if math.isfinite(v)]
            smooth = moving_average(shown, len(c.step) // 25)
            ax.plot([s for s, v in zip(c.step, loss) if math.isfinite(v)], smooth, color=colours[i],
                    linewidth=2.0, linestyle=style)
        else:
            ax.plot(c.step, loss, color=colours[i], linewidth=1.8, linestyle=style,
                    marker="o" if len(c.step) < 15 else None, markersize=4)
    title = "training loss per logged step"
    if window > 1:
        title += "\n(faint: every logged step; bold: moving average of about 4% of them)"
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("training loss")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _metric_panel(ax, kind: str, curves: list[RunCurves], colours: list[str], styles: list[str]) -> None:
    from matplotlib.ticker import MaxNLocator

    label, higher = METRICS[kind]
    splits = {c.split for c in curves if c.metric == kind}
    split = f"{splits.pop()} " if len(splits) == 1 and None not in splits else ""
    for i, c in enumerate(curves):
        if c.metric != kind:
            continue
        ax.plot(c.epoch, _nan(c.value), color=colours[i], linewidth=1.8, linestyle=styles[(i // 10) % len(styles)],
                marker="o", markersize=5)
        if c.best_epoch is not None and c.best_epoch in c.epoch:
            value = c.value[c.epoch.index(c.best_epoch)]
            if value is not None:
                ax.plot([c.best_epoch], [value], linestyle="none", marker="o", markersize=12,
                        markerfacecolor="none", markeredgecolor="black", markeredgewidth=1.5)
    better = "higher is better" if higher else "lower is better"
    ax.set_title(f"{split}{kind} per epoch ({better})", fontsize=11)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{split}{label}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _legend(fig, curves: list[RunCurves], colours: list[str], styles: list[str], circled: bool,
            splits: bool) -> None:
    """Runs by folder name and task (and the split of their epoch metric, where runs differ in it)."""
    from matplotlib.lines import Line2D

    def label(c: RunCurves) -> str:
        split = f", {c.split} split" if splits and c.split else ""
        return f"{c.name} ({c.task}{split})"

    handles = [Line2D([], [], color=colours[i], linewidth=2, linestyle=styles[(i // 10) % len(styles)],
                      label=label(c)) for i, c in enumerate(curves)]
    if circled:
        handles.append(Line2D([], [], linestyle="none", marker="o", markersize=10, markerfacecolor="none",
                              markeredgecolor="black", markeredgewidth=1.5, label="kept (best) epoch"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), frameon=False)
