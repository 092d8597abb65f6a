"""What a benchmark refuses before any trial starts, and before it makes or records anything
it need not (no Ray started: a benchmark that gets that far fails the test)."""

from __future__ import annotations

import json

import pytest

from spdnas.benchmark.run import run_benchmark
from spdnas.config import ConfigError, load_config
from spdnas.data import write_dataset
from spdnas.pipeline import with_absolute_paths
from tests.helpers import toy_dataset


class RayStarted(Exception):
    """The benchmark got past its checks to the point where it starts Ray."""


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    from spdnas.distributed import runner

    def refuse(_):
        raise RayStarted

    monkeypatch.setattr(runner, "ray_session", refuse)


def benchmark(tmp_path, *extra: str, data: str = "builder: null", batch: int = 20):
    """A benchmark of one dataset, ``small``, whose own overrides set ``train.batch_size=batch``."""
    return load_config(None, [
        "name=bm", f"runtime.output_dir={tmp_path / 'runs'}", "runtime.progress=false", "benchmark.seeds=[0]",
        f"benchmark.datasets=[{{name: small, data: {{uri: {tmp_path / 'small'}, {data}}}, "
        f"overrides: ['train.batch_size={batch}']}}]", *extra])


def test_a_dataset_too_small_for_a_batch_is_refused_before_any_trial(tmp_path):
    """Every trial failed on its first epoch, each with a Ray traceback, and the message said
    "with distributed.data=shard, per worker" of a benchmark, which runs trials on all the data."""
    write_dataset(toy_dataset(20, seed=1, name="small"), str(tmp_path / "small"))  # 30 train rows
    expected = ("benchmark dataset 'small', search.batch_size=30 (for spdnetnas, darts): no full batch "
                "of 30 in this epoch (samples: search-train 16, search-val 14): lower the batch size or use "
                "more data")
    with pytest.raises(ValueError) as refused:
        run_benchmark(benchmark(tmp_path, "benchmark.methods=[spdnetnas, mdm, darts]"))
    assert str(refused.value) == expected
    assert not (tmp_path / "runs" / "bm" / "benchmark_config.json").exists()  # not kept: a fix is no change
    with pytest.raises(ValueError, match=r"^benchmark dataset 'small', train.batch_size=40 \(for spdnet\): "
                                         r"no full batch of 40 in this epoch \(samples: train 30\)"):
        run_benchmark(benchmark(tmp_path, "benchmark.methods=[spdnet, mdm]", "search.batch_size=5", batch=40))
    with pytest.raises(RayStarted):  # the dataset's own train.batch_size fits; mdm and ts-lr take no batches
        run_benchmark(benchmark(tmp_path, "benchmark.methods=[spdnet, mdm, ts-lr]"))


def test_a_dataset_without_a_split_is_refused_before_any_trial(tmp_path):
    dataset = toy_dataset(20, seed=1, name="small")
    write_dataset(dataset.select(dataset.splits != "val"), str(tmp_path / "small"))
    with pytest.raises(ValueError, match="dataset 'small' has no 'val' rows"):
        run_benchmark(benchmark(tmp_path, "benchmark.methods=[mdm]"))


def test_the_run_folder_is_checked_before_any_dataset_is_made(tmp_path):
    """A benchmark named like a sweep (or like a benchmark of other settings) first made its
    datasets, then was refused."""
    made = tmp_path / "small"
    data = "builder: radar-synth, builder_params: {n_samples: 90}"
    (tmp_path / "runs" / "bm").mkdir(parents=True)
    (tmp_path / "runs" / "bm" / "sweep_config.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"holds a sweep .*give the benchmark another name"):
        run_benchmark(benchmark(tmp_path, data=data))
    assert not made.exists()
    (tmp_path / "runs" / "bm" / "sweep_config.json").unlink()
    recorded = with_absolute_paths(benchmark(tmp_path, "benchmark.seeds=[0, 1]", data=data)).to_dict()
    (tmp_path / "runs" / "bm" / "benchmark_config.json").write_text(json.dumps(recorded))
    with pytest.raises(ConfigError, match=r"other settings \(benchmark.seeds\)"):
        run_benchmark(benchmark(tmp_path, data=data))
    assert not made.exists()


def test_unknown_methods_are_a_configuration_error(capsys):
    """They were refused by the benchmark (exit 1), not with the other bad values (exit 2)."""
    from spdnas.benchmark import baselines  # noqa: F401  (registers the baselines)
    from spdnas.benchmark.methods import METHODS
    from spdnas.cli import main

    assert main(["benchmark", "benchmark.methods=[spdnetnas, foo]"]) == 2
    assert "error: invalid configuration:\n  benchmark.methods: unknown ['foo']; known: spdnetnas, " in (
        capsys.readouterr().err)
    from spdnas.config import BENCHMARK_METHODS

    assert sorted(METHODS) == sorted(BENCHMARK_METHODS)  # the code of every method a config may name


def test_worker_settings_a_benchmark_would_ignore_are_refused(tmp_path):
    """A benchmark trial runs its method in one process: distributed.num_workers=4 or
    use_gpu=true were ignored without a word."""
    made = tmp_path / "small"
    data = "builder: radar-synth, builder_params: {n_samples: 90}"
    for extra, named in ((["distributed.num_workers=2"], "distributed.num_workers=2"),
                         (["distributed.use_gpu=true"], "distributed.use_gpu=true")):
        with pytest.raises(ConfigError, match=rf"runs its method in one process.*: {named} \(for spdnas "):
            run_benchmark(benchmark(tmp_path, *extra, data=data))
    own = load_config(None, ["name=bm", f"runtime.output_dir={tmp_path / 'runs'}", "benchmark.seeds=[0]",
                             f"benchmark.datasets=[{{name: small, data: {{uri: {made}, {data}}}, "
                             "overrides: ['distributed.num_workers=2']}]"])
    with pytest.raises(ConfigError, match=r"num_workers=2 \(benchmark.datasets 'small'\) \(for spdnas"):
        run_benchmark(own)
    assert not made.exists()
