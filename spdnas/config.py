"""Typed experiment configuration: dataclasses loaded from YAML, overridable from the CLI.

One YAML file per dataset/experiment (``configs/``) fills :class:`ExperimentConfig`; any value
can be overridden with dotted ``key=value`` pairs (``search.epochs=5 runtime.dtype=float32``),
whose values are parsed as YAML scalars/lists. Unknown keys are errors, not silently ignored.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SEARCH_SPLITS = ("auto", "stratified", "group")
"""Values of ``data.search_split``."""


@dataclass
class DataConfig:
    """Where the dataset comes from and how the training split is divided for the search.

    ``uri`` names a dataset folder (local or ``s3://``). When it does not exist yet and
    ``builder`` is set, the dataset is first made there with ``builder_params``; with no
    ``builder`` (the default) a missing dataset is an error, so a mistyped ``uri`` is not
    silently filled with another dataset. The training
    split's search-train/search-val division is drawn with ``split_seed`` (``null``: the run's
    ``runtime.seed``), by class or by group (subject) as ``search_split`` says: ``auto`` cuts by
    group where the dataset itself is split by group (see
    :func:`spdnas.engine.splits.search_split_mode`), ``stratified`` or ``group`` force one way.
    """

    uri: str = "data/radar-synth"
    builder: str | None = None
    builder_params: dict[str, Any] = field(default_factory=dict)
    search_val_fraction: float = 0.5
    split_seed: int | None = None
    search_split: str = "auto"

    def search_split_seed(self, run_seed: int) -> int:
        """The seed of the search-train/search-val division for a run seeded ``run_seed``."""
        return run_seed if self.split_seed is None else self.split_seed


@dataclass
class ModelConfig:
    """Shape of the supernet and of every network derived from it.

    ``reduced_dims: null`` halves the matrix size at every reduction cell (for datasets of
    any ``n``); a list gives the size after each reduction cell. Every Karcher mean (mixed
    edges, nodes, batch norm, channel pooling) takes up to ``karcher_iterations`` flow steps;
    with ``karcher_tol`` set it stops once the step norm is below it for every mean of the batch.
    """

    stem_channels: int = 1
    cells: list[str] = field(default_factory=lambda: ["reduce", "normal"])
    cell_channels: list[int] = field(default_factory=lambda: [2, 4])
    reduced_dims: list[int] | None = field(default_factory=lambda: [10])
    steps: int = 2
    multiplier: int = 2
    pool_kernel: int | None = None
    pool_stride: int | None = None
    karcher_iterations: int = 1
    karcher_tol: float | None = None
    bn_momentum: float = 0.1
    reeig_eps: float = 1e-4
    mixture: str = "sparsemax"


@dataclass
class SearchConfig:
    """Bi-level search (SPEC §4): weight step on search-train, architecture step on search-val."""

    epochs: int = 100
    batch_size: int = 30
    order: str = "first"
    weight_lr: float = 0.025
    weight_momentum: float = 0.0
    weight_decay: float = 3e-4
    grad_clip: float | None = 5.0
    arch_lr: float = 3e-4
    arch_betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    arch_weight_decay: float = 1e-3


@dataclass
class TrainConfig:
    """Retraining a genotype from scratch on the train split, selected on the val split."""

    epochs: int = 200
    batch_size: int = 30
    lr: float = 0.025
    momentum: float = 0.0
    weight_decay: float = 3e-4
    lr_decay: float = 1.0
    grad_clip: float | None = 5.0


@dataclass
class RuntimeConfig:
    """Where and how to compute.

    ``threads`` is how many CPU threads decompose batches of matrices in parallel (0: every core
    this process may use; a Ray Train worker's or a benchmark trial's share of the node's CPUs on
    Ray); ``torch_threads`` is torch's intra-op pool, which slows the many
    small batched operations of SPD networks down on CPU, hence 1.
    """

    device: str = "cpu"
    dtype: str = "float64"
    threads: int = 0
    torch_threads: int = 1
    seed: int = 0
    output_dir: str = "runs"
    progress: bool = True
    checkpoint_every: int = 1


@dataclass
class DistributedConfig:
    """How runs are executed: in this process, or by Ray Train on a local or remote Ray.

    ``backend: ray`` with no ``address`` (and no ``RAY_ADDRESS``) starts a private local Ray
    with this machine's CPUs (no dashboard unless ``dashboard: true``) and stops it afterwards.
    ``data: replicate`` streams the whole dataset to every worker, which then takes its slice
    of each global batch (N workers compute exactly what one would); ``data: shard`` gives each
    worker its own part of the rows (for datasets too large to replicate).
    ``placement_strategy`` places the workers' bundles on nodes (Ray's placement-group strategies):
    ``PACK`` prefers few nodes, ``STRICT_PACK`` requires one node (e.g. the 4 GPUs of one
    machine, where an autoscaler would otherwise start four 1-GPU nodes), ``SPREAD`` /
    ``STRICT_SPREAD`` prefer / require one node per worker.
    ``max_failures`` restarts a run's worker group (Ray Train); ``trial_max_failures`` reruns a
    failed sweep trial (Ray Tune; e.g. its process was on a node that was lost), which resumes
    its runs from their checkpoints. ``-1``: retry forever.
    """

    backend: str = "ray"
    address: str | None = None
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 0.0
    data: str = "replicate"
    sync_batchnorm: bool = True
    max_failures: int = 2
    trial_max_failures: int = 1
    keep_checkpoints: int = 2
    dashboard: bool = False
    placement_strategy: str = "PACK"


PLACEMENT_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
SWEEP_METRICS = ("best_val_accuracy", "val_accuracy", "val_loss", "train_accuracy", "train_loss")


@dataclass
class SweepConfig:
    """A Ray Tune sweep with Optuna's TPE over ``space``; every configuration runs ``seeds`` times.

    ``space`` maps dotted config keys to distributions:
    ``{type: loguniform|uniform, low, high}``, ``{type: int, low, high}`` or
    ``{type: choice, values: [...]}``. Trials are judged on ``metric`` (a validation metric of the
    retraining — never the test split). With ``search: true`` a trial searches first and
    retrains what it found; otherwise it retrains ``genotype``.
    """

    space: dict[str, dict[str, Any]] = field(default_factory=dict)
    num_samples: int = 8
    seeds: int = 3
    metric: str = "best_val_accuracy"
    mode: str = "max"
    search: bool = True
    genotype: str = "radar"
    max_concurrent_trials: int = 2
    scheduler: str = "none"
    grace_period: int = 5

    def __post_init__(self) -> None:
        # YAML 1.1 reads a bound written like 1e-5 (no dot) as text; take it as the number it is.
        for spec in self.space.values():
            if isinstance(spec, dict):
                for bound in ("low", "high"):
                    text = spec.get(bound)
                    if isinstance(text, str) and _is_float_text(text) and math.isfinite(float(text)):
                        spec[bound] = float(text)


@dataclass
class BenchmarkDataset:
    """One dataset of a benchmark, with config overrides that apply to it only."""

    name: str = "radar-synth"
    data: DataConfig = field(default_factory=DataConfig)
    overrides: list[str] = field(default_factory=list)


BENCHMARK_METHODS: dict[str, tuple[str, ...]] = {
    "spdnetnas": ("search", "train"), "spdnet": ("train",), "spdnetbn": ("train",), "random": ("train",),
    "darts": ("search", "train"), "fairdarts": ("search", "train"), "mdm": (), "ts-lr": ()}
"""Every method a benchmark can run (their code: :data:`spdnas.benchmark.methods.METHODS`), with
the budgets (``search``, ``train``) whose mini-batches it trains on."""


@dataclass
class BenchmarkConfig:
    """Methods × datasets × seeds, each run a Tune trial on ``cpus_per_trial`` CPUs (and, when
    ``runtime.device`` is CUDA, ``gpus_per_trial`` GPUs; a fraction shares one GPU)."""

    methods: list[str] = field(default_factory=lambda: list(BENCHMARK_METHODS))
    datasets: list[BenchmarkDataset] = field(default_factory=lambda: [BenchmarkDataset()])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    max_concurrent_trials: int = 0
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 1.0


@dataclass
class BaselineConfig:
    """Shapes of the baselines the benchmark compares against (SPEC §6); their budget is ours.

    ``spdnet_dims`` are the matrix sizes of SPDNet/SPDNetBN, input first (``None``: ``[n, 0.8 n,
    0.6 n]`` rounded, e.g. ``[20, 16, 12]`` for RADAR). ``darts_*`` shape the Euclidean NAS
    baselines on log-mapped inputs: feature width, number of cells and intermediate nodes per
    cell. FairDARTS adds ``fairdarts_zero_one_weight`` times its zero-one loss to the
    architecture objective, keeps an operation when ``sigmoid(α) > fairdarts_threshold`` and
    updates α with Adam at ``fairdarts_arch_lr``, betas ``fairdarts_arch_betas`` (its reference
    code's ``op_threshold``, ``arch_learning_rate`` and betas; the rest of the search is ours).
    ``logistic_max_iter`` bounds the solver of tangent space + logistic regression.
    """

    spdnet_dims: list[int] | None = None
    darts_width: int = 32
    darts_cells: int = 2
    darts_steps: int = 2
    fairdarts_zero_one_weight: float = 10.0
    fairdarts_threshold: float = 0.85
    fairdarts_arch_lr: float = 3e-3
    fairdarts_arch_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    logistic_max_iter: int = 5000


@dataclass
class ExperimentConfig:
    """A whole experiment: data, model, search, retraining and runtime settings."""

    name: str = "experiment"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    baselines: BaselineConfig = field(default_factory=BaselineConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe YAML 1.1, less the readings that change what was written: an integer is
    one written plainly (``0``, ``42``, ``-7``, ``+5``), a float has a dot or an exponent
    (``1e-5`` too, which YAML 1.1 leaves as text), and dates stay text. ``010`` (octal 8 in
    YAML 1.1), ``0x10``, ``1_000`` and ``2024-06-01`` stay the text they are, at any depth, so
    that a text setting keeps them as written and a number setting refuses them."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (
        "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"),
                              list("-+0123456789"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+\.[0-9]*(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?"
               r"|[0-9]+[eE][-+]?[0-9]+)$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."))


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


MAX_SEED = 2**32 - 1
"""The largest seed of a new run: every generator (torch, numpy, Optuna's, scikit-learn's) takes
it, and the per-epoch seeds derived from it stay within 64 bits."""


class ConfigError(ValueError):
    """A configuration value or key is invalid."""


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check/convert ``value`` against a (resolved) type annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError("; ".join(errors))
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _build(annotation, value, where)
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(annotation)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is Any:
        return value
    if annotation is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-3" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if annotation is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if annotation is bool and isinstance(value, bool):
        return value
    if annotation is str and isinstance(value, str):
        return value
    if annotation is str and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # name=2024 (the loader reads only plainly written integers)
    raise ConfigError(f"{where}: expected {getattr(annotation, '__name__', annotation)}, got {value!r}")


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in set(values) - names)
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown key(s) {unknown}; known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in values.items()}
    return cls(**kwargs)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {part!r} is not a section")
    node[parts[-1]] = value


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["search.epochs=5", "model.cells=[reduce,normal]"]`` → nested dict (YAML-typed values)."""
    tree: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {pair!r} is not of the form key=value")
        try:
            value = _load_yaml(raw) if raw else ""
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or exc
            raise ConfigError(f"override {pair!r}: not valid YAML ({problem})") from None
        _set_dotted(tree, key.strip(), value)
    return tree


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Build an :class:`ExperimentConfig` from an optional YAML file plus ``key=value`` overrides.

    Raises
    ------
    ConfigError
        For unknown keys, values of the wrong type, or values out of range.
    """
    tree: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = _load_yaml(Path(path).read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not a text file ({exc.reason} at byte {exc.start}); --config "
                              "takes an experiment YAML file (see configs/)") from None
        except yaml.YAMLError as exc:  # one line: where, and what, not PyYAML's excerpt of the file
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"{path}: not valid YAML{where} ({problem}); --config takes an experiment "
                              "YAML file (see configs/)") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        tree = loaded
    config = config_from_dict(tree, overrides)
    check_new_seeds(config)
    return config


def _seeds(config: ExperimentConfig) -> list[tuple[str, int | None]]:
    """(key, value) of every seed a configuration sets."""
    return [("runtime.seed", config.runtime.seed), ("data.split_seed", config.data.split_seed),
            *((f"benchmark.seeds[{i}]", seed) for i, seed in enumerate(config.benchmark.seeds))]


def check_new_seeds(config: ExperimentConfig, sweep_repeats: bool = False) -> None:
    """Refuse seeds above :data:`MAX_SEED` for a new run (``sweep_repeats``: also the seeds
    ``runtime.seed + k`` of a sweep's repeats). Saved configurations are not checked: a model
    trained with a larger seed still loads.

    Raises
    ------
    ConfigError
    """
    seeds = _seeds(config)
    if sweep_repeats:
        last = f"runtime.seed + sweep.seeds - 1 (the seed of the last of {config.sweep.seeds} repeats)"
        seeds.append((last, config.runtime.seed + config.sweep.seeds - 1))
    problems = [f"{key} must be at most {MAX_SEED} (2^32 - 1), got {seed}" for key, seed in seeds
                if seed is not None and seed > MAX_SEED]
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def config_from_dict(tree: dict[str, Any], overrides: list[str] | None = None) -> ExperimentConfig:
    """Build and check an :class:`ExperimentConfig` from nested dictionaries (e.g. a saved one),
    with optional ``key=value`` overrides on top."""
    config = _build(ExperimentConfig, _merge(tree, parse_overrides(overrides or [])), "")
    check_config(config)
    return config


def _non_finite(tree: Any, where: str) -> list[str]:
    if isinstance(tree, dict):
        return [p for k, v in tree.items() for p in _non_finite(v, f"{where}{k}.")]
    if isinstance(tree, list):
        return [p for i, v in enumerate(tree) for p in _non_finite(v, f"{where}{i}.")]
    if isinstance(tree, float) and not math.isfinite(tree):
        return [f"{where.rstrip('.')} must be a finite number, got {tree}"]
    return []


def _is_setting(config: Any, dotted: str) -> bool:
    """Whether ``dotted`` (``"train.lr"``) names a setting of ``config``, not a section."""
    node = config
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(node) or part not in {f.name for f in dataclasses.fields(node)}:
            return False
        node = getattr(node, part)
    return not dataclasses.is_dataclass(node)


def _range_problems(config: ExperimentConfig) -> list[str]:
    """Sizes, thresholds and counts that no run could use."""
    m, r, d = config.model, config.runtime, config.distributed
    problems = _non_finite(dataclasses.asdict(config), "")
    if any(c < 1 for c in m.cell_channels) or m.stem_channels < 1:
        problems.append(f"model.cell_channels and model.stem_channels must be >= 1, got "
                        f"{m.cell_channels} and {m.stem_channels}")
    if m.reduced_dims is not None and any(k < 1 for k in m.reduced_dims):
        problems.append(f"model.reduced_dims must be >= 1, got {m.reduced_dims}")
    if not 0 < m.bn_momentum <= 1:
        problems.append(f"model.bn_momentum must be in (0, 1], got {m.bn_momentum}")
    for key, name in (("name", config.name), *((f"benchmark.datasets[{i}].name", d.name)
                                               for i, d in enumerate(config.benchmark.datasets))):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            problems.append(f"{key} names a folder: letters, digits, '.', '_' and '-', not starting with "
                            f"'.', '_' or '-', got {name!r}")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", r.device):
        problems.append(f"runtime.device must be cpu, cuda or cuda:N, got {r.device!r}")
    for key, value in (("max_failures", d.max_failures), ("trial_max_failures", d.trial_max_failures)):
        if value < -1:
            problems.append(f"distributed.{key} must be >= 0 (or -1: retry forever), got {value}")
    if d.cpus_per_worker < 0:
        problems.append(f"distributed.cpus_per_worker must be >= 0 (0: an equal share of the CPUs), "
                        f"got {d.cpus_per_worker}")
    for key, clip in (("search.grad_clip", config.search.grad_clip),
                      ("train.grad_clip", config.train.grad_clip)):
        if clip is not None and not clip > 0:  # torch would flip (< 0) or zero (0) every gradient
            problems.append(f"{key} must be > 0 (or null: no clipping), got {clip}")
    return problems


def _is_float_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _bounds_problems(kind: str, spec: dict[str, Any]) -> list[str]:
    """What is wrong with the ``low``/``high`` of a ``loguniform``, ``uniform`` or ``int`` range."""
    low, high = spec.get("low"), spec.get("high")
    if any(isinstance(v, bool) or not isinstance(v, (int, float))
           or (kind == "int" and not float(v).is_integer()) for v in (low, high)):
        what = "integers" if kind == "int" else "numbers"
        return [f"low and high must be {what}, got low={low!r}, high={high!r}"]
    if not low < high:
        return [f"needs low < high, got low={low!r}, high={high!r}"]
    if kind == "loguniform" and low <= 0:
        return [f"a loguniform range needs low > 0, got low={low!r}"]
    return []


def _setting_type(dotted: str) -> Any:
    """The type annotation of the setting ``dotted`` (``"train.epochs"`` → ``int``)."""
    cls = ExperimentConfig
    *sections, name = dotted.split(".")
    for part in sections:
        cls = typing.get_type_hints(cls)[part]
    return typing.get_type_hints(cls)[name]


def _takes(annotation: Any, value: Any) -> bool:
    """Whether a setting of type ``annotation`` takes ``value`` as a config file gives it, except
    a number as text (``name=2024`` is text typed without quotes; a number drawn for a text
    setting is a mistake)."""
    try:
        taken = _coerce(value, annotation, "")
    except ConfigError:
        return False
    return isinstance(value, str) or not isinstance(taken, str)


def _draw_problems(key: str, spec: dict[str, Any], annotation: Any) -> list[str]:
    """What a trial would refuse of the values that ``spec`` (a well-formed distribution of
    ``sweep.space``) draws for the setting ``key`` of type ``annotation``: a trial's config is
    checked as any other, so ``train.epochs`` drawn from a ``uniform`` range (1.77) failed every
    trial."""
    kind = spec["type"]
    plain = isinstance(annotation, type) and typing.get_origin(annotation) is None
    shown = annotation.__name__ if plain else str(annotation)
    if kind == "choice":
        return [f"sweep.space.{key}: values[{i}]={value!r}, but {key} takes {shown}: use {shown} values"
                for i, value in enumerate(spec["values"]) if not _takes(annotation, value)]
    draws = (int(spec["low"]), int(spec["high"])) if kind == "int" else (float(spec["low"]),)
    if all(_takes(annotation, value) for value in draws):
        return []
    fix = "type: int, or a choice of its values" if _takes(annotation, 1) else f"a choice of {shown} values"
    what = "integers" if kind == "int" else "non-integer numbers"
    return [f"sweep.space.{key}: type {kind} draws {what}, but {key} takes {shown}: use {fix}"]


def _space_problems(config: ExperimentConfig) -> list[str]:
    """What is wrong with ``sweep.space``: keys that name no setting a sweep may vary, malformed
    distributions, and distributions that draw values their setting does not take."""
    problems = []
    for key, spec in config.sweep.space.items():
        varies = _is_setting(config, key) and not key.startswith("sweep.") and key != "runtime.seed"
        if not varies:
            problems.append(f"sweep.space.{key}: not a setting a sweep can vary (a dotted key of the "
                            f"config such as train.lr; not sweep.* or runtime.seed, the seeds are repeats)")
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind not in ("loguniform", "uniform", "int", "choice"):
            shape = [f"type must be loguniform, uniform, int or choice, got {kind!r}"]
        elif kind == "choice":
            listed = isinstance(spec.get("values"), list) and spec["values"]
            shape = [] if listed else ["a choice needs a non-empty 'values' list"]
        else:
            shape = _bounds_problems(kind, spec)
        problems += [f"sweep.space.{key}: {p}" for p in shape]
        if varies and not shape:
            problems += _draw_problems(key, spec, _setting_type(key))
    return problems


def check_config(config: ExperimentConfig) -> None:
    """Reject values no run could use, with the offending key in the message."""
    problems = _problems(config)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


MAX_SPACE_END_DRAWS = 1024


def check_sweep_space_ends(config: ExperimentConfig) -> None:
    """Refuse a sweep whose trials could draw values no run can use, judged on the ends of its
    distributions (each choice, each range's low and high) in every combination (Optuna draws
    each setting on its own, so any combination can come): a negative learning rate, no epochs,
    a batch size the drawn number of workers cannot share. Values inside a range are checked by
    the trial that draws them (it fails, and the summary names it); so are the ends of a space
    with more than :data:`MAX_SPACE_END_DRAWS` combinations. The sweep's driver checks this
    once; trials, workers and saved models check their own configs only.

    Raises
    ------
    ConfigError
        Naming, for at most five combinations, the values drawn and what they make invalid.
    """
    space = config.sweep.space
    ends = []
    for spec in space.values():
        values = spec["values"] if spec["type"] == "choice" else [spec["low"], spec["high"]]
        kind = {"int": int, "uniform": float, "loguniform": float}.get(spec["type"])
        ends.append([kind(v) for v in values] if kind else values)
    if math.prod(len(v) for v in ends) > MAX_SPACE_END_DRAWS:
        return
    base, problems = config.to_dict(), []
    for draw in itertools.product(*ends):
        tree: dict[str, Any] = {}
        for key, value in zip(space, draw, strict=True):
            _set_dotted(tree, key, value)
        found = _problems(_build(ExperimentConfig, _merge(base, tree), ""))
        if found:
            drawn = ", ".join(f"{key}={value!r}" for key, value in zip(space, draw, strict=True))
            problems.append(f"sweep.space: drawing {drawn} makes {'; '.join(found)}")
    if problems:
        more = f"\n  ... and {len(problems) - 5} more such draws" if len(problems) > 5 else ""
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems[:5]) + more)


def _problems(config: ExperimentConfig) -> list[str]:
    """Every value of ``config`` no run could use, each with its key."""
    m, s, t, r = config.model, config.search, config.train, config.runtime
    problems = []
    if not m.cells:
        problems.append("model.cells must list at least one cell ('reduce' or 'normal')")
    if set(m.cells) - {"reduce", "normal"}:
        problems.append(f"model.cells: entries must be 'reduce' or 'normal', got {m.cells}")
    if len(m.cell_channels) != len(m.cells):
        problems.append(
            f"model.cell_channels: need one entry per cell ({len(m.cells)}), got {m.cell_channels}")
    if m.reduced_dims is not None and len(m.reduced_dims) != m.cells.count("reduce"):
        problems.append(f"model.reduced_dims: need one entry per reduction cell "
                        f"({m.cells.count('reduce')}), got {m.reduced_dims}")
    if not 1 <= m.multiplier <= m.steps:
        problems.append(f"model.multiplier must be in [1, steps={m.steps}], got {m.multiplier}")
    if m.mixture not in ("sparsemax", "softmax", "sigmoid"):
        problems.append(f"model.mixture must be sparsemax, softmax or sigmoid, got {m.mixture!r}")
    if m.karcher_iterations < 1:
        problems.append(f"model.karcher_iterations must be >= 1, got {m.karcher_iterations}")
    for key, value in (("model.pool_kernel", m.pool_kernel), ("model.pool_stride", m.pool_stride)):
        if value is not None and value < 1:
            problems.append(f"{key} must be >= 1 (or null: derived from the sizes), got {value}")
    for key, value in (("data.uri", config.data.uri), ("runtime.output_dir", r.output_dir)):
        if not str(value).strip():
            problems.append(f"{key} is empty (an unset variable?): name a folder or an s3:// URI")
    if m.karcher_tol is not None and not m.karcher_tol > 0:
        problems.append(f"model.karcher_tol must be > 0 (or null: always karcher_iterations steps), "
                        f"got {m.karcher_tol}")
    if s.order not in ("first", "second"):
        problems.append(f"search.order must be 'first' or 'second', got {s.order!r}")
    if len(s.arch_betas) != 2 or not all(0 <= b < 1 for b in s.arch_betas):
        problems.append(f"search.arch_betas needs two values in [0, 1) (Adam's β1, β2), got {s.arch_betas}")
    problems += [f"{key} must be >= 0, got {seed}" for key, seed in _seeds(config)
                 if seed is not None and seed < 0]
    for key, value in (("search.batch_size", s.batch_size), ("train.batch_size", t.batch_size),
                       ("search.epochs", s.epochs), ("train.epochs", t.epochs),
                       ("runtime.torch_threads", r.torch_threads),
                       ("sweep.num_samples", config.sweep.num_samples), ("sweep.seeds", config.sweep.seeds),
                       ("sweep.max_concurrent_trials", config.sweep.max_concurrent_trials),
                       ("sweep.grace_period", config.sweep.grace_period),
                       ("distributed.keep_checkpoints", config.distributed.keep_checkpoints)):
        if value < 1:
            problems.append(f"{key} must be >= 1, got {value}")
    for key, value in (("search.weight_lr", s.weight_lr), ("train.lr", t.lr), ("train.lr_decay", t.lr_decay),
                       ("model.reeig_eps", m.reeig_eps)):
        if not value > 0:
            problems.append(f"{key} must be > 0, got {value}")
    if not s.arch_lr >= 0:
        problems.append(f"search.arch_lr must be >= 0 (0 freezes the architecture), got {s.arch_lr}")
    for key, value in (("search.weight_decay", s.weight_decay), ("train.weight_decay", t.weight_decay),
                       ("search.arch_weight_decay", s.arch_weight_decay),
                       ("search.weight_momentum", s.weight_momentum), ("train.momentum", t.momentum)):
        if value < 0:
            problems.append(f"{key} must be >= 0, got {value}")
    if r.threads < 0:
        problems.append(f"runtime.threads must be >= 0 (0 = all cores), got {r.threads}")
    if r.checkpoint_every < 1:
        problems.append(f"runtime.checkpoint_every must be >= 1 (epochs), got {r.checkpoint_every}")
    if not 0 < config.data.search_val_fraction < 1:
        problems.append(f"data.search_val_fraction must be in (0, 1), got {config.data.search_val_fraction}")
    if config.data.search_split not in SEARCH_SPLITS:
        problems.append(f"data.search_split must be one of {', '.join(SEARCH_SPLITS)}, got "
                        f"{config.data.search_split!r}")
    if r.dtype not in ("float32", "float64"):
        problems.append(f"runtime.dtype must be float32 or float64, got {r.dtype!r}")
    d = config.distributed
    if d.backend not in ("ray", "local"):
        problems.append(f"distributed.backend must be 'ray' or 'local', got {d.backend!r}")
    if d.data not in ("replicate", "shard"):
        problems.append(f"distributed.data must be 'replicate' or 'shard', got {d.data!r}")
    if d.placement_strategy not in PLACEMENT_STRATEGIES:
        problems.append(f"distributed.placement_strategy must be one of {', '.join(PLACEMENT_STRATEGIES)}, "
                        f"got {d.placement_strategy!r}")
    if d.num_workers < 1:
        problems.append(f"distributed.num_workers must be >= 1, got {d.num_workers}")
    for key, size in (("search.batch_size", s.batch_size), ("train.batch_size", t.batch_size)):
        if size % d.num_workers:
            problems.append(f"{key}={size} must be divisible by distributed.num_workers={d.num_workers}")
    problems += _space_problems(config)
    w = config.sweep
    if w.scheduler == "asha" and w.grace_period > t.epochs:
        problems.append(f"sweep.grace_period={w.grace_period} exceeds train.epochs={t.epochs}: ASHA would "
                        f"never compare trials")
    if "test" in w.metric:
        problems.append(f"sweep.metric={w.metric!r}: sweeps must not select on the test split")
    elif w.metric not in SWEEP_METRICS:
        problems.append(f"sweep.metric must be one the retraining reports each epoch, one of "
                        f"{', '.join(SWEEP_METRICS)}; got {w.metric!r}")
    elif w.mode == ("min" if "accuracy" in w.metric else "max"):
        problems.append(f"sweep.mode={w.mode} with sweep.metric={w.metric} would select the worst "
                        f"configuration")
    if w.mode not in ("max", "min"):
        problems.append(f"sweep.mode must be max or min, got {w.mode!r}")
    if w.scheduler not in ("none", "asha"):
        problems.append(f"sweep.scheduler must be none or asha, got {w.scheduler!r}")
    problems += _benchmark_problems(config.benchmark) + _baseline_problems(config.baselines)
    return problems + _range_problems(config)


def _benchmark_problems(b: BenchmarkConfig) -> list[str]:
    problems = []
    for key, value in (("methods", b.methods), ("seeds", b.seeds), ("datasets", b.datasets)):
        if not value:
            problems.append(f"benchmark.{key} must not be empty")
    unknown = [m for m in b.methods if m not in BENCHMARK_METHODS]
    if unknown:
        problems.append(f"benchmark.methods: unknown {unknown}; known: {', '.join(BENCHMARK_METHODS)}")
    names = [d.name for d in b.datasets]
    if len(set(names)) != len(names):
        problems.append(f"benchmark.datasets: names must be unique, got {names}")
    if len(set(b.methods)) != len(b.methods) or len(set(b.seeds)) != len(b.seeds):
        problems.append("benchmark.methods and benchmark.seeds must not repeat entries")
    for key, value in (("cpus_per_trial", b.cpus_per_trial), ("gpus_per_trial", b.gpus_per_trial)):
        if not value > 0:
            problems.append(f"benchmark.{key} must be > 0, got {value}")
    if b.max_concurrent_trials < 0:
        problems.append(f"benchmark.max_concurrent_trials must be >= 0 (0: as many as the CPUs allow), "
                        f"got {b.max_concurrent_trials}")
    return problems


def _baseline_problems(b: BaselineConfig) -> list[str]:
    problems = []
    dims = b.spdnet_dims
    if dims is not None and (len(dims) < 2 or min(dims) < 1
                             or any(later > earlier for earlier, later in itertools.pairwise(dims))):
        problems.append("baselines.spdnet_dims must list at least two positive, non-increasing matrix "
                        f"sizes (input size first), got {dims}")
    for key, value in (("darts_cells", b.darts_cells), ("darts_steps", b.darts_steps),
                       ("logistic_max_iter", b.logistic_max_iter)):
        if value < 1:
            problems.append(f"baselines.{key} must be >= 1, got {value}")
    if b.darts_width < 2:
        problems.append(f"baselines.darts_width must be >= 2 (the bottleneck op halves it), "
                        f"got {b.darts_width}")
    if b.fairdarts_zero_one_weight < 0:
        problems.append(f"baselines.fairdarts_zero_one_weight must be >= 0, "
                        f"got {b.fairdarts_zero_one_weight}")
    if not 0 < b.fairdarts_threshold < 1:
        problems.append(f"baselines.fairdarts_threshold must be in (0, 1), got {b.fairdarts_threshold}")
    if not b.fairdarts_arch_lr >= 0:
        problems.append(f"baselines.fairdarts_arch_lr must be >= 0, got {b.fairdarts_arch_lr}")
    if len(b.fairdarts_arch_betas) != 2 or not all(0 <= x < 1 for x in b.fairdarts_arch_betas):
        problems.append("baselines.fairdarts_arch_betas needs two values in [0, 1) (Adam's β1, β2), "
                        f"got {b.fairdarts_arch_betas}")
    return problems
