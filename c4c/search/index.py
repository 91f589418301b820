"""The vector index of video embeddings (INDEX_DIR): build it, open it, search it.

Vectors are L2-normalised float32 embeddings and the score is their inner product (the cosine);
every kind of index uses faiss's METRIC_INNER_PRODUCT.

Layout of INDEX_DIR, format ``c4c-index`` version 1 (documented in data/README.md)::

    index.json    manifest: format, version, kind, settings (resolved: no automatic value left),
                  dim, count, metric "ip", normalised, meta (free dict from the caller, e.g. the
                  embedding file the vectors came from), faiss_version, c4c_version,
                  build_seconds, train_seconds, requested_kind (only when it differs from kind)
    index.faiss   the faiss index (faiss.write_index, always the CPU version); row i is ids[i]
    ids.json      JSON list of the video ids, in row order

Kinds (defaults chosen with bench/bench_index.py; figures in bench/README.md):

``flat``     exact search; the default. Best up to a few hundred thousand videos.
``ivfflat``  inverted lists of full vectors: k-means cells, ``nprobe`` cells scanned per query.
             Scores are exact inner products of the vectors it finds. The large-collection choice.
``ivfpq``    inverted lists of product-quantised codes (``pq_m`` bytes per vector), then the
             ``k * k_factor`` best candidates re-ranked with exact inner products (IndexRefineFlat,
             which keeps the full vectors too). Slower than ivfflat at the same recall on the
             benchmark. ``k_factor=0`` drops the re-ranking and the full vectors: the index is
             then ~``pq_m`` bytes per video, with approximate scores and lower recall; that
             compact form is what it is for.
``hnsw``     graph search (HNSW, flat storage); no training; CPU only.

Defaults, from bench/bench_index.py at 1M x 512 on 2 cores (figures in bench/README.md):

- ``nlist`` = 4*sqrt(n) as a power of 2 (4096 at 1M), trained on 39 vectors per list (faiss's
  minimum): the k-means is half of an IVF build, and more training vectors gained nothing there.
- ``nprobe`` = 16: on clustered embeddings ivfflat gets recall@10 1.00 at about 30x the flat
  queries/s (nprobe 8: 0.995, 4: 0.95); the extra lists are cheap insurance for less tidy data.
- ivfpq: ``pq_m`` = dim/8 (64 bytes at 512, a code size GPU IVFPQ supports), 8 bits, and
  ``k_factor`` = 64: the codes alone rank the neighbours inside a cluster poorly (recall@10 0.86
  with k_factor 16, 0.95 with 32, 0.99 with 64).
- hnsw: ``hnsw_m`` = 32, ``ef_construction`` = 128 and ``ef_search`` = 128: on clustered
  embeddings recall@10 0.975 at 78x flat (a 1M x 512 build took 6.4 minutes on 2 cores). With
  faiss's default ef_construction of 40 the graph is too poor for 512-d clusters (recall@10 0.79
  at ef_search 128, 0.89 at 512), though it builds faster (224 s on the same collection).
- On iid random vectors no kind comes near the target (recall@10 0.03 at the defaults): in 512
  dimensions nothing marks the neighbours out. Use ``flat`` for such data.

Collections too small to train a kind with automatic settings are built as ``flat`` with a logged
warning (the manifest keeps ``requested_kind``); exact search is fast at that size. Explicit
settings that the collection cannot train (``nlist`` above n/39) raise C4CError instead.

The directory is written atomically: into a temporary sibling folder, then renamed into place.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from c4c import __version__
from c4c.errors import C4CError

log = logging.getLogger(__name__)

INDEX_FORMAT = "c4c-index"
INDEX_VERSION = 1
KINDS = ("flat", "ivfflat", "ivfpq", "hnsw")
MANIFEST_FILE = "index.json"
INDEX_FILE = "index.faiss"
IDS_FILE = "ids.json"
DEVICES = ("auto", "cpu", "gpu")
GPU_MAX_K = 2048              # faiss GPU indexes return at most this many results (and scan <= this many lists)

MIN_POINTS_PER_LIST = 39      # faiss k-means warns below this many training vectors per centroid
TRAIN_POINTS_PER_LIST = 39    # default IVF training sample per list (faiss would take up to 256)
MIN_NLIST = 16                # an IVF with fewer lists saves too little over flat to be worth it
ADD_CHUNK = 65536             # vectors added per faiss call (progress granularity)

Progress = Callable[[str, int, int], None]  # (stage "train" | "add", done, total)


@dataclass
class IndexSettings:
    """How an index is built and searched. ``None`` means automatic (resolved from n and dim)."""

    kind: str = "flat"                  # flat | ivfflat | ivfpq | hnsw
    nlist: int | None = None            # IVF lists; None: 4*sqrt(n) rounded to a power of 2, <= n/39
    nprobe: int | None = None           # IVF lists scanned per query; None: 16 (see module notes)
    pq_m: int | None = None             # ivfpq sub-quantizers = code bytes per vector; None: dim/8
    pq_bits: int = 8                    # ivfpq bits per sub-quantizer code
    k_factor: int = 64                  # ivfpq: re-rank k*k_factor candidates exactly; 0: no re-ranking
    hnsw_m: int = 32                    # hnsw: graph neighbours per node
    ef_construction: int = 128          # hnsw: candidate list while building (faiss's 40 is too few)
    ef_search: int = 128                # hnsw: candidate list while searching (>= k is used)
    train_size: int | None = None       # IVF training sample; None: 39 vectors per list
    seed: int = 0                       # training sample and k-means seed

    def describe(self) -> str:
        """``ivfflat nlist=4096 nprobe=16``, for messages and tables."""
        keys = {"flat": (), "ivfflat": ("nlist", "nprobe"), "ivfpq": ("nlist", "nprobe", "pq_m", "pq_bits", "k_factor"),
                "hnsw": ("hnsw_m", "ef_construction", "ef_search")}.get(self.kind, ())
        return " ".join([self.kind] + [f"{key}={getattr(self, key)}" for key in keys])


def _faiss():
    import faiss

    return faiss


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
# settings


def auto_nlist(n: int) -> int:
    """IVF lists for ``n`` vectors: 4*sqrt(n) rounded to a power of 2, capped so each list gets 39+
    training vectors (1M -> 4096, 100k -> 1024, 10k -> 256)."""
    target = 2 ** round(math.log2(max(1.0, 4.0 * math.sqrt(n))))
    cap = n // MIN_POINTS_PER_LIST
    while target > cap and target > 1:
        target //= 2
    return max(1, target)


def auto_pq_m(dim: int) -> int:
    """ivfpq sub-quantizers for ``dim``: the largest divisor of ``dim`` that is at most dim/8
    (8 dimensions per byte of code: 512 -> 64 bytes, which GPU IVFPQ also supports), at least 1."""
    for m in range(max(1, dim // 8), 0, -1):
        if dim % m == 0:
            return m
    return 1


def resolve_settings(settings: IndexSettings, n: int, dim: int) -> IndexSettings:
    """``settings`` with every automatic value filled in for ``n`` vectors of ``dim``, or the ``flat``
    fallback for collections too small to train; C4CError on settings that cannot work."""
    if settings.kind not in KINDS:
        raise C4CError(f"unknown index kind {settings.kind!r}", hint=f"choose one of {', '.join(KINDS)}")
    s = replace(settings)
    for name in ("nlist", "nprobe", "pq_m", "train_size"):
        value = getattr(s, name)
        if value is not None and value < 1:
            raise C4CError(f"{name} must be at least 1, got {value}")
    for name in ("hnsw_m", "ef_construction", "ef_search", "pq_bits"):
        if getattr(s, name) < 1:
            raise C4CError(f"{name} must be at least 1, got {getattr(s, name)}")
    if s.k_factor < 0:
        raise C4CError(f"k_factor must be 0 (no re-ranking) or more, got {s.k_factor}")
    if s.kind in ("ivfflat", "ivfpq"):
        fallback = None
        if s.nlist is None:
            s.nlist = auto_nlist(n)
            if s.nlist < MIN_NLIST:
                fallback = f"an IVF index needs {MIN_NLIST * MIN_POINTS_PER_LIST} vectors or more"
        elif n < MIN_POINTS_PER_LIST * s.nlist:
            raise C4CError(f"nlist={s.nlist} needs at least {MIN_POINTS_PER_LIST * s.nlist} vectors to train, "
                           f"the collection has {n}", hint="leave nlist automatic or lower it")
        if s.kind == "ivfpq" and fallback is None:
            if s.pq_m is None:
                s.pq_m = auto_pq_m(dim)
            if dim % s.pq_m:
                raise C4CError(f"pq_m={s.pq_m} does not divide the dimension {dim}")
            if not 1 <= s.pq_bits <= 16:
                raise C4CError(f"pq_bits must be 1..16, got {s.pq_bits}")
            need = MIN_POINTS_PER_LIST * 2 ** s.pq_bits
            if n < need:
                fallback = f"its {2 ** s.pq_bits}-centroid PQ codebooks need {need} vectors or more"
        if fallback is not None:
            log.warning("%d vectors are too few for a %s index (%s); building an exact flat index instead",
                        n, s.kind, fallback)
            return IndexSettings(kind="flat", seed=s.seed)
        if s.nprobe is None:
            s.nprobe = 16
        s.nprobe = min(s.nprobe, s.nlist)
        if s.train_size is None:
            s.train_size = TRAIN_POINTS_PER_LIST * s.nlist
        need = MIN_POINTS_PER_LIST * max(s.nlist, 2 ** s.pq_bits if s.kind == "ivfpq" else 0)
        s.train_size = min(n, max(s.train_size, need))
    return s


def _factory_string(s: IndexSettings) -> str:
    if s.kind == "flat":
        return "Flat"
    if s.kind == "ivfflat":
        return f"IVF{s.nlist},Flat"
    if s.kind == "ivfpq":
        # "np": no polysemous training (a slow code reordering that only Hamming filtering uses)
        return f"IVF{s.nlist},PQ{s.pq_m}x{s.pq_bits}np" + (",RFlat" if s.k_factor > 0 else "")
    return f"HNSW{s.hnsw_m},Flat"


# ---------------------------------------------------------------------------------------------
# building


def _make_index(s: IndexSettings, dim: int):
    faiss = _faiss()
    index = faiss.index_factory(dim, _factory_string(s), faiss.METRIC_INNER_PRODUCT)
    if s.kind in ("ivfflat", "ivfpq"):
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.seed = s.seed
        ivf.cp.max_points_per_centroid = max(256, -(-s.train_size // s.nlist))  # train on the whole sample
        if s.kind == "ivfpq":
            faiss.downcast_index(ivf).pq.cp.seed = s.seed
    if s.kind == "hnsw":
        index.hnsw.efConstruction = s.ef_construction
    _apply_search_params(index, s.kind, nprobe=s.nprobe, ef_search=s.ef_search,
                         k_factor=s.k_factor if s.kind == "ivfpq" else None)
    return index


def _train_sample(x: np.ndarray, size: int, seed: int) -> np.ndarray:
    if size >= len(x):
        return x
    rows = np.sort(np.random.default_rng(seed).choice(len(x), size=size, replace=False))
    return x[rows]


def build_index(vectors: np.ndarray, ids: list[str], settings: IndexSettings, out_dir: Path, *,
                meta: dict | None = None, progress: Progress | None = None, overwrite: bool = False) -> Path:
    """Build a faiss index of ``vectors`` [N, D] (row i is ``ids[i]``) and write it to ``out_dir``.

    Rows are L2-normalised (a warning is logged when they were not already). ``meta`` is stored as
    is in the manifest (JSON-serialisable). ``progress(stage, done, total)`` is called during
    training and adding. An existing non-empty ``out_dir`` is refused unless ``overwrite`` is true,
    and even then only when it holds a c4c index. Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    _check_destination(out_dir, overwrite)  # fail before a long build, not after it
    index = VectorIndex.from_vectors(vectors, ids, settings, meta=meta, progress=progress)
    return index.save(out_dir, overwrite=overwrite)


def _build_faiss(x: np.ndarray, s: IndexSettings, progress: Progress | None):
    """Train and fill a faiss index of kind ``s.kind`` (settings resolved) with the rows of ``x``."""
    n, dim = x.shape
    index = _make_index(s, dim)
    t0 = time.perf_counter()
    if not index.is_trained:
        sample = _train_sample(x, s.train_size, s.seed)
        log.info("training %s on %d vectors", s.describe(), len(sample))
        if progress:
            progress("train", 0, len(sample))
        index.train(sample)
        if progress:
            progress("train", len(sample), len(sample))
    train_seconds = time.perf_counter() - t0
    for start in range(0, n, ADD_CHUNK):
        index.add(x[start:start + ADD_CHUNK])
        if progress:
            progress("add", min(n, start + ADD_CHUNK), n)
    build_seconds = time.perf_counter() - t0
    log.info("built %s over %d vectors in %.1f s", s.describe(), n, build_seconds)
    return index, build_seconds, train_seconds


def _is_index_dir(path: Path) -> bool:
    try:
        return json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8")).get("format") == INDEX_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _check_destination(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise C4CError("exists and is not a folder", path=out_dir, hint="choose a new folder for the index")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise C4CError("folder exists and is not empty", path=out_dir,
                           hint="pass --overwrite to replace an index, or choose a new folder")
        if not _is_index_dir(out_dir):
            raise C4CError("folder is not empty and is not a c4c index; refusing to replace it", path=out_dir,
                           hint="choose a new or empty folder")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        _fsync_file(path)
    except OSError:  # some file systems do not allow opening folders
        pass


def _write_dir(out_dir: Path, index, ids: list[str], manifest: dict, overwrite: bool) -> None:
    faiss = _faiss()
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
            _fsync_file(tmp / name)
        _check_destination(out_dir, overwrite)  # again: something may have appeared while building
        if out_dir.is_dir():
            if any(out_dir.iterdir()):  # an index being replaced (overwrite): set it aside until the new one is in
                old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
                os.replace(out_dir, old)
            else:
                out_dir.rmdir()
        os.replace(tmp, out_dir)
        _fsync_dir(out_dir.parent)
    except BaseException:
        if old is not None and not out_dir.exists():
            os.replace(old, out_dir)
            old = None
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# reading


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


def _read_ids(path: Path, count: int) -> list[str]:
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


def _settings_from(manifest: dict) -> IndexSettings:
    known = {f.name for f in fields(IndexSettings)}
    return IndexSettings(**{k: v for k, v in manifest["settings"].items() if k in known})


def _gpu_count() -> int:
    faiss = _faiss()
    get = getattr(faiss, "get_num_gpus", None)
    try:
        return int(get()) if get else 0
    except Exception:  # a faiss build whose GPU query fails counts as CPU-only
        return 0


def _to_gpu(index, kind: str):
    """The index moved to all GPUs (the re-ranking of ivfpq stays on the CPU); None when it cannot."""
    faiss = _faiss()
    options = faiss.GpuMultipleClonerOptions()
    # float16 PQ lookup tables (needed for codes of 56 bytes and more); never float16 flat vectors
    options.useFloat16 = kind == "ivfpq"
    try:
        refine = faiss.downcast_index(index) if kind == "ivfpq" else None
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


def _apply_search_params(index, kind: str, *, nprobe: int | None = None, ef_search: int | None = None,
                         k_factor: int | None = None, gpu: bool = False) -> None:
    faiss = _faiss()
    inner = index
    if kind == "ivfpq":
        top = faiss.downcast_index(index)
        if isinstance(top, faiss.IndexRefine):
            if k_factor is not None:
                top.k_factor = k_factor
            inner = faiss.downcast_index(top.base_index)
    if nprobe is not None and kind in ("ivfflat", "ivfpq"):
        if gpu:
            faiss.GpuParameterSpace().set_index_parameter(inner, "nprobe", nprobe)
        else:
            faiss.extract_index_ivf(inner).nprobe = nprobe
    if ef_search is not None and kind == "hnsw":
        faiss.downcast_index(inner).hnsw.efSearch = ef_search


class VectorIndex:
    """An index in memory: ``search`` returns the best-scoring ids for each query.

    Made by :meth:`from_vectors` (then :meth:`save`) or by :meth:`open` on a saved INDEX_DIR.
    """

    def __init__(self, index, ids: list[str], manifest: dict, *, path: Path | None = None,
                 cpu_index=None, on_gpu: bool = False):
        self._index = index          # what searches: the CPU index, or its GPU copy
        self._cpu_index = cpu_index  # what `save` writes; None once moved to the GPU
        self.ids = ids
        self.manifest = manifest
        self.path = path
        self.on_gpu = on_gpu
        self.dim: int = manifest["dim"]
        self.kind: str = manifest["kind"]
        self.meta: dict = manifest.get("meta") or {}
        self.settings = _settings_from(manifest)

    @classmethod
    def from_vectors(cls, vectors: np.ndarray, ids: list[str], settings: IndexSettings | None = None, *,
                     meta: dict | None = None, progress: Progress | None = None) -> "VectorIndex":
        """Build an index of ``vectors`` [N, D] in memory (on the CPU); see :func:`build_index`."""
        settings = settings or IndexSettings()
        x = _as_matrix(vectors, "vectors")
        n, dim = x.shape
        if n == 0:
            raise C4CError("the collection is empty: no vectors to index")
        ids = _check_ids(ids, n)
        x, changed = _normalised(x, "vectors")
        if changed:
            log.warning("the vectors were not L2-normalised; normalised them (scores are cosines)")
        s = resolve_settings(settings, n, dim)
        index, build_seconds, train_seconds = _build_faiss(x, s, progress)
        manifest = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "kind": s.kind, "settings": asdict(s),
                    "dim": int(dim), "count": int(n), "metric": "ip", "normalised": True,
                    "meta": dict(meta or {}), "faiss_version": _faiss().__version__, "c4c_version": __version__,
                    "build_seconds": round(build_seconds, 3), "train_seconds": round(train_seconds, 3)}
        if s.kind != settings.kind:
            manifest["requested_kind"] = settings.kind
        return cls(index, ids, manifest, cpu_index=index)

    def save(self, out_dir: Path, *, overwrite: bool = False) -> Path:
        """Write INDEX_DIR atomically (see the module notes on ``overwrite``); returns ``out_dir``."""
        if self._cpu_index is None:
            raise RuntimeError("this index was moved to the GPU when opened; open it with device='cpu' to save it")
        out_dir = Path(out_dir)
        _check_destination(out_dir, overwrite)
        _write_dir(out_dir, self._cpu_index, self.ids, self.manifest, overwrite)
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
        ids = _read_ids(index_dir / IDS_FILE, manifest["count"])
        path = index_dir / INDEX_FILE
        if not path.is_file():
            raise C4CError("faiss index file is missing", path=path, hint="rebuild the index with `c4c index`")
        faiss = _faiss()
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
        self = cls(index, ids, manifest, path=index_dir, cpu_index=index)
        if device != "cpu" and gpus > 0:
            if kind == "hnsw":
                log.info("faiss has no GPU version of hnsw indexes; searching on the CPU")
            else:
                moved = _to_gpu(index, kind)
                if moved is not None:
                    self._index, self._cpu_index, self.on_gpu = moved, None, True
        s = self.settings
        self.set_search_params(nprobe=s.nprobe, ef_search=s.ef_search, k_factor=s.k_factor or None)
        return self

    @property
    def count(self) -> int:
        return len(self.ids)

    def set_search_params(self, *, nprobe: int | None = None, ef_search: int | None = None,
                          k_factor: int | None = None) -> None:
        """Change the speed/recall trade-off of an approximate index: IVF lists scanned (``nprobe``),
        HNSW candidate list (``ef_search``), ivfpq re-ranking depth (``k_factor``, only when the index
        was built with re-ranking). Values a kind does not have are ignored."""
        for name, value in (("nprobe", nprobe), ("ef_search", ef_search), ("k_factor", k_factor)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
                raise C4CError(f"{name} must be a whole number of at least 1, got {value!r}")
        s = self.settings
        nprobe = min(int(nprobe), s.nlist) if nprobe is not None and s.kind in ("ivfflat", "ivfpq") else None
        if nprobe is not None and self.on_gpu:
            nprobe = min(nprobe, GPU_MAX_K)
        ef_search = int(ef_search) if ef_search is not None and s.kind == "hnsw" else None
        k_factor = int(k_factor) if k_factor is not None and s.kind == "ivfpq" and s.k_factor > 0 else None
        _apply_search_params(self._index, s.kind, nprobe=nprobe, ef_search=ef_search, k_factor=k_factor,
                             gpu=self.on_gpu)
        for name, value in (("nprobe", nprobe), ("ef_search", ef_search), ("k_factor", k_factor)):
            if value is not None:
                setattr(s, name, value)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[list[str]]]:
        """The ``k`` best ids per query, best first: scores [Q, k] (cosines) and ids (a list per query).

        ``queries`` [Q, D] (or one [D] vector) are L2-normalised here. ``k`` is clipped to the number
        of indexed videos. An approximate index may find fewer than ``k``: ``ids[q]`` is then shorter
        and the scores past its end are -inf.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise C4CError(f"k must be a whole number of at least 1, got {k!r}")
        q = _as_matrix(queries, "queries", self.dim)
        q, _ = _normalised(q, "queries")
        k = min(int(k), self.count)
        if self.kind == "hnsw":  # HNSW returns at most ef_search results: widen the list for a large k
            _apply_search_params(self._index, "hnsw", ef_search=max(self.settings.ef_search, k))
        if self.on_gpu:
            if k > GPU_MAX_K:
                raise C4CError(f"k={k} is above the {GPU_MAX_K} results a faiss GPU index can return",
                               hint="lower k, or open the index with device cpu")
            if self.kind == "ivfpq" and self.settings.k_factor > 0:  # the candidates also come from the GPU
                _apply_search_params(self._index, "ivfpq", k_factor=max(1, min(self.settings.k_factor, GPU_MAX_K // k)))
        scores, rows = self._index.search(q, k)
        scores = np.array(scores, dtype=np.float32)
        found = rows >= 0
        scores[~found] = -np.inf
        ids = [[self.ids[r] for r in row[ok]] for row, ok in zip(rows, found)]
        return scores, ids


# ---------------------------------------------------------------------------------------------
# references for tests and benchmarks


def exact_topk(vectors: np.ndarray, queries: np.ndarray, k: int, *, block: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-k by inner product in NumPy: scores [Q, k] float32 and rows [Q, k] int64,
    best first, ties broken by the lower row. ``k`` is clipped to N. Vectors are used as given."""
    x = np.asarray(vectors, dtype=np.float32)
    q = np.asarray(queries, dtype=np.float32)
    n, nq = len(x), len(q)
    k = min(int(k), n)
    if k < 1:
        raise ValueError("exact_topk needs k >= 1 and a non-empty collection")
    block = block or max(1024, (1 << 26) // max(1, nq))  # ~256 MB of scores per block
    best_s = np.full((nq, 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((nq, 0), dtype=np.int64)
    for start in range(0, n, block):
        sim = q @ x[start:start + block].T                                  # [Q, B]
        cand_s = np.concatenate([best_s, sim], axis=1)
        cand_i = np.concatenate([best_i, np.broadcast_to(np.arange(start, start + sim.shape[1]), sim.shape)], axis=1)
        if cand_s.shape[1] > k:
            part = np.argpartition(-cand_s, k - 1, axis=1)[:, :k]
            # argpartition may cut inside a tie at the k-th score; keep the lower rows of that tie
            kth = np.take_along_axis(cand_s, part, axis=1).min(axis=1, keepdims=True)
            above = cand_s > kth
            tie_rank = np.cumsum(cand_s == kth, axis=1) * (cand_s == kth)
            need = k - above.sum(axis=1, keepdims=True)
            keep = above | ((tie_rank > 0) & (tie_rank <= need))
            best_s = cand_s[keep].reshape(nq, k)
            best_i = cand_i[keep].reshape(nq, k)
        else:
            best_s, best_i = cand_s, np.ascontiguousarray(cand_i)
    order = np.lexsort((best_i, -best_s)) if nq else np.zeros((0, k), dtype=np.int64)
    return np.take_along_axis(best_s, order, axis=1), np.take_along_axis(best_i, order, axis=1)


def recall_at_k(approx_idx: np.ndarray, exact_idx: np.ndarray, k: int) -> float:
    """Mean over queries of |approx top-k ∩ exact top-k| / k (rows; -1 in ``approx_idx`` never matches)."""
    a = np.asarray(approx_idx)
    e = np.asarray(exact_idx)
    if a.ndim != 2 or e.ndim != 2 or len(a) != len(e):
        raise ValueError(f"recall_at_k needs two [Q, k] arrays of the same Q, got {a.shape} and {e.shape}")
    if k < 1 or a.shape[1] < k or e.shape[1] < k:
        raise ValueError(f"recall_at_k: k={k} but the arrays have {a.shape[1]} and {e.shape[1]} columns")
    if len(a) == 0:
        return 0.0
    hits = [len((set(row_a[:k].tolist()) - {-1}) & set(row_e[:k].tolist())) for row_a, row_e in zip(a, e)]
    return float(np.sum(hits)) / (k * len(a))
