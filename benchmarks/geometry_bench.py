"""Per-call time of the spectral matrix functions and the Karcher mean (forward + backward).

Usage: python benchmarks/geometry_bench.py [--threads 1 2] [--dtype float64] [--repeats 5]
Prints one row per (threads, shape, function): median milliseconds per forward+backward call.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from spdnas.geometry import (
    karcher_mean,
    sym_exp,
    sym_invsqrt,
    sym_log,
    sym_rectify,
    sym_sqrt,
    trusted,
)

FUNCTIONS = {
    "log": sym_log,
    "exp": sym_exp,
    "sqrt": sym_sqrt,
    "invsqrt": sym_invsqrt,
    "rectify": lambda x: sym_rectify(x, 1e-4),
    "karcher(K=8)": lambda x: karcher_mean(x),
}
SHAPES = [(30, 8, 20, 20), (30, 8, 10, 10), (30, 8, 93, 93), (30, 8, 30, 30)]


def spd_batch(shape, dtype):
    a = torch.randn(*shape, dtype=dtype)
    return a @ a.mT / shape[-1] + 0.1 * torch.eye(shape[-1], dtype=dtype)


def time_call(fn, x, repeats):
    times = []
    for i in range(repeats + 1):
        inp = x.clone().requires_grad_()
        start = time.perf_counter()
        fn(inp).sum().backward()
        if i:  # first call warms up
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, torch.get_num_threads()])
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    print(f"torch {torch.__version__}, dtype {args.dtype}, median of {args.repeats} calls")
    print(f"{'threads':>7} {'shape':>18} {'function':>13} {'ms/call':>9}")
    with trusted():
        for threads in dict.fromkeys(args.threads):
            torch.set_num_threads(threads)
            for shape in SHAPES:
                x = spd_batch(shape, dtype)
                for name, fn in FUNCTIONS.items():
                    ms = 1e3 * time_call(fn, x, args.repeats)
                    print(f"{threads:>7} {'x'.join(map(str, shape)):>18} {name:>13} {ms:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
