"""Issue 12's tamper cases: an attacker with write access to the database (append-only triggers
bypassed) edits a state table that decides verdicts or access; `audit verify` replays the log,
finds the table contradicting it and names the entry whose fact was contradicted (0: a fact no
entry made). Each case starts from a database built through the product: batches issued with
verifier.issue, lookups through the Flask test client, accounts through verifier.accounts."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest
from conftest import database_env, settle

from verifier import accounts, audit, auditlog, clock, db, keys
from verifier.cli import cli

NOW = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)


@pytest.fixture
def tampered(world, audit_world, db_copy, tmp_path):
    """audit_world (two enterprises' batches with scans, five accounts with tokens, one disabled)
    plus: a PIN scan, a reported code, a revoked token, a revoked key; every entry sequenced."""
    client = audit_world["app"].test_client()
    pin_row = world["pin"][1][5]
    client.post("/check", data={"code": pin_row["code"], "pin": pin_row["pin"]})
    keys_dir = tmp_path / "keys"
    shutil.copytree(world["keys_dir"], keys_dir)
    keys.create_key(keys_dir, "old", b"pw", NOW)
    conn = db.connect(db_copy)

    def log_change(record: keys.KeyRecord) -> None:
        with db.transaction(conn):
            body = {"kid": record.kid, "name": record.name, "status": record.status}
            auditlog.append(conn, "key.status", body, clock.utc_text(NOW), "test")

    keys.set_status(keys_dir, "old", "revoked", NOW, log_change)
    with db.transaction(conn):
        audit.report_code(conn, int(world["pin"][1][7]["serial"]), "fakes in market", "ian", NOW)
        token_id, _ = accounts.issue_token(conn, "ian", "laptop", "test", NOW)
        accounts.revoke_token(conn, token_id, "test", NOW)
    settle(conn)
    conn.close()
    return {"db": db_copy, "keys_dir": keys_dir, "revoked_token": token_id, "pin_serial": int(pin_row["serial"])}


def attacker(location):
    """A connection the append-only triggers do not stop (SQLite: dropped; PostgreSQL: a superuser's
    session_replication_role)."""
    conn = db.connect(location)
    if db.is_postgres_conn(conn):
        conn.execute("SET session_replication_role = replica")
        return conn
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    return conn


def query(location, sql, params=()):
    conn = db.connect(location)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def entry(location, kind, **fields) -> int:
    """The seq of the one entry of `kind` whose body has `fields`."""
    found = [
        seq
        for seq, body in query(location, "SELECT seq, body FROM audit_log WHERE kind = ? ORDER BY seq", (kind,))
        if all(json.loads(body).get(k) == v for k, v in fields.items())
    ]
    assert len(found) == 1, (kind, fields, found)
    return found[0]


def scan_entry(location, scan_id) -> int:
    if db.is_postgres(location):
        return query(location, "SELECT seq FROM audit_log WHERE scan_id = ?", (scan_id,))[0][0]
    return query(location, "SELECT log_seq FROM scans WHERE id = ?", (scan_id,))[0][0]


def scans_of(location, serial) -> list[int]:
    return [r[0] for r in query(location, "SELECT id FROM scans WHERE serial = ? ORDER BY id", (int(serial),))]


def verified(t, keyring=True) -> auditlog.Report:
    conn = db.connect(t["db"])
    try:
        return auditlog.verify(conn, keyring=keys.read_keyring(t["keys_dir"]) if keyring else None)
    finally:
        conn.close()


def assert_names(report: auditlog.Report, seq: int, *words: str) -> None:
    assert not report.ok
    matching = [p for p in report.problems if p.seq == seq and all(w in p.what for w in words)]
    assert matching, f"no problem at entry {seq} saying {words}: {report.problems}"


def batch_id(location, enterprise) -> int:
    sql = "SELECT b.id FROM batches b JOIN enterprises e ON e.id = b.enterprise_id WHERE e.name = ? ORDER BY b.id"
    return query(location, sql, (enterprise,))[0][0]


def user_id(location, name) -> int:
    return query(location, "SELECT id FROM users WHERE username = ?", (name,))[0][0]


# --- the controls -------------------------------------------------------------------------------


def test_an_untouched_database_verifies(tampered):
    report = verified(tampered)
    assert report.ok, report.problems
    assert report.pending == 0


def test_a_logged_purge_verifies(tampered):
    conn = db.connect(tampered["db"])
    with db.transaction(conn):
        purged = audit.purge(conn, 30, clock.now() + dt.timedelta(days=365), "test")
    settle(conn)
    conn.close()
    assert purged.scans == len(query(tampered["db"], "SELECT id FROM scans"))
    report = verified(tampered)
    assert report.ok, report.problems


# --- scans --------------------------------------------------------------------------------------


def test_deleted_scan_rows_are_caught_and_the_first_missing_named(tampered, audit_world):
    mine, theirs = (
        scans_of(tampered["db"], audit_world["my_serial"]),
        scans_of(tampered["db"], audit_world["their_serial"]),
    )
    gone = [mine[-1], theirs[-1]]
    first = min(scan_entry(tampered["db"], s) for s in gone)
    conn = attacker(tampered["db"])
    for scan_id in gone:
        conn.execute("DELETE FROM scans WHERE id = ?", (scan_id,))
    report = verified(tampered)
    assert_names(report, first, "is gone")
    assert report.first_bad_seq == first


def test_erasing_recent_scans_personal_fields_is_caught(tampered, audit_world):
    newest = scans_of(tampered["db"], audit_world["my_serial"])[-1]
    conn = attacker(tampered["db"])
    conn.execute(
        "UPDATE scans SET ip_prefix = NULL, ip_hash = NULL, region = NULL, city = NULL, user_agent = NULL, "
        "session_hash = NULL, personal_salt = NULL WHERE id = ?",
        (newest,),
    )
    assert_names(verified(tampered), scan_entry(tampered["db"], newest), "erased outside a logged purge")


def test_erasing_a_scan_newer_than_the_last_purge_is_caught(tampered, audit_world):
    conn = db.connect(tampered["db"])
    with db.transaction(conn):
        audit.purge(conn, 30, clock.now(), "test")  # erases nothing: every scan is recent
    settle(conn)
    conn.close()
    newest = scans_of(tampered["db"], audit_world["their_serial"])[-1]
    attacker(tampered["db"]).execute(
        "UPDATE scans SET ip_prefix = NULL, ip_hash = NULL, region = NULL, city = NULL, user_agent = NULL, "
        "session_hash = NULL, personal_salt = NULL WHERE id = ?",
        (newest,),
    )
    assert_names(verified(tampered), scan_entry(tampered["db"], newest), "erased outside a logged purge")


# --- batches and codes --------------------------------------------------------------------------


def test_unrecalling_a_batch_is_caught(tampered, world, runner, monkeypatch, instance):
    recalled = world["recalled"][0]
    attacker(tampered["db"]).execute(
        "UPDATE batches SET status = 'active', recalled_at = NULL, recall_reason = NULL WHERE id = ?", (recalled,)
    )
    seq = entry(tampered["db"], "batch.recalled", batch=recalled)
    assert_names(verified(tampered), seq, f"batch {recalled}'s status is 'active'")
    for name, value in database_env(tampered["db"]).items():  # and once through the command line
        monkeypatch.setenv(name, value)
    result = runner.invoke(cli, ["audit", "verify"])
    assert result.exit_code == 1
    assert f"TAMPERED: first bad entry is {seq}" in result.stdout
    assert f"entry {seq}: batches: batch {recalled}'s status is 'active', the log says 'recalled'" in result.stdout


def test_moving_a_batch_to_another_enterprise_is_caught(tampered, world):
    mine, theirs = world["pin"][0], batch_id(tampered["db"], "Other Co")
    other = query(tampered["db"], "SELECT enterprise_id FROM batches WHERE id = ?", (theirs,))[0][0]
    attacker(tampered["db"]).execute("UPDATE batches SET enterprise_id = ? WHERE id = ?", (other, mine))
    assert_names(verified(tampered), entry(tampered["db"], "batch.issued", id=mine), "enterprise_id")


def test_inserting_a_code_is_caught(tampered, world):
    mine = world["pin"][0]
    invented = next(
        s
        for s in range(1234567890123456, 10**16)
        if not query(tampered["db"], "SELECT 1 FROM codes WHERE serial = ?", (s,))
    )
    attacker(tampered["db"]).execute("INSERT INTO codes (serial, batch_id) VALUES (?, ?)", (invented, mine))
    assert_names(verified(tampered), entry(tampered["db"], "batch.issued", id=mine), "codes inserted")


def test_moving_a_code_to_another_batch_is_caught(tampered, world):
    mine, gs1 = world["pin"][0], world["gs1"][0]
    serial = int(world["gs1"][1][0]["serial"])
    attacker(tampered["db"]).execute("UPDATE codes SET batch_id = ? WHERE serial = ?", (mine, serial))
    report = verified(tampered)
    assert_names(report, entry(tampered["db"], "batch.issued", id=mine), "codes inserted or moved in")
    assert_names(report, entry(tampered["db"], "batch.issued", id=gs1), "codes deleted or moved out")


def test_swapping_a_code_for_another_is_caught(tampered, world):
    """Same count, another serial: only the commitment to the set tells."""
    mine = world["pin"][0]
    serial = int(world["pin"][1][3]["serial"])
    invented = next(
        s for s in range(serial + 1, 10**16) if not query(tampered["db"], "SELECT 1 FROM codes WHERE serial = ?", (s,))
    )
    attacker(tampered["db"]).execute("UPDATE codes SET serial = ? WHERE serial = ?", (invented, serial))
    assert_names(verified(tampered), entry(tampered["db"], "batch.issued", id=mine), "not the set its entry logged")


# --- per-code state -----------------------------------------------------------------------------

RESETS = {
    "count set back": "UPDATE code_checks SET checks = 1, last_checked_at = first_checked_at WHERE serial = ?",
    "state deleted": "DELETE FROM code_checks WHERE serial = ?",
}


@pytest.mark.parametrize("reset", RESETS.values(), ids=RESETS.keys())
def test_resetting_a_codes_check_count_is_caught(tampered, audit_world, reset):
    serial = int(audit_world["my_serial"])
    last_counted = scans_of(tampered["db"], serial)[-1]
    attacker(tampered["db"]).execute(reset, (serial,))
    assert_names(verified(tampered), scan_entry(tampered["db"], last_counted), "code_checks", f"{serial:016d}")


def test_forgetting_a_pin_verification_is_caught(tampered):
    serial = tampered["pin_serial"]
    (pin_scan,) = [
        r[0] for r in query(tampered["db"], "SELECT id FROM scans WHERE serial = ? AND pin = 'first'", (serial,))
    ]
    attacker(tampered["db"]).execute("UPDATE code_checks SET pin_verified_at = NULL WHERE serial = ?", (serial,))
    assert_names(verified(tampered), scan_entry(tampered["db"], pin_scan), "code_checks", "PIN None")


def test_deleting_a_reported_code_is_caught(tampered, world):
    serial = int(world["pin"][1][7]["serial"])
    attacker(tampered["db"]).execute("DELETE FROM reported_codes WHERE serial = ?", (serial,))
    assert_names(verified(tampered), entry(tampered["db"], "code.reported", serial=serial), "report is gone")


def test_reporting_a_code_outside_the_log_is_caught(tampered, world):
    serial = int(world["pin"][1][8]["serial"])
    attacker(tampered["db"]).execute(
        "INSERT INTO reported_codes (serial, reported_at, reported_by, note) VALUES (?, ?, 'x', '')",
        (serial, clock.utc_text(NOW)),
    )
    assert_names(verified(tampered), 0, f"code {serial:016d} is reported but no entry reported it")


# --- accounts -----------------------------------------------------------------------------------


def test_promoting_an_enterprise_user_to_admin_is_caught(tampered):
    attacker(tampered["db"]).execute("UPDATE users SET role = 'admin', enterprise_id = NULL WHERE username = 'eve'")
    seq = entry(tampered["db"], "user.added", user="eve")
    report = verified(tampered)
    assert_names(report, seq, "user eve's role is 'admin'")
    assert_names(report, seq, "user eve's enterprise")


def test_moving_a_user_to_another_enterprise_is_caught(tampered):
    theirs = query(tampered["db"], "SELECT enterprise_id FROM users WHERE username = 'oscar'")[0][0]
    attacker(tampered["db"]).execute("UPDATE users SET enterprise_id = ? WHERE username = 'eve'", (theirs,))
    assert_names(verified(tampered), entry(tampered["db"], "user.added", user="eve"), "user eve's enterprise")


def test_changing_a_password_hash_is_caught(tampered):
    forged = accounts.hash_password("the attacker's password")
    attacker(tampered["db"]).execute("UPDATE users SET password_hash = ? WHERE username = 'ian'", (forged,))
    assert_names(verified(tampered), entry(tampered["db"], "user.added", user="ian"), "password hash")


def test_reenabling_a_disabled_user_is_caught(tampered):
    attacker(tampered["db"]).execute("UPDATE users SET disabled = 0 WHERE username = 'gone'")
    assert_names(verified(tampered), entry(tampered["db"], "user.disabled", user="gone"), "was disabled but is enabled")


def test_unrevoking_a_token_is_caught(tampered):
    token_id = tampered["revoked_token"]
    attacker(tampered["db"]).execute("UPDATE api_tokens SET revoked_at = NULL WHERE id = ?", (token_id,))
    seq = entry(tampered["db"], "token.revoked", token_id=token_id)
    assert_names(verified(tampered), seq, f"token {token_id} was revoked but is active")


def test_unrevoking_a_disabled_users_token_is_caught(tampered):
    gone = user_id(tampered["db"], "gone")
    attacker(tampered["db"]).execute("UPDATE api_tokens SET revoked_at = NULL WHERE user_id = ?", (gone,))
    assert_names(verified(tampered), entry(tampered["db"], "user.disabled", user="gone"), "was revoked but is active")


def test_inserting_a_token_is_caught(tampered):
    import hashlib

    ada = user_id(tampered["db"], "ada")
    token_hash = hashlib.sha256(b"vt_the-attackers-own-token").hexdigest()
    attacker(tampered["db"]).execute(
        "INSERT INTO api_tokens (user_id, token_hash, label, created_at) VALUES (?, ?, 'ci', ?)",
        (ada, token_hash, clock.utc_text(NOW)),
    )
    report = verified(tampered)
    assert_names(report, 0, "was never issued")
    assert report.first_bad_seq == 0


def test_swapping_a_tokens_hash_is_caught(tampered):
    import hashlib

    ada = user_id(tampered["db"], "ada")
    (token_id,) = query(tampered["db"], "SELECT id FROM api_tokens WHERE user_id = ?", (ada,))[0]
    attacker(tampered["db"]).execute(
        "UPDATE api_tokens SET token_hash = ? WHERE id = ?", (hashlib.sha256(b"vt_mine").hexdigest(), token_id)
    )
    assert_names(
        verified(tampered), entry(tampered["db"], "token.issued", token_id=token_id), "hash is not the one logged"
    )


# --- keys ---------------------------------------------------------------------------------------


def test_unrevoking_a_key_is_caught(tampered):
    path = tampered["keys_dir"] / keys.KEYRING_FILE
    ring = json.loads(path.read_text())
    (old,) = [k for k in ring["keys"] if k["name"] == "old"]
    old["status"] = "active"
    path.write_text(json.dumps(ring))
    seq = entry(tampered["db"], "key.status", kid=old["kid"])
    assert_names(verified(tampered), seq, f"key old ({old['kid']}) is active in the keyring, the log says revoked")
    assert verified(tampered, keyring=False).ok  # not compared without the keyring


def test_a_key_revoked_outside_the_log_is_caught(tampered):
    path = tampered["keys_dir"] / keys.KEYRING_FILE
    ring = json.loads(path.read_text())
    (dev,) = [k for k in ring["keys"] if k["name"] == "dev"]
    dev["status"] = "retired"
    path.write_text(json.dumps(ring))
    assert_names(verified(tampered), 0, f"key dev ({dev['kid']}) is retired in the keyring, the log says active")
