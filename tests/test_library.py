"""`c4c index VIDEOS_DIR --out LIBRARY`: a folder of videos made searchable, updated incrementally, equal
to a rebuild, resumable after a kill; `c4c search` of a library, its JSON and thumbnails."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from c4c import synth
from c4c.cli import main
from c4c.errors import C4CError
from c4c.stages import library
from c4c.stages.search import Searcher

ZERO_SHOT = dict(clip="tiny", pretrained="none", window=4.0, stride=2.0, fps=2.0, size=32)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("lib")
    synth.run(synth.SynthConfig(out_dir=d / "synth", videos=9, seed=11, duration=6.0, width=64, height=48))
    records = [json.loads(x) for x in (d / "synth" / "annotations.jsonl").read_text().splitlines()]
    return {"dir": d, "videos": sorted((d / "synth" / "videos").glob("*.mp4")),
            "captions": sorted({r["caption"] for r in records})[:12]}


def _folder(tmp_path: Path, files: list[Path], name: str = "videos") -> Path:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    for f in files:
        shutil.copy2(f, folder / f.name)
    return folder


def _update(videos: Path, out: Path, **kw) -> library.LibraryResult:
    return library.update(library.LibraryConfig(videos=videos, out=out, device="cpu", workers=0, batch_size=2,
                                                **kw))


def _answers(lib: Path, queries: list[str], group: str = "moment") -> list:
    searcher = Searcher(lib, device="cpu")
    return [[(m.video_id, m.start, m.end, m.score) for m in hits] for hits in searcher.search(queries, 6, group=group)]


def _change(path: Path, other: Path) -> None:
    shutil.copyfile(other, path)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


def test_an_updated_library_answers_exactly_as_one_built_afresh(clips, tmp_path):
    v = clips["videos"]
    folder = _folder(tmp_path, v[:5])
    first = _update(folder, tmp_path / "lib", **ZERO_SHOT)
    assert (first.added, first.changed, first.removed, first.videos) == (5, 0, 0, 5) and first.indexed
    # two new files, one removed, one changed (another video's content under the old name)
    _folder(tmp_path, v[5:7])
    (folder / v[0].name).unlink()
    _change(folder / v[1].name, v[8])
    second = _update(folder, tmp_path / "lib")
    assert (second.added, second.changed, second.removed, second.videos) == (2, 1, 1, 6)
    state = json.loads((tmp_path / "lib" / "library.json").read_text())
    parts = {f["part"] for f in state["videos"].values()}
    assert parts == {"part-000001", "part-000002"}
    assert sorted(vid for vid, f in state["videos"].items() if f["part"] == "part-000002") == \
        sorted([v[1].stem, v[5].stem, v[6].stem])  # only the new and the changed videos were done again
    fresh = _update(_folder(tmp_path, sorted(folder.iterdir()), "copy"), tmp_path / "fresh", **ZERO_SHOT)
    assert fresh.rows == second.rows
    for group in ("moment", "video"):
        assert _answers(tmp_path / "lib", clips["captions"], group) == _answers(tmp_path / "fresh", clips["captions"],
                                                                                group)


def test_a_second_run_with_nothing_new_does_nothing(clips, tmp_path):
    folder = _folder(tmp_path, clips["videos"][:3])
    _update(folder, tmp_path / "lib", **ZERO_SHOT)
    before = (tmp_path / "lib" / "index" / "index.faiss").stat().st_mtime_ns
    again = _update(folder, tmp_path / "lib")
    assert (again.added, again.changed, again.removed, again.indexed) == (0, 0, 0, False)
    assert (tmp_path / "lib" / "index" / "index.faiss").stat().st_mtime_ns == before
    assert sorted(p.name for p in (tmp_path / "lib" / "parts").iterdir()) == ["part-000001"]


def test_removing_every_video_of_a_part_removes_the_part(clips, tmp_path):
    folder = _folder(tmp_path, clips["videos"][:2])
    _update(folder, tmp_path / "lib", **ZERO_SHOT)
    _folder(tmp_path, clips["videos"][2:4])
    _update(folder, tmp_path / "lib")
    for f in clips["videos"][:2]:
        (folder / f.name).unlink()
    result = _update(folder, tmp_path / "lib")
    assert result.removed == 2 and result.videos == 2
    assert sorted(p.name for p in (tmp_path / "lib" / "parts").iterdir()) == ["part-000002"]
    assert {m[0] for hits in _answers(tmp_path / "lib", clips["captions"][:3]) for m in hits} == \
        {f.stem for f in clips["videos"][2:4]}


def test_a_killed_update_resumes_and_ends_as_an_uninterrupted_one(clips, tmp_path, monkeypatch):
    from c4c.search.index import VectorIndex
    from c4c.stages import encode

    folder = _folder(tmp_path, clips["videos"][:4])
    original = encode.run

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # after extraction, before any embedding

    monkeypatch.setattr(encode, "run", killed)
    with pytest.raises(KeyboardInterrupt):
        _update(folder, tmp_path / "lib", **ZERO_SHOT)
    state = json.loads((tmp_path / "lib" / "library.json").read_text())
    assert state["pending"]["name"] == "part-000001" and state["videos"] == {}
    monkeypatch.setattr(encode, "run", original)
    save = VectorIndex.save
    monkeypatch.setattr(VectorIndex, "save", lambda self, *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):  # killed while writing the index
        _update(folder, tmp_path / "lib")
    assert not (tmp_path / "lib" / "index").exists()
    monkeypatch.setattr(VectorIndex, "save", save)
    resumed = _update(folder, tmp_path / "lib")
    assert resumed.indexed and resumed.videos == 4
    _update(_folder(tmp_path, clips["videos"][:4], "copy"), tmp_path / "fresh", **ZERO_SHOT)
    assert _answers(tmp_path / "lib", clips["captions"]) == _answers(tmp_path / "fresh", clips["captions"])


def test_a_broken_file_is_reported_tried_again_and_picked_up_once_fixed(clips, tmp_path):
    folder = _folder(tmp_path, clips["videos"][:2])
    (folder / "broken.mp4").write_bytes(b"not a video")
    first = _update(folder, tmp_path / "lib", **ZERO_SHOT)
    assert first.videos == 2 and [Path(f).name for f, _ in first.failed] == ["broken.mp4"]
    again = _update(folder, tmp_path / "lib")
    assert (again.added, again.changed, again.retried) == (0, 0, 1)  # the next run tries it again, once
    assert [Path(f).name for f, _ in again.failed] == ["broken.mp4"] and again.videos == 2
    _change(folder / "broken.mp4", clips["videos"][3])
    fixed = _update(folder, tmp_path / "lib")
    assert fixed.changed == 1 and fixed.failed == [] and fixed.videos == 3


def test_a_library_keeps_its_settings(clips, tmp_path):
    folder = _folder(tmp_path, clips["videos"][:1])
    _update(folder, tmp_path / "lib", **ZERO_SHOT)
    with pytest.raises(C4CError, match="other settings: --window 8.0"):
        _update(folder, tmp_path / "lib", window=8.0)
    with pytest.raises(C4CError, match="needs a model"):
        _update(folder, tmp_path / "new")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(C4CError, match="not a c4c library"):
        _update(folder, tmp_path / "junk", **ZERO_SHOT)


def test_search_of_a_library_gives_moments_with_paths_and_thumbnails(clips, tmp_path, capsys):
    folder = _folder(tmp_path, clips["videos"][:3])
    _update(folder, tmp_path / "lib", **ZERO_SHOT)
    capsys.readouterr()
    try:
        main(["search", str(tmp_path / "lib"), clips["captions"][0], "-k", "4", "--json", "--device", "cpu"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    (result,) = json.loads(capsys.readouterr().out)
    hits = result["results"]
    assert [h["rank"] for h in hits] == [1, 2, 3, 4]
    assert all(set(h) == {"rank", "video_id", "start", "end", "score", "path"} for h in hits)
    assert all(Path(h["path"]) == (folder / f"{h['video_id']}.mp4").resolve() for h in hits)  # the file, not a link
    assert all(h["end"] - h["start"] <= 4.0 + 1e-6 for h in hits)
    searcher = Searcher(tmp_path / "lib", device="cpu")
    (best, *_), = searcher.search([clips["captions"][0]], 1)
    from c4c.video.store import FrameStore

    store = FrameStore(searcher.frame_store_of(best.video_id))
    ts = store.timestamps(best.video_id)
    middle = int(np.argmin(np.abs(ts - (best.start + best.end) / 2)))
    np.testing.assert_array_equal(searcher.thumbnail(best), store.read(best.video_id, [middle])[0])


def test_a_bf16_text_tower_gives_nearly_the_same_queries(clips, tmp_path):
    folder = _folder(tmp_path, clips["videos"][:2])
    _update(folder, tmp_path / "lib", **ZERO_SHOT)
    exact = Searcher(tmp_path / "lib", device="cpu").encode(clips["captions"])
    fast = Searcher(tmp_path / "lib", device="cpu", precision="bf16").encode(clips["captions"])
    assert fast.dtype == np.float32 and float((exact * fast).sum(axis=1).min()) > 0.999
    with pytest.raises(C4CError, match="unknown precision"):
        Searcher(tmp_path / "lib", device="cpu", precision="int4")
