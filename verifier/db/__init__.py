"""The persistence boundary: locations, connections, transactions, locks, migrations.

Two engines: SQLite (the embedded default: a file, one writer at a time under the writer lock)
and PostgreSQL (`postgresql://...`: several lookup nodes on one server; verifier/db/postgres.py).
Everything engine-specific lives in this package: pragmas, the writer lock, WAL checkpoints,
advisory locks, the error classes, bulk copies, the two schemas (sqlite_schema.py,
postgres_schema.py). The repository modules in `verifier/repos/` own every other SQL statement
and write portable SQL (ON CONFLICT, RETURNING, `?` and `:name` parameters); where the engines
differ they ask `dialect(conn)`.

A connection is a DB-API connection (`Conn`): `sqlite3.Connection` (a subclass that knows its
file) or `postgres.PgConnection`. A location is a SQLite path or a PostgreSQL URL (`location`).

This module never reads the clock and never reads the environment: callers pass locations.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, cast

import psycopg

from .. import errors, files
from . import postgres, postgres_schema, sqlite_schema

BUSY_TIMEOUT_MS = 10_000
WRITER_LOCK_SUFFIX = "-writer.lock"
SQLITE, POSTGRESQL = "sqlite", postgres.DIALECT

# The engines' errors, for `except`: a constraint refused a write (a taken serial, a unique name);
# not a database or a corrupt one; any error of the engine; a statement stopped by its work limit.
IntegrityError = (sqlite3.IntegrityError, psycopg.IntegrityError)
DatabaseError = (sqlite3.DatabaseError, psycopg.DatabaseError)
Error = (sqlite3.Error, psycopg.Error)
OperationalError = (sqlite3.OperationalError, psycopg.OperationalError)


class Cursor(Protocol):
    """What the repositories use of a DB-API cursor."""

    @property
    def description(self) -> Any: ...
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def fetchmany(self, size: int = ..., /) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...
    def close(self) -> None: ...


class Conn(Protocol):
    """What the repositories use of a DB-API connection."""

    def execute(self, sql: str, params: Any = ..., /) -> Cursor: ...
    def executemany(self, sql: str, rows: Any, /) -> Cursor: ...
    def close(self) -> None: ...


class StoreError(errors.VerifierError):
    """A registry operation that cannot be done; the message is for the user (CLI exit status 1)."""

    exit_code = 1


class StoreNotFound(StoreError, errors.NotFound):
    """No such database, batch, enterprise..."""


class StoreConflict(StoreError, errors.Conflict):
    """Contradicts the registry's state: already recalled, a credit code that belongs to another..."""


class StoreInvalid(StoreError, errors.InvalidInput):
    """A value the registry does not take: an empty name, a malformed credit code..."""


class Connection(sqlite3.Connection):
    """A SQLite connection that knows its database file (for the writer lock) and counts its commits."""

    dialect = SQLITE
    db_file: str = ""
    commits: int = 0


# --- locations ----------------------------------------------------------------------------


def location(value: Path | str) -> str:
    """A database location as given by a user: `sqlite:///path`, a plain path, or a PostgreSQL URL."""
    text = str(value)
    return text.removeprefix("sqlite:///")  # sqlite:///relative/path, sqlite:////absolute/path


def is_postgres(value: Path | str) -> bool:
    """Whether a location is a PostgreSQL URL."""
    return postgres.is_url(str(value))


def describe(value: Path | str) -> str:
    """A location for messages: a path, or a URL without its password."""
    text = location(value)
    return postgres.describe(text) if is_postgres(text) else text


def dialect(conn: Conn) -> str:
    """`sqlite` or `postgresql`: for the few statements the engines spell differently."""
    return str(getattr(conn, "dialect", SQLITE))


def is_postgres_conn(conn: Conn) -> bool:
    return dialect(conn) == POSTGRESQL


def sequences_inline(conn: Conn) -> bool:
    """Whether log entries are chained inside the transaction that writes them (SQLite, where the
    writer lock already serialises writers) or later by the sequencer (PostgreSQL)."""
    return not is_postgres_conn(conn)


# --- connections --------------------------------------------------------------------------


def connect(where: Path | str, *, create: bool = True) -> Any:
    """The registry at `where` (a path or a URL), migrated. SQLite: in WAL mode with foreign keys
    on, made 0600. `create=False`: StoreNotFound if there is no database there yet."""
    text = location(where)
    if is_postgres(text):
        return _connect_postgres(text, create=create)
    return _connect_sqlite(Path(text), create=create)


def _connect_sqlite(path: Path, *, create: bool) -> Connection:
    if not create and not path.exists():
        raise StoreNotFound(f"no database at {path} (issue a batch first, or set VERIFIER_DB)")
    try:
        files.make_private_dir(path.parent)
        files.create_private_file(path)  # scans hold personal data: 0600 from the start (SQLite would use 0644)
    except OSError as exc:
        raise StoreError(f"cannot create the database {path}: {exc.strerror}") from None
    for suffix in ("", "-wal", "-shm", WRITER_LOCK_SUFFIX):  # a database made by an older version: tighten
        files.tighten(Path(f"{path}{suffix}"))  # SQLite gives -wal and -shm the database file's mode
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False, factory=Connection
    )
    assert isinstance(conn, Connection)
    configure(conn)
    migrate(conn)
    return conn


def _connect_postgres(url: str, *, create: bool) -> postgres.PgConnection:
    try:
        conn = postgres.PgConnection(postgres.connect_raw(url), url)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to {postgres.describe(url)}: {_first_line(exc)}") from None
    try:
        if not create and not _has_migrations_table(conn):
            raise StoreNotFound(f"no verifier database at {postgres.describe(url)} (run 'verifier db init')")
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def connect_read_only(where: Path | str) -> Any:
    """A read-only connection (an export streams through it while lookups go on)."""
    text = location(where)
    if is_postgres(text):
        try:
            return postgres.PgConnection(postgres.connect_raw(text, read_only=True), text)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {postgres.describe(text)}: {_first_line(exc)}") from None
    return sqlite3.connect(f"file:{text}?mode=ro", uri=True, check_same_thread=False)


def configure(conn: sqlite3.Connection) -> None:
    """The pragmas every SQLite connection uses: WAL, durable commits, foreign keys, a busy timeout."""
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    use_wal(conn)
    conn.execute("PRAGMA synchronous = FULL")  # an acknowledged write survives power loss
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA wal_autocheckpoint = 0")  # checkpoints run under the writer lock: see transaction()


def use_wal(conn: sqlite3.Connection) -> None:
    """Put a SQLite file in WAL mode (a setting of the file: once is enough). The switch takes the
    writer lock: two connections switching a new file at once deadlock inside SQLite, which answers
    "database is locked" at once instead of waiting (nodes starting together on a new database)."""
    if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return
    with _holding_writer_lock(conn):
        conn.execute("PRAGMA journal_mode = WAL")


def db_file(conn: Conn) -> str:
    """The file of a SQLite connection's main database (the writer lock and named locks sit beside it)."""
    path = getattr(conn, "db_file", "")
    if not path:
        path = conn.execute("PRAGMA database_list").fetchone()[2]
        if isinstance(conn, Connection):
            conn.db_file = path
    return str(path)


def location_of(conn: Conn) -> str:
    """Where a connection's database is: its file, or its URL."""
    if isinstance(conn, postgres.PgConnection):
        return conn.location
    return db_file(conn)


def ping(conn: Conn) -> None:
    """A round trip to the database (the health check); the engine's error if it cannot answer."""
    conn.execute("SELECT 1").fetchone()


class Pool:
    """Where a server process gets its connection for a request: the one SQLite connection of
    the process (made after a fork, never shared across one), or a psycopg pool."""

    def __init__(self, where: Path | str, max_size: int = 4) -> None:
        self.location = location(where)
        self._pg = postgres.Pool(self.location, max_size) if is_postgres(self.location) else None
        self._sqlite: Connection | None = None
        self._pid = 0
        self._migrated = False

    def acquire(self) -> Any:
        if self._pg is None:
            if self._sqlite is None or self._pid != os.getpid():
                self._sqlite = _connect_sqlite(Path(self.location), create=True)
                self._pid = os.getpid()
            return self._sqlite
        if not self._migrated:  # once a process: the schema is made by whoever comes first
            connect(self.location).close()
            self._migrated = True
        try:
            return self._pg.acquire()
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {postgres.describe(self.location)}: {_first_line(exc)}") from None

    def release(self, conn: Any) -> None:
        if self._pg is not None and isinstance(conn, postgres.PgConnection):
            self._pg.release(conn)

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()


# --- rows ---------------------------------------------------------------------------------


def dicts(cursor: Cursor) -> list[dict[str, Any]]:
    """The cursor's rows as dicts keyed by column name (DB-API `description`: any engine)."""
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def one_dict(cursor: Cursor) -> dict[str, Any] | None:
    """The cursor's first row as a dict, or None."""
    row = cursor.fetchone()
    if row is None:
        return None
    return dict(zip([column[0] for column in cursor.description], row))


def placeholders(values: Sequence[object]) -> str:
    """`?, ?, ?` for an IN list of `values` (callers keep lists under MAX_PARAMETERS)."""
    return ",".join("?" * len(values))


MAX_PARAMETERS = 500  # per statement; SQLite's limit is 32,766 since 3.32, 999 before


def copy_rows(conn: Conn, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Insert many rows fast, inside the caller's transaction: COPY on PostgreSQL."""
    if isinstance(conn, postgres.PgConnection):
        conn.copy_rows(table, columns, rows)
    else:
        conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders(columns)})", rows)


def stream(conn: Conn, sql: str, params: Sequence[Any] | dict[str, Any], size: int) -> Cursor:
    """A cursor over a large result that holds `size` rows at a time in this process (PostgreSQL:
    a server-side cursor, so the connection must be in a transaction: `connect_read_only`)."""
    if isinstance(conn, postgres.PgConnection):
        return conn.stream(sql, params, size)
    return conn.execute(sql, params)


@contextlib.contextmanager
def read_snapshot(conn: Conn) -> Iterator[None]:
    """The block's reads see one state of the database (a long check while writers go on):
    SQLite, a read transaction (WAL: writers are not held up); PostgreSQL, REPEATABLE READ. Inside
    a transaction of the caller's already, the block reads in that one (a check of what it wrote)."""
    if isinstance(conn, postgres.PgConnection):
        if conn.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            yield
            return
        with conn.transaction():
            conn.raw.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield
        return
    assert isinstance(conn, sqlite3.Connection), "a connection of db.connect"
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")


# --- work limits (verifier/budget.py) -----------------------------------------------------


class Interrupted(Exception):
    """A statement was stopped by its work limit."""


@contextlib.contextmanager
def work_limit(conn: Conn, tick: Callable[[], int], grain: int, seconds: float | None) -> Iterator[None]:
    """Statements on `conn` under a limit: SQLite calls `tick` every `grain` instructions and stops
    the statement when it returns non-zero; PostgreSQL has no such hook and stops a statement after
    `seconds` (statement_timeout). Interrupted when a statement was stopped."""
    if isinstance(conn, postgres.PgConnection):
        timeout_ms = 0 if seconds is None else max(1, int(seconds * 1000))
        conn.raw.execute(f"SET statement_timeout = {timeout_ms}")
        try:
            yield
        except psycopg.errors.QueryCanceled as exc:
            raise Interrupted(str(exc)) from exc
        finally:
            if not conn.closed:
                with contextlib.suppress(psycopg.Error):
                    conn.raw.execute("SET statement_timeout = 0")
        return
    assert isinstance(conn, sqlite3.Connection), "a connection of db.connect"
    conn.set_progress_handler(tick, grain)
    try:
        yield
    except sqlite3.OperationalError as exc:
        if "interrupted" in str(exc):
            raise Interrupted(str(exc)) from exc
        raise
    finally:
        conn.set_progress_handler(None, grain)


# --- migrations ---------------------------------------------------------------------------

MIGRATION_NAMES = tuple(name for name, _ in sqlite_schema.STEPS)
assert MIGRATION_NAMES == tuple(name for name, _ in postgres_schema.STEPS), "the engines' migrations differ"

# The time a migration was applied, in the stored text form of registry rows (clock.utc_text_seconds),
# read from the database's own clock so this module needs no `now`.
_NOW_SECONDS_SQL = {
    SQLITE: "strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')",
    POSTGRESQL: "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"+00:00\"')",
}


def _has_migrations_table(conn: Conn) -> bool:
    if is_postgres_conn(conn):
        return conn.execute("SELECT to_regclass('_migrations') IS NOT NULL").fetchone()[0] is True
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = '_migrations'").fetchone() is not None


def migrate(conn: Conn) -> list[str]:
    """Apply the migrations this database lacks, each in its own transaction; their names."""
    steps: Sequence[tuple[str, Callable[[Any], None]]]
    if is_postgres_conn(conn):
        steps = postgres_schema.STEPS
    else:
        steps = cast(Sequence[tuple[str, Callable[[Any], None]]], sqlite_schema.STEPS)
    if _has_migrations_table(conn):
        done = {row[0] for row in conn.execute("SELECT name FROM _migrations").fetchall()}
        if all(name in done for name, _ in steps):
            return []  # the common case: one query a connection
    applied = []
    with _migration_lock(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        for name, step in steps:
            with transaction(conn):
                if conn.execute("SELECT 1 FROM _migrations WHERE name = ?", [name]).fetchone():
                    continue  # applied before, or by another process meanwhile
                step(conn)
                conn.execute(f"INSERT INTO _migrations VALUES (?, {_NOW_SECONDS_SQL[dialect(conn)]})", [name])
            applied.append(name)
    return applied


@contextlib.contextmanager
def _migration_lock(conn: Conn) -> Iterator[None]:
    """PostgreSQL: one process migrates at a time (nodes starting together); SQLite's writer lock
    already serialises each migration's transaction."""
    if not isinstance(conn, postgres.PgConnection):
        yield
        return
    postgres.named_lock(conn, "migrations")
    try:
        yield
    finally:
        postgres.release_named_lock(conn, "migrations")


def migrations_applied(conn: Conn) -> list[str]:
    """The names of the migrations this database has, in the order they were applied."""
    return [row[0] for row in conn.execute("SELECT name FROM _migrations ORDER BY name")]


# --- transactions -------------------------------------------------------------------------

# SQLite 3.7.0-3.51.2 (Debian 12 ships 3.40.1) has the WAL-reset bug: a commit racing a second
# checkpoint in another connection can corrupt the database. The mitigation: every write
# transaction and every checkpoint of every process holds one exclusive lock file, and automatic
# checkpoints are off, so a commit never overlaps a checkpoint. SQLite serialises writers anyway,
# so the lock costs one flock() call a transaction. See docs/operations.md.
# PostgreSQL needs none of it: its transactions run side by side (READ COMMITTED), and what must
# not interleave takes a row lock or an advisory lock (a code's: repos/registry.batch_for_serial).
CHECKPOINT_EVERY_COMMITS = 500  # per process; about SQLite's default of 1,000 WAL pages
_writer_locks: dict[tuple[int, str], tuple[int, threading.Lock]] = {}
_writer_locks_guard = threading.Lock()


def _writer_lock(conn: Conn) -> tuple[int, threading.Lock]:
    """The process's descriptor of the writer lock file, and the thread lock that goes with it:
    an flock belongs to the open file, so two threads of one process would both "hold" it."""
    path = db_file(conn)
    key = (os.getpid(), path)  # never share a descriptor across fork
    found = _writer_locks.get(key)
    if found is None:
        with _writer_locks_guard:
            found = _writer_locks.get(key)
            if found is None:
                fd = os.open(path + WRITER_LOCK_SUFFIX, os.O_RDWR | os.O_CREAT, 0o600)
                found = _writer_locks[key] = (fd, threading.Lock())
    return found


@contextlib.contextmanager
def transaction(conn: Conn) -> Iterator[Any]:
    """A write transaction. SQLite: the writer lock, BEGIN IMMEDIATE ... COMMIT (or ROLLBACK), and
    a checkpoint when due. PostgreSQL: BEGIN ... COMMIT, durable (synchronous_commit on)."""
    if isinstance(conn, postgres.PgConnection):
        with conn.transaction():
            yield conn
        return
    with _holding_writer_lock(conn):
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        _checkpoint_if_due(conn)


@contextlib.contextmanager
def _holding_writer_lock(conn: Conn) -> Iterator[None]:
    fd, in_process = _writer_lock(conn)
    with in_process:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


def _checkpoint_if_due(conn: Conn) -> None:
    # Counting commits, not the WAL file's size: a checkpoint leaves the file at its size (the
    # next writer rewinds it), so a size test would checkpoint after every commit.
    commits = getattr(conn, "commits", 0) + 1
    if isinstance(conn, Connection):
        conn.commits = commits
    if commits % CHECKPOINT_EVERY_COMMITS == 0:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # never waits for readers (an export may be running)


def try_transaction_lock(conn: Conn, name: str) -> bool:
    """Inside a transaction: the lock `name` until it ends, if free (PostgreSQL); SQLite's writer
    lock already excludes every other writer, so there it is always taken."""
    if isinstance(conn, postgres.PgConnection):
        return postgres.try_transaction_lock(conn, name)
    return True


def lock_holder(conn: Conn, name: str) -> dict[str, Any] | None:
    """PostgreSQL: which session holds the lock `name` (pid, client, since), or None; SQLite: None."""
    if isinstance(conn, postgres.PgConnection):
        return postgres.lock_holder(conn, name)
    return None


# --- named locks: a batch being issued, an audit slot -------------------------------------


class NamedLock:
    """An exclusive lock held until `release` (or the holder's death): on SQLite an flock on
    `<database>-<name>.lock`, on PostgreSQL an advisory lock of a connection's session."""

    def __init__(self, name: str, fd: int = -1, path: str = "", conn: Any = None, owns_conn: bool = False) -> None:
        self.name, self.fd, self.path, self.conn, self.owns_conn = name, fd, path, conn, owns_conn

    def descriptor(self) -> int:
        """The descriptor that keeps the lock held: SQLite's lock file, or the socket of the
        PostgreSQL session holding the advisory lock (the server ends the session, and frees the
        lock, only when every process with a copy of the socket has closed it). -1 if neither.
        A forked child must close it, or it keeps a dead parent's lock alive."""
        if self.fd >= 0:
            return self.fd
        return int(self.conn.raw.fileno()) if self.conn is not None else -1

    def release(self) -> None:
        """Let go (SQLite: remove the lock file first, so it never piles up)."""
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                postgres.release_named_lock(self.conn, self.name)
            if self.owns_conn:
                self.conn.close()
            self.conn = None
            return
        if self.fd < 0:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = -1


def acquire_lock(conn: Conn, name: str, *, wait: bool) -> NamedLock | None:
    """The lock `name` of `conn`'s database, held by this connection's session on PostgreSQL;
    None if another process holds it and `wait` is false.

    Unlike an flock, a PostgreSQL session lock is re-entrant: the session that holds `name` gets it
    again. Take a lock you may already hold (recovery of a batch) on another connection."""
    if isinstance(conn, postgres.PgConnection):
        if wait:
            postgres.named_lock(conn, name)
        elif not postgres.try_named_lock(conn, name):
            return None
        return NamedLock(name, conn=conn)
    return _flock(f"{db_file(conn)}-{name}.lock", name, wait)


def acquire_lock_at(where: Path | str, name: str) -> NamedLock | None:
    """The lock `name` of the database at `where`, without waiting, on a connection of its own."""
    text = location(where)
    if not is_postgres(text):
        return _flock(f"{text}-{name}.lock", name, wait=False)
    try:
        conn = postgres.PgConnection(postgres.connect_raw(text), text)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to {postgres.describe(text)}: {_first_line(exc)}") from None
    if postgres.try_named_lock(conn, name):
        return NamedLock(name, conn=conn, owns_conn=True)
    conn.close()
    return None


def _flock(path: str, name: str, wait: bool) -> NamedLock | None:
    # The file is removed by whoever holds the lock, before releasing it; so a process that locks
    # it checks afterwards that the path still names the file it locked, else tries again.
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            held = os.fstat(fd)
            current = os.stat(path)
        except BlockingIOError:
            os.close(fd)
            return None
        except FileNotFoundError:  # removed by its last holder after we opened it
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise
        if (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
            return NamedLock(name, fd=fd, path=path)
        os.close(fd)


# --- whole-file operations (backup.py) ----------------------------------------------------


def open_read_only(path: Path | str) -> sqlite3.Connection:
    """A read-only connection to a database file that is not migrated or configured (a backup)."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def integrity_problem(conn: sqlite3.Connection) -> str | None:
    """None if the file passes the engine's integrity check, else what the check said."""
    result = str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    return None if result == "ok" else result


def snapshot(path: Path | str, target: Path | str) -> None:
    """A consistent copy of a database in use into the empty file `target` (VACUUM INTO)."""
    source = sqlite3.connect(path, timeout=30)
    try:
        source.execute("VACUUM INTO ?", (str(target),))
    finally:
        source.close()


def fold_wal(path: Path | str) -> None:
    """Checkpoint the WAL into the main file, so the file alone holds the database."""
    source = sqlite3.connect(path)
    try:
        source.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        source.close()


SIDE_FILE_SUFFIXES = ("-wal", "-shm")  # the engine's files beside a database file
