"""Device, dtype and thread settings of a run."""

from __future__ import annotations

import torch

from spdnas.config import RuntimeConfig

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def setup_runtime(runtime: RuntimeConfig) -> tuple[torch.dtype, torch.device]:
    """Apply the thread count and resolve ``(dtype, device)``; clear error if CUDA is missing."""
    torch.set_num_threads(runtime.threads)
    device = torch.device(runtime.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"runtime.device={runtime.device!r} but this torch build sees no CUDA device")
    return DTYPES[runtime.dtype], device
