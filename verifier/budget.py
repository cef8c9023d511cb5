"""A work budget for SQL statements: audit reads stop before they starve the lookup.

SQLite calls a progress handler every `GRAIN` virtual-machine instructions; the handler aborts
the running statement once the block has used its budget. Instructions, not seconds: the same
query on the same data is cut at the same point on any machine, which keeps tests deterministic.
On the development machine SQLite runs ~30 million instructions a second (docs/audit.md).
PostgreSQL counts no instructions: there the budget is the time limit alone (statement_timeout).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from . import db

GRAIN = 10_000  # instructions between two calls of the handler (~0.3 ms)
clock: Callable[[], float] = time.monotonic  # tests replace it


class OverBudget(Exception):
    """A statement needed more work than its budget allows."""


class Meter:
    """The instructions (in steps of GRAIN) and time a `limited` block has used so far."""

    def __init__(self, steps: int | None, seconds: float | None = None):
        self.steps, self.seconds = steps, seconds
        self.used = 0
        self.exceeded = False
        self.deadline = None if seconds is None else clock() + seconds

    def restart(self) -> None:
        """Give the next statements the whole budget again (a streamed export: per chunk)."""
        self.used = 0
        self.deadline = None if self.seconds is None else clock() + self.seconds

    def tick(self) -> int:
        self.used += GRAIN
        # Sorts run inside few instructions: the clock catches what the count misses.
        if (self.steps is not None and self.used > self.steps) or (
            self.deadline is not None and clock() > self.deadline
        ):
            self.exceeded = True
            return 1  # non-zero: SQLite interrupts the statement
        return 0


@contextlib.contextmanager
def limited(conn: db.Conn, steps: int | None, seconds: float | None = None) -> Iterator[Meter]:
    """Run the block with at most `steps` SQLite instructions and `seconds` on `conn` (None: unlimited).

    OverBudget if the block needs more.
    """
    meter = Meter(steps, seconds)
    try:
        with db.work_limit(conn, meter.tick, GRAIN, seconds):
            yield meter
    except db.Interrupted as exc:
        if db.is_postgres_conn(conn):
            raise OverBudget(f"stopped after {seconds} s (statement_timeout)") from exc
        if meter.exceeded:
            raise OverBudget(f"stopped after {meter.used:,} SQLite instructions") from exc
        raise
