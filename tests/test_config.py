"""Typed configuration: YAML + dotted overrides, unknown keys and bad values rejected."""

from __future__ import annotations

import pytest

from spdnas.config import (
    ConfigError,
    ExperimentConfig,
    check_new_seeds,
    config_from_dict,
    load_config,
    parse_overrides,
)


def test_defaults_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: radar\nsearch:\n  epochs: 7\nmodel:\n  reduced_dims: [10]\n")
    cfg = load_config(path, ["search.epochs=3", "runtime.dtype=float32", "model.cells=[reduce, normal]",
                             "search.grad_clip=null", "search.arch_lr=1e-2"])
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.name == "radar" and cfg.search.epochs == 3 and cfg.runtime.dtype == "float32"
    assert cfg.search.grad_clip is None and cfg.search.arch_lr == pytest.approx(0.01)
    assert cfg.model.cells == ["reduce", "normal"]


def test_int_promotes_to_float_but_not_the_reverse():
    assert load_config(None, ["search.weight_lr=1"]).search.weight_lr == 1.0
    with pytest.raises(ConfigError, match=r"search\.epochs: expected int"):
        load_config(None, ["search.epochs=2.5"])


@pytest.mark.parametrize("override, message", [
    (["search.epoch=3"], r"unknown key\(s\) \['epoch'\]"),
    (["bogus.x=1"], r"unknown key\(s\) \['bogus'\]"),
    (["search.order=third"], "search.order must be"),
    (["model.cells=[reduce, normal, normal]"], "model.cell_channels: need one entry per cell"),
    (["model.mixture=gumbel"], "model.mixture must be"),
    (["runtime.dtype=float16"], "runtime.dtype must be"),
    (["data.search_val_fraction=1.5"], "data.search_val_fraction"),
    (["data.search_split=subject"], "data.search_split must be one of auto, stratified, group"),
    (["search.batch_size=0"], "search.batch_size must be >= 1"),
    (["noequals"], "not of the form key=value"),
    (["train.epochs=0"], "train.epochs must be >= 1"),
    (["train.lr=0"], "train.lr must be > 0"),
    (["search.arch_lr=-1e-3"], "search.arch_lr must be >= 0"),
    (["search.arch_weight_decay=-1e-3"], "search.arch_weight_decay must be >= 0"),
    (["benchmark.seeds=[]"], "benchmark.seeds must not be empty"),
    (["benchmark.seeds=[0, 0]"], "must not repeat entries"),
    (["benchmark.cpus_per_trial=0"], "benchmark.cpus_per_trial must be > 0"),
    (["benchmark.datasets=[{name: a}, {name: a}]"], "names must be unique"),
    (["train.lr=[0.1"], "not valid YAML"),
    (["runtime.checkpoint_every=0"], "runtime.checkpoint_every must be >= 1"),
    (["search.weight_decay=.nan"], "search.weight_decay must be a finite number, got nan"),
    (["train.lr=.inf"], "train.lr must be a finite number, got inf"),
    (["model.cell_channels=[0, 4]"], "model.cell_channels and model.stem_channels must be >= 1"),
    (["model.reeig_eps=-1"], "model.reeig_eps must be > 0"),
    (["runtime.device=tpu"], "runtime.device must be cpu, cuda or cuda:N"),
    (["sweep.num_samples=0"], "sweep.num_samples must be >= 1"),
    (["distributed.max_failures=-3"], r"distributed.max_failures must be >= 0 \(or -1"),
    (["distributed.cpus_per_worker=-3"], r"distributed.cpus_per_worker must be >= 0 \(0: an equal share"),
    (["distributed.placement_strategy=pack"], "distributed.placement_strategy must be one of PACK, SPREAD, "
                                              "STRICT_PACK, STRICT_SPREAD, got 'pack'"),
    (["sweep.space={train.learning_rate: {type: uniform, low: 0, high: 1}}"],
     "sweep.space.train.learning_rate: not a setting a sweep can vary"),
    (["sweep.space={train: {type: uniform, low: 0, high: 1}}"], "sweep.space.train: not a setting"),
    (["sweep.space={runtime.seed: {type: int, low: 0, high: 9}}"], "sweep.space.runtime.seed: not a setting"),
    (["sweep.space={train.lr: {type: loguniform, low: 0, high: 1}}"],
     r"sweep.space.train.lr: a loguniform range needs low > 0, got low=0"),
    (["sweep.space={train.lr: {type: uniform, low: 1, high: 1}}"], "sweep.space.train.lr: needs low < high"),
    (["sweep.space={train.lr: {type: uniform, low: a, high: 1}}"],
     "sweep.space.train.lr: low and high must be numbers, got low='a'"),
    (["sweep.space={train.batch_size: {type: int, low: 2.0, high: 3.7}}"],
     "sweep.space.train.batch_size: low and high must be integers"),
    (["sweep.space={train.lr: {type: uniform, high: 1}}"], "low and high must be numbers, got low=None"),
    (["sweep.max_concurrent_trials=0"], "sweep.max_concurrent_trials must be >= 1"),
    (["model.karcher_tol=0"], r"model.karcher_tol must be > 0 \(or null"),
    (["search.arch_betas=[1.5, 0.9]"], r"search.arch_betas needs two values in \[0, 1\)"),
    (["runtime.seed=-1"], "runtime.seed must be >= 0, got -1"),
    (["data.split_seed=-3"], "data.split_seed must be >= 0, got -3"),
    (["benchmark.seeds=[0, -1]"], r"benchmark.seeds\[1\] must be >= 0, got -1"),
    (["runtime.seed=35184372088832"], r"runtime.seed must be at most 4294967295 \(2\^32 - 1\)"),  # overflowed
    (["benchmark.seeds=[0, 4294967296]"], r"benchmark.seeds\[1\] must be at most 4294967295"),
    (["train.grad_clip=-5"], r"train.grad_clip must be > 0 \(or null: no clipping\), got -5"),
    (["search.grad_clip=0"], "search.grad_clip must be > 0"),
    (["sweep.seeds=0"], "sweep.seeds must be >= 1"),
    (["sweep.scheduler=asha", "sweep.grace_period=500"], "sweep.grace_period=500 exceeds train.epochs=200"),
    (["sweep.metric=val_acc"], "sweep.metric must be one the retraining reports each epoch"),
    (["sweep.metric=val_loss"], "sweep.mode=max with sweep.metric=val_loss would select the worst"),
    (["name=../elsewhere"], "name names a folder: .*got '../elsewhere'"),
    (["name=a/b"], "name names a folder"),
    (["name=''"], "name names a folder"),
    (["benchmark.datasets=[{name: ..}]"], r"benchmark.datasets\[0\].name names a folder"),
    (["runtime.seed=010"], r"runtime.seed: expected int, got '010'"),
    (["runtime.seed=0x10"], r"runtime.seed: expected int, got '0x10'"),
    (["model.pool_kernel=0"], r"model.pool_kernel must be >= 1 \(or null"),
    (["model.pool_stride=-2"], r"model.pool_stride must be >= 1 \(or null"),
    (["data.uri="], r"data.uri is empty \(an unset variable\?\)"),
    (["runtime.output_dir=' '"], r"runtime.output_dir is empty"),
])
def test_bad_values_are_rejected(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, override)


def test_sweep_bounds_written_without_a_dot_are_numbers(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("sweep:\n  space:\n    train.lr: {type: loguniform, low: 1e-5, high: 1e-1}\n"
                    "    train.weight_decay: {type: uniform, low: 0, high: 5e-4}\n")
    cfg = load_config(path, [])
    assert cfg.sweep.space["train.lr"] == {"type": "loguniform", "low": 1e-5, "high": 0.1}
    assert cfg.sweep.space["train.weight_decay"]["high"] == 5e-4
    for text in ("inf", "nan"):
        with pytest.raises(ConfigError, match="low and high must be numbers"):
            load_config(None, [f"sweep.space={{train.lr: {{type: uniform, low: 0, high: {text}}}}}"])


def test_parse_overrides_types():
    assert parse_overrides(["a.b=3", "a.c=[1, 2]", "d=text"]) == {"a": {"b": 3, "c": [1, 2]}, "d": "text"}
    numbers = {"a": -5, "b": 0, "c": 1e-5, "d": True, "e": 0.5}
    assert parse_overrides(["a=-5", "b=0", "c=1e-5", "d=true", "e=.5"]) == numbers


def test_text_that_yaml_1_1_would_turn_into_other_values_stays_text(tmp_path):
    """YAML 1.1 read name=0123 as 83 (octal) and name=2024-06-01 as a date, in files, overrides
    and lists alike; benchmark.seeds=[010, 1] became [8, 1]."""
    kept = {"a": "010", "b": "0x10", "c": "2024-06-01", "d": "1_000", "e": "00"}
    assert parse_overrides([f"{k}={v}" for k, v in kept.items()]) == kept
    assert parse_overrides(["a=+5", "b=-0", "c=+.5"]) == {"a": 5, "b": 0, "c": 0.5}  # signs are numbers
    assert parse_overrides(["x=[010, 1]"]) == {"x": ["010", 1]}
    assert load_config(None, ["name=0123"]).name == "0123"
    assert load_config(None, ["name=2024-06-01"]).name == "2024-06-01"
    assert load_config(None, ["name=2024"]).name == "2024"
    path = tmp_path / "c.yaml"
    path.write_text("name: 0123\ndata:\n  builder_params: {day: 2024-06-01}\n")
    config = load_config(path)
    assert config.name == "0123" and config.data.builder_params == {"day": "2024-06-01"}
    for bad, message in ((["benchmark.seeds=[010, 1]"], r"benchmark.seeds\[0\]: expected int, got '010'"),
                         (["name=1.10"], "name: expected str, got 1.1"),  # quote it: name='1.10'
                         (["data.uri=2024.10"], "data.uri: expected str, got 2024.1")):
        with pytest.raises(ConfigError, match=message):
            load_config(None, bad)
    assert load_config(None, ["name='1.10'"]).name == "1.10"


def test_unknown_keys_of_mixed_types_are_named(tmp_path):
    """sorted() of {1, 'a'} raised TypeError instead of naming the keys."""
    path = tmp_path / "c.yaml"
    path.write_text("search:\n  1: a\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=r"search: unknown key\(s\) \['1', 'epochz'\]"):
        load_config(path)


def test_shipped_configs_load():
    from pathlib import Path
    configs = sorted(Path(__file__).resolve().parent.parent.glob("configs/**/*.yaml"))
    assert configs, "no configs shipped"
    for path in configs:
        load_config(path)


def test_config_file_problems_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"cannot read config .*missing\.yaml"):
        load_config(str(tmp_path / "missing.yaml"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("search: [1\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML"):
        load_config(str(broken))
    assert load_config(None, ["runtime.device=cuda:1"]).runtime.device == "cuda:1"


def test_seed_bound_is_for_new_runs_and_sweep_repeats():
    """A model saved with a seed above 2^32 - 1 (trained before the bound) still loads; a sweep's
    repeats runtime.seed + k must stay within it (Optuna and scikit-learn take 32-bit seeds)."""
    saved = load_config(None, []).to_dict()
    saved["runtime"]["seed"] = 2**40
    assert config_from_dict(saved).runtime.seed == 2**40
    config = load_config(None, ["runtime.seed=4294967295"])  # a plain run may use the largest
    with pytest.raises(ConfigError, match=r"runtime.seed \+ sweep.seeds - 1 \(the seed of the last of 3"):
        check_new_seeds(config, sweep_repeats=True)


@pytest.mark.parametrize("space, message", [
    ("{train.epochs: {type: uniform, low: 1, high: 3}}",
     "sweep.space.train.epochs: type uniform draws non-integer numbers, but train.epochs takes int: use "
     "type: int, or a choice of its values"),
    ("{model.pool_kernel: {type: loguniform, low: 1, high: 4}}",
     "sweep.space.model.pool_kernel: type loguniform draws non-integer numbers, but model.pool_kernel "
     "takes int | None: use type: int"),
    ("{train.batch_size: {type: choice, values: [16, 32.5]}}",
     r"sweep.space.train.batch_size: values\[1\]=32.5, but train.batch_size takes int: use int values"),
    ("{model.mixture: {type: int, low: 1, high: 3}}",
     "sweep.space.model.mixture: type int draws integers, but model.mixture takes str: use a choice of "
     "str values"),
    ("{model.mixture: {type: choice, values: [softmax, 1]}}", r"values\[1\]=1, but model.mixture takes str"),
    ("{distributed.sync_batchnorm: {type: uniform, low: 0, high: 1}}",
     "but distributed.sync_batchnorm takes bool: use a choice of bool values"),
    ("{model.cell_channels: {type: int, low: 2, high: 8}}", r"but model.cell_channels takes list\[int\]"),
    ("{model.mixture: {type: choice, values: softmax}}", "a choice needs a non-empty 'values' list"),
])
def test_a_sweep_draws_only_values_its_setting_takes(space, message):
    """train.epochs from a uniform range was accepted, then every trial failed on its config
    (train.epochs: expected int, got 1.77)."""
    with pytest.raises(ConfigError, match=message):
        load_config(None, [f"sweep.space={space}"])


@pytest.mark.parametrize("extra, space, message", [
    (["distributed.num_workers=2"], "{train.batch_size: {type: choice, values: [8, 9]}}",
     "sweep.space: drawing train.batch_size=9 makes train.batch_size=9 must be divisible by "
     "distributed.num_workers=2"),
    ([], "{train.lr: {type: uniform, low: -0.1, high: 0.1}}",
     r"sweep.space: drawing train.lr=-0.1 makes train.lr must be > 0, got -0.1"),
    ([], "{train.epochs: {type: int, low: 0, high: 3}}",
     "sweep.space: drawing train.epochs=0 makes train.epochs must be >= 1, got 0"),
    (["sweep.scheduler=asha", "sweep.grace_period=3"], "{train.epochs: {type: int, low: 2, high: 9}}",
     "drawing train.epochs=2 makes sweep.grace_period=3 exceeds train.epochs=2"),
    (["train.batch_size=6"], "{distributed.num_workers: {type: choice, values: [2, 3]}, "
                             "train.batch_size: {type: choice, values: [6, 8]}}",
     r"drawing distributed.num_workers=3, train.batch_size=8 makes train.batch_size=8 must be divisible by "
     r"distributed.num_workers=3$"),
])
def test_a_sweep_refuses_distribution_ends_no_trial_could_run(extra, space, message):
    """A trial drawing such a value failed on its config, and the driver, checking it again to
    record it, stopped before writing any summary."""
    from spdnas.config import check_sweep_space_ends

    config = load_config(None, [*extra, f"sweep.space={space}"])  # each value alone is a valid setting
    with pytest.raises(ConfigError, match=message):
        check_sweep_space_ends(config)


@pytest.mark.parametrize("space", [
    "{model.steps: {type: choice, values: [3, 4]}, model.multiplier: {type: choice, values: [3]}}",
    "{distributed.num_workers: {type: choice, values: [2, 4]}, search.batch_size: {type: choice, values: "
    "[16, 32]}, train.batch_size: {type: choice, values: [16, 32]}}",
])
def test_a_sweep_whose_every_combination_of_ends_runs_is_accepted(space):
    """Each end was checked with the other swept settings at their configured values, which no
    trial uses: multiplier 3 with the configured steps 2, 4 workers with the configured batch 30."""
    from spdnas.config import check_sweep_space_ends

    check_sweep_space_ends(load_config(None, [f"sweep.space={space}"]))


def test_a_sweep_may_draw_what_its_setting_takes():
    space = ("{train.epochs: {type: int, low: 1, high: 3}, train.lr: {type: int, low: 1, high: 2}, "
             "model.karcher_tol: {type: loguniform, low: 1e-6, high: 1e-3}, "
             "model.pool_kernel: {type: choice, values: [null, 2]}, "
             "model.cell_channels: {type: choice, values: [[2, 4], [4, 8]]}, "
             "distributed.sync_batchnorm: {type: choice, values: [true, false]}}")
    assert len(load_config(None, [f"sweep.space={space}"]).sweep.space) == 6


LOCAL = "would need distributed.backend=ray; the local backend runs one process on all the data (for it, set"


@pytest.mark.parametrize("overrides, message", [
    (["distributed.num_workers=2"], f"distributed.num_workers=2 {LOCAL} distributed.num_workers=1)"),
    (["distributed.data=shard"], f"distributed.data=shard {LOCAL} distributed.data=replicate)"),
    (["distributed.num_workers=2", "distributed.data=shard"],
     f"distributed.num_workers=2, distributed.data=shard {LOCAL} distributed.num_workers=1 "
     "distributed.data=replicate)"),
])
def test_the_local_backend_names_only_the_settings_that_need_ray(overrides, message):
    """distributed.num_workers=2 alone was reported with distributed.data=replicate (the default,
    which the local backend runs) among the settings that need Ray."""
    from spdnas.pipeline import search

    with pytest.raises(ValueError) as refused:
        search(load_config(None, ["distributed.backend=local", *overrides]))
    assert str(refused.value) == message
