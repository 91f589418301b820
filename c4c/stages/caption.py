"""`c4c caption train` and `c4c caption generate`: video captioning on CLIP4Clip (spec 7.2).

**train** fits :class:`c4c.model.decoder.CaptionModel` (CLIP4Clip + a caption decoder; design in
that module's docstring) on (clip, one caption) pairs with teacher forcing, plus ``W`` x the
retrieval loss (``--retrieval-loss-weight``, default 1.0 as the paper's joint loss; 0 turns it off).
It runs on the shared training loop (:class:`c4c.train.loop.Trainer`): same run folder, resume,
AMP and torchrun/DDP machinery as `c4c finetune`::

    RUN/config.json          format "c4c-caption-run" v1: every option resolved, and the architecture
                             (clip, quick_gelu, sim, patch, temporal_layers, decoder) that generate rebuilds
    RUN/metrics.jsonl        step lines (loss = caption + W x retrieval) and epoch lines with the val metrics
    RUN/checkpoints/step-N/  model.safetensors (clip.*, head.*, decoder.*) + train_state.pt + meta.json
    RUN/latest.json, RUN/best/, RUN/results.json   as in finetune

Model selection: after every epoch the **val token loss** (mean cross entropy per real target token
over every val (clip, caption) pair, teacher forcing) is computed; the lowest wins. It needs no caption
scorer and no decoding, so it is cheap and independent of :mod:`c4c.metrics.captions`. The shared
loop keeps the highest metric, so the epoch record carries ``neg_caption_loss`` as the selection key.
Without a val split the last epoch is kept. MSR-VTT defaults to the captioning split (``msrvtt_train
= full``: 6,513 / 497 / 2,990 videos), as UniVL.

``--init RUN`` starts from a finetune, pretrain or caption run (its ``best/``, else its latest
checkpoint): CLIP and head weights load, the decoder starts fresh (or loads too, from a caption run
with the same decoder shape). Unset ``--clip/--sim/--patch/--temporal-layers`` are taken from that run.

**generate** writes ``captions.json``, a JSON object ``{video_id: caption}`` (written atomically), and
``captions.meta.json`` next to it (format "c4c-captions" v1: run, checkpoint, frames, beam, max_len,
alpha, seconds, ...). Videos: the distinct videos of ``--split`` of the annotations, or, without
annotations, every video in FRAMES.h5 (e.g. a folder of your own videos after `c4c extract`). Clips
are made as in training (the run's max_frames, sampling, fps). Beam search is batched over videos
and beams (see :func:`c4c.model.decoder.beam_search`); ``--beam 1`` is greedy.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from c4c.atomic import write_json
from c4c.errors import C4CError
from c4c.model.backbone import quick_gelu_of as _quick_gelu_of
from c4c.model.backbone import set_activation as _set_activation
from c4c.model.backbone import uses_quick_gelu as _uses_quick_gelu
from c4c.model.decoder import DEFAULT_ALPHA

log = logging.getLogger(__name__)

RUN_FORMAT = "c4c-caption-run"
RUN_FORMAT_VERSION = 1
CAPTIONS_FORMAT = "c4c-captions"
CAPTIONS_FORMAT_VERSION = 1
SELECT_METRIC = "neg_caption_loss"  # the loop keeps the highest: minus the val token loss


@dataclass
class CaptionTrainConfig:
    """Options of `c4c caption train`; optimisation defaults follow `c4c finetune`."""

    dataset: str                          # msrvtt | msvd | lsmdc | activitynet | didemo | jsonl
    ann: Path                             # annotation file or folder
    frames: Path                          # FRAMES.h5 from `c4c extract`
    out: Path                             # run folder
    init: Path | None = None              # start from a finetune / pretrain / caption run
    retrieval_loss_weight: float = 1.0    # W in loss = caption + W x retrieval (paper: joint, 1:1); 0 = off
    sim: str | None = None                # head; None: the --init run's, else meanP
    clip: str | None = None               # open_clip name, "tiny" or JSON; None: the --init run's, else ViT-B-32
    pretrained: str = "openai"            # CLIP weights when there is no --init
    patch: str | None = None              # 2d | 3d; None: the --init run's, else 2d
    temporal_layers: int | None = None    # seqTransf / tightTransf depth; None: the --init run's, else 4
    decoder_layers: int = 3               # UniVL's published captioning depth
    decoder_heads: int = 0                # 0: CLIP text heads
    decoder_dropout: float = 0.1
    freeze_layers: int = 0                # as finetune (0 also freezes CLIP's token embedding = decoder's)
    epochs: int = 5
    batch_size: int = 128                 # global batch (the contrastive batch of the retrieval term)
    grad_accum: int = 1                   # micro-batches per step (each its own contrastive batch)
    lr: float = 1e-4                      # new parameters (decoder, head)
    coef_lr: float = 1e-3                 # CLIP parameters get lr * coef_lr
    weight_decay: float = 0.2
    warmup: float = 0.1
    schedule: str = "cosine"
    optimizer: str = "adamw"
    grad_clip: float = 1.0
    amp: str = "auto"                     # auto (bf16 on GPU, none on CPU) | bf16 | fp16 | none
    seed: int = 42
    max_words: int = 32                   # CLIP tokens per caption, SOT and EOT included
    max_frames: int = 12
    sampling: str = "uniform"
    fps: float | None = None
    train_order: str = "keep"
    expand_sentences: bool = True         # one item per caption
    paragraph: bool | None = None         # default: ActivityNet, DiDeMo
    dataset_options: dict = field(default_factory=dict)
    select_on: str = "val"                # val (lowest val token loss) | last
    eval_batch_size: int = 64
    workers: int = 2
    device: str = "auto"
    skip_missing: bool = False
    resume: bool = False
    save_every: int = 0
    keep_checkpoints: int = 2
    log_every: int = 10
    max_steps: int | None = None


@dataclass
class CaptionTrainResult:
    run_dir: Path
    best_epoch: int | None
    best_metrics: dict | None
    selection: str
    steps: int
    seconds: float
    history: list[dict]


@dataclass
class GenerateConfig:
    """Options of `c4c caption generate`."""

    run: Path                             # a caption run folder
    frames: Path                          # FRAMES.h5
    out: Path                             # captions.json to write
    dataset: str | None = None            # with ann: caption the videos of one split
    ann: Path | None = None
    split: str = "test"
    dataset_options: dict = field(default_factory=dict)
    beam: int = 5                         # 1 = greedy
    max_len: int = 20                     # generated tokens at most (EOT included)
    alpha: float = DEFAULT_ALPHA          # GNMT length penalty exponent (0: none, as UniVL)
    batch_size: int = 32                  # videos per batch (x beam decoder rows)
    checkpoint: str = "best"              # best (falls back to latest) | latest
    amp: str = "auto"
    device: str = "auto"
    workers: int = 2
    skip_missing: bool = False


@dataclass
class GenerateResult:
    out: Path
    meta: Path
    captions: dict[str, str]
    videos: int
    seconds: float                        # wall time of encoding + decoding
    captions_per_s: float
    checkpoint: Path


def run(cfg: CaptionTrainConfig | GenerateConfig, on_event: Callable[[dict], None] | None = None):
    """Train (``CaptionTrainConfig``) or generate (``GenerateConfig``)."""
    if isinstance(cfg, GenerateConfig):
        return generate(cfg, on_event)
    return train(cfg, on_event)


# --------------------------------------------------------------------------------------------
# Building the model
# --------------------------------------------------------------------------------------------

def _read_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise C4CError("file not found", path=path) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise C4CError(f"unreadable JSON: {exc}", path=path) from None
    if not isinstance(data, dict):
        raise C4CError("expected a JSON object", path=path)
    return data


def _run_checkpoint(run_dir: Path, which: str = "best") -> Path:
    """``RUN/best`` (``which="best"``, when present) or the newest checkpoint of ``RUN``."""
    from c4c.train import checkpoint

    if which not in ("best", "latest"):
        raise C4CError(f"unknown checkpoint {which!r}; choose best or latest")
    if which == "best" and ((run_dir / "best").exists() or (run_dir / "best.old").exists()):
        return run_dir / "best"
    folder = checkpoint.latest(run_dir)
    if folder is None:
        raise C4CError("the run has no checkpoint yet (no best/ and no latest.json)", path=run_dir)
    return folder


def resolve_architecture(cfg: CaptionTrainConfig) -> dict:
    """What to build: explicit options, else the ``--init`` run's, else the defaults."""
    from c4c.model.decoder import DecoderConfig

    base: dict = {}
    if cfg.init is not None:
        if not cfg.init.is_dir():
            raise C4CError("--init run folder not found", path=cfg.init)
        if (cfg.init / "config.json").is_file():
            base = _read_json(cfg.init / "config.json")
        base_arch = base.get("architecture", base)
    else:
        base_arch = {}
    defaults = {"clip": "ViT-B-32", "sim": "meanP", "patch": "2d", "temporal_layers": 4}
    arch = {}
    for key, default in defaults.items():
        value = getattr(cfg, key)
        arch[key] = value if value is not None else base_arch.get(key, default)
    if cfg.init is not None:
        from c4c.model.backbone import BUILTIN

        arch["pretrained"] = "none"
        if "quick_gelu" in base_arch:
            arch["init_quick_gelu"] = bool(base_arch["quick_gelu"])
        elif not (arch["clip"] in BUILTIN or str(arch["clip"]).endswith(".json")):  # JSON configs say it
            arch["init_quick_gelu"] = _quick_gelu_of(base_arch.get("pretrained", "none"))
    else:
        arch["pretrained"] = cfg.pretrained
    decoder = DecoderConfig(layers=cfg.decoder_layers, heads=cfg.decoder_heads, dropout=cfg.decoder_dropout)
    decoder.validate()
    arch["decoder"] = asdict(decoder)
    return arch


def build_captioner(arch: dict, device: str = "cpu", init: Path | None = None):
    """``(CaptionModel, BackboneInfo)`` for ``arch`` (see :func:`resolve_architecture`), with ``init`` weights.

    ``arch["quick_gelu"]`` (a saved run) or ``arch["init_quick_gelu"]`` sets CLIP's activation when the
    weights do not come from an open_clip tag.
    """
    from c4c.model.backbone import build_clip
    from c4c.model.decoder import CaptionModel, DecoderConfig
    from c4c.train import checkpoint

    clip, info = build_clip(arch["clip"], arch.get("pretrained", "none"))
    quick = arch.get("quick_gelu", arch.get("init_quick_gelu"))
    if quick is not None:
        _set_activation(clip, bool(quick))
    model = CaptionModel(clip, sim=arch["sim"], patch=arch["patch"], temporal_layers=int(arch["temporal_layers"]),
                         decoder=DecoderConfig(**arch["decoder"]))
    if init is not None:
        folder = _run_checkpoint(init, "best")
        state = checkpoint.load_model_state(folder)
        encoder = {k: v for k, v in state.items() if not k.startswith("decoder.")}
        decoder = {k[len("decoder."):]: v for k, v in state.items() if k.startswith("decoder.")}
        try:
            missing, unexpected = model.load_state_dict(encoder, strict=False)
        except RuntimeError as exc:
            raise C4CError(f"--init weights do not fit: {str(exc).splitlines()[0]}", path=folder,
                           hint="use the --clip, --sim, --patch and --temporal-layers of that run") from None
        missing = [k for k in missing if not k.startswith("decoder.")]
        if missing or unexpected:
            raise C4CError(f"--init checkpoint does not fit: {len(missing)} weights missing (e.g. {missing[:2]}), "
                           f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})", path=folder,
                           hint="use the --clip, --sim, --patch and --temporal-layers of that run")
        if decoder:
            try:
                model.decoder.load_state_dict(decoder)
            except RuntimeError:
                raise C4CError("the --init run's caption decoder has another shape", path=folder,
                               hint="use its --decoder-layers and --decoder-heads") from None
        log.info("initialised from %s (%s)", folder, "encoder and decoder" if decoder else "decoder starts fresh")
    return model.to(device), info


def load_run_config(run_dir: Path) -> dict:
    """A caption run's config.json, validated (format and version)."""
    path = Path(run_dir) / "config.json"
    if not Path(run_dir).is_dir():
        raise C4CError("run folder not found", path=run_dir)
    config = _read_json(path)
    if config.get("format") != RUN_FORMAT:
        raise C4CError("not a caption run (config.json has no format \"c4c-caption-run\")", path=path,
                       hint="pass a folder written by `c4c caption train`")
    if int(config.get("format_version", 0)) > RUN_FORMAT_VERSION:
        raise C4CError(f"caption run format version {config.get('format_version')} is newer than this c4c "
                       f"understands ({RUN_FORMAT_VERSION})", path=path, hint="upgrade c4c")
    return config


def load_captioner(run_dir: Path, which: str = "best", device: str = "cpu"):
    """``(model in eval mode, run config, checkpoint folder)`` of a caption run."""
    from c4c.train import checkpoint

    config = load_run_config(run_dir)
    folder = _run_checkpoint(Path(run_dir), which)
    model, _ = build_captioner({**config["architecture"], "pretrained": "none"}, device)
    state = checkpoint.load_model_state(folder)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise C4CError(f"checkpoint does not fit the run's config.json: {str(exc).splitlines()[0]}",
                       path=folder) from None
    return model.eval(), config, checkpoint.resolve(folder)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------

def _validate(cfg: CaptionTrainConfig) -> None:
    from c4c.model.heads import HEADS

    if cfg.sim is not None and cfg.sim not in HEADS:
        raise C4CError(f"unknown --sim {cfg.sim!r}", hint=f"choose one of: {', '.join(HEADS)}")
    if cfg.select_on not in ("val", "last"):
        raise C4CError(f"unknown --select-on {cfg.select_on!r}; choose val or last")
    if not (cfg.retrieval_loss_weight >= 0 and math.isfinite(cfg.retrieval_loss_weight)):
        raise C4CError(f"--retrieval-loss-weight must be >= 0, got {cfg.retrieval_loss_weight}")
    for name in ("epochs", "batch_size", "grad_accum", "max_frames", "eval_batch_size"):
        if getattr(cfg, name) < 1:
            raise C4CError(f"--{name.replace('_', '-')} must be at least 1")
    if not 3 <= cfg.max_words <= 77:
        raise C4CError(f"--max-words must be in 3..77 (SOT, at least one token, EOT; CLIP's context), "
                       f"got {cfg.max_words}")
    if cfg.out.exists() and any(cfg.out.iterdir()) and not cfg.resume:
        raise C4CError("run folder is not empty", path=cfg.out,
                       hint="pass --resume to continue it, or choose a new --out")


def _backward(loss, scaler) -> None:
    if scaler is not None and scaler.is_enabled():
        scaler.scale(loss).backward()
    else:
        loss.backward()


def caption_step(model, wrapped, batch: dict, *, weight: float, accum: int, amp_ctx, scaler, dist_info) -> float:
    """Forward and backward of one optimiser step (a ``Trainer`` step_fn); returns the loss.

    With ``accum > 1`` each micro-batch is its own contrastive batch for the retrieval term.
    """
    import contextlib

    from c4c.train.loop import split_batch

    total = 0.0
    micro = split_batch(batch, accum)
    for k, mb in enumerate(micro):
        sync = contextlib.nullcontext() if k == accum - 1 or not dist_info.distributed else wrapped.no_sync()
        with sync:
            with amp_ctx:
                loss = wrapped(mb["text_ids"], mb["text_mask"], mb["video"], mb["video_mask"],
                               retrieval_weight=weight)[0] / accum
            _backward(loss, scaler)
        total += float(loss.detach())
    return total


def evaluate_loss(model, dataset, *, batch_size: int, device: str, amp_ctx, weight: float,
                  workers: int = 0) -> dict:
    """Val metrics: mean token cross entropy (teacher forcing) over every (clip, caption) pair, its
    perplexity, and the mean per-batch retrieval loss when ``weight > 0``."""
    import torch
    from torch.utils.data import DataLoader

    from c4c.data.video_text import collate

    was_training = model.training
    model.eval()
    ce_sum, tokens, retrieval, batches = 0.0, 0, 0.0, 0
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate, num_workers=workers):
            batch = {k: v.to(device) for k, v in batch.items()}
            with amp_ctx:
                memory = model.encode_video(batch["video"], batch["video_mask"])
                ce, count = model.caption_loss(batch["text_ids"], batch["text_mask"], memory, batch["video_mask"])
                if weight > 0:
                    text = model.encode_text(batch["text_ids"])
                    retrieval += float(model.loss_from_features(text, memory, batch["video_mask"]))
            ce_sum += float(ce)
            tokens += int(count)
            batches += 1
    model.train(was_training)
    loss = ce_sum / max(tokens, 1)
    metrics = {"caption_loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": tokens,
               SELECT_METRIC: -loss}
    if weight > 0:
        metrics["retrieval_loss"] = retrieval / max(batches, 1)
    return metrics



def train(cfg: CaptionTrainConfig, on_event: Callable[[dict], None] | None = None) -> CaptionTrainResult:
    """Train a captioner; evaluate the val token loss every epoch; keep the best weights in RUN/best."""
    import torch

    from c4c.data.sampler import EpochSampler
    from c4c.data.text import CaptionTokenizer
    from c4c.data.video_text import ClipSpec, TrainPairs, check_videos, collate
    from c4c.datasets.registry import read_annotations, split_records
    from c4c.stages.finetune import PARAGRAPH_DATASETS
    from c4c.train import checkpoint
    from c4c.train.checkpoint import seed_everything
    from c4c.train.distributed import broadcast_object, cleanup, init_distributed
    from c4c.train.loop import LoopConfig, Trainer, autocast_context
    from c4c.train.optim import freeze_clip_layers, make_optimizer
    from c4c.video.store import FrameStore

    t0 = time.perf_counter()
    _validate(cfg)
    arch = resolve_architecture(cfg)
    dist_info = init_distributed(cfg.device)
    amp = cfg.amp if cfg.amp != "auto" else ("bf16" if dist_info.device.startswith("cuda") else "none")
    seed_everything(cfg.seed)
    paragraph = cfg.paragraph if cfg.paragraph is not None else cfg.dataset in PARAGRAPH_DATASETS
    local_batch = cfg.batch_size // dist_info.world_size
    if local_batch * dist_info.world_size != cfg.batch_size or local_batch % cfg.grad_accum:
        raise C4CError(f"--batch-size {cfg.batch_size} must split evenly over {dist_info.world_size} "
                       f"process(es) and --grad-accum {cfg.grad_accum}")

    options = dict(cfg.dataset_options)
    if cfg.dataset == "msrvtt":
        options.setdefault("msrvtt_train", "full")  # the captioning split
    records = read_annotations(cfg.dataset, cfg.ann, **options)
    store = FrameStore(cfg.frames)
    train_records = check_videos(split_records(records, "train"), store, skip_missing=cfg.skip_missing,
                                 store_path=cfg.frames)
    selection = cfg.select_on
    val_records = split_records(records, "val") if selection == "val" else []
    if selection == "val" and not val_records:
        log.warning("no val split in %s: the last epoch is kept", cfg.ann)
        selection = "last"
    if val_records:
        val_records = check_videos(val_records, store, skip_missing=cfg.skip_missing, store_path=cfg.frames)

    tokenizer = CaptionTokenizer(cfg.max_words)
    train_set = TrainPairs(train_records, store, tokenizer,
                           ClipSpec(max_frames=cfg.max_frames, sampling=cfg.sampling, fps=cfg.fps,
                                    order=cfg.train_order),
                           expand_sentences=cfg.expand_sentences, seed=cfg.seed, paragraph=paragraph)
    val_set = (TrainPairs(val_records, store, tokenizer,
                          ClipSpec(max_frames=cfg.max_frames, sampling=cfg.sampling, fps=cfg.fps),
                          expand_sentences=True, seed=cfg.seed, paragraph=paragraph)
               if val_records else None)
    sampler = EpochSampler(len(train_set), batch_size=local_batch, shuffle=True, seed=cfg.seed,
                           rank=dist_info.rank, world_size=dist_info.world_size, drop_last=True)

    model, backbone = build_captioner(arch, dist_info.device, init=cfg.init)
    arch = {k: v for k, v in arch.items() if k != "init_quick_gelu"}
    arch["quick_gelu"] = _uses_quick_gelu(model.clip)
    frozen = freeze_clip_layers(model, cfg.freeze_layers)
    steps_per_epoch = len(sampler) // local_batch
    optimizer, scheduler = make_optimizer(model, optimizer=cfg.optimizer, lr=cfg.lr, coef_lr=cfg.coef_lr,
                                          weight_decay=cfg.weight_decay, schedule=cfg.schedule,
                                          warmup=cfg.warmup, total_steps=steps_per_epoch * cfg.epochs)
    wrapped = model
    if dist_info.distributed:
        wrapped = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dist_info.local_rank] if dist_info.device.startswith("cuda") else None,
            find_unused_parameters=True)

    cfg.out.mkdir(parents=True, exist_ok=True)
    resolved = {"format": RUN_FORMAT, "format_version": RUN_FORMAT_VERSION, "task": "caption",
                **{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}}
    resolved.update({"architecture": arch, "sim": arch["sim"], "clip": arch["clip"], "patch": arch["patch"],
                     "temporal_layers": arch["temporal_layers"], "dataset_options": options,
                     "amp_resolved": amp, "paragraph_resolved": paragraph, "selection_resolved": selection,
                     "selection_metric": "val caption token loss (lower is better)",
                     "world_size": dist_info.world_size, "backbone": asdict(backbone),
                     "parameters": {"total": sum(p.numel() for p in model.parameters()),
                                    "decoder": sum(p.numel() for p in model.decoder.parameters()), **frozen},
                     "train_items": len(train_set), "val_items": len(val_set) if val_set else 0,
                     "steps_per_epoch": steps_per_epoch})
    if dist_info.is_main:
        write_json(cfg.out / "config.json", resolved)

    def evaluate(epoch: int) -> dict | None:
        if val_set is None:
            return None
        metrics = None
        if dist_info.is_main:
            metrics = evaluate_loss(model, val_set, batch_size=cfg.eval_batch_size, device=dist_info.device,
                                    amp_ctx=autocast_context(amp, dist_info.device),
                                    weight=cfg.retrieval_loss_weight)
            metrics["split"] = "val"
        return broadcast_object(metrics)

    loop = LoopConfig(epochs=cfg.epochs, grad_clip=cfg.grad_clip, amp=amp, log_every=cfg.log_every,
                      save_every=cfg.save_every, keep_checkpoints=cfg.keep_checkpoints, max_steps=cfg.max_steps,
                      select_metric=SELECT_METRIC)

    def step_fn(model_, wrapped_, batch, **kw):
        return caption_step(model_, wrapped_, batch, weight=cfg.retrieval_loss_weight, accum=cfg.grad_accum, **kw)

    trainer = Trainer(model=model, wrapped=wrapped, optimizer=optimizer, scheduler=scheduler, dataset=train_set,
                      sampler=sampler, local_batch=local_batch, collate=collate, workers=cfg.workers, config=loop,
                      run_dir=cfg.out, dist_info=dist_info, step_fn=step_fn, evaluate=evaluate,
                      after_step=model.clamp_logit_scale, on_event=on_event,
                      run_meta={"task": "caption", "sim": arch["sim"], "clip": arch["clip"], "patch": arch["patch"]})
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
                        {"task": "caption", "epoch": state.history[-1]["epoch"], "step": state.step,
                         "selection": "last"})
    result = CaptionTrainResult(run_dir=cfg.out, best_epoch=state.best_epoch, best_metrics=best_metrics,
                                selection=selection, steps=state.step, seconds=time.perf_counter() - t0,
                                history=state.history)
    if dist_info.is_main:
        protocol = {"val": "model selection on the val split by the caption token loss (lower is better)",
                    "last": "no selection split: the last epoch"}[selection]
        write_json(cfg.out / "results.json", {"task": "caption", "best_epoch": state.best_epoch,
                                                "metrics": best_metrics, "selection": selection,
                                                "protocol": protocol, "steps": state.step,
                                                "seconds": round(result.seconds, 1)})
    return result


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------

def meta_path(out: Path) -> Path:
    """``captions.json`` -> ``captions.meta.json`` (same folder)."""
    out = Path(out)
    stem = out.name[:-len(".json")] if out.name.endswith(".json") else out.name
    return out.with_name(stem + ".meta.json")


def _videos_to_caption(cfg: GenerateConfig, store) -> list:
    """The records whose videos get a caption: one split of the annotations, or every stored video."""
    from c4c.data.video_text import check_videos
    from c4c.datasets.records import VideoRecord
    from c4c.datasets.registry import read_annotations, split_records

    if (cfg.dataset is None) != (cfg.ann is None):
        raise C4CError("--dataset and --ann go together (or leave both out to caption every video in FRAMES.h5)")
    if cfg.ann is None:
        return [VideoRecord(video_id=vid, captions=[], split=cfg.split) for vid in store.ids()]
    options = dict(cfg.dataset_options)
    if cfg.dataset == "msrvtt":
        options.setdefault("msrvtt_train", "full")
    records = split_records(read_annotations(cfg.dataset, cfg.ann, **options), cfg.split)
    if not records:
        raise C4CError(f"no {cfg.split} videos in the annotations", path=cfg.ann)
    return check_videos(records, store, skip_missing=cfg.skip_missing, store_path=cfg.frames)


def generate(cfg: GenerateConfig, on_event: Callable[[dict], None] | None = None) -> GenerateResult:
    """Caption videos of FRAMES.h5 with a trained caption run; write captions.json and its meta file."""
    import torch
    from torch.utils.data import DataLoader

    from c4c import __version__
    from c4c.data.text import CaptionTokenizer
    from c4c.data.video_text import ClipSpec, EvalSet, collate
    from c4c.model.decoder import detokenize
    from c4c.train.distributed import init_distributed
    from c4c.train.loop import autocast_context
    from c4c.video.store import FrameStore

    on_event = on_event or (lambda event: None)
    if cfg.batch_size < 1:
        raise C4CError(f"--batch-size must be at least 1, got {cfg.batch_size}")
    if cfg.beam < 1:
        raise C4CError(f"--beam must be at least 1, got {cfg.beam}")
    if cfg.max_len < 1:
        raise C4CError(f"--max-len must be at least 1, got {cfg.max_len}")
    if not (cfg.alpha >= 0 and math.isfinite(cfg.alpha)):
        raise C4CError(f"--alpha must be >= 0, got {cfg.alpha}")
    device = init_distributed(cfg.device).device
    amp = cfg.amp if cfg.amp != "auto" else ("bf16" if device.startswith("cuda") else "none")
    model, config, folder = load_captioner(cfg.run, cfg.checkpoint, device)
    if cfg.max_len + 1 > model.decoder.config.max_positions:
        raise C4CError(f"--max-len {cfg.max_len} is too long for this decoder "
                       f"(at most {model.decoder.config.max_positions - 1} tokens)")
    store = FrameStore(cfg.frames)
    records = _videos_to_caption(cfg, store)
    if not records:
        raise C4CError("no videos to caption in the frame store", path=cfg.frames)
    clip = ClipSpec(max_frames=int(config["max_frames"]), sampling=config["sampling"], fps=config.get("fps"))
    evalset = EvalSet(records, store, CaptionTokenizer(int(config["max_words"])), clip)
    total = len(evalset.video_ids)
    on_event({"event": "start", "videos": total})
    captions: dict[str, str] = {}
    amp_ctx = autocast_context(amp, device)
    t0 = time.perf_counter()
    loader = DataLoader(evalset.video_dataset(), batch_size=cfg.batch_size, collate_fn=collate,
                        num_workers=cfg.workers)
    with torch.no_grad():
        for batch in loader:
            with amp_ctx:
                hyps = model.generate(batch["video"].to(device), batch["video_mask"].to(device), beam=cfg.beam,
                                      max_len=cfg.max_len, alpha=cfg.alpha)
            texts = detokenize([h.tokens for h in hyps])
            for i, text in zip(batch["index"].tolist(), texts):
                captions[evalset.video_ids[i]] = text
            on_event({"event": "batch", "done": len(captions), "videos": total})
    seconds = time.perf_counter() - t0
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, captions)
    meta = {"format": CAPTIONS_FORMAT, "format_version": CAPTIONS_FORMAT_VERSION, "c4c_version": __version__,
            "captions": out.name, "run": str(cfg.run), "checkpoint": str(folder), "frames": str(cfg.frames),
            "dataset": cfg.dataset, "ann": None if cfg.ann is None else str(cfg.ann),
            "split": cfg.split if cfg.ann is not None else None, "beam": cfg.beam, "max_len": cfg.max_len,
            "alpha": cfg.alpha if cfg.beam > 1 else 0.0, "batch_size": cfg.batch_size, "device": device,
            "amp": amp, "videos": total, "seconds": round(seconds, 3),
            "captions_per_s": round(total / max(seconds, 1e-9), 3)}
    write_json(meta_path(out), meta)
    log.info("%d captions in %.1f s -> %s", total, seconds, out)
    return GenerateResult(out=out, meta=meta_path(out), captions=captions, videos=total, seconds=seconds,
                          captions_per_s=total / max(seconds, 1e-9), checkpoint=folder)


def read_captions(path: Path) -> dict[str, str]:
    """A captions.json (``{video_id: caption}``), validated; its meta file, when present, must be
    format "c4c-captions" of a version this c4c understands."""
    path = Path(path)
    data = _read_json(path)
    bad = [k for k, v in data.items() if not isinstance(v, str)]
    if bad:
        raise C4CError(f"captions must be strings; {len(bad)} are not (first: {bad[0]!r})", path=path)
    meta = meta_path(path)
    if meta.is_file():
        info = _read_json(meta)
        if info.get("format") != CAPTIONS_FORMAT:
            raise C4CError(f"not a captions meta file (format {info.get('format')!r})", path=meta)
        if int(info.get("format_version", 0)) > CAPTIONS_FORMAT_VERSION:
            raise C4CError("captions written by a newer c4c", path=meta, hint="upgrade c4c")
    return data

