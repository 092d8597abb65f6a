"""A one-line progress indicator on stderr for long data operations."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Prints ``label: done/total unit (pct%)`` to stderr.

    On a terminal the line is redrawn in place; otherwise a line is printed at every 10% so logs
    stay short. ``enabled=False`` makes every call a no-op.

    Parameters
    ----------
    label : str
    total : int or float
    unit : str
        ``"B"`` formats sizes in MiB; anything else is printed after the counts.
    enabled : bool
    """

    def __init__(self, label: str, total: float, unit: str = "", *, enabled: bool = True,
                 stream: TextIO | None = None):
        self.label, self.total, self.unit, self.enabled = label, total, unit, enabled
        self.stream = stream or sys.stderr
        self.done = 0.0
        self.start = time.perf_counter()
        self._last_decile = -1
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def _fmt(self, value: float, unit: bool = True) -> str:
        if self.unit == "B":
            return f"{value / 2**20:.1f}" + (" MiB" if unit else "")
        return f"{int(value)}" + (self.unit if unit else "")

    def update(self, amount: float = 1) -> None:
        """Add ``amount`` to the done count and redraw if due."""
        if not self.enabled:
            return
        self.done += amount
        fraction = self.done / self.total if self.total else 1.0
        decile = int(10 * fraction)
        if not self._tty and decile == self._last_decile:
            return
        self._last_decile = decile
        counts = f"{self._fmt(self.done, unit=False)}/{self._fmt(self.total)}"
        line = f"{self.label}: {counts} ({100 * fraction:.0f}%)"
        self.stream.write(("\r" + line) if self._tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Finish the line with the elapsed time."""
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        self.stream.write(f"{chr(13) if self._tty else ''}{self.label}: done, {self._fmt(self.done)} "
                          f"in {elapsed:.1f} s\n")
        self.stream.flush()
