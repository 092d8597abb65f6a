"""The splits of an experiment: train/val/test from the dataset, search halves from train."""

from __future__ import annotations

from dataclasses import dataclass

from spdnas.data import SPDDataset, stratified_split
from spdnas.engine.batches import TensorData


@dataclass
class ExperimentData:
    """Everything an experiment trains and tests on; search-train/search-val come from
    ``train`` only, so the test split is never seen by the search or model selection."""

    dataset: SPDDataset
    train: TensorData
    val: TensorData
    test: TensorData
    search_train: TensorData
    search_val: TensorData

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def n(self) -> int:
        return self.dataset.n


def _tensors(dataset: SPDDataset) -> TensorData:
    return TensorData(dataset.matrices, dataset.labels)


def split_experiment_data(dataset: SPDDataset, search_val_fraction: float, seed: int) -> ExperimentData:
    """Train/val/test from the dataset's own splits; a seeded, stratified division of train
    into search-train and search-val (a function of sample ids, labels and seed only)."""
    for split in ("train", "val", "test"):
        if not (dataset.splits == split).any():
            hint = (" (for an official train/test split, make the dataset again with a validation "
                    "share, e.g. --param val_fraction=0.1; with distributed.data=shard, a split "
                    "too small to give every worker a row)") if split == "val" else ""
            raise ValueError(f"dataset {dataset.meta.name!r} has no {split!r} split{hint}")
    train = dataset.subset("train")
    halves = stratified_split(train.labels.numpy(), train.sample_ids,
                              {"train": 1.0 - search_val_fraction, "val": search_val_fraction}, seed)
    return ExperimentData(
        dataset=dataset, train=_tensors(train), val=_tensors(dataset.subset("val")),
        test=_tensors(dataset.subset("test")),
        search_train=_tensors(train.select(halves == "train")),
        search_val=_tensors(train.select(halves == "val")))
