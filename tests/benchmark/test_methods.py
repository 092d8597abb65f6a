"""Methods in the benchmark harness: same data, seeds, budget; results and files."""

from __future__ import annotations

import json

import pytest

from spdnas.benchmark.methods import METHODS, MethodResult, run_method
from spdnas.config import load_config
from spdnas.engine.splits import split_experiment_data
from tests.helpers import toy_dataset

FAST = ["model.reduced_dims=[3]", "search.batch_size=15", "train.batch_size=15", "runtime.progress=false",
        "search.weight_lr=0.2", "search.arch_lr=0.01", "train.lr=0.2", "search.epochs=2", "train.epochs=4",
        "distributed.backend=local"]


@pytest.fixture(scope="module")
def data():
    dataset = toy_dataset(40, seed=11)
    return split_experiment_data(dataset, 0.5, seed=0)


def test_spdnetnas_method_searches_retrains_and_writes_files(data, tmp_path):
    result = run_method("spdnetnas", load_config(None, FAST), data, seed=3, out=tmp_path)
    assert isinstance(result, MethodResult)
    assert result.method == "spdnetnas" and result.dataset == "toy" and result.seed == 3
    assert 0 <= result.test_accuracy <= 1 and result.parameters > 0
    assert result.search_seconds > 0 and result.train_seconds > 0
    assert json.loads((tmp_path / "search" / "genotype.json").read_text()) == result.details["genotype"]
    assert (tmp_path / "train" / "result.json").exists() and (tmp_path / "search" / "alphas.png").exists()
    json.dumps(result.to_dict())


def test_random_method_is_seeded(data):
    config = load_config(None, FAST)
    a, b = run_method("random", config, data, seed=5), run_method("random", config, data, seed=5)
    assert a.details["genotype"] == b.details["genotype"] and a.test_accuracy == b.test_accuracy
    assert run_method("random", config, data, seed=6).details["genotype"] != a.details["genotype"]
    assert a.search_seconds == 0.0


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        run_method("nope", load_config(None, FAST), None, seed=0)
    assert {"spdnetnas", "random"} <= set(METHODS)


@pytest.mark.parametrize("method", ["spdnetnas", "random"])
def test_search_methods_never_see_the_test_split(method, data, tmp_path):
    """Test labels shifted: the search, the genotype, the training curve and the selected epoch
    stay the same; a prediction right on the true labels is wrong on the shifted ones."""
    import dataclasses

    from spdnas.engine.batches import TensorData

    config = load_config(None, [*FAST, "train.epochs=10", "train.lr=0.5"])
    a = run_method(method, config, data, seed=3, out=tmp_path / "a")
    corrupted = TensorData(data.test.x, (data.test.y + 1) % 3)
    b = run_method(method, config, dataclasses.replace(data, test=corrupted), seed=3, out=tmp_path / "b")
    assert a.details["genotype"] == b.details["genotype"]
    assert (a.val_accuracy, a.details["best_epoch"]) == (b.val_accuracy, b.details["best_epoch"])
    for part in ("train", "search") if method == "spdnetnas" else ("train",):
        curves = [[{k: v for k, v in json.loads(line).items() if k != "seconds"}
                   for line in (folder / part / "metrics.jsonl").read_text().splitlines()]
                  for folder in (tmp_path / "a", tmp_path / "b")]
        assert curves[0] == curves[1], part
    assert a.test_accuracy >= 0.6  # chance is 1/3 on 30 test samples
    assert b.test_accuracy <= 1 - a.test_accuracy + 1e-12
