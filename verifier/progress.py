"""Progress lines with rate and ETA on stderr, for long runs in a terminal.

Not `click.progressbar`: it shows no rate, no thousands separators and no "ETA" label, and on a
stream that is not a terminal it still writes a line (its label, "\n" when empty), where this
writes nothing.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Counts work done; redraws one line at most every `interval` seconds, only on a terminal."""

    def __init__(self, total: int, unit: str = "codes", stream: TextIO | None = None, interval: float = 0.5):
        self.total, self.unit, self.done = total, unit, 0
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.interval = interval
        self.started = self.last = time.monotonic()

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.enabled and (now - self.last >= self.interval or self.done >= self.total):
            self.last = now
            self.stream.write("\r" + self.line(now) + "\x1b[K")
            self.stream.flush()

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate else 0
        percent = 100 * self.done / self.total if self.total else 100
        return (
            f"{self.done:,}/{self.total:,} {self.unit}  {percent:5.1f}%  {rate:,.0f} {self.unit}/s  "
            f"elapsed {_clock(elapsed)}  ETA {_clock(eta)}"
        )

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + self.line() + "\x1b[K\n")
            self.stream.flush()
