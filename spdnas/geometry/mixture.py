"""Mixture weightings that turn architecture logits into convex weights.

``sparsemax`` (Martins & Astudillo 2016; closed form, exact, via the entmax package) is the
paper's default and gives exact zeros; ``softmax`` and ``sigmoid`` (sigmoid, then normalised
to sum to one) are the paper's ablations.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from entmax import sparsemax as _entmax_sparsemax
from torch import Tensor


def sparsemax(logits: Tensor) -> Tensor:
    """Euclidean projection of ``logits`` (shape ``(..., K)``) onto the probability simplex."""
    return _entmax_sparsemax(logits, dim=-1)


def softmax(logits: Tensor) -> Tensor:
    """Softmax over the last axis, shape ``(..., K)``."""
    return torch.softmax(logits, dim=-1)


def sigmoid_normalised(logits: Tensor) -> Tensor:
    """``σ(α) / Σ σ(α)`` over the last axis, shape ``(..., K)``."""
    s = torch.sigmoid(logits)
    return s / s.sum(-1, keepdim=True)


MIXTURES: dict[str, Callable[[Tensor], Tensor]] = {
    "sparsemax": sparsemax,
    "softmax": softmax,
    "sigmoid": sigmoid_normalised,
}


def mixture_weights(logits: Tensor, kind: str) -> Tensor:
    """Convex weights from logits with the named mixture (``sparsemax``/``softmax``/``sigmoid``).

    Parameters
    ----------
    logits : Tensor, shape (..., K)
    kind : str

    Returns
    -------
    Tensor, shape (..., K)
        Non-negative, summing to one over the last axis.
    """
    try:
        fn = MIXTURES[kind]
    except KeyError:
        raise ValueError(f"unknown mixture {kind!r}; choose one of {sorted(MIXTURES)}") from None
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("mixture logits contain NaN or inf")
    return fn(logits)
