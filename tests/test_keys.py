"""Key files: encryption, permissions, statuses, JWKS."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from together import run_together

from verifier import codes, keys

NOW = dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.UTC)
PASS = b"correct horse battery staple"


def test_new_key_is_encrypted_pkcs8_with_mode_0600(tmp_path):
    record = keys.create_key(tmp_path, "factory", PASS, NOW)
    pem = tmp_path / "factory.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert pem.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(TypeError):  # unusable without the passphrase
        serialization.load_pem_private_key(pem.read_bytes(), password=None)
    assert record.status == "active" and len(record.kid) == 4
    assert bytes.fromhex(record.kid) == keys.kid_for(record.public_key().public_bytes_raw())


def test_private_key_loads_and_signs(tmp_path):
    keys.create_key(tmp_path, "factory", PASS, NOW)
    record, private = keys.load_private_key(tmp_path, "factory", PASS)
    assert keys.raw_public(private) == record.public_key().public_bytes_raw()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_private_key_readable_by_others_is_refused(tmp_path, mode):
    keys.create_key(tmp_path, "factory", PASS, NOW)
    os.chmod(tmp_path / "factory.pem", mode)
    with pytest.raises(keys.KeyringError, match=f"permissions {mode:04o} .* too open"):
        keys.load_private_key(tmp_path, "factory", PASS)


def test_wrong_passphrase_is_a_clear_error(tmp_path):
    keys.create_key(tmp_path, "factory", PASS, NOW)
    with pytest.raises(keys.KeyringError, match="wrong passphrase"):
        keys.load_private_key(tmp_path, "factory", b"guess")


@pytest.mark.parametrize("name", ["", "Upper", "a b", "-x", "x" * 41, "../escape"])
def test_bad_key_names_are_refused(tmp_path, name):
    with pytest.raises(keys.KeyringError, match="key name"):
        keys.create_key(tmp_path, name, PASS, NOW)


def test_empty_passphrase_and_duplicate_names_are_refused(tmp_path):
    with pytest.raises(keys.KeyringError, match="empty passphrase"):
        keys.create_key(tmp_path, "a", b"", NOW)
    keys.create_key(tmp_path, "a", PASS, NOW)
    with pytest.raises(keys.KeyringError, match="already exists"):
        keys.create_key(tmp_path, "a", PASS, NOW)


def test_retired_key_signs_nothing_but_still_verifies(tmp_path):
    record = keys.create_key(tmp_path, "old", PASS, NOW)
    keys.set_status(tmp_path, record.kid, "retired", NOW)
    with pytest.raises(keys.KeyringError, match="retired: it signs nothing new"):
        keys.load_private_key(tmp_path, "old", PASS)
    assert keys.trust_from_folder(tmp_path)[bytes.fromhex(record.kid)].status == "retired"


def test_revocation_is_final(tmp_path):
    record = keys.create_key(tmp_path, "leaked", PASS, NOW)
    assert keys.set_status(tmp_path, "leaked", "revoked", NOW).status_changed_at == "2026-11-22T08:00:00+00:00"
    with pytest.raises(keys.KeyringError, match="cannot become retired"):
        keys.set_status(tmp_path, record.kid, "retired", NOW)
    with pytest.raises(keys.KeyringError, match="can be set to retired or revoked"):
        keys.set_status(tmp_path, record.kid, "active", NOW)


def test_jwks_is_rfc8037_and_public_export_leaves_revoked_keys_out(tmp_path):
    a = keys.create_key(tmp_path, "a", PASS, NOW)
    b = keys.create_key(tmp_path, "b", PASS, NOW)
    keys.set_status(tmp_path, "b", "revoked", NOW)
    full = keys.jwks(keys.read_keyring(tmp_path))
    assert [k["kid"] for k in full["keys"]] == [a.kid, b.kid]
    assert set(full["keys"][0]) >= {"kty", "crv", "x", "kid", "alg", "use"}
    assert full["keys"][0]["kty"] == "OKP" and full["keys"][0]["crv"] == "Ed25519"
    assert all("d" not in jwk for jwk in full["keys"])  # never the private member
    public = keys.jwks(keys.read_keyring(tmp_path), include_revoked=False)
    assert [k["kid"] for k in public["keys"]] == [a.kid]


@pytest.mark.parametrize(
    "jwks, message",
    [
        ([], "object with a 'keys' list"),
        ({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]}, "32-byte"),
        ({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "A" * 43, "kid": "0000"}]}, "does not match"),
        ({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "A" * 43, "status": "lost"}]}, "unknown status"),
    ],
)
def test_bad_jwks_is_refused(jwks, message):
    with pytest.raises(ValueError, match=message):
        keys.trust_from_jwks(jwks)


def test_other_key_types_in_a_jwks_are_skipped():
    assert keys.trust_from_jwks({"keys": [{"kty": "EC", "crv": "P-256"}]}) == {}


def test_trust_from_jwks_keeps_status(tmp_path):
    record = keys.create_key(tmp_path, "a", PASS, NOW)
    trusted = keys.trust_from_jwks(keys.jwks(keys.read_keyring(tmp_path)))
    assert trusted[bytes.fromhex(record.kid)].status == codes.KEY_ACTIVE


def test_keys_folder_gitignore_keeps_private_keys_out():
    from pathlib import Path

    ignore = (Path(__file__).parent.parent / ".gitignore").read_text()
    assert "*.pem" in ignore.split()


# --- status changes under concurrency: the keyring is locked around every read-modify-write ---


def key_status_log(location) -> list[tuple[str, str]]:
    """(kid, status) of every key.status entry of the audit log, in log order (chained first)."""
    from conftest import settle

    from verifier import db

    settle(location)
    conn = db.connect(location)
    try:
        rows = conn.execute("SELECT body FROM audit_log WHERE kind = 'key.status' ORDER BY seq").fetchall()
    finally:
        conn.close()
    return [(body["kid"], body["status"]) for body in (json.loads(text) for (text,) in rows)]


@pytest.fixture
def registry(instance, new_database, monkeypatch):
    """A new database of the test's engine that the instance's commands use; its location."""
    from conftest import database_env

    location = new_database()
    for name, value in database_env(location).items():
        monkeypatch.setenv(name, value)
    return location


def keyring_with(folder, count: int) -> list[keys.KeyRecord]:
    return [keys.create_key(folder, f"k{i}", PASS, NOW) for i in range(count)]


def test_concurrent_revocations_are_all_kept(instance, registry):
    from conftest import settle

    from verifier import auditlog, db

    records = keyring_with(instance / "keys", 6)
    db.connect(registry).close()
    revoke = "from verifier.cli import cli", "cli.main(['keys', 'revoke', {!r}], prog_name='verifier')"
    jobs = [(revoke[0], revoke[1].format(r.kid)) for r in records] + [(revoke[0], revoke[1].format("k0"))]
    done = run_together(jobs)
    assert sorted(p.returncode for p in done) == [0] * 6 + [1], [p.stderr for p in done]
    [refused] = [p for p in done if p.returncode]
    assert refused.stderr == f"Error: key k0 ({records[0].kid}) is already revoked\n"  # one line, no traceback
    assert {r.kid: r.status for r in keys.read_keyring(instance / "keys")} == {r.kid: "revoked" for r in records}
    assert sorted(key_status_log(registry)) == sorted((r.kid, "revoked") for r in records)
    conn = db.connect(registry)
    settle(conn)
    assert auditlog.verify(conn).ok
    conn.close()
    leftovers = set(os.listdir(instance / "keys")) - {"keyring.json", "keyring.lock"} - {f"k{i}.pem" for i in range(6)}
    assert leftovers == set()  # no temporary file left behind


def test_status_log_follows_the_keyring_order(instance, registry, runner):
    from verifier import db
    from verifier.cli import cli

    [record] = keyring_with(instance / "keys", 1)
    db.connect(registry).close()
    assert runner.invoke(cli, ["keys", "retire", "k0"]).exit_code == 0
    assert runner.invoke(cli, ["keys", "revoke", "k0"]).exit_code == 0
    again = runner.invoke(cli, ["keys", "revoke", "k0"])
    assert again.exit_code == 1 and again.stderr == f"Error: key k0 ({record.kid}) is already revoked\n"
    assert key_status_log(registry) == [(record.kid, "retired"), (record.kid, "revoked")]


def test_a_failed_status_change_writes_no_log_entry(tmp_path):
    [record] = keyring_with(tmp_path, 1)
    written = []
    keys.set_status(tmp_path, "k0", "revoked", NOW, written.append)
    with pytest.raises(keys.KeyringError, match="already revoked"):
        keys.set_status(tmp_path, "k0", "revoked", NOW, written.append)
    assert [(r.kid, r.status) for r in written] == [(record.kid, "revoked")]


def test_keyring_is_replaced_atomically_and_keeps_its_mode(tmp_path):
    keyring_with(tmp_path, 1)
    os.chmod(tmp_path / "keyring.json", 0o640)
    keys.set_status(tmp_path, "k0", "retired", NOW)
    assert stat.S_IMODE((tmp_path / "keyring.json").stat().st_mode) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["k0.pem", "keyring.json", "keyring.lock"]


def test_concurrent_ui_revocations_never_fail(db_copy, tmp_path, app_config):
    from conftest import log_in

    from verifier import accounts, db
    from verifier.web import create_app
    from verifier.web.audit_ui import COOKIE

    records = keyring_with(tmp_path / "keys", 5)
    conn = db.connect(db_copy)
    with db.transaction(conn):
        accounts.add_user(
            conn, "ada", "admin", "correct horse battery", None, "test", dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
        )
    conn.close()
    config = app_config(KEYS_DIR=str(tmp_path / "keys"))  # a plain dict: the subprocesses get its repr
    browser = create_app(config).test_client()
    login = log_in(browser, "ada")
    assert login.status_code == 302
    session = browser.get_cookie(COOKIE, path="/audit").value
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', browser.get("/audit/keys").get_data(as_text=True)).group(1)
    setup = f"""
        from verifier.web import create_app
        client = create_app({config!r}).test_client()
        client.set_cookie({COOKIE!r}, {session!r}, path="/audit")
    """
    post = "print(client.post('/audit/keys', data={{'kid': {!r}, 'csrf': {!r}, 'confirm': 'yes'}}).status_code)"
    kids = [r.kid for r in records] + [records[0].kid]
    done = run_together([(setup, post.format(kid, csrf)) for kid in kids])
    assert all(p.returncode == 0 for p in done), [p.stderr[-2000:] for p in done]
    assert sorted(p.stdout.strip() for p in done) == ["302"] * 5 + ["400"]  # the second revocation of one key
    assert {r.status for r in keys.read_keyring(tmp_path / "keys")} == {"revoked"}
    assert sorted(key_status_log(db_copy)) == sorted((r.kid, "revoked") for r in records)
