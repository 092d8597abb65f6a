"""The derived-cell drawing (paper Fig. 2b): edge labels sit on their arrows and cover neither
each other (one could hide another before) nor the nodes (with 3 or 4 steps they did)."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.patches import FancyArrowPatch

from spdnas.report.plots import cells_figure
from spdnas.search.genotype import published_genotype, random_genotype
from spdnas.search.space import op_names


def edge_labels(fig):
    """Per panel: the operation labels (not the node boxes)."""
    ops = set(op_names("normal")) | set(op_names("reduce"))
    return [[t for t in ax.texts if t.get_text() in ops] for ax in fig.axes]


RANDOM = [(steps, seed) for steps in (2, 3, 4) for seed in range(12 if steps == 2 else 4)]


@pytest.mark.parametrize("genotype", [published_genotype("radar"), published_genotype("hdm05"),
                                      *(random_genotype(steps, 2, seed) for steps, seed in RANDOM)],
                         ids=["radar", "hdm05", *(f"random{seed}-{steps}steps" for steps, seed in RANDOM)])
def test_edge_labels_do_not_overlap_and_sit_on_their_arrows(genotype):
    fig = cells_figure(genotype, "test")
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        arrows = [[p for p in ax.patches if isinstance(p, FancyArrowPatch) and p.get_linestyle() == "solid"]
                  for ax in fig.axes]  # not the dashed ones to the cell output
        for ax, labels, annotations in zip(fig.axes, edge_labels(fig), arrows, strict=True):
            assert len(labels) == len(annotations) == 2 * genotype.steps
            boxes = [t.get_window_extent(renderer) for t in labels]
            for a, b in itertools.combinations(boxes, 2):
                assert not a.overlaps(b), f"{a} overlaps {b}"
            nodes = [t.get_window_extent(renderer) for t in ax.texts if t not in labels]
            assert len(nodes) == genotype.steps + 3
            for a, b in itertools.product(boxes, nodes):
                assert not a.overlaps(b), f"label {a} covers node {b}"
            for text, arrow in zip(labels, annotations, strict=True):
                centre = np.array(text.get_window_extent(renderer).get_points()).mean(0)
                path = ax.transData.transform_path(arrow.get_path())  # the arrow as drawn, in pixels
                curve = np.concatenate([bezier(np.linspace(0, 1, 400)) for bezier, _ in path.iter_bezier()])
                assert np.min(np.linalg.norm(curve - centre, axis=1)) < 3.0  # pixels
    finally:
        plt.close(fig)



def test_dollar_signs_in_names_are_text_not_tex():
    """Titles carry user-chosen dataset and method names: ``a$\\q$`` must not be parsed as TeX
    (matplotlib raised on drawing it)."""
    from spdnas.models.euclidean_genotype import OPS, EuclideanGenotype
    from spdnas.report.figures import curves_figure, data_uri, importance_figure
    from spdnas.report.plots import alpha_figure, euclidean_alpha_figure, euclidean_cell_figure

    name = r"a$\q$ / $5 vs $10"
    weights = [[1 / 6] * 6] * 5
    euclidean = EuclideanGenotype(edges=(("skip", 0, 2), ("linear", 1, 2), ("skip", 2, 3), ("expand", 0, 3)),
                                  steps=2)
    figures = [cells_figure(published_genotype("radar"), name),
               alpha_figure({"normal": weights, "reduce": weights}, 2, name),
               euclidean_alpha_figure([[0.2] * 5] * 5, list(OPS), 2, name),
               euclidean_cell_figure(euclidean, name),
               curves_figure([[{"epoch": 1, "train_accuracy": 0.5, "train_loss": 1.0}]], "train", name),
               importance_figure({"train.lr": 1.0}, name)]
    for fig in figures:
        titles = [fig._suptitle.get_text() if fig._suptitle else ""] + [ax.get_title() for ax in fig.axes]
        assert any(t.startswith(name) for t in titles)
        assert data_uri(fig).startswith("data:image/png;base64,")
