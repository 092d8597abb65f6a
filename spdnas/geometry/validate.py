"""Input checks for the public geometry entry points.

Bad input (non-square, non-symmetric, non-finite, not positive definite) raises a
``ValueError`` that names the problem and the first offending batch index. Inside trusted
loops (a network's forward after its input was checked once) the checks are switched off with
:func:`trusted`, since each check costs a Cholesky factorisation.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

_state = threading.local()


def validation_enabled() -> bool:
    """Whether input checks run in this thread (on unless inside :func:`trusted`)."""
    return getattr(_state, "enabled", True)


@contextmanager
def trusted() -> Iterator[None]:
    """Switch input validation off in this thread for the duration of the block."""
    previous = validation_enabled()
    _state.enabled = False
    try:
        yield
    finally:
        _state.enabled = previous


def _symmetry_tolerance(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).eps) ** 0.5


def _first_bad(mask: Tensor) -> tuple[int, ...]:
    """Batch index (tuple) of the first ``True`` in ``mask`` of shape ``batch``."""
    if mask.dim() == 0:
        return ()
    flat = int(torch.nonzero(mask.reshape(-1))[0, 0])
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), mask.shape))


def _where(index: tuple[int, ...]) -> str:
    return f"batch index {index}" if index else "the (single) matrix"


def check_square(x: Tensor, what: str) -> None:
    """Raise ``ValueError`` unless ``x`` has shape ``(..., n, n)`` with a floating dtype."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{what}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"{what}: expected square matrices of shape (..., n, n), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{what}: expected a floating dtype, got {x.dtype}")


def check_symmetric(x: Tensor, what: str) -> None:
    """Raise ``ValueError`` unless every matrix in ``x`` is finite and symmetric.

    Parameters
    ----------
    x : Tensor, shape (..., n, n)
    what : str
        Name of the argument, used in the message.
    """
    if not validation_enabled():
        return
    check_square(x, what)
    with torch.no_grad():
        batch = x.shape[:-2]
        finite = torch.isfinite(x).flatten(-2).all(-1)
        if not bool(finite.all()):
            raise ValueError(f"{what}: non-finite values (NaN or inf) at {_where(_first_bad(~finite))}")
        scale = x.abs().flatten(-2).amax(-1).clamp_min(torch.finfo(x.dtype).tiny)
        asym = (x - x.transpose(-1, -2)).abs().flatten(-2).amax(-1) / scale
        bad = asym > _symmetry_tolerance(x.dtype)
        if bool(bad.any()):
            index = _first_bad(bad.reshape(batch))
            raise ValueError(
                f"{what}: matrix is not symmetric at {_where(index)} "
                f"(relative asymmetry {float(asym.reshape(batch)[index]):.3g})"
            )


def check_spd(x: Tensor, what: str) -> None:
    """Raise ``ValueError`` unless every matrix in ``x`` is symmetric positive definite.

    Parameters
    ----------
    x : Tensor, shape (..., n, n)
    what : str
        Name of the argument, used in the message.
    """
    if not validation_enabled():
        return
    check_symmetric(x, what)
    with torch.no_grad():
        info = torch.linalg.cholesky_ex(x).info
        bad = info != 0
        if bool(bad.any()):
            index = _first_bad(bad)
            raise ValueError(f"{what}: matrix is not positive definite at {_where(index)}")


def check_weights(w: Tensor, k: int, what: str) -> None:
    """Raise ``ValueError`` unless ``w`` (shape ``(..., k)``) is finite, ≥ 0 and sums to 1."""
    if not validation_enabled():
        return
    if w.shape[-1] != k:
        raise ValueError(f"{what}: last dimension must be {k}, got shape {tuple(w.shape)}")
    with torch.no_grad():
        if not bool(torch.isfinite(w).all()):
            raise ValueError(f"{what}: non-finite weights")
        if bool((w < 0).any()):
            raise ValueError(f"{what}: negative weights")
        total = w.sum(-1)
        tol = 1e3 * torch.finfo(w.dtype).eps * k
        if bool(((total - 1).abs() > tol).any()):
            raise ValueError(f"{what}: weights must sum to 1 (got sums in [{float(total.min()):.6g}, "
                             f"{float(total.max()):.6g}])")
