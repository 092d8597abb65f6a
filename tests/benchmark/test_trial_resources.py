"""What a benchmark trial asks Ray for (no Ray started)."""

from __future__ import annotations

from spdnas.benchmark.run import trial_resources
from spdnas.config import load_config


def test_trials_ask_for_gpus_only_on_cuda():
    cluster = {"CPU": 16.0, "GPU": 2.0}
    cpu = load_config(None, ["benchmark.cpus_per_trial=2"])
    assert trial_resources(cpu, cluster) == ({"CPU": 2.0}, 8)
    gpu = load_config(None, ["benchmark.cpus_per_trial=2", "runtime.device=cuda:1"])
    assert trial_resources(gpu, cluster) == ({"CPU": 2.0, "GPU": 1.0}, 2)  # two GPUs: two at a time
    shared = load_config(None, ["runtime.device=cuda", "benchmark.gpus_per_trial=0.25"])
    assert trial_resources(shared, cluster) == ({"CPU": 1.0, "GPU": 0.25}, 8)
    assert trial_resources(gpu, {"CPU": 4.0})[1] == 1  # no GPU (yet): one, which waits for it
