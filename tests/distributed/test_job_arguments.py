"""How the ``ray job submit`` entrypoints turn --storage/--data into config overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.common import cli_arguments, parser
from spdnas.benchmark.run import dataset_config
from spdnas.config import load_config

BENCHMARK = str(Path(__file__).resolve().parents[2] / "configs" / "benchmark" / "radar-jv.yaml")


@pytest.fixture(autouse=True)
def no_folder_environment(monkeypatch):
    monkeypatch.delenv("SPDNAS_STORAGE", raising=False)
    monkeypatch.delenv("SPDNAS_DATA", raising=False)


def test_storage_and_data_folders_become_overrides():
    args = parser("x").parse_args(["--config", BENCHMARK, "--storage", "s3://b/experiments",
                                   "--data", "s3://b/datasets/", "train.epochs=3"])
    argv = cli_arguments(args)
    assert argv[:2] == ["--config", BENCHMARK] and argv[-1] == "train.epochs=3"
    config = load_config(BENCHMARK, argv[2:])
    assert config.runtime.output_dir == "s3://b/experiments"
    assert config.data.uri == "s3://b/datasets/radar-synth"
    assert config.train.epochs == 3
    uris = {d.name: dataset_config(config, d.name).data.uri for d in config.benchmark.datasets}
    assert uris == {"radar-synth": "s3://b/datasets/radar-synth",
                    "japanese-vowels": "s3://b/datasets/japanese-vowels"}
    jv = dataset_config(config, "japanese-vowels")
    assert jv.data.builder_params == {"val_fraction": 0.1} and jv.model.reduced_dims is None


def test_without_folders_the_config_decides():
    args = parser("x").parse_args(["--config", BENCHMARK])
    assert cli_arguments(args) == ["--config", BENCHMARK]


def test_dataset_parameters_keep_their_types(tmp_path):
    config_file = tmp_path / "bm.yaml"
    config_file.write_text("benchmark:\n  datasets:\n    - name: jv\n      data: {uri: data/jv, builder: "
                           "japanese-vowels, builder_params: {shrinkage: 0.00001, val_fraction: 0.1}}\n")
    args = parser("x").parse_args(["--config", str(config_file), "--data", "/mnt/datasets"])
    config = load_config(str(config_file), cli_arguments(args)[2:])
    (entry,) = config.benchmark.datasets
    assert entry.data.builder_params == {"shrinkage": 1e-05, "val_fraction": 0.1}
    assert entry.data.uri == "/mnt/datasets/jv"


def test_explicit_overrides_win():
    args = parser("x").parse_args(["--config", BENCHMARK, "--data", "/mnt/datasets", "data.uri=/elsewhere/x"])
    assert load_config(BENCHMARK, cli_arguments(args)[2:]).data.uri == "/elsewhere/x"
