"""Shared fixtures and helpers for the test suite."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest
import torch

torch.set_num_threads(1)

BUCKET = "spdnas-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


def pytest_collection_modifyitems(config, items):
    """Ray tests need the private namespace that scripts/test.sh sets up."""
    if os.environ.get("SPDNAS_PRIVATE_NETNS") == "1":
        return
    skip = pytest.mark.skip(reason="Ray tests run only through scripts/test.sh (private namespace)")
    for item in items:
        if "ray" in item.keywords:
            item.add_marker(skip)


def stop_process_group(process: subprocess.Popen, timeout: float = 60) -> None:
    """Stop a process started with ``start_new_session=True`` and its children: SIGTERM to its
    process group (only that group), SIGKILL if it has not ended after ``timeout`` seconds."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def start_moto_server(**env: str) -> tuple[subprocess.Popen, str]:
    """moto's server in its own process on 127.0.0.1 (free port, extra environment ``env``);
    returns the process and its endpoint once it accepts connections."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **env})
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, f"http://127.0.0.1:{port}"
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.2)


def use_s3_endpoint(env: pytest.MonkeyPatch, endpoint: str) -> None:
    """Point every AWS client (boto3, pyarrow, Ray workers started later) at ``endpoint`` with
    dummy credentials, away from any real AWS configuration."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        env.delenv(name, raising=False)
    env.setenv("AWS_ACCESS_KEY_ID", "testing")
    env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    env.setenv("AWS_REGION", "us-east-1")
    env.setenv("AWS_ENDPOINT_URL", endpoint)
    env.setenv("AWS_CONFIG_FILE", "/nonexistent/spdnas-test-aws-config")
    env.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/spdnas-test-aws-credentials")
    env.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server in its own process on 127.0.0.1 (free port), with dummy credentials in
    the environment.

    Its own process keeps it apart from in-process ``moto.mock_aws`` tests, which reset moto's
    state. The environment is restored at the end.
    """
    server, endpoint = start_moto_server()
    with pytest.MonkeyPatch.context() as env:
        use_s3_endpoint(env, endpoint)
        from spdnas.data import s3

        s3.client().create_bucket(Bucket=BUCKET)
        try:
            yield endpoint
        finally:
            server.terminate()
            server.wait(timeout=30)


@pytest.fixture
def s3_prefix(s3_server) -> str:
    """A fresh ``s3://`` prefix in the test bucket."""
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def ray_session(tmp_path_factory, s3_server):
    """A 2-CPU local Ray instance for one test module (after the S3 environment is set)."""
    import ray
    import ray.data

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             _temp_dir=str(tmp_path_factory.mktemp("ray")))
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield ray
    finally:
        ray.shutdown()
