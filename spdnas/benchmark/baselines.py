"""Baseline methods of the benchmark, registered in :data:`spdnas.benchmark.methods.METHODS`.

``random`` is here; importing this module also registers the sibling modules' methods:
``spdnet``, ``spdnetbn`` (:mod:`~spdnas.benchmark.networks`), ``darts``, ``fairdarts``
(:mod:`~spdnas.benchmark.euclidean`), ``mdm`` and ``ts-lr`` (:mod:`~spdnas.benchmark.classical`).
"""

from __future__ import annotations

from pathlib import Path

from spdnas.benchmark import classical, euclidean, networks  # noqa: F401  (register their methods)
from spdnas.benchmark.methods import MethodResult, register, train_genotype
from spdnas.config import ExperimentConfig
from spdnas.engine.splits import ExperimentData
from spdnas.search.genotype import random_genotype


@register("random")
def random_architecture(config: ExperimentConfig, data: ExperimentData, seed: int,
                        out: Path | None) -> MethodResult:
    """A random architecture from our search space (seeded), trained like the searched one."""
    genotype = random_genotype(config.model.steps, config.model.multiplier, seed)
    test, job = train_genotype(config, genotype, data, out)
    return MethodResult("random", data.dataset.meta.name, seed, test["test_accuracy"],
                        job.best["val_accuracy"], job.num_parameters, 0.0,
                        sum(r["seconds"] for r in job.history),
                        {"genotype": genotype.to_dict(), "best_epoch": test["best_epoch"]})
