"""Device, dtype and thread settings of a run."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from spdnas.config import RuntimeConfig
from spdnas.geometry.spectral import set_eigh_threads

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def available_cpus() -> int:
    """CPU cores this process may run on: its affinity, capped by a cgroup CPU quota (a container's
    ``--cpus`` or a Kubernetes CPU limit, which the affinity does not show)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(Path("/sys/fs/cgroup"))
    return cpus if quota is None else max(1, min(cpus, math.ceil(quota)))


def cgroup_cpu_quota(root: Path) -> float | None:
    """CPUs' worth of time the cgroup at ``root`` may use (cgroup v2 ``cpu.max``, or v1
    ``cpu/cpu.cfs_quota_us`` over ``cpu.cfs_period_us``); None where there is no limit or no
    readable cgroup."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    try:
        quota_us, period_us = float(quota), float(period)
    except ValueError:  # "max": no limit
        return None
    cpus = quota_us / period_us if quota_us > 0 and period_us > 0 else None  # v1 writes -1 for none
    return cpus if cpus is not None and math.isfinite(cpus) else None


def setup_runtime(runtime: RuntimeConfig) -> tuple[torch.dtype, torch.device]:
    """Apply the thread count and resolve ``(dtype, device)``; clear error if CUDA is missing."""
    torch.set_num_threads(runtime.torch_threads)
    set_eigh_threads(runtime.threads or available_cpus())
    device = torch.device(runtime.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"runtime.device={runtime.device!r} but this torch build sees no CUDA device")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"runtime.device={runtime.device!r} but this process sees "
                               f"{torch.cuda.device_count()} CUDA device(s)")
        if device.index is None:  # plain "cuda": the current device, named so that checkpoints can
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)  # so that plain "cuda" tensors land on this device too
    return DTYPES[runtime.dtype], device
