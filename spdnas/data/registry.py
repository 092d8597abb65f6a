"""Registry of dataset builders: generators and importers that all share one writer.

A builder is a function ``build(**params) -> SPDDataset`` registered under a name;
:func:`make_dataset` runs it, records the builder and its parameters in the provenance, and
writes the result with :func:`spdnas.data.parquet.write_dataset`.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace

from spdnas import __version__
from spdnas.data.dataset import SPDDataset
from spdnas.data.parquet import write_dataset


@dataclass(frozen=True)
class Builder:
    """A registered dataset builder."""

    name: str
    build: Callable[..., SPDDataset]
    summary: str


BUILDERS: dict[str, Builder] = {}


def register(name: str, summary: str) -> Callable:
    """Decorator registering ``build(**params) -> SPDDataset`` under ``name``."""

    def decorate(build: Callable[..., SPDDataset]) -> Callable[..., SPDDataset]:
        if name in BUILDERS:
            raise ValueError(f"dataset builder {name!r} registered twice")
        BUILDERS[name] = Builder(name, build, summary)
        return build

    return decorate


def builders() -> dict[str, Builder]:
    """All registered builders (importing the source modules on first use)."""
    importlib.import_module("spdnas.data.sources")
    return BUILDERS


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def make_dataset(name: str, out_uri: str | None, *, overwrite: bool = False, progress: bool = False,
                 **params) -> SPDDataset:
    """Build the dataset ``name`` with ``params`` and write it to ``out_uri``.

    Parameters
    ----------
    name : str
        A registered builder: ``"radar-synth"``, ``"japanese-vowels"``, ``"basic-motions"``,
        ``"radar-npy"``, ``"hdm05-npy"``, ``"afew"`` (see :func:`builders`).
    out_uri : str or None
        Local folder or ``s3://bucket/prefix``; None builds in memory only.
    overwrite, progress : bool
        Passed to :func:`~spdnas.data.parquet.write_dataset`.
    **params
        The builder's keyword parameters (see its docstring).

    Returns
    -------
    SPDDataset
        The dataset as written; its provenance records the builder, the parameters given and
        the spdnas version.
    """
    registry = builders()
    if name not in registry:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(sorted(registry))}")
    build = registry[name].build
    accepted = inspect.signature(build).parameters
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise TypeError(f"dataset {name!r}: unknown parameter(s) {unknown}; accepted: {sorted(accepted)}")
    dataset = build(**params)
    provenance = {**dataset.meta.provenance, "builder": name, "params": _jsonable(params),
                  "spdnas_version": __version__}
    dataset = replace(dataset, meta=replace(dataset.meta, provenance=provenance))
    if out_uri is not None:
        write_dataset(dataset, out_uri, overwrite=overwrite, progress=progress)
    return dataset
