"""The head of cluster/aws.yaml and cluster/local.yaml, started as those files start it (their
`ray start` arguments and environment, the token where their file_mounts put it), refuses
Ray's job API without the cluster's token: on the dashboard and on the node's dashboard
agent, which listens on the node's address whatever ``--dashboard-host`` says."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import _free_port, stop_process_group
from tests.deploy.conftest import AWS_CLUSTER, LOCAL_CLUSTER

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]
PLANTED = "/tmp/spdnas-unauthenticated-job"  # what a job submitted without the token would create


def head_start(path: Path) -> tuple[list[str], dict[str, str]]:
    """The head's `ray start` arguments and the environment the cluster file gives it."""
    config = yaml.safe_load(path.read_text())
    command = next(c for c in config["head_start_ray_commands"] if "ray start" in c)
    env = dict(re.findall(r"\b([A-Z_]+)=(\S+?)(?=[\s;])", command.split("ray start")[0]))
    for option in config.get("docker", {}).get("run_options", []):
        if option.startswith("--env "):
            key, value = option.removeprefix("--env ").split("=", 1)
            env[key] = value
    return shlex.split(command.split("ray start", 1)[1]), env


def request(url: str, method: str = "GET", token: str | None = None) -> int:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps({"entrypoint": f"touch {PLANTED}"}).encode() if method == "POST" else None
    call = urllib.request.Request(url, body, headers, method=method)
    try:
        with urllib.request.urlopen(call, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code


def wait_for(url: str, process: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "ray start exited"
        try:
            request(url)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(url)


@pytest.mark.parametrize("path", [AWS_CLUSTER, LOCAL_CLUSTER], ids=["aws", "local"])
def test_the_clusters_head_refuses_jobs_without_its_token(path):
    args, env = head_start(path)
    assert env.get("RAY_AUTH_MODE") == "token"
    ports = {name: _free_port() for name in ("port", "dashboard-port", "dashboard-agent-listen-port")}
    kept = [a for a in args if not a.startswith(("--autoscaling-config", "--port", "--object-manager-port"))]
    assert "--head" in kept and "--dashboard-host=127.0.0.1" in kept
    home = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))  # short: Ray's socket paths are limited
    token = "spdnas-test-" + os.urandom(16).hex()
    (home / ".ray").mkdir()
    (home / ".ray" / "auth_token").write_text(token)  # where the file_mounts put it
    command = [shutil.which("ray") or str(Path(sys.executable).parent / "ray"), "start", *kept,
               *(f"--{k}={v}" for k, v in ports.items()), "--node-ip-address=127.0.0.1", "--num-cpus=1",
               f"--temp-dir={home / 't'}", "--block"]
    process = subprocess.Popen(command, env={**os.environ, **env, "HOME": str(home)}, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        dashboard = f"http://127.0.0.1:{ports['dashboard-port']}/api/jobs/"
        agent = f"http://127.0.0.1:{ports['dashboard-agent-listen-port']}/api/job_agent/jobs/"
        wait_for(dashboard, process)
        wait_for(agent, process)
        assert request(dashboard) == 401
        assert request(agent, "POST") == 401
        assert request(agent, "POST", token="wrong-" + token) == 403
        assert request(dashboard, token=token) == 200
        assert not Path(PLANTED).exists()
    finally:
        stop_process_group(process)
        shutil.rmtree(home, ignore_errors=True)
