"""Figures of a search: mixture weights per edge (paper Fig. 2a) and derived cells (Fig. 2b)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch
from matplotlib.text import Text

from spdnas.models.euclidean_genotype import EuclideanGenotype
from spdnas.search.genotype import Genotype
from spdnas.search.space import NORMAL, REDUCE, edge_kind, op_names

NODE_NAMES = ("c_{k-2}", "c_{k-1}")


def node_label(index: int) -> str:
    """``c_{k-2}``, ``c_{k-1}`` for the cell inputs, then ``0, 1, …`` for intermediate nodes."""
    return NODE_NAMES[index] if index < 2 else str(index - 2)


def edge_labels(steps: int) -> list[str]:
    return [f"{node_label(j)}→{i}" for i in range(steps) for j in range(2 + i)]


def _heatmap(fig: Figure, ax, data: list[list[float]], columns: list[str], steps: int, title: str) -> None:
    """One panel of mixture weights: rows = edges (in cell order), columns = operations."""
    image = ax.imshow(data, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(columns)), columns, rotation=35, ha="right")
    labels = edge_labels(steps)
    ax.set_yticks(range(len(labels)), labels)
    for r, row in enumerate(data):
        for c, value in enumerate(row):
            ax.text(c, r, f"{value:.2f}", ha="center", va="center",
                    color="white" if value < 0.6 else "black", fontsize=8)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, shrink=0.8, label="mixture weight")


def alpha_figure(weights: dict[str, list[list[float]]], steps: int, title: str = "") -> Figure:
    """Heatmaps of mixture weights, one panel per cell type; rows = edges, columns = operations.

    Parameters
    ----------
    weights : dict
        ``{"normal": (edges, 6), "reduce": (edges, 6)}`` nested lists of mixture weights.
    steps : int
        Intermediate nodes per cell.
    """
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.55 * len(weights[NORMAL]) + 2.2), constrained_layout=True)
    pairs = zip(op_names(NORMAL), op_names(REDUCE), strict=True)
    columns = {NORMAL: list(op_names(NORMAL)), REDUCE: [f"{a}/{b}" if a != b else a for a, b in pairs]}
    for ax, kind in zip(axes, (NORMAL, REDUCE), strict=True):
        _heatmap(fig, ax, weights[kind], columns[kind], steps,
                 f"{kind} cell" + (" (reduced ops on edges from inputs)" if kind == REDUCE else ""))
    if title:
        fig.suptitle(title, parse_math=False)
    return fig


def euclidean_alpha_figure(weights: list[list[float]], ops: list[str], steps: int, title: str = "") -> Figure:
    """Heatmap of the mixture weights of a Euclidean NAS cell (DARTS, FairDARTS).

    Parameters
    ----------
    weights : list of list of float
        ``(edges, len(ops))``, rows in the order of
        :func:`spdnas.models.euclidean_genotype.all_edges`.
    ops : list of str
        The candidate operations (columns).
    steps : int
        Intermediate nodes of the cell.
    """
    fig, ax = plt.subplots(figsize=(7, 0.55 * len(weights) + 2.2), constrained_layout=True)
    _heatmap(fig, ax, weights, list(ops), steps, "cell (shared by every cell)")
    if title:
        fig.suptitle(title, parse_math=False)
    return fig


Edge = tuple[str, int, int, str]


LABEL_POSITIONS = (0.5, 0.4, 0.6, 0.3, 0.7, 0.25, 0.75)
"""Where along its arc an edge label may sit (Bézier parameter), tried in this order."""


@dataclass
class _EdgeLabel:
    text: Text
    start: tuple[float, float]
    end: tuple[float, float]
    rad: float


def _draw_graph(ax, steps: int, edges: list[Edge], concat: list[int],
                title: str) -> tuple[list[Text], list[_EdgeLabel]]:
    """A cell as a graph: ``edges`` are ``(operation, input, target node, colour)``; dashed arrows
    run from the ``concat`` nodes to the cell output. Returns the node boxes and the edge labels
    (placed by :func:`_untangle` once the figure's layout is final)."""
    pos = {0: (0.0, 1.0), 1: (0.0, -1.0)}
    for i in range(steps):
        pos[i + 2] = (1.0 + i, 0.9 if i % 2 == 0 else -0.9)
    out = steps + 2
    pos[out] = (steps + 1.0, 0.0)
    nodes = []
    for node, (x, y) in pos.items():
        label = "c_{k}" if node == out else node_label(node)
        color = "#9ecae1" if node < 2 else ("#fdd0a2" if node == out else "#c7e9c0")
        nodes.append(ax.text(x, y, label, ha="center", va="center", fontsize=10,
                             bbox={"boxstyle": "round,pad=0.4", "fc": color, "ec": "black"}))
    labels = []
    for index, (op, src, dst, color) in enumerate(edges):
        rad = 0.25 if index % 2 else -0.25
        ax.add_patch(FancyArrowPatch(pos[src], pos[dst], arrowstyle="->", connectionstyle=f"arc3,rad={rad}",
                                     lw=1.2, shrinkA=14, shrinkB=14, mutation_scale=10))
        text = ax.text(*pos[src], op, fontsize=8, ha="center", va="center", color=color,
                       bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85})
        text.set_in_layout(False)  # moved after the layout is made (_untangle): it must not change it
        labels.append(_EdgeLabel(text, pos[src], pos[dst], rad))
    for node in concat:
        ax.add_patch(FancyArrowPatch(pos[node], pos[out], arrowstyle="->", ls="--", color="gray",
                                     shrinkA=14, shrinkB=14, mutation_scale=10))
    ax.set_xlim(-0.6, steps + 1.6)
    ax.set_ylim(-1.6, 1.6)
    ax.axis("off")
    ax.set_title(title)
    return nodes, labels


def _untangle(fig: Figure, graphs: list[tuple[Any, list[Text], list[_EdgeLabel]]]) -> None:
    """Put each edge label on its arrow (the arc3 connection: a quadratic Bézier in display space
    between the two node centres), at the first of :data:`LABEL_POSITIONS` where it covers no
    node and no label placed before it; one that fits nowhere stays at the middle of its arrow."""
    fig.canvas.draw()  # the final layout: display coordinates are known
    renderer = fig.canvas.get_renderer()
    for ax, nodes, labels in graphs:
        taken = [node.get_window_extent(renderer).padded(6) for node in nodes]
        to_data = ax.transData.inverted()
        for label in labels:
            a, b = ax.transData.transform(label.start), ax.transData.transform(label.end)
            control = (a + b) / 2 + label.rad * np.array([b[1] - a[1], a[0] - b[0]])
            for t in (*LABEL_POSITIONS, 0.5):
                label.text.set_position(to_data.transform((1 - t) ** 2 * a + 2 * (1 - t) * t * control
                                                          + t ** 2 * b))
                box = label.text.get_window_extent(renderer).padded(2)
                if not any(box.overlaps(other) for other in taken):
                    break
            taken.append(box)


def _cell_figsize(panels: int, base_width: float, steps: int) -> tuple[float, float]:
    """Figure size for ``panels`` cell drawings side by side, ``base_width`` inches each at 2
    steps, growing with ``steps`` so that edge labels keep room (with a fixed size, 6 of 20 random
    3-step drawings and all 20 of 4 steps had overlapping labels)."""
    extra = max(steps - 2, 0)
    return panels * (base_width + 1.5 * extra), 3.8 + 0.6 * extra


def _spd_edges(genotype: Genotype, kind: str) -> list[Edge]:
    return [(op, src, index // 2 + 2, "#08519c" if edge_kind(kind, src) == REDUCE else "#006d2c")
            for index, (op, src) in enumerate(genotype.cell(kind))]


def cells_figure(genotype: Genotype, title: str = "") -> Figure:
    """The derived normal and reduction cells drawn as graphs (blue ops: reduced)."""
    fig, axes = plt.subplots(1, 2, figsize=_cell_figsize(2, 6.0, genotype.steps), constrained_layout=True)
    graphs = [(ax, *_draw_graph(ax, genotype.steps, _spd_edges(genotype, kind), list(genotype.concat(kind)),
                                f"{kind} cell"))
              for ax, kind in zip(axes, (NORMAL, REDUCE), strict=True)]
    if title:
        fig.suptitle(title, parse_math=False)
    _untangle(fig, graphs)
    return fig


def euclidean_cell_figure(genotype: EuclideanGenotype, title: str = "") -> Figure:
    """The derived cell of a Euclidean NAS baseline drawn as a graph (every intermediate node
    feeds the cell output)."""
    fig, ax = plt.subplots(figsize=_cell_figsize(1, 6.5, genotype.steps), constrained_layout=True)
    edges = [(op, i, node, "#006d2c") for op, i, node in genotype.edges]
    graph = _draw_graph(ax, genotype.steps, edges, list(range(2, 2 + genotype.steps)),
                        "cell (shared by every cell)")
    if title:
        fig.suptitle(title, parse_math=False)
    _untangle(fig, [(ax, *graph)])
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
