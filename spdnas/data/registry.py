"""Registry of dataset builders: generators and importers that all share one writer.

A builder is a function ``build(**params) -> SPDDataset`` registered under a name;
:func:`make_dataset` runs it, records the builder and its parameters in the provenance, and
writes the result with :func:`spdnas.data.parquet.write_dataset`.
"""

from __future__ import annotations

import importlib
import inspect
import types
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import torch

from spdnas import __version__
from spdnas.data.dataset import SPDDataset
from spdnas.data.parquet import check_writable, write_dataset
from spdnas.data.storage import Folder


@dataclass(frozen=True)
class Builder:
    """A registered dataset builder."""

    name: str
    build: Callable[..., SPDDataset]
    summary: str


BUILDERS: dict[str, Builder] = {}
SCALE_PARAM = "scale"  # a parameter of every builder, applied by make_dataset
TYPICAL_SCALE_RANGE = (0.1, 1000.0)  # median mean eigenvalue where SPD networks train as tuned


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


_PLAIN_TYPES = (bool, int, float, str, type(None))


def _options(hint) -> tuple:
    """The types of an annotation: ``float | str`` → ``(float, str)``, ``int`` → ``(int,)``."""
    return typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)


def _type_hints(build: Callable[..., SPDDataset]) -> dict:
    """The annotations of a builder (of the function a ``partial`` wraps)."""
    return typing.get_type_hints(build.func if isinstance(build, partial) else build)


def _accepts(hint, value) -> bool:
    """Whether ``value`` (parsed from JSON) fits the annotation ``hint``; ``float`` takes ints,
    ``int``/``float`` refuse booleans; hints other than plain types and their unions pass all."""
    options = _options(hint)
    if not all(option in _PLAIN_TYPES for option in options):
        return True
    if isinstance(value, bool):
        return bool in options
    if float in options and isinstance(value, int):
        return True
    return isinstance(value, options)


def _type_name(hint) -> str:
    return " or ".join("null" if option is type(None) else option.__name__ for option in _options(hint))


def _strings_where_declared(build: Callable[..., SPDDataset], params: dict) -> dict:
    """Numbers given to a parameter declared ``str`` (``--param dataset_name=2024``, which the
    command line parses as JSON) become their text."""
    hints = _type_hints(build)

    def declares_str(hint) -> bool:
        return str in _options(hint) and not ({int, float} & set(_options(hint)))

    return {key: str(value) if key in hints and declares_str(hints[key]) and isinstance(value, int | float)
            and not isinstance(value, bool) else value for key, value in params.items()}


def check_params(name: str, build: Callable[..., SPDDataset], params: dict) -> None:
    """Refuse parameters the builder does not take, or of another type than it declares, and a
    missing parameter it requires.

    Raises
    ------
    TypeError
        Naming every unknown parameter (with the accepted ones), every mistyped one, or every
        required one not given (as ``--param NAME=...``).
    """
    accepted = inspect.signature(build).parameters
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise TypeError(f"dataset {name!r}: unknown parameter(s) {unknown}; accepted: "
                        f"{sorted([*accepted, SCALE_PARAM])}")
    missing = [key for key, p in accepted.items()
               if p.default is inspect.Parameter.empty and key not in params]
    if missing:
        raise TypeError(f"dataset {name!r} needs {' '.join(f'--param {key}=...' for key in missing)} "
                        f"(builder_params {missing} in a config)")
    hints = _type_hints(build)
    wrong = [f"{key}={value!r} (expected {_type_name(hints[key])})" for key, value in params.items()
             if key in hints and not _accepts(hints[key], value)]
    if wrong:
        raise TypeError(f"dataset {name!r}: wrong type for {', '.join(wrong)}")


def describe_builders() -> str:
    """One paragraph per builder: name, summary and parameters with their defaults."""
    lines = []
    for name, builder in sorted(builders().items()):
        params = [p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
                  for p in inspect.signature(builder.build).parameters.values()]
        lines += [f"{name}: {builder.summary}", f"    parameters: {', '.join(params)}"]
    lines += [f"every builder: {SCALE_PARAM}=None ('auto': divide every matrix by the median of tr(X)/n over "
              "train, so that it is 1; a number: multiply by it)"]
    return "\n".join(lines)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def typical_scale(dataset: SPDDataset) -> float:
    """Median over the ``train`` rows (all rows where there are none) of ``tr(X)/n``, the mean
    eigenvalue of each matrix."""
    rows = dataset.splits == "train"
    matrices = dataset.matrices[torch.from_numpy(rows)] if rows.any() else dataset.matrices
    return float(matrices.diagonal(dim1=-2, dim2=-1).mean(-1).median())


def scale_factor(scale: float | str | None, typical: float) -> float:
    """The factor every matrix is multiplied by: 1 for ``None``, ``1/typical`` for ``"auto"``,
    else ``scale`` itself (a positive number)."""
    if scale is None:
        return 1.0
    if scale == "auto":
        return 1.0 / typical
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < float("inf"):
        raise TypeError(f"{SCALE_PARAM} must be 'auto' or a positive number, got {scale!r}")
    return float(scale)


def _scale_warning(name: str, typical: float) -> str:
    low, high = TYPICAL_SCALE_RANGE
    return (f"{name}: the matrices' typical mean eigenvalue (median of tr(X)/n on train) is {typical:.3g}, "
            f"outside [{low:g}, {high:g}]: SPD networks without a batch norm first (the SPDNet baseline) "
            "work in absolute units (ReEig keeps eigenvalues above model.reeig_eps, 1e-4 by default) and "
            "far from 1 learn worse (measured: SPDNet at chance at 2.6e-4; on JapaneseVowels, 0.022, "
            "82.6% vs 84.1% at 1). Making the dataset again with --param scale=auto (builder_params "
            "{scale: auto}, with --overwrite where it exists) divides every matrix by it; SPDNetNAS, "
            "SPDNetBN, DARTS on log-maps, MDM and tangent space + LR do not change under a common scale")


def recorded_params(name: str, params: dict) -> dict:
    """The parameters as :func:`make_dataset` records them in the provenance (numbers given to a
    text parameter as text, values made JSON), for comparing a config's ``builder_params`` with
    the dataset a builder made."""
    params = dict(params)
    scale = params.pop(SCALE_PARAM, None)
    if name in builders():
        params = _strings_where_declared(builders()[name].build, params)
    return _recorded(params, scale)


def _recorded(params: dict, scale: float | str | None) -> dict:
    return _jsonable({**params, SCALE_PARAM: scale} if scale is not None else params)


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
        Passed to :func:`~spdnas.data.parquet.write_dataset`; whether ``out_uri`` may be written
        is checked before the build.
    **params
        The builder's keyword parameters (see its docstring), and ``scale`` for every builder:
        ``"auto"`` divides every matrix by :func:`typical_scale` (the median mean eigenvalue of
        the train rows), a number multiplies them by it; without it a typical scale outside
        ``TYPICAL_SCALE_RANGE`` is warned of.

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
    scale = params.pop(SCALE_PARAM, None)
    params = _strings_where_declared(build, params)
    check_params(name, build, params)
    scale_factor(scale, 1.0)  # a wrong value is refused before the build
    if out_uri is not None:  # before the build's compute, and before it writes a raw_dir
        check_writable(Folder(out_uri), overwrite)
    dataset = build(**params)
    typical = typical_scale(dataset)
    factor = scale_factor(scale, typical)
    low, high = TYPICAL_SCALE_RANGE
    if scale is None and not low <= typical <= high:
        warnings.warn(_scale_warning(name, typical), stacklevel=2)
    provenance = {**dataset.meta.provenance, "builder": name, "params": _recorded(params, scale),
                  "spdnas_version": __version__}
    if scale is not None:
        provenance["scale_factor"] = factor
    dataset = replace(dataset, matrices=dataset.matrices * factor if factor != 1.0 else dataset.matrices,
                      meta=replace(dataset.meta, provenance=provenance))
    if out_uri is not None:
        write_dataset(dataset, out_uri, overwrite=overwrite, progress=progress)
    return dataset
