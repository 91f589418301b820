"""`c4c extract`: videos -> sampled, resized, centre-cropped frames in an HDF5 frame store.

Sources: a folder of videos (every file with a video extension, recursively; the id is the file name
without extension), or an annotation file of a known dataset plus the folder holding its videos (only
the videos the annotations name are extracted; missing ones are reported).

Resumable and crash-safe (see :mod:`c4c.video.staging`); bad videos never stop the batch: each is
listed with its reason in ``<out stem>.failed.tsv``. Files of the folder that are not extracted (other
extensions, hidden files, macOS ``._`` resource forks, broken links) are listed in the summary with why.

One run writes a store at a time (:mod:`c4c.lock`); a full disk stops the run with
:class:`c4c.atomic.DiskFull`, every finished video kept (merged, or staged for the next run).

Shard sets (``shards=S``, ``out`` a folder): video ``v`` goes to ``frames-<k>-of-<S>.h5`` with
``k = sha1(v) mod S``; each shard file is an ordinary store, written exactly like a single one. Several
machines can extract one shard set at once by each taking other shards (``shard_index``). While a run
works on a shard, ``frames-<k>-of-<S>.h5.running`` marks it; the run that finds every shard present
and none running or with unmerged videos writes ``manifest.json`` (what readers open). After a crash,
or to be sure, :func:`c4c.video.shards.index_shards` (``c4c extract --write-manifest DIR``) writes it from the
shard files. Decoding in parallel is :mod:`c4c.video.workers`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from c4c import interrupt
from c4c.atomic import DiskFull, disk_full_is_an_error, write_json, write_text
from c4c.datasets.records import check_video_id
from c4c.datasets.registry import read_annotations
from c4c.errors import C4CError
from c4c.lock import writer_lock
from c4c.options import check_config
from c4c.outputs import Output, check_outputs
from c4c.stages.extract_config import ExtractConfig
from c4c.video import layout, shards, staging
from c4c.video.ffmpeg_bin import ffmpeg_exe
from c4c.video.shards import shard_set_state
from c4c.video.workers import Job, Outcome, run_units, work_units

log = logging.getLogger(__name__)

_PREFERRED = (".mp4", ".webm")


@dataclass
class Failure:
    video_id: str
    path: str
    reason: str


@dataclass
class Skipped:
    """A file of the source folder that was not extracted, and why."""

    path: str
    reason: str


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
    ignored: list[Skipped] = field(default_factory=list)  # files of the folder not taken as videos

    @property
    def ok(self) -> bool:
        return not self.failed


def output_paths(out: Path) -> tuple[Path, Path]:
    """``(failed_tsv, summary_json)`` written next to the store."""
    stem = out.name[:-3] if out.name.endswith(".h5") else out.name
    return out.with_name(stem + ".failed.tsv"), out.with_name(stem + ".extract.json")


def skip_reason(p: Path, extensions: tuple[str, ...]) -> str | None:
    """Why the file ``p`` of a video folder is not extracted, or None when it is a video to extract."""
    if p.is_symlink() and not p.exists():
        return "broken symbolic link"
    if not p.is_file():
        return "not a regular file"
    video = p.suffix.lower() in extensions
    if p.name.startswith("._"):
        return "macOS resource fork (an AppleDouble '._' file holds Finder metadata, not a video)"
    if p.name.startswith("."):
        return "hidden file (name starts with '.'): rename it to extract it" if video else "hidden file"
    if not video:
        return f"not a video file extension ({p.suffix or 'none'})"
    return None


def jobs_from_folder(folder: Path, extensions: tuple[str, ...]) -> tuple[list[Job], list[Failure], list[Skipped]]:
    """One job per video file under ``folder`` (recursive); duplicate or unsafe ids become failures, files
    that are not videos (or hidden) are listed as skipped with the reason."""
    jobs: list[Job] = []
    failures: list[Failure] = []
    skipped: list[Skipped] = []
    seen: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if p.is_dir():
            continue
        reason = skip_reason(p, extensions)
        if reason is not None:
            skipped.append(Skipped(str(p), reason))
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
    return jobs, failures, skipped


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


# The numbers `c4c extract` takes (checked by the CLI too, before anything is read or written).
def _validate(config: ExtractConfig) -> layout.StoreSettings:
    check_config(config)
    if not config.source.exists():
        raise C4CError("source not found", path=config.source)
    reader = "reference" if config.reference_reader else "c4c"
    if reader == "reference" and not float(config.fps).is_integer():
        raise C4CError(f"--reference-reader samples a whole number of frames per second, not --fps {config.fps:g}",
                       hint="use --fps 1, as the paper")
    return layout.StoreSettings(fps=config.fps, size=config.size, codec=config.codec,
                               jpeg_quality=config.jpeg_quality, reader=reader)


def _open_or_create_store(out: Path, settings: layout.StoreSettings) -> None:
    staging.remove_stale_merges(out)
    if out.exists():
        have = layout.read_settings(out)
        if have != settings:
            raise C4CError(f"already holds frames extracted with {have.describe()}; this run asks "
                           f"{settings.describe()}",
                           path=out, hint="use the same settings to resume, or another --out")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        layout.create_store(out, settings)


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
    # not over its videos or annotations, and writable (the store's own format is checked as it is opened,
    # under its writer lock, below)
    check_outputs([Output(Path(out), "frame store", lambda path: True, folder=out.is_dir() or bool(config.shards))],
                  [config.source, config.videos_dir])
    if config.dataset is None:
        if not config.source.is_dir():
            raise C4CError("is a file: pass a folder of videos, or an annotation file with --dataset",
                           path=config.source)
        jobs, failures, ignored = jobs_from_folder(config.source, tuple(e.lower() for e in config.extensions))
        _log_ignored(ignored, tuple(e.lower() for e in config.extensions))
    else:
        jobs, failures = jobs_from_annotations(config)
        ignored = []

    count = shards.shard_count(out, config.shards, config.shard_index)
    if count:
        selected = config.shard_index if config.shard_index is not None else tuple(range(count))
        targets = {k: out / shards.shard_name(k, count) for k in selected}
        jobs = [j for j in jobs if shards.shard_of(j.video_id, count) in targets]
        failures = [f for f in failures if shards.shard_of(f.video_id, count) in targets]
        jobs.sort(key=lambda j: shards.shard_of(j.video_id, count))  # stable: each shard's jobs together

        def target_of(video_id: str) -> Path:
            return targets[shards.shard_of(video_id, count)]

        out.mkdir(parents=True, exist_ok=True)
    else:
        selected = ()
        targets = {0: out}

        def target_of(video_id: str) -> Path:
            return out

    # Nothing of a store (its temp files, its parts) is touched before its writer lock is held.
    with writer_lock(targets.values(), wait=config.wait):
        if count:
            shards.mark_running(targets.values())
        try:
            present: set[str] = set()
            for path in targets.values():
                _open_or_create_store(path, settings)
                staged = staging.list_parts(staging.parts_dir_for(path))
                if staged:  # finished by an earlier, interrupted run
                    staging.merge_parts(path, staged)
                present |= staging.stored_ids(path)
            pending = [j for j in jobs if j.video_id not in present]
            result = ExtractResult(out=out, total=len(jobs) + len(failures), skipped=len(jobs) - len(pending))
            result.failed.extend(failures)
            result.ignored = ignored
            result.shards = list(targets.values()) if count else []
            if on_start:
                on_start(len(pending), result.skipped)
            if pending:
                ffmpeg_exe()  # looked up here: a Ctrl-C during the lookup in a worker would read as "no ffmpeg"
            with interrupt.graceful():  # Ctrl-C: stop after the running ffmpegs, keeping every finished video
                _extract_pending(config, settings, pending, target_of, result, on_video)
        finally:
            if count:
                shards.unmark_running(targets.values())

    if count:
        _, reasons = shard_set_state(out)
        if reasons:
            log.info("%s: manifest not written yet: %s; it is written by the last run to finish, or by "
                     "`c4c extract --write-manifest %s`", out, "; ".join(reasons[:3]), out)
        else:
            result.manifest = shards.write_manifest(out)
    result.seconds = time.perf_counter() - t0
    result.failed_tsv, result.summary_json = _summary_paths(out, count, config.shard_index)
    with disk_full_is_an_error(result.summary_json, "every finished video is in the store; free space and re-run "
                                                    "to write the summary"):
        _write_failed_tsv(result.failed_tsv, result.failed)
        _write_summary(result.summary_json, config, result)
    return result


def _log_ignored(ignored: list[Skipped], extensions: tuple[str, ...]) -> None:
    """A warning per file that looks like a video but is not extracted; one line for the other files."""
    others = 0
    for item in ignored:
        if Path(item.path).suffix.lower() in extensions or item.reason.startswith("broken"):
            log.warning("skipped %s: %s", item.path, item.reason)
        else:
            others += 1
    if others:
        log.info("skipped %d files that are not videos (listed in the summary)", others)


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


def _extract_pending(config: ExtractConfig, settings: layout.StoreSettings, pending: list[Job],
                     target_of: Callable[[str], Path], result: ExtractResult,
                     on_video: Callable[[Outcome], None] | None) -> None:
    """Decode ``pending`` into the parts folders of their stores, merging as configured."""
    unmerged: dict[Path, dict[str, Path]] = {}
    written: dict[Path, dict[str, Path]] = {}  # parts this run wrote: merged without reading them back
    ended = 0  # videos of ``pending`` extracted or failed

    def record(outcome: Outcome) -> None:
        nonlocal ended
        if not outcome.ok and interrupt.requested():
            return  # its ffmpeg was stopped by the Ctrl-C, not by the video: left for the next run
        ended += 1
        if outcome.ok:
            result.done += 1
            result.frames += outcome.frames
            result.bytes += outcome.nbytes
            if outcome.decode_errors:
                result.with_decode_errors.append(outcome.video_id)
            target = target_of(outcome.video_id)
            waiting = unmerged.setdefault(target, {})
            part = staging.part_path(staging.parts_dir_for(target), outcome.video_id)
            waiting[outcome.video_id] = written.setdefault(target, {})[outcome.video_id] = part
            if config.commit_every and len(waiting) >= config.commit_every:
                staging.merge_parts(target, dict(waiting), trusted=waiting.keys())
                waiting.clear()
        else:
            result.failed.append(Failure(outcome.video_id, outcome.path, outcome.reason))
        if on_video:
            on_video(outcome)

    units = work_units(pending, config.batch, config.batch_max_bytes, config.workers,
                       group=lambda job: target_of(job.video_id))
    tasks = [(unit, staging.parts_dir_for(target_of(unit[0][0]))) for unit in units]
    targets = list(dict.fromkeys(target_of(j.video_id) for j in pending))
    full: DiskFull | None = None  # the disk filled up while staging a video: stop, keeping what is done
    try:
        try:
            run_units(tasks, settings, config.ffmpeg_threads, config.workers, record)
        except DiskFull as exc:
            full = exc
    finally:
        # Whatever happens (Ctrl-C included), keep every finished video.
        kept: dict[Path, int] = {}
        for target in targets:
            parts_dir = staging.parts_dir_for(target)
            try:
                ours = written.get(target, {})
                staging.merge_parts(target, staging.list_parts(parts_dir, ours), trusted=ours.keys())
            except DiskFull as exc:
                if not kept:  # name the first store that could not take its videos
                    full = exc
                kept[target] = len(staging.list_parts(parts_dir))
                continue
            try:
                parts_dir.rmdir()
            except OSError:
                pass
    if full is not None:
        raise _stopped_by_full_disk(full, kept, result)
    if interrupt.requested() and ended < len(pending):  # stopped by Ctrl-C before the last video
        where = "the store" if len(targets) <= 1 else f"the {len(targets)} shard files"
        kept = f"kept the {staging.count_videos(result.done)} extracted by this run in {where}" if result.done else \
            "no video was finished by this run"
        raise interrupt.Interrupted(f"{kept}; {len(pending) - ended} not extracted yet", path=result.out)


def _stopped_by_full_disk(exc: DiskFull, kept: dict[Path, int], result: ExtractResult) -> DiskFull:
    """The one-line error of a run stopped by a full disk: which store, and where the finished videos are."""
    if kept:
        store = next(iter(kept))
        where = (f"{staging.parts_dir_for(store)}/" if len(kept) == 1
                 else f"the .parts folders of {len(kept)} shards")
        hint = f"{staging.count_videos(sum(kept.values()))} finished and kept in {where}; free space and re-run to merge"
    else:  # every finished video was merged; the disk filled up staging the next one
        store = Path(exc.path) if exc.path else result.out
        if store.parent.name.endswith(".parts"):  # a part: name its store
            store = store.parent.with_name(store.parent.name[:-len(".parts")])
        hint = (f"{staging.count_videos(result.done)} finished in this run are in {store.name}; free space and re-run to "
                "extract the others")
    return DiskFull(store, exc.errno, hint=hint)


def _write_failed_tsv(path: Path, failures: list[Failure]) -> None:
    if not failures:
        path.unlink(missing_ok=True)  # a list from an earlier run would now be stale
        return
    clean = lambda s: str(s).replace("\t", " ").replace("\n", " ")  # noqa: E731
    lines = ["video_id\tpath\treason"] + [f"{clean(f.video_id)}\t{clean(f.path)}\t{clean(f.reason)}"
                                           for f in failures]
    write_text(path, "\n".join(lines) + "\n")


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
        "ignored": [asdict(f) for f in result.ignored],
        "decoded_with_errors": result.with_decode_errors,
    }
    write_json(path, summary)
