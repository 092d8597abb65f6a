"""Checkpoint files and random-number-generator state."""

from __future__ import annotations

import os
import pickle
import random
import re
import uuid
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spdnas.data.s3 import comparable_uri

CHECKPOINT_FILE = "checkpoint.pt"


def capture_rng(device: torch.device) -> dict[str, Any]:
    """States of Python's, NumPy's and torch's global generators: the CPU one, and on a CUDA
    ``device`` that device's own (not every visible GPU's: a run may resume on a machine with
    fewer GPUs, or on another one)."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 (the global generator is what we restore)
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict[str, Any], device: torch.device) -> None:
    """Restore :func:`capture_rng`'s generators; a CUDA state goes to ``device`` (a checkpoint of
    a CPU run, or a CPU run of a CUDA checkpoint, restores the CPU generators only)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is None or device.type != "cuda":
        return
    if isinstance(cuda, list):  # checkpoints before 2026-12 saved every visible GPU's state
        index = device.index or 0
        if index >= len(cuda):
            return
        cuda = cuda[index]
    torch.cuda.set_rng_state(cuda, device)


def save_checkpoint(state: dict[str, Any], directory: str | Path) -> Path:
    """Write ``state`` to ``directory/checkpoint.pt`` atomically and durably (a crash, even of the
    machine, leaves the old file); temporary files left by writes that were killed are removed."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(".checkpoint-*.tmp"):
        stale.unlink(missing_ok=True)
    target = directory / CHECKPOINT_FILE
    tmp = str(directory / f".checkpoint-{uuid.uuid4().hex}.tmp")
    # the mode a plain open() gives (the umask applies), without reading the process-wide umask,
    # whose read-and-restore would give files other threads create meanwhile mode 666
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        _fsync_directory(directory)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not every platform opens directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_NUMPY_ARRAYS = [np.ndarray, np.dtype, type(np.dtype(np.uint32)), np.core.multiarray._reconstruct
                 if not hasattr(np, "_core") else np._core.multiarray._reconstruct]
"""What NumPy's global generator state (an array of uint32) needs from the weights-only unpickler."""


def load_torch_file(path: str | Path, what: str, hint: str = "",
                    map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` of a file spdnas wrote; an empty, truncated or foreign file is a
    ``ValueError`` ``"{path}: {what} ({error}){hint}"`` (a missing one stays ``FileNotFoundError``).

    Only tensors, NumPy arrays (the RNG states of checkpoints) and plain containers are loaded:
    no code runs, whoever wrote the file (shared storage, a ``model.pt`` from elsewhere)."""
    if Path(path).is_file() and not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        size = Path(path).stat().st_size
        reason = "not a file written by torch.save, or cut short" if size else "empty"
        raise ValueError(f"{path}: {what} ({reason}){hint}")
    try:
        with torch.serialization.safe_globals(_NUMPY_ARRAYS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except (FileNotFoundError, AttributeError, ImportError):  # missing, or a torch too old: not damage
        raise
    except Exception as exc:  # a damaged archive raises all kinds (RuntimeError, KeyError, IndexError, ...)
        raise ValueError(f"{path}: {what} ({_load_failure(exc)}){hint}") from None


def _load_failure(exc: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` failed, in a few words.

    Torch's text of a refused file advises loading it again with ``weights_only=False``, which
    runs whatever code the file holds: a file from elsewhere must not be loaded so, and our
    messages do not pass that advice on. The other errors keep their first sentence.

    Parameters
    ----------
    exc : BaseException
        What ``torch.load`` raised.

    Returns
    -------
    str
        E.g. ``"it refers to the Python object getattr: ..."`` or ``"empty or cut short"``.
    """
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError):
        refused = re.search(r"GLOBAL (\S+)", text)
        what = f"it refers to the Python object {refused.group(1)}" if refused else "it holds Python objects"
        return f"{what}: spdnas loads only tensors and plain data, no objects that could run code"
    if isinstance(exc, EOFError):
        return "empty or cut short"
    first = re.split(r"(?<=\w\.)\s", text.splitlines()[0])[0] if text.strip() else "no detail"
    return f"{type(exc).__name__}: {first}"


def load_checkpoint(directory: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The state saved by :func:`save_checkpoint` in ``directory``.

    Raises
    ------
    FileNotFoundError
        If there is none.
    ValueError
        Naming the file if it is damaged (empty or truncated, e.g. after a machine crash).
    """
    path = Path(directory) / CHECKPOINT_FILE
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    state = load_torch_file(path, "damaged checkpoint", "; start over (--no-resume) or give the run "
                            "another name (name=...)", map_location)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a checkpoint of spdnas (a {type(state).__name__})")
    return state


LOCAL_CHECKPOINT_DIR = "checkpoint"
"""Where the local backend keeps a run's checkpoint, under the run folder; the Ray backend keeps
``epoch_NNNN/`` folders there instead."""


def ray_checkpoint_name(epoch: int) -> str:
    """The folder of the Ray backend's checkpoint after ``epoch``, under the run folder."""
    return f"epoch_{epoch:04d}"


def ray_epochs(run_folder: str | Path) -> list[int]:
    """The epochs of the Ray backend's checkpoints (``epoch_NNNN/checkpoint.pt``) in the local
    ``run_folder``, newest first."""
    names = (p.parent.name for p in Path(run_folder).glob(f"epoch_*/{CHECKPOINT_FILE}"))
    return sorted((int(name.removeprefix("epoch_")) for name in names
                   if name.removeprefix("epoch_").isdigit()), reverse=True)


def newest_ray_checkpoint(run_folder: str | Path) -> tuple[dict[str, Any], Path] | None:
    """The Ray backend's newest readable checkpoint in the local ``run_folder`` (a folder of an
    upload cut short is skipped): its state and its file; None if there is none."""
    for epoch in ray_epochs(run_folder):
        directory = Path(run_folder) / ray_checkpoint_name(epoch)
        try:
            return load_checkpoint(directory), directory / CHECKPOINT_FILE
        except ValueError:
            continue
    return None


def newest_state(run_folder: str | Path) -> dict[str, Any] | None:
    """The furthest-along state among the checkpoints in the local ``run_folder``: the local
    backend's and the Ray backend's newest readable ``epoch_NNNN``; None if there is none. A run
    may be started on the Ray backend and resumed on the local one."""
    folder = Path(run_folder)
    found = []
    if (folder / LOCAL_CHECKPOINT_DIR / CHECKPOINT_FILE).exists():
        found.append(load_checkpoint(folder / LOCAL_CHECKPOINT_DIR))
    ray = newest_ray_checkpoint(folder)
    if ray is not None:
        found.append(ray[0])
    return max(found, key=lambda state: int(state["epoch"])) if found else None


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value and key != "builder_params":
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


_SEARCH_SPLIT = ("data.search_val_fraction", "data.split_seed", "data.search_split")
_LAYOUT_KEYS = ("num_workers", "data", "sync_batchnorm")


def _worker_layout(config: dict[str, Any]) -> tuple[Any, ...] | None:
    """The distributed settings that change a run's numbers; None where N workers compute what
    one does (one worker, the local backend, or every worker on all rows with synchronised batch
    norm). Otherwise each worker's batch norm sees its own slice, or its own shard of the data."""
    d = config.get("distributed") or {}
    if (d.get("backend") == "local" or d.get("num_workers", 1) == 1
            or (d.get("sync_batchnorm", True) and d.get("data", "replicate") == "replicate")):
        return None
    return tuple(d.get(k) for k in _LAYOUT_KEYS)


def layout_change(saved_config: dict[str, Any], config: dict[str, Any]) -> str | None:
    """``"distributed (before -> after)"`` where the workers' layout changes the numbers
    (:func:`_worker_layout`) between a saved and a new configuration, else None."""
    before, after = _worker_layout(saved_config), _worker_layout(config)
    if before == after:
        return None
    return f"distributed ({_describe_layout(before)} -> {_describe_layout(after)})"


def _describe_layout(layout: tuple[Any, ...] | None) -> str:
    if layout is None:
        return "as one worker"
    return ", ".join(f"{k}={v!r}" for k, v in zip(_LAYOUT_KEYS, layout, strict=True))


def _same_setting(key: str, mine: Any, theirs: Any) -> bool:
    """Whether a setting is unchanged; ``radar``, ``./radar/`` and its absolute path are one ``data.uri``."""
    if key == "data.uri" and isinstance(mine, str) and isinstance(theirs, str):
        return comparable_uri(mine) == comparable_uri(theirs)
    return mine == theirs


def check_resumable(saved_config: dict[str, Any] | None, config: dict[str, Any], step: str,
                    saved_epoch: int) -> None:
    """Refuse to continue a checkpoint made with other settings than ``config``'s.

    The settings that decide what a ``step`` ("search" or "train") run computes must match:
    ``data`` (for "train" less the search's division of train; ``data.uri`` as a place, so
    ``radar``, ``./radar/`` and its absolute path are one; not ``data.builder``/``builder_params``:
    the dataset's contents are checked on their own, by ``pipeline.check_same_data``), ``model``,
    the step's own section (its ``epochs`` may grow: raising it extends the run),
    ``runtime.seed``/``runtime.dtype`` and the workers' layout where it changes the numbers
    (:func:`_worker_layout`: unsynchronised batch norm or sharded data over several workers).
    Where and how fast it runs (device, threads, the number of exact workers, output folder,
    progress) may change.
    Checkpoints written before the configuration was saved in them are not checked; a
    configuration saved before ``data.search_split`` existed drew its search halves per class
    (``stratified``).

    Raises
    ------
    ValueError
        Naming the settings that differ, or the epochs the run already has.
    """
    epochs = config[step]["epochs"]
    if saved_epoch > epochs:
        raise ValueError(f"this {step} run already has {saved_epoch} epochs, more than {step}.epochs="
                         f"{epochs}: start over (--no-resume) or give the run another name (name=...)")
    if saved_config is None:
        return
    decisive = ("data", "model", step)
    # a retraining works on the dataset's own train/val splits: how the search divided train
    # does not change it (the architecture it retrains is checked on its own)
    # the data's contents are compared on their own (pipeline.check_same_data): how the dataset
    # was made does not matter once it exists
    ignored = {f"{step}.epochs", "data.builder", "data.builder_params",
               *(_SEARCH_SPLIT if step == "train" else ())}
    mine, theirs = _flatten(config), _flatten(saved_config)
    if "data.search_val_fraction" in theirs:  # saved before the setting existed: halves per class
        theirs.setdefault("data.search_split", "stratified")
    # keys only one side knows (settings added or removed by another version) are not judged
    keys = sorted(k for k in set(mine) & set(theirs)
                  if (k.split(".")[0] in decisive and k not in ignored)
                  or k in ("runtime.seed", "runtime.dtype"))
    changed = [f"{k} ({theirs[k]!r} -> {mine[k]!r})" for k in keys
               if not _same_setting(k, mine[k], theirs[k])]
    layout = layout_change(saved_config, config)
    if layout:
        changed.append(layout)
    if changed:
        raise ValueError(f"the {step} checkpoint of this run was made with other settings: "
                         f"{'; '.join(changed[:6])}{' ...' if len(changed) > 6 else ''}. Start over "
                         "(--no-resume) or give the run another name (name=...)")
