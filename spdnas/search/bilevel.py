"""Bi-level architecture step (DARTS style), first and second order, manifold-aware.

First order: ``∇_α L_val(w, α)``.

Second order: ``∇_α L_val(w', α) − ξ ∇²_{α,w} L_train(w, α) · v`` with the virtual step
``w' = R_w(−ξ · d)``, ``d`` the weight optimizer's own update direction (Riemannian gradient,
momentum, weight decay), ``R`` the parameter's retraction (QR for Stiefel weights, the SPD
retraction for batch-norm biases, ``w + u`` for Euclidean ones), and ``v = M_w ∇_{w'} L_val``
the validation gradient mapped by the same Riemannian-gradient map ``M_w`` the update uses
(``M_w`` is self-adjoint, so this is the exact chain rule to first order in ξ). The
Hessian-vector product is a central finite difference with ``r = 0.01 / ‖v‖``. With gradient
clipping, ``d`` is built from the clipped train gradient ``c · g``, ``c = min(1, clip / ‖g‖)``,
as in the real weight step. Where it clips, ``c`` depends on α through ``‖g‖``:
``∂(c g)/∂α = c (I − κ ĝ ĝᵀ) ∂g/∂α`` with ``ĝ = g / ‖g‖`` and ``κ = ‖g‖ / (‖g‖ + 10⁻⁶)`` (the
epsilon of :func:`torch.nn.utils.clip_grad_norm_`), so the Hessian term is scaled by ``c`` and
taken along ``v − κ ⟨v, ĝ⟩ ĝ``.

Every forward pass here runs with the batch norms' running statistics frozen. An optional
``reduce`` callable averages gradients across data-parallel workers after every
``autograd.grad``, so the distributed runner needs no change here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager

import geoopt
import torch
from torch import Tensor, nn

from spdnas.nn.batchnorm import frozen_running_stats

GradReducer = Callable[[list[Tensor]], list[Tensor]]
LossFn = Callable[[Tensor, Tensor], Tensor]


def _identity_reduce(grads: list[Tensor]) -> list[Tensor]:
    return grads


def riemannian_direction(param: nn.Parameter, grad: Tensor, weight_decay: float) -> Tensor:
    """The Riemannian gradient the weight optimizer steps along (before momentum)."""
    if isinstance(param, geoopt.ManifoldParameter):
        return param.manifold.egrad2rgrad(param.detach(), grad)
    return grad + weight_decay * param.detach() if weight_decay else grad


def retract(param: nn.Parameter, step: Tensor) -> Tensor:
    """``R_w(step)``: the point reached from ``param`` along tangent vector ``step``."""
    if isinstance(param, geoopt.ManifoldParameter):
        return param.manifold.retr(param.detach(), step)
    return param.detach() + step


@contextmanager
def swapped(params: Sequence[nn.Parameter], values: Sequence[Tensor]):
    """Temporarily replace the data of ``params`` by ``values``."""
    saved = [p.detach().clone() for p in params]
    try:
        with torch.no_grad():
            for p, v in zip(params, values, strict=True):
                p.copy_(v)
        yield
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved, strict=True):
                p.copy_(s)


class Architect:
    """Owns the architecture optimizer and computes the architecture gradient.

    Parameters
    ----------
    forward : callable
        ``forward(x) -> logits`` of the supernet under the current architecture weights.
    weights : list of Parameter
        The network weights (what the weight optimizer steps).
    alphas : list of Parameter
        The architecture parameters.
    weight_optimizer : torch.optim.Optimizer
        Read for its learning rate, momentum buffers and weight decay (virtual step).
    arch_optimizer : torch.optim.Optimizer
        Adam over ``alphas``.
    order : {"first", "second"}
    loss_fn : callable
        ``loss_fn(logits, labels)``.
    reduce : callable, optional
        Averages a list of gradients across workers (identity in one process).
    grad_clip : float, optional
        The weight step's gradient-norm clip (``None``: no clipping); the virtual step clips
        the same way.
    """

    def __init__(self, forward: Callable[[Tensor], Tensor], module: nn.Module,
                 weights: list[nn.Parameter], alphas: list[nn.Parameter],
                 weight_optimizer: torch.optim.Optimizer, arch_optimizer: torch.optim.Optimizer,
                 order: str, loss_fn: LossFn, reduce: GradReducer | None = None,
                 grad_clip: float | None = None):
        if order not in ("first", "second"):
            raise ValueError(f"order must be 'first' or 'second', got {order!r}")
        self.forward = forward
        self.module = module
        self.weights = weights
        self.alphas = alphas
        self.weight_optimizer = weight_optimizer
        self.arch_optimizer = arch_optimizer
        self.order = order
        self.loss_fn = loss_fn
        self.reduce = reduce or _identity_reduce
        self.grad_clip = grad_clip
        rates = {group["lr"] for group in weight_optimizer.param_groups}
        if len(rates) != 1:
            raise ValueError(f"the virtual step needs one weight learning rate, got {sorted(rates)}")
        self._group_of = {id(p): group for group in weight_optimizer.param_groups for p in group["params"]}
        missing = [i for i, p in enumerate(weights) if id(p) not in self._group_of]
        if missing:
            raise ValueError(f"weights {missing} are not managed by the weight optimizer")

    @property
    def xi(self) -> float:
        """The virtual step size: the weight optimizer's (current) learning rate."""
        return self.weight_optimizer.param_groups[0]["lr"]

    def _grads(self, x: Tensor, y: Tensor, wrt: list[nn.Parameter]) -> tuple[Tensor, list[Tensor]]:
        loss = self.loss_fn(self.forward(x), y)
        grads = torch.autograd.grad(loss, wrt, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(wrt, grads, strict=True)]
        return loss.detach(), self.reduce(grads)

    def _momentum_term(self, p: nn.Parameter) -> Tensor | None:
        """``momentum · buffer`` of ``p`` in the weight optimizer, if it keeps one."""
        momentum = self._group_of[id(p)].get("momentum", 0.0)
        buf = self.weight_optimizer.state.get(p, {}).get("momentum_buffer")
        return momentum * buf if momentum and buf is not None else None

    def _clip_scale(self, grads: list[Tensor]) -> Tensor | float:
        """``min(1, clip / (‖g‖ + 1e-6))``, the factor of :func:`torch.nn.utils.clip_grad_norm_`."""
        if self.grad_clip is None:
            return 1.0
        norm = torch.nn.utils.get_total_norm(grads)  # the norm clip_grad_norm_ computes
        return torch.clamp(self.grad_clip / (norm + 1e-6), max=1.0)

    def virtual_weights(self, x_train: Tensor, y_train: Tensor) -> list[Tensor]:
        """``w' = R_w(−ξ d)``: one weight-optimizer step on the train batch, not applied."""
        return self._virtual_step(x_train, y_train)[0]

    def _virtual_step(self, x_train: Tensor,
                      y_train: Tensor) -> tuple[list[Tensor], Tensor | float, list[Tensor]]:
        """The virtual weights, the clipping factor ``c`` and the (unclipped) train gradient."""
        _, train_grads = self._grads(x_train, y_train, self.weights)
        scale = self._clip_scale(train_grads)
        grads = [scale * g for g in train_grads]
        out = []
        for p, g in zip(self.weights, grads, strict=True):
            direction = riemannian_direction(p, g, self._group_of[id(p)].get("weight_decay", 0.0))
            momentum_term = self._momentum_term(p)
            if momentum_term is not None:
                direction = direction + momentum_term
            out.append(retract(p, -self.xi * direction))
        return out, scale, train_grads

    def arch_gradient(self, train_batch: tuple[Tensor, Tensor],
                      val_batch: tuple[Tensor, Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Validation loss and the (first- or second-order) gradient w.r.t. the alphas."""
        x_val, y_val = val_batch
        with frozen_running_stats(self.module):
            if self.order == "first":
                return self._grads(x_val, y_val, self.alphas)
            return self._second_order(train_batch, val_batch)

    def _second_order(self, train_batch, val_batch) -> tuple[Tensor, list[Tensor]]:
        x_train, y_train = train_batch
        x_val, y_val = val_batch
        unrolled, scale, train_grads = self._virtual_step(x_train, y_train)
        with swapped(self.weights, unrolled):
            loss, grads = self._grads(x_val, y_val, self.alphas + self.weights)
        n_alpha = len(self.alphas)
        d_alpha, d_weights = grads[:n_alpha], grads[n_alpha:]
        vector = [riemannian_direction(p, g, 0.0) for p, g in zip(self.weights, d_weights, strict=True)]
        if self.grad_clip is not None and float(scale) < 1.0:  # c = clip / (‖g‖ + ε) varies with α
            g_norm = torch.nn.utils.get_total_norm(train_grads)
            inner = sum((v * g).sum() for v, g in zip(vector, train_grads, strict=True))
            along = inner / (g_norm * (g_norm + 1e-6))
            vector = [v - along * g for v, g in zip(vector, train_grads, strict=True)]
        norm = torch.sqrt(sum((v * v).sum() for v in vector))
        if float(norm) == 0.0:
            return loss, d_alpha
        r = 0.01 / norm
        hessian = self._finite_difference(vector, r, x_train, y_train)
        return loss, [g - self.xi * scale * h for g, h in zip(d_alpha, hessian, strict=True)]

    def _finite_difference(self, vector: list[Tensor], r: Tensor, x: Tensor, y: Tensor) -> list[Tensor]:
        """``(∇_α L_train(w + r v) − ∇_α L_train(w − r v)) / (2r)``."""
        plus = [p.detach() + r * v for p, v in zip(self.weights, vector, strict=True)]
        minus = [p.detach() - r * v for p, v in zip(self.weights, vector, strict=True)]
        with swapped(self.weights, plus):
            _, g_plus = self._grads(x, y, self.alphas)
        with swapped(self.weights, minus):
            _, g_minus = self._grads(x, y, self.alphas)
        return [(a - b) / (2 * r) for a, b in zip(g_plus, g_minus, strict=True)]

    def step(self, train_batch: tuple[Tensor, Tensor], val_batch: tuple[Tensor, Tensor]) -> Tensor:
        """One architecture update; returns the validation loss it was computed on."""
        loss, grads = self.arch_gradient(train_batch, val_batch)
        self.arch_optimizer.zero_grad(set_to_none=True)
        for a, g in zip(self.alphas, grads, strict=True):
            a.grad = g.detach().clone()
        self.arch_optimizer.step()
        return loss
