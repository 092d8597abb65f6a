"""The ``spdnas`` search → train → evaluate commands, on the local backend (no Ray)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch

from spdnas.cli import main
from spdnas.data import write_dataset
from tests.distributed.test_ray_train import tiny_dataset
from tests.helpers import toy_dataset


@pytest.fixture
def experiment_args(tmp_path):
    data = tmp_path / "tiny"
    write_dataset(tiny_dataset(), str(data))
    return [f"data.uri={data}", "data.builder=null", f"runtime.output_dir={tmp_path / 'runs'}",
            "name=cli", "distributed.backend=local", "model.reduced_dims=[3]", "search.batch_size=8",
            "train.batch_size=8", "search.epochs=1", "train.epochs=2", "runtime.progress=false"]


def test_search_train_evaluate(experiment_args, tmp_path, capsys):
    assert main(["search", *experiment_args]) == 0
    genotype = tmp_path / "runs" / "cli" / "search" / "genotype.json"
    printed = capsys.readouterr().out
    assert printed.startswith("genotype: ") and str(genotype) in printed
    assert json.loads(printed[len("genotype: "):printed.index("\n}") + 2]) == json.loads(genotype.read_text())

    assert main(["train", "--genotype", str(genotype), *experiment_args]) == 0
    trained = json.loads((tmp_path / "runs" / "cli" / "train" / "result.json").read_text())
    assert "test accuracy" in capsys.readouterr().out

    report = tmp_path / "evaluation.json"
    model = tmp_path / "runs" / "cli" / "train" / "model.pt"
    assert main(["evaluate", "--model", str(model), "--split", "test", "--output", str(report)]) == 0
    out = json.loads(report.read_text())
    assert out["test_accuracy"] == pytest.approx(trained["test_accuracy"], abs=1e-12)
    matrix = out["confusion_matrix"]
    assert sum(map(sum, matrix)) == out["test_samples"] == 24
    assert sum(matrix[i][i] for i in range(3)) == round(out["test_accuracy"] * 24)
    assert out["class_names"] == ["a", "b", "c"]
    assert "confusion matrix" in capsys.readouterr().out

    other = tmp_path / "other"  # overrides apply to the model's saved experiment
    write_dataset(toy_dataset(16, seed=9, name="tiny"), str(other))
    assert main(["evaluate", "--model", str(model), "--split", "test", "--output", str(report),
                 f"data.uri={other}"]) == 0
    assert json.loads(report.read_text())["test_samples"] == 12

    wider = tmp_path / "wider"  # 8×8 matrices: not what the model takes
    write_dataset(toy_dataset(16, seed=9, name="tiny", n=8), str(wider))
    capsys.readouterr()
    assert main(["evaluate", "--model", str(model), f"data.uri={wider}"]) == 1
    assert capsys.readouterr().err == (f"error: {model} takes 6×6 matrices of 3 classes; {wider} holds 8×8 "
                                       f"matrices of 3 classes\n")


def test_evaluate_scores_a_held_out_dataset_and_checks_its_classes(experiment_args, tmp_path, capsys):
    """A dataset of test rows only was refused ("an experiment needs train, val and test rows"),
    and one that numbers the same classes otherwise was scored against the wrong classes."""
    from dataclasses import replace

    import numpy as np

    assert main(["train", "--genotype", "radar", *experiment_args]) == 0
    model = tmp_path / "runs" / "cli" / "train" / "model.pt"
    assert torch.load(model, weights_only=True)["class_names"] == ["a", "b", "c"]
    toy = toy_dataset(16, seed=9, name="tiny")
    held_out = tmp_path / "held-out"
    write_dataset(replace(toy, splits=np.full(len(toy), "test")), str(held_out))
    report = tmp_path / "held-out.json"
    assert main(["evaluate", "--model", str(model), f"data.uri={held_out}", "--output", str(report)]) == 0
    assert json.loads(report.read_text())["test_samples"] == 48
    capsys.readouterr()
    assert main(["evaluate", "--model", str(model), f"data.uri={held_out}", "--split", "val"]) == 1
    assert capsys.readouterr().err == (f"error: {held_out} has no 'val' rows (it has test (48)): choose "
                                       "another --split\n")
    cases = ((("c", "b", "a"), 1), (("b", "a", "x"), 1), (("x", "y", "z"), 0), (("a", "b", "x"), 0))
    for names, status in cases:
        other = tmp_path / "-".join(names)
        write_dataset(replace(toy, meta=replace(toy.meta, class_names=names)), str(other))
        assert main(["evaluate", "--model", str(model), f"data.uri={other}"]) == status
        err = capsys.readouterr().err
        assert ("its labels would be scored against the wrong classes" in err) == (status == 1), err
        assert ("warning:" in err and f"names them {list(names)}" in err) == (status == 0), err


def test_evaluate_finds_a_relative_dataset_from_another_folder(experiment_args, tmp_path, monkeypatch):
    """model.pt stored data.uri as given: a model trained on a relative path could not be
    evaluated from any other working folder."""
    monkeypatch.chdir(tmp_path)
    args = ["data.uri=tiny" if a.startswith("data.uri=") else a for a in experiment_args]
    assert main(["train", "--genotype", "radar", *args]) == 0
    model = tmp_path / "runs" / "cli" / "train" / "model.pt"
    monkeypatch.chdir(tmp_path / "runs")
    assert main(["evaluate", "--model", str(model)]) == 0


def test_evaluate_refuses_its_dataset_made_again_with_other_contents(experiment_args, tmp_path, capsys):
    """Made again (other split or samples) at the same data.uri, the test split may hold training
    samples: evaluate used to score it silently. The same data written again is fine, and other
    data at another data.uri is evaluation on purpose."""
    assert main(["train", "--genotype", "radar", *experiment_args]) == 0
    model, data = tmp_path / "runs" / "cli" / "train" / "model.pt", tmp_path / "tiny"
    write_dataset(tiny_dataset(), str(data), overwrite=True)  # the same contents, a new generation
    assert main(["evaluate", "--model", str(model)]) == 0
    write_dataset(toy_dataset(32, seed=6, name="tiny"), str(data), overwrite=True)
    capsys.readouterr()
    assert main(["evaluate", "--model", str(model)]) == 1
    assert capsys.readouterr().err == (
        f"error: {model} was trained on other data than {data} holds now (the dataset was made again or "
        "changed, so its test split may hold training samples): make the dataset as it was, or give "
        "data.uri= to evaluate on the data there anyway\n")
    assert main(["evaluate", "--model", str(model), f"data.uri={data}"]) == 0  # on purpose
    copy = tmp_path / "copy"
    write_dataset(toy_dataset(32, seed=6, name="tiny"), str(copy))
    assert main(["evaluate", "--model", str(model), f"data.uri={copy}"]) == 0


def test_the_data_check_of_evaluate_opens_no_s3_connection():
    """A model trained on s3:// data, evaluated on a local copy: the check must not ask for AWS
    credentials (it used to open the model's S3 location to compare it with the copy)."""
    from spdnas.config import load_config
    from spdnas.pipeline import check_model_data

    saved = {"config": {"data": {"uri": "s3://bucket/datasets/radar/"}}, "data_sha256": "before"}
    on_s3 = load_config(None, ["data.uri=s3://bucket/datasets/radar"])
    check_model_data("m.pt", saved, load_config(None, ["data.uri=/tmp/copy"]), "other", False)
    check_model_data("m.pt", {**saved, "data_sha256": None}, on_s3, "other", False)  # an older model.pt
    check_model_data("m.pt", saved, on_s3, "other", True)  # data.uri given on the command line
    with pytest.raises(ValueError, match=r"m\.pt was trained on other data than s3://bucket/datasets/radar "):
        check_model_data("m.pt", saved, on_s3, "other", False)


def test_bad_config_is_an_error_message(experiment_args, capsys):
    assert main(["search", *experiment_args, "search.epochs=[1"]) == 2
    assert "error: override 'search.epochs=[1': not valid YAML" in capsys.readouterr().err
    assert main(["search", *experiment_args, "search.epochs=-1"]) == 2
    assert "search.epochs" in capsys.readouterr().err


def test_no_resume_starts_over_on_the_local_backend(experiment_args, tmp_path):
    assert main(["search", *experiment_args]) == 0
    stale = tmp_path / "runs" / "cli" / "search" / "stale.txt"
    stale.write_text("from the earlier run")
    assert main(["search", "--no-resume", *experiment_args]) == 0
    assert not stale.exists()
    assert (tmp_path / "runs" / "cli" / "search" / "genotype.json").exists()


def test_ctrl_c_is_one_line_and_the_run_resumes(experiment_args, tmp_path, capsys, monkeypatch):
    import spdnas.pipeline

    saved = spdnas.pipeline.save_checkpoint

    def save_then_interrupt(state, folder):
        saved(state, folder)
        raise KeyboardInterrupt

    monkeypatch.setattr(spdnas.pipeline, "save_checkpoint", save_then_interrupt)
    args = ["search", *experiment_args, "search.epochs=2"]
    assert main(args) == 130
    assert capsys.readouterr().err == ("\ninterrupted; run the same command again to continue from the last "
                                       "checkpoint (--no-resume starts over)\n")
    live = tmp_path / "runs" / "cli" / "search" / "live_metrics.jsonl"
    assert [json.loads(line)["epoch"] for line in live.read_text().splitlines()] == [1]  # what it did
    assert main([*args, "--no-resume"]) == 130  # run again, it would start over again
    assert capsys.readouterr().err.endswith("; run it again without --no-resume to continue from the last "
                                            "checkpoint\n")
    monkeypatch.setattr(spdnas.pipeline, "save_checkpoint", saved)
    assert main(args) == 0
    history = (tmp_path / "runs" / "cli" / "search" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in history] == [1, 2]


def test_a_run_folder_in_use_is_refused_and_epochs_are_printed(experiment_args, tmp_path, capsys):
    from spdnas.config import load_config
    from spdnas.pipeline import hold_run_folder

    with hold_run_folder(load_config(None, experiment_args), "train"):  # as another process would
        assert main(["train", "--genotype", "radar", "--no-resume", *experiment_args]) == 1
    holder = f"spdnas (pid {os.getpid()} on {socket.gethostname()})"
    assert capsys.readouterr().err == (f"error: {tmp_path / 'runs' / 'cli' / 'train'} is in use by {holder}: "
                                       "wait for it to end, or give this run another name= (or "
                                       "runtime.output_dir=)\n")
    assert main(["search", *experiment_args]) == 0  # another step of the same run is free
    assert main(["train", "--genotype", "radar", *experiment_args, "runtime.progress=true"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("train epoch 2/2 [")]
    assert len(lines) == 1 and "val_accuracy=" in lines[0] and "train_loss=" in lines[0]


def test_a_mistyped_data_uri_in_a_config_is_an_error_not_a_synthetic_dataset(tmp_path, capsys):
    """A config naming only data.uri, mistyped, made the 3000-sample radar set there (the builder
    defaulted to radar-synth) and searched on it; nothing is made without data.builder now."""
    typo = tmp_path / "my-eeg-dataa"
    config = tmp_path / "eeg.yaml"
    config.write_text(f"data: {{uri: {typo}}}\nruntime: {{output_dir: {tmp_path / 'runs'}}}\n"
                      "distributed: {backend: local}\n")
    assert main(["search", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"error: no dataset at {typo}: check the path. data.builder is not set" in err
    assert not typo.exists()


def test_a_dataset_made_for_a_run_is_announced(tmp_path, capsys):
    from spdnas.config import DataConfig
    from spdnas.pipeline import ensure_dataset

    made = tmp_path / "made"
    ensure_dataset(DataConfig(uri=str(made), builder="basic-motions"), progress=False)  # said anyway
    assert f"no dataset at {made}: making it with data.builder=basic-motions" in capsys.readouterr().err
    ensure_dataset(DataConfig(uri=str(made)), progress=True)  # there now: neither made nor announced
    assert "making" not in capsys.readouterr().err


def test_builder_settings_that_a_dataset_was_not_made_with_are_warned_of(tmp_path):
    """The diff review: following the scale warning's advice (builder_params {scale: auto}) on a
    dataset that exists changed nothing, silently."""
    import warnings

    from spdnas.config import DataConfig
    from spdnas.pipeline import ensure_dataset

    made = str(tmp_path / "radar")
    ensure_dataset(DataConfig(uri=made, builder="radar-synth", builder_params={"n_samples": 30}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ensure_dataset(DataConfig(uri=made, builder="radar-synth", builder_params={"n_samples": 30}))
        ensure_dataset(DataConfig(uri=made))  # no builder named: nothing to compare
    expected = (rf"{made} holds a dataset made by radar-synth with \{{'n_samples': 30\}}; "
                r"data.builder=radar-synth with builder_params \{'n_samples': 30, 'scale': 'auto'\} is not "
                r"applied to it .* spdnas data make radar-synth .*radar --param n_samples=30 --param "
                r"scale=\"auto\" --overwrite")
    scaled = DataConfig(uri=made, builder="radar-synth", builder_params={"n_samples": 30, "scale": "auto"})
    with pytest.warns(UserWarning, match=expected):
        ensure_dataset(scaled)


def test_the_lock_leaves_no_folder_for_a_run_that_never_started(experiment_args, tmp_path, capsys):
    assert main(["search", *experiment_args, "name=typo", f"data.uri={tmp_path / 'absent'}"]) == 1
    assert "absent" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "typo").exists()


def test_a_file_system_without_locks_runs_unlocked(experiment_args, capsys, monkeypatch):
    import errno
    import fcntl

    from spdnas.config import load_config
    from spdnas.pipeline import hold_run_folder

    def no_locks(handle, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    config = load_config(None, experiment_args)
    with hold_run_folder(config, "search"), hold_run_folder(config, "search"):  # neither is refused
        pass
    err = capsys.readouterr().err
    assert err.count("warning: cannot lock") == 2 and "(No locks available)" in err


def test_text_a_console_cannot_show_is_replaced(tmp_path):
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    out = subprocess.run([sys.executable, "-m", "spdnas", "data", "make", "--help"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, encoding="ascii", errors="strict")
    assert out.returncode == 0, out.stderr
    assert "series ? shrunk covariances" in out.stdout  # '→'


def test_no_resume_keeps_the_earlier_run_when_no_full_batch_fits(experiment_args, tmp_path, capsys):
    """The local backend deleted the earlier run, then failed on its first epoch."""
    assert main(["search", *experiment_args]) == 0
    genotype = tmp_path / "runs" / "cli" / "search" / "genotype.json"
    assert main(["search", "--no-resume", *experiment_args, "search.batch_size=1000"]) == 1
    assert "no full batch of 1000" in capsys.readouterr().err
    assert genotype.exists()


def test_evaluate_refuses_what_it_would_ignore_and_makes_no_dataset(experiment_args, tmp_path, capsys):
    """model.* and runtime.dtype/device overrides changed nothing; a mistyped data.uri= made a
    new dataset there (from the model's builder settings) and scored the model on it."""
    assert main(["train", "--genotype", "radar", *experiment_args]) == 0
    model = tmp_path / "runs" / "cli" / "train" / "model.pt"
    capsys.readouterr()
    assert main(["evaluate", "--model", str(model), "model.steps=3", "runtime.device=cuda"]) == 2
    assert "model.steps, runtime.device would change nothing" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(model), "model={steps: 3}", "runtime={dtype: float32}"]) == 2
    assert "model.steps, runtime.dtype would change nothing" in capsys.readouterr().err
    typo = tmp_path / "tinny"
    config = tmp_path / "other.yaml"
    config.write_text(f"data: {{uri: {typo}, builder: radar-synth}}\n")
    for given in ([f"data.uri={typo}", "data.builder=radar-synth"],
                  [f"data={{uri: {typo}, builder: radar-synth}}"], ["--config", str(config)]):
        assert main(["evaluate", "--model", str(model), *given]) == 1
        assert f"no dataset at {typo}: evaluate scores data that exists" in capsys.readouterr().err
        assert not typo.exists()
    own = tmp_path / "tiny"  # the model's own folder, gone: named, it was made again, unchecked
    shutil.rmtree(own)
    assert main(["evaluate", "--model", str(model), f"data.uri={own}", "data.builder=radar-synth"]) == 1
    assert f"no dataset at {own}" in capsys.readouterr().err and not own.exists()


def test_a_benchmarks_top_level_data_overrides_are_refused(capsys):
    """`spdnas quickstart data.uri=/my/data` ran on the synthetic set: benchmark.datasets decide."""
    for command in ("benchmark", "quickstart"):
        assert main([command, "data.uri=/my/data"]) == 2
        assert "data.uri: a benchmark runs on benchmark.datasets" in capsys.readouterr().err


def test_job_entrypoint_passes_no_resume(experiment_args, tmp_path, monkeypatch):
    from jobs.common import parser, run

    monkeypatch.delenv("SPDNAS_STORAGE", raising=False)
    monkeypatch.delenv("SPDNAS_DATA", raising=False)
    config = tmp_path / "experiment.yaml"
    config.write_text("name: cli\n")
    assert run("search", parser("x").parse_args(["--config", str(config), *experiment_args])) == 0
    stale = tmp_path / "runs" / "cli" / "search" / "stale.txt"
    stale.write_text("from the earlier run")
    assert run("search", parser("x").parse_args(["--config", str(config), *experiment_args])) == 0
    assert stale.exists()
    args = parser("x").parse_args(["--config", str(config), "--no-resume", *experiment_args])
    assert run("search", args) == 0
    assert not stale.exists()


def test_a_published_genotype_is_found_beside_a_folder_of_its_name(experiment_args, tmp_path, monkeypatch):
    """A dataset folder named `radar` in the working folder hid the published genotype
    ("[Errno 21] Is a directory")."""
    from spdnas.pipeline import resolve_genotype
    from spdnas.search.genotype import published_genotype

    monkeypatch.chdir(tmp_path)
    (tmp_path / "radar").mkdir()
    assert main(["train", "--genotype", "radar", *experiment_args]) == 0
    assert resolve_genotype("HDM05") == published_genotype("hdm05")  # any letter case, as before


def test_user_errors_are_one_line_not_tracebacks(experiment_args, tmp_path, capsys):
    bad_json = tmp_path / "g.json"
    bad_json.write_text('{"x":')
    not_a_model = tmp_path / "m.pt"
    not_a_model.write_text("hello")
    binary = tmp_path / "b.json"
    binary.write_bytes(b"\xff\xfe")
    cases = [
        (["search", "--config", str(tmp_path / "missing.yaml")], 2, "cannot read config"),
        (["train", "--genotype", str(tmp_path / "missing.json"), *experiment_args], 1,
         "is neither a genotype file nor a published genotype (published: hdm05, radar)"),
        (["train", "--genotype", str(bad_json), *experiment_args], 1, "genotype is not valid JSON"),
        (["train", "--genotype", str(binary), *experiment_args], 1, "b.json: not a genotype file ('utf-8'"),
        (["train", "--genotype", str(tmp_path), *experiment_args], 1, "is a folder (published: hdm05"),
        (["train", "--genotype", "", *experiment_args], 1, "'' is neither a genotype file"),
        (["search", *experiment_args, "model.cells=[]", "model.cell_channels=[]", "model.reduced_dims=[]"],
         2, "model.cells must list at least one cell"),
        (["evaluate", "--model", str(not_a_model)], 1, "not a model saved by spdnas train"),
        (["evaluate", "--model", str(tmp_path / "nope.pt")], 1, "nope.pt: no such model file"),
        (["search", *experiment_args, f"data.uri={tmp_path / 'nowhere'}"], 1, "error: "),
        (["train", "--genotype", "radar", *experiment_args, "train.lr=1e12", "train.grad_clip=null"], 1,
         "the weights have diverged"),
    ]
    for argv, status, message in cases:
        assert main(argv) == status, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err, err


def test_rows_singular_in_float32_are_refused_before_a_float32_run(experiment_args, tmp_path, capsys):
    from dataclasses import replace

    dataset = tiny_dataset()
    eigenvalues = torch.ones(dataset.n, dtype=torch.float64)
    eigenvalues[0] = 1e-13  # positive definite in float64 (n·eps = 1.3e-15), singular in float32
    basis = torch.linalg.qr(torch.randn(dataset.n, dataset.n, dtype=torch.float64))[0]
    matrices = dataset.matrices.clone()
    matrices[5] = basis @ torch.diag(eigenvalues) @ basis.T
    data = tmp_path / "near-singular"
    write_dataset(replace(dataset, matrices=matrices), str(data))
    args = [*experiment_args, f"data.uri={data}"]
    assert main(["search", *args, "runtime.dtype=float32"]) == 1
    err = capsys.readouterr().err
    assert f"sample_id '{dataset.sample_ids[5]}' (row " in err, err
    assert "failed check 'positive-definite'" in err
    assert main(["search", *args]) == 0  # fine in float64


def test_device_settings_that_would_misplace_work_are_refused(experiment_args, monkeypatch, capsys):
    from spdnas.config import load_config
    from spdnas.distributed.runner import _trainer
    from spdnas.engine.runtime import setup_runtime

    assert main(["search", *experiment_args, "distributed.use_gpu=true"]) == 1
    assert "distributed.use_gpu=true needs distributed.backend=ray" in capsys.readouterr().err
    for setting in ("distributed.num_workers=2", "distributed.data=shard"):  # ran as one process
        assert main(["search", *experiment_args, setting]) == 1
        assert "need distributed.backend=ray; the local backend runs one process" in capsys.readouterr().err
    on_ray = load_config(None, ["runtime.device=cuda", "distributed.backend=ray"])
    with pytest.raises(ValueError, match=r"runtime\.device=cuda on Ray: set distributed\.use_gpu=true"):
        _trainer(None, on_ray, "search", {}, resume=True)  # refused before Ray is asked for anything
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"runtime.device='cuda:3' but this process sees 1 CUDA device"):
        setup_runtime(load_config(None, ["runtime.device=cuda:3"]).runtime)
    made_current = []
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_device", made_current.append)  # needs an index: plain "cuda" fails
    _, device = setup_runtime(load_config(None, ["runtime.device=cuda"]).runtime)
    assert device == torch.device("cuda", 0) and made_current == [device]


def test_overrides_may_follow_options(experiment_args, capsys):
    from spdnas.cli import parse_args

    args = parse_args(["train", "a.b=1", "--no-resume", "c.d=2", "--genotype", "radar", "e.f=3"])
    assert args.overrides == ["a.b=1", "c.d=2", "e.f=3"] and args.no_resume and args.genotype == "radar"
    args = parse_args(["evaluate", "--model", "m.pt", "x.y=1", "--split", "val", "x.y=2"])
    assert args.overrides == ["x.y=1", "x.y=2"] and args.split == "val"
    for bad, named in ((["search", "--bogus"], "--bogus"), (["report", "here", "a.b=1"], "a.b=1"),
                       (["search", "a=1", "--no-resume", "b=2", "stray"], "stray")):
        with pytest.raises(SystemExit):
            parse_args(bad)
        assert capsys.readouterr().err.endswith(f"error: unrecognized arguments: {named}\n")
    assert main(["search", *experiment_args[:-1], "--no-resume", experiment_args[-1]]) == 0


def test_a_config_that_is_not_yaml_is_one_line_naming_line_and_column(tmp_path, capsys):
    """`spdnas search --config README.md` printed PyYAML's several lines (scanner context, an
    excerpt of the file and a caret); the README promises one-line errors."""
    readme = tmp_path / "README.md"
    readme.write_text("# spdnas\n\nRun it:\n\n```bash\nspdnas quickstart\n```\n")
    assert main(["search", "--config", str(readme)]) == 2
    assert capsys.readouterr().err == (f"error: {readme}: not valid YAML at line 5, column 1 (found "
                                       "character '`' that cannot start any token); --config takes an "
                                       "experiment YAML file (see configs/)\n")
    binary = tmp_path / "model.pt"
    binary.write_bytes(b"PK\x03\x04\xff\xfe")
    assert main(["search", "--config", str(binary)]) == 2
    assert capsys.readouterr().err == (f"error: {binary}: not a text file (invalid start byte at byte 4); "
                                       "--config takes an experiment YAML file (see configs/)\n")


def test_evaluate_names_a_benchmark_baselines_model(tmp_path, capsys):
    """The benchmark writes a baseline's weights as runs/<dataset>/<method>/seed<k>/train/model.pt,
    like a SPDNetNAS model's: evaluate said "not a model saved by spdnas train (missing
    ['genotype', 'n'])", not what the file is nor where the baseline's test result is."""
    from spdnas.benchmark.methods import run_method
    from spdnas.config import load_config
    from spdnas.engine.splits import split_experiment_data

    data = split_experiment_data(toy_dataset(40, seed=11), 0.5, seed=0)
    config = load_config(None, ["train.batch_size=15", "train.epochs=1", "runtime.progress=false",
                                "distributed.backend=local"])
    train = tmp_path / "runs" / "toy" / "spdnet" / "seed0" / "train"
    run_method("spdnet", config, data, seed=0, out=train.parent)
    model = train / "model.pt"
    assert main(["evaluate", "--model", str(model)]) == 1
    assert capsys.readouterr().err == (
        f"error: {model}: the model of a benchmark baseline (SPDNet), which spdnas evaluate does not read "
        "(it evaluates the models of spdnas train and of the benchmark's spdnetnas and random runs); the "
        f"baseline's test result is in {train / 'result.json'}\n")
    (train / "result.json").unlink()
    assert main(["evaluate", "--model", str(model)]) == 1
    assert capsys.readouterr().err.endswith("; the baseline's test result is in its trial's "
                                            "train/result.json and the benchmark's results.jsonl\n")


def test_counts_are_ints_and_the_confusion_matrix_names_its_columns(experiment_args, tmp_path, capsys):
    """result.json and evaluate's JSON said "test_samples": 24.0 (a count summed as a float), and
    the printed confusion matrix had no header: which column is which predicted class was not said."""
    assert main(["train", "--genotype", "radar", *experiment_args]) == 0
    train = tmp_path / "runs" / "cli" / "train"
    assert type(json.loads((train / "result.json").read_text())["test_samples"]) is int
    report = tmp_path / "evaluation.json"
    capsys.readouterr()
    assert main(["evaluate", "--model", str(train / "model.pt"), "--output", str(report)]) == 0
    assert type(json.loads(report.read_text())["test_samples"]) is int
    out = capsys.readouterr().out
    assert '"test_samples": 24,' in out
    lines = out.splitlines()
    title = lines.index("confusion matrix (rows: true class, columns: predicted class)")
    assert lines[title + 1].split() == ["a", "b", "c"]
    matrix = json.loads(report.read_text())["confusion_matrix"]
    for name, counts, line in zip("abc", matrix, lines[title + 2:], strict=True):
        assert line.split() == [name, *map(str, counts)]


def test_a_sweep_names_every_failed_trial(monkeypatch, capsys):
    """Only the first of its failed trials was named; the README says they all are."""
    from spdnas.distributed import sweep

    trials = [{"trial_id": f"t{i}", "seed": i, "config": {"train.lr": 0.1 * (i + 1)}, "status": "ERROR",
               "error": f"ValueError: problem {i}", "metric": None} for i in range(3)]
    trials.append({"trial_id": "t3", "seed": 0, "config": {"train.lr": 0.5}, "status": "TERMINATED",
                   "metric": 0.9})
    outcome = sweep.SweepOutcome(trials, [], {"trials": "runs/s/sweep/trials.jsonl"})
    monkeypatch.setattr(sweep, "run_sweep", lambda config, resume: outcome)
    assert main(["sweep", "sweep.space={train.lr: {type: loguniform, low: 0.01, high: 0.5}}"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[:3] == [f"failed: trial t{i} (seed {i}) {trials[i]['config']}: ValueError: problem {i}"
                       for i in range(3)]
    assert err[3] == ("error: 3 of 4 trials failed (above; status ERROR in runs/s/sweep/trials.jsonl) and "
                      "are left out of the summary")
