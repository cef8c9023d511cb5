"""Anomaly rules over the scan log: where cloned labels and counterfeits show themselves.

Each rule has a stable reason code and configurable thresholds (docs/audit.md). Its query is in
`repos.scans.ANOMALY_QUERIES` (`QUERIES` here), bounded by the time window through the time
index, so a test can check each plan; this module turns the rows into anomalies.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import clock, db, regions
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
    severity: str | None = None  # "high" or "low" where a rule grades its findings (diversion)
    details: dict[str, Any] = field(default_factory=dict)  # the rule's own evidence, JSON-able

    def as_dict(self) -> dict[str, object]:
        return copy.deepcopy(self.__dict__)


RULES = {
    "repeat-checks": "a code checked more often than a genuine label would be",
    "many-sessions": "one code checked from many different browsers",
    "distant-regions": "one code seen in different regions within a short time",
    "counterfeit-cluster": "forged or unknown codes clustered in one region on one day",
    "scan-after-recall": "codes of a recalled batch still being scanned",
    "pin-reused": "a scratch-off PIN verified more than once",
    "pin-guessing": "many wrong PINs for one code from several clients",
    "diversion": "a shipped code scanned in a province outside its dealer's sales regions (窜货)",
    "scan-before-release": "codes scanned before their release for sale: goods outside the factory too early",
    "blocked-scanned": "a blocked code (counterfeit, stolen or destroyed) still being scanned",
}

EVIDENCE_MAX = 20
ROWS_MAX = 1000  # (code, region text) rows of the diversion rule, codes of blocked-scanned
PLACES_MAX = 10_000  # distinct (scan region text, shipment regions) pairs the diversion rule judges
# The rules' SQL (with its index hints) lives with every other scan query, in repos.scans.
QUERIES = scans.ANOMALY_QUERIES


def parameters(
    since: str, thresholds: Thresholds, enterprise_id: int | None = None, diverted: Iterable[str] = ()
) -> dict[str, object]:
    """The named parameters of QUERIES (and of scans.DIVERSION_PLACES)."""
    return {
        "since": since,
        "enterprise": enterprise_id,
        "diverted": json.dumps(sorted(diverted), ensure_ascii=False),  # "region text/shipment regions"
        "rows_max": ROWS_MAX,
        "places_max": PLACES_MAX,
        "repeat_checks": thresholds.repeat_checks,
        "sessions": thresholds.sessions,
        "distant_ms": round(thresholds.distant_hours * 3_600_000),
        "cluster_scans": thresholds.cluster_scans,
        "pin_guesses": thresholds.pin_guesses,
        "pin_clients": thresholds.pin_clients,
    }


def _ids(text: str | None, limit: int = EVIDENCE_MAX) -> list[int]:
    return [int(x) for x in (text or "").split(",")[:limit] if x]


def find(
    conn: db.Conn, since: str, thresholds: Thresholds = Thresholds(), enterprise_id: int | None = None
) -> list[Anomaly]:
    """Every anomaly in scans at or after `since` (UTC ISO time), most serious first. With
    `enterprise_id`, the lifecycle rules read only that enterprise's codes (the caller filters the rest)."""
    params = parameters(since, thresholds, enterprise_id)

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
    judged = judge_places(scans.diversion_places(conn, params))
    if judged:
        flagged = parameters(since, thresholds, enterprise_id, diverted=[f"{t}/{r}" for t, r in judged])
        found += diversions(scans.anomaly_rows(conn, "diversion", flagged), judged)
    for batch_id, n, serials, first, last, ids in rows("scan-before-release"):
        found.append(
            Anomaly(
                "scan-before-release",
                f"batch {batch_id}: {serials} codes",
                n,
                first,
                last,
                batch_id=batch_id,
                evidence=_ids(ids),
                details={"codes": serials},
            )
        )
    for serial, batch_id, reason, n, first, last, ids in rows("blocked-scanned"):
        found.append(
            Anomaly(
                "blocked-scanned",
                f"code {serial:016d}: {reason or 'blocked'}",
                n,
                first,
                last,
                serial=serial,
                batch_id=batch_id,
                evidence=_ids(ids),
                details={"reason": reason},
            )
        )
    order = list(RULES)
    # Within a rule: high severity first, then the most scans.
    return sorted(found, key=lambda a: (order.index(a.rule), a.severity == "low", -a.count))


def seen_in(anomaly: Anomaly, province_code: str) -> bool:
    """Whether `anomaly` names a scan in the province `province_code` (a diversion names each
    province its code was scanned in; the map counts it once in each)."""
    return any(p.get("code") == province_code for p in anomaly.details.get("scan_provinces", []))


@dataclass(frozen=True)
class Judged:
    """Why a scan's region is outside a shipment's sales regions."""

    province: regions.Province  # where the scan was
    shipped: tuple[regions.Province, ...]  # the provinces of the shipment's regions
    severity: str  # "low": a neighbour of a shipped province; "high": not even that


def judge_place(place: str, shipped_regions: str) -> Judged | None:
    """Whether a scan located by the region text `place` diverts a code shipped to `shipped_regions`
    (GB/T 2260 codes): None when it is inside them, or cannot be judged (no province in either)."""
    province = regions.province_of_place(place)
    shipped = tuple(regions.provinces_of(shipped_regions))
    if province is None or not shipped or province.code in {p.code for p in shipped}:
        return None
    return Judged(province, shipped, "low" if _near(province, shipped) else "high")


def judge_places(pairs: list[tuple[str, str]]) -> dict[tuple[str, str], Judged]:
    """The diverted ones among (scan region text, shipment regions) pairs."""
    judged = {pair: judge_place(*pair) for pair in pairs}
    return {pair: j for pair, j in judged.items() if j is not None}


def _province(p: regions.Province) -> dict[str, str]:
    return {"code": p.code, "name": p.name_en, "name_zh": p.short_zh}


def diversions(rows: list[tuple[Any, ...]], judged: dict[tuple[str, str], Judged]) -> list[Anomaly]:
    """One anomaly per code from its (code, region text) rows of the diversion query."""
    per_code: dict[int, list[tuple[Any, ...]]] = {}
    for row in rows:
        per_code.setdefault(row[0], []).append(row)
    found = []
    for serial, code_rows in per_code.items():
        first = code_rows[0]
        _, _, batch_id, _, _, _, _, dealer_id, dealer_code, dealer_name, shipped_regions, shipped_at, event, urn = first
        seen = [(judged[(r[1], shipped_regions)], r) for r in code_rows if (r[1], shipped_regions) in judged]
        if not seen:
            continue
        provinces = list({j.province.code: j.province for j, _ in seen}.values())
        severity = "high" if any(j.severity == "high" for j, _ in seen) else "low"
        shipped = seen[0][0].shipped
        ids = sorted(i for _, r in seen for i in _ids(r[6], ROWS_MAX))
        where = ", ".join(p.name_en for p in shipped)
        found.append(
            Anomaly(
                "diversion",
                f"code {serial:016d}: {dealer_code or 'dealer'} {where} -> {', '.join(p.name_en for p in provinces)}",
                sum(r[3] for _, r in seen),
                min(r[4] for _, r in seen),
                max(r[5] for _, r in seen),
                serial=serial,
                batch_id=batch_id,
                evidence=ids[:EVIDENCE_MAX],
                severity=severity,
                details={
                    "dealer": {"id": dealer_id, "code": dealer_code, "name": dealer_name},
                    "shipped_regions": shipped_regions.split(),
                    "shipped_provinces": [_province(p) for p in shipped],
                    "shipped_at": shipped_at,
                    "event": event,
                    "event_id": urn,
                    "scan_provinces": [
                        {**_province(p), "severity": "low" if _near(p, shipped) else "high"} for p in provinces
                    ],
                },
            )
        )
    return found


def _near(province: regions.Province, shipped: tuple[regions.Province, ...]) -> bool:
    return any(regions.neighbours(province.code, p.code) for p in shipped)


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
