"""Anomaly rules over the scan log: where cloned labels and counterfeits show themselves.

Each rule has a stable reason code and configurable thresholds (docs/audit.md). Every query is
bounded by the time window: it reads scans through the index on the scan time (`scans_at`,
forced with INDEXED BY, because the planner otherwise walks the whole serial index to save a
sort) or, for rare verdicts, through `scans_reason` from the window's first id. `QUERIES` holds
them all, so a test can check each plan.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass, field

COUNTERFEIT_REASONS = ("bad-signature", "unknown-key", "unknown-batch", "unknown-code", "key-revoked")
WRONG_PINS = ("mismatch", "throttled")  # `scans.pin` of a wrong PIN, and of an attempt refused by the throttle


@dataclass(frozen=True)
class Thresholds:
    repeat_checks: int = 4  # more counted checks than this: the label may be cloned
    sessions: int = 3  # more distinct browser sessions than this for one code
    distant_hours: float = 24.0  # one code seen from two regions within this many hours
    cluster_scans: int = 3  # at least this many not-genuine scans in one region on one day
    pin_guesses: int = 5  # at least this many wrong (or throttled) PINs for one code...
    pin_clients: int = 2  # ...from at least this many clients


@dataclass(frozen=True)
class Anomaly:
    rule: str  # the stable reason code
    subject: str  # what it is about: "code 1234…", "batch 7", "CN/Guangdong 2026-11-22"
    count: int
    first_at: str
    last_at: str
    serial: int | None = None
    batch_id: int | None = None
    evidence: list[int] = field(default_factory=list)  # scan ids

    def as_dict(self) -> dict[str, object]:
        return self.__dict__.copy()


RULES = {
    "repeat-checks": "a code checked more often than a genuine label would be",
    "many-sessions": "one code checked from many different browsers",
    "distant-regions": "one code seen in different regions within a short time",
    "counterfeit-cluster": "forged or unknown codes clustered in one region on one day",
    "scan-after-recall": "codes of a recalled batch still being scanned",
    "pin-reused": "a scratch-off PIN verified more than once",
    "pin-guessing": "many wrong PINs for one code from several clients",
}

EVIDENCE_MAX = 20
_WINDOW = "scans INDEXED BY scans_at WHERE at >= :since"
_COUNTED = "counted = 1 AND reason IN ('genuine-repeat', 'suspicious-repeat', 'genuine')"
_COUNTERFEIT = ", ".join(f"'{r}'" for r in COUNTERFEIT_REASONS)
_WRONG_PINS = ", ".join(f"'{p}'" for p in WRONG_PINS)
# The window's first id, read from the time index alone: rare verdicts are then read through
# scans_reason (reason, id) from that id on, and `at >= :since` keeps the result exact.
_FIRST_ID = "(SELECT min(id) FROM scans INDEXED BY scans_at WHERE at >= :since)"
# The partial index scans_reason is usable only if its own condition is in the query.
_RARE = "reason NOT IN ('genuine', 'genuine-repeat')"

QUERIES: dict[str, str] = {
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
        AND at >= :since GROUP BY 1, 2, 3 HAVING count(*) >= :cluster_scans""",
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
}


def parameters(since: str, thresholds: Thresholds) -> dict[str, object]:
    """The named parameters of QUERIES."""
    return {
        "since": since,
        "repeat_checks": thresholds.repeat_checks,
        "sessions": thresholds.sessions,
        "distant_ms": round(thresholds.distant_hours * 3_600_000),
        "cluster_scans": thresholds.cluster_scans,
        "pin_guesses": thresholds.pin_guesses,
        "pin_clients": thresholds.pin_clients,
    }


def _ids(text: str | None, limit: int = EVIDENCE_MAX) -> list[int]:
    return [int(x) for x in (text or "").split(",")[:limit] if x]


def find(conn: sqlite3.Connection, since: str, thresholds: Thresholds = Thresholds()) -> list[Anomaly]:
    """Every anomaly in scans at or after `since` (UTC ISO time), most serious first."""
    params = parameters(since, thresholds)

    def rows(rule: str) -> sqlite3.Cursor:
        return conn.execute(QUERIES[rule], params)

    found: list[Anomaly] = []
    for serial, n, first, last, ids in rows("repeat-checks"):
        found.append(Anomaly("repeat-checks", f"code {serial:016d}", n, first, last, serial=serial, evidence=_ids(ids)))
    for serial, n, first, last, ids in rows("many-sessions"):
        found.append(Anomaly("many-sessions", f"code {serial:016d}", n, first, last, serial=serial, evidence=_ids(ids)))
    found += _distant_regions(rows("distant-regions"))
    for country, region, day, n, first, last, ids in rows("counterfeit-cluster"):
        where = "/".join(x for x in (country, region) if x)
        found.append(Anomaly("counterfeit-cluster", f"{where} {day}", n, first, last, evidence=_ids(ids)))
    for batch_id, n, first, last, ids in rows("scan-after-recall"):
        found.append(
            Anomaly("scan-after-recall", f"batch {batch_id}", n, first, last, batch_id=batch_id, evidence=_ids(ids))
        )
    for serial, n, first, last, ids in rows("pin-reused"):
        found.append(
            Anomaly("pin-reused", f"code {serial:016d}", n + 1, first, last, serial=serial, evidence=_ids(ids))
        )
    for serial, n, clients, first, last, ids in rows("pin-guessing"):
        found.append(
            Anomaly(
                "pin-guessing",
                f"code {serial:016d}: {clients} clients",
                n,
                first,
                last,
                serial=serial,
                evidence=_ids(ids),
            )
        )
    order = list(RULES)
    return sorted(found, key=lambda a: (order.index(a.rule), -a.count))


def _distant_regions(pairs: sqlite3.Cursor) -> list[Anomaly]:
    """One anomaly per code from its flagged (previous scan, scan) pairs, in time order."""
    found: dict[int, Anomaly] = {}
    for serial, prev_id, prev_at, prev_place, scan_id, at, place in pairs:
        old = found.get(serial)
        evidence = (old.evidence if old else [prev_id]) + [scan_id]
        count = (old.count if old else 1) + 1
        found[serial] = Anomaly(
            "distant-regions",
            f"code {serial:016d}: {prev_place} -> {place}",
            count,
            old.first_at if old else prev_at,
            at,
            serial=serial,
            evidence=evidence[:EVIDENCE_MAX],
        )
    return list(found.values())


def since_days(days: int, now: dt.datetime) -> str:
    """The UTC ISO time `days` days before `now`: the start of an anomaly window."""
    return (now - dt.timedelta(days=days)).astimezone(dt.UTC).isoformat(timespec="milliseconds")
