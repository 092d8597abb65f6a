"""GPU work on the embedded Ray of a machine without GPUs: it waited for ever for a GPU that
nothing could add; now it fails at once, naming the way out. (Its own module: the embedded Ray
must be the one the command starts, not a test fixture's.)"""

from __future__ import annotations

import time

import pytest
import torch

from spdnas.benchmark.run import run_benchmark
from spdnas.config import load_config
from spdnas.data import write_dataset
from spdnas.pipeline import search
from tests.helpers import toy_dataset

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]
without_gpu = pytest.mark.skipif(torch.cuda.is_available(),
                                 reason="this machine has a GPU: the embedded Ray has one to give")


@pytest.fixture
def uri(tmp_path) -> str:
    uri = str(tmp_path / "tiny")
    write_dataset(toy_dataset(32, seed=5, name="tiny"), uri)
    return uri


@without_gpu
def test_a_gpu_search_on_an_embedded_ray_without_gpus_fails_at_once(uri, tmp_path):
    config = load_config(None, [f"data.uri={uri}", "data.builder=null", f"runtime.output_dir={tmp_path}",
                                "distributed.backend=ray", "distributed.use_gpu=true", "runtime.device=cuda",
                                "runtime.progress=false", "search.epochs=1"])
    start = time.monotonic()
    expected = (r"^the search \(distributed.use_gpu=true, one GPU per worker\) needs 1 GPU\(s\), and this "
                r"machine's Ray has 0: run on runtime.device=cpu")
    with pytest.raises(ValueError, match=expected):
        search(config)
    assert time.monotonic() - start < 120


@without_gpu
def test_a_cuda_benchmark_on_an_embedded_ray_without_gpus_fails_at_once(uri, tmp_path):
    config = load_config(None, [
        "name=gpu", f"runtime.output_dir={tmp_path}", "runtime.progress=false", "runtime.device=cuda",
        "benchmark.methods=[mdm]", "benchmark.seeds=[0]", "benchmark.cpus_per_trial=1",
        f"benchmark.datasets=[{{name: tiny, data: {{uri: {uri}, builder: null}}}}]"])
    with pytest.raises(ValueError, match=r"^each benchmark trial \(runtime.device=cuda\) needs 1 GPU\(s\)"):
        run_benchmark(config)


@pytest.mark.parametrize(("have", "way"), [(0.0, "run on runtime.device=cpu"),
                                           (1.0, r"ask for fewer \(distributed.num_workers\) or run on")])
def test_the_message_names_the_way_out(monkeypatch, have, way):
    from spdnas.distributed import runner

    monkeypatch.setattr(runner, "_embedded_ray", True)
    monkeypatch.setattr(runner.ray, "cluster_resources", lambda: {"GPU": have})
    with pytest.raises(ValueError, match=f"needs 2 GPU\\(s\\), and this machine's Ray has {have:g}: {way}"):
        runner.require_gpus(2, "the search", "distributed.num_workers")

