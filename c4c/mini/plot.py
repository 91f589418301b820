"""PNG line charts and bar charts with error bars, drawn with Pillow (no plotting library).

Series ``i`` (a line, or a bar) is drawn in ``PALETTE[i]`` exactly, without anti-aliasing, so a chart's
series can be told apart (and counted) by their pixel colours; text, axes, grid and error bars are
greys and black, shaded bands are pale tints. Files are written atomically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from c4c.atomic import atomic_path
from c4c.errors import C4CError

PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40),
    (148, 103, 189), (23, 190, 207), (227, 119, 194), (188, 189, 34),
)
BACKGROUND = (255, 255, 255)
INK = (40, 40, 40)            # text and axes
GRID = (228, 228, 228)
ERROR = (0, 0, 0)             # error bars
REFERENCE = (120, 120, 120)   # dashed reference line (chance)
MARGIN = {"left": 70, "right": 20, "top": 40, "bottom": 56}


@dataclass
class Series:
    """One line: ``y[i]`` at ``x[i]``; ``err`` (same length) is a ± spread drawn as a band or error bars."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    err: Sequence[float] | None = None


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _text_size(draw, text: str, font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 x 10^k apart) covering ``lo .. hi``, about ``count`` of them."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise C4CError("cannot plot non-finite values")
    if hi <= lo:
        hi = lo + (abs(lo) if lo else 1.0)
    raw = (hi - lo) / max(count - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw - 1e-12)
    first = math.floor(lo / step + 1e-9) * step
    ticks, value = [], first
    while value < hi + step * 0.999:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _format(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.01:
        return f"{value:.0e}".replace("e-0", "e-").replace("e+0", "e")
    return f"{value:g}"


class _Canvas:
    """A plot area with linear (or log-x) scales mapped to pixels."""

    def __init__(self, size: tuple[int, int], title: str, xlabel: str, ylabel: str,
                 xrange: tuple[float, float], yrange: tuple[float, float], log_x: bool = False) -> None:
        from PIL import Image, ImageDraw

        width, height = size
        if width < 200 or height < 150:
            raise C4CError(f"a chart needs at least 200 x 150 pixels, got {width} x {height}")
        self.image = Image.new("RGB", size, BACKGROUND)
        self.draw = ImageDraw.Draw(self.image)
        self.font, self.small = _font(14), _font(11)
        self.log_x = log_x
        self.x0, self.x1 = MARGIN["left"], width - MARGIN["right"]
        self.y0, self.y1 = MARGIN["top"], height - MARGIN["bottom"]
        self.xlo, self.xhi = (math.log10(v) for v in xrange) if log_x else xrange
        self.ylo, self.yhi = yrange
        if self.xhi == self.xlo:
            self.xlo, self.xhi = self.xlo - 1, self.xhi + 1
        tw, _ = _text_size(self.draw, title, self.font)
        self.draw.text(((width - tw) // 2, 10), title, fill=INK, font=self.font)
        tw, _ = _text_size(self.draw, xlabel, self.small)
        self.draw.text(((self.x0 + self.x1 - tw) // 2, height - 20), xlabel, fill=INK, font=self.small)
        self._ylabel(ylabel)

    def _ylabel(self, text: str) -> None:
        from PIL import Image, ImageDraw

        tw, th = _text_size(self.draw, text, self.small)
        label = Image.new("RGB", (tw + 4, th + 6), BACKGROUND)
        ImageDraw.Draw(label).text((2, 0), text, fill=INK, font=self.small)
        label = label.rotate(90, expand=True)
        self.image.paste(label, (4, (self.y0 + self.y1 - label.height) // 2))

    def px(self, x: float) -> float:
        value = math.log10(x) if self.log_x else x
        return self.x0 + (value - self.xlo) / (self.xhi - self.xlo) * (self.x1 - self.x0)

    def py(self, y: float) -> float:
        return self.y1 - (y - self.ylo) / (self.yhi - self.ylo) * (self.y1 - self.y0)

    def y_axis(self, ticks: list[float]) -> None:
        for t in ticks:
            y = round(self.py(t))
            self.draw.line([(self.x0, y), (self.x1, y)], fill=GRID, width=1)
            label = _format(t)
            tw, th = _text_size(self.draw, label, self.small)
            self.draw.text((self.x0 - tw - 6, y - th // 2 - 2), label, fill=INK, font=self.small)
        self.draw.line([(self.x0, self.y0), (self.x0, self.y1)], fill=INK, width=1)
        self.draw.line([(self.x0, self.y1), (self.x1, self.y1)], fill=INK, width=1)

    def x_ticks(self, ticks: list[tuple[float, str]]) -> None:
        for value, label in ticks:
            x = round(self.px(value))
            self.draw.line([(x, self.y1), (x, self.y1 + 4)], fill=INK, width=1)
            tw, _ = _text_size(self.draw, label, self.small)
            self.draw.text((x - tw // 2, self.y1 + 7), label, fill=INK, font=self.small)

    def reference(self, value: float, label: str) -> None:
        """A dashed horizontal line at ``value`` (e.g. chance), labelled at the right."""
        y = round(self.py(value))
        for x in range(self.x0, self.x1, 10):
            self.draw.line([(x, y), (min(x + 5, self.x1), y)], fill=REFERENCE, width=1)
        tw, th = _text_size(self.draw, label, self.small)
        self.draw.rectangle([self.x1 - tw - 4, y - th - 6, self.x1, y - 2], fill=BACKGROUND)
        self.draw.text((self.x1 - tw - 2, y - th - 5), label, fill=REFERENCE, font=self.small)

    def legend(self, labels: list[str]) -> None:
        """Coloured squares and labels in a row above the plot area."""
        x = self.x0 + 8
        for i, label in enumerate(labels):
            tw, th = _text_size(self.draw, label, self.small)
            self.draw.rectangle([x, self.y0 + 6, x + 10, self.y0 + 16], fill=PALETTE[i % len(PALETTE)])
            self.draw.text((x + 14, self.y0 + 4), label, fill=INK, font=self.small)
            x += 14 + tw + 18

    def save(self, path: Path) -> Path:
        path = Path(path)
        with atomic_path(path) as tmp:
            self.image.save(tmp, format="PNG")
        return path


def _check_series(series: Sequence[Series]) -> None:
    if not series:
        raise C4CError("nothing to plot: no series")
    if len(series) > len(PALETTE):
        raise C4CError(f"at most {len(PALETTE)} series per chart, got {len(series)}")
    for s in series:
        if len(s.x) != len(s.y) or (s.err is not None and len(s.err) != len(s.y)):
            raise C4CError(f"series {s.label!r}: x, y (and err) must have the same length")
        if not s.y:
            raise C4CError(f"series {s.label!r} has no points")


def line_chart(path: Path, series: Sequence[Series], *, title: str, xlabel: str, ylabel: str,
               size: tuple[int, int] = (800, 450), log_x: bool = False, errors: str = "band",
               reference: tuple[float, str] | None = None, ymin: float | None = None) -> Path:
    """Write a PNG line chart of ``series`` (series ``i`` in ``PALETTE[i]``) and return its path.

    ``errors``: ``band`` shades ``y ± err`` (training curves), ``bars`` draws error bars at the points.
    ``log_x`` puts x on a log scale with a tick at every x value. ``reference`` = (y, label) adds a
    dashed line (e.g. chance).
    """
    from PIL import Image, ImageDraw

    _check_series(series)
    if errors not in ("band", "bars"):
        raise C4CError(f"unknown error style {errors!r}; choose band or bars")
    xs = [float(x) for s in series for x in s.x]
    if log_x and min(xs) <= 0:
        raise C4CError("a log-x chart needs positive x values")
    lows = [y - (e if s.err is not None else 0.0) for s in series for y, e in zip(s.y, s.err or [0.0] * len(s.y))]
    highs = [y + (e if s.err is not None else 0.0) for s in series for y, e in zip(s.y, s.err or [0.0] * len(s.y))]
    if reference is not None:
        lows.append(reference[0])
        highs.append(reference[0])
    lo = min(lows) if ymin is None else min(ymin, min(lows))
    ticks = nice_ticks(lo, max(highs) + 0.12 * (max(highs) - lo or 1.0))  # headroom for the legend
    xrange = (min(xs), max(xs))
    if errors == "bars":  # keep the end points and their error bars off the plot's edges
        pad = (max(xs) / min(xs)) ** 0.06 if log_x else 0.06 * (max(xs) - min(xs))
        xrange = (min(xs) / pad, max(xs) * pad) if log_x else (min(xs) - pad, max(xs) + pad)
    canvas = _Canvas(size, title, xlabel, ylabel, xrange, (ticks[0], ticks[-1]), log_x=log_x)
    canvas.y_axis(ticks)
    if log_x:
        canvas.x_ticks([(x, f"{x:.0e}".replace("e-0", "e-").replace("e+0", "e")) for x in sorted(set(xs))])
    else:
        canvas.x_ticks([(t, _format(t)) for t in nice_ticks(min(xs), max(xs), 6) if min(xs) <= t <= max(xs)])
    if errors == "band":
        overlay = Image.new("RGBA", canvas.image.size, (0, 0, 0, 0))
        shade = ImageDraw.Draw(overlay)
        for i, s in enumerate(series):
            if s.err is None or len(s.x) < 2:
                continue
            upper = [(canvas.px(x), canvas.py(y + e)) for x, y, e in zip(s.x, s.y, s.err)]
            lower = [(canvas.px(x), canvas.py(y - e)) for x, y, e in zip(s.x, s.y, s.err)]
            shade.polygon(upper + lower[::-1], fill=PALETTE[i] + (48,))
        canvas.image.paste(Image.alpha_composite(canvas.image.convert("RGBA"), overlay).convert("RGB"))
    if reference is not None:
        canvas.reference(*reference)
    for i, s in enumerate(series):
        points = [(round(canvas.px(x)), round(canvas.py(y))) for x, y in zip(s.x, s.y)]
        if errors == "bars" and s.err is not None:
            for (x, _), y, e in zip(points, s.y, s.err):
                top, bottom = round(canvas.py(y + e)), round(canvas.py(y - e))
                canvas.draw.line([(x, top), (x, bottom)], fill=ERROR, width=1)
                canvas.draw.line([(x - 4, top), (x + 4, top)], fill=ERROR, width=1)
                canvas.draw.line([(x - 4, bottom), (x + 4, bottom)], fill=ERROR, width=1)
        if len(points) > 1:
            canvas.draw.line(points, fill=PALETTE[i], width=2)
        if errors == "bars" or len(points) == 1:
            for x, y in points:
                canvas.draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=PALETTE[i])
    canvas.legend([s.label for s in series])
    return canvas.save(path)


def bar_chart(path: Path, labels: Sequence[str], means: Sequence[float], stds: Sequence[float] | None = None, *,
              title: str, ylabel: str, size: tuple[int, int] = (800, 450),
              reference: tuple[float, str] | None = None, values: bool = True) -> Path:
    """Write a PNG bar chart (bar ``i`` in ``PALETTE[i]``, ± ``stds[i]`` as a black error bar).

    Bars start at 0; ``values`` prints "mean ± std" above each bar; ``reference`` = (y, label) adds a
    dashed line (e.g. chance).
    """
    if not labels:
        raise C4CError("nothing to plot: no bars")
    if len(labels) > len(PALETTE):
        raise C4CError(f"at most {len(PALETTE)} bars per chart, got {len(labels)}")
    stds = [0.0] * len(means) if stds is None else list(stds)
    if not len(labels) == len(means) == len(stds):
        raise C4CError("labels, means and stds must have the same length")
    if any(not math.isfinite(v) for v in list(means) + stds):
        raise C4CError("cannot plot non-finite values")
    top = max([m + s for m, s in zip(means, stds)] + ([reference[0]] if reference else []))
    bottom = min([0.0] + [m - s for m, s in zip(means, stds)])
    ticks = nice_ticks(bottom, top * 1.12 if top > 0 else 1.0)
    n = len(labels)
    canvas = _Canvas(size, title, "", ylabel, (0.0, float(n)), (ticks[0], ticks[-1]))
    canvas.y_axis(ticks)
    slot = (canvas.x1 - canvas.x0) / n
    zero = round(canvas.py(0.0))
    for i, (label, mean, std) in enumerate(zip(labels, means, stds)):
        left = round(canvas.x0 + slot * (i + 0.2))
        right = round(canvas.x0 + slot * (i + 0.8))
        y = round(canvas.py(mean))
        if y != zero:
            canvas.draw.rectangle([left, min(y, zero), right, max(y, zero)], fill=PALETTE[i])
        centre = (left + right) // 2
        if std > 0:
            hi, lo = round(canvas.py(mean + std)), round(canvas.py(mean - std))
            canvas.draw.line([(centre, hi), (centre, lo)], fill=ERROR, width=2)
            canvas.draw.line([(centre - 6, hi), (centre + 6, hi)], fill=ERROR, width=2)
            canvas.draw.line([(centre - 6, lo), (centre + 6, lo)], fill=ERROR, width=2)
        if values:
            text = f"{mean:.1f} ± {std:.1f}" if std > 0 else f"{mean:.1f}"
            tw, th = _text_size(canvas.draw, text, canvas.small)
            ytext = round(canvas.py(mean + max(std, 0.0))) - th - 8
            canvas.draw.text((centre - tw // 2, ytext), text, fill=INK, font=canvas.small)
        tw, _ = _text_size(canvas.draw, label, canvas.small)
        canvas.draw.text((centre - tw // 2, canvas.y1 + 7), label, fill=INK, font=canvas.small)
    if reference is not None:
        canvas.reference(*reference)
    return canvas.save(path)
