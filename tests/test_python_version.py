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


# torch functions the code calls that older releases lack, with the release that added them
TORCH_ADDITIONS = {"torch.nn.utils.get_total_norm": (2, 6), "torch.serialization.safe_globals": (2, 5)}


def test_the_torch_pin_covers_the_torch_functions_the_code_calls():
    """On torch 2.3–2.5 (the old pin) a clipped second-order step raised AttributeError and every
    checkpoint loaded as "damaged"."""
    pin = re.search(r'"torch>=(\d+)\.(\d+)"', (ROOT / "pyproject.toml").read_text())
    oldest = (int(pin.group(1)), int(pin.group(2)))
    code = "\n".join(p.read_text() for p in (ROOT / "spdnas").rglob("*.py"))
    used = {name: since for name, since in TORCH_ADDITIONS.items() if name.rsplit(".", 1)[1] in code}
    assert used, "the table names none of the functions the code calls: update TORCH_ADDITIONS"
    assert all(oldest >= since for since in used.values()), (oldest, used)
