"""A Ray address where nothing answers: Ray retried for minutes, printing only its own
warnings; now the command fails within seconds, naming the address (no Ray is started)."""

from __future__ import annotations

import socket
import time

import pytest

from spdnas.cli import main
from spdnas.config import DistributedConfig
from spdnas.distributed.runner import ray_session, require_reachable_ray


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_ray_address_fails_at_once_naming_it():
    import ray

    address = f"127.0.0.1:{closed_port()}"
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=rf"cannot reach the Ray cluster at {address} \(distributed"):
        with ray_session(DistributedConfig(address=address)):
            pass
    assert time.monotonic() - start < 10 and not ray.is_initialized()
    with pytest.raises(ConnectionError, match="at ray://127"):
        require_reachable_ray(f"ray://{address}")


def test_a_listening_ray_address_and_auto_are_left_to_ray():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        require_reachable_ray(f"127.0.0.1:{server.getsockname()[1]}")
    require_reachable_ray("auto")
    # job submission's address: Ray refuses it with its own advice (the check named a host "http")
    require_reachable_ray(f"http://127.0.0.1:{closed_port()}")


def test_the_command_says_so_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{closed_port()}")
    args = ["search", "data.builder=radar-synth", f"data.uri={tmp_path / 'radar'}", "data.builder_params="
            "{n_samples: 60}", f"runtime.output_dir={tmp_path / 'runs'}", "search.epochs=1",
            "runtime.progress=false", "distributed.backend=ray"]
    assert main(args) == 1
    err = capsys.readouterr().err  # after the line saying the dataset is made (it is, before Ray)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: cannot reach the Ray cluster at 127.0.0.1:")
    assert "Traceback" not in err
