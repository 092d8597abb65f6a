"""Covariance pooling with shrinkage against scikit-learn and first principles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.covariance import ledoit_wolf

from spdnas.geometry import covariance


def test_ledoit_wolf_matches_sklearn():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, 15, dtype=torch.float64, generator=g)
    ours = covariance(x, "ledoit-wolf")
    for i in range(4):
        expected, _ = ledoit_wolf(x[i].numpy().T)
        np.testing.assert_allclose(ours[i].numpy(), expected, rtol=1e-10, atol=1e-12)


def test_fixed_shrinkage_makes_short_series_spd():
    x = torch.randn(3, 12, 5, dtype=torch.float64)  # T < c: the sample covariance is singular
    assert (torch.linalg.eigvalsh(covariance(x, 0.0)) < 1e-10).any()
    assert (torch.linalg.eigvalsh(covariance(x, 0.1)) > 0).all()
    assert (torch.linalg.eigvalsh(covariance(x, "ledoit-wolf")) > 0).all()


def test_fixed_shrinkage_is_the_convex_combination_with_the_scaled_identity():
    x = torch.randn(2, 6, 30, dtype=torch.float64)
    for gamma in (0.1, 0.5, 1.0):
        for sample, out in zip(x.numpy(), covariance(x, gamma).numpy(), strict=True):
            s = np.cov(sample)
            expected = (1 - gamma) * s + gamma * np.trace(s) / 6 * np.eye(6)
            np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-14)


def test_unshrunk_is_sample_covariance():
    x = torch.randn(5, 40, dtype=torch.float64)
    np.testing.assert_allclose(covariance(x, 0.0).numpy(), np.cov(x.numpy()), rtol=1e-12)


def test_complex_gives_real_part_of_hermitian_covariance():
    x = torch.randn(4, 30, dtype=torch.complex128)
    centred = x - x.mean(-1, keepdim=True)
    expected = (centred @ centred.conj().T).real / 29
    torch.testing.assert_close(covariance(x, 0.0), expected)
    assert (torch.linalg.eigvalsh(covariance(x, "ledoit-wolf")) > 0).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="shrinkage must be in"):
        covariance(torch.randn(3, 10), 1.5)
    with pytest.raises(ValueError, match="at least 2 time samples"):
        covariance(torch.randn(3, 1), 0.1)
