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

from pathlib import Path

import numpy as np
import torch

from spdnas.data.dataset import DatasetMeta, SPDDataset
from spdnas.data.registry import register
from spdnas.data.sources.common import assemble, carve_validation, label_from_name, sorted_files
from spdnas.data.validation import check_finite_symmetric, shrink_to_identity

HDM05_CLASSES = 117
AFEW_CLASSES = ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
MAT_KEY = "Y1"


def load_matrix(path: Path) -> np.ndarray:
    """One square matrix from ``.npy`` or ``.mat`` (key ``Y1``), real part, float64, shape (n, n)."""
    if path.suffix == ".mat":
        from scipy.io import loadmat

        try:
            content = loadmat(path)
        except (NotImplementedError, ValueError) as err:
            raise ValueError(f"{path}: cannot read .mat file ({err}); MATLAB v7.3 files are not "
                             f"supported, re-save with -v7") from None
        if MAT_KEY not in content:
            names = sorted(k for k in content if not k.startswith("_"))
            raise ValueError(f"{path}: no variable {MAT_KEY!r} (found {names})")
        matrix = content[MAT_KEY]
    else:
        matrix = np.load(path)
    matrix = np.real(np.asarray(matrix)).astype(np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"{path}: expected a square matrix, got shape {matrix.shape}")
    return matrix


def stack_matrices(files: list[Path], ids: list[str], source: Path, shrinkage: float) -> torch.Tensor:
    """Load, check and symmetrise matrices from ``files``.

    Returns
    -------
    Tensor, shape (N, n, n), float64

    Raises
    ------
    ValueError
        Naming the file whose size differs from the first file's.
    DatasetValidationError
        Naming the sample id (the file's relative path) of a non-finite or asymmetric matrix.
    """
    matrices = []
    for path in files:
        matrix = load_matrix(path)
        if matrices and matrix.shape != matrices[0].shape:
            raise ValueError(f"{path}: shape {matrix.shape} differs from {files[0]} ({matrices[0].shape})")
        matrices.append(matrix)
    stacked = np.stack(matrices)
    x = check_finite_symmetric(stacked, np.asarray(ids), file=str(source), check_symmetry=True)
    x = 0.5 * (x + x.mT)
    if shrinkage:
        x = shrink_to_identity(x, torch.full((len(x),), float(shrinkage)))
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
    files = sorted_files(Path(src), "*.npy")
    labels = [label_from_name(f, HDM05_CLASSES) for f in files]
    ids = [f.stem for f in files]
    matrices = stack_matrices(files, ids, Path(src), shrinkage)
    meta = DatasetMeta(name="hdm05", n=matrices.shape[-1],
                       class_names=tuple(f"class-{k}" for k in range(HDM05_CLASSES)),
                       source=f"HDM05 .npy covariances imported from {src}",
                       licence="as licensed by the data owner (HDM05: MPI Informatik terms of use)",
                       provenance={"shrinkage": shrinkage})
    return assemble(matrices, labels, ids, meta, fractions=fractions, seed=split_seed)


def _afew_files(root: Path) -> list[tuple[Path, str, int]]:
    """(file, official split folder, label) for both AFEW layouts."""
    missing = [folder for folder in ("train", "val") if not (root / folder).is_dir()]
    if missing:
        raise FileNotFoundError(f"{root}: expected subfolders train/ and val/ (missing {', '.join(missing)})")
    found = []
    for folder in ("train", "val"):
        base = root / folder
        mats = sorted(base.glob("[1-7]/*.mat"))
        if mats:
            found += [(f, folder, int(f.parent.name) - 1) for f in mats]
        else:
            found += [(f, folder, label_from_name(f, len(AFEW_CLASSES)))
                      for f in sorted_files(base, "*.npy")]
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
    root = Path(src)
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
