"""The SQL of each code's life: dealers, events and the codes they changed, code states, attached
documents and consumers' reports (verifier/events.py is the service over it)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .. import db
from ..lifecycle import Code, CodeState

CHUNK = 500  # serials per IN list: well under SQLite's and psycopg's parameter limits


def _chunks(values: Sequence[int]) -> Iterator[Sequence[int]]:
    """`values`, distinct and ascending (fewer B-tree pages touched), in IN-list chunks."""
    values = sorted(set(values))
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


# --- codes and their states ---------------------------------------------------------------


_STATE_COLUMNS = "state, parent, dealer_id, region, shipped_at, received_at, sold_at, reason"

BatchFacts = tuple[Code, int, int, "str | None", str]  # (Code, batch id, enterprise id, activated_at, status)


def code_facts(conn: db.Conn, serials: Sequence[int]) -> dict[int, tuple[BatchFacts, CodeState | None]]:
    """serial -> (its batch's facts, one tuple shared by the batch's codes; its stored state or
    None) of the codes that exist among `serials`. Three narrow queries a chunk: the codes, their
    batches not seen yet, the states of those that have one (most have none yet)."""
    found: dict[int, tuple[BatchFacts, CodeState | None]] = {}
    batches: dict[int, BatchFacts] = {}
    for chunk in _chunks(serials):
        rows = conn.execute(
            "SELECT c.serial, c.batch_id, s.serial IS NOT NULL FROM codes c "
            "LEFT JOIN code_states s ON s.serial = c.serial "
            f"WHERE c.serial IN ({db.placeholders(chunk)})",
            list(chunk),
        ).fetchall()
        unseen = sorted({row[1] for row in rows} - set(batches))
        if unseen:
            for b in conn.execute(
                "SELECT id, unit, activation, enterprise_id, activated_at, status FROM batches "
                f"WHERE id IN ({db.placeholders(unseen)})",
                unseen,
            ).fetchall():
                batches[b[0]] = (Code(b[1], b[2]), b[0], b[3], b[4], b[5])
        with_state = [row[0] for row in rows if row[2]]
        stored: dict[int, CodeState] = {}
        if with_state:
            for r in conn.execute(
                f"SELECT serial, {_STATE_COLUMNS} FROM code_states WHERE serial IN ({db.placeholders(with_state)})",
                with_state,
            ).fetchall():
                stored[r[0]] = CodeState(*r[1:])
        for serial, batch_id, _ in rows:
            found[serial] = (batches[batch_id], stored.get(serial))
    return found


def children(conn: db.Conn, parents: Sequence[int]) -> dict[int, list[int]]:
    """parent -> the codes packed in it now."""
    found: dict[int, list[int]] = {}
    for chunk in _chunks(parents):
        rows = conn.execute(
            f"SELECT parent, serial FROM code_states WHERE parent IN ({db.placeholders(chunk)}) ORDER BY serial",
            list(chunk),
        ).fetchall()
        for parent, serial in rows:
            found.setdefault(parent, []).append(serial)
    return found


def write_states(conn: db.Conn, rows: Iterable[tuple[Any, ...]], *, new: bool) -> None:
    """Write (serial, state, parent, dealer_id, region, shipped_at, received_at, sold_at, reason,
    event) rows: `new`, codes without a row yet (a plain INSERT), else an upsert."""
    sql = f"INSERT INTO code_states (serial, {_STATE_COLUMNS}, event) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    if not new:
        sql += (
            " ON CONFLICT (serial) DO UPDATE SET state = excluded.state, parent = excluded.parent, "
            "dealer_id = excluded.dealer_id, region = excluded.region, shipped_at = excluded.shipped_at, "
            "received_at = excluded.received_at, sold_at = excluded.sold_at, reason = excluded.reason, "
            "event = excluded.event"
        )
    conn.executemany(sql, list(rows))


def set_batch_activated(conn: db.Conn, batch_id: int, at: str) -> None:
    conn.execute("UPDATE batches SET activated_at = ? WHERE id = ?", (at, batch_id))


def set_batch_report(conn: db.Conn, batch_id: int, sha256: str) -> None:
    conn.execute("UPDATE batches SET report_sha256 = ? WHERE id = ?", (sha256, batch_id))


# --- events -------------------------------------------------------------------------------

EVENT_COLUMNS = (
    "event_id",
    "type",
    "action",
    "biz_step",
    "disposition",
    "event_time",
    "recorded_at",
    "enterprise_id",
    "actor",
    "batch_id",
    "parent",
    "dealer_id",
    "region",
    "read_point",
    "biz_location",
    "reason",
    "codes",
    "document",
)


def event_id_taken(conn: db.Conn, event_ids: Sequence[str]) -> set[str]:
    """Which of these EPCIS eventIDs were captured before."""
    taken: set[str] = set()
    for start in range(0, len(event_ids), CHUNK):
        chunk = event_ids[start : start + CHUNK]
        rows = conn.execute(f"SELECT event_id FROM events WHERE event_id IN ({db.placeholders(chunk)})", list(chunk))
        taken.update(row[0] for row in rows.fetchall())
    return taken


def reserve_event_ids(conn: db.Conn, count: int) -> list[int]:
    """`count` new event ids, in order. SQLite: after the largest (the caller holds the writer
    lock); PostgreSQL: from the identity's sequence, so concurrent captures never collide."""
    if count == 0:
        return []
    if db.is_postgres_conn(conn):
        rows = conn.execute(
            "SELECT nextval(pg_get_serial_sequence('events', 'id')) FROM generate_series(1, ?)", (count,)
        ).fetchall()
        return [int(r[0]) for r in rows]
    last = int(conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])
    return list(range(last + 1, last + 1 + count))


def insert_events(conn: db.Conn, rows: Sequence[dict[str, Any]]) -> None:
    """Insert event rows (with their reserved ids)."""
    columns = ("id", *EVENT_COLUMNS)
    conn.executemany(
        f"INSERT INTO events ({', '.join(columns)}) VALUES ({db.placeholders(columns)})",
        [[row.get(c) for c in columns] for row in rows],
    )


def insert_event_codes(conn: db.Conn, rows: Iterable[tuple[int, int]]) -> None:
    """(serial, event) rows."""
    conn.executemany("INSERT INTO event_codes (serial, event) VALUES (?, ?)", list(rows))


def events(
    conn: db.Conn,
    *,
    serials: Sequence[int] = (),
    batch_id: int | None = None,
    enterprise_id: int | None = None,
    since: str | None = None,
    until: str | None = None,
    types: Sequence[str] = (),
    biz_steps: Sequence[str] = (),
    actions: Sequence[str] = (),
    after: int = 0,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Events by id after `after`, at most `limit`: those that changed any of `serials` (through a
    case too), of the codes of `batch_id`, in [since, until), of these types, steps, actions."""
    where = ["e.id > ?"]
    params: list[Any] = [after]
    if serials:
        where.append(f"e.id IN (SELECT event FROM event_codes WHERE serial IN ({db.placeholders(serials)}))")
        params += list(serials)
    if batch_id is not None:
        where.append(
            "(e.batch_id = ? OR e.id IN (SELECT ec.event FROM event_codes ec JOIN codes c ON c.serial = ec.serial "
            "WHERE c.batch_id = ?))"
        )
        params += [batch_id, batch_id]
    for column, value, op in (("enterprise_id", enterprise_id, "="), ("event_time", since, ">=")):
        if value is not None:
            where.append(f"e.{column} {op} ?")
            params.append(value)
    if until is not None:
        where.append("e.event_time < ?")
        params.append(until)
    for column, values in (("type", types), ("biz_step", biz_steps), ("action", actions)):
        if values:
            where.append(f"e.{column} IN ({db.placeholders(values)})")
            params += list(values)
    sql = f"SELECT e.* FROM events e WHERE {' AND '.join(where)} ORDER BY e.id LIMIT ?"
    return db.dicts(conn.execute(sql, [*params, limit]))


def events_in_order(conn: db.Conn, size: int = 5000) -> Iterator[list[dict[str, Any]]]:
    """Every event by id, `size` at a time (audit verify)."""
    cursor = db.stream(conn, "SELECT * FROM events ORDER BY id", (), size)
    names = [c[0] for c in cursor.description]
    while rows := cursor.fetchmany(size):
        yield [dict(zip(names, row)) for row in rows]


def event_serials_in_order(conn: db.Conn, size: int = 20_000) -> Iterator[list[tuple[int, int]]]:
    """Every (event, serial) of event_codes by event, then serial (audit verify)."""
    cursor = db.stream(conn, "SELECT event, serial FROM event_codes ORDER BY event, serial", (), size)
    while rows := cursor.fetchmany(size):
        yield rows


def code_histories(conn: db.Conn, size: int = 20_000) -> Iterator[list[tuple[Any, ...]]]:
    """Every (serial, event id, type, action, biz_step, event_time, disposition, parent, dealer_id,
    region, reason, recorded_at, the code's unit, activation and batch activated_at) by serial,
    then event: what the replay folds into each code's state."""
    cursor = db.stream(
        conn,
        "SELECT ec.serial, e.id, e.type, e.action, e.biz_step, e.event_time, e.disposition, e.parent, "
        "e.dealer_id, e.region, e.reason, e.recorded_at, b.unit, b.activation, b.activated_at "
        "FROM event_codes ec JOIN events e ON e.id = ec.event "
        "LEFT JOIN codes c ON c.serial = ec.serial LEFT JOIN batches b ON b.id = c.batch_id "
        "ORDER BY ec.serial, ec.event",
        (),
        size,
    )
    while rows := cursor.fetchmany(size):
        yield rows


def stored_states_in_order(conn: db.Conn, size: int = 20_000) -> Iterator[list[tuple[Any, ...]]]:
    """Every code_states row (serial, state columns..., event) by serial."""
    cursor = db.stream(conn, f"SELECT serial, {_STATE_COLUMNS}, event FROM code_states ORDER BY serial", (), size)
    while rows := cursor.fetchmany(size):
        yield rows


def batch_lifecycle_facts(conn: db.Conn) -> dict[int, tuple[str | None, str | None]]:
    """batch id -> (activated_at, report_sha256) of every batch."""
    rows = conn.execute("SELECT id, activated_at, report_sha256 FROM batches").fetchall()
    return {int(r[0]): (r[1], r[2]) for r in rows}


def all_reports(conn: db.Conn) -> list[dict[str, Any]]:
    """Every consumer report but its photo bytes (audit verify), by id."""
    return db.dicts(
        conn.execute(
            "SELECT id, at, serial, enterprise_id, verdict, what, details, bought_at, region, photo_sha256, contact, "
            "brand_may_contact, status, answer, personal_salt FROM consumer_reports ORDER BY id"
        )
    )


def activated_batches(conn: db.Conn) -> dict[int, str]:
    """batch id -> activated_at, of the batches released as a whole."""
    rows = conn.execute("SELECT id, activated_at FROM batches WHERE activated_at IS NOT NULL").fetchall()
    return {int(r[0]): str(r[1]) for r in rows}


# --- dealers ------------------------------------------------------------------------------


def insert_dealer(conn: db.Conn, row: dict[str, Any]) -> int:
    cursor = conn.execute(
        "INSERT INTO dealers (enterprise_id, code, name, gln, regions, created_at, created_by) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        [row[k] for k in ("enterprise_id", "code", "name", "gln", "regions", "created_at", "created_by")],
    )
    return int(cursor.fetchone()[0])


def dealers(conn: db.Conn, enterprise_id: int | None = None) -> list[dict[str, Any]]:
    """Dealers (of one enterprise), by id."""
    if enterprise_id is None:
        return db.dicts(conn.execute("SELECT * FROM dealers ORDER BY id"))
    return db.dicts(conn.execute("SELECT * FROM dealers WHERE enterprise_id = ? ORDER BY id", (enterprise_id,)))


def dealer_by(
    conn: db.Conn, enterprise_id: int, *, code: str | None = None, gln: str | None = None
) -> dict[str, Any] | None:
    """An enterprise's dealer by its code or its GLN."""
    column, value = ("code", code) if code is not None else ("gln", gln)
    rows = db.dicts(
        conn.execute(f"SELECT * FROM dealers WHERE enterprise_id = ? AND {column} = ?", (enterprise_id, value))
    )
    return rows[0] if rows else None


# --- documents ----------------------------------------------------------------------------


def insert_document(conn: db.Conn, row: dict[str, Any]) -> bool:
    """Store a document by its SHA-256 (the same bytes twice are stored once); whether it was new."""
    cursor = conn.execute(
        "INSERT INTO documents (sha256, media_type, name, size, content, attached_at, attached_by) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sha256) DO NOTHING",
        [row[k] for k in ("sha256", "media_type", "name", "size", "content", "attached_at", "attached_by")],
    )
    return cursor.rowcount == 1


def document(conn: db.Conn, sha256: str) -> tuple[str, str, bytes] | None:
    """(media type, name, content) of a stored document."""
    row = conn.execute("SELECT media_type, name, content FROM documents WHERE sha256 = ?", (sha256,)).fetchone()
    return None if row is None else (str(row[0]), str(row[1]), bytes(row[2]))


def document_facts(conn: db.Conn) -> list[tuple[str, str, int, str]]:
    """(sha256, media type, size, sha256 of the content as stored) of every document: audit verify."""
    import hashlib

    rows = conn.execute("SELECT sha256, media_type, size, content FROM documents ORDER BY sha256").fetchall()
    return [(r[0], r[1], r[2], hashlib.sha256(bytes(r[3])).hexdigest()) for r in rows]


# --- consumer reports ---------------------------------------------------------------------

REPORT_COLUMNS = (
    "at",
    "serial",
    "enterprise_id",
    "verdict",
    "what",
    "details",
    "bought_at",
    "region",
    "photo",
    "photo_sha256",
    "contact",
    "brand_may_contact",
    "personal_salt",
)


def insert_report(conn: db.Conn, row: dict[str, Any]) -> int:
    values = [row.get(c) for c in REPORT_COLUMNS]
    cursor = conn.execute(
        f"INSERT INTO consumer_reports ({', '.join(REPORT_COLUMNS)}) VALUES ({db.placeholders(values)}) RETURNING id",
        values,
    )
    return int(cursor.fetchone()[0])


def report_photo(conn: db.Conn, report_id: int) -> tuple[int | None, bytes] | None:
    """(enterprise id, JPEG bytes) of a report's photo."""
    row = conn.execute(
        "SELECT enterprise_id, photo FROM consumer_reports WHERE id = ? AND photo IS NOT NULL", (report_id,)
    ).fetchone()
    return None if row is None else (row[0], bytes(row[1]))


def answer_report(conn: db.Conn, report_id: int, status: str, answer: str) -> bool:
    cursor = conn.execute(
        "UPDATE consumer_reports SET status = ?, answer = ? WHERE id = ?", (status, answer, report_id)
    )
    return cursor.rowcount == 1
