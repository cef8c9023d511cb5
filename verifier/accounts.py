"""Accounts for inspectors, enterprises and admins: scrypt passwords, API tokens, sessions.

The service: explicit arguments (a connection, `now`, the client's address and hash key, the
password checker), no request, no environment. Every SQL statement is in verifier/repos/accounts.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from werkzeug.security import check_password_hash, generate_password_hash

from . import auditlog, clients, clock, db, errors, replay
from .repos import accounts as repo

# association: the issuing association's staff, who grant, suspend and revoke mark certificates
# (verifier/certificates.py); no enterprise, and none of the audit's reads of scans.
ROLES = ("admin", "inspector", "enterprise", "association")
# Who reads the audit: scans, batches, anomalies, the map, cases, reports and EPCIS events (an
# enterprise only its own). The association's pages are its console's.
AUDIT_READERS = ("admin", "inspector", "enterprise")
# scrypt: memory-hard (128 * r * n bytes = 32 MiB here), about 0.1 s on this class of machine.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
# Stored as werkzeug.security writes it: "scrypt:32768:8:1$<salt>$<hex digest>". Its salt is text
# of 62 letters and digits: 22 of them are 131 bits, no less than the 16 random bytes of before.
PASSWORD_METHOD = f"scrypt:{SCRYPT_N}:{SCRYPT_R}:{SCRYPT_P}"
SALT_LENGTH = 22
# Hashes written before werkzeug: "scrypt$N$r$p$<salt hex>$<digest hex>", still verified.
_LEGACY_PREFIX = "scrypt$"
TOKEN_PREFIX = "vt_"
SESSION_IDLE = dt.timedelta(minutes=30)
SESSION_ABSOLUTE = dt.timedelta(hours=12)
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{1,63}")


class AccountError(errors.VerifierError):
    """An account operation that cannot be done; the message is for the user."""

    exit_code = 1  # what `verifier users ...` has always exited with for these


class InvalidAccount(AccountError, errors.InvalidInput):
    """A user name, role, password or enterprise that an account cannot have."""


class AccountNotFound(AccountError, errors.NotFound):
    """No such user, enterprise or active token."""


class AccountConflict(AccountError, errors.Conflict):
    """The name is taken, or the account is disabled."""


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: str
    enterprise_id: int | None
    disabled: bool

    def sees_everything(self) -> bool:
        return self.role in ("admin", "inspector")


def _user(row: repo.UserRow) -> User:
    return User(row[0], row[1], row[2], row[3], bool(row[4]))


# --- passwords --------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    if len(password) < 10:
        raise InvalidAccount("a password has at least 10 characters")
    return generate_password_hash(password, PASSWORD_METHOD, SALT_LENGTH)


def check_password(stored: str, password: str) -> bool:
    """Whether `password` matches the stored hash (werkzeug's format, or the one before it)."""
    if stored.startswith(_LEGACY_PREFIX):
        return _check_legacy(stored, password)
    try:
        return check_password_hash(stored, password)
    except ValueError:  # not a method werkzeug knows: no password matches it
        return False


def _check_legacy(stored: str, password: str) -> bool:
    try:
        _scheme, n, r, p, salt, digest = stored.split("$")
        candidate = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), maxmem=64 * 1024 * 1024
        )
    except ValueError:
        return False
    return hmac.compare_digest(candidate.hex(), digest)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()  # 256 random bits: a fast hash is enough


# --- accounts and tokens (each inside the caller's write transaction) --------------------------


def add_user(
    conn: db.Conn,
    username: str,
    role: str,
    password: str,
    enterprise_id: int | None,
    actor: str,
    now: dt.datetime,
) -> User:
    """Create an account (inside a write transaction)."""
    if not _NAME_RE.fullmatch(username):
        raise InvalidAccount("a user name is 2-64 characters: letters, digits and _ . @ -")
    if role not in ROLES:
        raise InvalidAccount(f"a role is one of {', '.join(ROLES)}")
    if (role == "enterprise") != (enterprise_id is not None):
        raise InvalidAccount("an enterprise account needs --enterprise, and only it")
    at = clock.utc_text(now)
    password_hash = hash_password(password)
    user_id = repo.insert_user(conn, username, role, enterprise_id, password_hash, at)
    if user_id is None:
        raise AccountConflict(f"user {username!r} already exists")
    body = {
        "user": username,
        "user_id": user_id,
        "role": role,
        "enterprise_id": enterprise_id,
        "password_sha256": replay.password_commitment(password_hash),  # a changed hash is caught, never shown
    }
    auditlog.append(conn, "user.added", body, at, actor)
    return User(user_id, username, role, enterprise_id, False)


def enterprise_id(conn: db.Conn, name: str) -> int:
    """The id of the enterprise an `enterprise` account is to belong to."""
    found = repo.enterprise_id(conn, name)
    if found is None:
        raise AccountNotFound(f"no enterprise {name!r} (it is created by its first batch)")
    return found


def find_user(conn: db.Conn, username: str) -> User:
    row = repo.user_by_name(conn, username)
    if row is None:
        raise AccountNotFound(f"no user {username!r} (see `verifier users list`)")
    return _user(row)


def list_users(conn: db.Conn) -> list[dict[str, Any]]:
    return repo.list_users(conn)


def disable_user(conn: db.Conn, username: str, actor: str, now: dt.datetime) -> User:
    """Disable an account: its sessions and tokens stop working at once."""
    user = find_user(conn, username)
    at = clock.utc_text(now)
    repo.disable_user(conn, user.id, at)
    auditlog.append(conn, "user.disabled", {"user": username}, at, actor)
    return User(user.id, user.username, user.role, user.enterprise_id, True)


def issue_token(conn: db.Conn, username: str, label: str, actor: str, now: dt.datetime) -> tuple[int, str]:
    """A new API token for a user: (token id, the token). The token is shown once, stored hashed."""
    user = find_user(conn, username)
    if user.disabled:
        raise AccountConflict(f"user {username!r} is disabled")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    at = clock.utc_text(now)
    token_hash = _token_hash(token)
    token_id = repo.insert_token(conn, user.id, token_hash, label, at)
    body = {
        "user": username,
        "user_id": user.id,
        "token_id": token_id,
        "label": label,
        "token_sha256": replay.token_commitment(token_hash),  # an inserted or swapped token is caught
    }
    auditlog.append(conn, "token.issued", body, at, actor)
    return token_id, token


def revoke_token(conn: db.Conn, token_id: int, actor: str, now: dt.datetime) -> None:
    at = clock.utc_text(now)
    if not repo.revoke_token(conn, token_id, at):
        raise AccountNotFound(f"no active token {token_id}")
    auditlog.append(conn, "token.revoked", {"token_id": token_id}, at, actor)


def user_for_token(conn: db.Conn, token: str) -> User | None:
    """The enabled user a bearer token belongs to, or None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        return None
    row = repo.user_for_token_hash(conn, _token_hash(token))
    return _user(row) if row else None


# --- interactive logins: throttled per address and per name, with server-side sessions --------
#
# Every failure is counted by a keyed hash of the client's address and of the name tried (known or
# not), never by the account row: an outcome may not depend on whether the account exists, and a
# stranger's failures may not lock the owner out. An address that fails too often is refused for
# every name; a name that fails from very many addresses backs off briefly.

PasswordChecker = Callable[[str, str], bool]
LOGIN_WINDOW = dt.timedelta(minutes=15)
FAILURES_PER_CLIENT_AND_NAME = 5  # one address guessing one name
FAILURES_PER_CLIENT = 20  # one address, all names together
FAILURES_PER_NAME = 100  # all addresses together: a distributed guess...
NAME_BACKOFF = dt.timedelta(minutes=1)  # ...then one more try a minute, not a lock
# What an unknown name is checked against: the same method, parameters and salt length as a real
# hash, so the same cost.
DUMMY_HASH = f"{PASSWORD_METHOD}$" + "0" * SALT_LENGTH + "$" + "00" * 64


@dataclass(frozen=True)
class LoginResult:
    """A login attempt's outcome: a user and a session, or neither (and then maybe a wait)."""

    user: User | None = None
    session: str | None = None
    retry_after: int = 0  # seconds; > 0 when the attempt was refused unchecked, for too many failures


def login(
    conn: db.Conn,
    username: str,
    password: str,
    now: dt.datetime,
    *,
    ip: str,
    key: bytes,
    check: PasswordChecker = check_password,
) -> LoginResult:
    """One login attempt from address `ip`, in its own short write transactions (none around the check).

    An attempt that is not throttled runs `check` exactly once: against the account's hash, or
    against DUMMY_HASH for an unknown name; a disabled account fails like a wrong password. A
    throttled attempt runs none, whatever the name: throttles never depend on the account row.
    """
    client = clients.keyed_hash(key, "login-client", clients.rate_network(ip))
    name = clients.keyed_hash(key, "login-name", username)
    at = clock.utc_text(now)
    with db.transaction(conn):
        repo.lock_failures(conn)  # attempts sent at once are throttled as if they came in turn
        repo.forget_failures_before(conn, clock.utc_text(now - LOGIN_WINDOW))
        wait, own_fault = _login_wait(conn, client, name, now)
        if wait:
            if own_fault:  # an address that keeps trying a name it is throttled for uses up its own allowance
                repo.add_failure(conn, at, client, None)
            return LoginResult(retry_after=wait)
        account = repo.credentials(conn, username)
        repo.add_failure(conn, at, client, name)  # counted before the check, forgiven if it succeeds
    # scrypt runs outside the transaction: 0.1 s under the writer lock would stall every scan
    right = check(account[1] if account else DUMMY_HASH, password)
    if account is None or account[2] or not right:
        return LoginResult()
    session = secrets.token_urlsafe(32)
    with db.transaction(conn):
        repo.forgive_failures(conn, client, name)
        repo.insert_session(conn, _token_hash(session), account[0], at)
        row = repo.user_by_id(conn, account[0])
    return LoginResult(_user(row), session) if row else LoginResult()


def _login_wait(conn: db.Conn, client: str, name: str, now: dt.datetime) -> tuple[int, bool]:
    """(seconds before this address may try this name, or 0; whether the address caused the wait)."""
    since = clock.utc_text(now - LOGIN_WINDOW)

    def nth_newest(n: int, *, client: str | None = None, name: str | None = None) -> dt.datetime | None:
        return clock.parse(repo.nth_newest_failure(conn, since, n, client=client, name=name))

    if oldest := nth_newest(FAILURES_PER_CLIENT, client=client):
        return _seconds(oldest + LOGIN_WINDOW - now), False  # a full allowance: refused, no longer counted
    if oldest := nth_newest(FAILURES_PER_CLIENT_AND_NAME, client=client, name=name):
        return _seconds(oldest + LOGIN_WINDOW - now), True
    if nth_newest(FAILURES_PER_NAME, name=name):
        newest = nth_newest(1, name=name)
        if newest and newest + NAME_BACKOFF > now:
            return _seconds(newest + NAME_BACKOFF - now), False
    return 0, False


def _seconds(delta: dt.timedelta) -> int:
    return max(1, math.ceil(delta.total_seconds()))


def user_for_session(conn: db.Conn, session: str, now: dt.datetime) -> User | None:
    """The user of a live session (idle and absolute timeouts); refreshes its idle clock.

    Inside the caller's write transaction: it ends an expired session or touches a live one.
    """
    id_hash = _token_hash(session)
    found = repo.session(conn, id_hash)
    if found is None:
        return None
    created, seen = dt.datetime.fromisoformat(found[0]), dt.datetime.fromisoformat(found[1])
    if now - seen > SESSION_IDLE or now - created > SESSION_ABSOLUTE:
        repo.delete_session(conn, id_hash)
        return None
    repo.touch_session(conn, id_hash, clock.utc_text(now))
    return _user(found[2])


def logout(conn: db.Conn, session: str) -> None:
    repo.delete_session(conn, _token_hash(session))
