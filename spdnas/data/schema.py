"""The on-disk schema of an SPD dataset (version 1) and the one matrix encoder/decoder.

A dataset is a folder (local path or ``s3://bucket/prefix``) holding Parquet files and a
manifest ``dataset.json``. Every Parquet file has these columns:

==============  ==================================================  ==========================
column          type                                                meaning
==============  ==================================================  ==========================
``sample_id``   string, not null, unique across the dataset         stable sample identifier
``label``       int64, in ``[0, len(class_names))``                 class index
``split``       string, one of ``train``, ``val``, ``test``         the sample's split
``group``       string, nullable                                    subject/group id (optional)
``matrix_triu`` fixed_size_list<float32|float64>[n(n+1)/2]          upper triangle, row-major
==============  ==================================================  ==========================

``matrix_triu`` holds ``X[i, j]`` for ``i ≤ j`` in the order of ``numpy.triu_indices(n)``;
the lower triangle is its mirror, so symmetric matrices are restored bit for bit. A file may
instead carry ``matrix_full`` (``n*n`` values, row-major) for matrices whose lower triangle
must be kept as given; readers then check symmetry. Each file's key-value metadata repeats
the dataset metadata (``spdnas.schema_version``, ``spdnas.meta``), so one file describes
itself; the manifest lists the files with row counts and SHA-256 digests.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SCHEMA_VERSION = 1
FORMAT_NAME = "spdnas-spd-parquet"
MANIFEST_NAME = "dataset.json"
SPLITS = ("train", "val", "test")
ENCODINGS = ("triu", "full")
MATRIX_COLUMNS = {"triu": "matrix_triu", "full": "matrix_full"}
STORAGE_DTYPES = {"float32": pa.float32(), "float64": pa.float64()}
META_KEY = b"spdnas.meta"
VERSION_KEY = b"spdnas.schema_version"


def encoded_width(n: int, encoding: str) -> int:
    """Number of stored values per ``n × n`` matrix under ``encoding``."""
    return n * (n + 1) // 2 if encoding == "triu" else n * n


def matrix_size(width: int, encoding: str) -> int:
    """Matrix size ``n`` from the stored width; ``ValueError`` if the width fits no ``n``."""
    if encoding == "triu":
        n = (math.isqrt(8 * width + 1) - 1) // 2
    else:
        n = math.isqrt(width)
    if width < 1 or encoded_width(n, encoding) != width:
        raise ValueError(f"{width} values do not form a {encoding}-encoded square matrix")
    return n


def matrix_encoding(schema: pa.Schema) -> str:
    """Which matrix column ``schema`` carries (``"triu"`` or ``"full"``).

    Raises
    ------
    ValueError
        If the schema carries neither or both matrix columns.
    """
    present = [enc for enc, column in MATRIX_COLUMNS.items() if column in schema.names]
    if len(present) != 1:
        raise ValueError(f"expected exactly one of the columns {sorted(MATRIX_COLUMNS.values())}, "
                         f"found {present or 'none'} among {schema.names}")
    return present[0]


def encode_matrices(matrices: np.ndarray, encoding: str = "triu") -> np.ndarray:
    """Flatten matrices for storage.

    Parameters
    ----------
    matrices : ndarray, shape (B, n, n)
    encoding : {"triu", "full"}

    Returns
    -------
    ndarray, shape (B, n(n+1)/2) for ``"triu"`` or (B, n*n) for ``"full"``, same dtype.
    """
    b, n = matrices.shape[0], matrices.shape[-1]
    if encoding == "full":
        return np.ascontiguousarray(matrices.reshape(b, n * n))
    rows, cols = np.triu_indices(n)
    return np.ascontiguousarray(matrices[:, rows, cols])


def decode_matrices(values: np.ndarray, encoding: str) -> np.ndarray:
    """Restore matrices from their stored values (inverse of :func:`encode_matrices`).

    This is the only decoder: the in-memory reader and the streaming path both call it.

    Parameters
    ----------
    values : ndarray, shape (B, m)
        ``m = n(n+1)/2`` for ``"triu"`` (upper triangle, row-major), ``m = n*n`` for ``"full"``.
    encoding : {"triu", "full"}

    Returns
    -------
    ndarray, shape (B, n, n), same dtype, a new writable array; exactly symmetric for ``"triu"``.
    """
    b, width = values.shape
    n = matrix_size(width, encoding)
    if encoding == "full":
        return values.reshape(b, n, n).copy()
    out = np.empty((b, n, n), dtype=values.dtype)
    rows, cols = np.triu_indices(n)
    out[:, rows, cols] = values
    out[:, cols, rows] = values
    return out


def list_values(column: pa.Array | pa.ChunkedArray, width: int) -> np.ndarray:
    """Values of a list column with ``width`` entries per row, as shape ``(rows, width)``.

    The caller has checked that no row is null and every row has ``width`` entries.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(len(column), width)


def batch_matrices(batch: pa.Table | pa.RecordBatch) -> np.ndarray:
    """Decoded matrices of an Arrow batch in this schema, shape ``(B, n, n)``."""
    encoding = matrix_encoding(batch.schema)
    column = batch.column(MATRIX_COLUMNS[encoding])
    list_type = column.type
    width = list_type.list_size if pa.types.is_fixed_size_list(list_type) else None
    if width is None:
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        width = int(lengths[0]) if len(lengths) else 0
    return decode_matrices(list_values(column, width), encoding)


def arrow_schema(n: int, dtype: str, encoding: str, file_metadata: dict[bytes, bytes]) -> pa.Schema:
    """Arrow schema of one dataset file.

    Parameters
    ----------
    n : int
        Matrix size.
    dtype : {"float32", "float64"}
        Storage dtype of the matrix values.
    encoding : {"triu", "full"}
    file_metadata : dict
        Key-value metadata attached to the schema (dataset metadata, schema version).
    """
    value_type = STORAGE_DTYPES[dtype]
    return pa.schema(
        [
            pa.field("sample_id", pa.string(), nullable=False),
            pa.field("label", pa.int64(), nullable=False),
            pa.field("split", pa.string(), nullable=False),
            pa.field("group", pa.string(), nullable=True),
            pa.field(MATRIX_COLUMNS[encoding], pa.list_(value_type, encoded_width(n, encoding)),
                     nullable=False),
        ],
        metadata=file_metadata,
    )


def file_metadata(meta_dict: dict) -> dict[bytes, bytes]:
    """Parquet key-value metadata for a file of the dataset described by ``meta_dict``."""
    return {VERSION_KEY: str(SCHEMA_VERSION).encode(), META_KEY: json.dumps(meta_dict).encode()}


def check_file_paths(manifest: dict, where: str) -> None:
    """Refuse a manifest whose ``files`` name a path outside the dataset folder (absolute, or
    with a ``..`` part), which readers, ``upload`` and ``download`` would follow.

    Raises
    ------
    ValueError
        Naming ``where`` (the manifest) and the path.
    """
    for entry in manifest.get("files", []):
        path = entry.get("path") if isinstance(entry, dict) else None
        if not isinstance(path, str) or not path or path.startswith("/") or ".." in path.split("/"):
            raise ValueError(f"{where}: file path {path!r} is not a name inside the dataset folder")
