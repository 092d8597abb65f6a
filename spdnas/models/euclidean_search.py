"""Bi-level search of the Euclidean NAS baselines: DARTS and FairDARTS on log-mapped inputs.

Both use our bi-level stepper (:class:`spdnas.search.searcher.BilevelSearcher`: the same
architecture step, weight optimizer and first/second order as SPDNetNAS); DARTS also uses its
Adam settings, FairDARTS the learning rate and betas of its reference code
(``baselines.fairdarts_arch_lr``, ``baselines.fairdarts_arch_betas``).

- **DARTS** (Liu et al. 2019): edge weights ``softmax(α_edge)`` over :data:`OPS`,
  discretised by :func:`derive_darts`.
- **FairDARTS** (Chu et al. 2020): independent weights ``σ(α)`` per operation, no ``none``
  operation (with independent weights it is redundant, as in the paper's search space), and
  the architecture objective ``cross-entropy + w₀₁ · zero_one_loss(σ(α))``, which pushes every
  weight towards 0 or 1; discretised by :func:`derive_fairdarts`.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spdnas.config import BaselineConfig, SearchConfig
from spdnas.models.euclidean_genotype import OPS, EuclideanGenotype, derive_darts, derive_fairdarts
from spdnas.models.euclidean_nas import EuclideanSupernet
from spdnas.search.searcher import BilevelSearcher

VARIANTS = ("darts", "fairdarts")


def zero_one_loss(weights: Tensor) -> Tensor:
    """FairDARTS's zero-one loss ``mean(−(w − ½)²)``: lowest when every weight is 0 or 1.

    Parameters
    ----------
    weights : Tensor, any shape
        Sigmoid weights ``σ(α)``.

    Returns
    -------
    Tensor, scalar
    """
    return -((weights - 0.5) ** 2).mean()


class EdgeAlphas(nn.Module):
    """Architecture logits ``α (edges, ops)``, shared by all cells, initialised ``1e-3 · N(0, 1)``."""

    def __init__(self, num_edges: int, num_ops: int, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None):
        super().__init__()
        self.logits = nn.Parameter(1e-3 * torch.randn(num_edges, num_ops, dtype=dtype, device=device))


class EuclideanSearcher(BilevelSearcher):
    """DARTS or FairDARTS over :class:`EuclideanSupernet` on feature vectors.

    Parameters
    ----------
    variant : {"darts", "fairdarts"}
    cfg : BaselineConfig
        Width, cells and nodes of the supernet; FairDARTS loss weight and threshold.
    search_cfg : SearchConfig
        The bi-level search settings (shared with SPDNetNAS).
    in_features, num_classes : int
    """

    def __init__(self, variant: str, cfg: BaselineConfig, search_cfg: SearchConfig, in_features: int,
                 num_classes: int, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.variant, self.cfg = variant, cfg
        self.ops = OPS if variant == "darts" else tuple(op for op in OPS if op != "none")
        supernet = EuclideanSupernet(in_features, cfg.darts_width, cfg.darts_cells, cfg.darts_steps,
                                     num_classes, self.ops, dtype=dtype, device=device)
        alphas = EdgeAlphas(supernet.num_edges, len(self.ops), dtype=dtype, device=device)
        arch_loss = F.cross_entropy if variant == "darts" else self.fairdarts_loss
        if variant == "fairdarts":  # its own architecture optimizer settings
            search_cfg = replace(search_cfg, arch_lr=cfg.fairdarts_arch_lr,
                                 arch_betas=list(cfg.fairdarts_arch_betas))
        super().__init__(supernet, alphas, search_cfg, arch_loss=arch_loss)

    def fairdarts_loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """FairDARTS's architecture objective on a batch: cross-entropy plus the zero-one loss."""
        weights = torch.sigmoid(self.alphas.logits)
        return F.cross_entropy(logits, labels) + self.cfg.fairdarts_zero_one_weight * zero_one_loss(weights)

    def mixture(self) -> tuple[Tensor]:
        """``(weights,)``, shape ``(edges, ops)``: softmax rows (DARTS) or sigmoids (FairDARTS)."""
        logits = self.alphas.logits
        return (torch.softmax(logits, dim=-1) if self.variant == "darts" else torch.sigmoid(logits),)

    def genotype(self) -> EuclideanGenotype:
        with torch.no_grad():
            (weights,) = self.mixture()
        steps = self.cfg.darts_steps
        if self.variant == "darts":
            return derive_darts(weights, self.ops, steps)
        return derive_fairdarts(weights, self.ops, steps, self.cfg.fairdarts_threshold)
