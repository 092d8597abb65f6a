"""The final network built from a genotype: only the chosen operations, two edges per node."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spdnas.config import ModelConfig
from spdnas.search.cells import CellBase, CellNetwork, CellPlan, op_shape
from spdnas.search.genotype import Genotype, GenotypeError
from spdnas.search.space import NORMAL, REDUCE, SPDState, build_op, edge_kind, op_names
from spdnas.search.supernet import Supernet


class GenotypeCell(CellBase):
    """A cell with the genotype's operations: node ``i + 2`` = Fréchet mean of two edges."""

    def __init__(self, plan: CellPlan, cfg: ModelConfig, genotype: Genotype, dtype, device):
        super().__init__(plan, cfg, dtype, device)
        self.pairs = genotype.cell(plan.kind)
        self.concat = genotype.concat(plan.kind)
        self.edges = nn.ModuleList(
            build_op(edge_kind(plan.kind, node), op, op_shape(plan, cfg, node < 2, dtype, device))
            for op, node in self.pairs
        )

    def forward(self, s0: SPDState, s1: SPDState) -> Tensor:
        states = self.input_states(s0, s1)
        for i in range(self.plan.steps):
            outputs = [self.edges[2 * i + t](states[self.pairs[2 * i + t][1]]) for t in (0, 1)]
            states.append(SPDState(self.node(outputs, states[0].x), self.reeig_eps))
        return self.output([s.x for s in states])


class GenotypeNetwork(CellNetwork):
    """The network of a genotype (SPEC §4 "final network"), trained from scratch.

    Shapes
    ------
    ``x (B, n, n)`` → logits ``(B, num_classes)``
    """

    def __init__(self, genotype: Genotype, cfg: ModelConfig, in_dim: int, num_classes: int,
                 dtype: torch.dtype | None = None, device: torch.device | str | None = None):
        if genotype.steps != cfg.steps or genotype.multiplier != cfg.multiplier:
            raise GenotypeError(
                f"genotype has {genotype.steps} nodes and concatenates {genotype.multiplier}, but the "
                f"model config has steps={cfg.steps}, multiplier={cfg.multiplier}")
        self.genotype = genotype
        super().__init__(cfg, in_dim, num_classes, dtype, device)

    def build_cell(self, plan: CellPlan, dtype, device) -> nn.Module:
        return GenotypeCell(plan, self.cfg, self.genotype, dtype, device)

    def forward(self, x: Tensor) -> Tensor:
        return self.run_cells(x, {NORMAL: (), REDUCE: ()})


def inherit_supernet_weights(network: GenotypeNetwork, supernet: Supernet) -> GenotypeNetwork:
    """Copy the supernet's weights of the chosen operations into ``network`` (in place).

    Stem, preprocessing and classifier are copied as they are; edge ``(op, j)`` of node ``i``
    takes the weights of operation ``op`` on the supernet's edge ``j → i + 2``. Used to judge a
    derived architecture with the weights it had in the supernet (the one-shot estimate).
    """
    if network.plans != supernet.plans:
        raise ValueError("network and supernet have different cell plans")
    with torch.no_grad():
        network.stem_bimap.load_state_dict(supernet.stem_bimap.state_dict())
        network.stem_bn.load_state_dict(supernet.stem_bn.state_dict())
        network.classifier.load_state_dict(supernet.classifier.state_dict())
        for cell, super_cell in zip(network.cells, supernet.cells, strict=True):
            cell.preprocess0.load_state_dict(super_cell.preprocess0.state_dict())
            cell.preprocess1.load_state_dict(super_cell.preprocess1.state_dict())
            offset = 0
            for i in range(cell.plan.steps):
                for t in (0, 1):
                    op, node = cell.pairs[2 * i + t]
                    mixed = super_cell.edges[offset + node]
                    k = op_names(edge_kind(cell.plan.kind, node)).index(op)
                    cell.edges[2 * i + t].load_state_dict(mixed.ops[k].state_dict())
                offset += 2 + i
    return network
