"""The scan log's rows: `scans`, the per-code state a lookup keeps (`code_checks`, `pin_attempts`),
the audit's scan lists (keyset pages, newest first), code histories, batch statistics, the
anomaly rules' queries and the retention purge.

Every statement on these tables is here. Scan ids grow with time, so time bounds become id
bounds (cheap ranges on the primary key); `INDEXED BY` hints are SQLite's and are kept in this
module, next to the indexes they name (migration 004 in `verifier.db`). PostgreSQL's planner
needs no hints: `_postgres` rewrites the few SQLite spellings (hints, group_concat, julianday,
`IN table`) of the anomaly queries.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from .. import db, lifecycle

# What a scan's log entry commits to, and the personal fields the retention purge may erase
# (committed to through a salted hash); then the row's link to its log entry. Fields are only ever
# added, as CLAIM_FIELDS were (migration 015): an entry records an added field only when it is
# set, so the entries written before it still equal their rows.
SCAN_FIELDS = (
    "id",
    "at",
    "channel",
    "reason",
    "detail",
    "serial",
    "batch_id",
    "kid",
    "counted",
    "checks",
    "pin",
    "country",
    "claimed_batch",
    "claimed_gtin",
    "claimed_mark",
)
# What a scanned code that is not genuine says of itself, when it decodes (NULL on every other scan):
# the batch number (compact form), the GTIN (GS1 form), the mark. An entry records them only when set.
CLAIM_FIELDS = ("claimed_batch", "claimed_gtin", "claimed_mark")
PERSONAL_FIELDS = ("ip_prefix", "ip_hash", "region", "city", "user_agent", "session_hash")
INSERT_COLUMNS = SCAN_FIELDS + PERSONAL_FIELDS + ("log_seq", "personal_salt")
COLUMNS = frozenset(INSERT_COLUMNS)
COMMON_REASONS = ("genuine", "genuine-repeat")  # the verdicts the partial index scans_reason leaves out
HISTORY_MAX = 1000


# --- the lookup's per-code state -----------------------------------------------------------


class CodeChecks(NamedTuple):
    sessions: str  # hashes of the last browser sessions that counted, space-separated
    checks: int
    first_checked_at: str
    pin_verified_at: str | None


def code_checks(conn: db.Conn, serial: int) -> CodeChecks | None:
    """A code's check state; None before its first counted check."""
    row = conn.execute(
        "SELECT sessions, checks, first_checked_at, pin_verified_at FROM code_checks WHERE serial = ?", (serial,)
    ).fetchone()
    return CodeChecks(*row) if row else None


def count_check(conn: db.Conn, serial: int, at: str, sessions: str) -> tuple[int, str, str | None]:
    """Count one check of a code at `at`: (checks, first_checked_at, pin_verified_at) after it."""
    row = conn.execute(
        """INSERT INTO code_checks (serial, checks, first_checked_at, last_checked_at, sessions)
           VALUES (?, 1, ?, ?, ?)
           ON CONFLICT (serial) DO UPDATE SET checks = code_checks.checks + 1,
           last_checked_at = excluded.last_checked_at, sessions = excluded.sessions
           RETURNING checks, first_checked_at, pin_verified_at""",
        (serial, at, at, sessions),
    ).fetchone()
    return int(row[0]), str(row[1]), row[2]


def mark_pin_verified(conn: db.Conn, serial: int, at: str) -> None:
    """The code's PIN was verified for the first time at `at`."""
    conn.execute("UPDATE code_checks SET pin_verified_at = ? WHERE serial = ?", (at, serial))


def pin_attempts(conn: db.Conn, serial: int) -> tuple[str, int] | None:
    """(window_start, failures) of a code's wrong PINs, if any were recorded."""
    row = conn.execute("SELECT window_start, failures FROM pin_attempts WHERE serial = ?", (serial,)).fetchone()
    return (str(row[0]), int(row[1])) if row else None


def set_pin_attempts(conn: db.Conn, serial: int, window_start: str, failures: int) -> None:
    """Replace a code's wrong-PIN window."""
    conn.execute(
        """INSERT INTO pin_attempts (serial, window_start, failures) VALUES (?, ?, ?)
           ON CONFLICT (serial) DO UPDATE SET window_start = excluded.window_start, failures = excluded.failures""",
        (serial, window_start, failures),
    )


# --- scans ---------------------------------------------------------------------------------


def next_scan_id(conn: db.Conn) -> int | None:
    """The id of the next scan (inside the write transaction that inserts it), which its log entry
    records. SQLite: the next number, under the writer lock. PostgreSQL: None, the identity gives
    it at the insert (the sequencer reads it from the row; a rolled-back scan leaves a gap, which
    no check reads as a missing scan)."""
    if db.is_postgres_conn(conn):
        return None
    (scan_id,) = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM scans").fetchone()
    return int(scan_id)


_INSERT_SCAN = f"INSERT INTO scans ({', '.join(INSERT_COLUMNS)}) VALUES ({', '.join('?' * len(INSERT_COLUMNS))})"
_QUEUED = tuple(c for c in INSERT_COLUMNS if c not in ("id", "log_seq"))
# PostgreSQL: the row, and its id in the sequencer's queue, in one statement.
_INSERT_AND_QUEUE_SCAN = (
    f"WITH s AS (INSERT INTO scans ({', '.join(_QUEUED)}) VALUES ({', '.join('?' * len(_QUEUED))}) RETURNING id) "
    "INSERT INTO scan_queue (scan_id) SELECT id FROM s RETURNING scan_id"
)


def insert_scan(conn: db.Conn, scan: Mapping[str, object]) -> int:
    """One scan row: every column of INSERT_COLUMNS from `scan` (PostgreSQL: but the id, which the
    identity gives, and log_seq; the scan is queued for the sequencer); its id."""
    if db.is_postgres_conn(conn):
        return int(conn.execute(_INSERT_AND_QUEUE_SCAN, [scan[c] for c in _QUEUED]).fetchone()[0])
    conn.execute(_INSERT_SCAN, [scan[c] for c in INSERT_COLUMNS])
    return int(str(scan["id"]))


def count_below(conn: db.Conn, below_id: int) -> int:
    """How many scans have an id below `below_id`."""
    return int(conn.execute("SELECT count(*) FROM scans WHERE id < ?", (below_id,)).fetchone()[0])


def erase_personal(conn: db.Conn, before: str) -> int:
    """Erase the personal fields (and their salt) of scans older than `before` (UTC text); how many."""
    return conn.execute(
        "UPDATE scans SET ip_prefix = NULL, ip_hash = NULL, region = NULL, city = NULL, user_agent = NULL, "
        "session_hash = NULL, personal_salt = NULL WHERE at < ? AND personal_salt IS NOT NULL",
        [before],
    ).rowcount


# --- the audit's scan lists ----------------------------------------------------------------


@dataclass(frozen=True)
class ScanFilter:
    """Which scans an audit list shows: every field set narrows it (values already validated)."""

    enterprise: str | None = None  # the enterprise's name
    batch: int | None = None
    serial: int | None = None
    reason: str | None = None
    channel: str | None = None
    country: str | None = None
    region: str | None = None
    since: str | None = None  # UTC text, inclusive
    until: str | None = None  # UTC text, exclusive


def _select(columns: Sequence[str], prefix: str = "") -> str:
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        raise ValueError(f"no scan columns {unknown}")
    return ", ".join(prefix + c for c in columns)


# The first scan at or after a time, through the time index; past the end: an id no scan has.
_ID_AT = "coalesce((SELECT id FROM scans INDEXED BY scans_at WHERE at >= ? ORDER BY at LIMIT 1), 4611686018427387904)"
_ID_AT_POSTGRES = "coalesce((SELECT id FROM scans WHERE at >= ? ORDER BY at LIMIT 1), 4611686018427387904)"


# Whose scans are whose. A scan of a registered code is its batch's enterprise's. A scan of a code
# that is not genuine (no batch) is the enterprise's whose batch number or product GTIN the code
# claims; a mark alone is claimed of nobody (every enterprise may use a mark). Each is read through
# its own index: scans_batch, scans_claimed_batch, scans_claimed_gtin.


def _of_enterprise(enterprise: str) -> str:
    """Scans of the enterprise whose id `enterprise` (SQL: "?" or a subquery) gives: 4 parameters."""
    gtins = (
        f"SELECT gtin FROM products WHERE enterprise_id = {enterprise} AND gtin IS NOT NULL "
        f"UNION SELECT gtin FROM batches WHERE enterprise_id = {enterprise} AND gtin IS NOT NULL"
    )
    return (  # claims are set only on scans without a batch: each term is read through its own index
        f"(s.batch_id IN (SELECT id FROM batches WHERE enterprise_id = {enterprise}) "
        f"OR s.claimed_batch IN (SELECT id FROM batches WHERE enterprise_id = {enterprise}) "
        f"OR s.claimed_gtin IN ({gtins}))"
    )


_OF_ENTERPRISE = _of_enterprise("?")
_OF_ENTERPRISE_NAMED = _of_enterprise("(SELECT id FROM enterprises WHERE name = ?)")
# A batch's scans, and those of codes that are not genuine claiming it: its number (compact form),
# or its GTIN (GS1 form: a forged GS1 code is counted with every batch of the GTIN it claims). 3 parameters.
# Claims are set only on scans without a batch (lookup), so each term stands alone and is read
# through its own index (SQLite's OR of indexes), not a walk of every scan.
_OF_BATCH = "(s.batch_id = ? OR s.claimed_batch = ? OR s.claimed_gtin = (SELECT gtin FROM batches WHERE id = ?))"
# Another enterprise's batch, in an enterprise's scope: none of the batch's own scans can be its,
# only codes claiming the batch (2 parameters). Without the batch_id term SQLite reads the few
# claims, not every scan of the batch only to drop them all.
_CLAIMING_BATCH = "(s.claimed_batch = ? OR s.claimed_gtin = (SELECT gtin FROM batches WHERE id = ?))"


def _foreign_batch(conn: db.Conn, flt: ScanFilter, everything: bool, enterprise_id: int | None) -> bool:
    """Whether an enterprise's account filters by a batch that is not its own (or no batch)."""
    if everything or flt.batch is None:
        return False
    row = conn.execute("SELECT enterprise_id FROM batches WHERE id = ?", (flt.batch,)).fetchone()
    return row is None or row[0] != enterprise_id


def _where(conn: db.Conn, flt: ScanFilter, everything: bool, enterprise_id: int | None) -> tuple[str, list[Any]]:
    id_at = _ID_AT_POSTGRES if db.is_postgres_conn(conn) else _ID_AT
    where: list[str] = ["1 = 1"]
    params: list[Any] = []
    if not everything:  # an enterprise's account: its own batches only (no enterprise: nothing)
        where.append(_OF_ENTERPRISE)
        params += [enterprise_id] * 4
    if flt.enterprise:
        where.append(_OF_ENTERPRISE_NAMED)
        params += [flt.enterprise] * 4
    if flt.batch is not None and _foreign_batch(conn, flt, everything, enterprise_id):
        where.append(_CLAIMING_BATCH)
        params += [flt.batch] * 2
    elif flt.batch is not None:
        where.append(_OF_BATCH)
        params += [flt.batch] * 3
    if flt.serial is not None:
        where.append("s.serial = ?")
        params.append(flt.serial)
    for name in ("reason", "channel", "country", "region"):
        if value := getattr(flt, name):
            where.append(f"s.{name} = ?")
            params.append(value)
            if name == "reason" and value not in COMMON_REASONS:
                where.append("s.reason NOT IN ('genuine', 'genuine-repeat')")  # lets SQLite use scans_reason
    if flt.since:  # times become id bounds: ids grow with time, and id ranges are cheap
        where.append(f"s.id >= {id_at}")
        params.append(flt.since)
    if flt.until:
        where.append(f"s.id < {id_at}")
        params.append(flt.until)
    return " AND ".join(where), params


def newest_first(
    conn: db.Conn,
    columns: Sequence[str],
    flt: ScanFilter,
    *,
    everything: bool,
    enterprise_id: int | None,
    after: int | None,
    limit: int,
) -> list[tuple[Any, ...]]:
    """One keyset page: at most `limit` matching scans with ids below `after`, newest first."""
    where, params = _where(conn, flt, everything, enterprise_id)
    if after is not None:
        where += " AND s.id < ?"
        params.append(after)
    return conn.execute(
        f"SELECT {_select(columns, 's.')} FROM scans s WHERE {where} ORDER BY s.id DESC LIMIT ?", [*params, limit]
    ).fetchall()


def oldest_first(
    conn: db.Conn,
    columns: Sequence[str],
    flt: ScanFilter,
    *,
    everything: bool,
    enterprise_id: int | None,
    chunk: int = 2000,
) -> db.Cursor:
    """Every matching scan, oldest first, as a cursor to stream from `chunk` rows at a time (an
    export; on PostgreSQL `conn` is a read-only connection from db.connect_read_only)."""
    where, params = _where(conn, flt, everything, enterprise_id)
    sql = f"SELECT {_select(columns, 's.')} FROM scans s WHERE {where} ORDER BY s.id"
    return db.stream(conn, sql, params, chunk)


def of_enterprise(conn: db.Conn, scan_ids: Sequence[int], enterprise_id: int) -> set[int]:
    """Those of `scan_ids` that are the enterprise's: of its batches, or claiming them or its GTINs."""
    if not scan_ids:
        return set()
    marks = ", ".join("?" * len(scan_ids))
    sql = f"SELECT s.id FROM scans s WHERE s.id IN ({marks}) AND {_OF_ENTERPRISE}"
    return {int(i) for (i,) in conn.execute(sql, [*scan_ids, *[enterprise_id] * 4]).fetchall()}


def code_history(conn: db.Conn, columns: Sequence[str], serial: int, limit: int = HISTORY_MAX) -> list[tuple[Any, ...]]:
    """The first `limit` scans of one code, oldest first."""
    return conn.execute(
        f"SELECT {_select(columns)} FROM scans WHERE serial = ? ORDER BY id LIMIT ?", (serial, limit)
    ).fetchall()


class BatchStatistics(NamedTuple):
    per_day: list[tuple[str, int]]  # (UTC day, scans)
    verdicts: list[tuple[str, int]]  # (reason, scans), most frequent first
    top_codes: list[tuple[int, int, int]]  # (serial, most checks, scans), the ten most checked


def batch_statistics(conn: db.Conn, batch_id: int) -> BatchStatistics:
    """A batch's scans per day, verdict mix and most checked codes (served by scans_batch); the
    days and verdicts count the scans of codes that are not genuine claiming the batch too."""
    return BatchStatistics(
        conn.execute(
            f"SELECT substr(at, 1, 10), count(*) FROM scans s WHERE {_OF_BATCH} GROUP BY 1 ORDER BY 1", (batch_id,) * 3
        ).fetchall(),
        conn.execute(
            f"SELECT reason, count(*) FROM scans s WHERE {_OF_BATCH} GROUP BY 1 ORDER BY 2 DESC", (batch_id,) * 3
        ).fetchall(),
        conn.execute(
            """SELECT serial, max(checks), count(*) FROM scans WHERE batch_id = ? AND serial IS NOT NULL
               GROUP BY serial ORDER BY max(checks) DESC, count(*) DESC LIMIT 10""",
            (batch_id,),
        ).fetchall(),
    )


# --- the anomaly rules' queries (verifier/anomalies.py turns their rows into anomalies) -------
#
# Every query is bounded by the time window: it reads scans through the index on the scan time
# (`scans_at`, forced with INDEXED BY, because the planner otherwise walks the whole serial index
# to save a sort) or, for rare verdicts, through `scans_reason` from the window's first id.
# tests/test_anomalies.py checks each plan. Named parameters: anomalies.parameters().

COUNTERFEIT_REASONS = ("bad-signature", "unknown-key", "unknown-batch", "unknown-code", "key-revoked")
WRONG_PINS = ("mismatch", "throttled")  # `scans.pin` of a wrong PIN, and of an attempt refused by the throttle

_WINDOW = "scans INDEXED BY scans_at WHERE at >= :since"
_COUNTED = "counted = 1 AND reason IN ('genuine-repeat', 'suspicious-repeat', 'genuine')"
_COUNTERFEIT = ", ".join(f"'{r}'" for r in COUNTERFEIT_REASONS)
_WRONG_PINS = ", ".join(f"'{p}'" for p in WRONG_PINS)
# The window's first id, read from the time index alone: rare verdicts are then read through
# scans_reason (reason, id) from that id on, and `at >= :since` keeps the result exact.
_FIRST_ID = "(SELECT min(id) FROM scans INDEXED BY scans_at WHERE at >= :since)"
# The partial index scans_reason is usable only if its own condition is in the query.
_RARE = "reason NOT IN ('genuine', 'genuine-repeat')"

# The verdicts of a registered, validly signed code (what a diverted genuine code gets): a forged
# or reported code's region is the counterfeit cluster's business, not a dealer's.
REGISTERED_REASONS = (
    "genuine",
    "genuine-repeat",
    "suspicious-repeat",
    "pin-reused",
    "pin-mismatch",
    "pin-throttled",
    "expired",
    "recalled",
    "mark-suspended",  # the goods are genuine: a suspended certificate does not end the dealer's duty
)
# Countries whose regions GB/T 2260 names: a US "SC" or "HI" is no Chinese province.
GBT2260_COUNTRIES = ("CN", "HK", "MO", "TW")
_REGISTERED = ", ".join(f"'{r}'" for r in REGISTERED_REASONS)
# The lifecycle rules read one enterprise's codes only when :enterprise is given (an enterprise's
# account), so the LIMIT is spent on its own codes.
_ENTERPRISE = (
    "(CAST(:enterprise AS BIGINT) IS NULL OR {batch} IN (SELECT id FROM batches WHERE enterprise_id = :enterprise))"
)
# Forged or unknown codes are an enterprise's (:enterprise given) where they claim its batch number
# or one of its products' GTINs: the counterfeit clusters it sees are of its own products.
_CLAIMED_BY = """(CAST(:enterprise AS BIGINT) IS NULL
        OR claimed_batch IN (SELECT id FROM batches WHERE enterprise_id = :enterprise)
        OR claimed_gtin IN (SELECT gtin FROM products WHERE enterprise_id = :enterprise AND gtin IS NOT NULL
                            UNION SELECT gtin FROM batches WHERE enterprise_id = :enterprise AND gtin IS NOT NULL))"""
# Scans in the window of codes shipped (or sold after shipping) with sales regions, located by a
# region text. CROSS JOIN keeps SQLite reading the window first; each code's state is then one
# primary-key read.
_DIVERTIBLE = f"""scans AS s INDEXED BY scans_at CROSS JOIN code_states AS cs
        WHERE s.at >= :since AND cs.serial = s.serial AND s.serial IS NOT NULL AND s.region IS NOT NULL
        AND (s.country IS NULL OR s.country IN ({", ".join(f"'{c}'" for c in GBT2260_COUNTRIES)}))
        AND s.reason IN ({_REGISTERED}) AND cs.state IN ('{lifecycle.SHIPPED}', '{lifecycle.SOLD}')
        AND cs.region IS NOT NULL AND {_ENTERPRISE.format(batch="s.batch_id")}"""
# The diversion rule's first step: the distinct (scan region text, shipment regions) pairs of the
# window, which anomalies.py judges in Python (SQL cannot read a province's names); the rule's
# query then reads the scans of the pairs it flagged (:diverted, a JSON list of "text/regions").
DIVERSION_PLACES = f"SELECT DISTINCT s.region, cs.region FROM {_DIVERTIBLE} LIMIT :places_max"

ANOMALY_QUERIES: dict[str, str] = {
    # Codes over the threshold are few: find them in the window, then read their scans by serial.
    "repeat-checks": f"""
        WITH flagged AS (SELECT DISTINCT serial FROM {_WINDOW} AND serial IS NOT NULL AND checks > :repeat_checks
                         AND {_COUNTED})
        SELECT serial, max(checks), min(at), max(at), group_concat(id) FROM scans INDEXED BY scans_serial
        WHERE serial IN flagged AND at >= :since AND {_COUNTED} GROUP BY serial HAVING max(checks) > :repeat_checks""",
    "many-sessions": f"""
        SELECT serial, count(DISTINCT session_hash), min(at), max(at), group_concat(id) FROM {_WINDOW}
        AND serial IS NOT NULL AND session_hash IS NOT NULL
        GROUP BY serial HAVING count(DISTINCT session_hash) > :sessions""",
    # Consecutive scans of one code (in time order) from two places, at most :distant_ms apart. Codes
    # scanned once in the window (most of them) are dropped first, by a cheap count.
    "distant-regions": f"""
        WITH several AS (SELECT serial FROM {_WINDOW} AND serial IS NOT NULL AND country IS NOT NULL
                         GROUP BY serial HAVING count(*) > 1),
             seen AS (SELECT serial, id, at, coalesce(country, '') || '/' || coalesce(region, '') AS place
                      FROM scans INDEXED BY scans_serial
                      WHERE serial IN several AND at >= :since AND country IS NOT NULL),
             pairs AS (SELECT serial, id, at, place, lag(id) OVER w AS prev_id, lag(at) OVER w AS prev_at,
                              lag(place) OVER w AS prev_place
                       FROM seen WINDOW w AS (PARTITION BY serial ORDER BY at, id))
        SELECT serial, prev_id, prev_at, prev_place, id, at, place FROM pairs
        WHERE place <> prev_place AND round((julianday(at) - julianday(prev_at)) * 86400000) <= :distant_ms
        ORDER BY serial, at, id""",
    "counterfeit-cluster": f"""
        SELECT coalesce(country, '?'), coalesce(region, ''), substr(at, 1, 10), count(*), min(at), max(at),
               group_concat(id)
        FROM scans INDEXED BY scans_reason WHERE reason IN ({_COUNTERFEIT}) AND {_RARE} AND id >= {_FIRST_ID}
        AND at >= :since AND {_CLAIMED_BY} GROUP BY 1, 2, 3 HAVING count(*) >= :cluster_scans""",
    "scan-after-recall": f"""
        SELECT batch_id, count(*), min(at), max(at), group_concat(id) FROM scans INDEXED BY scans_reason
        WHERE reason = 'recalled' AND {_RARE} AND id >= {_FIRST_ID} AND at >= :since GROUP BY batch_id""",
    "pin-reused": f"""
        SELECT serial, count(*), min(at), max(at), group_concat(id) FROM {_WINDOW}
        AND pin = 'reused' GROUP BY serial""",
    # Clients are the keyed hash of the full IP (the session cookie is too easy to drop), else the session.
    "pin-guessing": f"""
        SELECT serial, count(*), count(DISTINCT coalesce(ip_hash, session_hash)), min(at), max(at), group_concat(id)
        FROM {_WINDOW} AND serial IS NOT NULL AND pin IN ({_WRONG_PINS}) GROUP BY serial
        HAVING count(*) >= :pin_guesses AND count(DISTINCT coalesce(ip_hash, session_hash)) >= :pin_clients""",
    # Per code and region text, the scans of the flagged pairs; then the code's dealer, shipment
    # and the last event that shipped it (event_codes holds the items a shipped case held).
    "diversion": f"""
        WITH seen AS (SELECT s.serial, s.region AS place, max(s.batch_id) AS batch_id, count(*) AS n,
                             min(s.at) AS first_at, max(s.at) AS last_at, group_concat(s.id) AS ids
                      FROM {_DIVERTIBLE}
                      AND s.region || '/' || cs.region IN (SELECT value FROM json_each(:diverted))
                      GROUP BY s.serial, s.region ORDER BY count(*) DESC, s.serial, s.region LIMIT :rows_max)
        SELECT seen.serial, seen.place, seen.batch_id, seen.n, seen.first_at, seen.last_at, seen.ids,
               cs.dealer_id, d.code, d.name, cs.region, cs.shipped_at, e.id, e.event_id
        FROM seen JOIN code_states cs ON cs.serial = seen.serial LEFT JOIN dealers d ON d.id = cs.dealer_id
        LEFT JOIN events e ON e.id = (SELECT max(ec.event) FROM event_codes ec JOIN events x ON x.id = ec.event
                                      WHERE ec.serial = seen.serial AND x.biz_step = '{lifecycle.SHIPPING}')
        ORDER BY seen.serial, seen.first_at, seen.place""",
    # Goods seen outside the factory before their release: per batch.
    "scan-before-release": f"""
        SELECT batch_id, count(*), count(DISTINCT serial), min(at), max(at), group_concat(id)
        FROM scans INDEXED BY scans_reason WHERE reason = 'not-released' AND {_RARE} AND id >= {_FIRST_ID}
        AND at >= :since AND {_ENTERPRISE.format(batch="batch_id")} GROUP BY batch_id""",
    # A blocked code (counterfeit, stolen, destroyed) still in circulation: per code, with the block's reason.
    "blocked-scanned": f"""
        SELECT serial, max(batch_id), max(detail), count(*), min(at), max(at), group_concat(id)
        FROM scans INDEXED BY scans_reason WHERE reason = 'blocked' AND {_RARE} AND id >= {_FIRST_ID}
        AND at >= :since AND serial IS NOT NULL AND {_ENTERPRISE.format(batch="batch_id")}
        GROUP BY serial ORDER BY count(*) DESC, serial LIMIT :rows_max""",
}


_POSTGRES_SPELLINGS = (
    (re.compile(r" INDEXED BY \w+"), ""),
    # min(id) alone would walk the primary key from the oldest scan, filtering on `at`, until the
    # window starts (nearly the whole table); the fence (OFFSET 0) keeps the window's rows read
    # through scans_at, as SQLite's hint does.
    (
        re.compile(re.escape("(SELECT min(id) FROM scans WHERE at >= :since)")),
        "(SELECT min(id) FROM (SELECT id FROM scans WHERE at >= :since OFFSET 0) AS w)",
    ),
    (re.compile(r"group_concat\(((?:\w+\.)?id)\)"), r"string_agg(\1::text, ',')"),
    (re.compile(r"json_each\((:\w+)\)"), r"json_array_elements_text(CAST(\1 AS json))"),
    (re.compile(r"serial IN (flagged|several)\b"), r"serial IN (SELECT serial FROM \1)"),
    (
        re.compile(r"round\(\(julianday\(at\) - julianday\(prev_at\)\) \* 86400000\)"),
        "round(extract(epoch FROM at::timestamptz - prev_at::timestamptz) * 1000)",
    ),
)


def _postgres(sql: str) -> str:
    """An anomaly query in PostgreSQL's spelling (the same query: tests run both engines)."""
    for pattern, replacement in _POSTGRES_SPELLINGS:
        sql = pattern.sub(replacement, sql)
    return sql


POSTGRES_ANOMALY_QUERIES = {rule: _postgres(sql) for rule, sql in ANOMALY_QUERIES.items()}
POSTGRES_DIVERSION_PLACES = _postgres(DIVERSION_PLACES)


def anomaly_rows(conn: db.Conn, rule: str, params: Mapping[str, object]) -> list[tuple[Any, ...]]:
    """The rows of one rule's query (ANOMALY_QUERIES) with its named parameters."""
    queries = POSTGRES_ANOMALY_QUERIES if db.is_postgres_conn(conn) else ANOMALY_QUERIES
    return conn.execute(queries[rule], params).fetchall()


def diversion_places(conn: db.Conn, params: Mapping[str, object]) -> list[tuple[str, str]]:
    """The distinct (scan region text, shipment regions) pairs the diversion rule judges (DIVERSION_PLACES)."""
    sql = POSTGRES_DIVERSION_PLACES if db.is_postgres_conn(conn) else DIVERSION_PLACES
    return [(str(a), str(b)) for a, b in conn.execute(sql, params).fetchall()]
