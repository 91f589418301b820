"""Decode a video with ffmpeg and sample frames at a fixed rate, resized and centre-cropped.

(Over 450 lines on purpose: both readers share one ffmpeg invocation, its log parsing and its
failure reasons; split apart, each half would need the other's internals.)

Two readers (:data:`READERS`):

* ``c4c`` (default): one ffmpeg process per video decodes every frame once (no seeking), keeps the
  first frame at or after each sampling instant ``k / fps`` (true times: frames 0, 30, 60, ... at
  29.97 fps), resizes the short side to ``size`` with ffmpeg's bicubic filter in YUV (the long side
  rounded up) and centre-crops ``size x size``, and pipes RGB24 to us.
* ``reference``: the frames and pixels of the reference code's OpenCV reader (spec 1.1-1.2). Its
  frame rate is ``int(fps)`` (29.97 -> 29), and it reads frame numbers ``k * int(fps) + offset``
  (0, 29, 58, ... at 29.97 fps); ffmpeg picks exactly those frame numbers with ``select`` and
  converts them to RGB at their own size (the same conversion OpenCV's FFmpeg backend makes), then
  PIL resizes the short side to ``size`` with bicubic filtering, truncating the long side as
  torchvision's ``Resize(int)`` does (298.67 -> 298), and the centre crop is torchvision's.

ffmpeg's default autorotation honours rotation metadata; audio, subtitles and data streams are ignored.
Every input is given to ffmpeg as ``file:`` + its absolute path (:func:`input_url`), so that no file name
(``concat:a.mp4``, ``subfile:...``, ``http:x.mp4``, ``-y.mp4``) is ever read as a protocol or an option.
"""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from c4c import interrupt
from c4c.choices import READERS  # c4c (true times, ffmpeg scaling) | reference (see above)
from c4c.errors import C4CError
from c4c.video.ffmpeg_bin import ffmpeg_exe

log = logging.getLogger(__name__)

_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO_STREAM = re.compile(r"Stream #0:(\d+)[^:]*: Video: (\w+).*?, (\d{2,5})x(\d{2,5})")
_FPS = re.compile(r"(\d+(?:\.\d+)?) fps")
_TBR = re.compile(r"(\d+(?:\.\d+)?k?) tbr")
_ROTATION = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees")
_PTS_TIME = re.compile(r"\bn:\s*\d+ pts:\s*-?\d+ pts_time:(-?[\d.e+-]+)")
_SHOWINFO_SIZE = re.compile(r"\bn:\s*\d+ pts:.*?\bs:(\d+)x(\d+)")

_SHOWINFO_LINE = re.compile(r"\[Parsed_showinfo_(\d+) @[^\]]*\].*?\bn:\s*\d+ pts:\s*-?\d+ pts_time:(-?[\d.e+-]+)")


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


def input_url(path: str | Path) -> str:
    """How ffmpeg is told to read the file ``path``: its own file protocol and an absolute path, so that
    a name like ``concat:x.mp4`` is a file name and not a protocol that reads other files."""
    return "file:" + os.path.abspath(os.fspath(path))


def sampling_command(path: str | Path, fps: float, size: int, threads: int = 0, *, reader: str = "c4c",
                     video_fps: float | None = None) -> list[str]:
    """The ffmpeg command line that writes the sampled RGB24 frames of ``path`` to stdout.

    ``reader="c4c"``: ``size x size`` frames. ``reader="reference"``: the reference's frames at the
    video's own size (resize and crop follow in Python, :func:`reference_transform`); it needs
    ``video_fps``, the frame rate ffmpeg reports for the video.
    """
    import ffmpeg  # ffmpeg-python builds the command line

    stream = _chain(ffmpeg.input(input_url(path), threads=threads), fps, size, reader, video_fps)
    stream = stream.output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough")
    return [ffmpeg_exe(), *_GLOBAL_ARGS, *ffmpeg.get_args(stream)]


_GLOBAL_ARGS = ("-nostdin", "-hide_banner", "-loglevel", "level+info")


def _chain(source, fps: float, size: int, reader: str, video_fps: float | None):
    if reader == "reference":
        if video_fps is None:
            raise ValueError("the reference reader needs the video's frame rate")
        return _reference_chain(source, int(video_fps), int(fps))
    return _sampling_chain(source, fps, size)


def _sampling_chain(source, fps: float, size: int):
    """select (first frame at/after each instant) -> bicubic short-side resize -> centre crop -> showinfo."""
    f = float(fps)
    # ld(0)/st(0) keep the next sampling instant between frames.
    select = f"if(gte(t,ld(0)),st(0,(floor(t*{f!r}+1e-6)+1)/{f!r}),0)"
    return (source.video.filter("select", select)
            .filter("scale", w=f"if(lte(iw,ih),{size},-1)", h=f"if(lte(iw,ih),-1,{size})", flags="bicubic")
            .filter("crop", size, size)
            .filter("setsar", 1)
            .filter("showinfo", checksum=0))


def reference_offsets(video_fps: int, fps: int) -> list[int]:
    """Frame offsets within each second that the reference reads: ``range(0, F, F // fps)`` (an
    interval of 0 becomes 1) cut to ``fps`` entries, for the truncated frame rate ``F``."""
    interval = max(video_fps // fps, 1)
    return list(range(0, video_fps, interval))[:fps]


def reference_frame_indices(frame_count: int, video_fps: int, fps: int = 1) -> list[int]:
    """The frame numbers the reference reads from a video of ``frame_count`` frames whose truncated
    frame rate is ``video_fps``: ``k * video_fps + o`` for each second ``k`` and offset ``o`` of
    :func:`reference_offsets`, in order, up to the first one past the end (spec 1.1)."""
    offsets = reference_offsets(video_fps, fps)
    return [k * video_fps + o for k in range(-(-frame_count // video_fps)) for o in offsets
            if k * video_fps + o < frame_count]


def _reference_chain(source, video_fps: int, fps: int):
    """select the frame numbers of :func:`reference_frame_indices` -> showinfo (RGB at native size)."""
    offsets = reference_offsets(video_fps, fps)
    interval = offsets[1] - offsets[0] if len(offsets) > 1 else video_fps
    within = f"mod(n,{video_fps})"
    select = f"lt({within},{offsets[-1] + 1})*not(mod({within},{interval}))"
    return source.video.filter("select", select).filter("showinfo", checksum=0)


def reference_size(width: int, height: int, size: int) -> tuple[int, int]:
    """``(width, height)`` after torchvision's ``Resize(size)``: the short side becomes ``size``, the
    long side ``int(size * long / short)`` (truncated)."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def reference_transform(frame: np.ndarray, size: int) -> np.ndarray:
    """One ``[H, W, 3]`` uint8 RGB frame -> ``[size, size, 3]`` as the reference's transform makes it:
    PIL bicubic resize to :func:`reference_size`, then torchvision's centre crop (offsets
    ``round((side - size) / 2)``, Python rounding)."""
    from PIL import Image

    height, width = frame.shape[:2]
    new_w, new_h = reference_size(width, height, size)
    image = Image.fromarray(frame, "RGB")
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.BICUBIC)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    return np.asarray(image.crop((left, top, left + size, top + size)))


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
                 jpeg_quality: int = 95, threads: int = 0, reader: str = "c4c") -> SampledVideo:
    """Decode ``path`` and return its frames sampled at ``fps`` per second of video time.

    ``reader``: ``c4c`` or ``reference`` (:data:`READERS`; ``reference`` needs a whole ``fps``).
    Raises :class:`VideoError` with the reason when the file is missing, empty, not a video, has no
    video stream, yields no frame, or ends well before its stated duration (truncated).
    A video shorter than one sampling interval still gives its first frame.
    """
    path = Path(path)
    _check_settings(codec, fps, size, reader)
    _check_file(path)
    video_fps, shape = None, (size, size)
    if reader == "reference":
        info = probe_video(path)
        video_fps = _reference_fps(path, info, fps)
        shape = (info.height, info.width)
    cmd = sampling_command(path, fps, size, threads, reader=reader, video_fps=video_fps)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err_chunks: list[bytes] = []
    err_reader = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)
    err_reader.start()
    frame_bytes = shape[0] * shape[1] * 3
    frames: list = []
    try:
        while True:
            buf = _read_exact(proc.stdout, frame_bytes)
            if buf is None:
                break
            frames.append(_finish_frame(np.frombuffer(buf, dtype=np.uint8).reshape(*shape, 3), size, codec,
                                        jpeg_quality, reader))
    finally:
        proc.stdout.close()
        returncode = proc.wait()
        err_reader.join()
    stderr = b"".join(err_chunks).decode("utf-8", errors="replace")
    if returncode != 0:
        raise VideoError(_failure_reason(stderr, returncode), path=path)
    if reader == "reference":
        _check_frame_size(path, stderr, shape)
    data: np.ndarray | list[bytes] = (np.stack(frames) if frames else []) if codec == "raw" else frames
    stamps = [float(x) for x in _PTS_TIME.findall(stderr)]
    return _finish(path, data, stamps, parse_info(stderr), _error_lines(stderr), fps)


def _finish_frame(frame: np.ndarray, size: int, codec: str, jpeg_quality: int, reader: str):
    """A decoded frame as stored: resized and cropped (reference reader), JPEG-encoded if asked."""
    if reader == "reference":
        frame = reference_transform(frame, size)
    return frame if codec == "raw" else encode_jpeg(frame, jpeg_quality)


def probe_video(path: str | Path) -> VideoInfo:
    """What ffmpeg reports about ``path`` without decoding it; VideoError when it has no video stream."""
    proc = subprocess.run([ffmpeg_exe(), *_GLOBAL_ARGS, "-i", input_url(path)], stdin=subprocess.DEVNULL,
                          capture_output=True)
    stderr = proc.stderr.decode("utf-8", errors="replace")
    info = parse_info(stderr)
    if info.width is None or info.height is None:
        reason = _failure_reason(stderr, proc.returncode)
        raise VideoError(reason if "ffmpeg failed" not in reason else "no video stream (audio-only or data file)",
                         path=path)
    return info


def _reference_fps(path: Path, info: VideoInfo, fps: float) -> int:
    """The reference's frame rate of the video, ``int(fps)``; VideoError when it cannot read it."""
    if info.fps is None:
        raise VideoError("ffmpeg reports no frame rate; the reference reader needs one", path=path)
    video_fps = int(info.fps)
    if video_fps < 1 or len(reference_offsets(video_fps, int(fps))) < int(fps):
        raise VideoError(f"the reference reader cannot take {int(fps)} frames per second from a "
                         f"{info.fps:g} fps video", path=path)
    return video_fps


def _check_frame_size(path: Path, stderr: str, shape: tuple[int, int]) -> None:
    """The frames ffmpeg wrote must have the size they were read with (the probe's display size)."""
    m = _SHOWINFO_SIZE.search(stderr)
    if m and (int(m.group(2)), int(m.group(1))) != tuple(shape):
        raise VideoError(f"decoded frames are {m.group(1)}x{m.group(2)}, the probe said {shape[1]}x{shape[0]}",
                         path=path)


def _check_settings(codec: str, fps: float, size: int, reader: str = "c4c") -> None:
    if codec not in ("raw", "jpeg"):
        raise C4CError(f"unknown frame codec {codec!r}; use raw or jpeg")
    if fps <= 0 or size < 8:
        raise C4CError(f"invalid sampling settings fps={fps} size={size}")
    if reader not in READERS:
        raise C4CError(f"unknown frame reader {reader!r}", hint=f"choose one of: {', '.join(READERS)}")
    if reader == "reference" and not float(fps).is_integer():
        raise C4CError(f"the reference reader samples a whole number of frames per second, not fps={fps}",
                       hint="use --fps 1 (as the reference) or the c4c reader")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise VideoError("file not found", path=path)
    if not path.is_file():
        raise VideoError("not a regular file", path=path)
    if path.stat().st_size == 0:
        raise VideoError("empty file (0 bytes)", path=path)


def _finish(path: Path, frames, stamps: list[float], info: VideoInfo, errors: list[str],
            fps: float) -> SampledVideo:
    """Check what ffmpeg gave for one video and wrap it; VideoError when it is not usable."""
    if info.width is None:
        raise VideoError("no video stream (audio-only or data file)", path=path)
    if len(frames) == 0:
        raise VideoError("no frame could be decoded", path=path)
    if len(stamps) != len(frames):
        raise VideoError(f"ffmpeg reported {len(stamps)} timestamps for {len(frames)} frames", path=path)
    timestamps = np.asarray(stamps, dtype=np.float32)
    _check_not_truncated(path, info, float(timestamps[-1]), fps)
    return SampledVideo(frames=frames, timestamps=timestamps, info=info, decode_errors=errors)


def sample_videos(paths: list[str | Path], *, fps: float = 1.0, size: int = 224, codec: str = "raw",
                  jpeg_quality: int = 95, threads: int = 0, reader: str = "c4c") -> list[SampledVideo | VideoError]:
    """Sample several (short) videos with ONE ffmpeg process: one input, filter chain and output each.

    Starting ffmpeg costs about as much as decoding a few seconds of small video, so batching short
    clips pays. If the batch fails as a whole (one bad file fails every output), each video is
    retried on its own, so every result is what :func:`sample_video` would give (``reader`` as there;
    the reference reader first reads every video's frame rate and size with one more ffmpeg run).
    Returns, per path, a :class:`SampledVideo` or the :class:`VideoError` explaining the failure.
    """
    import tempfile

    import ffmpeg

    _check_settings(codec, fps, size, reader)
    paths = [Path(p) for p in paths]
    results: list[SampledVideo | VideoError | None] = [None] * len(paths)
    batch: list[int] = []
    for i, p in enumerate(paths):
        try:
            _check_file(p)
            batch.append(i)
        except VideoError as exc:
            results[i] = exc
    shapes = {i: (size, size) for i in batch}
    video_fps: dict[int, int | None] = {i: None for i in batch}
    if reader == "reference" and len(batch) > 1:
        batch = _probe_batch(paths, batch, fps, shapes, video_fps)
    single = [i for i in range(len(paths)) if results[i] is None and i not in batch]
    if len(batch) > 1:
        with tempfile.TemporaryDirectory(prefix="c4c-batch-") as tmp:
            outs = [Path(tmp) / f"{n}.rgb" for n in range(len(batch))]
            streams = [_chain(ffmpeg.input(input_url(paths[i]), threads=threads), fps, size, reader, video_fps[i])
                       .output(str(o), format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough")
                       for i, o in zip(batch, outs)]
            args = ffmpeg.get_args(ffmpeg.merge_outputs(*streams))
            proc = subprocess.run([ffmpeg_exe(), *_GLOBAL_ARGS, *args], stdin=subprocess.DEVNULL,
                                  capture_output=True)
            stderr = proc.stderr.decode("utf-8", errors="replace")
            if proc.returncode == 0:
                stamps = _showinfo_times_per_output(args, stderr, outs)
                infos = parse_infos(stderr, len(batch))
                for n, i in enumerate(batch):
                    raw = np.fromfile(outs[n], dtype=np.uint8)
                    height, width = shapes[i]
                    if raw.size % (height * width * 3):
                        break  # cannot happen with a clean exit; fall back to one by one
                    frames = raw.reshape(-1, height, width, 3)
                    if reader == "c4c" and codec == "raw":
                        data: np.ndarray | list = frames
                    else:
                        data = [_finish_frame(f, size, codec, jpeg_quality, reader) for f in frames]
                        data = (np.stack(data) if data else []) if codec == "raw" else data
                    try:
                        results[i] = _finish(paths[i], data, stamps[n], infos[n], [], fps)
                    except VideoError as exc:
                        results[i] = exc
                else:
                    batch = []
            if batch and proc.returncode != 0:
                log.debug("batch of %d failed; decoding one by one", len(batch))
    for i in [*single, *batch]:  # single videos, and every video of a failed batch
        if results[i] is None and interrupt.requested():  # Ctrl-C: the batch's ffmpeg was stopped, not the videos
            results[i] = VideoError("not decoded: interrupted", path=paths[i])
        elif results[i] is None:
            try:
                results[i] = sample_video(paths[i], fps=fps, size=size, codec=codec,
                                          jpeg_quality=jpeg_quality, threads=threads, reader=reader)
            except VideoError as exc:
                results[i] = exc
    return results  # type: ignore[return-value]


def _probe_batch(paths: list[Path], batch: list[int], fps: float, shapes: dict, video_fps: dict) -> list[int]:
    """Read the frame rate and size of every video of ``batch`` with one ffmpeg run (reference reader);
    fills ``shapes`` and ``video_fps`` and returns the videos that can be batched. The others (any
    problem, or every video after one that ffmpeg could not open) go one by one, which names the error."""
    cmd = [ffmpeg_exe(), *_GLOBAL_ARGS]
    for i in batch:
        cmd += ["-i", input_url(paths[i])]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
    infos = parse_infos(proc.stderr.decode("utf-8", errors="replace"), len(batch))
    ok = []
    for i, info in zip(batch, infos):
        if info.width is None or info.height is None:
            continue
        try:
            video_fps[i] = _reference_fps(paths[i], info, fps)
        except VideoError:
            continue
        shapes[i] = (info.height, info.width)
        ok.append(i)
    return ok


def _showinfo_times_per_output(args: list[str], stderr: str, outs: list[Path]) -> list[list[float]]:
    """Timestamps of each output of a batched command.

    ffmpeg names filter instances ``Parsed_<name>_<k>`` with k the filter's position in the graph;
    ffmpeg-python writes one filter per ``;``-separated segment, ending in its output label, and maps
    each label to an output file, so position -> label -> output file.
    """
    graph = args[args.index("-filter_complex") + 1]
    label_of_showinfo: dict[int, str] = {}
    for k, segment in enumerate(graph.split(";")):
        if "showinfo" in segment:
            label_of_showinfo[k] = segment[segment.rindex("[") + 1:-1]
    output_of_label: dict[str, int] = {}
    for j, a in enumerate(args):
        if a == "-map" and args[j + 1].startswith("["):
            target = next(x for x in args[j + 2:] if x.endswith(".rgb"))
            output_of_label[args[j + 1][1:-1]] = outs.index(Path(target))
    times: list[list[float]] = [[] for _ in outs]
    for m in _SHOWINFO_LINE.finditer(stderr):
        times[output_of_label[label_of_showinfo[int(m.group(1))]]].append(float(m.group(2)))
    return times


def parse_infos(stderr: str, count: int) -> list[VideoInfo]:
    """:func:`parse_info` for each of ``count`` inputs of one ffmpeg log."""
    header = stderr.split("Stream mapping:")[0]
    parts = re.split(r"Input #(\d+),", header)
    infos = [VideoInfo() for _ in range(count)]
    for k in range(1, len(parts) - 1, 2):
        n = int(parts[k])
        if n < count:
            infos[n] = parse_info(parts[k + 1].replace("Stream #" + str(n) + ":", "Stream #0:"))
    return infos


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
