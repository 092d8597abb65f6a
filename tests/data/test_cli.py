"""``spdnas data make/validate/info`` on local folders."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import numpy as np
import pytest

from spdnas.cli import main
from spdnas.data import read_dataset, write_dataset
from tests.data.conftest import rewrite_file, toy_dataset
from tests.data.test_validation import set_column


def test_make_info_validate(tmp_path, capsys):
    out = tmp_path / "radar"
    assert main(["data", "make", "radar-synth", str(out), "--param", "n_samples=60",
                 "--param", "class_balance=[1,1,2]", "--param", "length=210"]) == 0
    assert "wrote 60 samples" in capsys.readouterr().out
    dataset = read_dataset(str(out))
    assert dataset.meta.provenance["params"] == {"n_samples": 60, "class_balance": [1, 1, 2], "length": 210}

    assert main(["data", "info", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["n", "20"]
    table = {line.split()[0]: line.split()[1:] for line in lines[-5:]}
    assert table["class"] == ["train", "val", "test", "total"]
    counts = dataset.counts()
    for k, name in enumerate(dataset.meta.class_names):
        row = [counts[s][k] for s in ("train", "val", "test")]
        assert table[name] == [str(c) for c in [*row, sum(row)]]
    assert table["clutter"][-1] == "30" and table["total"][-1] == "60"

    assert main(["data", "validate", str(out)]) == 0
    assert "60 rows" in capsys.readouterr().out


def test_validate_reports_failure_with_exit_status(tmp_path, capsys):
    out = tmp_path / "radar"
    main(["data", "make", "radar-synth", str(out), "--param", "n_samples=30"])
    labels = [0] * 30
    labels[4] = 7
    name = rewrite_file(out, 0, lambda t: set_column(t, "label", labels))
    capsys.readouterr()
    assert main(["data", "validate", str(out)]) == 1
    err = capsys.readouterr().err
    assert name in err and "'label'" in err and "sample_id" in err


def test_make_refuses_overwrite_without_flag(tmp_path, capsys):
    out = tmp_path / "bm"
    args = ["data", "make", "radar-synth", str(out), "--param", "n_samples=12"]
    assert main(args) == 0
    manifest = (out / "dataset.json").read_text()
    assert main(args) == 1
    assert "overwrite" in capsys.readouterr().err
    assert (out / "dataset.json").read_text() == manifest
    assert main([*args, "--param", "seed=5", "--overwrite"]) == 0
    assert json.loads((out / "dataset.json").read_text())["generation"] == 1


def test_make_into_a_file_says_it_is_not_a_folder(tmp_path, capsys):
    """The output path an existing file: pyarrow's "[Errno 20] Cannot list directory ... Detail:
    [errno 20] Not a directory" was the whole message."""
    out = tmp_path / "README.md"
    out.write_text("# notes\n")
    assert main(["data", "make", "radar-synth", str(out), "--param", "n_samples=12"]) == 1
    assert capsys.readouterr().err == (f"spdnas data make: error: {out}: a file, not a folder; give the path "
                                       "of a folder (a new one, or one that holds a dataset)\n")
    assert out.read_text() == "# notes\n"


def test_bad_param_syntax(tmp_path, capsys):
    assert main(["data", "make", "radar-synth", str(tmp_path / "x"), "--param", "seed"]) == 1
    assert "KEY=VALUE" in capsys.readouterr().err


def test_unknown_dataset_lists_known_ones(tmp_path, capsys):
    assert main(["data", "make", "mnist", str(tmp_path / "x")]) == 1
    assert "radar-synth" in capsys.readouterr().err


def test_data_requires_a_subcommand():
    with pytest.raises(SystemExit):
        main(["data"])


@pytest.mark.parametrize(("param", "message"), [
    ("snr_db=loud", "wrong type for snr_db='loud' (expected float)"),
    ("seed=1.5", "wrong type for seed=1.5 (expected int)"),
    ("n_samples=true", "wrong type for n_samples=True (expected int)"),
    ("n_samples=2", "n_samples must be ≥ 3 (one per class), got 2"),
    ("snr_jitter_db=-1", "snr_jitter_db must be ≥ 0"),
    ("fractions=half", "fractions must be a mapping split → fraction or three numbers"),
    ("fractions=[0.5,0.5]", "fractions must be a mapping split → fraction or three numbers"),
])
def test_bad_param_values_are_named_before_building(tmp_path, capsys, param, message):
    assert main(["data", "make", "radar-synth", str(tmp_path / "x"), "--param", param]) == 1
    err = capsys.readouterr().err
    assert err.startswith("spdnas data make: error: ") and message in err, err
    assert not (tmp_path / "x").exists()


def test_int_params_pass_as_floats_and_strings_stay_strings(tmp_path):
    assert main(["data", "make", "radar-synth", str(tmp_path / "x"), "--param", "n_samples=12",
                 "--param", "snr_db=3", "--param", "shrinkage=0.1"]) == 0
    assert read_dataset(str(tmp_path / "x")).meta.provenance["params"] == {
        "n_samples": 12, "snr_db": 3, "shrinkage": 0.1}


def test_make_help_lists_every_builder_with_its_parameters(capsys):
    from spdnas.data.registry import builders

    with pytest.raises(SystemExit):
        main(["data", "make", "--help"])
    out = capsys.readouterr().out
    for name in builders():
        assert f"\n{name}: " in out
    assert "n_samples=3000" in out and "val_fraction=0.1" in out and "src, " in out


def test_key_errors_are_not_quoted(tmp_path, capsys):
    assert main(["data", "make", "mnist", str(tmp_path / "x")]) == 1
    assert capsys.readouterr().err == ("spdnas data make: error: unknown dataset 'mnist'; known: afew, "
                                       "basic-motions, hdm05-npy, japanese-vowels, matrices, radar-npy, "
                                       "radar-synth\n")


def test_a_missing_field_is_named_as_missing(tmp_path, capsys):
    """A manifest without its class names printed `error: class_names`."""
    import json

    from spdnas.data import write_dataset
    from tests.helpers import toy_dataset

    write_dataset(toy_dataset(8, seed=0), str(tmp_path / "d"))
    manifest = tmp_path / "d" / "dataset.json"
    tree = json.loads(manifest.read_text())
    del tree["meta"]["class_names"]
    manifest.write_text(json.dumps(tree))
    assert main(["data", "info", str(tmp_path / "d")]) == 1
    assert capsys.readouterr().err == ("spdnas data info: error: missing field 'class_names' (a file or "
                                       "record without a field spdnas reads; SPDNAS_DEBUG=1 shows where)\n")


def test_spdnas_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    """One error line hides where the error came from; SPDNAS_DEBUG=1 raises it instead."""
    monkeypatch.setenv("SPDNAS_DEBUG", "0")
    assert main(["data", "make", "mnist", str(tmp_path / "x")]) == 1
    monkeypatch.setenv("SPDNAS_DEBUG", "1")
    with pytest.raises(KeyError, match="unknown dataset 'mnist'"):
        main(["data", "make", "mnist", str(tmp_path / "x")])
    with pytest.raises(ValueError, match="neither a genotype file"):
        main(["train", "--genotype", str(tmp_path / "missing.json"), "distributed.backend=local"])
    assert main(["search", "search.epochs=[1"]) == 2  # a config's problems stay error lines


@pytest.mark.parametrize(("text", "message"), [
    ('{"format": ', "not valid JSON"), ("[1, 2]", "format 'list', expected"),
    ('{"format": "csv"}', "format 'csv', expected"),
])
def test_damaged_manifest_is_named(tmp_path, capsys, text, message):
    out = tmp_path / "d"
    assert main(["data", "make", "radar-synth", str(out), "--param", "n_samples=12"]) == 0
    (out / "dataset.json").write_text(text)
    capsys.readouterr()
    assert main(["data", "info", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{out / 'dataset.json'}: {message}" in err, err


def test_info_counts_groups_per_split(tmp_path, capsys):
    dataset = toy_dataset(count=24)
    mixed = replace(dataset, groups=np.array([f"s{i % 3}" for i in range(24)]))  # each subject in all splits
    write_dataset(mixed, tmp_path / "mixed")
    write_dataset(mixed.with_group_split({"train": 1 / 3, "val": 1 / 3, "test": 1 / 3}, seed=0),
                  tmp_path / "by-subject")
    assert main(["data", "info", str(tmp_path / "mixed")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "groups         3       3       3  (3 in more than one split: not a subject-wise split)")
    assert main(["data", "info", str(tmp_path / "by-subject")]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split() == [
        "groups", "1", "1", "1", "(0", "in", "more", "than", "one", "split)"]


def test_warnings_of_spdnas_are_one_line_each(tmp_path):
    """A review: importer warnings came as `/…/matrices.py:187: UserWarning: …` plus the source line.
    Run as a command (pytest records warnings instead of printing them); recorded in-process."""
    import subprocess
    import sys
    import warnings

    import torch

    from tests.helpers import random_spd

    folder = tmp_path / "m"
    folder.mkdir()
    for i, m in enumerate(random_spd(12, n=3, generator=torch.Generator().manual_seed(0)).numpy()):
        np.save(folder / f"x{i:02d}_{i % 2}.npy", m)
    argv = ["data", "make", "matrices", str(tmp_path / "out"), "--param", f"src={folder}",
            "--param", 'class_names=["a","b","c"]']
    env = {k: v for k, v in os.environ.items() if k != "SPDNAS_DEBUG"}
    done = subprocess.run([sys.executable, "-m", "spdnas", *argv], capture_output=True, text=True, env=env,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "warning: matrices: no sample of class(es) c: the network would have an output" in done.stderr
    assert "UserWarning" not in done.stderr and "matrices.py" not in done.stderr
    with warnings.catch_warnings(record=True) as caught:  # as a library: still recorded
        warnings.simplefilter("always")
        assert main([*argv[:3], str(tmp_path / "again"), *argv[4:]]) == 0
    assert any("no sample of class(es) c" in str(w.message) for w in caught)
