"""Direct sum of SPD matrices (block-diagonal), and the two-BiMap reduction built on it."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spdnas.nn.bimap import BiMap


def direct_sum(a: Tensor, b: Tensor) -> Tensor:
    """Block-diagonal ``[[A, 0], [0, B]]``, SPD whenever ``A`` and ``B`` are.

    Parameters
    ----------
    a : Tensor, shape (..., p, p)
    b : Tensor, shape (..., q, q)
        Leading dimensions must match.

    Returns
    -------
    Tensor, shape (..., p + q, p + q)
    """
    if a.shape[:-2] != b.shape[:-2]:
        raise ValueError(f"direct_sum: leading shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    p, q = a.shape[-1], b.shape[-1]
    top = torch.cat((a, a.new_zeros(*a.shape[:-2], p, q)), dim=-1)
    bottom = torch.cat((b.new_zeros(*b.shape[:-2], q, p), b), dim=-1)
    return torch.cat((top, bottom), dim=-2)


class DirectSumBiMap(nn.Module):
    """Two BiMaps ``n → ⌊m/2⌋`` and ``n → ⌈m/2⌉`` of the same input, joined by direct sum.

    Both BiMaps are registered, trained parameters (the reference code drew two fresh
    random BiMaps on every forward call).

    Shapes
    ------
    input ``(B, C, n, n)`` → output ``(B, C, m, m)``
    """

    def __init__(self, channels: int, in_dim: int, out_dim: int,
                 dtype: torch.dtype | None = None, device: torch.device | str | None = None):
        super().__init__()
        half = out_dim // 2
        self.first = BiMap(channels, channels, in_dim, half, dtype=dtype, device=device)
        self.second = BiMap(channels, channels, in_dim, out_dim - half, dtype=dtype, device=device)

    def forward(self, x: Tensor) -> Tensor:
        return direct_sum(self.first(x), self.second(x))
