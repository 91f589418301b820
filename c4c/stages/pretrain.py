"""`c4c pretrain`: post-pretrain CLIP4Clip on HowTo100M (the paper's HowTo100M-380k) before fine-tuning.

The paper describes this stage but its code was never released (spec 7.1), so every choice here is
ours and written down (data/README.md, README.md):

* data: the videos of ``caption.json`` whose ``category_1`` in ``HowTo100M_v1.csv`` is one of
  ``categories`` (default "Food and Entertaining": about 380k videos), frames from ``c4c extract``
  (one FRAMES.h5, or a shard set for a corpus this size);
* items: one per video per epoch; the clip is a window of merged ASR fragments drawn from
  ``(seed, epoch, index)`` (:mod:`c4c.data.howto`);
* loss and model: the fine-tuning model and its symmetric InfoNCE over the global batch (meanP by
  default, as in the paper), the same optimiser, AMP, clipping, DDP and checkpoints, through the one
  shared training loop (:class:`c4c.train.loop.Trainer`);
* length: counted in optimiser steps (``steps``; default one epoch), checkpoints every ``save_every``
  steps, exact resume mid-epoch.

Writes a run folder that ``c4c finetune --init RUN`` starts from (its newest checkpoint)::

    RUN/config.json          the resolved configuration
    RUN/metrics.jsonl        one JSON object per logged step ({"event": "step", ...}) and epoch end
    RUN/checkpoints/step-N/  model.safetensors + train_state.pt + meta.json (resumable)
    RUN/latest.json          the newest complete checkpoint
    RUN/results.json         steps, clips, seconds, clips/s, last loss, the final checkpoint
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from c4c.atomic import write_json
from c4c.errors import C4CError

log = logging.getLogger(__name__)

DEFAULT_CATEGORIES = ("Food and Entertaining",)


@dataclass
class PretrainConfig:
    """Options of `c4c pretrain`. Model and optimiser defaults are fine-tuning's (the paper gives none)."""

    ann: Path                             # HowTo100M folder: caption.json + HowTo100M_v1.csv
    frames: Path                          # FRAMES.h5, or a shard set (folder or manifest.json) from `c4c extract`
    out: Path                             # run folder
    categories: tuple[str, ...] | None = DEFAULT_CATEGORIES  # category_1 values kept (None: every video)
    sim: str = "meanP"                    # the paper post-pretrains meanP
    clip: str = "ViT-B-32"                # open_clip model name, "tiny", or a JSON config path
    pretrained: str = "openai"            # open_clip tag, weights file, or "none"
    clip_fp16: bool = False
    init: Path | None = None              # start from another c4c run instead of `pretrained`
    patch: str = "2d"
    temporal_layers: int = 4
    freeze_layers: int = 0
    steps: int | None = None              # optimiser steps in all (None: one epoch, one clip per video)
    batch_size: int = 128                 # global contrastive batch (all processes together)
    grad_accum: int = 1                   # micro-batches per step; the contrastive batch stays batch_size
    lr: float = 1e-4
    coef_lr: float = 1e-3                 # CLIP parameters learn at lr * coef_lr
    weight_decay: float = 0.2
    warmup: float = 0.1                   # fraction of all steps
    schedule: str = "cosine"
    optimizer: str = "adamw"
    grad_clip: float = 1.0
    amp: str = "auto"                     # auto (bf16 on GPU, none on CPU) | bf16 | fp16 | none
    seed: int = 42
    max_words: int = 32
    max_frames: int = 12
    sampling: str = "uniform"             # which max_frames frames of a longer window
    min_words: int = 8                    # clip sampling: see c4c.data.howto.MergeRule
    min_seconds: float = 4.0
    max_seconds: float = 12.0
    max_gap: float = 2.0
    workers: int = 2                      # data-loader processes
    device: str = "auto"
    skip_missing: bool = False            # drop videos missing from the frame store instead of failing
    resume: bool = False
    save_every: int = 1000                # checkpoint every N steps (and at each epoch end)
    keep_checkpoints: int = 2
    log_every: int = 10
    max_steps: int | None = None          # stop after N steps of `steps` (smoke runs, tests); resumable


@dataclass
class PretrainResult:
    run_dir: Path
    steps: int                            # optimiser steps done in all
    clips: int                            # training clips seen in all
    seconds: float                        # wall time of this call
    checkpoint: Path | None               # the newest checkpoint (what `finetune --init` loads)
    last_loss: float | None
    videos: int                           # videos in the training corpus
    finished: bool                        # all `steps` done


def _validate(cfg: PretrainConfig) -> None:
    from c4c.model.heads import HEADS

    if cfg.sim not in HEADS:
        raise C4CError(f"unknown --sim {cfg.sim!r}", hint=f"choose one of: {', '.join(HEADS)}")
    for name in ("batch_size", "grad_accum", "max_words", "max_frames", "log_every"):
        if getattr(cfg, name) < 1:
            raise C4CError(f"--{name.replace('_', '-')} must be at least 1")
    if cfg.steps is not None and cfg.steps < 1:
        raise C4CError(f"--steps must be at least 1, got {cfg.steps}")
    if cfg.save_every < 0:
        raise C4CError(f"--save-every must be 0 (epoch ends only) or more, got {cfg.save_every}")
    if cfg.out.exists() and any(cfg.out.iterdir()) and not cfg.resume:
        raise C4CError("run folder is not empty", path=cfg.out,
                       hint="pass --resume to continue it, or choose a new --out")


def build_corpus(cfg: PretrainConfig, store):
    """The training corpus: kept videos of the annotations that are in the frame store."""
    from c4c.data.howto import CaptionCorpus
    from c4c.data.video_text import check_videos
    from c4c.datasets.howto100m import read_howto100m

    records = read_howto100m(cfg.ann, categories=cfg.categories)
    if not records:
        raise C4CError(f"no captioned video of the categories {list(cfg.categories or [])} in the annotations",
                       path=cfg.ann, hint="check --categories against category_1 in HowTo100M_v1.csv")
    records = check_videos(records, store, skip_missing=cfg.skip_missing, store_path=cfg.frames)
    return CaptionCorpus(records)


def run(cfg: PretrainConfig, on_event: Callable[[dict], None] | None = None) -> PretrainResult:
    """Post-pretrain for ``cfg.steps`` optimiser steps (or up to ``cfg.max_steps`` of them) and checkpoint."""
    import torch

    from c4c.data.howto import HowToClips, MergeRule
    from c4c.data.sampler import EpochSampler
    from c4c.data.text import CaptionTokenizer
    from c4c.data.video_text import collate
    from c4c.stages.finetune import build_model
    from c4c.train.checkpoint import seed_everything
    from c4c.train import checkpoint
    from c4c.train.distributed import cleanup, init_distributed
    from c4c.train.loop import LoopConfig, Trainer, contrastive_step
    from c4c.train.optim import freeze_clip_layers, make_optimizer
    from c4c.video.store import FrameStore

    t0 = time.perf_counter()
    on_event = on_event or (lambda event: None)
    _validate(cfg)
    rule = MergeRule(min_words=cfg.min_words, min_seconds=cfg.min_seconds, max_seconds=cfg.max_seconds,
                     max_gap=cfg.max_gap)
    dist_info = init_distributed(cfg.device)
    amp = cfg.amp if cfg.amp != "auto" else ("bf16" if dist_info.device.startswith("cuda") else "none")
    seed_everything(cfg.seed)
    local_batch = cfg.batch_size // dist_info.world_size
    if local_batch * dist_info.world_size != cfg.batch_size or local_batch % cfg.grad_accum:
        raise C4CError(f"--batch-size {cfg.batch_size} must split evenly over {dist_info.world_size} "
                       f"process(es) and --grad-accum {cfg.grad_accum}")

    store = FrameStore(cfg.frames)
    corpus = build_corpus(cfg, store)
    dataset = HowToClips(corpus, store, CaptionTokenizer(cfg.max_words), max_frames=cfg.max_frames,
                         sampling=cfg.sampling, rule=rule, seed=cfg.seed)
    sampler = EpochSampler(len(dataset), batch_size=local_batch, shuffle=True, seed=cfg.seed,
                           rank=dist_info.rank, world_size=dist_info.world_size, drop_last=True)
    steps_per_epoch = len(sampler) // local_batch
    total_steps = cfg.steps if cfg.steps is not None else steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    stop_at = total_steps if cfg.max_steps is None else min(total_steps, cfg.max_steps)

    model, backbone = build_model(cfg, dist_info.device)
    frozen = freeze_clip_layers(model, cfg.freeze_layers)
    optimizer, scheduler = make_optimizer(model, optimizer=cfg.optimizer, lr=cfg.lr, coef_lr=cfg.coef_lr,
                                          weight_decay=cfg.weight_decay, schedule=cfg.schedule,
                                          warmup=cfg.warmup, total_steps=total_steps)
    wrapped = model
    if dist_info.distributed:
        wrapped = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dist_info.local_rank] if dist_info.device.startswith("cuda") else None,
            find_unused_parameters=True)

    cfg.out.mkdir(parents=True, exist_ok=True)
    resolved = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    resolved.update({"stage": "pretrain", "amp_resolved": amp, "world_size": dist_info.world_size,
                     "backbone": asdict(backbone),
                     "parameters": {"total": sum(p.numel() for p in model.parameters()), **frozen},
                     "videos": len(corpus), "fragments": corpus.fragments, "steps_resolved": total_steps,
                     "steps_per_epoch": steps_per_epoch, "epochs_resolved": epochs,
                     "clip_sampling": asdict(rule)})
    if dist_info.is_main:
        write_json(cfg.out / "config.json", resolved)

    loop = LoopConfig(epochs=epochs, grad_clip=cfg.grad_clip, amp=amp, log_every=cfg.log_every,
                      save_every=cfg.save_every, keep_checkpoints=cfg.keep_checkpoints, max_steps=stop_at)

    def step_fn(model_, wrapped_, batch, **kw):
        return contrastive_step(model_, wrapped_, batch, accum=cfg.grad_accum, **kw)

    last_loss: list[float] = []

    def forward_event(event: dict) -> None:
        if event.get("event") in ("step", "tick"):
            last_loss[:] = [float(event["loss"])]
        on_event(event)

    trainer = Trainer(model=model, wrapped=wrapped, optimizer=optimizer, scheduler=scheduler, dataset=dataset,
                      sampler=sampler, local_batch=local_batch, collate=collate, workers=cfg.workers, config=loop,
                      run_dir=cfg.out, dist_info=dist_info, step_fn=step_fn, evaluate=None,
                      after_step=model.clamp_logit_scale, on_event=forward_event,
                      run_meta={"stage": "pretrain", "sim": cfg.sim, "clip": cfg.clip, "patch": cfg.patch})
    if cfg.resume:
        last = checkpoint.latest(cfg.out)
        if last is None:
            raise C4CError("nothing to resume: no checkpoint in the run folder", path=cfg.out)
        trainer.resume(last)
    start_step = trainer.state.step
    on_event({"event": "pretrain_start", "steps": stop_at, "done_steps": start_step, "batch_size": cfg.batch_size,
              "videos": len(corpus), "steps_per_epoch": steps_per_epoch})
    try:
        if trainer.state.step < stop_at:  # a finished run resumed does nothing (the loop would take a step)
            trainer.fit()
    finally:
        cleanup()
    state = trainer.state
    seconds = time.perf_counter() - t0
    newest = checkpoint.latest(cfg.out)
    result = PretrainResult(run_dir=cfg.out, steps=state.step, clips=state.step * cfg.batch_size, seconds=seconds,
                            checkpoint=newest, last_loss=last_loss[0] if last_loss else None, videos=len(corpus),
                            finished=state.step >= total_steps)
    if dist_info.is_main:
        done_now = state.step - start_step
        write_json(cfg.out / "results.json", {
            "steps": state.step, "steps_total": total_steps, "finished": result.finished,
            "clips": result.clips, "videos": len(corpus), "epochs": state.step / steps_per_epoch,
            "last_loss": result.last_loss, "checkpoint": str(newest) if newest else None,
            "seconds": round(seconds, 1),
            "clips_per_s_this_call": round(done_now * cfg.batch_size / max(seconds, 1e-9), 2),
            "init_for_finetune": f"c4c finetune --init {cfg.out} (loads {newest.name if newest else 'nothing yet'})"})
    return result


def history(run_dir: Path) -> list[dict]:
    """The step records of a run's metrics.jsonl."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [r for r in (json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip())
            if r.get("event") == "step"]
