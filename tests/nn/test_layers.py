"""SPD layers: gradchecks, Stiefel constraint under optimisation, batch-norm semantics."""

from __future__ import annotations

import pytest
import torch

from spdnas.geometry import distance, karcher_mean, sym_invsqrt, trusted
from spdnas.geometry.covariance import covariance
from spdnas.nn import (
    BatchNormSPD,
    BiMap,
    CovariancePooling,
    DirectSumBiMap,
    ExpEig,
    LogEig,
    ReEig,
    RiemannianPool2d,
    WeightedChannelPooling,
    direct_sum,
    frozen_running_stats,
    pooled_size,
    weight_optimizer,
)
from tests.helpers import random_spd, rotated

F64 = torch.float64


def gradcheck_module(module, x, check_params=True):
    """gradcheck w.r.t. the input and (optionally) every parameter of ``module``."""
    params = [p for p in module.parameters()] if check_params else []
    names = [n for n, _ in module.named_parameters()] if check_params else []

    def fn(inp, *ps):
        overrides = dict(zip(names, ps, strict=True))
        return torch.func.functional_call(module, overrides, (inp,))

    inputs = (x.detach().clone().requires_grad_(), *[p.detach().clone().requires_grad_() for p in params])
    with trusted():
        return torch.autograd.gradcheck(fn, inputs)


def test_bimap_shape_and_gradcheck():
    torch.manual_seed(0)
    layer = BiMap(2, 3, 6, 4, dtype=F64)
    x = random_spd(5, 2, n=6)
    y = layer(x)
    assert y.shape == (5, 3, 4, 4)
    w = layer.weight
    expected = sum(w[1, i].T @ x[2, i] @ w[1, i] for i in range(2))
    torch.testing.assert_close(y[2, 1], expected)
    assert gradcheck_module(layer, random_spd(2, 2, n=6))


def test_bimap_rejects_growing_and_wrong_shapes():
    with pytest.raises(ValueError, match="cannot grow"):
        BiMap(1, 1, 4, 6)
    with pytest.raises(ValueError, match=r"BiMap expects \(B, 2, 6, 6\)"):
        BiMap(2, 1, 6, 4, dtype=F64)(random_spd(3, 1, n=6))


def test_bimap_stays_orthonormal_after_100_steps():
    torch.manual_seed(1)
    layer = BiMap(3, 2, 8, 5, dtype=F64)
    opt = weight_optimizer(layer.parameters(), lr=0.5, momentum=0.9)
    x = random_spd(16, 3, n=8, cond=100.0)
    target = random_spd(16, 2, n=5, generator=torch.Generator().manual_seed(3))
    losses = []
    for _ in range(100):
        opt.zero_grad()
        loss = (LogEig()(layer(x)) - LogEig()(target)).pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    w = layer.weight.detach()
    err = (w.mT @ w - torch.eye(5, dtype=F64)).abs().amax()
    assert float(err) < 1e-10
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("module", [ReEig(0.05), LogEig(), ExpEig()], ids=["ReEig", "LogEig", "ExpEig"])
def test_eig_layers_gradcheck_including_ties(module):
    for x in (random_spd(2, 2, n=4), torch.eye(3, dtype=F64)[None, None],
              torch.diag(torch.tensor([1.0, 1.0, 2.0], dtype=F64))[None, None]):
        assert gradcheck_module(module, x)


def test_reeig_value():
    x = rotated([1e-6, 1e-2, 3.0])[None, None]
    eig = torch.linalg.eigvalsh(ReEig(1e-4)(x))
    torch.testing.assert_close(eig[0, 0], torch.tensor([1e-4, 1e-2, 3.0], dtype=F64))


def test_logeig_expeig_inverse():
    x = random_spd(3, 2, n=5, cond=1e4)
    torch.testing.assert_close(ExpEig()(LogEig()(x)), x, rtol=1e-10, atol=1e-10)


class TestBatchNorm:
    def test_normalised_batch_mean_is_the_bias(self):
        torch.manual_seed(2)
        bn = BatchNormSPD(4, karcher_iterations=60, dtype=F64)
        with torch.no_grad():
            bn.bias.copy_(random_spd(n=4, cond=5.0, generator=torch.Generator().manual_seed(4)))
        x = random_spd(10, 3, n=4, cond=50.0)
        y = bn(x)
        mean_out = karcher_mean(y.reshape(-1, 4, 4), iterations=100, tol=1e-14)
        torch.testing.assert_close(mean_out, bn.bias.detach(), rtol=1e-9, atol=1e-9)

    def test_running_mean_geodesic_update_and_eval_mode(self):
        bn = BatchNormSPD(3, momentum=0.1, dtype=F64)
        x = random_spd(8, 1, n=3, cond=10.0)
        bn(x)
        batch_mean = bn.batch_mean(x)
        # One geodesic step of 0.1 from the identity: d(I, R) = 0.1 d(I, G).
        eye = torch.eye(3, dtype=F64)
        assert float(distance(eye, bn.running_mean)) == pytest.approx(
            0.1 * float(distance(eye, batch_mean)), rel=1e-9)
        assert "running_mean" in bn.state_dict()
        bn.eval()
        before = bn.running_mean.clone()
        y = bn(x)
        torch.testing.assert_close(bn.running_mean, before)
        r_isqrt = sym_invsqrt(before)  # bias is I: eval output is R^{-1/2} X R^{-1/2}
        torch.testing.assert_close(y, r_isqrt @ x @ r_isqrt)

    def test_running_mean_follows_the_geodesic_from_where_it_was(self):
        """Two updates from a non-identity running mean R: R ← R^{1/2}(R^{-1/2} G R^{-1/2})^{0.1}R^{1/2}
        (written with SciPy), towards each batch's mean G, starting from the previous R."""
        import numpy as np
        from scipy.linalg import fractional_matrix_power, sqrtm

        bn = BatchNormSPD(3, momentum=0.1, dtype=F64)
        with torch.no_grad():
            bn.running_mean.copy_(random_spd(n=3, cond=20.0, generator=torch.Generator().manual_seed(7)))
        expected = bn.running_mean.numpy().copy()
        for seed in (1, 2):
            x = random_spd(8, 2, n=3, cond=10.0, generator=torch.Generator().manual_seed(seed))
            g = bn.batch_mean(x).detach().numpy()
            bn(x)
            r_sqrt = np.real(sqrtm(expected))
            r_isqrt = np.linalg.inv(r_sqrt)
            step = np.real(fractional_matrix_power(r_isqrt @ g @ r_isqrt, 0.1))
            expected = r_sqrt @ step @ r_sqrt
            np.testing.assert_allclose(bn.running_mean.numpy(), expected, rtol=1e-10, atol=1e-12)

    def test_frozen_running_stats(self):
        bn = BatchNormSPD(3, dtype=F64)
        x = random_spd(8, 2, n=3)
        with frozen_running_stats(bn):
            bn(x)
        torch.testing.assert_close(bn.running_mean, torch.eye(3, dtype=F64))
        assert bn.update_running_stats
        bn(x)
        assert not torch.allclose(bn.running_mean, torch.eye(3, dtype=F64))

    @pytest.mark.parametrize("training", [True, False])
    def test_gradcheck(self, training):
        bn = BatchNormSPD(3, dtype=F64)
        with torch.no_grad():
            bn.bias.copy_(random_spd(n=3, generator=torch.Generator().manual_seed(5)))
            bn.running_mean.copy_(random_spd(n=3, generator=torch.Generator().manual_seed(6)))
        bn.train(training)
        with frozen_running_stats(bn):
            assert gradcheck_module(bn, random_spd(4, 2, n=3))

    def test_bias_stays_spd_under_riemannian_sgd(self):
        bn = BatchNormSPD(4, dtype=F64)
        opt = weight_optimizer(bn.parameters(), lr=0.5)
        x = random_spd(6, 2, n=4, cond=20.0)
        for _ in range(30):
            opt.zero_grad()
            LogEig()(bn(x)).pow(2).sum().mul(-1).backward()  # push the bias outwards
            opt.step()
        assert (torch.linalg.eigvalsh(bn.bias.detach()) > 0).all()

    def test_ill_conditioned_batch_has_finite_gradients(self):
        bn = BatchNormSPD(6, dtype=F64)
        x = random_spd(8, 2, n=6, cond=1e8).requires_grad_()
        LogEig()(bn(x)).sum().backward()
        assert torch.isfinite(x.grad).all()

    def test_rejects_non_spd(self):
        x = random_spd(3, 1, n=3)
        x[2, 0] = -x[2, 0]
        with pytest.raises(ValueError, match=r"BatchNormSPD input.*batch index \(2, 0\)"):
            BatchNormSPD(3, dtype=F64)(x)


class TestPooling:
    def test_size_and_gradcheck(self):
        assert pooled_size(20, 2, 2) == 10 and pooled_size(93, 4, 3) == 30
        x = random_spd(2, 2, n=6)
        for mode in ("avg", "max"):
            pool = RiemannianPool2d(mode, 2, 2)
            y = pool(x)
            assert y.shape == (2, 2, 3, 3)
            assert (torch.linalg.eigvalsh(y) > 0).all()
            assert gradcheck_module(pool, x)

    def test_avg_pool_value(self):
        x = random_spd(1, 1, n=4)
        log = LogEig()(x)[0, 0]
        pooled = torch.nn.functional.avg_pool2d(log[None, None], 2, 2)
        torch.testing.assert_close(RiemannianPool2d("avg", 2, 2)(x), ExpEig()(pooled))

    def test_weighted_channel_pooling(self):
        torch.manual_seed(3)
        wp = WeightedChannelPooling(3, dtype=F64)
        x = random_spd(4, 3, n=4)
        y = wp(x)
        from spdnas.geometry import sparsemax
        w = sparsemax(wp.logits.detach())
        torch.testing.assert_close(y[1, 2], karcher_mean(x[1], w[2]))
        assert gradcheck_module(wp, random_spd(2, 3, n=3))

    def test_bad_mode(self):
        with pytest.raises(ValueError, match="'avg' or 'max'"):
            RiemannianPool2d("min", 2, 2)


def test_direct_sum_blocks_and_gradcheck():
    a, b = random_spd(2, n=2), random_spd(2, n=3)
    d = direct_sum(a, b)
    torch.testing.assert_close(d[:, :2, :2], a)
    torch.testing.assert_close(d[:, 2:, 2:], b)
    assert (d[:, :2, 2:] == 0).all()
    torch.manual_seed(4)
    layer = DirectSumBiMap(2, 6, 5, dtype=F64)
    y = layer(random_spd(3, 2, n=6))
    assert y.shape == (3, 2, 5, 5)
    assert sum(1 for _ in layer.parameters()) == 2
    assert gradcheck_module(layer, random_spd(2, 2, n=6))


def test_direct_sum_is_its_two_bimaps_block_diagonal_deterministic_and_trainable():
    torch.manual_seed(5)
    layer = DirectSumBiMap(1, 4, 3, dtype=F64)
    x = random_spd(2, 1, n=4)
    out = layer(x)
    assert out.shape == (2, 1, 3, 3)
    w1, w2 = layer.first.weight[0, 0], layer.second.weight[0, 0]  # (4, 1) and (4, 2)
    torch.testing.assert_close(out[..., :1, :1], w1.T @ x @ w1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out[..., 1:, 1:], w2.T @ x @ w2, rtol=1e-12, atol=1e-12)
    assert not out[..., :1, 1:].any() and not out[..., 1:, :1].any()
    torch.testing.assert_close(layer(x), out, rtol=0, atol=0)  # no fresh random BiMaps per call
    layer(x).sum().backward()
    assert all(p.grad is not None for p in layer.parameters())


def test_covariance_pooling_layer():
    signals = torch.randn(3, 4, 25, dtype=F64)
    out = CovariancePooling(0.1)(signals)
    assert out.shape == (3, 1, 4, 4)
    assert (torch.linalg.eigvalsh(out) > 0).all()
    for shrinkage in (0.1, "ledoit-wolf"):  # the layer's own shrinkage, not another
        pooled = CovariancePooling(shrinkage)(signals)[:, 0]
        torch.testing.assert_close(pooled, covariance(signals, shrinkage), rtol=0, atol=0)
    assert not torch.allclose(covariance(signals, 0.1), covariance(signals, "ledoit-wolf"))
    assert gradcheck_module(CovariancePooling("ledoit-wolf"), torch.randn(2, 3, 10, dtype=F64),
                            check_params=False)


def test_weighted_channel_pooling_uses_only_the_support_exactly():
    torch.manual_seed(7)
    wp = WeightedChannelPooling(4, dtype=F64)
    with torch.no_grad():
        wp.logits.copy_(torch.tensor([[2.0, 0, 0, 0], [0.5, 0.6, 0, 0], [0.3, 0.9, 0.4, 0.1],
                                      [0, 0, 0, 3.0]], dtype=F64))
    x = random_spd(3, 4, n=4)
    from spdnas.geometry import sparsemax
    w = sparsemax(wp.logits.detach())
    assert int((w > 0).sum(-1).max()) < 4
    full = karcher_mean(x.unsqueeze(1).expand(-1, 4, -1, -1, -1), w)
    torch.testing.assert_close(wp(x), full, rtol=1e-12, atol=1e-12)
