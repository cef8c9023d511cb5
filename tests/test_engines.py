"""The persistence boundary on both engines: locations, the SQL the repositories write, migrations,
transactions, locks, work limits, and `verifier db init|migrate|status`."""

from __future__ import annotations

import threading

import pytest
from conftest import database_env, settle

from verifier import db, settings
from verifier.cli import cli
from verifier.db import postgres

# --- locations and settings -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("instance/verifier.db", "instance/verifier.db"),
        ("sqlite:///instance/verifier.db", "instance/verifier.db"),
        ("sqlite:////var/lib/verifier/verifier.db", "/var/lib/verifier/verifier.db"),
        ("postgresql://verifier@db1:5432/verifier", "postgresql://verifier@db1:5432/verifier"),
    ],
)
def test_locations_are_paths_or_urls(given, expected):
    assert db.location(given) == expected
    assert db.is_postgres(given) == expected.startswith("postgresql://")


def test_the_database_url_setting_wins_over_the_file_and_hides_its_password(tmp_path):
    env = {"VERIFIER_INSTANCE": str(tmp_path), "VERIFIER_DB": str(tmp_path / "x.db")}
    assert settings.load(env).database == str(tmp_path / "x.db")
    assert settings.load({"VERIFIER_INSTANCE": str(tmp_path)}).database == str(tmp_path / "verifier.db")
    url = "postgresql://verifier:s3cret@db1:5432/verifier"
    assert settings.load({**env, "VERIFIER_DATABASE_URL": url}).database == url
    (tmp_path / "url").write_text(url + "\n")
    assert settings.load({**env, "VERIFIER_DATABASE_URL_FILE": str(tmp_path / "url")}).database == url
    assert settings.load({**env, "VERIFIER_DATABASE_URL": "sqlite:////srv/v.db"}).database == "/srv/v.db"
    assert "s3cret" not in db.describe(url) and db.describe(url) == "postgresql://verifier@db1:5432/verifier"
    with pytest.raises(settings.InvalidInput, match="VERIFIER_DATABASE_URL"):
        settings.load({**env, "VERIFIER_DATABASE_URL": "mysql://db1/verifier"})


def test_a_bad_database_url_is_one_line_of_error(runner, instance, monkeypatch):
    monkeypatch.setenv("VERIFIER_DATABASE_URL", "mysql://db1/verifier")
    result = runner.invoke(cli, ["db", "status"])
    assert result.exit_code == 2 and result.output.startswith("Error: VERIFIER_DATABASE_URL must be")
    assert "Traceback" not in result.output


def test_an_unreachable_postgresql_server_is_one_line_of_error_without_the_password(runner, instance, monkeypatch):
    port = __import__("conftest").free_port()  # nothing listens there
    monkeypatch.setenv("VERIFIER_DATABASE_URL", f"postgresql://verifier:s3cret@127.0.0.1:{port}/verifier")
    result = runner.invoke(cli, ["db", "status"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"Error: cannot connect to postgresql://verifier@127.0.0.1:{port}/verifier")
    assert "s3cret" not in result.output and len(result.output.strip().splitlines()) == 1


# --- the repositories' SQL on PostgreSQL ---------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT * FROM t WHERE a = ? AND b = ?", "SELECT * FROM t WHERE a = %s AND b = %s"),
        ("SELECT :since, :limit_2", "SELECT %(since)s, %(limit_2)s"),
        ("SELECT '?', ':x', '%', a::text FROM t WHERE b = ?", "SELECT '?', ':x', '%%', a::text FROM t WHERE b = %s"),
        ("SELECT 7 % 2, 'it''s ?' WHERE x = ?", "SELECT 7 %% 2, 'it''s ?' WHERE x = %s"),
        ("SELECT unnest(?::bigint[])", "SELECT unnest(%s::bigint[])"),
    ],
)
def test_sqlite_parameters_become_psycopg_parameters_outside_literals(sql, expected):
    assert postgres.translate(sql) == expected


def test_named_locks_never_meet_code_locks():
    keys = {postgres.named_key(name) for name in ("sequencer", "migrations", "batch-1", "audit0")}
    assert len(keys) == 4 and all(key < 0 for key in keys)  # serials, the code locks, are never negative


# --- one schema, two engines ---------------------------------------------------------------------


def test_both_engines_have_the_same_migrations_and_columns(new_database):
    conn = db.connect(new_database())
    try:
        assert db.migrations_applied(conn) == list(db.MIGRATION_NAMES)
        assert db.migrate(conn) == []  # idempotent
        from verifier.repos import tables

        assert tables.columns(conn, "scans")[:3] == ["id", "at", "channel"]
        assert "log_seq" in tables.columns(conn, "scans") and "personal_salt" in tables.columns(conn, "scans")
    finally:
        conn.close()


def _start_nodes_together(location, nodes: int = 4) -> tuple[list[list[str]], list[BaseException]]:
    """`nodes` threads connecting to `location` at the same instant: the migrations each saw, and
    what failed."""
    applied: list[list[str]] = []
    failures: list[BaseException] = []
    start = threading.Barrier(nodes)

    def node():
        start.wait()
        try:
            conn = db.connect(location)
            applied.append(db.migrations_applied(conn))
            conn.close()
        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)

    threads = [threading.Thread(target=node) for _ in range(nodes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return applied, failures


def test_nodes_starting_together_migrate_once(new_database):
    applied, failures = _start_nodes_together(new_database())
    assert not failures and applied == [list(db.MIGRATION_NAMES)] * 4


@pytest.mark.sqlite_only("switching a new SQLite file to WAL (PostgreSQL: the test above)")
def test_nodes_starting_together_on_new_files_never_find_them_locked(tmp_path):
    # Two connections switching a new file to WAL at once deadlock inside SQLite, which answers
    # "database is locked" without waiting: about 1 start in 30 failed before the switch took the
    # writer lock, so 40 starts fail with odds of about 70 in 100 if it ever stops taking it.
    for start in range(40):
        applied, failures = _start_nodes_together(tmp_path / f"start-{start}.db")
        assert not failures, f"start {start}: {failures[0]!r}"
        assert applied == [list(db.MIGRATION_NAMES)] * 4


def test_a_failed_transaction_leaves_nothing(new_database):
    conn = db.connect(new_database())
    try:
        with pytest.raises(ZeroDivisionError):
            with db.transaction(conn):
                conn.execute(
                    "INSERT INTO reported_codes (serial, reported_at, reported_by) VALUES (?, ?, ?)", (1, "t", "x")
                )
                1 / 0  # noqa: B018
        assert conn.execute("SELECT count(*) FROM reported_codes").fetchone()[0] == 0
        with pytest.raises(db.IntegrityError):
            with db.transaction(conn):
                for _ in range(2):  # the second violates the primary key
                    conn.execute(
                        "INSERT INTO reported_codes (serial, reported_at, reported_by) VALUES (?, ?, ?)", (2, "t", "x")
                    )
        assert conn.execute("SELECT count(*) FROM reported_codes").fetchone()[0] == 0
    finally:
        conn.close()


def test_the_logs_are_append_only_on_both_engines(new_database):
    conn = db.connect(new_database())
    try:
        with db.transaction(conn):
            conn.execute(
                "INSERT INTO audit_log (seq, at, kind, actor, body, personal_hash, prev_hash, hash) "
                "VALUES (1, 't', 'k', '', '{}', '', 'p', 'h')"
            )
        for statement in ("UPDATE audit_log SET kind = 'x'", "DELETE FROM audit_log"):
            with pytest.raises(db.IntegrityError, match="append-only"):
                with db.transaction(conn):
                    conn.execute(statement)
        assert conn.execute("SELECT kind FROM audit_log").fetchall() == [("k",)]
    finally:
        conn.close()


def test_text_sorts_by_bytes_on_both_engines(new_database):
    """Times are ISO text compared as strings; names sort the same way on both engines (collation C)."""
    conn = db.connect(new_database())
    try:
        names = ["b", "B", "a", "_z", "Z", "é", "2026-11-22T10:00:00.000+00:00", "2026-11-22T09:59:59.999+00:00"]
        with db.transaction(conn):
            for i, name in enumerate(names):
                conn.execute("INSERT INTO enterprises (name, created_at) VALUES (?, ?)", (name, str(i)))
        got = [r[0] for r in conn.execute("SELECT name FROM enterprises ORDER BY name")]
        assert got == sorted(names, key=lambda n: n.encode("utf-8"))
    finally:
        conn.close()


# --- named locks and work limits -------------------------------------------------------------------


def test_a_named_lock_is_exclusive_until_released(new_database):
    location = new_database()
    db.connect(location).close()
    held = db.acquire_lock_at(location, "audit0")
    assert held is not None
    assert db.acquire_lock_at(location, "audit0") is None  # another holder: refused at once
    other = db.acquire_lock_at(location, "audit1")
    assert other is not None
    held.release()
    again = db.acquire_lock_at(location, "audit0")
    assert again is not None
    again.release()
    other.release()


@pytest.mark.postgres_only("SQLite's limit counts instructions: tests/test_audit_api.py")
def test_a_statement_over_its_time_limit_is_interrupted_on_postgresql(new_database):
    conn = db.connect(new_database())
    try:
        with pytest.raises(db.Interrupted):
            with db.work_limit(conn, lambda: 0, 1000, seconds=0.05):
                conn.execute("SELECT pg_sleep(2)").fetchone()
        assert conn.execute("SELECT 1").fetchone()[0] == 1  # the limit is lifted afterwards
        conn.execute("SELECT pg_sleep(0.1)").fetchone()
    finally:
        conn.close()


# --- verifier db init | migrate | status -----------------------------------------------------------


def test_db_init_migrate_and_status(runner, instance, monkeypatch, new_database):
    location = new_database()
    for name, value in database_env(location).items():
        monkeypatch.setenv(name, str(value))
    missing = runner.invoke(cli, ["db", "status"])
    assert missing.exit_code == 1 and missing.output.startswith("Error: no ")
    init = runner.invoke(cli, ["db", "init"])
    assert (
        init.exit_code == 0
        and init.output.startswith("Ready: ")
        and f"{len(db.MIGRATION_NAMES)} migrations" in init.output
    )
    assert runner.invoke(cli, ["db", "migrate"]).output.startswith("Up to date: ")
    status = runner.invoke(cli, ["db", "status", "--json"])
    assert status.exit_code == 0
    data = __import__("json").loads(status.output)
    assert data["engine"] == db.dialect(db.connect(location))
    assert data["migrations"] == list(db.MIGRATION_NAMES) and data["missing"] == []
    assert data["pending"] == 0 and data["oldest_pending_at"] is None
    assert data["tree_size"] == 0 and data["checkpoint"] is None
    assert "log tree: 0 entries; no checkpoint yet" in runner.invoke(cli, ["db", "status"]).output
    settle(location)  # the tests' log key signs the empty tree
    data = __import__("json").loads(runner.invoke(cli, ["db", "status", "--json"]).output)
    assert data["checkpoint"]["size"] == 0
    assert "password" not in status.output


@pytest.mark.sqlite_only("SQLite's writer lock: an flock, which belongs to the open file, not to a thread")
def test_the_writer_lock_excludes_the_threads_of_one_process(new_database):
    """Two threads of one process: the second waits for the first's transaction to end. (The lock's
    flock alone let both in, and the second's BEGIN IMMEDIATE then met SQLite's own lock: with no
    busy timeout, "database is locked"; and a checkpoint could overlap a commit.)"""
    location = new_database()
    first, second = db.connect(location), db.connect(location)
    second.execute("PRAGMA busy_timeout = 0")  # waiting is the writer lock's job, not SQLite's
    inside, release, done = threading.Event(), threading.Event(), []

    def hold():
        with db.transaction(first):
            first.execute("INSERT INTO reported_codes (serial, reported_at, reported_by) VALUES (1, 't', 'a')")
            inside.set()
            release.wait(10)

    def follow():
        try:
            with db.transaction(second):
                second.execute("INSERT INTO reported_codes (serial, reported_at, reported_by) VALUES (2, 't', 'b')")
            done.append("committed")
        except db.Error as exc:
            done.append(repr(exc))

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(10)
    follower = threading.Thread(target=follow)
    follower.start()
    follower.join(0.3)  # it must be waiting for the lock, whatever the wait
    assert done == []
    release.set()
    holder.join(10)
    follower.join(10)
    assert done == ["committed"]
    assert [r[0] for r in first.execute("SELECT serial FROM reported_codes ORDER BY serial")] == [1, 2]
    first.close()
    second.close()
