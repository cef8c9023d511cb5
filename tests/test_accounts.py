"""Accounts: scrypt passwords, throttled logins, sessions with timeouts, tokens, the CLI."""

from __future__ import annotations

import datetime as dt

import pytest

from verifier import accounts, store
from verifier.cli import cli

NOW = dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.timezone.utc)
T = "2026-11-22T08:00:00.000+00:00"


@pytest.fixture
def conn(tmp_path):
    db = store.connect(tmp_path / "a.db")
    with store.transaction(db) as c:
        accounts.add_user(c, "ian", "inspector", "correct horse battery", None, "test", T)
    return db.conn


def test_passwords_are_scrypt_hashed(conn):
    stored = conn.execute("SELECT password_hash FROM users").fetchone()[0]
    assert stored.startswith("scrypt$32768$8$1$") and "correct horse" not in stored
    assert accounts.check_password(stored, "correct horse battery") and not accounts.check_password(stored, "guess")


def test_short_passwords_and_bad_roles_are_refused(conn):
    with pytest.raises(accounts.AccountError, match="at least 10"):
        accounts.add_user(conn, "x1", "inspector", "short", None, "t", T)
    with pytest.raises(accounts.AccountError, match="role"):
        accounts.add_user(conn, "x2", "root", "long enough pw", None, "t", T)
    with pytest.raises(accounts.AccountError, match="needs --enterprise"):
        accounts.add_user(conn, "x3", "enterprise", "long enough pw", None, "t", T)


def test_login_throttling_locks_after_five_failures(conn):
    for _ in range(5):
        assert accounts.login(conn, "ian", "wrong", NOW) is None
    assert accounts.login(conn, "ian", "correct horse battery", NOW) is None  # locked
    later = NOW + dt.timedelta(minutes=accounts.LOCK_MINUTES + 1)
    user, session = accounts.login(conn, "ian", "correct horse battery", later)
    assert user.username == "ian" and len(session) >= 40


def test_sessions_have_idle_and_absolute_timeouts_and_server_side_logout(conn):
    _, session = accounts.login(conn, "ian", "correct horse battery", NOW)
    assert accounts.user_for_session(conn, session, NOW + dt.timedelta(minutes=20)).username == "ian"
    assert accounts.user_for_session(conn, session, NOW + dt.timedelta(minutes=45)).username == "ian"  # idle reset
    assert accounts.user_for_session(conn, session, NOW + dt.timedelta(minutes=80)) is None  # idle > 30 min
    _, session = accounts.login(conn, "ian", "correct horse battery", NOW)
    alive = [accounts.user_for_session(conn, session, NOW + dt.timedelta(minutes=m)) is not None
             for m in range(25, 13 * 60, 25)]  # active every 25 minutes, all day long...
    assert alive == [m <= 12 * 60 for m in range(25, 13 * 60, 25)]  # ...it still ends after 12 hours
    _, session = accounts.login(conn, "ian", "correct horse battery", NOW)
    accounts.logout(conn, session)
    assert accounts.user_for_session(conn, session, NOW) is None


def test_tokens_are_random_stored_hashed_and_revocable(conn):
    token_id, token = accounts.issue_token(conn, "ian", "nightly", "t", T)
    assert token.startswith("vt_") and len(token) >= 3 + 43  # 256 random bits
    assert token not in str(conn.execute("SELECT * FROM api_tokens").fetchall())
    assert accounts.user_for_token(conn, token).username == "ian"
    accounts.revoke_token(conn, token_id, "t", T)
    assert accounts.user_for_token(conn, token) is None


def test_disabling_a_user_ends_sessions_and_tokens(conn):
    _, token = accounts.issue_token(conn, "ian", "", "t", T)
    _, session = accounts.login(conn, "ian", "correct horse battery", NOW)
    accounts.disable_user(conn, "ian", "t", T)
    assert accounts.user_for_token(conn, token) is None and accounts.user_for_session(conn, session, NOW) is None


def test_users_cli(instance, runner, monkeypatch):
    monkeypatch.setenv("VERIFIER_USER_PASSWORD", "correct horse battery")
    assert runner.invoke(cli, ["users", "add", "ada", "--role", "admin"]).stdout == "Created admin ada\n"
    token = runner.invoke(cli, ["users", "token", "ada", "--label", "ci"])
    assert token.exit_code == 0 and token.stdout.startswith("vt_") and "shown once" in token.stderr
    listing = runner.invoke(cli, ["users", "list"]).stdout
    assert "ada" in listing and "tokens 1" in listing
    assert runner.invoke(cli, ["users", "revoke-token", "1"]).exit_code == 0
    assert runner.invoke(cli, ["users", "disable", "ada"]).exit_code == 0
    bad = runner.invoke(cli, ["users", "add", "eve", "--role", "enterprise", "--enterprise", "Nobody"])
    assert bad.exit_code == 1 and bad.stderr.startswith("Error: no enterprise 'Nobody'")
    again = runner.invoke(cli, ["users", "add", "ada", "--role", "admin"])
    assert again.exit_code == 1 and again.stderr.strip() == "Error: user 'ada' already exists"
    kinds = [k for (k,) in store.connect(instance / "verifier.db").execute("SELECT kind FROM audit_log ORDER BY seq")]
    assert kinds == ["user.added", "token.issued", "token.revoked", "user.disabled"]
