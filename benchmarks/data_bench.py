"""Read throughput of SPD datasets: local Parquet vs S3, in-memory reader vs Ray Data streaming.

Usage::

    python benchmarks/data_bench.py [--repeats 3] [--ray] [--s3-uri s3://bucket/prefix]

Two datasets are written once: the default synthetic RADAR (3000 × 20×20) and an HDM05-sized
set (2083 × 93×93 random SPD matrices, 117 classes), both float64. Each is read

- by ``read_dataset`` (all checks on, and with ``validate=False``), and
- with ``--ray``, through ``ray_dataset`` + ``torch_batches`` (batch 30, one consumer), both
  streaming each pass from storage and from a copy materialized once in Ray's object store,

from the local folder and from S3. Without ``--s3-uri`` the script starts moto's S3 server as a
subprocess on 127.0.0.1 (loopback only, dummy credentials set for this process); with it, endpoint and
credentials come from the usual AWS environment. Ray listens on all interfaces, so run
``--ray`` inside a private network namespace, e.g. as root::

    unshare --net --pid --fork --mount-proc bash -c \\
        'ip link set lo up && RAY_AUTH_MODE=disabled python benchmarks/data_bench.py --ray'

Printed per row: median seconds over the repeats, rows/s, MB/s of Parquet bytes read, and the
time to the first batch (streaming only; includes planning the read and the first file). For
streaming, a second row gives the throughput once the first batch has arrived (its seconds are
rows / that rate).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import torch

from spdnas.data import DatasetMeta, SPDDataset, make_dataset, read_dataset, write_dataset


def hdm05_sized(count: int = 2083, n: int = 93, classes: int = 117, seed: int = 0) -> SPDDataset:
    """Random SPD matrices shaped like HDM05 (the originals are not available offline)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(count, n, 2 * n, dtype=torch.float64, generator=g)
    matrices = a @ a.mT / (2 * n) + 1e-3 * torch.eye(n, dtype=torch.float64)
    matrices = 0.5 * (matrices + matrices.mT)
    labels = np.arange(count) % classes
    names = tuple(f"class-{k}" for k in range(classes))
    meta = DatasetMeta(name="hdm05-sized-random", n=n, class_names=names,
                       source="benchmarks/data_bench.py", licence="generated")
    dataset = SPDDataset(matrices=matrices, labels=torch.from_numpy(labels), splits=np.full(count, "train"),
                         sample_ids=np.array([f"m{i:05d}" for i in range(count)]), meta=meta)
    return dataset.with_stratified_split({"train": 0.5, "val": 0.25, "test": 0.25}, seed=seed)


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_loopback_s3() -> tuple[subprocess.Popen, str]:
    """moto's S3 server as a separate process on 127.0.0.1 (so it does not share this process's
    GIL), with a fresh bucket; dummy credentials are set for this process only."""
    port = free_loopback_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ.update(AWS_ACCESS_KEY_ID="loopback-dummy", AWS_SECRET_ACCESS_KEY="loopback-dummy",
                      AWS_REGION="us-east-1", AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
                      AWS_EC2_METADATA_DISABLED="true")
    from spdnas.data import s3

    deadline = time.monotonic() + 30
    while True:
        try:
            s3.client().create_bucket(Bucket="spdnas-bench")
            return server, "s3://spdnas-bench"
        except Exception:
            if time.monotonic() > deadline or server.poll() is not None:
                server.terminate()
                raise
            time.sleep(0.2)


def timed(fn, repeats: int) -> tuple[float, float | None]:
    """Median wall time of ``fn()`` and median of the first-batch times it returns (or None)."""
    totals, firsts = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        first = fn()
        totals.append(time.perf_counter() - start)
        if first is not None:
            firsts.append(first)
    return statistics.median(totals), statistics.median(firsts) if firsts else None


def stream_steady(uri: str, expected_rows: int, repeats: int) -> float:
    """Median rows/s after the first batch (the pipeline's throughput once it is running)."""
    from spdnas.data.streaming import ray_dataset, torch_batches

    rates = []
    for _ in range(repeats):
        rows, start = 0, None
        for _, labels in torch_batches(ray_dataset(uri), batch_size=30):
            if start is None:
                start, first_rows = time.perf_counter(), len(labels)
            rows += len(labels)
        if rows != expected_rows:
            raise RuntimeError(f"streamed {rows} rows, expected {expected_rows}")
        rates.append((rows - first_rows) / (time.perf_counter() - start))
    return statistics.median(rates)


def read_once(uri: str, validate: bool) -> None:
    """Read the whole dataset into memory (no first-batch time: it arrives all at once)."""
    read_dataset(uri, validate=validate)


def stream_once(source, expected_rows: int) -> float:
    """Iterate a dataset (URI, or an already built Ray dataset) through Ray Data and torch_batches;
    returns the time to the first batch."""
    from spdnas.data.streaming import ray_dataset, torch_batches

    start = time.perf_counter()
    first, rows = None, 0
    dataset = ray_dataset(source) if isinstance(source, str) else source
    for matrices, labels in torch_batches(dataset, batch_size=30):
        if first is None:
            first = time.perf_counter() - start
        rows += len(labels)
        assert matrices.shape[1] == 1
    if rows != expected_rows:
        raise RuntimeError(f"streamed {rows} rows, expected {expected_rows}")
    return first


def report(label: str, seconds: float, rows: int, nbytes: int, first: float | None) -> None:
    first_text = f"{1000 * first:8.0f} ms" if first is not None else "       —   "
    print(f"{label:<44} {seconds:8.3f} s {rows / seconds:10.0f} rows/s {nbytes / seconds / 1e6:8.1f} MB/s "
          f"{first_text}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ray", action="store_true", help="also measure Ray Data streaming")
    parser.add_argument("--s3-uri", help="use this S3 prefix instead of a loopback moto server")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch threads: {torch.get_num_threads()}, repeats: {args.repeats}, CPUs: {os.cpu_count()}")

    server, s3_base = (None, args.s3_uri.rstrip("/")) if args.s3_uri else start_loopback_s3()
    workdir = Path(tempfile.mkdtemp(prefix="spdnas-bench-"))
    datasets = {"radar 3000x20x20": lambda: make_dataset("radar-synth", None),
                "hdm05-sized 2083x93x93": hdm05_sized}
    if args.ray:
        import ray
        import ray.data

        from spdnas.data.streaming import ray_dataset

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 _temp_dir=str(workdir / "ray"))
        ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        for name, build in datasets.items():
            dataset = build()
            local = str(workdir / name.split()[0])
            manifest = write_dataset(dataset, local)
            remote = f"{s3_base}/{uuid.uuid4().hex[:8]}-{name.split()[0]}"
            start = time.perf_counter()
            write_dataset(dataset, remote)
            upload = time.perf_counter() - start
            rows, nbytes = manifest["num_rows"], sum(f["bytes"] for f in manifest["files"])
            print(f"\n{name}: {rows} rows, {len(manifest['files'])} files, {nbytes / 1e6:.1f} MB "
                  f"(write to S3 {upload:.2f} s)")
            for where, uri in (("local", local), ("s3", remote)):
                for validate in (True, False):
                    seconds, _ = timed(lambda u=uri, v=validate: read_once(u, v), args.repeats)
                    report(f"read_dataset {where} validate={validate}", seconds, rows, nbytes, None)
                if args.ray:
                    seconds, first = timed(lambda u=uri, r=rows: stream_once(u, r), args.repeats)
                    report(f"ray stream {where} (batch 30), whole pass", seconds, rows, nbytes, first)
                    rate = stream_steady(uri, rows, args.repeats)
                    report(f"ray stream {where}, after the first batch", rows / rate, rows, nbytes, None)
                    materialized = ray_dataset(uri).materialize()
                    seconds, first = timed(lambda m=materialized, r=rows: stream_once(m, r), args.repeats)
                    report(f"ray {where} materialized once, per epoch", seconds, rows, nbytes, first)
    finally:
        if args.ray:
            import ray

            ray.shutdown()
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
