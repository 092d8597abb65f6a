"""A sweep's trials grouped by the configuration they sampled (shared by the sweep's summary and
the report's parameter importance)."""

from __future__ import annotations

import json
from typing import Any


def config_key(trial: dict[str, Any]) -> str:
    """The canonical JSON of a trial's sampled ``config``: equal for equal configurations."""
    return json.dumps(trial["config"], sort_keys=True, default=str)


def by_configuration(trials: list[dict[str, Any]]) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int]]:
    """Group sweep trials by their sampled ``config``, each ``seed`` once.

    TPE may propose a configuration it proposed before; its seeds then run again, and the same
    run counted twice would shrink a standard deviation. The first trial of each (configuration,
    seed) is kept; trials without a ``seed`` are all kept.

    Parameters
    ----------
    trials : list of dict
        Records of ``trials.jsonl`` (``config``, ``seed``, ...), in their order.

    Returns
    -------
    groups : dict
        :func:`config_key` of a configuration -> its kept trials, in order.
    repeats : dict
        :func:`config_key` of a configuration -> how many of its trials repeated a seed (absent: none).
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    repeats: dict[str, int] = {}
    seen: set[tuple[str, Any]] = set()
    for trial in trials:
        key = config_key(trial)
        seed = trial.get("seed")
        if seed is not None and (key, seed) in seen:
            repeats[key] = repeats.get(key, 0) + 1
            continue
        seen.add((key, seed))
        groups.setdefault(key, []).append(trial)
    return groups, repeats
