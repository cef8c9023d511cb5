"""The log sequencer: on PostgreSQL lookups commit their scans without the log, and the sequencer
chains them (and the queued administrative entries) afterwards; until then they are pending,
never valid and never tampered. On SQLite there is nothing for it to do."""

from __future__ import annotations

import json

import pytest
from conftest import database_env

from verifier import auditlog, clock, db, issue, sequencer
from verifier.cli import cli
from verifier.repos import log


def scan_all(make_app, rows) -> None:
    app = make_app()
    for row in rows:
        app.test_client().get("/" + row["url"].split("/", 3)[3])


@pytest.fixture
def conn(db_copy):
    connection = db.connect(db_copy)
    yield connection
    connection.close()


@pytest.mark.postgres_only("SQLite chains every entry inside the transaction that writes it")
def test_scans_are_pending_until_the_sequencer_chains_them(conn, make_app, world):
    before = auditlog.verify(conn)
    scan_all(make_app, world["pin"][1][:7])
    waiting = auditlog.verify(conn)
    assert waiting.ok and waiting.pending == 7 and waiting.entries == before.entries  # pending: not valid, not tampered
    assert sequencer.status(conn)["pending"] == 7 and sequencer.status(conn)["oldest_pending_at"] is not None
    assert sequencer.drain(conn) == 7
    done = auditlog.verify(conn)
    assert done.ok and done.pending == 0 and done.entries == before.entries + 7
    assert sequencer.status(conn) == {"pending": 0, "oldest_pending_at": None, "leader": None}
    rows = conn.execute(
        "SELECT s.id, l.kind, l.body FROM scans s JOIN audit_log l ON l.scan_id = s.id ORDER BY s.id"
    ).fetchall()
    assert [kind for _, kind, _ in rows] == ["scan"] * 7
    assert [json.loads(body)["id"] for _, _, body in rows] == [scan_id for scan_id, _, _ in rows]
    assert conn.execute("SELECT count(*) FROM scans WHERE log_seq IS NOT NULL").fetchone()[0] == 0  # never updated


@pytest.mark.postgres_only("SQLite chains every entry inside the transaction that writes it")
def test_administrative_entries_are_queued_and_chained_in_time_order(conn, make_app, world):
    scan_all(make_app, world["pin"][1][:2])
    issue.recall_batch(conn, world["gs1"][0], "mislabelled", clock.now(), actor="test")
    scan_all(make_app, world["gs1"][1][:2])
    assert log.pending_count(conn) == 5
    assert sequencer.drain(conn, limit=2) == 5  # in batches of two
    kinds = [row[0] for row in conn.execute("SELECT kind FROM audit_log ORDER BY seq DESC LIMIT 5")][::-1]
    assert kinds == ["scan", "scan", "batch.recalled", "scan", "scan"]
    assert auditlog.verify(conn).ok


@pytest.mark.postgres_only("a transaction lock of PostgreSQL")
def test_a_second_sequencer_waits_for_the_batch_of_the_first(conn, db_copy, make_app, world):
    scan_all(make_app, world["pin"][1][:3])
    other = db.connect(db_copy)
    try:
        with db.transaction(other):
            assert db.try_transaction_lock(other, sequencer.LEADER_LOCK)  # "another sequencer" mid-batch
            assert sequencer.sequence_once(conn) == 0
        assert sequencer.sequence_once(conn) == 3
    finally:
        other.close()


@pytest.mark.postgres_only("the sequencer's batch on PostgreSQL")
def test_a_batch_that_fails_midway_chains_nothing(conn, make_app, world, monkeypatch):
    scan_all(make_app, world["pin"][1][:4])
    head = auditlog.head(conn)

    def fail(*_):
        raise RuntimeError("killed mid-batch")

    monkeypatch.setattr(log, "dequeue", fail)  # after the entries are inserted, before the queues are emptied
    with pytest.raises(RuntimeError):
        sequencer.sequence_once(conn)
    assert auditlog.head(conn) == head and log.pending_count(conn) == 4
    monkeypatch.undo()
    assert sequencer.drain(conn) == 4
    assert auditlog.verify(conn).ok


@pytest.mark.sqlite_only("on SQLite entries are numbered as they are written")
def test_on_sqlite_the_sequencer_only_adds_entries_to_the_tree(conn, make_app, world):
    scan_all(make_app, world["pin"][1][:3])
    assert sequencer.status(conn)["pending"] == 3 and auditlog.verify(conn).pending == 3
    assert sequencer.drain(conn) == 3
    assert sequencer.status(conn) == {"pending": 0, "oldest_pending_at": None, "leader": None}
    assert auditlog.verify(conn).pending == 0


def test_verifier_sequence_once_and_audit_verify_say_what_is_pending(runner, monkeypatch, world, db_copy, make_app):
    for name, value in {**database_env(db_copy), "VERIFIER_KEYS": str(world["keys_dir"])}.items():
        monkeypatch.setenv(name, str(value))
    scan_all(make_app, world["pin"][1][:3])
    verify = runner.invoke(cli, ["audit", "verify", "--json"])
    assert verify.exit_code == 0, verify.output
    assert json.loads(verify.output)["pending"] == 3
    assert "Pending: 3 entries are not in the tree yet" in runner.invoke(cli, ["audit", "verify"]).output
    once = runner.invoke(cli, ["sequence", "--once"])
    assert once.exit_code == 0
    assert once.output == "Sequenced 3 entries; 0 pending\n"  # nobody else leads
    after = runner.invoke(cli, ["audit", "verify"])
    assert after.exit_code == 0 and after.output.startswith("OK: ") and "Pending" not in after.output


@pytest.mark.postgres_only("the sequencer's queue on PostgreSQL")
def test_a_scan_below_the_position_of_a_run_is_chained_on_the_next_pass(conn, make_app, world):
    """A run of batches reads the queue from above its last scan id; a scan that committed late,
    with a lower id, waits for the next pass from the start, and is never lost."""
    scan_all(make_app, world["pin"][1][:5])
    ids = [row[0] for row in conn.execute("SELECT scan_id FROM scan_queue ORDER BY scan_id")]
    position = sequencer.Position(scan_id=ids[2])  # as if ids[0..2] had committed after ids[3..4] were read
    assert sequencer.sequence_once(conn, 10, position) == 2
    assert log.pending_count(conn) == 3
    assert sequencer.drain(conn) == 3
    assert log.pending_count(conn) == 0 and auditlog.verify(conn).ok


@pytest.mark.postgres_only("the leader is a PostgreSQL session")
def test_status_names_the_leading_sequencer_and_says_when_none_leads(conn, db_copy, runner, monkeypatch):
    import threading

    for name, value in database_env(db_copy).items():
        monkeypatch.setenv(name, str(value))
    assert sequencer.status(conn)["leader"] is None
    assert "sequencer: none leads" in runner.invoke(cli, ["db", "status"]).output
    stop = threading.Event()
    leading = threading.Thread(target=sequencer.run, args=(db_copy, sequencer.Stop(stop)))
    leading.start()
    try:
        leader = None
        for _ in range(200):  # until the thread has connected and taken the lock
            leader = sequencer.status(conn)["leader"]
            if leader:
                break
            stop.wait(0.02)
        assert leader is not None and leader["pid"] > 0 and leader["client"] == "127.0.0.1"
        shown = runner.invoke(cli, ["db", "status", "--json"])
        assert json.loads(shown.output)["leader"]["pid"] == leader["pid"]
        assert (
            f"sequencer: leading from 127.0.0.1 (backend {leader['pid']}" in runner.invoke(cli, ["db", "status"]).output
        )
        beside = runner.invoke(cli, ["sequence", "--once"])  # the leader holds the lock: says so, not just "0"
        assert beside.exit_code == 0
        assert f"Another sequencer leads (from 127.0.0.1, backend {leader['pid']})" in beside.output
    finally:
        stop.set()
        leading.join(10)
    assert sequencer.status(conn)["leader"] is None  # it let go when it stopped
