"""The registry's SQL: enterprises, products, batches, codes and reported codes.

Every function takes the connection first; writes expect the caller's transaction
(`db.transaction`). Times are passed in (`now`) and stored as `clock.utc_text_seconds`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator
from typing import Any

from .. import clock, codes, db, lifecycle
from ..db import StoreConflict, StoreInvalid, StoreNotFound

BATCH_ISSUING = "issuing"  # rows exist but the batch is not registered until its outputs are complete
BATCH_ACTIVE = "active"
BATCH_RECALLED = "recalled"

# --- enterprises and products -------------------------------------------------------------

_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def validate_credit_code(code: str) -> str:
    """An 18-character unified social credit code (GB 32100-2015) with a valid check character."""
    code = code.strip().upper()
    if not re.fullmatch(f"[{_USCC_CHARS}]{{18}}", code):
        raise StoreInvalid("a unified social credit code has 18 characters of 0-9 and A-Y without I, O, S, V, Z")
    total = sum(_USCC_CHARS.index(ch) * w for ch, w in zip(code, _USCC_WEIGHTS))
    if _USCC_CHARS[(31 - total % 31) % 31] != code[17]:
        raise StoreInvalid(f"unified social credit code {code} has a wrong check character")
    return code


def ensure_enterprise(conn: db.Conn, name: str, credit_code: str | None, now: dt.datetime) -> int:
    """The id of enterprise `name`, created on first use."""
    name = name.strip()
    if not name:
        raise StoreInvalid("an enterprise needs a name")
    code = validate_credit_code(credit_code) if credit_code else None
    row = conn.execute("SELECT id, credit_code FROM enterprises WHERE name = ?", [name]).fetchone()
    if row:
        if code and row[1] and row[1] != code:
            raise StoreConflict(f"enterprise {name!r} is registered with credit code {row[1]}, not {code}")
        if code and not row[1]:
            conn.execute("UPDATE enterprises SET credit_code = ? WHERE id = ?", [code, row[0]])
        return int(row[0])
    try:
        row = conn.execute(
            "INSERT INTO enterprises (name, credit_code, created_at) VALUES (?, ?, ?) RETURNING id",
            [name, code, clock.utc_text_seconds(now)],
        ).fetchone()
    except db.IntegrityError:
        raise StoreConflict(f"credit code {code} already belongs to another enterprise") from None
    return int(row[0])


def enterprise_id(conn: db.Conn, name: str) -> int | None:
    """The id of the enterprise called `name`, or None."""
    row = conn.execute("SELECT id FROM enterprises WHERE name = ?", [name]).fetchone()
    return None if row is None else int(row[0])


def ensure_product(conn: db.Conn, enterprise_id: int, name: str, spec: str, gtin: str | None, now: dt.datetime) -> int:
    """The id of the enterprise's product `name` / `spec`, created on first use."""
    name = name.strip()
    if not name:
        raise StoreInvalid("a product needs a name")
    row = conn.execute(
        "SELECT id, gtin FROM products WHERE enterprise_id = ? AND name = ? AND spec = ?", [enterprise_id, name, spec]
    ).fetchone()
    if row:
        if gtin and row[1] and row[1] != gtin:
            raise StoreConflict(f"product {name!r} has GTIN {row[1]}, not {gtin}")
        if gtin and not row[1]:
            conn.execute("UPDATE products SET gtin = ? WHERE id = ?", [gtin, row[0]])
        return int(row[0])
    row = conn.execute(
        "INSERT INTO products (enterprise_id, name, spec, gtin, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
        [enterprise_id, name, spec, gtin, clock.utc_text_seconds(now)],
    ).fetchone()
    return int(row[0])


# --- batches ------------------------------------------------------------------------------

_BATCH_COLUMNS = (
    "enterprise_id",
    "product_id",
    "mark",
    "form",
    "lot",
    "gtin",
    "production_date",
    "expiry_date",
    "count",
    "kid",
    "base_url",
    "pin",
    "status",
    "output_dir",
    "issuing_pid",
    "created_at",
    "created_by",
    "note",
    "unit",
    "activation",
    "production_place",
    "certificate_id",
)


def insert_batch(conn: db.Conn, row: dict[str, Any], now: dt.datetime) -> int:
    """A new batch row (status `issuing` unless `row` says otherwise); its number."""
    values = {"status": BATCH_ISSUING, "created_at": clock.utc_text_seconds(now), **row}
    unknown = set(values) - set(_BATCH_COLUMNS)
    if unknown:
        raise ValueError(f"not batch columns: {sorted(unknown)}")
    names = [name for name in _BATCH_COLUMNS if name in values]
    found = conn.execute(
        f"INSERT INTO batches ({', '.join(names)}) VALUES ({db.placeholders(names)}) RETURNING id",
        [values[name] for name in names],
    ).fetchone()
    return int(found[0])


BATCH_VIEW = """
SELECT b.*, e.name AS enterprise, e.credit_code, p.name AS product, p.spec AS spec
FROM batches b JOIN enterprises e ON e.id = b.enterprise_id JOIN products p ON p.id = b.product_id
"""


def batch_row(conn: db.Conn, batch_id: int) -> dict[str, Any]:
    """A batch with its enterprise and product, whatever its status."""
    row = db.one_dict(conn.execute(BATCH_VIEW + " WHERE b.id = ?", [batch_id]))
    if row is None:
        raise StoreNotFound(f"no batch {batch_id}")
    return row


def list_batches(conn: db.Conn, enterprise: str | None = None) -> list[dict[str, Any]]:
    """Registered batches, newest first (batches still being issued are not registered)."""
    sql = BATCH_VIEW + " WHERE b.status != ?"
    params: list[object] = [BATCH_ISSUING]
    if enterprise:
        sql += " AND e.name = ?"
        params.append(enterprise)
    return db.dicts(conn.execute(sql + " ORDER BY b.id DESC", params))


def get_batch(conn: db.Conn, batch_id: int) -> dict[str, Any]:
    """One registered batch; StoreNotFound if there is none with that number."""
    row = db.one_dict(conn.execute(BATCH_VIEW + " WHERE b.id = ? AND b.status != ?", [batch_id, BATCH_ISSUING]))
    if row is None:
        raise StoreNotFound(f"no batch {batch_id} (see `verifier batch list`)")
    return row


def is_issuing(conn: db.Conn, batch_id: int) -> bool:
    """Whether batch `batch_id` exists and is still being issued."""
    row = conn.execute("SELECT 1 FROM batches WHERE id = ? AND status = ?", [batch_id, BATCH_ISSUING]).fetchone()
    return row is not None


def issuing_batches(conn: db.Conn) -> list[tuple[int, str]]:
    """(number, output folder) of every batch still being issued."""
    rows = conn.execute("SELECT id, output_dir FROM batches WHERE status = ?", [BATCH_ISSUING]).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def issuing_output_dir(conn: db.Conn, batch_id: int) -> str | None:
    """The output folder of batch `batch_id` if it is still being issued, else None."""
    row = conn.execute(
        "SELECT output_dir FROM batches WHERE id = ? AND status = ?", [batch_id, BATCH_ISSUING]
    ).fetchone()
    return None if row is None else str(row[0])


def activate_batch(conn: db.Conn, batch_id: int) -> None:
    """Register a batch that was being issued."""
    conn.execute("UPDATE batches SET status = ?, issuing_pid = NULL WHERE id = ?", [BATCH_ACTIVE, batch_id])


def forget_batch(conn: db.Conn, batch_id: int) -> None:
    """Remove a batch that is still being issued, with its codes (nothing of it was registered)."""
    conn.execute("DELETE FROM codes WHERE batch_id = ?", [batch_id])
    conn.execute("DELETE FROM batches WHERE id = ? AND status = ?", [batch_id, BATCH_ISSUING])


def lock_batch(conn: db.Conn, batch_id: int) -> None:
    """Inside a transaction: other transactions that lock or change batch `batch_id` wait until
    this one ends, so a read-check-write of its status sees the last committed change (SQLite: the
    writer lock does it; on PostgreSQL two recalls would otherwise both see it active)."""
    if db.is_postgres_conn(conn):
        conn.execute("SELECT id FROM batches WHERE id = ? FOR UPDATE", [batch_id]).fetchall()


def mark_recalled(conn: db.Conn, batch_id: int, reason: str, now: dt.datetime) -> str:
    """Set a batch's status to recalled with its reason; the recall time as stored."""
    at = clock.utc_text_seconds(now)
    conn.execute(
        "UPDATE batches SET status = ?, recalled_at = ?, recall_reason = ? WHERE id = ?",
        [BATCH_RECALLED, at, reason, batch_id],
    )
    return at


# --- codes --------------------------------------------------------------------------------


def insert_codes(conn: db.Conn, batch_id: int, serials: Iterable[int]) -> None:
    """Register serials for a batch (PostgreSQL: one COPY); db.IntegrityError if one is already
    taken or the batch is gone, and then none of them is registered (the caller's transaction)."""
    db.copy_rows(conn, "codes", ("serial", "batch_id"), ((s, batch_id) for s in serials))


def serials_taken(conn: db.Conn, serials: list[int]) -> set[int]:
    """Which of `serials` are registered already."""
    taken: set[int] = set()
    for start in range(0, len(serials), db.MAX_PARAMETERS):
        chunk = serials[start : start + db.MAX_PARAMETERS]
        sql = f"SELECT serial FROM codes WHERE serial IN ({db.placeholders(chunk)})"
        taken.update(r[0] for r in conn.execute(sql, chunk))
    return taken


def code_exists(conn: db.Conn, serial: int) -> bool:
    """Whether `serial` was ever issued (in a registered batch or one being issued)."""
    return conn.execute("SELECT 1 FROM codes WHERE serial = ?", [serial]).fetchone() is not None


def batch_serials(conn: db.Conn, batch_id: int) -> Iterator[int]:
    """The serials of a batch in serial order, streamed."""
    cursor = conn.execute("SELECT serial FROM codes WHERE batch_id = ? ORDER BY serial", [batch_id])
    for row in cursor:
        yield row[0]


# The lookup's view of a code's batch: one query on the hot path of every scan.
_BATCH_FOR_SERIAL_SQL = """
SELECT b.id, b.status, b.mark, b.form, b.lot, coalesce(b.gtin, p.gtin), b.production_date, b.expiry_date, b.pin,
       b.recalled_at, b.recall_reason, e.name, e.credit_code, p.name, p.spec, r.reported_at,
       b.unit, b.activation, b.activated_at, b.production_place, b.report_sha256, b.enterprise_id,
       s.state, s.parent, s.region, s.shipped_at, s.received_at, s.sold_at, s.reason,
       k.number, k.association, k.valid_from, k.valid_until, k.status, e.commitment, e.commitment_url
FROM codes c JOIN batches b ON b.id = c.batch_id JOIN enterprises e ON e.id = b.enterprise_id
JOIN products p ON p.id = b.product_id LEFT JOIN reported_codes r ON r.serial = c.serial
LEFT JOIN code_states s ON s.serial = c.serial LEFT JOIN certificates k ON k.id = b.certificate_id
WHERE c.serial = ?
"""
_BATCH_FOR_SERIAL_FIELDS = (
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
    "unit",
    "activation",
    "activated_at",
    "production_place",
    "report_sha256",
    "enterprise_id",
    "state",
    "parent",
    "shipped_region",
    "shipped_at",
    "received_at",
    "sold_at",
    "block_reason",
    "certificate",  # the mark certificate the batch was issued under (certificates.py), or None
    "certificate_association",
    "certificate_valid_from",
    "certificate_valid_until",
    "certificate_status",  # as stored; the lookup makes it "expired" past valid_until
    "commitment",  # the enterprise's quality commitment, and its link
    "commitment_url",
)


# The same, taking the code's lock as it reads (PostgreSQL: an advisory transaction lock keyed by
# the serial, db/postgres.py), in the statement the scan needs anyway. The lock comes with the row,
# so the next statement (the check count) reads after it.
_BATCH_FOR_SERIAL_LOCKING_SQL = _BATCH_FOR_SERIAL_SQL.replace(
    "SELECT b.id,", "SELECT pg_advisory_xact_lock(c.serial) IS NULL AS locked, b.id,", 1
)


def batch_for_serial(conn: db.Conn, serial: int, *, lock: bool = False) -> dict[str, Any] | None:
    """The registered batch of code `serial` as a lookup shows it, or None (not issued, or its
    batch still being issued): the batch's fields, `mark_zh`/`mark_en`, `has_pin`, `reported`.
    `lock`: inside a write transaction, also take the code's lock in the same statement on
    PostgreSQL, so no other transaction on the code runs until this one ends (check counts, a
    repeat view counted once, PIN first use), when the code exists (SQLite: the writer lock already serialises)."""
    if lock and db.is_postgres_conn(conn):
        found = conn.execute(_BATCH_FOR_SERIAL_LOCKING_SQL, (serial,)).fetchone()
        row = None if found is None else found[1:]
    else:
        row = conn.execute(_BATCH_FOR_SERIAL_SQL, (serial,)).fetchone()
    if row is None or row[1] == BATCH_ISSUING:
        return None
    batch = dict(zip(_BATCH_FOR_SERIAL_FIELDS, row))
    mark = codes.mark_by_slug(batch["mark"])
    batch.update(
        mark_zh=mark.name_zh,
        mark_en=mark.name_en,
        has_pin=bool(batch.pop("pin")),
        reported=batch.pop("reported_at") is not None,
    )
    if batch["state"] in (None, lifecycle.ISSUED):  # no event yet, or not released by one: as its batch says
        if batch["activation"] == "issue" or batch["activated_at"]:
            batch["state"] = lifecycle.ACTIVE
        else:
            batch["state"] = lifecycle.ISSUED
    return batch


# --- reported codes -----------------------------------------------------------------------


def report_code(conn: db.Conn, serial: int, reported_by: str, note: str, now: dt.datetime) -> bool:
    """Mark code `serial` as reported counterfeit (the first report stands); whether it was new."""
    cursor = conn.execute(
        "INSERT INTO reported_codes (serial, reported_at, reported_by, note) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (serial) DO NOTHING",
        (serial, clock.utc_text(now), reported_by, note),
    )
    return cursor.rowcount == 1


def code_report(conn: db.Conn, serial: int) -> tuple[str, str, str] | None:
    """(reported_at, reported_by, note) of a reported code, or None."""
    row = conn.execute(
        "SELECT reported_at, reported_by, note FROM reported_codes WHERE serial = ?", (serial,)
    ).fetchone()
    return None if row is None else (row[0], row[1], row[2])
