"""Backups taken while the server is scanning, and a restore after which the audit log verifies."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import urllib.parse
import urllib.request

from verifier.cli import cli


def test_backup_while_serving_then_restore(serve, world, db_copy, runner, monkeypatch, tmp_path):
    monkeypatch.setenv("VERIFIER_DB", str(db_copy))
    server = serve()
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
    counts = [sqlite3.connect(p).execute("SELECT count(*) FROM scans").fetchone()[0] for p in backups]
    assert counts == sorted(counts) and counts[-1] > 0
    live = sqlite3.connect(db_copy).execute("SELECT count(*) FROM scans").fetchone()[0]
    restored = runner.invoke(cli, ["db", "restore", str(backups[1])])
    assert restored.exit_code == 0 and "audit log verifies" in restored.stdout and "kept as" in restored.stdout
    conn = sqlite3.connect(db_copy)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("SELECT count(*) FROM scans").fetchone()[0] == counts[1] <= live
    verify = runner.invoke(cli, ["audit", "verify"])
    assert verify.exit_code == 0 and verify.stdout.startswith("OK:")


def test_backup_refuses_to_overwrite_and_restore_refuses_a_tampered_backup(
    world, db_copy, runner, monkeypatch, tmp_path
):
    monkeypatch.setenv("VERIFIER_DB", str(db_copy))
    target = tmp_path / "b.db"
    assert runner.invoke(cli, ["db", "backup", str(target)]).exit_code == 0
    again = runner.invoke(cli, ["db", "backup", str(target)])
    assert again.exit_code == 1 and "already exists" in again.stderr
    conn = sqlite3.connect(target)
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("UPDATE audit_log SET body = '{}' WHERE seq = 2")
    conn.commit()
    refused = runner.invoke(cli, ["db", "restore", str(target)])
    assert refused.exit_code == 1 and "audit log does not verify (first bad entry 2)" in refused.stderr
    garbage = tmp_path / "junk.db"
    garbage.write_bytes(b"not a database" * 100)
    assert runner.invoke(cli, ["db", "restore", str(garbage)]).exit_code == 1
