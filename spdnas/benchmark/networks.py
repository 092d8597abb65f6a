"""Network baselines: one training path (train, select on val, test, files) for all of them,
and the handcrafted SPD networks SPDNet and SPDNetBN."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spdnas.benchmark.methods import MethodResult, register
from spdnas.config import ExperimentConfig
from spdnas.engine.batches import TensorData
from spdnas.engine.splits import ExperimentData
from spdnas.engine.train_job import ModelFactory, TrainJob
from spdnas.models.baselines import SPDNet, spdnet_dims
from spdnas.report.outputs import write_retrain_outputs

TEST_KEYS = ("test_accuracy", "test_loss", "test_accuracy_last", "best_epoch")


def train_network(method: str, config: ExperimentConfig, data: ExperimentData, seed: int, out: Path | None,
                  build: ModelFactory, architecture: dict[str, Any],
                  splits: tuple[TensorData, TensorData, TensorData] | None = None,
                  search_seconds: float = 0.0, details: dict[str, Any] | None = None) -> MethodResult:
    """Train the network ``build(dtype, device)`` makes with our retraining budget and optimizer
    (``config.train``), keep the best-validation epoch, test it.

    ``splits`` replaces ``(data.train, data.val, data.test)`` by transformed copies (e.g. the
    log-mapped features of the Euclidean baselines). With ``out``, writes ``out / "train"``:
    ``metrics.jsonl``, ``metrics.csv``, ``result.json`` and ``model.pt``.
    """
    train, val, test = splits or (data.train, data.val, data.test)
    job = TrainJob(config, None, train, val, data.num_classes, model_factory=build)
    while not job.finished:
        job.run_epoch()
    metrics = job.test(test)
    train_seconds = sum(r["seconds"] for r in job.history)
    if out is not None:
        result = {"method": method, **{k: metrics[k] for k in TEST_KEYS}, "parameters": job.num_parameters,
                  "architecture": architecture, "epochs": len(job.history), "train_seconds": train_seconds}
        payload = {"architecture": architecture, "config": config.to_dict(), "num_classes": data.num_classes,
                   "state_dict": job.best["model"], "best_epoch": job.best["epoch"]}
        write_retrain_outputs(job.history, result, payload, out / "train")
    extras = {"architecture": architecture, "best_epoch": metrics["best_epoch"], **(details or {})}
    if job.num_parameters_total != job.num_parameters:  # cells no later cell reads (FairDARTS)
        extras["parameters_total"] = job.num_parameters_total
    return MethodResult(method, data.dataset.meta.name, seed, metrics["test_accuracy"],
                        job.best["val_accuracy"], job.num_parameters, search_seconds, train_seconds, extras)


def _spdnet(method: str, batchnorm: bool, config: ExperimentConfig, data: ExperimentData, seed: int,
            out: Path | None) -> MethodResult:
    dims = spdnet_dims(config.baselines, data.n)

    def build(dtype, device):
        return SPDNet(dims, data.num_classes, batchnorm, config.model, dtype=dtype, device=device)

    architecture = {"network": "SPDNetBN" if batchnorm else "SPDNet", "dims": dims}
    return train_network(method, config, data, seed, out, build, architecture)


@register("spdnet")
def spdnet(config: ExperimentConfig, data: ExperimentData, seed: int, out: Path | None) -> MethodResult:
    """SPDNet (Huang & Van Gool 2017): ``[BiMap → ReEig] × (L − 1) → BiMap → LogEig → Linear``,
    Riemannian SGD."""
    return _spdnet("spdnet", False, config, data, seed, out)


@register("spdnetbn")
def spdnetbn(config: ExperimentConfig, data: ExperimentData, seed: int, out: Path | None) -> MethodResult:
    """SPDNetBN (Brooks et al. 2019): SPDNet with a Riemannian batch norm after each BiMap."""
    return _spdnet("spdnetbn", True, config, data, seed, out)
