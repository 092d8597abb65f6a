"""Parameter importance of a sweep (fANOVA through Optuna)."""

from __future__ import annotations

import random

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from spdnas.report.importance import infer_distribution, param_importances
from tests.report.conftest import synthetic_trials


def test_the_parameter_that_drives_the_metric_ranks_first():
    outcome = param_importances(synthetic_trials(40))
    assert outcome.reason is None and outcome.n_trials == 40
    ranking = list(outcome.importances)
    assert ranking[0] == "search.arch_lr"
    assert outcome.importances["search.arch_lr"] > 0.7
    assert sum(outcome.importances.values()) == pytest.approx(1.0)
    assert outcome.distributions["search.arch_lr"].endswith("(log)")
    assert outcome.distributions["model.mixture"] == "categorical {sigmoid, softmax, sparsemax}"
    assert outcome.best["metric"] == max(t["metric"] for t in synthetic_trials(40))


def test_a_categorical_driver_is_found_too():
    rng = random.Random(3)
    effect = {"sparsemax": 0.9, "softmax": 0.7, "sigmoid": 0.5}
    trials = []
    for index in range(30):
        mixture = rng.choice(sorted(effect))
        config = {"mixture": mixture, "lr": rng.uniform(0.01, 0.1), "steps": rng.choice([2, 3])}
        trials.append({"trial_id": index, "status": "TERMINATED", "config": config,
                       "metric": effect[mixture] + rng.gauss(0, 0.01)})
    assert next(iter(param_importances(trials).importances)) == "mixture"


def test_too_few_trials_are_not_assessed():
    outcome = param_importances(synthetic_trials(5))
    assert outcome.importances == {}
    assert outcome.reason == "5 configuration(s) in 5 usable trials; fANOVA needs at least 8 configurations"
    assert outcome.best is not None


def test_seeds_of_one_configuration_are_one_point():
    """2 configurations × 4 seeds were 8 "trials" and got importances, from two points."""
    trials = [{"trial_id": 4 * c + s, "seed": s, "status": "TERMINATED",
               "metric": random.Random(4 * c + s).random(),
               "config": {"train.lr": [0.01, 0.1][c], "search.epochs": [5, 9][c]}}
              for c in range(2) for s in range(4)]
    outcome = param_importances(trials)
    assert outcome.importances == {} and outcome.n_trials == 8 and outcome.n_configurations == 2
    assert outcome.reason == "2 configuration(s) in 8 usable trials; fANOVA needs at least 8 configurations"
    rng = random.Random(0)  # 12 configurations × 3 seeds: assessed, on the 12 means
    trials = []
    for c in range(12):
        config = {"train.lr": 10 ** rng.uniform(-3, -1), "train.weight_decay": 10 ** rng.uniform(-5, -2)}
        trials += [{"trial_id": 3 * c + s, "seed": s, "status": "TERMINATED", "config": config,
                    "metric": 0.5 + 5 * config["train.lr"] + rng.gauss(0, 0.01)} for s in range(3)]
    outcome = param_importances(trials)
    assert outcome.n_configurations == 12 and outcome.n_trials == 36
    assert next(iter(outcome.importances)) == "train.lr"


def test_failed_trials_and_constant_or_partial_parameters_are_left_out():
    trials = synthetic_trials(20)
    for trial in trials:
        trial["config"]["runtime.dtype"] = "float64"
    trials[3]["status"] = "ERROR"
    trials[4]["metric"] = float("nan")
    del trials[5]["config"]["train.batch_size"]
    outcome = param_importances(trials)
    assert outcome.n_trials == 18 and outcome.n_skipped == 2
    assert outcome.excluded == {"runtime.dtype": "a single value ('float64')",
                                "train.batch_size": "absent from 1 of 18 configurations"}
    assert set(outcome.importances) == {"search.arch_lr", "search.weight_decay", "model.mixture"}


def test_nothing_to_assess_when_every_parameter_is_constant():
    trials = [{"config": {"lr": 0.1, **({"tag": i} if i else {})}, "metric": 0.5 + 0.01 * i,
               "status": "TERMINATED"} for i in range(10)]  # 10 configurations: "tag" absent from one
    outcome = param_importances(trials)
    assert outcome.reason == "no parameter took at least two values in every configuration"


def test_nothing_to_assess_when_every_trial_has_the_same_metric():
    """fANOVA raises on zero variance; a sweep whose every configuration reaches 100% val accuracy
    (a small val split) must still get its report."""
    trials = synthetic_trials(12)
    for trial in trials:
        trial["metric"] = 1.0
    outcome = param_importances(trials)
    assert outcome.importances == {}
    assert outcome.reason == ("the metric has the same value (1) in every usable trial: there is no "
                              "variation to explain")
    assert outcome.best["metric"] == 1.0


def test_infer_distribution():
    assert infer_distribution([1, 5, 3]) == IntDistribution(1, 5)
    assert infer_distribution([0.1, 0.2, 1]) == FloatDistribution(0.1, 1.0)
    assert infer_distribution([1e-4, 1e-2]) == FloatDistribution(1e-4, 1e-2, log=True)
    assert infer_distribution([True, False]) == CategoricalDistribution([False, True])
    assert infer_distribution(["b", "a", "b"]) == CategoricalDistribution(["a", "b"])


def test_best_trial_honours_the_recorded_mode():
    trials = synthetic_trials(10)
    metrics = [t["metric"] for t in trials]
    outcome = param_importances([{**t, "mode": "min"} for t in trials])
    assert outcome.mode == "min" and outcome.mode_recorded
    assert outcome.best["metric"] == min(metrics) and outcome.best["metric"] != max(metrics)
    outcome = param_importances(trials)  # written before trials recorded the mode
    assert outcome.mode == "max" and not outcome.mode_recorded and outcome.best["metric"] == max(metrics)


def test_best_is_the_configuration_with_the_best_mean_over_its_seeds_and_stopped_trials_are_left_out():
    def trial(index, lr, metric, status="TERMINATED"):
        return {"trial_id": index, "config": {"train.lr": lr}, "metric": metric, "status": status}

    # lr 0.2 has the best single trial, lr 0.05 the best mean; the STOPPED trial (ASHA) would
    # otherwise be the best of all.
    trials = [trial(0, 0.05, 0.85), trial(1, 0.05, 0.86), trial(2, 0.2, 0.88), trial(3, 0.2, 0.70),
              trial(4, 0.1, 0.95, "STOPPED"), trial(5, 0.1, 0.99, "ERROR")]
    outcome = param_importances(trials)
    assert outcome.n_trials == 4 and outcome.n_skipped == 2
    assert outcome.best == {"config": {"train.lr": 0.05}, "metric": pytest.approx(0.855), "trials": 2,
                            "trial_ids": [0, 1]}
    minimum = param_importances([{**t, "mode": "min"} for t in trials]).best
    assert minimum["config"] == {"train.lr": 0.2} and minimum["metric"] == pytest.approx(0.79)


def test_the_best_configuration_counts_each_seed_once():
    """TPE proposed a configuration again: its repeated seeds were counted twice in the best mean."""
    def trial(index, lr, seed, metric):
        return {"trial_id": index, "config": {"train.lr": lr}, "seed": seed, "metric": metric,
                "status": "TERMINATED"}

    trials = [trial(0, 0.05, 0, 0.9), trial(1, 0.05, 1, 0.7), trial(2, 0.05, 0, 0.9), trial(3, 0.1, 0, 0.82)]
    assert param_importances(trials).n_trials == 3  # and the fANOVA sees the repeat once
    assert param_importances(trials).best == {"config": {"train.lr": 0.1}, "metric": 0.82, "trials": 1,
                                              "trial_ids": [3]}  # lr 0.05: (0.9 + 0.7) / 2 = 0.8, not 0.833


def test_conflicting_modes_are_refused():
    trials = synthetic_trials(10)
    trials[0]["mode"], trials[1]["mode"] = "min", "max"
    with pytest.raises(ValueError, match="different sweep modes"):
        param_importances(trials)
