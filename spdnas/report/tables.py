"""Results tables of a benchmark (paper Table 2) and the paired significance test.

Input: result dicts as :meth:`spdnas.benchmark.methods.MethodResult.to_dict` writes them
(``method``, ``dataset``, ``seed``, ``test_accuracy`` and ``val_accuracy`` as fractions in
[0, 1], ``parameters``, ``search_seconds``, ``train_seconds``; optionally ``test_samples``, the
size of the test split, for the binomial standard error). Output: accuracies in percent
(two decimals, like the paper), sizes in millions of parameters, costs in wall-clock seconds.
If the same (dataset, method, seed) appears more than once, the last record counts (a rerun
replaces the earlier one).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

OURS = "spdnetnas"
ALPHA = 0.05
WILCOXON_MIN_PAIRS = 6
TIE_PP = 1e-9
"""Mean accuracies (pp) this close are tied: equal sums over seeds may round apart."""


@dataclass(frozen=True)
class Row:
    """Aggregate of one (dataset, method) over its seeds.

    Attributes
    ----------
    seeds : tuple of int
        Seeds that finished, ascending.
    test_accuracy_mean, test_accuracy_std : float
        Test accuracy in percent; sample standard deviation (ddof = 1), None with one seed.
    val_accuracy_mean : float or None
        Best validation accuracy in percent, over the seeds that report one.
    parameters_mean : float or None
        Trainable parameters of the final model, over the seeds that report them.
    search_seconds_mean, train_seconds_mean : float
        Wall-clock cost of one run's architecture search and final training.
    deterministic : bool
        At least two seeds and the same test accuracy on every one (e.g. MDM): the standard
        deviation of 0 is no seed variation, not the absence of test-set sampling error.
    test_samples : int or None
        Size of the test split, when every seed's result records the same ``test_samples``.
    val_selected : bool
        The validation accuracy is that of an epoch chosen on it (the highest of the run; a
        network's result records its ``best_epoch``), not of a single fit.
    """

    dataset: str
    method: str
    seeds: tuple[int, ...]
    test_accuracy_mean: float
    test_accuracy_std: float | None
    val_accuracy_mean: float | None
    parameters_mean: float | None
    search_seconds_mean: float
    train_seconds_mean: float
    deterministic: bool = False
    test_samples: int | None = None
    val_selected: bool = False

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    @property
    def parameters_millions(self) -> float | None:
        return None if self.parameters_mean is None else self.parameters_mean / 1e6

    @property
    def accuracy_text(self) -> str:
        """``97.75 ± 0.30`` (``± n/a`` with a single seed)."""
        std = "n/a" if self.test_accuracy_std is None else f"{self.test_accuracy_std:.2f}"
        return f"{self.test_accuracy_mean:.2f} ± {std}"

    @property
    def binomial_se(self) -> float | None:
        """Binomial standard error of the mean test accuracy in percentage points; None when the
        test-set size is unknown.

        Agresti–Coull: ``√(p̃ (1 − p̃) / ñ)`` with ``ñ = n + z²``, ``p̃ = (p n + z²/2) / ñ`` and
        ``z = 1.96``: close to the plain ``√(p (1 − p) / n)`` for large ``n`` and ``p`` away from
        0 and 1 (4.03 vs 4.08 pp at 50% of 150, 2.52 vs 2.45 at 90%), and not 0 — no sampling
        error at all — for a perfect score, as the plain one is.
        """
        if not self.test_samples:
            return None
        z2 = 1.96**2
        n = self.test_samples + z2
        p = (self.test_accuracy_mean / 100.0 * self.test_samples + z2 / 2) / n
        return 100.0 * math.sqrt(p * (1.0 - p) / n)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seeds": list(self.seeds), "n_seeds": self.n_seeds,
                "parameters_millions": self.parameters_millions, "binomial_se": self.binomial_se}


def _as_dict(result: Any) -> dict[str, Any]:
    return result.to_dict() if hasattr(result, "to_dict") else dict(result)


def _check(index: int, result: dict[str, Any]) -> None:
    for key in ("method", "dataset", "seed", "test_accuracy"):
        if result.get(key) is None:
            raise ValueError(f"result {index}: field {key!r} is missing")
    seed = result["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int | float) or seed != int(seed):
        raise ValueError(f"result {index}: seed {seed!r} is not an integer")
    where = f"{result['method']}, {result['dataset']}, seed {int(seed)}"
    for key in ("test_accuracy", "val_accuracy"):
        value = result.get(key)
        if value is not None and not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"result {index} ({where}): {key} = {value} is not a fraction in [0, 1]")
    for key in ("parameters", "search_seconds", "train_seconds"):
        value = result.get(key)
        if value is not None and not (math.isfinite(float(value)) and float(value) >= 0):
            raise ValueError(f"result {index} ({where}): {key} = {value} is not a finite number >= 0")


def unique_results(results: Iterable[Any]) -> list[dict[str, Any]]:
    """Validated result dicts, one per (dataset, method, seed): the last one of duplicates."""
    latest: dict[tuple[str, str, int], dict[str, Any]] = {}
    for index, result in enumerate(results):
        record = _as_dict(result)
        _check(index, record)
        latest[(str(record["dataset"]), str(record["method"]), int(record["seed"]))] = record
    return list(latest.values())


def duplicate_count(results: Iterable[Any]) -> int:
    """How many records a later record for the same (dataset, method, seed) replaces."""
    records = [_as_dict(r) for r in results]
    return len(records) - len({(str(r["dataset"]), str(r["method"]), int(r["seed"])) for r in records})


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _test_samples(runs: list[dict[str, Any]]) -> int | None:
    sizes = {r.get("test_samples") for r in runs}
    return int(sizes.pop()) if len(sizes) == 1 and None not in sizes else None


def method_order(methods: Iterable[str], ours: str = OURS) -> list[str]:
    """Baselines alphabetically, then ``ours`` last (as in the paper's table)."""
    return sorted(set(methods), key=lambda m: (m == ours, m))


def aggregate(results: Iterable[Any], ours: str = OURS) -> list[Row]:
    """One :class:`Row` per (dataset, method), datasets alphabetically, ``ours`` last.

    Parameters
    ----------
    results : iterable of dict or MethodResult
        Records of single runs (accuracies as fractions).
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in unique_results(results):
        groups.setdefault((str(record["dataset"]), str(record["method"])), []).append(record)
    rows = []
    for dataset in sorted({d for d, _ in groups}):
        for method in method_order((m for d, m in groups if d == dataset), ours):
            runs = sorted(groups[(dataset, method)], key=lambda r: int(r["seed"]))
            test = [100.0 * float(r["test_accuracy"]) for r in runs]
            rows.append(Row(
                dataset=dataset, method=method, seeds=tuple(int(r["seed"]) for r in runs),
                test_accuracy_mean=float(np.mean(test)),
                test_accuracy_std=float(np.std(test, ddof=1)) if len(test) > 1 else None,
                val_accuracy_mean=_mean([100.0 * float(r["val_accuracy"]) for r in runs
                                         if r.get("val_accuracy") is not None]),
                parameters_mean=_mean([float(r["parameters"]) for r in runs
                                       if r.get("parameters") is not None]),
                search_seconds_mean=float(np.mean([float(r.get("search_seconds") or 0.0) for r in runs])),
                train_seconds_mean=float(np.mean([float(r.get("train_seconds") or 0.0) for r in runs])),
                deterministic=len(test) > 1 and len(set(test)) == 1,
                test_samples=_test_samples(runs),
                val_selected=any((r.get("details") or {}).get("best_epoch") is not None for r in runs),
            ))
    return rows


def _not_computed(reason: str) -> dict[str, Any]:
    return {"computed": False, "reason": reason}


def _differences(ours: np.ndarray, base: np.ndarray) -> np.ndarray:
    """``ours − base`` in pp, rounded to 1e-9 pp: accuracies are counts/n, so equal differences
    in counts may differ in the last bits (1.3333333333333428 vs …286), which would give an
    almost infinite t statistic or spurious Wilcoxon ranks."""
    return np.round(ours - base, 9)


def _t_test(ours: np.ndarray, base: np.ndarray) -> dict[str, Any]:
    differences = _differences(ours, base)
    if np.all(differences == differences[0]):
        return _not_computed(f"all paired differences are equal ({differences[0]:+.2f} pp): "
                             "the t statistic is undefined")
    result = stats.ttest_1samp(differences, 0.0)
    return {"computed": True, "statistic": float(result.statistic), "df": int(result.df),
            "p_value": float(result.pvalue)}


def _wilcoxon(ours: np.ndarray, base: np.ndarray) -> dict[str, Any]:
    differences = _differences(ours, base)
    zeros = int(np.sum(differences == 0))
    n = len(ours) - zeros  # the test drops zero differences
    if n == 0:
        return _not_computed("all paired differences are zero")
    if n < WILCOXON_MIN_PAIRS:
        dropped = f" after dropping {zeros} zero difference(s)" if zeros else ""
        return _not_computed(f"needs at least {WILCOXON_MIN_PAIRS} pairs with a non-zero difference, have "
                             f"{n}{dropped}: with fewer the smallest two-sided p-value is 2/2^{n} = "
                             f"{2 / 2 ** n:.3f} > {ALPHA}")
    result = stats.wilcoxon(differences)
    return {"computed": True, "statistic": float(result.statistic), "p_value": float(result.pvalue),
            "zero_differences_dropped": zeros}


def _paired(ours: str, baseline: str, by_seed: dict[str, dict[int, float]]) -> dict[str, Any]:
    """``ours − baseline`` over the seeds both finished: mean, 95% t-interval, t and Wilcoxon tests."""
    seeds = sorted(set(by_seed[ours]) & set(by_seed[baseline]))
    unpaired = {name: sorted(set(by_seed[name]) - set(seeds)) for name in (ours, baseline)}
    head = {"baseline": baseline, "pairs": len(seeds), "seeds": seeds,
            "unpaired_seeds": {name: left for name, left in unpaired.items() if left}}
    if len(seeds) < 2:
        return {**head, **_not_computed(f"fewer than 2 seeds shared by {ours} and {baseline} "
                                        f"(shared: {seeds or 'none'})")}
    a = np.array([by_seed[ours][s] for s in seeds])
    b = np.array([by_seed[baseline][s] for s in seeds])
    differences = _differences(a, b)
    mean, sd = float(np.mean(differences)), float(np.std(differences, ddof=1))
    if np.all(differences == differences[0]):  # np.std of equal floats need not be exactly 0
        sd, ci95 = 0.0, None  # a zero-width t-interval would claim the difference known exactly
    else:
        half = float(stats.t.ppf(1 - ALPHA / 2, len(seeds) - 1)) * sd / math.sqrt(len(seeds))
        ci95 = [mean - half, mean + half]
    return {**head, "computed": True, "reason": None, "mean_difference": mean, "std_difference": sd,
            "ours_paired_mean": float(np.mean(a)), "baseline_paired_mean": float(np.mean(b)),
            "ci95": ci95, "t_test": _t_test(a, b), "wilcoxon": _wilcoxon(a, b)}


def _ci_text(entry: dict[str, Any]) -> str:
    """``"−1.2 to +0.4"``, or why there is no interval (every paired difference equal)."""
    if entry["ci95"] is None:
        return "undefined (all paired differences are equal)"
    lo, hi = entry["ci95"]
    return f"{lo:+.2f} to {hi:+.2f}"


def _seed_lists(unpaired: dict[str, list[int]], prefix: str = "") -> str:
    """``"spdnetnas 0; random 3, 4"`` (with ``prefix`` before each method's seeds)."""
    return "; ".join(f"{name} {prefix}{', '.join(map(str, seeds))}" for name, seeds in unpaired.items())


def _unpaired_text(entry: dict[str, Any], ours: str) -> str:
    """Where the two methods' seeds differ: the means over the paired seeds and the seeds left out
    (the methods' own means are over all their seeds, the difference only over the pairs)."""
    left = entry.get("unpaired_seeds")
    if not left or not entry["computed"]:
        return ""
    return (f" (over these seeds {ours} {entry['ours_paired_mean']:.2f}% vs {entry['baseline']} "
            f"{entry['baseline_paired_mean']:.2f}%; left out, without a partner: "
            f"{_seed_lists(left, 'seed(s) ')})")


def _significantly_better(entry: dict[str, Any]) -> bool:
    t = entry.get("t_test") or {}
    return bool(entry["computed"] and t.get("computed") and entry["mean_difference"] > 0
                and t["p_value"] < ALPHA)


def _best_on_validation(baselines: list[Row]) -> tuple[Row | None, list[str]]:
    """The baseline of highest mean validation accuracy and the names of the baselines it is
    tied with. Of tied baselines (validation cannot tell them apart: 27 JapaneseVowels samples
    tie MDM and TS+LR) the one of higher test mean is taken, the stricter comparison for the
    searched architecture (a choice by name took the weaker MDM over TS+LR); then by name."""
    candidates = [r for r in baselines if r.val_accuracy_mean is not None]
    if not candidates:
        return None, []
    top = max(r.val_accuracy_mean for r in candidates)
    tied = sorted((r for r in candidates if top - r.val_accuracy_mean <= TIE_PP),
                  key=lambda r: (-r.test_accuracy_mean, r.method))
    return tied[0], [r.method for r in tied[1:]]


def _best_text(test: dict[str, Any]) -> str:
    tie = (f"; tied with {', '.join(test['tied_on_validation'])}, of which the one of higher test mean "
           "is taken, the stricter comparison" if test["tied_on_validation"] else "")
    kinds = ("; the networks' validation accuracy is that of the epoch chosen on it, the highest of "
             "their run, the others' that of their one fit, so the choice favours networks"
             if test["validation_kinds_differ"] else "")
    return (f"best baseline {test['baseline']} {test['baseline_mean']:.2f}% (chosen on mean validation "
            f"accuracy, {test['baseline_val_mean']:.2f}%{tie}{kinds})")


def _sampling_text(test: dict[str, Any]) -> str:
    """Deterministic methods and the binomial standard error of the test accuracies."""
    ours, base = test["ours"], test["baseline"]
    errors = test["binomial_se"]
    text = ""
    if test["baseline_deterministic"]:
        text += (f". {base} has the same test accuracy on every seed (e.g. a deterministic method): "
                 f"the paired test counts only the seed variance of {ours}, not the sampling error of "
                 "the test set")
    if errors is not None:
        text += (f". Binomial SE (Agresti–Coull, ≈ √(p(1 − p)/n)) of the test accuracies on the "
                 f"{test['test_samples']} test samples: {ours} ±{errors['ours']:.2f} pp, "
                 f"{base} ±{errors['baseline']:.2f} pp")
    elif test["baseline_deterministic"]:
        text += " (the results do not record the test-set size, so its binomial SE is not given)"
    return text


def _summary(test: dict[str, Any]) -> str:
    if not test["computed"]:
        return f"{test['dataset']}: significance not computed — {test['reason']}"
    text = (f"{test['dataset']}: {test['ours']} {test['ours_mean']:.2f}% vs {_best_text(test)} over "
            f"{test['pairs']} paired seeds{_unpaired_text(test, test['ours'])}: difference "
            f"{test['mean_difference']:+.2f} pp (95% CI {_ci_text(test)})")
    t, w = test["t_test"], test["wilcoxon"]
    if t["computed"]:
        verdict = "significant" if t["p_value"] < ALPHA else "not significant"
        text += (f"; paired t({t['df']}) = {t['statistic']:.3f}, p = {t['p_value']:.3g} "
                 f"({verdict} at {ALPHA:g})")
    else:
        text += f"; paired t-test not computed ({t['reason']})"
    if w["computed"]:
        text += f"; Wilcoxon signed-rank W = min(W+, W−) = {w['statistic']:g}, p = {w['p_value']:.3g}"
    else:
        text += f"; Wilcoxon not computed ({w['reason']})"
    higher = test["higher_test_mean"]
    if higher:
        named = ", ".join(f"{name} {mean:.2f}%" for name, mean in higher)
        text += (f". Chosen on validation, the best baseline is not the one of highest test mean: "
                 f"{named} (see the comparison with every baseline)")
    return text + _sampling_text(test)


def _every_summary(test: dict[str, Any]) -> str:
    every = test["every_baseline"]
    if not every:
        return ""
    better = test["significantly_better_than"]
    testable = [e for e in every if e["computed"] and e["t_test"]["computed"]]
    if not testable:
        return (f"Against every baseline (no selection): no paired t-test could be computed for any of "
                f"the {len(every)} baselines (see the reasons below).")
    named = f" ({', '.join(better)})" if better and len(better) < len(testable) else ""
    untested = (f"; {len(every) - len(testable)} other baseline(s) could not be tested (see below)"
                if len(testable) < len(every) else "")
    return (f"Against every baseline (no selection): {test['ours']} is significantly better (difference "
            f"> 0, paired t p < {ALPHA:g}) than {len(better)} of {len(testable)}{named}{untested}. "
            "It beats every baseline only if it beats each one; that needs no multiplicity correction.")


def _compare(dataset: str, rows: list[Row], by_seed: dict[str, dict[int, float]],
             ours: str) -> dict[str, Any]:
    head: dict[str, Any] = {"dataset": dataset, "ours": ours, "baseline": None, "pairs": 0,
                            "selection": "mean validation accuracy, exact ties by name",
                            "every_baseline": [], "significantly_better_than": []}
    mine = next((r for r in rows if r.method == ours), None)
    baselines = [r for r in rows if r.method != ours]
    if mine is None:
        return {**head, **_not_computed(f"no {ours} results")}
    if not baselines:
        return {**head, **_not_computed("no baseline results")}
    every = [{**_paired(ours, r.method, by_seed), "baseline_mean": r.test_accuracy_mean,
              "deterministic": r.deterministic} for r in baselines]
    head.update(every_baseline=every,
                significantly_better_than=[e["baseline"] for e in every if _significantly_better(e)])
    best, tied = _best_on_validation(baselines)
    if best is None:
        return {**head, **_not_computed("no baseline reports val_accuracy: none can be chosen")}
    test_samples = mine.test_samples if mine.test_samples == best.test_samples else None
    errors = (None if test_samples is None else
              {"ours": mine.binomial_se, "baseline": best.binomial_se})
    higher = sorted(((r.method, r.test_accuracy_mean) for r in baselines
                     if r.test_accuracy_mean - best.test_accuracy_mean > TIE_PP), key=lambda h: -h[1])
    kinds = {r.val_selected for r in baselines if r.val_accuracy_mean is not None}
    head.update(baseline=best.method, baseline_mean=best.test_accuracy_mean, higher_test_mean=higher,
                baseline_val_mean=best.val_accuracy_mean, tied_on_validation=tied,
                validation_kinds_differ=len(kinds) > 1,
                ours_mean=mine.test_accuracy_mean, baseline_deterministic=best.deterministic,
                test_samples=test_samples, binomial_se=errors)
    return {**head, **_paired(ours, best.method, by_seed)}


def significance(results: Iterable[Any], ours: str = OURS) -> dict[str, dict[str, Any]]:
    """Per dataset: ``ours`` vs the baseline with the best mean validation accuracy, paired by
    seed, and ``ours`` vs every baseline.

    The best baseline is chosen on validation accuracy, never on test accuracy (choosing on the
    test split would favour the baseline whose test score is luckiest); exact ties go to the
    first name, the others are listed in ``tied_on_validation``; ``validation_kinds_differ`` says
    that some candidates' validation accuracy is that of an epoch chosen on it (networks: an
    optimistic figure) and others' that of one fit (the summary then says the choice favours
    networks). Only seeds both methods
    finished are paired (``unpaired_seeds`` names the others, per method, and
    ``ours_paired_mean``/``baseline_paired_mean`` are the means over the pairs; ``ours_mean`` and
    ``baseline_mean`` are over all of each method's seeds). Differences are ``ours − baseline`` in
    percentage points. Each entry has ``computed`` (False with a ``reason`` when there is no
    baseline, no ``ours``, no baseline with a validation accuracy or fewer than 2 pairs),
    ``mean_difference``, ``ci95`` (t-interval), ``t_test`` (:func:`scipy.stats.ttest_rel`),
    ``wilcoxon`` (:func:`scipy.stats.wilcoxon`, only with at least 6 non-zero differences) — each
    test with its own ``computed``/``reason`` —, ``higher_test_mean`` (``(baseline, test mean)``
    of the baselines above the chosen one on test), ``baseline_deterministic`` (same test
    accuracy on every seed), ``test_samples`` and ``binomial_se`` (``{"ours", "baseline"}`` in
    pp, None unless the results record ``test_samples``), ``every_baseline`` (the same paired
    comparison against each baseline, in table order), ``significantly_better_than`` (baselines
    ``ours`` beats with paired t p < 0.05), ``summary`` and ``every_baseline_summary``.
    """
    records = unique_results(results)
    rows = aggregate(records, ours)
    tests = {}
    for dataset in sorted({r.dataset for r in rows}):
        by_seed: dict[str, dict[int, float]] = {}
        for record in records:
            if str(record["dataset"]) == dataset:
                by_seed.setdefault(str(record["method"]), {})[int(record["seed"])] = \
                    100.0 * float(record["test_accuracy"])
        test = _compare(dataset, [r for r in rows if r.dataset == dataset], by_seed, ours)
        tests[dataset] = {**test, "summary": _summary(test), "every_baseline_summary": _every_summary(test)}
    return tests


def format_millions(parameters: float | None) -> str:
    """Size in millions as in the paper: ``0.0184``, ``1.064``."""
    if parameters is None:
        return "—"
    millions = parameters / 1e6
    return f"{millions:.4f}" if millions < 0.1 else f"{millions:.3f}"


def format_duration(seconds: float) -> str:
    """Readable wall-clock time: ``42.0 s``, ``3.5 min``, ``2.40 h``, ``1.20 days``."""
    if seconds <= 0:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.2f} h"
    return f"{seconds / 86400:.2f} days"


DETAIL_HEADER = ("method", "seeds", "test accuracy (%)", "val accuracy (%)", "parameters", "size (M)",
                 "search cost (wall)", "training cost (wall)")


def detail_cells(row: Row) -> list[str]:
    """The cells of ``row`` under :data:`DETAIL_HEADER` (seeds flagged when deterministic)."""
    seeds = f"{row.n_seeds} (all equal)" if row.deterministic else str(row.n_seeds)
    return [row.method, seeds, row.accuracy_text,
            "—" if row.val_accuracy_mean is None else f"{row.val_accuracy_mean:.2f}",
            "—" if row.parameters_mean is None else f"{row.parameters_mean:,.0f}",
            format_millions(row.parameters_mean), format_duration(row.search_seconds_mean),
            format_duration(row.train_seconds_mean)]


def overview(rows: list[Row], ours: str = OURS) -> tuple[list[str], list[list[str]]]:
    """Paper layout: a row of ``mean ± std`` per dataset, a size row per dataset, methods as columns."""
    methods = method_order((r.method for r in rows), ours)
    cell = {(r.dataset, r.method): r for r in rows}
    datasets = sorted({r.dataset for r in rows})
    body = [[d, *(cell[(d, m)].accuracy_text if (d, m) in cell else "—" for m in methods)] for d in datasets]
    body += [[f"size {d} (M params)",
              *(format_millions(cell[(d, m)].parameters_mean) if (d, m) in cell else "—" for m in methods)]
             for d in datasets]
    return ["", *methods], body


def deterministic_note(rows: list[Row]) -> str:
    """A note naming the deterministic methods of ``rows`` (empty if none): their ± 0.00 is no
    seed variation, not a measure of the test-set sampling error."""
    flagged = [r for r in rows if r.deterministic]
    if not flagged:
        return ""
    errors = [f"{r.method} ±{r.binomial_se:.2f} pp" for r in flagged if r.binomial_se is not None]
    sampling = (f"; binomial SE on the test set: {', '.join(errors)}" if errors
                else "; the results do not record the test-set size, so no binomial SE is given")
    return (f"Same test accuracy on every seed: {', '.join(r.method for r in flagged)}. "
            f"Their ± 0.00 is the absence of seed variation, not of test-set sampling error{sampling}.")


def result_datasets(rows: list[Row], failed: Iterable[dict[str, Any]]) -> list[str]:
    """The datasets with a section in the tables and the report: those with results or failed runs."""
    return sorted({r.dataset for r in rows} | {str(f["dataset"]) for f in failed})


def failures_note(failed: Iterable[dict[str, Any]], dataset: str) -> str:
    """The runs of ``dataset`` that did not finish, which every mean, std and test leaves out
    (empty if none): ``failed`` holds ``{dataset, method, seed, error}`` records."""
    mine = sorted((f for f in failed if str(f["dataset"]) == dataset),
                  key=lambda f: (str(f["method"]), int(f["seed"])))
    if not mine:
        return ""
    runs = "; ".join(f"{f['method']} seed {f['seed']}: {f['error']}" for f in mine)
    return f"Not finished, so left out of every mean and test ({len(mine)} run(s)): {runs}."


EVERY_HEADER = ("baseline", "paired seeds", "difference (pp)", "95% CI (pp)", "paired t p")


def every_baseline_cells(entry: dict[str, Any]) -> list[str]:
    """The cells of one ``significance(...)[dataset]["every_baseline"]`` entry under
    :data:`EVERY_HEADER`."""
    name = f"{entry['baseline']} (all seeds equal)" if entry["deterministic"] else entry["baseline"]
    if not entry["computed"]:
        return [name, str(entry["pairs"]), "—", "—", f"not computed: {entry['reason']}"]
    t = entry["t_test"]
    p = f"{t['p_value']:.3g}" if t["computed"] else f"n/a ({t['reason']})"
    pairs = str(entry["pairs"])
    left = entry.get("unpaired_seeds")
    if left:
        pairs += (f" (means over them {entry['ours_paired_mean']:.2f} vs "
                  f"{entry['baseline_paired_mean']:.2f}; unpaired: {_seed_lists(left)})")
    return [name, pairs, f"{entry['mean_difference']:+.2f}", _ci_text(entry), p]


def _markdown_row(cells: list[str] | tuple[str, ...]) -> str:
    """One table row; a ``|`` or line break inside a cell (a user-chosen name) would split it."""
    return "| " + " | ".join(" ".join(c.replace("|", "\\|").splitlines()) for c in cells) + " |"


def _markdown_table(header: list[str] | tuple[str, ...], body: list[list[str]]) -> list[str]:
    return [_markdown_row(header), "|" + "---|" * len(header)] + [_markdown_row(cells) for cells in body]


def markdown(rows: list[Row], tests: dict[str, dict[str, Any]], ours: str = OURS,
             failed: Iterable[dict[str, Any]] = ()) -> str:
    """``table.md``: the paper-style overview, then per dataset a detailed table, the test against
    the best baseline, the paired comparison with every baseline and the runs that failed."""
    failed = list(failed)
    lines = ["# Results", "",
             "Test accuracy (%), mean ± sample std over seeds; size in millions of parameters.", ""]
    lines += _markdown_table(*overview(rows, ours))
    for dataset in result_datasets(rows, failed):
        lines += ["", f"## {dataset}"]
        if dataset in tests:
            detail = [detail_cells(r) for r in rows if r.dataset == dataset]
            lines += ["", *_markdown_table(DETAIL_HEADER, detail)]
            note = deterministic_note([r for r in rows if r.dataset == dataset])
            lines += ["", note] if note else []
            lines += ["", f"**Significance.** {tests[dataset]['summary']}"]
            if tests[dataset]["every_baseline"]:
                lines += ["", f"**Every baseline.** {tests[dataset]['every_baseline_summary']}", ""]
                lines += _markdown_table(EVERY_HEADER, [every_baseline_cells(e)
                                                        for e in tests[dataset]["every_baseline"]])
        note = failures_note(failed, dataset)
        lines += ["", f"**Failed runs.** {note}"] if note else []
    return "\n".join(lines) + "\n"


CSV_COLUMNS = ("dataset", "method", "n_seeds", "seeds", "test_accuracy_mean", "test_accuracy_std",
               "val_accuracy_mean", "parameters_mean", "parameters_millions", "search_seconds_mean",
               "train_seconds_mean")


def write_tables(results: Iterable[Any], out_dir: str | Path, ours: str = OURS,
                 failed: Iterable[dict[str, Any]] = ()) -> dict[str, Path]:
    """Write ``table.md``, ``table.csv`` and ``table.json`` into ``out_dir``; returns their paths.

    The CSV has one line per (dataset, method) with accuracies in percent and seeds joined by
    ``;``; the JSON holds the rows, the significance tests per dataset, the runs that ``failed``
    (``{dataset, method, seed, error}``, left out of every mean) and the units.
    """
    records, failed = [_as_dict(r) for r in results], list(failed)
    rows, tests = aggregate(records, ours), significance(records, ours)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "table.md", "csv": out / "table.csv", "json": out / "table.json"}
    paths["md"].write_text(markdown(rows, tests, ours, failed), encoding="utf-8")
    with open(paths["csv"], "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row.to_dict(), "seeds": ";".join(str(s) for s in row.seeds)})
    payload = {"ours": ours, "rows": [r.to_dict() for r in rows], "significance": tests, "failed": failed,
               "duplicates_replaced": duplicate_count(records),
               "units": {"accuracy": "percent", "differences": "percentage points",
                         "seconds": "wall-clock seconds per run", "alpha": ALPHA}}
    paths["json"].write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return paths
