"""Anomaly rules over the scan log: where cloned labels and counterfeits show themselves.

Each rule has a stable reason code and configurable thresholds (docs/audit.md). Its query is in
`repos.scans.ANOMALY_QUERIES` (`QUERIES` here), bounded by the time window through the time
index, so a test can check each plan; this module turns the rows into anomalies.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from . import clock, db
from .repos import scans

COUNTERFEIT_REASONS = scans.COUNTERFEIT_REASONS
WRONG_PINS = scans.WRONG_PINS


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
# The rules' SQL (with its index hints) lives with every other scan query, in repos.scans.
QUERIES = scans.ANOMALY_QUERIES


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


def find(conn: db.Conn, since: str, thresholds: Thresholds = Thresholds()) -> list[Anomaly]:
    """Every anomaly in scans at or after `since` (UTC ISO time), most serious first."""
    params = parameters(since, thresholds)

    def rows(rule: str) -> list[tuple[Any, ...]]:
        return scans.anomaly_rows(conn, rule, params)

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


def _distant_regions(pairs: list[tuple[Any, ...]]) -> list[Anomaly]:
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
    return clock.utc_text(now - dt.timedelta(days=days))
