"""The SQL of consumers' reports that repos/lifecycle.py does not have: one report, the list with
whether each has a photo, and erasing old reports' personal fields (verifier/feedback.py)."""

from __future__ import annotations

from typing import Any

from .. import db

_COLUMNS = (
    "id, at, serial, enterprise_id, verdict, what, details, bought_at, region, photo_sha256, contact, "
    "brand_may_contact, status, answer, "
    "photo IS NOT NULL AS has_photo"
)


def report(conn: db.Conn, report_id: int) -> dict[str, Any] | None:
    """One report, without the photo bytes."""
    rows = db.dicts(conn.execute(f"SELECT {_COLUMNS} FROM consumer_reports WHERE id = ?", (report_id,)))
    return rows[0] if rows else None


def reports(conn: db.Conn, enterprise_id: int | None, after: int, limit: int) -> list[dict[str, Any]]:
    """Reports by id after `after` (of one enterprise, or all), without the photo bytes."""
    if enterprise_id is None:
        sql, params = f"SELECT {_COLUMNS} FROM consumer_reports WHERE id > ? ORDER BY id LIMIT ?", [after, limit]
    else:
        sql = f"SELECT {_COLUMNS} FROM consumer_reports WHERE enterprise_id = ? AND id > ? ORDER BY id LIMIT ?"
        params = [enterprise_id, after, limit]
    return db.dicts(conn.execute(sql, params))


def erase_personal(conn: db.Conn, cutoff: str) -> int:
    """Blank the details, where bought and contact, and drop the photo, of reports before `cutoff`
    that still have any of them; how many."""
    cursor = conn.execute(
        "UPDATE consumer_reports SET details = '', bought_at = '', contact = NULL, photo = NULL "
        "WHERE at < ? AND (details <> '' OR bought_at <> '' OR contact IS NOT NULL OR photo IS NOT NULL)",
        (cutoff,),
    )
    return int(cursor.rowcount)
