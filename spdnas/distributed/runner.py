"""Driver side: build a ``TorchTrainer`` for a search or a retraining, run it, publish results.

Checkpoints go to ``RunConfig(storage_path=<output_dir>/<name>, name=<step>)``, a local folder or
S3 (through the same pyarrow filesystem as the data, endpoint from the environment). Running
the same experiment again resumes it from its latest checkpoint; ``resume=False`` deletes an
existing run's checkpoints and outputs first and starts over.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray
import ray.train
from ray.train.torch import TorchConfig, TorchTrainer

from spdnas.config import DistributedConfig, ExperimentConfig
from spdnas.data import DatasetMeta
from spdnas.data.cli import show_traceback, user_errors
from spdnas.data.parquet import validate_dataset
from spdnas.data.schema import SPLITS
from spdnas.data.storage import Folder
from spdnas.data.streaming import ray_dataset
from spdnas.distributed.worker import (
    FAULT_ENV,
    FAULT_MARKER_ENV,
    configure_ray_data,
    recorded_worker_error,
    retrain_worker,
    search_worker,
    worker_errors,
)
from spdnas.engine.runtime import available_cpus
from spdnas.engine.splits import require_full_batches, stored_splits
from spdnas.engine.state import (
    CHECKPOINT_FILE,
    LOCAL_CHECKPOINT_DIR,
    load_checkpoint,
    newest_ray_checkpoint,
)
from spdnas.pipeline import (
    Outcome,
    check_same_data,
    ensure_dataset,
    positive_definite_rtol,
    retrain_result,
    run_folder,
)
from spdnas.report.outputs import (
    LIVE_METRICS,
    model_payload,
    print_epoch,
    publish,
    write_retrain_outputs,
    write_search_outputs,
)
from spdnas.search.genotype import Genotype

_embedded_ray = False  # whether ray_session started the Ray in use (on this machine, for this run)


@contextmanager
def ray_session(dist: DistributedConfig) -> Iterator[None]:
    """Use the Ray already connected, or the one at ``address``/``RAY_ADDRESS``, or start a
    private local one (this machine's CPUs, no dashboard unless asked) and stop it afterwards."""
    global _embedded_ray
    if ray.is_initialized():
        yield
        return
    address = dist.address or os.environ.get("RAY_ADDRESS")
    if address:
        require_reachable_ray(address)
        ray.init(address=address, logging_level=logging.WARNING)
    else:  # workers' logs stay in Ray's session folder; progress comes from the live metrics
        # address="local": a new Ray, even where an earlier `ray start` left its address behind
        ray.init(address="local", num_cpus=available_cpus(), include_dashboard=dist.dashboard,
                 logging_level=logging.WARNING, log_to_driver=dist.dashboard)
    _embedded_ray = not address
    try:
        yield
    finally:
        _embedded_ray = False
        ray.shutdown()


RAY_CONNECT_SECONDS = 5.0


def require_reachable_ray(address: str) -> None:
    """Refuse a Ray address (``host:port`` of a cluster's head, or ``ray://host:port``) where
    nothing answers within :data:`RAY_CONNECT_SECONDS`: Ray itself retries for minutes, printing
    only its own warnings. ``auto`` (a Ray started on this machine) and other schemes (an
    ``http://`` address of job submission, which Ray refuses with advice) are left to Ray.

    Raises
    ------
    ConnectionError
        Naming the address and where it came from.
    """
    import socket

    if address == "auto" or ("://" in address and not address.startswith("ray://")):
        return  # Ray's own message explains an http:// (job submission) address
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=RAY_CONNECT_SECONDS).close()
    except OSError as exc:
        raise ConnectionError(f"cannot reach the Ray cluster at {address} (distributed.address or "
                              f"RAY_ADDRESS): {exc.strerror or exc}; is its head running, and is the address "
                              "(or the port-forward to it) right?") from None


def require_gpus(needed: float, what: str, fewer: str) -> None:
    """Check that the Ray in use has ``needed`` GPUs for ``what``: the embedded Ray (no cluster)
    cannot get more, so that is an error (the work would wait for ever); a cluster's autoscaler
    may add GPU nodes, so there it is a warning that the work waits for them. ``fewer`` names the
    setting that asks for fewer GPUs, for the message."""
    _require("GPU", needed, what, fewer, "run on runtime.device=cpu, or on a Ray cluster with GPUs",
             "On a cluster without any, stop it and use runtime.device=cpu")


def require_cpus(needed: float, what: str, fewer: str) -> None:
    """As :func:`require_gpus`, for CPUs: ``num_workers`` workers of 1 CPU each on a 2-CPU
    machine would wait for ever for the CPUs of the third and fourth."""
    _require("CPU", needed, what, fewer, "run on a Ray cluster with more",
             "On a cluster that cannot grow, stop it and ask for fewer")


def _require(resource: str, needed: float, what: str, fewer: str, elsewhere: str, stuck: str) -> None:
    have = ray.cluster_resources().get(resource, 0.0)
    if needed <= have:
        return
    if _embedded_ray:
        way = f"ask for fewer ({fewer}) or " if have > 0 else ""
        raise ValueError(f"{what} needs {needed:g} {resource}(s), and this machine's Ray has {have:g}: {way}"
                         f"{elsewhere} (distributed.address or RAY_ADDRESS)")
    print(f"warning: {what} needs {needed:g} {resource}(s), and the Ray cluster has {have:g} now; it waits "
          f"until {resource} nodes join (an autoscaler adding them). {stuck}", file=sys.stderr, flush=True)


def require_placement(strategy: str, workers: int, per_worker: dict[str, float]) -> None:
    """Check that a strict placement can be met: ``STRICT_PACK`` needs one node holding every
    worker's ``per_worker`` resources, ``STRICT_SPREAD`` one node per worker. The embedded Ray
    (one node) that cannot meet it is an error; a cluster that cannot meet it now gets a warning
    (an autoscaler may add such nodes; a fixed cluster waits for ever)."""
    nodes = live_node_resources()
    if strategy == "STRICT_PACK":
        fits = any(all(res.get(k, 0.0) >= workers * v for k, v in per_worker.items() if v) for res in nodes)
        need = ", ".join(f"{workers * v:g} {k}" for k, v in per_worker.items() if v)
        problem = f"STRICT_PACK needs one node with {need} for the {workers} workers, and no node has them"
    elif strategy == "STRICT_SPREAD":
        fitting = sum(all(res.get(k, 0.0) >= v for k, v in per_worker.items() if v) for res in nodes)
        fits = fitting >= workers
        problem = f"STRICT_SPREAD needs {workers} nodes, one per worker, and {fitting} can hold one"
    else:
        return
    if fits:
        return
    if _embedded_ray:
        raise ValueError(f"distributed.placement_strategy={problem} on this machine's Ray: use PACK, or "
                         "a Ray cluster (distributed.address or RAY_ADDRESS)")
    print(f"warning: distributed.placement_strategy={problem} now; the run waits until such nodes join "
          "(an autoscaler adding them)", file=sys.stderr, flush=True)


def live_node_resources() -> list[dict[str, float]]:
    """The resources (``{"CPU": 8.0, "GPU": 1.0, ...}``) of each live node of the Ray."""
    return [node["Resources"] for node in ray.nodes() if node.get("Alive")]


def live_node_cpus() -> list[float]:
    """CPUs of each live node of the Ray."""
    return [resources.get("CPU", 0.0) for resources in live_node_resources()]


def fitting_share(node_cpus: list[float], workers: int, upper: float) -> float:
    """The largest CPU count per worker, at most ``upper``, at which ``workers`` workers fit on
    these nodes together, each on one node (0 where none does).

    The number that fit, ``Σ floor(cpus_i / share)``, only changes at ``share = cpus_i / k``:
    those (and ``upper``) are the candidates.
    """
    node_cpus = [cpus for cpus in node_cpus if cpus > 0]  # e.g. a head started with num-cpus=0
    candidates = {upper, *(cpus / k for cpus in node_cpus for k in range(1, workers + 1))}
    for share in sorted((c for c in candidates if 0 < c <= upper), reverse=True):
        if sum(math.floor(cpus / share + 1e-9) for cpus in node_cpus) >= workers:
            return share
    return 0.0


def cpus_per_worker(dist: DistributedConfig) -> float:
    """CPUs each Ray Train worker asks for: ``distributed.cpus_per_worker`` where set, else an
    equal share of the Ray's CPUs at which all the workers fit on its nodes (a share of a
    cluster's total could fit no node, and the run waited for ever) — on one node with
    ``placement_strategy: STRICT_PACK`` — at least 1; or 1 beside a GPU."""
    if dist.cpus_per_worker > 0:
        return dist.cpus_per_worker
    if dist.use_gpu:
        return 1.0
    nodes = live_node_cpus()
    if dist.placement_strategy == "STRICT_PACK":
        return max(1.0, math.floor(max(nodes, default=1.0) / dist.num_workers))
    share = ray.cluster_resources().get("CPU", 1.0) / dist.num_workers
    return max(1.0, math.floor(fitting_share(nodes, dist.num_workers, share)))


def _trainer(worker, config: ExperimentConfig, step: str, extra: dict[str, Any], resume: bool,
             callbacks: list | None = None):
    dist = config.distributed
    if config.runtime.device.startswith("cuda") and not dist.use_gpu:
        raise ValueError(f"runtime.device={config.runtime.device} on Ray: set distributed.use_gpu=true "
                         "(Ray then gives each worker its own GPU; without it the workers hold none)")
    if dist.use_gpu:
        require_gpus(dist.num_workers, f"the {step} (distributed.use_gpu=true, one GPU per worker)",
                     "distributed.num_workers")
    cpus = cpus_per_worker(dist)
    require_cpus(cpus * dist.num_workers, f"the {step} ({dist.num_workers} worker(s) of {cpus:g} CPU(s))",
                 "distributed.num_workers, distributed.cpus_per_worker")
    require_placement(dist.placement_strategy, dist.num_workers, {"CPU": cpus, "GPU": float(dist.use_gpu)})
    folder = Folder(run_folder(config, step))
    manifest, halves = stored_splits(
        config.data, [config.data.search_split_seed(config.runtime.seed)] if step == "search" else None)
    meta = manifest["meta"]
    batch = {"search_batch_size": config.search.batch_size} if step == "search" else \
        {"train_batch_size": config.train.batch_size}
    require_full_batches(manifest["counts"], config.data.search_val_fraction, **batch,
                         shard_workers=dist.num_workers if dist.data == "shard" else 0, halves=halves)
    configure_ray_data()
    # every row check, once, before any worker starts
    validate_dataset(config.data.uri, pd_rtol=positive_definite_rtol(config))
    if not resume and folder.list_names():
        print(f"starting over: deleting the earlier run in {folder.uri}", file=sys.stderr, flush=True)
        folder.clear()
    data_sha256 = check_same_data(config, folder, resume)
    handover = _local_backend_state(folder) if resume else {}
    # Read into the object store before the workers take every CPU (reads need CPUs of their own).
    if dist.data == "replicate":  # every worker gets all rows
        datasets = {"data": ray_dataset(config.data.uri).materialize()}
    else:  # every worker gets its own part of each split
        datasets = {split: ray_dataset(config.data.uri, split).materialize() for split in SPLITS}
    env = {k: os.environ[k] for k in (FAULT_ENV, FAULT_MARKER_ENV) if k in os.environ}
    experiment_folder = Folder(run_folder(config, ""))
    trainer = TorchTrainer(
        worker,
        train_loop_config={"experiment": config.to_dict(), "meta": meta, "cpus_per_worker": cpus,
                           "run_uri": folder.uri, **handover, **extra},
        torch_config=TorchConfig(backend="nccl" if dist.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=dist.num_workers, use_gpu=dist.use_gpu,
                                               resources_per_worker={"CPU": cpus},
                                               placement_strategy=dist.placement_strategy),
        run_config=ray.train.RunConfig(
            name=step, storage_path=experiment_folder.base.rstrip("/"),
            storage_filesystem=experiment_folder.fs,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=dist.keep_checkpoints),
            failure_config=ray.train.FailureConfig(max_failures=dist.max_failures),
            logging_config=ray.train.LoggingConfig(log_level="ERROR"),
            callbacks=callbacks,
            worker_runtime_env={"env_vars": env} if env else None),
        datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=list(datasets) if dist.data == "shard" else []),
    )
    return trainer, folder, DatasetMeta.from_dict(meta), data_sha256


def _local_backend_state(folder: Folder) -> dict[str, Any]:
    """``{"handover_state": ObjectRef}``: the newest readable checkpoint of this run in its local
    folder (its bytes in Ray's object store, so that workers on other nodes can read it), which the
    workers take where it is further along than the checkpoint Ray hands them: the local
    backend's (a run continued on the local backend, now resumed on Ray), or a Ray backend's
    ``epoch_NNNN`` written before an interrupted driver had Ray register it (Ray would hand over
    the one before, and the epoch would be run again)."""
    newest = newest_checkpoint_file(Path(folder.base)) if folder.is_local else None
    return {} if newest is None else {"handover_state": ray.put(newest.read_bytes())}


def newest_checkpoint_file(run_folder: Path) -> Path | None:
    """The furthest-along readable checkpoint file of a local run folder: the local backend's
    (a damaged one is skipped with a warning: Ray's own checkpoints still hold the run) or the
    Ray backend's newest readable ``epoch_NNNN``; None if there is none."""
    found: list[tuple[int, Path]] = []
    local = run_folder / LOCAL_CHECKPOINT_DIR
    if (local / CHECKPOINT_FILE).exists():
        try:
            found.append((int(load_checkpoint(local)["epoch"]), local / CHECKPOINT_FILE))
        except ValueError:
            print(f"warning: {local / CHECKPOINT_FILE} (the local backend's checkpoint) cannot be read; the "
                  "run continues from the Ray backend's checkpoints, if any", file=sys.stderr, flush=True)
    ray_checkpoint = newest_ray_checkpoint(run_folder)
    if ray_checkpoint is not None:
        state, path = ray_checkpoint
        found.append((int(state["epoch"]), path))
    return max(found, key=lambda item: item[0])[1] if found else None


def _live_records(folder: Folder) -> list[str]:
    """The lines of the run's live metrics file, one JSON record per finished epoch."""
    return folder.read_bytes(LIVE_METRICS).decode().splitlines() if folder.exists(LIVE_METRICS) else []


def fit_with_progress(trainer, folder: Folder, step: str, total: int, enabled: bool, poll: float = 2.0):
    """``trainer.fit()``, printing each epoch's metrics from the run's live metrics file.

    Records already in the file when the fit starts (a resumed run's earlier epochs), or seen
    before (a retry restores the history from a checkpoint), are not printed again; an epoch
    run again after a failure is, as its record differs.

    A worker's final error (:func:`spdnas.distributed.worker.ends_on_value_errors`) is raised
    here, whether or not Ray restarted the worker group after it.
    """
    done: dict[str, Any] = {}
    worker_errors(folder.uri).clear()  # those of an earlier run, since fixed

    def fit() -> None:
        try:
            done["result"] = trainer.fit()
        except BaseException as exc:  # handed to the calling thread below
            done["error"] = exc

    warned: list[OSError] = []

    def records() -> list[str]:
        """The live records; none while the storage cannot be read (the run goes on: Ray retries
        the workers' own writes), with one warning."""
        try:
            return _live_records(folder)
        except OSError as exc:
            if not warned:
                print(f"warning: cannot read the run's progress ({exc}); the run goes on", file=sys.stderr,
                      flush=True)
            warned.append(exc)
            return []

    shown = set(records()) if enabled else set()
    thread = threading.Thread(target=fit, daemon=True)
    thread.start()
    while True:
        finished = not thread.is_alive()
        if enabled:
            for line in records():
                if line not in shown:
                    print_epoch(step, json.loads(line), total)
                    shown.add(line)
        if finished:
            break
        thread.join(poll)
    try:
        recorded = recorded_worker_error(folder.uri)
    except OSError as exc:  # storage unreachable now: Ray's own error, or the final state, says more
        print(f"warning: could not read the workers' recorded errors: {exc}", file=sys.stderr, flush=True)
        recorded = None
    if recorded is not None:
        raise recorded from done.get("error")
    if "error" in done:
        raise _worker_error(done["error"])
    return done["result"]


def _worker_error(error: BaseException) -> BaseException:
    """The workers' own exception where every failed worker raised one a user can fix (bad data or
    values, a diverged run: one line on the command line), else (and with ``SPDNAS_DEBUG`` set)
    Ray's ``WorkerGroupError`` with the workers' tracebacks."""
    failures = getattr(error, "worker_failures", None)
    if failures and not show_traceback() and all(isinstance(f, user_errors()) for f in failures.values()):
        return failures[min(failures)]
    return error


def _final_state(result, epochs: int) -> dict[str, Any]:
    """The state of the run's last checkpoint, which must have done all ``epochs`` (workers that
    found a final error recorded return at once, so a fit can succeed on an unfinished run)."""
    if result.checkpoint is None:
        raise RuntimeError(f"the run left no checkpoint (error: {result.error})")
    with result.checkpoint.as_directory() as directory:
        state = load_checkpoint(directory)
    if state["epoch"] < epochs:
        raise RuntimeError(f"the run stopped after epoch {state['epoch']} of {epochs} without an error "
                           "it could name; run the same command again to continue from there")
    return state


def run_search(config: ExperimentConfig, resume: bool = True, callbacks: list | None = None) -> Outcome:
    """Bi-level search with Ray Train; publishes genotype, metrics and figures to the run folder.

    ``callbacks`` are Ray Train ``UserCallback``s (e.g. Tune's ``TuneReportCallback``).
    """
    ensure_dataset(config.data, progress=config.runtime.progress)
    with ray_session(config.distributed):
        trainer, folder, _, _ = _trainer(search_worker, config, "search", {}, resume, callbacks)
        result = fit_with_progress(trainer, folder, "search", config.search.epochs, config.runtime.progress)
        state = _final_state(result, config.search.epochs)
    history = state["history"]
    genotype = Genotype.from_dict(history[-1]["genotype"])
    paths = publish(lambda d: write_search_outputs(history, genotype, config, d), folder.uri)
    return Outcome(history, genotype, paths=paths)


def run_retrain(config: ExperimentConfig, genotype: Genotype, resume: bool = True,
                callbacks: list | None = None) -> Outcome:
    """Retraining with Ray Train; publishes ``result.json``, ``model.pt`` and metrics."""
    ensure_dataset(config.data, progress=config.runtime.progress)
    with ray_session(config.distributed):
        trainer, folder, meta, data_sha256 = _trainer(retrain_worker, config, "train",
                                                      {"genotype": genotype.to_dict()}, resume, callbacks)
        result = fit_with_progress(trainer, folder, "train", config.train.epochs, config.runtime.progress)
        state = _final_state(result, config.train.epochs)
    history = state["history"]
    summary = retrain_result(result.metrics, result.metrics["parameters"], genotype, history)
    model = model_payload(genotype, config, meta.n, meta.class_names, state["best"], data_sha256)
    paths = publish(lambda d: write_retrain_outputs(history, summary, model, d), folder.uri)
    return Outcome(history, genotype, summary, paths)
