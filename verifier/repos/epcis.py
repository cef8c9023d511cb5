"""The SQL of EPCIS capture and queries beyond repos/lifecycle: one event by its eventID, the GTIN
and lot a code's batch carries, the batches of a lot (verifier/capture.py is the service over it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import db

CHUNK = 500  # serials per IN list, as repos/lifecycle

# A batch's GTIN is its own or, when it has none, its product's (as the lookup reads it).
_GTIN = "coalesce(b.gtin, p.gtin)"


def event_by_event_id(conn: db.Conn, event_id: str) -> dict[str, Any] | None:
    """The events row whose EPCIS eventID is `event_id`."""
    return db.one_dict(conn.execute("SELECT * FROM events WHERE event_id = ?", (event_id,)))


def gs1_keys(conn: db.Conn, serials: Sequence[int]) -> dict[int, tuple[int, str | None, str | None, int, str, str]]:
    """serial -> (enterprise id, GTIN-14, lot, batch id, mark, key id) of the batch of each code
    that exists among `serials`: what a reference to the code may claim of it."""
    found: dict[int, tuple[int, str | None, str | None, int, str, str]] = {}
    ordered = sorted(set(serials))
    for start in range(0, len(ordered), CHUNK):
        chunk = ordered[start : start + CHUNK]
        rows = conn.execute(
            f"SELECT c.serial, b.enterprise_id, {_GTIN}, b.lot, b.id, b.mark, b.kid FROM codes c "
            f"JOIN batches b ON b.id = c.batch_id JOIN products p ON p.id = b.product_id "
            f"WHERE c.serial IN ({db.placeholders(chunk)})",
            list(chunk),
        ).fetchall()
        for serial, enterprise_id, gtin, lot, batch_id, mark, kid in rows:
            found[int(serial)] = (int(enterprise_id), gtin, lot, int(batch_id), str(mark), str(kid))
    return found


def lot_batches(conn: db.Conn, gtin: str, lot: str, enterprise_id: int | None = None) -> list[int]:
    """The ids of the batches of lot `lot` of GTIN `gtin` (of one enterprise), in order."""
    sql = f"SELECT b.id FROM batches b JOIN products p ON p.id = b.product_id WHERE b.lot = ? AND {_GTIN} = ?"
    params: list[Any] = [lot, gtin]
    if enterprise_id is not None:
        sql += " AND b.enterprise_id = ?"
        params.append(enterprise_id)
    return [int(row[0]) for row in conn.execute(sql + " ORDER BY b.id", params).fetchall()]
