"""A log written before the Merkle tree (the hash chain of migration 003) moves into the new log:
its entries become the tree's first leaves, the chain is still checked, and the checkpoint the old
code signed over the chain's head still verifies, on both engines (PostgreSQL: by `db copy`).

The vector (tests/vectors_legacy_log/) is a database the code before issue 12 wrote
(scripts/make_legacy_log.py): two batches, a recall, an admin, four scans, a signed checkpoint."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest
from conftest import log_signer_for_tests, log_trust_for_tests, settle

from verifier import accounts, auditlog, db, dbcopy, keys
from verifier.cli import cli

VECTOR = Path(__file__).parent / "vectors_legacy_log"
NOW = dt.datetime(2026, 12, 1, 14, 0, tzinfo=dt.UTC)


def legacy_trust() -> auditlog.Trust:
    """The tests' log key for new checkpoints, and the vector's keyring log key for the old one."""
    records = keys.read_keyring(VECTOR)
    legacy = {r.kid: r.public_key() for r in records if r.purpose == "log"}
    assert legacy, "the vector's keyring has its log key"
    return auditlog.Trust(log_trust_for_tests().log_keys, (), legacy)


def legacy_checkpoint() -> dict:
    return auditlog.parse_checkpoint(json.loads((VECTOR / "checkpoint.json").read_text("utf-8")))


@pytest.fixture
def upgraded(tmp_path, new_database, engine):
    """The old database, opened (migrated to the Merkle log) and sequenced; on PostgreSQL, copied
    there. Then one new fact, logged the new way, and a new checkpoint."""
    old = tmp_path / "old.db"
    raw = sqlite3.connect(old)
    raw.executescript((VECTOR / "verifier-009.sql").read_text("utf-8"))
    raw.close()
    conn = db.connect(old)  # migrates 009 -> 010
    settle(conn, sign=False)
    conn.close()
    location = old
    if engine == "postgresql":
        location = new_database()
        dbcopy.copy(old, location)
    conn = db.connect(location)
    with db.transaction(conn):
        accounts.add_user(conn, "grace", "inspector", "a long enough password", None, "test", NOW)
    settle(conn)
    yield location, conn
    conn.close()


def test_the_old_chain_and_its_checkpoint_verify_in_the_new_log(upgraded):
    location, conn = upgraded
    report = auditlog.verify(conn, legacy_trust(), legacy_checkpoints=[legacy_checkpoint()])
    assert report.ok, report.problems
    assert report.legacy_chain == legacy_checkpoint()["seq"] == 8
    assert report.tree_size == report.entries == 9 and report.pending == 0
    assert report.checkpoints == 3 and report.unchecked_checkpoints == 0  # the old one (stored, given), the new note
    rows = conn.execute("SELECT seq, prev_hash FROM audit_log ORDER BY seq").fetchall()
    assert all(prev for seq, prev in rows if seq <= 8) and rows[-1][1] == ""  # the chain ends; leaves go on


def test_an_old_checkpoint_exported_to_a_file_still_verifies_through_the_cli(upgraded, runner, monkeypatch, tmp_path):
    from conftest import database_env

    location, _ = upgraded
    for name, value in database_env(location).items():
        monkeypatch.setenv(name, str(value))
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    (keys_dir / "keyring.json").write_text((VECTOR / "keyring.json").read_text("utf-8"))
    monkeypatch.setenv("VERIFIER_KEYS", str(keys_dir))
    monkeypatch.setenv("VERIFIER_LOG_PUBLIC_KEY", log_signer_for_tests().vkey)
    result = runner.invoke(cli, ["audit", "verify", "--json", "--checkpoint", str(VECTOR / "checkpoint.json")])
    report = json.loads(result.stdout)
    assert result.exit_code == 0 and report["ok"] and report["legacy_chain"] == 8, report["problems"]


def test_an_edited_old_entry_is_named(upgraded):
    location, conn = upgraded
    from test_auditlog import attacker

    bad = attacker(location)
    bad.execute("UPDATE audit_log SET body = replace(body, 'legacy recall', 'nothing happened') WHERE seq = 3")
    bad.close()
    report = auditlog.verify(conn, legacy_trust(), legacy_checkpoints=[legacy_checkpoint()])
    assert not report.ok and report.first_bad_seq == 3
    assert any("does not match its hash" in p.what for p in report.problems if p.seq == 3)


def test_the_old_chain_rewritten_is_caught_by_the_old_checkpoint(upgraded):
    """The attacker rewrites entry 2 and recomputes the whole chain after it and the whole tree:
    only the checkpoints (old and new) know better."""
    from verifier import logtree

    location, conn = upgraded
    from test_auditlog import attacker

    bad = attacker(location)
    prev = auditlog.GENESIS
    rows = bad.execute("SELECT seq, at, kind, actor, body, personal_hash FROM audit_log WHERE seq <= 8 ORDER BY seq")
    for seq, at, kind, actor, body, p_hash in rows.fetchall():
        if seq == 2:
            actor = "someone else"
        digest = auditlog.entry_hash(prev, seq, at, kind, actor, p_hash, body)
        bad.execute("UPDATE audit_log SET actor = ?, prev_hash = ?, hash = ? WHERE seq = ?", (actor, prev, digest, seq))
        prev = digest
    bad.execute("DELETE FROM log_hashes")
    if not db.is_postgres_conn(bad):
        bad.commit()
    with db.transaction(bad):
        while logtree.extend(bad):
            pass
    bad.close()
    report = auditlog.verify(conn, legacy_trust(), legacy_checkpoints=[legacy_checkpoint()])
    assert not report.ok
    whats = " / ".join(p.what for p in report.problems)
    assert "differs from the signed checkpoint (the chain was rewritten)" in whats
    assert "differ from the signed checkpoint of size 9" in whats
