"""Building faiss indexes: one factory string per kind, the training sample, adding in chunks, and the
search-time parameters (nprobe, ef_search, k_factor) every kind is set with."""

from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np

from c4c.search.settings import IndexSettings

log = logging.getLogger(__name__)

ADD_CHUNK = 65536             # vectors added per faiss call (progress granularity)

Progress = Callable[[str, int, int], None]  # (stage "train" | "add", done, total)


def faiss_module():
    """faiss, imported on first use (``import c4c`` stays fast)."""
    import faiss

    return faiss


def factory_string(s: IndexSettings) -> str:
    """The faiss index_factory string of resolved settings ``s``."""
    if s.kind == "flat":
        return "Flat"
    if s.kind == "ivfflat":
        return f"IVF{s.nlist},Flat"
    if s.kind == "ivfpq":
        # "np": no polysemous training (a slow code reordering that only Hamming filtering uses)
        return f"IVF{s.nlist},PQ{s.pq_m}x{s.pq_bits}np" + (",RFlat" if s.k_factor > 0 else "")
    return f"HNSW{s.hnsw_m},Flat"


def make_index(s: IndexSettings, dim: int):
    """An empty (untrained) faiss index of kind ``s.kind`` for ``dim``-vectors, seeded, set up to search."""
    faiss = faiss_module()
    index = faiss.index_factory(dim, factory_string(s), faiss.METRIC_INNER_PRODUCT)
    if s.kind in ("ivfflat", "ivfpq"):
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.seed = s.seed
        ivf.cp.max_points_per_centroid = max(256, -(-s.train_size // s.nlist))  # train on the whole sample
        if s.kind == "ivfpq":
            faiss.downcast_index(ivf).pq.cp.seed = s.seed
    if s.kind == "hnsw":
        index.hnsw.efConstruction = s.ef_construction
    apply_search_params(index, s.kind, nprobe=s.nprobe, ef_search=s.ef_search,
                        k_factor=s.k_factor if s.kind == "ivfpq" else None)
    return index


def train_sample(x: np.ndarray, size: int, seed: int) -> np.ndarray:
    """``size`` rows of ``x`` drawn without replacement (kept in row order) from ``seed``; all of ``x`` when
    it has no more."""
    if size >= len(x):
        return x
    rows = np.sort(np.random.default_rng(seed).choice(len(x), size=size, replace=False))
    return x[rows]


def build_faiss(x: np.ndarray, s: IndexSettings, progress: Progress | None):
    """Train and fill a faiss index of kind ``s.kind`` (settings resolved) with the rows of ``x``."""
    n, dim = x.shape
    index = make_index(s, dim)
    t0 = time.perf_counter()
    if not index.is_trained:
        sample = train_sample(x, s.train_size, s.seed)
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


def apply_search_params(index, kind: str, *, nprobe: int | None = None, ef_search: int | None = None,
                        k_factor: int | None = None, gpu: bool = False) -> None:
    """Set the search parameters of a faiss ``index`` of ``kind`` (None: leave as is; ``gpu``: a GPU copy)."""
    faiss = faiss_module()
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
