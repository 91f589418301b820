"""The cached synthetic data of the mini experiments: retrieval clips, single-frame image-text pairs,
the HowTo-like corpus, and their frame stores."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from c4c import synth
from c4c.atomic import write_text
from c4c.datasets.registry import read_annotations, split_records
from c4c.errors import C4CError
from c4c.mini.config import IMAGE_TEMPLATES, Event, MiniConfig
from c4c.stages import extract

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# data


@dataclass
class MiniData:
    """Paths of the cached data sets and what the evaluation needs to know about the test split."""

    ann: Path                             # retrieval annotations.jsonl
    frames: Path                          # its FRAMES.h5
    synth_json: Path
    twins: dict[str, str]                 # test video -> its time-reversed twin in the test split
    test_videos: int
    image_ann: Path | None = None         # single-frame image-text records (jsonl with windows)
    image_frames: Path | None = None
    howto: Path | None = None             # HowTo-like folder (caption.json, HowTo100M_v1.csv)
    howto_frames: Path | None = None
    seconds: float = 0.0


def reversal_twins(synth_json: Path) -> dict[str, str]:
    """Test videos whose exact time reversal is also a test video, mapped to it (both directions)."""

    meta = synth.load_metadata(synth_json)
    split = {v["video_id"]: v["split"] for v in meta["videos"]}
    twins: dict[str, str] = {}
    for a, b in synth.order_contrast_pairs(synth_json):
        if split[a] == split[b] == "test":
            twins[a], twins[b] = b, a
    return twins


def shape_position(waypoints: list[list[float]], t: float, duration: float, width: float, height: float) -> str:
    """Where the shape's centre is at ``t`` s, in words ("top left", "centre", "right", ...).

    Moves take equal time at constant speed (as `c4c synth` renders them); positions are judged in the
    centre square that `c4c extract` keeps, cut in thirds each way.
    """
    moves = len(waypoints) - 1
    s = min(max(t / duration, 0.0), 1.0) * moves
    j = min(int(s), moves - 1)
    u = s - j
    (x0, y0), (x1, y1) = waypoints[j], waypoints[j + 1]
    side = min(width, height)
    x = x0 + (x1 - x0) * u - (width - side) / 2
    y = y0 + (y1 - y0) * u - (height - side) / 2
    column = ("left", "centre", "right")[min(max(int(3 * x / side), 0), 2)]
    row = ("top", "middle", "bottom")[min(max(int(3 * y / side), 0), 2)]
    if row == "middle":
        return column
    return row if column == "centre" else f"{row} {column}"


def _where(position: str) -> str:
    if position == "centre":
        return "in the centre"
    return f"on the {position}" if position in ("left", "right") else f"at the {position}"


def image_records(synth_json: Path, seconds: int, positions: bool = True) -> list[dict]:
    """Image-text annotation lines: one per video and stored second ``k`` (a window holding the frame at
    ``k`` s first), captioned as an image would be: the shape's colour and shape and, with
    ``positions``, where it is ("a red circle at the top left"); nothing about motion."""

    meta = synth.load_metadata(synth_json)
    settings = meta["config"]
    lines = []
    for i, video in enumerate(meta["videos"]):
        for k in range(seconds + 1):
            template = IMAGE_TEMPLATES[(i + k) % len(IMAGE_TEMPLATES)]
            caption = template.format(c=video["colour"], s=video["shape"])
            if positions:
                where = shape_position(video["waypoints"], float(k), float(settings["duration"]),
                                       float(settings["width"]), float(settings["height"]))
                caption += " " + _where(where)
            lines.append({"video_id": video["video_id"], "split": "train", "start": float(k), "end": k + 0.5,
                          "caption": caption})
    return lines


def _extract(source: Path, videos: Path, out: Path, dataset: str, fps: float, size: int) -> None:
    """Extract (or finish extracting: `c4c extract` skips stored videos) a synthetic set's frames, raw."""

    result = extract.run(extract.ExtractConfig(source=source, dataset=dataset, videos_dir=videos, out=out,
                                               size=size, fps=fps, codec="raw", workers=1))
    if not result.ok:
        raise C4CError(f"{len(result.failed)} synthetic videos could not be extracted "
                       f"(first: {result.failed[0].video_id}: {result.failed[0].reason})", path=out)


def prepare_data(cfg: MiniConfig, need_howto: bool, on_event: Event | None = None) -> MiniData:
    """Make (or find) the retrieval set, the image-text set and, when needed, the HowTo-like corpus."""

    on_event = on_event or (lambda event: None)
    t0 = time.perf_counter()
    root = cfg.out / "data"
    duration = 4.0

    on_event({"event": "data", "name": "retrieval videos"})
    ret = root / "retrieval"
    synth.run(synth.SynthConfig(out_dir=ret, videos=cfg.videos, seed=0, duration=duration, width=64, height=48,
                                val_fraction=0.0, test_fraction=cfg.test_fraction, shapes=tuple(cfg.shapes),
                                colours=tuple(cfg.colours)))
    _extract(ret / "annotations.jsonl", ret / "videos", ret / "frames.h5", "jsonl", cfg.fps, cfg.size)
    test = split_records(read_annotations("jsonl", ret / "annotations.jsonl"), "test")
    data = MiniData(ann=ret / "annotations.jsonl", frames=ret / "frames.h5", synth_json=ret / "synth.json",
                    twins=reversal_twins(ret / "synth.json"), test_videos=len({r.video_id for r in test}))

    on_event({"event": "data", "name": "image-text frames"})
    img = root / "images"
    synth.run(synth.SynthConfig(out_dir=img, videos=cfg.image_videos, seed=1, duration=duration, width=64,
                                height=48))  # every shape and colour: broader than the retrieval set
    _extract(img / "annotations.jsonl", img / "videos", img / "frames.h5", "jsonl", 1.0, cfg.size)
    data.image_ann = img / "images.jsonl"
    if not data.image_ann.exists():
        text = "".join(json.dumps(line) + "\n"
                       for line in image_records(img / "synth.json", int(duration), cfg.image_positions))
        write_text(data.image_ann, text)
    data.image_frames = img / "frames.h5"

    if need_howto:
        on_event({"event": "data", "name": "HowTo-like corpus"})
        how = root / "howto"
        synth.run_howto(synth.HowToConfig(out_dir=how, videos=cfg.howto_videos, seed=2, duration=cfg.howto_duration,
                                          fps=4, width=64, height=48, shapes=tuple(cfg.shapes),
                                          colours=tuple(cfg.colours)))
        _extract(how, how / "videos", how / "frames.h5", "howto100m", 1.0, cfg.size)
        data.howto, data.howto_frames = how, how / "frames.h5"
    data.seconds = time.perf_counter() - t0
    return data


