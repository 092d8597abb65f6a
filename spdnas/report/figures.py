"""Figures of the HTML report as inline PNG data URIs: learning curves and parameter importance.

The α heatmaps (paper Fig. 2a) and derived cells (Fig. 2b) are those of
:mod:`spdnas.report.plots`.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

# (metric key, label) per panel: accuracy then loss, for the two kinds of run folder
CURVES = {
    "search": ((("train_accuracy", "search-train"), ("search_val_accuracy", "search-val (supernet)")),
               (("train_loss", "search-train"), ("search_val_loss", "search-val"),
                ("arch_val_loss", "architecture step (val batches)"))),
    "train": ((("train_accuracy", "train"), ("val_accuracy", "val")),
              (("train_loss", "train"), ("val_loss", "val"))),
}


def data_uri(fig: Figure, dpi: int = 90) -> str:
    """``data:image/png;base64,…`` of ``fig`` (the figure is closed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _band(histories: list[list[dict[str, Any]]], key: str, scale: float) -> tuple[np.ndarray, ...] | None:
    """Epochs and the mean/min/max of ``key`` over the runs that have it at each epoch."""
    per_epoch: dict[int, list[float]] = {}
    for history in histories:
        for record in history:
            value = record.get(key)
            if isinstance(value, int | float) and "epoch" in record:
                per_epoch.setdefault(int(record["epoch"]), []).append(scale * float(value))
    if not per_epoch:
        return None
    epochs = np.array(sorted(per_epoch))
    values = [per_epoch[e] for e in epochs]
    return (epochs, np.array([np.mean(v) for v in values]), np.array([min(v) for v in values]),
            np.array([max(v) for v in values]))


def curves_figure(histories: list[list[dict[str, Any]]], kind: str, title: str = "") -> Figure:
    """Accuracy (%) and loss per epoch: the mean over runs, shaded between min and max.

    Parameters
    ----------
    histories : list of list of dict
        ``metrics.jsonl`` records of each run (one list per seed).
    kind : {"search", "train"}
        Which folder the records come from (selects the plotted keys, see :data:`CURVES`).
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), constrained_layout=True)
    for ax, panel, ylabel, scale in zip(axes, CURVES[kind], ("accuracy (%)", "loss"), (100.0, 1.0),
                                        strict=True):
        for key, label in panel:
            band = _band(histories, key, scale)
            if band is None:
                continue
            epochs, mean, low, high = band
            (line,) = ax.plot(epochs, mean, marker="o" if len(epochs) < 15 else None, ms=3, label=label)
            if len(histories) > 1:
                ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=8)
    runs = f"mean of {len(histories)} runs, band = min–max" if len(histories) > 1 else "one run"
    fig.suptitle(f"{title} ({runs})" if title else runs, parse_math=False)  # names are text, not TeX
    return fig


def importance_figure(importances: dict[str, float], title: str = "") -> Figure:
    """Horizontal bars of parameter importance, most important on top."""
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.3), constrained_layout=True)
    ax.barh(names, [importances[n] for n in names], color="#3182bd")
    for y, name in enumerate(names):
        ax.text(importances[name], y, f" {importances[name]:.3f}", va="center", fontsize=8)
    ax.set_xlim(0, max(1.0, max(importances.values()) * 1.15))
    ax.set_xlabel("importance (fANOVA, share of explained variance)")
    if title:
        ax.set_title(title, parse_math=False)
    return fig
