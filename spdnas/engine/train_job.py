"""Retraining a genotype from scratch: epochs with model selection on the validation split."""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from spdnas.config import ExperimentConfig
from spdnas.engine.batches import SINGLE_PROCESS, Sharding, TensorData
from spdnas.engine.loops import BufferSync, SumReducer, evaluate, train_epoch
from spdnas.engine.runtime import setup_runtime
from spdnas.engine.state import capture_rng, check_resumable, restore_rng
from spdnas.models.network import GenotypeNetwork
from spdnas.nn.optim import weight_optimizer
from spdnas.search.bilevel import GradReducer
from spdnas.search.cells import count_parameters, count_used_parameters
from spdnas.search.genotype import Genotype

ModelFactory = Callable[[torch.dtype, torch.device], nn.Module]


def improves(metrics: dict[str, Any], best: dict[str, Any]) -> bool:
    """Whether an epoch's validation metrics beat the best so far.

    Higher accuracy wins; equal accuracy is decided by lower loss. On a small validation split
    accuracy takes few values (27 JapaneseVowels samples: steps of 3.7 points), so an
    accuracy-only rule keeps the first epoch that reaches the plateau, often an under-trained
    one, while the loss keeps ranking the epochs on it.
    """
    acc, best_acc = metrics["val_accuracy"], best["val_accuracy"]
    loss, best_loss = metrics["val_loss"], best["val_loss"]
    # a non-finite loss ranks last among equal accuracies (NaN compares False both ways)
    return acc > best_acc or (acc == best_acc and math.isfinite(loss)
                              and (loss < best_loss or not math.isfinite(best_loss)))


class TrainJob:
    """Train :class:`GenotypeNetwork` on ``train``, keep the weights of the best ``val`` epoch.

    The best epoch has the highest validation accuracy, ties broken by the lower validation loss
    (:func:`improves`).

    The learning rate is ``lr · lr_decay^epoch`` (``lr_decay = 0.99`` is the paper's HDM05
    schedule, 1 keeps it constant). ``model_factory(dtype, device)``, if given, builds the
    network instead (the baselines of the benchmark); ``genotype`` may then be ``None`` and is
    only recorded.
    """

    def __init__(self, config: ExperimentConfig, genotype: Genotype | None, train: TensorData,
                 val: TensorData, num_classes: int, sharding: Sharding = SINGLE_PROCESS,
                 grad_reduce: GradReducer | None = None, sum_reduce: SumReducer | None = None,
                 model_factory: ModelFactory | None = None, buffer_sync: BufferSync | None = None):
        if genotype is None and model_factory is None:
            raise ValueError("TrainJob needs a genotype or a model factory")
        self.config, self.genotype = config, genotype
        self.dtype, self.device = setup_runtime(config.runtime)
        self.train = train.to(self.device, self.dtype)
        self.val = val.to(self.device, self.dtype)
        self.sharding = sharding
        self.grad_reduce, self.sum_reduce, self.buffer_sync = grad_reduce, sum_reduce, buffer_sync
        torch.manual_seed(config.runtime.seed)
        if model_factory is None:
            self.model = GenotypeNetwork(genotype, config.model, int(train.x.shape[-1]), num_classes,
                                         dtype=self.dtype, device=self.device)
        else:
            self.model = model_factory(self.dtype, self.device)
        t = config.train
        self.optimizer = weight_optimizer(self.model.parameters(), lr=t.lr, momentum=t.momentum,
                                          weight_decay=t.weight_decay)
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"val_accuracy": -1.0, "val_loss": float("inf"), "epoch": 0,
                                     "model": copy.deepcopy(self.model.state_dict())}

    @property
    def finished(self) -> bool:
        return self.epoch >= self.config.train.epochs

    @functools.cached_property
    def num_parameters(self) -> int:
        """Parameters the network's output depends on (:func:`count_used_parameters`; one forward
        pass, counted once: training changes no connection)."""
        return count_used_parameters(self.model, self.train.x[:2])

    @property
    def num_parameters_total(self) -> int:
        """Every parameter of the network, those of cells no later cell reads included."""
        return count_parameters(self.model)

    def run_epoch(self) -> dict[str, Any]:
        start = time.perf_counter()
        t = self.config.train
        lr = t.lr * t.lr_decay ** self.epoch
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        metrics = train_epoch(self.model, self.optimizer, self.train, t.batch_size, self.config.runtime.seed,
                              self.epoch, self.sharding, t.grad_clip, self.grad_reduce,
                              self.sum_reduce, progress=self.config.runtime.progress)
        if self.buffer_sync is not None:
            self.buffer_sync(self.model)
        self.model.eval()
        metrics.update(evaluate(self.model, self.val, t.batch_size, "val", self.sharding, self.sum_reduce))
        self.epoch += 1
        if improves(metrics, self.best):
            self.best = {"val_accuracy": metrics["val_accuracy"], "val_loss": metrics["val_loss"],
                         "epoch": self.epoch,
                         "model": copy.deepcopy(self.model.state_dict())}
        record = {"epoch": self.epoch, "lr": lr, **metrics, "best_val_accuracy": self.best["val_accuracy"],
                  "seconds": time.perf_counter() - start}
        self.history.append(record)
        return record

    def test(self, test: TensorData) -> dict[str, float]:
        """Test metrics of the last model and of the best-validation model."""
        test = test.to(self.device, self.dtype)
        bs = self.config.train.batch_size
        self.model.eval()
        last = evaluate(self.model, test, bs, "test", self.sharding, self.sum_reduce)
        current = copy.deepcopy(self.model.state_dict())
        self.model.load_state_dict(self.best["model"])
        self.model.eval()
        best = evaluate(self.model, test, bs, "test", self.sharding, self.sum_reduce)
        self.model.load_state_dict(current)
        return {"test_accuracy": best["test_accuracy"], "test_loss": best["test_loss"],
                "test_accuracy_last": last["test_accuracy"], "best_epoch": self.best["epoch"],
                "test_samples": best["test_samples"]}

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "train", "epoch": self.epoch, "history": list(self.history),
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "best": self.best, "rng": capture_rng(self.device),
                "genotype": None if self.genotype is None else self.genotype.to_dict(),
                "config": self.config.to_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != "train":
            raise ValueError(f"not a training checkpoint (kind={state.get('kind')!r})")
        mine = None if self.genotype is None else self.genotype.to_dict()
        if state.get("genotype") != mine:
            raise ValueError("the checkpoint retrains another architecture than this run: start over "
                             "(--no-resume) or give the run another name")
        check_resumable(state.get("config"), self.config.to_dict(), "train", int(state["epoch"]))
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])
        self.best = dict(state["best"])
        if "val_loss" not in self.best and self.best["epoch"] > 0:
            # written before the loss was recorded with the best epoch: it is in the history
            self.best["val_loss"] = self.history[self.best["epoch"] - 1]["val_loss"]
        restore_rng(state["rng"], self.device)
