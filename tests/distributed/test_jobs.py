"""`ray job submit` path: a local Ray head on 127.0.0.1, a tiny search submitted with
JobSubmissionClient, its outputs read from storage; only that Ray is stopped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import _free_port, stop_process_group
from tests.distributed.test_ray_train import tiny_dataset

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ray_head():
    """``ray start --head --block`` bound to 127.0.0.1; stopped by signalling that process."""
    temp = tempfile.mkdtemp(prefix="rayjob-", dir="/tmp")
    gcs, dashboard = _free_port(), _free_port()
    ray = Path(sys.executable).with_name("ray")
    # like a user with the environment activated: the jobs' `python` is this environment's
    env = {**os.environ, "PATH": f"{ray.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    process = subprocess.Popen(
        [str(ray), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
         "--num-cpus=2", f"--temp-dir={temp}", "--disable-usage-stats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    address = f"http://127.0.0.1:{dashboard}"
    from ray.job_submission import JobSubmissionClient

    client, deadline = None, time.time() + 120
    while client is None:
        try:
            client = JobSubmissionClient(address)
        except Exception:
            if time.time() > deadline or process.poll() is not None:
                process.kill()
                raise
            time.sleep(1)
    try:
        yield client
    finally:
        stop_process_group(process)
        shutil.rmtree(temp, ignore_errors=True)


def test_submitted_search_job_writes_its_outputs(ray_head, tmp_path):
    from spdnas.data import write_dataset

    data = tmp_path / "datasets" / "tiny"
    write_dataset(tiny_dataset(), str(data))
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"name": "submitted", "data": {"uri": "data/tiny", "builder": None},
                                      "model": {"reduced_dims": [3]},
                                      "search": {"epochs": 1, "batch_size": 8}}))
    excludes = yaml.safe_load((REPO / "jobs" / "runtime_env.yaml").read_text())["excludes"]
    storage = tmp_path / "experiments"
    job = ray_head.submit_job(
        entrypoint=f"python -m jobs.search --config {config} --storage {storage} "
                   f"--data {data.parent} runtime.progress=false",
        runtime_env={"working_dir": str(REPO), "excludes": excludes,
                     "env_vars": {"RAY_AUTH_MODE": "disabled"}})
    from ray.job_submission import JobStatus

    deadline = time.time() + 480
    while (status := ray_head.get_job_status(job)) not in {JobStatus.SUCCEEDED, JobStatus.FAILED,
                                                          JobStatus.STOPPED}:
        assert time.time() < deadline, "job did not finish in time"
        time.sleep(2)
    logs = ray_head.get_job_logs(job)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    genotype = json.loads((storage / "submitted" / "search" / "genotype.json").read_text())
    assert genotype["schema_version"] == 1
    assert "genotype:" in logs
