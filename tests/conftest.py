"""Shared fixtures and helpers for the test suite."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


def pytest_collection_modifyitems(config, items):
    """Ray tests need the private namespace that scripts/test.sh sets up."""
    if os.environ.get("SPDNAS_PRIVATE_NETNS") == "1":
        return
    skip = pytest.mark.skip(reason="Ray tests run only through scripts/test.sh (private namespace)")
    for item in items:
        if "ray" in item.keywords:
            item.add_marker(skip)
