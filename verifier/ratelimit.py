"""Fixed-window rate limits, shared by every server process of a node and kept out of the registry.

The counters live in their own small SQLite file next to the database (`<database>-ratelimit`),
in WAL mode with `synchronous=OFF` and its own writer lock: counting a request costs no fsync and
never waits for the registry's writer lock, so a request over the limit writes nothing durable.
The counters are disposable: a file damaged by a power loss is replaced with an empty one.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from . import store

log = logging.getLogger("verifier.ratelimit")

_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_SCHEMA_VERSION = 1
_pruning = itertools.count()
_connections: dict[tuple[int, str], sqlite3.Connection] = {}


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


def counters_path(database: Path | str) -> Path:
    """Where the counters of the registry at `database` live: next to it, shared by its servers."""
    return Path(f"{database}-ratelimit")


def connect(path: Path | str) -> sqlite3.Connection:
    """The counters file at `path`, created (or replaced, if damaged) as needed."""
    path = Path(path)
    try:
        return _open(path)
    except sqlite3.DatabaseError as exc:  # e.g. "file is not a database" after a power loss
        log.warning("rate-limit counters at %s are unreadable (%s): starting them afresh", path, exc)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return _open(path)


def _open(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path,
        timeout=store.BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,
        check_same_thread=False,
        factory=store.Connection,
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {store.BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = OFF")  # counters need not survive a power loss
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # WAL-reset bug: checkpoints run under the lock
        with store.transaction(conn):  # this file's own writer lock, not the registry's
            if conn.execute("PRAGMA user_version").fetchone()[0] != _SCHEMA_VERSION:
                conn.execute("DROP TABLE IF EXISTS hits")
                # One row per client and window; `until` is the window's end (Unix seconds).
                conn.execute("""CREATE TABLE hits (client TEXT NOT NULL, until INTEGER NOT NULL, hits INTEGER NOT NULL,
                                PRIMARY KEY (client, until)) WITHOUT ROWID""")
                conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            conn.execute("SELECT count(*) FROM hits").fetchone()  # reads the table's pages: damage shows here
    except BaseException:
        conn.close()
        raise
    return conn


def counters(database: Path | str) -> sqlite3.Connection:
    """This process's connection to the counters of `database` (made after a fork, never shared)."""
    key = (os.getpid(), str(database))
    conn = _connections.get(key)
    if conn is None:
        conn = _connections[key] = connect(counters_path(database))
    return conn


def hit(conn: sqlite3.Connection, client: str, limit: Limit, now_seconds: float) -> Outcome:
    """Count one request of `client` in the counters `conn` (its own short transaction)."""
    until = (int(now_seconds // limit.seconds) + 1) * limit.seconds
    with store.transaction(conn):
        (hits,) = conn.execute(
            """INSERT INTO hits (client, until, hits) VALUES (?, ?, 1)
               ON CONFLICT (client, until) DO UPDATE SET hits = hits + 1 RETURNING hits""",
            (client, until),
        ).fetchone()
        if next(_pruning) % 1000 == 0:  # ended windows are never read again
            conn.execute("DELETE FROM hits WHERE until <= ?", (int(now_seconds),))
    retry_after = max(1, int(until - now_seconds))
    return Outcome(hits <= limit.hits, max(0, limit.hits - hits), retry_after)
