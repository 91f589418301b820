"""`c4c finetune`: train CLIP4Clip for text-video retrieval on FRAMES.h5 and an annotation file.

Writes a run folder::

    RUN/config.json          the resolved configuration (every default spelled out)
    RUN/metrics.jsonl        one JSON object per logged step and per epoch (with its evaluation)
    RUN/checkpoints/step-N/  model.safetensors + train_state.pt + meta.json (resumable)
    RUN/latest.json          the newest complete checkpoint
    RUN/best/                the weights of the best epoch on the selection split
    RUN/results.json         the final summary (best epoch, its metrics, protocol)

Works alone or under ``torchrun --nproc_per_node N`` (features all-gathered for the loose heads).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from c4c.atomic import write_json
from c4c.errors import C4CError

log = logging.getLogger(__name__)

PARAGRAPH_DATASETS = ("activitynet", "didemo")


@dataclass
class FinetuneConfig:
    """Options of `c4c finetune`; defaults are the paper's MSR-VTT settings."""

    dataset: str                          # msrvtt | msvd | lsmdc | activitynet | didemo | jsonl
    ann: Path                             # annotation file or folder
    frames: Path                          # FRAMES.h5 from `c4c extract`
    out: Path                             # run folder
    sim: str = "meanP"                    # meanP | seqLSTM | seqTransf | tightTransf
    clip: str = "ViT-B-32"                # open_clip model name, "tiny", or a JSON config path
    pretrained: str = "openai"            # open_clip tag, weights file, or "none"
    clip_fp16: bool = False               # store CLIP weights in fp16 like the reference (GPU; very slow on CPU)
    init: Path | None = None              # start from a c4c run (its best/ or latest checkpoint)
    patch: str = "2d"                     # 2d | 3d linear patch embedding
    temporal_layers: int = 4              # seqTransf / tightTransf depth
    freeze_layers: int = 0                # reference freeze_layer_num (-1: train everything)
    epochs: int = 5
    batch_size: int = 128                 # global contrastive batch (all processes together)
    grad_accum: int = 1                   # micro-batches per step; the contrastive batch stays batch_size
    lr: float = 1e-4                      # new parameters
    coef_lr: float = 1e-3                 # CLIP parameters get lr * coef_lr
    weight_decay: float = 0.2
    warmup: float = 0.1
    schedule: str = "cosine"              # cosine | reference-cosine | reference-linear | constant
    optimizer: str = "adamw"              # adamw | bertadam (the reference's Adam without bias correction)
    grad_clip: float = 1.0
    amp: str = "auto"                     # auto (bf16 on GPU, none on CPU) | bf16 | fp16 | none
    seed: int = 42
    max_words: int = 32
    max_frames: int = 12
    sampling: str = "uniform"             # head | tail | uniform
    fps: float | None = None              # thin stored frames to this rate (None: as stored)
    train_order: str = "keep"             # keep | reverse | shuffle
    expand_sentences: bool = True         # one item per caption (else one random caption per video)
    paragraph: bool | None = None         # join captions into one paragraph (default: ActivityNet, DiDeMo)
    dataset_options: dict = field(default_factory=dict)
    select_on: str = "val"                # val | test (the reference's protocol) | last
    eval_batch_size: int = 64
    workers: int = 2                      # data-loader processes
    device: str = "auto"
    skip_missing: bool = False
    resume: bool = False
    save_every: int = 0                   # checkpoint every N steps too (0: epoch ends only)
    keep_checkpoints: int = 2
    log_every: int = 10
    max_steps: int | None = None          # stop after N optimiser steps (smoke runs)


@dataclass
class FinetuneResult:
    run_dir: Path
    best_epoch: int | None
    best_metrics: dict | None
    selection: str
    steps: int
    seconds: float
    history: list[dict]



def _validate(cfg: FinetuneConfig) -> None:
    from c4c.model.heads import HEADS

    if cfg.sim not in HEADS:
        raise C4CError(f"unknown --sim {cfg.sim!r}", hint=f"choose one of: {', '.join(HEADS)}")
    if cfg.select_on not in ("val", "test", "last"):
        raise C4CError(f"unknown --select-on {cfg.select_on!r}; choose val, test or last")
    for name in ("epochs", "batch_size", "grad_accum", "max_words", "max_frames"):
        if getattr(cfg, name) < 1:
            raise C4CError(f"--{name.replace('_', '-')} must be at least 1")
    if cfg.out.exists() and any(cfg.out.iterdir()) and not cfg.resume:
        raise C4CError("run folder is not empty", path=cfg.out,
                       hint="pass --resume to continue it, or choose a new --out")


def build_model(cfg: FinetuneConfig, device: str):
    """The CLIP4Clip model of ``cfg`` (with ``--init`` weights when given)."""
    from c4c.model.backbone import build_clip
    from c4c.model.clip4clip import CLIP4Clip
    from c4c.train import checkpoint

    pretrained = "none" if cfg.init is not None else cfg.pretrained
    clip, info = build_clip(cfg.clip, pretrained, fp16_weights=cfg.clip_fp16)
    if cfg.init is not None:
        from c4c.model.backbone import run_quick_gelu, set_activation, uses_quick_gelu
        from c4c.model.load import read_run_config

        quick_gelu = run_quick_gelu(read_run_config(cfg.init)) if (cfg.init / "config.json").is_file() else None
        if quick_gelu is not None:
            set_activation(clip, quick_gelu)  # the --init run's activation (QuickGELU for OpenAI weights)
            info = replace(info, quick_gelu=uses_quick_gelu(clip))
    model = CLIP4Clip(clip, sim=cfg.sim, patch=cfg.patch, temporal_layers=cfg.temporal_layers)
    if cfg.init is not None:
        folder = cfg.init / "best" if (cfg.init / "best").exists() else checkpoint.latest(cfg.init)
        if folder is None:
            folder = cfg.init
        state = checkpoint.load_model_state(folder)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if cfg.patch == "3d" and "clip.visual.conv2.weight" in missing:
            # a 2-D run: its 3-D patch is built from the loaded 2-D patch, as from pretrained CLIP
            from c4c.model.clip4clip import make_patch3d

            model.clip.visual.conv2 = make_patch3d(model.clip.visual.conv1)
            missing = [k for k in missing if not k.startswith("clip.visual.conv2.")]
        clip_missing = [k for k in missing if k.startswith("clip.")]
        if clip_missing or unexpected:
            raise C4CError(f"--init checkpoint does not fit: {len(clip_missing)} CLIP weights missing, "
                           f"{len(unexpected)} unexpected", path=folder, hint="use the same --clip as that run")
        log.info("initialised from %s (%d head weights keep their fresh init)", folder, len(missing))
    return model.to(device), info


def run(cfg: FinetuneConfig, on_event: Callable[[dict], None] | None = None) -> FinetuneResult:
    """Train, evaluate every epoch on the selection split, keep the best weights."""
    import torch

    from c4c.data.sampler import EpochSampler
    from c4c.data.text import CaptionTokenizer
    from c4c.data.video_text import ClipSpec, EvalSet, TrainPairs, check_videos, collate
    from c4c.datasets.registry import read_annotations, split_records
    from c4c.model.inference import evaluate_retrieval
    from c4c.train import checkpoint
    from c4c.train.checkpoint import seed_everything
    from c4c.train.distributed import cleanup, init_distributed
    from c4c.train.loop import LoopConfig, Trainer, autocast_context, contrastive_step
    from c4c.train.optim import freeze_clip_layers, make_optimizer
    from c4c.video.store import FrameStore

    t0 = time.perf_counter()
    _validate(cfg)
    dist_info = init_distributed(cfg.device)
    amp = cfg.amp if cfg.amp != "auto" else ("bf16" if dist_info.device.startswith("cuda") else "none")
    seed_everything(cfg.seed)
    paragraph = cfg.paragraph if cfg.paragraph is not None else cfg.dataset in PARAGRAPH_DATASETS
    local_batch = cfg.batch_size // dist_info.world_size
    if local_batch * dist_info.world_size != cfg.batch_size or local_batch % cfg.grad_accum:
        raise C4CError(f"--batch-size {cfg.batch_size} must split evenly over {dist_info.world_size} "
                       f"process(es) and --grad-accum {cfg.grad_accum}")

    records = read_annotations(cfg.dataset, cfg.ann, **cfg.dataset_options)
    store = FrameStore(cfg.frames)
    train_records = check_videos(split_records(records, "train"), store, skip_missing=cfg.skip_missing,
                                 store_path=cfg.frames)
    selection = cfg.select_on
    eval_records = split_records(records, selection) if selection != "last" else []
    if selection == "val" and not eval_records:
        log.warning("no val split in %s: the last epoch is kept (use --select-on test for the reference's "
                    "protocol)", cfg.ann)
        selection = "last"
    if eval_records:
        eval_records = check_videos(eval_records, store, skip_missing=cfg.skip_missing, store_path=cfg.frames)

    tokenizer = CaptionTokenizer(cfg.max_words)
    clip_spec = ClipSpec(max_frames=cfg.max_frames, sampling=cfg.sampling, fps=cfg.fps, order=cfg.train_order)
    train_set = TrainPairs(train_records, store, tokenizer, clip_spec, expand_sentences=cfg.expand_sentences,
                           seed=cfg.seed, paragraph=paragraph)
    eval_set = (EvalSet(eval_records, store, tokenizer, ClipSpec(max_frames=cfg.max_frames, sampling=cfg.sampling,
                                                                  fps=cfg.fps), paragraph=paragraph)
                if eval_records else None)
    sampler = EpochSampler(len(train_set), batch_size=local_batch, shuffle=True, seed=cfg.seed,
                           rank=dist_info.rank, world_size=dist_info.world_size, drop_last=True)

    model, backbone = build_model(cfg, dist_info.device)
    frozen = freeze_clip_layers(model, cfg.freeze_layers)
    steps_per_epoch = len(sampler) // local_batch
    total_steps = steps_per_epoch * cfg.epochs
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
    resolved.update({"amp_resolved": amp, "paragraph_resolved": paragraph, "selection_resolved": selection,
                     "world_size": dist_info.world_size, "backbone": asdict(backbone),
                     "parameters": {"total": sum(p.numel() for p in model.parameters()), **frozen},
                     "train_items": len(train_set), "steps_per_epoch": steps_per_epoch})
    if dist_info.is_main:
        write_json(cfg.out / "config.json", resolved)

    def evaluate(epoch: int) -> dict | None:
        if eval_set is None:
            return None
        metrics = None
        if dist_info.is_main:
            metrics = evaluate_retrieval(model, eval_set, batch_size=cfg.eval_batch_size, device=dist_info.device,
                                         amp_ctx=autocast_context(amp, dist_info.device))
            metrics["split"] = selection
        from c4c.train.distributed import broadcast_object

        return broadcast_object(metrics)

    loop = LoopConfig(epochs=cfg.epochs, grad_clip=cfg.grad_clip, amp=amp, log_every=cfg.log_every,
                      save_every=cfg.save_every, keep_checkpoints=cfg.keep_checkpoints, max_steps=cfg.max_steps)

    def step_fn(model_, wrapped_, batch, **kw):
        return contrastive_step(model_, wrapped_, batch, accum=cfg.grad_accum, **kw)

    trainer = Trainer(model=model, wrapped=wrapped, optimizer=optimizer, scheduler=scheduler, dataset=train_set,
                      sampler=sampler, local_batch=local_batch, collate=collate, workers=cfg.workers, config=loop,
                      run_dir=cfg.out, dist_info=dist_info, step_fn=step_fn, evaluate=evaluate,
                      after_step=model.clamp_logit_scale, on_event=on_event,
                      run_meta={"sim": cfg.sim, "clip": cfg.clip, "patch": cfg.patch})
    if cfg.resume:
        last = checkpoint.latest(cfg.out)
        if last is None:
            raise C4CError("nothing to resume: no checkpoint in the run folder", path=cfg.out)
        trainer.resume(last)
    try:
        state = trainer.fit()
    finally:
        cleanup()
    best_metrics = None
    if state.best_epoch is not None:
        best_metrics = next((h.get("metrics") for h in state.history if h.get("epoch") == state.best_epoch), None)
    if selection == "last" and dist_info.is_main and state.history:
        checkpoint.save(cfg.out / "best", model.state_dict(), None,
                        {"epoch": state.history[-1]["epoch"], "step": state.step, "selection": "last"})
    result = FinetuneResult(run_dir=cfg.out, best_epoch=state.best_epoch, best_metrics=best_metrics,
                            selection=selection, steps=state.step, seconds=time.perf_counter() - t0,
                            history=state.history)
    if dist_info.is_main:
        protocol = {"val": "model selection on the val split",
                    "test": "model selection on the TEST split (the reference's protocol: optimistic)",
                    "last": "no selection split: the last epoch"}[selection]
        write_json(cfg.out / "results.json", {"best_epoch": state.best_epoch, "metrics": best_metrics,
                                                "selection": selection, "protocol": protocol,
                                                "steps": state.step, "seconds": round(result.seconds, 1)})
    return result

