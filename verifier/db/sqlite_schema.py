"""SQLite's schema: the migrations, in order, as SQLite statements (verifier/db/postgres_schema.py
holds the same schema for PostgreSQL, migration by migration, under the same names)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable


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


def _m009_sequencer(conn: sqlite3.Connection) -> None:
    # PostgreSQL's log sequencer needs a queue (verifier/db/postgres_schema.py); on SQLite every
    # entry is chained inside the transaction that writes it, under the writer lock, so nothing waits.
    pass


def _m010_transparency_log(conn: sqlite3.Connection) -> None:
    _execute_script(
        conn,
        """
        -- The Merkle tree over audit_log (verifier/logtree.py, RFC 9162): the hash of every complete
        -- subtree, 2**level leaves from leaf idx * 2**level, written once by the sequencer.
        CREATE TABLE log_hashes (
            level INTEGER NOT NULL,
            idx INTEGER NOT NULL,
            hash BLOB NOT NULL,
            PRIMARY KEY (level, idx)
        ) WITHOUT ROWID;
        CREATE TRIGGER log_hashes_no_update BEFORE UPDATE ON log_hashes
            BEGIN SELECT RAISE(ABORT, 'the log tree is append-only'); END;
        CREATE TRIGGER log_hashes_no_delete BEFORE DELETE ON log_hashes
            BEGIN SELECT RAISE(ABORT, 'the log tree is append-only'); END;
        -- Signed checkpoints (C2SP tlog-checkpoint notes) and the witnesses' cosignature lines.
        CREATE TABLE log_checkpoints (
            size INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            note TEXT NOT NULL
        );
        CREATE TRIGGER log_checkpoints_no_update BEFORE UPDATE ON log_checkpoints
            BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
        CREATE TRIGGER log_checkpoints_no_delete BEFORE DELETE ON log_checkpoints
            BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
        CREATE TABLE log_cosignatures (
            size INTEGER NOT NULL REFERENCES log_checkpoints(size),
            witness TEXT NOT NULL,
            at TEXT NOT NULL,
            line TEXT NOT NULL,
            PRIMARY KEY (size, witness)
        );
        CREATE TRIGGER log_cosignatures_no_update BEFORE UPDATE ON log_cosignatures
            BEGIN SELECT RAISE(ABORT, 'cosignatures are append-only'); END;
        CREATE TRIGGER log_cosignatures_no_delete BEFORE DELETE ON log_cosignatures
            BEGIN SELECT RAISE(ABORT, 'cosignatures are append-only'); END;
        """,
    )


def _m011_lifecycle(conn: sqlite3.Connection) -> None:
    # Each code's life after issue (verifier/lifecycle.py, docs/traceability.md): how a batch is
    # released, dealers and their sales regions, the events that move codes, their current state,
    # inspection reports, and consumers' reports.
    _execute_script(
        conn,
        """
        ALTER TABLE batches ADD COLUMN unit TEXT NOT NULL DEFAULT 'item';          -- item | case | pallet
        ALTER TABLE batches ADD COLUMN activation TEXT NOT NULL DEFAULT 'issue';   -- issue | batch | case | shipment
        ALTER TABLE batches ADD COLUMN activated_at TEXT;      -- when the whole batch was released (activation 'batch')
        ALTER TABLE batches ADD COLUMN production_place TEXT;  -- shown to consumers: the factory's town
        ALTER TABLE batches ADD COLUMN report_sha256 TEXT;     -- the inspection report shown to consumers
        CREATE TABLE dealers (
            id INTEGER PRIMARY KEY,
            enterprise_id INTEGER NOT NULL REFERENCES enterprises(id),
            code TEXT NOT NULL,               -- the enterprise's own dealer number
            name TEXT NOT NULL,
            gln TEXT,                         -- GS1 Global Location Number, for EPCIS destinations
            regions TEXT NOT NULL,            -- the sales regions: GB/T 2260 codes, space-separated
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            UNIQUE (enterprise_id, code)
        );
        CREATE UNIQUE INDEX dealers_gln ON dealers(enterprise_id, gln) WHERE gln IS NOT NULL;
        -- One row per lifecycle event (an EPCIS ObjectEvent or AggregationEvent, or a block from the
        -- CLI), and the codes it changed: those it names and, through a case, the items in it.
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            event_id TEXT NOT NULL UNIQUE,    -- the EPCIS eventID (given, or a urn:uuid: made on capture)
            type TEXT NOT NULL,               -- ObjectEvent | AggregationEvent
            action TEXT NOT NULL,             -- ADD | OBSERVE | DELETE
            biz_step TEXT NOT NULL,           -- CBV: commissioning, packing, unpacking, shipping, ...
            disposition TEXT,
            event_time TEXT NOT NULL,         -- UTC, when it happened
            recorded_at TEXT NOT NULL,        -- UTC, when verifier captured it
            enterprise_id INTEGER NOT NULL REFERENCES enterprises(id),
            actor TEXT NOT NULL,
            batch_id INTEGER,                 -- a batch released as a whole (no codes listed)
            parent INTEGER,                   -- AggregationEvent: the case's serial
            dealer_id INTEGER REFERENCES dealers(id),
            region TEXT,                      -- shipping: the dealer's sales regions
            read_point TEXT,                  -- where it was seen (EPCIS readPoint), when given
            biz_location TEXT,                -- where the goods are after it (EPCIS bizLocation), when given
            reason TEXT,                      -- a block's reason: counterfeit | stolen | destroyed
            codes INTEGER NOT NULL,           -- how many codes it changed
            document TEXT NOT NULL            -- the EPCIS event as captured (JSON)
        );
        CREATE INDEX events_time ON events(event_time);
        CREATE TABLE event_codes (
            serial INTEGER NOT NULL,
            event INTEGER NOT NULL,
            PRIMARY KEY (serial, event)
        ) WITHOUT ROWID;
        -- Each code's current state, written by its events; no row: as its batch says (issued, or
        -- active when the batch is released on issue or as a whole).
        CREATE TABLE code_states (
            serial INTEGER PRIMARY KEY,
            state TEXT NOT NULL,              -- issued | active | shipped | sold | blocked
            parent INTEGER,                   -- the case (or pallet) it is packed in
            dealer_id INTEGER,                -- the dealer it was last shipped to
            region TEXT,                      -- that shipment's sales regions (GB/T 2260)
            shipped_at TEXT,
            received_at TEXT,
            sold_at TEXT,
            reason TEXT,                      -- why it is blocked
            event INTEGER NOT NULL            -- the last event that changed it
        );
        CREATE INDEX code_states_parent ON code_states(parent) WHERE parent IS NOT NULL;
        -- Documents an enterprise attaches to a batch (inspection reports), served by their SHA-256.
        CREATE TABLE documents (
            sha256 TEXT PRIMARY KEY,
            media_type TEXT NOT NULL,
            name TEXT NOT NULL,
            size INTEGER NOT NULL,
            content BLOB NOT NULL,
            attached_at TEXT NOT NULL,
            attached_by TEXT NOT NULL
        );
        -- What consumers report from a verdict page, minimised: no address, a coarse region, the
        -- photo re-encoded without metadata, the contact only when given (erased by `audit purge`).
        CREATE TABLE consumer_reports (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            serial INTEGER,
            enterprise_id INTEGER,
            verdict TEXT NOT NULL,            -- the reason the page showed
            what TEXT NOT NULL,               -- category: fake | damaged | diverted | other
            details TEXT NOT NULL,
            bought_at TEXT NOT NULL,          -- where they bought it, as they wrote it
            region TEXT,
            photo BLOB,
            photo_sha256 TEXT,
            contact TEXT,
            brand_may_contact INTEGER NOT NULL DEFAULT 0,  -- 1: the consumer let the brand see the contact
            status TEXT NOT NULL DEFAULT 'open',  -- open | answered | closed
            answer TEXT,
            personal_salt TEXT NOT NULL
        );
        CREATE INDEX consumer_reports_enterprise ON consumer_reports(enterprise_id, id);
        """,
    )


def _m012_certificates(conn: sqlite3.Connection) -> None:
    # The issuing association's mark certificates (verifier/certificates.py, docs/certificates.md):
    # the right of an enterprise to use a mark on named products (or all of its products) until a
    # date; the certificate a batch was issued under; the enterprise's quality commitment.
    _execute_script(
        conn,
        """
        CREATE TABLE certificates (
            id INTEGER PRIMARY KEY,
            number TEXT NOT NULL UNIQUE,      -- e.g. ZJWD-2026-0001
            association TEXT NOT NULL,        -- who granted it
            enterprise_id INTEGER NOT NULL REFERENCES enterprises(id),
            mark TEXT NOT NULL,               -- codes.MARKS slug
            products TEXT,                    -- product ids it covers, space-separated; NULL: all the enterprise's
            valid_from TEXT NOT NULL,         -- dates (YYYY-MM-DD), China time, both days included
            valid_until TEXT NOT NULL,
            status TEXT NOT NULL,             -- valid | suspended | revoked
            reason TEXT,                      -- why it was suspended or revoked
            granted_at TEXT NOT NULL,
            granted_by TEXT NOT NULL,
            changed_at TEXT,                  -- the last suspension, reinstatement or revocation
            changed_by TEXT
        );
        CREATE INDEX certificates_mark ON certificates(mark);
        ALTER TABLE batches ADD COLUMN certificate_id INTEGER REFERENCES certificates(id);
        ALTER TABLE enterprises ADD COLUMN commitment TEXT;      -- 质量诚信承诺, shown on genuine pages
        ALTER TABLE enterprises ADD COLUMN commitment_url TEXT;
        """,
    )


def _m014_cases(conn: sqlite3.Connection) -> None:
    # Anomalies worked as cases (verifier/cases.py, docs/cases.md): the case, its notes and the
    # scans linked to it as evidence; every change is a "case.*" log entry, and the partial index
    # finds a case's entries for its evidence export without reading the scans' entries.
    _execute_script(
        conn,
        """
        CREATE TABLE cases (
            id INTEGER PRIMARY KEY,
            rule TEXT NOT NULL,               -- the anomaly's rule (verifier/anomalies.py)
            subject TEXT NOT NULL,
            serial INTEGER,
            batch_id INTEGER,
            enterprise_id INTEGER,            -- whose codes it is about (None: inspectors' only)
            severity TEXT,
            details TEXT NOT NULL,            -- the anomaly's details, canonical JSON
            status TEXT NOT NULL DEFAULT 'open',  -- open | investigating | closed
            assignee TEXT,                    -- an inspector's user name
            opened_at TEXT NOT NULL,
            opened_by TEXT NOT NULL,
            closed_at TEXT,
            closed_by TEXT
        );
        CREATE INDEX cases_status ON cases(status, id);
        CREATE INDEX cases_enterprise ON cases(enterprise_id, id);
        CREATE TABLE case_notes (
            id INTEGER PRIMARY KEY,
            case_id INTEGER NOT NULL REFERENCES cases(id),
            at TEXT NOT NULL,
            author TEXT NOT NULL,
            text TEXT NOT NULL
        );
        CREATE INDEX case_notes_case ON case_notes(case_id, id);
        CREATE TABLE case_evidence (
            case_id INTEGER NOT NULL REFERENCES cases(id),
            scan_id INTEGER NOT NULL,
            linked_at TEXT NOT NULL,
            linked_by TEXT NOT NULL,
            PRIMARY KEY (case_id, scan_id)
        ) WITHOUT ROWID;
        CREATE INDEX audit_log_cases ON audit_log(seq) WHERE kind >= 'case.' AND kind < 'case/';
        """,
    )


def _m013_batch_requests(conn: sqlite3.Connection) -> None:
    # Batches an enterprise requests from the console and a signer process issues on the machine
    # that holds the keys (verifier/requests.py, verifier/signer.py, docs/signer.md), and the label
    # files it produced, served from the database so the web server never touches the signer's disk.
    _execute_script(
        conn,
        """
        CREATE TABLE batch_requests (
            id INTEGER PRIMARY KEY,
            enterprise_id INTEGER NOT NULL REFERENCES enterprises(id),
            requested_by TEXT NOT NULL,       -- the user who asked
            params TEXT NOT NULL,             -- the batch's parameters, canonical JSON (requests.PARAMS)
            status TEXT NOT NULL,             -- requested | approved | issuing | done | failed | cancelled
            approved_by TEXT,
            approved_at TEXT,
            claimed_by TEXT,                  -- the signer issuing it: host/pid
            claimed_at TEXT,
            progress INTEGER NOT NULL DEFAULT 0,  -- codes done
            progress_at TEXT,                 -- the signer's last report: a claim silent too long is taken over
            batch_id INTEGER REFERENCES batches(id),
            error TEXT,                       -- why it failed
            cancelled_by TEXT,
            finished_at TEXT,                 -- done, failed or cancelled
            created_at TEXT NOT NULL
        );
        CREATE INDEX batch_requests_status ON batch_requests(status, id);
        CREATE INDEX batch_requests_enterprise ON batch_requests(enterprise_id, id);
        CREATE TABLE batch_files (
            request_id INTEGER NOT NULL REFERENCES batch_requests(id),
            name TEXT NOT NULL,               -- codes.csv, labels.pdf (labels-00001.pdf...), manifest.json, labels.zip
            media_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            content BLOB NOT NULL,
            PRIMARY KEY (request_id, name)
        );
        """,
    )


def _m015_scan_claims(conn: sqlite3.Connection) -> None:
    _execute_script(
        conn,
        """
        -- What a scanned code that is not genuine claims, when it decodes: the batch number (compact
        -- form), the GTIN (GS1 form) and the mark. An enterprise sees the scans that claim its
        -- batches or its products' GTINs (verifier/audit.py). NULL on every other scan.
        ALTER TABLE scans ADD COLUMN claimed_batch INTEGER;
        ALTER TABLE scans ADD COLUMN claimed_gtin TEXT;
        ALTER TABLE scans ADD COLUMN claimed_mark TEXT;
        CREATE INDEX scans_claimed_batch ON scans(claimed_batch, id) WHERE claimed_batch IS NOT NULL;
        CREATE INDEX scans_claimed_gtin ON scans(claimed_gtin, id) WHERE claimed_gtin IS NOT NULL;
        -- The claims are as fixed as the rest of what a scan's log entry records.
        DROP TRIGGER scans_only_purge;
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
               OR NEW.claimed_batch IS NOT OLD.claimed_batch
               OR NEW.claimed_gtin IS NOT OLD.claimed_gtin
               OR NEW.claimed_mark IS NOT OLD.claimed_mark
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


def _m016_association_role(conn: sqlite3.Connection) -> None:
    # accounts.ROLES gained `association` (the issuing association's staff, docs/certificates.md)
    # but users.role's CHECK did not. Widening a CHECK changes no stored row, so SQLite's documented
    # way applies (sqlite.org/lang_altertable.html, "writable_schema"): edit the table's text, bump
    # the schema version. Rebuilding the table would rewrite the tokens' and sessions' foreign keys.
    old = "CHECK (role IN ('admin', 'inspector', 'enterprise'))"
    new = "CHECK (role IN ('admin', 'inspector', 'enterprise', 'association'))"
    (version,) = conn.execute("PRAGMA schema_version").fetchone()
    conn.execute("PRAGMA writable_schema = ON")
    try:
        conn.execute(
            "UPDATE sqlite_master SET sql = replace(sql, ?, ?) WHERE type = 'table' AND name = 'users'", (old, new)
        )
        conn.execute(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        conn.execute("PRAGMA writable_schema = OFF")
    if "'association'" not in conn.execute("SELECT sql FROM sqlite_master WHERE name = 'users'").fetchone()[0]:
        raise RuntimeError("016_association_role: the users table's CHECK was not the expected one")


STEPS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("001_registry", _m001_registry),
    ("002_scans", _m002_scans),
    ("003_audit_log", _m003_audit_log),
    ("004_accounts", _m004_accounts),
    ("005_reported_codes", _m005_reported_codes),
    ("006_login_throttle", _m006_login_throttle),
    ("007_ratelimit", _m007_ratelimit),
    ("008_pin_attempts", _m008_pin_attempts),
    ("009_sequencer", _m009_sequencer),
    ("010_transparency_log", _m010_transparency_log),
    ("011_lifecycle", _m011_lifecycle),
    ("012_certificates", _m012_certificates),
    ("013_batch_requests", _m013_batch_requests),
    ("014_cases", _m014_cases),
    ("015_scan_claims", _m015_scan_claims),
    ("016_association_role", _m016_association_role),
]
