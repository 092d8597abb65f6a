"""The derived-cell drawing (paper Fig. 2b): edge labels sit on their arrows and do not cover
each other (one could hide another before)."""

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


@pytest.mark.parametrize("genotype", [published_genotype("radar"), published_genotype("hdm05"),
                                      *(random_genotype(2, 2, seed) for seed in range(12))],
                         ids=["radar", "hdm05", *(f"random{seed}" for seed in range(12))])
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
            for text, arrow in zip(labels, annotations, strict=True):
                centre = np.array(text.get_window_extent(renderer).get_points()).mean(0)
                path = ax.transData.transform_path(arrow.get_path())  # the arrow as drawn, in pixels
                curve = np.concatenate([bezier(np.linspace(0, 1, 400)) for bezier, _ in path.iter_bezier()])
                assert np.min(np.linalg.norm(curve - centre, axis=1)) < 3.0  # pixels
    finally:
        plt.close(fig)
