"""Cases' rows (`cases`, `case_notes`, `case_evidence`), the scans linked to them, and the log
entries a case's evidence export proves (verifier/cases.py, verifier/evidence.py).

Each function takes the connection first and runs in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import db
from ..evidence import CASE_FIELDS

CASE_COLUMNS = CASE_FIELDS  # a case's columns are what its export carries (verifier/evidence.py)
NOTE_COLUMNS = ("id", "case_id", "at", "author", "text")
EVIDENCE_COLUMNS = ("case_id", "scan_id", "linked_at", "linked_by")
ENTRY_COLUMNS = ("seq", "kind", "at", "actor", "personal_hash", "body")
# What the partial index audit_log_cases covers: every "case.*" kind, none other.
_CASE_KINDS = "kind >= 'case.' AND kind < 'case/'"


def insert_case(conn: db.Conn, fields: dict[str, Any]) -> int:
    """A new case (CASE_COLUMNS but id); its id."""
    names = [c for c in CASE_COLUMNS if c != "id"]
    row = conn.execute(
        f"INSERT INTO cases ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) RETURNING id",
        [fields.get(c) for c in names],
    ).fetchone()
    return int(row[0])


def get_case(conn: db.Conn, case_id: int) -> dict[str, Any] | None:
    return db.one_dict(conn.execute(f"SELECT {', '.join(CASE_COLUMNS)} FROM cases WHERE id = ?", (case_id,)))


def list_cases(
    conn: db.Conn,
    enterprise_id: int | None,
    everything: bool,
    status: str | None,
    severity: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Cases newest first: all (`everything`) or one enterprise's, by status and severity."""
    where: list[str] = ["1 = 1"]
    params: list[object] = []
    if not everything:
        where.append("enterprise_id = ?")
        params.append(enterprise_id if enterprise_id is not None else -1)
    if status:
        where.append("status = ?")
        params.append(status)
    if severity:
        where.append("severity = ?")
        params.append(severity)
    params.append(limit)
    cursor = conn.execute(
        f"SELECT {', '.join(CASE_COLUMNS)} FROM cases WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?", params
    )
    return db.dicts(cursor)


def update_case(conn: db.Conn, case_id: int, **fields: Any) -> None:
    """Set some of a case's columns."""
    if not fields or not set(fields) <= set(CASE_COLUMNS) - {"id"}:
        raise ValueError("update known case columns")
    sets = ", ".join(f"{name} = ?" for name in fields)
    conn.execute(f"UPDATE cases SET {sets} WHERE id = ?", [*fields.values(), case_id])


def insert_note(conn: db.Conn, case_id: int, at: str, author: str, text: str) -> int:
    row = conn.execute(
        "INSERT INTO case_notes (case_id, at, author, text) VALUES (?, ?, ?, ?) RETURNING id",
        (case_id, at, author, text),
    ).fetchone()
    return int(row[0])


def notes(conn: db.Conn, case_id: int) -> list[dict[str, Any]]:
    cursor = conn.execute(f"SELECT {', '.join(NOTE_COLUMNS)} FROM case_notes WHERE case_id = ? ORDER BY id", (case_id,))
    return db.dicts(cursor)


def insert_evidence(conn: db.Conn, case_id: int, scan_ids: Sequence[int], at: str, by: str) -> None:
    conn.executemany(
        "INSERT INTO case_evidence (case_id, scan_id, linked_at, linked_by) VALUES (?, ?, ?, ?)",
        [(case_id, scan_id, at, by) for scan_id in scan_ids],
    )


def evidence(conn: db.Conn, case_id: int) -> list[dict[str, Any]]:
    cursor = conn.execute(
        f"SELECT {', '.join(EVIDENCE_COLUMNS)} FROM case_evidence WHERE case_id = ? ORDER BY scan_id", (case_id,)
    )
    return db.dicts(cursor)


def existing_scans(conn: db.Conn, scan_ids: Sequence[int]) -> set[int]:
    """Which of `scan_ids` are scans."""
    if not scan_ids:
        return set()
    marks = ", ".join("?" * len(scan_ids))
    return {int(r[0]) for r in conn.execute(f"SELECT id FROM scans WHERE id IN ({marks})", list(scan_ids))}


def scans(conn: db.Conn, scan_ids: Sequence[int], columns: Sequence[str]) -> list[dict[str, Any]]:
    """The scans `scan_ids` (those that still exist) as `columns`, by id."""
    if not scan_ids:
        return []
    if not all(c.isidentifier() for c in columns):
        raise ValueError("scan columns are plain column names")
    marks = ", ".join("?" * len(scan_ids))
    cursor = conn.execute(f"SELECT {', '.join(columns)} FROM scans WHERE id IN ({marks}) ORDER BY id", list(scan_ids))
    return db.dicts(cursor)


def batch_enterprises(conn: db.Conn, batch_ids: Sequence[int]) -> dict[int, int]:
    """The enterprise of each of `batch_ids`."""
    if not batch_ids:
        return {}
    marks = ", ".join("?" * len(batch_ids))
    rows = conn.execute(f"SELECT id, enterprise_id FROM batches WHERE id IN ({marks})", list(batch_ids))
    return {int(r[0]): int(r[1]) for r in rows}


def case_entries(conn: db.Conn) -> list[tuple[Any, ...]]:
    """Every chained "case.*" entry (ENTRY_COLUMNS), in log order, through the partial index."""
    return conn.execute(f"SELECT {', '.join(ENTRY_COLUMNS)} FROM audit_log WHERE {_CASE_KINDS} ORDER BY seq").fetchall()


def queued_case_entries(conn: db.Conn) -> int:
    """ "case.*" entries waiting for the sequencer (PostgreSQL; 0 where entries are numbered inline)."""
    if db.sequences_inline(conn):
        return 0
    return int(conn.execute(f"SELECT count(*) FROM log_pending WHERE {_CASE_KINDS}").fetchone()[0])


# --- what audit verify's replay reads (verifier/replay_cases.py) --------------------------------


def all_cases(conn: db.Conn) -> list[dict[str, Any]]:
    return db.dicts(conn.execute(f"SELECT {', '.join(CASE_COLUMNS)} FROM cases ORDER BY id"))


def all_notes(conn: db.Conn) -> list[dict[str, Any]]:
    return db.dicts(conn.execute(f"SELECT {', '.join(NOTE_COLUMNS)} FROM case_notes ORDER BY id"))


def all_evidence(conn: db.Conn) -> list[dict[str, Any]]:
    cursor = conn.execute(f"SELECT {', '.join(EVIDENCE_COLUMNS)} FROM case_evidence ORDER BY case_id, scan_id")
    return db.dicts(cursor)
