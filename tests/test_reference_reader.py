"""The reference reader: the frames the reference's OpenCV reader takes (frame numbers k * int(fps)),
with its pixels (RGB at native size, PIL bicubic short-side resize with the long side truncated,
torchvision's centre crop)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from c4c.errors import C4CError
from c4c.video.decode import (VideoError, reference_frame_indices, reference_size, sample_video,
                              sample_videos)
from helpers import encode_frames

NTSC, FILM = "30000/1001", "24000/1001"
RATES = {NTSC: 30000 / 1001, FILM: 24000 / 1001}


def textured_video(path: Path, frames: int, rate: str, size: tuple[int, int] = (80, 60), seed: int = 0) -> Path:
    """Smooth random texture that changes every frame (so a wrong frame or a shifted crop shows)."""
    w, h = size
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (frames, h // 4 + 1, w // 4 + 1, 3)).astype(np.float32)
    data = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)[:, :h, :w]
    return encode_frames(path, data.astype(np.uint8), rate)


def opencv_reference_reader(path: Path, size: int, fps: int = 1) -> tuple[list[int], np.ndarray]:
    """The reference's reader written out with OpenCV, PIL and torchvision (spec 1.1-1.2)."""
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless (the bench extra) is not installed")
    transforms = pytest.importorskip("torchvision.transforms", reason="torchvision is not installed")
    from PIL import Image

    transform = transforms.Compose([transforms.Resize(size, interpolation=Image.BICUBIC),
                                    transforms.CenterCrop(size)])
    cap = cv2.VideoCapture(str(path))
    count, video_fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), int(cap.get(cv2.CAP_PROP_FPS))
    seconds = (count + video_fps - 1) // video_fps
    interval = max(video_fps // fps, 1)
    offsets = list(range(0, video_fps, interval))[:fps]
    indices, frames = [], []
    for k in range(seconds + 1):
        for o in offsets:
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(k * video_fps) + o)
            ok, bgr = cap.read()
            if not ok:
                return indices, np.stack(frames)
            indices.append(int(k * video_fps) + o)
            frames.append(np.asarray(transform(Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))))
    return indices, np.stack(frames)


def frame_numbers(timestamps: np.ndarray, rate: str) -> list[int]:
    return [int(round(t * RATES[rate])) for t in timestamps]


# --------------------------------------------------------------------------------------- which frames

def test_reference_indices_follow_the_truncated_frame_rate():
    assert reference_frame_indices(300, 29) == list(range(0, 291, 29))            # 29.97 fps read as 29
    assert reference_frame_indices(315, 30) == list(range(0, 301, 30))            # 11 frames
    assert reference_frame_indices(300, 30) == list(range(0, 271, 30))            # 10 frames
    assert reference_frame_indices(61, 30, fps=2) == [0, 15, 30, 45, 60]
    assert reference_frame_indices(40, 3, fps=2) == [i for k in range(14) for i in (3 * k, 3 * k + 1) if i < 40]


@pytest.mark.parametrize(("rate", "expected"), [(NTSC, [0, 29, 58, 87]), (FILM, [0, 23, 46, 69, 92])])
def test_the_reference_reader_takes_frames_k_times_int_fps(tmp_path, rate, expected):
    path = textured_video(tmp_path / "v.mp4", 100, rate)
    v = sample_video(path, fps=1, size=32, reader="reference")
    assert frame_numbers(v.timestamps, rate) == expected
    np.testing.assert_allclose(v.timestamps, [i / RATES[rate] for i in expected], atol=1e-3)
    assert v.frames.shape == (len(expected), 32, 32, 3)


def test_the_c4c_reader_still_samples_true_times(tmp_path):
    path = textured_video(tmp_path / "v.mp4", 100, NTSC)
    assert frame_numbers(sample_video(path, fps=1, size=32).timestamps, NTSC) == [0, 30, 60, 90]


def test_two_frames_per_second_use_the_references_offsets(tmp_path):
    path = textured_video(tmp_path / "v.mp4", 70, NTSC)
    v = sample_video(path, fps=2, size=32, reader="reference")
    assert frame_numbers(v.timestamps, NTSC) == reference_frame_indices(70, 29, fps=2) == [0, 14, 29, 43, 58]


# --------------------------------------------------------------------------------------- which pixels

def test_resize_truncates_the_long_side_as_torchvision():
    assert reference_size(320, 240, 224) == (298, 224)     # 298.67 -> 298 (c4c's default rounds up)
    assert reference_size(240, 320, 224) == (224, 298)
    assert reference_size(100, 100, 32) == (32, 32)


@pytest.mark.parametrize(("rate", "size", "frame_size"), [
    (NTSC, 48, (80, 60)),      # landscape: 64x48 after the resize
    (FILM, 40, (60, 90)),      # portrait: 40x60
    (NTSC, 32, (87, 61)),      # odd sizes: 45.6 -> 45 wide, crop offset round(6.5) = 6
])
def test_pixels_equal_an_opencv_pil_torchvision_reader(tmp_path, rate, size, frame_size):
    path = textured_video(tmp_path / "v.mp4", 75, rate, size=frame_size, seed=1)
    indices, expected = opencv_reference_reader(path, size)
    v = sample_video(path, fps=1, size=size, reader="reference")
    assert frame_numbers(v.timestamps, rate) == indices
    assert v.frames.shape == expected.shape
    assert np.abs(v.frames.astype(np.float64) - expected).mean() <= 0.5


def test_jpeg_codec_encodes_the_reference_pixels(tmp_path):
    path = textured_video(tmp_path / "v.mp4", 40, NTSC)
    raw = sample_video(path, fps=1, size=32, reader="reference")
    jpg = sample_video(path, fps=1, size=32, codec="jpeg", reader="reference")
    assert len(jpg.frames) == raw.num_frames and all(isinstance(b, bytes) for b in jpg.frames)


# --------------------------------------------------------------------------------------- batches, errors

def test_batched_reference_sampling_equals_one_video_at_a_time(tmp_path, video_dir):
    paths = [textured_video(tmp_path / "a.mp4", 65, NTSC), textured_video(tmp_path / "b.mp4", 50, FILM, (60, 90)),
             video_dir / "clip_c.webm", video_dir / "tiny.mp4"]
    batched = sample_videos(paths, fps=1, size=32, reader="reference")
    for path, got in zip(paths, batched):
        alone = sample_video(path, fps=1, size=32, reader="reference")
        np.testing.assert_array_equal(got.frames, alone.frames)
        np.testing.assert_allclose(got.timestamps, alone.timestamps)


def test_a_bad_file_in_a_reference_batch_fails_alone(video_dir):
    names = ["clip_a.mp4", "notes.mp4", "audio_only.mp4", "cut.mp4", "empty.mp4", "tiny.mp4"]
    results = sample_videos([video_dir / n for n in names], fps=1, size=32, reader="reference")
    assert [type(r).__name__ for r in results] == ["SampledVideo", "VideoError", "VideoError", "VideoError",
                                                  "VideoError", "SampledVideo"]
    assert "moov atom" in results[1].problem and "no video stream" in results[2].problem
    assert "truncated" in results[3].problem and results[5].num_frames == 1


def test_reader_settings_are_checked(tmp_path, video_dir):
    with pytest.raises(C4CError, match="unknown frame reader 'opencv'"):
        sample_video(video_dir / "clip_a.mp4", reader="opencv")
    with pytest.raises(C4CError, match="whole number of frames per second"):
        sample_video(video_dir / "clip_a.mp4", fps=0.5, reader="reference")
    with pytest.raises(VideoError, match="cannot take 40 frames per second from a 30 fps video"):
        sample_video(video_dir / "clip_a.mp4", fps=40, reader="reference")
