"""How `c4c extract` shares the CPUs out among its ffmpeg processes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from c4c.video.workers import ThreadPlan, usable_cpus


def test_one_thread_per_process_while_every_worker_is_busy_then_more_for_the_last_units():
    plan = ThreadPlan(units=6, workers=2, cpus=2)
    assert [plan.next() for _ in range(6)] == [1, 1, 1, 1, 1, 2]
    plan = ThreadPlan(units=5, workers=4, cpus=16)
    assert [plan.next() for _ in range(5)] == [4, 4, 5, 8, 16]


def test_a_single_long_video_gets_every_cpu_and_a_fixed_count_is_kept():
    assert ThreadPlan(units=1, workers=2, cpus=8).next() == 8
    plan = ThreadPlan(units=3, workers=2, fixed=3, cpus=2)
    assert [plan.next() for _ in range(3)] == [3, 3, 3]
    assert ThreadPlan(units=4, workers=8, cpus=2).next() == 1  # never 0


def test_each_unit_is_counted_once_from_many_threads():
    plan = ThreadPlan(units=400, workers=4, cpus=8)
    with ThreadPoolExecutor(8) as pool:
        counts = list(pool.map(lambda _: plan.next(), range(400)))
    assert sorted(counts) == [2] * 398 + [4, 8]  # 4 busy: 8 // 4; 3 left: 8 // 3; then 2 and 1 left
    assert usable_cpus() >= 1


def test_run_units_hands_each_ffmpeg_process_the_planned_thread_count(tmp_path, monkeypatch):
    from c4c.video import workers
    from c4c.video.layout import StoreSettings

    seen: list[int] = []
    monkeypatch.setattr(workers, "usable_cpus", lambda: 4)
    monkeypatch.setattr(workers, "sample_videos", lambda paths, **kw: seen.append(kw["threads"]) or
                        [workers.VideoError("test", path=p) for p in paths])
    tasks = [([(f"v{i}", f"/x/{i}.mp4")], tmp_path) for i in range(5)]
    outcomes = []
    workers.run_units(tasks, StoreSettings(), 0, 2, outcomes.append)
    assert sorted(seen) == [2, 2, 2, 2, 4] and len(outcomes) == 5 and not any(o.ok for o in outcomes)
    seen.clear()
    workers.run_units(tasks[:1], StoreSettings(), 0, 2, outcomes.append)
    assert seen == [4]  # one long video: every CPU
    seen.clear()
    workers.run_units(tasks, StoreSettings(), 3, 2, outcomes.append)
    assert seen == [3] * 5
