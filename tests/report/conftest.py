"""Experiment folders for the report tests, written by the real search/retrain writers."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from spdnas.benchmark.methods import MethodResult
from spdnas.config import load_config
from spdnas.engine.batches import TensorData
from spdnas.engine.search_job import SearchJob
from spdnas.engine.train_job import TrainJob
from spdnas.pipeline import retrain_result
from spdnas.report.outputs import model_payload, write_retrain_outputs, write_search_outputs
from spdnas.search.genotype import random_genotype
from tests.helpers import spd_classification

TINY = ["name=toy", "model.reduced_dims=[3]", "search.batch_size=15", "train.batch_size=15",
        "runtime.progress=false", "search.weight_lr=0.2", "search.arch_lr=0.01", "train.lr=0.2",
        "search.epochs=2", "train.epochs=3"]


def _splits():
    """search-train, search-val (the two halves of train), train, val, test."""
    x, y = spd_classification(25, classes=3, n=6, seed=7)
    return tuple(TensorData(x[a:b], y[a:b]) for a, b in ((0, 15), (15, 30), (0, 30), (30, 45), (45, 75)))


def _retrain(config, genotype, data, directory: Path) -> MethodResult:
    _, _, train, val, test = data
    job = TrainJob(config, genotype, train, val, 3)
    while not job.finished:
        job.run_epoch()
    tested = job.test(test)
    result = retrain_result(tested, job.num_parameters, genotype, job.history)
    model = model_payload(genotype, config, 6, ["a", "b", "c"], job.best, None)
    write_retrain_outputs(job.history, result, model, directory)
    return MethodResult("?", "toy", config.runtime.seed, tested["test_accuracy"], job.best["val_accuracy"],
                        job.num_parameters, 0.0, result["train_seconds"], {"genotype": genotype.to_dict()})


def _search_and_retrain(seed: int, directory: Path, data) -> MethodResult:
    """What the spdnetnas method leaves in ``directory``: search/ and train/ of a real tiny run."""
    config = load_config(None, [*TINY, f"runtime.seed={seed}"])
    search_train, search_val = data[0], data[1]
    job = SearchJob(config, search_train, search_val, 3)
    while not job.finished:
        job.run_epoch()
    write_search_outputs(job.history, job.genotype(), config, directory / "search")
    result = _retrain(config, job.genotype(), data, directory / "train")
    result.method, result.search_seconds = "spdnetnas", sum(r["seconds"] for r in job.history)
    return result


def hand_made_results() -> list[MethodResult]:
    """A second dataset with 6 seeds per method and no run folders (accuracies are made up)."""
    table = {"spdnetnas": [0.981, 0.975, 0.978, 0.972, 0.980, 0.977],
             "random": [0.955, 0.957, 0.953, 0.956, 0.954, 0.955],
             "spdnet": [0.930, 0.935, 0.928, 0.933, 0.931, 0.929]}
    sizes = {"spdnetnas": 18_432, "random": 18_500, "spdnet": 1_400}
    return [MethodResult(method, "radar", seed, accuracy, accuracy + 0.002, sizes[method],
                         86_400.0 if method == "spdnetnas" else 0.0, 1_800.0 + seed, {})
            for method, accuracies in table.items() for seed, accuracy in enumerate(accuracies)]


def synthetic_trials(count: int = 40, seed: int = 0) -> list[dict]:
    """A sweep where the learning rate drives the metric and the other knobs are noise."""
    rng = random.Random(seed)
    trials = []
    for index in range(count):
        config = {"search.arch_lr": 10 ** rng.uniform(-4, -1), "search.weight_decay": rng.uniform(0, 1e-3),
                  "model.mixture": rng.choice(["sparsemax", "softmax", "sigmoid"]),
                  "train.batch_size": rng.choice([15, 30, 60])}
        metric = 0.6 + 0.3 * (4 + math.log10(config["search.arch_lr"])) / 3 + rng.gauss(0, 0.01)
        trials.append({"trial_id": f"t{index:03d}", "config": config, "seed": index % 3, "metric": metric,
                       "status": "TERMINATED"})
    return trials


def write_jsonl(path: Path, records) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture(scope="session")
def experiment_dir(tmp_path_factory) -> Path:
    """A benchmark + sweep folder: dataset "toy" from real tiny runs (2 seeds of spdnetnas and of
    random, with run folders) and dataset "radar" from hand-made results only."""
    root = tmp_path_factory.mktemp("experiment")
    data = _splits()
    results = []
    for seed in (0, 1):
        runs = root / "runs" / "toy"
        results.append(_search_and_retrain(seed, runs / "spdnetnas" / f"seed{seed}", data))
        config = load_config(None, [*TINY, f"runtime.seed={seed}"])
        folder = runs / "random" / f"seed{seed}" / "train"
        baseline = _retrain(config, random_genotype(2, 2, seed), data, folder)
        baseline.method = "random"
        results.append(baseline)
    write_jsonl(root / "results.jsonl", [r.to_dict() for r in results + hand_made_results()])
    write_jsonl(root / "sweep" / "trials.jsonl", synthetic_trials())
    return root


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    """A plain run folder as `spdnas search` + `spdnas train` leave it (no results.jsonl)."""
    root = tmp_path_factory.mktemp("runs") / "quickstart"
    _search_and_retrain(3, root, _splits())
    return root
