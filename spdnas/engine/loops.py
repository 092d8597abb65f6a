"""Epoch loops: search, train, evaluate. No Ray here: distributed runs inject reducers.

``grad_reduce`` averages a list of gradients across workers; ``sum_reduce`` sums a metric
tensor across workers. Both are the identity in a single process. A step whose loss is not
finite, or whose eigendecompositions fail (weights gone to inf/nan), stops the run with a
:class:`DivergedError` naming the epoch and step; so does an evaluation with non-finite logits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spdnas.engine.batches import SINGLE_PROCESS, Sharding, TensorData, require_steps, shard_slice
from spdnas.progress import Progress
from spdnas.search.bilevel import GradReducer
from spdnas.search.searcher import BilevelSearcher, clip_and_reduce

SumReducer = Callable[[Tensor], Tensor]
BufferSync = Callable[[nn.Module], None]  # makes a model's buffers (running means) equal on all workers


class DivergedError(ValueError):
    """The weights diverged: a loss is not finite or an eigendecomposition failed."""


def _at(phase: str, epoch: int, step: int) -> str:
    return f"{phase} epoch {epoch + 1}, step {step + 1}"


@contextmanager
def _diverging(where: str) -> Iterator[None]:
    """Turn an eigendecomposition failure (non-finite weights or features) into a
    :class:`DivergedError` saying ``where`` it happened."""
    try:
        yield
    except torch.linalg.LinAlgError:
        raise _diverged(where, "an eigendecomposition failed (non-finite matrices)") from None


def _check_finite(where: str, **losses: float) -> None:
    for name, value in losses.items():
        if not math.isfinite(value):
            raise _diverged(where, f"the {name.replace('_', ' ')} is {value}")


def _diverged(where: str, what: str) -> DivergedError:
    return DivergedError(f"{where}: {what}; the weights have diverged. Start again (--no-resume, or "
                         "another name=...) with a lower learning rate, with gradient clipping (grad_clip), "
                         "or, from float32, in float64 (runtime.dtype=float64)")


def _sum_identity(t: Tensor) -> Tensor:
    return t


def _summarise(totals: Tensor, prefix: str) -> dict[str, float]:
    """Mean loss and accuracy from summed (loss, correct, count), and the sample count (an int;
    0 for no samples, whose loss and accuracy are then 0)."""
    loss_sum, correct, count = (float(v) for v in totals)
    return {f"{prefix}_loss": loss_sum / max(count, 1.0), f"{prefix}_accuracy": correct / max(count, 1.0),
            f"{prefix}_samples": round(count)}


def search_epoch(searcher: BilevelSearcher, train: TensorData, val: TensorData, batch_size: int, seed: int,
                 epoch: int, sharding: Sharding = SINGLE_PROCESS, sum_reduce: SumReducer | None = None,
                 progress: bool = True) -> dict[str, float]:
    """One epoch of bi-level search; val batches are drawn in lockstep with train batches.

    Returns training loss/accuracy (before each weight step) and the mean architecture-step
    validation loss, summed over all workers.
    """
    sum_reduce = sum_reduce or _sum_identity
    steps = min(sharding.steps_per_epoch(len(train), batch_size),
                sharding.steps_per_epoch(len(val), batch_size))
    require_steps(steps, batch_size, sharded=sharding.local_data, search_train=len(train),
                  search_val=len(val))
    bar = Progress(f"search epoch {epoch + 1}", steps, enabled=progress and sharding.rank == 0,
                   live_only=True)
    train_iter = sharding.batches(train, batch_size, seed, epoch)
    val_iter = sharding.batches(val, batch_size, seed + 1, epoch)
    totals = torch.zeros(4, dtype=torch.float64)
    for step, train_batch, val_batch in zip(range(steps), train_iter, val_iter, strict=False):
        where = _at("search", epoch, step)
        with _diverging(where):
            m = searcher.step(train_batch, val_batch)
        _check_finite(where, training_loss=m.train_loss, validation_loss=m.val_loss)
        totals += torch.tensor([m.train_loss * m.train_count, m.train_correct, m.train_count,
                                m.val_loss * m.train_count], dtype=torch.float64)
        bar.update(loss=m.train_loss, acc=m.train_correct / max(m.train_count, 1), val_loss=m.val_loss)
    totals = sum_reduce(totals)
    out = _summarise(totals[:3], "train")
    out["arch_val_loss"] = float(totals[3]) / max(float(totals[2]), 1.0)
    bar.close(**{k: v for k, v in out.items() if not k.endswith("samples")})
    return out


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, data: TensorData, batch_size: int,
                seed: int, epoch: int, sharding: Sharding = SINGLE_PROCESS, grad_clip: float | None = None,
                grad_reduce: GradReducer | None = None, sum_reduce: SumReducer | None = None,
                progress: bool = True) -> dict[str, float]:
    """One epoch of supervised training of ``model`` (logits from ``model(x)``)."""
    sum_reduce = sum_reduce or _sum_identity
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    steps = sharding.steps_per_epoch(len(data), batch_size)
    require_steps(steps, batch_size, sharded=sharding.local_data, train=len(data))
    bar = Progress(f"train epoch {epoch + 1}", steps, enabled=progress and sharding.rank == 0,
                   live_only=True)
    totals = torch.zeros(3, dtype=torch.float64)
    for step, (x, y) in zip(range(steps), sharding.batches(data, batch_size, seed, epoch), strict=False):
        optimizer.zero_grad(set_to_none=True)
        where = _at("train", epoch, step)
        with _diverging(where):
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            value = float(loss.detach())
            _check_finite(where, training_loss=value)
            loss.backward()
        clip_and_reduce(params, grad_reduce, grad_clip)
        optimizer.step()
        correct = int((logits.detach().argmax(1) == y).sum())
        totals += torch.tensor([value * len(y), correct, len(y)], dtype=torch.float64)
        bar.update(loss=value, acc=correct / max(len(y), 1))
    out = _summarise(sum_reduce(totals), "train")
    bar.close(**{k: v for k, v in out.items() if not k.endswith("samples")})
    return out


@torch.no_grad()
def evaluate(forward: Callable[[Tensor], Tensor], data: TensorData, batch_size: int, prefix: str,
             sharding: Sharding = SINGLE_PROCESS, sum_reduce: SumReducer | None = None) -> dict[str, float]:
    """Loss and accuracy of ``forward`` over ``data`` (replicated data: each worker takes its
    slice of each batch; local shards: each worker evaluates its own).

    The caller puts the model in evaluation mode (batch norms on running statistics).
    """
    sum_reduce = sum_reduce or _sum_identity
    rank, world = sharding.evaluation_slice()
    totals = torch.zeros(3, dtype=torch.float64)
    n = len(data)
    for start in range(0, n, batch_size):
        index = torch.arange(start, min(start + batch_size, n))
        mine = index[shard_slice(len(index), rank, world)].to(data.y.device)
        if len(mine) == 0:
            continue
        x, y = data.x[mine], data.y[mine]
        where = f"evaluating on {prefix}"
        with _diverging(where):
            logits = forward(x)
        if not bool(torch.isfinite(logits).all()):  # would count as class-0 predictions
            raise _diverged(where, "the logits are not finite")
        loss = F.cross_entropy(logits, y, reduction="sum")
        totals += torch.tensor([float(loss), int((logits.argmax(1) == y).sum()), len(y)], dtype=torch.float64)
    return _summarise(sum_reduce(totals), prefix)
