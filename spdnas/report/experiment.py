"""Reading an experiment folder: what a benchmark, a sweep or a single run left behind.

Layouts understood (each part optional)::

    <experiment>/results.jsonl                          one MethodResult.to_dict() per line
    <experiment>/failed.jsonl                           one {dataset, method, seed, error} per failed run
    <experiment>/runs/<dataset>/<method>/seed<k>/search/ metrics.jsonl, genotype.json
    <experiment>/runs/<dataset>/<method>/seed<k>/train/  metrics.jsonl, result.json
    <experiment>/sweep/trials.jsonl                     one sweep trial per line

or a plain run folder (``<run>/search``, ``<run>/train``, as ``spdnas search``/``train`` write
them), or one such ``search``/``train`` folder itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FAILED_FILE = "failed.jsonl"
READ_FILES = frozenset({"results.jsonl", FAILED_FILE, "trials.jsonl", "metrics.jsonl", "genotype.json",
                        "result.json", "data.json"})


def read_by_report(key: str) -> bool:
    """Whether the report reads the file at ``key`` (a path inside an experiment folder): what to
    fetch from S3 to draw it, leaving checkpoints and models behind."""
    return key.rsplit("/", 1)[-1] in READ_FILES


def read_text(path: Path) -> str:
    """The text of the UTF-8 file ``path``.

    Raises
    ------
    ValueError
        Naming the file if it is not UTF-8 text (a damaged or binary file).
    """
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); the file is "
                         "damaged") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file (blank lines skipped).

    Raises
    ------
    ValueError
        Naming the file and line of the first line that is not a JSON object, or the file if it
        is not UTF-8 text.
    """
    records = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
    return records


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in the file ``path``.

    Raises
    ------
    ValueError
        Naming the file if it is not UTF-8 text, not valid JSON or not a JSON object.
    """
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


@dataclass
class Run:
    """One run: a (dataset, method, seed) of a benchmark, or a plain run folder (seed None)."""

    dataset: str
    method: str
    seed: int | None
    search: Path | None = None
    train: Path | None = None


@dataclass
class Experiment:
    """Everything found under an experiment folder; ``problems`` lists what could not be read."""

    path: Path
    results: list[dict[str, Any]] | None = None
    runs: list[Run] = field(default_factory=list)
    trials: list[dict[str, Any]] | None = None
    failed: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def is_benchmark(self) -> bool:
        return self.results is not None or any(r.seed is not None for r in self.runs)

    def groups(self) -> dict[tuple[str, str], list[Run]]:
        """Runs per (dataset, method), seeds ascending."""
        grouped: dict[tuple[str, str], list[Run]] = {}
        for run in sorted(self.runs, key=lambda r: (r.dataset, r.method, -1 if r.seed is None else r.seed)):
            grouped.setdefault((run.dataset, run.method), []).append(run)
        return grouped


def _subdir(path: Path, name: str) -> Path | None:
    return path / name if (path / name).is_dir() else None


def _benchmark_runs(root: Path, problems: list[str]) -> list[Run]:
    runs = []
    for seed_dir in sorted(root.glob("*/*/seed*")):
        if not seed_dir.is_dir():
            continue
        try:
            seed = int(seed_dir.name.removeprefix("seed"))
        except ValueError:
            problems.append(f"{seed_dir}: folder name is not seed<number>; skipped")
            continue
        run = Run(seed_dir.parent.parent.name, seed_dir.parent.name, seed,
                  _subdir(seed_dir, "search"), _subdir(seed_dir, "train"))
        if run.search or run.train:
            runs.append(run)
    return runs


def _drop_unlisted(experiment: Experiment) -> None:
    """Leave out run folders of (dataset, method, seed) that ``results.jsonl`` does not list
    (left by an earlier benchmark with other seeds or methods), naming them in ``problems``."""
    listed = {(str(r.get("dataset")), str(r.get("method")), r.get("seed")) for r in experiment.results or []}
    stale = [run for run in experiment.runs if (run.dataset, run.method, run.seed) not in listed]
    if stale:
        experiment.runs = [run for run in experiment.runs if run not in stale]
        names = ", ".join(f"{r.dataset}/{r.method}/seed{r.seed}" for r in stale)
        experiment.problems.append(f"{experiment.path / 'runs'}: left out {len(stale)} run folder(s) that "
                                   f"results.jsonl does not list (from an earlier run, or a trial that "
                                   f"failed): {names}")


def _plain_run(path: Path) -> Run | None:
    if (path / "metrics.jsonl").exists() and (path / "genotype.json").exists():
        return Run(path.parent.name, path.name, None, search=path)
    if (path / "metrics.jsonl").exists() and (path / "result.json").exists():
        return Run(path.parent.name, path.name, None, train=path)
    search, train = _subdir(path, "search"), _subdir(path, "train")
    return Run(path.name, "run", None, search, train) if search or train else None


def _valid_failures(records: list[dict[str, Any]], path: Path, problems: list[str]) -> list[dict[str, Any]]:
    """The records of ``failed.jsonl`` that name a dataset, a method and a seed; the others are
    named in ``problems``."""
    valid = []
    for line, record in enumerate(records, 1):
        seed = record.get("seed")
        if (isinstance(record.get("dataset"), str) and isinstance(record.get("method"), str)
                and isinstance(seed, int) and not isinstance(seed, bool)):
            valid.append(record)
        else:
            problems.append(f"{path}: record {line} needs a dataset, a method and an integer seed; left out")
    return valid


def load_experiment(path: str | Path) -> Experiment:
    """Find and read the parts of the experiment (or run) folder at ``path``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist or holds none of the parts listed in the module docstring.
    NotADirectoryError
        If ``path`` is a file.
    """
    root = Path(path).resolve()
    if root.is_file():
        raise NotADirectoryError(f"{path}: a file, not an experiment folder; give the folder of an "
                                 "experiment or run (with results.jsonl, runs/, sweep/, search/ or train/)")
    if not root.is_dir():
        raise FileNotFoundError(f"{path}: no such folder")
    experiment = Experiment(root)
    for name, attribute in (("results.jsonl", "results"), ("sweep/trials.jsonl", "trials"),
                            (FAILED_FILE, "failed")):
        if (root / name).is_file():
            try:
                setattr(experiment, attribute, read_jsonl(root / name))
            except ValueError as exc:
                experiment.problems.append(str(exc))
    experiment.failed = _valid_failures(experiment.failed, root / FAILED_FILE, experiment.problems)
    if (root / "runs").is_dir():
        experiment.runs = _benchmark_runs(root / "runs", experiment.problems)
        if experiment.results is not None:
            _drop_unlisted(experiment)
    if not experiment.runs:
        plain = _plain_run(root)
        experiment.runs = [plain] if plain else []
    found = experiment.results is not None or experiment.trials is not None or experiment.runs
    if not found and not experiment.problems:
        raise FileNotFoundError(f"{path}: no results.jsonl, runs/, sweep/trials.jsonl, search/ or train/ "
                                "— not an experiment or run folder")
    return experiment


def read_history(directory: Path | None) -> list[dict[str, Any]]:
    """``metrics.jsonl`` of a search or train folder (empty if absent)."""
    if directory is None or not (directory / "metrics.jsonl").is_file():
        return []
    return read_jsonl(directory / "metrics.jsonl")


def recorded_datasets(experiment: Experiment, problems: list[str]) -> list[str]:
    """``"name (uri)"`` of the datasets that the runs' search and train folders record in
    ``data.json`` (written since spdnas checks a resumed run's data); unreadable records are
    added to ``problems``."""
    found = set()
    for run in experiment.runs:
        for folder in (run.search, run.train):
            if folder is None or not (folder / "data.json").is_file():
                continue
            try:
                record = read_json(folder / "data.json")
            except ValueError as exc:  # names the file
                problems.append(str(exc))
                continue
            if "uri" not in record:
                problems.append(f"{folder / 'data.json'}: no 'uri'")
            else:  # records written before the name was recorded have the URI only
                found.add(f"{record['name']} ({record['uri']})" if "name" in record else str(record["uri"]))
    return sorted(found)
