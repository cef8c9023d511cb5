"""Key files: encryption, permissions, statuses, JWKS."""

from __future__ import annotations

import datetime as dt
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization

from verifier import codes, keys

NOW = dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.timezone.utc)
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


@pytest.mark.parametrize("jwks, message", [
    ([], "object with a 'keys' list"),
    ({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]}, "32-byte"),
    ({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "A" * 43, "kid": "0000"}]}, "does not match"),
    ({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "A" * 43, "status": "lost"}]}, "unknown status"),
])  # fmt: skip
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
