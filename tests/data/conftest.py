"""Fixtures for the data-layer tests: toy datasets, a loopback S3 server, a Ray session."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from spdnas.data import DatasetMeta, SPDDataset
from spdnas.data.storage import Folder
from tests.helpers import random_spd

BUCKET = "spdnas-test"


def toy_dataset(count: int = 24, n: int = 5, classes: int = 3, dtype=torch.float64, seed: int = 0,
                groups: bool = False) -> SPDDataset:
    """Random SPD dataset with balanced labels and a 50/25/25 split."""
    g = torch.Generator().manual_seed(seed)
    matrices = random_spd(count, n=n, cond=50.0, generator=g).to(dtype)
    labels = np.arange(count) % classes
    splits = np.array(["train", "train", "val", "test"] * (count // 4 + 1))[:count]
    meta = DatasetMeta(name="toy", n=n, class_names=tuple(f"c{k}" for k in range(classes)),
                       source="tests", licence="none", provenance={"seed": seed})
    return SPDDataset(matrices=matrices, labels=torch.from_numpy(labels), splits=splits,
                      sample_ids=np.array([f"s{i:03d}" for i in range(count)]), meta=meta,
                      groups=np.array([f"subject-{i % 4}" for i in range(count)], dtype=object) if groups
                      else None)


def rewrite_file(folder: Path, index: int, change) -> str:
    """Replace file ``index`` of a local dataset by ``change(table)``, keeping the manifest consistent.

    The manifest's digest and row count are updated so that only the intended defect remains.
    Returns the file name.
    """
    import hashlib

    manifest_path = folder / "dataset.json"
    manifest = json.loads(manifest_path.read_text())
    entry = manifest["files"][index]
    path = folder / entry["path"]
    table = change(pq.read_table(path))
    pq.write_table(table, path)
    data = path.read_bytes()
    entry.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data), rows=table.num_rows)
    manifest_path.write_text(json.dumps(manifest))
    return entry["path"]


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1 (free port), with dummy credentials in the environment.

    The environment points every AWS client (boto3, pyarrow, Ray workers started later) at the
    loopback server and away from any real AWS configuration; it is restored at the end.
    """
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
            env.delenv(name, raising=False)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_REGION", "us-east-1")
        env.setenv("AWS_ENDPOINT_URL", endpoint)
        env.setenv("AWS_CONFIG_FILE", "/nonexistent/spdnas-test-aws-config")
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/spdnas-test-aws-credentials")
        env.setenv("AWS_EC2_METADATA_DISABLED", "true")
        from spdnas.data import s3

        s3.client().create_bucket(Bucket=BUCKET)
        try:
            yield endpoint
        finally:
            server.stop()


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


def folder_digests(uri: str) -> dict[str, bytes]:
    """Content of every file of a dataset folder (to show nothing was written over)."""
    folder = Folder(uri)
    return {name: folder.read_bytes(name) for name in folder.list_names()}
