"""The record of a worker's final error (a ValueError a retry would meet again), read back by
the driver: its own type where it can be rebuilt, a plain ValueError otherwise, and records cut
short by a killed worker skipped."""

from __future__ import annotations

import json

import pytest

from spdnas.distributed.runner import _worker_error
from spdnas.distributed.worker import recorded_worker_error, worker_errors
from spdnas.engine.loops import DivergedError


def record(folder, name: str, rank: int, kind: str, message: str) -> None:
    folder.write_bytes(name, json.dumps({"rank": rank, "type": kind, "message": message}).encode())


def test_the_lowest_rank_error_comes_back_as_its_own_type(tmp_path):
    run = str(tmp_path / "run")
    assert recorded_worker_error(run) is None
    errors = worker_errors(run)
    record(errors, "rank-1-a.json", 1, "spdnas.engine.loops.DivergedError", "rank one diverged")
    record(errors, "rank-0-b.json", 0, "spdnas.engine.loops.DivergedError", "train epoch 2: the loss is nan")
    error = recorded_worker_error(run)
    assert type(error) is DivergedError and str(error) == "train epoch 2: the loss is nan"
    assert not getattr(error, "__notes__", None)  # records written before tracebacks were kept


def test_the_workers_traceback_comes_back_as_a_note(tmp_path):
    """Shown where the driver's traceback is (SPDNAS_DEBUG=1), not in the one-line message."""
    run = str(tmp_path / "run")
    trace = 'Traceback (most recent call last):\n  File "loops.py", line 9\nValueError: bad value\n'
    worker_errors(run).write_bytes("rank-0-a.json", json.dumps(
        {"rank": 0, "type": "builtins.ValueError", "message": "bad value", "traceback": trace}).encode())
    error = recorded_worker_error(run)
    assert str(error) == "bad value"
    assert error.__notes__ == ['worker 0: Traceback (most recent call last):\n  File "loops.py", line 9\n'
                               "ValueError: bad value"]


def test_unknown_or_unbuildable_types_become_value_errors(tmp_path):
    run = str(tmp_path / "run")
    errors = worker_errors(run)
    record(errors, "rank-0.json", 0, "no.such.module.Error", "gone")
    assert type(recorded_worker_error(run)) is ValueError and str(recorded_worker_error(run)) == "gone"
    errors.clear()
    record(errors, "rank-0.json", 0, "json.JSONDecodeError", "needs more than a message")
    assert type(recorded_worker_error(run)) is ValueError
    errors.clear()
    record(errors, "rank-0.json", 0, "builtins.KeyError", "not a ValueError")
    assert type(recorded_worker_error(run)) is ValueError


def test_records_cut_short_are_skipped(tmp_path):
    run = str(tmp_path / "run")
    errors = worker_errors(run)
    errors.write_bytes("rank-0-a.json", b'{"rank": 0, "ty')
    (tmp_path / "run" / "worker_errors" / ".rank-1-b.json.tmp").write_text("{")
    assert recorded_worker_error(run) is None
    record(errors, "rank-1-c.json", 1, "builtins.ValueError", "bad value")
    assert str(recorded_worker_error(run)) == "bad value"


def test_spdnas_debug_keeps_rays_error_with_the_workers_tracebacks(monkeypatch):
    error = RuntimeError("traceback of every worker")
    error.worker_failures = {1: ValueError("bad value"), 0: ValueError("first")}
    assert str(_worker_error(error)) == "first"
    monkeypatch.setenv("SPDNAS_DEBUG", "1")
    assert _worker_error(error) is error


def test_a_record_cut_short_stops_no_worker_and_an_unfinished_state_is_not_published(tmp_path):
    """A worker killed while writing its record left only the write's temporary file: the next
    workers took it for a final error and returned at once, the driver found none, and the fit
    'succeeded' with the last checkpoint's unfinished state, which was then published."""
    from contextlib import contextmanager

    from spdnas.distributed.runner import _final_state
    from spdnas.distributed.worker import _records
    from spdnas.engine.state import save_checkpoint

    run = str(tmp_path / "run")
    errors = worker_errors(run)
    errors.write_bytes("rank-0-a.json", b"{}")
    (tmp_path / "run" / "worker_errors" / "rank-0-a.json").rename(tmp_path / "run" / "worker_errors" /
                                                                  ".rank-0-b.json.tmp")
    assert errors.list_names() and _records(errors) == []
    save_checkpoint({"kind": "train", "epoch": 2, "history": []}, tmp_path / "ck")

    class Checkpoint:
        @contextmanager
        def as_directory(self):
            yield str(tmp_path / "ck")

    result = type("Result", (), {"checkpoint": Checkpoint(), "error": None})()
    assert _final_state(result, 2)["epoch"] == 2
    with pytest.raises(RuntimeError, match="stopped after epoch 2 of 3 without an error it could name"):
        _final_state(result, 3)
