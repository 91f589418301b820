"""Decode a video with ffmpeg and sample frames at a fixed rate, resized and centre-cropped.

One ffmpeg process per video decodes every frame once (no seeking), keeps the first frame at or after
each sampling instant ``k / fps`` (the reference code reads frame ``k * int(src_fps)``, which is the
same frame for constant, integer frame rates), resizes the short side to ``size`` with bicubic
filtering, centre-crops ``size x size`` and pipes RGB24 to us. ffmpeg's default autorotation honours
rotation metadata; audio, subtitles and data streams are ignored.
"""

from __future__ import annotations

import io
import logging
import math
import re
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from c4c.errors import C4CError
from c4c.video.ffmpeg_bin import ffmpeg_exe

log = logging.getLogger(__name__)

_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO_STREAM = re.compile(r"Stream #0:(\d+)[^:]*: Video: (\w+).*?, (\d{2,5})x(\d{2,5})")
_FPS = re.compile(r"(\d+(?:\.\d+)?) fps")
_TBR = re.compile(r"(\d+(?:\.\d+)?k?) tbr")
_ROTATION = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees")
_PTS_TIME = re.compile(r"\bn:\s*\d+ pts:\s*-?\d+ pts_time:(-?[\d.e+-]+)")


class VideoError(C4CError):
    """A video that cannot be used; ``problem`` is the reason shown in the failure list."""


@dataclass
class VideoInfo:
    """What ffmpeg reported about the input (sizes are as displayed, after rotation)."""

    duration: float | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    rotation: int = 0
    codec: str | None = None


@dataclass
class SampledVideo:
    """Frames sampled from one video.

    ``frames``: uint8 ``[T, size, size, 3]`` (codec ``raw``) or a list of T JPEG byte strings (``jpeg``).
    ``timestamps``: float32 ``[T]``, seconds from the start of the video.
    """

    frames: np.ndarray | list[bytes]
    timestamps: np.ndarray
    info: VideoInfo
    decode_errors: list[str] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return len(self.timestamps)

    @property
    def nbytes(self) -> int:
        if isinstance(self.frames, np.ndarray):
            return int(self.frames.nbytes)
        return sum(len(b) for b in self.frames)


def sampling_command(path: str | Path, fps: float, size: int, threads: int = 0) -> list[str]:
    """The ffmpeg command line that writes the sampled RGB24 frames of ``path`` to stdout."""
    import ffmpeg  # ffmpeg-python, only used to build the command line

    f = float(fps)
    # First frame with t >= the next sampling instant; ld(0)/st(0) keep that instant between frames.
    select = f"if(gte(t,ld(0)),st(0,(floor(t*{f!r}+1e-6)+1)/{f!r}),0)"
    stream = (
        ffmpeg.input(str(path), threads=threads)
        .video.filter("select", select)
        .filter("scale", w=f"if(lte(iw,ih),{size},-1)", h=f"if(lte(iw,ih),-1,{size})", flags="bicubic")
        .filter("crop", size, size)
        .filter("setsar", 1)
        .filter("showinfo", checksum=0)
        .output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough")
    )
    return [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "level+info", *ffmpeg.get_args(stream)]


def parse_info(stderr: str) -> VideoInfo:
    """Read duration, frame rate, display size and rotation of input #0 from ffmpeg's log."""
    info = VideoInfo()
    header = stderr.split("Stream mapping:")[0]
    m = _DURATION.search(header)
    if m:
        h, mnt, s = m.groups()
        info.duration = int(h) * 3600 + int(mnt) * 60 + float(s)
    for line in header.splitlines():
        vm = _VIDEO_STREAM.search(line)
        if vm and "Input" not in line:
            info.codec = vm.group(2)
            info.width, info.height = int(vm.group(3)), int(vm.group(4))
            fm = _FPS.search(line)
            if fm:
                info.fps = float(fm.group(1))
            else:
                tm = _TBR.search(line)
                if tm and not tm.group(1).endswith("k"):
                    info.fps = float(tm.group(1))
            break
    rm = _ROTATION.search(header)
    if rm:
        info.rotation = int(round(float(rm.group(1)))) % 360
        if info.rotation in (90, 270) and info.width and info.height:
            info.width, info.height = info.height, info.width
    return info


def _error_lines(stderr: str) -> list[str]:
    lines = []
    for line in stderr.splitlines():
        if "[error]" in line or "[fatal]" in line:
            lines.append(re.sub(r"^\[[^\]]*@ 0x[0-9a-f]+\] ", "", line).replace("[error] ", "")
                         .replace("[fatal] ", "").strip())
    return lines


def _failure_reason(stderr: str, returncode: int) -> str:
    errors = _error_lines(stderr)
    tail = stderr.strip().splitlines()
    text = " ".join(errors) if errors else (tail[-1] if tail else "")
    if "matches no streams" in text or "does not contain any stream" in text:
        return "no video stream (audio-only or data file)"
    if "moov atom not found" in text:
        return "unreadable: moov atom not found (truncated, incomplete, or not an MP4/MOV file)"
    if "Invalid data found when processing input" in text:
        return "not a video ffmpeg can read: invalid data found when processing input"
    if not text:
        text = f"ffmpeg exited with status {returncode}"
    return f"ffmpeg failed: {text[:300]}"


def sample_video(path: str | Path, *, fps: float = 1.0, size: int = 224, codec: str = "raw",
                 jpeg_quality: int = 95, threads: int = 0) -> SampledVideo:
    """Decode ``path`` and return its frames sampled at ``fps`` per second of video time.

    Raises :class:`VideoError` with the reason when the file is missing, empty, not a video, has no
    video stream, yields no frame, or ends well before its stated duration (truncated).
    A video shorter than one sampling interval still gives its first frame.
    """
    path = Path(path)
    if codec not in ("raw", "jpeg"):
        raise C4CError(f"unknown frame codec {codec!r}; use raw or jpeg")
    if fps <= 0 or size < 8:
        raise C4CError(f"invalid sampling settings fps={fps} size={size}")
    if not path.exists():
        raise VideoError("file not found", path=path)
    if not path.is_file():
        raise VideoError("not a regular file", path=path)
    if path.stat().st_size == 0:
        raise VideoError("empty file (0 bytes)", path=path)

    cmd = sampling_command(path, fps, size, threads)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)
    reader.start()
    frame_bytes = size * size * 3
    raw_frames: list[np.ndarray] = []
    jpegs: list[bytes] = []
    try:
        while True:
            buf = _read_exact(proc.stdout, frame_bytes)
            if buf is None:
                break
            frame = np.frombuffer(buf, dtype=np.uint8).reshape(size, size, 3)
            if codec == "raw":
                raw_frames.append(frame)
            else:
                jpegs.append(encode_jpeg(frame, jpeg_quality))
    finally:
        proc.stdout.close()
        returncode = proc.wait()
        reader.join()
    stderr = b"".join(err_chunks).decode("utf-8", errors="replace")
    count = len(raw_frames) if codec == "raw" else len(jpegs)
    if returncode != 0:
        raise VideoError(_failure_reason(stderr, returncode), path=path)
    info = parse_info(stderr)
    if info.width is None:
        raise VideoError("no video stream (audio-only or data file)", path=path)
    stamps = [float(x) for x in _PTS_TIME.findall(stderr)]
    if count == 0:
        raise VideoError("no frame could be decoded", path=path)
    if len(stamps) != count:
        raise VideoError(f"ffmpeg reported {len(stamps)} timestamps for {count} frames", path=path)
    timestamps = np.asarray(stamps, dtype=np.float32)
    _check_not_truncated(path, info, float(timestamps[-1]), fps)
    frames: np.ndarray | list[bytes] = np.stack(raw_frames) if codec == "raw" else jpegs
    return SampledVideo(frames=frames, timestamps=timestamps, info=info, decode_errors=_error_lines(stderr))


def _read_exact(stream, n: int) -> bytes | None:
    data = stream.read(n)
    if not data:
        return None
    while len(data) < n:
        more = stream.read(n - len(data))
        if not more:
            return None  # a partial trailing frame: ffmpeg was cut short; the exit status tells why
        data += more
    return data


def _check_not_truncated(path: Path, info: VideoInfo, last_time: float, fps: float) -> None:
    """Fail when decoding stopped long before the stated duration (a cut-off download, say).

    Tolerant of the usual gap between the video stream and a longer audio stream.
    """
    if info.duration is None or info.duration <= 0:
        return
    gap = info.duration - last_time
    if gap > max(2.0, 1.5 / fps) and last_time + 1.0 / fps < 0.75 * info.duration:
        raise VideoError(f"truncated: frames stop at {last_time:.1f} s of a stated {info.duration:.1f} s",
                         path=path)


def encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
    """JPEG-encode one ``[H, W, 3]`` uint8 RGB frame."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(frame, "RGB").save(out, format="JPEG", quality=int(quality), subsampling=0)
    return out.getvalue()


def decode_jpeg(data: bytes | np.ndarray) -> np.ndarray:
    """Decode one JPEG to a ``[H, W, 3]`` uint8 RGB array."""
    from PIL import Image

    raw = data.tobytes() if isinstance(data, np.ndarray) else data
    with Image.open(io.BytesIO(raw)) as img:
        img.load()
        return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))


