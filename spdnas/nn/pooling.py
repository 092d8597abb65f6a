"""Riemannian pooling: spatial pooling in the log domain, and learned channel pooling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spdnas.geometry.airm import karcher_mean
from spdnas.geometry.mixture import sparsemax
from spdnas.geometry.spectral import EXP, LOG, spectral_apply
from spdnas.geometry.validate import check_spd, trusted


def pooled_size(dim: int, kernel: int, stride: int) -> int:
    """Matrix size after 2-D pooling of an ``dim × dim`` matrix (no padding)."""
    return (dim - kernel) // stride + 1


class RiemannianPool2d(nn.Module):
    """LogEig → 2-D average or max pooling of the log-matrix → ExpEig.

    Pooling a symmetric matrix with a square window and equal strides keeps it symmetric, so
    the exponential maps it back to an SPD matrix of size ``(n − kernel)//stride + 1``.
    With ``from_log=True`` the input is already the matrix logarithm (so a logarithm computed
    once for several consumers is not recomputed).

    Shapes
    ------
    input ``(B, C, n, n)`` → output ``(B, C, m, m)``
    """

    def __init__(self, mode: str, kernel: int, stride: int, from_log: bool = False):
        super().__init__()
        if mode not in ("avg", "max"):
            raise ValueError(f"pooling mode must be 'avg' or 'max', got {mode!r}")
        self.mode, self.kernel, self.stride = mode, int(kernel), int(stride)
        self.from_log = from_log

    def forward(self, x: Tensor) -> Tensor:
        log = x if self.from_log else spectral_apply(x, LOG)[0]
        pool = F.avg_pool2d if self.mode == "avg" else F.max_pool2d
        pooled = pool(log, self.kernel, self.stride)
        return spectral_apply(pooled, EXP, validate=False)[0]

    def extra_repr(self) -> str:
        return f"{self.mode}, kernel={self.kernel}, stride={self.stride}, from_log={self.from_log}"


class WeightedChannelPooling(nn.Module):
    """Each output channel is the weighted Karcher mean of the input channels.

    The weights are ``sparsemax`` of a learned ``(C, C)`` logit matrix (row ``o`` weighs the
    inputs of output channel ``o``), initialised uniformly in [0, 1) as in SPDNetNAS. Only the
    ``k`` largest weights of each row enter the mean, ``k`` the largest support of any row:
    the others are exactly zero and sparsemax passes them no gradient, so this is exact.

    Shapes
    ------
    input ``(B, C, n, n)`` → output ``(B, C, n, n)``
    """

    def __init__(self, channels: int, karcher_iterations: int = 1, karcher_tol: float | None = None,
                 dtype: torch.dtype | None = None, device: torch.device | str | None = None):
        super().__init__()
        self.channels = channels
        self.karcher_iterations = int(karcher_iterations)
        self.karcher_tol = karcher_tol
        self.logits = nn.Parameter(torch.rand(channels, channels, dtype=dtype, device=device))

    def forward(self, x: Tensor) -> Tensor:
        check_spd(x, "WeightedChannelPooling input")
        weights = sparsemax(self.logits)  # (C_out, C_in)
        support = int((weights > 0).sum(-1).max())
        top, index = weights.topk(support, dim=-1)  # (C_out, k)
        chosen = x[:, index]  # (B, C_out, k, n, n)
        with trusted():
            return karcher_mean(chosen, top, iterations=self.karcher_iterations, tol=self.karcher_tol)
