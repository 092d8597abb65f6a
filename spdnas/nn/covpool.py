"""Covariance pooling layer: raw multichannel signals to SPD matrices."""

from __future__ import annotations

from torch import Tensor, nn

from spdnas.geometry.covariance import covariance


class CovariancePooling(nn.Module):
    """Shrunk covariance of each sample's channels over time.

    Parameters
    ----------
    shrinkage : float or "ledoit-wolf"
        See :func:`spdnas.geometry.covariance.covariance`.

    Shapes
    ------
    input ``(B, c, T)`` (real or complex) → output ``(B, 1, c, c)``
    """

    def __init__(self, shrinkage: float | str = "ledoit-wolf"):
        super().__init__()
        self.shrinkage = shrinkage

    def forward(self, signals: Tensor) -> Tensor:
        return covariance(signals, self.shrinkage).unsqueeze(1)

    def extra_repr(self) -> str:
        return f"shrinkage={self.shrinkage}"
