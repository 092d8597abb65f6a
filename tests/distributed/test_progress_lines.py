"""Progress lines of a Ray run, printed from its live metrics file (no Ray needed)."""

from __future__ import annotations

import json
import time

from spdnas.data.storage import Folder
from spdnas.distributed.runner import fit_with_progress
from spdnas.report.outputs import LIVE_METRICS


def _record(epoch: int, seconds: float) -> dict:
    return {"epoch": epoch, "seconds": seconds, "train_loss": 1.0 / epoch}


class _Trainer:
    """Writes the live metrics file as Ray workers do: the whole history, rewritten each epoch."""

    def __init__(self, folder: Folder, histories: list[list[dict]]):
        self.folder, self.histories = folder, histories

    def fit(self) -> str:
        for history in self.histories:
            lines = "".join(json.dumps(r) + "\n" for r in history)
            self.folder.write_bytes(LIVE_METRICS, lines.encode())
            time.sleep(0.4)
        return "result"


def test_resumed_and_retried_epochs_are_printed_once(tmp_path, capsys):
    folder = Folder(str(tmp_path))
    earlier = [_record(1, 1.5), _record(2, 1.25)]  # the interrupted run's epochs, printed by it
    folder.write_bytes(LIVE_METRICS, "".join(json.dumps(r) + "\n" for r in earlier).encode())
    histories = [
        [*earlier, _record(3, 1.0)],
        earlier,  # a worker failed: the retry restores epoch 2's checkpoint and its history
        [*earlier, _record(3, 2.0)],  # epoch 3 run again
        [*earlier, _record(3, 2.0), _record(4, 1.75)],
    ]
    assert fit_with_progress(_Trainer(folder, histories), folder, "train", 4, True, poll=0.05) == "result"
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" [")[0] for line in lines] == ["train epoch 3/4"] * 2 + ["train epoch 4/4"]
    assert "[1.0s]" in lines[0] and "[2.0s]" in lines[1] and "[1.8s]" in lines[2]


def test_progress_off_prints_nothing(tmp_path, capsys):
    folder = Folder(str(tmp_path))
    fit_with_progress(_Trainer(folder, [[_record(1, 1.0)]]), folder, "search", 1, False, poll=0.05)
    assert capsys.readouterr().err == ""


def test_storage_errors_while_polling_do_not_end_the_run(tmp_path, capsys, monkeypatch):
    """An outage of the run's storage made the progress poll raise, which shut Ray down under a
    healthy run (and a failed listing of worker errors after it turned success into failure)."""
    folder = Folder(str(tmp_path))
    real_exists = Folder.exists

    def flaky(self, name):
        if time.monotonic() < outage_ends:
            raise OSError("When getting information for key: AWS Error NETWORK_CONNECTION")
        return real_exists(self, name)

    outage_ends = time.monotonic() + 0.6
    monkeypatch.setattr(Folder, "exists", flaky)
    monkeypatch.setattr(Folder, "list_names", lambda self: (_ for _ in ()).throw(OSError("no listing")))
    histories = [[_record(1, 1.0)], [_record(1, 1.0), _record(2, 1.0)]]
    assert fit_with_progress(_Trainer(folder, histories), folder, "train", 2, True, poll=0.05) == "result"
    err = capsys.readouterr().err
    assert err.count("warning: cannot read the run's progress") == 1 and "train epoch 2/2" in err
    assert "warning: could not read the workers' recorded errors: no listing" in err
