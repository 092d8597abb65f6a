"""``spdnas report``: one self-contained HTML page about an experiment folder.

The page has no external assets: the style sheet is inline, every figure is an inline PNG data
URI and there is no script. Sections: provenance, results table with the significance test,
α heatmaps per edge (paper Fig. 2a), derived cells (Fig. 2b), learning curves, and the sweep's
parameter importance. A section whose files are absent says which ones; a file that cannot be
read is named in the section and in the list of problems at the top.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import spdnas
from spdnas.models.euclidean_genotype import OPS, SEARCH_SPACE, EuclideanGenotype
from spdnas.report.experiment import (
    Experiment,
    Run,
    load_experiment,
    read_history,
    read_json,
    read_text,
    recorded_datasets,
)
from spdnas.report.figures import curves_figure, data_uri, importance_figure
from spdnas.report.importance import param_importances
from spdnas.report.plots import (
    alpha_figure,
    cells_figure,
    euclidean_alpha_figure,
    euclidean_cell_figure,
    node_label,
)
from spdnas.report.tables import (
    DETAIL_HEADER,
    EVERY_HEADER,
    aggregate,
    detail_cells,
    deterministic_note,
    every_baseline_cells,
    failures_note,
    format_duration,
    format_millions,
    overview,
    result_datasets,
    significance,
)
from spdnas.search.genotype import Genotype

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1150px; padding: 0 1rem; }
body { color: #222; } h1 { margin-bottom: 0.2rem; }
h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2rem; margin-top: 2.5rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.92rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: left; }
th { background: #f2f4f7; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; display: block; margin: 0.5rem 0; }
.missing { color: #8a6d3b; background: #fcf8e3; padding: 0.4rem 0.7rem; border-left: 4px solid #f0ad4e; }
.problem { color: #a94442; } .note { color: #555; font-size: 0.9rem; }
.significance { background: #eef5fb; padding: 0.5rem 0.8rem; border-left: 4px solid #3182bd; }
nav a { margin-right: 1rem; }
"""

SECTIONS = (("results", "Results"), ("alphas", "Architecture weights α (Fig. 2a)"),
            ("cells", "Derived cells (Fig. 2b)"), ("curves", "Learning curves"),
            ("importance", "Parameter importance (sweep)"))


def _e(value: Any) -> str:
    return html.escape(str(value))


def _table(header: list[str] | tuple[str, ...], body: list[list[str]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f'<td{" class=num" if i >= numeric_from else ""}>{_e(c)}</td>'
                                    for i, c in enumerate(cells)) + "</tr>" for cells in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _key_values(pairs: list[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{_e(key)}</th><td>{_e(value)}</td></tr>" for key, value in pairs)
    return f"<table><tbody>{rows}</tbody></table>"


def _missing(text: str) -> str:
    return f'<p class="missing">{_e(text)}</p>'


def _figure(uri: str, alt: str, caption: str) -> str:
    return (f'<figure><img src="{uri}" alt="{_e(alt)}">'
            f'<figcaption class="note">{_e(caption)}</figcaption></figure>')


def _title(run: Run) -> str:
    return run.dataset if run.seed is None and run.method == "run" else f"{run.dataset} / {run.method}"


READ_ERRORS = (OSError, ValueError, KeyError, TypeError)
"""What reading a damaged or partly written file raises (also through the JSON and genotype loaders)."""


def _add_problem(problems: list[str], where: str, exc: BaseException) -> None:
    """Add ``"{where}: {exc}"`` to ``problems`` unless listed already. An error that names its
    file (the readers' errors do) is one problem wherever it was read: a search's unreadable
    ``metrics.jsonl``, which several sections read, is listed once on the page and printed once.
    Another (a ``KeyError`` of a missing field) counts once per place it was read from."""
    text = str(exc)
    line = f"{where}: {text}"
    names_a_file = "/" in text or "\\" in text
    if not any(p == line or (names_a_file and p.endswith(f": {text}")) for p in problems):
        problems.append(line)


def _guarded(problems: list[str], what: str, build: Callable[[], str]) -> str:
    """``build()``, or a notice naming the unreadable file (also added to ``problems``)."""
    try:
        return build()
    except READ_ERRORS as exc:
        _add_problem(problems, what, exc)
        return f'<p class="problem">Could not read {_e(what)}: {_e(exc)}</p>'


T = TypeVar("T")


def _each(problems: list[str], what: str, runs: list[Run],
          read: Callable[[Run], T]) -> tuple[list[tuple[Run, T]], str]:
    """``(run, read(run))`` of the runs whose files read, and a notice naming each that did not
    (also added to ``problems``): one damaged seed leaves the others' figures standing."""
    found, notices = [], []
    for run in runs:
        try:
            found.append((run, read(run)))
        except READ_ERRORS as exc:
            where = what if run.seed is None else f"{what}, seed {run.seed}"
            _add_problem(problems, where, exc)
            notices.append(f'<p class="problem">Could not read {_e(where)}: {_e(exc)}</p>')
    return found, "".join(notices)


def _results_section(experiment: Experiment, problems: list[str]) -> str:
    if experiment.results is None:
        if (experiment.path / "results.jsonl").is_file():
            why = "results.jsonl could not be read (see Problems above)"
        else:
            why = "No results.jsonl in this folder"
        return _missing(f"{why}: no mean ± std over seeds and no significance test. Results of the single "
                        "runs found (train/result.json) follow.") + _single_results(experiment, problems)
    if not experiment.results:
        return _missing("results.jsonl is empty: no run has finished yet.")
    rows, tests = aggregate(experiment.results), significance(experiment.results)
    failed = experiment.failed
    parts = ['<p class="note">Test accuracy in %, mean ± sample standard deviation (ddof = 1) over seeds; '
             "size in millions of trainable parameters; costs are mean wall-clock times of one run.</p>",
             _table(*overview(rows))]
    for dataset in result_datasets(rows, failed):
        parts.append(f"<h3>{_e(dataset)}</h3>")
        if dataset in tests:
            parts.append(_table(DETAIL_HEADER, [detail_cells(r) for r in rows if r.dataset == dataset]))
            note = deterministic_note([r for r in rows if r.dataset == dataset])
            if note:
                parts.append(f'<p class="note">{_e(note)}</p>')
            test = tests[dataset]
            parts.append(f'<p class="significance">{_e(test["summary"])}</p>')
            if test["every_baseline"]:
                parts.append(f'<p>{_e(test["every_baseline_summary"])}</p>')
                parts.append(_table(EVERY_HEADER, [every_baseline_cells(e) for e in test["every_baseline"]]))
        note = failures_note(failed, dataset)
        if note:
            parts.append(f'<p class="problem">{_e(note)}</p>')
    return "".join(parts)


def _single_results(experiment: Experiment, problems: list[str]) -> str:
    """A table of the runs' ``train/result.json``; a notice (and a problem) for each that cannot
    be read, the others' rows standing."""
    finished = [run for run in experiment.runs
                if run.train is not None and (run.train / "result.json").is_file()]
    rows, unread = _each(problems, "train/result.json", finished, lambda run: _result_row(run, problems))
    if not rows:
        return unread + _missing(f"No {'readable ' if unread else ''}train/result.json either: no retraining "
                                 "has finished.")
    header = ["run", "test accuracy (%)", "test accuracy, last epoch (%)", "best epoch / epochs",
              "parameters", "size (M)", "search cost (wall)", "training cost (wall)"]
    return unread + _table(header, [row for _, row in rows])


def _result_row(run: Run, problems: list[str]) -> list[str]:
    """The results table's row of ``run``'s ``train/result.json``; its search cost is "—" where
    the search's ``metrics.jsonl`` cannot be read (added to ``problems``).

    Raises
    ------
    ValueError
        Naming ``result.json`` if it cannot be read or lacks the test accuracy, or a value is not
        a number.
    """
    path = run.train / "result.json"
    result = read_json(path)
    try:
        search_cost = format_duration(sum(float(r.get("seconds", 0.0)) for r in read_history(run.search)))
    except READ_ERRORS as exc:
        _add_problem(problems, f"{_title(run)} search/metrics.jsonl", exc)
        search_cost = "—"
    seed = "" if run.seed is None else f" / seed {run.seed}"
    last, parameters = result.get("test_accuracy_last"), result.get("parameters")
    try:
        return [_title(run) + seed, f"{100 * float(result['test_accuracy']):.2f}",
                "—" if last is None else f"{100 * float(last):.2f}",
                f"{result.get('best_epoch', '—')} / {result.get('epochs', '—')}",
                "—" if parameters is None else f"{parameters:,}", format_millions(parameters),
                search_cost, format_duration(float(result.get("train_seconds", 0.0)))]
    except KeyError as exc:
        raise ValueError(f"{path}: no {exc} in it; the file is damaged") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: a value is not a number ({exc}); the file is damaged") from None


def _searching(experiment: Experiment) -> list[tuple[str, list[Run]]]:
    return [(_title(runs[0]), [r for r in runs if r.search is not None])
            for runs in experiment.groups().values() if any(r.search is not None for r in runs)]


def _seed_text(run: Run, runs: list[Run]) -> str:
    if run.seed is None:
        return "this run"
    return f"seed {run.seed} (searching seeds: {', '.join(str(r.seed) for r in runs)})"


def _steps(edges: int) -> int:
    steps = 1
    while steps * (steps + 3) // 2 < edges:
        steps += 1
    if steps * (steps + 3) // 2 != edges:
        raise ValueError(f"{edges} edges do not make a cell (2 + 3 + … + (steps + 1) edges)")
    return steps


def _has_weights(record: dict[str, Any]) -> bool:
    """SPDNetNAS records ``weights_normal``/``weights_reduce``; DARTS/FairDARTS ``weights``."""
    return "weights_normal" in record or "weights" in record


def _alpha_block(title: str, runs: list[Run], problems: list[str]) -> str:
    histories, unread = _each(problems, f"{title} search/metrics.jsonl", runs,
                              lambda r: read_history(r.search))
    found = next(((run, history) for run, history in histories
                  if history and _has_weights(history[-1])), None)
    if found is None:
        return unread + _missing(f"{title}: no mixture weights in any {'readable ' if unread else ''}"
                                 "search/metrics.jsonl.")
    run, history = found
    last = history[-1]
    if "weights_normal" in last:
        weights = {"normal": last["weights_normal"], "reduce": last["weights_reduce"]}
        figure = alpha_figure(weights, _steps(len(weights["normal"])), f"{title}: mixture weights")
    else:
        figure = euclidean_alpha_figure(last["weights"], last.get("ops", list(OPS)),
                                        _steps(len(last["weights"])), f"{title}: mixture weights")
    caption = (f"{_seed_text(run, runs)}, epoch {last.get('epoch', len(history))} — the last recorded of "
               f"{len(history)}; rows are edges (input → intermediate node), columns candidate operations.")
    return unread + _figure(data_uri(figure), f"mixture weights of {title}", caption)


AnyGenotype = Genotype | EuclideanGenotype


def _genotype_type(data: Any) -> type[Genotype] | type[EuclideanGenotype]:
    """The genotype class of a genotype's JSON object, by its ``search_space``."""
    euclidean = isinstance(data, dict) and data.get("search_space") == SEARCH_SPACE
    return EuclideanGenotype if euclidean else Genotype


def _genotype(run: Run) -> AnyGenotype | None:
    path = run.search / "genotype.json"
    if path.is_file():
        try:
            data = json.loads(read_text(path))
        except json.JSONDecodeError:
            data = None  # the loader below names the JSON error
        return _genotype_type(data).load(path)
    history = read_history(run.search)
    if not history or "genotype" not in history[-1]:
        return None
    data = history[-1]["genotype"]
    return _genotype_type(data).from_dict(data)


def _cell_text(genotype: Genotype, kind: str) -> str:
    return ", ".join(f"{op}({node_label(node)})" for op, node in genotype.cell(kind))


def _euclidean_cell_text(genotype: EuclideanGenotype) -> str:
    """``0 ← expand(c_{k-2}), skip(c_{k-1}); 1 ← …``: each intermediate node and its inputs."""
    return "; ".join(f"{node_label(node)} ← " + ", ".join(f"{op}({node_label(i)})" for op, i, target
                                                         in genotype.edges if target == node)
                     for node in range(2, 2 + genotype.steps))


def _cells_figure(title: str, run: Run, runs: list[Run], genotype: AnyGenotype) -> str:
    if isinstance(genotype, EuclideanGenotype):
        return _figure(data_uri(euclidean_cell_figure(genotype, f"{title}: derived cell")),
                       f"derived cell of {title}",
                       f"{_seed_text(run, runs)}; edge labels are operations, dashed arrows feed the cell "
                       "output (every intermediate node); every cell of the network is this one.")
    return _figure(data_uri(cells_figure(genotype, f"{title}: derived cells")), f"derived cells of {title}",
                   f"{_seed_text(run, runs)}; edge labels are operations (blue: reduced operations), "
                   "dashed arrows feed the cell output.")


def _genotype_cells(genotype: AnyGenotype) -> list[str]:
    if isinstance(genotype, EuclideanGenotype):
        return [_euclidean_cell_text(genotype)]
    return [_cell_text(genotype, "normal"), _cell_text(genotype, "reduce")]


def _cells_block(title: str, runs: list[Run], problems: list[str]) -> str:
    read, unread = _each(problems, f"{title} genotype", runs, _genotype)
    shown = next(((run, g) for run, g in read if g is not None), None)
    if shown is None:
        return unread + _missing(f"{title}: no {'readable ' if unread else ''}genotype.json (nor a genotype "
                                 "in metrics.jsonl) in any search folder.")
    run, genotype = shown
    parts = [unread, _cells_figure(title, run, runs, genotype)]
    if len(runs) > 1:
        genotypes = dict((r.seed, g) for r, g in read)
        cells = (["cell (node ← op(input))"] if isinstance(genotype, EuclideanGenotype)
                 else ["normal cell (op(input))", "reduction cell"])
        header = ["seed", *cells, "same as drawn"]
        body = [[str(r.seed), *(["unreadable"] * (len(header) - 1) if r.seed not in genotypes else
                                ["—"] * (len(header) - 1) if genotypes[r.seed] is None else
                                [*_genotype_cells(genotypes[r.seed]), "yes" if genotypes[r.seed] == genotype
                                 else "no"])]
                for r in runs]
        parts.append(_table(header, body, 99))
    return "".join(parts)


def _curves_block(title: str, runs: list[Run], problems: list[str]) -> str:
    parts = []
    searches = any(r.search is not None for r in runs)
    if not searches:
        parts.append('<p class="note">No search folders: this method does not search.</p>')
    for kind in ("search", "train") if searches else ("train",):
        read, unread = _each(problems, f"{title} {kind}/metrics.jsonl", runs,
                             lambda r, k=kind: read_history(getattr(r, k)))
        parts.append(unread)
        found = [(r.seed, h) for r, h in read if h]
        if not found:
            parts.append(_missing(f"{title}: no {'readable ' if unread else ''}{kind}/metrics.jsonl."))
            continue
        if not any("epoch" in record for _, history in found for record in history):
            parts.append('<p class="note">A single fit, no epochs: no learning curve.</p>')
            continue
        seeds, histories = [s for s, _ in found], [h for _, h in found]
        which = "" if seeds == [None] else f"; seeds {', '.join(str(s) for s in seeds)}"
        parts.append(_figure(data_uri(curves_figure(histories, kind, f"{title}: {kind}")),
                             f"{kind} learning curves of {title}",
                             f"{'architecture search (supernet)' if kind == 'search' else 'final training'}"
                             f"{which}."))
    return "".join(parts)


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and value > 0


def _without_folders(experiment: Experiment, searching: bool) -> str:
    """Notice naming the (dataset, method) pairs of results.jsonl that have no run folders
    (``searching``: no search folders, for methods that report a search cost). Malformed records
    are left to the results section to report."""
    have = {key for key, runs in experiment.groups().items()
            if not searching or any(r.search is not None for r in runs)}
    wanted = {(str(r.get("dataset")), str(r.get("method"))) for r in experiment.results or []
              if not searching or _positive(r.get("search_seconds"))}
    absent = sorted(wanted - have)
    if not absent:
        return ""
    where = "search folders" if searching else "run folders"
    names = ", ".join(f"{d} / {m} (runs/{d}/{m}/seed<k>/)" for d, m in absent)
    return _missing(f"In results.jsonl but without {where}: {names}.")


def _per_group(problems: list[str], block: Callable[[str, list[Run], list[str]], str],
               groups: list[tuple[str, list[Run]]], none_text: str) -> str:
    if not groups:
        return _missing(none_text)
    return "".join(f"<h3>{_e(title)}</h3>" + _guarded(problems, f"{title} ({block.__name__.strip('_')})",
                                                       lambda b=block, t=title, r=runs: b(t, r, problems))
                   for title, runs in groups)


def _importance_section(experiment: Experiment) -> str:
    if experiment.trials is None:
        return _missing("No sweep/trials.jsonl: this experiment has no sweep.")
    outcome = param_importances(experiment.trials)
    skipped = (f", {outcome.n_skipped} left out (failed, stopped early, without a finite metric "
               "or a repeated seed)" if outcome.n_skipped else "")
    parts = [f'<p class="note">{outcome.n_trials} usable trials of {outcome.n_configurations} '
             f'configuration(s){skipped}; fANOVA sees each configuration once, with its seeds\' mean.</p>']
    if outcome.best is not None:
        config = ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                           for k, v in sorted(outcome.best["config"].items()))
        rule = f"{'lowest' if outcome.mode == 'min' else 'highest'} mean metric, sweep.mode = {outcome.mode}"
        if not outcome.mode_recorded:
            rule += " assumed: trials.jsonl does not record the mode"
        best = outcome.best
        parts.append(f'<p>Best configuration ({_e(rule)}): {_e(config)}, mean metric '
                     f'{best["metric"]:.4g} over {best["trials"]} trial{"s" if best["trials"] > 1 else ""} '
                     f'({_e(", ".join(str(t) for t in best["trial_ids"]))}).</p>')
    if outcome.reason:
        return "".join(parts) + _missing(f"Parameter importance not computed: {outcome.reason}.")
    parts.append(_figure(data_uri(importance_figure(outcome.importances, "parameter importance")),
                         "parameter importance",
                         "fANOVA (Optuna) on the sweep's trials; importances sum to 1."))
    body = [[name, outcome.distributions[name], f"{value:.3f}"]
            for name, value in outcome.importances.items()]
    parts.append(_table(["parameter", "values (inferred distribution)", "importance"], body, 2))
    if outcome.excluded:
        excluded = "; ".join(f"{name}: {why}" for name, why in outcome.excluded.items())
        parts.append(f'<p class="note">Not assessed: {_e(excluded)}.</p>')
    return "".join(parts)


def render_report(experiment: Experiment, label: str | None = None) -> tuple[str, list[str]]:
    """The HTML page for ``experiment`` and the problems met while reading it.

    ``label`` names the experiment on the page and in the problems instead of its folder, e.g.
    the ``s3://`` URI of an experiment read from a local copy.
    """
    problems = list(experiment.problems)
    searching = _searching(experiment)
    all_groups = [(_title(runs[0]), runs) for runs in experiment.groups().values()]
    no_search = ("No search folders (runs/<dataset>/<method>/seed<k>/search or search/): "
                 "nothing was searched here.")
    unsearched = _without_folders(experiment, True)
    bodies = {
        "results": _guarded(problems, "results", lambda: _results_section(experiment, problems)),
        "alphas": unsearched + _per_group(problems, _alpha_block, searching, no_search),
        "cells": unsearched + _per_group(problems, _cells_block, searching, no_search),
        "curves": _without_folders(experiment, False)
        + _per_group(problems, _curves_block, all_groups, "No search or train folders: no learning curves."),
        "importance": _guarded(problems, "sweep/trials.jsonl", lambda: _importance_section(experiment)),
    }
    name = label.rstrip("/").rsplit("/", 1)[-1] if label else experiment.path.name
    provenance = _key_values([
        ("experiment", label or str(experiment.path)),
        ("kind", "benchmark (methods × datasets × seeds)" if experiment.is_benchmark else "single run"),
        *([] if experiment.is_benchmark else [("dataset", ", ".join(recorded_datasets(experiment, problems))
                                               or "not recorded in the run folders")]),
        ("generated", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("spdnas version", spdnas.__version__)])
    items = "".join(f'<li class="problem">{_e(p)}</li>' for p in problems)
    problem_list = f'<h2 id="problems">Problems</h2><ul>{items}</ul>' if problems else ""
    nav = "<nav>" + "".join(f'<a href="#{key}">{_e(title)}</a>' for key, title in SECTIONS) + "</nav>"
    sections = "".join(f'<section id="{key}"><h2>{_e(title)}</h2>{bodies[key]}</section>'
                       for key, title in SECTIONS)
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>spdnas report: {_e(name)}</title><style>{STYLE}</style>'
            f"</head><body><h1>spdnas report: {_e(name)}</h1>{provenance}{nav}{problem_list}{sections}"
            "</body></html>\n")
    if label:
        local = str(experiment.path)
        page = page.replace(_e(local), _e(label))
        problems = [p.replace(local, label) for p in problems]
    return page, problems


def write_report(path: str | Path, output: str | Path | None = None,
                 label: str | None = None) -> tuple[Path, list[str]]:
    """Write the report of the experiment folder ``path`` (default ``path/report.html``), named
    ``label`` on the page where given (see :func:`render_report`).

    Returns
    -------
    (Path, list of str)
        Where the page is, and the problems met (unreadable files), also listed on the page.
    """
    experiment = load_experiment(path)
    page, problems = render_report(experiment, label)
    target = Path(output) if output else experiment.path / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return target, problems
