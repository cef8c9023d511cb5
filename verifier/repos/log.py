"""The audit log's rows: `audit_log` (the hash chain) and `audit_checkpoints` (signed heads).

Both tables are append-only (triggers refuse UPDATE and DELETE); the chain logic is in
`verifier.auditlog`, which alone calls these.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .. import db

Entry = tuple[int, str, str, str, str, str, str, str]  # seq, at, kind, actor, body, personal_hash, prev_hash, hash
CHECKPOINT_COLUMNS = ("seq", "head", "at", "kid", "signature")


def head(conn: db.Conn) -> tuple[int, str] | None:
    """The last entry's sequence number and hash; None for an empty log."""
    row = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    return (int(row[0]), str(row[1])) if row else None


def insert(
    conn: db.Conn,
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


def entries(conn: db.Conn) -> Iterator[Entry]:
    """Every entry in sequence order, streamed."""
    yield from db.stream(
        conn, "SELECT seq, at, kind, actor, body, personal_hash, prev_hash, hash FROM audit_log ORDER BY seq", (), 5000
    )


def scans_with_entries(conn: db.Conn, scan_columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """Each scan (oldest first) as (log_seq, personal_salt, entry body, entry personal_hash, *scan_columns);
    the entry's fields are None when the scan has no entry."""
    if not all(c.isidentifier() for c in scan_columns):
        raise ValueError("scan columns are plain column names")
    columns = ", ".join(f"s.{c}" for c in scan_columns)
    yield from db.stream(
        conn,
        f"SELECT s.log_seq, s.personal_salt, l.body, l.personal_hash, {columns} FROM scans s "
        "LEFT JOIN audit_log l ON l.seq = s.log_seq ORDER BY s.id",
        (),
        5000,
    )


def checkpoints(conn: db.Conn) -> list[dict[str, object]]:
    """The checkpoints stored in the database, oldest first."""
    cursor = conn.execute(f"SELECT {', '.join(CHECKPOINT_COLUMNS)} FROM audit_checkpoints ORDER BY seq, at")
    return [dict(zip(CHECKPOINT_COLUMNS, row)) for row in cursor]


def insert_checkpoint(conn: db.Conn, checkpoint: Mapping[str, object]) -> None:
    """Store a signed checkpoint, inside the caller's write transaction."""
    conn.execute(
        f"INSERT INTO audit_checkpoints ({', '.join(CHECKPOINT_COLUMNS)}) VALUES (?, ?, ?, ?, ?)",
        [checkpoint[k] for k in CHECKPOINT_COLUMNS],
    )


# --- the sequencer's queue (PostgreSQL: verifier/sequencer.py) ------------------------------

PENDING_COLUMNS = ("id", "at", "kind", "actor", "body", "personal_hash")
ENTRY_COLUMNS = ("seq", "at", "kind", "actor", "body", "personal_hash", "prev_hash", "hash")


def queue(conn: db.Conn, at: str, kind: str, actor: str, body: str, personal_hash: str) -> None:
    """An entry for the sequencer to chain, inside the caller's write transaction."""
    conn.execute(
        "INSERT INTO log_pending (at, kind, actor, body, personal_hash) VALUES (?, ?, ?, ?, ?)",
        (at, kind, actor, body, personal_hash),
    )


def pending_entries(conn: db.Conn, limit: int) -> list[tuple[Any, ...]]:
    """The oldest queued entries (PENDING_COLUMNS), at most `limit`."""
    return conn.execute(
        f"SELECT {', '.join(PENDING_COLUMNS)} FROM log_pending ORDER BY id LIMIT ?", (limit,)
    ).fetchall()


def unsequenced_scans(conn: db.Conn, columns: Sequence[str], limit: int) -> list[tuple[Any, ...]]:
    """The oldest scans that have no log entry yet (through the partial index scans_unsequenced)."""
    if not all(c.isidentifier() for c in columns):
        raise ValueError("scan columns are plain column names")
    return conn.execute(
        f"SELECT {', '.join(columns)} FROM scans WHERE log_seq IS NULL ORDER BY id LIMIT ?", (limit,)
    ).fetchall()


def insert_entries(conn: db.Conn, rows: Sequence[Sequence[Any]]) -> None:
    """Chained entries (ENTRY_COLUMNS), inside the sequencer's transaction."""
    db.copy_rows(conn, "audit_log", ENTRY_COLUMNS, rows)


def link_scans(conn: db.Conn, scan_ids: Sequence[int], seqs: Sequence[int]) -> None:
    """Give scans their entries' sequence numbers (PostgreSQL; the rule on scans allows it once)."""
    conn.execute(
        "UPDATE scans SET log_seq = v.seq FROM (SELECT unnest(?::bigint[]) AS id, unnest(?::bigint[]) AS seq) v "
        "WHERE scans.id = v.id",
        (list(scan_ids), list(seqs)),
    )


def dequeue(conn: db.Conn, ids: Sequence[int]) -> None:
    """Drop queued entries once chained."""
    conn.execute("DELETE FROM log_pending WHERE id = ANY(?::bigint[])", (list(ids),))


def pending_count(conn: db.Conn) -> int:
    """Entries not chained yet: queued ones and scans without an entry (always 0 on SQLite)."""
    if not db.is_postgres_conn(conn):
        return 0
    row = conn.execute(
        "SELECT (SELECT count(*) FROM log_pending) + (SELECT count(*) FROM scans WHERE log_seq IS NULL)"
    ).fetchone()
    return int(row[0])


def oldest_pending_at(conn: db.Conn) -> str | None:
    """When the oldest entry still waiting for the sequencer was written (None: nothing waits)."""
    if not db.is_postgres_conn(conn):
        return None
    row = conn.execute(
        "SELECT least((SELECT min(at) FROM log_pending), "
        "(SELECT at FROM scans WHERE log_seq IS NULL ORDER BY id LIMIT 1))"
    ).fetchone()
    return None if row[0] is None else str(row[0])


def scan_entry_counts(conn: db.Conn) -> tuple[int, int]:
    """(scan entries in the log, scans linked to an entry): equal unless a scan was unlinked."""
    entries = conn.execute("SELECT count(*) FROM audit_log WHERE kind = 'scan'").fetchone()[0]
    linked = conn.execute("SELECT count(*) FROM scans WHERE log_seq IS NOT NULL").fetchone()[0]
    return int(entries), int(linked)
