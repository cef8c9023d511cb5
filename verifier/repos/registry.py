"""The registry's rows: enterprises, products, batches, codes, reported codes.

Minimal on this branch (g10-scans): only what lookups and the audit service need; the db
engineer's module of the same name is the full one (the lead merges the two).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from .. import codes

# The GTIN: a GS1 batch's own (always set, and what lookup._matches compares), else the product's.
_BATCH_SQL = """
SELECT b.id, b.status, b.mark, b.form, b.lot, coalesce(b.gtin, p.gtin), b.production_date, b.expiry_date, b.pin,
       b.recalled_at, b.recall_reason, e.name, e.credit_code, p.name, p.spec, r.reported_at
FROM codes c JOIN batches b ON b.id = c.batch_id JOIN enterprises e ON e.id = b.enterprise_id
JOIN products p ON p.id = b.product_id LEFT JOIN reported_codes r ON r.serial = c.serial
WHERE c.serial = ?
"""
_BATCH_FIELDS = (
    "id",
    "status",
    "mark",
    "form",
    "lot",
    "gtin",
    "production_date",
    "expiry_date",
    "pin",
    "recalled_at",
    "recall_reason",
    "enterprise",
    "credit_code",
    "product",
    "spec",
    "reported_at",
)


def batch_for_serial(conn: sqlite3.Connection, serial: int) -> dict[str, Any] | None:
    """The registered batch of a code, with its enterprise, product, mark names, PIN flag and
    whether the code was reported counterfeit; None if the code is unknown or still being issued."""
    row = conn.execute(_BATCH_SQL, (serial,)).fetchone()
    if row is None or row[1] == "issuing":
        return None
    batch = dict(zip(_BATCH_FIELDS, row))
    mark = codes.mark_by_slug(batch["mark"])
    batch.update(
        mark_zh=mark.name_zh,
        mark_en=mark.name_en,
        has_pin=bool(batch.pop("pin")),
        reported=batch.pop("reported_at") is not None,
    )
    return batch


def report_code(conn: sqlite3.Connection, serial: int, at: str, by: str, note: str) -> None:
    """Mark a code reported counterfeit (the first report stands), inside the caller's transaction."""
    conn.execute(
        "INSERT INTO reported_codes (serial, reported_at, reported_by, note) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (serial) DO NOTHING",
        (serial, at, by, note),
    )


def reported_code(conn: sqlite3.Connection, serial: int) -> tuple[str, str, str] | None:
    """(reported_at, reported_by, note) of a code reported counterfeit, else None."""
    row = conn.execute(
        "SELECT reported_at, reported_by, note FROM reported_codes WHERE serial = ?", (serial,)
    ).fetchone()
    return (str(row[0]), str(row[1]), str(row[2])) if row else None
