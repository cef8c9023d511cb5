"""Whole tables, for `verifier db copy`: which there are, their columns, their rows, identities.

Every table of the schema is listed here in an order that satisfies the foreign keys; the copy
itself is verifier/dbcopy.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from .. import db

# Parents before children. Not copied: rate-limit counters (disposable), the sequencer's queue
# (a copy starts with nothing pending), the migrations table (each engine records its own).
TABLES = (
    "enterprises",
    "products",
    "certificates",
    "batches",
    "batch_requests",
    "batch_files",
    "codes",
    "code_checks",
    "pin_attempts",
    "reported_codes",
    "dealers",
    "events",
    "event_codes",
    "code_states",
    "documents",
    "consumer_reports",
    "cases",
    "case_notes",
    "case_evidence",
    "scans",
    "audit_log",
    "audit_checkpoints",
    "log_hashes",
    "log_checkpoints",
    "log_cosignatures",
    "users",
    "api_tokens",
    "web_sessions",
    "login_failures",
)
# Tables whose `id` the database generates: after a copy into PostgreSQL its sequence must
# continue after the copied ids.
GENERATED_IDS = (
    "enterprises",
    "products",
    "certificates",
    "batches",
    "batch_requests",
    "dealers",
    "events",
    "consumer_reports",
    "cases",
    "case_notes",
    "scans",
    "users",
    "api_tokens",
    "login_failures",
)
CHUNK = 5000


def columns(conn: db.Conn, table: str) -> list[str]:
    """The table's columns, in their order."""
    _known(table)
    cursor = conn.execute(f"SELECT * FROM {table} WHERE 1 = 0")
    names = [column[0] for column in cursor.description]
    cursor.fetchall()
    return names


def count(conn: db.Conn, table: str) -> int:
    _known(table)
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


# How a scan is linked to its log entry differs (repos/log): SQLite's scans.log_seq, PostgreSQL's
# audit_log.scan_id. A copy derives the target's link from the source's.
LINKS = {("scans", "log_seq"), ("audit_log", "scan_id")}


def _expression(table: str, name: str, source_columns: Sequence[str], postgres_source: bool) -> tuple[str, str]:
    """(the SELECT expression of target column `name`, the JOIN it needs)."""
    if (table, name) == ("scans", "log_seq") and postgres_source:
        return "coalesce(t.log_seq, l.seq)", " LEFT JOIN audit_log l ON l.scan_id = t.id"
    if (table, name) == ("audit_log", "scan_id") and not postgres_source:
        return "s.id", " LEFT JOIN scans s ON s.log_seq = t.seq"
    if name in source_columns:
        return f"t.{name}", ""
    return "NULL", ""


def rows(
    conn: db.Conn,
    table: str,
    names: Sequence[str],
    *,
    chained_only: bool = False,
) -> Iterator[tuple[Any, ...]]:
    """Every row of `table` as the target's columns `names`, in primary-key order, streamed; the
    link between scans and log entries in the form the other engine keeps it (LINKS).
    `chained_only`: of `scans` on PostgreSQL, only those the sequencer has chained (a live copy,
    verifier/dbcopy.py)."""
    _known(table)
    if not all(n.isidentifier() for n in names):
        raise ValueError("plain column names only")
    postgres_source = db.is_postgres_conn(conn)
    source_columns = columns(conn, table)
    selected, joins = [], []
    for name in names:
        expression, join = _expression(table, name, source_columns, postgres_source)
        selected.append(expression)
        if join and join not in joins:
            joins.append(join)
    order = "1" if table == "audit_checkpoints" else f"t.{_order(table)}"
    where = ""
    if chained_only and table == "scans" and postgres_source:
        where = " WHERE NOT EXISTS (SELECT 1 FROM scan_queue q WHERE q.scan_id = t.id)"
    sql = f"SELECT {', '.join(selected)} FROM {table} t{''.join(joins)}{where} ORDER BY {order}"
    cursor = db.stream(conn, sql, (), CHUNK)
    while chunk := cursor.fetchmany(CHUNK):
        yield from (tuple(row) for row in chunk)


def _order(table: str) -> str:
    return {
        "codes": "serial",
        "code_checks": "serial",
        "pin_attempts": "serial",
        "reported_codes": "serial",
        "event_codes": "serial, t.event",
        "code_states": "serial",
        "documents": "sha256",
        "case_evidence": "case_id, t.scan_id",
        "batch_files": "request_id, t.name",
        "audit_log": "seq",
        "web_sessions": "id_hash",
        "log_hashes": "level, t.idx",
        "log_checkpoints": "size",
        "log_cosignatures": "size, t.witness",
    }.get(table, "id")


def continue_ids(conn: db.Conn, table: str) -> None:
    """PostgreSQL: the identity of `table` continues after its largest id (SQLite needs nothing)."""
    _known(table)
    if db.is_postgres_conn(conn) and table in GENERATED_IDS:
        conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce(max(id), 0) + 1, false) FROM {table}"
        ).fetchone()


def _known(table: str) -> None:
    if table not in TABLES:
        raise ValueError(f"not a table of the schema: {table!r}")


def left_out_serials(conn: db.Conn) -> list[int]:
    """The codes of the scans still queued for the sequencer (PostgreSQL): a live copy leaves
    those scans out, so their codes' check counts must be rebuilt on the copy."""
    if not db.is_postgres_conn(conn):
        return []
    rows = conn.execute(
        "SELECT DISTINCT s.serial FROM scan_queue q JOIN scans s ON s.id = q.scan_id WHERE s.serial IS NOT NULL"
    ).fetchall()
    return [int(row[0]) for row in rows]


# The first and last check are the scans that made the lowest and highest count (repos/projections).
_CHECKS_OF_CODE = """
SELECT g.hi,
       (SELECT min(f.at) FROM scans f WHERE f.serial = :serial AND f.counted = 1 AND f.checks = g.lo),
       (SELECT max(l.at) FROM scans l WHERE l.serial = :serial AND l.counted = 1 AND l.checks = g.hi),
       g.pin_at
FROM (SELECT max(CASE WHEN counted = 1 THEN checks END) AS hi, min(CASE WHEN counted = 1 THEN checks END) AS lo,
             min(CASE WHEN pin = 'first' THEN at END) AS pin_at
      FROM scans WHERE serial = :serial) g
"""


def rebuild_code_checks(conn: db.Conn, serials: Sequence[int]) -> None:
    """Each code's `code_checks` row as its scans in this database make it (a live copy, inside its
    transaction): the check count, first and last counted check, the PIN's first verification;
    no row when no scan counted. The sessions that counted are not kept (a repeat view of one of
    them right after a restore counts once more)."""
    for serial in serials:
        checks, first, last, pin_at = conn.execute(_CHECKS_OF_CODE, {"serial": serial}).fetchone()
        conn.execute("DELETE FROM code_checks WHERE serial = ?", (serial,))
        if checks is not None:
            conn.execute(
                "INSERT INTO code_checks (serial, checks, first_checked_at, last_checked_at, pin_verified_at, sessions)"
                " VALUES (?, ?, ?, ?, ?, '')",
                (serial, checks, first, last, pin_at),
            )
