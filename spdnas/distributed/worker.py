"""What each Ray Train worker runs: the engine's jobs, wired to shards, reducers and checkpoints.

Rank 0 attaches the full job state to every epoch's ``ray.train.report``; a restarted worker
group (``FailureConfig``) or a re-run of the same experiment resumes from the latest one. A
``ValueError`` in a worker (bad values or data, a diverged run) ends the run instead of being
retried: see :func:`ends_on_value_errors`.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import math
import os
import sys
import tempfile
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
import ray.train
import ray.train.torch

from spdnas.config import ExperimentConfig, config_from_dict
from spdnas.data import DatasetMeta
from spdnas.data.schema import SPLITS
from spdnas.data.storage import Folder
from spdnas.data.streaming import shard_dataset
from spdnas.distributed.collective import (
    average_gradients,
    broadcast_buffers,
    gather_sample_index,
    min_over_workers,
    sum_metrics,
    synchronise_batch_norms,
)
from spdnas.engine.batches import Sharding
from spdnas.engine.search_job import SearchJob
from spdnas.engine.splits import ExperimentData, require_splits, split_experiment_data
from spdnas.engine.state import CHECKPOINT_FILE, load_checkpoint, ray_checkpoint_name, save_checkpoint
from spdnas.engine.train_job import TrainJob
from spdnas.report.outputs import scalar_metrics, write_live_metrics
from spdnas.search.genotype import Genotype

FAULT_ENV = "SPDNAS_FAULT_AT_EPOCH"
FAULT_MARKER_ENV = "SPDNAS_FAULT_MARKER"


def configure_ray_data() -> None:
    """Rows in the stored order (files as the manifest lists them, as :func:`read_dataset`
    reads them), so that batches, and a run resumed by starting it again, do not depend on which
    read task finished first; no progress bars (our own progress lines say what is happening)."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def worker_threads(cpus: float) -> int:
    """Threads of a worker that asked Ray for ``cpus`` CPUs: the whole CPUs of its share. A sweep
    asks for a hair less than each trial's whole share (1.99 of 2 CPUs, so that its trials' own
    0.01 fit beside them), which is still two CPUs' worth of threads, not one."""
    return max(1, math.floor(cpus + 0.05))


def _worker_config(loop_config: dict[str, Any]) -> ExperimentConfig:
    configure_ray_data()
    config = config_from_dict(loop_config["experiment"])
    if config.runtime.threads == 0:  # share the node's cores between its workers
        config.runtime.threads = worker_threads(loop_config["cpus_per_worker"])
    if config.distributed.use_gpu:
        config.runtime.device = str(ray.train.torch.get_device())
    return config


def _experiment_data(config: ExperimentConfig, meta: dict, search: bool) -> ExperimentData:
    names = ["data"] if config.distributed.data == "replicate" else list(SPLITS)
    shards = [ray.train.get_dataset_shard(name) for name in names]
    dataset = shard_dataset(shards, DatasetMeta.from_dict(meta))
    if config.distributed.data == "shard":  # the whole dataset was checked before the workers started
        require_splits(dataset.counts(), dataset.meta,
                       " (this worker's shard: with distributed.data=shard every split needs a row "
                       "per worker; use fewer workers or distributed.data=replicate)")
    gather = gather_sample_index if config.distributed.data == "shard" else None
    mode = config.data.search_split if search else "stratified"  # a retraining uses no halves
    return split_experiment_data(dataset, config.data.search_val_fraction,
                                 config.data.search_split_seed(config.runtime.seed), mode, gather)


def _sharding(config: ExperimentConfig, sizes: list[int], batch_size: int) -> Sharding:
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    if config.distributed.data == "replicate":
        return Sharding(rank, world)
    local = min(n // (batch_size // world) for n in sizes)
    return Sharding(rank, world, local_data=True, steps=min_over_workers(local))


def _restore(job, loop_config: dict[str, Any]) -> bool:
    """Load the run's newest state: Ray's latest checkpoint of it, or the state the driver handed
    over when further along (the local backend's, or a checkpoint Ray had not registered when its
    driver was interrupted). Returns whether it was the handed-over one, which Ray's registered
    checkpoints do not hold."""
    state = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = load_checkpoint(directory)
    handed = None
    if "handover_state" in loop_config:
        with tempfile.TemporaryDirectory() as directory:
            Path(directory, CHECKPOINT_FILE).write_bytes(ray.get(loop_config["handover_state"]))
            handed = load_checkpoint(directory)
    if handed is not None and (state is None or int(handed["epoch"]) > int(state["epoch"])):
        job.load_state_dict(handed)
        return True
    if state is not None:
        job.load_state_dict(state)
    return False


def _report(job, metrics: dict[str, Any], rank: int, run_uri: str, every: int,
            new_state: bool = True) -> None:
    """Every worker reports; rank 0 rewrites the live metrics file (``live_metrics.jsonl`` in the
    run folder: one JSON line per finished epoch) and, for a ``new_state``, attaches a checkpoint
    every ``every`` epochs and at the last one."""
    if rank == 0:
        write_live_metrics(job.history, run_uri)
    if rank != 0 or not new_state or (job.epoch % every and not job.finished):
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as directory:
        save_checkpoint(job.state_dict(), directory)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory),
                         checkpoint_dir_name=ray_checkpoint_name(job.epoch))


def _maybe_fail(epoch: int, rank: int) -> None:
    """Test hook: the last rank dies once, right after reporting epoch ``SPDNAS_FAULT_AT_EPOCH``."""
    target, marker = os.environ.get(FAULT_ENV), os.environ.get(FAULT_MARKER_ENV)
    world = ray.train.get_context().get_world_size()
    if target and marker and epoch == int(target) and rank == world - 1 and not Path(marker).exists():
        Path(marker).write_text(f"worker {rank} killed after epoch {epoch}\n", encoding="utf-8")
        os._exit(17)


def _reducers(world: int, sync_batchnorm: bool):
    """(grad_reduce, sum_reduce, buffer_sync) of a worker among ``world``: none for one worker;
    rank 0's running means are broadcast after every epoch where the batch norms are not
    synchronised (synchronised ones hold equal means on every worker already)."""
    if world == 1:
        return None, None, None
    return average_gradients, sum_metrics, None if sync_batchnorm else broadcast_buffers


WORKER_ERRORS = "worker_errors"


def worker_errors(run_uri: str) -> Folder:
    """The run's record of final worker errors: one JSON file per raising worker and attempt,
    ``{"rank", "type", "message"}``."""
    return Folder(f"{run_uri.rstrip('/')}/{WORKER_ERRORS}")


def _records(errors: Folder) -> list[str]:
    """The error records in ``errors``, not the temporary file of a local write (a worker killed
    while writing leaves one: the driver would find no error, the next workers would stop)."""
    return [name for name in errors.list_names() if not name.rsplit("/", 1)[-1].startswith(".")]


def ends_on_value_errors(loop: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """A worker loop whose ``ValueError`` ends the run rather than being retried.

    Such an error (a diverged run, bad values or data) comes back on a retry: a run resumes
    exactly from its last checkpoint. Ray Train's ``FailureConfig`` retries every worker error
    and has no public way to mark one final, so the worker records the error in the run folder
    (:func:`worker_errors`) before raising, and the worker group Ray starts next returns at once;
    the driver then raises the recorded error (:func:`recorded_worker_error`). Other errors
    (a lost node, a network failure) are retried as before.
    """

    @functools.wraps(loop)
    def run(loop_config: dict[str, Any]) -> None:
        errors = worker_errors(loop_config["run_uri"])
        if _records(errors):  # a worker of an earlier attempt recorded a final error
            return
        try:
            loop(loop_config)
        except ValueError as exc:
            rank = ray.train.get_context().get_world_rank()
            record = {"rank": rank, "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
                      "message": str(exc) or type(exc).__name__, "traceback": traceback.format_exc()}
            try:
                errors.write_bytes(f"rank-{rank}-{uuid.uuid4().hex}.json", json.dumps(record).encode())
            except Exception as failure:  # the run is then retried as before; the error stays the user's
                print(f"warning: could not record the error of worker {rank} in {errors.uri}: {failure}",
                      file=sys.stderr, flush=True)
            raise

    return run


def recorded_worker_error(run_uri: str) -> ValueError | None:
    """The final error the lowest rank recorded (:func:`ends_on_value_errors`), as its own type
    where that can be rebuilt from its message (else a ``ValueError``); None if none was. A
    record cut short (a worker killed while writing it) is skipped."""
    errors = worker_errors(run_uri)
    records = []
    for name in _records(errors):
        try:
            records.append(json.loads(errors.read_bytes(name)))
        except ValueError:
            continue
    if not records:
        return None
    record = min(records, key=lambda r: r["rank"])
    module, _, name = record["type"].rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        error = cls(record["message"])
    except Exception:  # a type that is gone, or whose constructor takes more than a message
        error = None
    if not isinstance(error, ValueError):
        error = ValueError(record["message"])
    if record.get("traceback"):  # shown with the driver's traceback (SPDNAS_DEBUG), not in str()
        # what BaseException.add_note does, which Python 3.10 lacks (it then shows no note)
        error.__notes__ = [*getattr(error, "__notes__", ()), f"worker {record['rank']}: "
                           f"{record['traceback'].rstrip()}"]
    return error


@ends_on_value_errors
def search_worker(loop_config: dict[str, Any]) -> None:
    """Per-worker bi-level search (``TorchTrainer`` loop)."""
    config = _worker_config(loop_config)
    data = _experiment_data(config, loop_config["meta"], search=True)
    rank, world = ray.train.get_context().get_world_rank(), ray.train.get_context().get_world_size()
    sharding = _sharding(config, [len(data.search_train), len(data.search_val)], config.search.batch_size)
    grad_reduce, sum_reduce, buffer_sync = _reducers(world, config.distributed.sync_batchnorm)
    job = SearchJob(config, data.search_train, data.search_val, data.num_classes, sharding, grad_reduce,
                    sum_reduce, buffer_sync, search_split=data.search_split)
    if world > 1 and config.distributed.sync_batchnorm:
        synchronise_batch_norms(job.searcher.supernet, world)
    handed_over = _restore(job, loop_config)

    def metrics_of(record: dict[str, Any]) -> dict[str, Any]:
        return {**scalar_metrics(record), "genotype": Genotype.from_dict(record["genotype"]).to_json()}

    if job.finished:  # a finished run, resumed: report its last epoch again
        _report(job, metrics_of(job.history[-1]), rank, loop_config["run_uri"], 1, new_state=handed_over)
    while not job.finished:
        record = job.run_epoch()
        _report(job, metrics_of(record), rank, loop_config["run_uri"], config.runtime.checkpoint_every)
        _maybe_fail(job.epoch, rank)


@ends_on_value_errors
def retrain_worker(loop_config: dict[str, Any]) -> None:
    """Per-worker retraining of a genotype; the last report carries the test metrics."""
    config = _worker_config(loop_config)
    data = _experiment_data(config, loop_config["meta"], search=False)
    rank, world = ray.train.get_context().get_world_rank(), ray.train.get_context().get_world_size()
    sharding = _sharding(config, [len(data.train)], config.train.batch_size)
    grad_reduce, sum_reduce, buffer_sync = _reducers(world, config.distributed.sync_batchnorm)
    genotype = Genotype.from_dict(loop_config["genotype"])
    job = TrainJob(config, genotype, data.train, data.val, data.num_classes, sharding, grad_reduce,
                   sum_reduce, buffer_sync=buffer_sync)
    if world > 1 and config.distributed.sync_batchnorm:
        synchronise_batch_norms(job.model, world)
    handed_over = _restore(job, loop_config)

    def final(metrics: dict[str, Any]) -> dict[str, Any]:
        return {**metrics, **job.test(data.test), "parameters": job.num_parameters}

    if job.finished:  # a finished run, resumed: report its result again
        _report(job, final(scalar_metrics(job.history[-1])), rank, loop_config["run_uri"], 1,
                new_state=handed_over)
    while not job.finished:
        record = job.run_epoch()
        metrics = final(scalar_metrics(record)) if job.finished else scalar_metrics(record)
        _report(job, metrics, rank, loop_config["run_uri"], config.runtime.checkpoint_every)
        _maybe_fail(job.epoch, rank)
