"""`c4c extract`: videos -> sampled, resized, centre-cropped frames in an HDF5 frame store.

Sources: a folder of videos (every file with a video extension, recursively; the id is the file name
without extension), or an annotation file of a known dataset plus the folder holding its videos (only
the videos the annotations name are extracted; missing ones are reported).

Resumable and crash-safe (see :mod:`c4c.video.store`); bad videos never stop the batch: each is
listed with its reason in ``<out stem>.failed.tsv``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from c4c.datasets.records import check_video_id
from c4c.errors import C4CError
from c4c.video import store
from c4c.video.decode import VideoError, sample_videos

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv",
                    ".3gp", ".ts", ".mts", ".ogv", ".gif")
_PREFERRED = (".mp4", ".webm")


@dataclass
class ExtractConfig:
    """Options of `c4c extract` (defaults follow the paper: 1 frame per second, 224 px)."""

    source: Path                      # folder of videos, or an annotation file/folder with `dataset`
    out: Path                         # FRAMES.h5
    videos_dir: Path | None = None    # where the videos are, when `source` is an annotation file
    dataset: str | None = None        # msrvtt|msvd|lsmdc|activitynet|didemo|howto100m|jsonl
    dataset_options: dict = field(default_factory=dict)
    fps: float = 1.0                  # sampled frames per second of video time
    size: int = 224                   # short side resized to this, then centre crop size x size
    codec: str = "jpeg"               # raw | jpeg (see bench/README.md for the trade-off)
    jpeg_quality: int = 95
    workers: int = 2                  # ffmpeg decoding processes running at once
    ffmpeg_threads: int = 0           # decoder threads per ffmpeg process; 0: ffmpeg's own choice
    commit_every: int = 0             # also merge into the store after this many videos; 0: at the end
    batch: int = 8                    # small files decoded together by one ffmpeg process (1: never)
    batch_max_bytes: int = 256_000    # files at least this large get a process of their own
    extensions: tuple[str, ...] = VIDEO_EXTENSIONS


@dataclass
class Failure:
    video_id: str
    path: str
    reason: str


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
class ExtractResult:
    out: Path
    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: list[Failure] = field(default_factory=list)
    frames: int = 0
    bytes: int = 0
    seconds: float = 0.0
    with_decode_errors: list[str] = field(default_factory=list)
    failed_tsv: Path | None = None
    summary_json: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass
class Job:
    video_id: str
    path: Path


def output_paths(out: Path) -> tuple[Path, Path]:
    """``(failed_tsv, summary_json)`` written next to the store."""
    stem = out.name[:-3] if out.name.endswith(".h5") else out.name
    return out.with_name(stem + ".failed.tsv"), out.with_name(stem + ".extract.json")


def _is_video_file(p: Path, extensions: tuple[str, ...]) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.suffix.lower() in extensions


def jobs_from_folder(folder: Path, extensions: tuple[str, ...]) -> tuple[list[Job], list[Failure]]:
    """One job per video file under ``folder`` (recursive); duplicate or unsafe ids become failures."""
    jobs: list[Job] = []
    failures: list[Failure] = []
    seen: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if not _is_video_file(p, extensions):
            continue
        vid = p.stem
        try:
            check_video_id(vid, path=str(p))
        except C4CError as exc:
            failures.append(Failure(vid, str(p), exc.problem))
            continue
        if vid in seen:
            failures.append(Failure(vid, str(p), f"duplicate video id: {seen[vid]} has the same name"))
            continue
        seen[vid] = p
        jobs.append(Job(vid, p))
    return jobs, failures


def _index_files(folder: Path) -> tuple[dict[str, list[Path]], dict[str, Path]]:
    by_stem: dict[str, list[Path]] = {}
    by_name: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            by_stem.setdefault(p.stem, []).append(p)
            by_name.setdefault(p.name, p)
    return by_stem, by_name


def _pick(paths: list[Path]) -> Path:
    for ext in _PREFERRED:
        for p in paths:
            if p.suffix.lower() == ext:
                return p
    return paths[0]


def jobs_from_annotations(config: ExtractConfig) -> tuple[list[Job], list[Failure]]:
    """One job per distinct video the annotations name; videos without a file become failures."""
    from c4c.datasets.registry import read_annotations

    if config.videos_dir is None:
        raise C4CError("an annotation file needs --videos DIR (the folder holding the videos)",
                       path=config.source)
    if not config.videos_dir.is_dir():
        raise C4CError("videos folder not found", path=config.videos_dir)
    records = read_annotations(config.dataset, config.source, **config.dataset_options)
    by_stem, by_name = _index_files(config.videos_dir)
    jobs: list[Job] = []
    failures: list[Failure] = []
    seen: set[str] = set()
    for rec in records:
        if rec.video_id in seen:
            continue
        seen.add(rec.video_id)
        found: Path | None = None
        if rec.source_name and rec.source_name in by_name:
            found = by_name[rec.source_name]
        elif rec.video_id in by_stem:
            found = _pick(by_stem[rec.video_id])
        elif rec.source_name and Path(rec.source_name).stem in by_stem:
            found = _pick(by_stem[Path(rec.source_name).stem])
        if found is None:
            failures.append(Failure(rec.video_id, "", f"missing: no file for this video under {config.videos_dir}"))
        else:
            jobs.append(Job(rec.video_id, found))
    return jobs, failures


def extract_unit(jobs: list[tuple[str, str]], parts_dir: str, settings: store.StoreSettings,
                 threads: int) -> list[Outcome]:
    """Decode a few videos with one ffmpeg process and stage each as a part file (runs in a worker thread)."""
    try:
        samples = sample_videos([path for _, path in jobs], fps=settings.fps, size=settings.size,
                                codec=settings.codec, jpeg_quality=settings.jpeg_quality, threads=threads)
    except Exception as exc:  # a bug or an OS error must not stop the batch; it is reported
        log.exception("unexpected error on %s", [p for _, p in jobs])
        return [Outcome(v, p, ok=False, reason=f"unexpected error: {type(exc).__name__}: {exc}") for v, p in jobs]
    outcomes = []
    for (video_id, path), sample in zip(jobs, samples):
        if isinstance(sample, VideoError):
            outcomes.append(Outcome(video_id, path, ok=False, reason=sample.problem))
            continue
        try:
            store.write_part(Path(parts_dir), video_id, sample, settings, path)
        except Exception as exc:
            log.exception("could not stage %s", path)
            outcomes.append(Outcome(video_id, path, ok=False, reason=f"could not write: {type(exc).__name__}: {exc}"))
            continue
        outcomes.append(Outcome(video_id, path, ok=True, frames=sample.num_frames, nbytes=sample.nbytes,
                                decode_errors=len(sample.decode_errors)))
    return outcomes


def work_units(jobs: list[Job], batch: int, max_bytes: int, workers: int = 1) -> list[list[tuple[str, str]]]:
    """Group consecutive small files (< max_bytes) up to ``batch`` per unit; large files go alone.

    Batches shrink so that there are at least 4 units per worker: fewer, larger units would leave
    workers idle at the end.
    """
    def size(job: Job) -> int:
        try:
            return job.path.stat().st_size
        except OSError:
            return 0  # let the decoder report it

    small_count = sum(1 for j in jobs if size(j) < max_bytes)
    batch = max(1, min(batch, small_count // (4 * max(1, workers))))
    units: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for job in jobs:
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


def _validate(config: ExtractConfig) -> store.StoreSettings:
    if config.codec not in store.CODECS:
        raise C4CError(f"unknown --codec {config.codec!r}; choose raw or jpeg")
    if config.fps <= 0:
        raise C4CError(f"--fps must be positive, got {config.fps}")
    if config.size < 8:
        raise C4CError(f"--size must be at least 8, got {config.size}")
    if not 1 <= config.jpeg_quality <= 100:
        raise C4CError(f"--jpeg-quality must be in 1..100, got {config.jpeg_quality}")
    if config.commit_every < 0:
        raise C4CError(f"--commit-every must be 0 or more, got {config.commit_every}")
    if config.workers < 1:
        raise C4CError(f"--workers must be at least 1, got {config.workers}")
    if not config.source.exists():
        raise C4CError("source not found", path=config.source)
    return store.StoreSettings(fps=config.fps, size=config.size, codec=config.codec,
                               jpeg_quality=config.jpeg_quality)


def _open_or_create_store(out: Path, settings: store.StoreSettings) -> None:
    store.remove_stale_merges(out)
    if out.exists():
        have = store.read_settings(out)
        if have != settings:
            raise C4CError(f"already holds frames extracted with {have.describe()}; this run asks "
                           f"{settings.describe()}",
                           path=out, hint="use the same settings to resume, or another --out")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        store.create_store(out, settings)


def run(config: ExtractConfig, on_start: Callable[[int, int], None] | None = None,
        on_video: Callable[[Outcome], None] | None = None) -> ExtractResult:
    """Extract every pending video of ``config.source`` into ``config.out``.

    ``on_start(pending, skipped)`` is called once the work is known, ``on_video(outcome)`` after each
    video. Returns the counts; ``result.failed`` lists every video that could not be extracted.
    """
    t0 = time.perf_counter()
    settings = _validate(config)
    out = config.out
    if config.dataset is None:
        if not config.source.is_dir():
            raise C4CError("is a file: pass a folder of videos, or an annotation file with --dataset",
                           path=config.source)
        jobs, failures = jobs_from_folder(config.source, tuple(e.lower() for e in config.extensions))
    else:
        jobs, failures = jobs_from_annotations(config)

    _open_or_create_store(out, settings)
    parts_dir = store.parts_dir_for(out)
    staged = store.list_parts(parts_dir)
    if staged:  # finished by an earlier, interrupted run
        store.merge_parts(out, staged)
    present = store.stored_ids(out)
    pending = [j for j in jobs if j.video_id not in present]
    result = ExtractResult(out=out, total=len(jobs) + len(failures), skipped=len(jobs) - len(pending))
    result.failed.extend(failures)
    if on_start:
        on_start(len(pending), result.skipped)

    threads = config.ffmpeg_threads
    unmerged: dict[str, Path] = {}

    def record(outcome: Outcome) -> None:
        if outcome.ok:
            result.done += 1
            result.frames += outcome.frames
            result.bytes += outcome.nbytes
            if outcome.decode_errors:
                result.with_decode_errors.append(outcome.video_id)
            unmerged[outcome.video_id] = store.part_path(parts_dir, outcome.video_id)
            if config.commit_every and len(unmerged) >= config.commit_every:
                store.merge_parts(out, dict(unmerged))
                unmerged.clear()
        else:
            result.failed.append(Failure(outcome.video_id, outcome.path, outcome.reason))
        if on_video:
            on_video(outcome)

    units = work_units(pending, config.batch, config.batch_max_bytes, config.workers)
    try:
        if config.workers == 1 or len(units) <= 1:
            for unit in units:
                for outcome in extract_unit(unit, str(parts_dir), settings, threads):
                    record(outcome)
        else:
            _run_pool(units, parts_dir, settings, threads, config.workers, record)
    finally:
        # Whatever happens (Ctrl-C included), keep every finished video.
        store.merge_parts(out, store.list_parts(parts_dir))
        try:
            parts_dir.rmdir()
        except OSError:
            pass

    result.seconds = time.perf_counter() - t0
    result.failed_tsv, result.summary_json = output_paths(out)
    _write_failed_tsv(result.failed_tsv, result.failed)
    _write_summary(result.summary_json, config, result)
    return result


def _run_pool(units: list[list[tuple[str, str]]], parts_dir: Path, settings: store.StoreSettings,
              threads: int, workers: int, record: Callable[[Outcome], None]) -> None:
    """Keep ``workers`` ffmpeg processes busy (one per thread); at most 2 x workers units are queued."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="extract") as pool:
        queue = iter(units)
        running: set[Future] = set()
        try:
            while True:
                while len(running) < 2 * workers:
                    unit = next(queue, None)
                    if unit is None:
                        break
                    running.add(pool.submit(extract_unit, unit, str(parts_dir), settings, threads))
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


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _write_failed_tsv(path: Path, failures: list[Failure]) -> None:
    if not failures:
        path.unlink(missing_ok=True)  # a list from an earlier run would now be stale
        return
    clean = lambda s: str(s).replace("\t", " ").replace("\n", " ")  # noqa: E731
    lines = ["video_id\tpath\treason"] + [f"{clean(f.video_id)}\t{clean(f.path)}\t{clean(f.reason)}"
                                           for f in failures]
    _atomic_write_text(path, "\n".join(lines) + "\n")


def _write_summary(path: Path, config: ExtractConfig, result: ExtractResult) -> None:
    cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    summary = {
        "config": cfg,
        "out": str(result.out),
        "videos": {"total": result.total, "done": result.done, "skipped": result.skipped,
                   "failed": len(result.failed)},
        "frames": result.frames,
        "bytes": result.bytes,
        "seconds": round(result.seconds, 3),
        "failed": [asdict(f) for f in result.failed],
        "decoded_with_errors": result.with_decode_errors,
    }
    _atomic_write_text(path, json.dumps(summary, indent=2) + "\n")
