"""Synthetic captioned videos: one coloured shape moving on a dark background.

(About 450 lines: the plan, the captions and the renderer of one kind of clip belong together.)

Each video shows a ``circle``, ``square`` or ``triangle`` in one of six colours making one or two
straight moves (``left``, ``right``, ``up``, ``down``; two moves are always perpendicular). Captions
name the colour, the shape and the moves in order ("a red circle moves left then up").

About half of the videos come in *order-contrast pairs*: a two-move video and its exact time
reversal (frame ``i`` of one is frame ``n - 1 - i`` of the other). Both show the same set of frames,
so a model that mean-pools frame features cannot tell "left then up" from "down then right"; only a
model that reads frame order can.

Layout written under ``out_dir``::

    videos/synth0000.mp4 ...   H.264, yuv420p, ``round(duration * fps) + 1`` frames each
    annotations.jsonl          {"video_id", "caption", "split"} per line (the generic format)
    synth.json                 the settings and, per video, what it shows (format "c4c-synth")

Everything follows from the seed: re-running into the same folder rewrites identical metadata and
only encodes the videos that are missing.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from c4c.atomic import write_text
from c4c.choices import SPLITS
from c4c.errors import C4CError
from c4c.option_rules import SEED, count
from c4c.options import option
from c4c.synth import folder

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

FORMAT = "c4c-synth"
VERSION = 1

SHAPES = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 200, 70),
    "blue": (45, 95, 240),
    "yellow": (235, 215, 40),
    "white": (235, 235, 235),
    "magenta": (215, 45, 215),
}
BACKGROUND = (40, 40, 40)
# direction of each motion in image coordinates (x right, y down)
MOTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
TRAVEL = (0.35, 0.45)  # distance of one move, as a fraction of the frame width (or height)
MARGIN = 1.0  # pixels kept free between the shape and the frame border

# how a motion reads after "moves" in a longer phrase
_PHRASE = {"left": "to the left", "right": "to the right", "up": "up", "down": "down"}
_ONE_MOVE = (
    "a {c} {s} moves {m}",
    "a {c} {s} is moving {p}",
    "{c} {s} going {m}",
    "the {c} {s} slides {p}",
    "a {c} {s} travels {p} across the frame",
)
_TWO_MOVES = (
    "a {c} {s} moves {m1} then {m2}",
    "a {c} {s} goes {m1} and then {m2}",
    "the {c} {s} moves {p1}, then moves {p2}",
    "a {c} {s} first moves {p1}, then {p2}",
    "{c} {s} going {m1} then {m2}",
)

@dataclass(kw_only=True)
class SynthSettings:
    """What both kinds of synthetic dataset take (`c4c synth`'s options)."""

    out_dir: Path
    videos: int = option(24, "Number of videos to make.", flags=("--count", "-n"), rule=count(1, 100_000))
    seed: int = option(0, "Random seed; the same seed gives the same dataset.", rule=SEED)
    fps: int = option(10, "Frame rate of the generated files.", rule=count(1, 240))
    width: int = option(128, "Frame width in pixels (even).", rule=count(32, 4096))
    height: int = option(96, "Frame height in pixels (even).", rule=count(32, 4096))
    crf: int = 18  # x264 quality (0 = lossless, 51 = worst)
    shapes: tuple[str, ...] = SHAPES  # shapes to draw from (fewer: motion carries more of the caption)
    colours: tuple[str, ...] = tuple(COLOURS)  # colours to draw from


@dataclass(kw_only=True)
class SynthConfig(SynthSettings):
    """Settings of a synthetic dataset; everything but ``out_dir`` is saved in synth.json."""

    duration: float = 4.0  # seconds of motion (the file has round(duration * fps) + 1 frames)
    val_fraction: float = 0.15  # share of videos in the val split
    test_fraction: float = 0.25  # share of videos in the test split


@dataclass
class SynthResult:
    """What ``run`` made."""

    out_dir: Path
    videos: int  # videos in the dataset (encoded now or found from an earlier run)
    captions: int  # lines of annotations.jsonl
    annotations: Path  # the annotations.jsonl file
    seconds: float  # wall time of the run
    splits: dict[str, int] = field(default_factory=dict)  # videos per split
    encoded: int = 0  # videos encoded by this run (the rest already existed)


@dataclass(frozen=True)
class SynthVideo:
    """One planned video.

    ``waypoints`` are the shape's centre (x, y in pixels) at the start and after each move; a
    reversed video lists its original's waypoints backwards, so both are rendered from the same
    numbers.
    """

    video_id: str
    split: str
    shape: str
    colour: str
    motions: tuple[str, ...]
    waypoints: tuple[tuple[float, float], ...]
    captions: tuple[str, ...]
    reversed_of: str | None = None


# ---------------------------------------------------------------------------------------------
# configuration


def frame_count(config: SynthConfig) -> int:
    """Frames per video file: ``round(duration * fps) + 1`` (first and last frame are the path ends)."""
    return int(round(config.duration * config.fps)) + 1


def shape_size(config: SynthConfig) -> float:
    """Width and height of the shape in pixels: a quarter of the shorter frame side."""
    return min(config.width, config.height) / 4.0


def check_common(config: Any) -> None:
    """The checks both kinds of dataset share (``config``: a SynthConfig or a HowToConfig); C4CError on the
    first setting that cannot work."""
    least = {"videos": 1, "seed": 0, "fps": 1, "width": 32, "height": 32, "crf": 0}
    for name, low in least.items():
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise C4CError(f"synth: {name} must be a whole number, got {value!r}")
        if value < low:
            raise C4CError(f"synth: {name} must be at least {low}, got {value}")
    for name in ("width", "height"):
        if getattr(config, name) % 2:
            raise C4CError(f"synth: {name} must be an even number of pixels, got {getattr(config, name)}")
    if config.crf > 51:
        raise C4CError(f"synth: crf must be between 0 and 51, got {config.crf}")
    if config.out_dir is None or str(config.out_dir) == "":
        raise C4CError("synth: an output folder is required")
    for name, allowed in (("shapes", SHAPES), ("colours", tuple(COLOURS))):
        chosen = tuple(getattr(config, name))
        if not chosen or any(c not in allowed for c in chosen) or len(set(chosen)) != len(chosen):
            raise C4CError(f"synth: {name} must be distinct names from {', '.join(allowed)}; "
                           f"got {', '.join(chosen) or 'none'}")


def validate(config: SynthConfig) -> None:
    """Raise C4CError if ``config`` cannot make a dataset."""
    check_common(config)
    if not (isinstance(config.duration, (int, float)) and math.isfinite(config.duration)
            and config.duration > 0):
        raise C4CError(f"synth: duration must be a positive number of seconds, got {config.duration!r}")
    if config.duration * config.fps < 2:
        raise C4CError(f"synth: duration x fps must give at least 2 frames of motion, got "
                       f"{config.duration} s at {config.fps} fps", hint="make duration or fps larger")
    for name in ("val_fraction", "test_fraction"):
        frac = getattr(config, name)
        if not (isinstance(frac, (int, float)) and 0.0 <= frac < 1.0):
            raise C4CError(f"synth: {name} must be in [0, 1), got {frac!r}")
    if config.val_fraction + config.test_fraction >= 1.0:
        raise C4CError(f"synth: val_fraction + test_fraction must be below 1 (train needs videos), got "
                       f"{config.val_fraction} + {config.test_fraction}")


# ---------------------------------------------------------------------------------------------
# planning: every random choice happens here, in one fixed order


def split_sizes(videos: int, val_fraction: float, test_fraction: float) -> dict[str, int]:
    """Videos per split: fractions rounded, at least one per non-zero fraction from 4 videos up,
    and at least one train video."""
    sizes = {"train": 0, "val": 0, "test": 0}
    for name, frac in (("val", val_fraction), ("test", test_fraction)):
        if frac > 0:
            n = int(round(videos * frac))
            sizes[name] = max(n, 1) if videos >= 4 else n
    while videos - sizes["val"] - sizes["test"] < 1:
        largest = "test" if sizes["test"] >= sizes["val"] else "val"
        sizes[largest] -= 1
    sizes["train"] = videos - sizes["val"] - sizes["test"]
    return sizes


def _pairs_for(n: int) -> int:
    """Order-contrast pairs in a split of ``n`` videos: about half its videos, one from 2 videos up."""
    return (n + 2) // 4


def _perpendicular(motion: str) -> tuple[str, str]:
    return ("up", "down") if MOTIONS[motion][1] == 0 else ("left", "right")


def draw_motions(rng: np.random.Generator, moves: int) -> tuple[str, ...]:
    names = tuple(MOTIONS)
    first = names[int(rng.integers(len(names)))]
    if moves == 1:
        return (first,)
    second = _perpendicular(first)[int(rng.integers(2))]
    return (first, second)


def reverse_motions(motions: Iterable[str]) -> tuple[str, ...]:
    """The moves of the time-reversed video: opposite directions, in reverse order."""
    return tuple(OPPOSITE[m] for m in reversed(tuple(motions)))


def draw_waypoints(rng: np.random.Generator, motions: tuple[str, ...],
                    config: SynthConfig) -> tuple[tuple[float, float], ...]:
    """Shape centres at the start and after each move, with the whole path inside the frame."""
    offsets = [(0.0, 0.0)]
    for motion in motions:
        dx, dy = MOTIONS[motion]
        span = config.width if dx else config.height
        travel = float(rng.uniform(*TRAVEL)) * span
        x, y = offsets[-1]
        offsets.append((x + dx * travel, y + dy * travel))
    half = shape_size(config) / 2.0
    start = []
    for axis, size in ((0, config.width), (1, config.height)):
        lo, hi = half + MARGIN, size - half - MARGIN
        low = lo - min(o[axis] for o in offsets)
        high = hi - max(o[axis] for o in offsets)
        start.append(float(rng.uniform(low, high)))
    return tuple((round(start[0] + ox, 2), round(start[1] + oy, 2)) for ox, oy in offsets)


def template_words(shape: str, colour: str, motions: tuple[str, ...]) -> dict[str, str]:
    """What a caption template's fields stand for: ``{c}`` colour, ``{s}`` shape, ``{m}``/``{p}`` the one move
    as a word/phrase, or ``{m1} {m2}``/``{p1} {p2}`` the two."""
    words = {"c": colour, "s": shape}
    if len(motions) == 1:
        words.update(m=motions[0], p=_PHRASE[motions[0]])
    else:
        words.update(m1=motions[0], m2=motions[1], p1=_PHRASE[motions[0]], p2=_PHRASE[motions[1]])
    return words


def _draw_captions(rng: np.random.Generator, shape: str, colour: str,
                   motions: tuple[str, ...]) -> tuple[str, ...]:
    templates = _ONE_MOVE if len(motions) == 1 else _TWO_MOVES
    count = int(rng.integers(2, 4))
    chosen = rng.choice(len(templates), size=count, replace=False)
    words = template_words(shape, colour, motions)
    return tuple(templates[int(k)].format(**words) for k in chosen)


def describe(video: SynthVideo | dict) -> str:
    """The plain caption of a video ("a red circle moves left then up"), from a plan or synth.json entry."""
    if isinstance(video, SynthVideo):
        colour, shape, motions = video.colour, video.shape, video.motions
    else:
        colour, shape, motions = video["colour"], video["shape"], video["motions"]
    return f"a {colour} {shape} moves {' then '.join(motions)}"


def plan_videos(config: SynthConfig) -> list[SynthVideo]:
    """Every video of the dataset (ids, splits, content, captions), decided from the seed."""
    import numpy as np

    validate(config)
    rng = np.random.default_rng(config.seed)
    sizes = split_sizes(config.videos, config.val_fraction, config.test_fraction)
    units: list[tuple[str, str]] = []  # (kind, split), kind "pair" or "single"
    for split in SPLITS:
        pairs = _pairs_for(sizes[split])
        units += [("pair", split)] * pairs + [("single", split)] * (sizes[split] - 2 * pairs)
    order = rng.permutation(len(units))

    used: set[tuple[str, str, tuple[str, ...]]] = set()
    videos: list[SynthVideo] = []
    for index in order:
        kind, split = units[int(index)]
        moves = 2 if kind == "pair" else int(rng.integers(1, 3))
        # prefer a shape/colour/motion combination no other video has, so retrieval is well posed
        for _ in range(100):
            shape = config.shapes[int(rng.integers(len(config.shapes)))]
            colour = config.colours[int(rng.integers(len(config.colours)))]
            motions = draw_motions(rng, moves)
            keys = {(shape, colour, motions)}
            if kind == "pair":
                keys.add((shape, colour, reverse_motions(motions)))
            if not keys & used:
                break
        used |= keys
        waypoints = draw_waypoints(rng, motions, config)
        video_id = f"synth{len(videos):04d}"
        videos.append(SynthVideo(video_id, split, shape, colour, motions, waypoints,
                                 _draw_captions(rng, shape, colour, motions)))
        if kind == "pair":
            back = reverse_motions(motions)
            videos.append(SynthVideo(f"synth{len(videos):04d}", split, shape, colour, back,
                                     waypoints[::-1], _draw_captions(rng, shape, colour, back),
                                     reversed_of=video_id))
    return videos

# ---------------------------------------------------------------------------------------------
# rendering


def _centres(waypoints: tuple[tuple[float, float], ...], frames: int) -> list[tuple[float, float]]:
    """Shape centre in each frame: constant speed along each move, moves of equal duration."""
    moves = len(waypoints) - 1
    out = []
    for i in range(frames):
        s = i / (frames - 1) * moves
        j = min(int(s), moves - 1)
        u = s - j
        (x0, y0), (x1, y1) = waypoints[j], waypoints[j + 1]
        out.append((x0 + (x1 - x0) * u, y0 + (y1 - y0) * u))
    return out


def _shape_mask(shape: str, cx: float, cy: float, half: float,
                xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Boolean mask [H, W] of the filled shape centred at (cx, cy); xs [W], ys [H] are pixel centres."""
    dx = xs[None, :] - cx
    dy = ys[:, None] - cy
    if shape == "circle":
        return dx * dx + dy * dy <= half * half
    if shape == "square":
        return (abs(dx) <= half) & (abs(dy) <= half)
    if shape == "triangle":  # apex up, base at the bottom of the box
        down = dy + half  # distance below the apex
        return (down >= 0) & (down <= 2 * half) & (abs(dx) <= down / 2)
    raise ValueError(f"unknown shape {shape!r}")


def render_frames(video: SynthVideo, config: SynthConfig) -> Iterator[np.ndarray]:
    """The frames of ``video``, each [H, W, 3] uint8 RGB.

    A reversed video yields exactly its original's frames in reverse order (bit for bit).
    """
    import numpy as np

    n = frame_count(config)
    if video.reversed_of is None:
        centres = _centres(video.waypoints, n)
    else:
        centres = _centres(video.waypoints[::-1], n)[::-1]
    xs = np.arange(config.width, dtype=np.float64) + 0.5
    ys = np.arange(config.height, dtype=np.float64) + 0.5
    background = np.empty((config.height, config.width, 3), dtype=np.uint8)
    background[:] = BACKGROUND
    colour = np.array(COLOURS[video.colour], dtype=np.uint8)
    half = shape_size(config) / 2.0
    for cx, cy in centres:
        frame = background.copy()
        frame[_shape_mask(video.shape, cx, cy, half, xs, ys)] = colour
        yield frame

# ---------------------------------------------------------------------------------------------
# files


def _video_entry(video: SynthVideo) -> dict[str, Any]:
    return {
        "video_id": video.video_id,
        "file": f"videos/{video.video_id}.mp4",
        "split": video.split,
        "shape": video.shape,
        "colour": video.colour,
        "motions": list(video.motions),
        "reversed_of": video.reversed_of,
        "start": list(video.waypoints[0]),
        "waypoints": [list(p) for p in video.waypoints],
        "captions": list(video.captions),
    }


def metadata(config: SynthConfig, videos: list[SynthVideo]) -> dict[str, Any]:
    """The content of synth.json: format, settings (without out_dir) and one entry per video."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": {
            "videos": config.videos,
            "seed": config.seed,
            "duration": config.duration,
            "fps": config.fps,
            "width": config.width,
            "height": config.height,
            "val_fraction": config.val_fraction,
            "test_fraction": config.test_fraction,
            "crf": config.crf,
            "shapes": list(config.shapes),
            "colours": list(config.colours),
        },
        "frames": frame_count(config),
        "shape_size": shape_size(config),
        "background": list(BACKGROUND),
        "colours": {name: list(rgb) for name, rgb in COLOURS.items()},
        "videos": [_video_entry(v) for v in videos],
    }


def annotation_lines(videos: list[SynthVideo]) -> str:
    """annotations.jsonl text: one {"video_id", "caption", "split"} object per caption."""
    lines = []
    for video in videos:
        for caption in video.captions:
            lines.append(json.dumps({"video_id": video.video_id, "caption": caption,
                                     "split": video.split}))
    return "\n".join(lines) + "\n"


def load_metadata(synth_json: str | Path) -> dict[str, Any]:
    """Read a synth.json file, checking that it is one."""
    return folder.read_metadata(synth_json, FORMAT, VERSION, hint="pass the synth.json written by the synth stage")


def order_contrast_pairs(synth_json: str | Path) -> list[tuple[str, str]]:
    """(original, reversed) video id pairs of a synthetic dataset, from its synth.json."""
    data = load_metadata(synth_json)
    return [(v["reversed_of"], v["video_id"]) for v in data["videos"] if v.get("reversed_of")]


def run(config: SynthConfig, on_video: Callable[[int, int], None] | None = None) -> SynthResult:
    """Generate (or complete) the synthetic dataset in ``config.out_dir``.

    ``on_video(done, total)`` is called after each video, whether encoded now or already there.
    """
    started = time.perf_counter()
    videos = plan_videos(config)
    out_dir = Path(config.out_dir)
    encoded = folder.write_videos(out_dir, metadata(config, videos), videos,
                                  lambda video: render_frames(video, config), config, indent=2, on_video=on_video)
    annotations = out_dir / "annotations.jsonl"
    write_text(annotations, annotation_lines(videos))
    splits = {name: sum(v.split == name for v in videos) for name in SPLITS}
    seconds = time.perf_counter() - started
    log.info("synth: %d videos (%d encoded, %d already there) in %s, %.1f s", len(videos), encoded,
             len(videos) - encoded, out_dir, seconds)
    return SynthResult(out_dir=out_dir, videos=len(videos),
                       captions=sum(len(v.captions) for v in videos), annotations=annotations,
                       seconds=seconds, splits=splits, encoded=encoded)
