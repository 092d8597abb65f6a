"""The experiment's splits: search halves partition train, and never touch val or test."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from spdnas.engine.splits import require_splits, split_experiment_data
from tests.helpers import toy_dataset


def _keys(part) -> list[bytes]:
    return [m.numpy().tobytes() for m in part.x]


@pytest.mark.parametrize("fraction", [0.5, 0.3])
def test_search_halves_partition_train_and_leave_val_and_test_alone(fraction):
    dataset = toy_dataset(40, seed=3)
    data = split_experiment_data(dataset, fraction, seed=7)
    keys = {split: sorted(m.numpy().tobytes() for m in dataset.subset(split).matrices)
            for split in ("train", "val", "test")}
    assert len(set(keys["train"])) == len(keys["train"])  # every matrix identifies its sample
    search_train, search_val = _keys(data.search_train), _keys(data.search_val)
    assert sorted(search_train + search_val) == keys["train"]
    assert not set(search_train) & set(search_val)
    assert _keys(data.val) == [m.numpy().tobytes() for m in dataset.subset("val").matrices]
    assert _keys(data.test) == [m.numpy().tobytes() for m in dataset.subset("test").matrices]
    assert not set(search_train + search_val) & (set(keys["val"]) | set(keys["test"]))
    # stratified: each class keeps its share in the search-val half (to within one sample)
    train_counts = np.bincount(dataset.subset("train").labels.numpy(), minlength=3)
    val_counts = np.bincount(data.search_val.y.numpy(), minlength=3)
    assert np.all(np.abs(val_counts - fraction * train_counts) <= 1)
    assert len(search_val) == pytest.approx(fraction * len(keys["train"]), abs=3)


def test_search_halves_depend_on_the_seed_only():
    dataset = toy_dataset(40, seed=3)
    a, b = (split_experiment_data(dataset, 0.5, seed=7) for _ in range(2))
    assert _keys(a.search_val) == _keys(b.search_val)
    assert _keys(split_experiment_data(dataset, 0.5, seed=8).search_val) != _keys(a.search_val)


@pytest.mark.parametrize(("builder", "fix"), [
    ("radar-synth", "spdnas data make radar-synth OUT --param fractions=[0.5,0.25,0.25]"),
    ("japanese-vowels", "spdnas data make japanese-vowels OUT --param val_fraction=0.1"),
    (None, "an experiment needs train, val and test rows"),
])
def test_a_missing_split_names_the_builder_parameter_that_fixes_it(builder, fix):
    dataset = toy_dataset(40, seed=3)
    provenance = {"builder": builder} if builder else {}
    dataset = replace(dataset, meta=replace(dataset.meta, provenance=provenance))
    without_val = dataset.select(dataset.splits != "val")
    with pytest.raises(ValueError, match="has no 'val' rows") as err:
        split_experiment_data(without_val, 0.5, seed=7)
    assert fix in str(err.value)
    with pytest.raises(ValueError, match=r"worker's shard\) has no 'val' rows; an experiment needs"):
        require_splits({"train": [3, 4], "val": [0, 0], "test": [1, 0]}, dataset.meta,
                       " (this worker's shard)")  # the dataset has every split: no builder fix
    with pytest.raises(ValueError, match="has no 'test' rows; an experiment needs train, val and test rows"):
        require_splits({"train": [3, 4], "val": [1, 0], "test": [0, 0]}, dataset.meta)
    require_splits({"train": [3, 4], "val": [1, 0], "test": [0, 1]}, dataset.meta)
    with pytest.raises(ValueError, match=r"has no 'val' rows; no class has more than 2 sample\(s\), and a "
                                         r"stratified split gives each split a share of every class"):
        require_splits({"train": [1, 1, 0], "val": [0, 0, 0], "test": [0, 1, 0]}, dataset.meta)
    with pytest.raises(ValueError, match="has no 'val' rows") as err:  # the fractions, not class sizes
        require_splits({"train": [1, 40, 40], "val": [0, 0, 0], "test": [1, 20, 20]}, dataset.meta)
    assert "sample(s)" not in str(err.value)


def test_split_seed_fixes_the_search_halves_across_run_seeds(tmp_path):
    from spdnas.config import load_config
    from spdnas.data import write_dataset
    from spdnas.pipeline import load_experiment_data

    write_dataset(toy_dataset(40, seed=3), str(tmp_path / "toy"))

    def halves(*overrides):
        config = load_config(None, [f"data.uri={tmp_path / 'toy'}", "data.builder=null", *overrides])
        return _keys(load_experiment_data(config).search_val)

    assert halves("runtime.seed=1") != halves("runtime.seed=2")  # by default the run seed draws them
    assert halves("runtime.seed=1", "data.split_seed=0") == halves("runtime.seed=2", "data.split_seed=0")
    assert halves("runtime.seed=0") == halves("runtime.seed=5", "data.split_seed=0")


def test_sharded_full_batch_check_needs_only_what_every_shard_layout_needs():
    """Workers of distributed.data=shard divide their own shards: 2 classes × 8 train rows, 4 of
    each per worker, search_val_fraction 0.4 give each worker halves of 4 and 4 rows, a full local
    batch of 8 / 2 in each, although the global halves (10 and 6) hold no full batch of 8."""
    from spdnas.engine.splits import require_full_batches

    counts = {"train": [8, 8], "val": [1, 1], "test": [1, 1]}
    require_full_batches(counts, 0.4, search_batch_size=8, shard_workers=2)
    with pytest.raises(ValueError, match=r"search-train 10, search-val 6"):
        require_full_batches(counts, 0.4, search_batch_size=8)
    with pytest.raises(ValueError, match=r"of the 16 train samples, spread over 2 workers' shards, "
                                         r"search-train holds at most 10 and search-val at most 8"):
        require_full_batches(counts, 0.4, search_batch_size=9, shard_workers=2)


def test_sharded_full_batch_check_refuses_what_no_layout_can_run():
    """Search-val 0.1 of 3 × 16 rows over 2 workers: every layout gives search-val at most 2 rows of
    a class (6 in all), no full batch of 8; the check passed it (it only asked for 2 · 8 train
    rows) and the workers failed 100 s later. Every split of the classes into two shards is tried."""
    import itertools

    from spdnas.data.dataset import split_sizes
    from spdnas.engine.splits import require_full_batches

    counts = {"train": [16, 16, 16], "val": [1, 1, 1], "test": [1, 1, 1]}
    with pytest.raises(ValueError, match=r"search-train holds at most 45 and search-val at most 6"):
        require_full_batches(counts, 0.1, search_batch_size=8, shard_workers=2)
    weights = np.array([0.9, 0.1])
    most = max(sum(split_sizes(m, weights)[1] + split_sizes(16 - m, weights)[1] for m in parts)
               for parts in itertools.product(range(17), repeat=3))
    assert most == 6
    require_full_batches(counts, 0.1, search_batch_size=6, shard_workers=2)  # a layout exists
    # halves cut by group are drawn over all workers' rows: their totals are checked
    require_full_batches(counts, 0.1, search_batch_size=8, shard_workers=2, halves=[(40, 8)])


@pytest.mark.parametrize("fraction", [0.5, 0.3, 0.1])
def test_full_batch_check_from_counts_matches_the_real_halves(fraction):
    """``require_full_batches`` sees from a manifest's counts what the epoch loops see."""
    from spdnas.engine.batches import num_batches
    from spdnas.engine.splits import require_full_batches

    dataset = toy_dataset(12, seed=2, name="odd")
    data = split_experiment_data(dataset, fraction, seed=4)
    counts = dataset.counts()
    for batch in range(1, len(data.train) + 2):
        search_ok = min(num_batches(len(data.search_train), batch),
                        num_batches(len(data.search_val), batch)) > 0
        try:
            require_full_batches(counts, fraction, search_batch_size=batch)
        except ValueError as exc:
            assert not search_ok and f"search-train {len(data.search_train)}, search-val" in str(exc)
        else:
            assert search_ok
        try:
            require_full_batches(counts, fraction, train_batch_size=batch)
        except ValueError as exc:
            assert batch > len(data.train) and f"train {len(data.train)}" in str(exc)
        else:
            assert batch <= len(data.train)


def test_only_a_shards_count_mentions_sharded_data():
    """The check of a whole dataset's splits (the search command's, the benchmark's) said "with
    distributed.data=shard, per worker" where no data is sharded; the epoch loops say it where they
    hold one worker's shard."""
    from spdnas.engine.batches import require_steps
    from spdnas.engine.splits import require_full_batches

    counts = {"train": [20, 20], "val": [5, 5], "test": [5, 5]}
    with pytest.raises(ValueError) as whole:
        require_full_batches(counts, 0.5, search_batch_size=30)
    assert str(whole.value) == ("no full batch of 30 in this epoch (samples: search-train 20, search-val "
                                "20): lower the batch size or use more data")
    with pytest.raises(ValueError, match=r"^no full batch of 50 in this epoch \(samples: train 40\): lower"):
        require_full_batches(counts, 0.5, train_batch_size=50)
    with pytest.raises(ValueError, match=r"\(samples: train 4; with distributed.data=shard, per worker\)"):
        require_steps(0, 30, sharded=True, train=4)
    with pytest.raises(ValueError, match=r"\(samples: train 4\): lower"):
        require_steps(0, 30, sharded=False, train=4)


def _subject_dataset(subjects: int = 12, per_class: int = 40, shared: bool = False):
    """``toy_dataset`` with a subject per sample; each subject in one split unless ``shared``."""
    dataset = toy_dataset(per_class, seed=5)
    rng = np.random.default_rng(0)
    count = len(dataset)
    groups = np.array([f"subj{k:02d}" for k in rng.integers(0, subjects, count)], dtype=object)
    dataset = replace(dataset, groups=groups)
    return dataset if shared else dataset.with_group_split([0.6, 0.2, 0.2], seed=1)


def _shards(dataset, world: int) -> list:
    """``dataset``'s rows dealt to ``world`` workers in a seeded order, as sharded Ray Data would."""
    order = np.random.default_rng(4).permutation(len(dataset))
    return [dataset.select(np.sort(order[k::world])) for k in range(world)]


def _groups_of(dataset, part) -> set[str]:
    by_matrix = {m.numpy().tobytes(): g for m, g in zip(dataset.matrices, dataset.groups, strict=True)}
    return {by_matrix[k] for k in _keys(part)}


def test_search_halves_of_a_subject_wise_dataset_hold_whole_subjects():
    dataset = _subject_dataset()
    data = split_experiment_data(dataset, 0.5, seed=7)  # auto
    assert data.search_split == "group"
    train_groups, val_groups = _groups_of(dataset, data.search_train), _groups_of(dataset, data.search_val)
    assert train_groups and val_groups and not train_groups & val_groups
    assert train_groups | val_groups == set(dataset.subset("train").groups)
    assert sorted(_keys(data.search_train) + _keys(data.search_val)) == sorted(_keys(data.train))
    sizes = {g: int((dataset.subset("train").groups == g).sum()) for g in train_groups | val_groups}
    assert abs(len(data.search_val.x) - 0.5 * len(data.train.x)) <= max(sizes.values())
    # the same halves whatever the row order
    shuffled = dataset.select(np.random.default_rng(3).permutation(len(dataset)))
    again = split_experiment_data(shuffled, 0.5, seed=7)
    assert sorted(_keys(again.search_val)) == sorted(_keys(data.search_val))


def test_search_halves_follow_the_datasets_own_split():
    shared = _subject_dataset(shared=True)  # subjects in train and test: split per class, as the dataset
    auto = split_experiment_data(shared, 0.5, seed=7)
    stratified = split_experiment_data(shared, 0.5, seed=7, mode="stratified")
    assert auto.search_split == "stratified"
    assert _keys(auto.search_val) == _keys(stratified.search_val)
    forced = split_experiment_data(shared, 0.5, seed=7, mode="group")
    assert forced.search_split == "group"
    assert not _groups_of(shared, forced.search_train) & _groups_of(shared, forced.search_val)
    plain = toy_dataset(40, seed=3)
    assert split_experiment_data(plain, 0.5, seed=7).search_split == "stratified"
    with pytest.raises(ValueError, match="needs at least two groups"):
        split_experiment_data(plain, 0.5, seed=7, mode="group")
    with pytest.raises(ValueError, match=r"data\.search_split must be one of"):
        split_experiment_data(plain, 0.5, seed=7, mode="subject")


def test_shards_cut_by_group_agree_with_the_whole_dataset():
    from spdnas.data import SampleIndex

    dataset = _subject_dataset()
    whole = split_experiment_data(dataset, 0.5, seed=7)
    shards = _shards(dataset, 2)
    everyone = SampleIndex.merged([SampleIndex.of(s) for s in shards])
    parts = [split_experiment_data(s, 0.5, seed=7, gather=lambda _index: everyone) for s in shards]
    assert all(p.search_split == "group" for p in parts)
    assert sorted(_keys(parts[0].search_val) + _keys(parts[1].search_val)) == sorted(_keys(whole.search_val))
    # each shard cutting its own rows would put a group in both halves
    alone = [split_experiment_data(s, 0.5, seed=7) for s in shards]
    in_train = set().union(*(_groups_of(dataset, p.search_train) for p in alone))
    in_val = set().union(*(_groups_of(dataset, p.search_val) for p in alone))
    assert in_train & in_val


def test_a_search_half_without_a_class_is_warned_about():
    dataset = _subject_dataset(subjects=4, per_class=8)
    with pytest.warns(UserWarning, match="leave search-.* without class"):
        split_experiment_data(dataset, 0.5, seed=0, mode="group")


def test_the_full_batch_check_sees_the_halves_drawn_by_group(tmp_path):
    """Halves cut by subject differ from the per-class sizes the counts give: the check before
    the workers start reads the dataset's sample index (not its matrices) and draws them."""
    from spdnas.config import DataConfig
    from spdnas.data import read_sample_index, write_dataset
    from spdnas.data.storage import Folder
    from spdnas.engine.splits import grouped_half_sizes, require_full_batches

    dataset = _subject_dataset(subjects=5, per_class=24)
    write_dataset(dataset, str(tmp_path / "d"))
    index = read_sample_index(str(tmp_path / "d"))
    def rows(ids, labels, splits, groups):
        return sorted(zip(map(str, ids), map(int, labels), map(str, splits), groups, strict=True))

    assert rows(index.sample_ids, index.labels, index.splits, index.groups) == rows(
        dataset.sample_ids, dataset.labels.tolist(), dataset.splits, dataset.groups)  # stored by split
    manifest = Folder(str(tmp_path / "d")).read_manifest()
    data = DataConfig(uri=str(tmp_path / "d"), builder=None)
    (halves,) = grouped_half_sizes(data, manifest, [7])
    drawn = split_experiment_data(dataset, 0.5, seed=7)
    assert halves == (len(drawn.search_train), len(drawn.search_val))
    batch = min(halves) + 1  # no full batch in the smaller half, yet one in each per-class half
    per_class = sum(dataset.counts()["train"]) // 2
    assert batch <= per_class
    require_full_batches(manifest["counts"], 0.5, search_batch_size=batch)
    with pytest.raises(ValueError, match="no full batch"):
        require_full_batches(manifest["counts"], 0.5, search_batch_size=batch, halves=[halves])
    assert grouped_half_sizes(DataConfig(uri=data.uri, search_split="stratified"), manifest, [7]) is None
    plain = toy_dataset(8, seed=1)
    write_dataset(plain, str(tmp_path / "plain"))
    plain_manifest = Folder(str(tmp_path / "plain")).read_manifest()
    assert grouped_half_sizes(DataConfig(uri=str(tmp_path / "plain")), plain_manifest, [7]) is None
    with pytest.raises(ValueError, match="needs at least two groups"):
        grouped_half_sizes(DataConfig(uri=str(tmp_path / "plain"), search_split="group"), plain_manifest, [7])


def test_a_sweep_checks_each_seeds_halves_drawn_by_group(tmp_path):
    from spdnas.config import load_config
    from spdnas.data import write_dataset
    from spdnas.distributed.sweep import require_batches

    dataset = _subject_dataset(subjects=5, per_class=24)
    write_dataset(dataset, str(tmp_path / "d"))
    smallest = min(min(len(h.search_train), len(h.search_val)) for h in
                   (split_experiment_data(dataset, 0.5, seed=s) for s in (0, 1, 2)))
    args = [f"data.uri={tmp_path / 'd'}", "data.builder=null", "sweep.seeds=3", "sweep.search=true",
            f"search.batch_size={smallest + 1}", "train.batch_size=4",
            "sweep.space={train.lr: {type: loguniform, low: 0.01, high: 0.1}}"]
    assert smallest + 1 <= sum(dataset.counts()["train"]) // 2  # the per-class halves would hold it
    with pytest.raises(ValueError, match=r"sweep: search\.batch_size=\d+: no full batch"):
        require_batches(load_config(None, args))
    # a sweep that varies the draw itself is checked on the per-class halves of its base settings
    varied = "sweep.space={data.split_seed: {type: int, low: 0, high: 9}}"
    require_batches(load_config(None, [*args[:-1], varied]))
