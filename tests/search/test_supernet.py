"""Supernet semantics: one-hot equivalence with the genotype network, exact sparsemax skipping,
architecture parameters kept apart, the cell plan."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from spdnas.config import ModelConfig
from spdnas.geometry import karcher_mean
from spdnas.models.network import GenotypeNetwork, inherit_supernet_weights
from spdnas.nn.batchnorm import frozen_running_stats
from spdnas.search.cells import count_parameters, plan_cells
from spdnas.search.genotype import Genotype, derive_genotype, published_genotype, random_genotype
from spdnas.search.space import SPDState, op_names
from spdnas.search.supernet import ArchitectureParameters, MixedEdge, Supernet
from tests.helpers import random_spd, spd_classification

F64 = torch.float64
SMALL = ModelConfig(reduced_dims=[4])


def logits_for(genotype: Genotype, kind: str, steps: int) -> torch.Tensor:
    """One-hot logits: the genotype's op on its edges, ``none`` on every other edge."""
    logits = torch.zeros(sum(2 + i for i in range(steps)), 6, dtype=F64)
    logits[:, 0] = 5.0
    offset = 0
    for i in range(steps):
        for op, node in genotype.cell(kind)[2 * i: 2 * i + 2]:
            kind_of_edge = "reduce" if kind == "reduce" and node < 2 else "normal"
            row = logits[offset + node]
            row.zero_()
            row[op_names(kind_of_edge).index(op)] = 5.0
        offset += 2 + i
    return logits


# Every operation the published genotypes leave out: WeightedPooling, both poolings, the
# reduced (direct-sum) Skip, and normal ops on a reduction cell's inner edges.
COVERAGE = Genotype(normal=(("WeightedPooling", 0), ("BiMap_1", 1), ("WeightedPooling", 2), ("BiMap_0", 1)),
                    normal_concat=(2, 3),
                    reduce=(("AvgPooling", 0), ("Skip", 1), ("MaxPooling", 1), ("WeightedPooling", 2)),
                    reduce_concat=(2, 3))


@pytest.mark.parametrize("name", ["radar", "hdm05", "coverage"])
@pytest.mark.parametrize("training", [True, False])
def test_one_hot_supernet_equals_genotype_network(name, training):
    torch.manual_seed(0)
    genotype = COVERAGE if name == "coverage" else published_genotype(name)
    supernet = Supernet(SMALL, 8, 3, dtype=F64)
    alphas = ArchitectureParameters(supernet.num_edges, dtype=F64)
    with torch.no_grad():
        alphas.normal.copy_(logits_for(genotype, "normal", 2))
        alphas.reduce.copy_(logits_for(genotype, "reduce", 2))
    weights = [alphas.weights(k, "sparsemax") for k in ("normal", "reduce")]
    assert all(((w == 0) | (w == 1)).all() for w in weights)
    derived = derive_genotype(*weights, alphas.normal, alphas.reduce, steps=2, multiplier=2)
    assert {frozenset(p) for p in (derived.normal, derived.reduce)} == \
        {frozenset(genotype.normal), frozenset(genotype.reduce)}
    network = inherit_supernet_weights(GenotypeNetwork(derived, SMALL, 8, 3, dtype=F64), supernet)
    # give the batch norms non-trivial running means and biases first
    x, _ = spd_classification(4, classes=3, n=8, seed=3)
    supernet.train()
    supernet(x, *weights)
    inherit_supernet_weights(network, supernet)
    supernet.train(training)
    network.train(training)
    with frozen_running_stats(supernet), frozen_running_stats(network):
        expected = supernet(x, *weights)
        actual = network(x)
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-10)


def test_skipping_zero_weight_ops_is_exact():
    """A mixed edge evaluated on its support equals the mixture over all six operations."""
    torch.manual_seed(1)
    plan = plan_cells(SMALL, 8)[1]
    from spdnas.search.cells import op_shape
    edge = MixedEdge("normal", op_shape(plan, SMALL, False, F64, None)).double()
    state = SPDState(random_spd(5, 4, n=4), 1e-4)
    logits = torch.tensor([0.1, 0.9, -2.0, 0.7, -3.0, 0.2], dtype=F64, requires_grad=True)
    from spdnas.geometry import sparsemax
    w = sparsemax(logits)
    support = [k for k in range(6) if w[k] > 0]
    assert 1 < len(support) < 6
    out = edge(state, w, support)
    full = karcher_mean(torch.stack([op(state) for op in edge.ops], dim=2), w)
    torch.testing.assert_close(out, full, rtol=1e-12, atol=1e-12)
    (g_support,) = torch.autograd.grad(out.sum(), logits, retain_graph=True)
    (g_full,) = torch.autograd.grad(full.sum(), logits)
    torch.testing.assert_close(g_support, g_full, rtol=1e-10, atol=1e-12)


def test_pure_none_edge_is_absent():
    plan = plan_cells(SMALL, 8)[1]
    from spdnas.search.cells import op_shape
    edge = MixedEdge("normal", op_shape(plan, SMALL, False, F64, None))
    assert edge(SPDState(random_spd(2, 4, n=4), 1e-4), torch.eye(6, dtype=F64)[0], [0]) is None


def test_architecture_parameters_are_not_network_parameters():
    supernet = Supernet(SMALL, 8, 3, dtype=F64)
    alphas = ArchitectureParameters(supernet.num_edges, dtype=F64)
    ids = {id(p) for p in supernet.parameters()}
    assert all(id(a) not in ids for a in alphas.parameters())
    assert alphas.normal.shape == (5, 6) and alphas.reduce.shape == (5, 6)
    assert float(alphas.normal.abs().max()) < 0.01  # 1e-3 · N(0, 1)


@pytest.mark.parametrize("mixture", ["sparsemax", "softmax", "sigmoid"])
def test_supernet_forward_backward_all_mixtures(mixture):
    torch.manual_seed(2)
    supernet = Supernet(SMALL, 8, 3, dtype=F64)
    alphas = ArchitectureParameters(supernet.num_edges, dtype=F64)
    x, y = spd_classification(4, classes=3, n=8, seed=4)
    logits = supernet(x, alphas.weights("normal", mixture), alphas.weights("reduce", mixture))
    assert logits.shape == (12, 3)
    torch.nn.functional.cross_entropy(logits, y).backward()
    assert alphas.normal.grad is not None and torch.isfinite(alphas.normal.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in supernet.parameters() if p.grad is not None)


def test_supernet_rejects_bad_input():
    supernet = Supernet(SMALL, 8, 3, dtype=F64)
    alphas = ArchitectureParameters(supernet.num_edges, dtype=F64)
    w = (alphas.weights("normal", "softmax"), alphas.weights("reduce", "softmax"))
    with pytest.raises(ValueError, match=r"expected inputs of shape \(B, 8, 8\)"):
        supernet(random_spd(3, n=6), *w)
    x = random_spd(3, n=8)
    x[1] = -x[1]
    with pytest.raises(ValueError, match=r"network input.*batch index \(1, 0\)"):
        supernet(x, *w)
    with pytest.raises(ValueError, match=r"inputs are torch\.float32 on cpu, the network is torch\.float64"):
        supernet(random_spd(3, n=8).float(), *w)
    x = random_spd(3, n=8)
    with pytest.raises(ValueError, match=r"weights_normal \(mixture weights, not logits\): weights must"):
        supernet(x, 100 * alphas.normal.abs(), w[1])
    with pytest.raises(ValueError, match=r"weights_reduce.*negative weights"):
        supernet(x, w[0], w[1] - 0.5)
    with pytest.raises(ValueError, match=r"weights_normal must have shape \(5, 6\)"):
        supernet(x, w[0][:4], w[1])


class TestPlan:
    def test_radar_schedule(self):
        plans = plan_cells(ModelConfig(), 20)
        reduce, normal = plans
        assert (reduce.kind, reduce.channels, reduce.work_dim, reduce.out_dim) == ("reduce", 2, 20, 10)
        assert (reduce.pool_kernel, reduce.pool_stride) == (2, 2)
        assert (normal.kind, normal.channels, normal.out_dim, normal.out_channels) == ("normal", 4, 10, 8)
        assert normal.prev_prev == (1, 20) and normal.prev == (4, 10)

    def test_hdm05_pooling(self):
        plans = plan_cells(ModelConfig(reduced_dims=[30], pool_kernel=4, pool_stride=3), 93)
        assert (plans[0].pool_kernel, plans[0].pool_stride, plans[0].out_dim) == (4, 3, 30)
        derived = plan_cells(ModelConfig(reduced_dims=[30]), 93)[0]
        assert (derived.pool_kernel, derived.pool_stride) == (6, 3)

    def test_inconsistent_pooling_is_rejected(self):
        with pytest.raises(ValueError, match="not the reduced size 10"):
            plan_cells(ModelConfig(pool_kernel=3, pool_stride=3), 20)

    def test_radar_model_size(self):
        radar = GenotypeNetwork(published_genotype("radar"), ModelConfig(), 20, 3, dtype=F64)
        # The paper reports 0.0184 M parameters for its RADAR network.
        assert 10_000 < count_parameters(radar) < 25_000


def test_final_network_concatenates_the_genotypes_nodes():
    """A genotype's ``*_concat`` decides which nodes, in which order, form the cell output."""
    cfg = ModelConfig(reduced_dims=[4], steps=3, multiplier=2)
    base = random_genotype(3, 2, seed=0)
    first = GenotypeNetwork(dataclasses.replace(base, normal_concat=(2, 4)), cfg, 8, 3, dtype=F64)
    other = GenotypeNetwork(dataclasses.replace(base, normal_concat=(4, 2)), cfg, 8, 3, dtype=F64)
    other.load_state_dict(first.state_dict())
    x = random_spd(3, 1, n=8, generator=torch.Generator().manual_seed(0))
    stem = SPDState(first.stem_bn(first.stem_bimap(x)), cfg.reeig_eps)
    reduced = SPDState(first.cells[0](stem, stem), cfg.reeig_eps)  # run_cells' wiring
    a, b = first.cells[1](stem, reduced), other.cells[1](stem, reduced)
    c = first.plans[1].channels
    torch.testing.assert_close(b, torch.cat((a[:, c:], a[:, :c]), dim=1), rtol=0, atol=0)
    assert first.cells[1].concat == (2, 4) and first.cells[0].concat == base.reduce_concat


def test_a_node_is_the_frechet_mean_of_its_edges():
    """Iterated to convergence, a node equals pyRiemann's Riemannian mean of its inputs (an
    arithmetic or log-Euclidean mean would not)."""
    import numpy as np
    from pyriemann.geometry.mean import mean_riemann

    cfg = ModelConfig(reduced_dims=[4], karcher_iterations=60)
    cell = Supernet(cfg, 8, 3, dtype=F64).cells[1]
    m = cell.plan.out_dim
    edges = [random_spd(2, cell.plan.channels, n=m, cond=50.0, generator=torch.Generator().manual_seed(s))
             for s in range(3)]
    node = cell.node(edges, edges[0])
    stacked = torch.stack(edges, dim=2).numpy()
    expected = np.array([[mean_riemann(matrices, tol=1e-13, maxiter=500) for matrices in sample]
                         for sample in stacked])
    np.testing.assert_allclose(node.numpy(), expected, rtol=0, atol=1e-9)
    assert float(np.abs(stacked.mean(2) - expected).max()) > 0.1


def test_float32_networks_agree_with_float64():
    """float32 (the GPU choice) computes the same supernet and final network as float64 to a
    stated tolerance (measured on RADAR shapes: logits 2e-5, α gradient 4e-6 relative), and a
    float32 search step runs."""
    import torch.nn.functional as F

    from spdnas.config import load_config
    from spdnas.search.searcher import Searcher

    torch.manual_seed(0)
    x, y = spd_classification(10, classes=3, n=20, seed=1)
    cfg = load_config(None, ["model.reduced_dims=[10]"])
    s64 = Searcher(cfg.model, cfg.search, 20, 3, dtype=F64)
    s32 = Searcher(cfg.model, cfg.search, 20, 3, dtype=torch.float32)
    s32.supernet.load_state_dict({k: v.float() for k, v in s64.supernet.state_dict().items()})
    s32.alphas.load_state_dict({k: v.float() for k, v in s64.alphas.state_dict().items()})
    l64, l32 = s64.forward(x), s32.forward(x.float())
    assert l32.dtype == torch.float32
    assert float((l32.double() - l64).abs().max() / l64.abs().max()) < 1e-4
    g64 = torch.autograd.grad(F.cross_entropy(l64, y), list(s64.alphas.parameters()))
    g32 = torch.autograd.grad(F.cross_entropy(l32, y), list(s32.alphas.parameters()))
    for a, b in zip(g32, g64, strict=True):
        assert float((a.double() - b).norm() / b.norm()) < 1e-4
    net64 = GenotypeNetwork(published_genotype("radar"), cfg.model, 20, 3, dtype=F64)
    net32 = GenotypeNetwork(published_genotype("radar"), cfg.model, 20, 3, dtype=torch.float32)
    net32.load_state_dict({k: v.float() for k, v in net64.state_dict().items()})
    o64, o32 = net64(x), net32(x.float())
    assert float((o32.double() - o64).abs().max() / o64.abs().max()) < 1e-4
    before = [a.detach().clone() for a in s32.alphas.parameters()]
    metrics = s32.step((x[:15].float(), y[:15]), (x[15:].float(), y[15:]))
    assert torch.isfinite(torch.tensor(metrics.train_loss)) and torch.isfinite(torch.tensor(metrics.val_loss))
    assert all(not torch.equal(a.detach(), b) for a, b in zip(s32.alphas.parameters(), before, strict=True))


def test_karcher_tolerance_reaches_every_mean_and_stops_the_flow(monkeypatch):
    """``model.karcher_tol`` stops every Karcher mean (mixed edges, nodes, batch norm, channel
    pooling) once converged: fewer flow steps, the same output as running all of them."""
    import spdnas.geometry.airm as airm
    from spdnas.nn import BatchNormSPD, WeightedChannelPooling

    calls = []
    step = airm.karcher_step
    monkeypatch.setattr(airm, "karcher_step", lambda *a, **k: calls.append(1) or step(*a, **k))
    x = random_spd(4, n=8, generator=torch.Generator().manual_seed(3))
    outputs = {}
    for tol in (None, 1e-11):
        cfg = dataclasses.replace(SMALL, karcher_iterations=40, karcher_tol=tol)
        torch.manual_seed(0)
        net = Supernet(cfg, 8, 3, dtype=F64)
        kinds = (BatchNormSPD, WeightedChannelPooling, MixedEdge)
        holders = [m for m in net.modules() if isinstance(m, kinds)] + list(net.cells)
        assert {m.karcher_tol for m in holders} == {tol} and len(holders) > 20
        calls.clear()
        outputs[tol] = net(x, *(torch.full((net.num_edges, 6), 1 / 6, dtype=F64),) * 2)
        outputs[f"{tol} steps"] = len(calls)
    assert outputs["1e-11 steps"] < outputs["None steps"] / 2
    from spdnas.models.baselines import SPDNet

    spdnetbn = SPDNet([8, 6, 4], 3, batchnorm=True, model_cfg=dataclasses.replace(SMALL, karcher_tol=1e-11))
    assert [m.karcher_tol for m in spdnetbn.modules() if isinstance(m, BatchNormSPD)] == [1e-11, 1e-11]
    torch.testing.assert_close(outputs[1e-11], outputs[None], rtol=0, atol=1e-9)
