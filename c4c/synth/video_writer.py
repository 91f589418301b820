"""Encoding generated frames into an H.264 MP4 file with ffmpeg."""

from __future__ import annotations

import subprocess
import threading
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from c4c.atomic import atomic_path
from c4c.errors import C4CError
from c4c.video.ffmpeg_bin import ffmpeg_exe

if TYPE_CHECKING:
    import numpy as np


def encode_video(frames: Iterable[np.ndarray], target: Path, *, width: int, height: int, fps: int,
                 crf: int) -> None:
    """Pipe frames (each uint8 RGB ``[height, width, 3]``) through ffmpeg/libx264 into ``target``, atomically.

    yuv420p, one key frame a second, x264 quality ``crf``. C4CError with ffmpeg's last messages when it fails;
    no file is left behind then.
    """
    with atomic_path(target) as tmp:
        cmd = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps), "-i", "-",
            "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf),
            "-pix_fmt", "yuv420p", "-g", str(fps), "-threads", "1", "-f", "mp4", str(tmp),
        ]
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as exc:
            raise C4CError(f"cannot start ffmpeg: {exc}", path=cmd[0]) from exc
        tail: deque[str] = deque(maxlen=10)

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
                raise C4CError(f"ffmpeg failed to encode {target.name} (exit code {code}): {detail}", path=target)
        except BaseException:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise
