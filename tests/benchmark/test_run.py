"""``spdnas benchmark``: methods × datasets × seeds as Tune trials, resumable, local or S3 output."""

from __future__ import annotations

import json
import shutil

import pytest

from spdnas.benchmark.run import dataset_config, run_benchmark
from spdnas.config import ConfigError, load_config
from spdnas.data.storage import Folder
from spdnas.pipeline import load_model
from tests.distributed.test_ray_train import dataset_uri  # noqa: F401  (fixture)

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]


def bench_config(uri: str, out: str, *extra: str):
    return load_config(None, [
        "name=bm", f"runtime.output_dir={out}", "runtime.progress=false", "distributed.backend=ray",
        "model.reduced_dims=[3]", "search.batch_size=8", "train.batch_size=8", "search.epochs=1",
        "train.epochs=2", "benchmark.methods=[spdnetnas,mdm]", "benchmark.seeds=[0,1]",
        "benchmark.cpus_per_trial=1",
        f"benchmark.datasets=[{{name: tiny, data: {{uri: {uri}, builder: null}}}}]", *extra])


def test_benchmark_writes_tables_report_genotypes_and_resumes(ray_session, dataset_uri, tmp_path):  # noqa: F811
    config = bench_config(dataset_uri, str(tmp_path))
    outcome = run_benchmark(config)
    assert [(r["method"], r["seed"]) for r in outcome.results] == [
        ("mdm", 0), ("mdm", 1), ("spdnetnas", 0), ("spdnetnas", 1)]
    assert all(r["dataset"] == "tiny" and 0 <= r["test_accuracy"] <= 1 for r in outcome.results)
    root = tmp_path / "bm"
    lines = (root / "results.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == outcome.results
    rows = json.loads((root / "table.json").read_text())["rows"]
    assert {(r["dataset"], r["method"], r["n_seeds"]) for r in rows} == {
        ("tiny", "mdm", 2), ("tiny", "spdnetnas", 2)}
    assert "spdnetnas" in (root / "table.md").read_text()
    assert "<table" in (root / "report.html").read_text()
    for seed in (0, 1):
        genotype = root / "runs" / "tiny" / "spdnetnas" / f"seed{seed}" / "search" / "genotype.json"
        assert outcome.paths[f"genotype/tiny/seed{seed}"] == str(genotype)
        assert json.loads(genotype.read_text()) == outcome.results[2 + seed]["details"]["genotype"]
    _, saved = load_model(str(root / "runs" / "tiny" / "spdnetnas" / "seed1" / "train" / "model.pt"))
    assert saved["config"]["runtime"]["seed"] == 1  # its own seed; the search halves of the base seed
    assert saved["config"]["data"]["split_seed"] == 0
    assert outcome.paths["tensorboard --logdir"] == str(root / "tune")
    assert len(list((root / "tune").glob("*/events.out.tfevents.*"))) == 4  # one log per trial
    trained = root / "runs" / "tiny" / "spdnetnas" / "seed0" / "train" / "result.json"
    stamp = trained.stat().st_mtime_ns

    again = run_benchmark(config)  # everything finished: restored, nothing rerun
    assert again.results == outcome.results
    assert trained.stat().st_mtime_ns == stamp


def test_a_failed_trial_leaves_the_others_in_the_table(ray_session, dataset_uri, tmp_path, capsys):  # noqa: F811
    """spdnetnas cannot reduce 6×6 matrices to 8×8: its trials on that dataset fail, the rest are
    tabled, and the command names the failures and exits 1. --no-resume deletes an earlier run."""
    from spdnas.cli import main

    datasets = (f"benchmark.datasets=[{{name: tiny, data: {{uri: {dataset_uri}, builder: null}}}}, "
                f"{{name: wide, data: {{uri: {dataset_uri}, builder: null}}, "
                f"overrides: ['model.reduced_dims=[8]']}}]")
    args = ["name=bm", f"runtime.output_dir={tmp_path}", "runtime.progress=false", "distributed.backend=ray",
            "model.reduced_dims=[3]", "search.batch_size=8", "train.batch_size=8", "search.epochs=1",
            "train.epochs=1", "benchmark.methods=[spdnetnas,mdm]", "benchmark.seeds=[0]",
            "benchmark.cpus_per_trial=1", datasets]
    stale = tmp_path / "bm" / "runs" / "tiny" / "mdm" / "seed9"
    stale.mkdir(parents=True)
    (stale / "result.json").write_text("{}")
    single_run = tmp_path / "bm" / "search" / "genotype.json"  # `spdnas search name=bm`: not the benchmark's
    single_run.parent.mkdir(parents=True)
    single_run.write_text("{}")
    assert main(["benchmark", "--no-resume", *args]) == 1
    assert not stale.exists() and single_run.exists()  # --no-resume starts the benchmark over
    out, err = capsys.readouterr()
    assert "error: spdnetnas on wide, seed 0 failed and is left out of the table: " in err
    results = [json.loads(line) for line in (tmp_path / "bm" / "results.jsonl").read_text().splitlines()]
    assert [(r["dataset"], r["method"]) for r in results] == [("tiny", "mdm"), ("tiny", "spdnetnas"),
                                                              ("wide", "mdm")]
    assert "wide" in out and "wide" in (tmp_path / "bm" / "table.md").read_text()
    printed = [line.split() for line in out.splitlines()]
    assert ["failed", "runs", str(tmp_path / "bm" / "failed.jsonl")] in printed
    failed = [json.loads(line) for line in (tmp_path / "bm" / "failed.jsonl").read_text().splitlines()]
    assert [(f["dataset"], f["method"], f["seed"]) for f in failed] == [("wide", "spdnetnas", 0)]
    for page in ("table.md", "report.html"):
        assert "Not finished, so left out of every mean and test (1 run(s)): spdnetnas seed 0: " in (
            tmp_path / "bm" / page).read_text()


def test_benchmark_to_s3_from_a_relative_dataset_path(ray_session, dataset_uri, s3_prefix,  # noqa: F811
                                                       tmp_path, monkeypatch):
    shutil.copytree(dataset_uri, tmp_path / "datasets" / "tiny")
    monkeypatch.chdir(tmp_path)  # Tune runs trials in their own folders: the path must still work
    config = bench_config("datasets/tiny", s3_prefix, "benchmark.methods=[mdm]")
    outcome = run_benchmark(config)
    assert len(outcome.results) == 2
    names = set(Folder(f"{s3_prefix}/bm").list_names())
    assert {"results.jsonl", "failed.jsonl", "table.md", "table.csv", "table.json", "report.html"} <= names
    assert outcome.paths["report"] == f"{s3_prefix}/bm/report.html"
    assert "failed runs" not in outcome.paths  # none failed: the (empty) file is not pointed at
    page = Folder(f"{s3_prefix}/bm").read_bytes("report.html").decode()
    assert f"<th>experiment</th><td>{s3_prefix}/bm</td>" in page and "<h1>spdnas report: bm</h1>" in page
    lines = Folder(f"{s3_prefix}/bm").read_bytes("results.jsonl").decode().splitlines()
    assert [json.loads(line) for line in lines] == outcome.results
    more_seeds = bench_config("datasets/tiny", s3_prefix, "benchmark.methods=[mdm]",
                              "benchmark.seeds=[0,1,2]")
    with pytest.raises(ConfigError, match=r"other settings \(benchmark.seeds\).*--no-resume"):
        run_benchmark(more_seeds)  # finished trials of other settings are not mixed in
    from spdnas.data import write_dataset
    from tests.helpers import toy_dataset

    write_dataset(toy_dataset(32, seed=6, name="tiny"), str(tmp_path / "datasets" / "tiny"), overwrite=True)
    with pytest.raises(ValueError, match=r"bm/runs/tiny/ was run on other data than .* holds now"):
        run_benchmark(config)  # nor finished trials of other data made at the same place


def test_dataset_overrides_apply_to_their_dataset_only(dataset_uri):  # noqa: F811
    config = load_config(None, [
        f"benchmark.datasets=[{{name: a, data: {{uri: {dataset_uri}}}, overrides: [train.epochs=7]}},"
        f" {{name: b, data: {{uri: {dataset_uri}}}}}]"])
    assert dataset_config(config, "a").train.epochs == 7
    assert dataset_config(config, "b").train.epochs == config.train.epochs
    with pytest.raises(ValueError, match="no benchmark dataset named 'c'"):
        dataset_config(config, "c")

