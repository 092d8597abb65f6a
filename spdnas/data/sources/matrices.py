"""Importers for the paper's precomputed-matrix datasets: HDM05 and AFEW.

- **HDM05** (``hdm05-npy``): a flat folder of ``.npy`` 93×93 covariance matrices (31 joints ×
  3-D coordinates), label = last ``_`` token of the file name (0–116). Split drawn
  50/25/25, stratified and seeded, as in the paper.
- **AFEW** (``afew``): either (a) ``train/`` and ``val/`` folders of ``.npy`` matrices
  (400×400 in the public release), label = last ``_`` token (0–6), or (b)
  ``{train,val}/{1..7}/*.mat`` with the matrix under key ``Y1`` and label = folder − 1. The
  official validation set is the evaluation set of the paper, so it becomes the ``test``
  split by default (``val_as="val"`` keeps it as ``val``), and ``val_fraction`` (default 0.1)
  of each training class becomes ``val`` for model selection.

Complex files keep their real part. Matrices must be symmetric to ``sqrt(eps)`` relative
accuracy and are then symmetrised exactly (``(X + Xᵀ)/2``); ``shrinkage=γ`` optionally
shrinks each towards ``(tr X / n) I`` for sources that are only positive semi-definite.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from spdnas.data.dataset import DatasetMeta, SPDDataset
from spdnas.data.registry import register
from spdnas.data.sources.common import assemble, carve_validation, label_from_name, load_npy, sorted_files
from spdnas.data.validation import (
    DatasetValidationError,
    check_finite_symmetric,
    check_positive_definite,
    default_pd_rtol,
    shrink_to_identity,
)

HDM05_CLASSES = 117
HDM05_N = 93
AFEW_CLASSES = ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
MAT_KEY = "Y1"


def load_matrix(path: Path) -> np.ndarray:
    """One square matrix from ``.npy`` or ``.mat`` (key ``Y1``): its real part, shape (n, n),
    float32 if stored in single precision (real or complex), else float64."""
    if path.suffix.lower() == ".mat":
        from scipy.io import loadmat

        try:
            content = loadmat(path)
        except NotImplementedError as err:
            raise ValueError(f"{path}: cannot read .mat file ({err}); MATLAB v7.3 files are not "
                             f"supported, re-save with -v7") from None
        except Exception as err:  # scipy raises many kinds (MatReadError, IndexError, ...) on damaged files
            raise ValueError(f"{path}: cannot read .mat file ({type(err).__name__}: {err})") from None
        if MAT_KEY not in content:
            names = sorted(k for k in content if not k.startswith("_"))
            raise ValueError(f"{path}: no variable {MAT_KEY!r} (found {names})")
        matrix = content[MAT_KEY]
    else:
        matrix = load_npy(path)
    matrix = np.asarray(matrix)
    if not (np.issubdtype(matrix.dtype, np.number) and not np.issubdtype(matrix.dtype, np.bool_)):
        raise ValueError(f"{path}: expected a numeric matrix, got dtype {matrix.dtype}")
    matrix = np.real(matrix)
    if matrix.dtype != np.float32:
        matrix = matrix.astype(np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"{path}: expected a square matrix, got shape {matrix.shape}")
    return matrix


def stack_matrices(files: list[Path], ids: list[str], source: Path, shrinkage: float) -> torch.Tensor:
    """Load, check and symmetrise matrices from ``files``.

    Returns
    -------
    Tensor, shape (N, n, n), float64

    Each file is checked in its own precision (symmetric to ``sqrt(eps)`` of its dtype).

    Raises
    ------
    ValueError
        Naming the files whose size differs from the most common one.
    DatasetValidationError
        Naming the file of a non-finite, asymmetric or (after ``shrinkage``) not positive
        definite matrix.
    """
    if not 0 <= shrinkage <= 1:
        raise ValueError(f"shrinkage must be in [0, 1], got {shrinkage}")
    matrices = []
    for path, sample_id in zip(files, ids, strict=True):
        matrix = load_matrix(path)
        try:
            check_finite_symmetric(matrix[None], np.asarray([sample_id]), file=str(path), check_symmetry=True)
        except DatasetValidationError as exc:  # the file is the place: no "row 0"
            raise DatasetValidationError(exc.check, exc.detail, file=str(path)) from None
        matrices.append(matrix.astype(np.float64))
    shapes = Counter(m.shape for m in matrices)
    if len(shapes) > 1:
        common = shapes.most_common(1)[0][0]
        odd = [f"{path} {m.shape}" for path, m in zip(files, matrices, strict=True) if m.shape != common]
        raise ValueError(f"{source}: {len(odd)} of {len(files)} matrices differ in size from the others "
                         f"{common}: {', '.join(odd[:5])}{' …' if len(odd) > 5 else ''}")
    x = torch.from_numpy(np.stack(matrices))
    x = 0.5 * (x + x.mT)
    if shrinkage:
        x = shrink_to_identity(x, torch.full((len(x),), float(shrinkage)))
    try:  # here, naming the file; the writer's check would name a row of the in-memory dataset
        check_positive_definite(x, np.asarray(ids), file=str(source),
                                pd_rtol=default_pd_rtol(x.shape[-1], x.dtype))
    except DatasetValidationError as exc:
        raise DatasetValidationError(exc.check, exc.detail, file=str(files[exc.row])) from None
    return x


@register("hdm05-npy", "import HDM05: flat folder of .npy 93×93 covariances, label = last '_' token")
def import_hdm05(src: str, split_seed: int = 0, fractions=None, shrinkage: float = 0.0) -> SPDDataset:
    """Import HDM05 from a flat folder of ``.npy`` matrices.

    Parameters
    ----------
    src : str
        Folder of ``*.npy`` files named ``..._<label>.npy`` (label 0–116).
    split_seed : int
    fractions : split fractions, default 50/25/25
    shrinkage : float
        Optional shrinkage γ towards the scaled identity (0 keeps the matrices).
    """
    folder = Path(src).expanduser()
    files = sorted_files(folder, (".npy",))
    labels = [label_from_name(f, HDM05_CLASSES) for f in files]
    ids = [f.stem for f in files]
    matrices = stack_matrices(files, ids, folder, shrinkage)
    if matrices.shape[-1] != HDM05_N:
        raise ValueError(f"{folder}: HDM05 covariances are {HDM05_N}×{HDM05_N} (31 joints × 3 coordinates), "
                         f"these are {matrices.shape[-1]}×{matrices.shape[-1]}; import other matrices with "
                         "the `matrices` importer (its class_names set the classes)")
    meta = DatasetMeta(name="hdm05", n=HDM05_N,
                       class_names=tuple(f"class-{k}" for k in range(HDM05_CLASSES)),
                       source=f"HDM05 .npy covariances imported from {src}",
                       licence="as licensed by the data owner (HDM05: MPI Informatik terms of use)",
                       provenance={"shrinkage": shrinkage})
    return assemble(matrices, labels, ids, meta, fractions=fractions, seed=split_seed)


@register("matrices", "import your own: a folder of .npy/.mat (key Y1) SPD matrices, label = last '_' token")
def import_matrices(src: str, class_names: list | None = None, dataset_name: str = "matrices",
                    split_seed: int = 0, fractions=None, shrinkage: float = 0.0,
                    group_pattern: str | None = None, split_by_group: bool = True) -> SPDDataset:
    """Import SPD matrices of any size from a flat folder, one per file.

    Parameters
    ----------
    src : str
        Folder of ``*.npy`` and/or ``*.mat`` (variable ``Y1``) files named ``..._<label>.<ext>``,
        label an integer from 0.
    class_names : list of str, optional
        Name of each label (their number fixes the number of classes); default ``class-0`` …
        up to the largest label found.
    dataset_name : str
        The dataset's name (in tables and reports).
    split_seed : int
    fractions : split fractions, default 50/25/25 (stratified, seeded)
    shrinkage : float
        Optional shrinkage γ towards the scaled identity, for matrices that are only positive
        semi-definite.
    group_pattern : str, optional
        Regular expression found in each file name's stem whose first parenthesised group (else
        the whole match) is the sample's subject/group, e.g. ``^(s\\d+)_`` for ``s07_trial3_1.npy``.
    split_by_group : bool
        With ``group_pattern``: keep each group in one split (subject-wise evaluation); False
        draws the usual stratified split and records the groups only.
    """
    folder = Path(src).expanduser()
    files = sorted_files(folder, (".npy", ".mat"))
    groups = groups_from_names(files, group_pattern) if group_pattern is not None else None
    if class_names is not None and (not isinstance(class_names, list) or not class_names
                                    or len({str(c) for c in class_names}) != len(class_names)):
        raise ValueError(f"matrices: class_names must be a non-empty list of distinct names, "
                         f"got {class_names!r}")
    limit = len(class_names) if class_names is not None else 2**31
    labels = [label_from_name(f, limit) for f in files]
    if class_names is None and max(labels) >= len(files):
        raise ValueError(f"{folder}: label {max(labels)} with {len(files)} files — is the last '_' token "
                         f"of the file names a label? Give class_names to set the classes")
    if class_names is None and len(set(labels)) <= max(labels):
        missing = sorted(set(range(max(labels) + 1)) - set(labels))
        raise ValueError(f"{folder}: no file has label {', '.join(map(str, missing))}; labels must run "
                         "from 0 without gaps (an empty class would be one more network output), or "
                         "give class_names to set the classes")
    names = class_names if class_names is not None else [f"class-{k}" for k in range(max(labels) + 1)]
    ids = [f.stem for f in files]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{folder}: two files share a name stem (e.g. x_0.npy and x_0.mat)")
    matrices = stack_matrices(files, ids, folder, shrinkage)
    meta = DatasetMeta(name=dataset_name, n=matrices.shape[-1], class_names=tuple(str(c) for c in names),
                       source=f"matrices imported from {src}", licence="as licensed by the data owner",
                       provenance={"shrinkage": shrinkage})
    return assemble(matrices, labels, ids, meta, fractions=fractions, seed=split_seed, groups=groups,
                    split_by_group=split_by_group)


def groups_from_names(files: list[Path], pattern: str) -> list[str]:
    """The group of every file: the first parenthesised group of ``pattern`` found in its stem
    (the whole match if the pattern has none).

    Raises
    ------
    ValueError
        If the pattern does not compile, or naming the files it does not match (or matches empty).
    """
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise ValueError(f"group_pattern {pattern!r} is not a regular expression: {err}") from None
    groups, unmatched = [], []
    for path in files:
        found = regex.search(path.stem)
        group = (found.group(1) if regex.groups else found.group(0)) if found else None
        groups.append(group)
        if not group:
            unmatched.append(path.name)
    if unmatched:
        raise ValueError(f"group_pattern {pattern!r} finds no group in {len(unmatched)} of {len(files)} file "
                         f"names, e.g. {', '.join(unmatched[:3])}")
    return groups


def _afew_files(root: Path) -> list[tuple[Path, str, int]]:
    """(file, official split folder, label) for both AFEW layouts."""
    missing = [folder for folder in ("train", "val") if not (root / folder).is_dir()]
    if missing:
        raise FileNotFoundError(f"{root}: expected subfolders train/ and val/ (missing {', '.join(missing)})")
    found = []
    classes = {str(k) for k in range(1, len(AFEW_CLASSES) + 1)}
    for folder in ("train", "val"):
        base = root / folder
        mats = sorted(f for d in base.iterdir() if d.is_dir()
                      for f in d.iterdir() if f.is_file() and f.suffix.lower() == ".mat")
        if mats:
            others = sorted({f.parent.name for f in mats} - classes)
            loose = sorted(p.name for p in base.iterdir()
                           if p.is_file() and p.suffix.lower() in (".mat", ".npy"))
            if others or loose:
                found_there = [f"folders {others}"] * bool(others) + [f"files {loose[:5]}"] * bool(loose)
                raise ValueError(f"{base}: the .mat layout keeps every matrix in a class folder 1–7; found "
                                 f"{' and '.join(found_there)}")
            found += [(f, folder, int(f.parent.name) - 1) for f in mats]
        else:
            found += [(f, folder, label_from_name(f, len(AFEW_CLASSES)))
                      for f in sorted_files(base, (".npy",))]
    return found


@register("afew", "import AFEW: train/ and val/ of .npy (label = last '_' token) or {1..7}/*.mat (key Y1)")
def import_afew(src: str, val_as: str = "test", shrinkage: float = 0.0, val_fraction: float = 0.1,
                split_seed: int = 0) -> SPDDataset:
    """Import AFEW matrices in either original layout, keeping the official split.

    Parameters
    ----------
    src : str
        Folder holding ``train/`` and ``val/``.
    val_as : {"test", "val"}
        Split name given to the official validation set.
    shrinkage : float
        Optional shrinkage γ towards the scaled identity.
    val_fraction : float
        Share of each training class moved to ``val`` (stratified, seeded by ``split_seed``);
        only with ``val_as="test"``, since ``val_as="val"`` already gives a validation split.
    split_seed : int
    """
    if val_as not in ("test", "val"):
        raise ValueError(f"afew: val_as must be 'test' or 'val', got {val_as!r}")
    if val_as == "val":
        val_fraction = 0.0
    root = Path(src).expanduser()
    entries = _afew_files(root)
    ids = [f.relative_to(root).with_suffix("").as_posix() for f, _, _ in entries]
    matrices = stack_matrices([f for f, _, _ in entries], ids, root, shrinkage)
    labels = [label for _, _, label in entries]
    splits = carve_validation(["train" if folder == "train" else val_as for _, folder, _ in entries],
                              labels, ids, val_fraction, split_seed)
    meta = DatasetMeta(name="afew", n=matrices.shape[-1], class_names=AFEW_CLASSES,
                       source=f"AFEW matrices imported from {src}",
                       licence="as licensed by the data owner (AFEW: EmotiW terms of use)",
                       provenance={"shrinkage": shrinkage, "official_val_as": val_as,
                                   "val_fraction": val_fraction, "split_seed": split_seed})
    return assemble(matrices, labels, ids, meta, splits=splits)
