"""Fixtures for the data-layer tests: toy datasets, a loopback S3 server, a Ray session."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from spdnas.data import DatasetMeta, SPDDataset
from spdnas.data.storage import Folder
from tests.helpers import random_spd


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


def folder_digests(uri: str) -> dict[str, bytes]:
    """Content of every file of a dataset folder (to show nothing was written over)."""
    folder = Folder(uri)
    return {name: folder.read_bytes(name) for name in folder.list_names()}
