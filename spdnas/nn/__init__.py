"""Torch modules of the SPDNet family, built on :mod:`spdnas.geometry`."""

from spdnas.nn.batchnorm import BatchNormSPD, frozen_running_stats
from spdnas.nn.bimap import BiMap, random_stiefel
from spdnas.nn.covpool import CovariancePooling
from spdnas.nn.directsum import DirectSumBiMap, direct_sum
from spdnas.nn.eig import ExpEig, LogEig, ReEig
from spdnas.nn.optim import is_manifold_parameter, weight_optimizer
from spdnas.nn.pooling import RiemannianPool2d, WeightedChannelPooling, pooled_size

__all__ = [
    "BatchNormSPD",
    "BiMap",
    "CovariancePooling",
    "DirectSumBiMap",
    "ExpEig",
    "LogEig",
    "ReEig",
    "RiemannianPool2d",
    "WeightedChannelPooling",
    "direct_sum",
    "frozen_running_stats",
    "is_manifold_parameter",
    "pooled_size",
    "random_stiefel",
    "weight_optimizer",
]
