"""Helpers shared by the dataset builders: file-name labels, splits, assembling a dataset."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from spdnas.data.dataset import (
    DatasetMeta,
    SPDDataset,
    group_split,
    normalise_groups,
    parse_fractions,
    stratified_split,
)


def label_from_name(path: Path, num_classes: int) -> int:
    """Label encoded as the last ``_`` token of a file name (``walk_0012_3.npy`` → 3).

    Raises
    ------
    ValueError
        Naming the file if the token is not an integer in ``[0, num_classes)``.
    """
    bounds = "a class number" if num_classes >= 2**31 else f"(0–{num_classes - 1})"
    if "_" not in path.stem:  # e.g. files named by sample number: 007.npy is no label 7
        raise ValueError(f"{path}: expected the label {bounds} as the last '_' token of the "
                         "file name (name_<label>.npy), but the name has no '_'")
    token = path.stem.rsplit("_", 1)[-1]
    if not (token.isascii() and token.isdigit()):
        raise ValueError(f"{path}: expected the label {bounds} as the last '_' token of the file name, got "
                         f"{token!r}: labels are class numbers 0, 1, …, which class_names names in order")
    if int(token) >= num_classes:
        raise ValueError(f"{path}: expected the label {bounds} as the last '_' token of the "
                         f"file name, got {token!r}")
    return int(token)


def load_npy(path: Path) -> np.ndarray:
    """The array in a ``.npy`` file (no pickled objects).

    Raises
    ------
    ValueError
        Naming the file if it is empty, truncated or not a NumPy array file.
    """
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path}: not a readable NumPy .npy array ({err})") from None


def sorted_files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Files in ``folder`` ending in one of ``suffixes`` in any letter case (``.npy``, ``.NPY``),
    sorted by name; error if there are none, if other files in it are named like samples
    (``..._<label>.csv``: they would be left out without a word), or if a subfolder holds such files
    too (a class-per-folder layout would be imported in part, or not at all). Hidden folders and
    ``__MACOSX`` (an unzipped archive's resource forks) are not looked into."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    # "._x_0.npy": macOS's AppleDouble companions on USB or exFAT copies, not matrices
    files = sorted(f for f in folder.iterdir()
                   if f.is_file() and f.suffix.lower() in suffixes and not f.name.startswith("."))
    nested = sorted(d.name for d in folder.iterdir()
                    if d.is_dir() and not d.name.startswith((".", "__MACOSX"))
                    and any(f.is_file() and f.suffix.lower() in suffixes for f in d.iterdir()))
    if nested:
        raise ValueError(f"{folder}: subfolders ({', '.join(nested[:3])}{', ...' * (len(nested) > 3)}) hold "
                         f"{' or '.join(suffixes)} files too; this importer reads one flat folder of files "
                         "named ..._<label>: move them into one folder")
    others = sorted(f.name for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")
                    and f.suffix.lower() not in suffixes and re.search(r"_\d+$", f.stem))
    if others:
        listed = f"{', '.join(others[:3])}{', ...' * (len(others) > 3)}"
        raise ValueError(f"{folder}: {len(others)} file(s) named like samples (..._<label>) are not "
                         f"{' or '.join(suffixes)} files ({listed}), and would be left out: "
                         "convert them (numpy.save) or move them out of the folder")
    if not files:
        raise FileNotFoundError(f"{folder}: no {' or '.join(suffixes)} files")
    return files


def assemble(matrices: Tensor, labels: Sequence[int], sample_ids: Sequence[str], meta: DatasetMeta, *,
             splits: Sequence[str] | None = None, fractions=None, seed: int = 0,
             groups: Sequence[str | None] | None = None, split_by_group: bool = True) -> SPDDataset:
    """Build an :class:`SPDDataset`, drawing a seeded split when ``splits`` is None: whole groups
    to splits (:func:`~spdnas.data.dataset.group_split`) where samples have groups and
    ``split_by_group``, else stratified by class.

    Parameters
    ----------
    matrices : Tensor, shape (N, n, n)
    labels : sequence of int, length N
    sample_ids : sequence of str, length N
    meta : DatasetMeta
    splits : sequence of str, optional
        Given splits (e.g. an official train/test split).
    fractions : see :func:`parse_fractions`
    seed : int
    groups : sequence of str or None, optional
        Subject/group id per sample.
    split_by_group : bool
        Keep each group in one split (subject-wise evaluation); False draws a stratified split
        over samples and records the groups only.

    Raises
    ------
    ValueError
        If the samples are of fewer than 2 classes (nothing to classify).
    """
    labels = np.asarray(labels, dtype=np.int64)
    present = sorted(set(labels.tolist()))
    if len(present) < 2:
        found = f"only class {meta.class_names[present[0]]!r}" if present else "no samples"
        raise ValueError(f"{meta.name}: a classification dataset needs samples of at least 2 classes, "
                         f"found {found}")
    unused = [name for k, name in enumerate(meta.class_names) if k not in present]
    if unused:
        warnings.warn(f"{meta.name}: no sample of class(es) {_listed(unused)}: the network would have an "
                      "output that is never a target; leave them out of class_names unless that is meant",
                      stacklevel=2)
    groups = normalise_groups(groups)
    if splits is None and groups is not None and split_by_group:
        splits = group_split(labels, sample_ids, groups, parse_fractions(fractions), seed)
        how = "the split by group leaves"
        advice = "another split_seed or fractions may give every split every class"
    elif splits is None:
        splits = stratified_split(labels, sample_ids, parse_fractions(fractions), seed)
        how = "the stratified split leaves"
        advice = "the class has too few samples for every split to get one"
    else:
        how = "the given splits leave"
        advice = "a class missing from train is never learned, from val or test not measured"
    splits = np.asarray(splits)
    for split in map(str, np.unique(splits)):
        absent = [meta.class_names[k] for k in present if not (labels[splits == split] == k).any()]
        if absent:
            warnings.warn(f"{meta.name}: {how} {split!r} without class(es) {_listed(absent)}; {advice}",
                          stacklevel=2)
    return SPDDataset(matrices=matrices, labels=torch.from_numpy(labels), splits=splits,
                      sample_ids=np.asarray(sample_ids), meta=meta, groups=groups)


def _listed(names: Sequence[object]) -> str:
    return f"{', '.join(map(str, names[:5]))}{' …' * (len(names) > 5)}"


def carve_validation(splits: Sequence[str], labels: Sequence[int], sample_ids: Sequence[str],
                     val_fraction: float, seed: int) -> np.ndarray:
    """Move a stratified, seeded ``val_fraction`` of every class's ``train`` samples to ``val``.

    For sources with an official train/test split, so that an experiment has a validation split
    for model selection. Returns the new split names, shape ``(N,)``; ``val_fraction = 0``
    leaves them as they are.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    out = np.asarray(splits, dtype=object).copy()
    if val_fraction:
        train = np.flatnonzero(out == "train")
        out[train] = stratified_split(np.asarray(labels)[train], [sample_ids[i] for i in train],
                                      {"train": 1 - val_fraction, "val": val_fraction}, seed)
        if train.size and not (out[train] == "val").any():
            largest = int(np.bincount(np.asarray(labels)[train]).max())
            enough = math.floor(1e4 * 0.5 / largest + 1) / 1e4  # just above 0.5/largest: a tie goes to train
            raise ValueError(f"val_fraction={val_fraction} moves no sample to val: rounded per class, it "
                             f"takes none of at most {largest} training samples per class; give a larger "
                             f"val_fraction (≥ {enough:g} takes one from the largest class)")
    return out.astype(str)
