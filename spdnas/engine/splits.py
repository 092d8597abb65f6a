"""The splits of an experiment: train/val/test from the dataset, search halves from train."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from spdnas.data import SPLITS, DatasetMeta, SPDDataset, stratified_split
from spdnas.data.dataset import split_sizes
from spdnas.data.registry import builders
from spdnas.engine.batches import TensorData, num_batches, require_steps


@dataclass
class ExperimentData:
    """Everything an experiment trains and tests on; search-train/search-val come from
    ``train`` only, so the test split is never seen by the search or model selection.
    ``data_sha256`` identifies the dataset read from ``data.uri``
    (:func:`~spdnas.data.storage.content_digest`; None for data made in memory)."""

    dataset: SPDDataset
    train: TensorData
    val: TensorData
    test: TensorData
    search_train: TensorData
    search_val: TensorData
    data_sha256: str | None = None

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
                         sharded: bool = False) -> None:
    """Refuse, from the split counts alone, a search or retraining whose epochs hold no full batch
    (before Ray workers start: raised in a worker, it would cost a worker group's start).

    With ``sharded`` data every worker divides its own shard into search halves, so only what
    every layout needs is checked: ``2 · search_batch_size`` train rows in all (each worker needs
    ``batch / workers`` rows in each half); the workers check their own shards.

    Parameters
    ----------
    counts : mapping split name → rows per class (a manifest's ``counts``)
    search_val_fraction : float
        Share of each class of ``train`` that goes to search-val (as :func:`split_experiment_data`).
    search_batch_size, train_batch_size : int, optional
        Check the search halves, the retraining's ``train`` split, or both.
    sharded : bool
        ``distributed.data=shard``.

    Raises
    ------
    ValueError
        As the epoch loops would at their first epoch.
    """
    train = [int(c) for c in counts.get("train", ())]
    if search_batch_size is not None and sharded:
        if sum(train) < 2 * search_batch_size:
            raise ValueError(f"no full batch of {search_batch_size} in a search epoch: the search halves "
                             f"of the {sum(train)} train samples, spread over the workers' shards, cannot "
                             f"both hold one (needs {2 * search_batch_size}): lower the batch size or use "
                             "more data")
    elif search_batch_size is not None:
        weights = np.array([1.0 - search_val_fraction, search_val_fraction])
        halves = sum((split_sizes(c, weights) for c in train), np.zeros(2, dtype=int))
        search_train, search_val = (int(h) for h in halves)
        steps = min(num_batches(search_train, search_batch_size), num_batches(search_val, search_batch_size))
        require_steps(steps, search_batch_size, sharded=False, search_train=search_train,
                      search_val=search_val)
    if train_batch_size is not None:
        require_steps(num_batches(sum(train), train_batch_size), train_batch_size, sharded=False,
                      train=sum(train))


def split_experiment_data(dataset: SPDDataset, search_val_fraction: float, seed: int) -> ExperimentData:
    """Train/val/test from the dataset's own splits; a seeded, stratified division of train
    into search-train and search-val (a function of sample ids, labels and seed only)."""
    require_splits(dataset.counts(), dataset.meta)
    train = dataset.subset("train")
    halves = stratified_split(train.labels.numpy(), train.sample_ids,
                              {"train": 1.0 - search_val_fraction, "val": search_val_fraction}, seed)
    return ExperimentData(
        dataset=dataset, train=_tensors(train), val=_tensors(dataset.subset("val")),
        test=_tensors(dataset.subset("test")),
        search_train=_tensors(train.select(halves == "train")),
        search_val=_tensors(train.select(halves == "val")))
