"""The SPDNetNAS search space: a registry of candidate operations, looked up by name.

Six *normal* operations (shape-preserving) and six *reduced* operations (``n → m``), in the
column order of the architecture parameters (SPEC §3):

=================  ===============================  ==============================================
column             normal                           reduced
=================  ===============================  ==============================================
0                  none: identity matrix            none: identity matrix of the reduced size
1                  WeightedPooling                  AvgPooling: LogEig → avg pool → ExpEig → BN
2                  BiMap_0: BiMap → BN              MaxPooling: LogEig → max pool → ExpEig → BN
3                  BiMap_1: BiMap → BN → ReEig      BiMap_1: ReEig → BiMap → BN
4                  BiMap_2: ReEig → BiMap → BN      BiMap_2: BiMap → BN → ReEig
5                  Skip: identity map               Skip: two BiMaps n → m/2 joined by direct sum
=================  ===============================  ==============================================

The reduced BiMap_1/BiMap_2 keep the reference's (swapped) meanings, so the published
genotypes mean what they meant. Operations read an :class:`SPDState`, which computes the
parameter-free ReEig and LogEig of its matrices once, with one ``eigh``, for every
operation that needs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spdnas.geometry.spectral import LOG, rectify_function, spectral_apply
from spdnas.nn import (
    BatchNormSPD,
    BiMap,
    DirectSumBiMap,
    ReEig,
    RiemannianPool2d,
    WeightedChannelPooling,
)

SEARCH_SPACE_VERSION = "spdnetnas-v1"
NORMAL = "normal"
REDUCE = "reduce"

RECTIFIED = "rectified"
LOGARITHM = "log"


class SPDState:
    """A batch of SPD feature maps with its ReEig and LogEig computed on demand, once.

    Parameters
    ----------
    x : Tensor, shape (B, C, n, n)
    reeig_eps : float
        Threshold of the ReEig every consumer of this state applies.
    """

    def __init__(self, x: Tensor, reeig_eps: float):
        self.x = x
        self.reeig_eps = reeig_eps
        self._features: dict[str, Tensor] = {}

    def prepare(self, features: set[str] | frozenset[str]) -> None:
        """Compute the missing ``features`` (subset of {"rectified", "log"}) with one ``eigh``."""
        missing = [f for f in (RECTIFIED, LOGARITHM) if f in features and f not in self._features]
        if not missing:
            return
        fns = {RECTIFIED: rectify_function(self.reeig_eps), LOGARITHM: LOG}
        outputs = spectral_apply(self.x, *(fns[f] for f in missing), validate=False)
        self._features.update(zip(missing, outputs, strict=True))

    def feature(self, name: str) -> Tensor:
        """``"x"`` (the matrices), ``"rectified"`` (ReEig) or ``"log"`` (LogEig), ``(B, C, n, n)``."""
        if name == "x":
            return self.x
        self.prepare({name})
        return self._features[name]


class StateOp(nn.Module):
    """An operation on an :class:`SPDState`: reads one of its features, then runs ``layers``."""

    def __init__(self, source: str, *layers: nn.Module):
        super().__init__()
        self.source = source
        self.layers = nn.Sequential(*layers)

    @property
    def needs(self) -> frozenset[str]:
        return frozenset() if self.source == "x" else frozenset({self.source})

    def forward(self, state: SPDState) -> Tensor:
        return self.layers(state.feature(self.source))


class IdentityMatrixOp(StateOp):
    """The ``none`` operation: the identity matrix (the manifold's "zero"), ``(B, C, m, m)``."""

    def __init__(self, dim: int):
        super().__init__("x")
        self.dim = dim

    def forward(self, state: SPDState) -> Tensor:
        x = state.x
        eye = torch.eye(self.dim, dtype=x.dtype, device=x.device)
        return eye.expand(x.shape[0], x.shape[1], self.dim, self.dim)


@dataclass(frozen=True)
class OpShape:
    """Everything an operation's constructor needs to know about its edge."""

    channels: int
    in_dim: int
    out_dim: int
    pool_kernel: int
    pool_stride: int
    karcher_iterations: int
    bn_momentum: float
    reeig_eps: float
    dtype: torch.dtype | None = None
    device: torch.device | str | None = None
    karcher_tol: float | None = None

    def bimap(self) -> BiMap:
        return BiMap(self.channels, self.channels, self.in_dim, self.out_dim,
                     dtype=self.dtype, device=self.device)

    def bn(self) -> BatchNormSPD:
        return BatchNormSPD(self.out_dim, momentum=self.bn_momentum,
                            karcher_iterations=self.karcher_iterations, karcher_tol=self.karcher_tol,
                            dtype=self.dtype, device=self.device)

    def reeig(self) -> ReEig:
        return ReEig(self.reeig_eps)


def _pool(mode: str) -> Callable[[OpShape], StateOp]:
    def build(s: OpShape) -> StateOp:
        return StateOp(LOGARITHM, RiemannianPool2d(mode, s.pool_kernel, s.pool_stride, from_log=True),
                       s.bn())

    return build


NORMAL_OPS: dict[str, Callable[[OpShape], StateOp]] = {
    "none": lambda s: IdentityMatrixOp(s.out_dim),
    "WeightedPooling": lambda s: StateOp("x", WeightedChannelPooling(
        s.channels, s.karcher_iterations, s.karcher_tol, dtype=s.dtype, device=s.device)),
    "BiMap_0": lambda s: StateOp("x", s.bimap(), s.bn()),
    "BiMap_1": lambda s: StateOp("x", s.bimap(), s.bn(), s.reeig()),
    "BiMap_2": lambda s: StateOp(RECTIFIED, s.bimap(), s.bn()),
    "Skip": lambda s: StateOp("x"),
}

REDUCE_OPS: dict[str, Callable[[OpShape], StateOp]] = {
    "none": lambda s: IdentityMatrixOp(s.out_dim),
    "AvgPooling": _pool("avg"),
    "MaxPooling": _pool("max"),
    "BiMap_1": lambda s: StateOp(RECTIFIED, s.bimap(), s.bn()),
    "BiMap_2": lambda s: StateOp("x", s.bimap(), s.bn(), s.reeig()),
    "Skip": lambda s: StateOp("x", DirectSumBiMap(s.channels, s.in_dim, s.out_dim,
                                                  dtype=s.dtype, device=s.device)),
}

OP_SETS: dict[str, dict[str, Callable[[OpShape], StateOp]]] = {NORMAL: NORMAL_OPS, REDUCE: REDUCE_OPS}
NONE_INDEX = 0


def op_names(kind: str) -> tuple[str, ...]:
    """Operation names of ``kind`` ("normal" or "reduce") in architecture-parameter column order."""
    try:
        return tuple(OP_SETS[kind])
    except KeyError:
        raise ValueError(f"unknown operation set {kind!r}; expected 'normal' or 'reduce'") from None


def build_op(kind: str, name: str, shape: OpShape) -> StateOp:
    """Instantiate the operation ``name`` of set ``kind`` for an edge of the given shape."""
    ops = OP_SETS.get(kind)
    if ops is None:
        raise ValueError(f"unknown operation set {kind!r}; expected 'normal' or 'reduce'")
    if name not in ops:
        raise ValueError(f"unknown {kind} operation {name!r}; choose one of {list(ops)}")
    if kind == NORMAL and shape.in_dim != shape.out_dim:
        raise ValueError(
            f"normal operation {name} cannot change the size ({shape.in_dim} -> {shape.out_dim})")
    return ops[name](shape)


def edge_kind(cell_kind: str, input_node: int) -> str:
    """Operation set of an edge: reduced ops on edges leaving the inputs of a reduction cell."""
    return REDUCE if cell_kind == REDUCE and input_node < 2 else NORMAL
