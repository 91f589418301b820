"""Synthetic captioned videos: one coloured shape moving on a dark background.

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

``run_howto`` (``c4c synth --kind howto``) makes a HowTo100M-like corpus from the same shapes, colours
and moves: long videos of back-to-back actions, each narrated in ASR style (lower case, no
punctuation, filler words) and cut into short timed fragments, written as ``caption.json`` and
``HowTo100M_v1.csv`` with some videos in other categories than "Food and Entertaining"::

    videos/howto0000.mp4 ...   H.264, one action after another, no frame repeated between actions
    caption.json               {"howto0000": {"start": [...], "end": [...], "text": [...]}, ...}
    HowTo100M_v1.csv           video_id,category_1,category_2,rank,task_id
    synth.json                 format "c4c-synth-howto": settings, and per video its actions
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from c4c.errors import C4CError
from c4c.video.ffmpeg_bin import ffmpeg_exe

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
_SPLITS = ("train", "val", "test")


@dataclass
class SynthConfig:
    """Settings of a synthetic dataset; everything but ``out_dir`` is saved in synth.json."""

    out_dir: Path
    videos: int = 24  # number of videos
    seed: int = 0  # numpy.random.default_rng seed: same seed, same dataset
    duration: float = 4.0  # seconds of motion (the file has round(duration * fps) + 1 frames)
    fps: int = 10  # frame rate of the generated files
    width: int = 128  # frame width in pixels (even, >= 32)
    height: int = 96  # frame height in pixels (even, >= 32)
    val_fraction: float = 0.15  # share of videos in the val split
    test_fraction: float = 0.25  # share of videos in the test split
    crf: int = 18  # x264 quality (0 = lossless, 51 = worst)
    shapes: tuple[str, ...] = SHAPES  # shapes to draw from (fewer: motion carries more of the caption)
    colours: tuple[str, ...] = tuple(COLOURS)  # colours to draw from


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


def _check_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise C4CError(f"synth: {name} must be a whole number, got {value!r}")


def validate(config: SynthConfig) -> None:
    """Raise C4CError if ``config`` cannot make a dataset."""
    for name in ("videos", "seed", "fps", "width", "height", "crf"):
        _check_int(name, getattr(config, name))
    if config.videos < 1:
        raise C4CError(f"synth: videos must be at least 1, got {config.videos}")
    if config.seed < 0:
        raise C4CError(f"synth: seed must be 0 or more, got {config.seed}")
    if config.fps < 1:
        raise C4CError(f"synth: fps must be at least 1, got {config.fps}")
    if not (isinstance(config.duration, (int, float)) and math.isfinite(config.duration)
            and config.duration > 0):
        raise C4CError(f"synth: duration must be a positive number of seconds, got {config.duration!r}")
    if config.duration * config.fps < 2:
        raise C4CError(f"synth: duration x fps must give at least 2 frames of motion, got "
                       f"{config.duration} s at {config.fps} fps", hint="make duration or fps larger")
    for name in ("width", "height"):
        size = getattr(config, name)
        if size < 32 or size % 2:
            raise C4CError(f"synth: {name} must be an even number of pixels >= 32, got {size}")
    for name in ("val_fraction", "test_fraction"):
        frac = getattr(config, name)
        if not (isinstance(frac, (int, float)) and 0.0 <= frac < 1.0):
            raise C4CError(f"synth: {name} must be in [0, 1), got {frac!r}")
    if config.val_fraction + config.test_fraction >= 1.0:
        raise C4CError(f"synth: val_fraction + test_fraction must be below 1 (train needs videos), got "
                       f"{config.val_fraction} + {config.test_fraction}")
    if not 0 <= config.crf <= 51:
        raise C4CError(f"synth: crf must be between 0 and 51, got {config.crf}")
    if config.out_dir is None or str(config.out_dir) == "":
        raise C4CError("synth: an output folder is required")
    for name, allowed in (("shapes", SHAPES), ("colours", tuple(COLOURS))):
        chosen = tuple(getattr(config, name))
        if not chosen or any(c not in allowed for c in chosen) or len(set(chosen)) != len(chosen):
            raise C4CError(f"synth: {name} must be distinct names from {', '.join(allowed)}; got {', '.join(chosen) or 'none'}")


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


def _draw_motions(rng: np.random.Generator, moves: int) -> tuple[str, ...]:
    names = tuple(MOTIONS)
    first = names[int(rng.integers(len(names)))]
    if moves == 1:
        return (first,)
    second = _perpendicular(first)[int(rng.integers(2))]
    return (first, second)


def reverse_motions(motions: Iterable[str]) -> tuple[str, ...]:
    """The moves of the time-reversed video: opposite directions, in reverse order."""
    return tuple(OPPOSITE[m] for m in reversed(tuple(motions)))


def _draw_waypoints(rng: np.random.Generator, motions: tuple[str, ...],
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


def _draw_captions(rng: np.random.Generator, shape: str, colour: str,
                   motions: tuple[str, ...]) -> tuple[str, ...]:
    templates = _ONE_MOVE if len(motions) == 1 else _TWO_MOVES
    count = int(rng.integers(2, 4))
    chosen = rng.choice(len(templates), size=count, replace=False)
    words: dict[str, str] = {"c": colour, "s": shape}
    if len(motions) == 1:
        words.update(m=motions[0], p=_PHRASE[motions[0]])
    else:
        words.update(m1=motions[0], m2=motions[1], p1=_PHRASE[motions[0]], p2=_PHRASE[motions[1]])
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
    for split in _SPLITS:
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
            motions = _draw_motions(rng, moves)
            keys = {(shape, colour, motions)}
            if kind == "pair":
                keys.add((shape, colour, reverse_motions(motions)))
            if not keys & used:
                break
        used |= keys
        waypoints = _draw_waypoints(rng, motions, config)
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
# encoding and files


def _temp_name(path: Path) -> Path:
    """A hidden name next to ``path`` for writing it before the atomic rename."""
    return path.with_name(f".{path.name}.{os.getpid()}.part")


def _encode(frames: Iterable[np.ndarray], target: Path, config: SynthConfig) -> None:
    """Pipe raw RGB frames through ffmpeg/libx264 into ``target``, atomically."""
    tmp = _temp_name(target)
    cmd = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{config.width}x{config.height}",
        "-r", str(config.fps), "-i", "-",
        "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", str(config.crf),
        "-pix_fmt", "yuv420p", "-g", str(config.fps), "-threads", "1", "-f", "mp4", str(tmp),
    ]
    tail: deque[str] = deque(maxlen=10)
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise C4CError(f"cannot start ffmpeg: {exc}", path=cmd[0]) from exc

    def drain() -> None:
        for raw in proc.stderr:  # type: ignore[union-attr]
            tail.append(raw.decode("utf-8", "replace").rstrip())

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        try:
            for frame in frames:
                proc.stdin.write(frame.tobytes())  # type: ignore[union-attr]
            proc.stdin.close()  # type: ignore[union-attr]
        except BrokenPipeError:
            pass  # ffmpeg stopped early; its exit code and stderr say why
        code = proc.wait()
        reader.join()
        if code != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
            detail = " | ".join(line for line in tail if line) or "no message"
            raise C4CError(f"ffmpeg failed to encode {target.name} (exit code {code}): {detail}",
                           path=target)
        os.replace(tmp, target)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        tmp.unlink(missing_ok=True)
        raise


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder."""
    tmp = _temp_name(path)
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
    path = Path(synth_json)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise C4CError("synth metadata file not found", path=path) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise C4CError(f"cannot read synth metadata: {exc}", path=path) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise C4CError(f"not a {FORMAT} metadata file", path=path,
                       hint="pass the synth.json written by the synth stage")
    if data.get("version") != VERSION:
        raise C4CError(f"unsupported {FORMAT} version {data.get('version')!r} (expected {VERSION})",
                       path=path)
    return data


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
    video_dir = out_dir / "videos"
    try:
        video_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise C4CError(f"cannot create the output folder: {exc.strerror or exc}", path=out_dir) from exc
    for stale in video_dir.glob(".*.part"):  # left by a run that was killed while encoding
        stale.unlink(missing_ok=True)

    meta = metadata(config, videos)
    meta_path = out_dir / "synth.json"
    if meta_path.exists():
        try:
            previous = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            previous = None
        if previous != meta:
            raise C4CError("the folder already holds a different synthetic dataset (other settings "
                           "or seed)", path=meta_path,
                           hint="pick an empty output folder or delete this one")
    _write_atomic(meta_path, json.dumps(meta, indent=2) + "\n")

    encoded = 0
    for done, video in enumerate(videos, start=1):
        target = video_dir / f"{video.video_id}.mp4"
        if target.is_file() and target.stat().st_size > 0:
            log.debug("%s exists, skipped", target)
        else:
            _encode(render_frames(video, config), target, config)
            encoded += 1
        if on_video is not None:
            on_video(done, len(videos))

    annotations = out_dir / "annotations.jsonl"
    _write_atomic(annotations, annotation_lines(videos))
    splits = {name: sum(v.split == name for v in videos) for name in _SPLITS}
    seconds = time.perf_counter() - started
    log.info("synth: %d videos (%d encoded, %d already there) in %s, %.1f s", len(videos), encoded,
             len(videos) - encoded, out_dir, seconds)
    return SynthResult(out_dir=out_dir, videos=len(videos),
                       captions=sum(len(v.captions) for v in videos), annotations=annotations,
                       seconds=seconds, splits=splits, encoded=encoded)


# ---------------------------------------------------------------------------------------------
# HowTo100M-like data: long videos of several narrated actions, ASR-style timed captions

HOWTO_FORMAT = "c4c-synth-howto"
HOWTO_VERSION = 1
FOOD = "Food and Entertaining"  # the category the post-pretraining set is drawn from
OTHER_CATEGORIES = ("Hobbies and Crafts", "Home and Garden", "Cars & Other Vehicles", "Sports and Fitness")
_SUBCATEGORY = {FOOD: "Recipes", "Hobbies and Crafts": "Crafts", "Home and Garden": "Gardening",
                "Cars & Other Vehicles": "Car Maintenance", "Sports and Fitness": "Exercise"}
FILLERS = ("um", "uh", "so", "okay", "you know", "like", "alright", "yeah")
_NARRATE_ONE = (
    "now we take the {c} {s} and move it {p}",
    "here the {c} {s} goes {m}",
    "you can see the {c} {s} moving {p}",
    "so the {c} {s} slides {p} like this",
    "and then the {c} {s} moves {m}",
)
_NARRATE_TWO = (
    "the {c} {s} moves {m1} and then {m2}",
    "first the {c} {s} goes {p1} then {p2}",
    "we move the {c} {s} {m1} then {m2}",
    "now the {c} {s} slides {p1} and after that {p2}",
)


@dataclass
class HowToConfig:
    """Settings of a synthetic HowTo100M-like corpus (``c4c synth --kind howto``)."""

    out_dir: Path
    videos: int = 24  # videos in caption.json and HowTo100M_v1.csv, all categories together
    seed: int = 0
    duration: float = 60.0  # the longest video (s); lengths are drawn from duration/3 .. duration
    fps: int = 10
    width: int = 128
    height: int = 96
    segment_min: float = 4.0  # seconds of one narrated action, drawn from segment_min .. segment_max
    segment_max: float = 8.0
    other_fraction: float = 0.25  # share of videos in other categories than Food and Entertaining
    crf: int = 18
    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = tuple(COLOURS)


@dataclass(frozen=True)
class HowToSegment:
    """One narrated action: frames ``first .. first + frames - 1`` of its video show ``action``;
    ``fragments`` are its ASR captions ``(start s, end s, text)``, tiling ``start .. end``."""

    first: int
    frames: int
    action: SynthVideo
    narration: str
    fragments: tuple[tuple[float, float, str], ...]


@dataclass(frozen=True)
class HowToVideo:
    video_id: str
    category: str
    rank: int
    task_id: int
    segments: tuple[HowToSegment, ...]

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.segments)


def _segment_config(config: HowToConfig, frames: int) -> SynthConfig:
    """The single-video settings that render ``frames`` frames (plus the end point) of one action."""
    return SynthConfig(out_dir=Path(config.out_dir), duration=frames / config.fps, fps=config.fps,
                       width=config.width, height=config.height, crf=config.crf, shapes=config.shapes,
                       colours=config.colours)


def validate_howto(config: HowToConfig) -> None:
    """Raise C4CError if ``config`` cannot make a corpus."""
    for name in ("videos", "seed", "fps", "width", "height", "crf"):
        _check_int(name, getattr(config, name))
    if config.videos < 1:
        raise C4CError(f"synth: videos must be at least 1, got {config.videos}")
    if config.seed < 0 or config.fps < 1:
        raise C4CError("synth: seed must be 0 or more and fps at least 1")
    if not 0 < config.segment_min <= config.segment_max or config.segment_min * config.fps < 2:
        raise C4CError(f"synth: segment lengths {config.segment_min}..{config.segment_max} s must be positive, "
                       f"ordered and give at least 2 frames at {config.fps} fps")
    if not (isinstance(config.duration, (int, float)) and math.isfinite(config.duration)
            and config.duration >= config.segment_min):
        raise C4CError(f"synth: duration must be at least one segment ({config.segment_min} s), "
                       f"got {config.duration!r}")
    if not 0.0 <= config.other_fraction < 1.0:
        raise C4CError(f"synth: other_fraction must be in [0, 1), got {config.other_fraction}")
    for name in ("width", "height"):
        size = getattr(config, name)
        if size < 32 or size % 2:
            raise C4CError(f"synth: {name} must be an even number of pixels >= 32, got {size}")
    if not 0 <= config.crf <= 51:
        raise C4CError(f"synth: crf must be between 0 and 51, got {config.crf}")
    for name, allowed in (("shapes", SHAPES), ("colours", tuple(COLOURS))):
        chosen = tuple(getattr(config, name))
        if not chosen or any(c not in allowed for c in chosen) or len(set(chosen)) != len(chosen):
            raise C4CError(f"synth: {name} must be distinct names from {', '.join(allowed)}; "
                           f"got {', '.join(chosen) or 'none'}")


def _narrate(rng: np.random.Generator, shape: str, colour: str, motions: tuple[str, ...]) -> list[str]:
    """The spoken words of one action: a template with one or two filler words slipped in."""
    templates = _NARRATE_ONE if len(motions) == 1 else _NARRATE_TWO
    words: dict[str, str] = {"c": colour, "s": shape}
    if len(motions) == 1:
        words.update(m=motions[0], p=_PHRASE[motions[0]])
    else:
        words.update(m1=motions[0], m2=motions[1], p1=_PHRASE[motions[0]], p2=_PHRASE[motions[1]])
    spoken = templates[int(rng.integers(len(templates)))].format(**words).split()
    for _ in range(int(rng.integers(1, 3))):
        spoken.insert(int(rng.integers(len(spoken) + 1)), FILLERS[int(rng.integers(len(FILLERS)))])
    return " ".join(spoken).split()  # "you know" is two words


def _fragments(rng: np.random.Generator, words: list[str], start: float,
               end: float) -> tuple[tuple[float, float, str], ...]:
    """Cut the narration into ASR-like pieces of 2-5 words (sometimes after a filler-only piece) whose
    times split ``start .. end`` in proportion to their words (2 decimals, as in HowTo100M)."""
    pieces: list[list[str]] = []
    if rng.random() < 0.3:
        pieces.append(FILLERS[int(rng.integers(len(FILLERS)))].split())
    i = 0
    while i < len(words):
        n = int(rng.integers(2, 6))
        if len(words) - (i + n) == 1:  # never leave a single word behind
            n += 1
        pieces.append(words[i:i + n])
        i += n
    total = sum(len(p) for p in pieces)
    out = []
    done = 0
    for piece in pieces:
        a = start + (end - start) * done / total
        done += len(piece)
        b = start + (end - start) * done / total
        out.append((round(a, 2), round(b, 2), " ".join(piece)))
    return tuple(out)


def plan_howto(config: HowToConfig) -> list[HowToVideo]:
    """Every video of the corpus (category, actions, narration and its timing), decided from the seed."""
    import numpy as np

    validate_howto(config)
    rng = np.random.default_rng(config.seed)
    others = int(round(config.videos * config.other_fraction))
    if config.other_fraction > 0 and config.videos >= 4:
        others = max(others, 1)
    others = min(others, config.videos - 1)
    is_other = np.zeros(config.videos, bool)
    is_other[rng.permutation(config.videos)[:others]] = True
    videos = []
    for i in range(config.videos):
        category = OTHER_CATEGORIES[int(rng.integers(len(OTHER_CATEGORIES)))] if is_other[i] else FOOD
        target = int(round(rng.uniform(config.duration / 3.0, config.duration) * config.fps))
        segments: list[HowToSegment] = []
        first = 0
        while first < target or not segments:
            frames = int(round(rng.uniform(config.segment_min, config.segment_max) * config.fps))
            shape = config.shapes[int(rng.integers(len(config.shapes)))]
            colour = config.colours[int(rng.integers(len(config.colours)))]
            motions = _draw_motions(rng, int(rng.integers(1, 3)))
            waypoints = _draw_waypoints(rng, motions, _segment_config(config, frames))
            action = SynthVideo(f"howto{i:04d}-{len(segments)}", "train", shape, colour, motions, waypoints, ())
            words = _narrate(rng, shape, colour, motions)
            start, end = first / config.fps, (first + frames) / config.fps
            segments.append(HowToSegment(first, frames, action, " ".join(words),
                                         _fragments(rng, words, start, end)))
            first += frames
        videos.append(HowToVideo(f"howto{i:04d}", category, rank=int(rng.integers(1, 200)),
                                 task_id=int(rng.integers(10000, 99999)), segments=tuple(segments)))
    return videos


def render_howto(video: HowToVideo, config: HowToConfig) -> Iterator[np.ndarray]:
    """The frames of a long video: each action's frames in turn (its path end point left out)."""
    for segment in video.segments:
        frames = render_frames(segment.action, _segment_config(config, segment.frames))
        for _, frame in zip(range(segment.frames), frames):
            yield frame


def howto_captions(videos: list[HowToVideo]) -> dict[str, dict[str, list]]:
    """caption.json content: video id -> {"start": [...], "end": [...], "text": [...]}."""
    out = {}
    for video in videos:
        fragments = [f for s in video.segments for f in s.fragments]
        out[video.video_id] = {"start": [f[0] for f in fragments], "end": [f[1] for f in fragments],
                               "text": [f[2] for f in fragments]}
    return out


def howto_csv(videos: list[HowToVideo]) -> str:
    """HowTo100M_v1.csv content: ``video_id,category_1,category_2,rank,task_id``."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["video_id", "category_1", "category_2", "rank", "task_id"])
    for v in videos:
        writer.writerow([v.video_id, v.category, _SUBCATEGORY[v.category], v.rank, v.task_id])
    return buffer.getvalue()


def howto_metadata(config: HowToConfig, videos: list[HowToVideo]) -> dict[str, Any]:
    """synth.json of a howto corpus: format, settings, and per video its category and actions."""
    settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items() if k != "out_dir"}
    return {
        "format": HOWTO_FORMAT,
        "version": HOWTO_VERSION,
        "config": settings,
        "videos": [{
            "video_id": v.video_id, "file": f"videos/{v.video_id}.mp4", "category_1": v.category,
            "frames": v.frames, "duration": v.frames / config.fps,
            "segments": [{"start": s.first / config.fps, "end": (s.first + s.frames) / config.fps,
                          "shape": s.action.shape, "colour": s.action.colour, "motions": list(s.action.motions),
                          "narration": s.narration} for s in v.segments],
        } for v in videos],
    }


def load_howto_metadata(synth_json: str | Path) -> dict[str, Any]:
    """Read the synth.json of a howto corpus, checking its format and version."""
    path = Path(synth_json)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise C4CError("synth metadata file not found", path=path) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise C4CError(f"cannot read synth metadata: {exc}", path=path) from exc
    if not isinstance(data, dict) or data.get("format") != HOWTO_FORMAT:
        raise C4CError(f"not a {HOWTO_FORMAT} metadata file", path=path)
    if data.get("version") != HOWTO_VERSION:
        raise C4CError(f"unsupported {HOWTO_FORMAT} version {data.get('version')!r} (expected {HOWTO_VERSION})",
                       path=path)
    return data


def run_howto(config: HowToConfig, on_video: Callable[[int, int], None] | None = None) -> SynthResult:
    """Generate (or complete) a HowTo100M-like corpus in ``config.out_dir``: ``videos/*.mp4``,
    ``caption.json``, ``HowTo100M_v1.csv`` and ``synth.json``. Re-running encodes only missing videos."""
    started = time.perf_counter()
    videos = plan_howto(config)
    out_dir = Path(config.out_dir)
    video_dir = out_dir / "videos"
    try:
        video_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise C4CError(f"cannot create the output folder: {exc.strerror or exc}", path=out_dir) from exc
    for stale in video_dir.glob(".*.part"):
        stale.unlink(missing_ok=True)
    meta = howto_metadata(config, videos)
    meta_path = out_dir / "synth.json"
    if meta_path.exists():
        try:
            previous = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            previous = None
        if previous != meta:
            raise C4CError("the folder already holds a different synthetic dataset (other kind, settings "
                           "or seed)", path=meta_path, hint="pick an empty output folder or delete this one")
    _write_atomic(meta_path, json.dumps(meta, indent=1) + "\n")
    encoded = 0
    for done, video in enumerate(videos, start=1):
        target = video_dir / f"{video.video_id}.mp4"
        if not (target.is_file() and target.stat().st_size > 0):
            _encode(render_howto(video, config), target, config)
            encoded += 1
        if on_video is not None:
            on_video(done, len(videos))
    captions = out_dir / "caption.json"
    _write_atomic(captions, json.dumps(howto_captions(videos)) + "\n")
    _write_atomic(out_dir / "HowTo100M_v1.csv", howto_csv(videos))
    food = sum(v.category == FOOD for v in videos)
    seconds = time.perf_counter() - started
    log.info("synth howto: %d videos (%d encoded) in %s, %.1f s", len(videos), encoded, out_dir, seconds)
    return SynthResult(out_dir=out_dir, videos=len(videos),
                       captions=sum(len(s.fragments) for v in videos for s in v.segments), annotations=captions,
                       seconds=seconds, splits={FOOD: food, "other category": len(videos) - food},
                       encoded=encoded)
