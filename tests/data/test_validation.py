"""Every read-side check fails with a message naming the file, the sample id and the check."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch

from spdnas.data import DatasetValidationError, read_dataset, validate_dataset, write_dataset
from spdnas.data.schema import decode_matrices, encode_matrices
from tests.data.conftest import folder_digests, rewrite_file, toy_dataset
from tests.helpers import rotated

ROW = 3  # the row every test damages


def set_column(table: pa.Table, name: str, values) -> pa.Table:
    index = table.schema.get_field_index(name)
    return table.set_column(index, table.schema.field(name), pa.array(values, table.schema.field(name).type))


def set_matrix(table: pa.Table, row: int, matrix: np.ndarray) -> pa.Table:
    """Replace the matrix of one row (keeping the column's encoding and type)."""
    name = next(c for c in table.column_names if c.startswith("matrix_"))
    encoding = name.split("_")[1]
    column = table.column(name).combine_chunks()
    width = column.type.list_size
    values = column.flatten().to_numpy().reshape(len(column), width).copy()
    values[row] = encode_matrices(matrix[None], encoding)[0]
    new = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), width)
    return table.set_column(table.schema.get_field_index(name), table.schema.field(name), new)


def written(tmp_path, encoding="triu", **kw):
    dataset = toy_dataset(count=20, n=4, **kw)
    manifest = write_dataset(dataset, tmp_path / "ds", rows_per_file=10, encoding=encoding)
    return tmp_path / "ds", manifest


def expect_failure(folder, check: str, file_name: str, sample_id: str | None, **read_kw):
    with pytest.raises(DatasetValidationError) as info:
        read_dataset(str(folder), **read_kw)
    err = info.value
    assert err.check == check
    assert err.file.endswith(file_name) and file_name in str(err)
    assert f"'{check}'" in str(err)
    if sample_id is not None:
        assert err.sample_id == sample_id and repr(sample_id) in str(err)
    return err


def sample_id_at(folder, file_name: str, row: int) -> str:
    return pa.parquet.read_table(folder / file_name).column("sample_id")[row].as_py()


def test_valid_dataset_passes(tmp_path):
    folder, _ = written(tmp_path)
    assert validate_dataset(str(folder)) == {"files": 2, "rows": 20, "repairable": 0}


def test_schema_missing_column(tmp_path):
    folder, _ = written(tmp_path)
    name = rewrite_file(folder, 1, lambda t: t.drop_columns(["label"]))
    expect_failure(folder, "schema", name, None)


def test_n_fixed_size_mismatch(tmp_path):
    folder, _ = written(tmp_path)

    def widen(table):
        values = table.column("matrix_triu").combine_chunks().flatten().to_numpy().reshape(-1, 10)
        wider = np.concatenate([values, np.ones((len(values), 5))], axis=1)
        column = pa.FixedSizeListArray.from_arrays(pa.array(wider.ravel()), 15)
        return table.set_column(4, "matrix_triu", column)

    name = rewrite_file(folder, 0, widen)
    err = expect_failure(folder, "n", name, None)
    assert "n = 4" in str(err)


def test_n_variable_list_row_too_short(tmp_path):
    folder, _ = written(tmp_path)

    def shorten(table):
        rows = table.column("matrix_triu").to_pylist()
        rows[ROW] = rows[ROW][:6]
        return table.set_column(4, "matrix_triu", pa.array(rows, pa.list_(pa.float64())))

    name = rewrite_file(folder, 1, shorten)
    expect_failure(folder, "n", name, sample_id_at(folder, name, ROW))


def test_duplicate_sample_id_across_files(tmp_path):
    folder, manifest = written(tmp_path)
    first_id = sample_id_at(folder, manifest["files"][0]["path"], 0)

    def duplicate(table):
        ids = table.column("sample_id").to_pylist()
        ids[ROW] = first_id
        return set_column(table, "sample_id", ids)

    name = rewrite_file(folder, 1, duplicate)
    err = expect_failure(folder, "sample_id", name, first_id)
    assert manifest["files"][0]["path"] in str(err)


def test_label_out_of_range(tmp_path):
    folder, _ = written(tmp_path)
    labels = [0] * 10
    labels[ROW] = 3
    name = rewrite_file(folder, 0, lambda t: set_column(t, "label", labels))
    err = expect_failure(folder, "label", name, sample_id_at(folder, name, ROW))
    assert "[0, 3)" in str(err)


def test_missing_label(tmp_path):
    """A nullable label column with a null passed, and was read back as label -2**63."""
    folder, _ = written(tmp_path)

    def null_label(table: pa.Table) -> pa.Table:
        labels = pa.array([None if i == ROW else 0 for i in range(table.num_rows)], pa.int64())
        index = table.schema.get_field_index("label")
        return table.set_column(index, pa.field("label", pa.int64(), nullable=True), labels)

    name = rewrite_file(folder, 0, null_label)
    err = expect_failure(folder, "label", name, sample_id_at(folder, name, ROW))
    assert "missing label" in str(err)
    with pytest.raises(DatasetValidationError, match="missing label"):
        validate_dataset(str(folder))


def test_schema_missing_group_column(tmp_path):
    folder, _ = written(tmp_path)
    name = rewrite_file(folder, 1, lambda t: t.drop_columns(["group"]))
    err = expect_failure(folder, "schema", name, None)
    assert "missing column 'group'" in str(err)


def test_unknown_split(tmp_path):
    folder, _ = written(tmp_path)
    name = rewrite_file(folder, 0, lambda t: set_column(
        t, "split", pc.if_else(pc.equal(pa.array(np.arange(t.num_rows)), ROW), "holdout", t.column("split"))))
    expect_failure(folder, "split", name, sample_id_at(folder, name, ROW))


def test_non_finite_value(tmp_path):
    folder, _ = written(tmp_path)
    bad = np.eye(4)
    bad[1, 2] = bad[2, 1] = np.nan
    name = rewrite_file(folder, 1, lambda t: set_matrix(t, ROW, bad))
    expect_failure(folder, "finite", name, sample_id_at(folder, name, ROW))


def test_asymmetric_matrix_with_full_encoding(tmp_path):
    folder, _ = written(tmp_path, encoding="full")
    bad = rotated([1.0, 2.0, 3.0, 4.0])
    bad[0, 3] += 1e-3
    name = rewrite_file(folder, 0, lambda t: set_matrix(t, ROW, bad))
    expect_failure(folder, "symmetric", name, sample_id_at(folder, name, ROW))


def test_not_positive_definite_without_repair(tmp_path):
    folder, _ = written(tmp_path)
    name = rewrite_file(folder, 1, lambda t: set_matrix(t, ROW, rotated([-0.5, 1.0, 2.0, 3.0])))
    err = expect_failure(folder, "positive-definite", name, sample_id_at(folder, name, ROW))
    assert "-0.5" in str(err)


def test_zero_matrix_is_named_not_divided_by_zero(tmp_path):
    """An all-zero matrix (e.g. an all-zero signal) said "0 = nan × mean eigenvalue"."""
    folder, _ = written(tmp_path)
    name = rewrite_file(folder, 0, lambda t: set_matrix(t, ROW, np.zeros((4, 4))))
    for repair in (False, True):
        row_id = sample_id_at(folder, name, ROW)
        err = expect_failure(folder, "positive-definite", name, row_id, repair=repair)
        assert "mean eigenvalue (trace / n) 0 ≤ 0: a zero matrix" in str(err) and "nan" not in str(err)


def test_checksum_mismatch(tmp_path):
    folder, manifest = written(tmp_path)
    path = folder / manifest["files"][0]["path"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    expect_failure(folder, "checksum", manifest["files"][0]["path"], None)


def test_repair_shrinks_tiny_negative_eigenvalue_and_writes_nothing(tmp_path):
    folder, _ = written(tmp_path)
    tiny = rotated([-1e-7, 1.0, 2.0, 3.0], seed=3)
    name = rewrite_file(folder, 1, lambda t: set_matrix(t, ROW, tiny))
    sample_id = sample_id_at(folder, name, ROW)
    err = expect_failure(folder, "positive-definite", name, sample_id)
    assert "repair=True" in str(err)
    before = folder_digests(str(folder))
    repaired = read_dataset(str(folder), repair=True)
    assert folder_digests(str(folder)) == before
    x = repaired.matrices[repaired.sample_ids == sample_id][0]
    eig = torch.linalg.eigvalsh(x)
    assert eig[0] > 0 and torch.linalg.cholesky_ex(x).info == 0
    assert torch.allclose(eig[1:], torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), rtol=1e-6)
    assert torch.isclose(torch.trace(x), torch.tensor(6.0 - 1e-7, dtype=torch.float64))
    assert validate_dataset(str(folder), repair=True)["repairable"] == 1


def test_repair_refuses_large_negative_eigenvalue(tmp_path):
    folder, _ = written(tmp_path)
    name = rewrite_file(folder, 0, lambda t: set_matrix(t, ROW, rotated([-0.1, 1.0, 2.0, 3.0])))
    expect_failure(folder, "positive-definite", name, sample_id_at(folder, name, ROW), repair=True)


def test_float32_tolerance_is_stricter_than_float64(tmp_path):
    folder, _ = written(tmp_path)
    near_singular = rotated([1e-9, 1.0, 2.0, 3.0], seed=5)
    name = rewrite_file(folder, 0, lambda t: set_matrix(t, ROW, near_singular))
    assert len(read_dataset(str(folder))) == 20
    expect_failure(folder, "positive-definite", name, sample_id_at(folder, name, ROW), dtype=torch.float32)


def test_writer_checks_before_writing(tmp_path):
    dataset = toy_dataset(count=8, n=4)
    dataset.matrices[5] = torch.from_numpy(decode_matrices(encode_matrices(
        rotated([-1.0, 1.0, 2.0, 3.0])[None].numpy(), "triu"), "triu")[0])
    with pytest.raises(DatasetValidationError, match="s005") as info:
        write_dataset(dataset, tmp_path / "ds")
    assert info.value.check == "positive-definite"
    assert not (tmp_path / "ds").exists()


def test_writer_checks_the_matrices_readers_will_get(tmp_path):
    """The ``triu`` encoding stores the upper triangle: an asymmetry within the tolerance made a
    nearly singular matrix pass as given (its lower triangle) and fail as read."""
    dataset = toy_dataset(count=8, n=4)
    m = torch.ones(2, 2, dtype=torch.float64)
    m[0, 1], m[1, 0] = 1 - 1e-9 + 2e-9, 1 - 1e-9  # lower: PD (1e-9 gap); upper mirrored: singular
    dataset.matrices[5] = torch.eye(4, dtype=torch.float64)
    dataset.matrices[5, :2, :2] = m
    with pytest.raises(DatasetValidationError, match="positive-definite") as info:
        write_dataset(dataset, tmp_path / "ds")
    assert info.value.sample_id == dataset.sample_ids[5]
    assert not (tmp_path / "ds").exists()


def test_writer_rejects_asymmetric_input(tmp_path):
    dataset = toy_dataset(count=8, n=4)
    dataset.matrices[2, 0, 1] += 1.0
    with pytest.raises(DatasetValidationError, match="symmetric"):
        write_dataset(dataset, tmp_path / "ds")


def test_writer_rejects_duplicate_ids(tmp_path):
    dataset = toy_dataset(count=8, n=4)
    dataset.sample_ids[3] = dataset.sample_ids[1]
    with pytest.raises(DatasetValidationError, match="duplicate"):
        write_dataset(dataset, tmp_path / "ds")
