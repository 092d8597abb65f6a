"""Write, read and validate SPD datasets stored as Parquet (local folder or ``s3://``).

Layout of a dataset folder::

    dataset.json                 manifest: format, schema version, metadata, files, counts
    g0-part-00000.parquet        rows grouped by split (train, val, test), row groups sized
    g0-part-00001.parquet        for streaming; see :mod:`spdnas.data.schema` for the columns

The manifest is written last and names the files of the dataset, so an interrupted or
concurrent write never yields a half dataset. Overwriting writes a new generation of files
(``g1-...``), then the manifest, then deletes the files of the previous generation.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import Tensor

from spdnas.data.dataset import DatasetMeta, SampleIndex, SPDDataset, normalise_groups
from spdnas.data.schema import (
    FORMAT_NAME,
    MANIFEST_NAME,
    MATRIX_COLUMNS,
    META_KEY,
    SCHEMA_VERSION,
    SPLITS,
    VERSION_KEY,
    arrow_schema,
    decode_matrices,
    encode_matrices,
    encoded_width,
    file_metadata,
    list_values,
)
from spdnas.data.storage import Folder
from spdnas.data.validation import (
    DEFAULT_REPAIR_LIMIT,
    DatasetValidationError,
    check_finite_symmetric,
    check_ids,
    check_labels,
    check_matrices,
    check_matrix_column,
    check_positive_definite,
    check_schema,
    check_splits,
    default_pd_rtol,
)
from spdnas.progress import Progress

ROW_GROUP_BYTES = 1 * 2**20
FILE_BYTES = 4 * 2**20
PREFETCH_FILES = 4


@dataclass
class FileRows:
    """The checked rows of one dataset file.

    Attributes
    ----------
    name : str
        File name inside the dataset folder.
    matrices : Tensor, shape (B, n, n), float64
    labels, splits, sample_ids, groups : ndarray, shape (B,)
    repaired : int
        Rows whose matrix was repaired.
    """

    name: str
    matrices: Tensor
    labels: np.ndarray
    splits: np.ndarray
    sample_ids: np.ndarray
    groups: np.ndarray
    repaired: int


def default_sizes(num_rows: int, n: int, itemsize: int, encoding: str) -> tuple[int, int]:
    """(row_group_size, rows_per_file) giving ~1 MiB row groups and files of at most ~4 MiB.

    Ray Data reads one file per task and block, so several files per dataset let it read in
    parallel and hand blocks to several workers; the files are made equal in size.
    """
    row_bytes = encoded_width(n, encoding) * itemsize + 64
    row_group = int(np.clip(ROW_GROUP_BYTES // row_bytes, 16, 65536))
    target = max(row_group, FILE_BYTES // row_bytes)
    num_files = max(1, -(-num_rows // target))
    return row_group, max(1, -(-num_rows // num_files))


def _check_in_memory(dataset: SPDDataset, encoding: str) -> None:
    """Run the read-side checks on an in-memory dataset before anything is written: symmetry on
    the matrices as given, positive definiteness on the matrices as readers will get them (the
    ``triu`` encoding keeps the upper triangle and mirrors it; a nearly singular matrix with an
    asymmetry within the tolerance could pass as given and fail as read)."""
    where = f"<in-memory dataset {dataset.meta.name!r}>"
    ids = dataset.sample_ids
    check_ids(ids, np.zeros(len(ids), dtype=bool), file=where)
    check_labels(dataset.labels.numpy(), dataset.num_classes, ids, file=where)
    check_splits(dataset.splits, ids, file=where)
    given = dataset.matrices.detach().cpu().numpy()
    check_finite_symmetric(given, ids, file=where, check_symmetry=True)
    stored = decode_matrices(encode_matrices(given, encoding), encoding)
    check_positive_definite(check_finite_symmetric(stored, ids, file=where, check_symmetry=False), ids,
                            file=where, pd_rtol=default_pd_rtol(dataset.n, dataset.matrices.dtype))


def _file_bytes(dataset: SPDDataset, rows: np.ndarray, values: np.ndarray, schema: pa.Schema,
                row_group_size: int) -> bytes:
    """One Parquet file holding ``rows`` of ``dataset``, as bytes; ``values`` are their matrices
    encoded (:func:`~spdnas.data.schema.encode_matrices`)."""
    width = values.shape[1]
    groups = [None] * len(rows) if dataset.groups is None else [
        None if g is None else str(g) for g in dataset.groups[rows]]
    table = pa.Table.from_arrays(
        [pa.array(dataset.sample_ids[rows].tolist(), pa.string()),
         pa.array(dataset.labels.numpy()[rows], pa.int64()),
         pa.array(dataset.splits[rows].tolist(), pa.string()),
         pa.array(groups, pa.string()),
         pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), width)],
        schema=schema)
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=row_group_size, use_dictionary=["split", "group"],
                   write_statistics=["split", "label"])
    return sink.getvalue()


class _ContentHash:
    """SHA-256 of a dataset's rows as data: ids, labels, splits, groups, class names and the
    matrices as readers decode them (stored dtype; with ``triu`` encoding, the upper triangle
    mirrored) — not the Parquet bytes, whose metadata names the spdnas and pyarrow versions, and
    not the file sizes. One hash per column, fed row chunk by row chunk, so the digest does not
    depend on how rows are cut into files."""

    COLUMNS = ("sample_id", "label", "split", "group", "matrix")

    def __init__(self) -> None:
        self.columns = {name: hashlib.sha256() for name in self.COLUMNS}

    def update(self, dataset: SPDDataset, rows: np.ndarray, values: np.ndarray, encoding: str) -> None:
        """Add ``rows`` (indices into ``dataset``, in stored order) whose matrices were written as
        ``values`` with ``encoding``."""
        groups = [None] * len(rows) if dataset.groups is None else dataset.groups[rows]
        for name, texts in (("sample_id", dataset.sample_ids[rows]), ("split", dataset.splits[rows]),
                            ("group", groups)):
            for text in texts:
                data = b"\xff" if text is None else str(text).encode()  # 0xff never occurs in UTF-8
                self.columns[name].update(len(data).to_bytes(8, "little") + data)
        self.columns["label"].update(dataset.labels.numpy()[rows].astype("<i8").tobytes())
        matrices = decode_matrices(values, encoding)
        little_endian = matrices.dtype.newbyteorder("<")
        self.columns["matrix"].update(np.ascontiguousarray(matrices, little_endian).tobytes())

    def hexdigest(self, dataset: SPDDataset) -> str:
        """The digest of everything added, with the dataset's matrix size, dtype and class names."""
        header = {"n": dataset.n, "dtype": str(dataset.matrices.dtype),
                  "class_names": list(dataset.meta.class_names),
                  "columns": {name: h.hexdigest() for name, h in self.columns.items()}}
        return hashlib.sha256(json.dumps(header, sort_keys=True).encode()).hexdigest()


PART_FILE = re.compile(r"\.?g\d+-part-\d{5}\.parquet(\.tmp)?")
"""A data file of :func:`write_dataset` (or its temporary name while written locally)."""
INTERRUPTED_FILE = re.compile(rf"{PART_FILE.pattern}|\.{re.escape(MANIFEST_NAME)}\.tmp")
"""What a first write interrupted before its manifest was in place can leave: data files and the
manifest's temporary file."""


def check_writable(folder: Folder, overwrite: bool) -> dict | None:
    """Whether a dataset may be written to ``folder``: returns the manifest of the dataset there
    (None if the folder is empty or missing, or, with ``overwrite``, holds only the data files of
    a first write that was interrupted before its manifest).

    Raises
    ------
    FileExistsError
        If the folder holds a dataset or an interrupted write's files and ``overwrite`` is false,
        or holds other files but no manifest (a folder that is not an spdnas dataset is never
        written into).
    """
    existing = folder.list_names()
    previous = folder.read_manifest() if MANIFEST_NAME in existing else None
    interrupted = bool(existing) and all(INTERRUPTED_FILE.fullmatch(name) for name in existing)
    if existing and previous is None and not (interrupted and overwrite):
        if interrupted:
            raise FileExistsError(f"write_dataset: {folder.uri} holds the data files of an interrupted "
                                  f"write and no {MANIFEST_NAME}; pass overwrite=True (--overwrite) to "
                                  "replace them")
        raise FileExistsError(f"write_dataset: {folder.uri} holds files but no {MANIFEST_NAME}; refusing to "
                              "write into a folder that is not an spdnas dataset")
    if previous is not None and not overwrite:
        raise FileExistsError(f"write_dataset: a dataset exists at {folder.uri}; pass overwrite=True "
                              "(--overwrite)")
    return previous


def write_dataset(dataset: SPDDataset, uri: str, *, rows_per_file: int | None = None,
                  row_group_size: int | None = None, overwrite: bool = False, encoding: str = "triu",
                  progress: bool = False) -> dict:
    """Validate ``dataset`` and write it as Parquet to a local folder or ``s3://bucket/prefix``.

    Parameters
    ----------
    dataset : SPDDataset
        Matrices are stored in their own dtype (float32 or float64).
    uri : str
    rows_per_file, row_group_size : int, optional
        Defaults give files of ≤ ~4 MiB made of ~1 MiB row groups (see :func:`default_sizes`).
    overwrite : bool
        Replace an existing dataset at ``uri``. Without it, an existing dataset is an error.
        A non-empty folder that is not a dataset is never written into.
    encoding : {"triu", "full"}
        Store the upper triangle (default; symmetric input is restored exactly) or all entries.
    progress : bool
        Print a progress line on stderr.

    Returns
    -------
    dict
        The manifest written.

    Raises
    ------
    DatasetValidationError
        If the data fails a check (nothing is written).
    FileExistsError
        If ``uri`` already holds data and ``overwrite`` is false.
    """
    if encoding not in MATRIX_COLUMNS:
        raise ValueError(f"write_dataset: encoding must be one of {sorted(MATRIX_COLUMNS)}, got {encoding!r}")
    dtype_name = {torch.float32: "float32", torch.float64: "float64"}.get(dataset.matrices.dtype)
    if dtype_name is None:
        raise ValueError(f"write_dataset: matrices must be float32 or float64, got {dataset.matrices.dtype}")
    _check_in_memory(dataset, encoding)
    folder = Folder(uri)
    previous = check_writable(folder, overwrite)
    if previous is None:  # empty, or an interrupted first write's files (overwrite=True): replaced
        folder.clear()
    generation = 0 if previous is None else int(previous.get("generation", 0)) + 1
    default_group, default_file = default_sizes(len(dataset), dataset.n,
                                                  dataset.matrices.element_size(), encoding)
    row_group_size = row_group_size or default_group
    rows_per_file = rows_per_file or default_file
    split_rank = {s: i for i, s in enumerate(SPLITS)}
    order = np.argsort([split_rank[s] for s in dataset.splits], kind="stable")
    meta_dict = dataset.meta.to_dict()
    schema = arrow_schema(dataset.n, dtype_name, encoding, file_metadata(meta_dict))
    chunks = [order[i:i + rows_per_file] for i in range(0, len(order), rows_per_file)] or [order]
    meter = Progress(f"write {uri}", len(chunks), " files", enabled=progress)
    files = []
    content = _ContentHash()
    for index, rows in enumerate(chunks):
        name = f"g{generation}-part-{index:05d}.parquet"
        values = encode_matrices(dataset.matrices.detach().cpu().numpy()[rows], encoding)
        data = _file_bytes(dataset, rows, values, schema, row_group_size)
        folder.write_bytes(name, data)
        files.append({"path": name, "rows": len(rows), "bytes": len(data),
                      "sha256": hashlib.sha256(data).hexdigest()})
        content.update(dataset, rows, values, encoding)
        meter.update()
    meter.close()
    manifest = {"format": FORMAT_NAME, "schema_version": SCHEMA_VERSION, "generation": generation,
                "meta": meta_dict, "dtype": dtype_name, "encoding": encoding, "num_rows": len(dataset),
                "row_group_size": row_group_size, "counts": dataset.counts(), "files": files,
                "content_sha256": content.hexdigest(dataset)}
    if dataset.groups is not None:
        manifest["groups"] = dataset.group_counts()
    folder.write_bytes(MANIFEST_NAME, json.dumps(manifest, indent=1).encode())
    kept = {f["path"] for f in files}
    for old in previous["files"] if previous else []:
        if old["path"] not in kept and folder.exists(old["path"]):
            folder.delete(old["path"])
    return manifest


def _fetched(folder: Folder, entries: list[dict],
             depth: int = PREFETCH_FILES) -> Iterator[tuple[dict, bytes]]:
    """(entry, file bytes) in manifest order, with up to ``depth`` files fetched ahead in threads.

    Overlaps S3 round trips (and local reads) with decoding and checking; pyarrow's I/O releases
    the GIL.
    """
    with ThreadPoolExecutor(max_workers=depth, thread_name_prefix="spdnas-read") as pool:
        pending = deque()
        for entry in entries:
            pending.append((entry, pool.submit(folder.read_bytes, entry["path"])))
            if len(pending) >= depth:
                head, future = pending.popleft()
                yield head, future.result()
        while pending:
            head, future = pending.popleft()
            yield head, future.result()


def _read_file(folder: Folder, entry: dict, data: bytes, meta: DatasetMeta, *, validate: bool,
               pd_rtol: float, repair: bool, repair_limit: float) -> FileRows:
    """Check and decode one file listed in the manifest, given its bytes."""
    name, where = entry["path"], folder.display(entry["path"])
    if validate and hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise DatasetValidationError("checksum", "SHA-256 differs from the manifest", file=where)
    table = pq.read_table(pa.BufferReader(data))
    encoding, _ = check_schema(table.schema, meta.n, file=where)
    kv = table.schema.metadata or {}
    if kv.get(VERSION_KEY) != str(SCHEMA_VERSION).encode() or json.loads(kv.get(META_KEY, b"{}")) != \
            meta.to_dict():
        raise DatasetValidationError("schema", "file metadata (schema version / dataset meta) differs "
                                     "from the manifest", file=where)
    if table.num_rows != entry["rows"]:
        raise DatasetValidationError("schema", f"{table.num_rows} rows, manifest says {entry['rows']}",
                                     file=where)
    id_column = table.column("sample_id")
    ids = np.asarray(id_column.to_pylist(), dtype=object)
    column = table.column(MATRIX_COLUMNS[encoding])
    width = encoded_width(meta.n, encoding)
    check_ids(ids, id_column.is_null().to_numpy(zero_copy_only=False), file=where)
    ids = ids.astype(str)
    check_matrix_column(column, width, ids, file=where, n=meta.n)
    labels = table.column("label").to_numpy()
    splits = np.asarray(table.column("split").to_pylist(), dtype=str)
    matrices = decode_matrices(list_values(column, width), encoding)
    repaired = 0
    if validate:
        check_labels(labels, len(meta.class_names), ids, file=where)
        check_splits(splits, ids, file=where)
        x, repaired = check_matrices(matrices, ids, file=where, check_symmetry=encoding == "full",
                                     pd_rtol=pd_rtol, repair=repair, repair_limit=repair_limit)
    else:
        x = torch.from_numpy(matrices)
    groups = np.asarray(table.column("group").to_pylist(), dtype=object)
    return FileRows(name, x, labels, splits, ids, groups, repaired)


def iter_files(uri: str, *, validate: bool = True, repair: bool = False, dtype: torch.dtype = torch.float64,
               pd_rtol: float | None = None, repair_limit: float = DEFAULT_REPAIR_LIMIT,
               progress: bool = False) -> Iterator[FileRows]:
    """Read a dataset file by file (manifest order), checking each before yielding it.

    Sample ids are also checked for uniqueness across files. Parameters as in
    :func:`read_dataset`; ``pd_rtol`` defaults to ``n · eps(dtype)``.
    """
    folder = Folder(uri)
    manifest = folder.read_manifest()
    meta = DatasetMeta.from_dict(manifest["meta"])
    rtol = default_pd_rtol(meta.n, dtype) if pd_rtol is None else pd_rtol
    seen: dict[str, str] = {}
    meter = Progress(f"read {uri}", len(manifest["files"]), " files", enabled=progress)
    for entry, data in _fetched(folder, manifest["files"]):
        rows = _read_file(folder, entry, data, meta, validate=validate, pd_rtol=rtol, repair=repair,
                          repair_limit=repair_limit)
        if validate:
            for row, sample_id in enumerate(rows.sample_ids):
                if sample_id in seen:
                    raise DatasetValidationError("sample_id", f"duplicate of a row in {seen[sample_id]}",
                                                 file=folder.display(rows.name), sample_id=sample_id, row=row)
                seen[sample_id] = folder.display(rows.name)
        meter.update()
        yield rows
    meter.close()


def read_dataset(uri: str, *, validate: bool = True, repair: bool = False, dtype: torch.dtype = torch.float64,
                 pd_rtol: float | None = None, repair_limit: float = DEFAULT_REPAIR_LIMIT,
                 progress: bool = False) -> SPDDataset:
    """Read a dataset from a local folder or ``s3://bucket/prefix`` into memory.

    Parameters
    ----------
    uri : str
    validate : bool
        Run every check (see :mod:`spdnas.data.validation`) before returning; the schema and
        ``n`` are checked regardless.
    repair : bool
        Shrink matrices with tiny negative (or too small) eigenvalues instead of failing.
        Only the returned tensors change; no file is written.
    dtype : torch.dtype
        dtype of the returned matrices (float64 by default).
    pd_rtol : float, optional
        Positive-definiteness tolerance relative to the mean eigenvalue; default ``n · eps(dtype)``.
    repair_limit : float
        Most negative ``λ_min / mean eigenvalue`` that ``repair`` accepts.
    progress : bool
        Print a progress line on stderr.

    Returns
    -------
    SPDDataset
        ``matrices`` of shape (N, n, n) in ``dtype``, rows in the stored order.

    Raises
    ------
    DatasetValidationError
        Naming the file, sample id and failed check.
    """
    parts = list(iter_files(uri, validate=validate, repair=repair, dtype=dtype, pd_rtol=pd_rtol,
                            repair_limit=repair_limit, progress=progress))
    meta = DatasetMeta.from_dict(Folder(uri).read_manifest()["meta"])
    groups = np.concatenate([p.groups for p in parts])
    return SPDDataset(
        matrices=torch.cat([p.matrices.to(dtype) for p in parts]),
        labels=torch.from_numpy(np.concatenate([p.labels for p in parts])),
        splits=np.concatenate([p.splits for p in parts]),
        sample_ids=np.concatenate([p.sample_ids for p in parts]),
        meta=meta,
        groups=None if all(g is None for g in groups) else groups)


def read_sample_index(uri: str) -> SampleIndex:
    """The ids, labels, splits and groups of a dataset's rows, in the stored order, reading only
    those columns (not the matrices) of each file. Unchecked: for planning, before a full read."""
    folder = Folder(uri)
    tables = [pq.read_table(folder.path(entry["path"]), columns=["sample_id", "label", "split", "group"],
                            filesystem=folder.fs) for entry in folder.read_manifest()["files"]]
    table = pa.concat_tables(tables)
    return SampleIndex(np.asarray(table.column("sample_id").to_pylist(), dtype=str),
                       table.column("label").to_numpy(),
                       np.asarray(table.column("split").to_pylist(), dtype=str),
                       normalise_groups(table.column("group").to_pylist()))


def validate_dataset(uri: str, **options) -> dict:
    """Check a whole dataset without keeping it in memory.

    Parameters
    ----------
    uri : str
    **options
        ``repair``, ``dtype``, ``pd_rtol``, ``repair_limit``, ``progress`` as in :func:`read_dataset`.

    Returns
    -------
    dict
        ``{"files": int, "rows": int, "repairable": int}`` (``repairable`` counts rows that
        only pass with ``repair=True``).

    Raises
    ------
    DatasetValidationError
        At the first failed check.
    """
    files = rows = repaired = 0
    for part in iter_files(uri, validate=True, **options):
        files, rows, repaired = files + 1, rows + len(part.labels), repaired + part.repaired
    return {"files": files, "rows": rows, "repairable": repaired}
