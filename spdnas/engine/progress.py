"""A small progress display for long loops (stderr, rate-limited, silent when disabled)."""

from __future__ import annotations

import sys
import time


class Progress:
    """``Progress(total, "search epoch 3")``; call :meth:`update` per step, :meth:`close` at the end."""

    def __init__(self, total: int, label: str, enabled: bool = True, interval: float = 1.0):
        self.total, self.label, self.enabled, self.interval = total, label, enabled, interval
        self.count = 0
        self.start = self._last = time.perf_counter()
        self._tty = sys.stderr.isatty()

    def update(self, n: int = 1, **metrics: float) -> None:
        self.count += n
        now = time.perf_counter()
        if self.enabled and (now - self._last >= self.interval or self.count == self.total):
            self._last = now
            self._write(now, metrics, final=False)

    def close(self, **metrics: float) -> None:
        if self.enabled:
            self._write(time.perf_counter(), metrics, final=True)

    def _write(self, now: float, metrics: dict[str, float], final: bool) -> None:
        elapsed = now - self.start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.count) / rate if rate > 0 and not final else 0.0
        shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        line = (f"{self.label}: {self.count}/{self.total} [{elapsed:.1f}s"
                f"{f', eta {eta:.0f}s' if not final else ''}] {shown}")
        if self._tty and not final:
            sys.stderr.write("\r" + line[:150].ljust(150))
        else:
            sys.stderr.write(("\r" if self._tty else "") + line + "\n")
        sys.stderr.flush()
