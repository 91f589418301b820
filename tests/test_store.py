"""The HDF5 frame store: layout, validation, staged parts and atomic merges."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from c4c.errors import C4CError
from c4c.video import layout, staging, store
from c4c.video.decode import SampledVideo, VideoInfo, encode_jpeg


def _sample(t: int, size: int = 8, codec: str = "raw", seed: int = 0) -> SampledVideo:
    frames = np.random.default_rng(seed).integers(0, 256, (t, size, size, 3), dtype=np.uint8)
    data = frames if codec == "raw" else [encode_jpeg(f, 95) for f in frames]
    return SampledVideo(frames=data, timestamps=np.arange(t, dtype=np.float32),
                        info=VideoInfo(duration=float(t), fps=30.0, width=32, height=24))


def _store_with(tmp_path, videos: dict[str, int], codec: str = "raw"):
    settings = layout.StoreSettings(fps=1.0, size=8, codec=codec)
    path = tmp_path / "frames.h5"
    layout.create_store(path, settings)
    parts = staging.parts_dir_for(path)
    for i, (vid, t) in enumerate(videos.items()):
        staging.write_part(parts, vid, _sample(t, codec=codec, seed=i), settings, f"/src/{vid}.mp4")
    staging.merge_parts(path, staging.list_parts(parts))
    return path, settings


def test_layout_matches_the_documented_contract(tmp_path):
    path, _ = _store_with(tmp_path, {"a": 3})
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "c4c-frames" and f.attrs["format_version"] == 1
        assert f.attrs["codec"] == "raw" and f.attrs["size"] == 8 and f.attrs["fps"] == 1.0
        g = f["videos/a"]
        assert g["frames"].shape == (3, 8, 8, 3) and g["frames"].dtype == np.uint8
        assert g["timestamps"].dtype == np.float32
        assert g.attrs["source_path"] == "/src/a.mp4" and g.attrs["num_frames"] == 3


def test_read_returns_requested_frames_in_requested_order(tmp_path):
    path, _ = _store_with(tmp_path, {"a": 5})
    expected = _sample(5).frames
    with store.FrameStore(path) as fs:
        np.testing.assert_array_equal(fs.read("a"), expected)
        np.testing.assert_array_equal(fs.read("a", [4, 0, 4, 2]), expected[[4, 0, 4, 2]])
        np.testing.assert_array_equal(fs.timestamps("a"), [0, 1, 2, 3, 4])
        assert fs.ids() == ["a"] and "a" in fs and len(fs) == 1
        with pytest.raises(IndexError):
            fs.read("a", [5])


def test_jpeg_store_decodes_to_rgb(tmp_path):
    path, _ = _store_with(tmp_path, {"a": 2}, codec="jpeg")
    with store.FrameStore(path) as fs:
        frames = fs.read("a")
    assert frames.shape == (2, 8, 8, 3) and frames.dtype == np.uint8
    assert np.abs(frames.astype(int) - _sample(2).frames.astype(int)).mean() < 40


def test_merge_never_adds_a_video_twice(tmp_path):
    path, settings = _store_with(tmp_path, {"a": 2, "b": 3})
    parts = staging.parts_dir_for(path)
    # a part left behind by a run killed after its merge renamed the store
    staging.write_part(parts, "a", _sample(7), settings, "/src/a.mp4")
    added = staging.merge_parts(path, staging.list_parts(parts))
    assert added == 0
    with store.FrameStore(path) as fs:
        assert fs.ids() == ["a", "b"] and fs.num_frames("a") == 2
    assert not list(parts.glob("*.h5"))


def test_leftover_temp_parts_are_removed(tmp_path):
    parts = tmp_path / "x.parts"
    parts.mkdir()
    (parts / "abc.h5.tmp-123").write_bytes(b"half")
    (parts / "bad.h5").write_bytes(b"not hdf5")
    assert staging.list_parts(parts) == {}
    assert not any(parts.iterdir())


def test_a_file_that_is_not_a_store_is_rejected(tmp_path):
    p = tmp_path / "x.h5"
    p.write_text("hello")
    with pytest.raises(C4CError, match="not a readable HDF5 file"):
        store.FrameStore(p)
    with h5py.File(tmp_path / "y.h5", "w") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(C4CError, match="not a c4c frame store"):
        store.FrameStore(tmp_path / "y.h5")
    with pytest.raises(C4CError, match="not found"):
        store.FrameStore(tmp_path / "missing.h5")


def test_a_newer_format_version_is_refused(tmp_path):
    path, _ = _store_with(tmp_path, {"a": 1})
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(C4CError, match="newer than this c4c supports"):
        store.FrameStore(path)


def test_missing_video_is_a_clear_error(tmp_path):
    path, _ = _store_with(tmp_path, {"a": 1})
    with store.FrameStore(path) as fs, pytest.raises(C4CError, match="'zzz' is not in the frame store"):
        fs.read("zzz")


def test_store_survives_pickling_for_loader_workers(tmp_path):
    import pickle

    path, _ = _store_with(tmp_path, {"a": 2})
    fs = store.FrameStore(path)
    fs.read("a")
    clone = pickle.loads(pickle.dumps(fs))
    np.testing.assert_array_equal(clone.read("a"), fs.read("a"))


def test_reading_scattered_frames_of_a_long_video(tmp_path):
    path, _ = _store_with(tmp_path, {"long": 60})
    expected = _sample(60).frames
    with store.FrameStore(path) as fs:
        np.testing.assert_array_equal(fs.read("long", [59, 0, 30]), expected[[59, 0, 30]])
        np.testing.assert_array_equal(fs.read("long", [3, 4, 5]), expected[[3, 4, 5]])


def test_a_frame_that_does_not_match_its_checksum_is_an_error_naming_the_store(tmp_path):
    path, _ = _store_with(tmp_path, {"a": 3})
    with h5py.File(path, "r+") as f:
        f["videos/a/frames"][1, 0, 0, 0] ^= 0xFF
    with store.FrameStore(path) as fs:
        np.testing.assert_array_equal(fs.read("a", [0, 2]), _sample(3).frames[[0, 2]])  # the others still read
        with pytest.raises(C4CError, match="frame 1 does not match its checksum") as info:
            fs.read("a")
    assert info.value.path == str(path)


def test_links_inside_a_store_are_refused(tmp_path):
    path, _ = _store_with(tmp_path, {"a": 2, "b": 2})
    with h5py.File(path, "r+") as f:
        del f["videos/b"]
        f["videos/b"] = h5py.SoftLink("/videos/a")
    with store.FrameStore(path) as fs:
        assert fs.read("a").shape == (2, 8, 8, 3)
        with pytest.raises(C4CError, match="video 'b' is a soft link to /videos/a"):
            fs.read("b")


def test_one_writer_lock_per_store_and_none_left_after(tmp_path):
    from c4c.lock import lock_path, writer_lock

    target = tmp_path / "frames.h5"
    with writer_lock([target]):
        assert lock_path(target).read_text().startswith(f"pid {os.getpid()} on host ")
        with pytest.raises(C4CError, match=f"another c4c extract is writing it \\(pid {os.getpid()} "):
            with writer_lock([target]):
                pass
    assert not lock_path(target).exists()
    with writer_lock([target]):  # free again
        pass


def test_a_merge_that_would_not_fit_is_refused_before_it_starts(tmp_path, monkeypatch):
    from c4c import atomic

    path, settings = _store_with(tmp_path, {"a": 2})
    parts = staging.parts_dir_for(path)
    staging.write_part(parts, "b", _sample(3), settings, "/src/b.mp4")
    before = path.read_bytes()
    monkeypatch.setattr(atomic, "free_bytes", lambda folder: 1000)
    with pytest.raises(atomic.DiskFull, match="1 video finished and kept in .*parts/; free space and re-run"):
        staging.merge_parts(path, staging.list_parts(parts))
    assert path.read_bytes() == before and len(staging.list_parts(parts)) == 1
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def _damage_frames(part, video_id: str) -> None:
    with h5py.File(part, "r+") as f:
        data = f[f"videos/{video_id}/frames"]
        data[0] = 255 - data[0]


def test_parts_of_an_earlier_run_are_read_back_but_this_runs_are_trusted(tmp_path):
    settings = layout.StoreSettings(fps=1.0, size=8, codec="raw")
    path = tmp_path / "frames.h5"
    layout.create_store(path, settings)
    parts = staging.parts_dir_for(path)
    old = staging.write_part(parts, "old", _sample(3, seed=1), settings, "/src/old.mp4")
    new = staging.write_part(parts, "new", _sample(3, seed=2), settings, "/src/new.mp4")
    _damage_frames(old, "old")  # damaged after an earlier run wrote it: found and dropped
    _damage_frames(new, "new")  # "written by this run": not read back (the reader's checksums still catch it)
    listed = staging.list_parts(parts, {"new": new})
    assert listed == {"old": old, "new": new}
    assert staging.merge_parts(path, listed, trusted={"new"}) == 1
    with store.FrameStore(path) as fs:
        assert fs.ids() == ["new"]
        with pytest.raises(C4CError, match="checksum"):
            fs.read("new")


@pytest.mark.parametrize("lengths", [[7], [5, 5, 5], [3, 9, 4]])
def test_jpeg_rows_of_any_lengths_are_stored_whole(tmp_path, lengths):
    settings = layout.StoreSettings(fps=1.0, size=8, codec="jpeg")
    rows = [bytes(range(i, i + n)) for i, n in enumerate(lengths)]
    sample = SampledVideo(frames=rows, timestamps=np.arange(len(rows), dtype=np.float32),
                          info=VideoInfo(duration=3.0, fps=30.0, width=8, height=8))
    with h5py.File(tmp_path / "x.h5", "w") as f:
        layout.write_video(f.create_group("v"), sample, settings, "/src/v.mp4")
    with h5py.File(tmp_path / "x.h5", "r") as f:
        assert [bytes(r) for r in f["v/frames"][()]] == rows
