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
