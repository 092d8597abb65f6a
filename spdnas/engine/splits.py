"""The splits of an experiment: train/val/test from the dataset, search halves from train."""

from __future__ import annotations

import inspect
import math
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from spdnas.config import SEARCH_SPLITS, DataConfig
from spdnas.data import (
    SPLITS,
    DatasetMeta,
    SampleIndex,
    SPDDataset,
    group_split,
    read_sample_index,
    stratified_split,
)
from spdnas.data.dataset import split_sizes
from spdnas.data.registry import builders
from spdnas.data.storage import Folder
from spdnas.engine.batches import TensorData, num_batches, require_steps


@dataclass
class ExperimentData:
    """Everything an experiment trains and tests on; search-train/search-val come from
    ``train`` only, so the test split is never seen by the search or model selection;
    ``search_split`` says how (``"stratified"`` or ``"group"``, :func:`search_split_mode`).
    ``data_sha256`` identifies the dataset read from ``data.uri``
    (:func:`~spdnas.data.storage.content_digest`; None for data made in memory)."""

    dataset: SPDDataset
    train: TensorData
    val: TensorData
    test: TensorData
    search_train: TensorData
    search_val: TensorData
    data_sha256: str | None = None
    search_split: str = "stratified"

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def n(self) -> int:
        return self.dataset.n


def _tensors(dataset: SPDDataset) -> TensorData:
    return TensorData(dataset.matrices, dataset.labels)


NEEDS_ALL = "an experiment needs train, val and test rows"


def _remedy(meta: DatasetMeta) -> str:
    """How to make the dataset again with all three splits, by the builder that made it."""
    builder = meta.provenance.get("builder")
    accepted = inspect.signature(builders()[builder].build).parameters if builder in builders() else {}
    if "val_fraction" in accepted:
        return (f"make it again with a validation share of train, e.g. `spdnas data make {builder} OUT "
                f"--param val_fraction=0.1`")
    if "fractions" in accepted:
        return (f"make it again with three splits, e.g. `spdnas data make {builder} OUT "
                f"--param fractions=[0.5,0.25,0.25]`")
    return NEEDS_ALL


def require_splits(counts: Mapping[str, Sequence[int]], meta: DatasetMeta, where: str = "") -> None:
    """Refuse a dataset (or a worker's part of one) without rows in train, val or test.

    Parameters
    ----------
    counts : mapping split name → rows per class (a manifest's ``counts``)
    meta : DatasetMeta
        Names the dataset and the builder whose parameters fix it.
    where : str
        Appended to the dataset's name in the message, e.g. " (this worker's shard)"; then the
        message names no builder parameter (the dataset itself has every split).

    Raises
    ------
    ValueError
        Naming the first empty split and the parameter that gives it rows.
    """
    present = [total for total in map(sum, zip(*counts.values(), strict=False)) if total]
    for split in SPLITS:
        if sum(counts.get(split, ())) == 0:
            fix = _remedy(meta) if split == "val" and not where else NEEDS_ALL
            if present and max(present) < len(SPLITS) and not where:
                fix = (f"no class has more than {max(present)} sample(s), and a stratified split gives each "
                       f"split a share of every class: each class needs more samples; {fix}")
            raise ValueError(f"dataset {meta.name!r}{where} has no {split!r} rows; {fix}")


def require_full_batches(counts: Mapping[str, Sequence[int]], search_val_fraction: float,
                         search_batch_size: int | None = None, train_batch_size: int | None = None,
                         shard_workers: int = 0, halves: Sequence[tuple[int, int]] | None = None) -> None:
    """Refuse, from the split counts alone, a search or retraining whose epochs hold no full batch
    (before Ray workers start: raised in a worker, it would cost a worker group's start).

    With sharded data the search halves depend on which rows each worker gets (per class,
    each worker divides its own shard), so only what every layout needs is checked: each half
    must be able to hold ``search_batch_size`` rows over all workers (each needs
    ``batch / workers``). A worker's part ``m`` of a class gives ``f · m`` rounded (half down) to
    search-val, at most ``f · m + 1/2``, so over ``w`` workers a class gives search-val at most
    ``f · n + w / 2`` of its ``n`` rows (search-train likewise); halves cut by group are drawn
    over all the workers' rows, so ``halves`` are their totals. The workers check their own shards.

    Parameters
    ----------
    counts : mapping split name → rows per class (a manifest's ``counts``)
    search_val_fraction : float
        Share of each class of ``train`` that goes to search-val (as :func:`split_experiment_data`).
    search_batch_size, train_batch_size : int, optional
        Check the search halves, the retraining's ``train`` split, or both.
    shard_workers : int
        The number of workers with ``distributed.data=shard`` (0: every worker reads all rows).
    halves : sequence of (int, int), optional
        The (search-train, search-val) sizes the runs will draw, where the counts do not give them
        (halves cut by group, :func:`grouped_half_sizes`); each pair is checked.

    Raises
    ------
    ValueError
        As the epoch loops would at their first epoch.
    """
    train = [int(c) for c in counts.get("train", ())]
    if search_batch_size is not None and shard_workers:
        if halves is None:
            most = [sum(min(n, math.floor(share * n + shard_workers / 2 + 1e-9)) for n in train)
                    for share in (1.0 - search_val_fraction, search_val_fraction)]
        else:
            most = [min(half) for half in zip(*halves, strict=True)]
        if min(most) < search_batch_size:
            raise ValueError(f"no full batch of {search_batch_size} in a search epoch: of the {sum(train)} "
                             f"train samples, spread over {shard_workers} workers' shards, search-train "
                             f"holds at most {most[0]} and search-val at most {most[1]} (with "
                             f"data.search_val_fraction={search_val_fraction:g}): lower the batch size, "
                             "use more data or distributed.data=replicate")
    elif search_batch_size is not None:
        if halves is None:
            weights = np.array([1.0 - search_val_fraction, search_val_fraction])
            per_class = sum((split_sizes(c, weights) for c in train), np.zeros(2, dtype=int))
            halves = [(int(per_class[0]), int(per_class[1]))]
        for search_train, search_val in halves:
            steps = min(num_batches(search_train, search_batch_size),
                        num_batches(search_val, search_batch_size))
            require_steps(steps, search_batch_size, sharded=False, search_train=search_train,
                          search_val=search_val)
    if train_batch_size is not None:
        require_steps(num_batches(sum(train), train_batch_size), train_batch_size, sharded=False,
                      train=sum(train))


def search_split_mode(mode: str, index: SampleIndex) -> str:
    """``"group"`` or ``"stratified"``: how ``train`` is cut into search halves.

    ``auto`` cuts by group when the dataset itself is split by group (every row of ``train``
    has a group, ``train`` holds at least two, and no group has rows in two of train/val/test),
    so that search-val, like test, holds only subjects the weights were not trained on.

    Raises
    ------
    ValueError
        For an unknown mode, or ``group`` where ``train`` has fewer than two groups.
    """
    if mode not in SEARCH_SPLITS:
        raise ValueError(f"data.search_split must be one of {SEARCH_SPLITS}, got {mode!r}")
    if mode == "stratified":
        return mode
    groups = index.groups if index.groups is not None else np.full(len(index.splits), None, dtype=object)
    in_train = index.splits == "train"
    train_groups = {g for g in groups[in_train] if g is not None}
    if mode == "group":
        if len(train_groups) < 2:
            raise ValueError(f"data.search_split=group needs at least two groups (subjects) in the train "
                             f"split, found {len(train_groups)}: give the samples groups, or use "
                             "data.search_split=stratified")
        return mode
    if len(train_groups) < 2 or any(g is None for g in groups[in_train]):
        return "stratified"
    return "group" if index.group_counts()["in_several_splits"] == 0 else "stratified"


def search_halves(index: SampleIndex, search_val_fraction: float, seed: int, mode: str,
                  class_names: Sequence[str] = ()) -> dict[str, str]:
    """Search-train/search-val of the ``train`` rows of ``index``, seeded: sample id → "train"/"val".

    ``stratified``: a share of each class (:func:`~spdnas.data.stratified_split`); ``group``:
    whole groups (:func:`~spdnas.data.group_split`), with a warning where a half lacks a class.
    """
    in_train = index.splits == "train"
    ids, labels = index.sample_ids[in_train], index.labels[in_train]
    fractions = {"train": 1.0 - search_val_fraction, "val": search_val_fraction}
    if mode == "group":
        halves = group_split(labels, ids, index.groups[in_train], fractions, seed)
        for half in ("train", "val"):
            absent = sorted(set(labels.tolist()) - set(labels[halves == half].tolist()))
            if absent:
                names = [class_names[k] if k < len(class_names) else str(k) for k in absent]
                warnings.warn(f"the search halves drawn by group leave search-{half} without class(es) "
                              f"{', '.join(names[:5])}{' …' * (len(names) > 5)}; another data.split_seed "
                              "or data.search_split=stratified gives every half every class", stacklevel=2)
    else:
        halves = stratified_split(labels, ids, fractions, seed)
    return dict(zip(ids.tolist(), halves.tolist(), strict=True))


def grouped_half_sizes(data: DataConfig, manifest: Mapping,
                       seeds: Iterable[int]) -> list[tuple[int, int]] | None:
    """The (search-train, search-val) sizes each of ``seeds`` draws where the search halves are cut
    by group, from the dataset's sample index (its matrices are not read); None where they are
    cut per class, as :func:`require_full_batches` computes from the split counts.

    Raises
    ------
    ValueError
        For ``data.search_split=group`` on a dataset without two groups in ``train``.
    """
    if data.search_split == "stratified" or (data.search_split == "auto" and "groups" not in manifest):
        return None
    index = read_sample_index(data.uri)
    if search_split_mode(data.search_split, index) != "group":
        return None
    sizes = []
    for seed in seeds:
        halves = Counter(search_halves(index, data.search_val_fraction, seed, "group").values())
        sizes.append((halves["train"], halves["val"]))
    return sizes


def stored_splits(data: DataConfig,
                  seeds: Iterable[int] | None) -> tuple[dict, list[tuple[int, int]] | None]:
    """The manifest of the dataset at ``data.uri``, refused (:func:`require_splits`) without
    train, val or test rows, and the search halves each of ``seeds`` draws where they are cut by
    group (:func:`grouped_half_sizes`; None with ``seeds`` None: checks use the per-class sizes).
    What every check before Ray workers start reads."""
    manifest = Folder(data.uri).read_manifest()
    require_splits(manifest["counts"], DatasetMeta.from_dict(manifest["meta"]))
    return manifest, None if seeds is None else grouped_half_sizes(data, manifest, seeds)


def split_experiment_data(dataset: SPDDataset, search_val_fraction: float, seed: int, mode: str = "auto",
                          gather: Callable[[SampleIndex], SampleIndex] | None = None) -> ExperimentData:
    """Train/val/test from the dataset's own splits; a seeded division of train into
    search-train and search-val (a function of sample ids, labels, groups and seed only).

    Parameters
    ----------
    dataset : SPDDataset
        The whole dataset, or one worker's shard of it.
    search_val_fraction : float
        Share of ``train`` in search-val.
    seed : int
    mode : {"auto", "stratified", "group"}
        See :func:`search_split_mode`.
    gather : callable, optional
        For a shard: the index of every worker's rows (a collective call, made by every worker
        unless ``mode`` is ``stratified``), so that a group's rows fall in one half on all
        workers. A shard's stratified halves are drawn from its own rows.
    """
    require_splits(dataset.counts(), dataset.meta)
    train = dataset.subset("train")
    index = SampleIndex.of(dataset)
    if gather is not None and mode != "stratified":
        index = gather(index)
    mode = search_split_mode(mode, index)
    halves = search_halves(index if mode == "group" else SampleIndex.of(train), search_val_fraction, seed,
                           mode, dataset.meta.class_names)
    half = np.array([halves[i] for i in train.sample_ids.tolist()], dtype=str)
    return ExperimentData(
        dataset=dataset, train=_tensors(train), val=_tensors(dataset.subset("val")),
        test=_tensors(dataset.subset("test")),
        search_train=_tensors(train.select(half == "train")),
        search_val=_tensors(train.select(half == "val")),
        search_split=mode)
