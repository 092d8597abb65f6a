"""Files a finished search or retraining leaves behind, for machines and for people.

Search: ``metrics.jsonl`` (every epoch, with genotype and mixture weights), ``metrics.csv``
(scalar columns), ``genotype.json``, ``alphas.png`` (Fig. 2a), ``cells.png`` (Fig. 2b).
Retraining: ``metrics.jsonl``/``metrics.csv``, ``result.json`` (test accuracy, parameter count,
cost), ``model.pt`` (best-validation weights and what rebuilds the network).
Written to a local folder, then published to the run's folder (local or ``s3://``).
While a run goes on, ``live_metrics.jsonl`` holds the scalar metrics of its finished epochs.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from spdnas.config import ExperimentConfig
from spdnas.data.storage import Folder
from spdnas.report.plots import alpha_figure, cells_figure, save_figure
from spdnas.search.genotype import Genotype

LIVE_METRICS = "live_metrics.jsonl"


def scalar_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of an epoch's record (no genotype, no mixture weights)."""
    return {k: v for k, v in record.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def write_live_metrics(history: list[dict[str, Any]], run_uri: str) -> None:
    """Rewrite ``live_metrics.jsonl`` in the run folder: one JSON line of :func:`scalar_metrics`
    per finished epoch, so that a run stopped by an error or Ctrl-C still shows its epochs."""
    lines = "".join(json.dumps(scalar_metrics(r)) + "\n" for r in history)
    Folder(run_uri).write_bytes(LIVE_METRICS, lines.encode())


def print_epoch(step: str, record: dict[str, Any], total: int) -> None:
    """``search epoch 3/100 [14.2s] train_loss=… val_accuracy=…`` on stderr."""
    shown = {k: record[k] for k in ("train_loss", "train_accuracy", "arch_val_loss", "search_val_accuracy",
                                    "val_accuracy", "test_accuracy") if k in record}
    text = " ".join(f"{k}={v:.4g}" for k, v in shown.items())
    print(f"{step} epoch {record['epoch']}/{total} [{record.get('seconds', 0.0):.1f}s] {text}",
          file=sys.stderr, flush=True)


def write_history(history: list[dict[str, Any]], directory: Path) -> None:
    """``metrics.jsonl`` (everything) and ``metrics.csv`` (the scalar columns)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "metrics.jsonl", "w", encoding="utf-8") as handle:
        for record in history:
            handle.write(json.dumps(record) + "\n")
    columns = [k for k, v in history[0].items() if isinstance(v, int | float)] if history else []
    with open(directory / "metrics.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)


def write_search_outputs(history: list[dict[str, Any]], genotype: Genotype, config: ExperimentConfig,
                         directory: Path) -> list[str]:
    """Metrics, genotype JSON and the two figures of a search; returns the file names."""
    write_history(history, directory)
    genotype.save(directory / "genotype.json")
    last = history[-1]
    weights = {"normal": last["weights_normal"], "reduce": last["weights_reduce"]}
    title = f"{config.name}: mixture weights after epoch {last['epoch']} ({config.model.mixture})"
    save_figure(alpha_figure(weights, config.model.steps, title), directory / "alphas.png")
    save_figure(cells_figure(genotype, f"{config.name}: derived cells"), directory / "cells.png")
    return ["metrics.jsonl", "metrics.csv", "alphas.png", "cells.png", "genotype.json"]


def write_retrain_outputs(history: list[dict[str, Any]], result: dict[str, Any], model: dict[str, Any],
                          directory: Path) -> list[str]:
    """Metrics, ``result.json`` and ``model.pt`` of a retraining; returns the file names."""
    write_history(history, directory)
    (directory / "result.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    torch.save(model, directory / "model.pt")
    return ["model.pt", "metrics.jsonl", "metrics.csv", "result.json"]


def model_payload(genotype: Genotype, config: ExperimentConfig, n: int, class_names: Sequence[str],
                  best: dict[str, Any], data_sha256: str | None) -> dict[str, Any]:
    """What ``model.pt`` holds: best-validation weights and everything to rebuild the network,
    with the class names in label order (``spdnas evaluate`` refuses data that numbers them
    otherwise).

    A local ``data.uri`` is stored absolute, so that ``spdnas evaluate`` finds the dataset from
    any working folder, with the dataset's :func:`~spdnas.data.storage.content_digest`
    ``data_sha256`` (None for data not read from ``data.uri``), so that it refuses the same URI
    holding other data (where the test split may hold training samples).
    """
    tree = config.to_dict()
    data = Folder(tree["data"]["uri"])
    if data.is_local:
        tree["data"]["uri"] = data.base
    return {"genotype": genotype.to_dict(), "config": tree, "n": n, "num_classes": len(class_names),
            "class_names": [str(name) for name in class_names],
            "state_dict": best["model"], "best_epoch": best["epoch"],
            "data_sha256": data_sha256}


def publish(write: Callable[[Path], list[str]], uri: str) -> dict[str, str]:
    """Run ``write(scratch_dir)`` and put its files into ``uri`` (local folder or ``s3://``), in
    the order ``write`` lists them (the result file last), each whole or not at all: a run killed
    while publishing leaves no half-written ``model.pt`` beside a complete ``result.json``.

    Returns ``{file name: location}``.
    """
    folder = Folder(uri)
    if folder.is_local:
        target = Path(folder.base)
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target, prefix=".publish-") as tmp:
            names = write(Path(tmp))
            for name in names:
                os.replace(Path(tmp) / name, target / name)
        return {name: str(target / name) for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        names = write(Path(tmp))
        for name in names:
            folder.write_bytes(name, (Path(tmp) / name).read_bytes())
    return {name: folder.display(name) for name in names}
