"""A deterministic, resumable, distributed-aware sampler for training epochs."""

from __future__ import annotations

import logging
from typing import Iterator

import numpy as np
import torch

from c4c.errors import C4CError

log = logging.getLogger(__name__)


class EpochSampler(torch.utils.data.Sampler[int]):
    """The indices one rank trains on in one epoch.

    The epoch's order is a permutation of ``range(n)`` drawn from ``(seed, epoch)`` (identity without
    ``shuffle``). Without ``drop_last`` it is padded to a multiple of ``world_size`` by repeating its
    start (like ``DistributedSampler``); with ``drop_last`` it is cut so every rank gets the same number of
    full batches of ``batch_size``. Rank ``r`` takes positions ``r::world_size``.

    Resuming: ``skip(k)`` (or ``load_state_dict``) makes the next iteration start after the first ``k``
    indices of this rank. ``position`` counts indices handed out in the current epoch; a DataLoader
    prefetches, so checkpoint the items the loop really consumed: ``state_dict(position=steps * batch_size)``.
    """

    def __init__(self, n: int, *, batch_size: int, shuffle: bool = True, seed: int = 42, rank: int = 0,
                 world_size: int = 1, drop_last: bool = True) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in a world of size {world_size}")
        if batch_size < 1:
            raise C4CError(f"batch size must be at least 1, got {batch_size}")
        self.n = int(n)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        if drop_last:
            self.num_samples = (self.n // world_size) // self.batch_size * self.batch_size
            if self.num_samples == 0:
                raise C4CError(f"{self.n} training items make no full batch of {self.batch_size} per process "
                               f"on {world_size} process(es)", hint="use a smaller batch size or more data")
        else:
            self.num_samples = -(-self.n // world_size)
        self.total_size = self.num_samples * world_size
        self.epoch = 0
        self._start = 0  # where the next iteration begins (set by skip)
        self._position = 0  # indices of this rank handed out in the current epoch

    def __len__(self) -> int:
        """Indices of this rank in a whole epoch (a multiple of batch_size with drop_last)."""
        return self.num_samples

    @property
    def batches_per_epoch(self) -> int:
        """Batches of this rank in a whole epoch (the last one may be partial without drop_last)."""
        return -(-self.num_samples // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; a new epoch starts from its beginning (a pending skip of the same epoch stays)."""
        if int(epoch) != self.epoch:
            self.epoch = int(epoch)
            self._start = 0
            self._position = 0

    def epoch_order(self) -> np.ndarray:
        """All ranks' indices of the current epoch, int64 ``[total_size]`` (padded or cut)."""
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        else:
            order = np.arange(self.n)
        if self.total_size > self.n:  # pad by repeating from the start (as often as needed)
            order = np.resize(order, self.total_size)
        return order[: self.total_size].astype(np.int64)

    def indices(self) -> np.ndarray:
        """This rank's indices of the current epoch, int64 ``[len(self)]``."""
        return self.epoch_order()[self.rank::self.world_size]

    def skip(self, k: int) -> None:
        """Start the next iteration after the first ``k`` indices of this rank in the current epoch."""
        if not 0 <= int(k) <= self.num_samples:
            raise ValueError(f"cannot skip {k} of {self.num_samples} indices")
        self._start = self._position = int(k)

    def __iter__(self) -> Iterator[int]:
        mine = self.indices()
        begin, self._start = self._start, 0
        self._position = begin
        for i in mine[begin:].tolist():
            self._position += 1
            yield i

    def state_dict(self, position: int | None = None) -> dict:
        """Epoch and position (indices of this rank consumed this epoch), plus what they depend on."""
        return {"epoch": self.epoch, "position": self._position if position is None else int(position),
                "n": self.n, "seed": self.seed, "shuffle": self.shuffle, "world_size": self.world_size,
                "batch_size": self.batch_size, "drop_last": self.drop_last}

    def load_state_dict(self, state: dict) -> None:
        """Resume at the saved epoch and position; C4CError when the data or layout differ."""
        for key in ("n", "seed", "shuffle", "world_size", "batch_size", "drop_last"):
            if key in state and state[key] != getattr(self, key):
                raise C4CError(f"cannot resume the data order: {key} was {state[key]!r}, "
                               f"now {getattr(self, key)!r}",
                               hint="resume with the same data, seed, batch size and number of processes")
        self.epoch = int(state["epoch"])
        self.skip(int(state["position"]))
