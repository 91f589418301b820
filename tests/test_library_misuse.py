"""`c4c index VIDEOS_DIR --out LIBRARY` used carelessly: a first build that fails never locks the library
to its settings, the model is resolved before any video is extracted, the default frame size is the
model's, and videos that fail give exit status 1 with the good ones kept (and are tried again).

The cases run c4c in child processes and are judged as tests/test_faults.py judges its own (a CASES
dict of ``Workspace -> Verdict``), so ``bench/fault_tally.py`` can count them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import (HANDLED, SILENT, UNCLEAR, Ran, Skip, Verdict, Workspace, check_case, crashed,  # noqa: E402
                         judge, judge_ok, registry, run_c4c)

CASES, case = registry()
TINY = ("--clip", "tiny", "--pretrained", "none", "--fps", 2, "--workers", 0, "--device", "cpu", "-q")


def _state(lib: Path) -> dict:
    return json.loads((lib / "library.json").read_text())


def _videos(ws: Workspace, d: Path, n: int = 2) -> Path:
    folder = d / "videos"
    folder.mkdir()
    for f in sorted(ws.clips.iterdir())[:n]:
        shutil.copy(f, folder / f.name)
    return folder


def judge_partial(ran: Ran, *, right: bool, says: tuple[str, ...]) -> Verdict:
    """Some inputs failed: exit 1 (never 0, never a traceback), each failed one named, the good ones kept
    (``right``)."""
    detail = f"exit {ran.rc}: {ran.out.strip()[-600:]}"
    bad = crashed(ran)
    if bad:
        return Verdict(bad, not right, detail)
    if ran.rc == 0:
        return Verdict(SILENT, not right, detail)
    if ran.rc != 1 or not all(s in ran.out for s in says):
        return Verdict(UNCLEAR, not right, f"expected exit 1 naming {says}; {detail}")
    return Verdict(HANDLED, not right, "the good inputs kept, the failed ones named, exit 1")


def _nothing_extracted(lib: Path) -> bool:
    return not lib.exists() or not list(lib.rglob("*.h5"))


@case("index: a first build with a missing weights file, then the corrected command")
def _missing_weights_then_corrected(ws: Workspace) -> Verdict:
    d = ws.fresh("lib-noweights")
    videos, lib = _videos(ws, d), d / "lib"
    ran = run_c4c("index", videos, "--out", lib, "--clip", "tiny", "--pretrained", "/nonexistent/ViT-B-32.pt",
                  "--fps", 2, "-q")
    verdict = judge(ran, rc=2, says=("/nonexistent/ViT-B-32.pt", "weights file not found"))
    if not verdict.good or not _nothing_extracted(lib):
        return verdict if not verdict.good else Verdict("silent accept", detail="videos extracted before the "
                                                                                "weights were looked at")
    fixed = run_c4c("index", videos, "--out", lib, *TINY)
    return judge_ok(fixed, right=lib.is_dir() and _state(lib)["settings"]["pretrained"] == "none"
                    and len(_state(lib)["videos"]) == 2, why="the corrected settings were taken")


@case("index: zero-shot ViT-B-32 / openai offline is refused before any video is extracted")
def _offline_tag(ws: Workspace) -> Verdict:
    from c4c.model.backbone import _resolve_tag

    if _resolve_tag("ViT-B-32", "openai") is not None:
        raise Skip("the ViT-B-32 openai weights are in this machine's cache")
    d = ws.fresh("lib-offline")
    videos, lib = _videos(ws, d), d / "lib"
    ran = run_c4c("index", videos, "--out", lib, "--clip", "ViT-B-32", "--pretrained", "openai", "-q")
    verdict = judge(ran, rc=2, says=("not in the local cache",))
    if verdict.good and not _nothing_extracted(lib):
        return Verdict("silent accept", detail="videos extracted before the weights were looked at")
    return verdict


@case("index: a first build whose videos all failed takes other settings next")
def _first_build_failed(ws: Workspace) -> Verdict:
    d = ws.fresh("lib-allfailed")
    videos, lib = d / "videos", d / "lib"
    videos.mkdir()
    (videos / "broken.mp4").write_bytes(b"not a video")
    first = run_c4c("index", videos, "--out", lib, *TINY, "--window", 1)
    if first.rc != 1:
        return judge_partial(first, right=True, says=("broken.mp4",))
    for f in sorted(ws.clips.iterdir())[:2]:
        shutil.copy(f, videos / f.name)
    ran = run_c4c("index", videos, "--out", lib, *TINY, "--window", 2)  # other settings: the first made nothing
    if "other settings" in ran.out:
        return Verdict(UNCLEAR, detail=f"the failed first build locked the library: {ran.out.strip()[-600:]}")
    state = _state(lib)
    right = state["settings"]["window"] == 2.0 and sorted(state["videos"]) == ["clip0", "clip1"]
    return judge_partial(ran, right=right, says=("broken.mp4",))


@case("index: a video that fails gives exit 1, the others searchable, the next run tries it again")
def _partial_failure(ws: Workspace) -> Verdict:
    d = ws.fresh("lib-partial")
    videos, lib = _videos(ws, d), d / "lib"
    (videos / "broken.mp4").write_bytes(b"not a video")
    ran = run_c4c("index", videos, "--out", lib, *TINY)
    verdict = judge_partial(ran, right=sorted(_state(lib)["videos"]) == ["clip0", "clip1"],
                            says=("broken.mp4", "1 video(s) could not be indexed", "tries the failed ones again"))
    if not verdict.good:
        return verdict
    shutil.copy(sorted(ws.clips.iterdir())[2], videos / "broken.mp4")  # mended
    again = run_c4c("index", videos, "--out", lib, *TINY)
    return judge_ok(again, right=sorted(_state(lib)["videos"]) == ["broken", "clip0", "clip1"],
                    why="the failed video was tried again and indexed")


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("library-misuse"))


@pytest.mark.parametrize("name", list(CASES))
def test_library_misuse_ends_clearly_and_loses_nothing(ws, name):
    check_case(CASES, ws, name)


# --- in-process: the library's own rules -------------------------------------------------------------


def _update(videos: Path, out: Path, **kw):
    from c4c.stages import library

    return library.update(library.LibraryConfig(videos=videos, out=out, device="cpu", workers=0, batch_size=2,
                                                **kw))


@pytest.fixture(scope="module")
def two_clips(ws) -> Path:
    return _videos(ws, ws.fresh("lib-inproc"))


def test_a_first_build_that_failed_while_encoding_takes_corrected_settings(two_clips, tmp_path, monkeypatch):
    from c4c.errors import C4CError
    from c4c.stages import encode

    def failing(*args, **kwargs):
        raise C4CError("the encoder failed")

    monkeypatch.setattr(encode, "run", failing)
    with pytest.raises(C4CError, match="the encoder failed"):
        _update(two_clips, tmp_path / "lib", clip="tiny", pretrained="none", window=1.0, fps=2.0)
    assert _state(tmp_path / "lib")["model"] is None
    monkeypatch.undo()
    done = _update(two_clips, tmp_path / "lib", clip="tiny", pretrained="none", window=2.0, fps=2.0)
    assert done.videos == 2 and _state(tmp_path / "lib")["settings"]["window"] == 2.0
    from c4c.errors import C4CError as Err

    with pytest.raises(Err, match="other settings: --window 1.0"):  # now the settings are the library's own
        _update(two_clips, tmp_path / "lib", window=1.0)


def test_a_stopped_first_build_goes_on_with_its_own_settings_when_none_are_given(two_clips, tmp_path,
                                                                                 monkeypatch):
    from c4c.stages import encode

    original = encode.run
    monkeypatch.setattr(encode, "run", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        _update(two_clips, tmp_path / "lib", clip="tiny", pretrained="none", window=2.0, fps=2.0)
    monkeypatch.setattr(encode, "run", original)
    done = _update(two_clips, tmp_path / "lib")
    assert done.videos == 2 and _state(tmp_path / "lib")["settings"]["window"] == 2.0


def test_a_new_library_stores_frames_at_the_models_image_size(two_clips, tmp_path):
    _update(two_clips, tmp_path / "lib", clip="tiny", pretrained="none", fps=2.0)
    assert _state(tmp_path / "lib")["settings"]["size"] == 32  # the tiny CLIP's image size, not 224
