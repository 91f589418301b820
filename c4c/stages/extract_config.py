"""The options of `c4c extract`, declared once (light: the command line reads them before it parses).

The stage itself (:mod:`c4c.stages.extract`) imports the video machinery; this module only says what
the options are: their types, defaults (the paper's: 1 frame per second, 224 px), help and rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from c4c import choices
from c4c.datasets.registry import ExtractDatasetName
from c4c.option_rules import FPS, count
from c4c.options import option, rules_of

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv",
                    ".3gp", ".ts", ".mts", ".ogv", ".gif")


@dataclass(kw_only=True)
class ExtractConfig:
    """Options of `c4c extract`."""

    source: Path                      # folder of videos, or an annotation file/folder with `dataset`
    out: Path                         # FRAMES.h5, or a shard-set folder
    videos_dir: Path | None = option(None, "Folder of the videos named by the annotations.", flags=("--videos",))
    dataset: ExtractDatasetName | None = option(None, "Annotation format (see data/README.md).")
    dataset_options: dict = field(default_factory=dict)  # reader options (from --msrvtt-train)
    fps: float = option(1.0, "Frames sampled per second of video time (the paper uses 1).", rule=FPS)
    size: int = option(224, "Short side resized to this (bicubic), then centre crop size x size.",
                       rule=count(8, 4096))
    workers: int = option(2, "Videos decoded at once (ffmpeg processes).", flags=("--workers", "-j"),
                          rule=count(1, 256))
    codec: choices.Codec = option("jpeg", "Frame storage: jpeg (about 6x smaller; see bench/README.md) or raw uint8.")
    jpeg_quality: int = option(95, "JPEG quality (1-100) with --codec jpeg.", rule=count(1, 100))
    reference_reader: bool = option(
        False, "Frames exactly as the paper's code reads them: frame numbers k x int(source fps) (29.97 fps: 0, 29, "
               "58, ...) and OpenCV + PIL bicubic pixels (the store records it; about 1.2-1.8x the decode time).")
    ffmpeg_threads: int = option(
        0, "Decoder threads per ffmpeg process; 0 = the CPUs shared out among the processes running at once (1 each "
           "when -j is the CPU count; all of them for a single long video).", rule=count(0, 256))
    commit_every: int = option(
        0, "Also merge finished videos into OUT after this many (0: at the end; finished videos are kept in "
           "OUT.parts/ until then, so a killed run loses none).", rule=count(0))
    batch: int = option(8, "Up to this many small files (< 256 kB) decoded by one ffmpeg process; 1 = never.",
                        rule=count(1, 10_000))
    batch_max_bytes: int = 256_000    # files at least this large get a process of their own
    extensions: tuple[str, ...] = VIDEO_EXTENSIONS
    shards: int = option(0, "Write a shard set: OUT is a folder of this many HDF5 files plus manifest.json (for large "
                            "corpora; 0 = one file). Resuming an existing set needs no --shards.",
                         rule=count(0, 1_000_000))
    shard_index: tuple[int, ...] | None = None  # extract only these shards (from --shard-index)
    wait: bool = option(False, "When another run is writing OUT (or one of its shards), wait for it to end instead of "
                               "stopping (one writer per store; the lock is OUT.lock beside it).")


RULES = rules_of(ExtractConfig)  # every number `c4c extract` takes, checked before anything is read
