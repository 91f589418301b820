"""Shared fixtures: small videos made with the bundled ffmpeg, built once per session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on the network in tests

import subprocess
from pathlib import Path

import numpy as np
import pytest

from c4c.video.ffmpeg_bin import ffmpeg_exe


def encode_frames(path: Path, frames: np.ndarray, fps: float, *, extra_out: list[str] | None = None,
                  extra_in: list[str] | None = None) -> Path:
    """Write ``frames`` (uint8 [T, H, W, 3]) as an H.264 file with exactly one frame per input frame."""
    t, h, w, _ = frames.shape
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *(extra_in or []),
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-",
           "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv444p",
           *(extra_out or []), str(path)]
    subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), check=True)
    return path


def lavfi_video(path: Path, seconds: float, *, size: str = "320x240", rate: str = "30",
                extra_out: list[str] | None = None) -> Path:
    """A test-pattern video of the given length, size and frame rate."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
           "-i", f"testsrc2=size={size}:rate={rate}", "-t", str(seconds), "-c:v", "libx264",
           "-preset", "ultrafast", "-pix_fmt", "yuv420p", *(extra_out or []), str(path)]
    subprocess.run(cmd, check=True)
    return path


def brightness_video(path: Path, frames: int, fps: float, size: tuple[int, int] = (64, 48)) -> Path:
    """Frame i is a flat grey of level 2*i (so the sampled frame index can be read back)."""
    w, h = size
    levels = (np.arange(frames) * 2).clip(0, 255).astype(np.uint8)
    data = np.broadcast_to(levels[:, None, None, None], (frames, h, w, 3)).copy()
    return encode_frames(path, data, fps)


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory) -> Path:
    """A folder of good and bad inputs used by the extraction tests."""
    d = tmp_path_factory.mktemp("videos")
    lavfi_video(d / "clip_a.mp4", 2.0)
    lavfi_video(d / "clip_b.mp4", 3.0, size="160x120", rate="25")
    lavfi_video(d / "clip_c.webm", 2.0, extra_out=["-c:v", "libvpx-vp9", "-b:v", "100k"])
    lavfi_video(d / "tiny.mp4", 0.3)  # shorter than one sampling interval
    (d / "empty.mp4").write_bytes(b"")
    (d / "notes.mp4").write_text("this is not a video\n")
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", "sine=f=440:d=2", str(d / "audio_only.mp4")], check=True)
    full = lavfi_video(d.parent / "full.mp4", 12.0, extra_out=["-movflags", "+faststart"])
    data = full.read_bytes()
    (d / "cut.mp4").write_bytes(data[: len(data) // 2])
    (d / "README.txt").write_text("not a video extension: ignored\n")
    return d


GOOD_IDS = {"clip_a", "clip_b", "clip_c", "tiny"}
BAD_IDS = {"empty", "notes", "audio_only", "cut"}
