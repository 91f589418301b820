"""`c4c extract`: folders and annotations in, a frame store out; failures, resume and crash safety."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from c4c.cli import main
from c4c.errors import C4CError
from c4c.stages.extract import ExtractConfig, run
from c4c.video.staging import parts_dir_for
from c4c.video.store import FrameStore
from helpers import BAD_IDS, GOOD_IDS, lavfi_video


def _cfg(source: Path, out: Path, **kw) -> ExtractConfig:
    kw.setdefault("size", 32)
    kw.setdefault("workers", 1)
    return ExtractConfig(source=source, out=out, **kw)


def test_folder_extraction_keeps_good_videos_and_lists_bad_ones(video_dir, tmp_path):
    out = tmp_path / "frames.h5"
    result = run(_cfg(video_dir, out, workers=2))
    assert result.done == len(GOOD_IDS) and result.skipped == 0
    assert {f.video_id for f in result.failed} == BAD_IDS
    with FrameStore(out) as fs:
        assert set(fs.ids()) == GOOD_IDS
        assert fs.num_frames("clip_a") == 2 and fs.num_frames("clip_b") == 3
        assert fs.num_frames("tiny") == 1
        assert fs.read("clip_c").shape == (2, 32, 32, 3)
        assert fs.info("clip_b")["source_fps"] == 25.0
    lines = (tmp_path / "frames.failed.tsv").read_text().splitlines()
    assert lines[0] == "video_id\tpath\treason"
    reasons = dict(line.split("\t")[0::2] for line in lines[1:])
    assert "empty file" in reasons["empty"] and "truncated" in reasons["cut"]
    assert "no video stream" in reasons["audio_only"]
    summary = json.loads((tmp_path / "frames.extract.json").read_text())
    assert summary["videos"] == {"total": 8, "done": 4, "skipped": 0, "failed": 4}
    assert summary["frames"] == result.frames == 2 + 3 + 2 + 1


def test_rerun_skips_finished_videos_and_picks_up_new_ones(video_dir, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("clip_a.mp4", "clip_b.mp4"):
        shutil.copy(video_dir / name, src / name)
    out = tmp_path / "frames.h5"
    assert run(_cfg(src, out)).done == 2
    again = run(_cfg(src, out))
    assert (again.done, again.skipped, again.failed) == (0, 2, [])
    shutil.copy(video_dir / "tiny.mp4", src / "tiny.mp4")
    third = run(_cfg(src, out))
    assert (third.done, third.skipped) == (1, 2)
    assert not (tmp_path / "frames.failed.tsv").exists()


def test_other_settings_on_an_existing_store_are_refused(video_dir, tmp_path):
    out = tmp_path / "frames.h5"
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(video_dir / "tiny.mp4", src)
    run(_cfg(src, out))
    with pytest.raises(C4CError, match="already holds frames extracted with"):
        run(_cfg(src, out, size=64))


def test_annotations_select_videos_and_report_missing_ones(video_dir, tmp_path):
    ann = tmp_path / "ann.jsonl"
    rows = [("clip_a", "a test pattern", "train"), ("clip_b", "another pattern", "test"),
            ("ghost", "a video nobody has", "test"), ("clip_a", "a second caption", "train")]
    ann.write_text("".join(json.dumps({"video_id": v, "caption": c, "split": s}) + "\n" for v, c, s in rows))
    result = run(_cfg(ann, tmp_path / "f.h5", dataset="jsonl", videos_dir=video_dir))
    assert result.done == 2
    assert [(f.video_id, f.reason.split(":")[0]) for f in result.failed] == [("ghost", "missing")]
    with FrameStore(tmp_path / "f.h5") as fs:
        assert fs.ids() == ["clip_a", "clip_b"]


def test_unsafe_video_ids_are_rejected(video_dir, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(video_dir / "tiny.mp4", src / "ok.mp4")
    shutil.copy(video_dir / "tiny.mp4", src / "a\\b.mp4")
    result = run(_cfg(src, tmp_path / "f.h5"))
    assert result.done == 1
    assert [f.video_id for f in result.failed] == ["a\\b"]
    ann = tmp_path / "evil.jsonl"
    ann.write_text(json.dumps({"video_id": "../../etc/passwd", "caption": "x", "split": "train"}) + "\n")
    with pytest.raises(C4CError, match="invalid video id"):
        run(_cfg(ann, tmp_path / "g.h5", dataset="jsonl", videos_dir=src))


def test_duplicate_ids_in_a_folder_are_reported(video_dir, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    shutil.copy(video_dir / "tiny.mp4", src / "same.mp4")
    shutil.copy(video_dir / "tiny.mp4", src / "sub" / "same.mp4")
    result = run(_cfg(src, tmp_path / "f.h5"))
    assert result.done == 1 and "duplicate video id" in result.failed[0].reason


def test_cli_exit_status_and_single_line_errors(video_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["extract", str(video_dir), "--out", str(tmp_path / "f.h5"), "--size", "32", "-q"])
    assert info.value.code == 1  # some videos failed
    with pytest.raises(SystemExit) as info:
        main(["extract", str(tmp_path / "nowhere"), "--out", str(tmp_path / "g.h5"), "-q"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "nowhere: source not found" in err and "Traceback" not in err


def _many_videos(folder: Path, n: int) -> None:
    folder.mkdir()
    first = lavfi_video(folder / "v00.mp4", 3.0, size="160x120")
    for i in range(1, n):
        shutil.copy(first, folder / f"v{i:02d}.mp4")


def _check_store_opens_and_is_whole(out: Path) -> set[str]:
    with FrameStore(out) as fs:
        ids = set(fs.ids())
        for vid in ids:
            frames = fs.read(vid)
            assert frames.shape == (3, 32, 32, 3), vid  # never half-written
            assert len(fs.timestamps(vid)) == 3
    return ids


@pytest.mark.slow
def test_sigkill_at_any_moment_loses_nothing_finished(tmp_path):
    src = tmp_path / "src"
    _many_videos(src, 60)
    out = tmp_path / "frames.h5"
    cmd = [sys.executable, "-m", "c4c.cli", "extract", str(src), "--out", str(out), "--size", "32",
           "--workers", "2", "--commit-every", "1", "--codec", "raw", "-q"]
    rng = np.random.default_rng(0)
    seen: set[str] = set()
    kills = 0
    for delay in list(rng.uniform(0.0, 0.5, size=12)):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        # Kill at a random moment once work has begun (start-up time varies with the machine's load).
        started = time.monotonic()
        while proc.poll() is None and not parts_dir_for(out).exists() and time.monotonic() - started < 60:
            time.sleep(0.01)
        time.sleep(delay)
        finished = proc.poll() is not None
        if not finished:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: parent and workers
            kills += 1
        proc.wait()
        if out.exists():
            now = _check_store_opens_and_is_whole(out)
            assert seen <= now, "a video that was complete was lost"
            seen = now
        if finished:
            break
    assert kills >= 3 and len(seen) > 0
    final = subprocess.run(cmd, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    assert _check_store_opens_and_is_whole(out) == {f"v{i:02d}" for i in range(60)}
    assert not parts_dir_for(out).exists()
    assert not list(tmp_path.glob("frames.h5.*"))  # no temp copies left


def test_small_files_are_grouped_and_large_ones_go_alone(tmp_path):
    from c4c.stages.extract import Job, work_units

    sizes = [("a", 10), ("b", 10), ("big", 100)] + [(f"s{i}", 10) for i in range(7)]
    jobs = []
    for name, size in sizes:
        (tmp_path / f"{name}.mp4").write_bytes(b"x" * size)
        jobs.append(Job(name, tmp_path / f"{name}.mp4"))
    units = [[vid for vid, _ in u] for u in work_units(jobs, batch=2, max_bytes=50)]
    assert units == [["a", "b"], ["big"], ["s0", "s1"], ["s2", "s3"], ["s4", "s5"], ["s6"]]
    assert all(len(u) == 1 for u in work_units(jobs, batch=1, max_bytes=50))
    # 9 small files and 2 workers: pairs would leave fewer than 4 units per worker
    assert all(len(u) == 1 for u in work_units(jobs, batch=2, max_bytes=50, workers=2))


def test_batch_size_does_not_change_what_is_stored(video_dir, tmp_path):
    one = run(_cfg(video_dir, tmp_path / "one.h5", batch=1, codec="raw"))
    many = run(_cfg(video_dir, tmp_path / "many.h5", batch=8, codec="raw", workers=2))
    assert {f.video_id for f in one.failed} == {f.video_id for f in many.failed} == BAD_IDS
    with FrameStore(tmp_path / "one.h5") as a, FrameStore(tmp_path / "many.h5") as b:
        assert a.ids() == b.ids()
        for vid in a.ids():
            np.testing.assert_array_equal(a.read(vid), b.read(vid))
