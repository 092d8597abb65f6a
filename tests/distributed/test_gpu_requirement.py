"""GPU work on the embedded Ray of a machine without GPUs, or more workers than its CPUs: it
waited for ever for what nothing could add; now it fails at once, naming the way out. The
embedded Ray starts even where an earlier Ray left its address behind. (Its own module: the
embedded Ray must be the one the command starts, not a test fixture's.)"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest
import torch

from spdnas.benchmark.run import run_benchmark
from spdnas.config import DistributedConfig, load_config
from spdnas.data import write_dataset
from spdnas.engine.runtime import available_cpus
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



def nodes(*resources):
    """``ray.nodes()`` of live nodes with ``resources`` and one dead node of 8 GPUs."""
    dead = {"Alive": False, "Resources": {"GPU": 8}}
    return lambda: [{"Alive": True, "Resources": r} for r in resources] + [dead]


def test_a_strict_placement_no_node_can_meet_is_refused_on_the_embedded_ray(monkeypatch):
    from spdnas.distributed import runner

    monkeypatch.setattr(runner, "_embedded_ray", True)
    monkeypatch.setattr(runner.ray, "nodes", nodes({"CPU": 2.0}))
    with pytest.raises(ValueError, match=r"STRICT_SPREAD needs 2 nodes, one per worker, and 1 can hold one"):
        runner.require_placement("STRICT_SPREAD", 2, {"CPU": 1.0, "GPU": 0.0})
    with pytest.raises(ValueError, match=r"STRICT_PACK needs one node with 3 CPU for the 3 workers"):
        runner.require_placement("STRICT_PACK", 3, {"CPU": 1.0, "GPU": 0.0})
    runner.require_placement("STRICT_PACK", 2, {"CPU": 1.0, "GPU": 0.0})
    runner.require_placement("PACK", 9, {"CPU": 1.0, "GPU": 0.0})  # Ray may use several nodes


def test_a_strict_placement_a_cluster_cannot_meet_now_is_a_warning(monkeypatch, capsys):
    from spdnas.distributed import runner

    monkeypatch.setattr(runner, "_embedded_ray", False)
    monkeypatch.setattr(runner.ray, "nodes", nodes({"CPU": 8.0}, *[{"CPU": 4.0, "GPU": 1.0}] * 4))
    runner.require_placement("STRICT_PACK", 4, {"CPU": 1.0, "GPU": 1.0})  # four 1-GPU nodes: not one
    assert "STRICT_PACK needs one node with 4 CPU, 4 GPU for the 4 workers" in capsys.readouterr().err
    runner.require_placement("STRICT_SPREAD", 4, {"CPU": 1.0, "GPU": 1.0})
    assert capsys.readouterr().err == ""


def test_strict_pack_shares_the_cpus_of_one_node(monkeypatch):
    """The share at which the workers fit spread over nodes (4 each on two 8-CPU nodes) fits no
    one node: a fixed cluster waited for ever."""
    from spdnas.distributed import runner

    monkeypatch.setattr(runner.ray, "nodes", nodes({"CPU": 8.0}, {"CPU": 8.0}))
    monkeypatch.setattr(runner.ray, "cluster_resources", lambda: {"CPU": 16.0})
    spread = DistributedConfig(num_workers=4)
    assert runner.cpus_per_worker(spread) == 4
    assert runner.cpus_per_worker(DistributedConfig(num_workers=4, placement_strategy="STRICT_PACK")) == 2


def test_a_sweeps_strict_placement_the_embedded_ray_cannot_meet_fails_at_once(uri, tmp_path):
    """Inside a trial the Ray is never the embedded one: each trial only warned, and waited."""
    from spdnas.distributed.sweep import run_sweep

    config = load_config(None, [
        "name=sw", f"data.uri={uri}", "data.builder=null", f"runtime.output_dir={tmp_path}",
        "runtime.progress=false", "distributed.num_workers=2", "distributed.cpus_per_worker=0.5",
        "distributed.placement_strategy=STRICT_SPREAD", "sweep.search=false", "sweep.genotype=radar",
        "sweep.space={train.lr: {type: loguniform, low: 0.01, high: 0.3}}"])
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"^distributed.placement_strategy=STRICT_SPREAD needs 2 nodes"):
        run_sweep(config)
    assert time.monotonic() - start < 120


def test_more_workers_than_the_embedded_rays_cpus_fail_at_once(uri, tmp_path):
    cpus = available_cpus()
    config = load_config(None, [f"data.uri={uri}", "data.builder=null", f"runtime.output_dir={tmp_path}",
                                "distributed.backend=ray", f"distributed.num_workers={cpus + 1}",
                                "distributed.cpus_per_worker=1", "runtime.progress=false", "search.epochs=1",
                                f"search.batch_size={cpus + 1}", f"train.batch_size={cpus + 1}"])
    expected = (rf"^the search \({cpus + 1} worker\(s\) of 1 CPU\(s\)\) needs {cpus + 1} CPU\(s\), and this "
                rf"machine's Ray has {cpus}: ask for fewer \(distributed.num_workers")
    start = time.monotonic()
    with pytest.raises(ValueError, match=expected):
        search(config)
    assert time.monotonic() - start < 120


def test_a_sweep_trial_larger_than_the_embedded_ray_fails_at_once(uri, tmp_path):
    """Inside a trial the Ray is never the embedded one, so the run only warned, where nothing
    showed it, and waited for ever."""
    from spdnas.distributed.sweep import run_sweep

    cpus = available_cpus()
    config = load_config(None, [
        "name=sw", f"data.uri={uri}", "data.builder=null", f"runtime.output_dir={tmp_path}",
        "runtime.progress=false", "distributed.num_workers=2", f"distributed.cpus_per_worker={cpus}",
        "sweep.search=false", "sweep.genotype=radar",
        "sweep.space={train.lr: {type: loguniform, low: 0.01, high: 0.3}}"])
    expected = (rf"^each sweep trial \(2 worker\(s\) of {cpus} CPU\(s\), and 0.01 for the trial\) needs "
                rf"{2 * cpus + 0.01:g} CPU\(s\), and this machine's Ray has {cpus}: ask for fewer")
    start = time.monotonic()
    with pytest.raises(ValueError, match=expected):
        run_sweep(config)
    assert time.monotonic() - start < 120


def test_an_embedded_ray_starts_where_an_earlier_ray_left_its_address(monkeypatch):
    """`ray start` leaves ``ray_current_cluster`` in Ray's temp folder; ``ray.init`` without an
    address would join that (gone) cluster and refuse ``num_cpus``."""
    import ray

    from spdnas.distributed.runner import ray_session

    temp = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))  # short: Ray's socket paths are limited
    try:
        (temp / "ray").mkdir()
        (temp / "ray" / "ray_current_cluster").write_text("127.0.0.1:6379")
        monkeypatch.setenv("RAY_TMPDIR", str(temp))
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        with ray_session(DistributedConfig()):
            assert ray.cluster_resources()["CPU"] == available_cpus()
    finally:
        shutil.rmtree(temp, ignore_errors=True)
