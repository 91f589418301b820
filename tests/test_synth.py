"""The synthetic dataset generator: files, captions, determinism, resuming, and what the videos show."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from c4c import synth
from c4c.errors import C4CError
from c4c.synth import SynthConfig, video_writer
from c4c.video.ffmpeg_bin import ffmpeg_exe

WIDTH, HEIGHT, FPS, DURATION = 64, 48, 10, 2.0
FRAMES = 21  # round(2.0 * 10) + 1


def small_config(out_dir: Path, **changes) -> SynthConfig:
    return replace(SynthConfig(out_dir=out_dir, videos=8, seed=3, duration=DURATION, fps=FPS,
                               width=WIDTH, height=HEIGHT), **changes)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """One small dataset for the module: (config, result, synth.json content)."""
    config = small_config(tmp_path_factory.mktemp("synth") / "data")
    calls = []
    result = synth.run(config, on_video=lambda done, total: calls.append((done, total)))
    meta = json.loads((config.out_dir / "synth.json").read_text())
    return config, result, meta, calls


def decode(path: Path) -> np.ndarray:
    """All frames of a video file as [T, H, W, 3] uint8."""
    raw = subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(path),
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, HEIGHT, WIDTH, 3)


@pytest.fixture(scope="module")
def decoded(made):
    config, _, meta, _ = made
    return {v["video_id"]: decode(config.out_dir / v["file"]) for v in meta["videos"]}


def shape_mask(frames: np.ndarray) -> np.ndarray:
    """[T, H, W] pixels that are clearly not background."""
    diff = np.abs(frames.astype(np.int16) - np.array(synth.BACKGROUND, dtype=np.int16)).sum(-1)
    return diff > 90


def centroids(frames: np.ndarray) -> np.ndarray:
    """[T, 2] (x, y) centre of the non-background pixels of each frame."""
    out = []
    for mask in shape_mask(frames):
        ys, xs = np.nonzero(mask)
        out.append((xs.mean() + 0.5, ys.mean() + 0.5))
    return np.array(out)


def words(caption: str) -> list[str]:
    return re.findall(r"[a-z]+", caption.lower())


def read_annotations(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- files -------------------------------------------------------------------------------------

def test_run_writes_one_mp4_per_video_plus_annotations_and_metadata(made):
    config, result, meta, _ = made
    assert result.videos == 8 and result.encoded == 8
    assert sorted(p.name for p in (config.out_dir / "videos").iterdir()) == \
        [f"synth{i:04d}.mp4" for i in range(8)]
    assert all((config.out_dir / v["file"]).stat().st_size > 0 for v in meta["videos"])
    assert result.annotations == config.out_dir / "annotations.jsonl"
    assert meta["format"] == "c4c-synth" and meta["version"] == 1
    assert meta["config"]["seed"] == 3 and meta["frames"] == FRAMES
    assert "out_dir" not in meta["config"]


def test_progress_callback_sees_every_video(made):
    *_, calls = made
    assert calls == [(k, 8) for k in range(1, 9)]


def test_every_video_has_two_or_three_captions_in_its_split(made):
    config, result, meta, _ = made
    rows = read_annotations(result.annotations)
    assert len(rows) == result.captions
    assert set(rows[0]) == {"video_id", "caption", "split"}
    split_of = {v["video_id"]: v["split"] for v in meta["videos"]}
    for row in rows:
        assert row["split"] == split_of[row["video_id"]]
    for video_id in split_of:
        assert 2 <= sum(r["video_id"] == video_id for r in rows) <= 3
    assert result.splits == {s: sum(v["split"] == s for v in meta["videos"])
                             for s in ("train", "val", "test")}


def test_captions_name_colour_shape_and_motions_in_order(made):
    _, result, meta, _ = made
    video = {v["video_id"]: v for v in meta["videos"]}
    for row in read_annotations(result.annotations):
        v, w = video[row["video_id"]], words(row["caption"])
        assert v["colour"] in w and v["shape"] in w, row
        assert [t for t in w if t in synth.MOTIONS] == v["motions"], row
        assert ("then" in w) == (len(v["motions"]) == 2), row


# --- determinism and resuming -----------------------------------------------------------------

def test_same_seed_gives_identical_metadata_in_another_folder(made, tmp_path):
    config, *_ = made
    synth.run(replace(config, out_dir=tmp_path))
    for name in ("annotations.jsonl", "synth.json"):
        assert (tmp_path / name).read_bytes() == (config.out_dir / name).read_bytes()


def test_other_seed_gives_another_dataset(made, tmp_path):
    config, *_ = made
    other = synth.plan_videos(replace(config, out_dir=tmp_path, seed=4))
    assert other != synth.plan_videos(config)
    assert synth.annotation_lines(other) != (config.out_dir / "annotations.jsonl").read_text()


def test_rerun_restores_a_deleted_video_and_keeps_the_others(made, tmp_path):
    config, *_ = made
    copy = tmp_path / "data"
    shutil.copytree(config.out_dir, copy)
    videos = copy / "videos"
    (videos / "synth0002.mp4").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in videos.iterdir()}
    result = synth.run(replace(config, out_dir=copy))
    assert result.encoded == 1
    assert (videos / "synth0002.mp4").stat().st_size > 0
    assert {p.name: p.stat().st_mtime_ns for p in videos.iterdir() if p.name in before} == before
    assert not [p for p in videos.iterdir() if p.name.startswith(".")]  # no temp files left


def test_rerun_with_other_settings_into_the_same_folder_is_refused(made, tmp_path):
    config, *_ = made
    copy = tmp_path / "data"
    shutil.copytree(config.out_dir, copy)
    with pytest.raises(C4CError, match="different synthetic dataset"):
        synth.run(replace(config, out_dir=copy, seed=9))


# --- what the videos show ---------------------------------------------------------------------

def test_decoded_videos_have_the_configured_frame_count_and_size(decoded):
    for frames in decoded.values():
        assert frames.shape == (FRAMES, HEIGHT, WIDTH, 3)


def test_shape_has_its_captioned_colour(made, decoded):
    _, _, meta, _ = made
    for v in meta["videos"]:
        frames = decoded[v["video_id"]]
        mask = shape_mask(frames)
        assert mask.sum(axis=(1, 2)).min() > 30  # the shape is visible in every frame
        seen = np.median(frames[mask].astype(np.int16), axis=0)
        assert np.abs(seen - synth.COLOURS[v["colour"]]).max() < 40, (v["colour"], seen)


def test_shape_moves_in_the_captioned_directions(made, decoded):
    _, _, meta, _ = made
    half = (FRAMES - 1) // 2
    for v in meta["videos"]:
        c = centroids(decoded[v["video_id"]])
        ends = [0, FRAMES - 1] if len(v["motions"]) == 1 else [0, half, FRAMES - 1]
        for motion, a, b in zip(v["motions"], ends, ends[1:]):
            dx, dy = synth.MOTIONS[motion]
            step = c[b] - c[a]
            along = step[0] * dx + step[1] * dy
            across = abs(step[1]) if dx else abs(step[0])
            span = WIDTH if dx else HEIGHT
            assert 0.3 * span < along < 0.5 * span, (v["video_id"], motion, step)
            assert across < 1.5, (v["video_id"], motion, step)
            # monotone: no frame of the move steps back (slow moves may pause on a pixel)
            path = (c[a:b + 1] * (dx, dy)).sum(1)
            assert (np.diff(path) > -0.5).all(), (v["video_id"], motion)


def test_order_contrast_pair_decodes_to_reversed_frames(made, decoded):
    config, *_ = made
    pairs = synth.order_contrast_pairs(config.out_dir / "synth.json")
    assert pairs
    for original, backwards in pairs:
        a, b = decoded[original].astype(np.int16), decoded[backwards][::-1].astype(np.int16)
        assert np.abs(a - b).mean() < 1.5
        assert np.abs(centroids(decoded[original]) - centroids(decoded[backwards])[::-1]).max() < 0.5
        assert np.abs(a[0] - b[-1]).mean() > 5  # the videos themselves do differ


def test_reversed_video_renders_bit_identical_reversed_frames():
    config = SynthConfig(out_dir=Path("unused"), videos=12, seed=1)
    plan = {v.video_id: v for v in synth.plan_videos(config)}
    pairs = [(v.reversed_of, v) for v in plan.values() if v.reversed_of]
    assert pairs
    for original_id, backwards in pairs:
        forward = list(synth.render_frames(plan[original_id], config))
        assert len(forward) == synth.frame_count(config) == 41
        for f, g in zip(forward, reversed(list(synth.render_frames(backwards, config)))):
            assert np.array_equal(f, g)


def test_order_contrast_pairs_share_shape_colour_and_split_with_reversed_moves(made):
    config, _, meta, _ = made
    video = {v["video_id"]: v for v in meta["videos"]}
    for original, backwards in synth.order_contrast_pairs(config.out_dir / "synth.json"):
        o, r = video[original], video[backwards]
        assert r["reversed_of"] == original and o["reversed_of"] is None
        assert (o["shape"], o["colour"], o["split"]) == (r["shape"], r["colour"], r["split"])
        assert r["motions"] == [synth.OPPOSITE[m] for m in reversed(o["motions"])]
        assert r["start"] == o["waypoints"][-1]


# --- planning (no encoding) -------------------------------------------------------------------

@pytest.mark.parametrize("videos", [1, 2, 3, 4, 5, 8, 12, 13, 24, 40])
def test_splits_follow_fractions_and_never_split_a_pair(videos):
    config = SynthConfig(out_dir=Path("unused"), videos=videos, seed=videos)
    plan = synth.plan_videos(config)
    assert [v.video_id for v in plan] == [f"synth{i:04d}" for i in range(videos)]
    split = {v.video_id: v.split for v in plan}
    for v in plan:
        if v.reversed_of:
            assert split[v.reversed_of] == v.split
    counts = {s: sum(v.split == s for v in plan) for s in ("train", "val", "test")}
    assert counts == synth.split_sizes(videos, config.val_fraction, config.test_fraction)
    assert counts["train"] >= 1
    if videos >= 4:
        assert min(counts.values()) >= 1
    if videos >= 12:
        for s in ("val", "test"):
            assert any(v.reversed_of and v.split == s for v in plan), s
    paired = sum(2 for v in plan if v.reversed_of)
    if videos >= 8:
        assert 0.3 * videos <= paired <= 0.7 * videos


def test_split_sizes_worked_examples():
    assert synth.split_sizes(24, 0.15, 0.25) == {"train": 14, "val": 4, "test": 6}
    assert synth.split_sizes(4, 0.15, 0.25) == {"train": 2, "val": 1, "test": 1}
    assert synth.split_sizes(4, 0.45, 0.5) == {"train": 1, "val": 2, "test": 1}
    assert synth.split_sizes(10, 0.0, 0.2) == {"train": 8, "val": 0, "test": 2}
    assert synth.split_sizes(1, 0.15, 0.25) == {"train": 1, "val": 0, "test": 0}


def test_paths_stay_inside_the_frame_with_perpendicular_moves_of_the_right_length():
    config = SynthConfig(out_dir=Path("unused"), videos=40, seed=7, duration=1.0, fps=5)
    size = synth.shape_size(config)
    for v in synth.plan_videos(config):
        if len(v.motions) == 2:
            assert synth.MOTIONS[v.motions[0]][0] != synth.MOTIONS[v.motions[1]][0]  # perpendicular
        for motion, (x0, y0), (x1, y1) in zip(v.motions, v.waypoints, v.waypoints[1:]):
            dx, dy = synth.MOTIONS[motion]
            span = config.width if dx else config.height
            assert 0.349 * span <= (x1 - x0) * dx + (y1 - y0) * dy <= 0.451 * span
        for x, y in v.waypoints:
            assert size / 2 <= x <= config.width - size / 2 and size / 2 <= y <= config.height - size / 2
        for frame in synth.render_frames(v, config):
            border = np.concatenate([frame[0], frame[-1], frame[:, 0], frame[:, -1]])
            assert (border == synth.BACKGROUND).all(), v.video_id


def test_describe_reads_like_a_caption():
    entry = {"colour": "red", "shape": "circle", "motions": ["left", "up"]}
    assert synth.describe(entry) == "a red circle moves left then up"


@pytest.mark.parametrize("change", [
    {"videos": 0}, {"fps": 0}, {"duration": 0.0}, {"duration": 0.1}, {"width": 31}, {"width": 30},
    {"height": 33}, {"val_fraction": -0.1}, {"test_fraction": 1.0}, {"val_fraction": 0.5, "test_fraction": 0.5},
    {"crf": 60}, {"seed": -1}, {"videos": 2.5},
])
def test_invalid_config_is_a_user_error(change, tmp_path):
    with pytest.raises(C4CError):
        synth.run(replace(small_config(tmp_path), **change))
    assert not (tmp_path / "synth.json").exists()


def test_ffmpeg_failure_is_a_user_error_with_its_message_and_leaves_no_file(tmp_path, monkeypatch):
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\necho 'Unknown encoder libx264' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setattr(video_writer, "ffmpeg_exe", lambda: str(fake))
    out = tmp_path / "data"
    with pytest.raises(C4CError, match="exit code 3.*Unknown encoder libx264"):
        synth.run(small_config(out, videos=2))
    assert list((out / "videos").iterdir()) == []
    assert not (out / "annotations.jsonl").exists()


def test_reading_a_file_that_is_not_synth_metadata_is_a_user_error(tmp_path):
    bad = tmp_path / "synth.json"
    bad.write_text('{"format": "other"}')
    with pytest.raises(C4CError, match="c4c-synth"):
        synth.order_contrast_pairs(bad)
    with pytest.raises(C4CError, match="not found"):
        synth.order_contrast_pairs(tmp_path / "missing.json")


def test_rerun_removes_temp_files_of_a_killed_run(tmp_path):
    config = small_config(tmp_path / "s", videos=2)
    synth.run(config)
    stale = tmp_path / "s" / "videos" / ".synth0000.mp4.12345.part"
    stale.write_bytes(b"half an mp4")
    synth.run(config)
    assert not stale.exists()


def test_shapes_and_colours_can_be_restricted(tmp_path):
    config = small_config(tmp_path / "s", videos=6, shapes=("circle",), colours=("red",))
    plan = synth.plan_videos(config)
    assert {v.shape for v in plan} == {"circle"} and {v.colour for v in plan} == {"red"}
    with pytest.raises(C4CError, match="shapes must be"):
        synth.validate(small_config(tmp_path / "t", shapes=("hexagon",)))
