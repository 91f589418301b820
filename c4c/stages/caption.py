"""`c4c caption train` and `c4c caption generate`: video captioning on CLIP4Clip (spec 7.2).

**train** fits :class:`c4c.model.decoder.CaptionModel` (CLIP4Clip + a caption decoder; design in
that module's docstring) on (clip, one caption) pairs with teacher forcing, plus ``W`` x the
retrieval loss (``--retrieval-loss-weight``, default 1.0 as the paper's joint loss; 0 turns it off).
It runs on the shared training loop (:class:`c4c.train.loop.Trainer`): same run folder, resume,
AMP and torchrun/DDP machinery as `c4c finetune`::

    RUN/config.json          format "c4c-run" v1, task "caption": every option resolved, and the model
                             block (clip, activation, sim, patch, temporal_layers, decoder) that generate
                             rebuilds (runs of the older format "c4c-caption-run" v1 still load)
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
and beams (see :func:`c4c.model.beam.beam_search`); ``--beam 1`` is greedy.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from c4c.atomic import write_json
from c4c import choices, interrupt
from c4c.errors import C4CError
from c4c.option_rules import FRACTION, count, non_negative
from c4c.options import AnnotatedSplit, Checkpointed, Hardware, StoredFrames, check_config, option, rules_of
from c4c.outputs import Output, guard, json_with_format
from c4c.run.folder import guard_run
from c4c.choices import DEFAULT_ALPHA
from c4c.stages.pairs import dataset_options
from c4c.train.settings import ClipSettings, LoopSettings, ModelSettings, OptimSettings, PairSettings
from c4c.train.start import TrainResult

log = logging.getLogger(__name__)

CAPTIONS_FORMAT = "c4c-captions"
CAPTIONS_FORMAT_VERSION = 1
SELECT_METRIC = "neg_caption_loss"  # the loop keeps the highest: minus the val token loss
PROTOCOLS = {"val": "model selection on the val split by the caption token loss (lower is better)",
             "last": "no selection split: the last epoch"}


@dataclass(kw_only=True)
class CaptionTrainConfig(PairSettings, ModelSettings, OptimSettings, LoopSettings, ClipSettings):
    """Options of `c4c caption train`; optimisation defaults follow `c4c finetune`."""

    retrieval_loss_weight: float = option(1.0, "W in loss = caption + W x retrieval (the paper's joint loss: 1); 0 "
                                               "trains the caption loss alone.", rule=non_negative(1000.0))
    decoder_layers: int = option(3, "Caption decoder layers (UniVL: 3).", rule=count(1, 64))
    decoder_heads: int = option(0, "Decoder attention heads (0: those of CLIP's text tower).", rule=count(0, 1024))
    decoder_dropout: float = option(0.1, "Decoder dropout.", rule=FRACTION)
    select_on: choices.CaptionSelectOn = option("val", "Keep the epoch with the lowest val token loss (val) or the "
                                                       "last.", panel="Training loop")


@dataclass(kw_only=True)
class GenerateConfig(StoredFrames, AnnotatedSplit, Checkpointed, Hardware):
    """Options of `c4c caption generate`."""

    run: Path = option(help="Run folder of `c4c caption train`.", panel="Model")
    out: Path = option(help="captions.json to write.", flags=("--out", "-o"))
    dataset_options: dict | None = None   # reader options (MSR-VTT: the captioning split "full" by default)
    beam: int = option(5, "Beam size (1: greedy).", rule=count(1, 1000))
    max_len: int = option(20, "Tokens generated at most (EOT included).",
                          rule=count(1, 1000))  # and below the decoder's positions, known once it is loaded
    alpha: float = option(DEFAULT_ALPHA, "Length penalty exponent: score = log p / ((5 + len) / 6)^alpha (0: none).",
                          rule=non_negative(100.0))
    batch_size: int = option(32, "Videos decoded together (each with --beam rows).", rule=count(1))


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


def decoder_config(cfg: CaptionTrainConfig) -> dict:
    """The decoder block of the model spec, checked."""
    from dataclasses import asdict

    from c4c.model.decoder import DecoderConfig

    decoder = DecoderConfig(layers=cfg.decoder_layers, heads=cfg.decoder_heads, dropout=cfg.decoder_dropout)
    decoder.validate()
    return asdict(decoder)


def load_captioner(run_dir: Path, which: str | None = "best", device: str = "cpu"):
    """``(model in eval mode, run config, checkpoint folder)`` of a caption run."""
    from c4c.run import export_format as export
    from c4c.model.load import load_run
    from c4c.run.folder import RunFolder

    source = export.resolve_source(run_dir)
    if not export.is_export(source) and RunFolder(source).task() != "caption":
        raise C4CError(f"not a caption run (a {RunFolder(source).task()} run)", path=Path(source) / "config.json",
                       hint="pass a folder written by `c4c caption train`")
    loaded = load_run(source, device=device, which=which)
    if loaded.config.get("task") != "caption":
        raise C4CError(f"not a caption model (task {loaded.config.get('task')!r})", path=source)
    return loaded.model, loaded.config, loaded.checkpoint


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------

def caption_step(model, wrapped, batch: dict, *, weight: float, accum: int, amp_ctx, scaler, dist_info) -> float:
    """Forward and backward of one optimiser step (a ``Trainer`` step_fn); returns the loss.

    With ``accum > 1`` and a loose head the retrieval term's contrastive batch stays the whole batch, as in
    `c4c finetune` (:func:`c4c.train.loop.gradient_cached_step`): the retrieval loss of the whole batch on
    the features of every micro-batch, then each micro-batch again with its own caption loss (a share of
    the batch's token mean). The tight head cannot be split this way and uses per-micro-batch retrieval
    losses.
    """
    from c4c.model.decoder import global_count
    from c4c.train.loop import gradient_cached_step, micro_batch_step, split_batch

    def inputs(mb: dict) -> tuple:
        return mb["text_ids"], mb["text_mask"], mb["video"], mb["video_mask"]

    micro = split_batch(batch, accum)
    if accum == 1 or (weight > 0 and not model.loose):
        return micro_batch_step(wrapped, micro, lambda net, mb: net(*inputs(mb), retrieval_weight=weight)[0],
                                amp_ctx=amp_ctx, scaler=scaler, dist_info=dist_info)
    tokens, world = global_count(batch["text_mask"][:, 1:].sum())

    def caption_term(net, mb: dict) -> tuple:
        """This micro-batch's share of the batch's token mean, and its features for the retrieval term."""
        if weight > 0:
            ce, _, text, memory = net(*inputs(mb), mode="parts")
            return ce * world / tokens, (text, memory)
        ce, _ = net(*inputs(mb), mode="caption")
        return ce * world / tokens, ()

    retrieval, caption = gradient_cached_step(
        model, wrapped, micro, rerun=caption_term,
        embed=(lambda net, mb: net(*inputs(mb), mode="embed")) if weight > 0 else None,
        batch_loss=lambda text, memory: model.loss_from_features(text, memory, batch["video_mask"]),
        batch_weight=weight, amp_ctx=amp_ctx, scaler=scaler, dist_info=dist_info)
    return caption + weight * retrieval


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
        for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate, num_workers=workers,
                                worker_init_fn=interrupt.ignore_in_child if workers else None):
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


def train(cfg: CaptionTrainConfig, on_event: Callable[[dict], None] | None = None) -> TrainResult:
    """Train a captioner; evaluate the val token loss every epoch; keep the best weights in RUN/best."""
    with guard_run(cfg.out, [cfg.ann, cfg.frames, cfg.init], command="c4c caption train"):
        return _train(cfg, on_event)


def _train(cfg: CaptionTrainConfig, on_event: Callable[[dict], None] | None = None) -> TrainResult:
    """Train a captioner; evaluate the val token loss every epoch; keep the best weights in RUN/best."""
    from dataclasses import asdict

    from c4c.choices import CAPTION_SELECT_ON
    from c4c.data.text import CaptionTokenizer
    from c4c.data.frames import clip_spec
    from c4c.data.video_text import TrainPairs
    from c4c.model.load import build_model, check_max_words, resolve_spec
    from c4c.stages.pairs import load_pair_splits
    from c4c.train.loop import autocast_context
    from c4c.train.start import epoch_sampler, open_run, run_config, train_and_select

    t0 = time.perf_counter()
    if cfg.select_on not in CAPTION_SELECT_ON:
        raise C4CError(f"unknown --select-on {cfg.select_on!r}; choose val or last")
    if not (cfg.retrieval_loss_weight >= 0 and math.isfinite(cfg.retrieval_loss_weight)):
        raise C4CError(f"--retrieval-loss-weight must be >= 0, got {cfg.retrieval_loss_weight}")
    if not 3 <= cfg.max_words <= 77:
        raise C4CError(f"--max-words must be in 3..77 (SOT, at least one token, EOT; CLIP's context), "
                       f"got {cfg.max_words}")
    spec = resolve_spec(cfg, decoder=decoder_config(cfg))
    start = open_run(cfg, task="caption")
    dist = start.dist
    data = load_pair_splits(cfg, task="caption", default_options=dataset_options(cfg.dataset, None, task="caption"))
    tokenizer = CaptionTokenizer(cfg.max_words)
    train_set = TrainPairs(data.train, data.store, tokenizer,
                           clip_spec(cfg, training=True),
                           expand_sentences=cfg.expand_sentences, seed=cfg.seed, paragraph=data.paragraph)
    val_set = (TrainPairs(data.select, data.store, tokenizer,
                          clip_spec(cfg),
                          expand_sentences=True, seed=cfg.seed, paragraph=data.paragraph)
               if data.select else None)
    sampler, steps_per_epoch = epoch_sampler(cfg, start, train_set, cfg.ann)
    model, backbone, spec = build_model(spec, dist.device, init=cfg.init)
    check_max_words(cfg.max_words, backbone)  # before anything is written
    loss = model.use_loss(cfg.loss)
    config = run_config(cfg, task="caption", spec=spec, start=start, extra={"loss_resolved": loss,
        "dataset_options": data.options, "paragraph_resolved": data.paragraph, "selection_resolved": data.selection,
        "selection_metric": "val caption token loss (lower is better)", "backbone": asdict(backbone),
        "decoder_parameters": sum(p.numel() for p in model.decoder.parameters()),
        "train_items": len(train_set), "val_items": len(val_set) if val_set else 0,
        "steps_per_epoch": steps_per_epoch})

    def score() -> dict:
        return evaluate_loss(model, val_set, batch_size=cfg.eval_batch_size, device=dist.device,
                             amp_ctx=autocast_context(start.amp, dist.device), weight=cfg.retrieval_loss_weight)

    def step_fn(model_, wrapped_, batch, **kw):
        return caption_step(model_, wrapped_, batch, weight=cfg.retrieval_loss_weight, accum=cfg.grad_accum, **kw)

    return train_and_select(cfg, start, task="caption", model=model, config=config, dataset=train_set,
                            sampler=sampler, step_fn=step_fn, score=score if val_set is not None else None,
                            selection=data.selection, protocol=PROTOCOLS[data.selection],
                            total_steps=steps_per_epoch * cfg.epochs, select_metric=SELECT_METRIC,
                            on_event=on_event, started=t0)


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------

def meta_path(out: Path) -> Path:
    """``captions.json`` -> ``captions.meta.json`` (same folder)."""
    out = Path(out)
    stem = out.name[:-len(".json")] if out.name.endswith(".json") else out.name
    return out.with_name(stem + ".meta.json")


# The numbers `c4c caption generate` takes; checked before torch is imported (the CLI calls it first).
GENERATE_RULES = rules_of(GenerateConfig)


def _videos_to_caption(cfg: GenerateConfig, store) -> list:
    """The records whose videos get a caption: one split of the annotations, or every stored video."""
    from c4c.data.video_text import check_videos
    from c4c.datasets.records import VideoRecord
    from c4c.datasets.registry import read_annotations, split_records

    if (cfg.dataset is None) != (cfg.ann is None):
        raise C4CError("--dataset and --ann go together (or leave both out to caption every video in FRAMES.h5)")
    if cfg.ann is None:
        return [VideoRecord(video_id=vid, captions=[], split=cfg.split) for vid in store.ids()]
    options = {**dataset_options(cfg.dataset, None, task="caption"), **(cfg.dataset_options or {})}
    records = split_records(read_annotations(cfg.dataset, cfg.ann, **options), cfg.split)
    if not records:
        raise C4CError(f"no {cfg.split} videos in the annotations", path=cfg.ann)
    return check_videos(records, store, skip_missing=cfg.skip_missing, store_path=cfg.frames)


def _captions_file(data: object) -> bool:
    """Whether parsed JSON has the shape of captions.json: an object of video id -> caption."""
    return isinstance(data, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in data.items())


def generate(cfg: GenerateConfig, on_event: Callable[[dict], None] | None = None) -> GenerateResult:
    """Caption videos of FRAMES.h5 with a trained caption run; write captions.json and its meta file."""
    out = Path(cfg.out)
    outputs = [Output(out, "captions file", json_with_format(also=_captions_file)),
               Output(meta_path(out), "captions meta file", json_with_format(CAPTIONS_FORMAT))]
    with guard(outputs, [cfg.run, cfg.frames, cfg.ann], command="c4c caption generate"):
        return _generate(cfg, on_event)


def _generate(cfg: GenerateConfig, on_event: Callable[[dict], None] | None = None) -> GenerateResult:
    import torch
    from torch.utils.data import DataLoader

    from c4c import __version__
    from c4c.data.text import CaptionTokenizer
    from c4c.data.frames import clip_spec
    from c4c.data.video_text import EvalSet, collate
    from c4c.data.detokenize import detokenize
    from c4c.train.distributed import init_distributed
    from c4c.train.loop import autocast_context
    from c4c.video.store import FrameStore

    on_event = on_event or (lambda event: None)
    check_config(cfg)
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
    evalset = EvalSet(records, store, CaptionTokenizer(int(config["max_words"])), clip_spec(config))
    total = len(evalset.video_ids)
    on_event({"event": "start", "videos": total})
    captions: dict[str, str] = {}
    amp_ctx = autocast_context(amp, device)
    t0 = time.perf_counter()
    loader = DataLoader(evalset.video_dataset(), batch_size=cfg.batch_size, collate_fn=collate,
                        num_workers=cfg.workers, worker_init_fn=interrupt.ignore_in_child if cfg.workers else None)
    with torch.no_grad(), interrupt.graceful():  # Ctrl-C: stop after the batch in progress
        for batch in loader:
            with amp_ctx:
                hyps = model.generate(batch["video"].to(device), batch["video_mask"].to(device), beam=cfg.beam,
                                      max_len=cfg.max_len, alpha=cfg.alpha)
            texts = detokenize([h.tokens for h in hyps])
            for i, text in zip(batch["index"].tolist(), texts):
                captions[evalset.video_ids[i]] = text
            on_event({"event": "batch", "done": len(captions), "videos": total})
            if len(captions) < total:
                interrupt.stop_here(f"stopped after {len(captions)} of {total} videos; nothing was written: the "
                                    "captions are written once every video has one", path=cfg.out)
    seconds = time.perf_counter() - t0
    out = Path(cfg.out)
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
