"""The SQL of mark certificates and enterprises' quality commitments (verifier/certificates.py).

Every function takes the connection first; writes expect the caller's transaction. A certificate's
products are stored as their ids, space-separated in ascending order; NULL covers all the
enterprise's products.
"""

from __future__ import annotations

from typing import Any

from .. import db

_COLUMNS = (
    "number",
    "association",
    "enterprise_id",
    "mark",
    "products",
    "valid_from",
    "valid_until",
    "status",
    "reason",
    "granted_at",
    "granted_by",
)

_VIEW = "SELECT c.*, e.name AS enterprise FROM certificates c JOIN enterprises e ON e.id = c.enterprise_id"


def insert_certificate(conn: db.Conn, row: dict[str, Any]) -> int:
    """A new certificate row; its id. db.IntegrityError if its number is taken."""
    cursor = conn.execute(
        f"INSERT INTO certificates ({', '.join(_COLUMNS)}) VALUES ({db.placeholders(_COLUMNS)}) RETURNING id",
        [row.get(k) for k in _COLUMNS],
    )
    return int(cursor.fetchone()[0])


def certificate_by_number(conn: db.Conn, number: str, *, lock: bool = False) -> dict[str, Any] | None:
    """The certificate numbered `number`, with its enterprise's name, or None. `lock`: inside a
    write transaction on PostgreSQL, a status change at the same moment waits for this one."""
    sql = _VIEW + " WHERE c.number = ?"
    if lock and db.is_postgres_conn(conn):
        sql += " FOR UPDATE OF c"
    return db.one_dict(conn.execute(sql, [number]))


def list_certificates(conn: db.Conn, enterprise_id: int | None = None) -> list[dict[str, Any]]:
    """Every certificate (of one enterprise), by id."""
    if enterprise_id is None:
        return db.dicts(conn.execute(_VIEW + " ORDER BY c.id"))
    return db.dicts(conn.execute(_VIEW + " WHERE c.enterprise_id = ? ORDER BY c.id", [enterprise_id]))


def mark_has_certificates(conn: db.Conn, mark: str) -> bool:
    """Whether any certificate (whatever its status) was ever granted for `mark`."""
    return conn.execute("SELECT 1 FROM certificates WHERE mark = ? LIMIT 1", [mark]).fetchone() is not None


def set_status(conn: db.Conn, certificate_id: int, status: str, reason: str | None, at: str, by: str) -> None:
    """A certificate's new status and why, who changed it and when."""
    conn.execute(
        "UPDATE certificates SET status = ?, reason = ?, changed_at = ?, changed_by = ? WHERE id = ?",
        [status, reason, at, by, certificate_id],
    )


def products_named(conn: db.Conn, enterprise_id: int, name: str) -> list[int]:
    """The ids of the enterprise's products called `name`, whatever their spec."""
    rows = conn.execute(
        "SELECT id FROM products WHERE enterprise_id = ? AND name = ? ORDER BY id", [enterprise_id, name]
    ).fetchall()
    return [int(r[0]) for r in rows]


def product_owner(conn: db.Conn, product_id: int) -> int | None:
    """The enterprise of product `product_id`, or None when there is no such product."""
    row = conn.execute("SELECT enterprise_id FROM products WHERE id = ?", [product_id]).fetchone()
    return None if row is None else int(row[0])


def product_names(conn: db.Conn, product_ids: list[int]) -> dict[int, str]:
    """id -> "name spec" of the given products."""
    if not product_ids:
        return {}
    rows = conn.execute(
        f"SELECT id, name, spec FROM products WHERE id IN ({db.placeholders(product_ids)})", product_ids
    ).fetchall()
    return {int(r[0]): f"{r[1]} {r[2]}".strip() for r in rows}


def batch_certificate(conn: db.Conn, batch_id: int) -> tuple[int, str] | None:
    """(id, number) of the certificate batch `batch_id` was issued under, or None."""
    row = conn.execute(
        "SELECT c.id, c.number FROM batches b JOIN certificates c ON c.id = b.certificate_id WHERE b.id = ?",
        [batch_id],
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def set_batch_certificate(conn: db.Conn, batch_id: int, certificate_id: int | None) -> None:
    conn.execute("UPDATE batches SET certificate_id = ? WHERE id = ?", [certificate_id, batch_id])


def set_commitment(conn: db.Conn, enterprise_id: int, text: str | None, url: str | None) -> None:
    """An enterprise's published quality commitment (None: none)."""
    conn.execute("UPDATE enterprises SET commitment = ?, commitment_url = ? WHERE id = ?", [text, url, enterprise_id])


# --- what `audit verify`'s replay reads (verifier/replay_certificates.py) -------------------


def all_certificates(conn: db.Conn) -> list[dict[str, Any]]:
    """Every certificate row as stored, by id."""
    return db.dicts(conn.execute("SELECT * FROM certificates ORDER BY id"))


def batch_certificates(conn: db.Conn) -> dict[int, int | None]:
    """batch id -> the certificate id it records, for every batch that is not being issued."""
    rows = conn.execute("SELECT id, certificate_id FROM batches WHERE status != 'issuing'").fetchall()
    return {int(r[0]): (None if r[1] is None else int(r[1])) for r in rows}


def commitments(conn: db.Conn) -> dict[int, tuple[str | None, str | None]]:
    """enterprise id -> (commitment, commitment_url), for every enterprise."""
    rows = conn.execute("SELECT id, commitment, commitment_url FROM enterprises").fetchall()
    return {int(r[0]): (r[1], r[2]) for r in rows}


def batches_under(conn: db.Conn, certificate_id: int) -> tuple[int, int]:
    """(batches, labels) issued under a certificate."""
    row = conn.execute(
        "SELECT count(*), coalesce(sum(count), 0) FROM batches WHERE certificate_id = ?", [certificate_id]
    ).fetchone()
    return int(row[0]), int(row[1])
