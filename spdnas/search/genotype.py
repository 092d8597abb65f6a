"""Genotypes: the discrete architecture a search finds, as plain data with a JSON form.

A genotype lists, for each cell type, two ``(operation, input node)`` pairs per intermediate
node (node ``i`` may read nodes ``0 … i+1``; 0 and 1 are the cell inputs), and which nodes
the cell output concatenates. Operations on edges leaving the inputs of a reduction cell are
reduced operations; all others are normal operations (SPEC §3).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from spdnas.search.space import (
    NONE_INDEX,
    NORMAL,
    REDUCE,
    SEARCH_SPACE_VERSION,
    edge_kind,
    op_names,
)

SCHEMA_VERSION = 1


class GenotypeError(ValueError):
    """A genotype (or its JSON) is malformed or does not fit the search space."""


def _node(value: Any) -> int:
    """A node index from JSON: an integer (``1.7``, ``"1"`` or ``true`` are errors, not nodes)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"node index {value!r} is not an integer")
    return value


@dataclass(frozen=True)
class Genotype:
    """A discrete SPDNetNAS architecture.

    Attributes
    ----------
    normal, reduce : tuple of (str, int)
        ``2 · steps`` pairs ``(operation name, input node)``; pairs ``2i`` and ``2i + 1`` feed
        intermediate node ``i + 2``.
    normal_concat, reduce_concat : tuple of int
        Nodes concatenated into the cell output.
    """

    normal: tuple[tuple[str, int], ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[tuple[str, int], ...]
    reduce_concat: tuple[int, ...]

    def __post_init__(self) -> None:
        for kind in (NORMAL, REDUCE):
            _validate_cell(kind, self.cell(kind), self.concat(kind))
        if len(self.normal) != len(self.reduce):
            raise GenotypeError("normal and reduce cells must have the same number of nodes")
        if len(self.normal_concat) != len(self.reduce_concat):
            raise GenotypeError(f"normal_concat {list(self.normal_concat)} and reduce_concat "
                                f"{list(self.reduce_concat)} must join the same number of nodes (the "
                                "model's multiplier)")

    @property
    def steps(self) -> int:
        return len(self.normal) // 2

    @property
    def multiplier(self) -> int:
        return len(self.normal_concat)

    def cell(self, kind: str) -> tuple[tuple[str, int], ...]:
        return self.normal if kind == NORMAL else self.reduce

    def concat(self, kind: str) -> tuple[int, ...]:
        return self.normal_concat if kind == NORMAL else self.reduce_concat

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "search_space": SEARCH_SPACE_VERSION,
            "normal": [list(p) for p in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [list(p) for p in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Genotype:
        """Build and validate a genotype from its JSON dictionary."""
        if not isinstance(data, dict):
            raise GenotypeError("genotype JSON must be an object")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise GenotypeError(
                f"unsupported genotype schema_version {version!r} (expected {SCHEMA_VERSION})")
        space = data.get("search_space")
        if space != SEARCH_SPACE_VERSION:
            raise GenotypeError(f"genotype is for search space {space!r}, not {SEARCH_SPACE_VERSION!r}")
        missing = {"normal", "normal_concat", "reduce", "reduce_concat"} - set(data)
        if missing:
            raise GenotypeError(f"genotype JSON lacks {sorted(missing)}")
        try:
            cells = {k: tuple((str(op), _node(node)) for op, node in data[k]) for k in (NORMAL, REDUCE)}
            concats = {k: tuple(_node(i) for i in data[f"{k}_concat"]) for k in (NORMAL, REDUCE)}
        except (TypeError, ValueError) as exc:
            raise GenotypeError(f"genotype entries must be [operation, input node] pairs: {exc}") from None
        return cls(cells[NORMAL], concats[NORMAL], cells[REDUCE], concats[REDUCE])

    @classmethod
    def from_json(cls, text: str) -> Genotype:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GenotypeError(f"genotype is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> Genotype:
        try:
            return cls.from_json(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise
        except (GenotypeError, OSError, UnicodeDecodeError) as exc:
            raise GenotypeError(f"{path}: not a genotype file ({exc})") from None


def _validate_cell(kind: str, pairs: tuple[tuple[str, int], ...], concat: tuple[int, ...]) -> None:
    if not pairs or len(pairs) % 2:
        raise GenotypeError(f"{kind} cell needs two (operation, input) pairs per node, got {len(pairs)}")
    steps = len(pairs) // 2
    for index, (op, node) in enumerate(pairs):
        target = index // 2 + 2
        if not 0 <= node < target:
            raise GenotypeError(f"{kind} cell: node {target} cannot read node {node} "
                                f"(valid inputs 0..{target - 1})")
        allowed = op_names(edge_kind(kind, node))
        if op not in allowed or op == allowed[NONE_INDEX]:
            raise GenotypeError(f"{kind} cell: unknown operation {op!r} on edge {node}->{target} "
                                f"(allowed: {list(allowed[1:])})")
    if not concat or any(not 2 <= i < 2 + steps for i in concat) or len(set(concat)) != len(concat):
        raise GenotypeError(f"{kind}_concat must list distinct intermediate nodes in 2..{steps + 1}, "
                            f"got {list(concat)}")


def _parse_cell(kind: str, weights: Tensor, logits: Tensor, steps: int) -> tuple[tuple[str, int], ...]:
    """Top-2 incoming edges per node by best non-``none`` weight, and that operation on each.

    Ties in the mixture weights (sparsemax gives exact zeros) are broken by the raw logits,
    then by the lower index.
    """
    pairs: list[tuple[str, int]] = []
    start = 0
    for i in range(steps):
        n_in = 2 + i
        scored = []
        for j in range(n_in):
            row_w, row_a = weights[start + j].tolist(), logits[start + j].tolist()
            best = max((k for k in range(len(row_w)) if k != NONE_INDEX),
                       key=lambda k, w=row_w, a=row_a: (w[k], a[k], -k))
            scored.append(((row_w[best], row_a[best], -j), j, best))
        for _, j, best in sorted(scored, reverse=True)[:2]:
            pairs.append((op_names(edge_kind(kind, j))[best], j))
        start += n_in
    return tuple(pairs)


def derive_genotype(weights_normal: Tensor, weights_reduce: Tensor, logits_normal: Tensor,
                    logits_reduce: Tensor, steps: int, multiplier: int) -> Genotype:
    """Discretise mixture weights into a genotype (SPEC §4).

    Parameters
    ----------
    weights_normal, weights_reduce : Tensor, shape (edges, 6)
        Mixture weights ``mixture(α)``.
    logits_normal, logits_reduce : Tensor, shape (edges, 6)
        The raw ``α``, used to break ties among equal weights.
    steps, multiplier : int
    """
    with torch.no_grad():
        concat = tuple(range(2 + steps - multiplier, 2 + steps))
        return Genotype(
            normal=_parse_cell(NORMAL, weights_normal.cpu(), logits_normal.cpu(), steps),
            normal_concat=concat,
            reduce=_parse_cell(REDUCE, weights_reduce.cpu(), logits_reduce.cpu(), steps),
            reduce_concat=concat,
        )


PUBLISHED_DIR = Path(__file__).resolve().parent.parent / "genotypes"


def published_names() -> list[str]:
    """Names of the genotypes published in the paper (``radar``, ``hdm05``)."""
    return sorted(p.stem for p in PUBLISHED_DIR.glob("*.json"))


def published_genotype(name: str) -> Genotype:
    """A genotype published in the paper: ``"radar"`` or ``"hdm05"``."""
    path = PUBLISHED_DIR / f"{name.lower()}.json"
    if not path.exists():
        raise GenotypeError(f"no published genotype {name!r}; published: {', '.join(published_names())}")
    return Genotype.load(path)


def random_genotype(steps: int, multiplier: int, seed: int) -> Genotype:
    """A genotype drawn uniformly from the search space (the paper's random-architecture
    baseline): per node, two distinct inputs and a non-``none`` operation on each edge."""
    import random

    rng = random.Random(seed)
    concat = tuple(range(2 + steps - multiplier, 2 + steps))

    def cell(kind: str) -> tuple[tuple[str, int], ...]:
        pairs = []
        for i in range(steps):
            for node in sorted(rng.sample(range(2 + i), 2)):
                pairs.append((rng.choice(op_names(edge_kind(kind, node))[1:]), node))
        return tuple(pairs)

    return Genotype(cell(NORMAL), concat, cell(REDUCE), concat)
