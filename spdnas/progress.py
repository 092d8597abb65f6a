"""One progress display for long work: data transfers and training epochs alike.

On a terminal the line is redrawn in place at most every ``interval`` seconds; in a log (not a
terminal) a line is printed at every tenth of the work, so logs stay short.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

ERASE_LINE = "\r\x1b[K"  # to the line's start, then clear to its end (ANSI)


class Progress:
    """``label: done/total unit [elapsed, eta] metrics`` on stderr.

    Parameters
    ----------
    label : str
    total : int or float
    unit : str
        ``"B"`` shows sizes in MiB; anything else is printed after the counts (``" files"``).
    enabled : bool
        ``False`` makes every call a no-op.
    interval : float
        Least seconds between redraws on a terminal.
    stream : file, optional
        Default: ``sys.stderr``.
    live_only : bool
        Show the line on a terminal only, and erase it at :meth:`close`: for work whose caller
        prints its own summary line afterwards (an epoch), so that each finished piece of work
        leaves one line, on a terminal as in a log.
    """

    def __init__(self, label: str, total: float, unit: str = "", *, enabled: bool = True,
                 interval: float = 1.0, stream: TextIO | None = None, live_only: bool = False):
        self.label, self.total, self.unit, self.interval = label, total, unit, interval
        self.stream = stream or sys.stderr
        self.done = 0.0
        self.start = self._last = time.perf_counter()
        self._last_decile = 0
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.live_only = live_only
        self.enabled = enabled and (self._tty or not live_only)

    def _fmt(self, value: float, unit: bool = True) -> str:
        if self.unit == "B":
            return f"{value / 2**20:.1f}" + (" MiB" if unit else "")
        return f"{int(value)}" + (self.unit if unit else "")

    def update(self, amount: float = 1, **metrics: float) -> None:
        """Add ``amount`` to the work done; ``metrics`` are shown after the counts."""
        if not self.enabled:
            return
        self.done += amount
        now = time.perf_counter()
        if self._tty:
            due = now - self._last >= self.interval or self.done >= self.total
        else:
            decile = int(10 * self.done / self.total) if self.total else 10
            due, self._last_decile = decile > self._last_decile, max(decile, self._last_decile)
        if due:
            self._last = now
            self._write(now, metrics, final=False)

    def close(self, **metrics: float) -> None:
        """Finish the line with the elapsed time (and the final ``metrics``); erase it where
        ``live_only``."""
        if self.enabled and self.live_only:
            self.stream.write(ERASE_LINE)
            self.stream.flush()
        elif self.enabled:
            self._write(time.perf_counter(), metrics, final=True)

    def _write(self, now: float, metrics: dict[str, float], final: bool) -> None:
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = f", eta {(self.total - self.done) / rate:.0f} s" if rate > 0 and not final else ""
        shown = "".join(f" {k}={v:.4g}" for k, v in metrics.items())
        counts = f"{self._fmt(self.done, unit=False)}/{self._fmt(self.total)}"
        line = f"{self.label}: {counts} [{elapsed:.1f} s{eta}]{shown}"
        if self._tty and not final:  # within the terminal's width: a wrapped line is not redrawn in place
            self.stream.write(ERASE_LINE + line[:shutil.get_terminal_size().columns - 1])
        else:
            self.stream.write((ERASE_LINE if self._tty else "") + line + "\n")
        self.stream.flush()
