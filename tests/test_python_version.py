"""The code runs on the oldest Python that pyproject.toml allows (no newer language feature or
standard-library module or function), checked statically with vermin: no such interpreter is
installed here. Methods of objects whose type vermin cannot infer (``exc.add_note``, 3.11) escape
it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_code_needs_a_newer_python_than_requires_python():
    oldest = re.search(r'requires-python = ">=(\d+\.\d+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    vermin = str(Path(sys.executable).with_name("vermin"))  # the script installed beside this Python
    run = subprocess.run([vermin, f"--target={oldest}-", "--no-tips", "--violations",
                          "--eval-annotations", "--backport", "dataclasses", "spdnas", "jobs", "benchmarks",
                          "tests"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
