"""Device, dtype and thread settings of a run."""

from __future__ import annotations

import os

import torch

from spdnas.config import RuntimeConfig
from spdnas.geometry.spectral import set_eigh_threads

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def available_cpus() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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
