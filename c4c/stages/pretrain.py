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

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from c4c.errors import C4CError
from c4c.option_rules import SECONDS, count, non_negative, positive
from c4c.options import StoredFrames, option
from c4c.run.folder import guard_run
from c4c.train.settings import ClipSettings, LoopSettings, ModelSettings, OptimSettings, RunOut

log = logging.getLogger(__name__)

DEFAULT_CATEGORIES = ("Food and Entertaining",)


@dataclass(kw_only=True)
class PretrainConfig(StoredFrames, RunOut, ModelSettings, OptimSettings, LoopSettings, ClipSettings):
    """Options of `c4c pretrain`. Model and optimiser defaults are fine-tuning's (the paper gives none)."""

    ann: Path = option(help="HowTo100M folder: caption.json and HowTo100M_v1.csv.", panel="Data")
    categories: tuple[str, ...] | None = DEFAULT_CATEGORIES  # category_1 values kept (None: every video; --categories)
    steps: int | None = option(None, "Optimiser steps in all [default: one epoch, one clip per video].",
                               rule=count(1), show_default=False)
    min_words: int = option(8, "Join ASR fragments until the text has this many words ...", rule=count(1, 10_000),
                            panel="Clips")  # clip sampling: see c4c.data.howto.MergeRule
    min_seconds: float = option(4.0, "... and spans this many seconds (short windows are widened).",
                                rule=positive(SECONDS.high), panel="Clips")
    max_seconds: float = option(12.0, "Never make a clip longer than this (s).", rule=positive(SECONDS.high),
                                panel="Clips")
    max_gap: float = option(2.0, "Never join fragments across a pause longer than this (s).",
                            rule=non_negative(SECONDS.high), panel="Clips")
    save_every: int = option(1000, "Checkpoint every N optimiser steps (and at each epoch end).", rule=count(0))


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
    with guard_run(cfg.out, [cfg.ann, cfg.frames, cfg.init], command="c4c pretrain"):
        return _pretrain(cfg, on_event)


def _pretrain(cfg: PretrainConfig, on_event: Callable[[dict], None] | None = None) -> PretrainResult:
    """Post-pretrain for ``cfg.steps`` optimiser steps (or up to ``cfg.max_steps`` of them) and checkpoint."""
    from c4c.data.frames import clip_spec
    from c4c.data.howto import HowToClips, MergeRule
    from c4c.data.text import CaptionTokenizer
    from c4c.data.video_text import collate
    from c4c.model.load import build_model, check_max_words, resolve_spec
    from c4c.train.loop import contrastive_step
    from c4c.train.start import epoch_sampler, fit, make_trainer, open_run, run_config
    from c4c.video.store import FrameStore

    t0 = time.perf_counter()
    on_event = on_event or (lambda event: None)
    if cfg.steps is not None and cfg.steps < 1:
        raise C4CError(f"--steps must be at least 1, got {cfg.steps}")
    rule = MergeRule(min_words=cfg.min_words, min_seconds=cfg.min_seconds, max_seconds=cfg.max_seconds,
                     max_gap=cfg.max_gap)
    spec = resolve_spec(cfg)
    start = open_run(cfg, task="pretrain")
    dist = start.dist
    store = FrameStore(cfg.frames)
    corpus = build_corpus(cfg, store)
    dataset = HowToClips(corpus, store, CaptionTokenizer(cfg.max_words), clip=clip_spec(cfg, training=True),
                         rule=rule, seed=cfg.seed)
    sampler, steps_per_epoch = epoch_sampler(cfg, start, dataset, cfg.ann)
    total_steps = cfg.steps if cfg.steps is not None else steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    stop_at = total_steps if cfg.max_steps is None else min(total_steps, cfg.max_steps)

    model, backbone, spec = build_model(spec, dist.device, init=cfg.init)
    check_max_words(cfg.max_words, backbone)  # before anything is written
    loss = model.use_loss(cfg.loss)
    config = run_config(cfg, task="pretrain", spec=spec, start=start, extra={"loss_resolved": loss,
        "stage": "pretrain", "backbone": asdict(backbone), "videos": len(corpus), "fragments": corpus.fragments,
        "steps_resolved": total_steps, "steps_per_epoch": steps_per_epoch, "epochs_resolved": epochs,
        "clip_sampling": asdict(rule)})

    def step_fn(model_, wrapped_, batch, **kw):
        return contrastive_step(model_, wrapped_, batch, accum=cfg.grad_accum, **kw)

    last_loss: list[float] = []

    def forward_event(event: dict) -> None:
        if event.get("event") in ("step", "tick"):
            last_loss[:] = [float(event["loss"])]
        on_event(event)

    run_meta = {"task": "pretrain", "stage": "pretrain", "sim": spec.sim, "clip": spec.clip, "patch": spec.patch}
    trainer = make_trainer(cfg, start, model=model, config=config, dataset=dataset, sampler=sampler,
                           collate=collate, step_fn=step_fn, evaluate=None, total_steps=total_steps, epochs=epochs,
                           max_steps=stop_at, run_meta=run_meta, on_event=forward_event)
    start_step = trainer.state.step
    on_event({"event": "pretrain_start", "steps": stop_at, "done_steps": start_step, "batch_size": cfg.batch_size,
              "videos": len(corpus), "steps_per_epoch": steps_per_epoch})
    state = fit(trainer)
    seconds = time.perf_counter() - t0
    newest = start.folder.latest()
    result = PretrainResult(run_dir=start.folder.path, steps=state.step, clips=state.step * cfg.batch_size,
                            seconds=seconds, checkpoint=newest, last_loss=last_loss[0] if last_loss else None,
                            videos=len(corpus), finished=state.step >= total_steps)
    if dist.is_main:
        done_now = state.step - start_step
        start.folder.write_results({
            "task": "pretrain", "steps": state.step, "steps_total": total_steps, "finished": result.finished,
            "clips": result.clips, "videos": len(corpus), "epochs": state.step / steps_per_epoch,
            "last_loss": result.last_loss, "checkpoint": str(newest) if newest else None,
            "seconds": round(seconds, 1),
            "clips_per_s_this_call": round(done_now * cfg.batch_size / max(seconds, 1e-9), 2),
            "init_for_finetune": f"c4c finetune --init {cfg.out} (loads {newest.name if newest else 'nothing yet'})"})
    return result


def history(run_dir: Path) -> list[dict]:
    """The step records of a run's metrics.jsonl."""
    from c4c.run.folder import RunFolder

    return [r for r in RunFolder(Path(run_dir)).history() if r.get("event") == "step"]
