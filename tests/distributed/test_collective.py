"""Collectives on a real two-process ``torch.distributed`` (gloo) group, without Ray.

The group meets through a file store and gloo talks over the loopback interface only.
"""

from __future__ import annotations

import json

import torch.distributed as dist
import torch.multiprocessing as mp

from tests.engine.test_splits import _shards, _subject_dataset


def _search_val_ids(rank: int, world: int, store: str, out: str) -> None:
    from spdnas.distributed.collective import gather_sample_index
    from spdnas.engine.splits import split_experiment_data

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        shard = _shards(_subject_dataset(), world)[rank]
        data = split_experiment_data(shard, 0.5, seed=7, gather=gather_sample_index)
        train = shard.subset("train")
        in_val = {m.numpy().tobytes() for m in data.search_val.x}
        ids = [i for i, m in zip(train.sample_ids.tolist(), train.matrices, strict=True)
               if m.numpy().tobytes() in in_val]
        with open(f"{out}.{rank}", "w") as f:
            json.dump({"mode": data.search_split, "ids": ids}, f)
    finally:
        dist.destroy_process_group()


def test_workers_cut_their_shards_by_group_as_one_dataset(tmp_path, monkeypatch):
    from spdnas.engine.splits import split_experiment_data

    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    world = 2
    mp.spawn(_search_val_ids, args=(world, str(tmp_path / "store"), str(tmp_path / "ids")), nprocs=world)
    results = [json.loads((tmp_path / f"ids.{rank}").read_text()) for rank in range(world)]
    assert [r["mode"] for r in results] == ["group"] * world
    dataset = _subject_dataset()
    whole = split_experiment_data(dataset, 0.5, seed=7)
    train = dataset.subset("train")
    in_val = {m.numpy().tobytes() for m in whole.search_val.x}
    expected = sorted(i for i, m in zip(train.sample_ids.tolist(), train.matrices, strict=True)
                      if m.numpy().tobytes() in in_val)
    assert sorted(results[0]["ids"] + results[1]["ids"]) == expected
