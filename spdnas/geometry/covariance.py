"""Covariance estimation from multichannel signals, with shrinkage so short series are SPD."""

from __future__ import annotations

import torch
from torch import Tensor


def _ledoit_wolf_intensity(centred: Tensor, cov: Tensor) -> Tensor:
    """Ledoit–Wolf (2004) shrinkage intensity for each series, shape ``(...)``.

    Same estimator as :func:`sklearn.covariance.ledoit_wolf` (maximum-likelihood covariance
    ``S = XXᵀ/T`` of centred data, target ``μI`` with ``μ = tr(S)/c``).
    """
    c, t = centred.shape[-2], centred.shape[-1]
    mu = torch.diagonal(cov, dim1=-2, dim2=-1).sum(-1) / c
    eye = torch.eye(c, dtype=cov.dtype, device=cov.device)
    delta = ((cov - mu[..., None, None] * eye) ** 2).sum((-1, -2)) / c
    # Σ_t ‖x_t x_tᵀ − S‖²_F = Σ_t ‖x_t‖⁴ − T‖S‖²_F (as Σ_t x_tᵀ S x_t = T‖S‖²_F): O(cT) memory,
    # not the (..., c, c, T) outer products (0.5 GB for the default RADAR set).
    fourth = (centred ** 2).sum(-2).pow(2).sum(-1)
    beta = (fourth - t * (cov ** 2).sum((-1, -2))).clamp_min(0) / (c * t * t)
    beta = torch.minimum(beta, delta)
    return torch.where(delta > 0, beta / delta.clamp_min(torch.finfo(cov.dtype).tiny),
                       torch.zeros_like(delta))


def covariance(signals: Tensor, shrinkage: float | str = "ledoit-wolf") -> Tensor:
    """Shrunk covariance matrices of multichannel series.

    ``C = (1 − γ) S + γ (tr S / c) I``. Complex series give the real part of the Hermitian
    covariance (the imaginary part is antisymmetric and carries no SPD information).

    Parameters
    ----------
    signals : Tensor, shape (..., c, T)
        ``c`` channels of length ``T`` (real or complex).
    shrinkage : float or "ledoit-wolf"
        ``γ`` in [0, 1], or ``"ledoit-wolf"`` for the data-driven intensity. With a fixed
        ``γ`` the sample covariance uses the unbiased ``1/(T − 1)`` normalisation; Ledoit–Wolf
        uses ``1/T`` as in scikit-learn.

    Returns
    -------
    Tensor, shape (..., c, c)
        Real symmetric matrices (SPD whenever ``γ > 0`` or ``T > c``).
    """
    if signals.dim() < 2:
        raise ValueError(f"covariance: expected shape (..., channels, time), got {tuple(signals.shape)}")
    c, t = signals.shape[-2], signals.shape[-1]
    if t < 2:
        raise ValueError(f"covariance: need at least 2 time samples, got {t}")
    centred = signals - signals.mean(-1, keepdim=True)
    if centred.is_complex():
        # Re(x xᴴ) = xr xrᵀ + xi xiᵀ: the real and imaginary parts act as 2T real samples.
        centred = torch.cat((centred.real, centred.imag), dim=-1)
    gram = centred @ centred.transpose(-1, -2)
    eye = torch.eye(c, dtype=gram.dtype, device=gram.device)
    if shrinkage == "ledoit-wolf":
        cov = gram / t
        gamma = _ledoit_wolf_intensity(centred, gram / centred.shape[-1])
    else:
        gamma_value = float(shrinkage)
        if not 0.0 <= gamma_value <= 1.0:
            raise ValueError(f"covariance: shrinkage must be in [0, 1], got {shrinkage}")
        cov = gram / (t - 1)
        gamma = torch.full(cov.shape[:-2], gamma_value, dtype=cov.dtype, device=cov.device)
    mu = torch.diagonal(cov, dim1=-2, dim2=-1).sum(-1) / c
    g = gamma[..., None, None]
    out = (1 - g) * cov + g * mu[..., None, None] * eye
    return 0.5 * (out + out.transpose(-1, -2))
