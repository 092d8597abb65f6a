"""The progress display: in place on a terminal, every tenth of the work in a log."""

from __future__ import annotations

import io

from spdnas.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_gets_a_line_per_tenth_and_a_final_line():
    log = io.StringIO()
    bar = Progress("read x", 40, " files", stream=log)
    for _ in range(40):
        bar.update()
    bar.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 11  # 10%, 20%, ..., 100%, then the final line
    assert lines[0].startswith("read x: 4/40 files [") and lines[-1].startswith("read x: 40/40 files [")
    assert "eta" in lines[0] and "eta" not in lines[-1]


def test_bytes_and_metrics():
    log = io.StringIO()
    bar = Progress("upload", 4 * 2**20, "B", stream=log)
    bar.update(4 * 2**20, loss=0.5)
    bar.close(acc=0.75)
    first, last = log.getvalue().splitlines()
    assert first.startswith("upload: 4.0/4.0 MiB [") and first.endswith("loss=0.5")
    assert last.endswith("acc=0.75")


def test_terminal_redraws_in_place_and_disabled_is_silent():
    tty = Terminal()
    bar = Progress("train epoch 1", 3, stream=tty, interval=3600)
    for _ in range(3):
        bar.update()
    bar.close()
    text = tty.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n")  # redrawn once (at the end), then finished
    quiet = io.StringIO()
    off = Progress("x", 3, enabled=False, stream=quiet)
    off.update()
    off.close()
    assert quiet.getvalue() == ""


def test_live_only_shows_on_a_terminal_and_leaves_no_line():
    """Epoch bars: the caller prints the epoch's summary line; a log got ~11 lines per epoch (a
    tenth of the work each, then the bar's own last line), a terminal two with the same metrics."""
    tty = Terminal()
    bar = Progress("train epoch 1", 3, stream=tty, interval=0, live_only=True)
    for _ in range(3):
        bar.update(loss=0.5)
    bar.close(loss=0.5)
    assert "train epoch 1: 3/3" in tty.getvalue() and "\n" not in tty.getvalue()
    assert tty.getvalue().endswith("\r\x1b[K")  # erased
    log = io.StringIO()
    quiet = Progress("train epoch 1", 3, stream=log, live_only=True)
    for _ in range(3):
        quiet.update()
    quiet.close()
    assert log.getvalue() == ""


def test_a_redrawn_line_fits_the_terminal(monkeypatch):
    """Padded to 150 columns, the line wrapped on an 80-column terminal: every redraw went down a
    row instead of replacing the line."""
    monkeypatch.setenv("COLUMNS", "40")
    tty = Terminal()
    bar = Progress("search epoch 12", 100, stream=tty, interval=0)
    bar.update(5, loss=1.2345, acc=0.5, val_loss=1.5)
    drawn = tty.getvalue().split("\x1b[K")[-1]
    assert drawn.startswith("search epoch 12: 5/100") and len(drawn) == 39
