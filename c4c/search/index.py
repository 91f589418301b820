"""The vector index of video embeddings (INDEX_DIR): build it, open it, search it.

Vectors are L2-normalised float32 embeddings and the score is their inner product (the cosine);
every kind of index uses faiss's METRIC_INNER_PRODUCT. The kinds and their settings are
:mod:`c4c.search.settings`, building the faiss index :mod:`c4c.search.build`, the folder on disk
:mod:`c4c.search.index_dir`, exact references for tests :mod:`c4c.search.exact`; this module holds
:class:`VectorIndex` (in memory, on the CPU or the GPUs) and :func:`build_index`, and re-exports the
names callers use from those.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from c4c import __version__
from c4c.errors import C4CError
from c4c.search.build import Progress, apply_search_params, build_faiss, faiss_module
from c4c.search.index_dir import (IDS_FILE, INDEX_FILE, INDEX_FORMAT, INDEX_VERSION, check_destination, read_ids,
                                  read_manifest, read_rows, settings_from, write_dir)
from c4c.search.moments import RowTable
from c4c.search.settings import INDEX_KINDS, IndexSettings, resolve_settings

__all__ = ["VectorIndex", "build_index"]

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "gpu")
GPU_MAX_K = 2048              # faiss GPU indexes return at most this many results (and scan <= this many lists)


# ---------------------------------------------------------------------------------------------
# input checks


def _as_matrix(x: Any, what: str, dim: int | None = None) -> np.ndarray:
    """``x`` as a C-contiguous float32 [N, D] array with finite values; C4CError if it is not."""
    arr = np.asarray(x)
    if arr.ndim == 1 and what == "queries":
        arr = arr[None, :]
    if arr.ndim != 2:
        raise C4CError(f"{what} must be a 2-D array [N, D], got shape {tuple(arr.shape)}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise C4CError(f"{what} must be numbers, got dtype {arr.dtype}")
    if arr.shape[1] == 0:
        raise C4CError(f"{what} have dimension 0")
    if dim is not None and arr.shape[1] != dim:
        raise C4CError(f"{what} have dimension {arr.shape[1]}, the index has {dim}",
                       hint="encode with the same model that built the index")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise C4CError(f"{what} contain NaN or infinite values ({int((~finite).sum())} rows, first row {row})")
    return arr


def _normalised(x: np.ndarray, what: str) -> tuple[np.ndarray, bool]:
    """Rows scaled to unit L2 norm (a copy) and whether any row needed it; C4CError on a zero row."""
    norms = np.linalg.norm(x, axis=1)
    zero = norms < 1e-12
    if zero.any():
        raise C4CError(f"{what} contain all-zero rows (first row {int(np.flatnonzero(zero)[0])}); "
                       "a zero vector has no direction to compare")
    changed = bool(np.abs(norms - 1.0).max() > 1e-3)
    return (x / norms[:, None]).astype(np.float32, copy=False), changed


def _check_ids(ids: list[str], n: int) -> list[str]:
    ids = list(ids)
    if len(ids) != n:
        raise C4CError(f"{len(ids)} ids for {n} vectors", hint="give one id per row of the embeddings")
    seen: dict[str, int] = {}
    for i, vid in enumerate(ids):
        if not isinstance(vid, str) or vid == "":
            raise C4CError(f"id at row {i} is {vid!r}; ids must be non-empty strings")
        if vid in seen:
            raise C4CError(f"duplicate id {vid!r} at rows {seen[vid]} and {i}")
        seen[vid] = i
    return ids


# ---------------------------------------------------------------------------------------------
# building, GPU placement, searching


def build_index(vectors: np.ndarray, ids: list[str], settings: IndexSettings, out_dir: Path, *,
                meta: dict | None = None, progress: Progress | None = None, overwrite: bool = False,
                rows=None) -> Path:
    """Build a faiss index of ``vectors`` [N, D] (row i is ``ids[i]``) and write it to ``out_dir``.

    Rows are L2-normalised (a warning is logged when they were not already). ``meta`` is stored as
    is in the manifest (JSON-serialisable). ``progress(stage, done, total)`` is called during
    training and adding. An existing non-empty ``out_dir`` is refused unless ``overwrite`` is true,
    and even then only when it holds a c4c index. ``rows`` (a :class:`c4c.search.moments.RowTable`) says
    what each row is (default: row i is video ``ids[i]``). Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    check_destination(out_dir, overwrite)  # fail before a long build, not after it
    index = VectorIndex.from_vectors(vectors, ids, settings, meta=meta, progress=progress, rows=rows)
    return index.save(out_dir, overwrite=overwrite)


def _gpu_count() -> int:
    faiss = faiss_module()
    get = getattr(faiss, "get_num_gpus", None)
    try:
        return int(get()) if get else 0
    except Exception:  # a faiss build whose GPU query fails counts as CPU-only
        return 0


def _to_gpu(index, kind: str):
    """The index moved to all GPUs (the exact re-ranking of ivfpq stays on the CPU); None when it cannot."""
    faiss = faiss_module()
    params = INDEX_KINDS[kind].params
    options = faiss.GpuMultipleClonerOptions()
    # float16 PQ lookup tables (needed for codes of 56 bytes and more); never float16 flat vectors
    options.useFloat16 = "pq_m" in params
    try:
        refine = faiss.downcast_index(index) if "k_factor" in params else None
        if isinstance(refine, faiss.IndexRefine):
            base = faiss.index_cpu_to_all_gpus(faiss.downcast_index(refine.base_index), co=options)
            moved = faiss.IndexRefine(base, faiss.downcast_index(refine.refine_index))
            moved.k_factor = refine.k_factor
            moved.referenced_objects = [base, refine]  # keep both alive while `moved` is
            return moved
        return faiss.index_cpu_to_all_gpus(index, co=options)
    except (RuntimeError, AttributeError) as exc:
        log.warning("could not move the %s index to the GPU (%s); searching on the CPU", kind, exc)
        return None


class VectorIndex:
    """An index in memory: ``search`` returns the best-scoring ids for each query.

    Made by :meth:`from_vectors` (then :meth:`save`) or by :meth:`open` on a saved INDEX_DIR.
    """

    def __init__(self, index, ids: list[str], manifest: dict, *, path: Path | None = None,
                 cpu_index=None, on_gpu: bool = False, rows=None):

        self._index = index          # what searches: the CPU index, or its GPU copy
        self._cpu_index = cpu_index  # what `save` writes; None once moved to the GPU
        self.ids = ids
        self.manifest = manifest
        self.path = path
        self.on_gpu = on_gpu
        self.dim: int = manifest["dim"]
        self.kind: str = manifest["kind"]
        self.meta: dict = manifest.get("meta") or {}
        self.settings = settings_from(manifest)
        self.rows = rows if rows is not None else RowTable.whole_videos(ids)  # what each row is

    @classmethod
    def from_vectors(cls, vectors: np.ndarray, ids: list[str], settings: IndexSettings | None = None, *,
                     meta: dict | None = None, progress: Progress | None = None, rows=None) -> "VectorIndex":
        """Build an index of ``vectors`` [N, D] in memory (on the CPU); see :func:`build_index`."""
        settings = settings or IndexSettings()
        x = _as_matrix(vectors, "vectors")
        n, dim = x.shape
        if n == 0:
            raise C4CError("the collection is empty: no vectors to index")
        ids = _check_ids(ids, n)
        if rows is not None and len(rows) != n:
            raise C4CError(f"{len(rows)} rows described for {n} vectors")
        x, changed = _normalised(x, "vectors")
        if changed:
            log.warning("the vectors were not L2-normalised; normalised them (scores are cosines)")
        s = resolve_settings(settings, n, dim)
        index, build_seconds, train_seconds = build_faiss(x, s, progress)
        manifest = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "kind": s.kind, "settings": asdict(s),
                    "dim": int(dim), "count": int(n), "metric": "ip", "normalised": True,
                    "moments": bool(rows is not None and len(set(rows.row_video.tolist())) < n),
                    "meta": dict(meta or {}), "faiss_version": faiss_module().__version__, "c4c_version": __version__,
                    "build_seconds": round(build_seconds, 3), "train_seconds": round(train_seconds, 3)}
        if s.kind != settings.kind:
            manifest["requested_kind"] = settings.kind
        return cls(index, ids, manifest, cpu_index=index, rows=rows)

    def save(self, out_dir: Path, *, overwrite: bool = False) -> Path:
        """Write INDEX_DIR atomically (see the module notes on ``overwrite``); returns ``out_dir``."""
        if self._cpu_index is None:
            raise RuntimeError("this index was moved to the GPU when opened; open it with device='cpu' to save it")
        out_dir = Path(out_dir)
        check_destination(out_dir, overwrite)
        write_dir(out_dir, self._cpu_index, self.ids, self.manifest, overwrite, rows=self.rows.to_json())
        self.path = out_dir
        return out_dir

    @classmethod
    def open(cls, index_dir: Path, *, device: str = "auto") -> "VectorIndex":
        """Open ``index_dir``; ``device`` auto (the GPUs when faiss sees any), cpu or gpu.

        C4CError naming the file when the folder is not a consistent c4c index.
        """
        if device not in DEVICES:
            raise C4CError(f"unknown device {device!r}", hint=f"choose one of {', '.join(DEVICES)}")
        index_dir = Path(index_dir)
        manifest = read_manifest(index_dir)
        ids = read_ids(index_dir / IDS_FILE, manifest["count"])
        path = index_dir / INDEX_FILE
        if not path.is_file():
            raise C4CError("faiss index file is missing", path=path, hint="rebuild the index with `c4c index`")
        faiss = faiss_module()
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            lines = str(exc).strip().splitlines()
            raise C4CError(f"unreadable faiss index ({lines[0] if lines else 'unknown error'})", path=path) from None
        if index.ntotal != manifest["count"] or index.d != manifest["dim"]:
            raise C4CError(f"faiss index holds {index.ntotal} vectors of dimension {index.d}, the manifest says "
                           f"{manifest['count']} of dimension {manifest['dim']}", path=path,
                           hint="the index folder is inconsistent; rebuild it")
        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise C4CError("faiss index does not use inner product", path=path)
        kind = manifest["kind"]
        gpus = _gpu_count()
        if device == "gpu" and gpus == 0:
            raise C4CError("device gpu asked for, but faiss sees no GPU",
                           hint="install faiss-gpu on a GPU machine, or use the CPU")
        rows = read_rows(index_dir, manifest, ids)
        self = cls(index, ids, manifest, path=index_dir, cpu_index=index, rows=rows)
        if device != "cpu" and gpus > 0:
            if not INDEX_KINDS[kind].gpu:
                log.info("faiss has no GPU version of %s indexes; searching on the CPU", kind)
            else:
                moved = _to_gpu(index, kind)
                if moved is not None:
                    self._index, self._cpu_index, self.on_gpu = moved, None, True
        s = self.settings
        self.set_search_params(**{name: getattr(s, name) or None for name in INDEX_KINDS[kind].search})
        return self

    @property
    def count(self) -> int:
        return len(self.ids)

    def set_search_params(self, **values: int | None) -> None:
        """Change the speed/recall trade-off of an approximate index through the settings its kind reads
        when searched: IVF lists scanned (``nprobe``), HNSW candidate list (``ef_search``), ivfpq
        re-ranking depth (``k_factor``, only when the index was built with re-ranking). Values a kind
        does not have are ignored."""
        searched = {name for kind in INDEX_KINDS.values() for name in kind.search}
        for name, value in values.items():
            if name not in searched:
                raise TypeError(f"set_search_params() got an unexpected keyword argument {name!r}")
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
                raise C4CError(f"{name} must be a whole number of at least 1, got {value!r}")
        s = self.settings
        reads = INDEX_KINDS[s.kind].search
        given = {name: int(value) for name, value in values.items() if value is not None and name in reads}
        if "nprobe" in given:
            given["nprobe"] = min(given["nprobe"], s.nlist)
        if "nprobe" in given and self.on_gpu:
            given["nprobe"] = min(given["nprobe"], GPU_MAX_K)
        if s.k_factor == 0:  # built without re-ranking: nothing to set
            given.pop("k_factor", None)
        apply_search_params(self._index, s.kind, gpu=self.on_gpu, **given)
        for name, value in given.items():
            setattr(s, name, value)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[list[str]]]:
        """The ``k`` best ids per query, best first: scores [Q, k] (cosines) and ids (a list per query).

        ``queries`` [Q, D] (or one [D] vector) are L2-normalised here. ``k`` is clipped to the number
        of indexed videos. An approximate index may find fewer than ``k``: ``ids[q]`` is then shorter
        and the scores past its end are -inf.
        """
        scores, rows = self.search_rows(queries, k)
        ids = [[self.ids[r] for r in row[row >= 0]] for row in rows]
        return scores, ids

    def search_rows(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` by row: scores [Q, k] (cosines) and rows [Q, k] int64, best first (-1 and -inf
        where an approximate index found fewer than ``k``)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise C4CError(f"k must be a whole number of at least 1, got {k!r}")
        q = _as_matrix(queries, "queries", self.dim)
        q, _ = _normalised(q, "queries")
        k = min(int(k), self.count)
        reads = INDEX_KINDS[self.kind].search
        if "ef_search" in reads:  # HNSW returns at most ef_search results: widen the list for a large k
            apply_search_params(self._index, self.kind, ef_search=max(self.settings.ef_search, k))
        if self.on_gpu:
            if k > GPU_MAX_K:
                raise C4CError(f"k={k} is above the {GPU_MAX_K} results a faiss GPU index can return",
                               hint="lower k, or open the index with device cpu")
            if "k_factor" in reads and self.settings.k_factor > 0:  # the candidates also come from the GPU
                apply_search_params(self._index, self.kind,
                                    k_factor=max(1, min(self.settings.k_factor, GPU_MAX_K // k)))
        scores, rows = self._index.search(q, k)
        scores = np.array(scores, dtype=np.float32)
        scores[rows < 0] = -np.inf
        return scores, np.asarray(rows, dtype=np.int64)
