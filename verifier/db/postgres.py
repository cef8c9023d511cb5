"""PostgreSQL through psycopg 3: connections that take the repositories' SQL as written.

The repositories write `?` and `:name` parameters (sqlite3's styles); `translate` turns them into
psycopg's `%s` and `%(name)s` once per statement text (cached), leaving string literals alone.
Connections are in autocommit mode; `verifier.db.transaction` opens each transaction explicitly.
psycopg prepares a statement on the server after its fifth use, so the lookup's few statements
run prepared. Nothing here reads the environment: the URL comes from the caller.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
import psycopg_pool
from psycopg import conninfo

DIALECT = "postgresql"
URL_PREFIXES = ("postgresql://", "postgres://")
CONNECT_TIMEOUT_SECONDS = 10
POOL_TIMEOUT_SECONDS = 10.0

_TOKENS = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|::|\?|(?<![:\w]):[A-Za-z_]\w*|%")
_translated: dict[str, str] = {}


def translate(sql: str) -> str:
    """`sql` with `?` -> `%s`, `:name` -> `%(name)s` outside string literals, and `%` -> `%%`."""
    found = _translated.get(sql)
    if found is None:
        found = _translated[sql] = _TOKENS.sub(_replace, sql)
    return found


def _replace(match: re.Match[str]) -> str:
    token = match.group(0)
    if token == "?":
        return "%s"
    if token == "%":
        return "%%"
    if token.startswith("'"):
        return token.replace("%", "%%")  # psycopg reads % inside literals too
    if token.startswith(":") and token != "::":
        return f"%({token[1:]})s"
    return token


def is_url(location: str) -> bool:
    return location.startswith(URL_PREFIXES)


def describe(location: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        params = conninfo.conninfo_to_dict(location)
    except psycopg.ProgrammingError:
        return "postgresql://(malformed URL)"
    host = params.get("host") or "localhost"
    port = f":{params['port']}" if params.get("port") else ""
    user = f"{params['user']}@" if params.get("user") else ""
    return f"postgresql://{user}{host}{port}/{params.get('dbname', '')}"


class PgConnection:
    """A psycopg connection that speaks the repositories' parameter styles."""

    dialect = DIALECT

    def __init__(self, raw: psycopg.Connection[Any], location: str) -> None:
        self.raw = raw
        self.location = location

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> psycopg.Cursor[Any]:
        if params is None:
            return self.raw.execute(sql)  # sent verbatim: nothing to substitute
        return self.raw.execute(translate(sql), params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> psycopg.Cursor[Any]:
        cursor = self.raw.cursor()
        cursor.executemany(translate(sql), rows)
        return cursor

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """COPY `rows` into `table` (the fastest bulk insert); how many."""
        count = 0
        with self.raw.cursor() as cursor:
            with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
                    count += 1
        return count

    def stream(self, sql: str, params: Sequence[Any] | dict[str, Any], size: int) -> psycopg.Cursor[Any]:
        """A server-side cursor over `sql`, fetched `size` rows at a time (inside a transaction)."""
        idle = self.raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        # outside a transaction (autocommit) a server-side cursor must be WITH HOLD
        cursor = self.raw.cursor(name=f"verifier_stream_{os.getpid()}_{next(_names)}", withhold=idle)
        cursor.itersize = size
        cursor.execute(translate(sql), params)
        return cursor

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self.raw.transaction():
            yield

    def close(self) -> None:
        self.raw.close()

    @property
    def closed(self) -> bool:
        return bool(self.raw.closed)


_names = iter(range(1, 1 << 62))


def connect_raw(location: str, *, read_only: bool = False) -> psycopg.Connection[Any]:
    """A new autocommit connection (OperationalError if the server cannot be reached)."""
    raw = psycopg.connect(
        location, autocommit=not read_only, connect_timeout=CONNECT_TIMEOUT_SECONDS, application_name="verifier"
    )
    _configure(raw, read_only)
    return raw


def _configure(raw: psycopg.Connection[Any], read_only: bool = False) -> None:
    # Durable commits whatever the server's default; UTC for anything the server formats.
    raw.execute("SET synchronous_commit = on")
    raw.execute("SET TIME ZONE 'UTC'")
    if read_only:
        raw.execute("SET default_transaction_read_only = on")
        raw.commit()


# --- advisory locks -----------------------------------------------------------------------
#
# One 64-bit key space: a code's lock is its serial (never negative; taken by
# repos/registry.batch_for_serial), a named lock (the sequencer, a batch being issued, an audit
# slot, migrations) a negative key derived from its name, so the two never meet.


def named_key(name: str) -> int:
    return -1 - int.from_bytes(hashlib.sha256(name.encode()).digest()[:7], "big")


def try_named_lock(conn: PgConnection, name: str) -> bool:
    """The session lock `name` on this connection, if no other session holds it."""
    row = conn.raw.execute("SELECT pg_try_advisory_lock(%s)", (named_key(name),)).fetchone()
    return bool(row and row[0])


def named_lock(conn: PgConnection, name: str) -> None:
    """The session lock `name` on this connection, waiting for it."""
    conn.raw.execute("SELECT pg_advisory_lock(%s)", (named_key(name),))


def release_named_lock(conn: PgConnection, name: str) -> None:
    if not conn.closed:
        conn.raw.execute("SELECT pg_advisory_unlock(%s)", (named_key(name),))


def lock_holder(conn: PgConnection, name: str) -> dict[str, Any] | None:
    """Who holds the session lock `name`: its backend's pid, client address and since when (None:
    nobody). pg_locks shows a bigint key as two oids: its high and low 32 bits."""
    key = named_key(name)
    row = conn.raw.execute(
        "SELECT a.pid, host(a.client_addr), a.backend_start::text FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
        "AND l.classid = %s::oid AND l.objid = %s::oid AND l.objsubid = 1 AND l.database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database()) LIMIT 1",
        ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
    ).fetchone()
    if row is None:
        return None
    return {"pid": int(row[0]), "client": row[1] or "local socket", "since": row[2]}


def try_transaction_lock(conn: PgConnection, name: str) -> bool:
    """The lock `name` until this transaction ends, if no other transaction holds it."""
    row = conn.raw.execute("SELECT pg_try_advisory_xact_lock(%s)", (named_key(name),)).fetchone()
    return bool(row and row[0])


# --- the pool -----------------------------------------------------------------------------


class Pool:
    """Connections to one database for one process: psycopg_pool, opened on first use after a fork."""

    def __init__(self, location: str, max_size: int = 4) -> None:
        self.location, self.max_size = location, max_size
        self._pool: psycopg_pool.ConnectionPool[Any] | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def _open(self) -> psycopg_pool.ConnectionPool[Any]:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool = psycopg_pool.ConnectionPool(
                    self.location,
                    min_size=1,
                    max_size=self.max_size,
                    kwargs={
                        "autocommit": True,
                        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
                        "application_name": "verifier",
                    },
                    configure=_configure,
                    timeout=POOL_TIMEOUT_SECONDS,
                    name="verifier",
                    open=False,
                )
                self._pool.open(wait=True, timeout=POOL_TIMEOUT_SECONDS)
                self._pid = os.getpid()
            return self._pool

    def acquire(self) -> PgConnection:
        return PgConnection(self._open().getconn(), self.location)

    def release(self, conn: PgConnection) -> None:
        pool = self._pool
        if pool is not None and self._pid == os.getpid():
            pool.putconn(conn.raw)

    def close(self) -> None:
        if self._pool is not None and self._pid == os.getpid():
            self._pool.close()
        self._pool = None
