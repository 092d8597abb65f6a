"""Symmetric matrix functions ``f(X) = U f(Λ) Uᵀ`` with a stable Daleckii–Krein backward.

Every function here goes through one shared :class:`torch.autograd.Function`
(:class:`_SpectralApply`). Its backward is the Daleckii–Krein (Loewner) formula

    dL/dX = U (K ∘ (Uᵀ sym(dL/dY) U)) Uᵀ,   K_ij = (f(λ_i) − f(λ_j)) / (λ_i − λ_j),

with ``K_ij = f'(λ_i)`` where the eigenvalues coincide. Each function supplies its divided
difference in a closed form that is exact at ties and free of cancellation near them, so
repeated eigenvalues (the identity, ``diag(1, 1, 2)``) give the right gradient instead of the
0, NaN or inf of the reference code or of torch's ``eigh`` backward.

Functions that need positive definite input read the eigenvalues through a floor of
``eps · max|λ|`` (:func:`floor_eigenvalues`): rounding can make ``eigh`` return ``λ ≤ 0`` for a
positive definite matrix, and its logarithm would be NaN.

Several functions of the same matrix share one ``eigh`` (:func:`spectral_apply`), e.g. the
square root and inverse square root of a Karcher base point.

Inputs are symmetrised, ``X ← (X + Xᵀ)/2``, so that the functions (and their gradients) are
defined for every square matrix and agree with finite differences over all n² entries.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import Tensor

from spdnas.geometry.validate import check_spd, check_symmetric


@dataclass(frozen=True)
class SpectralFunction:
    """A scalar function lifted to symmetric matrices through their eigenvalues.

    Attributes
    ----------
    name : str
        Human-readable name (used in error messages).
    value : callable
        ``f(λ)`` applied elementwise to eigenvalues, shape ``(..., n)``.
    divided_difference : callable
        ``K(λ_i, λ_j)`` broadcasting ``(..., n, 1)`` against ``(..., 1, n)``; must return
        ``f'(λ)`` where ``λ_i == λ_j``.
    needs_spd : bool
        Whether the function is only defined for positive definite inputs.
    """

    name: str
    value: Callable[[Tensor], Tensor]
    divided_difference: Callable[[Tensor, Tensor], Tensor]
    needs_spd: bool


def _safe_ratio_expm1(t: float, d: Tensor) -> Tensor:
    """``expm1(t·d) / expm1(d)``, equal to ``t`` at ``d = 0``; stable for every real ``d``."""
    zero = d == 0
    d_safe = torch.where(zero, torch.ones_like(d), d)
    ratio = torch.expm1(t * d_safe) / torch.expm1(d_safe)
    return torch.where(zero, torch.full_like(d, t), ratio)


def _dd_log(li: Tensor, lj: Tensor) -> Tensor:
    # (log λi − log λj)/(λi − λj) = (1/λj) · d / expm1(d),  d = log λi − log λj.
    d = torch.log(li) - torch.log(lj)
    zero = d == 0
    d_safe = torch.where(zero, torch.ones_like(d), d)
    phi = torch.where(zero, torch.ones_like(d), d_safe / torch.expm1(d_safe))
    return phi / lj


def _dd_exp(li: Tensor, lj: Tensor) -> Tensor:
    # (e^a − e^b)/(a − b) = e^m · (−expm1(−h))/h with m = max, h = |a − b|.
    m = torch.maximum(li, lj)
    h = (li - lj).abs()
    zero = h == 0
    h_safe = torch.where(zero, torch.ones_like(h), h)
    phi = torch.where(zero, torch.ones_like(h), -torch.expm1(-h_safe) / h_safe)
    return torch.exp(m) * phi


def _dd_sqrt(li: Tensor, lj: Tensor) -> Tensor:
    return 1.0 / (li.sqrt() + lj.sqrt())


def _dd_invsqrt(li: Tensor, lj: Tensor) -> Tensor:
    si, sj = li.sqrt(), lj.sqrt()
    return -1.0 / (si * sj * (si + sj))


def _power(t: float) -> SpectralFunction:
    def dd(li: Tensor, lj: Tensor) -> Tensor:
        # (λi^t − λj^t)/(λi − λj) = λj^(t−1) · expm1(t·d)/expm1(d),  d = log λi − log λj.
        d = torch.log(li) - torch.log(lj)
        return lj.pow(t - 1.0) * _safe_ratio_expm1(t, d)

    return SpectralFunction(f"power({t:g})", lambda lam: lam.pow(t), dd, needs_spd=True)


def _rectify(eps: float) -> SpectralFunction:
    def dd(li: Tensor, lj: Tensor) -> Tensor:
        h = li - lj
        zero = h == 0
        fi, fj = li.clamp_min(eps), lj.clamp_min(eps)
        ratio = (fi - fj) / torch.where(zero, torch.ones_like(h), h)
        # f'(λ) = 1 above the threshold, 0 at or below it (the subgradient ReEig uses).
        return torch.where(zero, (li > eps).to(li.dtype), ratio)

    return SpectralFunction(
        f"rectify({eps:g})", lambda lam: lam.clamp_min(eps), dd, needs_spd=False
    )


LOG = SpectralFunction("log", torch.log, _dd_log, needs_spd=True)
EXP = SpectralFunction("exp", torch.exp, _dd_exp, needs_spd=False)
SQRT = SpectralFunction("sqrt", torch.sqrt, _dd_sqrt, needs_spd=True)
INVSQRT = SpectralFunction("invsqrt", torch.rsqrt, _dd_invsqrt, needs_spd=True)


_EIGH_MIN_CHUNK = 32
_eigh_pool: ThreadPoolExecutor | None = None
_eigh_threads = 1


def set_eigh_threads(threads: int) -> None:
    """Decompose large CPU batches in ``threads`` parallel chunks (LAPACK's batched ``eigh`` is
    sequential over the batch; torch's intra-op threads do not split it)."""
    global _eigh_pool, _eigh_threads
    threads = max(1, int(threads))
    if threads == _eigh_threads:
        return
    if _eigh_pool is not None:
        _eigh_pool.shutdown()
    _eigh_pool = _start_single_threaded_pool(threads - 1) if threads > 1 else None
    _eigh_threads = threads


def _start_single_threaded_pool(workers: int) -> ThreadPoolExecutor:
    """A pool whose threads run LAPACK single-threaded, started now, with torch's process-wide
    thread count left as it was.

    A fresh thread starts with OpenMP's default team size, and nested teams oversubscribe the
    cores (seen: 100x slower for n >= 26), so each worker sets its own OpenMP and MKL thread
    counts to 1. ``torch.set_num_threads`` also sets the process-wide count that decides whether
    any thread's ops run in parallel at all; set lazily by the first decomposition it silently
    made every later step single-threaded. The workers are therefore started here, all of them
    (each waits for the others), and the count is restored once they hold their own settings.
    """
    previous = torch.get_num_threads()
    started = threading.Barrier(workers)

    def single_threaded() -> None:
        torch.set_num_threads(1)
        # torch applies the process-wide count to a thread at its first parallel loop; a small
        # batched product runs one now, while that count is 1, so it stays 1 in this thread.
        torch.bmm(torch.ones(2, 2, 2), torch.ones(2, 2, 2))
        started.wait(timeout=60)  # a worker that never starts: BrokenBarrierError, not a hang

    pool = ThreadPoolExecutor(workers, thread_name_prefix="eigh", initializer=single_threaded)
    try:
        for future in [pool.submit(int) for _ in range(workers)]:
            future.result()
    finally:
        torch.set_num_threads(previous)
    return pool


def _eigh(x: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.linalg.eigh`` of a batch, split over the eigh thread pool when worthwhile."""
    n = x.shape[-1]
    batch = x.numel() // (n * n) if n else 0
    if _eigh_pool is None or x.device.type != "cpu" or batch < 2 * _EIGH_MIN_CHUNK:
        return torch.linalg.eigh(x)
    flat = x.reshape(batch, n, n).contiguous()
    eigvals = flat.new_empty(batch, n)
    eigvecs = flat.new_empty(batch, n, n)
    parts = min(_eigh_threads, batch // _EIGH_MIN_CHUNK)
    bounds = [batch * i // parts for i in range(parts + 1)]
    chunks = [slice(a, b) for a, b in itertools.pairwise(bounds)]
    futures = [_eigh_pool.submit(torch.linalg.eigh, flat[c], out=(eigvals[c], eigvecs[c]))
               for c in chunks[1:]]
    torch.linalg.eigh(flat[chunks[0]], out=(eigvals[chunks[0]], eigvecs[chunks[0]]))
    for future in futures:
        future.result()
    return eigvals.reshape(*x.shape[:-1]), eigvecs.reshape(x.shape)


def sym(x: Tensor) -> Tensor:
    """Symmetric part ``(X + Xᵀ)/2`` of a batch of square matrices, shape ``(..., n, n)``."""
    return 0.5 * (x + x.transpose(-1, -2))


def _reconstruct(u: Tensor, values: Tensor) -> Tensor:
    """``U diag(values) Uᵀ`` for ``u`` of shape ``(..., n, n)`` and ``values`` ``(..., n)``."""
    return (u * values.unsqueeze(-2)) @ u.transpose(-1, -2)


def floor_eigenvalues(eigvals: Tensor) -> Tensor:
    """Eigenvalues raised to at least ``eps(dtype) · max|λ|`` of their matrix, shape ``(..., n)``.

    ``eigh`` is accurate to a multiple of ``eps · max|λ|``, and a matrix computed inside a network
    (a congruence by the inverse square root of an ill-conditioned mean) carries the rounding of
    its factors too, so a positive definite matrix with a small eigenvalue can come back with
    ``λ ≤ 0``; its logarithm, square root or power would then be NaN in every entry. Seen in
    float32 on covariances of rank-deficient data that pass a Cholesky test. The functions that
    need positive definite input read the eigenvalues through this floor; eigenvalues above it
    are unchanged. Input that is indefinite beyond rounding is refused by the validation of the
    public functions; inside trusted loops every such matrix is positive definite by construction.
    """
    floor = torch.finfo(eigvals.dtype).eps * eigvals.abs().amax(-1, keepdim=True)
    return torch.maximum(eigvals, floor)


def _clear_of_floor(eigvals: Tensor) -> bool:
    """Whether no eigenvalue of the batch can be below its matrix's floor (smallest above
    ``eps ·`` largest of the whole batch): the common case, decided with one reduction. Only on
    the CPU, where reading the answer costs no device synchronisation; elsewhere False."""
    if eigvals.device.type != "cpu" or eigvals.numel() == 0:
        return False
    low, high = torch.aminmax(eigvals)
    return float(low) > torch.finfo(eigvals.dtype).eps * float(high)


def _floor_ratio(eigvals: Tensor, floored: Tensor) -> Tensor:
    """``(λ̂_i − λ̂_j) / (λ_i − λ_j)`` for floored eigenvalues ``λ̂``, shape ``(..., n, n)``: turns the
    divided differences of ``f`` at ``λ̂`` into those of ``f(max(λ, floor))``, the function the
    forward pass computes (1 where neither eigenvalue was raised, 0 where both were: the floor is
    constant there)."""
    raised = floored != eigvals
    ri, rj = raised.unsqueeze(-1), raised.unsqueeze(-2)
    mixed = ri ^ rj
    step = floored.unsqueeze(-1) - floored.unsqueeze(-2)
    gap = eigvals.unsqueeze(-1) - eigvals.unsqueeze(-2)
    partial = step / torch.where(mixed, gap, torch.ones_like(gap))
    return torch.where(mixed, partial, (~(ri & rj)).to(eigvals.dtype))


def _arguments(fn: SpectralFunction, eigvals: Tensor, floored: Tensor) -> Tensor:
    return floored if fn.needs_spd else eigvals


class _SpectralApply(torch.autograd.Function):
    """``(f_1(X), ..., f_m(X))`` from one ``eigh``, with the Daleckii–Krein backward.

    The functions that need positive definite input see the eigenvalues through
    :func:`floor_eigenvalues`; the backward differentiates that, ``f(max(λ, floor))`` (with the
    floor held constant), so an eigenvalue below the floor gets no gradient of its own.
    """

    @staticmethod
    def forward(ctx, x: Tensor, fns: tuple[SpectralFunction, ...]):
        eigvals, u = _eigh(sym(x))
        floored = eigvals
        if any(fn.needs_spd for fn in fns) and not _clear_of_floor(eigvals):
            floored = floor_eigenvalues(eigvals)
        ctx.fns = fns
        ctx.floored_any = floored is not eigvals  # the backward then corrects for the floor
        ctx.save_for_backward(eigvals, floored, u)
        ctx.set_materialize_grads(False)
        return tuple(_reconstruct(u, fn.value(_arguments(fn, eigvals, floored))) for fn in fns)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads: Tensor | None):
        eigvals, floored, u = ctx.saved_tensors
        ut = u.transpose(-1, -2)
        ratio = _floor_ratio(eigvals, floored) if ctx.floored_any else None
        inner = None
        for fn, grad in zip(ctx.fns, grads, strict=True):
            if grad is None:
                continue
            lam = _arguments(fn, eigvals, floored)
            dd = fn.divided_difference(lam.unsqueeze(-1), lam.unsqueeze(-2))
            if fn.needs_spd and ratio is not None:
                dd = dd * ratio
            term = dd * (ut @ sym(grad) @ u)
            inner = term if inner is None else inner + term
        if inner is None:
            return None, None
        return u @ inner @ ut, None


def spectral_apply(x: Tensor, *fns: SpectralFunction, validate: bool = True) -> tuple[Tensor, ...]:
    """Apply several spectral functions to the same matrices with a single ``eigh``.

    Parameters
    ----------
    x : Tensor, shape (..., n, n)
        Symmetric matrices (SPD where any of ``fns`` needs it).
    *fns : SpectralFunction
        The functions to apply, e.g. ``SQRT, INVSQRT``.
    validate : bool
        Check the input first (skipped while validation is switched off, see
        :func:`spdnas.geometry.validate.trusted`).

    Returns
    -------
    tuple of Tensor, each of shape (..., n, n)
    """
    if validate:
        names = "/".join(fn.name for fn in fns)
        if any(fn.needs_spd for fn in fns):
            check_spd(x, f"input of {names}")
        else:
            check_symmetric(x, f"input of {names}")
    return _SpectralApply.apply(x, tuple(fns))


def sym_log(x: Tensor) -> Tensor:
    """Matrix logarithm of SPD matrices, shape ``(..., n, n)``."""
    return spectral_apply(x, LOG)[0]


def sym_exp(x: Tensor) -> Tensor:
    """Matrix exponential of symmetric matrices, shape ``(..., n, n)``."""
    return spectral_apply(x, EXP)[0]


def sym_sqrt(x: Tensor) -> Tensor:
    """Principal square root of SPD matrices, shape ``(..., n, n)``."""
    return spectral_apply(x, SQRT)[0]


def sym_invsqrt(x: Tensor) -> Tensor:
    """Inverse principal square root of SPD matrices, shape ``(..., n, n)``."""
    return spectral_apply(x, INVSQRT)[0]


def sym_sqrt_invsqrt(x: Tensor) -> tuple[Tensor, Tensor]:
    """``(X^{1/2}, X^{-1/2})`` of SPD matrices from one ``eigh``; each ``(..., n, n)``."""
    sqrt, invsqrt = spectral_apply(x, SQRT, INVSQRT)
    return sqrt, invsqrt


def sym_pow(x: Tensor, t: float) -> Tensor:
    """Real power ``X^t`` of SPD matrices, shape ``(..., n, n)``."""
    return spectral_apply(x, _power(float(t)))[0]


def sym_rectify(x: Tensor, eps: float = 1e-4) -> Tensor:
    """Eigenvalue rectification ``U max(Λ, ε) Uᵀ`` (ReEig) of symmetric matrices."""
    return spectral_apply(x, _rectify(float(eps)))[0]


def rectify_function(eps: float) -> SpectralFunction:
    """The :class:`SpectralFunction` ``max(λ, ε)``, for sharing an ``eigh`` with others."""
    return _rectify(float(eps))


def power_function(t: float) -> SpectralFunction:
    """The :class:`SpectralFunction` ``λ^t``, for sharing an ``eigh`` with others."""
    return _power(float(t))
