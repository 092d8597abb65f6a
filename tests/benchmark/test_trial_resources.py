"""What a benchmark trial asks Ray for, and which settings may change on resume (no Ray started)."""

from __future__ import annotations

import json

import pytest

from spdnas.benchmark.run import RUN_ONLY, trial_experiment, trial_resources
from spdnas.config import ConfigError, load_config
from spdnas.data.storage import Folder
from spdnas.pipeline import check_no_other_experiment, check_same_experiment


def test_trials_ask_for_gpus_only_on_cuda():
    cluster = {"CPU": 16.0, "GPU": 2.0}
    cpu = load_config(None, ["benchmark.cpus_per_trial=2"])
    assert trial_resources(cpu, cluster) == ({"CPU": 2.0}, 8)
    gpu = load_config(None, ["benchmark.cpus_per_trial=2", "runtime.device=cuda:1"])
    assert trial_resources(gpu, cluster) == ({"CPU": 2.0, "GPU": 1.0}, 2)  # two GPUs: two at a time
    shared = load_config(None, ["runtime.device=cuda", "benchmark.gpus_per_trial=0.25"])
    assert trial_resources(shared, cluster) == ({"CPU": 1.0, "GPU": 0.25}, 8)
    assert trial_resources(gpu, {"CPU": 4.0})[1] == 1  # no GPU (yet): one, which waits for it


def test_a_trial_decomposes_on_its_own_cpus(tmp_path):
    """runtime.threads=0 (every core) used to reach the trial's jobs, which re-applied it over the
    trial's cap: several trials at once each decomposed matrices on every core of the node."""
    from spdnas.engine.runtime import setup_runtime
    from spdnas.geometry import spectral

    entry = f"benchmark.datasets=[{{name: toy, data: {{uri: {tmp_path}}}, overrides: [train.epochs=2]}}]"
    try:
        for threads, cpus, expected in ((0, 1, 1), (0, 3.5, 3), (2, 1, 2)):  # a set value is the user's
            spectral.set_eigh_threads(7)
            base = load_config(None, [entry, f"benchmark.cpus_per_trial={cpus}",
                                      f"runtime.threads={threads}"])
            config = trial_experiment(base.to_dict(), "toy")
            assert spectral._eigh_threads == expected  # applied in the trial's process
            assert config.runtime.threads == expected and config.train.epochs == 2
            assert config.data.split_seed == 0 and not config.runtime.progress
            setup_runtime(config.runtime)  # what every job does first: the share stays
            assert spectral._eigh_threads == expected
    finally:
        spectral.set_eigh_threads(1)


def test_resume_check_ignores_settings_an_older_version_did_not_write(tmp_path):
    """benchmark_config.json of an older version lacks data.split_seed (in every dataset entry)
    and benchmark.gpus_per_trial: not a change of settings."""
    config = load_config("configs/benchmark/radar-jv.yaml", [])
    older = config.to_dict()
    for entry in older["benchmark"]["datasets"]:
        del entry["data"]["split_seed"]
    del older["benchmark"]["gpus_per_trial"]
    (tmp_path / "benchmark_config.json").write_text(json.dumps(older))
    root = Folder(str(tmp_path))
    check_same_experiment(config, root, True, "benchmark_config.json", RUN_ONLY, "benchmark")
    seeds = load_config("configs/benchmark/radar-jv.yaml", ["benchmark.seeds=[0,1]", "train.lr=0.5"])
    with pytest.raises(ConfigError, match=r"other settings \(benchmark.seeds, train.lr\)"):
        check_same_experiment(seeds, root, True, "benchmark_config.json", RUN_ONLY, "benchmark")
    datasets = config.to_dict()
    datasets["benchmark"]["datasets"][1]["data"]["uri"] = "elsewhere"
    (tmp_path / "benchmark_config.json").write_text(json.dumps(datasets))
    with pytest.raises(ConfigError, match=r"\(benchmark.datasets.1.data.uri\)"):
        check_same_experiment(config, root, True, "benchmark_config.json", RUN_ONLY, "benchmark")


def test_a_benchmark_recorded_when_data_builder_defaulted_to_radar_synth_resumes(tmp_path):
    """The diff review: a benchmark recorded before data.builder defaulted to none (the top-level
    data section, which a benchmark does not use, and entries without a builder) was refused."""
    config = load_config("configs/benchmark/radar-jv.yaml", [])
    older = config.to_dict()
    older["data"]["builder"] = "radar-synth"
    older["benchmark"]["datasets"][1]["data"]["builder"] = "radar-synth"
    older["benchmark"]["datasets"][1]["data"]["builder_params"] = {"n_samples": 90}
    (tmp_path / "benchmark_config.json").write_text(json.dumps(older))
    check_same_experiment(config, Folder(str(tmp_path)), True, "benchmark_config.json", RUN_ONLY, "benchmark")


def test_a_sweep_and_a_benchmark_do_not_share_a_folder(tmp_path):
    """Both keep Tune's state in tune/: a benchmark restored the sweep's experiment, and its
    --no-resume deleted it."""
    root = Folder(str(tmp_path))
    check_no_other_experiment(root, "benchmark")  # an empty folder
    (tmp_path / "sweep_config.json").write_text("{}")
    check_no_other_experiment(root, "sweep")
    expected = (r"holds a sweep \(sweep_config.json\); a benchmark there would share its Tune state "
                r"\(tune/\): give the benchmark another name")
    with pytest.raises(ConfigError, match=expected):
        check_no_other_experiment(root, "benchmark")
    (tmp_path / "benchmark_config.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"holds a benchmark \(benchmark_config.json\); a sweep there"):
        check_no_other_experiment(root, "sweep")

