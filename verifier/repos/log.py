"""The log's rows: `audit_log` (the entries) and `audit_checkpoints` (the legacy chain's signed
heads, read only: new checkpoints are notes, verifier/repos/tree.py).

Both tables are append-only (triggers refuse UPDATE and DELETE); `verifier.auditlog`,
`verifier.logtree` and the sequencer call these.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from .. import db

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


# How a scan is linked to its entry: SQLite, by the scan's log_seq (written in the same
# transaction); PostgreSQL, by the entry's scan_id (the sequencer's; scans are never updated).
_SCANS_WITH_ENTRIES = {
    db.SQLITE: "SELECT l.seq, s.personal_salt, l.body, l.personal_hash, 0, {columns} FROM scans s "
    "LEFT JOIN audit_log l ON l.seq = s.log_seq ORDER BY s.id",
    db.POSTGRESQL: "SELECT l.seq, s.personal_salt, l.body, l.personal_hash, q.scan_id IS NOT NULL, {columns} "
    "FROM scans s LEFT JOIN audit_log l ON l.scan_id = s.id LEFT JOIN scan_queue q ON q.scan_id = s.id ORDER BY s.id",
}


def scans_with_entries(conn: db.Conn, scan_columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """Each scan (oldest first) as (entry seq, personal_salt, entry body, entry personal_hash,
    queued for the sequencer, *scan_columns); the entry's fields are None when the scan has none."""
    if not all(c.isidentifier() for c in scan_columns):
        raise ValueError("scan columns are plain column names")
    columns = ", ".join(f"s.{c}" for c in scan_columns)
    yield from db.stream(conn, _SCANS_WITH_ENTRIES[db.dialect(conn)].format(columns=columns), (), 5000)


def checkpoints(conn: db.Conn) -> list[dict[str, object]]:
    """The checkpoints stored in the database, oldest first."""
    cursor = conn.execute(f"SELECT {', '.join(CHECKPOINT_COLUMNS)} FROM audit_checkpoints ORDER BY seq, at")
    return [dict(zip(CHECKPOINT_COLUMNS, row)) for row in cursor]


# --- the sequencer's queues (PostgreSQL: verifier/sequencer.py) -----------------------------

PENDING_COLUMNS = ("id", "at", "kind", "actor", "body", "personal_hash")
ENTRY_COLUMNS = ("seq", "at", "kind", "actor", "body", "personal_hash", "prev_hash", "hash", "scan_id")


def queue(conn: db.Conn, at: str, kind: str, actor: str, body: str, personal_hash: str) -> None:
    """An entry for the sequencer to chain, inside the caller's write transaction."""
    conn.execute(
        "INSERT INTO log_pending (at, kind, actor, body, personal_hash) VALUES (?, ?, ?, ?, ?)",
        (at, kind, actor, body, personal_hash),
    )


def insert_many(conn: db.Conn, rows: Sequence[tuple[Any, ...]]) -> None:
    """Entries (seq, at, kind, actor, body, personal_hash, prev_hash, hash), in one statement."""
    conn.executemany(
        "INSERT INTO audit_log (seq, at, kind, actor, body, personal_hash, prev_hash, hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        list(rows),
    )


def queue_many(conn: db.Conn, rows: Sequence[tuple[str, str, str, str, str]]) -> None:
    """Entries (at, kind, actor, body, personal_hash) for the sequencer, in one statement."""
    conn.executemany(
        "INSERT INTO log_pending (at, kind, actor, body, personal_hash) VALUES (?, ?, ?, ?, ?)", list(rows)
    )


def pending_entries(conn: db.Conn, limit: int) -> list[tuple[Any, ...]]:
    """The oldest queued entries (PENDING_COLUMNS), at most `limit`."""
    return conn.execute(
        f"SELECT {', '.join(PENDING_COLUMNS)} FROM log_pending ORDER BY id LIMIT ?", (limit,)
    ).fetchall()


def queued_scans(conn: db.Conn, columns: Sequence[str], limit: int, after: int = 0) -> list[tuple[Any, ...]]:
    """The oldest scans in the sequencer's queue with ids above `after`, at most `limit`, as
    (queued id, whether it has an entry already, *columns); a queued id without a scan row has
    None for the columns."""
    if not all(c.isidentifier() for c in columns):
        raise ValueError("scan columns are plain column names")
    selected = ", ".join(f"s.{c}" for c in columns)
    return conn.execute(
        f"SELECT q.scan_id, l.seq IS NOT NULL, {selected} FROM scan_queue q LEFT JOIN scans s ON s.id = q.scan_id "
        "LEFT JOIN audit_log l ON l.scan_id = q.scan_id WHERE q.scan_id > ? ORDER BY q.scan_id LIMIT ?",
        (after, limit),
    ).fetchall()


def insert_entries(conn: db.Conn, rows: Sequence[Sequence[Any]]) -> None:
    """Chained entries (ENTRY_COLUMNS: a scan's entry names its scan), inside the sequencer's transaction."""
    db.copy_rows(conn, "audit_log", ENTRY_COLUMNS, rows)


def dequeue(conn: db.Conn, entry_ids: Sequence[int], scan_ids: Sequence[int]) -> None:
    """Drop what was chained from the queues, inside the sequencer's transaction."""
    if entry_ids:
        conn.execute("DELETE FROM log_pending WHERE id = ANY(?::bigint[])", (list(entry_ids),))
    if scan_ids:
        conn.execute("DELETE FROM scan_queue WHERE scan_id = ANY(?::bigint[])", (list(scan_ids),))


def pending_count(conn: db.Conn) -> int:
    """Entries not chained yet: queued actions and queued scans (always 0 on SQLite)."""
    if not db.is_postgres_conn(conn):
        return 0
    row = conn.execute("SELECT (SELECT count(*) FROM log_pending) + (SELECT count(*) FROM scan_queue)").fetchone()
    return int(row[0])


def oldest_pending_at(conn: db.Conn) -> str | None:
    """When the oldest entry still waiting for the sequencer was written (None: nothing waits)."""
    if not db.is_postgres_conn(conn):
        return None
    row = conn.execute(
        "SELECT least((SELECT min(at) FROM log_pending), "
        "(SELECT s.at FROM scan_queue q JOIN scans s ON s.id = q.scan_id ORDER BY q.scan_id LIMIT 1))"
    ).fetchone()
    return None if row[0] is None else str(row[0])


_SCAN_ENTRY_COUNTS = {
    db.SQLITE: "SELECT (SELECT count(*) FROM audit_log WHERE kind = 'scan'), "
    "(SELECT count(*) FROM scans s JOIN audit_log l ON l.seq = s.log_seq)",
    db.POSTGRESQL: "SELECT (SELECT count(*) FROM audit_log WHERE kind = 'scan' AND scan_id >= :below), "
    "(SELECT count(*) FROM audit_log l JOIN scans s ON s.id = l.scan_id WHERE l.scan_id >= :below)",
}


def scan_entry_counts(conn: db.Conn, retired_below: int = 0) -> tuple[int, int]:
    """(scan entries in the log, scans linked to an entry), of the scans from id `retired_below`
    on (PostgreSQL; below it they were retired): equal unless a scan lost its entry's link."""
    entries, linked = conn.execute(_SCAN_ENTRY_COUNTS[db.dialect(conn)], {"below": retired_below}).fetchone()
    return int(entries), int(linked)


RETIRED = "scans.retired"  # the entry that retires the scans below an id (verifier.audit.retire)


def retirements(conn: db.Conn) -> list[str]:
    """The bodies of the chained entries that retired scans, oldest first."""
    return [row[0] for row in conn.execute("SELECT body FROM audit_log WHERE kind = ? ORDER BY seq", (RETIRED,))]


def pending_scans_below(conn: db.Conn, below_id: int) -> int:
    """Scans below `below_id` still waiting for the sequencer (PostgreSQL)."""
    return int(conn.execute("SELECT count(*) FROM scan_queue WHERE scan_id < ?", (below_id,)).fetchone()[0])


# --- the transparency log's leaves (verifier.logtree) ----------------------------------------

LEAF_COLUMNS = ("seq", "kind", "at", "actor", "personal_hash", "body")


def leaf_rows(conn: db.Conn, first_seq: int, end_seq: int) -> list[tuple[Any, ...]]:
    """Entries `first_seq` .. `end_seq - 1` as LEAF_COLUMNS, in order."""
    return conn.execute(
        f"SELECT {', '.join(LEAF_COLUMNS)} FROM audit_log WHERE seq >= ? AND seq < ? ORDER BY seq",
        (first_seq, end_seq),
    ).fetchall()


def stream_leaf_rows(conn: db.Conn) -> Iterator[tuple[Any, ...]]:
    """Every entry as LEAF_COLUMNS + (prev_hash, hash), in order, streamed."""
    yield from db.stream(
        conn, f"SELECT {', '.join(LEAF_COLUMNS)}, prev_hash, hash FROM audit_log ORDER BY seq", (), 5000
    )


_SCAN_ENTRY_SEQ = {
    db.SQLITE: "SELECT log_seq FROM scans WHERE id = :id",
    db.POSTGRESQL: "SELECT coalesce((SELECT seq FROM audit_log WHERE scan_id = :id), "
    "(SELECT log_seq FROM scans WHERE id = :id))",
}


def scan_entry_seq(conn: db.Conn, scan_id: int) -> int | None:
    """The seq of a scan's entry (None: no such scan, or not sequenced yet)."""
    sql = _SCAN_ENTRY_SEQ[db.dialect(conn)]
    row = conn.execute(sql, {"id": scan_id}).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def last_seq(conn: db.Conn) -> int:
    row = conn.execute("SELECT max(seq) FROM audit_log").fetchone()
    return 0 if row[0] is None else int(row[0])


def queued_actions(conn: db.Conn) -> int:
    """Administrative entries waiting for the sequencer (PostgreSQL; 0 on SQLite)."""
    if not db.is_postgres_conn(conn):
        return 0
    return int(conn.execute("SELECT count(*) FROM log_pending").fetchone()[0])
