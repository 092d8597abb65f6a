"""The sweep's trials.jsonl records and summary, without starting Ray."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from spdnas.config import ConfigError, load_config
from spdnas.data.storage import Folder
from spdnas.distributed.sweep import (
    EXPERIMENT_FILE,
    RUN_ONLY,
    _same_layout,
    _share_cpus,
    _summarise,
    asha_scheduler,
    fixed_genotype,
    trial_record,
)
from spdnas.pipeline import check_same_experiment, with_absolute_paths
from spdnas.search.genotype import Genotype, GenotypeError, published_genotype


def trial(lr, seed, metric, status="TERMINATED"):
    return {"trial_id": f"{lr}-{seed}", "config": {"train.lr": lr}, "seed": seed, "metric": metric,
            "test_accuracy": None if metric is None else metric - 0.1, "status": status}


def test_trials_that_did_not_terminate_are_left_out_and_counted():
    """An errored trial that reported a partial metric (0.1) must not drag its configuration's mean."""
    trials = [trial(0.1, 0, 0.8), trial(0.1, 1, 0.1, "ERROR"), trial(0.1, 2, 0.6),
              trial(0.2, 0, 0.7), trial(0.2, 1, 0.5),
              trial(0.3, 0, 0.9, "ERROR"), trial(0.3, 1, None, "ERROR")]
    rows = _summarise(trials, "max")
    assert [r["config"] for r in rows] == [{"train.lr": 0.1}, {"train.lr": 0.2}]  # 0.3: nothing finished
    assert rows[0]["seeds"] == [0, 2] and rows[0]["metric_mean"] == pytest.approx(0.7)
    assert rows[0]["test_accuracy_mean"] == pytest.approx(0.6) and rows[0]["excluded"] == 1
    assert rows[1]["metric_mean"] == pytest.approx(0.6) and rows[1]["excluded"] == 0


def test_non_finite_metrics_are_left_out_and_counted():
    """A diverged retraining (val loss NaN or inf) neither poisons its configuration's mean and std
    nor breaks the best-first order."""
    trials = [trial(0.1, 0, 0.5), trial(0.1, 1, float("nan")), trial(0.2, 0, float("nan")),
              trial(0.3, 0, 0.2), trial(0.3, 1, float("inf")), trial(0.4, 0, 0.9), trial(0.5, 0, None)]
    rows = _summarise(trials, "min")
    assert [(r["config"]["train.lr"], r["metric_mean"], r["excluded"]) for r in rows] == [
        (0.3, 0.2, 1), (0.1, 0.5, 1), (0.4, 0.9, 0)]


def test_a_single_seed_has_no_standard_deviation():
    rows = _summarise([trial(0.1, 0, 0.8), trial(0.1, 1, 0.6), trial(0.2, 0, 0.7)], "max")
    assert rows[0]["metric_std"] == pytest.approx(0.1414213562) and rows[1]["metric_std"] is None


def asha_with_trials(epochs: int, count: int):
    """``asha_scheduler`` of a config with ``train.epochs=epochs`` and grace 5, with ``count`` stub
    trials t0, t1, ... added; returns (scheduler, trials, metric)."""
    from ray.tune.experiment import Trial

    config = load_config(None, [f"train.epochs={epochs}", "sweep.scheduler=asha", "sweep.grace_period=5"])
    scheduler = asha_scheduler(config)
    scheduler.set_search_properties(config.sweep.metric, config.sweep.mode)
    trials = [Trial("__fake", stub=True, trial_id=f"t{i}") for i in range(count)]
    for t in trials:
        scheduler.on_trial_add(None, t)
    return scheduler, trials, config.sweep.metric


def test_asha_runs_the_best_trial_to_the_end_of_its_retraining():
    """Ray's default max_t (100) stopped every retraining longer than 100 epochs at epoch 100; and
    a stop at max_t itself ended the trial before the retraining wrote model.pt and result.json."""
    scheduler, trials, metric = asha_with_trials(150, 3)
    decisions = {}
    for epoch in range(1, 151):
        for i, t in enumerate(trials):
            if decisions.get(i) is None:
                result = {"epoch": epoch, metric: 0.9 - 0.1 * i}
                action = scheduler.on_trial_result(None, t, result)
                decisions[i] = epoch if action == "STOP" else None
    assert decisions[0] is None  # the best trial is never stopped: its retraining ends by itself
    assert 5 <= decisions[2] < 150  # the worst is stopped early, at a rung


def test_asha_does_not_stop_a_trial_at_a_rung_on_its_last_epoch():
    """With train.epochs=20 and grace 5, the rungs are 5 and 20: a trial that passed rung 5 but
    fell below the cutoff at 20 was stopped at its last epoch, losing model.pt and its test."""
    scheduler, (best, late), metric = asha_with_trials(20, 2)
    actions = {t.trial_id: [] for t in (best, late)}
    for epoch in range(1, 21):
        for trial, value in ((best, 0.9), (late, 0.95 if epoch <= 5 else 0.5)):
            action = scheduler.on_trial_result(None, trial, {"epoch": epoch, metric: value})
            actions[trial.trial_id].append(action)
    assert set(actions["t1"]) == {"CONTINUE"} and set(actions["t0"]) == {"CONTINUE"}


def test_asha_counts_epochs_not_reports():
    """A retraining resumed after a lost worker reports the epochs since its checkpoint again;
    counted as reports, it met the rungs epochs early (a 20-epoch run was stopped at epoch 18)."""
    scheduler, (good, resumed), metric = asha_with_trials(20, 2)
    for epoch in range(1, 6):
        scheduler.on_trial_result(None, good, {"training_iteration": epoch, "epoch": epoch, metric: 0.9})
    epochs = [1, 2, 3, 4, 2, 3, 4, 5]  # a worker lost in epoch 5, checkpoint at 1
    actions = [scheduler.on_trial_result(None, resumed, {"training_iteration": count, "epoch": epoch,
                                                         metric: 0.1})
               for count, epoch in enumerate(epochs, 1)]
    assert actions.index("STOP") == len(epochs) - 1  # at the rung's epoch 5, not at the 5th report


def test_a_configuration_proposed_twice_counts_each_seed_once():
    """TPE proposed the same configuration twice: its row had seeds [0, 0, 1, 1] and a std over
    the same runs counted twice (0.115 instead of 0.141)."""
    trials = [trial(0.1, 0, 0.6), trial(0.1, 1, 0.8), trial(0.1, 0, 0.6), trial(0.1, 1, 0.8)]
    (row,) = _summarise(trials, "max")
    assert row["seeds"] == [0, 1] and row["excluded"] == 2
    assert row["metric_mean"] == pytest.approx(0.7) and row["metric_std"] == pytest.approx(0.1414, abs=1e-4)


def test_summary_order_follows_the_mode():
    trials = [trial(0.1, 0, 0.3), trial(0.2, 0, 0.2), trial(0.3, 0, 0.4)]
    assert [r["metric_mean"] for r in _summarise(trials, "min")] == [0.2, 0.3, 0.4]
    assert [r["metric_mean"] for r in _summarise(trials, "max")] == [0.4, 0.3, 0.2]


@pytest.mark.parametrize(("mode", "metric"), [("max", "val_accuracy"), ("min", "val_loss")])
def test_trial_records_carry_the_sweep_mode(mode, metric):
    config = load_config(None, [f"sweep.mode={mode}", f"sweep.metric={metric}", "runtime.seed=5"])
    result = SimpleNamespace(config={"train.lr": 0.05, "__trial_index__": 1}, path="/tune/sweep_trial_ab",
                             metrics={metric: 0.4, "test_accuracy": 0.9}, error=None)
    assert trial_record(result, config) == {
        "trial_id": "sweep_trial_ab", "config": {"train.lr": 0.05}, "seed": 6, "metric": 0.4,
        "test_accuracy": 0.9, "mode": mode, "status": "TERMINATED"}
    error = RuntimeError("Traceback ...\n  x\nValueError: bad lr\n")
    failed = SimpleNamespace(**{**vars(result), "error": error})
    assert trial_record(failed, config)["status"] == "ERROR"
    assert trial_record(failed, config)["error"] == "ValueError: bad lr"
    stopped = SimpleNamespace(**{**vars(result), "metrics": {metric: 0.4}})  # by ASHA
    assert trial_record(stopped, config)["status"] == "STOPPED"
    # a draw no run can use (inside a range whose ends are fine) fails its trial; the driver
    # recorded it by checking it again, and stopped before writing any summary
    unusable = SimpleNamespace(**{**vars(failed), "config": {"train.batch_size": -3}})
    assert trial_record(unusable, config)["config"] == {"train.batch_size": -3}


def test_a_sweeps_genotype_file_is_read_by_the_driver_where_the_command_runs(tmp_path, monkeypatch):
    """Tune runs each trial in its own folder, where a relative genotype file is not found; the
    recorded experiment keeps the path as written, so a resume from another folder still matches."""
    monkeypatch.chdir(tmp_path)
    mine = published_genotype("hdm05")
    (tmp_path / "mine.json").write_text(mine.to_json())
    config = with_absolute_paths(load_config(None, ["sweep.search=false", "sweep.genotype=mine.json"]))
    assert config.sweep.genotype == "mine.json"
    assert Genotype.from_dict(fixed_genotype(config)) == mine
    assert fixed_genotype(load_config(None, ["sweep.search=true", "sweep.genotype=mine.json"])) is None
    with pytest.raises(GenotypeError, match="neither a genotype file"):
        fixed_genotype(load_config(None, ["sweep.search=false", "sweep.genotype=missing.json"]))


def nodes(*cpus: float, dead: float = 0.0) -> list[dict]:
    """``ray.nodes()`` of live nodes with these CPUs (and a dead one)."""
    live = [{"Alive": True, "Resources": {"CPU": c}} for c in cpus]
    return [*live, {"Alive": False, "Resources": {"CPU": dead}}]


def test_gpu_workers_ask_for_one_cpu_not_a_share_of_the_cpus_present(monkeypatch):
    import ray

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0})
    monkeypatch.setattr(ray, "nodes", lambda: nodes(8.0))
    cpu = load_config(None, ["sweep.max_concurrent_trials=1"])
    assert _share_cpus(cpu).distributed.cpus_per_worker > 1  # the head's CPUs, shared
    gpu = load_config(None, ["sweep.max_concurrent_trials=1", "distributed.use_gpu=true"])
    assert _share_cpus(gpu).distributed.cpus_per_worker == 0  # the runner's default: 1 beside the GPU


@pytest.mark.parametrize(("cpus", "concurrent", "threads"),
                         [(4.0, 2, 2), (8.0, 1, 8), (16.0, 2, 8), (3.0, 2, 1)])
def test_a_sweep_workers_threads_are_its_whole_share_of_the_cpus(monkeypatch, cpus, concurrent, threads):
    """The share asked of Ray is a hair below the whole CPUs (1.99 of 2), and its floor gave
    each worker one thread fewer than its CPUs (half of 4 cores idle with 2 trials)."""
    import ray

    from spdnas.distributed.worker import worker_threads

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": cpus})
    monkeypatch.setattr(ray, "nodes", lambda: nodes(cpus))
    shared = _share_cpus(load_config(None, [f"sweep.max_concurrent_trials={concurrent}"]))
    assert shared.distributed.cpus_per_worker * concurrent <= cpus - 0.01 * concurrent
    assert worker_threads(shared.distributed.cpus_per_worker) == threads


def test_a_sweep_started_over_deletes_the_earlier_trials(tmp_path):
    """``--no-resume`` kept the old trials beside the new ones (TensorBoard, sweep/trials); the
    single runs under the same name stay. (The missing genotype file stops the sweep before Ray.)"""
    from spdnas.data import write_dataset
    from spdnas.distributed.sweep import run_sweep
    from tests.helpers import toy_dataset

    write_dataset(toy_dataset(32, seed=5, name="tiny"), str(tmp_path / "tiny"))
    config = load_config(None, [
        "name=sw", f"data.uri={tmp_path / 'tiny'}", "data.builder=null", f"runtime.output_dir={tmp_path}",
        "runtime.progress=false", "sweep.search=false", f"sweep.genotype={tmp_path / 'missing.json'}",
        "sweep.space={train.lr: {type: loguniform, low: 0.01, high: 0.3}}"])
    old = ["tune/sweep_trial_1/result.json", "sweep/trials/t1/train/metrics.json", "sweep/summary.json",
           "search/genotype.json"]
    for name in old:
        (tmp_path / "sw" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "sw" / name).write_text("{}")
    with pytest.raises(GenotypeError, match="neither a genotype file"):
        run_sweep(config)
    assert all((tmp_path / "sw" / name).exists() for name in old)
    with pytest.raises(GenotypeError, match="neither a genotype file"):
        run_sweep(config, resume=False)
    assert [name for name in old if (tmp_path / "sw" / name).exists()] == ["search/genotype.json"]


def test_a_resumed_sweep_keeps_its_concurrency(tmp_path):
    """Tuner.restore keeps the concurrency the sweep started with; a changed value was accepted
    and only resized each trial's CPU share (half the machine idle after 1 -> 2)."""
    root = Folder(str(tmp_path))
    check_same_experiment(load_config(None, []), root, True, "sweep_config.json", RUN_ONLY, "sweep")
    check_same_experiment(load_config(None, ["runtime.threads=1", "distributed.num_workers=2"]), root,
                          True, "sweep_config.json", RUN_ONLY, "sweep")
    with pytest.raises(ConfigError, match=r"other settings \(sweep.max_concurrent_trials\)"):
        check_same_experiment(load_config(None, ["sweep.max_concurrent_trials=1"]), root, True,
                              "sweep_config.json", RUN_ONLY, "sweep")
    # how the dataset is made is not compared (its contents are, by digest): a sweep recorded when
    # data.builder defaulted to radar-synth resumes
    check_same_experiment(load_config(None, ["data.builder=radar-synth"]), root, True, "sweep_config.json",
                          RUN_ONLY, "sweep")


def test_a_resumed_sweep_keeps_a_worker_layout_that_changes_the_numbers(tmp_path):
    """The whole distributed section may change on resume, but not so that the workers compute
    something else (unsynchronised batch norm, sharded data): finished and new trials would be
    ranked together. Trials run on Ray whatever distributed.backend says."""
    root = Folder(str(tmp_path))

    def check(overrides, resume=True):
        check_same_experiment(load_config(None, overrides), root, resume, EXPERIMENT_FILE, RUN_ONLY, "sweep",
                              _same_layout)

    started = ["distributed.num_workers=2", "distributed.sync_batchnorm=false", "distributed.backend=local"]
    check(started)
    check([*started, "distributed.cpus_per_worker=2"])
    for changed in (["distributed.num_workers=1"], [*started[:2], "distributed.data=shard"]):
        with pytest.raises(ConfigError, match=r"other settings \(distributed \(num_workers=2, "
                                              r"data='replicate', sync_batchnorm=False -> "):
            check(changed)
    check(["distributed.num_workers=1"], resume=False)  # --no-resume


def test_a_workers_default_cpus_fit_on_one_node(monkeypatch):
    """On 2 nodes of 2 CPUs, one worker asked for 4 CPUs (the total): no node could place it and
    the run waited for ever, with no warning (the total did fit). On nodes of 6 and 2 CPUs, two
    workers capped at the largest node's 6 asked for 4 each: only one fit."""
    import ray

    from spdnas.distributed.runner import cpus_per_worker, fitting_share

    def workers(n: int) -> float:
        return cpus_per_worker(load_config(None, [f"distributed.num_workers={n}"]).distributed)

    def sweep_share(concurrent: int, n: int) -> float:
        return _share_cpus(load_config(None, [f"sweep.max_concurrent_trials={concurrent}",
                                              f"distributed.num_workers={n}"])).distributed.cpus_per_worker

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 4.0})
    monkeypatch.setattr(ray, "nodes", lambda: nodes(2.0, 2.0, dead=64.0))
    assert workers(1) == 2.0 and workers(3) == 1.0
    assert 1.9 <= sweep_share(1, 1) <= 2.0
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0})
    monkeypatch.setattr(ray, "nodes", lambda: nodes(6.0, 2.0))
    assert workers(2) == 3.0  # both on the 6-CPU node
    assert 2.9 <= sweep_share(1, 2) <= 3.0 and 1.9 <= sweep_share(2, 2) <= 2.0  # 3 on the 6, 1 on the 2
    monkeypatch.setattr(ray, "nodes", lambda: nodes(8.0))  # one node: the whole share
    assert workers(1) == 8.0 and sweep_share(1, 1) > 7.9
    for node_cpus, count, upper in (([6.0, 2.0], 2, 4.0), ([2.0, 2.0, 2.0], 4, 1.5), ([3.0, 5.0], 3, 8 / 3)):
        share = fitting_share(node_cpus, count, upper)
        assert 0 < share <= upper and sum(int(c // share) for c in node_cpus) >= count
        assert sum(int(c // (share * 1.01)) for c in node_cpus) < count or share == upper  # the largest
    assert fitting_share([0.5], 1, 2.0) == 0.5 and fitting_share([], 1, 2.0) == 0.0
    assert fitting_share([-0.02, 7.98], 2, 3.99) == 3.99  # a head of 0 CPUs (less the trials') takes no slot
    monkeypatch.setattr(ray, "nodes", lambda: nodes(0.0, 8.0, 8.0))
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0})
    assert sweep_share(2, 1) > 7.9  # one trial's worker on each 8-CPU node


def test_the_run_folder_is_checked_before_the_dataset_is_made(tmp_path):
    """A sweep named like a benchmark (or like a sweep of other settings) first made its dataset,
    then was refused."""
    from spdnas.distributed.sweep import run_sweep

    def sweep(*extra: str):
        return load_config(None, [
            "name=sw", f"data.uri={tmp_path / 'made'}", "data.builder=radar-synth",
            "data.builder_params={n_samples: 90}", f"runtime.output_dir={tmp_path}", "runtime.progress=false",
            "sweep.space={train.lr: {type: loguniform, low: 0.01, high: 0.3}}", *extra])

    (tmp_path / "sw").mkdir()
    (tmp_path / "sw" / "benchmark_config.json").write_text("{}")
    with pytest.raises(ConfigError, match="holds a benchmark"):
        run_sweep(sweep())
    assert not (tmp_path / "made").exists()
    (tmp_path / "sw" / "benchmark_config.json").unlink()
    check_same_experiment(with_absolute_paths(sweep("sweep.seeds=2")), Folder(str(tmp_path / "sw")), True,
                          EXPERIMENT_FILE, RUN_ONLY, "sweep")
    with pytest.raises(ConfigError, match=r"other settings \(sweep.seeds\)"):
        run_sweep(sweep())
    assert not (tmp_path / "made").exists()


@pytest.mark.ray  # without the check the sweep would start Ray: only in the private namespace
@pytest.mark.timeout(300)
def test_a_batch_no_trial_could_fill_is_refused_before_any_trial(tmp_path):
    """Each trial found it only after its workers started, with a Ray traceback per trial."""
    from spdnas.distributed.sweep import run_sweep

    def sweep(*extra: str):
        return load_config(None, [
            "name=sw", f"data.uri={tmp_path / 'made'}", "data.builder=radar-synth",
            "data.builder_params={n_samples: 90}", f"runtime.output_dir={tmp_path}", "runtime.progress=false",
            "search.batch_size=10", "train.batch_size=10", *extra])  # 45 train samples, halves of 24 and 21

    drawn = "sweep.space={train.batch_size: {type: choice, values: [10, 60]}}"
    with pytest.raises(ValueError, match=r"^sweep: train.batch_size=60 \(the largest sweep.space draws\): no "
                                         r"full batch of 60 in this epoch \(samples: train 45\): lower"):
        run_sweep(sweep(drawn))
    fixed = "sweep.space={train.lr: {type: loguniform, low: 0.01, high: 0.3}}"
    with pytest.raises(ValueError, match=r"^sweep: search.batch_size=30: no full batch of 30 in this epoch "
                                         r"\(samples: search-train 24, search-val 21\)"):
        run_sweep(sweep(fixed, "search.batch_size=30"))
