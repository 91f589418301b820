"""`c4c extract`: videos -> sampled, resized, centre-cropped frames in an HDF5 frame store.

Sources: a folder of videos (every file with a video extension, recursively; the id is the file name
without extension), or an annotation file of a known dataset plus the folder holding its videos (only
the videos the annotations name are extracted; missing ones are reported).

Resumable and crash-safe (see :mod:`c4c.video.store`); bad videos never stop the batch: each is
listed with its reason in ``<out stem>.failed.tsv``.

Shard sets (``shards=S``, ``out`` a folder): video ``v`` goes to ``frames-<k>-of-<S>.h5`` with
``k = sha1(v) mod S``; each shard file is an ordinary store, written exactly like a single one. Several
machines can extract one shard set at once by each taking other shards (``shard_index``). While a run
works on a shard, ``frames-<k>-of-<S>.h5.running`` marks it; the run that finds every shard present
and none running or with unmerged videos writes ``manifest.json`` (what readers open). After a crash,
or to be sure, :func:`index_shards` (``c4c extract --index DIR``) writes it from the shard files.
"""

from __future__ import annotations

import json
import logging
import os
import socket
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
    shards: int = 0                   # write a shard set of this many files into the folder `out`; 0: one file
    shard_index: tuple[int, ...] | None = None  # extract only these shards (one share of several machines)


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
    shards: list[Path] = field(default_factory=list)  # the shard files this run worked on (sharded runs)
    manifest: Path | None = None  # the shard manifest, when this run (re)wrote it

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


def work_units(jobs: list[Job], batch: int, max_bytes: int, workers: int = 1,
               group: Callable[[Job], object] | None = None) -> list[list[tuple[str, str]]]:
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
    units: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
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
    if config.shards < 0:
        raise C4CError(f"--shards must be 0 (one file) or more, got {config.shards}")
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


def parse_shard_index(spec: str) -> tuple[int, ...]:
    """``"3"``, ``"0-7"`` or ``"0,4,8-11"`` -> sorted distinct shard numbers; C4CError on bad syntax."""
    chosen: set[int] = set()
    for part in str(spec).replace(" ", "").split(","):
        lo, dash, hi = part.partition("-")
        try:
            a = int(lo)
            b = int(hi) if dash else a
        except ValueError:
            raise C4CError(f"bad --shard-index {spec!r}",
                           hint="give shard numbers and ranges: 3, 0-7 or 0,4,8-11") from None
        if a < 0 or b < a:
            raise C4CError(f"bad shard range {part!r} in --shard-index {spec!r}")
        chosen.update(range(a, b + 1))
    return tuple(sorted(chosen))


def _shard_count(config: ExtractConfig) -> int:
    """Shards of the set in ``config.out`` (0: one FRAMES.h5), checked against what is already there."""
    out = config.out
    existing = 0
    if out.is_dir():
        existing, _ = store.find_shards(out)
    elif out.exists():
        if config.shards or config.shard_index is not None:
            raise C4CError("is a file, but a shard set is a folder", path=out,
                           hint="give --out a folder name for --shards, or drop --shards")
        return 0
    if config.shards and existing and config.shards != existing:
        raise C4CError(f"already holds a set of {existing} shards; this run asks for {config.shards}", path=out,
                       hint=f"pass --shards {existing} to resume it, or choose another --out")
    count = config.shards or existing
    if count and out.suffix.lower() == ".h5":
        raise C4CError("a shard set is a folder: give --out a name without .h5", path=out)
    if not count and out.is_dir():
        raise C4CError("is a folder", path=out,
                       hint="pass --shards S to write a shard set into it, or a file name for one FRAMES.h5")
    if config.shard_index is not None:
        if not count:
            raise C4CError("--shard-index needs --shards (the size of the shard set)")
        beyond = [k for k in config.shard_index if not 0 <= k < count]
        if beyond or not config.shard_index:
            raise C4CError(f"--shard-index must name shards 0..{count - 1}, got {list(config.shard_index)}")
    return count


def _marker(shard: Path) -> Path:
    """The file that says a run is working on ``shard`` (removed when it ends)."""
    return shard.with_name(shard.name + ".running")


def shard_set_state(folder: Path) -> tuple[int, list[str]]:
    """``(S, reasons)``: why the manifest of the shard set in ``folder`` cannot be written yet (empty: it can)."""
    count, found = store.find_shards(folder)
    reasons = [f"{store.shard_name(k, count)} is missing" for k in range(count) if k not in found]
    reasons += [f"{p.name[:-len('.running')]} is being extracted ({p.read_text(errors='replace').strip() or '?'})"
                for p in sorted(folder.glob("frames-*-of-*.h5.running"))]
    reasons += [f"{p.name[:-len('.parts')]} has unmerged videos" for p in store.pending_shard_parts(folder)]
    return count, reasons


def index_shards(folder: Path) -> Path:
    """Write ``manifest.json`` of the shard set in ``folder`` from its shard files (``c4c extract --index``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise C4CError("not a folder", path=folder, hint="give the folder of a shard set (frames-*-of-*.h5)")
    _, reasons = shard_set_state(folder)
    for reason in reasons:
        if "missing" not in reason:  # missing shards are an error of write_manifest
            log.warning("%s: %s (its videos so far are indexed)", folder, reason)
    return store.write_manifest(folder)


def run(config: ExtractConfig, on_start: Callable[[int, int], None] | None = None,
        on_video: Callable[[Outcome], None] | None = None) -> ExtractResult:
    """Extract every pending video of ``config.source`` into ``config.out``.

    ``on_start(pending, skipped)`` is called once the work is known, ``on_video(outcome)`` after each
    video. Returns the counts; ``result.failed`` lists every video that could not be extracted.
    With ``config.shards`` (or an existing shard set in ``config.out``) the videos are spread over the
    shard files, and only the shards in ``config.shard_index`` (all when None) are worked on.
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

    count = _shard_count(config)
    if count:
        selected = config.shard_index if config.shard_index is not None else tuple(range(count))
        targets = {k: out / store.shard_name(k, count) for k in selected}
        jobs = [j for j in jobs if store.shard_of(j.video_id, count) in targets]
        failures = [f for f in failures if store.shard_of(f.video_id, count) in targets]
        jobs.sort(key=lambda j: store.shard_of(j.video_id, count))  # stable: each shard's jobs together

        def target_of(video_id: str) -> Path:
            return targets[store.shard_of(video_id, count)]

        out.mkdir(parents=True, exist_ok=True)
        marker_text = f"{socket.gethostname()} pid {os.getpid()}\n"
        for path in targets.values():
            marker = _marker(path)
            if marker.exists():
                log.warning("%s was marked as being extracted by %s: a killed run, or another machine at work "
                            "(never run two on one shard)", path.name, marker.read_text(errors="replace").strip())
            marker.write_text(marker_text, encoding="utf-8")
    else:
        selected = ()
        targets = {0: out}

        def target_of(video_id: str) -> Path:
            return out

    try:
        present: set[str] = set()
        for path in targets.values():
            _open_or_create_store(path, settings)
            staged = store.list_parts(store.parts_dir_for(path))
            if staged:  # finished by an earlier, interrupted run
                store.merge_parts(path, staged)
            present |= store.stored_ids(path)
        pending = [j for j in jobs if j.video_id not in present]
        result = ExtractResult(out=out, total=len(jobs) + len(failures), skipped=len(jobs) - len(pending))
        result.failed.extend(failures)
        result.shards = list(targets.values()) if count else []
        if on_start:
            on_start(len(pending), result.skipped)
        _extract_pending(config, settings, pending, target_of, result, on_video)
    finally:
        if count:
            for path in targets.values():
                _marker(path).unlink(missing_ok=True)

    if count:
        _, reasons = shard_set_state(out)
        if reasons:
            log.info("%s: manifest not written yet: %s; it is written by the last run to finish, or by "
                     "`c4c extract --index %s`", out, "; ".join(reasons[:3]), out)
        else:
            result.manifest = store.write_manifest(out)
    result.seconds = time.perf_counter() - t0
    result.failed_tsv, result.summary_json = _summary_paths(out, count, config.shard_index)
    _write_failed_tsv(result.failed_tsv, result.failed)
    _write_summary(result.summary_json, config, result)
    return result


def _summary_paths(out: Path, count: int, shard_index: tuple[int, ...] | None) -> tuple[Path, Path]:
    """Where the failure list and the summary go: next to FRAMES.h5, or inside the shard folder (one pair
    per share of shards, so that machines working on other shards do not overwrite each other's)."""
    if not count:
        return output_paths(out)
    name = "extract"
    if shard_index is not None:
        name += "-shards-" + ("-".join(map(str, shard_index)) if len(shard_index) <= 4
                              else f"{shard_index[0]}..{shard_index[-1]}-{len(shard_index)}")
    return out / f"{name}.failed.tsv", out / f"{name}.json"


def _extract_pending(config: ExtractConfig, settings: store.StoreSettings, pending: list[Job],
                     target_of: Callable[[str], Path], result: ExtractResult,
                     on_video: Callable[[Outcome], None] | None) -> None:
    """Decode ``pending`` into the parts folders of their stores, merging as configured."""
    threads = config.ffmpeg_threads
    unmerged: dict[Path, dict[str, Path]] = {}

    def record(outcome: Outcome) -> None:
        if outcome.ok:
            result.done += 1
            result.frames += outcome.frames
            result.bytes += outcome.nbytes
            if outcome.decode_errors:
                result.with_decode_errors.append(outcome.video_id)
            target = target_of(outcome.video_id)
            waiting = unmerged.setdefault(target, {})
            waiting[outcome.video_id] = store.part_path(store.parts_dir_for(target), outcome.video_id)
            if config.commit_every and len(waiting) >= config.commit_every:
                store.merge_parts(target, dict(waiting))
                waiting.clear()
        else:
            result.failed.append(Failure(outcome.video_id, outcome.path, outcome.reason))
        if on_video:
            on_video(outcome)

    units = work_units(pending, config.batch, config.batch_max_bytes, config.workers,
                       group=lambda job: target_of(job.video_id))
    tasks = [(unit, store.parts_dir_for(target_of(unit[0][0]))) for unit in units]
    targets = list(dict.fromkeys(target_of(j.video_id) for j in pending))
    try:
        if config.workers == 1 or len(tasks) <= 1:
            for unit, parts_dir in tasks:
                for outcome in extract_unit(unit, str(parts_dir), settings, threads):
                    record(outcome)
        else:
            _run_pool(tasks, settings, threads, config.workers, record)
    finally:
        # Whatever happens (Ctrl-C included), keep every finished video.
        for target in targets:
            parts_dir = store.parts_dir_for(target)
            store.merge_parts(target, store.list_parts(parts_dir))
            try:
                parts_dir.rmdir()
            except OSError:
                pass


def _run_pool(tasks: list[tuple[list[tuple[str, str]], Path]], settings: store.StoreSettings,
              threads: int, workers: int, record: Callable[[Outcome], None]) -> None:
    """Keep ``workers`` ffmpeg processes busy (one per thread); at most 2 x workers units are queued.

    ``tasks``: (unit, the parts folder its videos are staged in)."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="extract") as pool:
        queue = iter(tasks)
        running: set[Future] = set()
        try:
            while True:
                while len(running) < 2 * workers:
                    task = next(queue, None)
                    if task is None:
                        break
                    unit, parts_dir = task
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
