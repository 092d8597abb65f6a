"""The ``spdnas`` command (also ``python -m spdnas``).

Every experiment command takes ``--config FILE`` (YAML, see ``configs/``) and any number of
``key=value`` overrides (``search.epochs=5 runtime.dtype=float32``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from spdnas.data.cli import add_data_commands, error_text, show_traceback, user_errors


def _config(args: argparse.Namespace):
    from spdnas.config import load_config

    return load_config(args.config, args.overrides)


def _print_paths(paths: dict[str, str]) -> None:
    width = max(map(len, paths), default=0)
    for name, path in paths.items():
        print(f"  {name:{width}s}  {path}")


def _search(args: argparse.Namespace) -> int:
    from spdnas.pipeline import search

    outcome = search(_config(args), resume=not args.no_resume)
    print(f"genotype: {outcome.genotype.to_json()}")
    _print_paths(outcome.paths)
    return 0


def _train(args: argparse.Namespace) -> int:
    from spdnas.pipeline import resolve_genotype, retrain, summary_line

    outcome = retrain(_config(args), resolve_genotype(args.genotype), resume=not args.no_resume)
    print(summary_line(outcome))
    _print_paths(outcome.paths)
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from spdnas.distributed.sweep import SweepInterrupted, run_sweep

    config = _config(args)
    try:
        outcome = run_sweep(config, resume=not args.no_resume)
    except SweepInterrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return 130
    metric = config.sweep.metric
    print(f"{len(outcome.trials)} trials; configurations by mean {metric} over seeds:")
    for row in outcome.summary:
        std = "n/a" if row["metric_std"] is None else f"{row['metric_std']:.4f}"
        left = (f", {row['excluded']} left out (not finished, metric not finite or seed repeated)"
                if row["excluded"] else "")
        print(f"  {row['metric_mean']:.4f} ± {std} (seeds {row['seeds']}{left}) {row['config']}")
    if not outcome.summary:
        print("  none: no trial finished with a finite metric")
    _print_paths(outcome.paths)
    diverged = [t for t in outcome.trials if t["status"] == "DIVERGED"]
    if diverged:
        print(f"{len(diverged)} of {len(outcome.trials)} trials diverged (Optuna was given the worst value; "
              f"left out of the summary); first: trial {diverged[0]['trial_id']} {diverged[0]['config']}: "
              f"{diverged[0]['error']}")
    failed = [t for t in outcome.trials if t["status"] == "ERROR"]
    for trial in failed:
        print(f"failed: trial {trial['trial_id']} (seed {trial['seed']}) {trial['config']}: {trial['error']}",
              file=sys.stderr)
    if failed:
        print(f"error: {len(failed)} of {len(outcome.trials)} trials failed (above; status ERROR in "
              f"{outcome.paths['trials']}) and are left out of the summary", file=sys.stderr)
        return 1
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    from spdnas.benchmark.run import BenchmarkInterrupted, run_benchmark
    from spdnas.config import ConfigError
    from spdnas.data.storage import Folder

    data_keys = [f"data.{k}" for k in _overridden(args.overrides, "data")]
    if data_keys:
        raise ConfigError(f"{', '.join(data_keys)}: a benchmark runs on benchmark.datasets, each with its "
                          "own data section; the top-level data.* would be ignored "
                          "(set benchmark.datasets=...)")
    try:
        outcome = run_benchmark(_config(args), resume=not args.no_resume)
    except BenchmarkInterrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return 130
    folder, _, name = outcome.paths["table.md"].rpartition("/")
    print(Folder(folder).read_bytes(name).decode())
    print(f"{len(outcome.results)} runs")
    _print_paths(outcome.paths)
    for failure in outcome.failed:
        print(f"error: {failure['method']} on {failure['dataset']}, seed {failure['seed']} failed and is "
              f"left out of the table: {failure['error']}", file=sys.stderr)
    return 1 if outcome.failed else 0


def _overridden(overrides: list[str], section: str) -> dict:
    """The settings of ``section`` that ``overrides`` give, however written (``model.steps=3``
    and ``model={steps: 3}`` alike)."""
    from spdnas.config import parse_overrides

    given = parse_overrides(overrides).get(section)
    return given if isinstance(given, dict) else {}


def _evaluate(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from spdnas.config import ConfigError, config_from_dict, load_config
    from spdnas.data.schema import MANIFEST_NAME
    from spdnas.data.storage import Folder
    from spdnas.engine.loops import evaluate
    from spdnas.engine.runtime import setup_runtime
    from spdnas.pipeline import (
        check_model_classes,
        check_model_data,
        confusion_matrix,
        evaluation_split,
        load_model,
        on_model_data,
    )

    runtime = _overridden(args.overrides, "runtime")
    ignored = [*(f"model.{k}" for k in _overridden(args.overrides, "model")),
               *(f"runtime.{k}" for k in ("dtype", "device") if k in runtime)]
    if ignored:
        raise ConfigError(f"evaluate runs the saved model as it was trained (its model.* and runtime.dtype), "
                          f"on the CPU: {', '.join(ignored)} would change nothing")
    model, saved = load_model(args.model)
    if args.config:
        config = load_config(args.config, args.overrides)
    else:  # the model's own experiment, with the command line's overrides on top
        config = config_from_dict(saved["config"], args.overrides)
    setup_runtime(replace(config.runtime, device="cpu"))  # the thread settings
    uri_given = "uri" in _overridden(args.overrides, "data")
    if (uri_given or not on_model_data(config, saved)) and not Folder(config.data.uri).exists(MANIFEST_NAME):
        # a mistyped data.uri (or another config file's) must not make a dataset there, nor a
        # given one remake the model's own, unchecked (its digest is not compared then)
        raise FileNotFoundError(f"no dataset at {config.data.uri}: evaluate scores data that exists "
                                "(it makes a dataset only at the model's own data.uri, checked against "
                                "its digest)")
    dataset, split, digest = evaluation_split(config, args.split)
    check_model_data(args.model, saved, config, digest, uri_given)
    check_model_classes(args.model, saved, dataset, config.data.uri)
    dtype = next(model.parameters()).dtype
    predicted = []

    def forward(x: torch.Tensor) -> torch.Tensor:
        logits = model(x)
        predicted.append(logits.argmax(1))
        return logits

    with torch.no_grad():  # one pass: metrics and the predictions of the confusion matrix
        metrics = evaluate(forward, split.to("cpu", dtype), config.train.batch_size, args.split)
    matrix = confusion_matrix(torch.cat(predicted).numpy(), split.y.numpy(), dataset.num_classes)
    report = {**metrics, "confusion_matrix": matrix.tolist(), "class_names": list(dataset.meta.class_names)}
    if args.output:  # before the printout, which a closed pipe (`| head`) may cut short
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in report.items() if k != "confusion_matrix"}, indent=2))
    print("confusion matrix (rows: true class, columns: predicted class)")
    for line in _matrix_lines(report["class_names"], matrix):
        print(line)
    return 0


def _matrix_lines(names: list[str], matrix) -> list[str]:
    """A confusion matrix as text: a header of the predicted classes, then one row per true class.

    Parameters
    ----------
    names : list of str
        The class names, in label order.
    matrix : numpy.ndarray
        Counts ``[true class, predicted class]``.

    Returns
    -------
    list of str
        The header line and one line per class, each column as wide as its name or its largest count.
    """
    width = max(len(name) for name in names)
    digits = len(str(int(matrix.max())))
    columns = [max(len(name), digits) for name in names]

    def line(label: str, cells: list[str]) -> str:
        return f"  {label:>{width}s}  " + "  ".join(f"{c:>{w}s}" for c, w in zip(cells, columns, strict=True))

    rows = [line(name, [str(v) for v in row]) for name, row in zip(names, matrix, strict=True)]
    return [line("", names), *rows]


def _quickstart(args: argparse.Namespace) -> int:
    bench = _config(args).benchmark
    print(f"quickstart: {', '.join(bench.methods)} on {', '.join(d.name for d in bench.datasets)}, "
          f"seeds {bench.seeds}, on a local Ray", flush=True)
    return _benchmark(args)


def _report(args: argparse.Namespace) -> int:
    from spdnas.report.html import write_report

    try:
        path, problems = write_report(args.path, args.output)
    except (FileNotFoundError, NotADirectoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    print(f"report: {path}")
    return 0


def _add_experiment_args(parser: argparse.ArgumentParser, default_config: str | None = None) -> None:
    parser.add_argument("--config", default=default_config, help="experiment YAML (see configs/)")
    parser.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")


def build_parser() -> argparse.ArgumentParser:
    """The ``spdnas`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="spdnas", description="Neural architecture search, training and evaluation of SPD matrix "
        "networks (SPDNetNAS). Experiment commands take --config FILE and KEY=VALUE overrides, "
        "e.g. search.epochs=5 runtime.dtype=float32.")
    sub = parser.add_subparsers(dest="command", required=True)

    quick = sub.add_parser("quickstart", help="make the default dataset; search, retrain and test "
                                              "SPDNetNAS against baselines over seeds; table and report")
    _add_experiment_args(quick, "configs/quickstart.yaml")
    quick.set_defaults(func=_quickstart)

    search = sub.add_parser("search", help="bi-level architecture search; writes genotype.json")
    _add_experiment_args(search)
    search.set_defaults(func=_search)

    train = sub.add_parser("train", help="retrain a genotype from scratch and evaluate it on test")
    train.add_argument("--genotype", required=True,
                       help="genotype JSON file (local or s3://), or 'radar' / 'hdm05'")
    _add_experiment_args(train)
    train.set_defaults(func=_train)

    sweep = sub.add_parser("sweep", help="Ray Tune + Optuna sweep (sweep.space), seeds as repeats")
    _add_experiment_args(sweep)
    sweep.set_defaults(func=_sweep)

    benchmark = sub.add_parser("benchmark", help="methods x datasets x seeds as Tune trials; table + report")
    _add_experiment_args(benchmark)
    benchmark.set_defaults(func=_benchmark)

    evaluate = sub.add_parser("evaluate", help="evaluate a trained model (model.pt) on a split")
    evaluate.add_argument("--model", required=True, help="model.pt written by `spdnas train`")
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test"])
    evaluate.add_argument("--output", help="also write the metrics and confusion matrix as JSON")
    evaluate.add_argument("--config", help="experiment YAML (default: the one saved with the model)")
    evaluate.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    evaluate.set_defaults(func=_evaluate)

    report = sub.add_parser("report", help="self-contained HTML report of an experiment or run folder")
    report.add_argument("path", help="experiment folder (results.jsonl, runs/, sweep/) or a run folder")
    report.add_argument("--output", help="HTML file to write (default: PATH/report.html)")
    report.set_defaults(func=_report)

    add_data_commands(sub)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` with the ``spdnas`` parser (see :func:`parse_with_overrides`)."""
    return parse_with_overrides(build_parser(), argv)


def parse_with_overrides(parser: argparse.ArgumentParser,
                         argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``; ``KEY=VALUE`` overrides may also follow options (``--no-resume x=1``).

    argparse fills a ``*`` positional once, so overrides after an option would be refused as
    unrecognized; they are appended, in order, to the parsed ``overrides``.
    """
    args, extra = parser.parse_known_args(argv)
    stray = [item for item in extra if item.startswith("-") or "=" not in item]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


@contextmanager
def one_line_warnings() -> Iterator[None]:
    """spdnas's own warnings as one ``warning: ...`` line each, as the CLI's errors are, instead of
    Python's ``<file>:<line>: UserWarning: ...`` and the source line (``SPDNAS_DEBUG=1`` keeps those).

    Only the text changes (``warnings.formatwarning``): filters and recording
    (``catch_warnings(record=True)``, ``pytest.warns``) work as before.
    """
    package = str(Path(__file__).resolve().parent)
    formatted = warnings.formatwarning

    def one_line(message, category, filename, lineno, line=None):
        if show_traceback() or not str(filename).startswith(package):
            return formatted(message, category, filename, lineno, line)
        return f"warning: {message}\n"

    warnings.formatwarning = one_line
    try:
        yield
    finally:
        warnings.formatwarning = formatted


def main(argv: list[str] | None = None) -> int:
    with one_line_warnings():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    import pickle

    import yaml

    from spdnas.config import ConfigError

    for stream in (sys.stdout, sys.stderr):  # '±', '—', '→' on a console that cannot show them: '?'
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    args = parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # `spdnas ... | head` closed the pipe: stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:  # Ctrl-C: one line, not the traceback of wherever the step was
        if show_traceback():
            raise
        again = ""
        if args.command in ("search", "train"):
            again = ("; run the same command again to continue from the last checkpoint (--no-resume "
                     "starts over)")
            if args.no_resume:
                again = "; run it again without --no-resume to continue from the last checkpoint"
        print(f"\ninterrupted{again}", file=sys.stderr)
        return 130
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except user_errors(pickle.UnpicklingError, yaml.YAMLError) as exc:
        if show_traceback():
            raise
        print(f"error: {error_text(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
