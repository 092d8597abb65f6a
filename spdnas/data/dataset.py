"""In-memory SPD dataset, its metadata, and deterministic stratified splits."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from spdnas.data.schema import SCHEMA_VERSION, SPLITS


@dataclass(frozen=True)
class DatasetMeta:
    """Dataset-level metadata, stored in the manifest and in every Parquet file.

    Parameters
    ----------
    name : str
        Short dataset name (e.g. ``"radar-synth"``).
    n : int
        Matrix size: every sample is an ``n × n`` SPD matrix.
    class_names : tuple of str
        Class names; label ``k`` means ``class_names[k]``.
    source : str
        Where the data came from (generator, original files, package).
    licence : str
        Licence of the data, as far as it is known.
    provenance : dict
        How the dataset was made: builder, parameters, covariance estimator, versions.
    schema_version : int
        Version of the on-disk schema (see :mod:`spdnas.data.schema`).
    """

    name: str
    n: int
    class_names: tuple[str, ...]
    source: str = ""
    licence: str = ""
    provenance: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        if self.n < 1:
            raise ValueError(f"DatasetMeta: n must be positive, got {self.n}")
        if not self.class_names:
            raise ValueError("DatasetMeta: class_names must not be empty")

    def to_dict(self) -> dict:
        """Plain-JSON form (lists instead of tuples)."""
        return {"name": self.name, "n": self.n, "class_names": list(self.class_names),
                "source": self.source, "licence": self.licence, "provenance": self.provenance,
                "schema_version": self.schema_version}

    @classmethod
    def from_dict(cls, data: Mapping) -> DatasetMeta:
        """Inverse of :meth:`to_dict`; ``KeyError`` names a missing field."""
        return cls(name=data["name"], n=int(data["n"]), class_names=tuple(data["class_names"]),
                   source=data.get("source", ""), licence=data.get("licence", ""),
                   provenance=dict(data.get("provenance", {})),
                   schema_version=int(data.get("schema_version", SCHEMA_VERSION)))


PAPER_FRACTIONS = {"train": 0.5, "val": 0.25, "test": 0.25}


def parse_fractions(fractions: Mapping[str, float] | Sequence[float] | None) -> dict[str, float]:
    """Split fractions as a dict; a sequence means (train, val, test); None → 50/25/25."""
    if fractions is None:
        return dict(PAPER_FRACTIONS)
    try:
        if isinstance(fractions, Mapping):
            return {str(k): float(v) for k, v in fractions.items()}
        if isinstance(fractions, str) or len(fractions) != 3:
            raise TypeError
        return dict(zip(("train", "val", "test"), (float(f) for f in fractions), strict=True))
    except (TypeError, ValueError):
        raise ValueError(f"fractions must be a mapping split → fraction or three numbers (train, val, "
                         f"test), e.g. [0.5, 0.25, 0.25], got {fractions!r}") from None


def split_sizes(size: int, weights: np.ndarray) -> np.ndarray:
    """How :func:`stratified_split` divides one class of ``size`` samples: ``weights · size``
    rounded down, the rest by largest remainder (ties to the earlier split); shape ``(splits,)``."""
    exact = weights * size
    counts = np.floor(exact).astype(int)
    remainder_order = np.argsort(-(exact - counts), kind="stable")
    counts[remainder_order[: size - counts.sum()]] += 1
    return counts


def stratified_split(labels: np.ndarray, sample_ids: Sequence[str], fractions: Mapping[str, float],
                     seed: int) -> np.ndarray:
    """Seeded, stratified assignment of samples to splits.

    Within each class the samples are ordered by ``sample_id`` and then permuted with a
    generator seeded by ``seed``, so the result depends only on (ids, labels, seed), not on
    row order. Per-class counts follow ``fractions`` by largest remainder.

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
    sample_ids : sequence of str, length N
    fractions : mapping split name → fraction, or three numbers (train, val, test)
        Non-negative, summing to 1, e.g. ``{"train": 0.5, "val": 0.25, "test": 0.25}`` or
        ``[0.5, 0.25, 0.25]``.
    seed : int

    Returns
    -------
    ndarray of str, shape (N,)
        The split name of every sample.
    """
    names, weights = _split_weights(fractions, "stratified_split")
    labels = np.asarray(labels)
    ids = np.asarray(sample_ids, dtype=str)
    rng = np.random.default_rng(seed)
    out = np.empty(len(labels), dtype=object)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        members = members[np.argsort(ids[members], kind="stable")]
        members = members[rng.permutation(len(members))]
        bounds = np.concatenate(([0], np.cumsum(split_sizes(len(members), weights))))
        for name, lo, hi in zip(names, bounds[:-1], bounds[1:], strict=True):
            out[members[lo:hi]] = name
    return out.astype(str)


def normalise_groups(groups) -> np.ndarray | None:
    """Group ids as strings, a missing one (None, NaN, ``pandas.NA``) as None; None when no
    sample has a group. Shape (N,), dtype object."""
    if groups is None:
        return None

    def one(group):
        if group is None or (isinstance(group, float | np.floating) and np.isnan(group)):
            return None
        if type(group).__name__ in ("NAType", "NaTType"):  # pandas' missing values
            return None
        return str(group)

    out = np.array([one(g) for g in np.asarray(groups, dtype=object).ravel()], dtype=object)
    return None if all(g is None for g in out) else out


GROUP_SPLIT_ORDERS = 8
"""How many seeded orders :func:`group_split` tries, keeping the best split."""


def _assign_groups(order: np.ndarray, per_group: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Split index of each group, assigned greedily in ``order`` (see :func:`group_split`).

    ``per_group`` is ``(groups, classes)`` sample counts, ``weights`` the split fractions."""
    need = weights[:, None] * per_group.sum(0)[None, :]  # (splits, classes) still to fill
    choice = np.empty(len(per_group), dtype=int)
    groups_in = np.zeros(len(weights), dtype=int)
    for left, group in zip(range(len(order), 0, -1), order, strict=True):
        fill = np.minimum(per_group[group][None, :], np.maximum(need, 0.0)).sum(1)
        ranked = np.lexsort((np.arange(len(weights)), -need.sum(1), -fill))
        empty = [split for split in ranked if weights[split] > 0 and not groups_in[split]]
        split = int(empty[0] if len(empty) >= left else ranked[0])
        choice[group] = split
        groups_in[split] += 1
        need[split] -= per_group[group]
    return choice


def _split_quality(choice: np.ndarray, per_group: np.ndarray, sizes: np.ndarray,
                   weights: np.ndarray) -> tuple[int, float]:
    """(splits of positive fraction × classes without a sample, largest |count − share|): lower is better."""
    counts = np.zeros((len(weights), per_group.shape[1]))
    np.add.at(counts, choice, per_group)
    missing = int(((counts == 0) & (weights[:, None] > 0)).sum())
    deviation = float(np.abs(counts.sum(1) - weights * sizes.sum()).max())
    return missing, deviation


def group_split(labels: np.ndarray, sample_ids: Sequence[str], groups: Sequence[str | None],
                fractions: Mapping[str, float], seed: int) -> np.ndarray:
    """Seeded assignment of whole groups (subjects, sessions) to splits, so that no group has
    samples in two splits.

    The groups are ordered by id and then, with a generator seeded by ``seed``, by their size
    times a random factor ``exp(0.5 · N(0, 1))``: larger groups first, so that the smaller ones fill
    the gaps, in an order that another seed changes. Each group in turn goes to the split whose
    unmet share of the group's classes it fills most (a split's share of class ``c`` is
    ``fractions[s]`` times the samples of ``c``), ties to the split furthest below its share of
    all samples, then to the split named first; the last groups go to splits still without one.
    Of :data:`GROUP_SPLIT_ORDERS` such seeded orders the split with the fewest (split, class)
    pairs without a sample is kept, then the one whose counts are closest to the fractions. So
    splits tend to get every class (not always where some assignment would), and sample counts
    follow ``fractions`` to within about one group's size (at worst about two). A sample without
    a group (None) is a group of its own.

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
    sample_ids : sequence of str, length N
    groups : sequence of str or None, length N
    fractions : mapping split name → fraction, as for :func:`stratified_split`
    seed : int

    Returns
    -------
    ndarray of str, shape (N,)

    Raises
    ------
    ValueError
        If a split of positive fraction would get no group (fewer groups than such splits).
    """
    names, weights = _split_weights(fractions, "group_split")
    ids = np.asarray(sample_ids, dtype=str)
    if not len(ids):
        raise ValueError("group_split: no samples")
    groups = normalise_groups(groups)
    if groups is None:
        groups = np.full(len(ids), None, dtype=object)
    if not len(labels) == len(ids) == len(groups):
        raise ValueError(f"group_split: {len(labels)} labels, {len(ids)} ids and {len(groups)} groups")
    keys = np.array([f"g:{g}" if g is not None else f"s:{i}" for g, i in zip(groups, ids, strict=True)])
    unique, inverse, sizes = np.unique(keys, return_inverse=True, return_counts=True)
    _, classes = np.unique(np.asarray(labels), return_inverse=True)
    per_group = np.zeros((len(unique), int(classes.max()) + 1))
    np.add.at(per_group, (inverse, classes), 1)
    rng = np.random.default_rng(seed)
    candidates = []
    for _ in range(GROUP_SPLIT_ORDERS):
        order = rng.permutation(len(unique))
        jitter = np.exp(0.5 * rng.standard_normal(len(order)))
        order = order[np.argsort(-sizes[order] * jitter, kind="stable")]
        candidates.append(_assign_groups(order, per_group, weights))
    # the fewest (split, class) pairs without a sample, then the counts closest to the fractions
    choice = min(candidates, key=lambda c: _split_quality(c, per_group, sizes, weights))
    assigned = np.bincount(choice, weights=sizes, minlength=len(names))
    empty = [name for name, weight, count in zip(names, weights, assigned, strict=True)
             if weight > 0 and not count]
    if empty:
        raise ValueError(f"group_split: {len(unique)} groups of {len(ids)} samples (the largest holds "
                         f"{sizes.max()}) leave split(s) {', '.join(empty)} without a group; fractions "
                         f"{dict(zip(names, weights.tolist(), strict=True))} need more groups")
    return np.asarray(names, dtype=object)[choice[inverse]].astype(str)


def _split_weights(fractions: Mapping[str, float] | Sequence[float],
                   caller: str) -> tuple[list[str], np.ndarray]:
    """Split names and fractions (a mapping, or three numbers as :func:`parse_fractions` reads
    them), checked: known names, ≥ 0, summing to 1."""
    fractions = parse_fractions(fractions)
    names = list(fractions)
    weights = np.array([float(fractions[s]) for s in names])
    if any(s not in SPLITS for s in names):
        raise ValueError(f"{caller}: split names must be among {SPLITS}, got {names}")
    if not np.isfinite(weights).all() or (weights < 0).any() or abs(weights.sum() - 1.0) > 1e-9:
        raise ValueError(f"{caller}: fractions must be ≥ 0 and sum to 1, got {dict(fractions)}")
    return names, weights


@dataclass(frozen=True)
class SampleIndex:
    """A dataset's rows without their matrices: ids, labels, splits and groups, shape (N,) each
    (what drawing splits needs). ``groups`` holds str or None entries, or is None when no row has
    a group.
    """

    sample_ids: np.ndarray
    labels: np.ndarray
    splits: np.ndarray
    groups: np.ndarray | None

    @classmethod
    def of(cls, dataset: SPDDataset) -> SampleIndex:
        return cls(dataset.sample_ids, dataset.labels.numpy(), dataset.splits, dataset.groups)

    @classmethod
    def merged(cls, parts: Sequence[SampleIndex]) -> SampleIndex:
        """The rows of several workers' shards as one index."""
        groups = [p.groups if p.groups is not None else np.full(len(p.sample_ids), None, dtype=object)
                  for p in parts]
        return cls(np.concatenate([p.sample_ids for p in parts]), np.concatenate([p.labels for p in parts]),
                   np.concatenate([p.splits for p in parts]), normalise_groups(np.concatenate(groups)))

    def group_counts(self) -> dict | None:
        """Distinct groups per split present and how many groups have samples in more than one
        split (0 for a subject-wise split): ``{"per_split": {split: int}, "in_several_splits": int}``;
        None without groups. Samples without a group are not counted."""
        if self.groups is None:
            return None
        has = np.array([g is not None for g in self.groups])
        per_split = {split: {str(g) for g in self.groups[has & (self.splits == split)]} for split in SPLITS
                     if (self.splits == split).any()}
        splits_of = Counter(group for members in per_split.values() for group in members)
        return {"per_split": {split: len(members) for split, members in per_split.items()},
                "in_several_splits": sum(1 for times in splits_of.values() if times > 1)}


@dataclass
class SPDDataset:
    """A labelled set of SPD matrices held in memory.

    Parameters
    ----------
    matrices : Tensor, shape (N, n, n)
        Symmetric positive definite matrices (float64 by default, float32 allowed).
    labels : LongTensor, shape (N,)
        Class indices in ``[0, len(meta.class_names))``.
    splits : ndarray of str, shape (N,)
        ``"train"``, ``"val"`` or ``"test"`` per sample.
    sample_ids : ndarray of str, shape (N,)
        Stable, unique sample identifiers.
    meta : DatasetMeta
    groups : ndarray of str (or None entries), shape (N,), optional
        Subject/group identifiers, stored as strings (other values are converted by ``str``); None,
        NaN or ``pandas.NA`` marks a sample without a group.
    """

    matrices: Tensor
    labels: Tensor
    splits: np.ndarray
    sample_ids: np.ndarray
    meta: DatasetMeta
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.matrices, Tensor):  # a NumPy array or nested lists
            self.matrices = torch.as_tensor(np.asarray(self.matrices))
        if self.labels is not None and not isinstance(self.labels, Tensor):
            given = np.asarray(self.labels)
            if given.size and not (np.issubdtype(given.dtype, np.number) or given.dtype == bool):
                raise ValueError(f"SPDDataset: labels must be class indices 0, 1, …, which meta.class_names "
                                 f"names in order; got labels such as {str(given.flat[0])!r} (numbers from "
                                 "names: [class_names.index(name) for name in names])")
        labels = self.labels if isinstance(self.labels, Tensor) else torch.as_tensor(np.asarray(self.labels))
        if labels.is_floating_point():
            bad = torch.nonzero(~torch.isfinite(labels) | (labels != torch.round(labels))).flatten()
            if len(bad):
                raise ValueError(f"SPDDataset: labels must be whole numbers (class indices), got "
                                 f"{labels[bad[0]].item()!r} at row {int(bad[0])}")
        self.labels = labels.to(torch.long)
        self.splits = np.asarray(self.splits, dtype=str)
        self.sample_ids = np.asarray(self.sample_ids, dtype=str)
        self.groups = normalise_groups(self.groups)
        size = self.matrices.shape[0] if self.matrices.dim() == 3 else -1
        if self.matrices.dim() != 3 or self.matrices.shape[1:] != (self.meta.n, self.meta.n):
            raise ValueError(f"SPDDataset: matrices must have shape (N, {self.meta.n}, {self.meta.n}), "
                             f"got {tuple(self.matrices.shape)}")
        for name in ("labels", "splits", "sample_ids", "groups"):
            value = getattr(self, name)
            if value is not None and len(value) != size:
                raise ValueError(f"SPDDataset: {name} has {len(value)} entries for {size} matrices")

    def __len__(self) -> int:
        return int(self.matrices.shape[0])

    @property
    def n(self) -> int:
        """Matrix size."""
        return self.meta.n

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(meta.class_names)``)."""
        return len(self.meta.class_names)

    def select(self, index: np.ndarray | Tensor) -> SPDDataset:
        """The samples at ``index`` (integer positions or a boolean mask of shape (N,))."""
        index = torch.as_tensor(np.asarray(index))
        if index.dtype == torch.bool:
            index = torch.nonzero(index).flatten()
        positions = index.numpy()
        return replace(self, matrices=self.matrices[index], labels=self.labels[index],
                       splits=self.splits[positions], sample_ids=self.sample_ids[positions],
                       groups=None if self.groups is None else self.groups[positions])

    def subset(self, split: str) -> SPDDataset:
        """The samples of one split (``"train"``, ``"val"`` or ``"test"``)."""
        if split not in SPLITS:
            raise ValueError(f"SPDDataset.subset: unknown split {split!r}; expected one of {SPLITS}")
        return self.select(self.splits == split)

    def with_stratified_split(self, fractions: Mapping[str, float], seed: int) -> SPDDataset:
        """A copy whose splits are re-drawn by :func:`stratified_split`."""
        splits = stratified_split(self.labels.numpy(), self.sample_ids, fractions, seed)
        return replace(self, splits=splits)

    def with_group_split(self, fractions: Mapping[str, float], seed: int) -> SPDDataset:
        """A copy whose splits are re-drawn by :func:`group_split` (no group in two splits)."""
        if self.groups is None:
            raise ValueError(f"{self.meta.name}: no sample has a group; give groups or use "
                             "with_stratified_split")
        splits = group_split(self.labels.numpy(), self.sample_ids, self.groups, fractions, seed)
        return replace(self, splits=splits)

    def group_counts(self) -> dict | None:
        """:meth:`SampleIndex.group_counts` of the dataset's rows."""
        return SampleIndex.of(self).group_counts()

    def counts(self) -> dict[str, list[int]]:
        """Samples per class in each split present: ``{split: [count of class 0, ...]}``."""
        labels = self.labels.numpy()
        return {split: np.bincount(labels[self.splits == split], minlength=self.num_classes).tolist()
                for split in SPLITS if (self.splits == split).any()}
