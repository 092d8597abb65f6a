"""Search and retraining jobs: learning happens, state round-trips bit-identically."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spdnas.config import load_config
from spdnas.engine.batches import TensorData, global_batches, iterate, shard_slice
from spdnas.engine.loops import evaluate
from spdnas.engine.search_job import SearchJob
from spdnas.engine.state import load_checkpoint, save_checkpoint
from spdnas.engine.train_job import TrainJob, improves
from spdnas.search.genotype import Genotype, published_genotype
from tests.helpers import spd_classification

FAST = ["model.reduced_dims=[3]", "search.batch_size=15", "train.batch_size=15", "runtime.progress=false",
        "search.weight_lr=0.2", "search.arch_lr=0.01", "train.lr=0.2"]


@pytest.fixture(scope="module")
def problem():
    x, y = spd_classification(60, classes=3, n=6, seed=1)
    return TensorData(x[:90], y[:90]), TensorData(x[90:135], y[90:135]), TensorData(x[135:], y[135:])


def test_short_search_lowers_validation_loss_and_yields_a_valid_genotype(problem):
    train, _, _ = problem
    cfg = load_config(None, [*FAST, "search.epochs=6"])
    job = SearchJob(cfg, TensorData(train.x[:45], train.y[:45]), TensorData(train.x[45:], train.y[45:]), 3)
    while not job.finished:
        job.run_epoch()
    losses = [r["arch_val_loss"] for r in job.history]
    assert losses[-1] < losses[0] - 0.05
    genotype = Genotype.from_dict(job.history[-1]["genotype"])
    assert genotype == job.genotype()
    assert len(job.history[-1]["weights_normal"]) == 5


def test_short_retrain_beats_chance_by_a_wide_margin(problem):
    train, val, test = problem
    cfg = load_config(None, [*FAST, "train.epochs=8"])
    job = TrainJob(cfg, published_genotype("radar"), train, val, 3)
    while not job.finished:
        job.run_epoch()
    result = job.test(test)
    assert result["test_accuracy"] >= 0.75  # chance is 1/3
    assert 1 <= result["best_epoch"] <= 8
    assert job.num_parameters > 0


def test_model_selection_breaks_accuracy_ties_by_validation_loss():
    best = {"val_accuracy": 0.9, "val_loss": 0.5}
    assert improves({"val_accuracy": 0.95, "val_loss": 0.9}, best)
    assert improves({"val_accuracy": 0.9, "val_loss": 0.4}, best)
    assert not improves({"val_accuracy": 0.9, "val_loss": 0.5}, best)
    assert not improves({"val_accuracy": 0.9, "val_loss": 0.6}, best)
    assert not improves({"val_accuracy": 0.85, "val_loss": 0.1}, best)
    nan = {"val_accuracy": 0.9, "val_loss": float("nan")}  # ranks last among equal accuracies
    assert not improves(nan, best) and improves(best, nan)
    assert improves({"val_accuracy": 0.95, "val_loss": float("nan")}, best)


SCRIPTED_VAL = [(0.5, 1.0), (0.8, 0.6), (0.8, 0.4), (0.7, 0.3), (0.8, 0.5), (0.8, 0.35)]


@pytest.fixture
def scripted_val(monkeypatch):
    """Validation metrics of epoch k are SCRIPTED_VAL[k] (accuracy, loss); training is a no-op."""
    import spdnas.engine.train_job as train_job

    def fake_train_epoch(model, optimizer, data, batch_size, seed, epoch, *args, **kwargs):
        fake_train_epoch.epoch = epoch
        return {"train_loss": 0.0, "train_accuracy": 0.0}

    def fake_evaluate(model, data, batch_size, prefix, *args):
        acc, loss = SCRIPTED_VAL[fake_train_epoch.epoch]
        return {f"{prefix}_accuracy": acc, f"{prefix}_loss": loss}

    monkeypatch.setattr(train_job, "train_epoch", fake_train_epoch)
    monkeypatch.setattr(train_job, "evaluate", fake_evaluate)


def test_retrain_keeps_the_lowest_loss_epoch_among_the_most_accurate(problem, scripted_val):
    train, val, _ = problem
    job = TrainJob(load_config(None, [*FAST, f"train.epochs={len(SCRIPTED_VAL)}"]),
                   published_genotype("radar"), train, val, 3)
    chosen = []
    while not job.finished:
        job.run_epoch()
        chosen.append(job.best["epoch"])
    # epochs 2, 3, 5, 6 tie at 0.8; 3 (loss 0.4) beats 2 and 5, 6 (loss 0.35) beats 3
    assert chosen == [1, 2, 3, 3, 3, 6]


def test_retrain_resumed_from_a_checkpoint_without_best_loss_keeps_the_rule(problem, scripted_val):
    train, val, _ = problem
    cfg = load_config(None, [*FAST, "train.epochs=5"])
    first = TrainJob(cfg, published_genotype("radar"), train, val, 3)
    for _ in range(3):
        first.run_epoch()
    state = first.state_dict()
    state["best"] = {k: v for k, v in state["best"].items() if k != "val_loss"}  # older format
    resumed = TrainJob(cfg, published_genotype("radar"), train, val, 3)
    resumed.load_state_dict(state)
    assert resumed.best["val_loss"] == 0.4
    while not resumed.finished:
        resumed.run_epoch()
    assert resumed.best["epoch"] == 3  # epoch 5 ties on accuracy with a higher loss


def run_search(cfg, train, val, stop_at=None, state=None):
    job = SearchJob(cfg, train, val, 3)
    if state is not None:
        job.load_state_dict(state)
    while not job.finished and (stop_at is None or job.epoch < stop_at):
        job.run_epoch()
    return job


@pytest.mark.parametrize("order", ["first", "second"])
def test_resume_mid_search_is_bit_identical(problem, tmp_path, order):
    train, _, _ = problem
    cfg = load_config(None, [*FAST, "search.epochs=3", f"search.order={order}", "search.weight_momentum=0.9"])
    st, sv = TensorData(train.x[:30], train.y[:30]), TensorData(train.x[30:60], train.y[30:60])
    straight = run_search(cfg, st, sv)
    first = run_search(cfg, st, sv, stop_at=1)
    save_checkpoint(first.state_dict(), tmp_path)
    torch.manual_seed(12345)  # a resumed process starts with a different global RNG
    resumed = run_search(cfg, st, sv, state=load_checkpoint(tmp_path))
    for a, b in zip(straight.searcher.alphas.parameters(), resumed.searcher.alphas.parameters(), strict=True):
        assert torch.equal(a, b)
    for (name, a), b in zip(straight.searcher.supernet.state_dict().items(),
                            resumed.searcher.supernet.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert [r["train_loss"] for r in straight.history] == [r["train_loss"] for r in resumed.history]


def test_retrain_resume_is_bit_identical(problem, tmp_path):
    train, val, _ = problem
    cfg = load_config(None, [*FAST, "train.epochs=3", "train.lr_decay=0.9"])
    straight = TrainJob(cfg, published_genotype("hdm05"), train, val, 3)
    while not straight.finished:
        straight.run_epoch()
    part = TrainJob(cfg, published_genotype("hdm05"), train, val, 3)
    part.run_epoch()
    save_checkpoint(part.state_dict(), tmp_path)
    resumed = TrainJob(cfg, published_genotype("hdm05"), train, val, 3)
    resumed.load_state_dict(load_checkpoint(tmp_path))
    while not resumed.finished:
        resumed.run_epoch()
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name


def test_retrain_does_not_resume_another_architecture(problem):
    train, val, _ = problem
    cfg = load_config(None, FAST)
    job = TrainJob(cfg, published_genotype("radar"), train, val, 3)
    job.run_epoch()
    other = TrainJob(cfg, published_genotype("hdm05"), train, val, 3)
    with pytest.raises(ValueError, match="another architecture"):
        other.load_state_dict(job.state_dict())


def test_a_split_without_one_full_batch_is_an_error(problem):
    train, val, _ = problem
    cfg = load_config(None, [*FAST, f"search.batch_size={len(val) + 1}",
                             f"train.batch_size={len(train) + 1}"])
    with pytest.raises(ValueError, match=r"no full batch of \d+ in this epoch \(samples: search-train"):
        SearchJob(cfg, train, val, 3).run_epoch()
    with pytest.raises(ValueError, match=r"no full batch of \d+ in this epoch \(samples: train"):
        TrainJob(cfg, published_genotype("radar"), train, val, 3).run_epoch()


def test_checkpoint_kind_is_checked(problem, tmp_path):
    train, val, _ = problem
    cfg = load_config(None, FAST)
    job = TrainJob(cfg, published_genotype("radar"), train, val, 3)
    with pytest.raises(ValueError, match="not a search checkpoint"):
        SearchJob(cfg, train, val, 3).load_state_dict(job.state_dict())


class TestBatches:
    def test_epoch_order_is_seeded_and_changes_per_epoch(self):
        a = global_batches(50, 8, seed=3, epoch=0, drop_last=True)
        assert [t.tolist() for t in a] == [t.tolist() for t in global_batches(50, 8, 3, 0, True)]
        assert a[0].tolist() != global_batches(50, 8, 3, 1, True)[0].tolist()
        assert len(a) == 6 and len(global_batches(50, 8, 3, 0, False)) == 7

    def test_shards_partition_each_global_batch(self):
        x = torch.arange(40, dtype=torch.float64)[:, None, None].expand(40, 2, 2)
        data = TensorData(x, torch.arange(40))
        whole = [y.tolist() for _, y in iterate(data, 10, seed=1, epoch=2)]
        shards = [[y.tolist() for _, y in iterate(data, 10, 1, 2, rank=r, world=3)] for r in range(3)]
        for i, batch in enumerate(whole):
            assert [label for s in shards for label in s[i]] == batch
        assert shard_slice(10, 2, 3) == slice(7, 10)
        with pytest.raises(ValueError, match="outside world"):
            shard_slice(10, 3, 3)


def test_result_of_a_run_finished_before_test_samples_was_reported():
    from spdnas.pipeline import retrain_result

    old = {"test_accuracy": 0.9, "test_loss": 0.3, "test_accuracy_last": 0.85, "best_epoch": 4}
    history = [{"seconds": 1.5}, {"seconds": 2.0}]
    result = retrain_result(old, 100, published_genotype("radar"), history)
    assert result["test_samples"] is None and result["train_seconds"] == 3.5
    assert retrain_result({**old, "test_samples": 30}, 100, published_genotype("radar"),
                          history)["test_samples"] == 30


def test_resume_refuses_other_settings_but_allows_more_epochs_and_other_hardware(problem):
    train, val, _ = problem
    search_train, search_val = TensorData(train.x[:45], train.y[:45]), TensorData(train.x[45:], train.y[45:])
    job = SearchJob(load_config(None, [*FAST, "search.epochs=2"]), search_train, search_val, 3)
    job.run_epoch()
    job.run_epoch()
    state = job.state_dict()
    # the same folder spelled otherwise, a dataset made otherwise (its contents are checked on their own)
    same_data = [f"data.uri=../{Path.cwd().name}/data//radar-synth/", "data.builder=null"]
    hardware = ["runtime.threads=2", "runtime.progress=true", "name=moved"]
    for allowed in (["search.epochs=3"], hardware, same_data):
        SearchJob(load_config(None, [*FAST, "search.epochs=2", *allowed]), search_train, search_val,
                  3).load_state_dict(state)
    other = SearchJob(load_config(None, [*FAST, "search.epochs=2", "search.weight_lr=0.05",
                                         "data.uri=elsewhere"]), search_train, search_val, 3)
    with pytest.raises(ValueError, match=r"other settings: data\.uri \('data/radar-synth' -> 'elsewhere'\); "
                                         r"search\.weight_lr \(0\.2 -> 0\.05\)"):
        other.load_state_dict(state)
    shorter = SearchJob(load_config(None, [*FAST, "search.epochs=1"]), search_train, search_val, 3)
    with pytest.raises(ValueError, match=r"already has 2 epochs, more than search\.epochs=1"):
        shorter.load_state_dict(state)
    trained = TrainJob(load_config(None, FAST), published_genotype("radar"), train, val, 3)
    trained.run_epoch()
    retrain = TrainJob(load_config(None, [*FAST, "train.lr=0.1"]), published_genotype("radar"), train, val, 3)
    with pytest.raises(ValueError, match=r"train\.lr \(0\.2 -> 0\.1\)"):
        retrain.load_state_dict(trained.state_dict())
    # the search's division of train does not change a retraining (it was refused)
    TrainJob(load_config(None, [*FAST, "data.search_val_fraction=0.3", "data.split_seed=7"]),
             published_genotype("radar"), train, val, 3).load_state_dict(trained.state_dict())
    # workers whose batch norms see only their own slice compute other numbers than one worker
    alone = ["distributed.num_workers=3", "distributed.sync_batchnorm=false"]
    sliced = TrainJob(load_config(None, [*FAST, *alone]), published_genotype("radar"), train, val, 3)
    layout = r"distributed \(as one worker -> num_workers=3, data='replicate', sync_batchnorm=False\)"
    with pytest.raises(ValueError, match=layout):
        sliced.load_state_dict(trained.state_dict())
    TrainJob(load_config(None, [*FAST, "distributed.num_workers=3"]), published_genotype("radar"), train, val,
             3).load_state_dict(trained.state_dict())  # synchronised: exact, any number of workers
    divided = SearchJob(load_config(None, [*FAST, "search.epochs=2", "data.split_seed=7"]),
                        search_train, search_val, 3)
    with pytest.raises(ValueError, match=r"data\.split_seed \(None -> 7\)"):
        divided.load_state_dict(state)


def test_rng_state_holds_the_run_device_only(monkeypatch):
    """A CUDA run saves its own device's generator (not every visible GPU's, which failed to
    restore on a machine with fewer GPUs) and restores it to the device it resumes on. The
    CUDA calls are recorded here, on a machine without a GPU."""
    from spdnas.engine import state as rng

    calls = []
    saved = torch.tensor([7], dtype=torch.uint8)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: calls.append(("get", device)) or saved)
    monkeypatch.setattr(torch.cuda, "set_rng_state",
                        lambda s, device: calls.append(("set", int(s[0]), device)))
    cpu_state = rng.capture_rng(torch.device("cpu"))
    assert "cuda" not in cpu_state and calls == []
    cuda = torch.device("cuda", 1)
    state = rng.capture_rng(cuda)
    assert calls == [("get", cuda)] and state["cuda"] is saved
    rng.restore_rng(state, torch.device("cuda", 0))  # resumed on another GPU: its generator
    rng.restore_rng(state, torch.device("cpu"))  # resumed on the CPU: the CPU generators only
    older = [torch.tensor([k], dtype=torch.uint8) for k in range(8)]  # before: every GPU's state
    rng.restore_rng({**state, "cuda": older}, cuda)
    assert calls[1:] == [("set", 7, torch.device("cuda", 0)), ("set", 1, cuda)]  # cuda:1 gets GPU 1's


def test_evaluation_is_the_mean_loss_and_accuracy_over_every_sample(problem):
    """Batches of 7 over 45 samples: the last, short batch counts, each sample once."""
    _, val, _ = problem
    torch.manual_seed(3)
    linear = torch.nn.Linear(36, 3, dtype=torch.float64)

    def forward(x):
        return linear(x.flatten(1))

    with torch.no_grad():
        metrics = evaluate(forward, val, 7, "val")
        logits = forward(val.x)
    assert metrics["val_samples"] == len(val) == 45
    loss = float(torch.nn.functional.cross_entropy(logits, val.y))
    accuracy = float((logits.argmax(1) == val.y).double().mean())
    assert metrics["val_loss"] == pytest.approx(loss, rel=1e-12)
    assert metrics["val_accuracy"] == pytest.approx(accuracy, rel=1e-12)


def test_learning_rate_decays_each_epoch_and_testing_keeps_the_last_weights(problem):
    train, val, test = problem
    cfg = load_config(None, [*FAST, "train.epochs=3", "train.lr_decay=0.9"])
    job = TrainJob(cfg, published_genotype("radar"), train, val, 3)
    initial = {k: v.clone() for k, v in job.model.state_dict().items()}
    while not job.finished:
        job.run_epoch()
    assert [r["lr"] for r in job.history] == pytest.approx([0.2, 0.18, 0.162], rel=1e-12)
    assert job.optimizer.param_groups[0]["lr"] == pytest.approx(0.162, rel=1e-12)
    last = {k: v.clone() for k, v in job.model.state_dict().items()}
    job.model.eval()
    scored = {}
    for name, weights in (("initial", initial), ("last", last)):
        job.model.load_state_dict(weights)
        scored[name] = evaluate(job.model, test, 15, "test")
    job.best["model"] = initial  # as if the untrained weights had been the best on val
    result = job.test(test)
    assert result["test_loss"] == scored["initial"]["test_loss"] != scored["last"]["test_loss"]
    assert result["test_accuracy_last"] == scored["last"]["test_accuracy"]
    for name, value in job.model.state_dict().items():  # the best epoch's weights were only borrowed
        assert torch.equal(value, last[name]), name


def test_a_search_resumes_only_on_halves_drawn_the_same_way(problem):
    """The checkpoint records how the halves were drawn (not `auto`); one saved before
    data.search_split existed drew them per class: resumed where they are now drawn by subject, it
    would have gone on with other halves, silently."""
    train, _, _ = problem
    search_train, search_val = TensorData(train.x[:45], train.y[:45]), TensorData(train.x[45:], train.y[45:])
    config = load_config(None, [*FAST, "search.epochs=2"])
    assert config.data.search_split == "auto"
    job = SearchJob(config, search_train, search_val, 3, search_split="group")
    job.run_epoch()
    state = job.state_dict()
    assert state["config"]["data"]["search_split"] == "group"
    SearchJob(config, search_train, search_val, 3, search_split="group").load_state_dict(state)
    with pytest.raises(ValueError, match=r"data\.search_split \('group' -> 'stratified'\)"):
        SearchJob(config, search_train, search_val, 3, search_split="stratified").load_state_dict(state)
    del state["config"]["data"]["search_split"]  # saved by an earlier version: halves per class
    SearchJob(config, search_train, search_val, 3, search_split="stratified").load_state_dict(state)
    with pytest.raises(ValueError, match=r"data\.search_split \('stratified' -> 'group'\)"):
        SearchJob(config, search_train, search_val, 3, search_split="group").load_state_dict(state)
