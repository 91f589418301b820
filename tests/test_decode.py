"""Frame sampling with ffmpeg: which frames, what size, which failures."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from c4c.video.decode import VideoError, sample_video
from c4c.video.ffmpeg_bin import ffmpeg_exe
from helpers import brightness_video, encode_frames, lavfi_video


def decode_jpeg(data: bytes) -> np.ndarray:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def _levels(frames: np.ndarray) -> list[int]:
    return [int(round(f.mean() / 2)) for f in frames]


def test_one_fps_takes_frame_k_times_fps_like_the_reference(tmp_path):
    # 30 fps, 95 frames: the reference reads frames 0, 30, 60, 90.
    v = sample_video(brightness_video(tmp_path / "b.mp4", 95, 30), fps=1, size=32, codec="raw")
    assert _levels(v.frames) == [0, 30, 60, 90]
    np.testing.assert_allclose(v.timestamps, [0, 1, 2, 3], atol=1e-4)


def test_two_fps_takes_two_frames_per_second(tmp_path):
    v = sample_video(brightness_video(tmp_path / "b.mp4", 61, 30), fps=2, size=32, codec="raw")
    assert _levels(v.frames) == [0, 15, 30, 45, 60]


def test_non_integer_frame_rate_samples_by_time(tmp_path):
    path = lavfi_video(tmp_path / "ntsc.mp4", 3.0, rate="30000/1001")
    v = sample_video(path, fps=1, size=32)
    np.testing.assert_allclose(v.timestamps, [0, 1.001, 2.002], atol=1e-3)
    assert v.info.fps == pytest.approx(29.97)


def test_video_shorter_than_one_interval_gives_one_frame(tmp_path):
    v = sample_video(lavfi_video(tmp_path / "s.mp4", 0.2), fps=1, size=32)
    assert v.num_frames == 1 and v.timestamps[0] == 0


def test_output_is_size_by_size_rgb_and_centre_cropped(tmp_path):
    # 160x80 frame: left quarter red, middle half green, right quarter blue. Resizing the short side
    # to 40 gives 80x40; the centre 40x40 crop must be all green.
    frame = np.zeros((80, 160, 3), np.uint8)
    frame[:, :40] = (255, 0, 0)
    frame[:, 40:120] = (0, 255, 0)
    frame[:, 120:] = (0, 0, 255)
    path = encode_frames(tmp_path / "bars.mp4", np.stack([frame] * 5), 5)
    v = sample_video(path, fps=1, size=40, codec="raw")
    assert v.frames.shape == (1, 40, 40, 3) and v.frames.dtype == np.uint8
    inner = v.frames[0, :, 2:-2].reshape(-1, 3).mean(0)
    assert inner[1] > 240 and inner[0] < 15 and inner[2] < 15
    assert (v.info.width, v.info.height) == (160, 80)


def test_rotation_metadata_is_honoured(tmp_path):
    # A red band along the top of a landscape frame; rotated by 90 degrees it must end up on a side.
    frame = np.zeros((60, 80, 3), np.uint8)
    frame[:10] = (255, 0, 0)
    plain = encode_frames(tmp_path / "plain.mp4", np.stack([frame] * 3), 3)
    path = tmp_path / "rot.mp4"  # same pixels, rotation only in the container's display matrix
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-display_rotation", "90",
                    "-i", str(plain), "-c", "copy", str(path)], check=True)
    v = sample_video(path, fps=1, size=60, codec="raw")
    f = v.frames[0].astype(int)
    side = max(f[:, :5, 0].mean(), f[:, -5:, 0].mean())
    assert side > 200 and f[:5, 20:40, 0].mean() < 60
    assert v.info.rotation in (90, 270) and (v.info.width, v.info.height) == (60, 80)


def test_jpeg_frames_round_trip_close_to_raw(tmp_path):
    path = lavfi_video(tmp_path / "j.mp4", 2.0)
    raw = sample_video(path, fps=1, size=64, codec="raw")
    jpg = sample_video(path, fps=1, size=64, codec="jpeg", jpeg_quality=95)
    decoded = np.stack([decode_jpeg(b) for b in jpg.frames])
    assert decoded.shape == raw.frames.shape
    assert np.abs(decoded.astype(int) - raw.frames.astype(int)).mean() < 4
    assert jpg.nbytes < raw.nbytes / 2


@pytest.mark.parametrize("name,reason", [
    ("empty.mp4", "empty file"),
    ("notes.mp4", "moov atom not found"),
    ("audio_only.mp4", "no video stream"),
    ("cut.mp4", "truncated"),
    ("absent.mp4", "file not found"),
])
def test_bad_inputs_raise_with_a_reason(video_dir, name, reason):
    with pytest.raises(VideoError) as info:
        sample_video(video_dir / name)
    assert reason in info.value.problem
    assert name in str(info.value)


def test_garbage_bytes_are_not_a_video(tmp_path):
    p = tmp_path / "noise.mkv"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError):
        sample_video(p)


def test_batched_sampling_equals_one_process_per_video(video_dir, tmp_path):
    from c4c.video.decode import sample_videos

    paths = [video_dir / n for n in ("clip_a.mp4", "clip_b.mp4", "clip_c.webm", "tiny.mp4")]
    batched = sample_videos(paths, fps=1, size=32, codec="raw")
    for path, got in zip(paths, batched):
        alone = sample_video(path, fps=1, size=32, codec="raw")
        np.testing.assert_array_equal(got.frames, alone.frames)
        np.testing.assert_allclose(got.timestamps, alone.timestamps)
        assert got.info == alone.info


def test_a_bad_file_in_a_batch_fails_alone(video_dir):
    from c4c.video.decode import sample_videos

    names = ["clip_a.mp4", "notes.mp4", "cut.mp4", "empty.mp4", "tiny.mp4"]
    results = sample_videos([video_dir / n for n in names], fps=1, size=32)
    kinds = [type(r).__name__ for r in results]
    assert kinds == ["SampledVideo", "VideoError", "VideoError", "VideoError", "SampledVideo"]
    assert "truncated" in results[2].problem and results[4].num_frames == 1
