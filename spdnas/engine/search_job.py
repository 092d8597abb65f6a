"""A whole search as a sequence of epochs with a complete, restorable state."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import torch

from spdnas.config import ExperimentConfig
from spdnas.engine.batches import SINGLE_PROCESS, Sharding, TensorData
from spdnas.engine.loops import BufferSync, SumReducer, evaluate, search_epoch
from spdnas.engine.runtime import setup_runtime
from spdnas.engine.state import capture_rng, check_resumable, restore_rng
from spdnas.search.bilevel import GradReducer
from spdnas.search.genotype import Genotype
from spdnas.search.searcher import Searcher


class SearchJob:
    """Bi-level search over ``train`` (search-train) and ``val`` (search-val).

    ``run_epoch`` returns (and appends to ``history``) one metrics record per epoch: training
    loss/accuracy, architecture-step validation loss, supernet accuracy on ``val``, the
    genotype so far and the mixture weights. ``state_dict``/``load_state_dict`` cover weights,
    alphas, both optimizers, RNG states, epoch and history, so a resumed job continues exactly.
    ``search_split`` is how ``train``/``val`` were cut (:attr:`ExperimentData.search_split`): the
    configuration the job keeps and checkpoints says it in place of ``auto``, so a resumed job
    must have drawn its halves the same way.
    """

    def __init__(self, config: ExperimentConfig, train: TensorData, val: TensorData, num_classes: int,
                 sharding: Sharding = SINGLE_PROCESS, grad_reduce: GradReducer | None = None,
                 sum_reduce: SumReducer | None = None, buffer_sync: BufferSync | None = None,
                 search_split: str = "stratified"):
        self.config = replace(config, data=replace(config.data, search_split=search_split))
        self.dtype, self.device = setup_runtime(config.runtime)
        self.train = train.to(self.device, self.dtype)
        self.val = val.to(self.device, self.dtype)
        self.sharding, self.sum_reduce, self.buffer_sync = sharding, sum_reduce, buffer_sync
        torch.manual_seed(config.runtime.seed)
        self.searcher = Searcher(config.model, config.search, int(train.x.shape[-1]), num_classes,
                                 dtype=self.dtype, device=self.device, reduce=grad_reduce)
        self.epoch = 0
        self.history: list[dict[str, Any]] = []

    @property
    def finished(self) -> bool:
        return self.epoch >= self.config.search.epochs

    def genotype(self) -> Genotype:
        return self.searcher.genotype()

    def run_epoch(self) -> dict[str, Any]:
        start = time.perf_counter()
        cfg = self.config
        metrics = search_epoch(self.searcher, self.train, self.val, cfg.search.batch_size, cfg.runtime.seed,
                               self.epoch, self.sharding, self.sum_reduce, progress=cfg.runtime.progress)
        if self.buffer_sync is not None:
            self.buffer_sync(self.searcher.supernet)
        self.searcher.supernet.eval()
        metrics.update(evaluate(self.searcher.forward, self.val, cfg.search.batch_size, "search_val",
                                self.sharding, self.sum_reduce))
        normal, reduce = (w.detach().cpu().tolist() for w in self.searcher.mixture())
        record = {"epoch": self.epoch + 1, **metrics, "seconds": time.perf_counter() - start,
                  "genotype": self.genotype().to_dict(), "weights_normal": normal, "weights_reduce": reduce}
        self.history.append(record)
        self.epoch += 1
        return record

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "search", "epoch": self.epoch, "history": list(self.history),
                "searcher": self.searcher.state_dict(), "rng": capture_rng(self.device),
                "config": self.config.to_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != "search":
            raise ValueError(f"not a search checkpoint (kind={state.get('kind')!r})")
        check_resumable(state.get("config"), self.config.to_dict(), "search", int(state["epoch"]))
        self.searcher.load_state_dict(state["searcher"])
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])
        restore_rng(state["rng"], self.device)
