"""AIRM geometry: Karcher mean against pyRiemann, metric properties, maps, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pyriemann.geometry.mean import mean_riemann

from spdnas.geometry import (
    congruence,
    distance,
    exp_map,
    geodesic,
    karcher_mean,
    log_map,
    sym_invsqrt,
    sym_log,
    trusted,
)
from tests.helpers import random_spd


def is_spd(x: torch.Tensor) -> bool:
    sym_ok = torch.allclose(x, x.mT, rtol=1e-10, atol=1e-12)
    return sym_ok and bool((torch.linalg.eigvalsh(x) > 0).all())


@pytest.mark.parametrize("n", [3, 5, 10, 20, 30])
def test_karcher_mean_converged_matches_pyriemann(n):
    g = torch.Generator().manual_seed(n)
    x = random_spd(12, n=n, cond=30.0, generator=g)
    w = torch.rand(12, dtype=torch.float64, generator=g)
    w = w / w.sum()
    ours = karcher_mean(x, w, iterations=200, tol=1e-13)
    ref = mean_riemann(x.numpy(), sample_weight=w.numpy(), tol=1e-14, maxiter=500)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-8 * np.abs(ref).max())


def test_karcher_mean_unweighted_matches_pyriemann():
    x = random_spd(7, n=6, cond=100.0)
    ours = karcher_mean(x, iterations=200, tol=1e-13)
    np.testing.assert_allclose(ours.numpy(), mean_riemann(x.numpy(), tol=1e-14, maxiter=500),
                               atol=1e-8)


def test_one_step_mean_equals_reference_formula():
    """SPDNetNAS: G0 = Σ w X; G = ExpG(Σ w LogG(X, G0), G0), written here with SciPy."""
    x = random_spd(5, n=4, cond=20.0)
    w = torch.tensor([0.1, 0.3, 0.2, 0.25, 0.15], dtype=torch.float64)
    xs, ws = x.numpy(), w.numpy()
    g0 = np.einsum("k,kij->ij", ws, xs)
    g0_sqrt = np.real(scipy.linalg.sqrtm(g0))
    g0_isqrt = np.linalg.inv(g0_sqrt)

    def log_at(point):
        return g0_sqrt @ np.real(scipy.linalg.logm(g0_isqrt @ point @ g0_isqrt)) @ g0_sqrt

    tangent = sum(wk * log_at(xk) for wk, xk in zip(ws, xs, strict=True))
    expected = g0_sqrt @ scipy.linalg.expm(g0_isqrt @ tangent @ g0_isqrt) @ g0_sqrt
    np.testing.assert_allclose(karcher_mean(x, w).numpy(), expected, rtol=1e-10, atol=1e-12)


def test_karcher_mean_batched_over_channels():
    x = random_spd(3, 4, 6, n=5)
    w = torch.softmax(torch.randn(3, 4, 6, dtype=torch.float64), -1)
    out = karcher_mean(x, w, iterations=2)
    assert out.shape == (3, 4, 5, 5)
    torch.testing.assert_close(out[2, 1], karcher_mean(x[2, 1], w[2, 1], iterations=2))
    shared = torch.softmax(torch.randn(6, dtype=torch.float64), -1)
    torch.testing.assert_close(karcher_mean(x, shared)[1, 3], karcher_mean(x[1, 3], shared))


def test_karcher_mean_tolerance_stops_early():
    x = random_spd(6, n=4)
    loose = karcher_mean(x, iterations=100, tol=1e-2)
    tight = karcher_mean(x, iterations=100, tol=1e-14)
    assert 1e-12 < float(distance(loose, tight)) < 1e-2


def test_karcher_mean_tolerance_waits_for_every_mean_of_a_batch():
    """A set of equal matrices converges at once; the other mean of the batch must not stop with it."""
    hard = random_spd(7, n=6, cond=100.0)
    batch = torch.stack((random_spd(1, n=6).expand(7, 6, 6), hard))
    ours = karcher_mean(batch, iterations=200, tol=1e-13)
    np.testing.assert_allclose(ours[1].numpy(), mean_riemann(hard.numpy(), tol=1e-14, maxiter=500), atol=1e-8)
    torch.testing.assert_close(ours[0], batch[0, 0], rtol=1e-12, atol=1e-12)


def test_karcher_mean_of_one_matrix_is_that_matrix():
    x = random_spd(1, n=5, cond=1e3)
    torch.testing.assert_close(karcher_mean(x), x[0], rtol=1e-12, atol=1e-12)


def test_karcher_mean_gradcheck():
    x = random_spd(2, 3, n=4).requires_grad_()
    w = torch.softmax(torch.randn(2, 3, dtype=torch.float64), -1).requires_grad_()
    with trusted():
        assert torch.autograd.gradcheck(lambda a, b: karcher_mean(a, b, iterations=2), (x, w))


def test_karcher_mean_ill_conditioned_is_finite():
    x = random_spd(4, n=8, cond=1e8).requires_grad_()
    out = karcher_mean(x, iterations=3)
    sym_log(out).sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 8), cond=st.floats(1.0, 1e4))
def test_distance_properties(seed, n, cond):
    g = torch.Generator().manual_seed(seed)
    a = random_spd(n=n, cond=cond, generator=g)
    b = random_spd(n=n, cond=cond, generator=g)
    m = torch.randn(n, n, dtype=torch.float64, generator=g) + 3 * torch.eye(n, dtype=torch.float64)
    d = distance(a, b)
    # Symmetry: d(A, B) = d(B, A).
    torch.testing.assert_close(d, distance(b, a), rtol=1e-9, atol=1e-10)
    # Congruence (affine) invariance: d(MAMᵀ, MBMᵀ) = d(A, B) for invertible M.
    torch.testing.assert_close(distance(congruence(a, m), congruence(b, m)), d, rtol=1e-7, atol=1e-8)
    # Definition: d(A, B) = ‖log(A^{-1/2} B A^{-1/2})‖_F, via SciPy.
    a_isqrt = np.linalg.inv(np.real(scipy.linalg.sqrtm(a.numpy())))
    expected = np.linalg.norm(np.real(scipy.linalg.logm(a_isqrt @ b.numpy() @ a_isqrt)))
    assert float(d) == pytest.approx(expected, rel=1e-8, abs=1e-10)
    # Identity of indiscernibles.
    assert float(distance(a, a)) < 1e-7


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 8), t=st.floats(-0.5, 1.5))
def test_geodesic_properties(seed, n, t):
    g = torch.Generator().manual_seed(seed)
    a = random_spd(n=n, cond=100.0, generator=g)
    b = random_spd(n=n, cond=100.0, generator=g)
    torch.testing.assert_close(geodesic(a, b, 0.0), a, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(geodesic(a, b, 1.0), b, rtol=1e-9, atol=1e-9)
    p = geodesic(a, b, t)
    assert is_spd(p)
    # Constant speed: d(A, γ(t)) = |t| d(A, B).
    assert float(distance(a, p)) == pytest.approx(abs(t) * float(distance(a, b)), rel=1e-7, abs=1e-8)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 8))
def test_log_and_exp_maps_are_inverse(seed, n):
    g = torch.Generator().manual_seed(seed)
    p = random_spd(3, n=n, cond=50.0, generator=g)
    x = random_spd(3, n=n, cond=50.0, generator=g)
    v = log_map(p, x)
    torch.testing.assert_close(v, v.mT)
    torch.testing.assert_close(exp_map(p, v), x, rtol=1e-9, atol=1e-9)
    # ‖Log_P X‖ in the metric at P equals the distance.
    p_isqrt = sym_invsqrt(p)
    norm = torch.linalg.matrix_norm(p_isqrt @ v @ p_isqrt)
    torch.testing.assert_close(norm, distance(p, x), rtol=1e-8, atol=1e-9)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 6), iters=st.integers(0, 3))
def test_outputs_stay_spd(seed, k, iters):
    g = torch.Generator().manual_seed(seed)
    x = random_spd(2, k, n=5, cond=1e3, generator=g)
    w = torch.softmax(torch.randn(2, k, dtype=torch.float64, generator=g), -1)
    for out in (karcher_mean(x, w, iterations=iters), exp_map(x[:, 0], log_map(x[:, 0], x[:, -1]))):
        for m in out:
            assert is_spd(m)


def test_gradchecks_of_maps():
    a = random_spd(2, n=3).requires_grad_()
    b = random_spd(2, n=3, generator=torch.Generator().manual_seed(9)).requires_grad_()
    with trusted():
        assert torch.autograd.gradcheck(log_map, (a, b))
        assert torch.autograd.gradcheck(lambda p, v: exp_map(p, 0.5 * (v + v.mT) - p), (a, b))
        assert torch.autograd.gradcheck(lambda p, q: geodesic(p, q, 0.3), (a, b))
        assert torch.autograd.gradcheck(distance, (a, b))


def test_bad_weights_are_rejected():
    x = random_spd(3, n=3)
    with pytest.raises(ValueError, match="sum to 1"):
        karcher_mean(x, torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="negative"):
        karcher_mean(x, torch.tensor([1.5, -0.5, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="last dimension must be 3"):
        karcher_mean(x, torch.tensor([0.5, 0.5], dtype=torch.float64))


def test_bad_points_are_rejected_with_index():
    x = random_spd(2, 3, n=3)
    x[1, 2] = -x[1, 2]
    with pytest.raises(ValueError, match=r"karcher_mean input.*batch index \(1, 2\)"):
        karcher_mean(x)
    with pytest.raises(ValueError, match="geodesic end"):
        geodesic(x[0, 0], x[1, 2], 0.5)


def test_identity_weight_equals_stacking_the_identity():
    x = random_spd(2, 3, 4, n=5)
    w = torch.softmax(torch.randn(2, 3, 5, dtype=torch.float64), -1)
    eye = torch.eye(5, dtype=torch.float64).expand(2, 3, 1, 5, 5)
    stacked = karcher_mean(torch.cat((x, eye), dim=2), w, iterations=2)
    implicit = karcher_mean(x, w[..., :4], iterations=2, identity_weight=w[..., 4])
    torch.testing.assert_close(implicit, stacked, rtol=1e-12, atol=1e-12)
    # batched weights with one identity weight for all (broadcast, as documented): expand failed
    one = torch.tensor(0.2, dtype=torch.float64)
    shared = torch.cat((0.8 * torch.softmax(w[..., :4], -1), one.expand(2, 3, 1)), -1)
    torch.testing.assert_close(karcher_mean(x, shared[..., :4], identity_weight=one),
                               karcher_mean(torch.cat((x, eye), dim=2), shared), rtol=1e-12, atol=1e-12)
    a = w.clone().requires_grad_()
    with trusted():
        assert torch.autograd.gradcheck(
            lambda v, ww: karcher_mean(v, ww[..., :4], identity_weight=ww[..., 4]),
            (x[:1, :1].clone().requires_grad_(), a[:1, :1].detach().clone().requires_grad_()))
