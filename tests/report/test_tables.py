"""Results tables and the paired significance test, against numbers computed by hand."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from spdnas.benchmark.methods import MethodResult
from spdnas.report.tables import (
    aggregate,
    detail_cells,
    every_baseline_cells,
    format_duration,
    format_millions,
    markdown,
    significance,
    write_tables,
)

SAME = object()


def result(method, seed, accuracy, dataset="radar", val=SAME, parameters=1000, search=0.0, train=10.0,
           **extra):
    """A result record; its validation accuracy is the test accuracy unless ``val`` is given."""
    return {"method": method, "dataset": dataset, "seed": seed, "test_accuracy": accuracy,
            "val_accuracy": accuracy if val is SAME else val, "parameters": parameters,
            "search_seconds": search, "train_seconds": train, "details": {}, **extra}


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
    assert not test["wilcoxon"]["computed"]
    assert "at least 6 pairs with a non-zero difference, have 3" in test["wilcoxon"]["reason"]
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


def test_wilcoxon_needs_six_non_zero_differences():
    """scipy drops zero differences: six pairs of which five are equal leave one to rank."""
    results = [result("random", s, 0.80) for s in range(6)]
    results += [result("spdnetnas", s, 0.80 if s else 0.85) for s in range(6)]
    wilcoxon = significance(results)["radar"]["wilcoxon"]
    assert not wilcoxon["computed"]
    assert "non-zero difference, have 1 after dropping 5 zero difference(s)" in wilcoxon["reason"]


def test_equal_count_differences_are_equal_despite_float_rounding():
    """+10 correct out of 750 on each seed: equal differences (1.33 pp), which as floats differ in
    the last bits; the t statistic is undefined, not 1.9e14 with p = 3e-15."""
    ours, base = [640 / 750, 650 / 750], [630 / 750, 640 / 750]
    assert 100 * ours[0] - 100 * base[0] != 100 * ours[1] - 100 * base[1]
    results = [result("spdnetnas", s, a) for s, a in enumerate(ours)]
    test = significance(results + [result("random", s, a) for s, a in enumerate(base)])["radar"]
    assert not test["t_test"]["computed"]
    assert "all paired differences are equal (+1.33 pp)" in test["t_test"]["reason"]
    assert test["ci95"] is None


def test_only_seeds_both_methods_have_are_paired():
    results = [result("spdnetnas", s, 0.9 + 0.01 * s) for s in (0, 1, 2, 5)]
    results += [result("random", s, 0.85) for s in (1, 2, 3, 5)]
    test = significance(results)["radar"]
    assert test["seeds"] == [1, 2, 5] and test["pairs"] == 3
    assert test["mean_difference"] == pytest.approx((6 + 7 + 10) / 3)
    # each method's own mean is over all its seeds; the text gives the means the difference is of
    assert test["ours_mean"] == pytest.approx(92.0) and test["baseline_mean"] == pytest.approx(85.0)
    assert test["unpaired_seeds"] == {"spdnetnas": [0], "random": [3]}
    assert ("over 3 paired seeds (over these seeds spdnetnas 92.67% vs random 85.00%; left out, without a "
            "partner: spdnetnas seed(s) 0; random seed(s) 3): difference +7.67 pp") in test["summary"]
    cells = every_baseline_cells(test["every_baseline"][0])
    assert cells[1] == "3 (means over them 92.67 vs 85.00; unpaired: spdnetnas 0; random 3)"
    paired = significance([r for r in results if r["seed"] in (1, 2, 5)])["radar"]
    assert "left out" not in paired["summary"] and every_baseline_cells(paired["every_baseline"][0])[1] == "3"


def test_best_baseline_is_chosen_by_mean_over_all_its_seeds():
    results = [result("spdnetnas", s, 0.9) for s in range(3)]
    results += [result("random", s, a) for s, a in enumerate([0.80, 0.80, 0.99])]  # mean 86.3
    results += [result("spdnet", s, 0.85) for s in range(3)]  # mean 85
    assert significance(results)["radar"]["baseline"] == "random"


def test_best_baseline_is_chosen_on_validation_not_test_accuracy():
    """spdnet has the better test accuracy, random the better validation accuracy: random is the
    baseline, and the text says how it was chosen."""
    results = [result("spdnetnas", s, a, val=0.90) for s, a in enumerate([0.91, 0.92, 0.93])]
    results += [result("random", s, 0.85, val=0.95) for s in range(3)]
    results += [result("spdnet", s, a, val=0.80) for s, a in enumerate([0.95, 0.96, 0.97])]
    test = significance(results)["radar"]
    assert test["baseline"] == "random" and test["baseline_val_mean"] == pytest.approx(95.0)
    assert test["mean_difference"] == pytest.approx(7.0) and test["tied_on_validation"] == []
    assert ("vs best baseline random 85.00% (chosen on mean validation accuracy, 95.00%) over 3"
            in test["summary"])
    assert test["higher_test_mean"] == [("spdnet", pytest.approx(96.0))]
    assert ("Chosen on validation, the best baseline is not the one of highest test mean: spdnet 96.00%"
            in test["summary"])
    honest = significance([r for r in results if r["method"] != "spdnet"])["radar"]
    assert honest["higher_test_mean"] == [] and "highest test mean" not in honest["summary"]


def test_validation_ties_go_to_the_stricter_comparison_and_are_named():
    """MDM and TS+LR tie on JapaneseVowels' 27 validation samples; the first by name, MDM (84.86%
    on test), was compared instead of TS+LR (88.92%), which SPDNetNAS does not beat."""
    results = [result("spdnetnas", s, a, val=0.9) for s, a in enumerate([0.91, 0.92, 0.93])]
    results += [result(m, s, a, val=0.95) for m, a in (("ts-lr", 0.99), ("mdm", 0.80)) for s in range(3)]
    results += [result("spdnet", s, 0.99, val=None) for s in range(3)]  # no validation: not a candidate
    test = significance(results)["radar"]
    assert test["baseline"] == "ts-lr" and test["tied_on_validation"] == ["mdm"]
    assert "tied with mdm, of which the one of higher test mean is taken, the stricter comparison" in (
        test["summary"])
    equal = [r for r in results if r["method"] != "ts-lr"]
    equal += [result("dmd", s, 0.80, val=0.95) for s in range(3)]  # equal test means too: by name
    assert significance(equal)["radar"]["baseline"] == "dmd"


def test_the_choice_says_when_networks_validation_accuracy_is_their_selected_epochs():
    """A network's validation accuracy is the highest of its run (the epoch chosen on it), MDM's
    that of one fit: ranked together, the networks' figure is the optimistic one."""
    results = [result("spdnetnas", s, 0.9, details={"best_epoch": 7}) for s in range(3)]
    results += [result("spdnet", s, 0.8, val=0.93, details={"best_epoch": 12}) for s in range(3)]
    results += [result("mdm", s, 0.85, val=0.92, details={"estimator": "MDM()"}) for s in range(3)]
    assert "details" in MethodResult.__dataclass_fields__  # where a network's result records best_epoch
    test = significance(results)["radar"]
    assert test["baseline"] == "spdnet" and test["validation_kinds_differ"]
    assert ("the networks' validation accuracy is that of the epoch chosen on it, the highest of their "
            "run, the others' that of their one fit, so the choice favours networks)") in test["summary"]
    networks_only = significance([r for r in results if r["method"] != "mdm"])["radar"]
    assert not networks_only["validation_kinds_differ"] and "favours" not in networks_only["summary"]


def test_no_baseline_with_validation_accuracy_is_stated():
    results = [result("spdnetnas", s, 0.9) for s in range(3)] + [result("random", s, 0.8, val=None)
                                                                 for s in range(3)]
    test = significance(results)["radar"]
    assert not test["computed"] and "no baseline reports val_accuracy" in test["reason"]
    assert [e["baseline"] for e in test["every_baseline"]] == ["random"]  # still compared


def test_every_baseline_is_compared_without_selection(tmp_path):
    """Differences 1, 2, 3 pp against random (t = 2√3, 2 df), 11, 13, 12 pp against spdnet and
    −9, −8, −7 pp against darts: significantly better than spdnet only (random: p = 0.07)."""
    results = [result("spdnetnas", s, a) for s, a in enumerate([0.91, 0.92, 0.93])]
    results += [result("random", s, 0.90) for s in range(3)]
    results += [result("spdnet", s, a) for s, a in enumerate([0.80, 0.79, 0.81])]
    results += [result("darts", s, 1.0, val=0.5) for s in range(3)]
    test = significance(results)["radar"]
    every = {e["baseline"]: e for e in test["every_baseline"]}
    assert list(every) == ["darts", "random", "spdnet"]
    assert every["darts"]["mean_difference"] == pytest.approx(-8.0)
    t = 2 * math.sqrt(3)
    assert every["random"]["t_test"]["p_value"] == pytest.approx(1 - t / math.sqrt(2 + t * t))
    assert every["spdnet"]["mean_difference"] == pytest.approx(12.0)
    assert test["significantly_better_than"] == ["spdnet"]
    assert "significantly better (difference > 0, paired t p < 0.05) than 1 of 3 (spdnet)" in \
        test["every_baseline_summary"]
    paths = write_tables(results, tmp_path)
    text = paths["md"].read_text()
    assert "**Every baseline.** Against every baseline (no selection)" in text
    assert "| baseline | paired seeds | difference (pp) | 95% CI (pp) | paired t p |" in text
    assert "| darts (all seeds equal) | 3 | -8.00 |" in text and "| spdnet | 3 | +12.00 |" in text
    payload = json.loads(paths["json"].read_text())
    assert [e["baseline"] for e in payload["significance"]["radar"]["every_baseline"]] == list(every)


def test_untestable_baselines_are_not_counted_as_beaten_or_not():
    """One seed of spdnetnas: no paired test against anyone, and the summary says so (it read
    "significantly better than 0 of 2"); against a 3-seed run, the untestable one is set apart."""
    results = [result("spdnetnas", 0, 0.95)]
    results += [result(m, s, 0.80 + 0.01 * s) for m in ("mdm", "spdnet") for s in range(3)]
    summary = significance(results)["radar"]["every_baseline_summary"]
    assert "no paired t-test could be computed for any of the 2 baselines" in summary
    results = [result("spdnetnas", s, a) for s, a in enumerate([0.91, 0.92, 0.93])]
    results += [result("spdnet", s, a) for s, a in enumerate([0.80, 0.79, 0.81])] + [result("mdm", 0, 0.5)]
    summary = significance(results)["radar"]["every_baseline_summary"]
    assert "than 1 of 1; 1 other baseline(s) could not be tested (see below)" in summary


def test_equal_test_means_in_another_order_are_not_higher():
    """The same accuracies summed in another seed order differ in the last bit; a baseline of the
    same test mean is no "higher test mean" than the one chosen on validation."""
    accuracies = [0.8, 0.8066666666666666, 0.8266666666666667]
    results = [result("spdnetnas", s, 0.99) for s in range(3)]
    results += [result("base_a", s, a, val=0.95) for s, a in enumerate(accuracies)]
    results += [result("base_b", s, a, val=0.90) for s, a in enumerate([accuracies[i] for i in (0, 2, 1)])]
    rows = {r.method: r.test_accuracy_mean for r in aggregate(results)}
    assert rows["base_a"] != rows["base_b"]  # the premise: float sums in another order
    test = significance(results)["radar"]
    assert test["baseline"] == "base_a" and test["higher_test_mean"] == []
    assert "not the one of highest test mean" not in test["summary"]


@pytest.mark.parametrize(("field", "value", "message"), [
    ("seed", 1.5, "seed 1.5 is not an integer"), ("seed", "1", "seed '1' is not an integer"),
    ("search_seconds", float("nan"), "search_seconds = nan is not a finite number >= 0"),
    ("parameters", float("inf"), "parameters = inf is not a finite number >= 0"),
    ("train_seconds", -1.0, "train_seconds = -1.0 is not a finite number >= 0"),
])
def test_records_with_bad_seeds_or_costs_are_refused(field, value, message):
    results = [result("spdnetnas", s, 0.9) for s in range(2)] + [result("spdnet", 1, 0.8)]
    results[0][field] = value
    with pytest.raises(ValueError, match=f"result 0.*{re.escape(message)}"):
        aggregate(results)


def test_deterministic_baseline_is_flagged_with_the_binomial_standard_error():
    """ts-lr scores 80% on every seed of a 400-sample test set: SE ≈ √(0.8 · 0.2 / 400) = 2 pp;
    spdnetnas averages 90%: SE ≈ √(0.9 · 0.1 / 400) = 1.5 pp (Agresti–Coull: 2.00 and 1.52)."""
    results = [result("spdnetnas", s, a, val=0.5, test_samples=400) for s, a in enumerate([0.89, 0.90, 0.91])]
    results += [result("ts-lr", s, 0.80, val=0.6, test_samples=400) for s in range(3)]
    rows = aggregate(results)
    assert rows[0].deterministic and not rows[1].deterministic
    assert [rows[0].binomial_se, rows[1].binomial_se] == pytest.approx([2.0, 1.52], abs=0.005)
    assert detail_cells(rows[0])[1] == "3 (all equal)" and detail_cells(rows[1])[1] == "3"
    test = significance(results)["radar"]
    assert test["baseline_deterministic"] and test["test_samples"] == 400
    assert test["binomial_se"] == pytest.approx({"ours": 1.52, "baseline": 2.0}, abs=0.005)
    assert "ts-lr has the same test accuracy on every seed" in test["summary"]
    assert "on the 400 test samples: spdnetnas ±1.52 pp, ts-lr ±2.00 pp" in test["summary"]
    text = markdown(rows, significance(results))
    assert "Same test accuracy on every seed: ts-lr." in text
    assert "binomial SE on the test set: ts-lr ±2.00 pp" in text
    assert "| ts-lr (all seeds equal) | 3 | +10.00 |" in text


def test_a_perfect_score_has_a_sampling_error():
    """A review's case: 150/150 correct gave "binomial SE ±0.00 pp", no sampling error at all."""
    results = [result("spdnetnas", s, a, test_samples=150) for s, a in enumerate([0.98, 0.99])]
    results += [result("mdm", s, 1.0, test_samples=150) for s in range(2)]
    rows = aggregate(results)
    perfect = next(r for r in rows if r.method == "mdm")
    n = 150 + 1.96**2
    p = (150 + 1.96**2 / 2) / n  # Agresti–Coull
    assert perfect.binomial_se == pytest.approx(100 * math.sqrt(p * (1 - p) / n), rel=1e-12)
    assert "mdm ±0.90 pp" in markdown(rows, significance(results))


def test_a_pipe_in_a_name_does_not_split_a_markdown_cell():
    results = [result("spdnetnas", s, 0.9, dataset="eeg|left") for s in range(2)]
    results += [result("ts-lr", s, 0.8, dataset="eeg|left") for s in range(2)]
    text = markdown(aggregate(results), significance(results))
    rows = [line for line in text.splitlines() if line.startswith("|") and not line.startswith("|---")]
    assert rows and all(line.replace("\\|", "").count("|") == rows[0].replace("\\|", "").count("|")
                        for line in rows[:3])
    assert "eeg\\|left" in text and "| eeg|left" not in text


def test_deterministic_baseline_without_test_set_size_says_so():
    results = [result("spdnetnas", s, a) for s, a in enumerate([0.89, 0.90, 0.91])]
    results += [result("mdm", s, 0.80) for s in range(3)]
    test = significance(results)["radar"]
    assert test["binomial_se"] is None
    assert "mdm has the same test accuracy on every seed" in test["summary"]
    assert "do not record the test-set size, so its binomial SE is not given" in test["summary"]


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


@pytest.mark.parametrize("ours, base, difference", [(0.9, 0.8, 10.0), (14 / 15, 13 / 15, 100 / 15)])
def test_constant_differences_leave_t_undefined(ours, base, difference):
    """(14/15 − 13/15): np.std of the five equal differences is 1e-15, not 0; the interval must be
    undefined all the same."""
    results = [result("spdnetnas", s, ours) for s in range(5)] + [result("random", s, base) for s in range(5)]
    test = significance(results)["radar"]
    assert test["computed"] and test["mean_difference"] == pytest.approx(difference)
    assert not test["t_test"]["computed"] and "all paired differences are equal" in test["t_test"]["reason"]
    assert test["ci95"] is None
    assert "(95% CI undefined (all paired differences are equal))" in test["summary"]
    cells = every_baseline_cells(test["every_baseline"][0])
    assert cells[3] == "undefined (all paired differences are equal)"


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


def test_failed_runs_are_named_in_every_table(tmp_path):
    """Runs that failed are left out of the means, and the tables say which (a dataset whose every
    run failed still gets its section)."""
    results = [result("spdnetnas", s, 0.9) for s in range(3)] + [result("random", s, 0.8) for s in range(3)]
    failed = [{"dataset": "radar", "method": "random", "seed": 3, "error": "ValueError: diverged"},
              {"dataset": "hdm05", "method": "spdnetnas", "seed": 0, "error": "MemoryError"}]
    paths = write_tables(results, tmp_path, failed=failed)
    text = paths["md"].read_text()
    assert ("**Failed runs.** Not finished, so left out of every mean and test (1 run(s)): random seed 3: "
            "ValueError: diverged.") in text
    assert "## hdm05\n\n**Failed runs.** Not finished, so left out of every mean and test (1 run(s)): " \
           "spdnetnas seed 0: MemoryError." in text
    assert json.loads(paths["json"].read_text())["failed"] == failed
    assert "Failed runs" not in write_tables(results, tmp_path / "ok")["md"].read_text()


def test_configs_and_tables_are_utf8_whatever_the_locale(tmp_path):
    """Under a non-UTF-8 locale (here ASCII) the shipped configs (with '×', '→') still load and
    the tables ('±', '−', '√') are written: every text file is read and written as UTF-8."""
    code = ("from spdnas.config import load_config\n"
            "from spdnas.report.tables import write_tables\n"
            "from tests.report.conftest import hand_made_results\n"
            "import locale, sys\n"
            "assert locale.getpreferredencoding(False).lower() in ('ascii', 'ansi_x3.4-1968')\n"
            "load_config('configs/hdm05.yaml')\n"
            "write_tables(hand_made_results(), sys.argv[1])\n")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0",
           "PYTHONIOENCODING": "utf-8"}
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, cwd=root, check=True)
    assert "97.72 ± 0.33" in (tmp_path / "table.md").read_text(encoding="utf-8")
