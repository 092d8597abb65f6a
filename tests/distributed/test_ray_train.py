"""Ray Train runner: N workers == 1 worker, recovery from a killed worker with checkpoints in
(loopback) S3, resuming an experiment by running it again."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from spdnas.config import load_config
from spdnas.data import SPDDataset, write_dataset
from spdnas.data.storage import Folder
from spdnas.engine.search_job import SearchJob
from spdnas.engine.splits import split_experiment_data
from spdnas.engine.state import load_checkpoint
from spdnas.pipeline import retrain, run_folder, search
from spdnas.search.genotype import published_genotype
from tests.conftest import BUCKET
from tests.helpers import toy_dataset

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]


def tiny_dataset() -> SPDDataset:
    return toy_dataset(32, seed=5, name="tiny")


@pytest.fixture(scope="module")
def dataset_uri(tmp_path_factory) -> str:
    uri = str(tmp_path_factory.mktemp("data") / "tiny")
    write_dataset(tiny_dataset(), uri)
    return uri


def experiment(uri: str, out: str, *extra: str):
    return load_config(None, [f"data.uri={uri}", "data.builder=null", f"runtime.output_dir={out}",
                              "model.reduced_dims=[3]", "search.batch_size=8", "train.batch_size=8",
                              "search.epochs=2", "train.epochs=2", "runtime.progress=false",
                              "search.weight_lr=0.1", "distributed.backend=ray", *extra])


def last_state(config, step: str) -> dict:
    folder = Folder(run_folder(config, step))
    epochs = sorted({name.split("/")[0] for name in folder.list_names() if name.startswith("epoch_")})
    assert epochs, f"no checkpoints in {folder.uri}"
    local = Path(folder.base) / epochs[-1] if folder.is_local else None
    if local is not None:
        return load_checkpoint(local)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "checkpoint.pt").write_bytes(folder.read_bytes(f"{epochs[-1]}/checkpoint.pt"))
        return load_checkpoint(tmp)


def single_process_reference(config) -> SearchJob:
    """The same search in this process: one worker on the same global batches."""
    from spdnas.data import read_dataset

    data = split_experiment_data(read_dataset(config.data.uri), config.data.search_val_fraction,
                                 config.runtime.seed)
    job = SearchJob(config, data.search_train, data.search_val, data.num_classes)
    while not job.finished:
        job.run_epoch()
    return job


def assert_same_search_state(state: dict, reference: SearchJob, tol: float) -> None:
    alphas = state["searcher"]["alphas"]
    for name, value in reference.searcher.alphas.state_dict().items():
        torch.testing.assert_close(alphas[name], value, rtol=0, atol=tol, msg=name)
    weights = state["searcher"]["supernet"]
    for name, value in reference.searcher.supernet.state_dict().items():
        torch.testing.assert_close(weights[name], value, rtol=0, atol=tol, msg=name)


@pytest.mark.parametrize(("order", "placement"), [("first", "STRICT_PACK"), ("second", "PACK")])
def test_two_workers_equal_one_worker(ray_session, dataset_uri, tmp_path, order, placement):
    config = experiment(dataset_uri, str(tmp_path), "distributed.num_workers=2",
                        "distributed.cpus_per_worker=1", f"search.order={order}",
                        "search.weight_momentum=0.9", f"distributed.placement_strategy={placement}")
    outcome = search(config)
    reference = single_process_reference(config)
    assert_same_search_state(last_state(config, "search"), reference, tol=1e-8)
    assert outcome.genotype == reference.genotype()
    assert len(outcome.history) == 2
    for ours, ref in zip(outcome.history, reference.history, strict=True):
        # each sample counted once over both workers (not the whole batch on each), same losses
        assert ours["train_samples"] == ref["train_samples"] > 0
        assert ours["train_loss"] == pytest.approx(ref["train_loss"], abs=1e-8)
    assert Path(outcome.paths["genotype.json"]).exists()


@pytest.mark.slow  # ~85 s; CI runs it (.ci/run), `make test-all` too
def test_killed_worker_recovers_from_s3_checkpoint(ray_session, dataset_uri, tmp_path, monkeypatch):
    storage = f"s3://{BUCKET}/experiments-fault"
    config = experiment(dataset_uri, storage, "distributed.num_workers=2", "distributed.cpus_per_worker=1",
                        "distributed.max_failures=1", "search.epochs=3", "name=fault")
    marker = tmp_path / "killed"
    monkeypatch.setenv("SPDNAS_FAULT_AT_EPOCH", "1")
    monkeypatch.setenv("SPDNAS_FAULT_MARKER", str(marker))
    outcome = search(config)
    assert marker.exists(), "the fault hook never fired"
    reference = single_process_reference(config)
    assert_same_search_state(last_state(config, "search"), reference, tol=1e-8)
    names = Folder(run_folder(config, "search")).list_names()
    assert any(n.startswith("epoch_0003/") for n in names)  # checkpoints live in the bucket
    assert "genotype.json" in names and outcome.paths["genotype.json"].startswith("s3://")


def test_running_again_resumes_and_extends(ray_session, dataset_uri, tmp_path):
    config = experiment(dataset_uri, str(tmp_path), "search.epochs=1", "name=resume")
    first = search(config)
    longer = experiment(dataset_uri, str(tmp_path), "search.epochs=2", "name=resume")
    second = search(longer)
    assert len(second.history) == 2
    assert second.history[0]["train_loss"] == first.history[0]["train_loss"]
    folder = Folder(run_folder(longer, "search"))
    folder.write_bytes("stale.txt", b"from the earlier run")
    again = search(longer, resume=False)  # starts over: earlier checkpoints and outputs deleted
    assert not folder.exists("stale.txt")
    assert [r["train_loss"] for r in again.history] == [r["train_loss"] for r in second.history]


def test_a_checkpoint_ray_had_not_registered_is_resumed_from(ray_session, dataset_uri, tmp_path):
    """A review: a driver interrupted after writing epoch_0002 but before Ray registered it resumed
    from epoch_0001 (Ray's registered one) and ran epoch 2 again. Made here by putting the same
    run's epoch_0002 beside a run that Ray registered up to epoch_0001."""
    import shutil

    full = search(experiment(dataset_uri, str(tmp_path / "full"), "search.epochs=2", "name=r"))
    short = experiment(dataset_uri, str(tmp_path / "short"), "search.epochs=1", "name=r")
    search(short)
    target = Path(run_folder(short, "search"))
    shutil.copytree(Path(str(target).replace("short", "full")) / "epoch_0002", target / "epoch_0002")
    resumed = search(experiment(dataset_uri, str(tmp_path / "short"), "search.epochs=2", "name=r"))
    assert resumed.history == full.history  # epoch 2 as recorded, wall time too: not run again


def moving_run(dataset_uri: str, tmp_path, epochs: int, backend: str):
    return experiment(dataset_uri, str(tmp_path), f"search.epochs={epochs}", f"train.epochs={epochs}",
                      "name=move", f"distributed.backend={backend}")


def test_a_run_moves_between_the_local_and_the_ray_backend(ray_session, dataset_uri, tmp_path):
    """Ray started a run over that the local backend had continued (and a finished local run,
    resumed on Ray, failed: 'the run left no checkpoint')."""
    first = search(moving_run(dataset_uri, tmp_path, 1, "local"))
    assert search(moving_run(dataset_uri, tmp_path, 1, "ray")).history == first.history  # not run again
    search(moving_run(dataset_uri, tmp_path, 2, "local"))  # Ray's epoch_0001 and the local epoch 2 ...
    longer = moving_run(dataset_uri, tmp_path, 3, "ray")
    outcome = search(longer)  # ... continue from the further along
    assert outcome.history[0] == first.history[0]
    assert_same_search_state(last_state(longer, "search"), single_process_reference(longer), tol=1e-8)


@pytest.mark.slow
def test_a_finished_local_retraining_and_a_damaged_local_checkpoint_on_ray(ray_session, dataset_uri,
                                                                          tmp_path, capsys):
    trained = retrain(moving_run(dataset_uri, tmp_path, 1, "local"), published_genotype("radar"))
    on_ray = moving_run(dataset_uri, tmp_path, 1, "ray")
    assert retrain(on_ray, published_genotype("radar")).result == trained.result
    local_checkpoint = Path(run_folder(on_ray, "train")) / "checkpoint" / "checkpoint.pt"
    local_checkpoint.write_bytes(b"damaged")  # Ray's own checkpoints still hold the run
    capsys.readouterr()
    assert retrain(on_ray, published_genotype("radar")).result == trained.result
    assert "checkpoint.pt (the local backend's checkpoint) cannot be read" in capsys.readouterr().err


def test_a_ray_run_refuses_a_dataset_made_again(ray_session, tmp_path):
    uri = str(tmp_path / "data")
    write_dataset(tiny_dataset(), uri)
    config = experiment(uri, str(tmp_path / "out"), "search.epochs=1")
    search(config)
    write_dataset(toy_dataset(32, seed=6, name="tiny"), uri, overwrite=True)
    with pytest.raises(ValueError, match=r"was run on other data than .* holds now .*--no-resume"):
        search(config)
    assert len(search(config, resume=False).history) == 1


def test_gpu_work_on_a_cluster_without_gpus_now_waits_with_a_warning(ray_session, capsys):
    """Not the embedded Ray (a fixture's: like a cluster the command connected to), where an
    autoscaler may still add GPU nodes."""
    from spdnas.distributed.runner import require_gpus

    require_gpus(2, "the search", "distributed.num_workers")
    warning = capsys.readouterr().err
    assert "warning: the search needs 2 GPU(s), and the Ray cluster has 0 now; it waits" in warning


def test_bad_rows_fail_before_training(ray_session, tmp_path):
    from spdnas.data import DatasetValidationError
    from tests.data.conftest import rewrite_file
    from tests.data.test_validation import set_column

    uri = tmp_path / "bad"
    write_dataset(tiny_dataset(), uri)
    rewrite_file(uri, 0, lambda t: set_column(
        t, "label", [7 if i == 3 else v for i, v in enumerate(t.column("label").to_pylist())]))
    with pytest.raises(DatasetValidationError, match="label 7"):
        search(experiment(str(uri), str(tmp_path / "out")))


def test_missing_split_fails_before_any_worker_starts(ray_session, tmp_path):
    dataset = tiny_dataset()
    uri = tmp_path / "no-val"
    write_dataset(dataset.select(dataset.splits != "val"), uri)
    config = experiment(str(uri), str(tmp_path / "out"))
    with pytest.raises(ValueError, match="dataset 'tiny' has no 'val' rows; an experiment needs"):
        search(config)
    assert not Folder(run_folder(config, "search")).list_names()


@pytest.mark.parametrize("step", ["search", "train"])
def test_a_batch_larger_than_the_data_fails_before_any_worker_starts(ray_session, dataset_uri, tmp_path,
                                                                     step):
    """Raised in a worker, the error would be retried distributed.max_failures times as a crash."""
    config = experiment(dataset_uri, str(tmp_path), f"{step}.batch_size=50")
    sizes = "search-train 24, search-val 24" if step == "search" else "train 48"
    with pytest.raises(ValueError, match=rf"^no full batch of 50 in this epoch \(samples: {sizes}"):
        search(config) if step == "search" else retrain(config, published_genotype("radar"))
    assert not Path(run_folder(config, step)).exists()


def test_a_diverged_worker_raises_its_own_error_once(ray_session, dataset_uri, tmp_path):
    """Ray wraps worker exceptions in WorkerGroupError (tracebacks of every rank) and retried them
    max_failures times, each retry diverging again from the same checkpoint; a run that diverged
    is the user's to fix, so the worker's DivergedError comes out (one CLI line), met once."""
    from spdnas.distributed.worker import worker_errors
    from spdnas.engine.loops import DivergedError

    config = experiment(dataset_uri, str(tmp_path), "distributed.num_workers=2", "distributed.max_failures=2",
                        "train.lr=1e12", "train.grad_clip=null", "train.batch_size=4", "train.epochs=3")
    diverged = r"^train epoch 1, step \d+: .*the weights have diverged"
    with pytest.raises(DivergedError, match=diverged) as raised:
        retrain(config, published_genotype("radar"))
    note = raised.value.__notes__[0]  # the worker's own traceback, for SPDNAS_DEBUG=1
    assert re.match(r"worker \d: Traceback", note) and "in train_epoch" in note and "DivergedError" in note
    errors = worker_errors(run_folder(config, "train"))
    records = [json.loads(errors.read_bytes(name)) for name in errors.list_names()]
    ranks = [r["rank"] for r in records]
    assert ranks and len(ranks) == len(set(ranks)), records  # no retry met it again
    assert all(r["type"] == "spdnas.engine.loops.DivergedError" for r in records)
    config.train.lr = 0.2  # fixed: the same run (no checkpoint yet) starts again, past the old record
    assert retrain(config, published_genotype("radar")).result["epochs"] == 3
    assert not errors.list_names()


def test_retrain_reports_test_accuracy_and_model(ray_session, dataset_uri, tmp_path):
    config = experiment(dataset_uri, str(tmp_path), "distributed.num_workers=2",
                        "distributed.cpus_per_worker=1", "train.epochs=3", "train.lr=0.2")
    outcome = retrain(config, published_genotype("radar"))
    local = retrain(experiment(dataset_uri, str(tmp_path / "local"), "distributed.backend=local",
                               "train.epochs=3", "train.lr=0.2"), published_genotype("radar"))
    # 2 workers train what one process trains on the same global batches
    assert outcome.result["test_accuracy"] == local.result["test_accuracy"]
    assert outcome.result["best_epoch"] == local.result["best_epoch"]
    for ours, ref in zip(outcome.history, local.history, strict=True):
        assert ours["train_samples"] == ref["train_samples"] > 0
        assert ours["train_loss"] == pytest.approx(ref["train_loss"], abs=1e-8)
        assert ours["val_loss"] == pytest.approx(ref["val_loss"], abs=1e-8)
    assert outcome.result["parameters"] > 0 and outcome.result["epochs"] == 3
    from spdnas.pipeline import load_model

    _model, saved = load_model(outcome.paths["model.pt"])
    assert saved["best_epoch"] == outcome.result["best_epoch"]
    _model, saved_local = load_model(local.paths["model.pt"])  # both record the data they used
    assert saved["data_sha256"] == saved_local["data_sha256"] is not None


def test_checkpoint_every_k_epochs_and_the_last(ray_session, dataset_uri, tmp_path):
    config = experiment(dataset_uri, str(tmp_path), "search.epochs=3", "runtime.checkpoint_every=2",
                        "distributed.keep_checkpoints=3", "name=every2")
    search(config)
    names = Folder(run_folder(config, "search")).list_names()
    assert sorted({n.split("/")[0] for n in names if n.startswith("epoch_")}) == ["epoch_0002", "epoch_0003"]


def test_sharded_data_gives_every_worker_every_split(ray_session, dataset_uri, tmp_path):
    config = experiment(dataset_uri, str(tmp_path), "distributed.num_workers=2",
                        "distributed.cpus_per_worker=1", "distributed.data=shard", "search.epochs=1",
                        "train.epochs=1", "name=shard")
    first = search(config).history[0]  # each worker: its half of train, cut in search halves
    assert first["train_samples"] > 0 and first["search_val_samples"] <= sum(tiny_dataset().counts()["train"])
    result = retrain(config, published_genotype("radar")).result
    counts = tiny_dataset().counts()
    assert sum(counts["test"]) - 1 <= result["test_samples"] <= sum(counts["test"])  # equal shards


@pytest.mark.slow  # ~55 s (a search and a retraining on 2 workers); CI runs it (.ci/run)
def test_unsynchronised_batch_norms_report_the_model_they_save(ray_session, dataset_uri, tmp_path):
    """With per-worker batch norms each worker's running means follow its own part of the
    batches; rank 0's are broadcast after every epoch, so the reported metrics are those of the
    saved model (rank 0's), not of a blend of the workers' models."""
    from spdnas.engine.loops import evaluate
    from spdnas.pipeline import load_experiment_data, load_model

    config = experiment(dataset_uri, str(tmp_path), "distributed.num_workers=2",
                        "distributed.cpus_per_worker=1", "distributed.sync_batchnorm=false",
                        "search.epochs=1", "train.epochs=2", "train.lr=0.2")
    data = load_experiment_data(config)
    found = search(config)
    job = SearchJob(config, data.search_train, data.search_val, data.num_classes)
    job.load_state_dict(last_state(config, "search"))
    job.searcher.supernet.eval()
    again = evaluate(job.searcher.forward, job.val, config.search.batch_size, "search_val")
    assert again["search_val_loss"] == pytest.approx(found.history[-1]["search_val_loss"], abs=1e-10)

    outcome = retrain(config, published_genotype("radar"))
    model, _ = load_model(outcome.paths["model.pt"])
    test = data.test.to(torch.device("cpu"), torch.float64)
    again = evaluate(model, test, config.train.batch_size, "test")
    assert again["test_loss"] == pytest.approx(outcome.result["test_loss"], abs=1e-10)
    assert again["test_accuracy"] == outcome.result["test_accuracy"]
