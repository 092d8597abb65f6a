"""The ``spdnas`` command (also ``python -m spdnas``)."""

from __future__ import annotations

import argparse
import sys

import torch

from spdnas.data.cli import add_data_commands


def _quickstart(args: argparse.Namespace) -> int:
    """Geometry demo: minimum-distance-to-mean classification of synthetic SPD classes."""
    from spdnas.geometry import distance, karcher_mean

    g = torch.Generator().manual_seed(args.seed)
    n, per_class, classes = 6, 40, 3
    centres = []
    for _ in range(classes):
        a = torch.randn(n, n, dtype=torch.float64, generator=g)
        centres.append(a @ a.T / n + torch.eye(n, dtype=torch.float64))
    samples, labels = [], []
    for c, centre in enumerate(centres):
        noise = torch.randn(per_class, n, 3 * n, dtype=torch.float64, generator=g)
        cov = noise @ noise.mT / (3 * n)
        root = torch.linalg.cholesky(centre)
        samples.append(root @ cov @ root.T)
        labels += [c] * per_class
    x, y = torch.cat(samples), torch.tensor(labels)
    train = torch.arange(len(y)) % 2 == 0
    means = torch.stack([karcher_mean(x[train & (y == c)], iterations=20, tol=1e-10)
                         for c in range(classes)])
    dist = distance(means[None], x[~train][:, None])
    accuracy = float((dist.argmin(1) == y[~train]).double().mean())
    print(f"minimum distance to Karcher mean, {classes} classes of {n}x{n} SPD matrices: "
          f"test accuracy {100 * accuracy:.1f}% on {int((~train).sum())} samples")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spdnas", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    quick = sub.add_parser("quickstart", help="run the main demo end to end")
    quick.add_argument("--seed", type=int, default=0)
    quick.set_defaults(func=_quickstart)
    add_data_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
