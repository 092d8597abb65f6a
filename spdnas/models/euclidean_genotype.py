"""Discrete architectures of the Euclidean NAS baselines, as plain data with a JSON form.

A genotype lists the kept edges of a cell as ``(operation, input node, target node)``; nodes 0
and 1 are the cell inputs, ``2 … steps + 1`` the intermediate nodes, and every intermediate
node keeps at least one incoming edge. Two discretisation rules:

- **DARTS** (:func:`derive_darts`, our genotype rule of SPEC §4): per node, the two incoming
  edges whose best non-``none`` weight is largest, and on each that operation.
- **FairDARTS** (:func:`derive_fairdarts`, Chu et al. 2020, their ``threshold_sparse`` parse):
  per node, the same two strongest edges, each kept only if its best operation has
  ``σ(α) > threshold``. Where neither passes, the node keeps its strongest edge, so every node
  has an input (the paper's parse can leave a node empty; we keep the cell connected).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

OPS = ("none", "skip", "linear", "bottleneck", "expand")
"""Candidate operations on vectors (see :mod:`spdnas.models.euclidean_nas`)."""

SCHEMA_VERSION = 1
SEARCH_SPACE = "euclidean-vector-v1"


class EuclideanGenotypeError(ValueError):
    """A Euclidean genotype (or its JSON) is malformed."""


def all_edges(steps: int) -> list[tuple[int, int]]:
    """Every ``(input node, target node)`` of a cell with ``steps`` intermediate nodes, in the
    order of the rows of the architecture parameters (``2 + 3 + … `` edges)."""
    return [(i, node) for node in range(2, 2 + steps) for i in range(node)]


@dataclass(frozen=True)
class EuclideanGenotype:
    """A discrete cell shared by every cell of a Euclidean NAS network.

    Attributes
    ----------
    edges : tuple of (str, int, int)
        ``(operation, input node, target node)``, at most one per (input, target) pair.
    steps : int
        Number of intermediate nodes (all concatenated into the cell output).
    """

    edges: tuple[tuple[str, int, int], ...]
    steps: int

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise EuclideanGenotypeError(f"steps must be >= 1, got {self.steps}")
        seen = set()
        for op, i, node in self.edges:
            if op not in OPS or op == "none":
                raise EuclideanGenotypeError(f"unknown operation {op!r} on edge {i}->{node} "
                                             f"(allowed: {list(OPS[1:])})")
            if not 2 <= node < 2 + self.steps or not 0 <= i < node:
                raise EuclideanGenotypeError(f"edge {i}->{node} does not fit a cell of {self.steps} nodes")
            if (i, node) in seen:
                raise EuclideanGenotypeError(f"edge {i}->{node} appears twice")
            seen.add((i, node))
        empty = sorted(set(range(2, 2 + self.steps)) - {node for _, _, node in self.edges})
        if empty:
            raise EuclideanGenotypeError(f"nodes {empty} have no incoming edge")

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "search_space": SEARCH_SPACE, "steps": self.steps,
                "edges": [list(e) for e in self.edges]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EuclideanGenotype:
        """Build and validate a genotype from its JSON dictionary."""
        if not isinstance(data, dict):
            raise EuclideanGenotypeError("genotype JSON must be an object")
        if data.get("schema_version") != SCHEMA_VERSION or data.get("search_space") != SEARCH_SPACE:
            raise EuclideanGenotypeError(
                f"expected schema_version {SCHEMA_VERSION} of search space {SEARCH_SPACE!r}, got "
                f"{data.get('schema_version')!r} of {data.get('search_space')!r}")
        try:
            edges = tuple((str(op), int(i), int(node)) for op, i, node in data["edges"])
            steps = int(data["steps"])
        except (KeyError, TypeError, ValueError) as exc:
            raise EuclideanGenotypeError(f"genotype needs 'steps' and [operation, input, node] edges: "
                                         f"{exc!r}") from None
        return cls(edges, steps)

    @classmethod
    def from_json(cls, text: str) -> EuclideanGenotype:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise EuclideanGenotypeError(f"genotype is not valid JSON: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> EuclideanGenotype:
        try:
            return cls.from_json(Path(path).read_text(encoding="utf-8"))
        except EuclideanGenotypeError as exc:
            raise EuclideanGenotypeError(f"{path}: {exc}") from None


Ranked = list[tuple[float, str, int, int]]


def _ranked_inputs(weights: Tensor, ops: tuple[str, ...], steps: int) -> list[Ranked]:
    """Per intermediate node, its incoming edges as ``(best weight, best op, input, node)``,
    strongest first (ties: lower op index, then lower input); ``none`` never counts."""
    rows = weights.detach().cpu().tolist()
    ranked: dict[int, Ranked] = {node: [] for node in range(2, 2 + steps)}
    for row, (i, node) in zip(rows, all_edges(steps), strict=True):
        best = max((k for k, name in enumerate(ops) if name != "none"), key=lambda k, r=row: (r[k], -k))
        ranked[node].append((row[best], ops[best], i, node))
    return [sorted(edges, key=lambda e: (-e[0], e[2])) for _, edges in sorted(ranked.items())]


def _check_weights(weights: Tensor, ops: tuple[str, ...], steps: int) -> None:
    expected = (len(all_edges(steps)), len(ops))
    if tuple(weights.shape) != expected:
        raise ValueError(f"weights of {steps} nodes and {len(ops)} ops must have shape {expected}, "
                         f"got {tuple(weights.shape)}")


def derive_darts(weights: Tensor, ops: tuple[str, ...], steps: int) -> EuclideanGenotype:
    """DARTS rule: top-2 incoming edges per node by best non-``none`` weight, that op on each.

    Parameters
    ----------
    weights : Tensor, shape (edges, len(ops))
        Mixture weights, rows in the order of :func:`all_edges`.
    ops : tuple of str
        The candidate operations (columns of ``weights``).
    steps : int
    """
    _check_weights(weights, ops, steps)
    kept = [edge for ranked in _ranked_inputs(weights, ops, steps) for edge in ranked[:2]]
    return EuclideanGenotype(tuple((op, i, node) for _, op, i, node in kept), steps)


def derive_fairdarts(weights: Tensor, ops: tuple[str, ...], steps: int,
                     threshold: float) -> EuclideanGenotype:
    """FairDARTS rule: of each node's two strongest edges, those with ``σ(α) > threshold``;
    the strongest alone where none passes.

    Parameters
    ----------
    weights : Tensor, shape (edges, len(ops))
        Independent sigmoid weights ``σ(α)``, rows in the order of :func:`all_edges`.
    ops : tuple of str
    steps : int
    threshold : float
    """
    _check_weights(weights, ops, steps)
    kept = []
    for ranked in _ranked_inputs(weights, ops, steps):
        kept.extend(_passing(ranked, threshold) or ranked[:1])
    return EuclideanGenotype(tuple((op, i, node) for _, op, i, node in kept), steps)


def _passing(ranked: Ranked, threshold: float) -> Ranked:
    return [edge for edge in ranked[:2] if edge[0] > threshold]


def fairdarts_fallbacks(weights: Tensor, ops: tuple[str, ...], steps: int, threshold: float) -> int:
    """How many nodes :func:`derive_fairdarts` gives their strongest edge only because none of
    their edges passes the threshold (every node, while ``σ(α)`` stays near ½ early in a search)."""
    _check_weights(weights, ops, steps)
    return sum(not _passing(ranked, threshold) for ranked in _ranked_inputs(weights, ops, steps))
