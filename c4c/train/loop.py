"""The one training loop shared by finetune, pretrain and caption train.

It owns: epochs and the resumable sampler, AMP, gradient clipping, the optimiser and scheduler
steps, ``metrics.jsonl``, checkpoints (every N steps and at each epoch end), ``best/`` on the
selection metric, exact resume, the stop on a non-finite loss, and Ctrl-C (:mod:`c4c.interrupt`): the
first stops after the optimiser step in progress, saving that step's checkpoint (resumable exactly, as
the one every ``--save-every`` writes), the second at once. What a step computes is given by
``step_fn`` (see :func:`contrastive_step`); the two ways of accumulating gradients over micro-batches,
:func:`micro_batch_step` and :func:`gradient_cached_step`, serve every stage's step.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from c4c import interrupt
from c4c.atomic import disk_full_is_an_error
from c4c.data.device_frames import decode_batch
from c4c.errors import C4CError, TrainingDiverged
from c4c.run import checkpoint
from c4c.train.distributed import DistInfo, all_reduce_mean, barrier
from c4c.train.host_memory import keep_freed_memory

log = logging.getLogger(__name__)


@dataclass
class LoopConfig:
    epochs: int = 5
    grad_clip: float = 1.0           # global gradient-norm clipping (0: off)
    amp: str = "none"                # none | bf16 | fp16
    log_every: int = 10              # optimiser steps between metrics.jsonl lines
    save_every: int = 0              # also checkpoint every N optimiser steps (0: epoch ends only)
    keep_checkpoints: int = 2
    max_steps: int | None = None     # stop after this many optimiser steps (smoke runs, tests)
    select_metric: str = "t2v/R@1"   # higher is better; best/ holds the best epoch


@dataclass
class LoopState:
    """Everything that must survive a restart besides weights and optimiser."""

    epoch: int = 0
    position: int = 0                # items of this epoch already consumed (this rank)
    step: int = 0                    # optimiser steps done
    best: float | None = None
    best_epoch: int | None = None
    history: list[dict] = field(default_factory=list)


def autocast_context(amp: str, device: str):
    if amp == "none":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    if dtype is None:
        raise C4CError(f"unknown --amp {amp!r}; choose none, bf16 or fp16")
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def split_batch(batch: dict[str, torch.Tensor], parts: int) -> list[dict[str, torch.Tensor]]:
    n = next(iter(batch.values())).shape[0]
    if parts < 1 or n % parts:
        raise C4CError(f"batch of {n} cannot be split into {parts} equal micro-batches",
                       hint="make --batch-size a multiple of --grad-accum x processes")
    size = n // parts
    return [{k: v[i * size:(i + 1) * size] for k, v in batch.items()} for i in range(parts)]


def contrastive_step(model, wrapped, batch: dict[str, torch.Tensor], *, accum: int, amp_ctx, scaler,
                     dist_info: DistInfo) -> float:
    """Forward and backward of one optimiser step of the retrieval loss; returns the loss.

    With ``accum > 1`` and a loose head the contrastive batch stays the whole batch
    (:func:`gradient_cached_step`): gradients equal one pass over the whole batch, with the activation
    memory of one micro-batch. The tight head scores pairs with a cross encoder and cannot be split this
    way: it uses per-micro-batch losses (:func:`micro_batch_step`, as per-process batches in the reference).
    """
    micro = split_batch(batch, accum)
    if accum == 1 or not model.loose:
        return micro_batch_step(wrapped, micro, lambda net, mb: net(mb["text_ids"], mb["video"], mb["video_mask"]),
                                amp_ctx=amp_ctx, scaler=scaler, dist_info=dist_info)

    def embed(net, mb: dict) -> tuple[torch.Tensor, torch.Tensor]:  # text: [b, D], video (the head's): [b, T, D]
        return net(mb["text_ids"], mb["video"], mb["video_mask"], mode="embed")

    loss, _ = gradient_cached_step(model, wrapped, micro, embed=embed,
                                   batch_loss=lambda text, video: model.loss_from_features(text, video,
                                                                                           batch["video_mask"]),
                                   rerun=lambda net, mb: (None, embed(net, mb)),
                                   amp_ctx=amp_ctx, scaler=scaler, dist_info=dist_info)
    return loss


def micro_batch_step(wrapped, micro: list[dict[str, torch.Tensor]], loss_fn: Callable, *, amp_ctx, scaler,
                     dist_info: DistInfo) -> float:
    """Back-propagate ``loss_fn(wrapped, mb) / len(micro)`` of each micro-batch in turn (DDP syncs the
    gradients on the last one); returns the summed loss. The plain accumulation: each micro-batch is its
    own loss batch."""
    accum = len(micro)
    total = 0.0
    for k, mb in enumerate(micro):
        sync = contextlib.nullcontext() if k == accum - 1 or not dist_info.distributed else wrapped.no_sync()
        with sync:
            with amp_ctx:
                loss = loss_fn(wrapped, mb) / accum
            backward(loss, scaler)
        total += float(loss.detach())
    return total


def gradient_cached_step(model, wrapped, micro: list[dict[str, torch.Tensor]], *, rerun: Callable,
                         embed: Callable | None = None, batch_loss: Callable | None = None,
                         batch_weight: float = 1.0, amp_ctx, scaler, dist_info: DistInfo) -> tuple[float, float]:
    """Backward of ``batch_weight x batch_loss(features of the whole batch) + the micro-batches' own terms``
    with the activation memory of one micro-batch (gradient caching); returns ``(batch loss (unweighted),
    sum of the own terms)``.

    1) ``embed(model, mb)`` -> a tuple of feature tensors ``[b, ...]`` for every micro-batch, without
       gradients (the RNG state before each is kept);
    2) ``batch_loss(*features)`` on the features of all micro-batches, concatenated, back-propagated to them;
    3) ``rerun(wrapped, mb)`` -> ``(own loss term or None, the same features, with gradients)`` for each
       micro-batch again, under the RNG state of step 1: its own term and the cached feature gradients are
       back-propagated together.
    Without ``embed`` there is no batch term (it counts 0.0) and step 3 runs alone. Gradients equal one
    pass over the whole batch; under DDP they are averaged once, at the end.
    """
    rng: list[tuple] = []
    cached: list[tuple[torch.Tensor, ...]] = [() for _ in micro]
    batch_term = 0.0
    if embed is not None:
        features = []
        with torch.no_grad():
            for mb in micro:
                rng.append(capture_rng(mb["video"].device))
                with amp_ctx:
                    out = embed(model, mb)
                features.append([f.float() for f in out])
        whole = [torch.cat(parts).requires_grad_(True) for parts in zip(*features)]
        with amp_ctx:
            loss = batch_loss(*whole)
        backward(batch_weight * loss, scaler)  # with fp16 the cached gradients carry the loss scale, as they should
        cached = list(zip(*(w.grad.split(f.shape[0]) for w, f in zip(whole, features[0]))))
        batch_term = float(loss.detach())
    own_total = 0.0
    no_sync = wrapped.no_sync() if dist_info.distributed else contextlib.nullcontext()
    with no_sync:
        for k, mb in enumerate(micro):
            if rng:
                restore_rng(rng[k], mb["video"].device)
            with amp_ctx:
                own, feats = rerun(wrapped, mb)
            outputs, grads = [f.float() for f in feats], list(cached[k])
            if own is not None:
                outputs, grads = [scaled(own, scaler), *outputs], [None, *grads]
                own_total += float(own.detach())
            torch.autograd.backward(outputs, grads)
    if dist_info.distributed:  # no_sync above: average the gradients ourselves
        import torch.distributed as dist

        for p in model.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad.div_(dist_info.world_size)
    return batch_term, own_total


def scaled(loss: torch.Tensor, scaler) -> torch.Tensor:
    """``loss`` times the fp16 grad scaler's scale when it is on."""
    return scaler.scale(loss) if scaler is not None and scaler.is_enabled() else loss


def backward(loss: torch.Tensor, scaler) -> None:
    """``loss.backward()``, through the fp16 grad scaler when it is on."""
    scaled(loss, scaler).backward()


def capture_rng(device) -> tuple:
    """The CPU (and CUDA) RNG state, so a micro-batch can be re-run with the same dropout."""
    cuda = torch.cuda.get_rng_state(device) if torch.device(device).type == "cuda" else None
    return torch.get_rng_state(), cuda


def restore_rng(state: tuple, device) -> None:
    """Undo the RNG draws since :func:`capture_rng`."""
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _metric(metrics: dict, name: str) -> float | None:
    value: Any = metrics
    for part in name.split("/"):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value)


class Trainer:
    """Runs epochs of ``step_fn`` over a resumable sampler, with logging, evaluation and checkpoints."""

    def __init__(self, *, model, wrapped, optimizer, scheduler, dataset, sampler, local_batch: int,
                 collate, workers: int, config: LoopConfig, run_dir: Path, dist_info: DistInfo,
                 step_fn: Callable, evaluate: Callable[[int], dict | None] | None = None,
                 after_step: Callable[[], None] | None = None, on_event: Callable[[dict], None] | None = None,
                 run_meta: dict | None = None) -> None:
        self.model, self.wrapped = model, wrapped
        self.optimizer, self.scheduler = optimizer, scheduler
        self.dataset, self.sampler = dataset, sampler
        self.local_batch, self.collate, self.workers = local_batch, collate, workers
        self.frame_size: int | None = None  # set: batches carry JPEG bytes, decoded on the device to this size
        self.config, self.run_dir, self.dist = config, Path(run_dir), dist_info
        self.step_fn, self.evaluate, self.after_step = step_fn, evaluate, after_step
        self.on_event = on_event or (lambda event: None)
        self.run_meta = run_meta or {}
        self.state = LoopState()
        keep_freed_memory()  # CPU steps otherwise re-fault their activations every step
        self.scaler = torch.amp.GradScaler(torch.device(dist_info.device).type, enabled=config.amp == "fp16")
        self.amp_ctx = autocast_context(config.amp, dist_info.device)

    # --- checkpoints ------------------------------------------------------------------------------

    def _train_state(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "rng": checkpoint.rng_state(),
                "loop": {"epoch": self.state.epoch, "position": self.state.position, "step": self.state.step,
                         "best": self.state.best, "best_epoch": self.state.best_epoch},
                "history": json.dumps(self.state.history)}

    def save(self) -> None:
        if not self.dist.is_main:
            return
        folder = self.run_dir / "checkpoints" / f"step-{self.state.step:07d}"
        meta = {"step": self.state.step, "epoch": self.state.epoch, "position": self.state.position}
        checkpoint.save(folder, self.model.state_dict(), self._train_state(), {**self.run_meta, **meta})
        checkpoint.write_latest(self.run_dir, folder, meta)
        checkpoint.prune(self.run_dir, self.config.keep_checkpoints)

    def resume(self, folder: Path) -> None:
        """Continue exactly from a checkpoint written by :meth:`save`."""
        self.model.load_state_dict(checkpoint.load_model_state(folder))
        state = checkpoint.load_train_state(folder)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        checkpoint.set_rng_state(state["rng"])
        loop = state["loop"]
        self.state = LoopState(epoch=loop["epoch"], position=loop["position"], step=loop["step"],
                               best=loop["best"], best_epoch=loop["best_epoch"],
                               history=json.loads(state["history"]))
        log.info("resumed from %s at epoch %d, step %d", folder, self.state.epoch, self.state.step)

    # --- the loop ---------------------------------------------------------------------------------

    def _log(self, record: dict) -> None:
        if self.dist.is_main:
            path = self.run_dir / "metrics.jsonl"
            with disk_full_is_an_error(path, hint="free space and resume with --resume: the last checkpoint is intact"):
                with open(path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(record) + "\n")
        self.on_event(record)

    def _stop_requested(self) -> bool:
        """Whether a Ctrl-C asked to stop (on any process: every rank stops at the same step)."""
        if not self.dist.distributed:
            return interrupt.requested()
        return all_reduce_mean(1.0 if interrupt.requested() else 0.0) > 0

    def _stop(self, saved: bool) -> None:
        """Stop at this step after a Ctrl-C, with its checkpoint (written now unless ``saved``)."""
        if not saved:
            self.save()
            barrier()
        raise interrupt.Interrupted(f"kept the checkpoint of step {self.state.step}", path=self.run_dir,
                                    again=interrupt.RESUME)

    def fit(self) -> LoopState:
        """Train to the last epoch (or ``max_steps``); a first Ctrl-C stops after the current step with its
        checkpoint saved (:class:`c4c.interrupt.Interrupted`), a second at once."""
        with interrupt.graceful():
            return self._fit()

    def _fit(self) -> LoopState:
        from torch.utils.data import DataLoader

        cfg = self.config
        steps_per_epoch = len(self.sampler) // self.local_batch
        if cfg.max_steps is not None and self.state.step >= cfg.max_steps:
            if self.state.step == 0 and checkpoint.latest(self.run_dir) is None:
                self.save()  # --max-steps 0: the starting weights, resumable like any checkpoint
                barrier()
            return self.state
        done = False
        while self.state.epoch < cfg.epochs and not done:
            epoch = self.state.epoch
            self.sampler.set_epoch(epoch)
            self.sampler.skip(self.state.position)
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(epoch)  # before the loader's workers copy the dataset
            loader = DataLoader(self.dataset, batch_size=self.local_batch, sampler=self.sampler,
                                num_workers=self.workers, collate_fn=self.collate, drop_last=True,
                                generator=torch.Generator().manual_seed(epoch), persistent_workers=False,
                                worker_init_fn=interrupt.ignore_in_child if self.workers else None,
                                pin_memory=self.dist.device.startswith("cuda"))
            self.on_event({"event": "epoch_start", "epoch": epoch, "steps": steps_per_epoch,
                           "done_steps": self.state.position // self.local_batch})
            self.wrapped.train()
            t_last, clips = time.perf_counter(), 0
            for batch in loader:
                if self.frame_size is not None and "video_jpeg" in batch:
                    batch = decode_batch(batch, self.frame_size, self.dist.device)
                batch = {k: v.to(self.dist.device, non_blocking=True) for k, v in batch.items()}
                self.optimizer.zero_grad(set_to_none=True)
                loss = self.step_fn(self.model, self.wrapped, batch, amp_ctx=self.amp_ctx, scaler=self.scaler,
                                    dist_info=self.dist)
                if not math.isfinite(all_reduce_mean(loss)):
                    last = checkpoint.latest(self.run_dir)
                    raise TrainingDiverged(f"the loss became {loss} at step {self.state.step + 1} (epoch {epoch}); "
                                   f"stopped without saving. Last good checkpoint: {last or 'none yet'}",
                                   hint="lower --lr, or try --amp none")
                if self.scaler.is_enabled():
                    self.scaler.unscale_(self.optimizer)
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                if self.after_step:
                    self.after_step()
                self.state.step += 1
                self.state.position += self.local_batch
                clips += self.local_batch * self.dist.world_size
                if self.state.step % cfg.log_every == 0 or self.state.position >= len(self.sampler):
                    now = time.perf_counter()
                    self._log({"event": "step", "step": self.state.step, "epoch": epoch, "loss": loss,
                               "lr": [g["lr"] for g in self.optimizer.param_groups],
                               "clips_per_s": clips / max(now - t_last, 1e-9)})
                    t_last, clips = now, 0
                else:
                    self.on_event({"event": "tick", "step": self.state.step, "loss": loss})
                saved = bool(cfg.save_every and self.state.step % cfg.save_every == 0)
                if saved:
                    self.save()
                    barrier()
                if cfg.max_steps is not None and self.state.step >= cfg.max_steps:
                    done = True
                    break
                if self.state.position < len(self.sampler) and self._stop_requested():
                    self._stop(saved)  # the epoch's last step stops after its evaluation and save, below
            if done and self.state.position < len(self.sampler):
                if not (cfg.save_every and self.state.step % cfg.save_every == 0):
                    self.save()  # stopped mid-epoch: resumable from exactly here
                    barrier()
                break
            self._end_epoch(epoch)
            if self.state.epoch < cfg.epochs and self._stop_requested():
                self._stop(saved=True)  # _end_epoch saved this step
        return self.state

    def _end_epoch(self, epoch: int) -> None:
        metrics = self.evaluate(epoch) if self.evaluate is not None else None
        record = {"event": "epoch", "epoch": epoch, "step": self.state.step}
        if metrics:
            record["metrics"] = metrics
            value = _metric(metrics, self.config.select_metric)
            if value is not None and (self.state.best is None or value >= self.state.best):
                self.state.best, self.state.best_epoch = value, epoch
                record["best"] = True
                if self.dist.is_main:
                    checkpoint.save(self.run_dir / "best", self.model.state_dict(), None,
                                    {**self.run_meta, "epoch": epoch, "step": self.state.step, "metrics": metrics})
        self.state.history.append(record)
        self.state.epoch, self.state.position = epoch + 1, 0
        self._log(record)
        self.save()
        barrier()
