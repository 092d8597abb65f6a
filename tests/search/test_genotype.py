"""Genotype derivation, JSON round trip and validation; the published genotypes."""

from __future__ import annotations

import json

import pytest
import torch

from spdnas.config import ModelConfig
from spdnas.geometry import sparsemax
from spdnas.models.network import GenotypeNetwork
from spdnas.search.genotype import Genotype, GenotypeError, derive_genotype, published_genotype
from spdnas.search.space import NORMAL_OPS, REDUCE_OPS, op_names

NORMAL = list(NORMAL_OPS)
REDUCE = list(REDUCE_OPS)


def one_hot_rows(choices: list[int]) -> torch.Tensor:
    logits = torch.zeros(len(choices), 6, dtype=torch.float64)
    for row, k in enumerate(choices):
        logits[row, k] = 2.0
    return logits


def test_column_order_matches_spec():
    assert op_names("normal") == ("none", "WeightedPooling", "BiMap_0", "BiMap_1", "BiMap_2", "Skip")
    assert op_names("reduce") == ("none", "AvgPooling", "MaxPooling", "BiMap_1", "BiMap_2", "Skip")


def test_derivation_picks_top_two_edges_and_best_non_none_op():
    # steps=2 -> edges: node2 <- {0, 1}; node3 <- {0, 1, 2}
    normal = torch.tensor([
        [0.0, 0.1, 0.2, 0.3, 0.1, 0.3],    # 0->2: best non-none: BiMap_1 vs Skip tie 0.3 -> logits break
        [0.9, 0.0, 0.0, 0.0, 0.0, 0.1],    # 1->2: none dominates, best non-none Skip 0.1
        [0.5, 0.0, 0.0, 0.0, 0.0, 0.5],    # 0->3: tie with none: Skip 0.5 (none excluded)
        [0.0, 0.0, 0.7, 0.3, 0.0, 0.0],    # 1->3: BiMap_0 0.7
        [0.0, 0.6, 0.0, 0.0, 0.4, 0.0],    # 2->3: WeightedPooling 0.6
    ], dtype=torch.float64)
    logits = torch.zeros_like(normal)
    logits[0, 5] = 1.0  # Skip wins the 0.3 tie on edge 0->2 by its logit
    reduce = torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0, 0.0]] * 5, dtype=torch.float64)
    g = derive_genotype(normal, reduce, logits, torch.zeros_like(reduce), steps=2, multiplier=2)
    assert g.normal == (("Skip", 0), ("Skip", 1), ("BiMap_0", 1), ("WeightedPooling", 2))
    # reduction cell: edges from inputs use reduced names, from node 2 the normal names
    assert g.reduce == (("BiMap_2", 0), ("BiMap_2", 1), ("BiMap_2", 0), ("BiMap_2", 1))
    assert g.normal_concat == g.reduce_concat == (2, 3)


def test_derivation_with_all_zero_non_none_weights_uses_logits():
    weights = torch.tensor([[1.0, 0, 0, 0, 0, 0]] * 5, dtype=torch.float64)  # sparsemax zeros
    logits = torch.full((5, 6), -1.0, dtype=torch.float64)
    logits[:, 0] = 3.0
    logits[2, 3] = 0.5   # edge 0->3: BiMap_1 has the best logit among non-none
    logits[4, 4] = 0.8   # edge 2->3: BiMap_2, and this edge outranks 0->3 and 1->3
    g = derive_genotype(weights, weights, logits, logits, steps=2, multiplier=2)
    assert g.normal[2:] == (("BiMap_2", 2), ("BiMap_1", 0))
    # ties everywhere else fall back to the lowest index
    assert g.normal[:2] == (("WeightedPooling", 0), ("WeightedPooling", 1))


def test_json_round_trip_and_schema():
    g = published_genotype("radar")
    data = json.loads(g.to_json())
    assert data["schema_version"] == 1 and data["search_space"] == "spdnetnas-v1"
    assert Genotype.from_json(g.to_json()) == g


def test_published_genotypes_match_the_paper():
    radar, hdm05 = published_genotype("radar"), published_genotype("hdm05")
    assert radar.normal == (("Skip", 0), ("Skip", 1), ("BiMap_0", 0), ("BiMap_1", 2))
    assert radar.reduce == (("BiMap_2", 1), ("BiMap_2", 0), ("BiMap_1", 1), ("BiMap_2", 0))
    assert hdm05.normal == (("Skip", 0), ("Skip", 1), ("BiMap_2", 0), ("BiMap_2", 2))
    assert hdm05.reduce == (("BiMap_1", 0), ("BiMap_1", 1), ("BiMap_2", 0), ("BiMap_1", 1))
    with pytest.raises(GenotypeError, match="no published genotype"):
        published_genotype("cifar")


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["normal"].__setitem__(0, ["Conv3x3", 0]), "unknown operation 'Conv3x3'"),
    (lambda d: d["reduce"].__setitem__(0, ["WeightedPooling", 0]), "unknown operation 'WeightedPooling'"),
    (lambda d: d["normal"].__setitem__(1, ["Skip", 2]), "node 2 cannot read node 2"),
    (lambda d: d["normal"].__setitem__(0, ["none", 0]), "unknown operation 'none'"),
    (lambda d: d.__setitem__("normal_concat", [1, 3]), "normal_concat must list"),
    (lambda d: d.__setitem__("schema_version", 7), "schema_version"),
    (lambda d: d.__setitem__("search_space", "darts"), "search space"),
    (lambda d: d.pop("reduce"), "lacks"),
    (lambda d: d["normal"].pop(), r"two \(operation, input\) pairs per node"),
    (lambda d: d["normal"].__setitem__(0, ["Skip", 1.7]), "node index 1.7 is not an integer"),
    (lambda d: d.__setitem__("reduce_concat", ["2", 3]), "node index '2' is not an integer"),
    (lambda d: d.__setitem__("reduce_concat", [3]), r"reduce_concat \[3\] must join the same number"),
])
def test_invalid_genotypes_are_rejected(mutate, message):
    data = published_genotype("hdm05").to_dict()
    mutate(data)
    with pytest.raises(GenotypeError, match=message):
        Genotype.from_dict(data)


def test_load_names_the_file(tmp_path):
    path = tmp_path / "g.json"
    path.write_text("{not json")
    with pytest.raises(GenotypeError, match=r"g\.json"):
        Genotype.load(path)


def test_sparsemax_one_hot_rows():
    w = sparsemax(one_hot_rows([1, 5, 0]))
    torch.testing.assert_close(w.sum(-1), torch.ones(3, dtype=torch.float64))
    assert w[0, 1] == 1 and w[1, 5] == 1 and w[2, 0] == 1


def test_genotype_network_rejects_mismatched_steps():
    with pytest.raises(GenotypeError, match="steps=3"):
        GenotypeNetwork(published_genotype("radar"), ModelConfig(steps=3), 20, 3)


def test_random_genotypes_are_valid_and_seeded():
    from spdnas.search.genotype import random_genotype

    drawn = {random_genotype(2, 2, seed) for seed in range(30)}
    assert len(drawn) > 20  # they differ
    assert random_genotype(3, 2, 7) == random_genotype(3, 2, 7)
    assert random_genotype(3, 2, 7).steps == 3


def test_random_genotypes_take_two_distinct_inputs_and_reach_every_choice():
    from spdnas.search.genotype import random_genotype
    from spdnas.search.space import NORMAL, REDUCE, edge_kind, op_names

    seen = {NORMAL: set(), REDUCE: set()}
    for seed in range(300):
        genotype = random_genotype(3, 2, seed)
        for kind, pairs in ((NORMAL, genotype.normal), (REDUCE, genotype.reduce)):
            for i in range(3):
                (op_a, a), (op_b, b) = pairs[2 * i], pairs[2 * i + 1]
                assert a < b < 2 + i  # two distinct earlier nodes
                seen[kind] |= {(i, a, op_a), (i, b, op_b)}
    for kind in (NORMAL, REDUCE):
        expected = {(i, node, op) for i in range(3) for node in range(2 + i)
                    for op in op_names(edge_kind(kind, node))[1:]}
        assert seen[kind] == expected  # every input of every node, with every non-none operation
