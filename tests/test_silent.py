"""No hang and no silent wrong result in windows, embeddings, moments and queries.

Window maths (c4c.search.moments) must end quickly for any --window/--stride/frame rate/duration and give
windows that can exist and cover the video; EMB.h5 and index rows that cannot be (spans ending before
they start, NaN, infinite or all-zero embeddings) are refused on write and on read, naming the file and
the first bad rows; a query longer than the text tower reads is searched by its first tokens and says so.

The cases run c4c in child processes and are judged as tests/test_faults.py judges its own
(``CASES``, for bench/fault_tally.py); the window properties run in-process under hypothesis.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from helpers import Ran, Verdict, Workspace, check_case, judge, judge_ok, registry, run_c4c  # noqa: E402

from c4c.errors import C4CError  # noqa: E402
from c4c.search.moments import check_window, plan_video, window_spans  # noqa: E402

HANG = "hang"  # ran past its time limit: never a good ending
LIMIT = 60.0   # seconds a case's child process may take before it counts as a hang


# --- window maths ----------------------------------------------------------------------------------

seconds = st.floats(min_value=1e-9, max_value=1e4, allow_nan=False, allow_infinity=False)
rates = st.floats(min_value=0.05, max_value=60.0, allow_nan=False, allow_infinity=False)
durations = st.floats(min_value=1e-3, max_value=7200.0, allow_nan=False, allow_infinity=False)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(window=seconds, stride=st.none() | seconds, fps=rates, duration=durations)
def test_any_window_and_stride_give_a_few_windows_covering_the_video_or_one_line_refusal(window, stride, fps,
                                                                                        duration):
    try:
        w, s = check_window(window, stride, fps, path="frames.h5")
    except C4CError as exc:
        line = exc.render()
        assert "\n" not in line and line
        s_asked = min(window, max(window / 2, 1 / fps)) if stride is None else stride
        interval = 1 / fps
        assert s_asked > window or window < interval or s_asked < interval, line  # refused only for a reason
        if "frame interval" in line:
            assert line.startswith("frames.h5: ") and f"{fps:g} frames per second" in line
        return
    t0 = time.perf_counter()
    spans = window_spans(duration, w, s)
    assert time.perf_counter() - t0 < 2.0
    assert len(spans) <= duration / s + 2 and len(spans) <= duration * fps + 2   # count bounded
    assert spans[0][0] == 0.0 and spans[-1][1] == duration                       # from the start to the end
    for (a, b), nxt in zip(spans, spans[1:] + [None]):
        assert 0 <= a < b <= duration                                            # every window can exist
        assert b - a <= w + 1e-9
        if nxt is not None:
            assert a < nxt[0] <= b + 1e-9 * max(1.0, b)                          # no gap between windows


@settings(max_examples=150, deadline=2000)
@given(window=st.floats(0.1, 30.0), ratio=st.floats(0.05, 1.0), fps=st.sampled_from([0.5, 1.0, 2.0, 5.0]),
       frames=st.integers(1, 120))
def test_every_window_of_a_stored_video_uses_at_least_one_frame(window, ratio, fps, frames):
    stride = window * ratio
    try:
        w, s = check_window(window, stride, fps)
    except C4CError:
        assert window < 1 / fps or stride < 1 / fps
        return
    ts = (np.arange(frames) / fps).astype(np.float32)
    plan = plan_video("v", ts, frames / fps, window=w, stride=s, max_frames=12, sampling="uniform", fps=None)
    assert len(plan.members) == len(plan.spans) and all(len(m) >= 1 for m in plan.members)
    assert all(a < b for a, b in plan.spans)


def test_a_stride_longer_than_the_window_is_refused_it_would_leave_seconds_unsearched():
    with pytest.raises(C4CError, match=r"--stride 10 is longer than --window 2: the 8 s between"):
        check_window(2.0, 10.0)
    assert window_spans(9.0, 2.0, 2.0)[-1] == (8.0, 9.0)  # a stride equal to the window tiles the video


def test_a_window_shorter_than_one_frame_interval_is_refused_naming_the_rate():
    with pytest.raises(C4CError) as info:
        check_window(1e-7, None, 2.0, path="my.h5")
    assert info.value.render().startswith("my.h5: --window 1e-07 s is shorter than one frame interval (0.5 s at 2 ")
    assert check_window(0.5, None, 2.0) == (0.5, 0.5) and check_window(0.8, None, 2.0) == (0.8, 0.5)
    assert check_window(4, None, 2.0) == (4.0, 2.0) and check_window(4, None) == (4.0, 2.0)


# --- rows of EMB.h5 on write -------------------------------------------------------------------------

def _layout(ids: list[str], starts, ends, *, moments: bool = True, captions: tuple = ()):
    from c4c.data.embeddings import Layout

    return Layout(video_ids=list(ids), captions=list(captions), video_index=np.zeros(len(captions), np.int64),
                  dim=4, loose=True, max_frames=1, attrs={"sim": "meanP", "logit_scale": 100.0, "run": ""},
                  starts=np.asarray(starts, float), ends=np.asarray(ends, float), moments=moments)


def test_a_row_that_ends_before_it_starts_is_not_written(tmp_path):
    from c4c.data.embeddings import EmbeddingWriter

    out = tmp_path / "e.h5"
    with pytest.raises(C4CError) as info:
        EmbeddingWriter(out, _layout(["a", "a", "b"], [0, 4, 0], [4, 2, 3]), "x")
    assert info.value.render().startswith(f"{out}: not written: row 1 (video 'a') ends before it starts (4 to 2 s)")
    assert list(tmp_path.iterdir()) == []


def test_nan_or_zero_rows_from_the_model_are_not_written(tmp_path):
    from c4c.data.embeddings import EmbeddingWriter

    out = tmp_path / "e.h5"
    writer = EmbeddingWriter(out, _layout(["a", "b", "c"], [0, 0, 0], [1, 1, 1]), "x")
    try:
        bad = np.eye(3, 4, dtype=np.float32)
        bad[1] = np.nan
        bad[2] = 0
        with pytest.raises(C4CError, match=r"the model produced embeddings that cannot be scored, not written: 2 of 3 "
                                           r"video rows are NaN, infinite or all zero \(1 NaN or infinite, 1 all "
                                           r"zero; first: row 1 'b', row 2 'c'\)"):
            writer.write_videos(0, bad)
        assert writer.videos_done == 0
    finally:
        writer.close()
    assert not out.exists()


# --- the cases: c4c in a child process ---------------------------------------------------------------

CASES, case = registry()


def _run(*args, timeout: float = LIMIT) -> Ran | Verdict:
    """``run_c4c`` under a time limit: a Verdict of kind HANG when it runs past it."""
    try:
        return run_c4c(*args, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Verdict(HANG, False, f"c4c {' '.join(map(str, args))} still running after {timeout:.0f} s")


def _judged(ran: Ran | Verdict, **kw) -> Verdict:
    return ran if isinstance(ran, Verdict) else judge(ran, **kw)


def _unit(rng: np.random.Generator, n: int, d: int = 8) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _write_emb(path: Path, *, moments: bool = False, captions: bool = True) -> Path:
    """A good EMB.h5 written by hand: 4 rows (2 windows of each of 2 videos, or 4 videos) and, with
    ``captions``, one caption per row."""
    from c4c.data.embeddings import EmbeddingWriter, Layout

    rng = np.random.default_rng(0)
    ids = ["a", "a", "b", "b"] if moments else ["a", "b", "c", "d"]
    starts, ends = ([0.0, 1.0, 0.0, 1.0], [2.0, 2.5, 2.0, 2.5]) if moments else ([0.0] * 4, [2.0] * 4)
    caps = [f"caption {i}" for i in range(4)] if captions else []
    layout = Layout(video_ids=ids, captions=caps, video_index=np.arange(len(caps)), dim=8, loose=True, max_frames=1,
                    attrs={"sim": "meanP", "logit_scale": 100.0, "run": "", "dataset": "hand", "split": "test"},
                    starts=np.array(starts), ends=np.array(ends), moments=moments)
    video = _unit(rng, 4)
    writer = EmbeddingWriter(path, layout, "hand")
    writer.write_videos(0, video)
    if caps:
        writer.write_texts(0, video + 0.1 * _unit(rng, 4))
    return writer.finish()


def _poke(path: Path, key: str, row: int, value) -> None:
    """Change one row of an EMB.h5 as a damaged or hand-made file would have it."""
    import h5py

    with h5py.File(path, "r+") as f:
        f[key][row] = value


def _nothing_new(d: Path, before: set[str]) -> list[str]:
    return sorted({p.name for p in d.iterdir()} - before)


def _refused(ws: Workspace, name: str, key: str, row: int, value, command: list, says: tuple,
             moments: bool = False) -> Verdict:
    d = ws.fresh(name)
    emb = _write_emb(d / "emb.h5", moments=moments)
    _poke(emb, key, row, value)
    before = {p.name for p in d.iterdir()}
    ran = _run(*[str(emb) if a == "EMB" else (d / a[1:] if str(a).startswith("@") else a) for a in command])
    verdict = _judged(ran, rc=2, says=(str(emb), *says))
    left = _nothing_new(d, before)
    if verdict.good and left:
        return Verdict("unclear error", False, f"refused, but wrote {left}")
    return verdict


@case("evaluate an EMB.h5 with a NaN video row")
def _(ws):
    return _refused(ws, "eval-nan-video", "videos/emb", 2, np.nan, ["evaluate", "EMB"],
                    ("1 of 4 video rows are NaN, infinite or all zero", "1 NaN or infinite", "row 2 'c'"))


@case("evaluate an EMB.h5 with an all-zero caption row")
def _(ws):
    return _refused(ws, "eval-zero-text", "texts/emb", 1, 0.0, ["evaluate", "EMB", "--out", "@m.json"],
                    ("1 of 4 text rows are NaN", "1 all zero", "row 1 'caption 1'"))


@case("evaluate an EMB.h5 with an infinite caption row")
def _(ws):
    return _refused(ws, "eval-inf-text", "texts/emb", 3, np.inf, ["evaluate", "EMB"],
                    ("1 of 4 text rows are NaN", "1 NaN or infinite", "row 3 'caption 3'"))


@case("index an EMB.h5 with a NaN moment")
def _(ws):
    return _refused(ws, "index-nan", "videos/emb", 1, np.nan, ["index", "EMB", "--out", "@idx"],
                    ("1 of 4 video rows are NaN", "row 1 'a'"), moments=True)


@case("index an EMB.h5 whose moment ends before it starts")
def _(ws):
    return _refused(ws, "index-backwards", "videos/end", 3, 0.5, ["index", "EMB", "--out", "@idx"],
                    ("row 3 (video 'b') ends before it starts (1 to 0.5 s)",), moments=True)


@case("index an EMB.h5 whose moment has no end (NaN)")
def _(ws):
    return _refused(ws, "index-nan-span", "videos/end", 0, np.nan, ["index", "EMB", "--out", "@idx"],
                    ("row 0 (video 'a')", "not a finite number of seconds"), moments=True)


@case("evaluate an EMB.h5 whose video starts before 0 s")
def _(ws):
    return _refused(ws, "eval-negative-span", "videos/start", 0, -3.0, ["evaluate", "EMB"],
                    ("row 0 (video 'a') starts before its video does (-3 to 2 s)",))


@case("search an index whose moments.json has a span ending before it starts")
def _(ws):
    d = ws.fresh("search-backwards")
    emb = _write_emb(d / "emb.h5", moments=True, captions=False)
    ran = _run("index", emb, "--out", d / "idx", "-q")
    if isinstance(ran, Verdict) or ran.rc != 0:
        return ran if isinstance(ran, Verdict) else Verdict("unclear error", False, f"index failed: {ran.out}")
    table = d / "idx" / "moments.json"
    rows = json.loads(table.read_text())
    rows["end"][2] = -1.0
    table.write_text(json.dumps(rows))
    return _judged(_run("search", d / "idx", "a dog", "--device", "cpu"), rc=2,
                   says=(str(table), "row 2 (video 'b') ends before it starts"))


def _frames(ws: Workspace) -> Path:
    return ws.reference("clips")[0]  # six 2 s clips stored at 2 fps


@case("encode --window far below one frame interval")
def _(ws):
    d = ws.fresh("encode-tiny-window")
    out = d / "m.h5"
    ran = _run("encode", "--clip", "tiny", "--pretrained", "none", "--frames", _frames(ws), "--window", "1e-7",
               "--out", out, "--workers", 0, "--device", "cpu", "-q")
    verdict = _judged(ran, rc=2, says=(str(_frames(ws)), "--window 1e-07 s is shorter than one frame interval",
                                       "0.5 s at 2 frames per second"))
    return Verdict("unclear error", False, f"wrote {list(d.iterdir())}") if verdict.good and any(d.iterdir()) \
        else verdict


@case("encode --stride far below one frame interval")
def _(ws):
    d = ws.fresh("encode-tiny-stride")
    ran = _run("encode", "--clip", "tiny", "--pretrained", "none", "--frames", _frames(ws), "--window", "1",
               "--stride", "1e-8", "--out", d / "m.h5", "--workers", 0, "--device", "cpu", "-q")
    return _judged(ran, rc=2, says=(str(_frames(ws)), "--stride 1e-08 s is shorter than one frame interval"))


@case("encode --stride longer than --window")
def _(ws):
    d = ws.fresh("encode-gaps")
    ran = _run("encode", "--clip", "tiny", "--pretrained", "none", "--frames", _frames(ws), "--window", "0.5",
               "--stride", "1.5", "--out", d / "m.h5", "--workers", 0, "--device", "cpu", "-q")
    verdict = _judged(ran, rc=2, says=("--stride 1.5 is longer than --window 0.5",))
    return Verdict("unclear error", False, f"wrote {list(d.iterdir())}") if verdict.good and any(d.iterdir()) \
        else verdict


@case("index VIDEOS_DIR --window far below one frame interval")
def _(ws):
    d = ws.fresh("library-tiny-window")
    lib = d / "lib"
    ran = _run("index", ws.clips, "--out", lib, "--clip", "tiny", "--pretrained", "none", "--fps", 2, "--size", 32,
               "--window", "1e-7", "--workers", 0, "--device", "cpu", "-q")
    verdict = _judged(ran, rc=2, says=(str(lib), "--window 1e-07 s is shorter than one frame interval"))
    return Verdict("unclear error", False, f"wrote {lib}") if verdict.good and lib.exists() else verdict


@case("encode with a model that gives NaN")
def _(ws):
    import torch
    from safetensors.torch import save_file

    from c4c.model.backbone import build_clip

    d = ws.fresh("encode-nan-model")
    clip = build_clip("tiny", "none")[0]
    state = {k: v.detach().clone().contiguous() for k, v in clip.state_dict().items()}
    state["visual.proj"] = torch.full_like(state["visual.proj"], float("nan"))
    save_file(state, str(d / "nan.safetensors"))
    out = d / "m.h5"
    ran = _run("encode", "--clip", "tiny", "--pretrained", d / "nan.safetensors", "--frames", _frames(ws),
               "--out", out, "--workers", 0, "--device", "cpu", "-q")
    verdict = _judged(ran, rc=2, says=(str(out), "the model produced embeddings that cannot be scored, not written", "6 of 6 video rows are NaN"))
    return Verdict("silent accept", False, f"{out} written") if verdict.good and out.exists() else verdict


@case("search with a query longer than the text tower reads")
def _(ws):
    d = ws.fresh("search-long-query")
    emb, idx = d / "e.h5", d / "idx"
    for args in (("encode", "--clip", "tiny", "--pretrained", "none", "--frames", _frames(ws), "--out", emb,
                  "--workers", 0, "--device", "cpu", "-q"), ("index", emb, "--out", idx, "-q")):
        ran = _run(*args)
        if isinstance(ran, Verdict) or ran.rc != 0:
            return ran if isinstance(ran, Verdict) else Verdict("unclear error", False, f"{args[0]}: {ran.out}")
    words = " ".join(["red"] * 40)  # 40 tokens: zero-shot reads 30 of them (32 with start and end)
    ran = _run("search", idx, words, "a dog", "--json", "--device", "cpu", "-k", 2)
    if isinstance(ran, Verdict):
        return ran
    payload = json.JSONDecoder().raw_decode(ran.out[ran.out.index("["):])[0] if ran.rc == 0 and "[" in ran.out else []
    right = len(payload) == 2 and payload[1]["warning"] is None and "30 of its 40 tokens" in \
        (payload[0]["warning"] or "")
    return judge_ok(ran, right=right, says=("warning:", "query cut: the text tower reads 30 of its 40 tokens"),
                    why="the cut query warned, in the JSON too")


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("silent"))


@pytest.mark.parametrize("name", list(CASES))
def test_silent_case_ends_clearly(ws, name):
    check_case(CASES, ws, name)
