"""``spdnas benchmark``: methods × datasets × seeds as Ray Tune trials, then tables and report.

Every trial runs one method (:mod:`spdnas.benchmark.methods`) on one dataset with one seed, in
its own Tune actor on ``benchmark.cpus_per_trial`` CPUs, and writes its files to
``<output_dir>/<name>/runs/<dataset>/<method>/seed<k>/``. When all trials are done the driver
writes ``results.jsonl``, the tables (Markdown, CSV, JSON, with the paired significance test)
and ``report.html`` into ``<output_dir>/<name>/``. Running the command again resumes an
interrupted benchmark without repeating finished trials.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ray import tune

from spdnas.benchmark.methods import run_method
from spdnas.config import (
    BENCHMARK_METHODS,
    ConfigError,
    ExperimentConfig,
    _merge,
    config_from_dict,
    parse_overrides,
)
from spdnas.data.storage import Folder
from spdnas.distributed.sweep import error_summary, tune_run_config
from spdnas.engine.runtime import setup_runtime
from spdnas.engine.splits import require_full_batches, stored_splits
from spdnas.pipeline import (
    EXPERIMENT_FILES,
    check_no_other_experiment,
    check_same_data,
    check_same_experiment,
    delete_earlier,
    ensure_dataset,
    load_experiment_data,
    run_folder,
    with_absolute_paths,
)
from spdnas.report.experiment import FAILED_FILE

RESULT_KEY = "method_result"


class BenchmarkInterrupted(RuntimeError):
    """The benchmark stopped before all its trials finished; running it again resumes it."""


@dataclass
class BenchmarkOutcome:
    """The finished trials' results, the trials that failed and where the outputs are.

    ``failed`` lists ``{"dataset", "method", "seed", "error"}`` (the last line of the error);
    the tables and the report hold the finished trials only.
    """

    results: list[dict[str, Any]]
    paths: dict[str, str]
    failed: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def dataset_config(base: ExperimentConfig, dataset: str) -> ExperimentConfig:
    """The experiment of one benchmark dataset: its data section and its overrides."""
    matches = [d for d in base.benchmark.datasets if d.name == dataset]
    if not matches:
        raise ValueError(f"no benchmark dataset named {dataset!r}")
    entry = matches[0]
    tree = base.to_dict()
    tree["data"] = dataclasses.asdict(entry.data)
    tree = _merge(tree, parse_overrides(entry.overrides))
    tree["runtime"]["progress"] = False
    return config_from_dict(tree)


def require_runnable(config: ExperimentConfig, dataset: str, methods: list[str]) -> None:
    """Refuse, from its manifest's split counts, a benchmark dataset that ``methods`` cannot run
    on: one without train, val or test rows, or whose search or retraining epochs hold no full
    batch for the methods that train in batches (:data:`~spdnas.config.BENCHMARK_METHODS`).
    Checked before any trial starts: in the trials, every one would fail alike.

    Parameters
    ----------
    config : ExperimentConfig
        The dataset's experiment (:func:`dataset_config`: with its own overrides).
    dataset : str
        Its name in ``benchmark.datasets``, for the message.
    methods : list of str
        The benchmark's methods.

    Raises
    ------
    ValueError
        Naming the dataset, the batch size setting and the methods that need it.
    """
    manifest, halves = stored_splits(config.data, [config.data.search_split_seed(config.runtime.seed)])
    for budget in ("search", "train"):
        users = [m for m in methods if budget in BENCHMARK_METHODS[m]]
        if not users:
            continue
        size = getattr(config, budget).batch_size
        try:
            require_full_batches(manifest["counts"], config.data.search_val_fraction, halves=halves,
                                 **{f"{budget}_batch_size": size})
        except ValueError as exc:
            raise ValueError(f"benchmark dataset {dataset!r}, {budget}.batch_size={size} (for "
                             f"{', '.join(users)}): {exc}") from None


def _publish_tree(local: Path, uri: str) -> None:
    folder = Folder(uri)
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        folder.write_bytes(str(path.relative_to(local)), path.read_bytes())


def trial_experiment(base: dict[str, Any], dataset: str) -> ExperimentConfig:
    """The experiment config of one trial on ``dataset``, set up in this process.

    Every seed searches on the same search-train/search-val halves, drawn with the base seed
    (recorded in the run's config, so ``spdnas search runtime.seed=k data.split_seed=…`` repeats
    it). ``runtime.threads=0`` becomes the trial's ``benchmark.cpus_per_trial``: every job
    applies ``runtime.threads`` again, and 0 there means every core of the node, which several
    trials at once would oversubscribe.
    """
    config = dataset_config(config_from_dict(base), dataset)
    cpus = max(1, int(config.benchmark.cpus_per_trial))
    runtime = replace(config.runtime, threads=config.runtime.threads or cpus)
    if runtime.device.startswith("cuda"):  # the GPU Ray gave this trial (see trial_resources)
        runtime = replace(runtime, device="cuda")
    split_seed = config.data.search_split_seed(config.runtime.seed)
    config = replace(config, data=replace(config.data, split_seed=split_seed), runtime=runtime)
    setup_runtime(config.runtime)
    return config


def benchmark_trial(params: dict[str, Any], base: dict[str, Any], root: str) -> None:
    """One (dataset, method, seed): run the method, keep its files, report its result."""
    config = trial_experiment(base, params["dataset"])
    data = load_experiment_data(config)
    target = f"{root}/runs/{params['dataset']}/{params['method']}/seed{params['seed']}"
    folder = Folder(target)
    if folder.is_local:
        result = run_method(params["method"], config, data, params["seed"], Path(folder.base))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = run_method(params["method"], config, data, params["seed"], Path(tmp))
            _publish_tree(Path(tmp), target)
    result.dataset = params["dataset"]
    tune.report({RESULT_KEY: json.dumps(result.to_dict()), "test_accuracy": result.test_accuracy})


class Progress(tune.Callback):
    """One line per trial that starts or ends (Tune's own status tables are switched off)."""

    def __init__(self, total: int):
        self.total = total

    @staticmethod
    def _name(trial) -> str:
        c = trial.config
        return f"{c['method']} on {c['dataset']}, seed {c['seed']}"

    def _count(self, trials, trial) -> int:
        return sum(t is trial or t.status in ("TERMINATED", "ERROR") for t in trials)

    def on_trial_start(self, iteration, trials, trial, **info):
        print(f"  started  {self._name(trial)}", flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        accuracy, seconds = result.get("test_accuracy"), result.get("time_total_s", 0.0)
        score = f"test accuracy {100 * accuracy:.2f}%" if accuracy is not None else "no result"
        print(f"  [{self._count(trials, trial)}/{self.total}] {self._name(trial)}: {score} ({seconds:.0f} s)",
              flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        print(f"  [{self._count(trials, trial)}/{self.total}] {self._name(trial)}: FAILED", flush=True)


def _write_outputs(results: list[dict[str, Any]], failed: list[dict[str, Any]],
                   root: Folder) -> dict[str, str]:
    from spdnas.report.experiment import read_by_report
    from spdnas.report.html import write_report
    from spdnas.report.tables import write_tables

    lines = "".join(json.dumps(r) + "\n" for r in results)
    failed_lines = "".join(json.dumps(f) + "\n" for f in failed)
    if root.is_local:
        base = Path(root.base)
        (base / "results.jsonl").write_text(lines, encoding="utf-8")
        (base / FAILED_FILE).write_text(failed_lines, encoding="utf-8")
        tables = write_tables(results, base, failed=failed)
        report, _ = write_report(str(base), str(base / "report.html"))
        failures = {"failed runs": str(base / FAILED_FILE)} if failed else {}
        return {"results": str(base / "results.jsonl"), **failures,
                **{f"table.{k}": str(v) for k, v in tables.items()}, "report": str(report)}
    from spdnas.data import s3

    root.write_bytes("results.jsonl", lines.encode())
    root.write_bytes(FAILED_FILE, failed_lines.encode())
    with tempfile.TemporaryDirectory() as tmp:
        s3.download(root.uri, tmp, overwrite=True, progress=False, select=read_by_report)
        tables = write_tables(results, tmp, failed=failed)
        report, _ = write_report(tmp, str(Path(tmp) / "report.html"), label=root.uri)
        for path in [*tables.values(), report]:
            root.write_bytes(Path(path).name, Path(path).read_bytes())
    failures = {"failed runs": root.display(FAILED_FILE)} if failed else {}
    return {"results": root.display("results.jsonl"), **failures, "report": root.display("report.html"),
            **{f"table.{k}": root.display(Path(v).name) for k, v in tables.items()}}


EXPERIMENT_FILE = EXPERIMENT_FILES["benchmark"]
# settings that may change between a run and its resumption: they change no result. The top-level
# data section is not the benchmark's (each dataset entry has its own), and how a dataset is made is
# not compared: its contents are, by their digest (check_same_data)
RUN_ONLY = ("runtime.progress", "runtime.threads", "runtime.torch_threads", "runtime.checkpoint_every",
            "distributed", "benchmark.max_concurrent_trials", "benchmark.cpus_per_trial",
            "benchmark.gpus_per_trial", "sweep", "data", "benchmark.datasets.*.data.builder",
            "benchmark.datasets.*.data.builder_params")


OWN_FILES = ("results.jsonl", FAILED_FILE, "table.md", "table.csv", "table.json", "report.html",
             EXPERIMENT_FILE)
OWN_FOLDERS = ("runs", "tune")


def trial_resources(config: ExperimentConfig, cluster: dict[str, float]) -> tuple[dict[str, float], int]:
    """What one trial asks Ray for, and how many such trials fit in ``cluster`` at once (≥ 1).

    A CUDA ``runtime.device`` asks for ``benchmark.gpus_per_trial`` GPUs: Ray then shows the
    trial only its own GPU(s), so inside a trial the device is plain ``cuda``.
    """
    bench = config.benchmark
    resources = {"CPU": bench.cpus_per_trial}
    fits = cluster.get("CPU", 1) // bench.cpus_per_trial
    if config.runtime.device.startswith("cuda"):
        resources["GPU"] = bench.gpus_per_trial
        fits = min(fits, cluster.get("GPU", 0) // bench.gpus_per_trial)
    return resources, max(1, int(fits))


def run_benchmark(config: ExperimentConfig, resume: bool = True) -> BenchmarkOutcome:
    """Run (or resume) every (dataset, method, seed) of ``config.benchmark``.

    What the run folder refuses is checked before any dataset is made; every dataset's splits
    before the earlier benchmark is deleted (``resume=False``) or a new one recorded.
    """
    from spdnas.distributed.runner import ray_session, require_gpus

    for where, experiment in [("", config), *((f" (benchmark.datasets {entry.name!r})",
                                                dataset_config(config, entry.name))
                                               for entry in config.benchmark.datasets)]:
        dist = experiment.distributed
        ignored = [f"distributed.{key}={value}" for key, value, default in
                   (("num_workers", dist.num_workers, 1), ("use_gpu", str(dist.use_gpu).lower(), "false"))
                   if value != default]
        if ignored:
            raise ConfigError(f"a benchmark trial runs its method in one process, on "
                              "benchmark.cpus_per_trial CPUs (and benchmark.gpus_per_trial GPUs with "
                              "runtime.device=cuda): "
                              f"{' and '.join(ignored)}{where} (for spdnas search, train and sweep) would "
                              "change nothing")
    config = with_absolute_paths(config)
    bench = config.benchmark
    root = Folder(run_folder(config, ""))
    check_no_other_experiment(root, "benchmark")
    resumed = resume and root.exists(EXPERIMENT_FILE)
    if resumed:  # a recorded benchmark of other settings: refused before any dataset is made
        check_same_experiment(config, root, resume, EXPERIMENT_FILE, RUN_ONLY, "benchmark")
    for entry in bench.datasets:
        experiment = dataset_config(config, entry.name)
        ensure_dataset(experiment.data, progress=config.runtime.progress)
        require_runnable(experiment, entry.name, bench.methods)
    if not resume:
        delete_earlier(root, "benchmark", OWN_FILES, OWN_FOLDERS)
    if not resumed:  # recorded once its datasets can run it: a refused setting is not kept
        check_same_experiment(config, root, resume, EXPERIMENT_FILE, RUN_ONLY, "benchmark")
    for entry in bench.datasets:  # a dataset made again at its URI would mix old and new trials
        runs = Folder(f"{root.uri.rstrip('/')}/runs/{entry.name}")
        check_same_data(dataset_config(config, entry.name), runs, resume)
    expected = len(bench.datasets) * len(bench.methods) * len(bench.seeds)
    progress = [Progress(expected)] if config.runtime.progress else []
    with ray_session(config.distributed):
        import ray

        resources, fits = trial_resources(config, ray.cluster_resources())
        if "GPU" in resources:
            require_gpus(resources["GPU"], f"each benchmark trial (runtime.device={config.runtime.device})",
                         "benchmark.gpus_per_trial")
        concurrent = bench.max_concurrent_trials or fits
        if config.runtime.progress:
            origin = ("benchmark.max_concurrent_trials" if bench.max_concurrent_trials
                      else "as many as the cluster's resources hold now")
            print(f"benchmark: {expected} trials, up to {concurrent} at once ({origin})", file=sys.stderr,
                  flush=True)
        trainable = tune.with_resources(
            tune.with_parameters(benchmark_trial, base=config.to_dict(), root=root.uri.rstrip("/")),
            resources)
        path = f"{root.base.rstrip('/')}/tune"
        if resume and tune.Tuner.can_restore(path, storage_filesystem=root.fs):
            tuner = tune.Tuner.restore(path, trainable=trainable, storage_filesystem=root.fs,
                                       resume_errored=True)
        else:
            space = {"dataset": tune.grid_search([d.name for d in bench.datasets]),
                     "method": tune.grid_search(list(bench.methods)),
                     "seed": tune.grid_search(list(bench.seeds))}
            tuner = tune.Tuner(trainable, param_space=space,
                               tune_config=tune.TuneConfig(max_concurrent_trials=concurrent),
                               # a trial's method runs in its process, without checkpoints: a
                               # failed one is run again by the next benchmark command
                               run_config=tune_run_config(root, callbacks=progress))
        grid = tuner.fit()
    results = [json.loads(r.metrics[RESULT_KEY]) for r in grid if r.metrics and RESULT_KEY in r.metrics]
    failed = sorted(({"dataset": r.config["dataset"], "method": r.config["method"], "seed": r.config["seed"],
                      "error": error_summary(r.error)} for r in grid if r.error is not None),
                    key=lambda f: (f["dataset"], f["method"], f["seed"]))
    if len(results) + len(failed) < expected:
        raise BenchmarkInterrupted(f"{len(results)} of {expected} trials finished; run the same command "
                                   "again to resume")
    if not results:
        raise ValueError(f"every benchmark trial failed; first: {failed[0]['method']} on "
                           f"{failed[0]['dataset']}, seed {failed[0]['seed']}: {failed[0]['error']}")
    results.sort(key=lambda r: (r["dataset"], r["method"], r["seed"]))
    paths = _write_outputs(results, failed, root)
    paths["tensorboard --logdir"] = root.display("tune")
    for r in results:
        if r["method"] == "spdnetnas":
            paths[f"genotype/{r['dataset']}/seed{r['seed']}"] = root.display(
                f"runs/{r['dataset']}/spdnetnas/seed{r['seed']}/search/genotype.json")
    return BenchmarkOutcome(results, paths, failed)
