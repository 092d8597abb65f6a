"""``spdnas data make/validate/info`` on local folders."""

from __future__ import annotations

import json

import pytest

from spdnas.cli import main
from spdnas.data import read_dataset
from tests.data.conftest import rewrite_file
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


def test_bad_param_syntax(tmp_path, capsys):
    assert main(["data", "make", "radar-synth", str(tmp_path / "x"), "--param", "seed"]) == 1
    assert "KEY=VALUE" in capsys.readouterr().err


def test_unknown_dataset_lists_known_ones(tmp_path, capsys):
    assert main(["data", "make", "mnist", str(tmp_path / "x")]) == 1
    assert "radar-synth" in capsys.readouterr().err


def test_data_requires_a_subcommand():
    with pytest.raises(SystemExit):
        main(["data"])
