"""Euclidean NAS baselines: DARTS and FairDARTS on log-mapped, vectorised inputs.

Each sample ``X`` becomes ``vec(log X)`` (:func:`spdnas.models.euclidean_nas.log_vectorise`),
standardised per feature with the mean and standard deviation of the ``train`` split (which
contains the search halves; val and test only ever get the train statistics applied). The
search runs on ``search_train``/``search_val`` with our search budget (``config.search``), the
derived architecture is retrained from scratch with our retraining budget (``config.train``),
selected on ``val`` and tested on ``test``. The log-maps (well under a second for RADAR) are
not counted in the search or training time.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from spdnas.benchmark.methods import MethodResult, register
from spdnas.benchmark.networks import train_network
from spdnas.config import ExperimentConfig
from spdnas.engine.batches import TensorData
from spdnas.engine.loops import evaluate, search_epoch
from spdnas.engine.runtime import setup_runtime
from spdnas.engine.splits import ExperimentData
from spdnas.models.euclidean_genotype import EuclideanGenotype, fairdarts_fallbacks
from spdnas.models.euclidean_nas import EuclideanNetwork, log_vectorise
from spdnas.models.euclidean_search import EuclideanSearcher
from spdnas.report.outputs import write_history

SPLITS = ("train", "val", "test", "search_train", "search_val")


def log_features(data: ExperimentData) -> dict[str, TensorData]:
    """Every split as standardised log-map vectors ``(N, n (n + 1) / 2)`` (float64), with the
    statistics of ``train`` (constant features keep scale 1)."""
    with torch.no_grad():
        vectors = {name: log_vectorise(getattr(data, name).x.to(torch.float64)) for name in SPLITS}
    mean = vectors["train"].mean(0)
    std = vectors["train"].std(0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return {name: TensorData((v - mean) / std, getattr(data, name).y) for name, v in vectors.items()}


SearchOutcome = tuple[EuclideanGenotype, list[dict[str, Any]], float]


def euclidean_search(variant: str, config: ExperimentConfig, features: dict[str, TensorData],
                     num_classes: int, out: Path | None) -> SearchOutcome:
    """Bi-level search on the search halves; returns the genotype, per-epoch history, seconds.

    With ``out``, writes ``out / "search"``: ``metrics.jsonl`` and ``metrics.csv`` (losses,
    supernet accuracy on search-val, genotype and mixture weights per epoch), ``genotype.json``.
    """
    start = time.perf_counter()
    dtype, device = setup_runtime(config.runtime)
    search_train = features["search_train"].to(device, dtype)
    search_val = features["search_val"].to(device, dtype)
    torch.manual_seed(config.runtime.seed)
    searcher = EuclideanSearcher(variant, config.baselines, config.search, int(search_train.x.shape[1]),
                                 num_classes, dtype=dtype, device=device)
    s, history = config.search, []
    for epoch in range(s.epochs):
        epoch_start = time.perf_counter()
        metrics = search_epoch(searcher, search_train, search_val, s.batch_size, config.runtime.seed, epoch,
                               progress=config.runtime.progress)
        searcher.supernet.eval()
        metrics.update(evaluate(searcher.forward, search_val, s.batch_size, "search_val"))
        (weights,) = searcher.mixture()
        history.append({"epoch": epoch + 1, **metrics, "seconds": time.perf_counter() - epoch_start,
                        "genotype": searcher.genotype().to_dict(), "ops": list(searcher.ops),
                        "weights": weights.detach().cpu().tolist()})
    genotype = searcher.genotype()
    seconds = time.perf_counter() - start
    if out is not None:
        write_history(history, out / "search")
        genotype.save(out / "search" / "genotype.json")
    return genotype, history, seconds


def _euclidean_nas(variant: str, config: ExperimentConfig, data: ExperimentData, seed: int,
                   out: Path | None) -> MethodResult:
    features = log_features(data)
    genotype, history, search_seconds = euclidean_search(variant, config, features, data.num_classes, out)
    b = config.baselines
    in_features = int(features["train"].x.shape[1])

    def build(dtype, device):
        return EuclideanNetwork(genotype, in_features, b.darts_width, b.darts_cells, data.num_classes,
                                dtype=dtype, device=device)

    architecture = {"network": variant, "genotype": genotype.to_dict(), "in_features": in_features,
                    "width": b.darts_width, "cells": b.darts_cells}
    details = {"search_val_accuracy": history[-1]["search_val_accuracy"] if history else None}
    if variant == "fairdarts" and history:  # how much of the genotype the threshold decided
        weights = torch.tensor(history[-1]["weights"])
        details.update(sigmoid_min=float(weights.min()), sigmoid_max=float(weights.max()),
                       nodes_below_threshold=fairdarts_fallbacks(weights, tuple(history[-1]["ops"]),
                                                                 b.darts_steps, b.fairdarts_threshold))
    return train_network(variant, config, data, seed, out, build, architecture,
                         splits=(features["train"], features["val"], features["test"]),
                         search_seconds=search_seconds, details=details)


@register("darts")
def darts(config: ExperimentConfig, data: ExperimentData, seed: int, out: Path | None) -> MethodResult:
    """DARTS (softmax over operations) on log-mapped inputs; top-2 edges per node."""
    return _euclidean_nas("darts", config, data, seed, out)


@register("fairdarts")
def fairdarts(config: ExperimentConfig, data: ExperimentData, seed: int, out: Path | None) -> MethodResult:
    """FairDARTS (independent sigmoids, zero-one loss) on log-mapped inputs; threshold on σ(α)."""
    return _euclidean_nas("fairdarts", config, data, seed, out)
