"""How a vector index is built and searched: the kinds (:data:`INDEX_KINDS`, the one table of them),
their settings, and the automatic values.

A new kind is an entry of :data:`INDEX_KINDS` (and a field of :class:`IndexSettings` for each new
parameter); :mod:`c4c.search.build` sets a new search-time parameter on the faiss index.

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
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields, replace
from typing import Callable, Literal

from c4c.errors import C4CError

log = logging.getLogger(__name__)

MIN_POINTS_PER_LIST = 39      # faiss k-means warns below this many training vectors per centroid
TRAIN_POINTS_PER_LIST = 39    # default IVF training sample per list (faiss would take up to 256)
MIN_NLIST = 16                # an IVF with fewer lists saves too little over flat to be worth it


@dataclass
class IndexSettings:
    """How an index is built and searched. ``None`` means automatic (resolved from n and dim)."""

    kind: str = "flat"                  # a key of INDEX_KINDS
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
        kind = INDEX_KINDS.get(self.kind)
        keys = kind.params if kind else ()
        return " ".join([self.kind] + [f"{key}={getattr(self, key)}" for key in keys])


@dataclass(frozen=True)
class IndexKind:
    """One kind of index: its faiss factory string and the settings it reads."""

    factory: Callable[[IndexSettings], str]  # resolved settings -> faiss index_factory string
    params: tuple[str, ...] = ()        # the settings it is described by, in the order messages give them
    search: tuple[str, ...] = ()        # those of ``params`` that can change when it is searched
    trains: bool = False                # k-means on a sample of ``train_size`` vectors (``seed``) into ``nlist`` lists
    gpu: bool = True                    # faiss can move it to the GPU


INDEX_KINDS: dict[str, IndexKind] = {
    "flat": IndexKind(lambda s: "Flat"),
    "ivfflat": IndexKind(lambda s: f"IVF{s.nlist},Flat", ("nlist", "nprobe"), ("nprobe",), trains=True),
    # "np": no polysemous training (a slow code reordering that only Hamming filtering uses); RFlat: re-ranking
    "ivfpq": IndexKind(lambda s: f"IVF{s.nlist},PQ{s.pq_m}x{s.pq_bits}np" + (",RFlat" if s.k_factor > 0 else ""),
                       ("nlist", "nprobe", "pq_m", "pq_bits", "k_factor"), ("nprobe", "k_factor"), trains=True),
    "hnsw": IndexKind(lambda s: f"HNSW{s.hnsw_m},Flat", ("hnsw_m", "ef_construction", "ef_search"), ("ef_search",),
                      gpu=False),
}
KIND_NAMES: tuple[str, ...] = tuple(INDEX_KINDS)
IndexKindName = Literal[KIND_NAMES]     # --kind of `c4c index`
PARAMS: tuple[str, ...] = tuple(f.name for f in fields(IndexSettings) if f.name != "kind")  # what --param sets


def index_kind(name: str) -> IndexKind:
    """The :data:`INDEX_KINDS` entry of ``name``; C4CError naming the choices when there is none."""
    if name not in INDEX_KINDS:
        raise C4CError(f"unknown index kind {name!r}", hint=f"choose one of {', '.join(INDEX_KINDS)}")
    return INDEX_KINDS[name]


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
    kind = index_kind(settings.kind)
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
    if kind.trains:
        fallback = None
        if s.nlist is None:
            s.nlist = auto_nlist(n)
            if s.nlist < MIN_NLIST:
                fallback = f"an IVF index needs {MIN_NLIST * MIN_POINTS_PER_LIST} vectors or more"
        elif n < MIN_POINTS_PER_LIST * s.nlist:
            raise C4CError(f"nlist={s.nlist} needs at least {MIN_POINTS_PER_LIST * s.nlist} vectors to train, "
                           f"the collection has {n}", hint="leave nlist automatic or lower it")
        if "pq_m" in kind.params and fallback is None:
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
        need = MIN_POINTS_PER_LIST * max(s.nlist, 2 ** s.pq_bits if "pq_bits" in kind.params else 0)
        s.train_size = min(n, max(s.train_size, need))
    return s
