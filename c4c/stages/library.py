"""`c4c index VIDEOS_DIR --out LIBRARY`: a folder of videos made searchable, then kept up to date.

The first run extracts, encodes and indexes every video of the folder. A later run looks at the
folder again and does only what changed: new files are extracted and encoded, files whose size or
modification time changed are done again, files that failed are tried again, removed files leave the
index. The index is then rebuilt
from the stored embeddings (no model work), with its rows in one canonical order (video id, start),
so an updated library answers exactly as one built from scratch over the same folder: a video's
embeddings do not depend on which other videos were encoded with it (c4c.stages.encode), and faiss
is given the same vectors in the same order. That holds for IVF and HNSW indexes too: they are
retrained or rebuilt over all rows on each update, which costs their build time (bench/README.md,
`bench_index.py`) but never extract or encode time.

A killed run resumes: ``library.json`` is replaced atomically after every step, extraction and
encoding resume from their own partial files, and the index folder is replaced atomically.

The settings (model, window, fps, size, frames) are the library's own once a build with them has
encoded videos; before that (a first build that failed, e.g. weights missing offline), the settings
given next replace them. The model is resolved before any video is extracted.

Layout of LIBRARY/ (format ``c4c-library`` version 1, data/README.md)::

    library.json             the videos folder, the settings, the model, every video (file, size,
                             mtime, part), the videos that failed, the update in progress
    parts/part-NNNNNN/       one update's work: frames.h5 (+ .extract.json), emb.h5 (+ .encode.json)
    index/                   INDEX_DIR over every video of the folder (what `c4c search LIBRARY` opens)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from c4c.atomic import write_json
from c4c import interrupt, option_rules
from c4c.errors import C4CError
from c4c.options import Hardware, ModelSource, Moments, option, rules_of
from c4c.search.settings import IndexKindName
from c4c.outputs import Output, check_outputs, guard

log = logging.getLogger(__name__)

FORMAT = "c4c-library"
FORMAT_VERSION = 1
STATE_FILE = "library.json"
INDEX_DIR = "index"
PARTS_DIR = "parts"
# settings that change what is extracted or encoded: fixed when a library is made
MODEL_SETTINGS = ("run", "checkpoint", "clip", "pretrained", "activation", "window", "stride", "fps", "size",
                  "max_frames")
DEFAULTS = {"checkpoint": "best", "pretrained": "openai", "activation": "auto", "fps": 1.0, "size": 224,
            "kind": "flat"}


@dataclass(kw_only=True)
class LibraryConfig(ModelSource, Moments, Hardware):
    """Options of `c4c index VIDEOS_DIR`; ``None``: the library's own setting (a new library: the default)."""

    videos: Path                          # the folder of videos (searched recursively)
    out: Path = option(help="Index folder to write (for a folder of videos: the library folder, updated in place).",
                       flags=("--out", "-o"))
    fps: float | None = option(None, "Folder of videos: frames stored per second [default: 1].", rule=option_rules.FPS)
    size: int | None = option(None, "Folder of videos: stored frame size in pixels [default: the model's image size].",
                              rule=option_rules.count(8, 4096))
    max_frames: int | None = option(None, "Folder of videos: frames per video or window [default: the run's; "
                                          "zero-shot 12].", rule=option_rules.count(1, 1024))
    kind: IndexKindName | None = option(None, "flat (exact inner product), or an approximate kind for large collections "
                                          "(see data/README.md) [default: flat; a library: as before].")
    params: dict | None = None            # index parameters (IndexSettings fields; from --param)
    batch_size: int = option(64, "Folder of videos: clips per batch when encoding.", rule=option_rules.count(1))


# The numbers `c4c index VIDEOS_DIR` takes (None: the library's own); checked before anything is read.
RULES = rules_of(LibraryConfig)


@dataclass
class LibraryResult:
    out: Path
    videos: int = 0                       # videos in the index
    rows: int = 0                         # rows in the index (moments, or videos)
    added: int = 0
    changed: int = 0
    removed: int = 0
    retried: int = 0                      # videos that had failed before, tried again
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file or id, reason) found this run
    indexed: bool = False                 # the index was (re)built
    seconds: float = 0.0
    model: str = ""


def is_library(path: Path) -> bool:
    """Whether ``path`` is a library folder (holds library.json of this format)."""
    try:
        return json.loads((Path(path) / STATE_FILE).read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def index_dir(library: Path) -> Path:
    """The INDEX_DIR a library keeps."""
    return Path(library) / INDEX_DIR


# ---------------------------------------------------------------------------------------------
# state


def _read_state(out: Path) -> dict | None:
    path = out / STATE_FILE
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise C4CError(f"unreadable library state ({exc})", path=path) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise C4CError(f"not a c4c library state (format {state.get('format') if isinstance(state, dict) else None!r})",
                       path=path)
    if state.get("version") != FORMAT_VERSION:
        raise C4CError(f"library format version {state.get('version')!r} is not supported", path=path)
    return state


def _save(out: Path, state: dict) -> None:
    write_json(out / STATE_FILE, state)


def _asked(cfg: LibraryConfig) -> dict:
    """The model and extraction settings ``cfg`` asks for (None: not given)."""
    return {"run": str(Path(cfg.run).resolve()) if cfg.run is not None else None, "checkpoint": cfg.checkpoint,
            "clip": cfg.clip, "pretrained": cfg.pretrained, "activation": cfg.activation, "window": cfg.window,
            "stride": cfg.stride, "fps": cfg.fps, "size": cfg.size, "max_frames": cfg.max_frames}


def is_settled(state: dict) -> bool:
    """Whether the library's settings are its own for good: a build with them has encoded videos. Until
    then (a first build that failed or was stopped early) the settings given next replace the recorded ones."""
    return state.get("model") is not None


def _settings(cfg: LibraryConfig, state: dict | None) -> dict:
    """The library's settings: the stored ones, checked against what ``cfg`` asks; or a new library's.
    A library whose first build did not get as far as encoding takes the settings given now as a new one
    would (none given: those it recorded, so a stopped first build goes on). The model is resolved here
    (weights, config, activation; offline too), so a missing weights file stops the command before any
    video is extracted."""
    asked = _asked(cfg)
    if state is not None and is_settled(state):
        have = state["settings"]
        differ = [f"--{k.replace('_', '-')} {asked[k]} (the library: {have.get(k)})" for k in MODEL_SETTINGS
                  if asked[k] is not None and asked[k] != have.get(k)]
        if asked["run"] is not None and have.get("clip") or asked["clip"] is not None and have.get("run"):
            differ.append("the model (the library: " + (f"--run {have['run']})" if have.get("run")
                                                         else f"--clip {have['clip']})"))
        if differ:
            raise C4CError("this library was made with other settings: " + "; ".join(dict.fromkeys(differ)),
                           path=cfg.out / STATE_FILE,
                           hint="leave those options out (the library keeps its own), or choose a new --out")
        return {**have, "kind": cfg.kind or have.get("kind", "flat"),
                "params": cfg.params if cfg.params is not None else have.get("params", {})}
    if state is not None and all(v is None for v in asked.values()):
        # the first build stopped before encoding and no setting is given: it goes on with its own
        have = state["settings"]
        asked = {k: have.get(k) for k in asked}
        asked.update({"pretrained": None, "activation": None} if asked["run"] else {"checkpoint": None})
        cfg = replace(cfg, **asked,
                      kind=cfg.kind or state["settings"].get("kind"),
                      params=cfg.params if cfg.params is not None else state["settings"].get("params"))
    from c4c.search.moments import check_window

    if (cfg.run is None) == (cfg.clip is None):
        raise C4CError("a new library needs a model: --run RUN_DIR (a trained run) or --clip NAME (zero-shot)"
                       if cfg.run is None else "--run and --clip are mutually exclusive: a run brings its own model",
                       hint="e.g. --clip ViT-B-32 --pretrained openai")
    if cfg.run is not None and (cfg.pretrained is not None or cfg.activation is not None):
        raise C4CError("--pretrained and --activation go with --clip (zero-shot); a run brings its own")
    if cfg.clip is not None and cfg.checkpoint is not None:
        raise C4CError("--checkpoint goes with --run")
    window, stride = check_window(cfg.window, cfg.stride, cfg.fps if cfg.fps is not None else DEFAULTS["fps"],
                                  path=cfg.out)
    settings = {**asked, "window": window, "stride": stride}
    for key in ("checkpoint",) if cfg.run is not None else ("pretrained", "activation"):
        settings[key] = settings[key] if settings[key] is not None else DEFAULTS[key]
    if cfg.clip is not None and Path(settings["pretrained"]).is_file():
        settings["pretrained"] = str(Path(settings["pretrained"]).resolve())
    image_size = _check_model(settings)
    settings["fps"] = float(cfg.fps) if cfg.fps is not None else DEFAULTS["fps"]
    settings["size"] = int(cfg.size) if cfg.size is not None else image_size
    settings["kind"] = cfg.kind or DEFAULTS["kind"]
    settings["params"] = dict(cfg.params or {})
    return settings


def _check_model(settings: dict) -> int:
    """Resolve the library's model without building it (a run and its checkpoint; or CLIP's config,
    weights and activation, offline too); returns the model's image size. C4CError when it cannot be had."""
    from c4c.model.backbone import check_clip

    if settings.get("run"):
        from c4c.run.folder import RunFolder

        folder = RunFolder(Path(settings["run"]))
        if not folder.is_run():
            raise C4CError("not a run folder (no config.json)", path=folder.path,
                           hint="--run takes the folder `c4c finetune --out` wrote")
        folder.checkpoint(settings.get("checkpoint") or "best")
        return check_clip(folder.model_spec().clip, "none")
    return check_clip(settings["clip"], settings.get("pretrained") or "openai", settings.get("activation") or "auto")


def _is_library(path: Path) -> bool:
    """A library folder (its state file), or what a first build that stopped early leaves (its lock of
    older versions, its parts)."""
    return (path / STATE_FILE).is_file() or all(p.name in (".lock", PARTS_DIR) for p in path.iterdir())


@contextmanager
def _locked(out: Path, videos: Path) -> Iterator[None]:
    """One update of a library at a time, through the output guard (:mod:`c4c.outputs`): not the videos
    folder, a library (or empty, or absent), writable, and its writer lock ``LIBRARY.lock`` held."""
    library = Output(out, "library folder", _is_library, folder=True)
    with guard([library], [videos], command="c4c index"):
        out.mkdir(parents=True, exist_ok=True)
        yield


# ---------------------------------------------------------------------------------------------
# the folder


def _scan(videos: Path) -> tuple[dict[str, dict], list[tuple[str, str]]]:
    """``({video_id: {"file", "size", "mtime_ns"}}, [(file, reason) of files that cannot be videos here])``."""
    from c4c.stages.extract import jobs_from_folder
    from c4c.stages.extract_config import VIDEO_EXTENSIONS

    listed = jobs_from_folder(videos, VIDEO_EXTENSIONS)  # (jobs, failures[, files that are not videos])
    jobs, failures = listed[0], listed[1]
    found = {}
    for job in jobs:
        path = Path(job.path).resolve()
        st = path.stat()
        found[job.video_id] = {"file": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return found, [(f.path or f.video_id, f.reason) for f in failures]


def _same_file(a: dict, b: dict) -> bool:
    return all(a.get(k) == b.get(k) for k in ("file", "size", "mtime_ns"))


# ---------------------------------------------------------------------------------------------
# one update


def update(cfg: LibraryConfig, on_event: Callable[[dict], None] | None = None) -> LibraryResult:
    """Bring the library ``cfg.out`` up to date with the folder ``cfg.videos`` (module notes)."""
    t0 = time.perf_counter()
    emit = on_event or (lambda event: None)
    option_rules.check_all(cfg, RULES)
    out, videos = Path(cfg.out), Path(cfg.videos)
    if not videos.is_dir():
        raise C4CError("videos folder not found" if not videos.exists() else "not a folder of videos", path=videos)
    if out.exists() and not out.is_dir():
        raise C4CError("exists and is not a folder", path=out, hint="choose a new folder for the library")
    check_outputs([Output(out, "library folder", _is_library, folder=True)], [videos])  # before anything is done
    state = _read_state(out) if out.is_dir() else None
    if state is None and out.is_dir() and any(p.name != ".lock" for p in out.iterdir()):
        raise C4CError("folder is not empty and is not a c4c library", path=out, hint="choose a new or empty folder")
    settings = _settings(cfg, state)
    from c4c.search.index_dir import settings_of

    settings_of(settings["kind"], settings["params"])  # unknown parameters fail before any work
    result = LibraryResult(out=out)
    with _locked(out, videos):
        if state is not None and not is_settled(state) \
                and any(settings.get(k) != state["settings"].get(k) for k in MODEL_SETTINGS):
            log.info("the library's first build did not finish: starting it again with the settings given now")
            shutil.rmtree(out / PARTS_DIR, ignore_errors=True)  # frames of other settings: not reusable
            state = None
        if state is None:
            state = {"format": FORMAT, "version": FORMAT_VERSION, "videos_dir": str(videos.resolve()),
                     "settings": settings, "model": None, "videos": {}, "failed": {}, "pending": None,
                     "next_part": 1, "indexed": None}
        state["settings"] = settings
        if state["videos_dir"] != str(videos.resolve()):
            log.warning("the library was made from %s; updating it from %s", state["videos_dir"], videos.resolve())
            state["videos_dir"] = str(videos.resolve())
        _save(out, state)
        tried: set[str] = set()  # the videos this run extracts
        while True:
            if state["pending"] is not None:
                tried |= set(state["pending"]["videos"])
                _finish_part_stoppable(cfg, out, state, emit)
            found, bad = _scan(videos)
            known = {**state["failed"], **state["videos"]}
            # new and changed files, and once per run the files that failed before (one rule for every
            # command that takes many inputs: the failed ones are retried by the next run)
            todo = {v: f for v, f in sorted(found.items()) if v not in known or not _same_file(f, known[v])
                    or v in state["failed"] and v not in tried}
            gone = sorted(v for v in known if v not in found)
            if todo:
                again = {v for v in todo if v in state["failed"] and _same_file(todo[v], state["failed"][v])}
                tried |= set(todo)
                result.retried += len(again)
                result.added += sum(v not in known for v in todo)
                result.changed += sum(v in known and v not in again for v in todo)
                name = f"part-{state['next_part']:06d}"
                state["next_part"] += 1
                state["pending"] = {"name": name, "videos": todo}
                _save(out, state)
                log.info("%s: %d new, %d changed and %d failed before", name, result.added, result.changed,
                         result.retried)
                continue  # the loop finishes the part, then looks at the folder again
            if gone:
                result.removed += len(gone)
                for v in gone:
                    state["videos"].pop(v, None)
                    state["failed"].pop(v, None)
                _save(out, state)
            result.failed = bad + [(state["failed"][v]["file"], state["failed"][v]["reason"])
                                   for v in sorted(state["failed"])]
            break
        digest = _live_digest(state)
        if state["indexed"] != digest or not (index_dir(out) / "index.json").is_file() and state["videos"]:
            emit({"event": "index", "videos": len(state["videos"])})
            result.rows = _build_index(out, state)
            result.indexed = True
            state["indexed"] = digest
            _save(out, state)
        else:
            result.rows = _count_rows(out)
        _collect_garbage(out, state)
    result.videos = len(state["videos"])
    result.model = (state.get("model") or {}).get("describe", "")
    result.seconds = time.perf_counter() - t0
    return result


def _part_dir(out: Path, name: str) -> Path:
    return out / PARTS_DIR / name


def _finish_part(cfg: LibraryConfig, out: Path, state: dict, emit: Callable[[dict], None]) -> None:
    """Extract and encode the pending part (each resumes), then commit its videos to the state."""
    from c4c.data.embeddings import Embeddings
    from c4c.stages import encode, extract
    from c4c.video.store import FrameStore

    part = state["pending"]
    s = state["settings"]
    _check_model(s)  # the weights are still there: before any video is extracted
    folder = _part_dir(out, part["name"])
    staging = folder / "videos"
    staging.mkdir(parents=True, exist_ok=True)
    for vid, f in part["videos"].items():
        link = staging / Path(f["file"]).name
        if not link.is_symlink():
            os.symlink(f["file"], link)
    frames = folder / "frames.h5"
    emit({"event": "extract", "videos": len(part["videos"])})
    done = extract.run(extract.ExtractConfig(source=staging, out=frames, fps=s["fps"], size=s["size"],
                                             workers=max(1, cfg.workers)),
                       on_video=lambda outcome: emit({"event": "extracted", "n": 1}))
    reasons = {f.video_id: f.reason for f in done.failed}
    with FrameStore(frames) as store:
        ok = set(store.ids())
    emb = folder / "emb.h5"
    if ok and not emb.is_file():
        emit({"event": "encode", "videos": len(ok)})
        encode.run(encode.EncodeConfig(frames=frames, out=emb, run=Path(s["run"]) if s["run"] else None,
                                       checkpoint=s["checkpoint"] or "best", clip=s["clip"],
                                       pretrained=s["pretrained"] if s["clip"] else None,
                                       activation=s["activation"] if s["clip"] else "auto", window=s["window"],
                                       stride=s["stride"], max_frames=s["max_frames"], batch_size=cfg.batch_size,
                                       device=cfg.device, amp=cfg.amp, workers=cfg.workers),
                   on_event=lambda event: emit({**event, "event": "encoded"}) if event["event"] == "videos" else None)
    if ok:
        source = Embeddings(emb).model_source
        if state["model"] is None:
            state["model"] = {**source.as_dict(), "describe": source.describe()}
        elif state["model"]["fingerprint"] != source.fingerprint:
            raise C4CError(f"the model changed since this library was made: it was {state['model']['describe']} "
                           f"[{state['model']['fingerprint']}], it is now {source.describe()} [{source.fingerprint}]",
                           path=out, hint="new moments would not match the old ones: make a new library (--out)")
    for vid, f in part["videos"].items():
        if vid in ok:
            state["videos"][vid] = {**f, "part": part["name"]}
            state["failed"].pop(vid, None)
        else:
            state["failed"][vid] = {**f, "reason": reasons.get(vid, "not extracted")}
            state["videos"].pop(vid, None)
    state["pending"] = None
    _save(out, state)
    shutil.rmtree(staging, ignore_errors=True)


def _finish_part_stoppable(cfg: LibraryConfig, out: Path, state: dict, emit: Callable[[dict], None]) -> None:
    """:func:`_finish_part` where a first Ctrl-C stops at the next safe point of extract or encode (both resume),
    reported for the library."""
    with interrupt.graceful():
        try:
            _finish_part(cfg, out, state, emit)
        except interrupt.Interrupted as stop:
            raise interrupt.Interrupted(f"this update stopped: {stop.kept}; {len(state['videos'])} videos were done "
                                        "before it", path=out) from None


def _live_digest(state: dict) -> str:
    """What the index must hold: every live video and its part, and the index settings."""
    live = sorted((v, f["part"]) for v, f in state["videos"].items())
    key = [live, state["settings"]["kind"], state["settings"]["params"]]
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _build_index(out: Path, state: dict) -> int:
    """Rebuild LIBRARY/index from the stored embeddings of the live videos; returns its rows."""
    import numpy as np

    from c4c.data.embeddings import Embeddings
    from c4c.search.index import VectorIndex
    from c4c.search.moments import RowTable
    from c4c.search.index_dir import index_meta, settings_of

    target = index_dir(out)
    by_part: dict[str, set[str]] = {}
    for vid, f in state["videos"].items():
        by_part.setdefault(f["part"], set()).add(vid)
    if not by_part:
        shutil.rmtree(target, ignore_errors=True)
        return 0
    rows: list[tuple[str, float, float, int, int]] = []   # (video, start, end, part number, row)
    vectors, meta = [], None
    for p, (name, vids) in enumerate(sorted(by_part.items())):
        emb = Embeddings(_part_dir(out, name) / "emb.h5")
        meta = meta or index_meta(emb, None)
        start, end = emb.spans()
        vectors.append(emb.video_emb())
        rows += [(v, float(start[r]), float(end[r]), p, r) for r, v in enumerate(emb.video_ids) if v in vids]
    rows.sort(key=lambda row: (row[0], row[1]))   # canonical: video id, then start
    x = np.stack([vectors[p][r] for _, _, _, p, r in rows]) if rows else np.zeros((0, 1), np.float32)
    parts = {v: f["part"] for v, f in state["videos"].items()}
    table = RowTable.from_rows([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                               [state["videos"][r[0]]["file"] for r in rows],
                               frames=[os.path.join("..", PARTS_DIR, parts[r[0]], "frames.h5") for r in rows])
    meta = {**meta, "library": str(out.resolve()), "frames": None}  # each video's store: moments.json
    index = VectorIndex.from_vectors(x, table.row_keys(), settings_of(state["settings"]["kind"],
                                                                       state["settings"]["params"]),
                                     meta=meta, rows=table)
    index.save(target, overwrite=True)
    return len(rows)


def _count_rows(out: Path) -> int:
    try:
        return int(json.loads((index_dir(out) / "index.json").read_text(encoding="utf-8"))["count"])
    except (OSError, ValueError, KeyError):
        return 0


def _collect_garbage(out: Path, state: dict) -> None:
    """Remove the parts no live video (and no pending update) refers to any more."""
    keep = {f["part"] for f in state["videos"].values()}
    if state["pending"] is not None:
        keep.add(state["pending"]["name"])
    parts = out / PARTS_DIR
    if not parts.is_dir():
        return
    for folder in parts.iterdir():
        if folder.name not in keep:
            shutil.rmtree(folder, ignore_errors=True)
