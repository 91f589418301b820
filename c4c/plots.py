"""Training curves of run folders (`c4c plot`), and the matplotlib basics every c4c chart shares.

:func:`plot_runs` draws, for one or more run folders, the training loss per logged step (one panel per
kind of loss: the contrastive loss of retrieval and pretraining runs, the token cross entropy of caption
runs, which lie on different scales) and, per epoch, the metric the run selects its best epoch on (val
t2v R@1 for retrieval runs, val caption loss for caption runs; pretraining runs have none), one colour
and one marker per run, into a PNG; the same numbers go to a JSON file beside it (format ``c4c-curves``
version 1):

    {"format": "c4c-curves", "version": 1, "png": "curves.png",
     "runs": [{"name", "path", "task", "optimiser_steps",
               "steps":  {"step": [...], "epoch": [...], "loss": [...], "lr": [[...], ...]},
               "epochs": {"epoch": [...], "step": [...], "metric": "t2v R@1" | "caption loss" | null,
                          "split": "val" | "test" | null, "value": [...], "best_epoch": int | null}}]}

``optimiser_steps`` is the last optimiser step the run logged (a step line or an epoch's end), not the
number of logged lines. Runs are read through :class:`c4c.run.folder.RunFolder` only. A value that is
not finite is ``null``.

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
from c4c.outputs import Output, guard, json_with_format
from c4c.errors import C4CError
from c4c.run.folder import RunFolder

CURVES_FORMAT = "c4c-curves"
PNG_SOFTWARE = "c4c plot"  # the PNG's Software metadata: how `c4c plot` knows a chart of its own
CURVES_VERSION = 1
DPI = 100
GRID = "0.88"            # grey of the grid lines
SMOOTH_ABOVE = 60        # loss curves with more logged steps than this also get a moving average
# the per-epoch metric each kind of epoch record carries: (name, axis label, higher is better)
METRICS = {"t2v R@1": ("t2v R@1 (%)", True), "caption loss": ("caption loss (token cross entropy)", False)}
# the training loss of each task, by kind: losses of one kind share a panel, other kinds get their own
LOSS_KINDS = {"retrieval": "contrastive", "pretrain": "contrastive", "caption": "caption"}
LOSS_LABELS = {"contrastive": "contrastive loss (symmetric cross entropy)",
               "caption": "caption loss (token cross entropy)"}
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h"]  # one per run, so overlapping points stay apart


# ---------------------------------------------------------------------------------------------
# the shared basics


def figure(size: tuple[int, int] = (800, 450), ncols: int = 1, nrows: int = 1) -> tuple[Any, list[Any]]:
    """A headless matplotlib figure of ``size`` pixels (constrained layout) and its ``nrows x ncols``
    axes, row by row.

    The figure draws on an Agg canvas of its own: no pyplot, no GUI backend, no global state.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width, height = size
    if width < 200 or height < 150:
        raise C4CError(f"a chart needs at least 200 x 150 pixels, got {width} x {height}")
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = [ax for row in fig.subplots(nrows, ncols, squeeze=False) for ax in row]
    for ax in axes:
        ax.grid(True, color=GRID, linewidth=0.8)
        ax.set_axisbelow(True)
        ax.spines[["top", "right"]].set_visible(False)
    return fig, axes


def save_png(fig: Any, path: Path) -> Path:
    """Write ``fig`` as a PNG of exactly its pixel size at ``path``, atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": PNG_SOFTWARE})
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

    @property
    def optimiser_steps(self) -> int:
        """The run's optimiser steps so far: the last step it logged, by a step line or an epoch's end."""
        return max([0, *self.step, *self.epoch_step])

    @property
    def loss_kind(self) -> str:
        """Which loss panel the run's training loss goes on (see :data:`LOSS_KINDS`)."""
        return LOSS_KINDS.get(self.task, self.task)

    def as_dict(self) -> dict:
        return {"name": self.name, "path": str(self.path), "task": self.task, "optimiser_steps": self.optimiser_steps,
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
    panels: list[str] = field(default_factory=list)   # the panels' titles, left to right


def _is_our_png(path: Path) -> bool:
    """A PNG that `c4c plot` wrote: it says so in its metadata, or the curves JSON beside it names it."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    if not head.startswith(b"\x89PNG"):
        return False
    beside = path.with_suffix(".json")
    return PNG_SOFTWARE.encode() in head or (
        json_with_format(CURVES_FORMAT)(beside) and json.loads(beside.read_text(encoding="utf-8")).get("png") == path.name)


def plot_runs(runs: Sequence[Path], out: Path, *, size: tuple[int, int] | None = None) -> PlotResult:
    """Draw the training curves of ``runs`` into ``out`` (a PNG) and its numbers beside it, under the output
    guard (:mod:`c4c.outputs`): never over a file `c4c plot` did not write."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise C4CError("the chart is a PNG: give an output path ending in .png", path=out)
    outputs = [Output(out, "plot (PNG)", _is_our_png), Output(out.with_suffix(".json"), "curves file",
                                                                json_with_format(CURVES_FORMAT))]
    with guard(outputs, runs, command="c4c plot"):
        return _plot_runs(runs, out, size=size)


def _plot_runs(runs: Sequence[Path], out: Path, *, size: tuple[int, int] | None = None) -> PlotResult:
    """Draw the training curves of ``runs`` into the PNG ``out`` and write their numbers to ``out`` with
    a .json suffix.

    Panels: training loss per logged step, one panel per kind of loss among the runs (contrastive,
    caption; a moving average on top when a run logged many steps), then one panel per kind of epoch
    metric among the runs (val t2v R@1, val caption loss), the kept (best) epoch circled. One colour and
    one marker per run, named by its folder in the legend; a series with fewer points is drawn over one
    with more, so a single point is never hidden. Both files are written atomically, after every run
    has been read.
    """
    out = Path(out)
    if not runs:
        raise C4CError("no run folders given")
    if out.suffix.lower() != ".png":
        raise C4CError("the chart is a PNG: give an output path ending in .png", path=out)
    paths = [Path(r) for r in runs]
    curves = [read_curves(p, name) for p, name in zip(paths, _legend_names(paths))]
    losses = list(dict.fromkeys(c.loss_kind for c in curves if c.step))
    kinds = [m for m in METRICS if any(c.metric == m for c in curves)]
    panels = len(losses) + len(kinds)
    ncols = panels if panels <= 3 else 2 + (panels > 4)   # four panels: two rows of two
    nrows = -(-panels // ncols)
    fig, axes = figure(size or (560 * ncols, 480 + 400 * (nrows - 1)), ncols=ncols, nrows=nrows)
    for ax in axes[panels:]:
        ax.set_visible(False)
    looks = [_Look(colour=f"C{i % 10}", style=["-", "--", ":", "-."][(i // 10) % 4], marker=MARKERS[i % len(MARKERS)])
             for i in range(len(curves))]
    titles = []
    for ax, loss in zip(axes, losses):
        titles.append(_loss_panel(ax, loss, len(losses) > 1, curves, looks))
    for ax, kind in zip(axes[len(losses):], kinds):
        titles.append(_metric_panel(ax, kind, curves, looks))
    mixed = len({(c.metric, c.split) for c in curves if c.metric}) > len(kinds)  # one metric on several splits
    _legend(fig, curves, looks, circled=any(c.best_epoch is not None for c in curves), splits=mixed)
    fig.suptitle("Training curves of " + (curves[0].name if len(curves) == 1 else f"{len(curves)} runs"),
                 fontsize=13)
    json_path = out.with_suffix(".json")
    save_png(fig, out)
    payload = {"format": CURVES_FORMAT, "version": CURVES_VERSION, "png": out.name,
               "runs": [c.as_dict() for c in curves]}
    write_text(json_path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return PlotResult(png=out, json=json_path, runs=curves, panels=titles)


def _nan(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else v for v in values]


@dataclass
class _Look:
    """How one run is drawn in every panel."""

    colour: str
    style: str
    marker: str


def _drawing_order(curves: list[RunCurves], points) -> list[int]:
    """Runs with more points first, so a shorter series (a single point above all) lands on top."""
    return sorted(range(len(curves)), key=lambda i: -len(points(curves[i])))


def _series(ax, x: list, y: list[float], look: _Look, rank: int, *, size: float) -> None:
    """One run's line and markers; a lone point gets a bigger marker with a white rim."""
    alone = sum(1 for v in y if math.isfinite(v)) == 1
    ax.plot(x, y, color=look.colour, linewidth=1.8, linestyle=look.style, marker=look.marker,
            markersize=size * (1.8 if alone else 1.0), markeredgecolor="white" if alone else look.colour,
            markeredgewidth=1.0, zorder=2 + rank / 100)


def _whole_numbers(ax, values: list[int]) -> None:
    """Integer ticks on x; a lone value is the one tick, mid-axis (not among ticks -0.04 ... 0.04)."""
    from matplotlib.ticker import MaxNLocator

    if values and min(values) == max(values):
        ax.set_xlim(values[0] - 0.5, values[0] + 0.5)
        ax.set_xticks([values[0]])
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _loss_panel(ax, kind: str, named: bool, curves: list[RunCurves], looks: list[_Look]) -> str:
    window = 1
    steps: list[int] = []
    for rank, i in enumerate(_drawing_order(curves, lambda c: c.step)):
        c, look = curves[i], looks[i]
        if not c.step or c.loss_kind != kind:
            continue
        steps += c.step
        loss = _nan(c.loss)
        if len(c.step) > SMOOTH_ABOVE:
            window = max(window, len(c.step) // 25)
            ax.plot(c.step, loss, color=look.colour, linewidth=0.8, alpha=0.3)
            shown = [v for v in loss if math.isfinite(v)]
            smooth = moving_average(shown, len(c.step) // 25)
            ax.plot([s for s, v in zip(c.step, loss) if math.isfinite(v)], smooth, color=look.colour,
                    linewidth=2.0, linestyle=look.style)
        else:
            _series(ax, c.step, loss, look if len(c.step) < 15 else _Look(look.colour, look.style, ""), rank,
                    size=4.5)
    label = LOSS_LABELS.get(kind, f"{kind} loss")
    title = f"training {label.split(' (')[0] if named else 'loss'} per logged step"
    if window > 1:
        title += "\n(faint: every logged step; bold: moving average of about 4% of them)"
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(f"training {label}" if named else "training loss")
    _whole_numbers(ax, steps)
    return title.split("\n")[0]


def _metric_panel(ax, kind: str, curves: list[RunCurves], looks: list[_Look]) -> str:
    label, higher = METRICS[kind]
    splits = {c.split for c in curves if c.metric == kind}
    split = f"{splits.pop()} " if len(splits) == 1 and None not in splits else ""
    epochs: list[int] = []
    for rank, i in enumerate(_drawing_order(curves, lambda c: c.epoch)):
        c = curves[i]
        if c.metric != kind:
            continue
        epochs += c.epoch
        _series(ax, c.epoch, _nan(c.value), looks[i], rank, size=5.5)
        if c.best_epoch is not None and c.best_epoch in c.epoch:
            value = c.value[c.epoch.index(c.best_epoch)]
            if value is not None:
                ax.plot([c.best_epoch], [value], linestyle="none", marker="o", markersize=14,
                        markerfacecolor="none", markeredgecolor="black", markeredgewidth=1.5, zorder=3)
    better = "higher is better" if higher else "lower is better"
    title = f"{split}{kind} per epoch ({better})"
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{split}{label}")
    _whole_numbers(ax, epochs)
    return title


def _legend(fig, curves: list[RunCurves], looks: list[_Look], circled: bool, splits: bool) -> None:
    """Runs by folder name and task (and the split of their epoch metric, where runs differ in it)."""
    from matplotlib.lines import Line2D

    def label(c: RunCurves) -> str:
        split = f", {c.split} split" if splits and c.split else ""
        return f"{c.name} ({c.task}{split})"

    handles = [Line2D([], [], color=look.colour, linewidth=2, linestyle=look.style, marker=look.marker,
                      markersize=6, label=label(c)) for c, look in zip(curves, looks)]
    if circled:
        handles.append(Line2D([], [], linestyle="none", marker="o", markersize=10, markerfacecolor="none",
                              markeredgecolor="black", markeredgewidth=1.5, label="kept (best) epoch"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), frameon=False)
