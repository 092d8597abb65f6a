"""BiMap: the bilinear map ``Y = Wᵀ X W`` with Stiefel weights (Huang & Van Gool 2017)."""

from __future__ import annotations

import geoopt
import torch
from torch import Tensor, nn


def random_stiefel(*batch: int, rows: int, cols: int, dtype: torch.dtype | None = None,
                   device: torch.device | str | None = None) -> Tensor:
    """Haar-distributed matrices with orthonormal columns, shape ``(*batch, rows, cols)``.

    Drawn from the global torch RNG (QR of a Gaussian matrix with the sign of R's diagonal
    fixed), so a seeded run initialises identically.
    """
    if cols > rows:
        raise ValueError(f"a Stiefel matrix needs rows >= cols, got {rows}x{cols}")
    gauss = torch.randn(*batch, rows, cols, dtype=dtype, device=device)
    q, r = torch.linalg.qr(gauss)
    signs = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    return q * signs.unsqueeze(-2)


class BiMap(nn.Module):
    """Bilinear map between SPD channels: ``Y_o = Σ_i W_{oi}ᵀ X_i W_{oi}``.

    One weight ``W_{oi} ∈ St(n_in, n_out)`` (orthonormal columns) per (out, in) channel pair,
    held as a :class:`geoopt.ManifoldParameter` on the Euclidean-metric Stiefel manifold, so
    a Riemannian optimizer (project, step, QR retraction) keeps it orthonormal.

    Parameters
    ----------
    in_channels, out_channels : int
    in_dim, out_dim : int
        Matrix sizes, ``out_dim <= in_dim``.

    Shapes
    ------
    input ``(B, in_channels, in_dim, in_dim)`` → output ``(B, out_channels, out_dim, out_dim)``
    """

    def __init__(self, in_channels: int, out_channels: int, in_dim: int, out_dim: int,
                 dtype: torch.dtype | None = None, device: torch.device | str | None = None):
        super().__init__()
        if out_dim > in_dim:
            raise ValueError(f"BiMap cannot grow the matrix size ({in_dim} -> {out_dim})")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.in_dim, self.out_dim = in_dim, out_dim
        self.weight = geoopt.ManifoldParameter(
            random_stiefel(out_channels, in_channels, rows=in_dim, cols=out_dim,
                           dtype=dtype, device=device),
            manifold=geoopt.EuclideanStiefel(),
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels or x.shape[-1] != self.in_dim:
            raise ValueError(
                f"BiMap expects (B, {self.in_channels}, {self.in_dim}, {self.in_dim}), "
                f"got {tuple(x.shape)}"
            )
        w = self.weight
        # One contraction (no broadcast copies of X per output channel or of W per sample).
        return torch.einsum("oinm,bink,oikl->boml", w, x, w)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}->{self.out_channels} channels, "
                f"{self.in_dim}->{self.out_dim} dims")
