"""Optimizer for SPD networks: Riemannian SGD on manifold weights, SGD on the rest."""

from __future__ import annotations

from collections.abc import Iterable

import geoopt
import torch
from torch import nn


def is_manifold_parameter(p: nn.Parameter) -> bool:
    """Whether ``p`` lives on a manifold (Stiefel BiMap weight, SPD batch-norm bias)."""
    return isinstance(p, geoopt.ManifoldParameter)


def weight_optimizer(params: Iterable[nn.Parameter], lr: float, momentum: float = 0.0,
                     weight_decay: float = 0.0) -> geoopt.optim.RiemannianSGD:
    """Riemannian SGD over a mix of manifold and Euclidean parameters.

    Manifold parameters are stepped along their manifold (Riemannian gradient, retraction);
    Euclidean ones get plain SGD. Weight decay only applies to Euclidean parameters (it has no
    meaning on the Stiefel manifold, whose points all have the same norm).

    With momentum, the buffers start at zero, so the first step moves along the (Riemannian)
    gradient alone, as torch's SGD does; geoopt would start them at the raw Euclidean gradient,
    and its first step would move along ``momentum · egrad + rgrad``.
    """
    params = [p for p in params if p.requires_grad]
    manifold = [p for p in params if is_manifold_parameter(p)]
    euclidean = [p for p in params if not is_manifold_parameter(p)]
    groups = [g for g in ({"params": manifold, "weight_decay": 0.0},
                          {"params": euclidean, "weight_decay": weight_decay}) if g["params"]]
    optimizer = geoopt.optim.RiemannianSGD(groups, lr=lr, momentum=momentum)
    if momentum > 0:
        for p in params:
            optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p)
    return optimizer
