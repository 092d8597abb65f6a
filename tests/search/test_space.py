"""Every candidate operation does what SPEC §3's tables say, checked against the layers
composed here by hand (matrix functions from ``torch.linalg.eigh``, BiMap as ``Wᵀ X W``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spdnas.geometry import karcher_mean, sparsemax
from spdnas.nn import BatchNormSPD, BiMap, WeightedChannelPooling
from spdnas.search.space import NORMAL, REDUCE, OpShape, SPDState, build_op, op_names
from tests.helpers import random_spd

F64 = torch.float64
EPS = 0.3  # a ReEig threshold that every op's inputs and BN outputs cross


def _function(x, f):
    lam, u = torch.linalg.eigh(x)
    return (u * f(lam).unsqueeze(-2)) @ u.mT


def reeig(x):
    return _function(x, lambda lam: lam.clamp_min(EPS))


def bimap(w, x):
    """``Σ_i W_oiᵀ X_i W_oi`` for ``w (C_out, C_in, n, m)``, ``x (B, C_in, n, n)``."""
    return sum(w[:, i].mT @ x[:, i:i + 1] @ w[:, i] for i in range(w.shape[1]))


def pool(x, mode):
    log = _function(x, torch.log)
    pooled = (F.avg_pool2d if mode == "avg" else F.max_pool2d)(log, 2, 2)
    return _function(pooled, torch.exp)


def direct_sum(a, b):
    """Block-diagonal ``[[A, 0], [0, B]]`` of every pair of matrices."""
    flat = [torch.block_diag(p, q) for p, q in zip(a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:]),
                                                    strict=True)]
    return torch.stack(flat).reshape(*a.shape[:-2], *flat[0].shape)


def parts(op, kind):
    return [m for m in op.modules() if isinstance(m, kind)]


def spec(kind: str, name: str, op, x):
    """The operation as SPEC §3 defines it, from the op's own parameters (order checked)."""
    bimaps, bns = [b.weight.detach() for b in parts(op, BiMap)], parts(op, BatchNormSPD)
    m = op.dim if name == "none" else None

    def bn(y):
        (layer,) = bns
        fresh = BatchNormSPD(layer.dim, karcher_iterations=3, dtype=F64)
        fresh.load_state_dict(layer.state_dict())
        return fresh(y)

    def one(ws):
        (w,) = ws
        return w

    table = {
        (NORMAL, "none"): lambda: torch.eye(m, dtype=F64).expand(x.shape[0], x.shape[1], m, m),
        (NORMAL, "BiMap_0"): lambda: bn(bimap(one(bimaps), x)),
        (NORMAL, "BiMap_1"): lambda: reeig(bn(bimap(one(bimaps), x))),
        (NORMAL, "BiMap_2"): lambda: bn(bimap(one(bimaps), reeig(x))),
        (NORMAL, "Skip"): lambda: x,
        (REDUCE, "none"): lambda: torch.eye(m, dtype=F64).expand(x.shape[0], x.shape[1], m, m),
        (REDUCE, "AvgPooling"): lambda: bn(pool(x, "avg")),
        (REDUCE, "MaxPooling"): lambda: bn(pool(x, "max")),
        (REDUCE, "BiMap_1"): lambda: bn(bimap(one(bimaps), reeig(x))),
        (REDUCE, "BiMap_2"): lambda: reeig(bn(bimap(one(bimaps), x))),
        (REDUCE, "Skip"): lambda: direct_sum(*(bimap(w, x) for w in bimaps)),
    }
    if name == "WeightedPooling":
        (layer,) = parts(op, WeightedChannelPooling)
        w = sparsemax(layer.logits.detach())  # (C_out, C_in)
        return torch.stack([karcher_mean(x, w[o], iterations=3) for o in range(w.shape[0])], dim=1)
    return table[(kind, name)]()


@pytest.mark.parametrize("kind", [NORMAL, REDUCE])
def test_every_operation_matches_its_definition(kind):
    torch.manual_seed(0)
    channels, n = 3, 8
    m = n if kind == NORMAL else n // 2
    shape = OpShape(channels, n, m, pool_kernel=2, pool_stride=2, karcher_iterations=3,
                    bn_momentum=0.1, reeig_eps=EPS, dtype=F64)
    x = random_spd(6, channels, n=n, cond=30.0) * 0.1  # eigenvalues 0.1-3: ReEig at 0.3 bites
    assert float(torch.linalg.eigvalsh(x).min()) < EPS
    for name in op_names(kind):
        op = build_op(kind, name, shape).train()
        with torch.no_grad():
            for layer in parts(op, BatchNormSPD):  # a non-trivial bias that ReEig at 0.3 cuts into
                bias = random_spd(1, n=m, cond=5.0, generator=torch.Generator().manual_seed(1))[0]
                layer.bias.copy_(0.1 * bias)
            for layer in parts(op, WeightedChannelPooling):  # a sparse row, a mixed one
                layer.logits.copy_(torch.tensor([[2.0, 0, 0], [0.5, 0.4, 0.1], [0.1, 0.9, 0.7]]))
        got = op(SPDState(x, EPS))
        expected = spec(kind, name, op, x)
        assert got.shape == (6, channels, m, m), name
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10, msg=f"{kind} {name}")


def test_operations_differ_from_each_other():
    """The table's rows are distinct functions on these inputs (so a swap would be seen)."""
    torch.manual_seed(0)
    shape = OpShape(2, 6, 6, 2, 2, 1, 0.1, EPS, F64)
    x = random_spd(4, 2, n=6, cond=30.0) * 0.1
    outputs = {}
    for name in op_names(NORMAL):
        torch.manual_seed(3)  # the same BiMap weights in every op
        outputs[name] = build_op(NORMAL, name, shape)(SPDState(x, EPS))
    names = list(outputs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not torch.allclose(outputs[a], outputs[b], atol=1e-6), (a, b)
