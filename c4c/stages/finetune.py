"""`c4c finetune`: train CLIP4Clip for text-video retrieval on FRAMES.h5 and an annotation file.

Writes a run folder (layout: :mod:`c4c.run.folder`): config.json, metrics.jsonl, checkpoints/,
latest.json, best/ (the best epoch on the selection split) and results.json. Works alone or under
``torchrun --nproc_per_node N`` (features all-gathered for the loose heads).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from c4c import choices
from c4c.options import option
from c4c.run.folder import guard_run
from c4c.train.settings import ClipSettings, LoopSettings, ModelSettings, OptimSettings, PairSettings
from c4c.train.start import TrainResult

log = logging.getLogger(__name__)

PROTOCOLS = {"val": "model selection on the val split",
             "test": "model selection on the TEST split (the reference's protocol: optimistic)",
             "last": "no selection split: the last epoch"}


@dataclass(kw_only=True)
class FinetuneConfig(PairSettings, ModelSettings, OptimSettings, LoopSettings, ClipSettings):
    """Options of `c4c finetune`; defaults are the paper's MSR-VTT settings."""

    select_on: choices.SelectOn = option("val", "Model selection split: val, test (the reference's protocol: "
                                                "optimistic) or last.", panel="Training loop")


def run(cfg: FinetuneConfig, on_event: Callable[[dict], None] | None = None) -> TrainResult:
    """Train, evaluate every epoch on the selection split, keep the best weights (one writer per run folder)."""
    with guard_run(cfg.out, [cfg.ann, cfg.frames, cfg.init], command="c4c finetune"):
        return _finetune(cfg, on_event)


def _finetune(cfg: FinetuneConfig, on_event: Callable[[dict], None] | None = None) -> TrainResult:
    """Train, evaluate every epoch on the selection split, keep the best weights."""
    from dataclasses import asdict

    from c4c.choices import SELECT_ON
    from c4c.data.text import CaptionTokenizer
    from c4c.data.frames import clip_spec
    from c4c.data.video_text import EvalSet, TrainPairs
    from c4c.errors import C4CError
    from c4c.evaluation import evaluate_retrieval
    from c4c.model.load import build_model, check_max_words, resolve_spec
    from c4c.stages.pairs import load_pair_splits
    from c4c.train.loop import autocast_context, contrastive_step
    from c4c.train.start import epoch_sampler, open_run, run_config, train_and_select

    t0 = time.perf_counter()
    if cfg.select_on not in SELECT_ON:
        raise C4CError(f"unknown --select-on {cfg.select_on!r}; choose val, test or last")
    spec = resolve_spec(cfg)
    start = open_run(cfg, task="retrieval")
    data = load_pair_splits(cfg, task="retrieval")
    tokenizer = CaptionTokenizer(cfg.max_words)
    train_set = TrainPairs(data.train, data.store, tokenizer, clip_spec(cfg, training=True),
                           expand_sentences=cfg.expand_sentences,
                           seed=cfg.seed, paragraph=data.paragraph)
    eval_set = (EvalSet(data.select, data.store, tokenizer,
                        clip_spec(cfg),
                        paragraph=data.paragraph) if data.select else None)
    dist = start.dist
    sampler, steps_per_epoch = epoch_sampler(cfg, start, train_set, cfg.ann)
    model, backbone, spec = build_model(spec, dist.device, init=cfg.init)
    check_max_words(cfg.max_words, backbone)  # before anything is written
    loss = model.use_loss(cfg.loss)
    config = run_config(cfg, task="retrieval", spec=spec, start=start, extra={"loss_resolved": loss,
        "paragraph_resolved": data.paragraph, "selection_resolved": data.selection, "dataset_options": data.options,
        "backbone": asdict(backbone), "train_items": len(train_set), "steps_per_epoch": steps_per_epoch})

    def score() -> dict:
        return evaluate_retrieval(model, eval_set, batch_size=cfg.eval_batch_size, device=dist.device,
                                  amp_ctx=autocast_context(start.amp, dist.device))

    def step_fn(model_, wrapped_, batch, **kw):
        return contrastive_step(model_, wrapped_, batch, accum=cfg.grad_accum, **kw)

    return train_and_select(cfg, start, task="retrieval", model=model, config=config, dataset=train_set,
                            sampler=sampler, step_fn=step_fn, score=score if eval_set is not None else None,
                            selection=data.selection, protocol=PROTOCOLS[data.selection],
                            total_steps=steps_per_epoch * cfg.epochs, on_event=on_event, started=t0)
