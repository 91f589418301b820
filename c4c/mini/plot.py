"""The mini report's charts, drawn with matplotlib (headless, on an Agg canvas): line charts (training
curves with a ± std band, R@1 against the learning rate with error bars) and bar charts with error bars.

Series and bars take the colours of matplotlib's default cycle (``C0``, ``C1``, ...). Reference lines
(chance, order-blind 50) are dashed and named in the legend, never written over the bars. A value label
("mean ± std", or the single value when there is one seed) sits under its bar or point, beneath the axis,
so no line can cross it. Files are written atomically (:func:`c4c.plots.save_png`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from c4c.errors import C4CError
from c4c.plots import figure, save_png

MAX_SERIES = 10          # the colours of matplotlib's default cycle
REFERENCE = "0.35"       # grey of the dashed reference lines
REFERENCE_STYLE = (0, (5, 3))


@dataclass
class Series:
    """One line: ``y[i]`` at ``x[i]``; ``err`` (same length) is a ± spread drawn as a band or error bars."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    err: Sequence[float] | None = None


def value_label(mean: float, std: float | None, n: int | None = None, of: int | None = None, *,
                digits: int = 1, unit: str = "") -> str:
    """``mean ± std`` over ``n`` values of ``of`` expected (seeds), ``unit`` after both numbers.

    A single value (``n = 1``) is shown without a ``±``; ``(n = k)`` is added when ``n`` is below ``of``
    (some seeds missing), or for a single value whose ``of`` is unknown.
    """
    if n == 1 or std is None:
        text = f"{mean:.{digits}f}{unit}"
    else:
        text = f"{mean:.{digits}f} ± {std:.{digits}f}{unit}"
    if n is not None and (n < of if of is not None else n == 1):
        text += f" (n = {n})"
    return text


def _check_series(series: Sequence[Series]) -> None:
    if not series:
        raise C4CError("nothing to plot: no series")
    if len(series) > MAX_SERIES:
        raise C4CError(f"at most {MAX_SERIES} series per chart, got {len(series)}")
    for s in series:
        if len(s.x) != len(s.y) or (s.err is not None and len(s.err) != len(s.y)):
            raise C4CError(f"series {s.label!r}: x, y (and err) must have the same length")
        if not s.y:
            raise C4CError(f"series {s.label!r} has no points")
        if not all(math.isfinite(float(v)) for v in list(s.x) + list(s.y) + list(s.err or [])):
            raise C4CError(f"series {s.label!r}: cannot plot non-finite values")


def _reference(ax, reference: tuple[float, str] | None) -> None:
    if reference is not None:
        ax.axhline(reference[0], color=REFERENCE, linestyle=REFERENCE_STYLE, linewidth=1.4, label=reference[1],
                   zorder=1.5)


def _legend(fig, ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(handles), 4), frameon=False)


def line_figure(series: Sequence[Series], *, title: str, xlabel: str, ylabel: str,
                size: tuple[int, int] = (800, 450), log_x: bool = False, errors: str = "band",
                reference: tuple[float, str] | None = None, ymin: float | None = None,
                x_labels: Sequence[str] | None = None) -> Any:
    """The matplotlib figure :func:`line_chart` saves (series ``i`` in colour ``Ci``).

    ``errors``: ``band`` shades ``y ± err`` (training curves), ``bars`` draws error bars at the points;
    an ``err`` of 0 (a single seed) draws nothing. ``log_x`` puts x on a log scale with a tick at every x
    value, labelled ``x_labels`` when given (e.g. the value measured there). ``reference`` = (y, label)
    adds a dashed line named in the legend.
    """
    _check_series(series)
    if errors not in ("band", "bars"):
        raise C4CError(f"unknown error style {errors!r}; choose band or bars")
    xs = sorted({float(x) for s in series for x in s.x})
    if log_x and xs[0] <= 0:
        raise C4CError("a log-x chart needs positive x values")
    if x_labels is not None and len(x_labels) != len(xs):
        raise C4CError("x_labels needs one label per x value")
    fig, (ax,) = figure(size)
    spread = False
    for i, s in enumerate(series):
        colour = f"C{i}"
        x, y = [float(v) for v in s.x], [float(v) for v in s.y]
        err = [float(e) for e in s.err] if s.err is not None else [0.0] * len(y)
        few = errors == "bars" or len(x) < 15
        ax.plot(x, y, color=colour, linewidth=2, marker="o" if few else None, markersize=6, label=s.label, zorder=3)
        if not any(e > 0 for e in err):
            continue
        spread = True
        if errors == "band":
            ax.fill_between(x, [a - e for a, e in zip(y, err)], [a + e for a, e in zip(y, err)], color=colour,
                            alpha=0.18, linewidth=0, zorder=2)
        else:
            shown = [(a, b, e) for a, b, e in zip(x, y, err) if e > 0]
            ax.errorbar([a for a, _, _ in shown], [b for _, b, _ in shown], yerr=[e for _, _, e in shown],
                        fmt="none", ecolor="black", elinewidth=1.2, capsize=5, zorder=4)
    if spread:  # a legend entry saying what the shading or the bars are
        if errors == "band":
            ax.fill_between([], [], [], color="0.6", alpha=0.4, linewidth=0, label="± 1 std over seeds")
        else:
            ax.plot([], [], color="black", linewidth=1.2, marker="_", markersize=10, label="± 1 std over seeds")
    _reference(ax, reference)
    if log_x:
        ax.set_xscale("log")
        pad = max(1.5, (xs[-1] / xs[0]) ** 0.08)
        ax.set_xlim(xs[0] / pad, xs[-1] * pad)
        ax.set_xticks(xs, list(x_labels) if x_labels is not None else [f"{x:g}" for x in xs])
        ax.minorticks_off()
    elif x_labels is not None:
        ax.set_xticks(xs, list(x_labels))
    elif all(float(x).is_integer() for x in xs):  # optimiser steps
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if ymin is not None:  # from ymin (or lower) to a little above the highest point, error bar or line
        bottom = min(ymin, ax.get_ylim()[0])
        highest = max([float(y) + float(e) for s in series for y, e in zip(s.y, s.err or [0.0] * len(s.y))]
                      + ([reference[0]] if reference is not None else []))
        ax.set_ylim(bottom, highest + 0.08 * ((highest - bottom) or 1.0))
    ax.set_title(title, fontsize=12)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _legend(fig, ax)
    return fig


def line_chart(path: Path, series: Sequence[Series], **kwargs: Any) -> Path:
    """Write the PNG line chart of :func:`line_figure` (same arguments) at ``path``; returns the path."""
    return save_png(line_figure(series, **kwargs), path)


def bar_figure(labels: Sequence[str], means: Sequence[float], stds: Sequence[float] | None = None, *,
               title: str, ylabel: str, counts: Sequence[int] | None = None, size: tuple[int, int] = (800, 450),
               reference: tuple[float, str] | None = None, values: bool = True,
               ylim: tuple[float, float] | None = None) -> Any:
    """The matplotlib figure :func:`bar_chart` saves: bar ``i`` in colour ``Ci`` from 0 to ``means[i]``,
    ± ``stds[i]`` as a black error bar where ``counts[i]`` (values behind the mean) is over 1.

    ``values`` writes each bar's value under its label (see :func:`value_label`); ``reference`` =
    (y, label) adds a dashed line named in the legend; ``ylim`` fixes the y range (e.g. 0-100 for %).
    """
    if not labels:
        raise C4CError("nothing to plot: no bars")
    if len(labels) > MAX_SERIES:
        raise C4CError(f"at most {MAX_SERIES} bars per chart, got {len(labels)}")
    stds = [0.0] * len(means) if stds is None else [float(s) for s in stds]
    counts = [2 if s > 0 else 1 for s in stds] if counts is None else [int(c) for c in counts]
    if not len(labels) == len(means) == len(stds) == len(counts):
        raise C4CError("labels, means, stds and counts must have the same length")
    if any(not math.isfinite(float(v)) for v in list(means) + stds):
        raise C4CError("cannot plot non-finite values")
    fig, (ax,) = figure(size)
    ax.grid(False, axis="x")
    positions = list(range(len(labels)))
    ax.bar(positions, means, width=0.6, color=[f"C{i}" for i in positions], zorder=2)
    shown = [(p, m, s) for p, m, s, n in zip(positions, means, stds, counts) if n > 1 and s > 0]
    if shown:
        ax.errorbar([p for p, _, _ in shown], [m for _, m, _ in shown], yerr=[s for _, _, s in shown], fmt="none",
                    ecolor="black", elinewidth=1.5, capsize=7, capthick=1.5, zorder=3, label="± 1 std over seeds")
    _reference(ax, reference)
    most = max(counts)
    ticks = [f"{label}\n{value_label(m, s, n, most)}" if values else label
             for label, m, s, n in zip(labels, means, stds, counts)]
    ax.set_xticks(positions, ticks)
    ax.tick_params(axis="x", length=0, pad=6)
    if ylim is not None:
        ax.set_ylim(*ylim)
    else:
        top = max([m + s for m, s in zip(means, stds)] + ([reference[0]] if reference else []) + [0.0])
        bottom = min([0.0] + [m - s for m, s in zip(means, stds)])
        ax.set_ylim(bottom, top * 1.1 if top > 0 else 1.0)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_title(title, fontsize=12)
    ax.set_ylabel(ylabel)
    _legend(fig, ax)
    return fig


def bar_chart(path: Path, labels: Sequence[str], means: Sequence[float], stds: Sequence[float] | None = None,
              **kwargs: Any) -> Path:
    """Write the PNG bar chart of :func:`bar_figure` (same arguments) at ``path``; returns the path."""
    return save_png(bar_figure(labels, means, stds, **kwargs), path)
