"""The search optimizer: supernet + architecture parameters + their two optimizers.

NASLib-style interface: :meth:`BilevelSearcher.step` takes one search-train and one search-val
batch (architecture step, then weight step), ``genotype()`` gives the current discrete
architecture, and ``state_dict()`` holds everything a resumed run needs. :class:`Searcher` is
SPDNetNAS; the Euclidean NAS baselines subclass :class:`BilevelSearcher` too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spdnas.config import ModelConfig, SearchConfig
from spdnas.nn.optim import weight_optimizer
from spdnas.search.bilevel import Architect, GradReducer, LossFn
from spdnas.search.genotype import Genotype, derive_genotype
from spdnas.search.space import NORMAL, REDUCE
from spdnas.search.supernet import ArchitectureParameters, Supernet


@dataclass
class StepMetrics:
    """Losses and accuracy of one search step (train batch, before the weight update)."""

    train_loss: float
    train_correct: int
    train_count: int
    val_loss: float


def clip_and_reduce(params: list[torch.nn.Parameter], reduce: GradReducer | None,
                    max_norm: float | None) -> None:
    """Fill missing grads with zeros, average them across workers, then clip their norm."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    if reduce is not None:
        grads = reduce(grads)
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    if max_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, max_norm)


class BilevelSearcher:
    """A supernet, its architecture parameters, their two optimizers and the bi-level step.

    Subclasses say how the architecture parameters become mixture weights (:meth:`mixture`) and
    how those are discretised (:meth:`genotype`); the supernet is called as
    ``supernet(x, *mixture())``. The weight optimizer only sees the supernet's parameters, the
    architecture optimizer (Adam) only ``alphas``.

    Parameters
    ----------
    supernet : nn.Module
    alphas : nn.Module
        Holds the architecture parameters (and nothing else).
    search_cfg : SearchConfig
    reduce : callable, optional
        Averages a list of gradients across workers; ``None`` in a single process.
    arch_loss : callable, optional
        ``arch_loss(logits, labels)``: the architecture objective (cross-entropy by default).
    """

    def __init__(self, supernet: nn.Module, alphas: nn.Module, search_cfg: SearchConfig,
                 reduce: GradReducer | None = None, arch_loss: LossFn = F.cross_entropy):
        self.search_cfg = search_cfg
        self.supernet, self.alphas = supernet, alphas
        self.weights = list(self.supernet.parameters())
        self.weight_optimizer = weight_optimizer(self.weights, lr=search_cfg.weight_lr,
                                                 momentum=search_cfg.weight_momentum,
                                                 weight_decay=search_cfg.weight_decay)
        self.arch_optimizer = torch.optim.Adam(self.alphas.parameters(), lr=search_cfg.arch_lr,
                                               betas=tuple(search_cfg.arch_betas),
                                               weight_decay=search_cfg.arch_weight_decay)
        self.reduce = reduce
        self.architect = Architect(self.forward, self.supernet, self.weights, list(self.alphas.parameters()),
                                   self.weight_optimizer, self.arch_optimizer, search_cfg.order,
                                   arch_loss, reduce, search_cfg.grad_clip)

    def mixture(self) -> tuple[Tensor, ...]:
        """Current mixture weights, the supernet's arguments after ``x``."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Supernet logits ``(B, classes)`` under the current architecture (differentiable in α)."""
        return self.supernet(x, *self.mixture())

    def step(self, train_batch: tuple[Tensor, Tensor], val_batch: tuple[Tensor, Tensor]) -> StepMetrics:
        """Architecture step on ``val_batch``, then a weight step on ``train_batch``."""
        self.supernet.train()
        val_loss = self.architect.step(train_batch, val_batch)
        x, y = train_batch
        with torch.no_grad():
            mixture = self.mixture()
        self.weight_optimizer.zero_grad(set_to_none=True)
        logits = self.supernet(x, *mixture)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        clip_and_reduce(self.weights, self.reduce, self.search_cfg.grad_clip)
        self.weight_optimizer.step()
        correct = int((logits.detach().argmax(1) == y).sum())
        return StepMetrics(float(loss.detach()), correct, int(y.numel()), float(val_loss))

    def state_dict(self) -> dict:
        return {
            "supernet": self.supernet.state_dict(),
            "alphas": self.alphas.state_dict(),
            "weight_optimizer": self.weight_optimizer.state_dict(),
            "arch_optimizer": self.arch_optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.supernet.load_state_dict(state["supernet"])
        self.alphas.load_state_dict(state["alphas"])
        self.weight_optimizer.load_state_dict(state["weight_optimizer"])
        self.arch_optimizer.load_state_dict(state["arch_optimizer"])


class Searcher(BilevelSearcher):
    """Bi-level SPDNetNAS search on one worker (or one of N data-parallel workers).

    Parameters
    ----------
    model_cfg, search_cfg : ModelConfig, SearchConfig
    in_dim, num_classes : int
    dtype, device
    reduce : callable, optional
        Averages a list of gradients across workers; ``None`` in a single process.
    """

    def __init__(self, model_cfg: ModelConfig, search_cfg: SearchConfig, in_dim: int, num_classes: int,
                 dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu",
                 reduce: GradReducer | None = None):
        self.model_cfg = model_cfg
        supernet = Supernet(model_cfg, in_dim, num_classes, dtype=dtype, device=device)
        alphas = ArchitectureParameters(supernet.num_edges, dtype=dtype, device=device)
        super().__init__(supernet, alphas, search_cfg, reduce)

    def mixture(self) -> tuple[Tensor, Tensor]:
        """Current mixture weights ``(normal, reduce)``, each ``(edges, 6)``."""
        kind = self.model_cfg.mixture
        return self.alphas.weights(NORMAL, kind), self.alphas.weights(REDUCE, kind)

    def genotype(self) -> Genotype:
        with torch.no_grad():
            normal, reduce = self.mixture()
            return derive_genotype(normal, reduce, self.alphas.normal, self.alphas.reduce,
                                   self.model_cfg.steps, self.model_cfg.multiplier)
