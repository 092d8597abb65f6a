"""Importance of a sweep's parameters for its metric (fANOVA, through Optuna).

The sweep's trials (``sweep/trials.jsonl``: ``trial_id``, ``config``, ``seed``, ``metric``,
``status`` and the sweep's ``mode``, ``max`` or ``min``) become completed trials of an
in-memory Optuna study, with one distribution per parameter inferred from the values it took;
Optuna's fANOVA evaluator then says how much of the metric's variance each parameter explains
(normalised to sum to 1). Each configuration counts once, with the mean of its seeds: seeds are
repeats of one point, not more points.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from spdnas.report.trials import by_configuration

MIN_CONFIGURATIONS = 8
# Left out: failed or diverged trials, and trials stopped early (e.g. by ASHA), whose metric
# comes from an unfinished retraining — as in the sweep's summary.json.
LEFT_OUT_STATUSES = {"ERROR", "FAILED", "FAIL", "STOPPED", "DIVERGED"}


@dataclass
class Importance:
    """Outcome of :func:`param_importances`.

    Attributes
    ----------
    importances : dict
        ``{parameter: share of explained variance}``, descending, summing to 1; empty when
        not computed.
    reason : str or None
        Why nothing was computed.
    distributions : dict
        ``{parameter: description}`` of the distribution inferred for each assessed parameter.
    excluded : dict
        ``{parameter: why it was left out}``.
    n_trials, n_skipped : int
        Trials used; trials left out (failed, stopped early, without a finite metric, or a seed
        TPE repeated).
    n_configurations : int
        Distinct configurations among the used trials (the points fANOVA sees).
    mode : str
        ``max`` or ``min``: whether a higher or a lower metric is better.
    mode_recorded : bool
        False when the trials do not record the sweep's mode (sweeps written before they did):
        ``max`` is then assumed.
    best : dict or None
        The configuration with the best mean metric under ``mode`` over its used trials (its
        seeds): ``config``, ``metric`` (the mean), ``trials`` (how many) and ``trial_ids``.
    """

    importances: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    distributions: dict[str, str] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)
    n_trials: int = 0
    n_skipped: int = 0
    n_configurations: int = 0
    mode: str = "max"
    mode_recorded: bool = False
    best: dict[str, Any] | None = None


def _scalar(value: Any) -> Any:
    """Values Optuna can store as a categorical choice (lists etc. become their JSON text)."""
    return value if value is None or isinstance(value, bool | int | float | str) else json.dumps(value)


def infer_distribution(values: list[Any]) -> BaseDistribution:
    """The distribution a parameter's observed ``values`` come from.

    All ints (not bools) → :class:`IntDistribution`; all numbers → :class:`FloatDistribution`
    (log scale when positive and spanning at least two decades); anything else →
    :class:`CategoricalDistribution` over the distinct values.
    """
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if numeric and all(isinstance(v, int) for v in values):
        return IntDistribution(min(values), max(values))
    if numeric and all(math.isfinite(v) for v in values):
        low, high = float(min(values)), float(max(values))
        return FloatDistribution(low, high, log=low > 0 and high / low >= 100)
    return CategoricalDistribution(sorted(set(values), key=lambda v: (type(v).__name__, str(v))))


def _describe(distribution: BaseDistribution) -> str:
    if isinstance(distribution, CategoricalDistribution):
        return "categorical {" + ", ".join(str(c) for c in distribution.choices) + "}"
    scale = " (log)" if getattr(distribution, "log", False) else ""
    kind = "int" if isinstance(distribution, IntDistribution) else "float"
    return f"{kind} [{distribution.low:g}, {distribution.high:g}]{scale}"


def _usable(trial: dict[str, Any]) -> bool:
    metric = trial.get("metric")
    return (str(trial.get("status", "")).upper() not in LEFT_OUT_STATUSES
            and isinstance(metric, int | float) and not isinstance(metric, bool) and math.isfinite(metric)
            and isinstance(trial.get("config"), dict))


def sweep_mode(trials: list[dict[str, Any]]) -> str | None:
    """The ``mode`` the trials record (None if none does).

    Parameters
    ----------
    trials : list of dict
        Lines of ``sweep/trials.jsonl``; sweeps record their ``mode`` in every trial.

    Raises
    ------
    ValueError
        If the trials record different modes, or one that is neither ``max`` nor ``min``.
    """
    modes = sorted({str(t["mode"]) for t in trials if t.get("mode") is not None})
    if len(modes) > 1:
        raise ValueError(f"the trials record different sweep modes: {modes}")
    if modes and modes[0] not in ("max", "min"):
        raise ValueError(f"sweep mode must be max or min, got {modes[0]!r}")
    return modes[0] if modes else None


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def param_importances(trials: list[dict[str, Any]], min_configurations: int = MIN_CONFIGURATIONS,
                      seed: int = 0) -> Importance:
    """fANOVA importance of each swept parameter for ``metric``.

    Parameters
    ----------
    trials : list of dict
        Sweep trials: ``config`` (``{parameter: value}``), ``metric`` (float), ``status`` and
        ``mode`` (``max`` or ``min``; ``max`` when absent).
    min_configurations : int
        Fewer distinct configurations than this among the usable trials: nothing is computed (a
        forest on a handful of points explains noise, however many seeds each has).
    seed : int
        Seed of the fANOVA random forest (the result is deterministic given it).

    Returns
    -------
    Importance
        With ``reason`` set when not computed. Parameters missing from some trials or with a
        single value are listed in ``excluded``.

    Raises
    ------
    ValueError
        If the trials record different or unknown modes.
    """
    mode = sweep_mode(trials)
    groups, _ = by_configuration([t for t in trials if _usable(t)])  # a seed TPE repeated counts once
    used = [t for members in groups.values() for t in members]
    outcome = Importance(n_trials=len(used), n_skipped=len(trials) - len(used), mode=mode or "max",
                         mode_recorded=mode is not None)
    if used:
        means = {key: math.fsum(t["metric"] for t in members) / len(members)
                 for key, members in groups.items()}
        key = (min if outcome.mode == "min" else max)(means, key=means.__getitem__)
        outcome.best = {"config": groups[key][0]["config"], "metric": means[key], "trials": len(groups[key]),
                        "trial_ids": [t.get("trial_id") for t in groups[key]]}
    outcome.n_configurations = len(groups)
    if len(groups) < min_configurations:
        outcome.reason = (f"{len(groups)} configuration(s) in {len(used)} usable trials; fANOVA needs at "
                          f"least {min_configurations} configurations")
        return outcome
    points = [(members[0]["config"], means[key]) for key, members in groups.items()]
    if len({value for _, value in points}) < 2:
        outcome.reason = (f"the metric has the same value ({points[0][1]:g}) in every usable "
                          "trial: there is no variation to explain")
        return outcome
    names = sorted({name for config, _ in points for name in config})
    distributions: dict[str, BaseDistribution] = {}
    for name in names:
        missing = sum(name not in config for config, _ in points)
        values = [_scalar(config[name]) for config, _ in points if name in config]
        if missing:
            outcome.excluded[name] = f"absent from {missing} of {len(points)} configurations"
        elif len(set(values)) < 2:
            outcome.excluded[name] = f"a single value ({values[0]!r})"
        else:
            distributions[name] = infer_distribution(values)
    outcome.distributions = {name: _describe(d) for name, d in distributions.items()}
    if not distributions:
        outcome.reason = "no parameter took at least two values in every configuration"
        return outcome
    with _quiet_optuna():
        study = optuna.create_study(direction="minimize" if outcome.mode == "min" else "maximize")
        study.add_trials([
            optuna.trial.create_trial(value=float(value), distributions=distributions,
                                      params={name: _scalar(config[name]) for name in distributions})
            for config, value in points
        ])
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        outcome.importances = dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
    return outcome
