"""Ray Data streaming from a local folder and from the loopback S3 server."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from spdnas.data import DatasetValidationError, read_dataset, write_dataset
from spdnas.data.streaming import ray_dataset, torch_batches
from tests.data.conftest import rewrite_file, toy_dataset
from tests.data.test_validation import set_column

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300),
              # Ray's own DataContext reads its deprecated fields when it is shipped to workers
              pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")]


def consume_shards(shards, batch_size=16, dtype=torch.float64):
    """Consume each shard in its own thread (as DDP workers would); returns per-shard batches."""
    results: list[list] = [[] for _ in shards]

    def run(i):
        results[i] = list(torch_batches(shards[i], batch_size=batch_size, dtype=dtype, with_sample_ids=True))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(shards))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not any(thread.is_alive() for thread in threads), "a shard consumer hung"
    return results


@pytest.fixture(scope="module")
def written_dataset(tmp_path_factory):
    """A 3-file dataset (float32 on disk) and its in-memory original."""
    original = toy_dataset(count=90, n=6, dtype=torch.float32)
    folder = tmp_path_factory.mktemp("stream") / "ds"
    write_dataset(original, folder, rows_per_file=30, row_group_size=10)
    return str(folder), original


@pytest.fixture(params=["local", "s3"])
def source_uri(request, written_dataset, ray_session):
    uri, _ = written_dataset
    if request.param == "local":
        return uri
    prefix = request.getfixturevalue("s3_prefix")
    from spdnas.data import s3

    s3.upload(uri, prefix, progress=False)
    return prefix


def test_every_sample_exactly_once_across_two_shards(source_uri, written_dataset):
    _, original = written_dataset
    shards = ray_dataset(source_uri).streaming_split(2, equal=False)
    results = consume_shards(shards)
    ids = [sid for shard in results for _, _, batch_ids in shard for sid in batch_ids]
    assert sorted(ids) == sorted(original.sample_ids.tolist())
    expected = dict(zip(original.sample_ids.tolist(), original.matrices.double(), strict=True))
    labels = dict(zip(original.sample_ids.tolist(), original.labels.tolist(), strict=True))
    for shard in results:
        for matrices, batch_labels, batch_ids in shard:
            assert matrices.shape[1:] == (1, 6, 6) and matrices.dtype == torch.float64
            for matrix, label, sid in zip(matrices, batch_labels.tolist(), batch_ids, strict=True):
                assert torch.equal(matrix[0], expected[sid]) and label == labels[sid]


def test_split_filter_and_equal_shards(source_uri, written_dataset):
    _, original = written_dataset
    train_ids = set(original.subset("train").sample_ids.tolist())
    shards = ray_dataset(source_uri, "train").streaming_split(2, equal=True)
    results = consume_shards(shards, batch_size=8, dtype=torch.float32)
    per_shard = [[sid for _, _, ids in shard for sid in ids] for shard in results]
    assert len(per_shard[0]) == len(per_shard[1])
    seen = per_shard[0] + per_shard[1]
    assert len(seen) == len(set(seen)) and set(seen) <= train_ids
    assert len(seen) >= len(train_ids) - 1
    assert results[0][0][0].dtype == torch.float32


def test_streamed_batches_match_the_in_memory_reader(written_dataset, ray_session):
    uri, _ = written_dataset
    in_memory = read_dataset(uri)
    streamed = list(torch_batches(ray_dataset(uri, "test"), batch_size=7, with_sample_ids=True))
    matrices = torch.cat([m for m, _, _ in streamed])[:, 0]
    ids = [sid for _, _, batch in streamed for sid in batch]
    test = in_memory.subset("test")
    order = [int(np.flatnonzero(test.sample_ids == sid)[0]) for sid in ids]
    assert sorted(ids) == sorted(test.sample_ids.tolist())
    assert torch.equal(matrices, test.matrices[order])
    assert all(len(m) == 7 for m, _, _ in streamed[:-1])


def test_ray_dataset_checks_before_streaming(tmp_path, ray_session):
    write_dataset(toy_dataset(count=12), tmp_path / "ds")
    labels = [0] * 12
    labels[2] = 9
    rewrite_file(tmp_path / "ds", 0, lambda t: set_column(t, "label", labels))
    ray_dataset(str(tmp_path / "ds"))  # footers are fine
    with pytest.raises(DatasetValidationError, match="label"):
        ray_dataset(str(tmp_path / "ds"), validate=True)
    with pytest.raises(ValueError, match="unknown split"):
        ray_dataset(str(tmp_path / "ds"), "training")


def test_collected_rows_keep_the_stored_order(source_uri, written_dataset):
    from spdnas.data import DatasetMeta
    from spdnas.data.storage import Folder
    from spdnas.data.streaming import shard_dataset
    from spdnas.distributed.worker import configure_ray_data

    configure_ray_data()
    meta = DatasetMeta.from_dict(Folder(source_uri).read_manifest()["meta"])
    collected = shard_dataset(ray_dataset(source_uri).materialize(), meta, batch_size=8)
    stored = read_dataset(source_uri)
    assert collected.sample_ids.tolist() == stored.sample_ids.tolist()
    assert torch.equal(collected.matrices, stored.matrices)
