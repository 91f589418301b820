"""`c4c index` and `c4c search`: a faiss index over EMB.h5 video embeddings, queried with text.

`c4c index` reads the video embeddings of an EMB.h5 (a loose-head run: meanP, seqLSTM, seqTransf)
and builds an index (``c4c.search.index``) that remembers which run and checkpoint made them.
`c4c search` encodes each query with that run's text tower, L2-normalises it and returns the top
videos by cosine similarity (the scores printed are cosines, not the logit-scaled training scores).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from c4c.errors import C4CError

log = logging.getLogger(__name__)


@dataclass
class IndexConfig:
    emb: Path                            # EMB.h5 from `c4c encode`
    out: Path                            # index folder to write
    kind: str = "flat"                   # flat (exact) | approximate kinds of c4c.search.index.KINDS
    params: dict = field(default_factory=dict)  # IndexSettings fields (nlist, nprobe, ef_search, ...)
    overwrite: bool = False


@dataclass
class IndexResult:
    out: Path
    kind: str
    count: int
    dim: int
    seconds: float


def build(cfg: IndexConfig, progress: Callable | None = None) -> IndexResult:
    """Index the video embeddings of ``cfg.emb`` into ``cfg.out``."""
    import json
    import time

    from c4c.data.embeddings import Embeddings
    from c4c.search.index import IndexSettings, build_index

    t0 = time.perf_counter()
    emb = Embeddings(cfg.emb)
    vectors = emb.video_emb()
    if not len(vectors):
        raise C4CError("the embedding file holds no videos", path=cfg.emb)
    try:
        settings = IndexSettings(kind=cfg.kind, **cfg.params)
    except TypeError as exc:
        raise C4CError(f"unknown index parameter: {exc}") from None
    meta = {"emb": str(Path(cfg.emb).resolve()), "run": emb.attrs.get("run"),
            "checkpoint": emb.attrs.get("checkpoint"), "sim": emb.sim, "clip": emb.attrs.get("clip"),
            "max_words": json.loads(emb.attrs.get("settings") or "{}").get("max_words", 32),
            "frames": emb.attrs.get("frames")}
    out = build_index(vectors, emb.video_ids, settings, Path(cfg.out), meta=meta, progress=progress,
                      overwrite=cfg.overwrite)
    return IndexResult(out=out, kind=cfg.kind, count=len(emb.video_ids), dim=vectors.shape[1],
                       seconds=time.perf_counter() - t0)


@dataclass
class Hit:
    rank: int
    video_id: str
    score: float


class TextSearcher:
    """An opened index plus the text tower of the run that made its vectors."""

    def __init__(self, index_dir: Path, *, run: Path | None = None, checkpoint: str | None = None,
                 device: str = "auto") -> None:
        from c4c.data.text import CaptionTokenizer
        from c4c.model.load import load_run, resolve_device
        from c4c.search.index import VectorIndex

        self.device = resolve_device(device)
        index_device = "auto" if device == "auto" else ("gpu" if self.device.startswith("cuda") else "cpu")
        self.index = VectorIndex.open(Path(index_dir), device=index_device)
        meta = self.index.meta or {}
        run_dir = Path(run) if run is not None else Path(str(meta.get("run") or ""))
        if not str(run_dir) or str(run_dir) == ".":
            raise C4CError("the index does not say which run made its vectors", path=index_dir,
                           hint="pass --run RUN_DIR (the run given to `c4c encode`)")
        which = checkpoint or (meta.get("checkpoint") if run is None else None) or "best"
        loaded = load_run(run_dir, device=self.device, which=which)
        if not loaded.model.loose:
            raise C4CError(f"run {run_dir} uses {loaded.model.sim}, which has no text embedding to search with")
        self.model = loaded.model
        self.tokenizer = CaptionTokenizer(int(meta.get("max_words") or loaded.config.get("max_words", 32)))
        if self.index.dim != int(loaded.model.clip.text_projection.shape[1]):
            raise C4CError(f"the index holds {self.index.dim}-d vectors but the run's text tower gives "
                           f"{int(loaded.model.clip.text_projection.shape[1])}-d", path=index_dir,
                           hint="search with the run that encoded the videos")

    def encode(self, queries: list[str]):
        """L2-normalised float32 ``[Q, D]`` query embeddings."""
        import torch

        ids, _ = self.tokenizer(queries)
        with torch.no_grad():
            feats = self.model.encode_text(ids.to(self.device)).float()
        return torch.nn.functional.normalize(feats, dim=-1).cpu().numpy()

    def search(self, queries: list[str], k: int = 10) -> list[list[Hit]]:
        """The top ``k`` videos of each query, best first."""
        if not queries or any(not q.strip() for q in queries):
            raise C4CError("empty query", hint='give the text to search for, e.g. "a man is cooking pasta"')
        if k < 1:
            raise C4CError("-k must be at least 1")
        scores, ids = self.index.search(self.encode(queries), k)
        return [[Hit(rank=r + 1, video_id=v, score=float(s)) for r, (v, s) in enumerate(zip(row_ids, row_scores))]
                for row_ids, row_scores in zip(ids, scores)]
