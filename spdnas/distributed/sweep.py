"""Ray Tune + Optuna sweeps: every trial is a Ray Train run (search and/or retraining).

Optuna's TPE proposes configurations of the knobs in ``sweep.space``; ``tune.search.Repeater``
runs each with ``sweep.seeds`` seeds and hands TPE their mean. Trials report through Tune's
``TuneReportCallback``, so the retraining's per-epoch validation metrics drive Optuna and the
optional ASHA scheduler, and Tune writes TensorBoard logs for every trial. The sweep lives in
``<output_dir>/<name>/sweep`` (local or S3); running it again restores it (finished trials and
the searcher's state are kept) and finishes what is left.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from typing import Any

from ray import tune
from ray.tune.search import Repeater
from ray.tune.search.optuna import OptunaSearch

from spdnas.config import (
    ExperimentConfig,
    _merge,
    _set_dotted,
    check_new_seeds,
    check_sweep_space_ends,
    config_from_dict,
)
from spdnas.data.storage import Folder
from spdnas.engine.loops import DivergedError
from spdnas.engine.splits import require_full_batches, stored_splits
from spdnas.engine.state import layout_change
from spdnas.pipeline import (
    EXPERIMENT_FILES,
    check_no_other_experiment,
    check_same_data,
    check_same_experiment,
    delete_earlier,
    ensure_dataset,
    resolve_genotype,
    run_folder,
    with_absolute_paths,
)
from spdnas.report.trials import by_configuration, config_key
from spdnas.search.genotype import Genotype

TRIAL_INDEX = "__trial_index__"
EXPERIMENT_FILE = EXPERIMENT_FILES["sweep"]
OWN_FOLDERS = ("tune", "sweep")
# settings that may change between a sweep and its resumption: they change no result. Not
# sweep.max_concurrent_trials: Tuner.restore keeps the concurrency the sweep started with, and
# the CPU shares of a changed value would fit the trials that Tune does not run side by side.
RUN_ONLY = ("runtime.progress", "runtime.threads", "runtime.torch_threads", "runtime.checkpoint_every",
            "distributed", "benchmark", "baselines",
            "data.builder", "data.builder_params")  # the data's contents are compared (check_same_data)
TRIAL_CPU = 0.01
FINISHED = "TERMINATED"
STOPPED = "STOPPED"
DIVERGED = "DIVERGED"
DIVERGED_KEY = "diverged"  # the trial's last report: the DivergedError's message


class SweepInterrupted(RuntimeError):
    """The sweep was stopped (e.g. Ctrl-C) before all its trials finished; it can be resumed."""


@dataclass
class SweepOutcome:
    """Every trial, the per-configuration summary and where they were written."""

    trials: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    paths: dict[str, str]


def search_space(space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Tune distributions for ``sweep.space`` (keys are dotted config paths)."""
    out = {}
    for key, spec in space.items():
        kind = spec["type"]
        if kind == "loguniform":
            out[key] = tune.loguniform(spec["low"], spec["high"])
        elif kind == "uniform":
            out[key] = tune.uniform(spec["low"], spec["high"])
        elif kind == "int":
            out[key] = tune.randint(int(spec["low"]), int(spec["high"]) + 1)
        else:
            out[key] = tune.choice(list(spec["values"]))
    return out


def trial_config(params: dict[str, Any],
                 base_tree: dict[str, Any]) -> tuple[ExperimentConfig, dict[str, Any], int]:
    """The experiment a trial runs: the base config with the sampled values and its seed."""
    base = config_from_dict(base_tree)
    sampled, seed = trial_draw(params, base.runtime.seed)
    tree: dict[str, Any] = {}
    for key, value in sampled.items():
        _set_dotted(tree, key, value.item() if hasattr(value, "item") else value)
    tree = _merge(tree, {"runtime": {"seed": seed, "progress": False}})
    return config_from_dict(_merge(base.to_dict(), tree)), sampled, seed


def trial_draw(params: dict[str, Any], base_seed: int) -> tuple[dict[str, Any], int]:
    """A trial's sampled values and its seed (``base_seed`` plus its repeat index), unchecked:
    a trial whose draw no run can use is recorded as failed, not refused again when recorded."""
    return {k: v for k, v in params.items() if k != TRIAL_INDEX}, base_seed + int(params.get(TRIAL_INDEX, 0))


def fixed_genotype(config: ExperimentConfig) -> dict[str, Any] | None:
    """The genotype every trial retrains where the sweep does not search (None where it does),
    read once by the driver: a relative ``sweep.genotype`` file names the command's working
    folder, not the trial's own folder that Tune runs it in, and a bad one fails before any
    trial starts. The path stays as written in the recorded experiment."""
    return None if config.sweep.search else resolve_genotype(config.sweep.genotype).to_dict()


def sweep_trial(params: dict[str, Any], base: dict[str, Any], trials_folder: str,
                genotype: dict[str, Any] | None) -> None:
    """One trial: a Ray Train search (or the sweep's :func:`fixed_genotype`), then a Ray Train
    retraining reported to Tune."""
    from ray.tune.integration.ray_train import TuneReportCallback

    from spdnas.distributed.runner import run_retrain, run_search

    config, _, _ = trial_config(params, base)
    context = tune.get_context()
    tree = config.to_dict()
    tree["runtime"]["output_dir"] = trials_folder
    tree["name"] = context.get_trial_id()
    config = config_from_dict(tree)
    try:
        found = run_search(config).genotype if genotype is None else Genotype.from_dict(genotype)
        run_retrain(config, found, callbacks=[TuneReportCallback()])
    except DivergedError as exc:
        # a result, not a failure: the trial ends, Optuna learns its configuration is the worst,
        # and a resumed sweep does not run it again (it would diverge again)
        tune.report({config.sweep.metric: -math.inf if config.sweep.mode == "max" else math.inf,
                     DIVERGED_KEY: str(exc)})


def _summarise(trials: list[dict[str, Any]], mode: str) -> list[dict[str, Any]]:
    """Configurations by mean ± std of the metric over their finished seeds, best first.

    Only ``TERMINATED`` trials with a finite metric count: an errored trial may have reported the
    metric of an unfinished retraining, and a NaN loss has no place in a mean or an order. A
    configuration that TPE proposed again repeats its seeds: each seed counts once (the same
    run twice would shrink the std). Each row's ``excluded`` says how many of the
    configuration's trials were left out for these reasons; a configuration without a counted
    trial has no row.
    """
    left_out: dict[str, int] = {}
    counted = []
    for t in trials:
        if t.get("status") == FINISHED and t["metric"] is not None and math.isfinite(t["metric"]):
            counted.append(t)
        else:
            left_out[config_key(t)] = left_out.get(config_key(t), 0) + 1
    groups, repeats = by_configuration(counted)
    excluded = {key: left_out.get(key, 0) + repeats.get(key, 0) for key in {*left_out, *repeats}}
    rows = []
    for key, members in groups.items():
        values = [m["metric"] for m in members]
        tests = [m["test_accuracy"] for m in members if m.get("test_accuracy") is not None]
        rows.append({"config": json.loads(key), "seeds": sorted(m["seed"] for m in members),
                     "metric_mean": statistics.fmean(values),
                     "metric_std": statistics.stdev(values) if len(values) > 1 else None,
                     "test_accuracy_mean": statistics.fmean(tests) if tests else None,
                     "excluded": excluded.get(key, 0)})
    return sorted(rows, key=lambda r: r["metric_mean"], reverse=(mode == "max"))


def trial_record(result: Any, config: ExperimentConfig) -> dict[str, Any]:
    """The line of ``trials.jsonl`` for one Tune trial.

    Parameters
    ----------
    result : ray.tune.Result
        The trial's outcome (``config``, last ``metrics``, ``path``, ``error``).
    config : ExperimentConfig
        The sweep's experiment.

    Returns
    -------
    dict
        ``trial_id``, sampled ``config``, ``seed``, ``metric`` (the last reported
        ``sweep.metric``), ``test_accuracy``, the sweep's ``mode`` (so that readers of the file
        know which end of the metric is best) and ``status``: ``TERMINATED`` (the retraining
        finished and reported its test metrics), ``STOPPED`` (stopped early, e.g. by ASHA, which
        Tune also reports as terminated), ``DIVERGED`` (its search or retraining diverged: Tune
        and Optuna saw the worst value, ``metric`` is None and ``error`` says where) or ``ERROR``
        (then ``error`` holds the last line of its message).
    """
    sampled, seed = trial_draw(result.config or {}, config.runtime.seed)
    metrics = result.metrics or {}
    record = {"trial_id": metrics.get("trial_id", result.path.rsplit("/", 1)[-1]), "config": sampled,
              "seed": seed, "metric": metrics.get(config.sweep.metric),
              "test_accuracy": metrics.get("test_accuracy"), "mode": config.sweep.mode,
              "status": "ERROR" if result.error else FINISHED if "test_accuracy" in metrics else STOPPED}
    if result.error:
        record["error"] = error_summary(result.error)
    elif DIVERGED_KEY in metrics:
        record.update(status=DIVERGED, metric=None, error=metrics[DIVERGED_KEY])
    return record


def tune_run_config(storage: Folder, max_failures: int = 0,
                    callbacks: list[tune.Callback] | None = None) -> tune.RunConfig:
    """Where a sweep or benchmark keeps its Tune state (``<storage>/tune``), and how often Tune
    runs a failed trial again (``max_failures``)."""
    return tune.RunConfig(name="tune", storage_path=storage.base.rstrip("/"), storage_filesystem=storage.fs,
                          verbose=0, callbacks=callbacks,
                          failure_config=tune.FailureConfig(max_failures=max_failures))


def error_summary(error: BaseException) -> str:
    """The last non-empty line of an error's text (Ray wraps a trial's error in its traceback)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


class _RetrainingASHA(tune.schedulers.ASHAScheduler):
    """ASHA that never stops a trial at its last epoch: that report is the retraining's final
    one, and a stop there ended the trial before it wrote ``model.pt``, ``result.json`` and its
    metrics. (Ray's ``stop_last_trials=False`` is not enough: when ``max_t`` is a rung, e.g. 20
    epochs with a grace period of 5, ASHA still stops the trials below that rung's cutoff.)"""

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)  # records the rung value
        if result.get(self._time_attr, 0) >= self._max_t:
            return tune.schedulers.TrialScheduler.CONTINUE
        return action


def asha_scheduler(config: ExperimentConfig) -> tune.schedulers.ASHAScheduler:
    """ASHA on the retraining's epochs: rungs from ``sweep.grace_period`` up to ``train.epochs``
    (Ray's default ``max_t`` of 100 would stop every longer retraining at 100). It counts the
    reported ``epoch``, not Tune's count of reports: a retraining resumed after a lost worker
    reports the epochs since its last checkpoint again. A trial that reaches its last epoch
    finishes (:class:`_RetrainingASHA`)."""
    return _RetrainingASHA(time_attr="epoch", max_t=config.train.epochs,
                           grace_period=config.sweep.grace_period, stop_last_trials=False)


def _share_cpus(config: ExperimentConfig) -> ExperimentConfig:
    """Unless set, give each trial's workers an equal share of the cluster's CPUs, so that
    ``max_concurrent_trials`` trials fit side by side (otherwise they wait on each other).

    Not with GPU workers: they ask for one CPU each beside their GPU, as in any Ray run. A share
    of the CPUs present now (on an autoscaling cluster, the head's) could exceed what a GPU node
    holds, so that the autoscaler would start larger nodes, or none would fit.
    """
    import ray

    from spdnas.distributed.runner import fitting_share, live_node_cpus

    dist = config.distributed
    if dist.cpus_per_worker > 0 or dist.use_gpu:
        return config
    concurrent = config.sweep.max_concurrent_trials
    free = ray.cluster_resources().get("CPU", 1.0) - TRIAL_CPU * concurrent
    workers = concurrent * dist.num_workers
    nodes = [cpus - TRIAL_CPU * concurrent for cpus in live_node_cpus()]  # the trials may sit anywhere
    share = max(fitting_share(nodes, workers, free / workers), 0.1)  # all workers, each on one node
    tree = config.to_dict()
    tree["distributed"]["cpus_per_worker"] = round(share - 0.005, 2)
    return config_from_dict(tree)


def _on_ray(tree: dict[str, Any]) -> dict[str, Any]:
    """A configuration as its sweep trials run it: on Ray, whatever ``distributed.backend`` says."""
    return {**tree, "distributed": {**(tree.get("distributed") or {}), "backend": "ray"}}


def _same_layout(recorded: dict[str, Any], new: dict[str, Any]) -> str | None:
    """A change of the workers' layout that changes the numbers (``distributed`` may otherwise
    change: resources, concurrency, workers that compute what one does): finished and new trials
    would be ranked together, and interrupted trials' checkpoints refused."""
    return layout_change(_on_ray(recorded), _on_ray(new))


def _largest_draw(config: ExperimentConfig, key: str, configured: int) -> int:
    """The largest value ``sweep.space`` draws for the integer setting ``key`` (its ``int``
    range's high end or its largest choice), else its ``configured`` value."""
    spec = config.sweep.space.get(key)
    if spec is None:
        return configured
    return int(spec["high"]) if spec["type"] == "int" else max(spec["values"])


def require_batches(config: ExperimentConfig) -> None:
    """Refuse, from the dataset's split counts, a sweep whose trials would find a split empty or
    no full batch in an epoch: with the batch size of the config, or the largest ``sweep.space``
    draws for it. Checked before any trial: each trial found it only after starting its workers.
    Search halves drawn by group are checked as each seed draws them, unless ``sweep.space``
    varies how they are drawn (then the per-class sizes of the base settings are checked).

    Raises
    ------
    ValueError
        Naming the batch size setting and where its value comes from.
    """
    # halves drawn by group are checked as the trials draw them, unless the sweep varies the draw
    varied = {"data.search_split", "data.split_seed", "data.search_val_fraction"} & set(config.sweep.space)
    seeds = [config.data.search_split_seed(config.runtime.seed + i) for i in range(config.sweep.seeds)]
    manifest, halves = stored_splits(config.data, None if varied else seeds)
    # more workers: more rounding room in their shards
    workers = _largest_draw(config, "distributed.num_workers", config.distributed.num_workers)
    shard_workers = workers if config.distributed.data == "shard" else 0
    for budget in ("search", "train") if config.sweep.search else ("train",):
        key = f"{budget}.batch_size"
        size = _largest_draw(config, key, getattr(config, budget).batch_size)
        try:
            require_full_batches(manifest["counts"], config.data.search_val_fraction, halves=halves,
                                 shard_workers=shard_workers, **{f"{budget}_batch_size": size})
        except ValueError as exc:
            drawn = " (the largest sweep.space draws)" if key in config.sweep.space else ""
            raise ValueError(f"sweep: {key}={size}{drawn}: {exc}") from None


def run_sweep(config: ExperimentConfig, resume: bool = True) -> SweepOutcome:
    """Run (or resume) the sweep of ``config.sweep``; writes ``trials.jsonl`` (one line per trial,
    with the sweep's ``mode``) and ``summary.json`` (see :func:`_summarise`)."""
    from spdnas.distributed.runner import (
        cpus_per_worker,
        ray_session,
        require_cpus,
        require_gpus,
        require_placement,
    )

    config = with_absolute_paths(config)
    sweep = config.sweep
    if not sweep.space:
        raise ValueError("sweep.space is empty: nothing to sweep")
    check_new_seeds(config, sweep_repeats=True)
    check_sweep_space_ends(config)
    folder = Folder(run_folder(config, "sweep"))
    storage = Folder(run_folder(config, ""))
    check_no_other_experiment(storage, "sweep")
    resumed = resume and storage.exists(EXPERIMENT_FILE)
    if resumed:  # a recorded sweep of other settings: refused before the dataset is made
        check_same_experiment(config, storage, resume, EXPERIMENT_FILE, RUN_ONLY, "sweep", _same_layout)
    ensure_dataset(config.data, progress=config.runtime.progress)
    require_batches(config)
    if not resume:  # old trials would stay beside new ones, in TensorBoard and sweep/trials
        delete_earlier(storage, "sweep", (EXPERIMENT_FILE,), OWN_FOLDERS)
    if not resumed:  # recorded once its dataset exists: settings that failed to make it are not kept
        check_same_experiment(config, storage, resume, EXPERIMENT_FILE, RUN_ONLY, "sweep", _same_layout)
    check_same_data(config, folder, resume)  # a dataset made again at data.uri: no mixed trials
    genotype = fixed_genotype(config)
    trials_folder = run_folder(config, "sweep/trials")
    with ray_session(config.distributed):
        if config.distributed.use_gpu:
            require_gpus(config.distributed.num_workers, "each sweep trial (distributed.use_gpu=true, one "
                         "GPU per worker)", "distributed.num_workers")
        shared = _share_cpus(config)
        dist, cpus = shared.distributed, cpus_per_worker(shared.distributed)
        require_cpus(dist.num_workers * cpus + TRIAL_CPU,
                     f"each sweep trial ({dist.num_workers} worker(s) of {cpus:g} CPU(s), and {TRIAL_CPU:g} "
                     "for the trial)", "distributed.num_workers, distributed.cpus_per_worker")
        # here, where it is known whether this Ray is the embedded one (inside a trial it is not)
        require_placement(dist.placement_strategy, dist.num_workers,
                          {"CPU": cpus, "GPU": float(dist.use_gpu)})
        base = shared.to_dict()
        # A trial only drives Ray Train runs, whose workers hold the CPUs: it needs a sliver.
        trainable = tune.with_resources(
            tune.with_parameters(sweep_trial, base=base, trials_folder=trials_folder, genotype=genotype),
            {"CPU": TRIAL_CPU})
        path = f"{storage.base.rstrip('/')}/tune"
        if resume and tune.Tuner.can_restore(path, storage_filesystem=storage.fs):
            tuner = tune.Tuner.restore(path, trainable=trainable, storage_filesystem=storage.fs,
                                       resume_errored=True)
        else:
            searcher = OptunaSearch(metric=sweep.metric, mode=sweep.mode, seed=config.runtime.seed)
            scheduler = asha_scheduler(config) if sweep.scheduler == "asha" else None
            tuner = tune.Tuner(
                trainable,
                param_space=search_space(sweep.space),
                tune_config=tune.TuneConfig(
                    metric=sweep.metric, mode=sweep.mode, scheduler=scheduler,
                    search_alg=Repeater(searcher, repeat=sweep.seeds, set_index=True),
                    num_samples=sweep.num_samples * sweep.seeds,
                    max_concurrent_trials=sweep.max_concurrent_trials),
                # a trial run again resumes its Ray Train runs from their checkpoints
                run_config=tune_run_config(storage, config.distributed.trial_max_failures))
        grid = tuner.fit()
    expected = sweep.num_samples * sweep.seeds
    if grid.num_terminated + grid.num_errors < expected:
        raise SweepInterrupted(f"the sweep stopped with {grid.num_terminated} of {expected} trials finished; "
                               "run the same command again to resume it")
    trials = [trial_record(result, config) for result in grid]
    folder.write_bytes("trials.jsonl", "".join(json.dumps(t) + "\n" for t in trials).encode())
    summary = _summarise(trials, sweep.mode)
    folder.write_bytes("summary.json", (json.dumps(summary, indent=2) + "\n").encode())
    return SweepOutcome(trials, summary, {"trials": folder.display("trials.jsonl"),
                                          "summary": folder.display("summary.json"),
                                          "tensorboard": run_folder(config, "tune")})
