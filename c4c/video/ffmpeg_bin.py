"""Where the ffmpeg binary is: the one the imageio-ffmpeg wheel ships, unless C4C_FFMPEG says otherwise."""

from __future__ import annotations

import functools
import os

from c4c.errors import C4CError


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg executable to run."""
    override = os.environ.get("C4C_FFMPEG")
    if override:
        if not os.path.isfile(override):
            raise C4CError("C4C_FFMPEG points to a file that does not exist", path=override)
        return override
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - declared dependency
        raise C4CError("imageio-ffmpeg is not installed", hint="pip install imageio-ffmpeg") from exc
    return imageio_ffmpeg.get_ffmpeg_exe()
