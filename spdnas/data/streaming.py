"""Stream a dataset to training workers through Ray Data (local folder or ``s3://``).

The driver builds a :class:`ray.data.Dataset` with :func:`ray_dataset` and hands it to Ray Train
(``TorchTrainer(datasets={"train": ds})``) or splits it itself (``ds.streaming_split(k)``);
each worker turns its shard into torch batches with :func:`torch_batches`. Matrices are decoded
by :func:`spdnas.data.schema.decode_matrices`, the same function the in-memory reader uses.

Row checks cost a Cholesky per matrix, so they are not repeated per batch: pass
``validate=True`` to :func:`ray_dataset` (it checks every file on the driver before streaming)
or run ``spdnas data validate URI`` once after writing. Without it, the manifest, the schema and
the matrix size of every file are still checked from the Parquet footers.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow.parquet as pq
import torch

from spdnas.data.dataset import DatasetMeta, SPDDataset
from spdnas.data.parquet import validate_dataset
from spdnas.data.schema import SPLITS, batch_matrices
from spdnas.data.storage import Folder
from spdnas.data.validation import DatasetValidationError, check_schema


def _check_footers(folder: Folder, manifest: dict, meta: DatasetMeta) -> list[str]:
    """Paths of the dataset's files after checking each footer's schema and row count."""
    paths = []
    for entry in manifest["files"]:
        path = folder.path(entry["path"])
        with folder.fs.open_input_file(path) as handle:
            footer = pq.ParquetFile(handle).metadata
            check_schema(footer.schema.to_arrow_schema(), meta.n, file=folder.display(entry["path"]))
            if footer.num_rows != entry["rows"]:
                raise DatasetValidationError("schema", f"{footer.num_rows} rows, manifest says "
                                             f"{entry['rows']}", file=folder.display(entry["path"]))
        paths.append(path)
    return paths


def ray_dataset(uri: str, split: str | None = None, *, validate: bool = False,
                override_num_blocks: int | None = None, **read_args):
    """A Ray Data dataset over the Parquet files of a dataset.

    Parameters
    ----------
    uri : str
        Local folder or ``s3://bucket/prefix`` (S3 through ``pyarrow.fs.S3FileSystem``, see
        :func:`spdnas.data.s3.pyarrow_filesystem`).
    split : {"train", "val", "test"}, optional
        Keep only this split (a predicate expression Ray Data can push down to the Parquet
        reader; rows are stored grouped by split, so row-group statistics let it skip the rest).
    validate : bool
        Run every row check on the driver first (:func:`spdnas.data.parquet.validate_dataset`).
    override_num_blocks : int, optional
        Passed to :func:`ray.data.read_parquet`.
    **read_args
        Further keyword arguments of :func:`ray.data.read_parquet`.

    Returns
    -------
    ray.data.Dataset
        Rows with columns ``sample_id``, ``label``, ``split``, ``group`` and the matrix column.
    """
    import ray.data
    from ray.data.expressions import col

    if split is not None and split not in SPLITS:
        raise ValueError(f"ray_dataset: unknown split {split!r}; expected one of {SPLITS}")
    folder = Folder(uri)
    manifest = folder.read_manifest()
    meta = DatasetMeta.from_dict(manifest["meta"])
    if validate:
        validate_dataset(uri)
    paths = _check_footers(folder, manifest, meta)
    dataset = ray.data.read_parquet(paths, filesystem=folder.fs, override_num_blocks=override_num_blocks,
                                    **read_args)
    if split is not None:
        dataset = dataset.filter(expr=col("split") == split)
    return dataset


def torch_batches(shard, *, batch_size: int, dtype: torch.dtype = torch.float64,
                  device: torch.device | str | None = None, drop_last: bool = False,
                  local_shuffle_buffer_size: int | None = None, local_shuffle_seed: int | None = None,
                  prefetch_batches: int = 1, with_sample_ids: bool = False) -> Iterator[tuple]:
    """Iterate a Ray Data shard as torch batches.

    Parameters
    ----------
    shard : ray.data.DataIterator or ray.data.Dataset
        E.g. ``ray.train.get_dataset_shard("train")`` or one of ``ds.streaming_split(k)``.
    batch_size : int
    dtype : torch.dtype
        dtype of the matrices (float64 by default).
    device : torch.device or str, optional
        Move batches there (e.g. ``"cuda"``).
    drop_last, local_shuffle_buffer_size, local_shuffle_seed, prefetch_batches
        Passed to ``iter_batches``.
    with_sample_ids : bool
        Also yield the sample ids of the batch.

    Yields
    ------
    matrices : Tensor, shape (B, 1, n, n)
    labels : LongTensor, shape (B,)
    sample_ids : list of str, length B (only with ``with_sample_ids``)
    """
    batches = shard.iter_batches(batch_size=batch_size, batch_format="pyarrow", drop_last=drop_last,
                                 local_shuffle_buffer_size=local_shuffle_buffer_size,
                                 local_shuffle_seed=local_shuffle_seed, prefetch_batches=prefetch_batches)
    for batch in batches:
        matrices = torch.from_numpy(batch_matrices(batch)).to(dtype=dtype).unsqueeze(1)
        labels = torch.tensor(batch.column("label").to_numpy(), dtype=torch.long)
        if device is not None:
            matrices, labels = matrices.to(device), labels.to(device)
        if with_sample_ids:
            yield matrices, labels, batch.column("sample_id").to_pylist()
        else:
            yield matrices, labels


def shard_dataset(shards, meta: DatasetMeta, *, dtype: torch.dtype = torch.float64,
                  batch_size: int = 4096) -> SPDDataset:
    """Collect Ray Data shards into one in-memory :class:`SPDDataset` (rows in stream order).

    For data-parallel workers that hold their data in memory: read once through Ray Data
    (local or S3), then iterate epochs locally.

    Parameters
    ----------
    shards : ray.data.DataIterator or ray.data.Dataset, or a list of them
        E.g. one shard per split, concatenated in the order given.
    meta : DatasetMeta
        The dataset's metadata (from its manifest).
    dtype : torch.dtype
    batch_size : int
        Rows per Arrow batch while collecting.
    """
    matrices, labels, splits, ids, groups = [], [], [], [], []
    shards = shards if isinstance(shards, list | tuple) else [shards]
    batches = (batch for shard in shards
               for batch in shard.iter_batches(batch_size=batch_size, batch_format="pyarrow",
                                               prefetch_batches=1))
    for batch in batches:
        matrices.append(torch.from_numpy(batch_matrices(batch)).to(dtype))
        labels.append(np.array(batch.column("label"), dtype=np.int64))
        splits.append(np.array(batch.column("split").to_pylist(), dtype=str))
        ids.append(np.array(batch.column("sample_id").to_pylist(), dtype=str))
        groups.append(np.array(batch.column("group").to_pylist(), dtype=object))
    if not matrices:
        raise ValueError(f"shard_dataset: the shards of dataset {meta.name!r} hold no rows")
    group = np.concatenate(groups)
    return SPDDataset(matrices=torch.cat(matrices), labels=torch.from_numpy(np.concatenate(labels)),
                      splits=np.concatenate(splits), sample_ids=np.concatenate(ids), meta=meta,
                      groups=None if all(g is None for g in group) else group)
