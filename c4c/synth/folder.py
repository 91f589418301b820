"""The folder a synthetic dataset is written to: ``videos/*.mp4`` and ``synth.json``, for both kinds.

A re-run into the same folder must describe the same dataset (its synth.json is compared first); it
then encodes only the videos that are missing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from c4c import interrupt
from c4c.atomic import TEMP_MARK, write_json
from c4c.errors import C4CError
from c4c.outputs import Output, folder_holding, guard
from c4c.synth.video_writer import encode_video

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

META = "synth.json"


def write_videos(out_dir: Path, meta: dict[str, Any], videos: Sequence[Any],
                 render: Callable[[Any], Iterable[np.ndarray]], config: Any, *, indent: int,
                 on_video: Callable[[int, int], None] | None = None) -> int:
    """Write ``synth.json`` (``meta``, ``indent`` spaces) and encode every missing video of ``videos`` into
    ``out_dir/videos``; return how many were encoded. See :func:`prepare` and :func:`encode_missing`."""
    dataset = Output(Path(out_dir), "synthetic dataset folder", folder_holding(META), folder=True)
    with guard([dataset], command="c4c synth"):
        return encode_missing(prepare(out_dir, meta, indent=indent), videos, render, config, on_video)


def prepare(out_dir: Path, meta: dict[str, Any], *, indent: int) -> Path:
    """Create ``out_dir/videos``, remove partial videos of a killed run and write ``synth.json``; return the
    videos folder. C4CError when the folder already holds a different synthetic dataset."""
    video_dir = out_dir / "videos"
    try:
        video_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise C4CError(f"cannot create the output folder: {exc.strerror or exc}", path=out_dir) from exc
    # ".<name>.<pid>.part": the temp name of videos before c4c.atomic
    for stale in [*video_dir.glob(".*.part"), *video_dir.glob(f"*{TEMP_MARK}*")]:
        stale.unlink(missing_ok=True)
    meta_path = out_dir / META
    if meta_path.exists():
        try:
            previous = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            previous = None
        if previous != meta:
            raise C4CError("the folder already holds a different synthetic dataset (other kind, settings "
                           "or seed)", path=meta_path, hint="pick an empty output folder or delete this one")
    write_json(meta_path, meta, indent=indent)
    return video_dir


def encode_missing(video_dir: Path, videos: Sequence[Any], render: Callable[[Any], Iterable[np.ndarray]],
                   config: Any, on_video: Callable[[int, int], None] | None = None) -> int:
    """Encode ``render(video)`` into ``<video_id>.mp4`` for each video whose file is missing or empty
    (``config`` gives width, height, fps and crf); ``on_video(done, total)`` after each. Returns how many
    were encoded."""
    encoded = 0

    def kept() -> str:
        return f"kept the {encoded} videos made by this run ({len(videos)} in all)"

    with interrupt.graceful():  # Ctrl-C: stop after the video in progress; the next run makes the rest
        for done, video in enumerate(videos, start=1):
            interrupt.stop_here(kept, path=video_dir.parent)
            target = video_dir / f"{video.video_id}.mp4"
            if target.is_file() and target.stat().st_size > 0:
                log.debug("%s exists, skipped", target)
            else:
                try:
                    encode_video(render(video), target, width=config.width, height=config.height, fps=config.fps,
                                 crf=config.crf)
                except BaseException:
                    if interrupt.requested():  # its ffmpeg got the terminal's Ctrl-C too: the file was not kept
                        raise interrupt.Interrupted(kept(), path=video_dir.parent) from None
                    raise
                encoded += 1
            if on_video is not None:
                on_video(done, len(videos))
    return encoded


def read_metadata(synth_json: str | Path, fmt: str, version: int, hint: str | None = None) -> dict[str, Any]:
    """Read a synth.json file, checking that it is of format ``fmt`` and version ``version``."""
    path = Path(synth_json)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise C4CError("synth metadata file not found", path=path) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise C4CError(f"cannot read synth metadata: {exc}", path=path) from exc
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise C4CError(f"not a {fmt} metadata file", path=path, hint=hint)
    if data.get("version") != version:
        raise C4CError(f"unsupported {fmt} version {data.get('version')!r} (expected {version})", path=path)
    return data
