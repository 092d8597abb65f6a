"""Checkpoints and outputs survive crashes, damaged files, a remade dataset and a backend switch."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from spdnas.config import load_config
from spdnas.data import write_dataset
from spdnas.data.storage import Folder
from spdnas.engine.state import load_checkpoint, newest_state, save_checkpoint
from spdnas.pipeline import load_model, retrain, run_folder, search
from spdnas.report.outputs import publish
from spdnas.search.genotype import published_genotype
from tests.helpers import toy_dataset


def experiment(tmp_path, *extra):
    return load_config(None, [f"data.uri={tmp_path / 'data'}", "data.builder=null",
                              f"runtime.output_dir={tmp_path / 'runs'}", "name=ck",
                              "distributed.backend=local",
                              "model.reduced_dims=[3]", "search.batch_size=8", "train.batch_size=8",
                              "search.epochs=2", "train.epochs=2", "runtime.progress=false", *extra])


@pytest.fixture
def data(tmp_path):
    write_dataset(toy_dataset(12, seed=5, name="tiny"), str(tmp_path / "data"))
    return tmp_path


def test_a_dataset_made_again_is_not_mixed_into_a_run(data):
    """A finished run was silently re-scored on the new data (the README says: never)."""
    config = experiment(data)
    search(config)
    first = retrain(config, published_genotype("radar"))
    assert retrain(config, published_genotype("radar")).result == first.result  # same data: resumes
    write_dataset(toy_dataset(12, seed=5, name="tiny"), str(data / "data"), overwrite=True)
    assert "g1-" in Folder(str(data / "data")).read_manifest()["files"][0]["path"]  # new file names
    assert retrain(config, published_genotype("radar")).result == first.result  # same contents: resumes
    write_dataset(toy_dataset(12, seed=6, name="tiny"), str(data / "data"), overwrite=True)
    for step in (lambda **kw: retrain(config, published_genotype("radar"), **kw),
                 lambda **kw: search(config, **kw)):
        with pytest.raises(ValueError, match=r"was run on other data than .*data holds now .*--no-resume"):
            step()
        assert len(step(resume=False).history) == 2


def test_damaged_checkpoint_is_one_line_and_stale_temporaries_go(tmp_path):
    (tmp_path / ".checkpoint-killed.tmp").write_bytes(b"half")
    old = os.umask(0o022)
    try:
        path = save_checkpoint({"epoch": 1}, tmp_path)
    finally:
        os.umask(old)
    assert not list(tmp_path.glob(".checkpoint-*.tmp"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's private 0600
    assert load_checkpoint(tmp_path) == {"epoch": 1}
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match=r"checkpoint\.pt: damaged checkpoint .*--no-resume"):
        load_checkpoint(tmp_path)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="damaged checkpoint"):
        load_checkpoint(tmp_path)


def test_a_torch_without_what_loading_needs_is_not_called_damage(tmp_path, monkeypatch):
    """On a torch older than the pin, every checkpoint was called damaged, with advice
    (--no-resume) that deletes the run."""
    save_checkpoint({"epoch": 1}, tmp_path)
    monkeypatch.delattr(torch.serialization, "safe_globals")
    with pytest.raises(AttributeError, match="safe_globals"):
        load_checkpoint(tmp_path)


def test_publishing_is_all_or_nothing_per_file(tmp_path):
    """A run killed while writing its outputs left a half-written model.pt in the run folder."""
    def killed(directory):
        (directory / "model.pt").write_bytes(b"half a model")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        publish(killed, str(tmp_path / "run"))
    assert list((tmp_path / "run").iterdir()) == []

    def write(directory):
        for name in ("model.pt", "result.json"):
            (directory / name).write_text(name)
        return ["model.pt", "result.json"]

    paths = publish(write, str(tmp_path / "run"))
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["model.pt", "result.json"]
    assert paths["result.json"] == str(tmp_path / "run" / "result.json")


def test_a_damaged_model_file_is_named(data):
    outcome = retrain(experiment(data), published_genotype("radar"))
    model = outcome.paths["model.pt"]
    with open(model, "r+b") as handle:
        handle.truncate(os.path.getsize(model) // 2)
    with pytest.raises(ValueError, match="not a model saved by spdnas train, or damaged"):
        load_model(model)


def test_a_model_file_runs_no_code_when_loaded(data, tmp_path):
    """``spdnas evaluate --model`` unpickled anything: a shared model.pt could run code."""
    outcome = retrain(experiment(data), published_genotype("radar"))
    saved = torch.load(outcome.paths["model.pt"], weights_only=True)  # what spdnas writes loads so
    marker = tmp_path / "ran"
    saved["config"] = Planted(str(marker))
    torch.save(saved, tmp_path / "model.pt")
    with pytest.raises(ValueError, match=r"not a model saved by spdnas train, or damaged \(it refers to the "
                                         r"Python object getattr: spdnas loads only tensors and plain data, "
                                         r"no objects that could run code\)$"):
        load_model(tmp_path / "model.pt")
    assert not marker.exists()


def test_a_foreign_file_is_refused_without_torchs_advice_to_load_it_unsafely(tmp_path, capsys):
    """`spdnas evaluate --model README.md` passed on torch's text: "Re-running torch.load with
    weights_only set to False will likely succeed, but it can result in arbitrary code
    execution..." — advice no message of ours should give about a file from elsewhere."""
    import pickle

    from spdnas.cli import main

    names = ("README.md", "notes.pt", "plain.pkl", "empty.pt")
    readme, text, pickled, empty = (tmp_path / name for name in names)
    readme.write_text("# spdnas\n\nNeural architecture search.\n")
    text.write_text("Neural search\n")  # was: an IndexError traceback (pop from empty list)
    pickled.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}, protocol=4))
    empty.write_bytes(b"")
    foreign = "not a file written by torch.save, or cut short"
    for path, reason in ((readme, foreign), (text, foreign), (pickled, foreign), (empty, "empty")):
        assert main(["evaluate", "--model", str(path)]) == 1
        assert capsys.readouterr().err == (f"error: {path}: not a model saved by spdnas train, or damaged "
                                           f"({reason})\n")


def test_a_planted_checkpoint_runs_no_code(data, tmp_path):
    """A run's checkpoints may come from shared storage that cluster nodes write: they loaded
    with the full unpickler (for NumPy's RNG state), so a planted payload ran on resume."""
    config = experiment(data)
    search(config)
    folder = os.path.join(run_folder(config, "search"), "checkpoint")
    state = load_checkpoint(folder)  # a real one loads, NumPy's generator state included
    assert isinstance(state["rng"]["numpy"][1], np.ndarray)
    marker = tmp_path / "ran"
    state["history"] = Planted(str(marker))
    save_checkpoint(state, folder)
    with pytest.raises(ValueError, match=r"damaged checkpoint \(it refers to the Python object getattr: "
                                         r".*could run code\); start over"):
        load_checkpoint(folder)
    assert not marker.exists()


class Planted:
    """Unpickling it writes a file (as a malicious payload would run code)."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "code ran"))


def test_a_run_of_the_ray_backend_continues_on_the_local_one(data):
    """The local backend ignored Ray's epoch_NNNN checkpoints and silently started over."""
    config = experiment(data)
    done = search(config)
    folder = run_folder(config, "search")
    state = load_checkpoint(os.path.join(folder, "checkpoint"))
    ray_layout = os.path.join(folder, "epoch_0002")
    os.makedirs(ray_layout)
    shutil.move(os.path.join(folder, "checkpoint", "checkpoint.pt"),
                os.path.join(ray_layout, "checkpoint.pt"))
    os.makedirs(os.path.join(folder, "epoch_0003"))  # an upload cut short: skipped
    open(os.path.join(folder, "epoch_0003", "checkpoint.pt"), "wb").close()
    assert newest_state(folder)["epoch"] == 2
    longer = search(experiment(data, "search.epochs=3"))
    assert longer.history[:2] == done.history == state["history"]
    assert len(longer.history) == 3


def test_the_local_backend_refuses_s3_output_before_reading_the_data(tmp_path):
    """It loaded (and validated) the whole dataset first, here a missing one."""
    config = experiment(tmp_path, "runtime.output_dir=s3://bucket/runs")
    for step in (lambda: search(config), lambda: retrain(config, published_genotype("radar"))):
        with pytest.raises(ValueError, match=r"^distributed.backend=local writes to a local runtime"):
            step()



def test_a_retraining_and_an_evaluation_draw_no_search_halves_by_group(data):
    """data.search_split=group on a dataset without subjects is an error for a search only: a
    retraining or an evaluation, which use no halves, failed on it too."""
    from spdnas.pipeline import load_experiment_data

    config = experiment(data, "data.search_split=group", "train.epochs=1")
    with pytest.raises(ValueError, match="needs at least two groups"):
        search(config)
    assert retrain(config, published_genotype("radar")).result["test_accuracy"] is not None
    assert load_experiment_data(config, search=False).search_split == "stratified"
