"""Starting and finishing a training run: the part finetune, pretrain and caption train share.

:func:`open_run` checks every option and the run folder before anything touches the disk (a bad
option, a failed resume or a garbage run file leaves the folder as it was); :func:`make_trainer`
builds the optimiser, wraps the model for DDP, writes ``config.json`` (fresh runs only: a resumed run
keeps its saved config) and resumes; :func:`keep_selected` writes ``best/`` when the last epoch is
the selection.
"""

from __future__ import annotations

import logging
import shlex
import sys
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

from c4c.errors import C4CError
from c4c.run.folder import FORMAT, FORMAT_VERSION, ModelSpec, RunFolder
from c4c.train.settings import MAY_CHANGE_ON_RESUME, check_training_options

log = logging.getLogger(__name__)


@dataclass
class RunStart:
    """What :func:`open_run` decided: where, on which processes, in which precision."""

    folder: RunFolder
    dist: Any                              # c4c.train.distributed.DistInfo
    amp: str                               # none | bf16 | fp16
    local_batch: int                       # this process's share of the global batch
    resumed_from: Path | None              # the checkpoint a resumed run continues


def validate_settings(cfg) -> None:
    """Every training option one of its choices and in range (:func:`check_training_options`), and the
    --init run there (library callers get the checks the command line's types give)."""
    check_training_options(cfg)
    if cfg.init is not None and not str(cfg.init).startswith("hf-hub:") and not Path(cfg.init).is_dir():
        raise C4CError("--init run folder not found", path=cfg.init)


def _saved_form(value: Any) -> Any:
    """A config value as config.json holds it."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_saved_form(v) for v in value]
    if isinstance(value, dict):
        return {k: _saved_form(v) for k, v in value.items()}
    return value


def resume_conflicts(cfg, saved: dict) -> list[str]:
    """Options of ``cfg`` that differ from the run's saved config (those that may change excepted).

    An option left unset (None where None is its default) follows the saved run and is no conflict."""
    conflicts = []
    for f in fields(cfg):
        if f.name in MAY_CHANGE_ON_RESUME:
            continue
        value = getattr(cfg, f.name)
        if value is None and f.default is None:
            continue
        default = None if f.default is MISSING else _saved_form(f.default)
        mine, theirs = _saved_form(value), saved.get(f.name, default)
        if f.name == "dataset_options":
            mine, theirs = mine or {}, theirs or {}
        if mine != theirs and not (isinstance(mine, (int, float)) and isinstance(theirs, (int, float))
                                   and not isinstance(mine, bool) and float(mine) == float(theirs)):
            conflicts.append(f"--{f.name.replace('_', '-')} {mine!r} (the run has {theirs!r})")
    return conflicts


def open_run(cfg, *, task: str) -> RunStart:
    """Check options and the run folder, start the processes; writes nothing."""
    from c4c.run.checkpoint import load_meta, seed_everything
    from c4c.train.distributed import init_distributed

    validate_settings(cfg)
    folder = RunFolder(Path(cfg.out))
    resumed_from = None
    if cfg.resume:
        if not folder.is_run():
            raise C4CError("nothing to resume: not a run folder (no config.json)", path=folder.path,
                           hint="start it without --resume")
        saved = folder.read_config()
        resumed_from = folder.latest()
        if resumed_from is None:
            raise C4CError("nothing to resume: no checkpoint in the run folder", path=folder.path,
                           hint="start it again without --resume (the folder holds no finished step)")
        load_meta(resumed_from)  # readable and a c4c checkpoint, before anything else happens
        if folder.task() != task:
            raise C4CError(f"the run is a {folder.task()} run, not a {task} run", path=folder.config_path)
        conflicts = resume_conflicts(cfg, saved)
        if conflicts:
            raise C4CError("--resume with options that differ from the run: " + "; ".join(conflicts),
                           path=folder.config_path,
                           hint="a resumed run keeps its settings: drop these options, or start a new --out")
    else:
        folder.check_fresh()
    dist = init_distributed(cfg.device)
    amp = cfg.amp if cfg.amp != "auto" else ("bf16" if dist.device.startswith("cuda") else "none")
    seed_everything(cfg.seed)
    local_batch = cfg.batch_size // dist.world_size
    if local_batch * dist.world_size != cfg.batch_size or local_batch % cfg.grad_accum:
        raise C4CError(f"--batch-size {cfg.batch_size} must split evenly over {dist.world_size} "
                       f"process(es) and --grad-accum {cfg.grad_accum}")
    return RunStart(folder=folder, dist=dist, amp=amp, local_batch=local_batch, resumed_from=resumed_from)


def epoch_sampler(cfg, start: RunStart, dataset, path: Path):
    """``(sampler, steps per epoch)`` of this process's share of ``dataset``; too few items for one
    batch is an error naming ``path`` (the annotations)."""
    from c4c.data.sampler import EpochSampler

    sampler = EpochSampler(len(dataset), batch_size=start.local_batch, shuffle=True, seed=cfg.seed,
                           rank=start.dist.rank, world_size=start.dist.world_size, drop_last=True)
    steps = len(sampler) // start.local_batch
    if steps < 1:
        raise C4CError(f"{len(dataset)} training items make no batch of {cfg.batch_size}", path=path,
                       hint="lower --batch-size")
    return sampler, steps


def run_config(cfg, *, task: str, spec: ModelSpec, start: RunStart, extra: dict) -> dict:
    """The resolved config.json of a run: format, task, model block, every option, resolved facts."""
    from c4c import __version__

    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "task": task, "c4c_version": __version__,
              "command": " ".join([Path(sys.argv[0]).name, *(shlex.quote(a) for a in sys.argv[1:])]),
              "model": spec.as_dict()}
    config.update({k: _saved_form(v) for k, v in asdict(cfg).items()})
    config.update({"sim": spec.sim, "clip": spec.clip, "patch": spec.patch, "temporal_layers": spec.temporal_layers,
                   "amp_resolved": start.amp, "world_size": start.dist.world_size})
    config.update(extra)
    return config


def make_trainer(cfg, start: RunStart, *, model, config: dict, dataset, sampler, collate: Callable,
                 step_fn: Callable, evaluate: Callable | None, total_steps: int, epochs: int,
                 select_metric: str = "t2v/R@1", max_steps: int | None = None, run_meta: dict | None = None,
                 on_event: Callable[[dict], None] | None = None):
    """Optimiser, DDP, config.json (fresh runs), the :class:`~c4c.train.loop.Trainer`, resumed if asked."""
    import torch

    from c4c.train.loop import LoopConfig, Trainer
    from c4c.train.optim import freeze_clip_layers, make_optimizer

    frozen = freeze_clip_layers(model, cfg.freeze_layers)
    optimizer, scheduler = make_optimizer(model, optimizer=cfg.optimizer, lr=cfg.lr, coef_lr=cfg.coef_lr,
                                          weight_decay=cfg.weight_decay, schedule=cfg.schedule,
                                          warmup=cfg.warmup, total_steps=total_steps)
    wrapped = model
    dist = start.dist
    if dist.distributed:
        wrapped = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.local_rank] if dist.device.startswith("cuda") else None,
            find_unused_parameters=True)
    config = {**config, "parameters": {"total": sum(p.numel() for p in model.parameters()), **frozen}}
    if dist.is_main and start.resumed_from is None:
        start.folder.write_config(config)
        from c4c.model.heads import random_init_note

        note = random_init_note(model)  # said once, by the run that is made, not by whatever loads it
        if note:
            log.warning(note)
    tracker = None
    if dist.is_main and cfg.report_to != "none":
        from c4c.train.tracking import Tracker

        tracker = Tracker(cfg.report_to, start.folder.path, config)
        forward = on_event

        def on_event(record: dict) -> None:  # noqa: F811 - the tracker sees every record first
            tracker.log(record)
            if forward is not None:
                forward(record)

    loop = LoopConfig(epochs=epochs, grad_clip=cfg.grad_clip, amp=start.amp, log_every=cfg.log_every,
                      save_every=cfg.save_every, keep_checkpoints=cfg.keep_checkpoints,
                      max_steps=cfg.max_steps if max_steps is None else max_steps, select_metric=select_metric)
    trainer = Trainer(model=model, wrapped=wrapped, optimizer=optimizer, scheduler=scheduler, dataset=dataset,
                      sampler=sampler, local_batch=start.local_batch, collate=collate, workers=cfg.workers,
                      config=loop, run_dir=start.folder.path, dist_info=dist, step_fn=step_fn, evaluate=evaluate,
                      after_step=model.clamp_logit_scale, on_event=on_event, run_meta=run_meta)
    trainer.tracker = tracker
    trainer.frame_size = _frames_on_device(cfg, dataset, dist.device)
    if start.resumed_from is not None:
        trainer.resume(start.resumed_from)
    return trainer


def _frames_on_device(cfg, dataset, device: str) -> int | None:
    """Decide where the training frames are decoded (``--frame-decoder``); when on the device, switch the
    dataset to JPEG items and return the frame size the trainer decodes to, else None."""
    from c4c.video.jpeg import frame_decoder

    choice = getattr(cfg, "frame_decoder", "cpu")
    store = getattr(dataset, "store", None)
    if frame_decoder(choice, device) != "cuda":
        return None
    if not hasattr(dataset, "encoded_frames") or store is None or store.settings.codec != "jpeg":
        why = "the frame store holds raw frames" if store is not None else f"{type(dataset).__name__} items are decoded in the loader"
        (log.warning if choice == "cuda" else log.info)("frames are decoded on the CPU (%s)", why)
        return None
    dataset.encoded_frames = True
    log.info("JPEG frames are decoded on %s in batches (nvJPEG)", device)
    return int(store.settings.size)


def fit(trainer):
    """Run the loop, then close the process group whatever happens."""
    from c4c.train.distributed import cleanup

    try:
        return trainer.fit()
    finally:
        if getattr(trainer, "tracker", None) is not None:
            trainer.tracker.close()
        cleanup()


def keep_selected(start: RunStart, trainer, selection: str, meta: dict) -> dict | None:
    """The metrics of the kept epoch; with selection "last", write the last epoch's weights to best/."""
    from c4c.run import checkpoint

    state = trainer.state
    if selection == "last" and start.dist.is_main and state.history:
        checkpoint.save(start.folder.best_dir, trainer.model.state_dict(), None,
                        {**meta, "epoch": state.history[-1]["epoch"], "step": state.step, "selection": "last"})
    if state.best_epoch is None:
        return None
    return next((h.get("metrics") for h in state.history if h.get("epoch") == state.best_epoch), None)


@dataclass
class TrainResult:
    """How a run with epoch-wise selection (finetune, caption train) ended."""

    run_dir: Path
    best_epoch: int | None
    best_metrics: dict | None
    selection: str                         # val | test | last
    steps: int
    seconds: float
    history: list[dict]


def train_and_select(cfg, start: RunStart, *, task: str, model, config: dict, dataset, sampler, step_fn: Callable,
                     score: Callable[[], dict] | None, selection: str, protocol: str, total_steps: int,
                     select_metric: str = "t2v/R@1", on_event: Callable[[dict], None] | None = None,
                     started: float) -> TrainResult:
    """Train ``cfg.epochs`` epochs, ``score()`` the selection split after each (main process; None: no
    selection split), keep the best (or the last) epoch in best/, write results.json."""
    import time

    from c4c.data.video_text import collate
    from c4c.train.distributed import broadcast_object

    def evaluate(epoch: int) -> dict | None:
        if score is None:
            return None
        metrics = None
        if start.dist.is_main:
            metrics = {**score(), "split": selection}
        return broadcast_object(metrics)

    run_meta = {"task": task, "sim": config["sim"], "clip": config["clip"], "patch": config["patch"]}
    trainer = make_trainer(cfg, start, model=model, config=config, dataset=dataset, sampler=sampler,
                           collate=collate, step_fn=step_fn, evaluate=evaluate, total_steps=total_steps,
                           epochs=cfg.epochs, select_metric=select_metric, run_meta=run_meta, on_event=on_event)
    state = fit(trainer)
    best_metrics = keep_selected(start, trainer, selection, run_meta)
    result = TrainResult(run_dir=start.folder.path, best_epoch=state.best_epoch, best_metrics=best_metrics,
                         selection=selection, steps=state.step, seconds=time.perf_counter() - started,
                         history=state.history)
    if start.dist.is_main:
        start.folder.write_results({"task": task, "best_epoch": state.best_epoch, "metrics": best_metrics,
                                    "selection": selection, "protocol": protocol, "steps": state.step,
                                    "seconds": round(result.seconds, 1)})
    return result
