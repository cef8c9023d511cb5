"""The inspector's map and trends: scans, counterfeit scans and diversion anomalies per province,
and scans per day (China Standard Time) by verdict class and by enterprise, over a window.

Explicit arguments: a connection, the `accounts.User` asking, `since` (UTC text). An enterprise's
account counts the scans of its own batches only, and the diversions of its own codes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from . import accounts, anomalies, clock, db, lookup, regions
from .repos import scans, trends

VERDICT_CLASSES = ("genuine", "warnings", "not-genuine")
_CLASS_OF_TONE = {"ok": "genuine", "warn": "warnings", "stop": "warnings", "bad": "not-genuine"}
# A scan's country that names a province by itself (the geo header gives no Chinese province for them).
_COUNTRY_PROVINCES = {"HK": "810000", "MO": "820000", "TW": "710000"}
ENTERPRISES_SHOWN = 6  # the busiest; the rest are summed as "others"
NO_ENTERPRISE = ""  # scans of no registered batch (forged or unknown codes)
OTHERS = "…"
DEFAULT_THRESHOLDS = anomalies.Thresholds()


def verdict_class(reason: str) -> str:
    """genuine (a green verdict), warnings (amber, a recall) or not-genuine (red) for a scan's reason."""
    return _CLASS_OF_TONE[lookup.TONE.get(reason, "bad")]


def province_of_scan(country: str | None, region: str | None) -> regions.Province | None:
    """The province a scan was located in: Hong Kong, Macao and Taiwan by their country code; else the
    region text, where the country is China or unknown (a US "SC" is not Sichuan)."""
    if country in _COUNTRY_PROVINCES:
        return regions.province(_COUNTRY_PROVINCES[country])
    if country not in (None, "CN"):
        return None
    return regions.province_of_place(region)


@dataclass(frozen=True)
class ProvinceFigures:
    province: regions.Province
    scans: int = 0
    counterfeit: int = 0  # scans with a counterfeit verdict (anomalies.COUNTERFEIT_REASONS)
    diversions: int = 0  # diversion anomalies with a scan here


@dataclass(frozen=True)
class MapFigures:
    since: str
    provinces: list[ProvinceFigures]  # all 34, in code order
    elsewhere: int  # scans located abroad or not at all
    elsewhere_counterfeit: int


def _scope(user: accounts.User) -> tuple[bool, int | None]:
    return user.sees_everything(), user.enterprise_id


def diversion_anomalies(
    conn: db.Conn, user: accounts.User, since: str, thresholds: anomalies.Thresholds = DEFAULT_THRESHOLDS
) -> list[anomalies.Anomaly]:
    """The diversion rule alone (anomalies.find runs every rule), for `user`'s codes."""
    enterprise = None if user.sees_everything() else (user.enterprise_id if user.enterprise_id is not None else -1)
    params = anomalies.parameters(since, thresholds, enterprise)
    judged = anomalies.judge_places(scans.diversion_places(conn, params))
    if not judged:
        return []
    flagged = anomalies.parameters(since, thresholds, enterprise, diverted=[f"{t}/{r}" for t, r in judged])
    return anomalies.diversions(scans.anomaly_rows(conn, "diversion", flagged), judged)


def province_figures(conn: db.Conn, user: accounts.User, since: str) -> MapFigures:
    """Per province: the scans, counterfeit scans and diversion anomalies `user` may see since `since`."""
    everything, enterprise_id = _scope(user)
    counts: dict[str, list[int]] = {p.code: [0, 0, 0] for p in regions.provinces()}
    elsewhere = [0, 0]
    for country, region, reason, n in trends.by_place(conn, since, everything=everything, enterprise_id=enterprise_id):
        found = province_of_scan(country, region)
        fake = reason in anomalies.COUNTERFEIT_REASONS
        if found is None:
            elsewhere[0] += n
            elsewhere[1] += n if fake else 0
        else:
            counts[found.code][0] += n
            counts[found.code][1] += n if fake else 0
    for anomaly in diversion_anomalies(conn, user, since):
        for place in anomaly.details.get("scan_provinces", []):
            counts[place["code"]][2] += 1
    figures = [ProvinceFigures(p, *counts[p.code]) for p in regions.provinces()]
    return MapFigures(since, figures, elsewhere[0], elsewhere[1])


@dataclass(frozen=True)
class Trends:
    days: list[dt.date]  # every day of the window, in China Standard Time
    verdicts: dict[str, list[int]]  # verdict class -> scans per day
    enterprises: dict[str, list[int]]  # enterprise name (NO_ENTERPRISE, OTHERS) -> scans per day, busiest first


def cst_day(hour: str) -> dt.date:
    """The day in China Standard Time of a UTC hour 'YYYY-MM-DDTHH'."""
    moment = dt.datetime.fromisoformat(hour + ":00:00+00:00")
    return moment.astimezone(clock.CHINA).date()


def days_between(since: str, now: dt.datetime) -> list[dt.date]:
    """The days (China Standard Time) from the one `since` falls in to today's."""
    start = dt.datetime.fromisoformat(since).astimezone(clock.CHINA).date()
    end = now.astimezone(clock.CHINA).date()
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def _top(totals: dict[str, int], limit: int) -> list[str]:
    return sorted(totals, key=lambda name: (-totals[name], name))[:limit]


def daily(conn: db.Conn, user: accounts.User, since: str, now: dt.datetime) -> Trends:
    """Scans per day by verdict class and by enterprise that `user` may see, from `since` to `now`."""
    everything, enterprise_id = _scope(user)
    days = days_between(since, now)
    index = {day: i for i, day in enumerate(days)}
    verdicts = {c: [0] * len(days) for c in VERDICT_CLASSES}
    owners = trends.enterprise_of_batches(conn)
    per_enterprise: dict[str, list[int]] = {}
    for hour, reason, batch_id, n in trends.by_hour(conn, since, everything=everything, enterprise_id=enterprise_id):
        i = index.get(cst_day(hour))
        if i is None:
            continue
        verdicts[verdict_class(reason)][i] += n
        name = owners.get(batch_id, NO_ENTERPRISE) if batch_id is not None else NO_ENTERPRISE
        per_enterprise.setdefault(name, [0] * len(days))[i] += n
    totals = {name: sum(values) for name, values in per_enterprise.items()}
    shown = _top(totals, ENTERPRISES_SHOWN)
    enterprises = {name: per_enterprise[name] for name in shown}
    rest = [name for name in per_enterprise if name not in enterprises]
    if rest:
        enterprises[OTHERS] = [sum(per_enterprise[name][i] for name in rest) for i in range(len(days))]
    return Trends(days, verdicts, enterprises)
