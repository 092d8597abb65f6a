"""Every method the benchmark compares, behind one signature, in one registry.

A method gets the experiment config (budget: epochs, batch size, learning rates), the data
(the same splits for every method) and a seed, trains on ``train`` (searching, if it searches,
on ``search_train``/``search_val`` only), selects on ``val`` and reports ``test`` accuracy,
parameter count and cost. Nothing here knows about Ray: Tune runs methods as trials.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from spdnas.config import ExperimentConfig
from spdnas.engine.search_job import SearchJob
from spdnas.engine.splits import ExperimentData
from spdnas.engine.train_job import TrainJob
from spdnas.report.outputs import model_payload, write_retrain_outputs, write_search_outputs
from spdnas.search.genotype import Genotype


@dataclass
class MethodResult:
    """One (method, dataset, seed) run of the benchmark.

    Attributes
    ----------
    test_accuracy : float
        On the test split, with the model selected on the validation split.
    val_accuracy : float or None
        Best validation accuracy (None for methods without a validation-based selection).
    parameters : int or None
        Trainable parameters of the final model (None where the notion does not apply).
    search_seconds, train_seconds : float
        Wall time of architecture search (0 without search) and of training the final model.
    details : dict
        Method-specific extras (genotype, best epoch, ...), JSON-serialisable.
    test_samples : int or None
        Size of the test split (set by :func:`run_method`).
    """

    method: str
    dataset: str
    seed: int
    test_accuracy: float
    val_accuracy: float | None
    parameters: int | None
    search_seconds: float
    train_seconds: float
    details: dict[str, Any] = field(default_factory=dict)
    test_samples: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Method = Callable[[ExperimentConfig, ExperimentData, int, Path | None], MethodResult]
METHODS: dict[str, Method] = {}


def register(name: str) -> Callable[[Method], Method]:
    """Add a method to :data:`METHODS` under ``name``."""

    def add(method: Method) -> Method:
        if name in METHODS:
            raise ValueError(f"method {name!r} registered twice")
        METHODS[name] = method
        return method

    return add


def run_method(name: str, config: ExperimentConfig, data: ExperimentData, seed: int,
               out: Path | None = None) -> MethodResult:
    """Run method ``name`` with ``seed``; its files (if any) go under ``out``."""
    from spdnas.benchmark import baselines  # noqa: F401  (registers the baselines)

    try:
        method = METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; known: {sorted(METHODS)}") from None
    result = method(with_seed(config, seed), data, seed, out)
    result.test_samples = len(data.test)
    return result


def with_seed(config: ExperimentConfig, seed: int) -> ExperimentConfig:
    return replace(config, runtime=replace(config.runtime, seed=seed))


def train_genotype(config: ExperimentConfig, genotype: Genotype, data: ExperimentData,
                   out: Path | None) -> tuple[dict[str, Any], TrainJob]:
    """Retrain ``genotype`` from scratch (train/val), test it; write its files under ``out``."""
    job = TrainJob(config, genotype, data.train, data.val, data.num_classes)
    while not job.finished:
        job.run_epoch()
    test = job.test(data.test)
    if out is not None:
        from spdnas.pipeline import retrain_result

        result = retrain_result(test, job.num_parameters, genotype, job.history)
        model = model_payload(genotype, config, data.n, data.dataset.meta.class_names, job.best,
                              data.data_sha256)
        write_retrain_outputs(job.history, result, model, out / "train")
    return test, job


@register("spdnetnas")
def spdnetnas(config: ExperimentConfig, data: ExperimentData, seed: int, out: Path | None) -> MethodResult:
    """SPDNetNAS: bi-level search on search-train/search-val, then retrain the genotype."""
    start = time.perf_counter()
    search = SearchJob(config, data.search_train, data.search_val, data.num_classes,
                       search_split=data.search_split)
    while not search.finished:
        search.run_epoch()
    genotype = search.genotype()
    search_seconds = time.perf_counter() - start
    if out is not None:
        write_search_outputs(search.history, genotype, config, out / "search")
    test, job = train_genotype(config, genotype, data, out)
    return MethodResult("spdnetnas", data.dataset.meta.name, seed, test["test_accuracy"],
                        job.best["val_accuracy"], job.num_parameters, search_seconds,
                        sum(r["seconds"] for r in job.history),
                        {"genotype": genotype.to_dict(), "best_epoch": test["best_epoch"],
                         "search_val_accuracy": search.history[-1]["search_val_accuracy"]})
