"""`c4c encode`: text and video embeddings of a trained run, or of zero-shot CLIP, written to EMB.h5.

The model is a trained run (``run``) or zero-shot CLIP (``clip`` + ``pretrained``): CLIP4Clip's meanP
at initialisation, i.e. CLIP's image features of the video's frames, mean-pooled
(:mod:`c4c.run.source`). EMB.h5 records which, with a fingerprint, so `c4c search` rebuilds the
same text tower.

With annotations (``--dataset`` and ``--ann``) it encodes one split: every caption (or paragraph)
and every video of that split, in the order `c4c finetune` evaluates them. Without annotations it
encodes every video in FRAMES.h5 and no text (your own videos, for `c4c index` and `c4c search`),
one row per video, or with ``window`` one row per window of each video (moments,
:mod:`c4c.search.moments`).

Own videos with a loose head (meanP, seqLSTM, seqTransf) and the 2-D patch go frame by frame: the
frames each video needs pass through the image tower once, in chunks of that video alone (so a
video's embeddings do not depend on which other videos are encoded with it), then the head runs on
each window's frames. Everything else (annotated splits, tightTransf, the 3-D patch) is encoded
clip by clip, exactly as the training-time evaluation does.

Frame and text settings (max frames, sampling, fps, max words, paragraphs) default to the run's
own (zero-shot: 12 frames, uniform, 32 words). Work is batched, memory stays bounded, and an
interrupted encode resumes from its ``.partial`` file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from c4c.atomic import DiskFull, disk_full_errno, write_json
from c4c import choices, interrupt, option_rules
from c4c.errors import C4CError
from c4c.options import (AnnotatedSplit, Hardware, ModelSource, Moments, Replaces, StoredFrames, check_config, option,
                         rules_of)
from c4c.outputs import Output, check_outputs, guard, hdf5_with_format, json_with_format

log = logging.getLogger(__name__)

SUMMARY_FORMAT = "c4c-encode-summary"  # EMB.encode.json

ROWS_PER_WRITE = 1024   # moment rows buffered before they are written (always whole videos)


@dataclass(kw_only=True)
class EncodeConfig(StoredFrames, AnnotatedSplit, ModelSource, Moments, Hardware, Replaces):
    """Options of `c4c encode`; ``None`` means "as the run was trained" (zero-shot: CLIP's defaults)."""

    out: Path = option(help="Embedding file to write (EMB.h5).", flags=("--out", "-o"))
    dataset_options: dict = field(default_factory=dict)  # reader options (from --msrvtt-train, ...)
    clip_fp16: bool = False                # zero-shot: CLIP weights in fp16
    max_words: int | None = option(None, "CLIP tokens per caption [default: as the run was trained].",
                                   rule=option_rules.count(2, 77), panel="Clips")
    max_frames: int | None = option(None, "Frames per clip [default: as the run was trained].",
                                    rule=option_rules.count(1, 1024), panel="Clips")
    sampling: choices.Sampling | None = option(None, "Which frames a longer video keeps [default: as the run was "
                                                     "trained].", panel="Clips")
    fps: float | None = option(None, "Thin stored frames to this rate [default: as the run].", rule=option_rules.FPS,
                               panel="Clips")
    paragraph: bool | None = None          # join a video's captions into one paragraph [the run's]
    batch_size: int = option(64, "Texts or videos per batch (moments: batch size x max frames frames).",
                             rule=option_rules.count(1))


@dataclass
class EncodeResult:
    out: Path
    videos: int
    texts: int
    sim: str
    resumed: bool
    seconds: float
    rows: int = 0                          # video rows written (moments: windows)
    frames: int = 0                        # real frames this run passed through the image tower (not padding)
    model: str = ""                        # the model, described (c4c.run.source)


def _setting(value, run_config: dict, key: str, default):
    if value is not None:
        return value
    return run_config.get(key, default)


def _max_words(cfg: EncodeConfig, run_config: dict, context: int) -> int:
    """Tokens per caption: ``--max-words``, else the run's, else 32 cut to the text tower's context (a
    ``--max-words`` above the context is refused: the tower cannot read it)."""
    if cfg.max_words is not None and cfg.max_words > context:
        raise C4CError(f"--max-words {cfg.max_words} is above this CLIP's text context of {context} tokens",
                       hint=f"pass --max-words {context} or fewer")
    return int(_setting(cfg.max_words, run_config, "max_words", min(32, context)))


def _records(cfg: EncodeConfig, store):
    from c4c.data.video_text import check_videos
    from c4c.datasets.records import VideoRecord
    from c4c.datasets.registry import read_annotations, split_records

    if cfg.dataset is None:
        if cfg.ann is not None:
            raise C4CError("--ann needs --dataset (the annotation format)")
        ids = store.ids()
        if not ids:
            raise C4CError("the frame store holds no videos", path=cfg.frames)
        return [VideoRecord(video_id=i, captions=[], split=cfg.split) for i in ids]
    if cfg.ann is None:
        raise C4CError("--dataset needs --ann (the annotation file or folder)")
    records = split_records(read_annotations(cfg.dataset, cfg.ann, **cfg.dataset_options), cfg.split)
    if not records:
        raise C4CError(f"no {cfg.split} records in the annotations", path=cfg.ann,
                       hint="choose another --split")
    return check_videos(records, store, skip_missing=cfg.skip_missing, store_path=cfg.frames)


def _fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


# The numbers `c4c encode` takes (None: as the run was trained); checked before anything is loaded.
RULES = rules_of(EncodeConfig)  # every number `c4c encode` takes, checked before anything is read


def _check(cfg: EncodeConfig) -> tuple[float | None, float | None]:
    """Option checks that need nothing read; returns the resolved (window, stride)."""
    from c4c.search.moments import check_window

    if cfg.run is not None and cfg.clip is not None:
        raise C4CError("--run and --clip are mutually exclusive: a run brings its own model",
                       hint="--run RUN_DIR for a trained run, or --clip NAME --pretrained TAG for zero-shot CLIP")
    if cfg.run is None and cfg.clip is None:
        raise C4CError("which model encodes? pass --run RUN_DIR (a trained run) or --clip NAME for zero-shot CLIP",
                       hint="e.g. --clip ViT-B-32 --pretrained openai")
    if cfg.run is not None and (cfg.pretrained is not None or cfg.activation not in (None, "auto") or cfg.clip_fp16):
        raise C4CError("--pretrained, --activation and --clip-fp16 go with --clip (zero-shot); a run brings its own")
    check_config(cfg)
    window, stride = check_window(cfg.window, cfg.stride)
    if window is not None and (cfg.dataset is not None or cfg.ann is not None):
        raise C4CError("--window cuts your own videos into moments; an annotated split is encoded clip by clip",
                       hint="drop --window, or drop --dataset/--ann")
    return window, stride


def _check_frame_rate(cfg: EncodeConfig, window: float, stride: float) -> tuple[float, float]:
    """``(window, stride)`` checked against the frame rate stored in FRAMES: one frame interval at least."""
    from c4c.search.moments import check_window
    from c4c.video.store import FrameStore

    with FrameStore(cfg.frames) as store:
        fps = store.settings.fps
    return check_window(window, cfg.stride, fps, path=cfg.frames)  # the default stride depends on the rate


def load_model(cfg: EncodeConfig, device: str):
    """``(model in eval mode, the run's config or {}, ModelSource, checkpoint meta text)``."""
    from c4c.search.source import build_zero_shot, run_source, zero_shot_spec

    if cfg.run is not None:
        from c4c.model.load import load_run

        loaded = load_run(cfg.run, device=device, which=cfg.checkpoint)
        meta = loaded.checkpoint / "meta.json"
        return loaded.model, loaded.config, run_source(loaded), meta.read_text() if meta.is_file() else ""
    spec = zero_shot_spec(cfg.clip, cfg.pretrained if cfg.pretrained is not None else "openai",
                          cfg.activation or "auto", cfg.clip_fp16)
    model, source = build_zero_shot(spec, device)
    return model, {}, source, ""


def summary_path(out: Path) -> Path:
    """The JSON summary written beside EMB.h5: ``EMB.encode.json``."""
    return Path(out).with_name(Path(out).stem + ".encode.json")


def outputs(out: Path) -> list[Output]:
    """What `c4c encode --out OUT` writes: EMB.h5, its ``.partial`` while working, and the summary."""
    from c4c.data.embeddings import FORMAT as EMB_FORMAT, partial_path  # numpy: not at the CLI's start

    emb = hdf5_with_format(EMB_FORMAT)
    return [Output(Path(out), "embedding file (EMB.h5)", emb),
            Output(partial_path(Path(out)), "unfinished embedding file", emb),
            Output(summary_path(out), "encode summary", json_with_format(
                SUMMARY_FORMAT, also=lambda d: isinstance(d, dict) and {"rows", "config"} <= d.keys()))]


def inputs(cfg: EncodeConfig) -> list:
    """The files `c4c encode` reads (an output may be none of them)."""
    return [cfg.frames, cfg.ann, cfg.run, cfg.pretrained if cfg.pretrained and Path(cfg.pretrained).exists() else None]


def run(cfg: EncodeConfig, on_event: Callable[[dict], None] | None = None) -> EncodeResult:
    """Encode the texts and videos of ``cfg`` into ``cfg.out``."""
    out = Path(cfg.out)
    check_outputs(outputs(out), inputs(cfg))  # a file c4c did not write is refused before --overwrite is offered
    if out.exists() and not cfg.overwrite:
        raise C4CError("output exists", path=out, hint="pass --overwrite to replace it, or choose another --out")
    window, stride = _check(cfg)
    if window is not None:
        window, stride = _check_frame_rate(cfg, window, stride)
    written = outputs(out)
    with guard(written, inputs(cfg), command="c4c encode"):
        try:
            return _encode(cfg, out, window, stride, on_event)
        except BaseException as exc:
            code = disk_full_errno(exc)
            if code is None or isinstance(exc, C4CError):
                raise
            kept = written[1].path  # EMB.h5.partial
            hint = (f"the rows encoded so far are kept in {kept.name}: free space and run the same command to go on"
                    if kept.exists() else "nothing was written; free space and run again")
            raise DiskFull(out, code, hint=hint) from exc


def _encode(cfg: EncodeConfig, out: Path, window: float | None, stride: float | None,
            on_event: Callable[[dict], None] | None) -> EncodeResult:
    from c4c.model.load import resolve_device
    from c4c.model.towers import context_length
    from c4c.train.host_memory import keep_freed_memory
    from c4c.train.loop import autocast_context
    from c4c.video.store import FrameStore

    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    keep_freed_memory()  # batches of frames would otherwise be faulted in afresh each time
    amp = cfg.amp if cfg.amp != "auto" else ("bf16" if device.startswith("cuda") else "none")
    amp_ctx = autocast_context(amp, device)

    store = FrameStore(cfg.frames)
    model, rc, source, meta = load_model(cfg, device)
    frame_by_frame = cfg.dataset is None and model.loose and model.patch == "2d"
    if window is not None and not frame_by_frame:
        why = (f"{model.sim} scores each text-video pair with a cross encoder, so moments cannot be indexed"
               if not model.loose else "the 3-D patch mixes neighbouring frames of each clip")
        from c4c.model.heads import loose_heads

        *first, last = loose_heads()
        raise C4CError(f"--window: {why}", hint=f"encode moments with a {', '.join(first)} or {last} run (2-D patch)")
    settings = {
        "max_words": _max_words(cfg, rc, context_length(model.clip)),
        "max_frames": int(_setting(cfg.max_frames, rc, "max_frames", 12)),
        "sampling": _setting(cfg.sampling, rc, "sampling", "uniform"),
        "fps": _setting(cfg.fps, rc, "fps", None),
        "paragraph": bool(_setting(cfg.paragraph, rc, "paragraph_resolved", False)) if cfg.dataset else False,
    }
    if settings["max_frames"] < 1:
        raise C4CError(f"--max-frames must be at least 1, got {settings['max_frames']}")
    attrs = {
        "sim": model.sim, "logit_scale": float(model.clip.logit_scale.detach().exp().item()),
        "normalised": model.loose, "run": source.run or "", "checkpoint": source.checkpoint or "",
        "frames": str(Path(cfg.frames).resolve()), "dataset": cfg.dataset or "",
        "ann": str(Path(cfg.ann).resolve()) if cfg.ann else "", "split": cfg.split if cfg.dataset else "",
        "clip": str(source.spec.get("clip") or rc.get("clip", "")), "settings": json.dumps(settings),
        "model": source.to_json(), "model_fingerprint": source.fingerprint,
        "window": window or 0.0, "stride": stride or 0.0,
    }
    emit = on_event or (lambda event: None)
    job = _Job(cfg=cfg, out=out, model=model, store=store, settings=settings, attrs=attrs, meta=meta,
               device=device, amp_ctx=amp_ctx, emit=emit, window=window, stride=stride)
    out.parent.mkdir(parents=True, exist_ok=True)
    with interrupt.graceful():  # Ctrl-C: stop after the batch (the video) in progress, keeping what is written
        result = job.moments() if frame_by_frame else job.clips()
    result.seconds = time.perf_counter() - t0
    result.model = source.describe()
    _write_summary(out, cfg, result)
    return result


@dataclass
class _Job:
    """One encode: what both paths share."""

    cfg: EncodeConfig
    out: Path
    model: object
    store: object
    settings: dict
    attrs: dict
    meta: str
    device: str
    amp_ctx: object
    emit: Callable[[dict], None]
    window: float | None
    stride: float | None

    def _facts(self, video_id: str) -> tuple[object, float, str]:
        """``(timestamps, duration, source path)`` of a stored video."""
        from c4c.search.moments import video_duration

        ts = self.store.timestamps(video_id)
        info = self.store.info(video_id)
        return ts, video_duration(ts, info, self.store.settings.fps), str(info.get("source_path") or "")

    # --- clip by clip: annotated splits, tightTransf, 3-D patch -----------------------------------
    def clips(self) -> EncodeResult:
        import numpy as np
        import torch
        from torch.utils.data import DataLoader, Subset

        from c4c.data.embeddings import EmbeddingWriter, Layout, partial_path
        from c4c.model.towers import embed_dim
        from c4c.data.text import CaptionTokenizer
        from c4c.data.frames import clip_spec
        from c4c.data.video_text import EvalSet, collate

        cfg, model, s = self.cfg, self.model, self.settings
        evalset = EvalSet(_records(cfg, self.store), self.store, CaptionTokenizer(s["max_words"]),
                          clip_spec(s),
                          paragraph=s["paragraph"])
        starts, ends, sources = [], [], []
        for vid, (lo, hi) in zip(evalset.video_ids, evalset.windows):
            _, duration, path = self._facts(vid)
            starts.append(0.0 if lo is None else float(lo))
            ends.append(duration if hi is None else min(float(hi) + 1.0, duration))  # whole seconds lo..hi
            sources.append(path)
        attrs = {**self.attrs, "multi_sentence": evalset.multi_sentence, "paragraph": s["paragraph"]}
        layout = Layout(video_ids=evalset.video_ids, captions=evalset.captions,
                        video_index=evalset.video_of_caption, dim=embed_dim(model.clip),
                        loose=model.loose, max_frames=s["max_frames"], attrs=attrs, starts=np.array(starts),
                        ends=np.array(ends), sources=sources)
        fingerprint = _fingerprint(attrs, self.meta, evalset.video_ids, evalset.captions)
        writer = EmbeddingWriter(self.out, layout, fingerprint)
        if writer.resumed:
            log.info("resuming %s: %d of %d texts and %d of %d videos already encoded", partial_path(self.out),
                     writer.texts_done, len(evalset.captions), writer.videos_done, len(evalset.video_ids))
        self.emit({"event": "start", "texts": len(evalset.captions), "videos": len(evalset.video_ids),
                   "texts_done": writer.texts_done, "videos_done": writer.videos_done})
        device, amp_ctx = self.device, self.amp_ctx
        frames_done = 0
        try:
            with torch.inference_mode():
                texts = evalset.text_dataset()
                loader = DataLoader(Subset(texts, range(writer.texts_done, len(texts))), batch_size=cfg.batch_size,
                                    collate_fn=collate, num_workers=0)
                for batch in loader:
                    with amp_ctx:
                        feats = model.encode_text(batch["text_ids"].to(device)).float()
                    if model.loose:
                        feats = torch.nn.functional.normalize(feats, dim=-1)
                    writer.write_texts(int(batch["index"][0]), feats.cpu().numpy())
                    self.emit({"event": "texts", "n": len(feats)})
                    self._stop_here(writer, len(texts), len(evalset.video_ids))
                videos = evalset.video_dataset()
                loader = DataLoader(Subset(videos, range(writer.videos_done, len(videos))),
                                    batch_size=cfg.batch_size, collate_fn=collate, num_workers=cfg.workers,
                                    worker_init_fn=interrupt.ignore_in_child if cfg.workers else None)
                for batch in loader:
                    mask = batch["video_mask"].to(device)
                    frames_done += int(batch["video_mask"].sum())
                    with amp_ctx:
                        feats = model.encode_video(batch["video"].to(device), mask).float()
                    if model.loose:
                        writer.write_videos(int(batch["index"][0]), model.pooled_video(feats, mask).cpu().numpy())
                    else:
                        writer.write_videos(int(batch["index"][0]), feats.cpu().numpy(),
                                            batch["video_mask"].numpy().astype(np.bool_))
                    self.emit({"event": "videos", "n": len(feats)})
                    self._stop_here(writer, len(texts), len(evalset.video_ids))
            writer.finish()  # renames over an existing file only now (--overwrite)
        finally:
            writer.close()
        return EncodeResult(out=self.out, videos=len(evalset.video_ids), texts=len(evalset.captions),
                            sim=model.sim, resumed=writer.resumed, seconds=0.0, rows=len(evalset.video_ids),
                            frames=frames_done)

    # --- frame by frame: own videos, loose heads, moments --------------------------------------
    def moments(self) -> EncodeResult:
        import numpy as np
        import torch
        from torch.utils.data import DataLoader

        from c4c.data.embeddings import EmbeddingWriter, Layout, partial_path
        from c4c.model.towers import embed_dim
        from c4c.search.moments import plan_video

        cfg, model, s = self.cfg, self.model, self.settings
        _records(cfg, self.store)  # the same checks as the clip path
        plans = []
        for vid in self.store.ids():
            ts, duration, path = self._facts(vid)
            plan = plan_video(vid, ts, duration, window=self.window, stride=self.stride,
                              max_frames=s["max_frames"], sampling=s["sampling"], fps=s["fps"], source=path)
            if len(plan.frames) == 0:
                log.warning("video %r has no stored frames: it gets no embedding", vid)
                continue
            plans.append(plan)
        if not plans:
            raise C4CError("no video of the frame store has frames", path=cfg.frames)
        row_ids = [p.video_id for p in plans for _ in p.spans]
        starts = np.array([a for p in plans for a, _ in p.spans], dtype=np.float64)
        ends = np.array([b for p in plans for _, b in p.spans], dtype=np.float64)
        layout = Layout(video_ids=row_ids, captions=[], video_index=np.zeros(0, np.int64),
                        dim=embed_dim(model.clip), loose=True, max_frames=s["max_frames"],
                        attrs={**self.attrs, "multi_sentence": False, "paragraph": False}, starts=starts, ends=ends,
                        sources=[p.source for p in plans for _ in p.spans], moments=self.window is not None)
        fingerprint = _fingerprint(layout.attrs, self.meta, row_ids, starts.tolist(), ends.tolist())
        writer = EmbeddingWriter(self.out, layout, fingerprint)
        first_row = np.concatenate([[0], np.cumsum([len(p.spans) for p in plans])])
        v0 = int(np.searchsorted(first_row, writer.videos_done, side="right")) - 1  # resume at a whole video
        if writer.resumed:
            log.info("resuming %s: %d of %d videos (%d of %d rows) already encoded", partial_path(self.out),
                     v0, len(plans), int(first_row[v0]), len(row_ids))
        self.emit({"event": "start", "texts": 0, "videos": len(plans), "texts_done": 0, "videos_done": v0})
        chunk = cfg.batch_size * s["max_frames"]  # frames per image-tower batch, one video's alone
        items = [(v, c, plans[v].frames[c * chunk:(c + 1) * chunk])
                 for v in range(v0, len(plans)) for c in range(-(-len(plans[v].frames) // chunk))]
        workers = cfg.workers if len(items) > 1 else 0
        loader = DataLoader(_FrameChunks(self.store, [(plans[v].video_id, idx) for v, _, idx in items]),
                            batch_size=None, num_workers=workers,
                            worker_init_fn=interrupt.ignore_in_child if workers else None)
        frames_done = 0
        pending: list[np.ndarray] = []
        pending_at = int(first_row[v0])
        parts: list = []
        try:
            with torch.inference_mode():
                for (v, c, idx), pixels in zip(items, loader):
                    with self.amp_ctx:
                        feats = model.encode_frames(pixels[None].to(self.device),
                                                    torch.ones(1, len(idx), dtype=torch.bool, device=self.device))
                    parts.append(feats[0].float())
                    frames_done += len(idx)
                    if (c + 1) * chunk < len(plans[v].frames):
                        continue
                    pending.append(self._windows(torch.cat(parts), plans[v].members))
                    parts = []
                    stop = interrupt.requested() and v < len(plans) - 1  # Ctrl-C: keep the whole videos done
                    if stop or v == len(plans) - 1 or sum(len(p) for p in pending) >= ROWS_PER_WRITE:
                        block = np.concatenate(pending)
                        writer.write_videos(pending_at, block)
                        pending_at += len(block)
                        pending = []
                    self.emit({"event": "videos", "n": 1})
                    if stop:
                        raise interrupt.Interrupted(f"kept the embeddings of {v + 1} of {len(plans)} videos in "
                                                    f"{partial_path(self.out).name}", path=self.out)
            if writer.videos_done != len(row_ids):
                raise RuntimeError(f"wrote {writer.videos_done} of {len(row_ids)} rows")
            writer.finish()
        finally:
            writer.close()
        return EncodeResult(out=self.out, videos=len(plans), texts=0, sim=model.sim, resumed=writer.resumed,
                            seconds=0.0, rows=len(row_ids), frames=frames_done)

    def _stop_here(self, writer, texts: int, videos: int) -> None:
        """A safe point of the clip-by-clip path: after a Ctrl-C, stop with every written batch kept."""
        from c4c.data.embeddings import partial_path

        interrupt.stop_here(lambda: f"kept {writer.texts_done} of {texts} texts and {writer.videos_done} of {videos} "
                                    f"videos encoded in {partial_path(self.out).name}", path=self.out)

    def _windows(self, feats, members: list) -> "np.ndarray":
        """L2-normalised embeddings ``[W, D]`` of a video's windows from its frame features ``[U, D]``."""
        import torch

        model, m = self.model, self.settings["max_frames"]
        out = []
        for a in range(0, len(members), self.cfg.batch_size):
            group = members[a:a + self.cfg.batch_size]
            x = feats.new_zeros(len(group), m, feats.shape[1])     # [B, M, D], zero-padded
            mask = torch.zeros(len(group), m, dtype=torch.bool, device=feats.device)
            for j, pos in enumerate(group):
                x[j, :len(pos)] = feats[torch.as_tensor(pos, device=feats.device)]
                mask[j, :len(pos)] = True
            with self.amp_ctx:
                v = model.head(x, mask)
            out.append(model.pooled_video(v.float(), mask).cpu().numpy())
        import numpy as np

        return np.concatenate(out)


class _FrameChunks:
    """Map-style dataset: item i is the stored frames ``idx`` of one video, uint8 ``[n, S, S, 3]``."""

    def __init__(self, store, items: list) -> None:
        self.store = store
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        import torch

        video_id, idx = self.items[i]
        return torch.from_numpy(self.store.read(video_id, idx))


def _write_summary(out: Path, cfg: EncodeConfig, result: EncodeResult) -> None:
    data = {"out": str(out), "videos": result.videos, "rows": result.rows, "texts": result.texts,
            "sim": result.sim, "model": result.model, "resumed": result.resumed,
            "frames_this_run": result.frames, "seconds": round(result.seconds, 2),
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}}
    data = {"format": SUMMARY_FORMAT, "format_version": 1, **data}
    write_json(summary_path(out), data)
