"""INDEX_DIR on disk, format ``c4c-index`` version 2 (documented in data/README.md)::

    index.json    manifest: format, version, kind, settings (resolved: no automatic value left),
                  dim, count, metric "ip", normalised, moments (rows are windows of videos),
                  meta (free dict from the caller, e.g. the embedding file the vectors came from and
                  the model that made them), faiss_version, c4c_version, build_seconds,
                  train_seconds, requested_kind (only when it differs from kind)
    index.faiss   the faiss index (faiss.write_index, always the CPU version); row i is ids[i]
    ids.json      JSON list of the row ids (unique), in row order
    moments.json  what each row is: its video, start and end (c4c.search.moments.RowTable)

Version 1 folders (no moments.json: each row is a video, ids.json the video ids) still open.

The folder is written atomically: into a temporary sibling folder, then renamed into place; an index
being replaced is set aside until the new one is in, and put back if anything fails.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import fields
from pathlib import Path

from c4c.atomic import disk_full_is_an_error, ensure_space, fsync_dir, fsync_file
from c4c.errors import C4CError
from c4c.search.build import faiss_module
from c4c.search.moments import RowTable
from c4c.search.settings import INDEX_KINDS, PARAMS, IndexSettings

INDEX_FORMAT = "c4c-index"
INDEX_VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST_FILE = "index.json"
INDEX_FILE = "index.faiss"
IDS_FILE = "ids.json"
MOMENTS_FILE = "moments.json"


def is_index_dir(path: Path) -> bool:
    """Whether ``path`` holds a c4c index (its manifest names the format)."""
    try:
        return json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8")).get("format") == INDEX_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def holds_only_an_index(path: Path) -> bool:
    """Whether ``path`` is an index folder holding nothing but an index's own files (so it may be replaced
    whole: a file someone put beside the index would go with it)."""
    own = {MANIFEST_FILE, INDEX_FILE, IDS_FILE, MOMENTS_FILE}
    return is_index_dir(path) and all(p.name in own for p in path.iterdir())


def check_destination(out_dir: Path, overwrite: bool) -> None:
    """C4CError unless ``out_dir`` may receive an index: absent, empty, or (with ``overwrite``) an index."""
    if out_dir.exists() and not out_dir.is_dir():
        raise C4CError("exists and is not a folder", path=out_dir, hint="choose a new folder for the index")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise C4CError("folder exists and is not empty", path=out_dir,
                           hint="pass --overwrite to replace an index, or choose a new folder")
        if not is_index_dir(out_dir):
            raise C4CError("folder is not empty and is not a c4c index; refusing to replace it", path=out_dir,
                           hint="choose a new or empty folder")



def write_dir(out_dir: Path, index, ids: list[str], manifest: dict, overwrite: bool,
              rows: dict | None = None) -> None:
    """Write the faiss ``index``, ``ids``, ``manifest`` and the row table ``rows`` (moments.json) as
    INDEX_DIR ``out_dir``, atomically (module notes)."""
    with disk_full_is_an_error(out_dir, hint="the index was not written; free space and run again"):
        _write_dir(out_dir, index, ids, manifest, overwrite, rows)


def _index_bytes(index) -> int:
    """About how many bytes the faiss ``index`` takes on disk (its codes; graphs and lists add a little)."""
    try:
        per_vector = int(index.sa_code_size())
    except (AttributeError, RuntimeError):
        per_vector = 4 * int(index.d)
    return int(index.ntotal) * per_vector


def _write_dir(out_dir: Path, index, ids: list[str], manifest: dict, overwrite: bool, rows: dict | None) -> None:
    faiss = faiss_module()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # faiss reports a failed write on stderr before raising: make sure it fits first
    ensure_space(out_dir.parent, _index_bytes(index) + 64 * len(ids) + 65536, path=out_dir,
                 hint="the index was not written; free space and run again")
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    old = None
    try:
        faiss.write_index(index, str(tmp / INDEX_FILE))
        (tmp / IDS_FILE).write_text(json.dumps(ids, ensure_ascii=False) + "\n", encoding="utf-8")
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n",
                                         encoding="utf-8")
        names = [INDEX_FILE, IDS_FILE, MANIFEST_FILE]
        if rows is not None:
            (tmp / MOMENTS_FILE).write_text(json.dumps(rows, ensure_ascii=False) + "\n", encoding="utf-8")
            names.append(MOMENTS_FILE)
        for name in names:
            fsync_file(tmp / name)
        check_destination(out_dir, overwrite)  # again: something may have appeared while building
        if out_dir.is_dir():
            if any(out_dir.iterdir()):  # an index being replaced (overwrite): set it aside until the new one is in
                old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
                os.replace(out_dir, old)
            else:
                out_dir.rmdir()
        os.replace(tmp, out_dir)
        fsync_dir(out_dir.parent)
    except BaseException:
        if old is not None and not out_dir.exists():
            os.replace(old, out_dir)
            old = None
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def read_manifest(index_dir: Path) -> dict:
    """The validated manifest of ``index_dir``; C4CError naming the file when it is not a usable index."""
    index_dir = Path(index_dir)
    path = index_dir / MANIFEST_FILE
    if index_dir.is_file():
        fmt = _hdf5_format(index_dir)
        hint = {"c4c-embeddings": f"build an index of it with `c4c index {index_dir} --out INDEX`, then search INDEX",
                "c4c-frames": "encode it with `c4c encode --frames ...`, index that with `c4c index`, then search "
                              "the index (or `c4c index VIDEOS_DIR --out INDEX` does all three)"}
        raise C4CError(f"{what_file_is(index_dir)}, not an index folder", path=index_dir,
                       hint=hint.get(fmt or "", "pass the folder `c4c index` wrote"))
    if not index_dir.is_dir():
        raise C4CError("index folder not found", path=index_dir, hint="build it with `c4c index`")
    if not path.is_file():
        raise C4CError(f"not a c4c index ({MANIFEST_FILE} is missing)", path=path, hint="build it with `c4c index`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise C4CError(f"unreadable index manifest ({exc})", path=path) from None
    if not isinstance(manifest, dict) or manifest.get("format") != INDEX_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise C4CError(f"not a c4c index manifest (format is {found!r}, expected {INDEX_FORMAT!r})", path=path)
    version = manifest.get("version")
    if version not in READABLE_VERSIONS:
        raise C4CError(f"index format version {version!r} is not supported (this c4c reads versions "
                       f"{', '.join(map(str, READABLE_VERSIONS))})", path=path, hint="rebuild the index with this c4c")
    for key, kind in (("kind", str), ("dim", int), ("count", int), ("settings", dict)):
        if not isinstance(manifest.get(key), kind):
            raise C4CError(f"index manifest lacks a valid {key!r}", path=path)
    if manifest["kind"] not in INDEX_KINDS:
        raise C4CError(f"unknown index kind {manifest['kind']!r}", path=path)
    if manifest.get("metric", "ip") != "ip":
        raise C4CError(f"unsupported metric {manifest.get('metric')!r} (c4c indexes use inner product)", path=path)
    return manifest


def read_ids(path: Path, count: int) -> list[str]:
    """The id list of an index, checked against the ``count`` of its manifest."""
    if not path.is_file():
        raise C4CError("id list is missing", path=path, hint="rebuild the index with `c4c index`")
    try:
        ids = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise C4CError(f"unreadable id list ({exc})", path=path) from None
    if not isinstance(ids, list) or not all(isinstance(v, str) for v in ids):
        raise C4CError("id list must be a JSON list of strings", path=path)
    if len(ids) != count:
        raise C4CError(f"id list holds {len(ids)} ids, the manifest says {count} vectors", path=path,
                       hint="the index folder is inconsistent; rebuild it")
    seen: dict[str, int] = {}
    for i, vid in enumerate(ids):
        if vid in seen:
            raise C4CError(f"duplicate id {vid!r} at rows {seen[vid]} and {i}: results could not be told apart",
                           path=path, hint="the index folder is damaged; rebuild it with `c4c index`")
        seen[vid] = i
    return ids


def read_rows(index_dir: Path, manifest: dict, ids: list[str]):
    """The row table (c4c.search.moments.RowTable) of an index: moments.json, or for version 1 one row
    per video of ids.json."""

    path = Path(index_dir) / MOMENTS_FILE
    if not path.is_file():
        if manifest.get("version", 1) >= 2:
            raise C4CError(f"{MOMENTS_FILE} is missing", path=path, hint="rebuild the index with `c4c index`")
        return RowTable.whole_videos(ids)
    try:
        rows = RowTable.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise C4CError(f"unreadable row table ({exc})", path=path) from None
    if len(rows) != len(ids):
        raise C4CError(f"row table has {len(rows)} rows, the index {len(ids)}", path=path,
                       hint="the index folder is inconsistent; rebuild it")
    return rows


def is_embedding_file(path: Path) -> bool:
    """Whether ``path`` is an HDF5 file of format c4c-embeddings (EMB.h5)."""
    return _hdf5_format(path) == "c4c-embeddings"


def _hdf5_format(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            if f.read(8) != b"\x89HDF\r\n\x1a\n":
                return None
        import h5py

        with h5py.File(path, "r") as f:
            value = f.attrs.get("format")
        return value.decode() if isinstance(value, bytes) else (str(value) if value is not None else None)
    except (OSError, ValueError):
        return None


def what_file_is(path: Path) -> str:
    """A phrase naming a file that was given where an index folder belongs."""
    fmt = _hdf5_format(path)
    if fmt == "c4c-embeddings":
        return "this is an embedding file (EMB.h5 of `c4c encode`)"
    if fmt in ("c4c-frames",):
        return "this is a frame store (FRAMES.h5 of `c4c extract`)"
    return "this is a file"


def settings_from(manifest: dict) -> IndexSettings:
    """The settings an index was built with, from its manifest (unknown keys of other versions ignored)."""
    known = {f.name for f in fields(IndexSettings)}
    return IndexSettings(**{k: v for k, v in manifest["settings"].items() if k in known})


def index_meta(emb, emb_path: Path | None) -> dict:
    """The manifest ``meta`` of an index of ``emb`` (an :class:`~c4c.data.embeddings.Embeddings`)."""
    source = emb.model_source
    return {"emb": str(Path(emb_path).resolve()) if emb_path else None, "run": emb.attrs.get("run") or None,
            "checkpoint": emb.attrs.get("checkpoint") or None, "sim": emb.sim, "clip": emb.attrs.get("clip"),
            "max_words": emb.settings.get("max_words", 32), "frames": emb.attrs.get("frames"),
            "model": source.as_dict() if source else None,
            "model_fingerprint": source.fingerprint if source else None,
            "window": float(emb.attrs.get("window") or 0.0) or None,
            "stride": float(emb.attrs.get("stride") or 0.0) or None}


def settings_of(kind: str, params: dict) -> IndexSettings:
    """The index settings of ``--kind`` and ``--param`` values; an unknown parameter is a user error."""
    unknown = [name for name in params if name not in PARAMS]
    if unknown:
        used = INDEX_KINDS[kind].params if kind in INDEX_KINDS else ()
        raise C4CError(f"unknown index parameter {unknown[0]!r}", hint=f"choose from {', '.join(PARAMS)}"
                       + (f" ({kind} indexes are described by {', '.join(used)})" if used else ""))
    return IndexSettings(kind=kind, **params)
