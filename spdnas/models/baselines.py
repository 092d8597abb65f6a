"""Handcrafted SPD networks the benchmark compares against: SPDNet and SPDNetBN.

SPDNet (Huang & Van Gool, AAAI 2017) stacks ``BiMap → ReEig`` blocks, a last BiMap without
ReEig (as in the reference code), and classifies the matrix logarithm of its output with a
linear layer; SPDNetBN (Brooks et al., NeurIPS 2019) puts a Riemannian batch norm after each
BiMap. Both are built from the layers
of :mod:`spdnas.nn` and trained with the same Riemannian SGD as our searched networks.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

from spdnas.config import BaselineConfig, ConfigError, ModelConfig
from spdnas.geometry import check_spd, trusted
from spdnas.nn import BatchNormSPD, BiMap, LogEig, ReEig


def spdnet_dims(cfg: BaselineConfig, n: int) -> list[int]:
    """The matrix sizes of SPDNet for inputs of size ``n``, input size first.

    ``cfg.spdnet_dims`` when set (its first entry must be ``n``), else ``[n, 0.8 n, 0.6 n]``
    rounded (at least 1), e.g. ``[20, 16, 12]`` for ``n = 20``.

    Raises
    ------
    ConfigError
        If the configured sizes do not start at ``n``.
    """
    if cfg.spdnet_dims is None:
        return [n, *(max(1, round(f * n)) for f in (0.8, 0.6))]
    if cfg.spdnet_dims[0] != n:
        raise ConfigError(f"baselines.spdnet_dims must start with the input size n={n}, "
                          f"got {cfg.spdnet_dims}")
    return list(cfg.spdnet_dims)


class SPDNet(nn.Module):
    """``[BiMap → (BatchNormSPD) → ReEig] × (L − 1) → BiMap → (BatchNormSPD) → LogEig → flatten →
    Linear``: no ReEig after the last BiMap, as in the SPDNet and SPDNetBN reference code.

    Parameters
    ----------
    dims : list of int
        Matrix sizes ``[n, d_1, …, d_L]`` (non-increasing): block ``i`` maps ``d_{i-1} → d_i``.
    num_classes : int
    batchnorm : bool
        Insert :class:`~spdnas.nn.BatchNormSPD` after each BiMap (SPDNetBN).
    model_cfg : ModelConfig, optional
        ReEig threshold, batch-norm momentum and Karcher iterations (defaults: ours).

    Shapes
    ------
    ``x (B, n, n)`` or ``(B, 1, n, n)`` SPD → logits ``(B, num_classes)``
    """

    def __init__(self, dims: list[int], num_classes: int, batchnorm: bool = False,
                 model_cfg: ModelConfig | None = None, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None):
        super().__init__()
        if len(dims) < 2:
            raise ValueError(f"SPDNet needs an input size and at least one BiMap output size, got {dims}")
        cfg = model_cfg or ModelConfig()
        self.dims, self.batchnorm = list(dims), batchnorm
        blocks = []
        for i, (d_in, d_out) in enumerate(itertools.pairwise(dims)):
            layers = [BiMap(1, 1, d_in, d_out, dtype=dtype, device=device)]
            if batchnorm:
                layers.append(BatchNormSPD(d_out, cfg.bn_momentum, cfg.karcher_iterations, cfg.karcher_tol,
                                           dtype=dtype, device=device))
            if i < len(dims) - 2:
                layers.append(ReEig(cfg.reeig_eps))
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.Sequential(*blocks)
        self.log = LogEig()
        self.classifier = nn.Linear(dims[-1] ** 2, num_classes, dtype=dtype, device=device)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        n = self.dims[0]
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[-2:] != (n, n):
            raise ValueError(f"SPDNet expects inputs of shape (B, {n}, {n}), got {tuple(x.shape)}")
        check_spd(x, "SPDNet input")
        with trusted():
            features = self.log(self.blocks(x))
        return self.classifier(features.flatten(1))
