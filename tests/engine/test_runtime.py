"""The CPU count a run works with: affinity capped by a cgroup CPU quota."""

from __future__ import annotations

import os

import pytest

from spdnas.engine import runtime
from spdnas.engine.runtime import available_cpus, cgroup_cpu_quota


def _v1(root, quota: str, period: str = "100000"):
    (root / "cpu").mkdir()
    (root / "cpu" / "cpu.cfs_quota_us").write_text(quota + "\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(period + "\n")


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu.max": "\n"}, None),
    ({"cpu.max": "inf 100000\n"}, None),
    ({"cpu.max": "100000 0\n"}, None),
    ({}, None),
])
def test_cgroup_v2_quota(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert cgroup_cpu_quota(tmp_path) == expected


def test_cgroup_v1_quota(tmp_path):
    _v1(tmp_path, "250000")
    assert cgroup_cpu_quota(tmp_path) == 2.5
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")  # no limit
    assert cgroup_cpu_quota(tmp_path) is None


def test_a_container_quota_caps_the_cpus(tmp_path, monkeypatch):
    """A container limited to 1.5 CPUs on a many-core host was counted as the host's cores
    (the eigh pool and the embedded Ray took them all)."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)  # not on macOS
    monkeypatch.setattr(runtime, "cgroup_cpu_quota", lambda root: 1.5)
    assert available_cpus() == 2
    monkeypatch.setattr(runtime, "cgroup_cpu_quota", lambda root: 0.2)
    assert available_cpus() == 1
    monkeypatch.setattr(runtime, "cgroup_cpu_quota", lambda root: 500.0)
    assert available_cpus() == 64
    monkeypatch.setattr(runtime, "cgroup_cpu_quota", lambda root: None)
    assert available_cpus() == 64
