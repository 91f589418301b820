"""The common annotation record every dataset reader produces."""

from __future__ import annotations

from dataclasses import dataclass, field

SPLITS = ("train", "val", "test")


@dataclass
class VideoRecord:
    """One annotated video (or one clip window of a video) of a dataset split.

    ``video_id`` is the key of the video in FRAMES.h5 (the video file name without extension, as the
    reader normalises it). ``captions`` are the sentences that describe it; paragraph datasets
    (ActivityNet, DiDeMo) hold one caption, the paragraph. ``start``/``end`` (seconds) restrict the
    video to a window. ``caption_times`` (HowTo100M) gives a ``(start, end)`` span per caption.
    ``source_name`` is the file name as written in the annotations, when it differs from the id
    (used to find the video file).
    """

    video_id: str
    captions: list[str]
    split: str
    start: float | None = None
    end: float | None = None
    caption_times: list[tuple[float, float]] | None = None
    source_name: str | None = None
    extra: dict = field(default_factory=dict)


def check_video_id(video_id: str, *, path: str | None = None, line: int | None = None) -> str:
    """Return ``video_id`` if it is a safe key for FRAMES.h5 and for file names; raise C4CError if not.

    Rejected: empty ids, ids with path separators or NUL, ``.``/``..``, and ids with leading or
    trailing white space (they would escape the output folder or collide silently).
    """
    from c4c.errors import C4CError

    bad = (
        not isinstance(video_id, str)
        or video_id == ""
        or video_id in (".", "..")
        or any(ch in video_id for ch in ("/", "\\", "\x00"))
        or video_id != video_id.strip()
    )
    if bad:
        raise C4CError(f"invalid video id {video_id!r}: ids must be non-empty names without path "
                       "separators, '..' or surrounding spaces", path=path, line=line)
    return video_id
