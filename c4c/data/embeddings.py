"""EMB.h5, the embedding file `c4c encode` writes and `c4c evaluate` / `c4c index` read.

The only code that knows the layout (format ``c4c-embeddings`` version 2, documented in
data/README.md)::

    /                     attrs: format, format_version, complete, sim, loose, logit_scale, dim,
                                 normalised, multi_sentence, paragraph, run, checkpoint, frames,
                                 dataset, ann, split, settings (JSON), fingerprint, created,
                                 model (JSON, c4c.run.source.ModelSource), model_fingerprint,
                                 moments (bool), window, stride (seconds; 0 without windows)
    /videos/ids           [Nv] utf-8 strings, the video of each row (repeated when ``moments``)
    /videos/start         [Nv] float64 seconds, where the row's span of its video starts
    /videos/end           [Nv] float64 seconds, where it ends
    /videos/source        [Nv] utf-8 strings, the video file (the frame store's source_path; "" unknown)
    /videos/emb           [Nv, D] float32, L2-normalised    (loose heads: meanP, seqLSTM, seqTransf)
    /videos/frames        [Nv, T, D] float32 frame features (tightTransf: its cross encoder's input)
    /videos/mask          [Nv, T] bool                      (tightTransf)
    /texts/captions       [Nt] utf-8 strings
    /texts/video_index    [Nt] int64, row in /videos of the caption's video
    /texts/emb            [Nt, D] float32 (L2-normalised for loose heads; raw for tightTransf)

Writing goes to ``EMB.h5.partial`` with ``videos_done`` / ``texts_done`` counters, so an
interrupted encode resumes; the finished file is renamed into place.

Version 1 files (no start/end/source, no model) still read: their spans are NaN, their sources "",
and their model is the run and checkpoint they name.

Rows are checked on write and on read (:func:`span_problem`, :func:`vector_problem`): a span is
``0 <= start < end`` in finite seconds, or unknown (both NaN; not in a ``moments`` file); an
embedding row is finite and not all zero. A file breaking either is refused, naming its first bad
rows, never scored or indexed.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from c4c.errors import C4CError
from c4c.run.source import from_record

FORMAT = "c4c-embeddings"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
_CHECK_ROWS = 65536   # rows checked at once for NaN, infinite and all-zero values


def _h5py():
    import h5py

    return h5py


def _chunks(rows: int, most: int, *rest: int) -> tuple | None:
    """HDF5 chunk shape of a ``[rows, *rest]`` dataset (None: contiguous, for an empty one)."""
    return (min(rows, most), *rest) if rows else None


def bad_span_rows(start: np.ndarray, end: np.ndarray, *, known: bool = False) -> np.ndarray:
    """Row numbers (int64, ascending) whose span cannot be one: not ``0 <= start < end`` in finite seconds,
    and not unknown (both NaN; ``known``: unknown spans are bad too)."""
    start, end = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    good = np.isfinite(start) & np.isfinite(end) & (start >= 0) & (end > start)
    if not known:
        good |= np.isnan(start) & np.isnan(end)
    return np.flatnonzero(~good)


def span_problem(start: np.ndarray, end: np.ndarray, names: list[str], *, known: bool = False) -> str | None:
    """What is wrong with the first impossible span (:func:`bad_span_rows`), or None when every span can be.
    ``names``: the video id of each row."""
    bad = bad_span_rows(start, end, known=known)
    if not len(bad):
        return None
    r = int(bad[0])
    s, e = float(start[r]), float(end[r])
    if not (np.isfinite(s) and np.isfinite(e)):
        what = f"has a span that is not a finite number of seconds ({s:g} to {e:g})"
    elif s < 0:
        what = f"starts before its video does ({s:g} to {e:g} s)"
    else:
        what = f"ends before it starts ({s:g} to {e:g} s)" if e < s else f"is empty ({s:g} to {e:g} s)"
    more = f"; {len(bad) - 1} more row{'s' if len(bad) > 2 else ''} like it" if len(bad) > 1 else ""
    return f"row {r} (video {names[r]!r}) {what}{more}"


def vector_problem(x: np.ndarray, names: list[str], what: str, mask: np.ndarray | None = None) -> str | None:
    """What is wrong with embedding rows ``x`` ``[N, D]`` (or frame features ``[N, T, D]`` with ``mask``
    ``[N, T]``: the frames in use), or None: rows holding NaN or infinite values, or all zero (no direction
    to compare). ``names``: how to call each row (video id or caption)."""
    x = np.asarray(x)
    n = len(x)
    finite, zero = np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
    for a in range(0, n, _CHECK_ROWS):                                # bounded memory on large files
        block = x[a:a + _CHECK_ROWS].reshape(min(_CHECK_ROWS, n - a), -1, x.shape[-1])   # [B, T, D]
        finite[a:a + len(block)] = np.isfinite(block).all(axis=(1, 2))
        empty = ~(block != 0).any(axis=2)                             # [B, T]
        if mask is not None:
            empty &= np.asarray(mask[a:a + len(block)], dtype=bool).reshape(empty.shape)
        zero[a:a + len(block)] = empty.any(axis=1)
    zero &= finite
    bad = np.flatnonzero(~finite | zero)
    if not len(bad):
        return None
    def name(r: int) -> str:
        text = str(names[r])
        return repr(text if len(text) <= 40 else text[:39] + "…")

    first = ", ".join(f"row {int(r)} {name(int(r))}" for r in bad[:3])
    kinds = ", ".join(f"{int(m.sum())} {k}" for k, m in (("NaN or infinite", ~finite), ("all zero", zero)) if m.any())
    return f"{len(bad)} of {n} {what} rows are NaN, infinite or all zero ({kinds}; first: {first})"


def partial_path(out: Path) -> Path:
    return Path(out).with_name(Path(out).name + ".partial")


@dataclass
class Layout:
    """What an embedding file will hold (fixed before the first row is written)."""

    video_ids: list[str]
    captions: list[str]
    video_index: np.ndarray          # int64 [Nt]
    dim: int
    loose: bool
    max_frames: int                  # T of /videos/frames (tight heads)
    attrs: dict                      # scalar/str root attributes (sim, run, frames, ...)
    starts: np.ndarray | None = None  # float64 [Nv] seconds (None: NaN, unknown)
    ends: np.ndarray | None = None    # float64 [Nv]
    sources: list[str] | None = None  # [Nv] video files (None: "")
    moments: bool = False            # rows are windows of videos (ids repeat)


class EmbeddingWriter:
    """Fills a (possibly resumed) ``.partial`` file row block by row block; ``finish`` renames it."""

    def __init__(self, out: Path, layout: Layout, fingerprint: str) -> None:
        self.out = Path(out)
        self.path = partial_path(self.out)
        self.layout = layout
        if layout.starts is not None or layout.ends is not None:
            nan = np.full(len(layout.video_ids), np.nan)
            problem = span_problem(nan if layout.starts is None else layout.starts,
                                   nan if layout.ends is None else layout.ends, layout.video_ids, known=layout.moments)
            if problem:
                raise C4CError(f"not written: {problem}", path=self.out,
                               hint="a window or annotation that lies outside its video")
        h5py = _h5py()
        self.resumed = False
        if self.path.exists():
            try:
                f = h5py.File(self.path, "r+")
                if f.attrs.get("fingerprint") == fingerprint:
                    self.file, self.resumed = f, True
                else:
                    f.close()
            except OSError:
                pass
        if not self.resumed:
            self.path.unlink(missing_ok=True)
            try:
                self.file = self._create(fingerprint)
            except BaseException:
                self.path.unlink(missing_ok=True)  # never left half-made: it holds no row yet
                raise

    def _create(self, fingerprint: str):
        h5py = _h5py()
        lay = self.layout
        f = h5py.File(self.path, "w")
        text = h5py.string_dtype()
        for key, value in lay.attrs.items():
            f.attrs[key] = "" if value is None else value
        f.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, "complete": False,
                        "fingerprint": fingerprint, "dim": lay.dim, "loose": lay.loose,
                        "videos_done": 0, "texts_done": 0})
        nv, nt, d = len(lay.video_ids), len(lay.captions), lay.dim
        videos = f.create_group("videos")
        videos.create_dataset("ids", data=np.array(lay.video_ids, dtype=object), dtype=text)
        nan = np.full(nv, np.nan)
        videos.create_dataset("start", data=nan if lay.starts is None else np.asarray(lay.starts, np.float64))
        videos.create_dataset("end", data=nan if lay.ends is None else np.asarray(lay.ends, np.float64))
        videos.create_dataset("source", data=np.array(lay.sources if lay.sources is not None else [""] * nv,
                                                      dtype=object), dtype=text)
        f.attrs["moments"] = bool(lay.moments)
        if lay.loose:
            videos.create_dataset("emb", shape=(nv, d), dtype="f4", chunks=_chunks(nv, 1024, d))
        else:
            t = lay.max_frames
            videos.create_dataset("frames", shape=(nv, t, d), dtype="f4", chunks=_chunks(nv, 64, t, d))
            videos.create_dataset("mask", shape=(nv, t), dtype=bool)
        texts = f.create_group("texts")
        texts.create_dataset("captions", data=np.array(lay.captions, dtype=object), dtype=text)
        texts.create_dataset("video_index", data=np.asarray(lay.video_index, dtype=np.int64))
        texts.create_dataset("emb", shape=(nt, d), dtype="f4", chunks=_chunks(nt, 1024, d))
        f.flush()
        return f

    @property
    def videos_done(self) -> int:
        return int(self.file.attrs["videos_done"])

    @property
    def texts_done(self) -> int:
        return int(self.file.attrs["texts_done"])

    def _refuse(self, problem: str | None) -> None:
        if problem:
            raise C4CError(f"the model produced embeddings that cannot be scored, not written: {problem}", path=self.out,
                           hint="the model's weights or inputs hold NaN or infinite values; check the run")

    def write_texts(self, start: int, emb: np.ndarray) -> None:
        self._refuse(vector_problem(emb, self.layout.captions[start:start + len(emb)], "text"))
        self.file["texts/emb"][start:start + len(emb)] = emb
        self.file.attrs["texts_done"] = start + len(emb)
        self.file.flush()

    def write_videos(self, start: int, emb: np.ndarray, mask: np.ndarray | None = None) -> None:
        stop = start + len(emb)
        self._refuse(vector_problem(emb, self.layout.video_ids[start:stop], "video", mask))
        if self.layout.loose:
            self.file["videos/emb"][start:stop] = emb
        else:
            self.file["videos/frames"][start:stop] = emb
            self.file["videos/mask"][start:stop] = mask
        self.file.attrs["videos_done"] = stop
        self.file.flush()

    def finish(self) -> Path:
        self.file.attrs["complete"] = True
        self.file.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.file.close()
        os.replace(self.path, self.out)
        return self.out

    def close(self) -> None:
        try:
            self.file.close()
        except Exception:  # already closed
            pass


class Embeddings:
    """A validated, complete EMB.h5 (arrays are read on demand)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            hint = None
            if partial_path(self.path).exists():
                hint = "an unfinished encode is there (.partial): rerun `c4c encode` with the same options to finish it"
            raise C4CError("no such embedding file", path=self.path, hint=hint)
        h5py = _h5py()
        try:
            with h5py.File(self.path, "r") as f:
                self.attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
                self._check(f)
                self.video_ids = [str(x) for x in f["videos/ids"].asstr()[()]]
                self.captions = [str(x) for x in f["texts/captions"].asstr()[()]]
                self.video_index = f["texts/video_index"][()].astype(np.int64)
        except OSError as exc:
            raise C4CError(f"not a readable HDF5 file ({exc})", path=self.path) from None

    def _check(self, f) -> None:
        if self.attrs.get("format") != FORMAT:
            raise C4CError(f"not a c4c embedding file (format {self.attrs.get('format')!r})", path=self.path,
                           hint="make one with `c4c encode`")
        version = int(self.attrs.get("format_version", 0))
        if version > FORMAT_VERSION:
            raise C4CError(f"embedding format version {version} is newer than this c4c reads ({FORMAT_VERSION})",
                           path=self.path, hint="upgrade c4c")
        if version not in READABLE_VERSIONS:
            raise C4CError(f"embedding format version {version} is not supported", path=self.path,
                           hint="re-encode with `c4c encode`")
        self.version = version
        if not self.attrs.get("complete"):
            raise C4CError("embedding file is incomplete", path=self.path, hint="rerun `c4c encode`")
        needed = ["videos/ids", "texts/captions", "texts/video_index", "texts/emb"]
        if version >= 2:
            needed += ["videos/start", "videos/end", "videos/source"]
        needed += ["videos/emb"] if self.attrs.get("loose") else ["videos/frames", "videos/mask"]
        missing = [k for k in needed if k not in f]
        if missing:
            raise C4CError(f"embedding file lacks {', '.join(missing)}", path=self.path)
        nv, nt = f["videos/ids"].shape[0], f["texts/captions"].shape[0]
        video_rows = f["videos/emb" if self.attrs.get("loose") else "videos/frames"].shape[0]
        spans = [f[k].shape[0] for k in ("videos/start", "videos/end", "videos/source") if k in f]
        if video_rows != nv or f["texts/emb"].shape[0] != nt or f["texts/video_index"].shape[0] != nt \
                or any(n != nv for n in spans):
            raise C4CError("embedding file rows disagree with its id lists", path=self.path)
        index = f["texts/video_index"][()]
        if nt and (index.min() < 0 or index.max() >= nv):
            raise C4CError("a caption points at a video row that does not exist", path=self.path)
        if version >= 2:
            ids = [str(x) for x in f["videos/ids"].asstr()[()]]
            problem = span_problem(f["videos/start"][()], f["videos/end"][()], ids,
                                   known=bool(self.attrs.get("moments", False)))
            if problem:
                raise C4CError(problem, path=self.path, hint="re-encode with `c4c encode`")

    @property
    def loose(self) -> bool:
        return bool(self.attrs.get("loose"))

    @property
    def sim(self) -> str:
        return str(self.attrs.get("sim", ""))

    @property
    def logit_scale(self) -> float:
        return float(self.attrs.get("logit_scale", 1.0))

    @property
    def settings(self) -> dict:
        return json.loads(self.attrs.get("settings") or "{}")

    @property
    def moments(self) -> bool:
        """Whether rows are windows of videos (``c4c encode --window``): a video id may repeat."""
        return bool(self.attrs.get("moments", False))

    @property
    def model_source(self):
        """The :class:`c4c.run.source.ModelSource` that made the embeddings (None if unknown)."""

        return from_record(self.attrs.get("model"), run=self.attrs.get("run") or None,
                           checkpoint=self.attrs.get("checkpoint") or None)

    def spans(self) -> tuple[np.ndarray, np.ndarray]:
        """``(start, end)`` float64 ``[Nv]`` seconds of each row (NaN in version 1 files)."""
        if self.version < 2:
            nan = np.full(len(self.video_ids), np.nan)
            return nan, nan.copy()
        return self._read("videos/start").astype(np.float64), self._read("videos/end").astype(np.float64)

    def sources(self) -> list[str]:
        """The video file of each row ("" when unknown, and in version 1 files)."""
        if self.version < 2:
            return [""] * len(self.video_ids)
        with _h5py().File(self.path, "r") as f:
            return [str(x) for x in f["videos/source"].asstr()[()]]

    def _read(self, key: str) -> np.ndarray:
        with _h5py().File(self.path, "r") as f:
            return f[key][()]

    def _checked(self, x: np.ndarray, names: list[str], what: str, mask: np.ndarray | None = None) -> np.ndarray:
        problem = vector_problem(x, names, what, mask)
        if problem:
            raise C4CError(problem, path=self.path, hint="they cannot be scored; re-encode with `c4c encode`")
        return x

    def text_emb(self) -> np.ndarray:
        """float32 ``[Nt, D]`` (C4CError on NaN, infinite or all-zero rows)."""
        return self._checked(self._read("texts/emb"), self.captions, "text")

    def video_emb(self) -> np.ndarray:
        """float32 ``[Nv, D]`` (loose heads only; C4CError on NaN, infinite or all-zero rows)."""
        if not self.loose:
            raise C4CError(f"{self.sim} scores text-video pairs with a cross encoder: this file has no "
                           "video embeddings", path=self.path,
                           hint="index and search need a loose head run (meanP, seqLSTM or seqTransf)")
        return self._checked(self._read("videos/emb"), self.video_ids, "video")

    def video_frames(self) -> tuple[np.ndarray, np.ndarray]:
        """``(frames float32 [Nv, T, D], mask bool [Nv, T])`` (tightTransf only; C4CError on NaN or infinite
        values, or an all-zero frame in use)."""
        mask = self._read("videos/mask")
        return self._checked(self._read("videos/frames"), self.video_ids, "video", mask), mask
