"""Row checks for SPD datasets, run before any compute touches the data.

Every failure raises :class:`DatasetValidationError` naming the file, the sample id (and row)
and the check that failed. Checks, in order: ``schema``, ``n``, ``sample_id``, ``label``,
``split``, ``finite``, ``symmetric`` (only where the lower triangle is stored), and
``positive-definite``.

Positive definiteness is tested with a tolerance relative to the mean eigenvalue
``μ = tr(X)/n``: ``X`` passes when ``λ_min(X) > rtol · μ`` (tested by a Cholesky factorisation
of ``X − rtol·μ·I`` in float64). With ``repair=True`` a matrix whose smallest eigenvalue lies in
``[−repair_limit·μ, rtol·μ]`` is shrunk towards ``μI`` (which keeps its trace) just enough that
``λ_min = 10·rtol·μ``; anything more negative is an error.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import Tensor

from spdnas.data.schema import MATRIX_COLUMNS, SPLITS, STORAGE_DTYPES, encoded_width, matrix_encoding

REPAIR_MARGIN = 10.0
DEFAULT_REPAIR_LIMIT = 1e-4
REQUIRED_COLUMNS = {"sample_id": pa.string(), "label": pa.int64(), "split": pa.string(), "group": pa.string()}


class DatasetValidationError(ValueError):
    """A dataset file or row failed a check.

    Attributes
    ----------
    check : str
        Name of the failed check (e.g. ``"positive-definite"``).
    file : str
        File (or ``"<memory>"``) holding the bad data.
    sample_id : str or None
        Sample id of the first bad row, when the failure concerns a row.
    row : int or None
        Row number of that sample within ``file`` (None where the file holds one matrix).
    """

    def __init__(self, check: str, detail: str, *, file: str, sample_id: str | None = None,
                 row: int | None = None):
        self.check, self.detail, self.file, self.sample_id, self.row = check, detail, file, sample_id, row
        where = file if sample_id is None else f"{file}: sample_id {str(sample_id)!r}"
        if sample_id is not None and row is not None:
            where += f" (row {row})"
        super().__init__(f"{where}: failed check '{check}': {detail}")


def default_pd_rtol(n: int, dtype: torch.dtype) -> float:
    """Default positive-definiteness tolerance ``n · eps(dtype)`` for the dtype the data is used in."""
    return n * float(torch.finfo(dtype).eps)


def shrink_to_identity(matrices: Tensor, gamma: Tensor) -> Tensor:
    """``(1 − γ) X + γ (tr X / n) I``: shrinkage that keeps the trace.

    Parameters
    ----------
    matrices : Tensor, shape (B, n, n)
    gamma : Tensor, shape (B,)
        Shrinkage intensities in [0, 1].

    Returns
    -------
    Tensor, shape (B, n, n)
    """
    n = matrices.shape[-1]
    mu = torch.diagonal(matrices, dim1=-2, dim2=-1).sum(-1) / n
    eye = torch.eye(n, dtype=matrices.dtype, device=matrices.device)
    g = gamma.to(matrices.dtype)[:, None, None]
    return (1 - g) * matrices + g * mu[:, None, None] * eye


def check_schema(schema: pa.Schema, n: int, *, file: str) -> tuple[str, str]:
    """Check column names and types of a dataset file.

    Returns
    -------
    (encoding, storage dtype) : tuple of str
        ``encoding`` is ``"triu"`` or ``"full"``, the dtype ``"float32"`` or ``"float64"``.
    """
    for name, expected in REQUIRED_COLUMNS.items():
        if name not in schema.names:
            raise DatasetValidationError("schema", f"missing column {name!r}", file=file)
        if schema.field(name).type != expected:
            raise DatasetValidationError("schema", f"column {name!r} has type {schema.field(name).type}, "
                                         f"expected {expected}", file=file)
    try:
        encoding = matrix_encoding(schema)
    except ValueError as err:
        raise DatasetValidationError("schema", str(err), file=file) from None
    field_type = schema.field(MATRIX_COLUMNS[encoding]).type
    if not (pa.types.is_fixed_size_list(field_type) or pa.types.is_list(field_type)):
        raise DatasetValidationError("schema", f"column {MATRIX_COLUMNS[encoding]!r} must be a list, "
                                     f"got {field_type}", file=file)
    dtypes = {str(t): name for name, t in STORAGE_DTYPES.items()}
    if str(field_type.value_type) not in dtypes:
        raise DatasetValidationError("schema", f"matrix values have type {field_type.value_type}, "
                                     f"expected float32 or float64", file=file)
    if pa.types.is_fixed_size_list(field_type) and field_type.list_size != encoded_width(n, encoding):
        raise DatasetValidationError("n", f"{field_type.list_size} values per matrix, expected "
                                     f"{encoded_width(n, encoding)} for n = {n} ({encoding})", file=file)
    return encoding, dtypes[str(field_type.value_type)]


def check_matrix_column(column: pa.ChunkedArray, width: int, ids: np.ndarray, *, file: str,
                        n: int) -> None:
    """Check that no matrix is null and every row holds ``width`` values (the ``n`` check)."""
    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise DatasetValidationError("schema", "matrix is null", file=file, sample_id=ids[row], row=row)
    if pa.types.is_list(column.type):
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(lengths != width)
        if len(bad):
            row = int(bad[0])
            raise DatasetValidationError("n", f"{lengths[row]} matrix values, expected {width} for n = {n}",
                                         file=file, sample_id=ids[row], row=row)


def check_ids(ids: np.ndarray, null_mask: np.ndarray, *, file: str) -> None:
    """Sample ids must be present and unique within the file."""
    if null_mask.any():
        row = int(np.flatnonzero(null_mask)[0])
        raise DatasetValidationError("sample_id", "sample_id is null", file=file, sample_id=None, row=row)
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = unique[counts > 1][0]
        rows = np.flatnonzero(ids == dup)
        listed = ", ".join(map(str, rows[:10].tolist()))
        listed += f", … ({len(rows)} rows)" if len(rows) > 10 else ""
        raise DatasetValidationError("sample_id", f"duplicate sample_id (rows {listed})",
                                     file=file, sample_id=dup, row=int(rows[1]))


def check_labels(labels: np.ndarray, num_classes: int, ids: np.ndarray, *, file: str) -> None:
    """Labels must be present and lie in ``[0, num_classes)`` (an int64 column with nulls comes
    out of pyarrow as floats with NaN where a label is missing)."""
    if labels.dtype.kind == "f":
        missing = np.flatnonzero(np.isnan(labels))
        if len(missing):
            row = int(missing[0])
            raise DatasetValidationError("label", "missing label (null)", file=file, sample_id=ids[row],
                                         row=row)
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        row = int(bad[0])
        raise DatasetValidationError("label", f"label {labels[row]} outside [0, {num_classes})",
                                     file=file, sample_id=ids[row], row=row)


def check_splits(splits: np.ndarray, ids: np.ndarray, *, file: str) -> None:
    """Split names must be one of ``train``, ``val``, ``test``."""
    bad = np.flatnonzero(~np.isin(splits, SPLITS))
    if len(bad):
        row = int(bad[0])
        raise DatasetValidationError("split", f"split {splits[row]!r} is not one of {SPLITS}",
                                     file=file, sample_id=ids[row], row=row)


def check_finite_symmetric(matrices: np.ndarray, ids: np.ndarray, *, file: str,
                           check_symmetry: bool) -> Tensor:
    """Finite check, and symmetry check if asked.

    Parameters
    ----------
    matrices : ndarray, shape (B, n, n), float32 or float64
    ids : ndarray of str, shape (B,)
    file : str
        Where the rows come from (named in errors).
    check_symmetry : bool
        Check ``X = Xᵀ`` within ``sqrt(eps)`` relative to ``max|X|`` (needed when the lower
        triangle is stored; the ``triu`` encoding is symmetric by construction).

    Returns
    -------
    Tensor, shape (B, n, n), float64
    """
    x = torch.from_numpy(np.ascontiguousarray(matrices)).to(torch.float64)
    finite = torch.isfinite(x).flatten(1).all(1)
    if not bool(finite.all()):
        row = int(torch.nonzero(~finite)[0, 0])
        raise DatasetValidationError("finite", "matrix has NaN or inf entries", file=file,
                                     sample_id=ids[row], row=row)
    if check_symmetry and len(x):
        scale = x.abs().flatten(1).amax(1).clamp_min(torch.finfo(torch.float64).tiny)
        asym = (x - x.mT).abs().flatten(1).amax(1) / scale
        bad = asym > float(np.finfo(matrices.dtype).eps) ** 0.5
        if bool(bad.any()):
            row = int(torch.nonzero(bad)[0, 0])
            raise DatasetValidationError("symmetric", f"relative asymmetry {float(asym[row]):.3g}",
                                         file=file, sample_id=ids[row], row=row)
    return x


def check_positive_definite(x: Tensor, ids: np.ndarray, *, file: str, pd_rtol: float, repair: bool = False,
                            repair_limit: float = DEFAULT_REPAIR_LIMIT) -> tuple[Tensor, int]:
    """Positive-definite check with optional repair (see the module docstring).

    Parameters
    ----------
    x : Tensor, shape (B, n, n), float64, finite and symmetric
    ids : ndarray of str, shape (B,)
    file : str
    pd_rtol, repair, repair_limit
        See the module docstring.

    Returns
    -------
    (Tensor, int)
        ``x`` with repaired rows replaced (shape (B, n, n)), and how many rows were repaired.
    """
    if x.shape[0] == 0:
        return x, 0
    n = x.shape[-1]
    eye = torch.eye(n, dtype=torch.float64)
    mu = torch.diagonal(x, dim1=-2, dim2=-1).sum(-1) / n
    info = torch.linalg.cholesky_ex(x - (pd_rtol * mu.clamp_min(0))[:, None, None] * eye).info
    bad = torch.nonzero((info != 0) | (mu <= 0)).flatten()
    if len(bad) == 0:
        return x, 0
    lam_min = torch.linalg.eigvalsh(x[bad])[:, 0]
    rel = lam_min / mu[bad]
    fixable = (mu[bad] > 0) & (rel >= -repair_limit)
    if not repair or not bool(fixable.all()):
        k = 0 if not repair else int(torch.nonzero(~fixable)[0, 0])
        row = int(bad[k])
        hint = ("; repairable: importers fix such matrices with --param shrinkage=γ (make the dataset "
                "again), read_dataset(..., repair=True) shrinks them in Python, and `spdnas data validate "
                "--repair --dtype …` counts them; a run in float64 may accept what float32 refuses"
                if not repair and bool(fixable[k]) else "")
        if float(mu[row]) <= 0:
            detail = (f"mean eigenvalue (trace / n) {float(mu[row]):.4g} ≤ 0: a zero matrix (e.g. from "
                      f"an all-zero signal) or one with no positive part cannot be used or repaired")
        else:
            detail = (f"smallest eigenvalue {float(lam_min[k]):.4g} = {float(rel[k]):.3g} × mean eigenvalue "
                      f"(needs > {pd_rtol:.3g}; repair limit −{repair_limit:g}){hint}")
        raise DatasetValidationError("positive-definite", detail, file=file, sample_id=ids[row], row=row)
    target = REPAIR_MARGIN * pd_rtol * mu[bad]
    gamma = ((target - lam_min) / (mu[bad] - lam_min)).clamp(0, 1)
    x = x.clone()
    x[bad] = shrink_to_identity(x[bad], gamma)
    return x, len(bad)


def check_matrices(matrices: np.ndarray, ids: np.ndarray, *, file: str, check_symmetry: bool,
                   pd_rtol: float, repair: bool = False,
                   repair_limit: float = DEFAULT_REPAIR_LIMIT) -> tuple[Tensor, int]:
    """:func:`check_finite_symmetric` then :func:`check_positive_definite`.

    Returns
    -------
    (Tensor, int)
        The matrices as float64, shape (B, n, n) (repaired rows replaced), and how many rows
        were repaired.
    """
    x = check_finite_symmetric(matrices, ids, file=file, check_symmetry=check_symmetry)
    return check_positive_definite(x, ids, file=file, pd_rtol=pd_rtol, repair=repair,
                                   repair_limit=repair_limit)
