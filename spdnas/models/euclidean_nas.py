"""Euclidean NAS baselines (DARTS, FairDARTS) on log-mapped, vectorised SPD inputs.

The paper compares SPDNetNAS with DARTS and FairDARTS run on the matrix logarithms of the
inputs. Here a sample ``X`` becomes the vector ``vec(log X)`` (:func:`log_vectorise`) and the
searched network is a DARTS-style stack of cells over feature vectors:

- stem ``Linear(d → width) → BatchNorm``;
- a cell has two inputs (the outputs of the previous two cells; the stem for the first), each
  preprocessed by ``ReLU → Linear(→ width) → BatchNorm`` (DARTS's ReLU-Conv-BN on 1×1), then
  ``steps`` intermediate nodes; node ``j`` is the **sum** over its incoming edges (from every
  earlier node) of the edge's operation; the cell output concatenates all intermediate nodes
  (``steps · width`` features);
- classifier ``Linear(steps · width → classes)`` on the last cell's output.

Candidate operations on an edge (``width → width``; pre-activation order as in DARTS, so a
node's sum is not rectified): ``none`` (zero), ``skip`` (identity), ``linear``
(ReLU → Linear → BN), ``bottleneck`` (ReLU → Linear(→ width/2) → BN → ReLU → Linear(→ width)
→ BN) and ``expand`` (the same through ``2 · width``). In the supernet the batch norms are not
affine (as in DARTS, so an operation cannot rescale itself against its mixture weight); in the
final network they are. There are no reduction cells: feature vectors have no spatial size.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from spdnas.geometry import sym_log
from spdnas.models.euclidean_genotype import OPS, EuclideanGenotype, all_edges


def log_vectorise(x: Tensor) -> Tensor:
    """Upper triangle of ``log X`` with off-diagonal entries scaled by √2.

    The scaling makes the Euclidean norm of the vector equal the Frobenius norm of ``log X``
    (each off-diagonal entry stands for two). Rows follow ``torch.triu_indices(n, n)``.

    Parameters
    ----------
    x : Tensor, shape (N, n, n)
        SPD matrices.

    Returns
    -------
    Tensor, shape (N, n (n + 1) / 2)
    """
    n = x.shape[-1]
    rows, cols = torch.triu_indices(n, n, device=x.device)
    logs = sym_log(x)[..., rows, cols]
    scale = torch.full(rows.shape, math.sqrt(2.0), dtype=logs.dtype, device=logs.device)
    scale[rows == cols] = 1.0
    return logs * scale


class Zero(nn.Module):
    """The ``none`` operation: zeros of the input's shape."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.zeros_like(x)


def _block(width_in: int, width_out: int, affine: bool, dtype, device) -> list[nn.Module]:
    return [nn.ReLU(), nn.Linear(width_in, width_out, dtype=dtype, device=device),
            nn.BatchNorm1d(width_out, affine=affine, dtype=dtype, device=device)]


def build_op(name: str, width: int, affine: bool, dtype=None, device=None) -> nn.Module:
    """Operation ``name`` of :data:`OPS` on ``(B, width)`` features, shape-preserving."""
    if name == "none":
        return Zero()
    if name == "skip":
        return nn.Identity()
    if name == "linear":
        return nn.Sequential(*_block(width, width, affine, dtype, device))
    hidden = {"bottleneck": width // 2, "expand": 2 * width}.get(name)
    if hidden is None:
        raise ValueError(f"unknown operation {name!r}; known: {list(OPS)}")
    return nn.Sequential(*_block(width, hidden, affine, dtype, device),
                         *_block(hidden, width, affine, dtype, device))


class MixedOp(nn.Module):
    """``Σ_k w_k op_k(x)`` over the candidate operations ``ops``.

    Shapes
    ------
    ``x (B, width)``, ``weights (len(ops),)`` → ``(B, width)``
    """

    def __init__(self, ops: tuple[str, ...], width: int, dtype=None, device=None):
        super().__init__()
        self.ops = nn.ModuleList(build_op(name, width, False, dtype, device) for name in ops)

    def forward(self, x: Tensor, weights: Tensor) -> Tensor:
        return sum(w * op(x) for w, op in zip(weights, self.ops, strict=True))


class VectorCell(nn.Module):
    """Two preprocessed inputs, ``steps`` summing nodes, concatenated intermediate nodes.

    Parameters
    ----------
    in0, in1 : int
        Feature sizes of the two cell inputs.
    width, steps : int
    links : list of (int, int)
        ``(input node, target node)`` of each edge, in the order of ``edges``.
    edges : list of nn.Module
        The edge operations (mixed in a supernet, chosen ones in a final network).
    affine : bool
        Affine batch norms in the preprocessing.

    Shapes
    ------
    ``s0 (B, in0)``, ``s1 (B, in1)`` → ``(B, steps · width)``
    """

    def __init__(self, in0: int, in1: int, width: int, steps: int, links: list[tuple[int, int]],
                 edges: list[nn.Module], affine: bool, dtype=None, device=None):
        super().__init__()
        self.pre0 = nn.Sequential(*_block(in0, width, affine, dtype, device))
        self.pre1 = nn.Sequential(*_block(in1, width, affine, dtype, device))
        self.steps, self.links = steps, list(links)
        self.edges = nn.ModuleList(edges)

    def forward(self, s0: Tensor, s1: Tensor, weights: Tensor | None = None) -> Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for node in range(2, 2 + self.steps):
            terms = [self.edges[e](states[i]) if weights is None else self.edges[e](states[i], weights[e])
                     for e, (i, target) in enumerate(self.links) if target == node]
            states.append(torch.stack(terms).sum(0))
        return torch.cat(states[2:], dim=1)


class VectorCellNetwork(nn.Module):
    """Stem → ``cells`` × :class:`VectorCell` → linear classifier.

    Parameters
    ----------
    in_features, width, cells, steps, num_classes : int
    links : list of (int, int)
        The edges of every cell, ``(input node, target node)``.
    make_edge : callable
        ``make_edge(edge index) -> nn.Module``: a fresh operation for each edge of each cell.
    affine : bool
        Affine batch norms (final networks) or not (supernets).

    Shapes
    ------
    ``x (B, in_features)`` → logits ``(B, num_classes)``
    """

    def __init__(self, in_features: int, width: int, cells: int, steps: int, num_classes: int,
                 links: list[tuple[int, int]], make_edge: Callable[[int], nn.Module], affine: bool,
                 dtype=None, device=None):
        super().__init__()
        self.in_features = in_features
        self.stem = nn.Sequential(nn.Linear(in_features, width, dtype=dtype, device=device),
                                  nn.BatchNorm1d(width, affine=affine, dtype=dtype, device=device))
        sizes = [width, width]
        self.cells = nn.ModuleList()
        for _ in range(cells):
            edges = [make_edge(e) for e in range(len(links))]
            self.cells.append(VectorCell(sizes[-2], sizes[-1], width, steps, links, edges, affine, dtype,
                                         device))
            sizes.append(steps * width)
        self.classifier = nn.Linear(steps * width, num_classes, dtype=dtype, device=device)

    def run_cells(self, x: Tensor, weights: Tensor | None) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"expected features of shape (B, {self.in_features}), got {tuple(x.shape)}")
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, weights)
        return self.classifier(s1)


class EuclideanSupernet(VectorCellNetwork):
    """Every edge (``i → j`` for ``i < j``) mixes all candidate operations ``ops``.

    Shapes
    ------
    ``x (B, in_features)``, ``weights (edges, len(ops))`` (shared by all cells) → ``(B, classes)``
    """

    def __init__(self, in_features: int, width: int, cells: int, steps: int, num_classes: int,
                 ops: tuple[str, ...], dtype=None, device=None):
        ops = tuple(ops)
        links = all_edges(steps)
        super().__init__(in_features, width, cells, steps, num_classes, links,
                         lambda _: MixedOp(ops, width, dtype, device), False, dtype, device)
        self.ops, self.num_edges = ops, len(links)

    def forward(self, x: Tensor, weights: Tensor) -> Tensor:
        return self.run_cells(x, weights)


class EuclideanNetwork(VectorCellNetwork):
    """The final network of a :class:`EuclideanGenotype`, trained from scratch.

    Shapes
    ------
    ``x (B, in_features)`` → logits ``(B, num_classes)``
    """

    def __init__(self, genotype: EuclideanGenotype, in_features: int, width: int, cells: int,
                 num_classes: int, dtype=None, device=None):
        self.genotype = genotype
        links = [(i, node) for _, i, node in genotype.edges]
        super().__init__(in_features, width, cells, genotype.steps, num_classes, links,
                         lambda e: build_op(genotype.edges[e][0], width, True, dtype, device), True,
                         dtype, device)

    def forward(self, x: Tensor) -> Tensor:
        return self.run_cells(x, None)
