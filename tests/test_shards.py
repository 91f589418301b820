"""Frame-store shard sets: `c4c extract --shards`, several machines, the manifest, and FrameStore over shards."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from c4c import synth
from c4c.cli import main
from c4c.errors import C4CError
from c4c.stages import extract
from c4c.video import shards, store
from c4c.video.store import FrameStore


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("shard-videos")
    synth.run(synth.SynthConfig(out_dir=d, videos=10, seed=3, duration=2.0, fps=4, width=64, height=48))
    return d / "videos"


@pytest.fixture(scope="module")
def single(videos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single") / "frames.h5"
    assert extract.run(_cfg(videos, out)).ok
    return out


@pytest.fixture(scope="module")
def sharded(videos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sharded") / "frames"
    result = extract.run(_cfg(videos, out, shards=3))
    assert result.ok and result.manifest == out / "manifest.json"
    return out


def _cfg(source: Path, out: Path, **kw) -> extract.ExtractConfig:
    kw.setdefault("size", 16)
    kw.setdefault("fps", 2.0)
    kw.setdefault("workers", 1)
    return extract.ExtractConfig(source=source, out=out, **kw)


def _copy(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(folder, target)
    return target


def test_shard_of_is_sha1_mod_count_worked_out():
    digest = hashlib.sha1(b"synth0003").digest()
    assert shards.shard_of("synth0003", 7) == int.from_bytes(digest[:8], "big") % 7
    # the assignment is a file-format contract: these values must never change
    assert [shards.shard_of(f"synth{i:04d}", 3) for i in range(6)] == [2, 1, 0, 0, 2, 2]
    assert shards.shard_name(3, 16) == "frames-00003-of-00016.h5"


def test_a_shard_set_reads_back_exactly_like_one_file(single, sharded):
    with FrameStore(single) as one, FrameStore(sharded) as many:
        assert many.sharded and not one.sharded
        assert many.ids() == one.ids() and len(many) == len(one) == 10
        assert many.settings == one.settings
        for vid in one.ids():
            np.testing.assert_array_equal(many.read(vid), one.read(vid))
            np.testing.assert_array_equal(many.read(vid, [2, 0]), one.read(vid, [2, 0]))
            np.testing.assert_array_equal(many.timestamps(vid), one.timestamps(vid))
            assert many.info(vid)["num_frames"] == one.num_frames(vid) == many.num_frames(vid)
            assert vid in many


def test_each_video_is_stored_in_the_shard_its_id_hashes_to(sharded):
    for k in range(3):
        with h5py.File(sharded / shards.shard_name(k, 3), "r") as f:
            assert f.attrs["format"] == "c4c-frames"
            assert all(shards.shard_of(vid, 3) == k for vid in f["videos"])
    manifest = json.loads((sharded / "manifest.json").read_text())
    assert manifest["format"] == "c4c-frames-shards" and manifest["format_version"] == 1
    assert manifest["num_shards"] == 3 and manifest["videos"] == 10
    assert [s["file"] for s in manifest["shards"]] == [shards.shard_name(k, 3) for k in range(3)]
    assert manifest["settings"] == {"fps": 2.0, "size": 16, "codec": "jpeg", "jpeg_quality": 95, "reader": "c4c"}


def test_the_manifest_path_opens_the_set_too(sharded):
    with FrameStore(sharded / "manifest.json") as fs:
        assert len(fs) == 10


def test_shard_files_are_opened_only_when_one_of_their_videos_is_read(sharded, monkeypatch):
    fs = FrameStore(sharded)
    assert len(fs) == 10 and not fs._files  # ids come from the manifest
    vid = fs.ids()[0]
    fs.read(vid)
    assert list(fs._files) == [shards.shard_of(vid, 3)]
    monkeypatch.setattr(store, "_MAX_OPEN_SHARDS", 1)
    for v in fs.ids():
        fs.read(v)
    assert len(fs._files) == 1


def test_a_shard_store_survives_pickling_for_loader_workers(sharded):
    fs = FrameStore(sharded)
    vid = fs.ids()[3]
    first = fs.read(vid)
    clone = pickle.loads(pickle.dumps(fs))
    assert not clone._files
    np.testing.assert_array_equal(clone.read(vid), first)


def test_machines_extract_their_own_shards_and_the_last_writes_the_manifest(videos, single, tmp_path):
    out = tmp_path / "frames"
    first = extract.run(_cfg(videos, out, shards=3, shard_index=(0,)))
    assert first.manifest is None and not (out / "manifest.json").exists()
    assert [p.name for p in first.shards] == [shards.shard_name(0, 3)]
    assert first.summary_json == out / "extract-shards-0.json"
    with pytest.raises(C4CError, match="extract --write-manifest"):
        FrameStore(out)
    second = extract.run(_cfg(videos, out, shard_index=(1, 2)))  # the set's size is read from the folder
    assert second.manifest == out / "manifest.json"
    assert first.done + second.done == 10
    with FrameStore(out) as fs, FrameStore(single) as one:
        assert fs.ids() == one.ids()
    assert not list(out.glob("*.running")) and not list(out.glob("*.parts"))


def test_a_shard_still_being_extracted_holds_back_the_manifest(videos, tmp_path):
    out = tmp_path / "frames"
    out.mkdir()
    (out / (shards.shard_name(2, 3) + ".running")).write_text("otherhost pid 7\n")
    result = extract.run(_cfg(videos, out, shards=3, shard_index=(0, 1)))
    assert result.manifest is None
    state = extract.shard_set_state(out)[1]
    assert any("otherhost" in reason for reason in state) and any("missing" in reason for reason in state)
    (out / (shards.shard_name(2, 3) + ".running")).unlink()
    assert extract.run(_cfg(videos, out, shard_index=(2,))).manifest is not None


def test_rerunning_a_shard_set_skips_finished_videos(videos, sharded, tmp_path):
    out = _copy(sharded, tmp_path)
    again = extract.run(_cfg(videos, out))
    assert (again.done, again.skipped) == (0, 10)
    assert again.manifest is not None


def test_index_rebuilds_the_manifest_from_the_shard_files(sharded, tmp_path):
    out = _copy(sharded, tmp_path)
    (out / "manifest.json").unlink()
    assert shards.index_shards(out) == out / "manifest.json"
    assert json.loads((out / "manifest.json").read_text()) == json.loads((sharded / "manifest.json").read_text())


def test_index_refuses_a_video_stored_in_two_shards(sharded, tmp_path):
    out = _copy(sharded, tmp_path)
    with h5py.File(out / shards.shard_name(0, 3), "r") as src, h5py.File(out / shards.shard_name(1, 3), "r+") as dst:
        vid = sorted(src["videos"])[0]
        src.copy(src["videos"][vid], dst["videos"], name=vid)
    with pytest.raises(C4CError, match=f"'{vid}' is stored in two shards"):
        shards.write_manifest(out)


def test_index_needs_every_shard(sharded, tmp_path):
    out = _copy(sharded, tmp_path)
    (out / shards.shard_name(1, 3)).unlink()
    with pytest.raises(C4CError, match="1 of 3 shard files are missing"):
        shards.index_shards(out)


def _edit_manifest(folder: Path, change) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_a_missing_shard_file_is_named(sharded, tmp_path):
    out = _copy(sharded, tmp_path)
    (out / shards.shard_name(2, 3)).unlink()
    with pytest.raises(C4CError, match="frames-00002-of-00003.h5 named by the manifest is missing"):
        FrameStore(out)


def test_a_shard_changed_after_the_manifest_is_reported_as_stale(sharded, tmp_path):
    out = _copy(sharded, tmp_path)
    with open(out / shards.shard_name(1, 3), "ab") as f:
        f.write(b"\0" * 10)
    with pytest.raises(C4CError, match="changed since the manifest was written") as info:
        FrameStore(out)
    assert info.value.path.endswith(shards.shard_name(1, 3)) and "--write-manifest" in info.value.hint


def test_a_video_listed_in_two_shards_is_refused(sharded, tmp_path):
    out = _copy(sharded, tmp_path)
    _edit_manifest(out, lambda d: d["shards"][1]["videos"].append(d["shards"][0]["videos"][0]))
    with pytest.raises(C4CError, match="is listed in two shards"):
        FrameStore(out)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(format_version=2), "newer than this c4c supports"),
    (lambda d: d.update(format="c4c-frames"), "not a c4c shard manifest"),
    (lambda d: d.pop("settings"), "malformed shard manifest"),
    (lambda d: d.update(num_shards=4), "malformed shard manifest"),
    (lambda d: d["shards"][0].update(file="../frames.h5"), "not a plain file name"),
])
def test_a_bad_manifest_is_a_clear_error(sharded, tmp_path, change, message):
    out = _copy(sharded, tmp_path)
    _edit_manifest(out, change)
    with pytest.raises(C4CError, match=message) as info:
        FrameStore(out)
    assert info.value.path == str(out / "manifest.json")


def test_a_shard_made_with_other_settings_than_its_manifest_is_refused_on_read(sharded, tmp_path):
    out = _copy(sharded, tmp_path)
    _edit_manifest(out, lambda d: d["settings"].update(size=32))
    fs = FrameStore(out)
    with pytest.raises(C4CError, match="shard made with fps=2 size=16"):
        fs.read(fs.ids()[0])


def test_a_manifest_that_lies_about_a_video_names_the_shard(sharded, tmp_path):
    out = _copy(sharded, tmp_path)
    _edit_manifest(out, lambda d: d["shards"][0]["videos"].append("ghost"))
    fs = FrameStore(out)
    with pytest.raises(C4CError, match="'ghost' in this shard, but it is not there"):
        fs.read("ghost")
    with pytest.raises(C4CError, match="'nobody' is not in the frame store"):
        fs.read("nobody")


def test_shard_options_are_checked(videos, single, sharded, tmp_path):
    with pytest.raises(C4CError, match="holds a set of 3 shards"):
        extract.run(_cfg(videos, _copy(sharded, tmp_path), shards=4))
    with pytest.raises(C4CError, match="is a file"):
        extract.run(_cfg(videos, single, shards=2))
    with pytest.raises(C4CError, match="must name shards 0..1"):
        extract.run(_cfg(videos, tmp_path / "x", shards=2, shard_index=(2,)))
    with pytest.raises(C4CError, match="needs --shards"):
        extract.run(_cfg(videos, tmp_path / "y.h5", shard_index=(0,)))
    with pytest.raises(C4CError, match="without .h5"):
        extract.run(_cfg(videos, tmp_path / "z.h5", shards=2))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(C4CError, match="pass --shards"):
        extract.run(_cfg(videos, empty))


def test_shard_index_specs():
    assert shards.parse_shard_index("3") == (3,)
    assert shards.parse_shard_index("0-3,7, 9-10") == (0, 1, 2, 3, 7, 9, 10)
    for bad in ("a", "3-1", "-2", ""):
        with pytest.raises(C4CError):
            shards.parse_shard_index(bad)


def test_the_cli_writes_shards_and_indexes_them(videos, tmp_path, capsys):
    out = tmp_path / "frames"
    main(["extract", str(videos), "--out", str(out), "--shards", "2", "--shard-index", "0-1", "--size", "16",
          "--fps", "2", "-q"])
    assert "c4c extract" in capsys.readouterr().out
    (out / "manifest.json").unlink()
    main(["extract", "--write-manifest", str(out)])
    assert FrameStore(out).ids() == sorted(p.stem for p in videos.glob("*.mp4"))
    with pytest.raises(SystemExit) as exit_info:
        main(["extract", "--out", str(out)])
    assert exit_info.value.code == 2 and "give SOURCE and --out" in capsys.readouterr().err


def test_read_clip_reads_the_frames_chosen_from_the_timestamps(sharded):
    fs = FrameStore(sharded)
    vid = fs.ids()[0]
    seen = []

    def choose(t):
        seen.append(t.copy())
        return [len(t) - 1, 0]

    frames, idx = fs.read_clip(vid, choose)
    np.testing.assert_array_equal(seen[0], fs.timestamps(vid))
    assert idx.tolist() == [len(seen[0]) - 1, 0]
    np.testing.assert_array_equal(frames, fs.read(vid, idx))


def test_jpeg_frames_decode_like_pillow_frame_by_frame(sharded):
    import io

    from PIL import Image

    def decode_jpeg(row: np.ndarray) -> np.ndarray:
        with Image.open(io.BytesIO(row.tobytes())) as img:
            return np.asarray(img.convert("RGB"))

    fs = FrameStore(sharded)
    vid = fs.ids()[1]
    with h5py.File(fs.shards.files[shards.shard_of(vid, 3)], "r") as f:
        rows = list(f["videos"][vid]["frames"][()])
    np.testing.assert_array_equal(fs.read(vid), np.stack([decode_jpeg(r) for r in rows]))
