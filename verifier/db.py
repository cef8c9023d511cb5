"""The persistence boundary: connect, configure, transactions with the writer lock, migrations.

Everything engine-specific lives here (SQLite today: pragmas, the writer lock, WAL checkpoints,
the error classes, the clock SQL of the migration table); the repository modules in
`verifier/repos/` own every other SQL statement and stick to portable SQL (ON CONFLICT,
RETURNING, `?` parameters). A connection is a plain DB-API connection (`sqlite3.Connection`, a
subclass that knows its file), what psycopg gives too; no wrapper library in between.

This module never reads the clock and never reads the environment: callers pass paths.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from . import errors, files

BUSY_TIMEOUT_MS = 10_000
WRITER_LOCK_SUFFIX = "-writer.lock"

IntegrityError = sqlite3.IntegrityError  # a constraint refused a write (a taken serial, a unique name)
DatabaseError = sqlite3.DatabaseError  # not a database, or a corrupt one
Error = sqlite3.Error  # any error of the engine


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
    """A connection that knows its database file (for the writer lock) and counts its commits."""

    db_file: str = ""
    commits: int = 0


def connect(path: Path | str, *, create: bool = True) -> Connection:
    """The registry at `path`, migrated, in WAL mode with foreign keys on."""
    path = Path(path)
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


def configure(conn: sqlite3.Connection) -> None:
    """The pragmas every connection uses: WAL, durable commits, foreign keys, a busy timeout."""
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")  # an acknowledged write survives power loss
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA wal_autocheckpoint = 0")  # checkpoints run under the writer lock: see transaction()


def db_file(conn: sqlite3.Connection) -> str:
    """The file of the connection's main database (the writer lock and batch locks sit beside it)."""
    path = getattr(conn, "db_file", "")
    if not path:
        path = conn.execute("PRAGMA database_list").fetchone()[2]
        if isinstance(conn, Connection):
            conn.db_file = path
    return str(path)


def ping(conn: sqlite3.Connection) -> None:
    """A round trip to the database (the health check); the engine's error if it cannot answer."""
    conn.execute("SELECT 1").fetchone()


# --- rows ---------------------------------------------------------------------------------


def dicts(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    """The cursor's rows as dicts keyed by column name (DB-API `description`: any engine)."""
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def one_dict(cursor: sqlite3.Cursor) -> dict[str, Any] | None:
    """The cursor's first row as a dict, or None."""
    row = cursor.fetchone()
    if row is None:
        return None
    return dict(zip([column[0] for column in cursor.description], row))


def placeholders(values: Sequence[object]) -> str:
    """`?, ?, ?` for an IN list of `values` (callers keep lists under MAX_PARAMETERS)."""
    return ",".join("?" * len(values))


MAX_PARAMETERS = 500  # per statement; SQLite's limit is 32,766 since 3.32, 999 before


def _execute_script(conn: sqlite3.Connection, script: str) -> None:
    """Run the statements of `script` one by one inside the caller's transaction (sqlite3's
    `executescript` would COMMIT it first, so a failed migration would be half applied)."""
    statement = ""
    for piece in script.split(";"):
        statement += piece + ";"
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""
    if statement.strip(" \n;"):
        conn.execute(statement.rstrip(";"))


# --- migrations ---------------------------------------------------------------------------


def _m001_registry(conn: sqlite3.Connection) -> None:
    _execute_script(
        conn,
        """
        CREATE TABLE enterprises (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            credit_code TEXT UNIQUE,          -- unified social credit code (统一社会信用代码)
            created_at TEXT NOT NULL
        );
        CREATE TABLE products (
            id INTEGER PRIMARY KEY,
            enterprise_id INTEGER NOT NULL REFERENCES enterprises(id),
            name TEXT NOT NULL,
            spec TEXT NOT NULL DEFAULT '',
            gtin TEXT,
            created_at TEXT NOT NULL,
            UNIQUE (enterprise_id, name, spec)
        );
        CREATE TABLE batches (
            id INTEGER PRIMARY KEY,           -- the batch number signed into compact codes
            enterprise_id INTEGER NOT NULL REFERENCES enterprises(id),
            product_id INTEGER NOT NULL REFERENCES products(id),
            mark TEXT NOT NULL,
            form TEXT NOT NULL,
            lot TEXT,
            gtin TEXT,
            production_date TEXT,
            expiry_date TEXT,
            count INTEGER NOT NULL,
            kid TEXT NOT NULL,
            base_url TEXT NOT NULL,
            pin INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL,
            output_dir TEXT,
            issuing_pid INTEGER,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            note TEXT NOT NULL DEFAULT '',
            recalled_at TEXT,
            recall_reason TEXT
        );
        CREATE INDEX batches_enterprise ON batches(enterprise_id);
        -- One row per issued code: serials are random, so ranges cannot describe a batch.
        -- The serial is the rowid: ~15 bytes a code. No index on batch_id: it doubled the size
        -- and the insert cost (scripts/bench_issue.py); only `batch export` scans by batch.
        CREATE TABLE codes (
            serial INTEGER PRIMARY KEY,
            batch_id INTEGER NOT NULL REFERENCES batches(id)
        );
        """,
    )


def _m002_scans(conn: sqlite3.Connection) -> None:
    _execute_script(
        conn,
        """
        -- Every lookup, whatever its verdict. Personal data is minimised at the source: a truncated
        -- IP (/24, /48), a keyed hash of the full IP for abuse correlation, a coarse region, a coarse
        -- user agent, and a keyed hash of the browser session; never a full IP or a position.
        CREATE TABLE scans (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,                 -- UTC, ISO 8601 with milliseconds
            channel TEXT NOT NULL,            -- qr | manual | api
            reason TEXT NOT NULL,             -- the verdict's stable reason code
            detail TEXT,
            serial INTEGER,
            batch_id INTEGER,
            kid TEXT,
            counted INTEGER NOT NULL DEFAULT 0,  -- 1 if this scan added to the code's check count
            checks INTEGER,                   -- the code's check count after this scan
            pin TEXT,                         -- first | reused | mismatch, when a PIN was typed
            ip_prefix TEXT,
            ip_hash TEXT,
            country TEXT,
            region TEXT,
            city TEXT,
            user_agent TEXT,
            session_hash TEXT
        );
        -- One index only: every index is another random page written and fsynced on every scan
        -- (measured in scripts/bench_lookup.py). The audit adds what its queries need.
        CREATE INDEX scans_at ON scans(at);
        -- The per-code state a lookup needs, created on a code's first check. `sessions` keeps the
        -- hashes of the last browser sessions that counted, so a repeat view counts once.
        CREATE TABLE code_checks (
            serial INTEGER PRIMARY KEY,
            checks INTEGER NOT NULL,
            first_checked_at TEXT NOT NULL,
            last_checked_at TEXT NOT NULL,
            pin_verified_at TEXT,
            sessions TEXT NOT NULL DEFAULT ''
        );
        -- Fixed-window request counters per client (a keyed hash), shared by every server process.
        CREATE TABLE rate_limits (
            client TEXT NOT NULL,
            window INTEGER NOT NULL,
            hits INTEGER NOT NULL,
            PRIMARY KEY (client, window)
        ) WITHOUT ROWID;
        """,
    )


def _m003_audit_log(conn: sqlite3.Connection) -> None:
    _execute_script(
        conn,
        """
        -- The tamper-evident log (verifier/auditlog.py): hash-chained, append-only.
        CREATE TABLE audit_log (
            seq INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            kind TEXT NOT NULL,
            actor TEXT NOT NULL DEFAULT '',
            body TEXT NOT NULL,
            personal_hash TEXT NOT NULL DEFAULT '',
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TABLE audit_checkpoints (
            seq INTEGER NOT NULL,
            head TEXT NOT NULL,
            at TEXT NOT NULL,
            kid TEXT NOT NULL,
            signature TEXT NOT NULL
        );
        CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
            BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
        CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
            BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
        ALTER TABLE scans ADD COLUMN log_seq INTEGER;
        ALTER TABLE scans ADD COLUMN personal_salt TEXT;
        -- Scans are a log too: never deleted, and only the retention purge may change them,
        -- by erasing personal fields.
        CREATE TRIGGER scans_no_delete BEFORE DELETE ON scans
            BEGIN SELECT RAISE(ABORT, 'scans are append-only'); END;
        CREATE TRIGGER scans_only_purge BEFORE UPDATE ON scans
            WHEN NEW.id IS NOT OLD.id
               OR NEW.at IS NOT OLD.at
               OR NEW.channel IS NOT OLD.channel
               OR NEW.reason IS NOT OLD.reason
               OR NEW.detail IS NOT OLD.detail
               OR NEW.serial IS NOT OLD.serial
               OR NEW.batch_id IS NOT OLD.batch_id
               OR NEW.kid IS NOT OLD.kid
               OR NEW.counted IS NOT OLD.counted
               OR NEW.checks IS NOT OLD.checks
               OR NEW.pin IS NOT OLD.pin
               OR NEW.country IS NOT OLD.country
               OR NEW.log_seq IS NOT OLD.log_seq
               OR (NEW.ip_prefix IS NOT NULL AND NEW.ip_prefix IS NOT OLD.ip_prefix)
               OR (NEW.ip_hash IS NOT NULL AND NEW.ip_hash IS NOT OLD.ip_hash)
               OR (NEW.region IS NOT NULL AND NEW.region IS NOT OLD.region)
               OR (NEW.city IS NOT NULL AND NEW.city IS NOT OLD.city)
               OR (NEW.user_agent IS NOT NULL AND NEW.user_agent IS NOT OLD.user_agent)
               OR (NEW.session_hash IS NOT NULL AND NEW.session_hash IS NOT OLD.session_hash)
               OR (NEW.personal_salt IS NOT NULL AND NEW.personal_salt IS NOT OLD.personal_salt)
            BEGIN SELECT RAISE(ABORT, 'scans can only have personal fields erased'); END;
        """,
    )


def _m004_accounts(conn: sqlite3.Connection) -> None:
    _execute_script(
        conn,
        """
        CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            username TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL CHECK (role IN ('admin', 'inspector', 'enterprise')),
            enterprise_id INTEGER REFERENCES enterprises(id),
            password_hash TEXT NOT NULL,
            disabled INTEGER NOT NULL DEFAULT 0,
            failed_logins INTEGER NOT NULL DEFAULT 0,
            locked_until TEXT,
            created_at TEXT NOT NULL
        );
        CREATE TABLE api_tokens (
            id INTEGER PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id),
            token_hash TEXT NOT NULL UNIQUE,
            label TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            revoked_at TEXT
        );
        CREATE TABLE web_sessions (
            id_hash TEXT PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id),
            created_at TEXT NOT NULL,
            last_seen_at TEXT NOT NULL
        ) WITHOUT ROWID;
        -- The audit's filters by batch and by code, newest first (keyset pagination on id).
        CREATE INDEX scans_batch ON scans(batch_id, id) WHERE batch_id IS NOT NULL;
        CREATE INDEX scans_serial ON scans(serial, id) WHERE serial IS NOT NULL;
        -- Rare verdicts are what inspectors look for; the common ones are never filtered alone.
        CREATE INDEX scans_reason ON scans(reason, id) WHERE reason NOT IN ('genuine', 'genuine-repeat');
        """,
    )


def _m005_reported_codes(conn: sqlite3.Connection) -> None:
    _execute_script(
        conn,
        """
        CREATE TABLE reported_codes (
            serial INTEGER PRIMARY KEY,
            reported_at TEXT NOT NULL,
            reported_by TEXT NOT NULL,
            note TEXT NOT NULL DEFAULT ''
        );
        """,
    )


def _m006_login_throttle(conn: sqlite3.Connection) -> None:
    # Failed logins by client address and by the name tried, for throttles that a stranger cannot
    # turn into a lock-out (verifier/accounts.py). users.failed_logins and locked_until are unused.
    _execute_script(
        conn,
        """
        CREATE TABLE login_failures (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            client_hash TEXT NOT NULL,      -- keyed hash of the IPv4 address or IPv6 /64, never the address
            account_hash TEXT               -- keyed hash of the user name tried, known or not; NULL: refused unchecked
        );
        CREATE INDEX login_failures_client ON login_failures(client_hash, at);
        CREATE INDEX login_failures_account ON login_failures(account_hash, at) WHERE account_hash IS NOT NULL;
        CREATE INDEX login_failures_at ON login_failures(at);
        """,
    )


def _m007_ratelimit(conn: sqlite3.Connection) -> None:
    # Rate-limit counters moved to their own non-durable file (verifier/ratelimit.py): a request
    # over the limit must cost no write, let alone an fsync, on the registry.
    conn.execute("DROP TABLE IF EXISTS rate_limits")


def _m008_pin_attempts(conn: sqlite3.Connection) -> None:
    _execute_script(
        conn,
        """
        -- Wrong scratch-off PINs per code in the current window (verifier/lookup.py), so a PIN cannot
        -- be guessed from many addresses: past the limit, PIN attempts for that code wait.
        CREATE TABLE pin_attempts (
            serial INTEGER PRIMARY KEY,
            window_start TEXT NOT NULL,       -- UTC: the first wrong PIN of the current window
            failures INTEGER NOT NULL         -- wrong PINs since window_start
        );
        """,
    )


MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("001_registry", _m001_registry),
    ("002_scans", _m002_scans),
    ("003_audit_log", _m003_audit_log),
    ("004_accounts", _m004_accounts),
    ("005_reported_codes", _m005_reported_codes),
    ("006_login_throttle", _m006_login_throttle),
    ("007_ratelimit", _m007_ratelimit),
    ("008_pin_attempts", _m008_pin_attempts),
]


# The time a migration was applied, in the stored text form of registry rows (clock.utc_text_seconds),
# read from the database's own clock so this module needs no `now`.
_NOW_SECONDS_SQL = "strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')"


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply the migrations this database lacks, each in its own transaction; their names."""
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {row[0] for row in conn.execute("SELECT name FROM _migrations").fetchall()}
    applied = []
    for name, step in MIGRATIONS:
        if name in done:
            continue
        with transaction(conn):
            if conn.execute("SELECT 1 FROM _migrations WHERE name = ?", [name]).fetchone():
                continue  # another process migrated meanwhile
            step(conn)
            conn.execute(f"INSERT INTO _migrations VALUES (?, {_NOW_SECONDS_SQL})", [name])
        applied.append(name)
    return applied


def migrations_applied(conn: sqlite3.Connection) -> list[str]:
    """The names of the migrations this database has, in the order they were applied."""
    return [row[0] for row in conn.execute("SELECT name FROM _migrations ORDER BY rowid")]


# --- transactions: the writer lock --------------------------------------------------------

# SQLite 3.7.0-3.51.2 (Debian 12 ships 3.40.1) has the WAL-reset bug: a commit racing a second
# checkpoint in another connection can corrupt the database. The mitigation: every write
# transaction and every checkpoint of every process holds one exclusive lock file, and automatic
# checkpoints are off, so a commit never overlaps a checkpoint. SQLite serialises writers anyway,
# so the lock costs one flock() call a transaction. See docs/operations.md.
CHECKPOINT_EVERY_COMMITS = 500  # per process; about SQLite's default of 1,000 WAL pages
_writer_locks: dict[tuple[int, str], int] = {}


def _writer_lock_fd(conn: sqlite3.Connection) -> int:
    path = db_file(conn)
    key = (os.getpid(), path)  # flock belongs to an open file: never share one across fork
    fd = _writer_locks.get(key)
    if fd is None:
        fd = os.open(path + WRITER_LOCK_SUFFIX, os.O_RDWR | os.O_CREAT, 0o600)
        _writer_locks[key] = fd
    return fd


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """The writer lock, BEGIN IMMEDIATE ... COMMIT (or ROLLBACK), and a checkpoint when due."""
    fd = _writer_lock_fd(conn)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        _checkpoint_if_due(conn)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _checkpoint_if_due(conn: sqlite3.Connection) -> None:
    # Counting commits, not the WAL file's size: a checkpoint leaves the file at its size (the
    # next writer rewinds it), so a size test would checkpoint after every commit.
    commits = getattr(conn, "commits", 0) + 1
    if isinstance(conn, Connection):
        conn.commits = commits
    if commits % CHECKPOINT_EVERY_COMMITS == 0:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # never waits for readers (an export may be running)


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
