"""Speed and memory of search steps (first/second order) and final-network training steps.

Each configuration runs in a fresh subprocess so its peak memory (max RSS) is its own.
Inputs are random SPD batches of the dataset's shape. ``--alphas uniform`` (default) holds the
architecture at the start of a search (every candidate active), its slowest point;
``--alphas sparse`` holds α ~ N(0, 1), where sparsemax keeps a few candidates per edge, as in
the middle of a search.

Usage: python benchmarks/search_bench.py [--shapes radar hdm05] [--orders first second]
       [--dtypes float64 float32] [--steps 5] [--threads 1] [--batch 32] [--alphas sparse]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

SHAPES = {
    # name: (n, classes, overrides)
    "radar": (20, 3, ["model.reduced_dims=[10]"]),
    "hdm05": (93, 117, ["model.reduced_dims=[30]", "model.pool_kernel=4", "model.pool_stride=3"]),
}


def worker(shape: str, order: str, dtype: str, steps: int, threads: int, batch: int, alphas: str) -> dict:
    import resource

    import torch

    from spdnas.config import load_config
    from spdnas.engine.runtime import setup_runtime
    from spdnas.models.network import GenotypeNetwork
    from spdnas.nn.optim import weight_optimizer
    from spdnas.search.genotype import published_genotype
    from spdnas.search.searcher import Searcher

    n, classes, overrides = SHAPES[shape]
    cfg = load_config(None, [*overrides, f"search.order={order}", f"runtime.dtype={dtype}",
                             f"runtime.threads={threads}", "runtime.torch_threads=1"])
    torch_dtype, device = setup_runtime(cfg.runtime)
    torch.manual_seed(0)
    a = torch.randn(2 * batch, n, 2 * n, dtype=torch.float64)
    x = (a @ a.mT / (2 * n) + 1e-3 * torch.eye(n, dtype=torch.float64)).to(torch_dtype)
    y = torch.randint(0, classes, (2 * batch,))
    train, val = (x[:batch], y[:batch]), (x[batch:], y[batch:])

    searcher = Searcher(cfg.model, cfg.search, n, classes, dtype=torch_dtype, device=device)
    gen = torch.Generator().manual_seed(1)
    fixed = {k: (torch.randn(v.shape, generator=gen, dtype=v.dtype) if alphas == "sparse" else v * 0 + 1e-3)
             for k, v in searcher.alphas.state_dict().items()}
    searcher.alphas.load_state_dict(fixed)
    with torch.no_grad():
        active = float(torch.cat([(w > 0).sum(1) for w in searcher.mixture()]).double().mean())
    times = []
    for i in range(steps + 1):
        searcher.alphas.load_state_dict(fixed)
        start = time.perf_counter()
        searcher.step(train, val)
        if i:
            times.append(time.perf_counter() - start)

    genotype = published_genotype("hdm05" if shape == "hdm05" else "radar")
    net = GenotypeNetwork(genotype, cfg.model, n, classes, dtype=torch_dtype, device=device)
    opt = weight_optimizer(net.parameters(), lr=0.025)
    train_times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(train[0]), train[1]).backward()
        opt.step()
        if i:
            train_times.append(time.perf_counter() - start)
    return {"active": active, "step_ms": 1e3 * statistics.median(times),
            "train_step_ms": 1e3 * statistics.median(train_times),
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["radar", "hdm05"], choices=sorted(SHAPES))
    parser.add_argument("--orders", nargs="+", default=["first", "second"])
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="eigh threads (0: all cores)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--alphas", default="uniform", choices=["uniform", "sparse"],
                        help="uniform: every candidate active (search start); sparse: α ~ N(0, 1), "
                             "so sparsemax keeps a few candidates per edge (mid-search)")
    parser.add_argument("--worker", nargs=7, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        shape, order, dtype, steps, threads, batch, alphas = args.worker
        print(json.dumps(worker(shape, order, dtype, int(steps), int(threads), int(batch), alphas)))
        return
    print(f"median of {args.steps} steps after one warm-up; batch {args.batch}; "
          f"eigh threads {args.threads or 'all cores'}, 1 torch thread; α {args.alphas}")
    print(f"{'shape':>6} {'order':>6} {'dtype':>8} {'active/edge':>11} {'search ms/step':>15} "
          f"{'final-net ms/step':>18} {'peak MiB':>9}")
    for shape in args.shapes:
        for dtype in args.dtypes:
            for order in args.orders:
                cmd = [sys.executable, __file__, "--worker", shape, order, dtype, str(args.steps),
                       str(args.threads), str(args.batch), args.alphas]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{shape:>6} {order:>6} {dtype:>8} {r['active']:>11.2f} {r['step_ms']:>15.1f} "
                      f"{r['train_step_ms']:>18.1f} {r['peak_mib']:>9.0f}", flush=True)


if __name__ == "__main__":
    main()
