"""Data-parallel scaling of the search: bytes communicated per step, and samples/s with N workers.

``comm``: two processes (torch.distributed, gloo on 127.0.0.1) run real search steps exactly as
Ray Train workers do (gradient averaging in one flat all-reduce, synchronised batch norm, summed
metrics) while every ``all_reduce`` is counted by what it carries. This is the payload per
worker per step; a ring all-reduce moves 2 (N-1)/N times it over each worker's link, so the
traffic per worker stays flat as N grows while the compute per worker shrinks as 1/N.
Varying cells, channels and the input size shows how it grows with α and with the network.

``throughput``: a real ``spdnas search`` through Ray Train on the radar data (1500 samples,
search halves 750/750) with 1 and 2 workers on the same global batch; samples/s = search-train
samples / seconds of the second epoch (the first pays for start-up). Ray listens on all
interfaces, so run this part in a private network namespace, as root::

    unshare --net --pid --fork --mount-proc bash -c \\
        "ip link set lo up && RAY_AUTH_MODE=disabled .venv/bin/python benchmarks/scale_bench.py throughput"

Usage: python benchmarks/scale_bench.py comm [--orders first second] [--batch 30]
       python benchmarks/scale_bench.py throughput [--workers 1 2] [--epochs 2] [--orders first]
              [key=value ...]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import tempfile
import warnings
from collections import Counter
from datetime import timedelta

# name: (n, classes, config overrides): the α and the network grow down the list
NETWORKS = {
    "radar 2 cells, channels 2,4": (20, 3, ["model.reduced_dims=[10]"]),
    "radar 4 cells, channels 2,4,4,8": (20, 3, ["model.reduced_dims=[10,5]",
                                                "model.cells=[reduce,normal,reduce,normal]",
                                                "model.cell_channels=[2,4,4,8]"]),
    "radar 2 cells, channels 4,8": (20, 3, ["model.reduced_dims=[10]", "model.cell_channels=[4,8]"]),
    "hdm05 2 cells, channels 2,4": (93, 117, ["model.reduced_dims=[30]", "model.pool_kernel=4",
                                              "model.pool_stride=3"]),
}


def _comm_worker(rank: int, world: int, port: int, name: str, order: str, batch: int, queue) -> None:
    import torch
    import torch.distributed as dist

    from spdnas.config import load_config
    from spdnas.distributed import collective
    from spdnas.nn.batchnorm import BatchNormSPD
    from spdnas.search.searcher import Searcher

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=300))
    warnings.filterwarnings("ignore", category=FutureWarning)  # torch's all_reduce-with-autograd notice
    torch.set_num_threads(1)
    n, classes, overrides = NETWORKS[name]
    cfg = load_config(None, [*overrides, f"search.order={order}", "runtime.threads=1"])
    torch.manual_seed(0)
    searcher = Searcher(cfg.model, cfg.search, n, classes, dtype=torch.float64,
                        reduce=lambda grads: tagged("gradients", collective.average_gradients, grads))
    for layer in (m for m in searcher.supernet.modules() if isinstance(m, BatchNormSPD)):
        layer.synchronise(lambda t: tagged("batch norm", collective.differentiable_sum, t), world)

    counts: Counter = Counter()
    phase = ["untagged"]  # only the backward of the batch norms' all-reduces runs untagged (in autograd)
    real_all_reduce = dist.all_reduce

    def tagged(what, fn, arg):
        phase.append(what)
        try:
            return fn(arg)
        finally:
            phase.pop()

    def counting_all_reduce(tensor, *args, **kwargs):
        counts[phase[-1]] += tensor.numel() * tensor.element_size()
        counts[phase[-1] + " calls"] += 1
        return real_all_reduce(tensor, *args, **kwargs)

    dist.all_reduce = counting_all_reduce
    local = batch // world
    gen = torch.Generator().manual_seed(rank)
    a = torch.randn(2 * local, n, 2 * n, dtype=torch.float64, generator=gen)
    x = a @ a.mT / (2 * n) + 1e-3 * torch.eye(n, dtype=torch.float64)
    y = torch.randint(0, classes, (2 * local,), generator=gen)
    searcher.step((x[:local], y[:local]), (x[local:], y[local:]))  # warm-up, then count one step
    counts.clear()
    searcher.step((x[:local], y[:local]), (x[local:], y[local:]))
    metrics = torch.zeros(3, dtype=torch.float64)
    tagged("metrics", collective.sum_metrics, metrics)
    if rank == 0:
        queue.put({"weights": sum(p.numel() for p in searcher.weights),
                   "alphas": sum(p.numel() for p in searcher.alphas.parameters()), **counts})
    dist.destroy_process_group()


def comm(orders: list[str], batch: int) -> None:
    import torch.multiprocessing as mp

    print(f"bytes all-reduced per worker per search step (float64, 2 workers, global batch {batch});")
    print("a ring all-reduce sends 2(N-1)/N x this over each worker's link per step")
    header = (f"{'network':34s} {'order':6s} {'weights':>8s} {'α':>5s} {'gradients':>10s} {'BN fwd':>9s}"
              f" {'calls':>5s} {'BN bwd':>9s} {'calls':>5s} {'metrics':>8s} {'total KiB':>10s}")
    print(header)
    ctx = mp.get_context("spawn")
    for name in NETWORKS:
        for order in orders:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            queue = ctx.Queue()
            procs = [ctx.Process(target=_comm_worker, args=(r, 2, port, name, order, batch, queue))
                     for r in range(2)]
            for p in procs:
                p.start()
            for p in procs:
                p.join(timeout=1800)
                if p.exitcode is None:
                    p.terminate()
            if any(p.exitcode for p in procs):
                codes = [p.exitcode for p in procs]
                raise RuntimeError(f"{name} ({order}): a worker failed (exit codes {codes})")
            r = queue.get(timeout=10)
            grads, bn, back, metrics = (r.get(k, 0) for k in ("gradients", "batch norm", "untagged",
                                                              "metrics"))
            calls, back_calls = r.get("batch norm calls", 0), r.get("untagged calls", 0)
            total = grads + bn + back + metrics
            print(f"{name:34s} {order:6s} {r['weights']:>8d} {r['alphas']:>5d} {grads:>10d} {bn:>9d}"
                  f" {calls:>5d} {back:>9d} {back_calls:>5d} {metrics:>8d} {total / 1024:>10.1f}", flush=True)


def throughput(workers: list[int], epochs: int, orders: list[str], overrides: list[str]) -> None:
    from spdnas.config import load_config
    from spdnas.distributed.runner import ray_session
    from spdnas.pipeline import load_experiment_data, search

    print(f"Ray Train search on radar-synth (search-train 750 samples, global batch 30), "
          f"epoch {epochs} timed, {os.cpu_count()} CPUs {' '.join(overrides)}")
    print(f"{'workers':>7s} {'order':>6s} {'epoch s':>8s} {'samples/s':>10s}")
    with tempfile.TemporaryDirectory() as out:
        for order in orders:
            for n in workers:
                cfg = load_config("configs/radar.yaml", [
                    f"search.epochs={epochs}", f"search.order={order}", f"distributed.num_workers={n}",
                    "distributed.backend=ray", f"runtime.output_dir={out}", f"name=scale-{order}-{n}",
                    "runtime.progress=false", *overrides])
                with ray_session(cfg.distributed), contextlib.redirect_stdout(sys.stderr):
                    outcome = search(cfg, resume=False)
                seconds = outcome.history[-1]["seconds"]
                samples = len(load_experiment_data(cfg).search_train)
                print(f"{n:>7d} {order:>6s} {seconds:>8.1f} {samples / seconds:>10.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    c = sub.add_parser("comm")
    c.add_argument("--orders", nargs="+", default=["first", "second"])
    c.add_argument("--batch", type=int, default=30)
    t = sub.add_parser("throughput")
    t.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    t.add_argument("--epochs", type=int, default=2)
    t.add_argument("--orders", nargs="+", default=["first"])
    t.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args()
    if args.part == "comm":
        comm(args.orders, args.batch)
    else:
        throughput(args.workers, args.epochs, args.orders, args.overrides)


if __name__ == "__main__":
    main()
