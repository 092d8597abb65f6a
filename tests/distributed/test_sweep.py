"""Ray Tune + Optuna sweep: seeds as repeats, per-trial TensorBoard logs, resume after Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from spdnas.data import write_dataset
from tests.distributed.test_ray_train import tiny_dataset

pytestmark = [pytest.mark.ray, pytest.mark.timeout(900)]


def sweep_config(tmp_path: Path) -> Path:
    data = tmp_path / "tiny"
    write_dataset(tiny_dataset(), str(data))
    config = {
        "name": "sw", "data": {"uri": str(data), "builder": None},
        "model": {"reduced_dims": [3]}, "train": {"epochs": EPOCHS, "batch_size": 8},
        "runtime": {"output_dir": str(tmp_path / "runs"), "progress": False},
        "sweep": {"num_samples": 2, "seeds": 2, "search": False, "genotype": "radar",
                  "max_concurrent_trials": 1,
                  "space": {"train.lr": {"type": "loguniform", "low": 0.01, "high": 0.3},
                            "train.weight_decay": {"type": "loguniform", "low": 1e-5, "high": 1e-2}}},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def spdnas(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "spdnas", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


EPOCHS = 2


def finished(tune_dir: Path) -> dict[str, str]:
    """Trials Tune has terminated: their result.json (one line per epoch).

    With one trial at a time, Tune starts a trial only once the one before it has returned, so
    every trial but the newest (trial folders are numbered in start order) is finished. The
    newest may have reported its last epoch yet still be shutting its Train run down: it would be
    rerun after an interrupt. Files reach the storage folder by copy, so one may be caught
    half-written; only complete result files count.
    """
    numbered = {int(re.match(r"sweep_trial_[^_]+_(\d+)_", d.name).group(1)): d
                for d in tune_dir.glob("sweep_trial_*")}
    out = {}
    for number in sorted(numbered)[:-1]:
        path = numbered[number] / "result.json"
        text = path.read_text() if path.exists() else ""
        if len(text.splitlines()) == EPOCHS:
            out[numbered[number].name] = text
    return out


@pytest.mark.slow  # ~190 s; CI runs it (.ci/run), `make test-all` too
def test_sweep_repeats_seeds_and_resumes_after_interrupt(tmp_path):
    config = sweep_config(tmp_path)
    tune_dir = tmp_path / "runs" / "sw" / "tune"
    first = spdnas("sweep", "--config", str(config))
    deadline = time.time() + 600
    while not finished(tune_dir):  # interrupt once a trial has finished and another started
        assert first.poll() is None, first.stdout.read()
        assert time.time() < deadline, "no trial finished in time"
        time.sleep(1)
    os.killpg(first.pid, signal.SIGINT)  # like Ctrl-C
    first.wait(timeout=300)
    done_before = finished(tune_dir)
    assert 1 <= len(done_before) < 4
    assert not (tmp_path / "runs" / "sw" / "sweep" / "trials.jsonl").exists()

    second = spdnas("sweep", "--config", str(config))
    output, _ = second.communicate(timeout=800)
    assert second.returncode == 0, output[-3000:]
    trials = [json.loads(line) for line in
              (tmp_path / "runs" / "sw" / "sweep" / "trials.jsonl").read_text().splitlines()]
    assert len(trials) == 4 and all(t["status"] == "TERMINATED" for t in trials)
    configs = {json.dumps(t["config"], sort_keys=True) for t in trials}
    assert len(configs) == 2  # Optuna proposed 2 configurations, each repeated with seeds 0 and 1
    for c in configs:
        assert sorted(t["seed"] for t in trials if json.dumps(t["config"], sort_keys=True) == c) == [0, 1]
    for name, text in done_before.items():  # finished trials kept, not rerun
        assert (tune_dir / name / "result.json").read_text() == text
    # restored, not started afresh: the same 4 trials (a fresh Tuner names new trial folders)
    assert len(list(tune_dir.glob("sweep_trial_*"))) == 4
    kept = {json.loads(text.splitlines()[0])["trial_id"] for text in done_before.values()}
    assert kept <= {t["trial_id"] for t in trials}
    summary = json.loads((tmp_path / "runs" / "sw" / "sweep" / "summary.json").read_text())
    assert len(summary) == 2 and all(0 <= row["metric_mean"] <= 1 for row in summary)
    assert all(list(d.glob("events.out.tfevents.*")) for d in tune_dir.glob("sweep_trial_*"))

    changed = spdnas("sweep", "--config", str(config), "sweep.seeds=3")  # more seeds per configuration
    output, _ = changed.communicate(timeout=300)
    assert changed.returncode == 2, output[-3000:]
    assert "holds a sweep with other settings (sweep.seeds): run with --no-resume" in output

    from tests.helpers import toy_dataset

    write_dataset(toy_dataset(32, seed=6, name="tiny"), str(tmp_path / "tiny"), overwrite=True)
    remade = spdnas("sweep", "--config", str(config))  # other data at the same place
    output, _ = remade.communicate(timeout=300)
    assert remade.returncode == 1, output[-3000:]  # a user error: one line, no traceback
    assert "sw/sweep/ was run on other data than" in output



@pytest.mark.slow  # ~100 s (a sweep of its own, on its own Ray); CI runs it
def test_a_trial_whose_run_failed_is_run_again(tmp_path):
    """A search worker dies after epoch 1 and Ray Train may not restart it (max_failures=0): the
    trial fails, as when the node of its own process is lost, and Tune runs it again
    (trial_max_failures=1); its search resumes (from the run folder's checkpoints) and finishes."""
    marker = tmp_path / "killed"
    env = {**os.environ, "SPDNAS_FAULT_AT_EPOCH": "1", "SPDNAS_FAULT_MARKER": str(marker)}
    run = subprocess.run(
        [sys.executable, "-m", "spdnas", "sweep", "--config", str(sweep_config(tmp_path)),
         "sweep.search=true", "search.epochs=2", "search.batch_size=8", "sweep.num_samples=1",
         "sweep.seeds=1", "distributed.max_failures=0", "distributed.trial_max_failures=1"],
        capture_output=True, text=True, env=env, timeout=800)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert marker.exists(), "the fault hook never fired"
    (trial,) = [json.loads(line) for line in
                (tmp_path / "runs" / "sw" / "sweep" / "trials.jsonl").read_text().splitlines()]
    assert trial["status"] == "TERMINATED" and 0 <= trial["metric"] <= 1


def test_a_diverged_trial_is_a_result_not_an_error(ray_session, tmp_path):
    """A sampled learning rate that diverges made the trial an ERROR: Optuna never learnt that
    the region is bad, the sweep exited 1, and every resume ran the trial again (and it diverged
    again). Now it ends with the worst value, is recorded as DIVERGED and is not run again."""
    from spdnas.config import load_config
    from spdnas.distributed.sweep import run_sweep

    config = load_config(sweep_config(tmp_path), [
        "sweep.num_samples=1", "sweep.seeds=1", "sweep.space={train.lr: {type: choice, values: [1.0e12]}}",
        "train.grad_clip=null", "train.batch_size=4"])
    (trial,) = run_sweep(config).trials
    assert trial["status"] == "DIVERGED" and trial["metric"] is None
    assert re.match(r"train epoch 1, step \d+: .*the weights have diverged", trial["error"]), trial
    tune_dir = tmp_path / "runs" / "sw" / "tune"
    (folder,) = tune_dir.glob("sweep_trial_*")
    reported = [json.loads(line) for line in (folder / "result.json").read_text().splitlines()]
    assert reported[-1]["best_val_accuracy"] == float("-inf")  # what Tune and Optuna saw
    again = run_sweep(config)  # resumed: the trial is finished, not run again
    assert again.trials == [trial] and again.summary == []
    assert [d.name for d in tune_dir.glob("sweep_trial_*")] == [folder.name]
    assert (folder / "result.json").read_text().count("\n") == len(reported)
