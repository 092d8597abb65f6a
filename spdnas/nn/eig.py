"""Eigenvalue layers of SPDNet: ReEig, LogEig, ExpEig (shape-preserving, ``(..., n, n)``)."""

from __future__ import annotations

from torch import Tensor, nn

from spdnas.geometry.spectral import EXP, LOG, rectify_function, spectral_apply


class ReEig(nn.Module):
    """Eigenvalue rectification ``U max(Λ, ε) Uᵀ``, the SPD analogue of ReLU."""

    def __init__(self, eps: float = 1e-4):
        super().__init__()
        self.eps = float(eps)
        self._fn = rectify_function(self.eps)

    def forward(self, x: Tensor) -> Tensor:
        return spectral_apply(x, self._fn)[0]

    def extra_repr(self) -> str:
        return f"eps={self.eps:g}"


class LogEig(nn.Module):
    """Matrix logarithm ``U log(Λ) Uᵀ``: SPD matrices to the tangent space at the identity."""

    def forward(self, x: Tensor) -> Tensor:
        return spectral_apply(x, LOG)[0]


class ExpEig(nn.Module):
    """Matrix exponential ``U exp(Λ) Uᵀ``: symmetric matrices back to SPD (inverse of LogEig)."""

    def forward(self, x: Tensor) -> Tensor:
        return spectral_apply(x, EXP)[0]
