"""`c4c encode`: text and video embeddings of a trained run, written to EMB.h5.

With annotations (``--dataset`` and ``--ann``) it encodes one split: every caption (or paragraph)
and every video of that split, in the order `c4c finetune` evaluates them. Without annotations it
encodes every video in FRAMES.h5 and no text (your own videos, for `c4c index` and `c4c search`).

Frame and text settings (max frames, sampling, fps, max words, paragraphs) default to the run's
own, so the embeddings match what the run was evaluated on. The work is batched, memory stays
bounded by one batch, and an interrupted encode resumes from its ``.partial`` file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from c4c.atomic import write_json
from c4c.errors import C4CError

log = logging.getLogger(__name__)


@dataclass
class EncodeConfig:
    """Options of `c4c encode`; ``None`` means "as the run was trained"."""

    run: Path                              # run folder of `c4c finetune` / `c4c pretrain`
    frames: Path                           # FRAMES.h5 from `c4c extract`
    out: Path                              # EMB.h5 to write
    dataset: str | None = None             # annotation format; None: every video in FRAMES, no text
    ann: Path | None = None
    split: str = "test"
    dataset_options: dict = field(default_factory=dict)
    checkpoint: str = "best"               # best | latest | a checkpoint folder
    max_words: int | None = None
    max_frames: int | None = None
    sampling: str | None = None
    fps: float | None = None
    paragraph: bool | None = None
    batch_size: int = 64
    device: str = "auto"
    amp: str = "auto"                      # auto (bf16 on GPU, none on CPU) | bf16 | fp16 | none
    workers: int = 2
    skip_missing: bool = False
    overwrite: bool = False


@dataclass
class EncodeResult:
    out: Path
    videos: int
    texts: int
    sim: str
    resumed: bool
    seconds: float


def _setting(value, run_config: dict, key: str, default):
    if value is not None:
        return value
    return run_config.get(key, default)


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


def run(cfg: EncodeConfig, on_event: Callable[[dict], None] | None = None) -> EncodeResult:
    """Encode the texts and videos of ``cfg`` with the run's model into ``cfg.out``."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader, Subset

    from c4c.data.embeddings import EmbeddingWriter, Layout, partial_path
    from c4c.data.text import CaptionTokenizer
    from c4c.data.video_text import ClipSpec, EvalSet, collate
    from c4c.model.load import load_run, resolve_device
    from c4c.train.host_memory import keep_freed_memory
    from c4c.train.loop import autocast_context
    from c4c.video.store import FrameStore

    emit = on_event or (lambda event: None)
    t0 = time.perf_counter()
    out = Path(cfg.out)
    if out.exists() and not cfg.overwrite:
        raise C4CError("output exists", path=out, hint="pass --overwrite to replace it, or choose another --out")
    if cfg.batch_size < 1:
        raise C4CError("--batch-size must be at least 1")
    device = resolve_device(cfg.device)
    keep_freed_memory()  # batches of frames would otherwise be faulted in afresh each time
    amp = cfg.amp if cfg.amp != "auto" else ("bf16" if device.startswith("cuda") else "none")
    amp_ctx = autocast_context(amp, device)

    loaded = load_run(cfg.run, device=device, which=cfg.checkpoint)
    model, rc = loaded.model, loaded.config
    store = FrameStore(cfg.frames)
    records = _records(cfg, store)
    settings = {
        "max_words": int(_setting(cfg.max_words, rc, "max_words", 32)),
        "max_frames": int(_setting(cfg.max_frames, rc, "max_frames", 12)),
        "sampling": _setting(cfg.sampling, rc, "sampling", "uniform"),
        "fps": _setting(cfg.fps, rc, "fps", None),
        "paragraph": bool(_setting(cfg.paragraph, rc, "paragraph_resolved", False)) if cfg.dataset else False,
    }
    evalset = EvalSet(records, store, CaptionTokenizer(settings["max_words"]),
                      ClipSpec(max_frames=settings["max_frames"], sampling=settings["sampling"], fps=settings["fps"]),
                      paragraph=settings["paragraph"])
    dim = int(model.clip.text_projection.shape[1])
    attrs = {
        "sim": model.sim, "logit_scale": float(model.clip.logit_scale.detach().exp().item()),
        "normalised": model.loose, "multi_sentence": evalset.multi_sentence,
        "paragraph": settings["paragraph"], "run": str(Path(cfg.run).resolve()),
        "checkpoint": str(loaded.checkpoint.resolve()), "frames": str(Path(cfg.frames).resolve()),
        "dataset": cfg.dataset or "", "ann": str(Path(cfg.ann).resolve()) if cfg.ann else "",
        "split": cfg.split if cfg.dataset else "", "clip": str(rc.get("clip", "")),
        "settings": json.dumps(settings),
    }
    layout = Layout(video_ids=evalset.video_ids, captions=evalset.captions, video_index=evalset.video_of_caption,
                    dim=dim, loose=model.loose, max_frames=settings["max_frames"], attrs=attrs)
    meta = (loaded.checkpoint / "meta.json").read_text() if (loaded.checkpoint / "meta.json").is_file() else ""
    fingerprint = _fingerprint(attrs, meta, evalset.video_ids, evalset.captions)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = EmbeddingWriter(out, layout, fingerprint)
    if writer.resumed:
        log.info("resuming %s: %d of %d texts and %d of %d videos already encoded", partial_path(out),
                 writer.texts_done, len(evalset.captions), writer.videos_done, len(evalset.video_ids))
    emit({"event": "start", "texts": len(evalset.captions), "videos": len(evalset.video_ids),
          "texts_done": writer.texts_done, "videos_done": writer.videos_done})
    try:
        with torch.no_grad():
            texts = evalset.text_dataset()
            loader = DataLoader(Subset(texts, range(writer.texts_done, len(texts))), batch_size=cfg.batch_size,
                                collate_fn=collate, num_workers=0)
            for batch in loader:
                with amp_ctx:
                    feats = model.encode_text(batch["text_ids"].to(device)).float()
                if model.loose:
                    feats = torch.nn.functional.normalize(feats, dim=-1)
                writer.write_texts(int(batch["index"][0]), feats.cpu().numpy())
                emit({"event": "texts", "n": len(feats)})
            videos = evalset.video_dataset()
            loader = DataLoader(Subset(videos, range(writer.videos_done, len(videos))), batch_size=cfg.batch_size,
                                collate_fn=collate, num_workers=cfg.workers)
            for batch in loader:
                mask = batch["video_mask"].to(device)
                with amp_ctx:
                    feats = model.encode_video(batch["video"].to(device), mask).float()
                if model.loose:
                    writer.write_videos(int(batch["index"][0]), model.pooled_video(feats, mask).cpu().numpy())
                else:
                    writer.write_videos(int(batch["index"][0]), feats.cpu().numpy(),
                                        batch["video_mask"].numpy().astype(np.bool_))
                emit({"event": "videos", "n": len(feats)})
        writer.finish()  # renames over an existing file only now (--overwrite)
    finally:
        writer.close()
    seconds = time.perf_counter() - t0
    _write_summary(out, cfg, len(evalset.video_ids), len(evalset.captions), model.sim, seconds)
    return EncodeResult(out=out, videos=len(evalset.video_ids), texts=len(evalset.captions), sim=model.sim,
                        resumed=writer.resumed, seconds=seconds)


def _write_summary(out: Path, cfg: EncodeConfig, videos: int, texts: int, sim: str, seconds: float) -> None:
    data = {"out": str(out), "videos": videos, "texts": texts, "sim": sim, "seconds": round(seconds, 2),
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}}
    write_json(out.with_name(out.stem + ".encode.json"), data)
