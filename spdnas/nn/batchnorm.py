"""Riemannian batch normalisation of SPD matrices (Brooks et al. 2019, "SPDNetBN")."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import geoopt
import torch
from torch import Tensor, nn

from spdnas.geometry.airm import congruence, geodesic, karcher_mean
from spdnas.geometry.spectral import INVSQRT, SQRT, spectral_apply
from spdnas.geometry.validate import check_spd, trusted


class BatchNormSPD(nn.Module):
    """Centre a batch at its Karcher mean and re-bias it by a learned SPD matrix.

    Training: ``G`` = Karcher mean of all matrices in the batch (over batch and channels,
    as in SPDNetBN), ``Y = B^{1/2} G^{-1/2} X G^{-1/2} B^{1/2}``; the running mean moves along
    the geodesic towards ``G`` with ``momentum``. Evaluation uses the running mean.
    The bias ``B`` is a :class:`geoopt.ManifoldParameter` on the SPD manifold; the running mean
    is a buffer, so it is part of the saved state.

    Parameters
    ----------
    dim : int
        Matrix size ``n``.
    momentum : float
        Geodesic step of the running mean towards each batch mean.
    karcher_iterations : int
        Karcher-flow steps for the batch mean (1 as in the paper).
    karcher_tol : float, optional
        Stop the flow early once its step norm is below this.

    Shapes
    ------
    input ``(B, C, n, n)`` → output ``(B, C, n, n)``
    """

    def __init__(self, dim: int, momentum: float = 0.1, karcher_iterations: int = 1,
                 karcher_tol: float | None = None, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None):
        super().__init__()
        self.dim = dim
        self.momentum = float(momentum)
        self.karcher_iterations = int(karcher_iterations)
        self.karcher_tol = karcher_tol
        eye = torch.eye(dim, dtype=dtype, device=device)
        self.bias = geoopt.ManifoldParameter(eye.clone(), manifold=geoopt.SymmetricPositiveDefinite())
        self.register_buffer("running_mean", eye.clone())
        self.update_running_stats = True
        self.sync: tuple[Callable[[Tensor], Tensor], int] | None = None

    def synchronise(self, sum_reduce: Callable[[Tensor], Tensor] | None, world: int = 1) -> None:
        """Average over the whole global batch of ``world`` data-parallel processes (each with
        an equal share): ``sum_reduce`` is a differentiable all-reduce (sum); ``None`` undoes."""
        self.sync = None if sum_reduce is None else (sum_reduce, world)

    def batch_mean(self, x: Tensor) -> Tensor:
        """Karcher mean of all matrices of ``x`` (shape ``(B, C, n, n)``), shape ``(n, n)``.

        With :meth:`synchronise` set, the mean of the global batch across processes.
        """
        flat = x.reshape(-1, self.dim, self.dim)
        if self.sync is None:
            return karcher_mean(flat, iterations=self.karcher_iterations, tol=self.karcher_tol)
        sum_reduce, world = self.sync
        weights = torch.full((flat.shape[0],), 1.0 / (flat.shape[0] * world), dtype=x.dtype, device=x.device)
        return karcher_mean(flat, weights, iterations=self.karcher_iterations, tol=self.karcher_tol,
                            sum_reduce=sum_reduce)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[-1] != self.dim:
            raise ValueError(f"BatchNormSPD expects (B, C, {self.dim}, {self.dim}), got {tuple(x.shape)}")
        check_spd(x, "BatchNormSPD input")
        with trusted():
            if self.training:
                mean = self.batch_mean(x)
                if self.update_running_stats:
                    with torch.no_grad():
                        self.running_mean.copy_(geodesic(self.running_mean, mean.detach(), self.momentum))
            else:
                mean = self.running_mean
            mean_isqrt = spectral_apply(mean, INVSQRT, validate=False)[0]
            bias_sqrt = spectral_apply(self.bias, SQRT, validate=False)[0]
            return congruence(x, bias_sqrt @ mean_isqrt)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, momentum={self.momentum:g}, karcher_iterations={self.karcher_iterations}"


@contextmanager
def frozen_running_stats(model: nn.Module) -> Iterator[None]:
    """Keep every batch norm in ``model`` from updating its running statistics: the running
    mean of each :class:`BatchNormSPD`, and the buffers of torch's own batch norms (those of the
    Euclidean NAS baselines), which are put back as they were on leaving.

    Batch statistics are still used in training mode; this is for the extra forward passes
    of the architecture step (validation batch, virtual step, finite differences), which must
    not move the running statistics.
    """
    layers = [m for m in model.modules() if isinstance(m, BatchNormSPD)]
    previous = [m.update_running_stats for m in layers]
    euclidean = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [{k: v.clone() for k, v in m.named_buffers(recurse=False)} for m in euclidean]
    for m in layers:
        m.update_running_stats = False
    try:
        yield
    finally:
        for m, flag in zip(layers, previous, strict=True):
            m.update_running_stats = flag
        with torch.no_grad():
            for m, buffers in zip(euclidean, saved, strict=True):
                for name, value in buffers.items():
                    getattr(m, name).copy_(value)
