"""Baseline models: SPDNet/SPDNetBN shapes and gradients, the log-map features, the Euclidean
NAS supernet, its architecture step and its discretisation rules."""

from __future__ import annotations

import math

import pytest
import torch

from spdnas.config import BaselineConfig, ConfigError, load_config
from spdnas.models.baselines import SPDNet, spdnet_dims
from spdnas.models.euclidean_genotype import (
    OPS,
    EuclideanGenotype,
    EuclideanGenotypeError,
    all_edges,
    derive_darts,
    derive_fairdarts,
    fairdarts_fallbacks,
)
from spdnas.models.euclidean_nas import EuclideanNetwork, log_vectorise
from spdnas.models.euclidean_search import EuclideanSearcher, zero_one_loss
from spdnas.nn import frozen_running_stats
from spdnas.search.cells import count_parameters, count_used_parameters
from tests.helpers import random_spd
from tests.nn.test_layers import gradcheck_module

F64 = torch.float64


@pytest.mark.parametrize("batchnorm", [False, True], ids=["SPDNet", "SPDNetBN"])
def test_spdnet_shapes_and_gradcheck(batchnorm):
    torch.manual_seed(0)
    net = SPDNet([6, 4, 3], num_classes=5, batchnorm=batchnorm, dtype=F64)
    assert net(random_spd(7, n=6)).shape == (7, 5)
    assert net(random_spd(7, 1, n=6)).shape == (7, 5)
    bimaps, classifier, bn_biases = 6 * 4 + 4 * 3, 9 * 5 + 5, 16 + 9
    assert sum(p.numel() for p in net.parameters()) == bimaps + classifier + (bn_biases if batchnorm else 0)
    layers = [type(layer).__name__ for block in net.blocks for layer in block]
    bimap_bn = ["BiMap", "BatchNormSPD"] if batchnorm else ["BiMap"]
    assert layers == [*bimap_bn, "ReEig", *bimap_bn]  # no ReEig after the last BiMap (reference code)
    tiny = SPDNet([4, 3, 2], num_classes=2, batchnorm=batchnorm, dtype=F64)
    with frozen_running_stats(tiny):
        assert gradcheck_module(tiny, random_spd(3, n=4, cond=5.0))


def test_the_hdm05_spdnets_have_the_papers_size():
    """SPEC §6: SPDNet 0.108M and SPDNetBN 0.109M parameters on HDM05 (one BiMap 93 -> 30); the
    default dims [93, 74, 56] gave 0.378M / 0.387M."""
    from pathlib import Path

    config = load_config(str(Path(__file__).parents[2] / "configs" / "hdm05.yaml"), [])
    dims = spdnet_dims(config.baselines, 93)
    sizes = [sum(p.numel() for p in SPDNet(dims, 117, batchnorm=bn, dtype=F64).parameters())
             for bn in (False, True)]
    assert dims == [93, 30] and sizes == [108_207, 109_107]


def test_spdnet_rejects_bad_input():
    net = SPDNet([6, 4], num_classes=2, dtype=F64)
    with pytest.raises(ValueError, match=r"SPDNet expects inputs of shape \(B, 6, 6\)"):
        net(random_spd(2, n=5))
    x = random_spd(3, n=6)
    x[1] = -x[1]
    with pytest.raises(ValueError, match="SPDNet input"):
        net(x)
    with pytest.raises(ValueError, match="at least one BiMap"):
        SPDNet([6], num_classes=2)


def test_spdnet_dims_rule_and_config_checks():
    assert spdnet_dims(BaselineConfig(), 20) == [20, 16, 12]
    assert spdnet_dims(BaselineConfig(spdnet_dims=[12, 8]), 12) == [12, 8]
    with pytest.raises(ConfigError, match="must start with the input size n=20"):
        spdnet_dims(BaselineConfig(spdnet_dims=[12, 8]), 20)
    with pytest.raises(ConfigError, match="non-increasing"):
        load_config(None, ["baselines.spdnet_dims=[20, 24]"])
    with pytest.raises(ConfigError, match="fairdarts_threshold must be in"):
        load_config(None, ["baselines.fairdarts_threshold=1.5"])
    with pytest.raises(ConfigError, match="darts_width must be >= 2"):
        load_config(None, ["baselines.darts_width=1"])
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(None, ["baselines.spdnet_width=3"])


def test_log_vectorise_values_and_frobenius_norm():
    a = 0.7
    x = torch.linalg.matrix_exp(torch.tensor([[1.0, a], [a, 2.0]], dtype=F64))[None]
    torch.testing.assert_close(log_vectorise(x), torch.tensor([[1.0, a * math.sqrt(2), 2.0]], dtype=F64))
    x = random_spd(5, n=7, cond=100.0)
    eig, vec = torch.linalg.eigh(x)
    logs = vec @ torch.diag_embed(eig.log()) @ vec.mT  # independent of spdnas.geometry
    v = log_vectorise(x)
    assert v.shape == (5, 28)
    torch.testing.assert_close(v.norm(dim=1), torch.linalg.matrix_norm(logs), rtol=1e-12, atol=1e-12)


def test_euclidean_network_shapes_and_one_edge_per_choice():
    genotype = EuclideanGenotype((("linear", 0, 2), ("skip", 1, 2), ("expand", 2, 3)), steps=2)
    net = EuclideanNetwork(genotype, in_features=10, width=8, cells=2, num_classes=3, dtype=F64)
    assert net(torch.randn(4, 10, dtype=F64)).shape == (4, 3)
    assert [len(cell.edges) for cell in net.cells] == [3, 3]
    with pytest.raises(ValueError, match=r"expected features of shape \(B, 10\)"):
        net(torch.randn(4, 9, dtype=F64))


def test_parameters_of_cells_no_later_cell_reads_are_not_counted():
    """Nodes reading only the cell's first input (FairDARTS's fallback to one edge per node): the
    last cell never reads the one before it, so that cell (and its own input's preprocessing)
    cannot change the output; its parameters were counted in the model size."""
    x = torch.randn(2, 10, dtype=F64)
    both = EuclideanNetwork(EuclideanGenotype((("linear", 0, 2), ("skip", 1, 2), ("expand", 2, 3)), steps=2),
                            in_features=10, width=8, cells=2, num_classes=3, dtype=F64)
    assert count_used_parameters(both, x) == count_parameters(both)
    first = EuclideanNetwork(EuclideanGenotype((("linear", 0, 2), ("skip", 0, 3)), steps=2),
                             in_features=10, width=8, cells=2, num_classes=3, dtype=F64)
    last = first.cells[-1]
    dead = {id(p) for p in first.cells[0].parameters()} | {id(p) for p in last.pre1.parameters()}
    expected = sum(p.numel() for p in first.parameters() if id(p) not in dead)
    assert count_used_parameters(first, x) == expected < count_parameters(first)
    net = SPDNet([8, 6, 4], num_classes=3, dtype=F64)
    assert count_used_parameters(net, random_spd(2, n=8)) == count_parameters(net)


def searcher_and_batches(variant, overrides=(), seed=0):
    torch.manual_seed(seed)
    cfg = load_config(None, ["baselines.darts_width=8", *overrides])
    searcher = EuclideanSearcher(variant, cfg.baselines, cfg.search, 6, 3)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(40, 6, dtype=F64, generator=g), torch.randint(0, 3, (40,), generator=g)
    x[:, 0] += 2.0 * y  # learnable
    return searcher, (x[:20], y[:20]), (x[20:], y[20:])


@pytest.mark.parametrize("variant, order", [("darts", "first"), ("darts", "second"), ("fairdarts", "first")])
def test_alpha_gradients_flow_and_the_weight_optimizer_never_moves_alpha(variant, order):
    searcher, train, val = searcher_and_batches(variant, [f"search.order={order}"])
    _, (grad,) = searcher.architect.arch_gradient(train, val)
    assert grad.shape == (len(all_edges(2)), len(searcher.ops))
    assert torch.isfinite(grad).all() and (grad.abs() > 0).float().mean() > 0.9
    managed = {id(p) for group in searcher.weight_optimizer.param_groups for p in group["params"]}
    assert id(searcher.alphas.logits) not in managed
    no_step = "search.arch_lr=0" if variant == "darts" else "baselines.fairdarts_arch_lr=0"
    frozen, _, _ = searcher_and_batches(variant, [f"search.order={order}", no_step])
    alphas, weights = frozen.alphas.logits.detach().clone(), [p.detach().clone() for p in frozen.weights]
    for _ in range(5):
        frozen.step(train, val)
    assert torch.equal(frozen.alphas.logits, alphas)
    assert any(not torch.equal(p, w) for p, w in zip(frozen.weights, weights, strict=True))


def distance_from_one_half(weight: float) -> torch.Tensor:
    """``|σ(α) − ½|`` per architecture weight after 20 FairDARTS steps with zero-one weight ``weight``."""
    searcher, train, val = searcher_and_batches(
        "fairdarts", ["baselines.fairdarts_arch_lr=0.05", f"baselines.fairdarts_zero_one_weight={weight}"])
    for _ in range(20):
        searcher.step(train, val)
    return (torch.sigmoid(searcher.alphas.logits.detach()) - 0.5).abs()


def test_fairdarts_zero_one_loss_pushes_weights_away_from_one_half():
    w = torch.tensor([0.5, 0.6, 0.1], dtype=F64)
    assert float(zero_one_loss(w)) == pytest.approx(-(0.0 + 0.01 + 0.16) / 3)
    # Measured (seeds 0-4): mean distance 0.10-0.14 without the loss, 0.18-0.24 with weight 10;
    # share of weights beyond 0.2 from ½: 10-25% without, 50-85% with.
    plain, pushed = distance_from_one_half(0.0), distance_from_one_half(10.0)
    assert pushed.mean() > 1.4 * plain.mean()
    assert (pushed > 0.2).double().mean() > (plain > 0.2).double().mean() + 0.3


def test_darts_rule_top_two_edges_best_non_none_op():
    ops = OPS  # none, skip, linear, bottleneck, expand
    weights = torch.zeros(len(all_edges(2)), len(ops), dtype=F64)
    weights[0] = torch.tensor([0.9, 0.02, 0.05, 0.02, 0.01])  # 0->2: `none` wins but does not count
    weights[1] = torch.tensor([0.1, 0.1, 0.2, 0.5, 0.1])  # 1->2: bottleneck
    weights[2] = torch.tensor([0.1, 0.6, 0.1, 0.1, 0.1])  # 0->3: skip 0.6
    weights[3] = torch.tensor([0.1, 0.1, 0.1, 0.1, 0.6])  # 1->3: expand 0.6 (tie: lower input wins)
    weights[4] = torch.tensor([0.0, 0.1, 0.7, 0.1, 0.1])  # 2->3: linear 0.7
    genotype = derive_darts(weights, ops, 2)
    assert genotype.edges == (("bottleneck", 1, 2), ("linear", 0, 2), ("linear", 2, 3), ("skip", 0, 3))
    with pytest.raises(ValueError, match=r"must have shape \(5, 5\)"):
        derive_darts(weights[:4], ops, 2)


def test_fairdarts_rule_threshold_and_at_least_one_input():
    ops = OPS[1:]
    sig = torch.full((5, 4), 0.1, dtype=F64)
    sig[0, 1], sig[1, 3] = 0.9, 0.7  # node 2: both strongest edges pass 0.5
    sig[2, 0], sig[3, 2], sig[4, 0] = 0.45, 0.3, 0.2  # node 3: none passes -> keep 0->3 only
    genotype = derive_fairdarts(sig, ops, 2, threshold=0.5)
    assert genotype.edges == (("linear", 0, 2), ("expand", 1, 2), ("skip", 0, 3))
    assert fairdarts_fallbacks(sig, ops, 2, threshold=0.5) == 1  # node 3
    sig[1, 3] = 0.55
    assert derive_fairdarts(sig, ops, 2, threshold=0.6).edges == (("linear", 0, 2), ("skip", 0, 3))
    assert fairdarts_fallbacks(sig, ops, 2, threshold=0.95) == 2


def test_fairdarts_updates_alpha_with_its_own_adam_settings():
    """FairDARTS's reference code: Adam at 3e-3, betas (0.9, 0.999), threshold 0.85; with ours
    (3e-4) σ(α) stayed within 0.48-0.50 over a benchmark's search and the threshold decided nothing."""
    fair, _, _ = searcher_and_batches("fairdarts")
    darts, _, _ = searcher_and_batches("darts")
    (group,) = fair.arch_optimizer.param_groups
    assert (group["lr"], group["betas"]) == (3e-3, (0.9, 0.999))
    (group,) = darts.arch_optimizer.param_groups
    assert (group["lr"], group["betas"]) == (3e-4, (0.5, 0.999))
    assert BaselineConfig().fairdarts_threshold == 0.85


@pytest.mark.parametrize("order", ["first", "second"])
def test_the_architecture_step_leaves_the_euclidean_batch_norms_as_they_were(order):
    """Its extra forward passes moved the supernet's BatchNorm1d running statistics."""
    searcher, train, val = searcher_and_batches("darts", [f"search.order={order}"])
    searcher.supernet.train()
    buffers = {k: v.clone() for k, v in searcher.supernet.named_buffers()}
    assert any("running_mean" in k for k in buffers)
    searcher.architect.arch_gradient(train, val)
    for name, value in searcher.supernet.named_buffers():
        assert torch.equal(value, buffers[name]), name


def test_euclidean_genotype_json_round_trip_and_errors(tmp_path):
    genotype = EuclideanGenotype((("linear", 0, 2), ("expand", 2, 3)), steps=2)
    genotype.save(tmp_path / "g.json")
    assert EuclideanGenotype.load(tmp_path / "g.json") == genotype
    with pytest.raises(EuclideanGenotypeError, match="unknown operation 'none'"):
        EuclideanGenotype((("none", 0, 2), ("skip", 0, 3)), steps=2)
    with pytest.raises(EuclideanGenotypeError, match=r"nodes \[3\] have no incoming edge"):
        EuclideanGenotype((("skip", 0, 2),), steps=2)
    with pytest.raises(EuclideanGenotypeError, match="edge 3->3 does not fit"):
        EuclideanGenotype((("skip", 0, 2), ("skip", 3, 3)), steps=2)
    with pytest.raises(EuclideanGenotypeError, match="edge 0->2 appears twice"):
        EuclideanGenotype((("skip", 0, 2), ("linear", 0, 2), ("skip", 0, 3)), steps=2)
    with pytest.raises(EuclideanGenotypeError, match="schema_version"):
        EuclideanGenotype.from_json('{"schema_version": 7, "steps": 2, "edges": []}')
    with pytest.raises(EuclideanGenotypeError, match=r"g\.json: genotype is not valid JSON"):
        (tmp_path / "g.json").write_text("{")
        EuclideanGenotype.load(tmp_path / "g.json")

