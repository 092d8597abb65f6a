"""Architecture steps: first-order gradient, second-order gradient against a finite-difference
estimate of the unrolled validation loss, manifold-respecting virtual step, frozen statistics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spdnas.config import load_config
from spdnas.nn.batchnorm import BatchNormSPD, frozen_running_stats
from spdnas.search.bilevel import swapped
from spdnas.search.searcher import Searcher
from tests.helpers import spd_classification

F64 = torch.float64


def make_searcher(order: str, mixture: str, momentum: float = 0.0, grad_clip: float | None = 5.0):
    torch.manual_seed(0)
    x, y = spd_classification(12, classes=3, n=6, seed=2)
    clip = "null" if grad_clip is None else grad_clip
    cfg = load_config(None, ["model.reduced_dims=[3]", f"search.order={order}", f"model.mixture={mixture}",
                             f"search.weight_momentum={momentum}", f"search.grad_clip={clip}"])
    searcher = Searcher(cfg.model, cfg.search, 6, 3)
    return searcher, (x[:18], y[:18]), (x[18:], y[18:])


def unrolled_val_loss(searcher: Searcher, train_batch, val_batch) -> float:
    """L_val(w'(α), α) with w' the virtual step, computed by forward passes only."""
    arch = searcher.architect
    with frozen_running_stats(searcher.supernet):
        unrolled = arch.virtual_weights(*train_batch)
        with swapped(arch.weights, unrolled), torch.no_grad():
            return float(F.cross_entropy(searcher.forward(val_batch[0]), val_batch[1]))


@pytest.mark.parametrize("mixture, momentum, grad_clip", [("softmax", 0.0, 5.0), ("sparsemax", 0.0, 5.0),
                                                           ("softmax", 0.9, 5.0), ("softmax", 0.9, 0.05)])
def test_second_order_gradient_matches_finite_differences(mixture, momentum, grad_clip):
    """Clip 5 is inactive (gradient norm ~0.3); with 0.05 it clips, and the clipping factor
    c = clip / ‖g‖ varies with α: the gradient must follow it (it was held constant, which left
    an error of order ξ, ~1e-2 relative here)."""
    searcher, train_batch, val_batch = make_searcher("second", mixture, momentum, grad_clip)
    for _ in range(3):  # move away from the initial point (and fill momentum buffers)
        searcher.step(train_batch, val_batch)
    searcher.supernet.train()
    if mixture == "sparsemax":  # keep every op in the support so the loss is smooth in α
        with torch.no_grad():
            searcher.alphas.normal.mul_(0.01)
            searcher.alphas.reduce.mul_(0.01)
    with frozen_running_stats(searcher.supernet):
        clip_factor = searcher.architect._virtual_step(*train_batch)[1]
    assert (float(clip_factor) < 0.5) == (grad_clip < 1)
    _, grads = searcher.architect.arch_gradient(train_batch, val_batch)
    alphas = searcher.architect.alphas
    direction = [torch.randn_like(a, generator=torch.Generator().manual_seed(5)) for a in alphas]
    analytic = float(sum((g * d).sum() for g, d in zip(grads, direction, strict=True)))
    eps = 1e-4
    values = []
    for sign in (1, -1):
        with torch.no_grad():
            for a, d in zip(alphas, direction, strict=True):
                a.add_(sign * eps * d)
        values.append(unrolled_val_loss(searcher, train_batch, val_batch))
        with torch.no_grad():
            for a, d in zip(alphas, direction, strict=True):
                a.sub_(sign * eps * d)
    numeric = (values[0] - values[1]) / (2 * eps)
    # Stated tolerance: 1e-4 relative (measured ~4e-7; first order is off by ~1e-2).
    assert analytic == pytest.approx(numeric, rel=1e-4)
    searcher.architect.order = "first"
    _, first = searcher.architect.arch_gradient(train_batch, val_batch)
    first_order = float(sum((g * d).sum() for g, d in zip(first, direction, strict=True)))
    assert abs(first_order - numeric) > 10 * abs(analytic - numeric)


def test_first_order_gradient_is_the_validation_gradient():
    searcher, train_batch, val_batch = make_searcher("first", "sparsemax")
    searcher.supernet.train()
    loss, grads = searcher.architect.arch_gradient(train_batch, val_batch)
    with frozen_running_stats(searcher.supernet):
        val = F.cross_entropy(searcher.forward(val_batch[0]), val_batch[1])
    expected = torch.autograd.grad(val, list(searcher.alphas.parameters()))
    for g, e in zip(grads, expected, strict=True):
        torch.testing.assert_close(g, e)
    assert float(loss.detach()) == pytest.approx(float(val))


def test_virtual_step_stays_on_the_manifolds():
    searcher, train_batch, _ = make_searcher("second", "softmax")
    searcher.supernet.train()
    with frozen_running_stats(searcher.supernet):
        unrolled = searcher.architect.virtual_weights(*train_batch)
    changed = 0
    for name_param, w in zip(searcher.supernet.named_parameters(), unrolled, strict=True):
        name, p = name_param
        if name.endswith("weight") and p.dim() == 4:  # BiMap Stiefel weights
            eye = torch.eye(w.shape[-1], dtype=F64)
            assert float((w.mT @ w - eye).abs().max()) < 1e-12, name
            changed += int(not torch.equal(w, p.detach()))
        if name.endswith("bias") and p.dim() == 2:  # batch-norm SPD biases
            assert float(torch.linalg.eigvalsh(w).min()) > 0, name
    assert changed > 0


def test_architecture_step_leaves_weights_and_running_stats_alone():
    searcher, train_batch, val_batch = make_searcher("second", "sparsemax")
    searcher.supernet.train()
    before = {k: v.clone() for k, v in searcher.supernet.state_dict().items()}
    alphas_before = [a.detach().clone() for a in searcher.alphas.parameters()]
    searcher.architect.step(train_batch, val_batch)
    for k, v in searcher.supernet.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0, msg=k)
    assert any(not torch.equal(a, b) for a, b in zip(searcher.alphas.parameters(), alphas_before,
                                                     strict=True))
    assert any(isinstance(m, BatchNormSPD) for m in searcher.supernet.modules())


def test_weight_step_never_moves_alphas():
    searcher, train_batch, _ = make_searcher("first", "sparsemax")
    searcher.supernet.train()
    alphas = [a.detach().clone() for a in searcher.alphas.parameters()]
    x, y = train_batch
    searcher.weight_optimizer.zero_grad()
    F.cross_entropy(searcher.forward(x), y).backward()
    searcher.weight_optimizer.step()
    for a, b in zip(searcher.alphas.parameters(), alphas, strict=True):
        assert torch.equal(a.detach(), b)


def test_search_step_is_adam_on_the_validation_gradient_then_a_weight_step():
    """One ``Searcher.step``: α moves by Adam's first step (written out here) along the
    validation-loss gradient at the weights before the step; then the weights move by one
    optimizer step on the training loss at the new α."""
    import copy

    searcher, train_batch, val_batch = make_searcher("first", "softmax")
    searcher.search_cfg.grad_clip = None
    reference = copy.deepcopy(searcher)
    cfg = searcher.search_cfg
    searcher.step(train_batch, val_batch)

    alphas = list(reference.alphas.parameters())
    reference.supernet.train()
    val = F.cross_entropy(reference.forward(val_batch[0]), val_batch[1])
    grads = torch.autograd.grad(val, alphas)
    for a, g, moved in zip(alphas, grads, searcher.alphas.parameters(), strict=True):
        g = g + cfg.arch_weight_decay * a.detach()  # Adam's L2 term; first step: m̂ = g, v̂ = g²
        expected = a.detach() - cfg.arch_lr * g / (g.abs() + 1e-8)
        torch.testing.assert_close(moved.detach(), expected, rtol=1e-9, atol=1e-12)
        assert float((moved.detach() - a.detach()).abs().max()) > 0.5 * cfg.arch_lr

    with torch.no_grad():
        for a, moved in zip(alphas, searcher.alphas.parameters(), strict=True):
            a.copy_(moved)
    optimizer = reference.weight_optimizer
    optimizer.zero_grad()
    F.cross_entropy(reference.forward(train_batch[0]), train_batch[1]).backward()
    optimizer.step()
    for (name, expected), got in zip(reference.supernet.named_parameters(), searcher.supernet.parameters(),
                                     strict=True):
        torch.testing.assert_close(got.detach(), expected.detach(), rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.parametrize("momentum, grad_clip, warm", [(0.0, None, 2), (0.9, None, 2), (0.9, 0.05, 2),
                                                       (0.9, None, 0)])
def test_virtual_step_is_the_weight_optimizers_step(momentum, grad_clip, warm):
    """``w'`` equals the weights after a real step of the weight optimizer, with momentum
    buffers, weight decay and (0.05: active; the gradient norm is about 0.3) clipping in play;
    also at the very first step, before any buffer has been filled."""
    import copy

    searcher, train_batch, val_batch = make_searcher("second", "softmax", momentum, grad_clip)
    for _ in range(warm):  # fill the momentum buffers
        searcher.step(train_batch, val_batch)
    assert searcher.weight_optimizer.param_groups[-1]["weight_decay"] > 0
    searcher.supernet.train()
    real = copy.deepcopy(searcher)
    with frozen_running_stats(searcher.supernet):
        virtual = searcher.architect.virtual_weights(*train_batch)
    with frozen_running_stats(real.supernet):
        real.weight_optimizer.zero_grad()
        F.cross_entropy(real.forward(train_batch[0]), train_batch[1]).backward()
        if grad_clip is not None:  # as the weight step does; the norm shows clipping is active
            assert float(torch.nn.utils.clip_grad_norm_(real.weights, grad_clip)) > 2 * grad_clip
        real.weight_optimizer.step()
    moved = 0
    for (name, p), w, before in zip(real.supernet.named_parameters(), virtual, searcher.supernet.parameters(),
                                    strict=True):
        torch.testing.assert_close(w, p.detach(), rtol=1e-9, atol=1e-12, msg=name)
        moved += int(not torch.equal(w, before.detach()))
    assert moved > 0


def test_a_float32_search_step_on_nearly_singular_covariances_that_float32_validation_accepts():
    """Rank-10 covariances of 20 channels shrunk until their smallest eigenvalue is 1.5× float32's
    positive-definiteness tolerance: valid float32 data, on which the supernet's inner means used
    to get negative eigenvalues from float32 ``eigh`` (NaN, then a LinAlgError at step 1)."""
    from spdnas.data.validation import default_pd_rtol, shrink_to_identity
    from spdnas.geometry.covariance import covariance

    n, batch = 20, 30
    g = torch.Generator().manual_seed(0)
    scales = torch.linspace(0.2, 3, n, dtype=F64)[:, None]
    signals = torch.randn(2 * batch, n, 10, dtype=F64, generator=g) * scales
    x = covariance(signals, shrinkage=0.0)
    mean_eig = x.diagonal(dim1=-2, dim2=-1).mean(-1)
    smallest = torch.linalg.eigvalsh(x)[:, 0]
    target = 1.5 * default_pd_rtol(n, torch.float32) * mean_eig
    x = shrink_to_identity(x, ((target - smallest) / (mean_eig - smallest)).clamp(0, 1)).float()
    y = torch.randint(0, 3, (2 * batch,), generator=g)
    assert bool((torch.linalg.cholesky_ex(x).info == 0).all())
    torch.manual_seed(0)
    cfg = load_config(None, ["runtime.dtype=float32"])
    searcher = Searcher(cfg.model, cfg.search, n, 3, dtype=torch.float32)
    metrics = searcher.step((x[:batch], y[:batch]), (x[batch:], y[batch:]))
    assert torch.isfinite(torch.tensor([metrics.train_loss, metrics.val_loss])).all()
    assert all(bool(torch.isfinite(p).all()) for p in [*searcher.weights, *searcher.alphas.parameters()])
