"""The SQLite registry through sqlite-utils: schema migrations, enterprises, products, batches, codes."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import sqlite_utils

from . import files

BUSY_TIMEOUT_MS = 10_000
WRITER_LOCK_SUFFIX = "-writer.lock"

BATCH_ISSUING = "issuing"  # rows exist but the batch is not registered until its outputs are complete
BATCH_ACTIVE = "active"
BATCH_RECALLED = "recalled"


class StoreError(Exception):
    """A registry operation that cannot be done; the message is for the user."""


def connect(path: Path | str, *, create: bool = True) -> sqlite_utils.Database:
    """The registry at `path`, migrated, in WAL mode with foreign keys on."""
    path = Path(path)
    if not create and not path.exists():
        raise StoreError(f"no database at {path} (issue a batch first, or set VERIFIER_DB)")
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
    configure(conn)
    db = sqlite_utils.Database(conn)
    migrate(db)
    return db


def configure(conn: sqlite3.Connection) -> None:
    """The pragmas every connection uses: WAL, durable commits, foreign keys, a busy timeout."""
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")  # an acknowledged write survives power loss
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA wal_autocheckpoint = 0")  # checkpoints run under the writer lock: see transaction()


# --- migrations ---------------------------------------------------------------------------


def _m001_registry(db: sqlite_utils.Database) -> None:
    db.executescript(
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
        """
    )


def _m002_scans(db: sqlite_utils.Database) -> None:
    db.executescript(
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
        """
    )


def _m003_audit_log(db: sqlite_utils.Database) -> None:
    db.executescript(
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
        """
    )


def _m004_accounts(db: sqlite_utils.Database) -> None:
    db.executescript(
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
        """
    )


def _m005_reported_codes(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE reported_codes (
            serial INTEGER PRIMARY KEY,
            reported_at TEXT NOT NULL,
            reported_by TEXT NOT NULL,
            note TEXT NOT NULL DEFAULT ''
        );
        """
    )


def _m006_login_throttle(db: sqlite_utils.Database) -> None:
    # Failed logins by client address and by the name tried, for throttles that a stranger cannot
    # turn into a lock-out (verifier/accounts.py). users.failed_logins and locked_until are unused.
    db.executescript(
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
        """
    )


def _m007_ratelimit(db: sqlite_utils.Database) -> None:
    # Rate-limit counters moved to their own non-durable file (verifier/ratelimit.py): a request
    # over the limit must cost no write, let alone an fsync, on the registry.
    db.execute("DROP TABLE IF EXISTS rate_limits")


def _m008_pin_attempts(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        -- Wrong scratch-off PINs per code in the current window (verifier/lookup.py), so a PIN cannot
        -- be guessed from many addresses: past the limit, PIN attempts for that code wait.
        CREATE TABLE pin_attempts (
            serial INTEGER PRIMARY KEY,
            window_start TEXT NOT NULL,       -- UTC: the first wrong PIN of the current window
            failures INTEGER NOT NULL         -- wrong PINs since window_start
        );
        """
    )


MIGRATIONS: list[tuple[str, Callable[[sqlite_utils.Database], None]]] = [
    ("001_registry", _m001_registry),
    ("002_scans", _m002_scans),
    ("003_audit_log", _m003_audit_log),
    ("004_accounts", _m004_accounts),
    ("005_reported_codes", _m005_reported_codes),
    ("006_login_throttle", _m006_login_throttle),
    ("007_ratelimit", _m007_ratelimit),
    ("008_pin_attempts", _m008_pin_attempts),
]


def migrate(db: sqlite_utils.Database) -> list[str]:
    """Apply the migrations this database lacks, each in its own transaction; their names."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {row[0] for row in db.execute("SELECT name FROM _migrations").fetchall()}
    applied = []
    for name, step in MIGRATIONS:
        if name in done:
            continue
        with transaction(db):
            if db.execute("SELECT 1 FROM _migrations WHERE name = ?", [name]).fetchone():
                continue  # another process migrated meanwhile
            step(db)
            db.execute("INSERT INTO _migrations VALUES (?, ?)", [name, now_text()])
        applied.append(name)
    return applied


# SQLite 3.7.0-3.51.2 (Debian 12 ships 3.40.1) has the WAL-reset bug: a commit racing a second
# checkpoint in another connection can corrupt the database. The mitigation: every write
# transaction and every checkpoint of every process holds one exclusive lock file, and automatic
# checkpoints are off, so a commit never overlaps a checkpoint. SQLite serialises writers anyway,
# so the lock costs one flock() call a transaction. See docs/operations.md.
CHECKPOINT_EVERY_COMMITS = 500  # per process; about SQLite's default of 1,000 WAL pages
_writer_locks: dict[tuple[int, str], int] = {}


class Connection(sqlite3.Connection):
    """A connection that knows its database file (for the writer lock) and counts its commits."""

    db_file: str = ""
    commits: int = 0


def _db_file(conn: sqlite3.Connection) -> str:
    path = getattr(conn, "db_file", "")
    if not path:
        path = conn.execute("PRAGMA database_list").fetchone()[2]
        if isinstance(conn, Connection):
            conn.db_file = path
    return path


def _writer_lock_fd(conn: sqlite3.Connection) -> int:
    path = _db_file(conn)
    key = (os.getpid(), path)  # flock belongs to an open file: never share one across fork
    fd = _writer_locks.get(key)
    if fd is None:
        fd = os.open(path + WRITER_LOCK_SUFFIX, os.O_RDWR | os.O_CREAT, 0o600)
        _writer_locks[key] = fd
    return fd


@contextlib.contextmanager
def transaction(db: sqlite_utils.Database | sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """The writer lock, BEGIN IMMEDIATE ... COMMIT (or ROLLBACK), and a checkpoint when due."""
    conn = db.conn if isinstance(db, sqlite_utils.Database) else db
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


def now_text(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return now.astimezone(dt.UTC).isoformat(timespec="seconds")


# --- enterprises and products -------------------------------------------------------------

_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def validate_credit_code(code: str) -> str:
    """An 18-character unified social credit code (GB 32100-2015) with a valid check character."""
    code = code.strip().upper()
    if not re.fullmatch(f"[{_USCC_CHARS}]{{18}}", code):
        raise StoreError("a unified social credit code has 18 characters of 0-9 and A-Y without I, O, S, V, Z")
    total = sum(_USCC_CHARS.index(ch) * w for ch, w in zip(code, _USCC_WEIGHTS))
    if _USCC_CHARS[(31 - total % 31) % 31] != code[17]:
        raise StoreError(f"unified social credit code {code} has a wrong check character")
    return code


def ensure_enterprise(db: sqlite_utils.Database, name: str, credit_code: str | None = None) -> int:
    """The id of enterprise `name`, created on first use."""
    name = name.strip()
    if not name:
        raise StoreError("an enterprise needs a name")
    code = validate_credit_code(credit_code) if credit_code else None
    row = db.execute("SELECT id, credit_code FROM enterprises WHERE name = ?", [name]).fetchone()
    if row:
        if code and row[1] and row[1] != code:
            raise StoreError(f"enterprise {name!r} is registered with credit code {row[1]}, not {code}")
        if code and not row[1]:
            db.execute("UPDATE enterprises SET credit_code = ? WHERE id = ?", [code, row[0]])
        return row[0]
    try:
        cur = db.execute(
            "INSERT INTO enterprises (name, credit_code, created_at) VALUES (?, ?, ?)", [name, code, now_text()]
        )
    except sqlite3.IntegrityError:
        raise StoreError(f"credit code {code} already belongs to another enterprise") from None
    return cur.lastrowid


def ensure_product(
    db: sqlite_utils.Database, enterprise_id: int, name: str, spec: str = "", gtin: str | None = None
) -> int:
    """The id of the enterprise's product `name` / `spec`, created on first use."""
    name = name.strip()
    if not name:
        raise StoreError("a product needs a name")
    row = db.execute(
        "SELECT id, gtin FROM products WHERE enterprise_id = ? AND name = ? AND spec = ?", [enterprise_id, name, spec]
    ).fetchone()
    if row:
        if gtin and row[1] and row[1] != gtin:
            raise StoreError(f"product {name!r} has GTIN {row[1]}, not {gtin}")
        if gtin and not row[1]:
            db.execute("UPDATE products SET gtin = ? WHERE id = ?", [gtin, row[0]])
        return row[0]
    cur = db.execute(
        "INSERT INTO products (enterprise_id, name, spec, gtin, created_at) VALUES (?, ?, ?, ?, ?)",
        [enterprise_id, name, spec, gtin, now_text()],
    )
    return cur.lastrowid


# --- batches and codes --------------------------------------------------------------------


def insert_codes(conn: sqlite3.Connection, batch_id: int, serials: Iterable[int]) -> None:
    """Register serials for a batch; sqlite3.IntegrityError if one is already taken."""
    conn.executemany("INSERT INTO codes (serial, batch_id) VALUES (?, ?)", ((s, batch_id) for s in serials))


def serials_taken(conn: sqlite3.Connection, serials: list[int]) -> set[int]:
    """Which of `serials` are registered already."""
    taken: set[int] = set()
    for start in range(0, len(serials), 500):
        chunk = serials[start : start + 500]
        marks = ",".join("?" * len(chunk))
        taken.update(r[0] for r in conn.execute(f"SELECT serial FROM codes WHERE serial IN ({marks})", chunk))
    return taken


BATCH_VIEW = """
SELECT b.*, e.name AS enterprise, e.credit_code, p.name AS product, p.spec AS spec
FROM batches b JOIN enterprises e ON e.id = b.enterprise_id JOIN products p ON p.id = b.product_id
"""


def batch_row(db: sqlite_utils.Database, batch_id: int) -> dict:
    """A batch with its enterprise and product, whatever its status."""
    rows = list(db.query(BATCH_VIEW + " WHERE b.id = ?", [batch_id]))
    if not rows:
        raise StoreError(f"no batch {batch_id}")
    return rows[0]


def list_batches(db: sqlite_utils.Database, enterprise: str | None = None) -> list[dict]:
    """Registered batches, newest first (batches still being issued are not registered)."""
    sql = BATCH_VIEW + " WHERE b.status != ?"
    params: list[object] = [BATCH_ISSUING]
    if enterprise:
        sql += " AND e.name = ?"
        params.append(enterprise)
    return [dict(r) for r in db.query(sql + " ORDER BY b.id DESC", params)]


def get_batch(db: sqlite_utils.Database, batch_id: int) -> dict:
    """One registered batch; StoreError if there is none with that number."""
    rows = list(db.query(BATCH_VIEW + " WHERE b.id = ? AND b.status != ?", [batch_id, BATCH_ISSUING]))
    if not rows:
        raise StoreError(f"no batch {batch_id} (see `verifier batch list`)")
    return rows[0]


def recall_batch(
    db: sqlite_utils.Database, batch_id: int, reason: str, now: dt.datetime | None = None, actor: str = ""
) -> dict:
    """Mark a batch recalled with a reason (and log it); lookups then report it."""
    from . import auditlog

    if not reason.strip():
        raise StoreError("a recall needs a reason (--reason)")
    with transaction(db) as conn:
        batch = get_batch(db, batch_id)
        if batch["status"] == BATCH_RECALLED:
            raise StoreError(f"batch {batch_id} was already recalled on {batch['recalled_at']}")
        at = now_text(now)
        conn.execute(
            "UPDATE batches SET status = ?, recalled_at = ?, recall_reason = ? WHERE id = ?",
            [BATCH_RECALLED, at, reason.strip(), batch_id],
        )
        auditlog.append(
            conn, "batch.recalled", {"batch": batch_id, "reason": reason.strip()}, auditlog.now_text(now), actor=actor
        )
    return get_batch(db, batch_id)


def batch_serials(db: sqlite_utils.Database, batch_id: int) -> Iterable[int]:
    """The serials of a batch in serial order, streamed."""
    cursor = db.conn.execute("SELECT serial FROM codes WHERE batch_id = ? ORDER BY serial", [batch_id])
    for row in cursor:
        yield row[0]
