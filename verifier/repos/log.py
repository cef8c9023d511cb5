"""The audit log's rows: `audit_log` (the hash chain) and `audit_checkpoints` (signed heads).

Both tables are append-only (triggers refuse UPDATE and DELETE); the chain logic is in
`verifier.auditlog`, which alone calls these.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

Entry = tuple[int, str, str, str, str, str, str, str]  # seq, at, kind, actor, body, personal_hash, prev_hash, hash
CHECKPOINT_COLUMNS = ("seq", "head", "at", "kid", "signature")


def head(conn: sqlite3.Connection) -> tuple[int, str] | None:
    """The last entry's sequence number and hash; None for an empty log."""
    row = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    return (int(row[0]), str(row[1])) if row else None


def insert(
    conn: sqlite3.Connection,
    seq: int,
    at: str,
    kind: str,
    actor: str,
    body: str,
    personal_hash: str,
    prev_hash: str,
    entry_hash: str,
) -> None:
    """One entry, inside the caller's write transaction."""
    conn.execute(
        "INSERT INTO audit_log (seq, at, kind, actor, body, personal_hash, prev_hash, hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, at, kind, actor, body, personal_hash, prev_hash, entry_hash),
    )


def entries(conn: sqlite3.Connection) -> Iterator[Entry]:
    """Every entry in sequence order, streamed."""
    yield from conn.execute(
        "SELECT seq, at, kind, actor, body, personal_hash, prev_hash, hash FROM audit_log ORDER BY seq"
    )


def scans_with_entries(conn: sqlite3.Connection, scan_columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """Each scan (oldest first) as (log_seq, personal_salt, entry body, entry personal_hash, *scan_columns);
    the entry's fields are None when the scan has no entry."""
    if not all(c.isidentifier() for c in scan_columns):
        raise ValueError("scan columns are plain column names")
    columns = ", ".join(f"s.{c}" for c in scan_columns)
    yield from conn.execute(
        f"SELECT s.log_seq, s.personal_salt, l.body, l.personal_hash, {columns} FROM scans s "
        "LEFT JOIN audit_log l ON l.seq = s.log_seq ORDER BY s.id"
    )


def checkpoints(conn: sqlite3.Connection) -> list[dict[str, object]]:
    """The checkpoints stored in the database, oldest first."""
    cursor = conn.execute(f"SELECT {', '.join(CHECKPOINT_COLUMNS)} FROM audit_checkpoints ORDER BY seq, at")
    return [dict(zip(CHECKPOINT_COLUMNS, row)) for row in cursor]


def insert_checkpoint(conn: sqlite3.Connection, checkpoint: Mapping[str, object]) -> None:
    """Store a signed checkpoint, inside the caller's write transaction."""
    conn.execute(
        f"INSERT INTO audit_checkpoints ({', '.join(CHECKPOINT_COLUMNS)}) VALUES (?, ?, ?, ?, ?)",
        [checkpoint[k] for k in CHECKPOINT_COLUMNS],
    )
