"""`c4c index EMB.h5` and `c4c search`: a faiss index over EMB.h5 video embeddings, queried with text.

`c4c index` reads the video rows of an EMB.h5 (a loose head: meanP, seqLSTM, seqTransf; or zero-shot
CLIP), whole videos or moments, and builds an index (``c4c.search.index``) that remembers the model
that made them (``c4c.run.source``) and what each row is (``c4c.search.moments``: video, start,
end, file). :class:`Searcher` loads that model's text tower once and answers many queries: tokenise,
text tower, faiss, then overlapping windows of one video merge into one moment. Scores are cosines,
not the logit-scaled training scores.

A library folder (`c4c index VIDEOS_DIR`, :mod:`c4c.stages.library`) is searched through the index it
keeps inside.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from c4c.choices import TEXT_PRECISIONS
from c4c.data.embeddings import Embeddings
from c4c.data.text import CaptionTokenizer
from c4c.errors import C4CError
from c4c.model.load import load_run, resolve_device
from c4c.model.towers import embed_dim
from c4c.options import QueryModel, Replaces
from c4c.outputs import Output, guard
from c4c.run.source import check_same_model, from_record
from c4c.search.build import faiss_module
from c4c.search.index import VectorIndex, build_index
from c4c.search.index_dir import holds_only_an_index, index_meta, settings_of
from c4c.search.moments import Moment, RowTable, group_hits
from c4c.search.source import load_source, run_source
from c4c.stages import library
from c4c.video.store import FrameStore

log = logging.getLogger(__name__)

__all__ = ["IndexConfig", "IndexResult", "Searcher", "build"]


@dataclass(kw_only=True)
class IndexConfig(Replaces):
    """Options of `c4c index EMB.h5` (the command line's are those of a library, :mod:`c4c.stages.library`)."""

    emb: Path                            # EMB.h5 from `c4c encode`
    out: Path                            # index folder to write
    kind: str = "flat"                   # flat (exact) | approximate kinds of c4c.search.settings.INDEX_KINDS
    params: dict = field(default_factory=dict)  # IndexSettings fields (nlist, nprobe, ef_search, ...)


@dataclass
class IndexResult:
    out: Path
    kind: str
    count: int                           # rows indexed (videos, or moments)
    dim: int
    seconds: float
    videos: int = 0                      # distinct videos


def build(cfg: IndexConfig, progress: Callable | None = None) -> IndexResult:
    """Index the video rows of ``cfg.emb`` into ``cfg.out``."""
    out = Output(Path(cfg.out), "index folder", holds_only_an_index, folder=True)
    with guard([out], [cfg.emb], command="c4c index"):
        return _build(cfg, progress)


def _build(cfg: IndexConfig, progress: Callable | None = None) -> IndexResult:
    t0 = time.perf_counter()
    emb = Embeddings(cfg.emb)
    vectors = emb.video_emb()
    if not len(vectors):
        raise C4CError("the embedding file holds no videos", path=cfg.emb)
    settings = settings_of(cfg.kind, cfg.params)
    start, end = emb.spans()
    frames = emb.attrs.get("frames") or None
    bases = [Path.cwd(), *([Path(frames).parent] if frames else []), Path(cfg.emb).resolve().parent]
    sources = [absolute_file(s, bases) for s in emb.sources()]  # served from any folder, the files stay found
    rows = RowTable.from_rows(emb.video_ids, start, end, sources, frames=frames)
    out = build_index(vectors, rows.row_keys(), settings, Path(cfg.out), meta=index_meta(emb, cfg.emb),
                      progress=progress, overwrite=cfg.overwrite, rows=rows)
    return IndexResult(out=out, kind=cfg.kind, count=len(vectors), dim=vectors.shape[1],
                       seconds=time.perf_counter() - t0, videos=len(rows.videos))


def resolve_index_dir(path: Path) -> Path:
    """The INDEX_DIR to open for ``path``: the folder itself, or the index a library folder keeps."""

    path = Path(path)
    if library.is_library(path):
        index_dir = library.index_dir(path)
        if not index_dir.is_dir():
            raise C4CError("this library has no index yet (its first `c4c index` did not finish)", path=path,
                           hint="rerun the same `c4c index VIDEOS_DIR --out ...` command")
        return index_dir
    return path


def absolute_file(path: str | None, bases: list[Path]) -> str | None:
    """A video file as an absolute path: an absolute one as it is; a relative one (a frame store records
    the path `c4c extract` was given) found under the first of ``bases`` that holds it, else under the
    first base. Empty stays empty (file unknown)."""
    if not path:
        return path
    p = Path(path)
    if p.is_absolute():
        return str(p)
    for base in bases:
        if (base / p).is_file():
            return str((base / p).resolve())
    return str((bases[0] / p).resolve())


class Searcher:
    """An index opened once, with the text tower of the model that made its vectors: ``search`` answers
    many queries (tokenise, text tower, faiss) without loading anything again.

    ``run``: encode queries with this run instead of the one the index names; it must be the same
    model (same fingerprint) unless ``force``. ``precision="bf16"`` keeps the text tower's weights in
    bfloat16: half the bytes to stream per query, which is what a CPU query waits for (query
    embeddings within about 1e-4 of fp32 in cosine; bench/README.md). ``threads``: torch and faiss
    threads while a query is answered (set for the call, then put back); on the CPU the default is
    one, which answered single queries 4x faster than two on a shared 2-core machine (bench/README.md).
    """

    def __init__(self, index_dir: Path, *, run: Path | None = None, checkpoint: str | None = None,
                 device: str = QueryModel.device, force: bool = QueryModel.force,
                 precision: str = QueryModel.precision,
                 threads: int | None = None) -> None:
        import torch

        if precision not in TEXT_PRECISIONS:
            raise C4CError(f"unknown precision {precision!r}", hint=f"choose one of: {', '.join(TEXT_PRECISIONS)}")
        if threads is not None and threads < 1:
            raise C4CError(f"threads must be at least 1, got {threads}")
        self.device = resolve_device(device)
        self.threads = threads if threads is not None else (1 if self.device == "cpu" else None)
        index_device = "auto" if device == "auto" else ("gpu" if self.device.startswith("cuda") else "cpu")
        self.index_dir = resolve_index_dir(Path(index_dir))
        self.index = VectorIndex.open(self.index_dir, device=index_device)
        rows = self.index.rows  # indexes made before paths were recorded absolute: looked for here, beside it
        rows.paths = [absolute_file(p, [Path.cwd(), self.index_dir.parent, self.index_dir]) for p in rows.paths]
        meta = self.index.meta or {}
        recorded = from_record(meta.get("model"), run=meta.get("run"), checkpoint=meta.get("checkpoint"))
        if run is not None:
            loaded = load_run(Path(run), device=self.device, which=checkpoint or "best")
            model, config = loaded.model, loaded.config
            if recorded is not None:
                check_same_model(run_source(loaded), recorded, have_what=f"--run {run}",
                                 want_what=f"the index {self.index_dir}", force=force,
                                 hint="search with the model that encoded the videos (leave out --run), or pass --force")
        elif recorded is None:
            raise C4CError("the index does not say which model made its vectors", path=self.index_dir,
                           hint="pass --run RUN_DIR (the run given to `c4c encode`)")
        else:
            model, config, _ = load_source(recorded, self.device, force=force)
        if not model.loose:
            raise C4CError(f"the model uses {model.sim}, which has no text embedding to search with")
        model.eval()
        if precision == "bf16":
            _text_tower_to(model.clip, torch.bfloat16)
        self.precision = precision
        self.model = model
        self.tokenizer = CaptionTokenizer(int(meta.get("max_words") or config.get("max_words", 32)))
        width = embed_dim(model.clip)
        if self.index.dim != width:
            raise C4CError(f"the index holds {self.index.dim}-d vectors but the text tower gives {width}-d",
                           path=self.index_dir, hint="search with the model that encoded the videos")
        self._stores: dict[str, object] = {}
        self._torch = torch
        self._one_row_per_video = len(set(self.index.rows.row_video.tolist())) == self.count

    @property
    def count(self) -> int:
        """Rows in the index (videos, or moments)."""
        return self.index.count

    @contextmanager
    def _threads(self):
        """torch and faiss on ``self.threads`` threads for the duration of a call."""
        if self.threads is None:
            yield
            return

        torch, faiss = self._torch, faiss_module()
        before = (torch.get_num_threads(), faiss.omp_get_max_threads())
        torch.set_num_threads(self.threads)
        faiss.omp_set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(before[0])
            faiss.omp_set_num_threads(before[1])

    def encode(self, queries: list[str]):
        """L2-normalised float32 ``[Q, D]`` query embeddings."""
        torch = self._torch
        ids, _ = self.tokenizer(queries)
        with self._threads(), torch.inference_mode():
            feats = self.model.encode_text(ids.to(self.device)).float()
            return torch.nn.functional.normalize(feats, dim=-1).cpu().numpy()

    def query_warnings(self, queries: list[str]) -> list[str | None]:
        """Per query: what was left out when it is longer than the text tower reads (only its first
        tokens are searched), else None."""
        warnings: list[str | None] = []
        for query in queries:
            cut = self.tokenizer.overflow(query)
            if cut is None:
                warnings.append(None)
                continue
            read, total, text = cut
            tail = text if len(text) <= 60 else "…" + text[-59:]
            warnings.append(f"query cut: the text tower reads {read} of its {total} tokens, up to \"{tail}\"; "
                            "the rest was not searched")
        return warnings

    def search(self, queries: list[str], k: int = 10, group: str = "moment") -> list[list[Moment]]:
        """The ``k`` best moments of each query, best first (``group``: ``moment`` merges overlapping
        windows of a video, ``video`` keeps one moment per video; c4c.search.moments)."""

        if not queries or any(not isinstance(q, str) or not q.strip() for q in queries):
            raise C4CError("empty query", hint='give the text to search for, e.g. "a man is cooking pasta"')
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise C4CError("-k must be at least 1")
        q = self.encode(list(queries))
        fetch = min(self.count, k if self._one_row_per_video else max(4 * k, k + 16))
        limit = self.count if not self.index.on_gpu else min(self.count, 2048)
        results: list[list[Moment] | None] = [None] * len(queries)
        todo = list(range(len(queries)))
        while todo:
            with self._threads():
                scores, rows = self.index.search_rows(q[todo], fetch)
            again = []
            for j, i in enumerate(todo):
                moments = group_hits(self.index.rows, scores[j], rows[j], k, group)
                if len(moments) < k and fetch < limit:
                    again.append(i)
                else:
                    results[i] = moments
            todo, fetch = again, min(limit, fetch * 4)
        return results  # type: ignore[return-value]

    def frame_store_of(self, video_id: str) -> Path | None:
        """The frame store holding ``video_id`` (None when the index does not know it)."""
        rows = self.index.rows
        try:
            v = rows.videos.index(video_id)
        except ValueError:
            raise C4CError(f"video {video_id!r} is not in the index", path=self.index_dir) from None
        return rows.frame_store(v, self.index_dir)

    def thumbnail(self, moment: Moment):
        """The stored frame nearest the middle of ``moment``: uint8 ``[S, S, 3]`` RGB."""
        import numpy as np

        path = self.frame_store_of(moment.video_id)
        if path is None or not Path(path).exists():
            raise C4CError(f"the frames of video {moment.video_id!r} are not available", path=path,
                           hint="the frame store the index was built from has moved or was removed")
        key = str(path)
        if key not in self._stores:
            self._stores[key] = FrameStore(path)
        store = self._stores[key]
        ts = store.timestamps(moment.video_id)
        middle = 0.0 if moment.start is None else (moment.start + (moment.end if moment.end is not None
                                                                    else moment.start)) / 2
        if moment.start is None and len(ts):
            middle = float(ts[len(ts) // 2])
        return store.read(moment.video_id, [int(np.argmin(np.abs(ts - middle)))])[0]

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
        self._stores = {}


def _text_tower_to(clip, dtype) -> None:
    """Cast the parts of CLIP that encode text to ``dtype`` (the image tower is left as it is)."""
    if getattr(clip, "text", None) is not None:  # a CustomTextCLIP: the text tower is one module
        clip.text.to(dtype)
        return
    for module in (clip.transformer, clip.token_embedding, clip.ln_final):
        module.to(dtype)
    for name in ("positional_embedding", "text_projection"):
        param = getattr(clip, name)
        param.data = param.data.to(dtype)
