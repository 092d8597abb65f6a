"""Deterministic, shardable mini-batches over in-memory tensors.

The order of epoch ``e`` is a permutation drawn from ``(seed, e)`` alone, so a resumed run sees
exactly the batches an uninterrupted one would, and N data-parallel workers together see
exactly the global batches one worker would (worker ``r`` takes its contiguous slice of each
global batch).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class TensorData:
    """Samples ``x (N, n, n)`` (SPD; ``(N, d)`` feature vectors for the Euclidean baselines) and
    integer labels ``y (N,)`` on one device."""

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"{self.x.shape[0]} samples but {self.y.shape[0]} labels")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device | str, dtype: torch.dtype) -> TensorData:
        return TensorData(self.x.to(device=device, dtype=dtype), self.y.to(device=device))

    def subset(self, index: Tensor) -> TensorData:
        return TensorData(self.x[index], self.y[index])


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The sample order of ``epoch``: a permutation of ``range(n)`` seeded by ``(seed, epoch)``."""
    generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=generator)


def shard_slice(batch_size: int, rank: int, world: int) -> slice:
    """Rows of a global batch of ``batch_size`` that worker ``rank`` of ``world`` takes."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside world of size {world}")
    per, extra = divmod(batch_size, world)
    start = rank * per + min(rank, extra)
    return slice(start, start + per + (1 if rank < extra else 0))


def global_batches(n: int, batch_size: int, seed: int, epoch: int, drop_last: bool) -> list[Tensor]:
    """Index tensors of the epoch's global batches."""
    order = epoch_permutation(n, seed, epoch)
    stop = n - n % batch_size if drop_last else n
    return [order[i:i + batch_size] for i in range(0, stop, batch_size)]


def iterate(data: TensorData, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1,
            drop_last: bool = True) -> Iterator[tuple[Tensor, Tensor]]:
    """This worker's share ``(x, y)`` of each global batch of the epoch."""
    for index in global_batches(len(data), batch_size, seed, epoch, drop_last):
        mine = index[shard_slice(len(index), rank, world)].to(data.y.device)
        yield data.x[mine], data.y[mine]


def num_batches(n: int, batch_size: int, drop_last: bool = True) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


def require_steps(steps: int, batch_size: int, sharded: bool, **sizes: int) -> None:
    """Refuse an epoch without a single full batch (only full batches are used).

    Parameters
    ----------
    steps : int
        Full batches in the epoch.
    batch_size : int
    sharded : bool
        Whether ``sizes`` count one worker's shard (``distributed.data=shard``), which the
        message then says; False for a whole dataset's splits.
    **sizes : int
        Samples of each split, by name (``search_train=24``).

    Raises
    ------
    ValueError
        Naming the batch size and the samples.
    """
    if steps < 1:
        shown = ", ".join(f"{name.replace('_', '-')} {size}" for name, size in sizes.items())
        shard = "; with distributed.data=shard, per worker" if sharded else ""
        raise ValueError(f"no full batch of {batch_size} in this epoch (samples: {shown}{shard}): lower the "
                         "batch size or use more data")


@dataclass(frozen=True)
class Sharding:
    """How one of ``world`` data-parallel workers takes its part of the data.

    ``local_data=False`` (replicated data): every worker holds all samples and takes its slice
    of each global batch, so N workers see exactly the batches one worker would.
    ``local_data=True``: every worker holds only its own shard and draws local batches of
    ``batch_size / world`` from it; ``steps`` (the same on every worker) caps each epoch.
    """

    rank: int = 0
    world: int = 1
    local_data: bool = False
    steps: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} outside world of size {self.world}")

    def local_batch_size(self, batch_size: int) -> int:
        if batch_size % self.world:
            raise ValueError(f"batch size {batch_size} is not divisible by {self.world} workers")
        return batch_size // self.world

    def batches(self, data: TensorData, batch_size: int, seed: int,
                epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        """This worker's ``(x, y)`` batches of the epoch (full global batches only)."""
        if self.local_data:
            return iterate(data, self.local_batch_size(batch_size), seed + 7919 * self.rank, epoch)
        self.local_batch_size(batch_size)
        return iterate(data, batch_size, seed, epoch, self.rank, self.world)

    def steps_per_epoch(self, n: int, batch_size: int) -> int:
        size = self.local_batch_size(batch_size) if self.local_data else batch_size
        local = num_batches(n, size)
        return local if self.steps is None else min(local, self.steps)

    def evaluation_slice(self) -> tuple[int, int]:
        """``(rank, world)`` for slicing evaluation batches: none when the data is local."""
        return (0, 1) if self.local_data else (self.rank, self.world)


SINGLE_PROCESS = Sharding()
