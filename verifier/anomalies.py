"""Anomaly rules over the scan log: where cloned labels and counterfeits show themselves.

Each rule has a stable reason code and configurable thresholds (docs/audit.md). Rules read
scans since a given time, through the index on the scan time.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

COUNTERFEIT_REASONS = ("bad-signature", "unknown-key", "unknown-batch", "unknown-code", "key-revoked")


@dataclass(frozen=True)
class Thresholds:
    repeat_checks: int = 4  # more counted checks than this: the label may be cloned
    sessions: int = 3  # more distinct browser sessions than this for one code
    distant_hours: float = 24.0  # one code seen from two regions within this many hours
    cluster_scans: int = 3  # at least this many not-genuine scans in one region on one day


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
}


def _ids(text: str | None, limit: int = 20) -> list[int]:
    return [int(x) for x in (text or "").split(",")[:limit] if x]


def find(conn: sqlite3.Connection, since: str, thresholds: Thresholds = Thresholds()) -> list[Anomaly]:
    """Every anomaly in scans at or after `since` (UTC ISO time), most serious first."""
    found: list[Anomaly] = []
    base = "FROM scans WHERE at >= ?"
    for serial, n, first, last, ids in conn.execute(
        f"""SELECT serial, max(checks), min(at), max(at), group_concat(id) {base} AND serial IS NOT NULL AND counted = 1
            AND reason IN ('genuine-repeat', 'suspicious-repeat', 'genuine') GROUP BY serial HAVING max(checks) > ?""",
        (since, thresholds.repeat_checks),
    ):  # fmt: skip
        found.append(Anomaly("repeat-checks", f"code {serial:016d}", n, first, last, serial=serial, evidence=_ids(ids)))
    for serial, n, first, last, ids in conn.execute(
        f"""SELECT serial, count(DISTINCT session_hash), min(at), max(at), group_concat(id) {base}
            AND serial IS NOT NULL AND session_hash IS NOT NULL GROUP BY serial HAVING count(DISTINCT session_hash) > ?""",
        (since, thresholds.sessions),
    ):  # fmt: skip
        found.append(Anomaly("many-sessions", f"code {serial:016d}", n, first, last, serial=serial, evidence=_ids(ids)))
    found += _distant_regions(conn, since, thresholds.distant_hours)
    marks = ",".join("?" * len(COUNTERFEIT_REASONS))
    for country, region, day, n, first, last, ids in conn.execute(
        f"""SELECT coalesce(country, '?'), coalesce(region, ''), substr(at, 1, 10), count(*), min(at), max(at),
            group_concat(id) {base} AND reason IN ({marks}) GROUP BY 1, 2, 3 HAVING count(*) >= ?""",
        (since, *COUNTERFEIT_REASONS, thresholds.cluster_scans),
    ):  # fmt: skip
        where = "/".join(x for x in (country, region) if x)
        found.append(Anomaly("counterfeit-cluster", f"{where} {day}", n, first, last, evidence=_ids(ids)))
    for batch_id, n, first, last, ids in conn.execute(
        f"SELECT batch_id, count(*), min(at), max(at), group_concat(id) {base} AND reason = 'recalled' GROUP BY batch_id",
        (since,),
    ):  # fmt: skip
        found.append(Anomaly("scan-after-recall", f"batch {batch_id}", n, first, last, batch_id=batch_id, evidence=_ids(ids)))
    for serial, n, first, last, ids in conn.execute(
        f"SELECT serial, count(*), min(at), max(at), group_concat(id) {base} AND pin = 'reused' GROUP BY serial",
        (since,),
    ):  # fmt: skip
        found.append(Anomaly("pin-reused", f"code {serial:016d}", n + 1, first, last, serial=serial, evidence=_ids(ids)))
    order = list(RULES)
    return sorted(found, key=lambda a: (order.index(a.rule), -a.count))


def _distant_regions(conn: sqlite3.Connection, since: str, hours: float) -> list[Anomaly]:
    """Consecutive scans of one code from different regions less than `hours` apart."""
    rows = conn.execute(
        """SELECT serial, id, at, coalesce(country, '') || '/' || coalesce(region, '') FROM scans
           WHERE at >= ? AND serial IS NOT NULL AND country IS NOT NULL ORDER BY serial, at""",
        (since,),
    )
    import datetime as dt

    found: dict[int, Anomaly] = {}
    previous: tuple | None = None
    for serial, scan_id, at, where in rows:
        if previous and previous[0] == serial and previous[3] != where:
            gap = dt.datetime.fromisoformat(at) - dt.datetime.fromisoformat(previous[2])
            if gap <= dt.timedelta(hours=hours):
                old = found.get(serial)
                evidence = (old.evidence if old else [previous[1]]) + [scan_id]
                found[serial] = Anomaly("distant-regions", f"code {serial:016d}: {previous[3]} -> {where}",
                                        len(evidence), old.first_at if old else previous[2], at, serial=serial,
                                        evidence=evidence[:20])  # fmt: skip
        previous = (serial, scan_id, at, where)
    return list(found.values())
