"""A synthetic HowTo100M-like corpus (``c4c synth --kind howto``), made from the shapes, colours and
moves of :mod:`c4c.synth.clips`: long videos of back-to-back actions, each narrated in ASR style (lower
case, no punctuation, filler words) and cut into short timed fragments, written as ``caption.json``
and ``HowTo100M_v1.csv`` with some videos in other categories than "Food and Entertaining"::

    videos/howto0000.mp4 ...   H.264, one action after another, no frame repeated between actions
    caption.json               {"howto0000": {"start": [...], "end": [...], "text": [...]}, ...}
    HowTo100M_v1.csv           video_id,category_1,category_2,rank,task_id
    synth.json                 format "c4c-synth-howto": settings, and per video its actions
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from c4c.atomic import write_json, write_text
from c4c.errors import C4CError
from c4c.synth import folder
from c4c.synth.clips import (SynthConfig, SynthResult, SynthSettings, SynthVideo, check_common, draw_motions,
                             draw_waypoints, render_frames, template_words)

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

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


@dataclass(kw_only=True)
class HowToConfig(SynthSettings):
    """Settings of a synthetic HowTo100M-like corpus (``c4c synth --kind howto``); ``videos`` counts the
    videos in caption.json and HowTo100M_v1.csv, all categories together."""

    duration: float = 60.0  # the longest video (s); lengths are drawn from duration/3 .. duration
    segment_min: float = 4.0  # seconds of one narrated action, drawn from segment_min .. segment_max
    segment_max: float = 8.0
    other_fraction: float = 0.25  # share of videos in other categories than Food and Entertaining


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
    """One long video of the corpus: its HowTo100M-style listing and its narrated actions in order."""

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
    check_common(config)
    if not 0 < config.segment_min <= config.segment_max or config.segment_min * config.fps < 2:
        raise C4CError(f"synth: segment lengths {config.segment_min}..{config.segment_max} s must be positive, "
                       f"ordered and give at least 2 frames at {config.fps} fps")
    if not (isinstance(config.duration, (int, float)) and math.isfinite(config.duration)
            and config.duration >= config.segment_min):
        raise C4CError(f"synth: duration must be at least one segment ({config.segment_min} s), "
                       f"got {config.duration!r}")
    if not 0.0 <= config.other_fraction < 1.0:
        raise C4CError(f"synth: other_fraction must be in [0, 1), got {config.other_fraction}")


def _narrate(rng: np.random.Generator, shape: str, colour: str, motions: tuple[str, ...]) -> list[str]:
    """The spoken words of one action: a template with one or two filler words slipped in."""
    templates = _NARRATE_ONE if len(motions) == 1 else _NARRATE_TWO
    spoken = templates[int(rng.integers(len(templates)))].format(**template_words(shape, colour, motions)).split()
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
            motions = draw_motions(rng, int(rng.integers(1, 3)))
            waypoints = draw_waypoints(rng, motions, _segment_config(config, frames))
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
    return folder.read_metadata(synth_json, HOWTO_FORMAT, HOWTO_VERSION)


def run_howto(config: HowToConfig, on_video: Callable[[int, int], None] | None = None) -> SynthResult:
    """Generate (or complete) a HowTo100M-like corpus in ``config.out_dir``: ``videos/*.mp4``,
    ``caption.json``, ``HowTo100M_v1.csv`` and ``synth.json``. Re-running encodes only missing videos."""
    started = time.perf_counter()
    videos = plan_howto(config)
    out_dir = Path(config.out_dir)
    encoded = folder.write_videos(out_dir, howto_metadata(config, videos), videos,
                                  lambda video: render_howto(video, config), config, indent=1, on_video=on_video)
    captions = out_dir / "caption.json"
    write_json(captions, howto_captions(videos), indent=None)
    write_text(out_dir / "HowTo100M_v1.csv", howto_csv(videos))
    food = sum(v.category == FOOD for v in videos)
    seconds = time.perf_counter() - started
    log.info("synth howto: %d videos (%d encoded) in %s, %.1f s", len(videos), encoded, out_dir, seconds)
    return SynthResult(out_dir=out_dir, videos=len(videos),
                       captions=sum(len(s.fragments) for v in videos for s in v.segments), annotations=captions,
                       seconds=seconds, splits={FOOD: food, "other category": len(videos) - food},
                       encoded=encoded)
