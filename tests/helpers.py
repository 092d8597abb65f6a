"""Test helpers: seeded SPD matrices with controlled spectra."""

from __future__ import annotations

import torch


def random_spd(*batch: int, n: int, cond: float = 10.0, dtype=torch.float64,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Random SPD matrices with eigenvalues log-spaced in [1, cond], shape (*batch, n, n)."""
    g = generator or torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(*batch, n, n, dtype=torch.float64, generator=g))
    eig = torch.logspace(0, torch.log10(torch.tensor(cond)).item(), n, dtype=torch.float64)
    eig = eig * torch.exp(0.1 * torch.randn(*batch, n, dtype=torch.float64, generator=g))
    x = (q * eig.unsqueeze(-2)) @ q.transpose(-1, -2)
    return (0.5 * (x + x.transpose(-1, -2))).to(dtype)


def rotated(eigenvalues: list[float], seed: int = 0) -> torch.Tensor:
    """``Q diag(eigenvalues) Qᵀ`` with a random rotation ``Q`` (float64)."""
    g = torch.Generator().manual_seed(seed)
    n = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=g))
    x = q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T
    return 0.5 * (x + x.T)


def spd_classification(per_class: int, classes: int = 3, n: int = 8, seed: int = 0,
                       dof: int | None = None, spread: float = 1.0):
    """A small separable SPD problem: Wishart samples around random class centres.

    Returns ``(x (N, n, n) float64, y (N,) int64)``, classes interleaved.
    """
    g = torch.Generator().manual_seed(seed)
    dof = dof or 3 * n
    centres = []
    for _ in range(classes):
        a = torch.randn(n, n, dtype=torch.float64, generator=g)
        centres.append(spread * a @ a.T / n + torch.eye(n, dtype=torch.float64))
    xs, ys = [], []
    for c, centre in enumerate(centres):
        noise = torch.randn(per_class, n, dof, dtype=torch.float64, generator=g)
        root = torch.linalg.cholesky(centre)
        xs.append(root @ (noise @ noise.mT / dof) @ root.T)
        ys.append(torch.full((per_class,), c, dtype=torch.long))
    x, y = torch.cat(xs), torch.cat(ys)
    order = torch.randperm(len(y), generator=g)
    x = x[order]
    return 0.5 * (x + x.mT), y[order]


def toy_dataset(per_class: int, seed: int, name: str = "toy", n: int = 6):
    """Three classes ``a, b, c`` of ``n × n`` SPD matrices, split train, train, val, test in turn."""
    import numpy as np

    from spdnas.data import DatasetMeta, SPDDataset

    x, y = spd_classification(per_class, classes=3, n=n, seed=seed)
    count = 3 * per_class
    splits = np.array(["train", "train", "val", "test"] * (count // 4))
    meta = DatasetMeta(name=name, n=n, class_names=("a", "b", "c"), source="tests")
    return SPDDataset(matrices=x, labels=y, splits=splits,
                      sample_ids=np.array([f"s{i:03d}" for i in range(count)]), meta=meta)
