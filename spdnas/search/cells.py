"""What every cell network shares: the layer plan, stem, preprocessing, node means, classifier.

The supernet (:mod:`spdnas.search.supernet`) and the networks built from a genotype
(:mod:`spdnas.models.network`) differ only in their cells' edges; both subclass
:class:`CellNetwork`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spdnas.config import ModelConfig
from spdnas.geometry.airm import karcher_mean
from spdnas.geometry.validate import check_spd, trusted
from spdnas.nn import BatchNormSPD, BiMap, pooled_size
from spdnas.search.space import NORMAL, RECTIFIED, REDUCE, OpShape, SPDState


@dataclass(frozen=True)
class CellPlan:
    """Channels and matrix sizes of one cell.

    ``prev_prev``/``prev`` are the (channels, dim) of the two cell inputs; both are
    preprocessed to ``(channels, work_dim)``. A reduction cell's edges leaving the inputs map
    ``work_dim → out_dim``; all other edges keep ``out_dim``. The output concatenates
    ``multiplier`` nodes: ``(multiplier · channels, out_dim)``.
    """

    kind: str
    channels: int
    prev_prev: tuple[int, int]
    prev: tuple[int, int]
    work_dim: int
    out_dim: int
    pool_kernel: int
    pool_stride: int
    steps: int
    multiplier: int

    @property
    def out_channels(self) -> int:
        return self.multiplier * self.channels

    @property
    def num_edges(self) -> int:
        return sum(2 + i for i in range(self.steps))

    @property
    def concat(self) -> tuple[int, ...]:
        return tuple(range(2 + self.steps - self.multiplier, 2 + self.steps))


def _pooling(work_dim: int, out_dim: int, cfg: ModelConfig) -> tuple[int, int]:
    """Kernel and stride that pool ``work_dim`` to ``out_dim`` (derived unless configured)."""
    stride = cfg.pool_stride or max(work_dim // out_dim, 1)
    kernel = cfg.pool_kernel or work_dim - (out_dim - 1) * stride
    if kernel < 1 or pooled_size(work_dim, kernel, stride) != out_dim:
        raise ValueError(
            f"pooling with kernel {kernel}, stride {stride} maps {work_dim} to "
            f"{pooled_size(work_dim, kernel, stride)}, not the reduced size {out_dim}; "
            "set model.pool_kernel/model.pool_stride to a consistent pair"
        )
    return kernel, stride


def plan_cells(cfg: ModelConfig, in_dim: int) -> list[CellPlan]:
    """The cell plans of a network on ``in_dim × in_dim`` inputs (one per ``cfg.cells`` entry)."""
    plans = []
    stem = (cfg.stem_channels, in_dim)
    prev_prev, prev = stem, stem
    reduced = iter(cfg.reduced_dims) if cfg.reduced_dims is not None else None
    for kind, channels in zip(cfg.cells, cfg.cell_channels, strict=True):
        work_dim = prev[1]
        if kind != REDUCE:
            out_dim = work_dim
        else:
            out_dim = next(reduced) if reduced is not None else max(work_dim // 2, 1)
        if out_dim > work_dim or out_dim < 1:
            raise ValueError(f"reduction cell cannot map size {work_dim} to {out_dim}: model.reduced_dims="
                             f"{cfg.reduced_dims} must not exceed the matrix size it reduces")
        kernel, stride = _pooling(work_dim, out_dim, cfg) if kind == REDUCE else (1, 1)
        plan = CellPlan(kind, channels, prev_prev, prev, work_dim, out_dim, kernel, stride,
                        cfg.steps, cfg.multiplier)
        plans.append(plan)
        prev_prev, prev = prev, (plan.out_channels, out_dim)
    return plans


def op_shape(plan: CellPlan, cfg: ModelConfig, from_input: bool, dtype, device) -> OpShape:
    """Shape of an edge's operations: input edges of a reduction cell reduce, others keep size."""
    in_dim = plan.work_dim if (plan.kind == REDUCE and from_input) else plan.out_dim
    return OpShape(plan.channels, in_dim, plan.out_dim, plan.pool_kernel, plan.pool_stride,
                   cfg.karcher_iterations, cfg.bn_momentum, cfg.reeig_eps, dtype, device, cfg.karcher_tol)


class Preprocess(nn.Module):
    """ReEig → BiMap → BN, bringing a cell input to the cell's channels and working size."""

    def __init__(self, source: tuple[int, int], channels: int, dim: int, cfg: ModelConfig, dtype, device):
        super().__init__()
        self.bimap = BiMap(source[0], channels, source[1], dim, dtype=dtype, device=device)
        self.bn = BatchNormSPD(dim, cfg.bn_momentum, cfg.karcher_iterations, cfg.karcher_tol, dtype=dtype,
                               device=device)

    def forward(self, state: SPDState) -> Tensor:
        return self.bn(self.bimap(state.feature(RECTIFIED)))


class CellBase(nn.Module):
    """Preprocessing of the two inputs and the node/output rules shared by all cells."""

    def __init__(self, plan: CellPlan, cfg: ModelConfig, dtype, device):
        super().__init__()
        self.plan = plan
        self.concat = plan.concat
        self.reeig_eps = cfg.reeig_eps
        self.karcher_iterations = cfg.karcher_iterations
        self.karcher_tol = cfg.karcher_tol
        self.preprocess0 = Preprocess(plan.prev_prev, plan.channels, plan.work_dim, cfg, dtype, device)
        self.preprocess1 = Preprocess(plan.prev, plan.channels, plan.work_dim, cfg, dtype, device)

    def input_states(self, s0: SPDState, s1: SPDState) -> list[SPDState]:
        return [SPDState(self.preprocess0(s0), self.reeig_eps),
                SPDState(self.preprocess1(s1), self.reeig_eps)]

    def node(self, edge_outputs: list[Tensor], like: Tensor) -> Tensor:
        """Unweighted Fréchet mean of a node's incoming edge outputs, each ``(B, C, m, m)``.

        With no edge (every incoming edge is pure ``none``) the node is the identity, the
        manifold's zero.
        """
        if not edge_outputs:
            m = self.plan.out_dim
            eye = torch.eye(m, dtype=like.dtype, device=like.device)
            return eye.expand(like.shape[0], self.plan.channels, m, m)
        if len(edge_outputs) == 1:
            return edge_outputs[0]
        return karcher_mean(torch.stack(edge_outputs, dim=2), iterations=self.karcher_iterations,
                            tol=self.karcher_tol)

    def output(self, states: list[Tensor]) -> Tensor:
        """The nodes of ``concat`` (the last ``multiplier`` unless a genotype names others),
        joined along channels: ``(B, multiplier · C, m, m)``."""
        return torch.cat([states[i] for i in self.concat], dim=1)


class CellNetwork(nn.Module):
    """Stem (BiMap + BN) → cells → LogEig → linear classifier, on ``(B, n, n)`` SPD inputs.

    Subclasses build the cells (:meth:`build_cell`); :meth:`run_cells` passes each cell the
    extra arguments of its kind.
    """

    def __init__(self, cfg: ModelConfig, in_dim: int, num_classes: int,
                 dtype: torch.dtype | None = None, device: torch.device | str | None = None):
        super().__init__()
        self.cfg = cfg
        self.in_dim = in_dim
        self.num_classes = num_classes
        self.plans = plan_cells(cfg, in_dim)
        self.stem_bimap = BiMap(1, cfg.stem_channels, in_dim, in_dim, dtype=dtype, device=device)
        self.stem_bn = BatchNormSPD(in_dim, cfg.bn_momentum, cfg.karcher_iterations, cfg.karcher_tol,
                                    dtype=dtype, device=device)
        self.cells = nn.ModuleList(self.build_cell(p, dtype, device) for p in self.plans)
        last = self.plans[-1]
        self.classifier = nn.Linear(last.out_channels * last.out_dim ** 2, num_classes,
                                    dtype=dtype, device=device)

    def build_cell(self, plan: CellPlan, dtype, device) -> nn.Module:
        raise NotImplementedError

    def run_cells(self, x: Tensor, cell_args: dict[str, tuple]) -> Tensor:
        """Logits ``(B, num_classes)`` for SPD inputs ``x`` of shape ``(B, n, n)`` or ``(B, 1, n, n)``."""
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[-1] != self.in_dim:
            n = self.in_dim
            raise ValueError(f"expected inputs of shape (B, {n}, {n}), got {tuple(x.shape)}")
        weight = self.classifier.weight
        if x.dtype != weight.dtype or x.device != weight.device:
            raise ValueError(f"inputs are {x.dtype} on {x.device}, the network is {weight.dtype} on "
                             f"{weight.device}: move the inputs (x.to(...)) or build the network to match")
        check_spd(x, "network input")
        with trusted():
            stem = SPDState(self.stem_bn(self.stem_bimap(x)), self.cfg.reeig_eps)
            s0 = s1 = stem
            for cell in self.cells:
                out = cell(s0, s1, *cell_args[cell.plan.kind])
                s0, s1 = s1, SPDState(out, self.cfg.reeig_eps)
            features = s1.feature("log").flatten(1)
        return self.classifier(features)


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (the paper's model size, in units rather than millions)."""
    return sum(p.numel() for p in model.parameters())


def count_used_parameters(model: nn.Module, x: Tensor) -> int:
    """Number of scalar parameters the output ``model(x)`` depends on: those its autograd graph
    reaches. A cell whose output no later cell reads (a FairDARTS genotype whose nodes take only
    the cell's first input) holds parameters that :func:`count_parameters` counts and these leave
    out. The forward pass runs in evaluation mode (running statistics stay as they are).
    """
    training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            out = model(x)
    finally:
        model.train(training)
    reached, stack, seen = set(), [out.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # AccumulateGrad: a leaf, e.g. a parameter
        if variable is not None:
            reached.add(id(variable))
        stack.extend(next_node for next_node, _ in node.next_functions)
    return sum(p.numel() for p in model.parameters() if id(p) in reached)


KINDS = (NORMAL, REDUCE)
