"""The supernet: every edge is a Fréchet mixture of all candidate operations.

A mixed edge outputs the weighted Fréchet (Karcher) mean of its candidate outputs, with
weights ``mixture(α_edge)``; all candidates are stacked into one tensor and averaged in one
batched Karcher step. Candidates whose weight is exactly zero (sparsemax) are not evaluated:
their term in the mean is zero and sparsemax passes them no gradient, so skipping them is
exact. An edge whose weight is entirely on ``none`` is the absence of an edge and is left
out of its node's mean — the SPD analogue of DARTS's zero op adding nothing to a sum, which
makes a one-hot supernet equal to the network of its genotype.

The architecture parameters live in :class:`ArchitectureParameters`, outside the supernet, so
the weight optimizer never sees them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spdnas.config import ModelConfig
from spdnas.geometry.airm import karcher_mean
from spdnas.geometry.mixture import mixture_weights
from spdnas.geometry.validate import check_weights
from spdnas.search.cells import CellBase, CellNetwork, CellPlan, op_shape
from spdnas.search.space import NONE_INDEX, NORMAL, REDUCE, OpShape, SPDState, build_op, edge_kind, op_names


class ArchitectureParameters(nn.Module):
    """``α_normal`` and ``α_reduce``, each ``(edges, 6)``, shared by all cells of a type.

    Initialised ``1e-3 · N(0, 1)`` as in DARTS/SPDNetNAS.
    """

    def __init__(self, num_edges: int, num_ops: int = 6, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None):
        super().__init__()
        self.normal = nn.Parameter(1e-3 * torch.randn(num_edges, num_ops, dtype=dtype, device=device))
        self.reduce = nn.Parameter(1e-3 * torch.randn(num_edges, num_ops, dtype=dtype, device=device))

    def logits(self, kind: str) -> Tensor:
        return self.normal if kind == NORMAL else self.reduce

    def weights(self, kind: str, mixture: str) -> Tensor:
        """Mixture weights of cell type ``kind``, ``(edges, 6)``, rows on the simplex."""
        return mixture_weights(self.logits(kind), mixture)


class MixedEdge(nn.Module):
    """All candidate operations of one edge and their Fréchet mixture.

    Shapes
    ------
    state ``(B, C, n, n)`` → ``(B, C, m, m)``, or ``None`` when the edge is pure ``none``.
    ``shape`` gives the operations' sizes and the mixture's Karcher iterations and tolerance.
    """

    def __init__(self, kind: str, shape: OpShape):
        super().__init__()
        self.kind = kind
        self.karcher_iterations = shape.karcher_iterations
        self.karcher_tol = shape.karcher_tol
        self.ops = nn.ModuleList(build_op(kind, name, shape) for name in op_names(kind))

    def needs(self, active: list[int]) -> set[str]:
        """State features (ReEig/LogEig) the active operations read."""
        return set().union(*(self.ops[k].needs for k in active))

    def forward(self, state: SPDState, weights: Tensor, active: list[int]) -> Tensor | None:
        if active == [NONE_INDEX]:
            return None
        others = [k for k in active if k != NONE_INDEX]
        outputs = [self.ops[k](state) for k in others]
        if len(active) == 1:
            return outputs[0]
        stacked = torch.stack(outputs, dim=2)  # (B, C, K_active, m, m)
        # `none` is the identity matrix: its log term comes free with the base point's eigh.
        identity = weights[NONE_INDEX] if NONE_INDEX in active else None
        return karcher_mean(stacked, weights[others], iterations=self.karcher_iterations,
                            tol=self.karcher_tol, identity_weight=identity)


class SearchCell(CellBase):
    """A cell whose every (earlier node → intermediate node) edge is a :class:`MixedEdge`."""

    def __init__(self, plan: CellPlan, cfg: ModelConfig, dtype, device):
        super().__init__(plan, cfg, dtype, device)
        self.sources = [j for i in range(plan.steps) for j in range(2 + i)]
        self.edges = nn.ModuleList(
            MixedEdge(edge_kind(plan.kind, j), op_shape(plan, cfg, j < 2, dtype, device))
            for j in self.sources
        )

    def forward(self, s0: SPDState, s1: SPDState, weights: Tensor) -> Tensor:
        active = [[k for k, w in enumerate(row) if w > 0] for row in weights.detach().tolist()]
        needs: dict[int, set[str]] = {}
        for edge, source, act in zip(self.edges, self.sources, active, strict=True):
            needs.setdefault(source, set()).update(edge.needs(act))
        states = self.input_states(s0, s1)
        for j, state in enumerate(states):
            state.prepare(needs.get(j, set()))
        tensors = [s.x for s in states]
        offset = 0
        for _ in range(self.plan.steps):
            outputs = []
            for j, state in enumerate(states):
                e = offset + j
                out = self.edges[e](state, weights[e], active[e])
                if out is not None:
                    outputs.append(out)
            node = SPDState(self.node(outputs, tensors[0]), self.reeig_eps)
            node.prepare(needs.get(len(states), set()))
            offset += len(states)
            states.append(node)
            tensors.append(node.x)
        return self.output(tensors)


class Supernet(CellNetwork):
    """The SPDNetNAS supernet: ``forward(x, weights_normal, weights_reduce)``.

    Parameters
    ----------
    cfg : ModelConfig
    in_dim : int
        Input matrix size ``n``.
    num_classes : int

    Shapes
    ------
    ``x (B, n, n)``, ``weights_* (edges, 6)`` → logits ``(B, num_classes)``
    """

    def build_cell(self, plan: CellPlan, dtype, device) -> nn.Module:
        return SearchCell(plan, self.cfg, dtype, device)

    @property
    def num_edges(self) -> int:
        return self.plans[0].num_edges

    def forward(self, x: Tensor, weights_normal: Tensor, weights_reduce: Tensor) -> Tensor:
        for kind, w in ((NORMAL, weights_normal), (REDUCE, weights_reduce)):
            shape = (self.num_edges, len(op_names(kind)))
            if tuple(w.shape) != shape:
                raise ValueError(f"Supernet: weights_{kind} must have shape {shape} (edges, operations), "
                                 f"got {tuple(w.shape)}")
            check_weights(w, shape[1], f"Supernet weights_{kind} (mixture weights, not logits)")
        return self.run_cells(x, {NORMAL: (weights_normal,), REDUCE: (weights_reduce,)})
