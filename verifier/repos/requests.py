"""The SQL of batch requests and the label files their signer produced (verifier/requests.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import db

COLUMNS = (
    "id, enterprise_id, requested_by, params, status, approved_by, approved_at, claimed_by, claimed_at, "
    "progress, progress_at, batch_id, error, cancelled_by, finished_at, created_at"
)
_VIEW = f"SELECT {', '.join('r.' + c.strip() for c in COLUMNS.split(','))}, e.name AS enterprise, e.credit_code "
_VIEW += "FROM batch_requests r "
_VIEW += "JOIN enterprises e ON e.id = r.enterprise_id"


def insert(conn: db.Conn, enterprise_id: int, requested_by: str, params: str, status: str, at: str) -> int:
    """A new request; its id."""
    row = conn.execute(
        "INSERT INTO batch_requests (enterprise_id, requested_by, params, status, created_at) "
        "VALUES (?, ?, ?, ?, ?) RETURNING id",
        (enterprise_id, requested_by, params, status, at),
    ).fetchone()
    return int(row[0])


def enterprise(conn: db.Conn, enterprise_id: int) -> tuple[str, str | None] | None:
    """(name, credit code) of an enterprise, or None."""
    row = conn.execute("SELECT name, credit_code FROM enterprises WHERE id = ?", (enterprise_id,)).fetchone()
    return None if row is None else (str(row[0]), row[1])


def get(conn: db.Conn, request_id: int, *, lock: bool = False) -> dict[str, Any] | None:
    """One request with its enterprise's name; `lock`: held until the transaction ends (PostgreSQL
    FOR UPDATE; SQLite's writer lock already holds every row)."""
    sql = _VIEW + " WHERE r.id = ?"
    if lock and db.is_postgres_conn(conn):
        sql += " FOR UPDATE OF r"
    return db.one_dict(conn.execute(sql, (request_id,)))


def listing(
    conn: db.Conn, enterprise_id: int | None, statuses: tuple[str, ...], before: int | None, limit: int
) -> list[dict[str, Any]]:
    """Requests newest first (of one enterprise, or all; of some statuses, or all), ids below `before`."""
    where: list[str] = []
    params: list[object] = []
    if enterprise_id is not None:
        where.append("r.enterprise_id = ?")
        params.append(enterprise_id)
    if statuses:
        where.append(f"r.status IN ({db.placeholders(statuses)})")
        params += list(statuses)
    if before is not None:
        where.append("r.id < ?")
        params.append(before)
    sql = _VIEW + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY r.id DESC LIMIT ?"
    return db.dicts(conn.execute(sql, [*params, limit]))


def next_claimable(conn: db.Conn, stale_before: str) -> int | None:
    """The oldest request a signer may claim, locked for this transaction: approved, or being issued
    by a signer silent since before `stale_before`. PostgreSQL skips the rows other signers are
    claiming at this moment (FOR UPDATE SKIP LOCKED); SQLite's writer lock lets one claim at a time."""
    sql = (
        "SELECT id FROM batch_requests WHERE status = 'approved' "
        "OR (status = 'issuing' AND coalesce(progress_at, claimed_at) < ?) ORDER BY id LIMIT 1"
    )
    if db.is_postgres_conn(conn):
        sql += " FOR UPDATE SKIP LOCKED"
    row = conn.execute(sql, (stale_before,)).fetchone()
    return None if row is None else int(row[0])


def update(conn: db.Conn, request_id: int, **fields: Any) -> None:
    """Set columns of one request."""
    names = list(fields)
    if not names or not all(n in COLUMNS.split(", ") and n != "id" for n in names):
        raise ValueError(f"not columns of batch_requests: {names}")
    assignments = ", ".join(f"{n} = ?" for n in names)
    conn.execute(f"UPDATE batch_requests SET {assignments} WHERE id = ?", [*fields.values(), request_id])


def report_progress(conn: db.Conn, request_id: int, claimed_by: str, claimed_at: str, done: int, at: str) -> bool:
    """Record the codes done by the signer holding the claim; False if it does not hold it any more."""
    cursor = conn.execute(
        "UPDATE batch_requests SET progress = ?, progress_at = ? "
        "WHERE id = ? AND status = 'issuing' AND claimed_by = ? AND claimed_at = ?",
        (done, at, request_id, claimed_by, claimed_at),
    )
    return int(cursor.rowcount) == 1


def insert_file(conn: db.Conn, request_id: int, name: str, media_type: str, content: bytes, sha256: str) -> None:
    conn.execute(
        "INSERT INTO batch_files (request_id, name, media_type, size, sha256, content) VALUES (?, ?, ?, ?, ?, ?)",
        (request_id, name, media_type, len(content), sha256, content),
    )


def files(conn: db.Conn, request_id: int) -> list[dict[str, Any]]:
    """A request's files by name, without their content."""
    return db.dicts(
        conn.execute(
            "SELECT name, media_type, size, sha256 FROM batch_files WHERE request_id = ? ORDER BY name", (request_id,)
        )
    )


def file_content(conn: db.Conn, request_id: int, name: str) -> bytes | None:
    row = conn.execute(
        "SELECT content FROM batch_files WHERE request_id = ? AND name = ?", (request_id, name)
    ).fetchone()
    return None if row is None else bytes(row[0])


def all_requests(conn: db.Conn) -> list[dict[str, Any]]:
    """Every request in id order (the replay: a few per batch, never per code)."""
    return db.dicts(conn.execute(f"SELECT {COLUMNS} FROM batch_requests ORDER BY id"))


def all_files(conn: db.Conn) -> Iterator[dict[str, Any]]:
    """Every file's request, name, recorded size and SHA-256, and the SHA-256 and size of its
    content as stored (hashed here one file at a time), for the replay."""
    import hashlib

    names = conn.execute("SELECT request_id, name FROM batch_files ORDER BY request_id, name").fetchall()
    for request_id, name in names:
        row = conn.execute(
            "SELECT size, sha256, media_type, content FROM batch_files WHERE request_id = ? AND name = ?",
            (request_id, name),
        ).fetchone()
        content = bytes(row[3])
        yield {
            "request_id": int(request_id),
            "name": str(name),
            "size": int(row[0]),
            "sha256": str(row[1]),
            "media_type": str(row[2]),
            "content_sha256": hashlib.sha256(content).hexdigest(),
            "content_size": len(content),
        }
