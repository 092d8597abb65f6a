"""The sweep's trials.jsonl records and summary, without starting Ray."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from spdnas.config import load_config
from spdnas.distributed.sweep import _summarise, trial_record


def trial(lr, seed, metric, status="TERMINATED"):
    return {"trial_id": f"{lr}-{seed}", "config": {"train.lr": lr}, "seed": seed, "metric": metric,
            "test_accuracy": None if metric is None else metric - 0.1, "status": status}


def test_trials_that_did_not_terminate_are_left_out_and_counted():
    """An errored trial that reported a partial metric (0.1) must not drag its configuration's mean."""
    trials = [trial(0.1, 0, 0.8), trial(0.1, 1, 0.1, "ERROR"), trial(0.1, 2, 0.6),
              trial(0.2, 0, 0.7), trial(0.2, 1, 0.5),
              trial(0.3, 0, 0.9, "ERROR"), trial(0.3, 1, None, "ERROR")]
    rows = _summarise(trials, "max")
    assert [r["config"] for r in rows] == [{"train.lr": 0.1}, {"train.lr": 0.2}]  # 0.3: nothing finished
    assert rows[0]["seeds"] == [0, 2] and rows[0]["metric_mean"] == pytest.approx(0.7)
    assert rows[0]["test_accuracy_mean"] == pytest.approx(0.6) and rows[0]["excluded"] == 1
    assert rows[1]["metric_mean"] == pytest.approx(0.6) and rows[1]["excluded"] == 0


def test_summary_order_follows_the_mode():
    trials = [trial(0.1, 0, 0.3), trial(0.2, 0, 0.2), trial(0.3, 0, 0.4)]
    assert [r["metric_mean"] for r in _summarise(trials, "min")] == [0.2, 0.3, 0.4]
    assert [r["metric_mean"] for r in _summarise(trials, "max")] == [0.4, 0.3, 0.2]


@pytest.mark.parametrize("mode", ["max", "min"])
def test_trial_records_carry_the_sweep_mode(mode):
    config = load_config(None, [f"sweep.mode={mode}", "sweep.metric=best_val_loss", "runtime.seed=5"])
    result = SimpleNamespace(config={"train.lr": 0.05, "__trial_index__": 1}, path="/tune/sweep_trial_ab",
                             metrics={"best_val_loss": 0.4, "test_accuracy": 0.9}, error=None)
    assert trial_record(result, config) == {
        "trial_id": "sweep_trial_ab", "config": {"train.lr": 0.05}, "seed": 6, "metric": 0.4,
        "test_accuracy": 0.9, "mode": mode, "status": "TERMINATED"}
    failed = SimpleNamespace(**{**vars(result), "error": RuntimeError("worker died")})
    assert trial_record(failed, config)["status"] == "ERROR"
    stopped = SimpleNamespace(**{**vars(result), "metrics": {"best_val_loss": 0.4}})  # by ASHA
    assert trial_record(stopped, config)["status"] == "STOPPED"
