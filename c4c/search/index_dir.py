"""INDEX_DIR on disk, format ``c4c-index`` version 1 (documented in data/README.md)::

    index.json    manifest: format, version, kind, settings (resolved: no automatic value left),
                  dim, count, metric "ip", normalised, meta (free dict from the caller, e.g. the
                  embedding file the vectors came from), faiss_version, c4c_version,
                  build_seconds, train_seconds, requested_kind (only when it differs from kind)
    index.faiss   the faiss index (faiss.write_index, always the CPU version); row i is ids[i]
    ids.json      JSON list of the video ids, in row order

The folder is written atomically: into a temporary sibling folder, then renamed into place; an index
being replaced is set aside until the new one is in, and put back if anything fails.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import fields
from pathlib import Path

from c4c.atomic import fsync_dir, fsync_file
from c4c.errors import C4CError
from c4c.search.build import faiss_module
from c4c.search.settings import KINDS, IndexSettings

INDEX_FORMAT = "c4c-index"
INDEX_VERSION = 1
MANIFEST_FILE = "index.json"
INDEX_FILE = "index.faiss"
IDS_FILE = "ids.json"


def is_index_dir(path: Path) -> bool:
    """Whether ``path`` holds a c4c index (its manifest names the format)."""
    try:
        return json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8")).get("format") == INDEX_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


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



def write_dir(out_dir: Path, index, ids: list[str], manifest: dict, overwrite: bool) -> None:
    """Write the faiss ``index``, ``ids`` and ``manifest`` as INDEX_DIR ``out_dir``, atomically (module notes)."""
    faiss = faiss_module()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
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
        for name in (INDEX_FILE, IDS_FILE, MANIFEST_FILE):
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
    if version != INDEX_VERSION:
        raise C4CError(f"index format version {version!r} is not supported (this c4c reads version {INDEX_VERSION})",
                       path=path, hint="rebuild the index with this c4c")
    for key, kind in (("kind", str), ("dim", int), ("count", int), ("settings", dict)):
        if not isinstance(manifest.get(key), kind):
            raise C4CError(f"index manifest lacks a valid {key!r}", path=path)
    if manifest["kind"] not in KINDS:
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
    return ids


def settings_from(manifest: dict) -> IndexSettings:
    """The settings an index was built with, from its manifest (unknown keys of other versions ignored)."""
    known = {f.name for f in fields(IndexSettings)}
    return IndexSettings(**{k: v for k, v in manifest["settings"].items() if k in known})
