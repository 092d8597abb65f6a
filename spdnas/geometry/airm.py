"""Affine-invariant Riemannian geometry of SPD matrices (AIRM).

All functions are batched over any leading dimensions and differentiable (through the stable
spectral functions of :mod:`spdnas.geometry.spectral`). Public functions check their inputs
unless validation is switched off (:func:`spdnas.geometry.validate.trusted`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from spdnas.geometry.spectral import (
    EXP,
    INVSQRT,
    LOG,
    SQRT,
    power_function,
    spectral_apply,
    sym,
)
from spdnas.geometry.validate import check_spd, check_symmetric, check_weights, trusted, validation_enabled


def congruence(x: Tensor, m: Tensor) -> Tensor:
    """Congruence ``M X Mᵀ``.

    Parameters
    ----------
    x : Tensor, shape (..., n, n)
    m : Tensor, shape (..., k, n)
        Broadcasts against ``x``'s leading dimensions.

    Returns
    -------
    Tensor, shape (..., k, k)
    """
    return m @ x @ m.transpose(-1, -2)


def _sqrt_pair(p: Tensor) -> tuple[Tensor, Tensor]:
    return spectral_apply(p, SQRT, INVSQRT, validate=False)


def log_map(base: Tensor, x: Tensor) -> Tensor:
    """Riemannian logarithm ``Log_P(X) = P^{1/2} log(P^{-1/2} X P^{-1/2}) P^{1/2}``.

    Parameters
    ----------
    base : Tensor, shape (..., n, n)
        SPD base point ``P``; broadcasts against ``x``.
    x : Tensor, shape (..., n, n)
        SPD points.

    Returns
    -------
    Tensor, shape (..., n, n)
        Symmetric tangent vectors at ``P``.
    """
    check_spd(base, "log_map base")
    check_spd(x, "log_map x")
    p_sqrt, p_isqrt = _sqrt_pair(base)
    inner = spectral_apply(congruence(x, p_isqrt), LOG, validate=False)[0]
    return sym(congruence(inner, p_sqrt))


def exp_map(base: Tensor, v: Tensor) -> Tensor:
    """Riemannian exponential ``Exp_P(V) = P^{1/2} exp(P^{-1/2} V P^{-1/2}) P^{1/2}``.

    Parameters
    ----------
    base : Tensor, shape (..., n, n)
        SPD base point ``P``; broadcasts against ``v``.
    v : Tensor, shape (..., n, n)
        Symmetric tangent vectors at ``P``.

    Returns
    -------
    Tensor, shape (..., n, n)
        SPD points.
    """
    check_spd(base, "exp_map base")
    check_symmetric(v, "exp_map tangent vector")
    p_sqrt, p_isqrt = _sqrt_pair(base)
    inner = spectral_apply(congruence(v, p_isqrt), EXP, validate=False)[0]
    return sym(congruence(inner, p_sqrt))


def geodesic(a: Tensor, b: Tensor, t: float) -> Tensor:
    """Point at time ``t`` on the geodesic from ``A`` (t = 0) to ``B`` (t = 1).

    ``γ(t) = A^{1/2} (A^{-1/2} B A^{-1/2})^t A^{1/2}``.

    Parameters
    ----------
    a, b : Tensor, shape (..., n, n)
        SPD end points (broadcasting).
    t : float
        Time; values outside [0, 1] extrapolate along the geodesic.

    Returns
    -------
    Tensor, shape (..., n, n)
    """
    check_spd(a, "geodesic start")
    check_spd(b, "geodesic end")
    a_sqrt, a_isqrt = _sqrt_pair(a)
    inner = spectral_apply(congruence(b, a_isqrt), power_function(t), validate=False)[0]
    return sym(congruence(inner, a_sqrt))


def distance(a: Tensor, b: Tensor) -> Tensor:
    """AIRM distance ``d(A, B) = ‖log(A^{-1/2} B A^{-1/2})‖_F``.

    Parameters
    ----------
    a, b : Tensor, shape (..., n, n)
        SPD matrices (broadcasting).

    Returns
    -------
    Tensor, shape (...)
    """
    check_spd(a, "distance a")
    check_spd(b, "distance b")
    a_isqrt = spectral_apply(a, INVSQRT, validate=False)[0]
    inner = spectral_apply(congruence(b, a_isqrt), LOG, validate=False)[0]
    return torch.linalg.matrix_norm(inner)


def karcher_step(x: Tensor, w: Tensor, base: Tensor, identity_weight: Tensor | None = None,
                 sum_reduce: Callable[[Tensor], Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """One Karcher-flow step ``G ← Exp_G(Σ_k w_k Log_G(X_k))`` (no input checks).

    Parameters
    ----------
    x : Tensor, shape (..., K, n, n)
        SPD matrices to average.
    w : Tensor, shape (..., K)
        Weights, non-negative and summing to 1.
    base : Tensor, shape (..., n, n)
        Current estimate ``G``.
    identity_weight : Tensor, shape (...), optional
        Weight of an extra point, the identity matrix, whose term ``−log G`` comes from the
        decomposition of ``G`` that the step needs anyway.
    sum_reduce : callable, optional
        Applied to the weighted sum over ``K`` (a differentiable all-reduce when the ``K``
        points are spread over processes).

    Returns
    -------
    mean : Tensor, shape (..., n, n)
        Updated estimate.
    step : Tensor, shape (..., n, n)
        ``Σ_k w_k log(G^{-1/2} X_k G^{-1/2})``, the step in the frame of ``G`` (its norm is the
        Riemannian gradient norm of the Fréchet function, zero at the mean).
    """
    if identity_weight is None:
        g_sqrt, g_isqrt = _sqrt_pair(base)
    else:
        g_sqrt, g_isqrt, g_log = spectral_apply(base, SQRT, INVSQRT, LOG, validate=False)
    logs = spectral_apply(congruence(x, g_isqrt.unsqueeze(-3)), LOG, validate=False)[0]
    step = (w[..., None, None] * logs).sum(-3)
    if sum_reduce is not None:
        step = sum_reduce(step)
    if identity_weight is not None:
        step = step - identity_weight[..., None, None] * g_log
    inner = spectral_apply(step, EXP, validate=False)[0]
    return sym(congruence(inner, g_sqrt)), step


def karcher_mean(
    x: Tensor,
    weights: Tensor | None = None,
    iterations: int = 1,
    tol: float | None = None,
    identity_weight: Tensor | None = None,
    sum_reduce: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Weighted Fréchet (Karcher) mean under the AIRM, batched over leading dimensions.

    Starts at the weighted arithmetic mean and takes ``iterations`` Karcher-flow steps
    (one, as in the paper, by default). With ``tol`` set, stops early once the step norm
    ``‖Σ_k w_k log(G^{-1/2} X_k G^{-1/2})‖_F`` is below ``tol`` for every mean in the batch.

    Parameters
    ----------
    x : Tensor, shape (..., K, n, n)
        SPD matrices; the mean is taken over the ``K`` axis.
    weights : Tensor, shape (..., K) or (K,), optional
        Non-negative weights summing to 1 (broadcast against ``x``'s leading dims);
        uniform when omitted.
    iterations : int
        Maximum number of Karcher-flow steps (≥ 0; 0 returns the arithmetic mean).
    tol : float, optional
        Early-stopping tolerance on the step norm.
    identity_weight : Tensor, shape (...) or (), optional
        Include the identity matrix as one more point with this weight (the weights of ``x``
        and ``identity_weight`` together sum to 1). Cheaper than stacking the identity: its
        logarithm comes from the decomposition of the current mean.
    sum_reduce : callable, optional
        Applied to every weighted sum over ``K``, e.g. a differentiable all-reduce when the
        points (and their weights, which then sum to 1 over all processes) are spread over
        several processes. The weights are not checked in that case.

    Returns
    -------
    Tensor, shape (..., n, n)
    """
    check_spd(x, "karcher_mean input")
    if x.dim() < 3:
        raise ValueError(f"karcher_mean: expected shape (..., K, n, n), got {tuple(x.shape)}")
    k = x.shape[-3]
    if weights is None:
        weights = torch.full((k,), 1.0 / k, dtype=x.dtype, device=x.device)
    if sum_reduce is not None or not validation_enabled():
        pass  # with sum_reduce the weights only sum to 1 across processes
    elif identity_weight is None:
        check_weights(weights, k, "karcher_mean weights")
    else:
        batch = torch.broadcast_shapes(weights.shape[:-1], identity_weight.shape)
        check_weights(torch.cat((weights.expand(*batch, k), identity_weight.expand(batch).unsqueeze(-1)), -1),
                      k + 1, "karcher_mean weights")
    if iterations < 0:
        raise ValueError(f"karcher_mean: iterations must be >= 0, got {iterations}")
    mean = (weights[..., None, None] * x).sum(-3)
    if sum_reduce is not None:
        mean = sum_reduce(mean)
    if identity_weight is not None:
        eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
        mean = mean + identity_weight[..., None, None] * eye
    with trusted():
        for _ in range(iterations):
            mean, step = karcher_step(x, weights, mean, identity_weight, sum_reduce)
            if tol is not None and float(torch.linalg.matrix_norm(step.detach()).max()) < tol:
                break
    return mean
