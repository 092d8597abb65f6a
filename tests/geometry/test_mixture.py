"""Mixture weightings: simplex, exactness of sparsemax against a brute-force projection."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from spdnas.geometry import mixture_weights, sparsemax


def brute_force_simplex_projection(z: torch.Tensor) -> torch.Tensor:
    """argmin_{p ∈ Δ} ‖p − z‖² by enumerating supports S for the one meeting the KKT conditions:
    p_S = z_S − τ ≥ 0 with τ = (Σ z_S − 1)/|S|, and z_j ≤ τ off S (to 1e-12).

    Comparing the distances of the feasible supports instead picked a wrong one where they differ
    by less than float64 resolves (z = [-1, -1, -1.2e-7, -1, -2]: the distances differ by ~1e-15).
    """
    k = z.numel()
    for size in range(1, k + 1):
        for support in itertools.combinations(range(k), size):
            idx, rest = list(support), [j for j in range(k) if j not in support]
            tau = (z[idx].sum() - 1) / size
            if (z[idx] - tau >= -1e-12).all() and (z[rest] <= tau + 1e-12).all():
                p = torch.zeros_like(z)
                p[idx] = (z[idx] - tau).clamp_min(0)
                return p
    raise AssertionError(f"no support meets the KKT conditions for {z}")


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.floats(-3, 3, allow_nan=False), min_size=1, max_size=7))
@example(values=[-1.0, -1.0, -1.192092896e-07, -1.0, -2.0])
def test_sparsemax_is_the_euclidean_projection(values):
    z = torch.tensor(values, dtype=torch.float64)
    p = sparsemax(z)
    assert (p >= 0).all()
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(p, brute_force_simplex_projection(z), rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", ["sparsemax", "softmax", "sigmoid"])
def test_weights_on_simplex_and_differentiable(kind):
    logits = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    w = mixture_weights(logits, kind)
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(5, dtype=torch.float64))
    assert torch.autograd.gradcheck(lambda a: mixture_weights(a, kind), (logits,))


def test_sparsemax_one_hot_and_exact_zeros():
    w = sparsemax(torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(w, torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64))
    w = sparsemax(torch.tensor([0.1, 0.2, 1.5, 1.4], dtype=torch.float64))
    assert (w[:2] == 0).all()


def test_sigmoid_normalised_formula():
    z = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    s = torch.sigmoid(z)
    torch.testing.assert_close(mixture_weights(z, "sigmoid"), s / s.sum())


def test_unknown_mixture_and_bad_logits():
    with pytest.raises(ValueError, match="unknown mixture 'gumbel'"):
        mixture_weights(torch.zeros(3), "gumbel")
    with pytest.raises(ValueError, match="NaN"):
        mixture_weights(torch.tensor([0.0, float("nan")]), "softmax")
