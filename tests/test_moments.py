"""Moments (c4c.search.moments): the windows of a video, the frames each window uses, and how hits of
one video merge into moments. Numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from c4c.errors import C4CError
from c4c.search.moments import RowTable, check_window, group_hits, plan_video, video_duration, window_spans


# --- windows ----------------------------------------------------------------------------------------

def test_windows_step_by_the_stride_and_the_last_one_ends_with_the_video():
    # 23 s, window 10, stride 5: 0-10, 5-15, 10-20, then 15-25 would pass the end: 15-23
    assert window_spans(23.0, 10.0, 5.0) == [(0.0, 10.0), (5.0, 15.0), (10.0, 20.0), (15.0, 23.0)]
    # exactly fitting: 20 s -> 0-10, 5-15, 10-20 (10-20 reaches the end: it is the last)
    assert window_spans(20.0, 10.0, 5.0) == [(0.0, 10.0), (5.0, 15.0), (10.0, 20.0)]


def test_a_video_shorter_than_a_window_is_one_window():
    assert window_spans(3.5, 10.0, 5.0) == [(0.0, 3.5)]
    assert window_spans(10.0, 10.0, 5.0) == [(0.0, 10.0)]


def test_no_window_is_the_whole_video():
    assert window_spans(42.0, None, None) == [(0.0, 42.0)]


def test_stride_defaults_to_half_the_window_and_bad_values_are_errors():
    assert check_window(10, None) == (10.0, 5.0)
    assert check_window(None, None) == (None, None)
    with pytest.raises(C4CError, match="--stride needs --window"):
        check_window(None, 5)
    with pytest.raises(C4CError, match="--window must be a positive"):
        check_window(0, None)
    with pytest.raises(C4CError, match="--stride must be a positive"):
        check_window(4, -1)


def test_duration_is_the_recorded_one_or_one_frame_past_the_last():
    ts = np.array([0.0, 1.0, 2.0], np.float32)
    assert video_duration(ts, {"duration": 2.6}, 1.0) == 2.6
    assert video_duration(ts, {"duration": float("nan")}, 1.0) == 3.0
    assert video_duration(ts, {}, 2.0) == 2.5


# --- frames of the windows --------------------------------------------------------------------------

def test_overlapping_windows_share_frames_and_every_frame_is_encoded_once():
    ts = np.arange(23, dtype=np.float32)  # 1 fps, 23 s
    plan = plan_video("v", ts, 23.0, window=10.0, stride=5.0, max_frames=12, sampling="uniform", fps=None)
    assert plan.spans == [(0.0, 10.0), (5.0, 15.0), (10.0, 20.0), (15.0, 23.0)]
    np.testing.assert_array_equal(plan.frames, np.arange(23))  # the union, each frame once
    got = [plan.frames[m].tolist() for m in plan.members]
    assert got == [list(range(0, 10)), list(range(5, 15)), list(range(10, 20)), list(range(15, 23))]


def test_a_window_with_more_frames_than_max_frames_is_sampled_like_a_clip():
    ts = np.arange(0, 10, 0.5, dtype=np.float32)  # 2 fps: 20 frames in one 10 s window
    plan = plan_video("v", ts, 10.0, window=10.0, stride=5.0, max_frames=4, sampling="uniform", fps=None)
    # np.linspace(0, 19, 4, dtype=int) = 0, 6, 12, 19
    assert [plan.frames[m].tolist() for m in plan.members] == [[0, 6, 12, 19]]
    np.testing.assert_array_equal(plan.frames, [0, 6, 12, 19])  # frames no window uses are not encoded


def test_without_a_window_the_clip_is_the_training_time_clip():
    from c4c.data.frames import select_frames

    ts = np.arange(30, dtype=np.float32)
    plan = plan_video("v", ts, 30.0, window=None, stride=None, max_frames=12, sampling="uniform", fps=None)
    np.testing.assert_array_equal(plan.frames[plan.members[0]], select_frames(ts, max_frames=12))


# --- grouping hits ---------------------------------------------------------------------------------

def _table() -> RowTable:
    # video a: windows 0-10, 5-15, 10-20; video b: 0-10, 10-20
    return RowTable.from_rows(["a", "a", "a", "b", "b"], [0, 5, 10, 0, 10], [10, 15, 20, 10, 20],
                              ["/v/a.mp4"] * 3 + ["/v/b.mp4"] * 2)


def test_overlapping_hits_of_a_video_merge_keeping_the_best_windows_score_and_span():
    rows = np.array([1, 0, 3, 2, 4])          # best first: a 5-15, a 0-10, b 0-10, a 10-20, b 10-20
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    got = group_hits(_table(), scores, rows, k=10)
    # a 0-10 and a 10-20 overlap a 5-15 and merge into it; b 0-10 and b 10-20 only touch: both stay
    assert [(m.video_id, m.start, m.end, m.score) for m in got] == [
        ("a", 5.0, 15.0, 0.9), ("b", 0.0, 10.0, 0.7), ("b", 10.0, 20.0, 0.5)]
    assert [m.rank for m in got] == [1, 2, 3] and got[0].path == "/v/a.mp4"


def test_windows_of_a_video_that_do_not_overlap_stay_separate_moments():
    got = group_hits(_table(), np.array([0.9, 0.8]), np.array([0, 2]), k=10)  # a 0-10 and a 10-20
    assert [(m.start, m.end) for m in got] == [(0.0, 10.0), (10.0, 20.0)]


def test_group_video_keeps_one_moment_per_video():
    rows, scores = np.array([1, 0, 3, 2, 4]), np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    got = group_hits(_table(), scores, rows, k=10, group="video")
    assert [(m.video_id, m.start, m.score) for m in got] == [("a", 5.0, 0.9), ("b", 0.0, 0.7)]


def test_grouping_stops_at_k_and_skips_missing_hits():
    got = group_hits(_table(), np.array([0.9, -np.inf, 0.7, 0.5]), np.array([1, -1, 3, 4]), k=2)
    assert [(m.video_id, m.start) for m in got] == [("a", 5.0), ("b", 0.0)]


def test_row_keys_are_unique_and_plain_for_single_row_videos():
    table = RowTable.from_rows(["a", "a", "b"], [0, 5, 0], [10, 15, 3])
    assert table.row_keys() == ["a#0", "a#1", "b"]
    assert RowTable.from_json(table.to_json()).to_json() == table.to_json()


def test_whole_video_rows_have_no_span():
    table = RowTable.whole_videos(["x", "y"])
    (m,) = group_hits(table, np.array([0.5]), np.array([1]), k=1)
    assert (m.video_id, m.start, m.end, m.path) == ("y", None, None, None)
    assert table.to_json()["start"] == [None, None]
