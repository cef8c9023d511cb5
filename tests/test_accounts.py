"""Accounts: scrypt passwords, logins throttled by address and by name, sessions with timeouts, tokens, the CLI."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import re

import psycopg
import pytest
from conftest import database_env, settle

from verifier import accounts, db
from verifier.cli import cli

NOW = dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.UTC)
T = NOW  # the `now` of account changes


@pytest.fixture
def conn(new_database):
    c = db.connect(new_database("a.db"))
    with db.transaction(c):
        accounts.add_user(c, "ian", "inspector", "correct horse battery", None, "test", T)
    yield c
    c.close()


def dump(conn) -> str:
    """Every row of every table, as text (what a stolen copy of the database would show)."""
    if db.is_postgres_conn(conn):
        sql = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    tables = sorted(name for (name,) in conn.execute(sql))
    return "\n".join(f"{t}: {row}" for t in tables for row in conn.execute(f"SELECT * FROM {t}").fetchall())


@contextlib.contextmanager
def statements_of(conn):
    """The SQL statements sent on `conn` meanwhile: SQLite's trace (as run, values in), or on
    PostgreSQL what the connection was asked to run (values apart)."""
    seen: list[str] = []
    if not db.is_postgres_conn(conn):
        conn.set_trace_callback(seen.append)
        try:
            yield seen
        finally:
            conn.set_trace_callback(None)
        return
    execute, executemany = conn.execute, conn.executemany

    def traced_execute(sql, *params):
        seen.append(sql)
        return execute(sql, *params)

    def traced_executemany(sql, rows):
        seen.append(sql)
        return executemany(sql, rows)

    conn.execute, conn.executemany = traced_execute, traced_executemany
    try:
        yield seen
    finally:
        del conn.execute, conn.executemany


def in_transaction(conn) -> bool:
    if db.is_postgres_conn(conn):
        return conn.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
    return conn.in_transaction


def test_passwords_are_scrypt_hashed(conn):
    stored = conn.execute("SELECT password_hash FROM users").fetchone()[0]
    assert stored.startswith("scrypt:32768:8:1$") and "correct horse" not in stored  # werkzeug.security's format
    assert accounts.check_password(stored, "correct horse battery") and not accounts.check_password(stored, "guess")


# "correct horse battery" hashed by the code before werkzeug.security (scrypt$N$r$p$salt$digest, hex)
LEGACY_HASH = (
    "scrypt$32768$8$1$07e41cebab743f20e6e919926d48dd16$0cdc9cb6ab4caf68cb8af868e54fe2870a29184cb4f5d088d84115091666c7"
    "3ec686aac9aae37ff274e858b5227e5671cba1963166d4bed811f333e3dbe40a80"
)


def test_passwords_hashed_before_werkzeug_still_verify(conn):
    assert accounts.check_password(LEGACY_HASH, "correct horse battery")
    assert not accounts.check_password(LEGACY_HASH, "correct horse batterz")
    conn.execute("UPDATE users SET password_hash = ? WHERE username = 'ian'", (LEGACY_HASH,))
    assert attempt(conn, "ian").user.username == "ian"


@pytest.mark.parametrize("stored", ["", "plain", "scrypt$1$2", "md5$salt$00", "scrypt:x:8:1$salt$00", "$$"])
def test_malformed_password_hashes_match_nothing(stored):
    assert not accounts.check_password(stored, "correct horse battery")


def test_short_passwords_and_bad_roles_are_refused(conn):
    with pytest.raises(accounts.AccountError, match="at least 10"):
        accounts.add_user(conn, "x1", "inspector", "short", None, "t", T)
    with pytest.raises(accounts.AccountError, match="role"):
        accounts.add_user(conn, "x2", "root", "long enough pw", None, "t", T)
    with pytest.raises(accounts.AccountError, match="needs --enterprise"):
        accounts.add_user(conn, "x3", "enterprise", "long enough pw", None, "t", T)


# --- logins: one equally expensive check per attempt, throttles by address and by name -------

KEY = b"test-key"
PASSWORD = "correct horse battery"
A, B = "203.0.113.66", "198.51.100.7"  # an attacker's address, the owner's


def attempt(conn, username, password=PASSWORD, now=NOW, ip=B, check=accounts.check_password):
    return accounts.login(conn, username, password, now, ip=ip, key=KEY, check=check)


class RecordingChecker:
    """The real password check, remembering what it was asked (and caching repeats, for speed)."""

    def __init__(self):
        self.hashes: list[str] = []
        self._check = functools.lru_cache(maxsize=None)(accounts.check_password)

    def __call__(self, stored: str, password: str) -> bool:
        self.hashes.append(stored)
        return self._check(stored, password)


def cost(stored: str) -> str:
    """scheme$N$r$p of a stored hash, werkzeug's (scrypt:N:r:p$salt$digest) or the one before (scrypt$N$r$p$...)."""
    return re.sub("[:$]", "$", re.match(r"scrypt[:$]\d+[:$]\d+[:$]\d+", stored).group())


def sql_shape(statements: list[str]) -> list[str]:
    return [re.sub(r"'[^']*'|\b\d+\b", "?", s) for s in statements]


@pytest.fixture
def people(conn):
    """ian (inspector), ada (admin) and gone (disabled), all with the same password."""
    with db.transaction(conn):
        accounts.add_user(conn, "ada", "admin", PASSWORD, None, "test", T)
        accounts.add_user(conn, "gone", "inspector", PASSWORD, None, "test", T)
        accounts.disable_user(conn, "gone", "test", T)
    return conn


FAILURES = {
    "wrong password": ("ian", "not the password"),
    "unknown user": ("nobody", PASSWORD),
    "disabled user, right password": ("gone", PASSWORD),
    "disabled user, wrong password": ("gone", "not the password"),
}


@pytest.mark.parametrize("case", [*FAILURES, "right password"])
def test_user_enumeration_by_timing_every_outcome_runs_one_equally_expensive_check(people, case):
    username, password = FAILURES.get(case, ("ian", PASSWORD))
    check = RecordingChecker()
    result = attempt(people, username, password, check=check)
    assert (result.user is not None) == (case == "right password") and result.retry_after == 0
    assert len(check.hashes) == 1
    real = people.execute("SELECT password_hash FROM users WHERE username = 'ian'").fetchone()[0]
    assert cost(check.hashes[0]) == cost(real) == f"scrypt${accounts.SCRYPT_N}${accounts.SCRYPT_R}${accounts.SCRYPT_P}"


def test_user_enumeration_by_timing_every_failure_does_the_same_database_work(people):
    shapes, results = {}, {}
    for i, (case, (username, password)) in enumerate(FAILURES.items()):
        with statements_of(people) as seen:
            results[case] = attempt(people, username, password, ip=f"192.0.2.{i}")  # fresh address, fresh name
        assert seen, case
        shapes[case] = sql_shape(seen)
    assert set(results.values()) == {accounts.LoginResult()}
    assert len({tuple(shape) for shape in shapes.values()}) == 1, shapes


def test_user_enumeration_by_timing_throttled_attempts_check_nothing_whatever_the_name(people):
    check = RecordingChecker()
    for _ in range(accounts.FAILURES_PER_CLIENT):  # the address spends its allowance on one name
        attempt(people, "ian", "guess", ip=A, check=check)
    check.hashes.clear()
    answers = {name: attempt(people, name, PASSWORD, ip=A, check=check) for name in ("ian", "ada", "gone", "nobody")}
    assert check.hashes == []  # refused before any account row is read
    assert len(set(answers.values())) == 1 and answers["nobody"].retry_after > 0


def test_lockout_as_denial_of_service_the_password_check_holds_no_write_lock(people):
    states = []
    assert attempt(people, "ada", check=lambda stored, pw: states.append(in_transaction(people)) or True).user
    assert states == [False]  # scans and other logins are not queued behind 0.1 s of scrypt


def test_lockout_as_denial_of_service_an_attacker_cannot_lock_the_admin_out(people):
    check = RecordingChecker()
    for i in range(20):
        assert attempt(people, "ada", f"guess {i}", NOW + dt.timedelta(seconds=i), ip=A, check=check).user is None
    owner = attempt(people, "ada", PASSWORD, NOW + dt.timedelta(seconds=30), ip=B, check=check)
    assert owner.user.username == "ada" and owner.session


def test_lockout_as_denial_of_service_an_address_over_its_limit_is_refused_for_every_account(people):
    check = RecordingChecker()
    for i in range(20):
        attempt(people, "ada", f"guess {i}", NOW + dt.timedelta(seconds=i), ip=A, check=check)
    later = NOW + dt.timedelta(seconds=30)
    refused = {name: attempt(people, name, PASSWORD, later, ip=A, check=check) for name in ("ian", "ada", "nobody")}
    assert set(refused.values()) == {accounts.LoginResult(retry_after=15 * 60 - 30)}  # the same for every name
    v6 = [attempt(people, "ian", "guess", later, ip=f"2001:db8:1:2::{i:x}", check=check) for i in range(1, 22)]
    assert v6[-1].retry_after > 0  # an IPv6 client is its /64, not one of its many addresses
    assert attempt(people, "ian", PASSWORD, later, ip="2001:db8:1:3::1", check=check).user is not None


def test_lockout_as_denial_of_service_windows_expire_by_injected_time(people):
    check = RecordingChecker()
    for i in range(20):
        attempt(people, "ada", f"guess {i}", NOW + dt.timedelta(seconds=i), ip=A, check=check)
    almost = attempt(people, "ian", PASSWORD, NOW + accounts.LOGIN_WINDOW - dt.timedelta(seconds=1), ip=A, check=check)
    assert almost == accounts.LoginResult(retry_after=1)
    assert attempt(people, "ian", PASSWORD, NOW + accounts.LOGIN_WINDOW, ip=A, check=check).user.username == "ian"
    # the first failures have left the window: ada is below her per-address limit again too
    assert (
        attempt(
            people, "ada", PASSWORD, NOW + accounts.LOGIN_WINDOW + dt.timedelta(seconds=5), ip=A, check=check
        ).user.username
        == "ada"
    )


def test_lockout_as_denial_of_service_five_failures_throttle_one_name_from_one_address(people):
    check = RecordingChecker()
    for _ in range(accounts.FAILURES_PER_CLIENT_AND_NAME):
        assert attempt(people, "ian", "wrong", ip=A, check=check) == accounts.LoginResult()
    assert attempt(people, "ian", PASSWORD, ip=A, check=check) == accounts.LoginResult(retry_after=15 * 60)
    assert attempt(people, "ada", PASSWORD, ip=A, check=check).user.username == "ada"  # other names: still open
    assert attempt(people, "ian", PASSWORD, ip=B, check=check).user.username == "ian"  # other addresses: still open


def test_lockout_as_denial_of_service_a_name_tried_from_very_many_addresses_backs_off_briefly(people):
    check = RecordingChecker()
    for name in ("ada", "nobody"):
        for i in range(accounts.FAILURES_PER_NAME):
            attempt(people, name, "guess", NOW, ip=f"10.{i // 256}.{i % 256}.{len(name)}", check=check)
    backed_off = {
        name: attempt(people, name, PASSWORD, NOW + dt.timedelta(seconds=10), ip=B, check=check)
        for name in ("ada", "nobody")
    }
    assert set(backed_off.values()) == {accounts.LoginResult(retry_after=50)}  # a minute, not a lock; the same for both
    assert attempt(people, "ada", PASSWORD, NOW + accounts.NAME_BACKOFF, ip=B, check=check).user.username == "ada"


def test_login_failures_keep_keyed_hashes_never_addresses_or_names(people):
    attempt(people, "ada", "guess", ip=A)
    attempt(people, "no-such-person", "guess", ip="2001:db8::1")
    stored = dump(people)
    assert people.execute("SELECT count(*) FROM login_failures").fetchone()[0] == 2
    assert "login_failures: (" in stored  # the dump shows the failures' rows...
    for secret in (A, "2001:db8", "no-such-person", "guess"):
        assert secret not in stored  # ...and none of these


def test_sessions_have_idle_and_absolute_timeouts_and_server_side_logout(conn):
    session = attempt(conn, "ian").session
    assert accounts.user_for_session(conn, session, NOW + dt.timedelta(minutes=20)).username == "ian"
    assert accounts.user_for_session(conn, session, NOW + dt.timedelta(minutes=45)).username == "ian"  # idle reset
    assert accounts.user_for_session(conn, session, NOW + dt.timedelta(minutes=80)) is None  # idle > 30 min
    session = attempt(conn, "ian").session
    alive = [
        accounts.user_for_session(conn, session, NOW + dt.timedelta(minutes=m)) is not None
        for m in range(25, 13 * 60, 25)
    ]  # active every 25 minutes, all day long...
    assert alive == [m <= 12 * 60 for m in range(25, 13 * 60, 25)]  # ...it still ends after 12 hours
    session = attempt(conn, "ian").session
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
    session = attempt(conn, "ian").session
    accounts.disable_user(conn, "ian", "t", T)
    assert accounts.user_for_token(conn, token) is None and accounts.user_for_session(conn, session, NOW) is None


def test_users_cli(instance, runner, monkeypatch, new_database):
    location = new_database()
    for name, value in database_env(location).items():
        monkeypatch.setenv(name, value)
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
    settle(location)
    conn = db.connect(location)
    kinds = [k for (k,) in conn.execute("SELECT kind FROM audit_log ORDER BY seq")]
    conn.close()
    assert kinds == ["user.added", "token.issued", "token.revoked", "user.disabled"]


def test_lockout_guesses_sent_at_once_get_no_more_checks_than_one_after_another(conn):
    """Twelve processes guess ian's password from one address at the same moment: five are checked
    (FAILURES_PER_CLIENT_AND_NAME), the others are refused unchecked, as if they had come in turn."""
    from together import run_together

    setup = f"""
        import datetime as dt
        from verifier import accounts, db
        conn = db.connect({db.location_of(conn)!r})
        now = dt.datetime.fromisoformat({NOW.isoformat()!r})
    """
    action = (
        f"print(accounts.login(conn, 'ian', 'guess', now, ip={A!r}, key={KEY!r},"
        " check=lambda stored, password: False).retry_after)"
    )
    done = run_together([(setup, action)] * 12)
    assert [p.returncode for p in done] == [0] * 12, [p.stderr[-2000:] for p in done]
    waits = [int(p.stdout) for p in done]
    assert waits.count(0) == accounts.FAILURES_PER_CLIENT_AND_NAME, waits
    assert attempt(conn, "ian", ip=A) == accounts.LoginResult(retry_after=15 * 60)  # and the owner's try from there
