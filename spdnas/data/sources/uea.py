"""Multivariate time series of the UEA archive (``.ts`` files) → shrunk covariance matrices.

The files are read directly: by default the copies bundled inside the ``aeon`` package
(located with ``importlib.util.find_spec``, without importing aeon), or any folder holding
``<Problem>_TRAIN.ts`` and ``<Problem>_TEST.ts`` (``root=...``). Each series of ``c``
channels gives the ``c × c`` Ledoit–Wolf covariance (``spdnas.geometry.covariance``). The
official train/test split is kept; ``val_fraction`` (default 0.1) carves a stratified, seeded
validation split out of the training set.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from spdnas.data.dataset import DatasetMeta, SPDDataset
from spdnas.data.registry import register
from spdnas.data.sources.common import assemble, carve_validation
from spdnas.geometry import covariance


@dataclass(frozen=True)
class UEAProblem:
    """A UEA problem the registry knows: archive name, source and licence notes."""

    problem: str
    source: str
    licence: str


PROBLEMS = {
    "japanese-vowels": UEAProblem(
        "JapaneseVowels",
        "UEA multivariate archive (timeseriesclassification.com); originally UCI Machine Learning "
        "Repository, Kudo, Toyama & Shimbo (1999). 9 speakers, 12 LPC cepstrum channels.",
        "UCI Machine Learning Repository: CC BY 4.0"),
    "basic-motions": UEAProblem(
        "BasicMotions",
        "UEA multivariate archive (timeseriesclassification.com): smart-watch accelerometer + "
        "gyroscope, 4 activities.",
        "UEA/UCR archive terms (free for research use, cite the archive)"),
}


@dataclass
class TSFile:
    """Contents of a ``.ts`` file: series (each shape (c, T_i)), labels, class names."""

    series: list[np.ndarray]
    labels: list[int]
    class_names: tuple[str, ...]


def bundled_folder(problem: str) -> Path:
    """Folder of a problem's ``.ts`` files inside the installed aeon package.

    Raises
    ------
    ModuleNotFoundError
        If aeon is not installed (``pip install 'spdnas[uea]'`` or pass ``root``).
    """
    spec = importlib.util.find_spec("aeon")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"UEA problem {problem}: the bundled files come with the 'aeon' "
                                  f"package, which is not installed (pip install 'spdnas[uea]'), or pass "
                                  f"root=<folder>")
    return Path(spec.origin).parent / "datasets" / "data" / problem


def read_ts(path: Path) -> TSFile:
    """Parse a multivariate ``.ts`` file (sktime/aeon format, no timestamps).

    Header lines start with ``@`` (``@classLabel true a b c`` gives the class names), ``#``
    lines are comments; after ``@data`` each line holds the channels separated by ``:``
    (values separated by ``,``) and the class label last.

    Raises
    ------
    ValueError
        Naming the file and line of anything unreadable (missing values included).
    """
    class_names: tuple[str, ...] = ()
    series, labels, in_data = [], [], False
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            words = line.split()
            key = words[0].lower()
            if key in ("@timestamps", "@classlabel") and (len(words) < 2 or words[1].lower() not in
                                                          ("true", "false")):
                raise ValueError(f"{path}:{number}: {words[0]} needs the value true or false, got {line!r}")
            if key == "@timestamps" and words[1].lower() == "true":
                raise ValueError(f"{path}:{number}: timestamped .ts files are not supported")
            if key == "@classlabel" and words[1].lower() == "true":
                class_names = tuple(words[2:])
            in_data = key == "@data"
            continue
        *channels, label = line.split(":")
        if label not in class_names:
            raise ValueError(f"{path}:{number}: class label {label!r} not among {class_names}")
        try:
            values = [np.array(channel.split(","), dtype=np.float64) for channel in channels]
        except ValueError:
            raise ValueError(f"{path}:{number}: non-numeric or missing ('?') values") from None
        if len({len(v) for v in values}) != 1 or not all(np.isfinite(v).all() for v in values):
            raise ValueError(f"{path}:{number}: channels differ in length or hold missing values")
        if series and len(values) != len(series[0]):
            raise ValueError(f"{path}:{number}: {len(values)} channels, the first series has "
                             f"{len(series[0])}")
        series.append(np.stack(values))
        labels.append(class_names.index(label))
    if not class_names or not series:
        raise ValueError(f"{path}: no @classLabel header or no data lines")
    return TSFile(series, labels, class_names)


def series_covariances(series: list[np.ndarray], shrinkage: float | str) -> torch.Tensor:
    """Covariance of each series (lengths may differ), batched by length.

    Parameters
    ----------
    series : list of ndarray, each shape (c, T_i)
    shrinkage : float or "ledoit-wolf"

    Returns
    -------
    Tensor, shape (len(series), c, c), float64
    """
    c = series[0].shape[0]
    out = torch.empty(len(series), c, c, dtype=torch.float64)
    lengths = np.array([s.shape[1] for s in series])
    for length in np.unique(lengths):
        index = np.flatnonzero(lengths == length)
        batch = torch.from_numpy(np.stack([series[i] for i in index]))
        out[torch.from_numpy(index)] = covariance(batch, shrinkage)
    return out


def build_uea(key: str, root: str | None = None, shrinkage: float | str = "ledoit-wolf",
              val_fraction: float = 0.1, split_seed: int = 0) -> SPDDataset:
    """Covariance dataset of a UEA problem with its official train/test split.

    Parameters
    ----------
    key : str
        Registry name (``"japanese-vowels"``, ``"basic-motions"``).
    root : str, optional
        Folder with ``<Problem>_TRAIN.ts`` and ``<Problem>_TEST.ts``; default: aeon's bundled copy.
    shrinkage : float or "ledoit-wolf"
    val_fraction : float
        Fraction of each training class moved to ``val`` (stratified, seeded); 0 keeps none
        (the dataset then has no validation split for an experiment to select on).
    split_seed : int
    """
    problem = PROBLEMS[key]
    folder = Path(root).expanduser() if root is not None else bundled_folder(problem.problem)
    parts = {split: read_ts(folder / f"{problem.problem}_{split.upper()}.ts") for split in ("train", "test")}
    if parts["train"].class_names != parts["test"].class_names:
        raise ValueError(f"{folder}: TRAIN and TEST files declare different class labels")
    channels = {split: part.series[0].shape[0] for split, part in parts.items()}
    if channels["train"] != channels["test"]:
        raise ValueError(f"{folder}: the series of {problem.problem}_TRAIN.ts have {channels['train']} "
                         f"channels, those of {problem.problem}_TEST.ts {channels['test']}")
    series = parts["train"].series + parts["test"].series
    labels = np.array(parts["train"].labels + parts["test"].labels)
    ids = [f"{split}-{i:04d}" for split in ("train", "test") for i in range(len(parts[split].labels))]
    splits = carve_validation([split for split in ("train", "test") for _ in parts[split].labels],
                              labels, ids, val_fraction, split_seed)
    matrices = series_covariances(series, shrinkage)
    meta = DatasetMeta(name=key, n=matrices.shape[-1], class_names=parts["train"].class_names,
                       source=problem.source, licence=problem.licence,
                       provenance={"files": str(folder), "covariance": f"per series, shrinkage {shrinkage}"})
    return assemble(matrices, labels, ids, meta, splits=splits)


for _key in PROBLEMS:
    register(_key, f"UEA {PROBLEMS[_key].problem} series → shrunk covariances (official split)")(
        partial(build_uea, _key))
