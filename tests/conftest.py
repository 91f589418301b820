"""Shared fixtures: small videos made with the bundled ffmpeg, built once per session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on the network in tests

import subprocess
from pathlib import Path

import pytest

from c4c.video.ffmpeg_bin import ffmpeg_exe
from helpers import lavfi_video


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


