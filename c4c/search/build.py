"""Building faiss indexes: the factory string of each kind (:data:`~c4c.search.settings.INDEX_KINDS`),
the training sample, adding in chunks, and setting the search-time parameters (nprobe, ef_search,
k_factor) each kind reads."""

from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np

from c4c.search.settings import INDEX_KINDS, IndexSettings

log = logging.getLogger(__name__)

ADD_CHUNK = 65536             # vectors added per faiss call (progress granularity)

Progress = Callable[[str, int, int], None]  # (stage "train" | "add", done, total)


def faiss_module():
    """faiss, imported on first use (``import c4c`` stays fast)."""
    import faiss

    return faiss


def factory_string(s: IndexSettings) -> str:
    """The faiss index_factory string of resolved settings ``s``."""
    return INDEX_KINDS[s.kind].factory(s)


def make_index(s: IndexSettings, dim: int):
    """An empty (untrained) faiss index of kind ``s.kind`` for ``dim``-vectors, seeded, set up to search."""
    faiss = faiss_module()
    kind = INDEX_KINDS[s.kind]
    index = faiss.index_factory(dim, factory_string(s), faiss.METRIC_INNER_PRODUCT)
    if kind.trains:
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.seed = s.seed
        ivf.cp.max_points_per_centroid = max(256, -(-s.train_size // s.nlist))  # train on the whole sample
        if "pq_m" in kind.params:
            faiss.downcast_index(ivf).pq.cp.seed = s.seed
    if "ef_construction" in kind.params:
        index.hnsw.efConstruction = s.ef_construction
    apply_search_params(index, s.kind, **{name: getattr(s, name) for name in kind.search})
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


def apply_search_params(index, kind: str, *, gpu: bool = False, **values: int | None) -> None:
    """Set search-time settings (``nprobe=...``, ``ef_search=...``, ``k_factor=...``) of a faiss ``index`` of
    ``kind``; None, or a setting the kind does not read when searched, leaves it as is (``gpu``: a GPU copy)."""
    faiss = faiss_module()
    reads = INDEX_KINDS[kind].search
    values = {name: value for name, value in values.items() if value is not None and name in reads}
    inner = index
    if "k_factor" in reads:  # re-ranking wraps the index it re-ranks (when built with k_factor > 0)
        top = faiss.downcast_index(index)
        if isinstance(top, faiss.IndexRefine):
            if "k_factor" in values:
                top.k_factor = values["k_factor"]
            inner = faiss.downcast_index(top.base_index)
    if "nprobe" in values:
        if gpu:
            faiss.GpuParameterSpace().set_index_parameter(inner, "nprobe", values["nprobe"])
        else:
            faiss.extract_index_ivf(inner).nprobe = values["nprobe"]
    if "ef_search" in values:
        faiss.downcast_index(inner).hnsw.efSearch = values["ef_search"]
