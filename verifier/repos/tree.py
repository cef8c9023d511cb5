"""The transparency log's stored tree: `log_hashes` (complete subtrees' hashes), `log_checkpoints`
(signed notes) and `log_cosignatures` (witnesses' lines). All three are append-only; the tree logic
is in `verifier.logtree`, which alone calls these."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from .. import db

HASH_COLUMNS = ("level", "idx", "hash")


def size(conn: db.Conn) -> int:
    """Leaves stored (the highest leaf index + 1)."""
    row = conn.execute("SELECT max(idx) FROM log_hashes WHERE level = 0").fetchone()
    return 0 if row[0] is None else int(row[0]) + 1


def hash_at(conn: db.Conn, level: int, index: int) -> bytes | None:
    row = conn.execute("SELECT hash FROM log_hashes WHERE level = ? AND idx = ?", (level, index)).fetchone()
    return None if row is None else bytes(row[0])


def hashes_at(conn: db.Conn, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """The stored hashes at these (level, index) keys (the keys a proof needs): one query on
    PostgreSQL, where each would be a round trip."""
    if not keys:
        return {}
    if not db.is_postgres_conn(conn):  # in-process point reads (~10 µs); SQLite scans for a row-value IN list
        found = ((key, hash_at(conn, *key)) for key in keys)
        return {key: digest for key, digest in found if digest is not None}
    pairs = ", ".join("(?, ?)" for _ in keys)
    rows = conn.execute(
        f"SELECT level, idx, hash FROM log_hashes WHERE (level, idx) IN (VALUES {pairs})",
        [value for key in keys for value in key],
    ).fetchall()
    return {(int(level), int(idx)): bytes(digest) for level, idx, digest in rows}


def hashes(conn: db.Conn, level: int, start: int, end: int) -> list[bytes]:
    """The stored hashes of `level` from index `start` to `end` (excluded), in order."""
    rows = conn.execute(
        "SELECT hash FROM log_hashes WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx", (level, start, end)
    ).fetchall()
    return [bytes(row[0]) for row in rows]


def stream_level(conn: db.Conn, level: int) -> Iterator[tuple[int, bytes]]:
    """Every stored hash of one level, (index, hash) in index order, streamed."""
    for idx, digest in db.stream(conn, "SELECT idx, hash FROM log_hashes WHERE level = ? ORDER BY idx", (level,), 5000):
        yield int(idx), bytes(digest)


def insert_hashes(conn: db.Conn, rows: Sequence[tuple[int, int, bytes]]) -> None:
    """New subtree hashes, inside the caller's write transaction."""
    db.copy_rows(conn, "log_hashes", HASH_COLUMNS, rows)


def insert_checkpoint(conn: db.Conn, size: int, at: str, note: str) -> bool:
    """Store a signed checkpoint; False if one of this size is stored already."""
    cursor = conn.execute(
        "INSERT INTO log_checkpoints (size, at, note) VALUES (?, ?, ?) ON CONFLICT (size) DO NOTHING", (size, at, note)
    )
    return bool(cursor.rowcount)


def latest_checkpoint(conn: db.Conn) -> tuple[int, str, str] | None:
    row = conn.execute("SELECT size, at, note FROM log_checkpoints ORDER BY size DESC LIMIT 1").fetchone()
    return None if row is None else (int(row[0]), str(row[1]), str(row[2]))


def checkpoint(conn: db.Conn, size: int) -> tuple[int, str, str] | None:
    row = conn.execute("SELECT size, at, note FROM log_checkpoints WHERE size = ?", (size,)).fetchone()
    return None if row is None else (int(row[0]), str(row[1]), str(row[2]))


def cosigned_checkpoint(conn: db.Conn, min_cosignatures: int) -> tuple[int, str, str] | None:
    """The newest checkpoint with at least `min_cosignatures` cosignatures."""
    row = conn.execute(
        "SELECT c.size, c.at, c.note FROM log_checkpoints c JOIN log_cosignatures w ON w.size = c.size "
        "GROUP BY c.size, c.at, c.note HAVING count(*) >= ? ORDER BY c.size DESC LIMIT 1",
        (min_cosignatures,),
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]), str(row[2]))


def checkpoints(conn: db.Conn) -> Iterator[tuple[int, str, str]]:
    """Every stored checkpoint, (size, at, note), smallest first, streamed."""
    for size_, at, note in db.stream(conn, "SELECT size, at, note FROM log_checkpoints ORDER BY size", (), 1000):
        yield int(size_), str(at), str(note)


def cosignature_lines(conn: db.Conn, size: int) -> list[str]:
    rows = conn.execute("SELECT line FROM log_cosignatures WHERE size = ? ORDER BY witness", (size,)).fetchall()
    return [str(row[0]) for row in rows]


def all_cosignatures(conn: db.Conn) -> Iterator[tuple[int, str, str]]:
    """Every stored cosignature, (size, witness, line)."""
    for size_, witness, line in conn.execute("SELECT size, witness, line FROM log_cosignatures ORDER BY size, witness"):
        yield int(size_), str(witness), str(line)


def insert_cosignature(conn: db.Conn, size: int, witness: str, at: str, line: str) -> None:
    conn.execute(
        "INSERT INTO log_cosignatures (size, witness, at, line) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (size, witness, at, line),
    )
