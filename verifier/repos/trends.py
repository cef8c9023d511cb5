"""What the inspector's map and trends read of the scan log: counts grouped by place, verdict,
hour and batch, in a time window (read through the time index, scans_at).

Grouping by the UTC hour keeps the SQL the same on both engines; the service turns hours into
days in China Standard Time.
"""

from __future__ import annotations

from typing import Any

from .. import db

# An enterprise's account: its own batches only (one without an enterprise: none).
_OWN = "batch_id IN (SELECT id FROM batches WHERE enterprise_id = ?)"


def _where(since: str, everything: bool, enterprise_id: int | None) -> tuple[str, list[Any]]:
    where = "at >= ?"
    params: list[Any] = [since]
    if not everything:
        where += f" AND {_OWN}"
        params.append(enterprise_id)
    return where, params


def by_place(conn: db.Conn, since: str, *, everything: bool, enterprise_id: int | None) -> list[tuple[Any, ...]]:
    """(country, region text, reason, scans) of the scans at or after `since`."""
    where, params = _where(since, everything, enterprise_id)
    return conn.execute(
        f"SELECT country, region, reason, count(*) FROM scans WHERE {where} GROUP BY country, region, reason",
        params,
    ).fetchall()


def by_hour(conn: db.Conn, since: str, *, everything: bool, enterprise_id: int | None) -> list[tuple[Any, ...]]:
    """(UTC hour as 'YYYY-MM-DDTHH', reason, batch id or None, scans) of the scans at or after `since`."""
    where, params = _where(since, everything, enterprise_id)
    return conn.execute(
        f"SELECT substr(at, 1, 13), reason, batch_id, count(*) FROM scans WHERE {where} GROUP BY 1, 2, 3",
        params,
    ).fetchall()


def enterprise_of_batches(conn: db.Conn) -> dict[int, str]:
    """Each batch's enterprise name."""
    rows = conn.execute("SELECT b.id, e.name FROM batches b JOIN enterprises e ON e.id = b.enterprise_id").fetchall()
    return {int(batch): str(name) for batch, name in rows}
