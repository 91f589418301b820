"""Decoding many videos at once into staged parts (the work of `c4c extract`).

Small files are grouped into *units* decoded by one ffmpeg process each (:func:`work_units`); a
thread per worker keeps that many ffmpeg processes busy (:func:`run_units`), and every finished video
is written to its own part file (:mod:`c4c.video.staging`) for the stage to merge. A video that
cannot be decoded or written becomes a failed :class:`Outcome`; it never stops the others. A full disk
is not the video's fault: :class:`c4c.atomic.DiskFull` stops the run (every finished part is kept).

Decoder threads (:class:`ThreadPlan`): ffmpeg's own choice is about one frame thread per CPU for *each*
process, so ``workers`` processes on as many CPUs run ``workers`` times more threads than CPUs, and
frame threading costs CPU time (about 20 % more per 320x240 file than one thread, bench/README.md).
By default every process therefore gets ``CPUs // busy`` threads, ``busy`` being how many processes
run at once while it starts: one thread each while all workers are busy, more for the last units,
and all CPUs for a run of one long video.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from c4c import interrupt
from c4c.atomic import DiskFull
from c4c.video.decode import VideoError, sample_videos
from c4c.video.staging import write_part
from c4c.video.layout import StoreSettings

log = logging.getLogger(__name__)

Unit = list[tuple[str, str]]  # (video id, path) of the videos one ffmpeg process decodes


@dataclass
class Outcome:
    """What happened to one video."""

    video_id: str
    path: str
    ok: bool
    frames: int = 0
    nbytes: int = 0
    reason: str = ""
    decode_errors: int = 0


@dataclass
class Job:
    """One video to extract."""

    video_id: str
    path: Path


def extract_unit(jobs: Unit, parts_dir: str, settings: StoreSettings,
                 threads: int) -> list[Outcome]:
    """Decode a few videos with one ffmpeg process and stage each as a part file (runs in a worker thread)."""
    try:
        samples = sample_videos([path for _, path in jobs], fps=settings.fps, size=settings.size,
                                codec=settings.codec, jpeg_quality=settings.jpeg_quality, threads=threads,
                                reader=settings.reader)
    except Exception as exc:  # a bug or an OS error must not stop the batch; it is reported
        if interrupt.requested():  # a child stopped by the Ctrl-C (even ffmpeg's own lookup): not the videos' fault
            return [Outcome(v, p, ok=False, reason="interrupted") for v, p in jobs]
        log.exception("unexpected error on %s", [p for _, p in jobs])
        return [Outcome(v, p, ok=False, reason=f"unexpected error: {type(exc).__name__}: {exc}") for v, p in jobs]
    outcomes = []
    for (video_id, path), sample in zip(jobs, samples):
        if isinstance(sample, VideoError):
            outcomes.append(Outcome(video_id, path, ok=False, reason=sample.problem))
            continue
        try:
            write_part(Path(parts_dir), video_id, sample, settings, path)
        except DiskFull:
            raise
        except Exception as exc:
            log.exception("could not stage %s", path)
            outcomes.append(Outcome(video_id, path, ok=False, reason=f"could not write: {type(exc).__name__}: {exc}"))
            continue
        outcomes.append(Outcome(video_id, path, ok=True, frames=sample.num_frames, nbytes=sample.nbytes,
                                decode_errors=len(sample.decode_errors)))
    return outcomes


def work_units(jobs: list[Job], batch: int, max_bytes: int, workers: int = 1,
               group: Callable[[Job], object] | None = None) -> list[Unit]:
    """Group consecutive small files (< max_bytes) up to ``batch`` per unit; large files go alone.

    Batches shrink so that there are at least 4 units per worker: fewer, larger units would leave
    workers idle at the end. With ``group``, a unit never holds jobs of two groups (shards).
    """
    def size(job: Job) -> int:
        try:
            return job.path.stat().st_size
        except OSError:
            return 0  # let the decoder report it

    small_count = sum(1 for j in jobs if size(j) < max_bytes)
    batch = max(1, min(batch, small_count // (4 * max(1, workers))))
    units: list[Unit] = []
    current: Unit = []
    current_group: object = None
    for job in jobs:
        if group is not None:
            g = group(job)
            if current and g != current_group:
                units.append(current)
                current = []
            current_group = g
        if batch > 1 and size(job) < max_bytes:
            current.append((job.video_id, str(job.path)))
            if len(current) >= batch:
                units.append(current)
                current = []
        else:
            units.append([(job.video_id, str(job.path))])
    if current:
        units.append(current)
    return units


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers and ``taskset`` narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class ThreadPlan:
    """Decoder threads for each unit as it starts: ``fixed`` when given (> 0), otherwise
    ``max(1, cpus // busy)`` with ``busy = min(workers, units not yet started + this one)``."""

    def __init__(self, units: int, workers: int, fixed: int = 0, cpus: int | None = None) -> None:
        self.units, self.workers, self.fixed = units, max(1, workers), fixed
        self.cpus = cpus if cpus is not None else usable_cpus()
        self._started = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        """Threads for the unit starting now (called once per unit, from any worker thread)."""
        with self._lock:
            left = self.units - self._started
            self._started += 1
        if self.fixed > 0:
            return self.fixed
        return max(1, self.cpus // max(1, min(self.workers, left)))


def run_units(tasks: list[tuple[Unit, Path]], settings: StoreSettings, threads: int, workers: int,
              record: Callable[[Outcome], None]) -> None:
    """Decode every unit into its parts folder, calling ``record`` with each video's outcome as it ends.

    ``tasks``: (unit, the parts folder its videos are staged in). ``workers`` ffmpeg processes run at
    once (one per thread; at most 2 x workers units are queued), each with ``threads`` decoder threads
    (0: as :class:`ThreadPlan` decides).

    After a first Ctrl-C (:mod:`c4c.interrupt`) no unit starts: it returns once the running ones have
    ended (their ffmpeg got the terminal's SIGINT too and stops at once), their outcomes recorded.
    """
    plan = ThreadPlan(len(tasks), workers if len(tasks) > 1 else 1, threads)

    def one(unit: Unit, parts_dir: Path) -> list[Outcome]:
        if interrupt.requested():  # queued before the Ctrl-C: left for the next run
            return []
        return extract_unit(unit, str(parts_dir), settings, plan.next())

    if workers == 1 or len(tasks) <= 1:
        for unit, parts_dir in tasks:
            if interrupt.requested():
                return
            for outcome in one(unit, parts_dir):
                record(outcome)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="extract") as pool:
        queue = iter(tasks)
        running: set[Future] = set()
        try:
            while True:
                while len(running) < 2 * workers and not interrupt.requested():
                    task = next(queue, None)
                    if task is None:
                        break
                    unit, parts_dir = task
                    running.add(pool.submit(one, unit, parts_dir))
                if not running:
                    break
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    for outcome in fut.result():
                        record(outcome)
        except BaseException:
            for fut in running:
                fut.cancel()
            raise
