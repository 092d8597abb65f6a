"""Reductions across data-parallel workers, on top of ``torch.distributed``.

The engine takes these as plain callables (``grad_reduce``, ``sum_reduce``); nothing below
``spdnas.distributed`` knows about processes.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import Tensor, nn

from spdnas.data import SampleIndex


def average_gradients(grads: list[Tensor]) -> list[Tensor]:
    """Mean of each gradient over all workers, with one all-reduce of a flat buffer.

    Every worker must hold equally many samples per step (the runner guarantees it), so the
    mean of the workers' mean-loss gradients is the gradient of the global mean loss.
    """
    if not grads:
        return grads
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    out, offset = [], 0
    for g in grads:
        out.append(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()
    return out


def sum_metrics(totals: Tensor) -> Tensor:
    """Sum a small metrics tensor over all workers (not differentiable)."""
    device = totals.device
    if dist.get_backend() == "nccl" and device.type != "cuda":
        totals = totals.to("cuda")
    totals = totals.clone()
    dist.all_reduce(totals, op=dist.ReduceOp.SUM)
    return totals.to(device)


def differentiable_sum(t: Tensor) -> Tensor:
    """All-reduce (sum) whose backward all-reduces the gradient: for synchronised batch norm."""
    return dist_fn.all_reduce(t, op=dist.ReduceOp.SUM)


def min_over_workers(value: int) -> int:
    """The smallest of an integer held by every worker."""
    t = torch.tensor([value], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        t = t.to("cuda")
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def gather_sample_index(index: SampleIndex) -> SampleIndex:
    """Every worker's rows as one index (ids, labels, splits, groups; no matrices), in rank order."""
    parts: list[SampleIndex | None] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, index)
    return SampleIndex.merged(parts)


def broadcast_buffers(model: nn.Module) -> None:
    """Give every worker rank 0's buffers (the batch norms' running means).

    For batch norms that are not synchronised: each worker's running means follow its own part
    of the batches, so after an epoch the workers hold different models. Called after each
    epoch's training, before evaluation and checkpointing, as ``DistributedDataParallel``'s
    ``broadcast_buffers``: the workers then evaluate one model, rank 0's, the one it saves.
    """
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)


def synchronise_batch_norms(model: nn.Module, world: int) -> int:
    """Make every Riemannian batch norm in ``model`` average over the global batch."""
    from spdnas.nn.batchnorm import BatchNormSPD

    layers = [m for m in model.modules() if isinstance(m, BatchNormSPD)]
    for layer in layers:
        layer.synchronise(differentiable_sum, world)
    return len(layers)
