"""The SQL of `audit verify`'s replay (verifier/replay.py): the state tables read as the log's
projections, and the few facts a log entry records about them when it is written.

Small tables (batches, users, tokens, reported codes) are read whole; `codes` is streamed in
serial order; the per-code check state and the scans are compared here, in SQL (10,000,000 scans
never become Python objects): only disagreements come back, at most `limit` of them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from .. import db

# What a verdict shows of a batch and what decides access to it: the batch.issued entry records
# these (issue._activate), and the replay compares them with the tables.
_BATCH_FACTS = """
SELECT b.id, b.status, b.enterprise_id, e.name AS enterprise, e.credit_code, b.product_id, p.name AS product,
       p.spec, p.gtin AS product_gtin, b.mark, b.form, b.lot, b.gtin, b.production_date, b.expiry_date, b.count,
       b.kid, b.base_url, b.pin, b.created_by, b.recalled_at, b.recall_reason, b.unit, b.activation,
       b.production_place, b.activated_at, b.report_sha256
FROM batches b LEFT JOIN enterprises e ON e.id = b.enterprise_id LEFT JOIN products p ON p.id = b.product_id
"""


def batch_facts(conn: db.Conn, batch_id: int | None = None) -> list[dict[str, Any]]:
    """Every batch (or batch `batch_id`), whatever its status, with its enterprise and product, by id."""
    if batch_id is None:
        return db.dicts(conn.execute(_BATCH_FACTS + " ORDER BY b.id"))
    return db.dicts(conn.execute(_BATCH_FACTS + " WHERE b.id = ?", (batch_id,)))


def codes_in_serial_order(conn: db.Conn, size: int = 20_000) -> Iterator[list[tuple[int, int]]]:
    """Every (serial, batch_id) of `codes` in serial order (its primary key), `size` rows at a time."""
    cursor = db.stream(conn, "SELECT serial, batch_id FROM codes ORDER BY serial", (), size)
    while rows := cursor.fetchmany(size):
        yield rows


def pending_entries(conn: db.Conn) -> list[tuple[str, str, str, str]]:
    """(at, kind, actor, body) of the entries queued for the sequencer but scans (PostgreSQL; none
    on SQLite), oldest first: facts committed with their entry, which is not chained yet."""
    if not db.is_postgres_conn(conn):
        return []
    rows = conn.execute("SELECT at, kind, actor, body FROM log_pending ORDER BY id").fetchall()
    return [(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]


def last_scan_id(conn: db.Conn) -> int:
    """The highest scan id (0: none), which a purge records as its bound."""
    return int(conn.execute("SELECT coalesce(max(id), 0) FROM scans").fetchone()[0])


# The sequence number of a scan's entry: SQLite links the scan to its entry (scans.log_seq),
# PostgreSQL the entry to its scan (audit_log.scan_id).
_ENTRY_OF_SCAN = {
    db.SQLITE: "(SELECT log_seq FROM scans WHERE id = {id})",
    db.POSTGRESQL: "(SELECT seq FROM audit_log WHERE scan_id = {id})",
}

# Per code, from its scans: counted checks (how many, the check counts the first and last of them
# recorded, the times of the scans that made those two counts, the last one's id) and the PIN's
# first verification. The first and last check are the scans with the lowest and highest count, not
# the earliest and latest `at`: a scan's time is its request's, read before it waits for the code's
# lock, so two checks of one code a millisecond apart can count in the other order.
_CHECKS_FROM_SCANS = """
SELECT serial,
       sum(counted) AS n,
       min(CASE WHEN counted = 1 THEN checks END) AS lo,
       max(CASE WHEN counted = 1 THEN checks END) AS hi,
       substr(min(CASE WHEN counted = 1 THEN {padded} || at END), 21) AS first_at,
       substr(max(CASE WHEN counted = 1 THEN {padded} || at END), 21) AS last_at,
       max(CASE WHEN counted = 1 THEN id END) AS last_id,
       min(CASE WHEN pin = 'first' THEN at END) AS pin_at,
       sum(CASE WHEN pin = 'first' THEN 1 ELSE 0 END) AS pins,
       max(id) AS any_id
FROM scans {not_indexed} WHERE serial IS NOT NULL AND (counted = 1 OR pin = 'first') GROUP BY serial
"""
# The check count as 20 digits before the time, so min/max of the text picks the scan of the lowest
# and highest count in one pass, and substr(.., 21) is its time.
_PADDED_CHECKS = {
    db.SQLITE: "substr('00000000000000000000' || checks, -20, 20)",
    db.POSTGRESQL: "lpad(checks::text, 20, '0')",
}

# A code whose first check came before the last retirement may have lost scans to it (PostgreSQL):
# then only what its remaining scans prove is compared (docs/audit.md).
_RETIRED = "(c.first_checked_at < :retired_at)"
_CHECK_DISAGREEMENTS = f"""
WITH a AS ({_CHECKS_FROM_SCANS})
SELECT coalesce(a.serial, c.serial) AS serial, a.n, a.lo, a.hi, a.first_at, a.last_at, a.pin_at, a.pins,
       c.serial IS NOT NULL AS has_state, c.checks, c.first_checked_at, c.last_checked_at, c.pin_verified_at,
       coalesce({{entry}}, 0) AS seq
FROM a FULL OUTER JOIN code_checks c ON c.serial = a.serial
WHERE c.serial IS NULL
   OR (a.serial IS NULL AND NOT {_RETIRED})
   OR (a.serial IS NOT NULL AND (
          (a.hi IS NULL AND NOT {_RETIRED})
       OR c.checks <> a.hi
       OR a.n <> a.hi - a.lo + 1
       OR c.last_checked_at <> a.last_at
       OR (a.lo = 1 AND c.first_checked_at <> a.first_at)
       OR (a.lo <> 1 AND (NOT {_RETIRED} OR c.first_checked_at > a.first_at))
       OR a.pins > 1
       OR (a.pin_at IS NOT NULL AND (c.pin_verified_at IS NULL OR c.pin_verified_at <> a.pin_at))
       OR (a.pin_at IS NULL AND c.pin_verified_at IS NOT NULL AND NOT {_RETIRED})))
ORDER BY 1 LIMIT :limit
"""
CHECK_COLUMNS = (
    "serial",
    "n",
    "lo",
    "hi",
    "first_at",
    "last_at",
    "pin_at",
    "pins",
    "has_state",
    "checks",
    "first_checked_at",
    "last_checked_at",
    "pin_verified_at",
    "seq",
)


def check_disagreements(conn: db.Conn, retired_at: str, limit: int) -> list[dict[str, Any]]:
    """Codes whose `code_checks` row disagrees with their scans (CHECK_COLUMNS; `seq`: the entry of
    the last counted scan, else of the last PIN scan, 0 if none), by serial, at most `limit`.
    `retired_at`: when the last retirement was logged ('' for never)."""
    entry = _ENTRY_OF_SCAN[db.dialect(conn)].format(id="coalesce(a.last_id, a.any_id)")
    # SQLite would read the scans through scans_serial, one table lookup a scan: reading the table
    # in order and sorting is 1.8 times faster at 1,000,000 scans, and stays sequential beyond the cache.
    not_indexed = "" if db.is_postgres_conn(conn) else "NOT INDEXED"
    sql = _CHECK_DISAGREEMENTS.format(entry=entry, not_indexed=not_indexed, padded=_PADDED_CHECKS[db.dialect(conn)])
    rows = conn.execute(sql, {"retired_at": retired_at, "limit": limit}).fetchall()
    return [dict(zip(CHECK_COLUMNS, row)) for row in rows]


_MISSING_SCANS = {
    # the entry's body names its scan's id (SQLite: no index on scans.log_seq, the primary key serves)
    db.SQLITE: "SELECT l.seq, json_extract(l.body, '$.id') FROM audit_log l WHERE l.kind = 'scan' "
    "AND NOT EXISTS (SELECT 1 FROM scans s WHERE s.id = json_extract(l.body, '$.id')) ORDER BY l.seq LIMIT :limit",
    db.POSTGRESQL: "SELECT l.seq, l.scan_id FROM audit_log l WHERE l.kind = 'scan' AND l.scan_id >= :below "
    "AND NOT EXISTS (SELECT 1 FROM scans s WHERE s.id = l.scan_id) ORDER BY l.seq LIMIT :limit",
}


def scan_entries_without_scan(conn: db.Conn, retired_below: int, limit: int) -> list[tuple[int, Any]]:
    """(entry seq, the scan id it names: None if none) of scan entries whose scan row is gone (but
    retired ones), first first."""
    rows = conn.execute(_MISSING_SCANS[db.dialect(conn)], {"below": retired_below, "limit": limit}).fetchall()
    return [(int(r[0]), r[1]) for r in rows]


def erased_outside_purges(conn: db.Conn, bounds: Sequence[tuple[int, str]], limit: int) -> list[tuple[int, str, int]]:
    """(scan id, at, entry seq or 0) of scans whose personal fields are erased but that no purge
    covers: `bounds` are (highest scan id, cutoff) with ids ascending and cutoffs descending, so a
    scan with id <= bound may have been erased if it is older than that bound's cutoff."""
    cases = " ".join("WHEN s.id <= ? THEN ?" for _ in bounds)
    cutoff = f"CASE {cases} ELSE '' END" if bounds else "''"
    entry = _ENTRY_OF_SCAN[db.dialect(conn)].format(id="s.id")
    params: list[Any] = [v for bound in bounds for v in bound]
    rows = conn.execute(
        f"SELECT s.id, s.at, coalesce({entry}, 0) FROM scans s WHERE s.personal_salt IS NULL AND s.at >= {cutoff} "
        "ORDER BY s.id LIMIT ?",
        [*params, limit],
    ).fetchall()
    return [(int(r[0]), str(r[1]), int(r[2])) for r in rows]


def reported_codes(conn: db.Conn) -> list[tuple[int, str, str, str]]:
    """Every (serial, reported_at, reported_by, note) of `reported_codes`, by serial."""
    rows = conn.execute("SELECT serial, reported_at, reported_by, note FROM reported_codes ORDER BY serial")
    return [(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]


def users(conn: db.Conn) -> list[tuple[int, str, str, int | None, str, int]]:
    """Every (id, username, role, enterprise_id, password_hash, disabled) of `users`, by id."""
    rows = conn.execute("SELECT id, username, role, enterprise_id, password_hash, disabled FROM users ORDER BY id")
    return [(int(r[0]), str(r[1]), str(r[2]), r[3], str(r[4]), int(r[5])) for r in rows]


def api_tokens(conn: db.Conn) -> list[tuple[int, int, str, str, str | None]]:
    """Every (id, user_id, token_hash, label, revoked_at) of `api_tokens`, by id."""
    rows = conn.execute("SELECT id, user_id, token_hash, label, revoked_at FROM api_tokens ORDER BY id")
    return [(int(r[0]), int(r[1]), str(r[2]), str(r[3]), r[4]) for r in rows]
