"""How the ``ray job submit`` entrypoints turn --storage/--data into config overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.common import cli_arguments, parser
from spdnas.benchmark.run import dataset_config
from spdnas.cli import parse_with_overrides
from spdnas.config import load_config

BENCHMARK = str(Path(__file__).resolve().parents[2] / "configs" / "benchmark" / "radar-jv.yaml")


@pytest.fixture(autouse=True)
def no_folder_environment(monkeypatch):
    monkeypatch.delenv("SPDNAS_STORAGE", raising=False)
    monkeypatch.delenv("SPDNAS_DATA", raising=False)


def test_storage_and_data_folders_become_overrides():
    args = parser("x").parse_args(["--config", BENCHMARK, "--storage", "s3://b/experiments",
                                   "--data", "s3://b/datasets/", "train.epochs=3"])
    argv = cli_arguments(args, "search")
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
    assert cli_arguments(args, "search") == ["--config", BENCHMARK]


def test_dataset_parameters_keep_their_types(tmp_path):
    config_file = tmp_path / "bm.yaml"
    config_file.write_text("benchmark:\n  datasets:\n    - name: jv\n      data: {uri: data/jv, builder: "
                           "japanese-vowels, builder_params: {shrinkage: 0.00001, val_fraction: 0.1}}\n")
    args = parser("x").parse_args(["--config", str(config_file), "--data", "/mnt/datasets"])
    config = load_config(str(config_file), cli_arguments(args, "benchmark")[2:])
    (entry,) = config.benchmark.datasets
    assert entry.data.builder_params == {"shrinkage": 1e-05, "val_fraction": 0.1}
    assert entry.data.uri == "/mnt/datasets/jv"


def test_dataset_text_that_looks_like_numbers_stays_text(tmp_path):
    """The datasets went back as YAML from safe_dump, which leaves '1e3' and '-.5' unquoted (text in
    YAML 1.1, floats in the config's reading): class names and names came back as numbers."""
    config_file = tmp_path / "bm.yaml"
    config_file.write_text("benchmark:\n  datasets:\n    - name: '1e3'\n      data: {uri: data/x, builder: "
                           "radar-synth, builder_params: {class_names: ['1e3', '-.5', a]}}\n")
    args = parser("x").parse_args(["--config", str(config_file), "--data", "s3://b/d"])
    (entry,) = load_config(str(config_file), cli_arguments(args, "benchmark")[2:]).benchmark.datasets
    assert entry.name == "1e3" and entry.data.builder_params == {"class_names": ["1e3", "-.5", "a"]}
    assert entry.data.uri == "s3://b/d/x"


def test_explicit_overrides_win():
    args = parser("x").parse_args(["--config", BENCHMARK, "--data", "/mnt/datasets", "data.uri=/elsewhere/x"])
    assert load_config(BENCHMARK, cli_arguments(args, "search")[2:]).data.uri == "/elsewhere/x"


def test_a_benchmark_job_gets_no_top_level_data_override(monkeypatch):
    """With $SPDNAS_DATA set (as on every node of the cluster files) the job added data.uri=...,
    which `spdnas benchmark` refuses: python -m jobs.benchmark always exited 2."""
    from spdnas.config import parse_overrides

    monkeypatch.setenv("SPDNAS_DATA", "s3://b/datasets")
    argv = cli_arguments(parser("x").parse_args(["--config", BENCHMARK]), "benchmark")
    assert "data" not in parse_overrides(argv[2:])
    config = load_config(BENCHMARK, argv[2:])
    assert {d.data.uri for d in config.benchmark.datasets} == {"s3://b/datasets/radar-synth",
                                                               "s3://b/datasets/japanese-vowels"}


def test_runtime_env_uploads_the_code_and_nothing_else(tmp_path):
    """The package `ray job submit --working-dir . --runtime-env jobs/runtime_env.yaml` uploads,
    built by Ray's own packaging: every tracked file of the code and configs, no datasets,
    results or tests. (An unanchored `data/` once dropped the package `spdnas/data/`.)"""
    import zipfile

    import yaml
    from ray._private.runtime_env.packaging import create_package

    repo = Path(__file__).resolve().parents[2]
    excludes = yaml.safe_load((repo / "jobs" / "runtime_env.yaml").read_text())["excludes"]
    package = tmp_path / "upload.zip"
    create_package(str(repo), package, include_gitignore=True, excludes=excludes)
    uploaded = set(zipfile.ZipFile(package).namelist())
    code = [p for top in ("spdnas", "jobs", "configs") for p in (repo / top).rglob("*")
            if p.is_file() and p.suffix in (".py", ".yaml", ".json", ".md") and "__pycache__" not in p.parts]
    needed = [str(p.relative_to(repo)) for p in code] + ["pyproject.toml"]
    assert "spdnas/data/parquet.py" in needed
    assert [f for f in needed if f not in uploaded] == []
    left_out = ("data", "runs", "tests", "benchmarks", ".git", ".venv")
    assert not [f for f in uploaded if f.split("/")[0] in left_out]


def test_runtime_env_never_uploads_credentials(tmp_path):
    import zipfile

    import yaml
    from ray._private.runtime_env.packaging import create_package

    repo = Path(__file__).resolve().parents[2]
    excludes = yaml.safe_load((repo / "jobs" / "runtime_env.yaml").read_text())["excludes"]
    work = tmp_path / "work"
    secrets = [".env", "deploy/node.pem", "tls/server.key", ".aws/config", "home/.aws/credentials",
               "credentials"]
    for name in [*secrets, "spdnas/cli.py", "configs/radar.yaml"]:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text("x")
    create_package(str(work), tmp_path / "upload.zip", include_gitignore=False, excludes=excludes)
    assert sorted(zipfile.ZipFile(tmp_path / "upload.zip").namelist()) == ["configs/radar.yaml",
                                                                           "spdnas/cli.py"]


def test_overrides_may_follow_options_as_with_spdnas_itself():
    p = parser("x")
    p.add_argument("--genotype")
    args = parse_with_overrides(p, ["--config", BENCHMARK, "a=1", "--genotype", "radar", "b=2",
                                    "--no-resume", "c=3"])
    assert args.overrides == ["a=1", "b=2", "c=3"] and args.no_resume and args.genotype == "radar"
    with pytest.raises(SystemExit):
        parse_with_overrides(p, ["--config", BENCHMARK, "a=1", "--no-resume", "stray"])
