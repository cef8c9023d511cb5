"""Fixed-window rate limits, shared by every server process of a node and kept out of the registry.

The limit logic is here; the counters file (its own small, non-durable SQLite file next to the
database, with its own writer lock) and its SQL are verifier/repos/ratecounters.py.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path

from . import db
from .repos import ratecounters
from .repos.ratecounters import connect

__all__ = ["Limit", "Outcome", "connect", "counters", "counters_path", "hit", "parse_limit"]

_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_pruning = itertools.count()
_connections: dict[tuple[int, str], db.Conn] = {}


@dataclass(frozen=True)
class Limit:
    hits: int
    seconds: int

    def __str__(self) -> str:
        unit = next(name for name, s in _UNITS.items() if s == self.seconds)
        return f"{self.hits}/{unit}"


@dataclass(frozen=True)
class Outcome:
    allowed: bool
    remaining: int
    retry_after: int  # seconds until the window resets


def parse_limit(text: str) -> Limit | None:
    """'120/minute' -> Limit(120, 60); 'off' -> None; ValueError otherwise."""
    text = text.strip().lower()
    if text in ("off", "none", "0", ""):
        return None
    m = re.fullmatch(r"(\d+)\s*/\s*(second|minute|hour|day)", text)
    if not m or int(m.group(1)) < 1:
        raise ValueError(f"a rate limit looks like 120/minute (or off), not {text!r}")
    return Limit(int(m.group(1)), _UNITS[m.group(2)])


def counters_path(database: Path | str) -> Path | str:
    """Where the counters of the registry at `database` live: next to it, shared by its servers
    (PostgreSQL: in the database itself, shared by every node)."""
    if db.is_postgres(database):
        return str(database)
    return Path(f"{database}-ratelimit")


def counters(database: Path | str) -> db.Conn:
    """This process's connection to the counters of `database` (made after a fork, never shared);
    a new one if the last was lost (a PostgreSQL server restarted: that request failed open)."""
    key = (os.getpid(), str(database))
    conn = _connections.get(key)
    if conn is None or getattr(conn, "closed", False):
        conn = _connections[key] = connect(counters_path(database))
    return conn


def hit(conn: db.Conn, client: str, limit: Limit, now_seconds: float) -> Outcome:
    """Count one request of `client` in the counters `conn` (its own short transaction)."""
    until = (int(now_seconds // limit.seconds) + 1) * limit.seconds
    with db.transaction(conn):
        hits = ratecounters.count_hit(conn, client, until)
        if next(_pruning) % 1000 == 0:  # ended windows are never read again
            ratecounters.prune(conn, int(now_seconds))
    retry_after = max(1, int(until - now_seconds))
    return Outcome(hits <= limit.hits, max(0, limit.hits - hits), retry_after)
