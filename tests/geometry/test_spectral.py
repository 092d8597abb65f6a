"""Spectral matrix functions: values against SciPy, Daleckii–Krein gradients, ties, bad input."""

from __future__ import annotations

import math
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.linalg
import torch

from spdnas.geometry import (
    EXP,
    INVSQRT,
    LOG,
    SQRT,
    spectral,
    spectral_apply,
    sym_exp,
    sym_invsqrt,
    sym_log,
    sym_pow,
    sym_rectify,
    sym_sqrt,
    sym_sqrt_invsqrt,
    trusted,
)
from tests.helpers import random_spd, rotated

FUNCTIONS = {
    "log": (sym_log, scipy.linalg.logm),
    "exp": (sym_exp, scipy.linalg.expm),
    "sqrt": (sym_sqrt, scipy.linalg.sqrtm),
    "invsqrt": (sym_invsqrt, lambda a: np.linalg.inv(scipy.linalg.sqrtm(a))),
    "pow0.3": (lambda x: sym_pow(x, 0.3), lambda a: scipy.linalg.fractional_matrix_power(a, 0.3)),
    "pow-1.5": (lambda x: sym_pow(x, -1.5), lambda a: scipy.linalg.fractional_matrix_power(a, -1.5)),
}

TIED_INPUTS = {
    "identity": torch.eye(3, dtype=torch.float64),
    "diag(1,1,2)": torch.diag(torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64)),
    "rotated (1,1,2)": rotated([1.0, 1.0, 2.0]),
    "rotated (0.5,0.5,0.5,3,3)": rotated([0.5, 0.5, 0.5, 3.0, 3.0], seed=3),
    "near tie 1e-9": rotated([1.0, 1.0 + 1e-9, 2.0], seed=5),
}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_values_match_scipy(name):
    fn, reference = FUNCTIONS[name]
    x = random_spd(4, n=6, cond=50.0)
    out = fn(x)
    for i in range(4):
        expected = np.real(reference(x[i].numpy()))
        np.testing.assert_allclose(out[i].numpy(), expected, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_gradcheck_random(name):
    fn = FUNCTIONS[name][0]
    x = random_spd(2, 3, n=5, cond=20.0).requires_grad_()
    with trusted():
        assert torch.autograd.gradcheck(fn, (x,))


@pytest.mark.parametrize("tied", TIED_INPUTS)
@pytest.mark.parametrize("name", FUNCTIONS)
def test_gradcheck_repeated_eigenvalues(name, tied):
    fn = FUNCTIONS[name][0]
    x = TIED_INPUTS[tied].clone().requires_grad_()
    with trusted():
        assert torch.autograd.gradcheck(fn, (x,))


@pytest.mark.parametrize("tied", TIED_INPUTS)
def test_gradcheck_rectify(tied):
    # Threshold away from the eigenvalues (ReEig is not differentiable at λ = ε).
    for eps in (0.1, 1.5):
        x = TIED_INPUTS[tied].clone().requires_grad_()
        with trusted():
            assert torch.autograd.gradcheck(lambda a, e=eps: sym_rectify(a, e), (x,))


def test_rectify_clamps_eigenvalues():
    x = rotated([1e-6, 0.5, 2.0])
    eig = torch.linalg.eigvalsh(sym_rectify(x, 0.1))
    torch.testing.assert_close(eig, torch.tensor([0.1, 0.5, 2.0], dtype=torch.float64))


def test_gradient_matches_torch_eigh_autograd_for_distinct_eigenvalues():
    """Independent reference: torch's own eigh backward is exact when eigenvalues are distinct."""
    x = random_spd(3, n=6, cond=30.0)
    weight = torch.randn(3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    a = x.clone().requires_grad_()
    (sym_log(a) * weight).sum().backward()
    b = x.clone().requires_grad_()
    eigvals, u = torch.linalg.eigh(0.5 * (b + b.mT))
    ((u * torch.log(eigvals).unsqueeze(-2)) @ u.mT * weight).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-11)


def test_torch_eigh_backward_fails_on_ties_but_ours_does_not():
    x = torch.eye(4, dtype=torch.float64, requires_grad=True)
    eigvals, u = torch.linalg.eigh(x)
    ((u * torch.log(eigvals).unsqueeze(-2)) @ u.mT).sum().backward()
    assert not torch.isfinite(x.grad).all()
    y = torch.eye(4, dtype=torch.float64, requires_grad=True)
    sym_log(y).sum().backward()
    # d/dX tr(log X)·1ᵀ1 at X = I is the all-ones matrix (f'(1) = 1 on every pair).
    torch.testing.assert_close(y.grad, torch.ones(4, 4, dtype=torch.float64))


def test_shared_eigh_matches_separate_calls():
    x = random_spd(5, n=4, cond=10.0)
    a = x.clone().requires_grad_()
    s, i = sym_sqrt_invsqrt(a)
    (s.sum() + 2 * i.sum()).backward()
    b = x.clone().requires_grad_()
    (sym_sqrt(b).sum() + 2 * sym_invsqrt(b).sum()).backward()
    torch.testing.assert_close(s, sym_sqrt(x))
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)
    with trusted():
        assert torch.autograd.gradcheck(lambda t: spectral_apply(t, LOG, EXP, SQRT, INVSQRT),
                                        (b.detach().requires_grad_(),))


def test_unused_output_gets_no_gradient_contribution():
    x = random_spd(n=4).requires_grad_()
    _, log = spectral_apply(x, SQRT, LOG)
    log.sum().backward()
    y = random_spd(n=4).requires_grad_()
    sym_log(y).sum().backward()
    torch.testing.assert_close(x.grad, y.grad)


@pytest.mark.parametrize("name", ["log", "invsqrt", "sqrt", "pow-1.5"])
def test_ill_conditioned_input_gives_finite_values_and_gradients(name):
    fn = FUNCTIONS[name][0]
    x = random_spd(8, n=10, cond=1e8).requires_grad_()
    out = fn(x)
    out.pow(2).sum().backward()
    assert torch.isfinite(out).all()
    assert torch.isfinite(x.grad).all()


def test_ill_conditioned_log_gradient_matches_high_precision_reference():
    """Directional derivative of ⟨W, log X⟩ at a near-tied, cond-1e8 X, against 60-digit mpmath."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 60
    x = rotated([1e-8, 1e-8 * (1 + 1e-7), 1e-3, 1.0], seed=7)
    g = torch.Generator().manual_seed(8)
    w = torch.randn(4, 4, dtype=torch.float64, generator=g)
    v = torch.randn(4, 4, dtype=torch.float64, generator=g)
    v = 0.5 * (v + v.T)
    a = x.clone().requires_grad_()
    (sym_log(a) * w).sum().backward()
    ours = float((a.grad * v).sum())

    def objective(t):
        m = mpmath.matrix(x.tolist()) + t * mpmath.matrix(v.tolist())
        eigvals, q = mpmath.eigsy(m)
        log = q * mpmath.diag([mpmath.log(e) for e in eigvals]) * q.T
        return mpmath.fsum(mpmath.matrix(w.tolist())[i, j] * log[i, j]
                           for i in range(4) for j in range(4))

    h = mpmath.mpf("1e-25")
    reference = float((objective(h) - objective(-h)) / (2 * h))
    assert ours == pytest.approx(reference, rel=1e-6)


def test_float32_matches_float64():
    x = random_spd(4, n=8, cond=100.0)
    for fn in (sym_log, sym_sqrt, sym_invsqrt):
        torch.testing.assert_close(fn(x.float()).double(), fn(x), rtol=1e-4, atol=1e-4)


def _float32_rank_deficient_covariance() -> torch.Tensor:
    """A float32 covariance of 10 samples in 20 dimensions plus a 1e-6 ridge: positive definite
    (Cholesky accepts it), but float32 ``eigh`` returns a negative eigenvalue for it."""
    a = torch.randn(20, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(64))
    x = (a @ a.T / 10 + 1e-6 * torch.eye(20, dtype=torch.float64)).float()
    return 0.5 * (x + x.T)


def test_positive_definite_float32_input_whose_eigh_is_negative_gives_finite_results():
    x = _float32_rank_deficient_covariance()
    assert torch.linalg.cholesky_ex(x).info == 0
    eigvals = torch.linalg.eigh(x)[0]
    assert float(eigvals[0]) <= 0  # the case: eigh is wrong by rounding
    reference = sym_log(x.double())
    for fn in (sym_log, sym_sqrt, sym_invsqrt, lambda m: sym_pow(m, -1.5)):
        a = x.clone().requires_grad_()
        out = fn(a)
        out.pow(2).sum().backward()
        assert torch.isfinite(out).all() and torch.isfinite(a.grad).all()
    # The ten eigenvalues of the data as in float64; the ten of the ridge (1e-6, at float32's
    # resolution of this matrix) no lower than the floor's logarithm and near log(1e-6) = -13.8.
    logs = torch.linalg.eigvalsh(sym_log(x).double())
    torch.testing.assert_close(logs[10:], torch.linalg.eigvalsh(reference)[10:], rtol=0, atol=1e-3)
    floor = torch.finfo(torch.float32).eps * float(eigvals[-1])
    assert float(logs[0]) >= math.log(floor) - 1e-3 and float(logs[9]) < -12


@pytest.mark.parametrize("name", ["log", "sqrt", "invsqrt", "pow-1.5"])
@pytest.mark.parametrize("low", [-1e-3, -1e-20, 1e-20])
def test_the_gradient_below_the_eigenvalue_floor_is_that_of_the_floored_function(name, low):
    """The diff review: the backward used f's divided differences at the floored eigenvalues, a
    gradient of 1/(eps·max) (1e15) through an eigenvalue the forward had replaced by a constant.
    Reference: autograd through eigh of f(max(λ, floor)), the floor held constant."""
    fn = {"log": LOG, "sqrt": SQRT, "invsqrt": INVSQRT, "pow-1.5": spectral.power_function(-1.5)}[name]
    x = rotated([low, 0.5, 1.0, 2.0], seed=3)
    w = torch.randn(4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    ours = x.clone().requires_grad_()
    (spectral_apply(ours, fn, validate=False)[0] * w).sum().backward()
    ref = x.clone().requires_grad_()
    lam, u = torch.linalg.eigh(ref)
    floor = torch.finfo(lam.dtype).eps * lam.detach().abs().amax(-1, keepdim=True)
    value = fn.value(torch.maximum(lam, floor))
    ((u * value.unsqueeze(-2)) @ u.mT * w).sum().backward()
    torch.testing.assert_close(ours.grad, ref.grad, rtol=1e-6, atol=1e-6)
    if name in ("log", "sqrt"):  # was 1e15 for log; invsqrt and powers < 0 are large at the floor itself
        assert float(ours.grad.abs().max()) < 1e3


def test_the_eigenvalue_floor_leaves_well_conditioned_input_alone():
    x = random_spd(4, n=8, cond=1e6)
    eigvals = torch.linalg.eigvalsh(x)
    assert torch.equal(spectral.floor_eigenvalues(eigvals), eigvals)
    rectified = sym_rectify(torch.diag(torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64)), eps=1e-4)
    torch.testing.assert_close(torch.linalg.eigvalsh(rectified),
                               torch.tensor([1e-4, 1e-4, 2.0], dtype=torch.float64))


def test_leading_batch_dimensions():
    x = random_spd(2, 3, 4, n=5)
    out = sym_log(x)
    assert out.shape == (2, 3, 4, 5, 5)
    torch.testing.assert_close(out[1, 2, 3], sym_log(x[1, 2, 3]))


def _thread_counts() -> tuple[int, ...]:
    """(torch's process-wide count, this thread's OpenMP and MKL team sizes), of those this torch
    build reports (one without MKL has no MKL line, one without OpenMP none of them)."""
    text = torch.__config__.parallel_info()
    found = (re.search(rf"{name}\(\) : (\d+)", text)
             for name in ("at::get_num_threads", "omp_get_max_threads", "mkl_get_max_threads"))
    return tuple(int(match.group(1)) for match in found if match)


def test_the_eigh_pool_keeps_torch_threads_and_runs_lapack_single_threaded():
    """The pool's workers set torch's process-wide thread count to 1 when they started (at the
    first large decomposition): every thread that started torch work after that ran
    single-threaded (the main thread too, where it had not yet run a parallel loop)."""
    threads_before, pool_before = torch.get_num_threads(), spectral._eigh_threads
    try:
        torch.set_num_threads(2)
        spectral.set_eigh_threads(2)
        x = random_spd(4 * spectral._EIGH_MIN_CHUNK, n=6)
        values, vectors = spectral._eigh(x)
        torch.testing.assert_close(vectors @ torch.diag_embed(values) @ vectors.mT, x)
        assert torch.get_num_threads() == 2
        worker = spectral._eigh_pool.submit(lambda: (torch.randn(10**6).sum(), _thread_counts())[1])
        assert set(worker.result()[1:]) <= {1}  # its own teams: no nested oversubscription
        assert torch.get_num_threads() == 2
        with ThreadPoolExecutor(1) as later:  # a thread that starts torch work after the pool
            assert set(later.submit(_thread_counts).result()) == {2}
    finally:
        spectral.set_eigh_threads(pool_before)
        torch.set_num_threads(threads_before)


class TestBadInput:
    def test_non_symmetric_names_batch_index(self):
        x = random_spd(3, 2, n=4)
        x[1, 1, 0, 2] += 1.0
        with pytest.raises(ValueError, match=r"not symmetric at batch index \(1, 1\)"):
            sym_log(x)

    def test_non_finite_names_batch_index(self):
        x = random_spd(4, n=3)
        x[2, 0, 0] = float("nan")
        with pytest.raises(ValueError, match=r"non-finite.*batch index \(2,\)"):
            sym_exp(x)

    def test_not_positive_definite_names_batch_index(self):
        x = random_spd(5, n=3)
        x[3] = rotated([1.0, -0.5, 2.0])
        with pytest.raises(ValueError, match=r"not positive definite at batch index \(3,\)"):
            sym_sqrt(x)

    def test_exp_accepts_indefinite_symmetric(self):
        assert torch.isfinite(sym_exp(rotated([1.0, -3.0, 0.0]))).all()

    def test_not_square(self):
        with pytest.raises(ValueError, match="square"):
            sym_log(torch.ones(3, 4, dtype=torch.float64))

    def test_trusted_skips_checks(self):
        x = rotated([1.0, 2.0, 3.0])
        x[0, 1] += 1e-3
        with trusted():
            sym_log(x)  # symmetrised internally, no error
        with pytest.raises(ValueError):
            sym_log(x)
