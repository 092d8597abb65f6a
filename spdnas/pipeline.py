"""An experiment's steps — data, search, retraining, evaluation — on either backend.

``distributed.backend: ray`` (default) runs the jobs with Ray Train (:mod:`spdnas.distributed`),
on a private local Ray unless an address is given; ``local`` runs them in this process. Both
write the same files (:mod:`spdnas.report.outputs`) under ``<runtime.output_dir>/<name>/``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spdnas.config import ConfigError, DataConfig, ExperimentConfig, config_from_dict
from spdnas.data import SPDDataset, make_dataset, read_dataset
from spdnas.data.registry import recorded_params
from spdnas.data.s3 import comparable_uri, is_s3_uri
from spdnas.data.schema import MANIFEST_NAME
from spdnas.data.storage import Folder, content_digest
from spdnas.data.validation import default_pd_rtol
from spdnas.engine.batches import TensorData
from spdnas.engine.search_job import SearchJob
from spdnas.engine.splits import ExperimentData, require_full_batches, split_experiment_data
from spdnas.engine.state import LOCAL_CHECKPOINT_DIR, load_torch_file, newest_state, save_checkpoint
from spdnas.engine.train_job import TrainJob
from spdnas.models.network import GenotypeNetwork
from spdnas.report.outputs import (
    model_payload,
    print_epoch,
    publish,
    write_live_metrics,
    write_retrain_outputs,
    write_search_outputs,
)
from spdnas.search.genotype import Genotype, GenotypeError, published_genotype, published_names


@dataclass
class Outcome:
    """What a search or a retraining produced: history, genotype, result and file locations."""

    history: list[dict[str, Any]]
    genotype: Genotype
    result: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)


@contextmanager
def session(config: ExperimentConfig) -> Iterator[None]:
    """One Ray session around several steps (ray backend); nothing for the local backend."""
    if config.distributed.backend != "ray":
        yield
        return
    from spdnas.distributed.runner import ray_session

    with ray_session(config.distributed):
        yield


def ensure_dataset(cfg: DataConfig, progress: bool = True) -> None:
    """Make the dataset at ``cfg.uri`` with ``cfg.builder`` if it does not exist yet; warn where
    one exists that was made otherwise than ``cfg.builder``/``builder_params`` say (they are not
    applied to it)."""
    folder = Folder(cfg.uri)
    if folder.exists(MANIFEST_NAME):
        if cfg.builder is not None:
            _warn_if_made_otherwise(cfg, folder.read_manifest())
        return
    if cfg.builder is None:
        raise FileNotFoundError(
            f"no dataset at {cfg.uri}: check the path. data.builder is not set, so nothing is made there; "
            f"to make a dataset there, name its builder (data.builder=radar-synth for the synthetic default; "
            f"`spdnas data make --help` lists them) or make it first with `spdnas data make`")
    print(f"no dataset at {cfg.uri}: making it with data.builder={cfg.builder}", file=sys.stderr, flush=True)
    try:
        make_dataset(cfg.builder, cfg.uri, progress=progress, **cfg.builder_params)
    except OSError as exc:
        if Folder(cfg.uri).is_local or not _access_denied(exc):
            raise
        # e.g. a cluster node, whose role may only read datasets/ (README, "Running on a cluster")
        raise PermissionError(f"no dataset at {cfg.uri}, and making it there with data.builder={cfg.builder} "
                      f"failed ({exc}). Where this machine may only read that storage, as cluster nodes "
                      f"may only read datasets/, write it once with your own credentials: `python -m "
                      f"jobs.prepare_data --dataset {cfg.builder} --out {cfg.uri}` (or `spdnas data make "
                      f"{cfg.builder} {cfg.uri}`), with the same --param values as data.builder_params"
                      ) from exc


def _warn_if_made_otherwise(cfg: DataConfig, manifest: dict[str, Any]) -> None:
    provenance = manifest.get("meta", {}).get("provenance") or {}
    made_by, made_with = provenance.get("builder"), provenance.get("params") or {}
    if made_by is None:  # written from Python (write_dataset), not by a builder: nothing to compare
        return
    wanted = recorded_params(cfg.builder, cfg.builder_params)
    if made_by == cfg.builder and made_with == wanted:
        return
    params = " ".join(f"--param {k}={json.dumps(v, separators=(',', ':'))}" for k, v in wanted.items())
    warnings.warn(f"{cfg.uri} holds a dataset made by {made_by} with {made_with}; data.builder={cfg.builder} "
                  f"with builder_params {wanted} is not applied to it (a dataset is made only where there is "
                  f"none). To use them, make it again: spdnas data make {cfg.builder} {cfg.uri} {params} "
                  "--overwrite", stacklevel=3)


ACCESS_DENIED_CODES = ("ACCESS_DENIED", "AccessDenied")


def _access_denied(exc: OSError) -> bool:
    """Whether storage refused a request for want of rights (pyarrow's S3 errors are plain
    ``OSError`` instances naming AWS's error code)."""
    return isinstance(exc, PermissionError) or any(code in str(exc) for code in ACCESS_DENIED_CODES)


def with_absolute_paths(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` with every local path (datasets, output folder) made absolute.

    For configs handed to Ray Tune trials: Tune runs each trial in its own working folder, where
    a relative ``data/radar-synth`` would name another (empty) place.
    """
    def absolute(uri: str) -> str:
        folder = Folder(uri)
        return folder.base if folder.is_local else uri

    tree = config.to_dict()
    tree["data"]["uri"] = absolute(tree["data"]["uri"])
    tree["runtime"]["output_dir"] = absolute(tree["runtime"]["output_dir"])
    for entry in tree["benchmark"]["datasets"]:
        entry["data"]["uri"] = absolute(entry["data"]["uri"])
    return config_from_dict(tree)


def positive_definite_rtol(config: ExperimentConfig) -> float:
    """The positive-definiteness tolerance of the precision the run computes in
    (``runtime.dtype``): a matrix fine in float64 may be singular in float32."""
    n = Folder(config.data.uri).read_manifest()["meta"]["n"]
    return default_pd_rtol(n, getattr(torch, config.runtime.dtype))


def load_dataset(config: ExperimentConfig) -> SPDDataset:
    """The experiment's dataset (made first where it has a builder and does not exist), float64,
    every row checked for the precision of ``runtime.dtype``."""
    ensure_dataset(config.data, progress=config.runtime.progress)
    return read_dataset(config.data.uri, pd_rtol=positive_definite_rtol(config),
                        progress=config.runtime.progress)


def _without(tree: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """A copy of ``tree`` without the dotted ``keys``; a ``*`` part stands for every item of a list."""
    tree = json.loads(json.dumps(tree))

    def drop(node: Any, parts: list[str]) -> None:
        if len(parts) == 1:
            if isinstance(node, dict):
                node.pop(parts[0], None)
            return
        head, rest = parts[0], parts[1:]
        if head == "*":
            for item in node if isinstance(node, list) else ():
                drop(item, rest)
        elif isinstance(node, dict) and head in node:
            drop(node[head], rest)

    for key in keys:
        drop(tree, key.split("."))
    return tree


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ; keys only one side has (settings another version added
    or removed) are not judged, and lists of equal length are compared item by item."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in set(a) & set(b) for d in _differences(a[k], b[k], f"{prefix}{k}.")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in _differences(x, y, f"{prefix}{i}.")]
    return [] if a == b else [prefix.rstrip(".")]


EXPERIMENT_FILES = {"benchmark": "benchmark_config.json", "sweep": "sweep_config.json"}
"""The file in which each kind of Tune experiment records its settings, in its folder."""


def check_no_other_experiment(root: Folder, kind: str) -> None:
    """Refuse to run a ``kind`` experiment ("benchmark" or "sweep") in a folder that holds one of
    the other kind: both keep Ray Tune's state in ``tune/``, so one would restore the other's
    trials, or delete them on ``--no-resume``.

    Raises
    ------
    ConfigError
        Naming the experiment found.
    """
    for other, filename in EXPERIMENT_FILES.items():
        if other != kind and root.exists(filename):
            raise ConfigError(f"{root.display('')} holds a {other} ({filename}); a {kind} there would share "
                              f"its Tune state (tune/): give the {kind} another name (name=...)")


def delete_earlier(root: Folder, kind: str, files: tuple[str, ...], folders: tuple[str, ...]) -> None:
    """Start a ``kind`` experiment over (``--no-resume``): delete its ``files`` and ``folders``
    under ``root``, not the single runs kept under the same name (an experiment of the other kind
    there is refused first, see :func:`check_no_other_experiment`)."""
    names = [n for n in root.list_names() if n in files or n.split("/")[0] in folders]
    if names:
        print(f"starting over: deleting the earlier {kind} in {root.uri} ({len(names)} files)",
              file=sys.stderr, flush=True)
    for name in names:
        if name in files:
            root.delete(name)
    for folder in folders:
        Folder(f"{root.uri.rstrip('/')}/{folder}").clear()


Judge = Callable[[dict[str, Any], dict[str, Any]], str | None]


def check_same_experiment(config: ExperimentConfig, root: Folder, resume: bool, filename: str,
                          run_only: tuple[str, ...], kind: str, judge: Judge | None = None) -> None:
    """Record the experiment in ``root/filename``; refuse to resume one made with other settings
    (its finished trials would be mixed with new ones).

    Parameters
    ----------
    run_only : tuple of str
        Dotted keys (or sections) that may change between a run and its resumption because
        they change no result (progress display, resources, concurrency).
    kind : str
        What the experiment is ("benchmark", "sweep"), for the message.
    judge : callable, optional
        ``judge(recorded, new)`` (configuration dicts): a change within ``run_only`` that does
        change results (e.g. a sweep's workers' layout), described, or None.

    Raises
    ------
    ConfigError
        Naming the settings that differ.
    """
    if resume and root.exists(filename):
        recorded = json.loads(root.read_bytes(filename))
        changed = sorted(_differences(_without(recorded, run_only), _without(config.to_dict(), run_only)))
        judged = judge(recorded, config.to_dict()) if judge else None
        if judged:
            changed.append(judged)
        if changed:
            raise ConfigError(f"{root.display('')} holds a {kind} with other settings "
                              f"({', '.join(changed)}): run with --no-resume to start it over, "
                              "or give it another name")
    root.write_bytes(filename, (json.dumps(config.to_dict(), indent=2) + "\n").encode())


DATA_RECORD = "data.json"
DIGEST_KEY = "content_sha256"


def check_same_data(config: ExperimentConfig, folder: Folder, resume: bool) -> str:
    """Record which data a run uses (``folder/data.json``: the dataset's URI, name and its
    :func:`~spdnas.data.storage.content_digest`, a hash of its rows); refuse to resume a run that
    was made on other data at the same ``data.uri`` (a dataset made again with other
    parameters), which would re-score or continue it on a mixture of both. Returns the checksum.

    Raises
    ------
    ValueError
        Naming the run folder and the dataset.
    """
    manifest = Folder(config.data.uri).read_manifest()
    digest = content_digest(manifest)
    if resume and folder.exists(DATA_RECORD):
        stored = json.loads(folder.read_bytes(DATA_RECORD)).get(DIGEST_KEY, digest)  # older records: none
        if stored != digest:
            raise ValueError(f"{folder.display('')} was run on other data than {config.data.uri} holds now "
                             "(the dataset was made again or changed): start over (--no-resume) or give "
                             "the run another name (name=...)")
    record = {"uri": config.data.uri, "name": manifest["meta"]["name"], DIGEST_KEY: digest}
    folder.write_bytes(DATA_RECORD, (json.dumps(record) + "\n").encode())
    return digest


def on_model_data(config: ExperimentConfig, saved: dict[str, Any]) -> bool:
    """Whether ``config.data.uri`` names the folder the saved model (``model.pt``'s contents)
    was trained on."""
    return comparable_uri(config.data.uri) == comparable_uri(saved["config"]["data"]["uri"])


def check_model_data(path: str, saved: dict[str, Any], config: ExperimentConfig, data_sha256: str | None,
                     uri_given: bool) -> None:
    """Refuse to evaluate model ``path`` on its own dataset made again with other contents.

    A dataset made again (another ``split_seed``, say) may put training samples into its test
    split. Not checked: a ``data.uri`` given on the command line (``uri_given``) or naming another
    place (evaluation on other data on purpose), and models saved before ``data_sha256`` was
    recorded.

    Parameters
    ----------
    data_sha256 : str or None
        :func:`~spdnas.data.storage.content_digest` of the data read from ``config.data.uri``.

    Raises
    ------
    ValueError
    """
    recorded = saved.get("data_sha256")
    if recorded is None or uri_given or not on_model_data(config, saved):
        return
    if data_sha256 != recorded:
        raise ValueError(f"{path} was trained on other data than {config.data.uri} holds now (the dataset "
                         "was made again or changed, so its test split may hold training samples): make "
                         "the dataset as it was, or give data.uri= to evaluate on the data there anyway")


def load_experiment_data(config: ExperimentConfig, search: bool = True) -> ExperimentData:
    """The experiment's splits; with ``search=False`` (a retraining, an evaluation: the search halves
    go unused) the halves are drawn per class, whatever ``data.search_split`` says."""
    mode = config.data.search_split if search else "stratified"
    data = split_experiment_data(load_dataset(config), config.data.search_val_fraction,
                                 config.data.search_split_seed(config.runtime.seed), mode)
    return replace(data, data_sha256=content_digest(Folder(config.data.uri).read_manifest()))


def run_folder(config: ExperimentConfig, step: str) -> str:
    """Where a step's checkpoints and outputs live: ``<output_dir>/<name>/<step>`` (an absolute
    local path, or an ``s3://`` URI)."""
    folder = Folder(f"{config.runtime.output_dir.rstrip('/')}/{config.name}/{step}".rstrip("/"))
    return folder.base if folder.is_local else folder.uri


def _local_folder(config: ExperimentConfig, step: str) -> Path:
    if is_s3_uri(config.runtime.output_dir):
        raise ValueError("distributed.backend=local writes to a local runtime.output_dir; "
                         "use the ray backend for s3:// storage")
    return Path(run_folder(config, step))


def _require_full_batches(config: ExperimentConfig, data: ExperimentData, **batch: int) -> None:
    """The Ray backend's check before its workers start, here before ``--no-resume`` deletes the
    earlier run (the job would otherwise fail on its first epoch, the old run gone)."""
    require_full_batches(data.dataset.counts(), config.data.search_val_fraction, **batch,
                         halves=[(len(data.search_train), len(data.search_val))])


class RunFolderInUse(ValueError):
    """Another process runs the same step in the same run folder."""


@contextmanager
def hold_run_folder(config: ExperimentConfig, step: str) -> Iterator[None]:
    """Hold ``<output_dir>/<name>/<step>`` for this process while the step runs.

    A second ``spdnas search``/``train`` with the same ``name`` and ``runtime.output_dir`` is
    refused (:class:`RunFolderInUse`) instead of both writing, and deleting, the same checkpoints
    and outputs. The lock (``flock`` on ``.<step>.lock`` beside the folder, which ``--no-resume``
    does not delete) goes with the process, however it ends. Local folders on POSIX systems only:
    an ``s3://`` run folder cannot be locked.
    """
    try:
        import fcntl
    except ImportError:  # not a POSIX system
        fcntl = None
    if is_s3_uri(config.runtime.output_dir) or fcntl is None:
        yield
        return
    folder = Path(run_folder(config, step))
    path = folder.parent / f".{step}.lock"
    created = not folder.parent.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "a+", encoding="utf-8") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise RunFolderInUse(f"{folder} is in use by {holder}: wait for it to end, or give this run "
                                     "another name= (or runtime.output_dir=)") from None
            except OSError as exc:  # e.g. NFS without a lock daemon: run unlocked, as before
                print(f"warning: cannot lock {path} ({exc.strerror or exc}); another run with the same "
                      "name would not be stopped", file=sys.stderr, flush=True)
            else:
                handle.seek(0)
                handle.truncate()
                handle.write(f"spdnas (pid {os.getpid()} on {socket.gethostname()})\n")
                handle.flush()
            yield
    finally:
        if created and [p.name for p in folder.parent.iterdir()] == [path.name]:
            path.unlink()  # the step failed before writing anything (e.g. bad data): leave no folder
            folder.parent.rmdir()


def _run_local(job, folder: Path, config: ExperimentConfig, resume: bool, step: str) -> None:
    checkpoint = folder / LOCAL_CHECKPOINT_DIR
    if not resume:
        Folder(str(folder)).clear()
    check_same_data(config, Folder(str(folder)), resume)
    state = newest_state(folder) if resume else None
    if state is not None:
        job.load_state_dict(state)
    while not job.finished:
        record = job.run_epoch()
        write_live_metrics(job.history, str(folder))
        if config.runtime.progress:
            print_epoch(step, record, getattr(config, step).epochs)
        if job.epoch % config.runtime.checkpoint_every == 0 or job.finished:
            save_checkpoint(job.state_dict(), checkpoint)


def _check_devices(config: ExperimentConfig) -> None:
    """Refuse ``distributed.*`` settings the local backend would ignore (the Ray side: the runner)."""
    d = config.distributed
    if d.backend == "local" and d.use_gpu:
        raise ValueError("distributed.use_gpu=true needs distributed.backend=ray; the local backend "
                         "runs on runtime.device (e.g. runtime.device=cuda)")
    ray_only = {}  # the settings only Ray runs, each with the value the local backend runs
    if d.num_workers > 1:
        ray_only[f"distributed.num_workers={d.num_workers}"] = "distributed.num_workers=1"
    if d.data == "shard":
        ray_only["distributed.data=shard"] = "distributed.data=replicate"
    if d.backend == "local" and ray_only:
        raise ValueError(f"{', '.join(ray_only)} would need distributed.backend=ray; the local backend runs "
                         f"one process on all the data (for it, set {' '.join(ray_only.values())})")


def search(config: ExperimentConfig, resume: bool = True) -> Outcome:
    """Bi-level search; writes ``genotype.json``, metrics and figures."""
    _check_devices(config)
    with hold_run_folder(config, "search"):
        if config.distributed.backend == "ray":
            from spdnas.distributed.runner import run_search

            return run_search(config, resume)
        return _search_local(config, resume)


def _search_local(config: ExperimentConfig, resume: bool) -> Outcome:
    folder = _local_folder(config, "search")
    data = load_experiment_data(config)
    _require_full_batches(config, data, search_batch_size=config.search.batch_size)
    job = SearchJob(config, data.search_train, data.search_val, data.num_classes,
                    search_split=data.search_split)
    _run_local(job, folder, config, resume, "search")
    genotype = job.genotype()
    paths = publish(lambda d: write_search_outputs(job.history, genotype, config, d), str(folder))
    return Outcome(job.history, genotype, paths=paths)


def retrain(config: ExperimentConfig, genotype: Genotype, resume: bool = True) -> Outcome:
    """Train ``genotype`` from scratch on train, select on val, evaluate on test."""
    _check_devices(config)
    with hold_run_folder(config, "train"):
        if config.distributed.backend == "ray":
            from spdnas.distributed.runner import run_retrain

            return run_retrain(config, genotype, resume)
        return _retrain_local(config, genotype, resume)


def _retrain_local(config: ExperimentConfig, genotype: Genotype, resume: bool) -> Outcome:
    folder = _local_folder(config, "train")
    data = load_experiment_data(config, search=False)
    _require_full_batches(config, data, train_batch_size=config.train.batch_size)
    job = TrainJob(config, genotype, data.train, data.val, data.num_classes)
    _run_local(job, folder, config, resume, "train")
    result = retrain_result(job.test(data.test), job.num_parameters, genotype, job.history)
    model = model_payload(genotype, config, data.n, data.dataset.meta.class_names, job.best, data.data_sha256)
    paths = publish(lambda d: write_retrain_outputs(job.history, result, model, d), str(folder))
    return Outcome(job.history, genotype, result, paths)


def retrain_result(test: dict[str, Any], parameters: int, genotype: Genotype,
                   history: list[dict[str, Any]]) -> dict[str, Any]:
    """``result.json``: test metrics, model size and training cost of a retraining."""
    keys = ("test_accuracy", "test_loss", "test_accuracy_last", "best_epoch")
    # runs finished before test_samples was reported resume without it
    return {**{k: test[k] for k in keys}, "test_samples": test.get("test_samples"),
            "parameters": parameters, "genotype": genotype.to_dict(), "epochs": len(history),
            "train_seconds": sum(r["seconds"] for r in history)}


def resolve_genotype(spec: str) -> Genotype:
    """A genotype from a JSON file (local path or ``s3://bucket/key``, e.g. a search's
    ``genotype.json`` in the cluster's storage) or a published name (``radar``, ``hdm05``)."""
    if is_s3_uri(spec):
        parent, _, name = spec.rstrip("/").rpartition("/")
        folder = Folder(parent)
        if not folder.exists(name):
            raise GenotypeError(f"{spec}: no such genotype file")
        try:
            return Genotype.from_json(folder.read_bytes(name).decode())
        except (GenotypeError, UnicodeDecodeError) as exc:
            raise GenotypeError(f"{spec}: {exc}") from None
    path = Path(spec)
    if spec and path.is_file():
        return Genotype.load(path)
    if spec.lower() in published_names():  # also where a folder of that name (a dataset, say) is here
        return published_genotype(spec)
    what = "a folder" if spec and path.is_dir() else "neither a genotype file nor a published genotype"
    raise GenotypeError(f"{spec!r} is {what} (published: {', '.join(published_names())})")


def evaluation_split(config: ExperimentConfig, split: str) -> tuple[SPDDataset, TensorData, str]:
    """What ``spdnas evaluate`` scores: the dataset, its rows of ``split`` and the dataset's
    :func:`~spdnas.data.storage.content_digest`. Only that split must have rows (a held-out
    dataset of test rows only is evaluated as it is).

    Raises
    ------
    ValueError
        Where ``split`` has no rows, naming the splits that have.
    """
    dataset = load_dataset(config)
    rows = dataset.subset(split)
    if len(rows) == 0:
        present = ", ".join(f"{name} ({sum(c)})" for name, c in dataset.counts().items())
        raise ValueError(f"{config.data.uri} has no {split!r} rows (it has {present}): "
                         "choose another --split")
    digest = content_digest(Folder(config.data.uri).read_manifest())
    return dataset, TensorData(rows.matrices, rows.labels), digest


def check_model_classes(path: str, saved: dict[str, Any], dataset: SPDDataset, uri: str) -> None:
    """Refuse data the model at ``path`` cannot score: other matrix sizes or class counts, or a
    class of its own under another label (its predictions would be scored against the wrong
    class). Other class names at their labels (other data on purpose) are only warned about.
    Models saved before ``class_names`` was recorded are checked by size and count only.

    Raises
    ------
    ValueError
        Naming the model, the dataset and what differs.
    """
    n, classes = dataset.meta.n, dataset.num_classes
    if (saved["n"], saved["num_classes"]) != (n, classes):
        raise ValueError(f"{path} takes {saved['n']}×{saved['n']} matrices of {saved['num_classes']} "
                         f"classes; {uri} holds {n}×{n} matrices of {classes} classes")
    mine, theirs = list(saved.get("class_names") or ()), list(dataset.meta.class_names)
    if not mine or mine == theirs:
        return
    moved = [name for label, name in enumerate(mine) if name in theirs and theirs.index(name) != label]
    if moved:
        raise ValueError(f"{path} was trained with the classes in the order {mine}; {uri} numbers them "
                         f"{theirs} ({', '.join(moved[:3])} under another label): its labels would be "
                         "scored against the wrong classes")
    print(f"warning: {path} was trained on the classes {mine}; {uri} names them {theirs} (scored by "
          "label number, in that order)", file=sys.stderr)


def load_model(path: str | Path) -> tuple[GenotypeNetwork, dict[str, Any]]:
    """Rebuild a trained network from ``model.pt`` (in evaluation mode)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such model file (spdnas train writes <run>/train/model.pt)")
    saved = load_torch_file(path, "not a model saved by spdnas train, or damaged")
    keys = set(saved) if isinstance(saved, dict) else set()
    if "architecture" in keys and "genotype" not in keys:  # the benchmark's baselines write model.pt too
        raise ValueError(_baseline_model(path, saved["architecture"]))
    missing = {"config", "genotype", "n", "num_classes", "state_dict"} - keys
    if missing:
        raise ValueError(f"{path}: not a model saved by spdnas train (missing {sorted(missing)})")
    config = config_from_dict(saved["config"])
    dtype = torch.float64 if config.runtime.dtype == "float64" else torch.float32
    model = GenotypeNetwork(Genotype.from_dict(saved["genotype"]), config.model, saved["n"],
                            saved["num_classes"], dtype=dtype)
    model.load_state_dict(saved["state_dict"])
    model.eval()
    return model, saved


def _baseline_model(path: str | Path, architecture: Any) -> str:
    """Why ``evaluate`` refuses the ``model.pt`` of a benchmark baseline (SPDNet, SPDNetBN, the
    Euclidean networks: an ``architecture``, no genotype), and where its test result is."""
    network = architecture.get("network") if isinstance(architecture, dict) else None
    result = Path(path).parent / "result.json"
    where = (f"in {result}" if result.is_file()
             else "in its trial's train/result.json and the benchmark's results.jsonl")
    return (f"{path}: the model of a benchmark baseline{f' ({network})' if network else ''}, which spdnas "
            f"evaluate does not read (it evaluates the models of spdnas train and of the benchmark's "
            f"spdnetnas and random runs); the baseline's test result is {where}")


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """Counts ``[true class, predicted class]``, shape ``(classes, classes)``."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def summary_line(outcome: Outcome) -> str:
    r = outcome.result
    return (f"test accuracy {100 * r['test_accuracy']:.2f}% (best val epoch {r['best_epoch']}; last epoch "
            f"{100 * r['test_accuracy_last']:.2f}%), {r['parameters']} parameters")
