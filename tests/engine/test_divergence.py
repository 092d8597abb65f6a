"""A diverged run stops with one clear error naming where, not a LAPACK traceback or nan metrics."""

from __future__ import annotations

import pytest
import torch

from spdnas.config import load_config
from spdnas.engine.batches import TensorData
from spdnas.engine.loops import DivergedError, evaluate
from spdnas.engine.search_job import SearchJob
from spdnas.engine.train_job import TrainJob
from spdnas.nn import BatchNormSPD
from spdnas.search.genotype import published_genotype
from tests.engine.test_jobs import FAST
from tests.helpers import spd_classification


@pytest.fixture(scope="module")
def data():
    x, y = spd_classification(20, classes=3, n=6, seed=2)
    return TensorData(x[:30], y[:30]), TensorData(x[30:], y[30:])


def train_job(data, *overrides):
    train, val = data
    return TrainJob(load_config(None, [*FAST, "train.epochs=3", *overrides]), published_genotype("radar"),
                    train, val, 3)


def test_a_huge_learning_rate_is_named_not_a_lapack_traceback(data):
    job = train_job(data, "train.lr=1e12", "train.grad_clip=null", "train.batch_size=5")
    where = r"^(train epoch 1, step [2-9]|evaluating on val)"
    with pytest.raises(DivergedError, match=where + r": .*the weights have diverged. Start again .* lower"):
        while not job.finished:
            job.run_epoch()
    assert job.history == []


def test_a_non_finite_loss_names_epoch_and_step(data):
    job = train_job(data)
    job.run_epoch()
    with torch.no_grad():
        job.model.classifier.weight[0, 0] = float("nan")
    with pytest.raises(DivergedError, match=r"^train epoch 2, step 1: the training loss is nan;"):
        job.run_epoch()


def test_search_and_evaluation_failures_are_named(data):
    train, val = data
    job = SearchJob(load_config(None, [*FAST, "search.epochs=2"]), train, val, 3)
    bn = next(m for m in job.searcher.supernet.modules() if isinstance(m, BatchNormSPD))
    with torch.no_grad():
        bn.bias.fill_(float("inf"))
    with pytest.raises(DivergedError, match=r"^search epoch 1, step 1: an eigendecomposition failed"):
        job.run_epoch()
    job.searcher.supernet.eval()
    with pytest.raises(DivergedError, match=r"^evaluating on val: an eigendecomposition failed"):
        evaluate(job.searcher.forward, val, 15, "val")


def test_non_finite_logits_stop_an_evaluation_instead_of_counting_as_class_0(data):
    _, val = data

    def forward(x):
        logits = torch.zeros(len(x), 3, dtype=x.dtype)
        logits[1:] = float("nan")  # one finite row per batch, the rest NaN
        return logits

    with pytest.raises(DivergedError, match=r"^evaluating on test: the logits are not finite;"):
        evaluate(forward, val, 4, "test")
