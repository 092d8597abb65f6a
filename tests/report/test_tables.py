"""Results tables and the paired significance test, against numbers computed by hand."""

from __future__ import annotations

import csv
import json
import math

import pytest

from spdnas.benchmark.methods import MethodResult
from spdnas.report.tables import (
    aggregate,
    format_duration,
    format_millions,
    markdown,
    significance,
    write_tables,
)


def result(method, seed, accuracy, dataset="radar", val=None, parameters=1000, search=0.0, train=10.0):
    return {"method": method, "dataset": dataset, "seed": seed, "test_accuracy": accuracy,
            "val_accuracy": val, "parameters": parameters, "search_seconds": search, "train_seconds": train,
            "details": {}}


def test_aggregate_mean_sample_std_size_and_costs():
    results = [result("spdnetnas", 0, 0.90, val=0.95, parameters=18_000, search=3600.0, train=100.0),
               result("spdnetnas", 1, 0.92, val=0.97, parameters=18_400, search=7200.0, train=200.0),
               result("spdnetnas", 2, 0.94, val=None, parameters=18_800, search=5400.0, train=300.0),
               result("random", 0, 0.80)]
    rows = aggregate(results)
    assert [(r.dataset, r.method) for r in rows] == [("radar", "random"), ("radar", "spdnetnas")]
    ours = rows[1]
    assert ours.seeds == (0, 1, 2) and ours.n_seeds == 3
    # accuracies 90, 92, 94 %: mean 92, sample std sqrt(((−2)² + 0² + 2²) / 2) = 2
    assert ours.test_accuracy_mean == pytest.approx(92.0)
    assert ours.test_accuracy_std == pytest.approx(2.0)
    assert ours.accuracy_text == "92.00 ± 2.00"
    assert ours.val_accuracy_mean == pytest.approx(96.0)  # the seed without val is left out
    assert ours.parameters_mean == pytest.approx(18_400)
    assert ours.parameters_millions == pytest.approx(0.0184)
    assert ours.search_seconds_mean == pytest.approx(5400.0)
    assert ours.train_seconds_mean == pytest.approx(200.0)
    assert rows[0].test_accuracy_std is None and rows[0].accuracy_text == "80.00 ± n/a"


def test_methods_sorted_with_ours_last_and_datasets_alphabetical():
    results = [result(m, 0, 0.5, dataset=d) for d in ("hdm05", "afew")
               for m in ("spdnetnas", "spdnet", "darts")]
    assert [(r.dataset, r.method) for r in aggregate(results)] == [
        ("afew", "darts"), ("afew", "spdnet"), ("afew", "spdnetnas"),
        ("hdm05", "darts"), ("hdm05", "spdnet"), ("hdm05", "spdnetnas")]


def test_duplicate_runs_keep_the_last_record():
    rows = aggregate([result("random", 0, 0.10), result("random", 1, 0.50), result("random", 0, 0.70)])
    assert rows[0].seeds == (0, 1) and rows[0].test_accuracy_mean == pytest.approx(60.0)


def test_method_results_are_accepted():
    rows = aggregate([MethodResult("spdnetnas", "radar", 0, 0.5, None, None, 1.0, 2.0)])
    assert rows[0].parameters_mean is None and rows[0].val_accuracy_mean is None


def test_accuracy_must_be_a_fraction():
    with pytest.raises(ValueError, match=r"result 1 \(random, radar, seed 4\): test_accuracy = 93.2"):
        aggregate([result("random", 3, 0.9), result("random", 4, 93.2)])
    with pytest.raises(ValueError, match="result 0: field 'seed' is missing"):
        aggregate([{"method": "random", "dataset": "radar", "test_accuracy": 0.5}])


def test_paired_t_test_and_interval_match_closed_forms():
    """Differences 1, 2, 3 pp: mean 2, sd 1, t = 2 / (1 / √3) = 2√3 with 2 degrees of freedom.

    For 2 degrees of freedom the t distribution has a closed form: F(t) = 1/2 + t / (2 √(2 + t²)),
    so the two-sided p = 1 − t / √(2 + t²) and the 97.5% quantile is 0.95 / √(2 · 0.975 · 0.025).
    """
    ours = [0.91, 0.92, 0.93]
    results = [result("spdnetnas", s, a) for s, a in enumerate(ours)]
    results += [result("random", s, 0.90) for s in range(3)]
    results += [result("spdnet", s, 0.50) for s in range(3)]  # a worse baseline: not the one compared
    test = significance(results)["radar"]
    assert test["computed"] and test["baseline"] == "random" and test["pairs"] == 3
    t = 2 * math.sqrt(3)
    assert test["mean_difference"] == pytest.approx(2.0)
    assert test["t_test"]["statistic"] == pytest.approx(t)
    assert test["t_test"]["df"] == 2
    assert test["t_test"]["p_value"] == pytest.approx(1 - t / math.sqrt(2 + t * t))
    quantile = 0.95 / math.sqrt(2 * 0.975 * 0.025)
    half = quantile * 1 / math.sqrt(3)
    assert test["ci95"] == pytest.approx([2 - half, 2 + half])
    assert not test["wilcoxon"]["computed"] and "at least 6 pairs, have 3" in test["wilcoxon"]["reason"]
    assert "difference +2.00 pp" in test["summary"] and "t(2) = 3.464" in test["summary"]


def test_wilcoxon_exact_p_values_with_six_pairs():
    """Six positive differences of distinct size: W− = 0, exact two-sided p = 2 / 2⁶; with the
    smallest difference negative, W− = 1 and p = 2 · 2 / 2⁶ (ranks {} and {1} give W− ≤ 1)."""
    base = [0.80] * 6
    ours = [0.81, 0.82, 0.83, 0.84, 0.85, 0.86]
    results = [result("random", s, a) for s, a in enumerate(base)]
    test = significance(results + [result("spdnetnas", s, a) for s, a in enumerate(ours)])["radar"]
    assert test["wilcoxon"]["computed"]
    assert test["wilcoxon"]["statistic"] == 0 and test["wilcoxon"]["p_value"] == pytest.approx(2 / 64)
    ours[0] = 0.79
    test = significance(results + [result("spdnetnas", s, a) for s, a in enumerate(ours)])["radar"]
    assert test["wilcoxon"]["statistic"] == 1 and test["wilcoxon"]["p_value"] == pytest.approx(4 / 64)


def test_only_seeds_both_methods_have_are_paired():
    results = [result("spdnetnas", s, 0.9 + 0.01 * s) for s in (0, 1, 2, 5)]
    results += [result("random", s, 0.85) for s in (1, 2, 3, 5)]
    test = significance(results)["radar"]
    assert test["seeds"] == [1, 2, 5] and test["pairs"] == 3
    assert test["mean_difference"] == pytest.approx((6 + 7 + 10) / 3)


def test_best_baseline_is_chosen_by_mean_over_all_its_seeds():
    results = [result("spdnetnas", s, 0.9) for s in range(3)]
    results += [result("random", s, a) for s, a in enumerate([0.80, 0.80, 0.99])]  # mean 86.3
    results += [result("spdnet", s, 0.85) for s in range(3)]  # mean 85
    assert significance(results)["radar"]["baseline"] == "random"


@pytest.mark.parametrize(("results", "reason"), [
    ([result("spdnetnas", 0, 0.9), result("random", 0, 0.8), result("random", 1, 0.8)],
     "fewer than 2 seeds shared by spdnetnas and random (shared: [0])"),
    ([result("spdnetnas", 0, 0.9), result("random", 1, 0.8)], "(shared: none)"),
    ([result("spdnetnas", 0, 0.9)], "no baseline results"),
    ([result("random", 0, 0.9)], "no spdnetnas results"),
])
def test_too_little_to_compare_is_stated(results, reason):
    test = significance(results)["radar"]
    assert not test["computed"] and reason in test["reason"]
    assert "significance not computed" in test["summary"]


def test_constant_differences_leave_t_undefined():
    results = [result("spdnetnas", s, 0.9) for s in range(3)] + [result("random", s, 0.8) for s in range(3)]
    test = significance(results)["radar"]
    assert test["computed"] and test["mean_difference"] == pytest.approx(10.0)
    assert not test["t_test"]["computed"] and "all paired differences are equal" in test["t_test"]["reason"]


def test_formats():
    assert [format_millions(p) for p in (18_400, 1_064_000, 2_638_000, 1_400, None)] == \
        ["0.0184", "1.064", "2.638", "0.0014", "—"]
    assert [format_duration(s) for s in (0, 42, 210, 8640, 129_600)] == \
        ["—", "42.0 s", "3.5 min", "2.40 h", "1.50 days"]


def test_write_tables(tmp_path):
    results = [result("spdnetnas", s, a, dataset=d) for d in ("radar", "hdm05")
               for s, a in enumerate([0.91, 0.92, 0.93])]
    results += [result("random", s, 0.90, dataset=d) for d in ("radar", "hdm05") for s in range(3)]
    paths = write_tables(results, tmp_path / "tables")
    assert set(paths) == {"md", "csv", "json"} and all(p.exists() for p in paths.values())
    lines = paths["md"].read_text().splitlines()
    assert "|  | random | spdnetnas |" in lines
    assert "| hdm05 | 90.00 ± 0.00 | 92.00 ± 1.00 |" in lines
    assert "| size hdm05 (M params) | 0.0010 | 0.0010 |" in lines
    assert sum(line.startswith("**Significance.** ") for line in lines) == 2
    with open(paths["csv"]) as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["dataset"], r["method"], r["seeds"]) for r in rows] == [
        ("hdm05", "random", "0;1;2"), ("hdm05", "spdnetnas", "0;1;2"),
        ("radar", "random", "0;1;2"), ("radar", "spdnetnas", "0;1;2")]
    assert float(rows[1]["test_accuracy_mean"]) == pytest.approx(92.0)
    payload = json.loads(paths["json"].read_text())
    assert payload["significance"]["radar"]["t_test"]["statistic"] == pytest.approx(2 * math.sqrt(3))
    assert payload["units"]["accuracy"] == "percent" and len(payload["rows"]) == 4
    assert paths["md"].read_text() == markdown(aggregate(results), significance(results))
