"""The rate-limit counters file: its connection, its schema and every SQL statement on it.

The counters live in their own small SQLite file next to the database (`<database>-ratelimit`),
in WAL mode with `synchronous=OFF` and its own writer lock: counting a request costs no fsync and
never waits for the registry's writer lock, so a request over the limit writes nothing durable.
The counters are disposable: a file damaged by a power loss is replaced with an empty one.

On PostgreSQL the counters are the registry's UNLOGGED table `rate_hits` (migration 007), shared
by every lookup node, written with synchronous_commit off: no WAL, no fsync, and a limit that
holds across nodes.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from .. import db

log = logging.getLogger("verifier.ratelimit")

SCHEMA_VERSION = 1


def connect(path: Path | str) -> db.Conn:
    """The counters file at `path`, created (or replaced, if damaged) as needed; or, for a
    PostgreSQL URL, a connection of its own to that database's counters."""
    if db.is_postgres(path):
        conn = db.connect(path)
        conn.execute("SET synchronous_commit = off")  # counters need not survive a crash
        return conn  # type: ignore[no-any-return]
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
        timeout=db.BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,
        check_same_thread=False,
        factory=db.Connection,
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {db.BUSY_TIMEOUT_MS}")
        db.use_wal(conn)
        conn.execute("PRAGMA synchronous = OFF")  # counters need not survive a power loss
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # WAL-reset bug: checkpoints run under the lock
        with db.transaction(conn):  # this file's own writer lock, not the registry's
            if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                conn.execute("DROP TABLE IF EXISTS hits")
                # One row per client and window; `until` is the window's end (Unix seconds).
                conn.execute("""CREATE TABLE hits (client TEXT NOT NULL, until INTEGER NOT NULL, hits INTEGER NOT NULL,
                                PRIMARY KEY (client, until)) WITHOUT ROWID""")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("SELECT count(*) FROM hits").fetchone()  # reads the table's pages: damage shows here
    except BaseException:
        conn.close()
        raise
    return conn


_COUNT_HIT = """INSERT INTO {table} (client, until, hits) VALUES (?, ?, 1)
ON CONFLICT (client, until) DO UPDATE SET hits = {table}.hits + 1 RETURNING hits"""
_TABLE = {db.SQLITE: "hits", db.POSTGRESQL: "rate_hits"}
_COUNT_HIT_SQL = {dialect: _COUNT_HIT.format(table=table) for dialect, table in _TABLE.items()}


def count_hit(conn: db.Conn, client: str, until: int) -> int:
    """Add one to `client`'s count in the window ending at `until`; the count after it."""
    row = conn.execute(_COUNT_HIT_SQL[db.dialect(conn)], (client, until)).fetchone()
    return int(row[0])


def prune(conn: db.Conn, now_seconds: int) -> None:
    """Drop the windows that have ended (they are never read again)."""
    conn.execute(f"DELETE FROM {_TABLE[db.dialect(conn)]} WHERE until <= ?", (now_seconds,))
