"""SPD datasets: schema, Parquet read/write/validate, builders, S3 and Ray Data streaming.

The streaming helpers live in :mod:`spdnas.data.streaming` (imports Ray) and the S3 transfers
in :mod:`spdnas.data.s3`; neither is imported here.
"""

from spdnas.data.dataset import DatasetMeta, SampleIndex, SPDDataset, group_split, stratified_split
from spdnas.data.parquet import iter_files, read_dataset, read_sample_index, validate_dataset, write_dataset
from spdnas.data.registry import builders, make_dataset
from spdnas.data.schema import SCHEMA_VERSION, SPLITS, decode_matrices, encode_matrices
from spdnas.data.validation import DatasetValidationError

__all__ = [
    "SCHEMA_VERSION",
    "SPLITS",
    "DatasetMeta",
    "DatasetValidationError",
    "SPDDataset",
    "SampleIndex",
    "builders",
    "decode_matrices",
    "encode_matrices",
    "group_split",
    "iter_files",
    "make_dataset",
    "read_dataset",
    "read_sample_index",
    "stratified_split",
    "validate_dataset",
    "write_dataset",
]
