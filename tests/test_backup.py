"""Backups taken while the server is scanning, and a restore after which the audit log verifies."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import urllib.parse
import urllib.request

from conftest import database_env, settle
from test_auditlog import query

from verifier import db
from verifier.cli import cli


def point_at(monkeypatch, location) -> None:
    """The CLI's database is `location` (and no other setting points elsewhere)."""
    monkeypatch.delenv("VERIFIER_DB", raising=False)
    monkeypatch.delenv("VERIFIER_DATABASE_URL", raising=False)
    for name, value in database_env(location).items():
        monkeypatch.setenv(name, value)


def backup_scans(path) -> int:
    conn = db.open_read_only(path)  # a backup is a SQLite file on both engines
    try:
        return conn.execute("SELECT count(*) FROM scans").fetchone()[0]
    finally:
        conn.close()


def restore(runner, backup, database, new_database):
    """Put `backup` in service: `db restore` over a SQLite file; on PostgreSQL (which `db restore`
    refuses, pointing to `db copy`) a copy into a new database. The CLI's result and the location."""
    if not db.is_postgres(database):
        return runner.invoke(cli, ["db", "restore", str(backup)]), database
    refused = runner.invoke(cli, ["db", "restore", str(backup)])
    assert refused.exit_code == 1 and "verifier db copy --from BACKUP --to postgresql://" in refused.stderr
    target = new_database()
    return runner.invoke(cli, ["db", "copy", "--from", str(backup), "--to", target]), target


def test_backup_while_serving_then_restore(serve, world, db_copy, runner, monkeypatch, tmp_path, new_database):
    point_at(monkeypatch, db_copy)
    server = serve()  # PostgreSQL: with its sequencer, chaining scans as they come
    urls = [row["url"] for row in world["pin"][1][:10]]
    stop = threading.Event()
    done = []

    def scanner():
        i = 0
        while not stop.is_set():
            code = urllib.parse.quote(urls[i % len(urls)])
            with urllib.request.urlopen(f"{server.url}/api/v1/verify?code={code}", timeout=5) as response:
                done.append(json.loads(response.read())["reason"])
            i += 1

    thread = threading.Thread(target=scanner)
    thread.start()
    try:
        time.sleep(0.5)
        backups = [tmp_path / f"backup-{n}.db" for n in range(3)]
        for path in backups:  # several snapshots while scans keep committing
            result = runner.invoke(cli, ["db", "backup", str(path)])
            assert result.exit_code == 0, result.stderr
            assert "integrity ok, audit log verifies" in result.stdout
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join()
    server.stop()
    assert len(done) > 20
    counts = [backup_scans(p) for p in backups]
    assert counts == sorted(counts) and counts[-1] > 0
    live = query(db_copy, "SELECT count(*) FROM scans")[0][0]
    restored, restored_at = restore(runner, backups[1], db_copy, new_database)
    assert restored.exit_code == 0 and "audit log verifies" in restored.stdout, restored.stderr
    if not db.is_postgres(db_copy):
        assert "kept as" in restored.stdout
        conn = db.open_read_only(db_copy)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        conn.close()
    assert query(restored_at, "SELECT count(*) FROM scans")[0][0] == counts[1] <= live
    point_at(monkeypatch, restored_at)
    verify = runner.invoke(cli, ["audit", "verify"])
    assert verify.exit_code == 0 and verify.stdout.startswith("OK:")


PENDING_SCANS = "SELECT count(*) FROM scan_queue"  # PostgreSQL: scans the sequencer has not chained


def test_a_live_backup_leaves_out_what_is_pending_and_its_log_verifies(
    world, db_copy, make_app, runner, monkeypatch, tmp_path
):
    """PostgreSQL: entries written after the backup's run of the sequencer (lookups go on) are
    pending on its snapshot: the backup leaves them out and verifies; the next one has them."""
    from verifier import sequencer

    point_at(monkeypatch, db_copy)
    app = make_app()
    for row in world["pin"][1][:5]:
        app.test_client().get("/" + row["url"].split("/", 3)[3])
    assert runner.invoke(cli, ["audit", "report-code", world["pin"][1][0]["code"]]).exit_code == 0
    real_drain = sequencer.drain
    monkeypatch.setattr(sequencer, "drain", lambda conn: sequencer.sequence_once(conn, 2))  # the rest: "after"
    first = tmp_path / "first.db"
    result = runner.invoke(cli, ["db", "backup", str(first)])
    assert result.exit_code == 0 and "audit log verifies" in result.stdout, result.stderr
    waiting = query(db_copy, PENDING_SCANS)[0][0] if db.is_postgres(db_copy) else 0  # SQLite: never any
    chained = query(db_copy, "SELECT count(*) FROM scans")[0][0] - waiting
    assert backup_scans(first) == chained and (chained < 5) == db.is_postgres(db_copy)
    entries = query(db_copy, "SELECT count(*) FROM audit_log")[0][0]
    in_tree = query(db_copy, "SELECT count(*) FROM log_hashes WHERE level = 0")[0][0]
    point_at(monkeypatch, first)
    code = runner.invoke(cli, ["audit", "verify", "--json"])
    assert code.exit_code == 0 and json.loads(code.stdout)["entries"] == entries
    assert json.loads(code.stdout)["pending"] == entries - in_tree  # SQLite: numbered, not in the tree yet
    monkeypatch.setattr(sequencer, "drain", real_drain)
    point_at(monkeypatch, db_copy)
    settle(db_copy)
    second = tmp_path / "second.db"
    assert runner.invoke(cli, ["db", "backup", str(second)]).exit_code == 0
    assert backup_scans(second) == 5


def test_backup_refuses_to_overwrite_and_restore_refuses_a_tampered_backup(
    world, db_copy, runner, monkeypatch, tmp_path, new_database
):
    point_at(monkeypatch, db_copy)
    target = tmp_path / "b.db"
    assert runner.invoke(cli, ["db", "backup", str(target)]).exit_code == 0
    again = runner.invoke(cli, ["db", "backup", str(target)])
    assert again.exit_code == 1 and "already exists" in again.stderr
    conn = sqlite3.connect(target)  # a backup is a SQLite file on both engines: the attacker edits it
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("UPDATE audit_log SET body = '{}' WHERE seq = 2")
    conn.commit()
    conn.close()
    refused, _ = restore(runner, target, db_copy, new_database)
    assert refused.exit_code == 1 and "audit log does not verify (first bad entry 2)" in refused.stderr
    garbage = tmp_path / "junk.db"
    garbage.write_bytes(b"not a database" * 100)
    junk, _ = restore(runner, garbage, db_copy, new_database)
    assert junk.exit_code == 1 and junk.stderr.startswith("Error: ") and junk.stderr.count("\n") == 1
