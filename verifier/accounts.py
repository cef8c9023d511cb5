"""Accounts for inspectors, enterprises and admins: scrypt passwords, API tokens, sessions."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import re
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from . import auditlog, clients, store

ROLES = ("admin", "inspector", "enterprise")
# scrypt: memory-hard (128 * r * n bytes = 32 MiB here), about 0.1 s on this class of machine.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
TOKEN_PREFIX = "vt_"
SESSION_IDLE = dt.timedelta(minutes=30)
SESSION_ABSOLUTE = dt.timedelta(hours=12)
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{1,63}")


class AccountError(Exception):
    """An account operation that cannot be done; the message is for the user."""


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: str
    enterprise_id: int | None
    disabled: bool

    def sees_everything(self) -> bool:
        return self.role in ("admin", "inspector")


def hash_password(password: str) -> str:
    if len(password) < 10:
        raise AccountError("a password has at least 10 characters")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 * 1024 * 1024)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(stored: str, password: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(
        password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), maxmem=64 * 1024 * 1024
    )
    return hmac.compare_digest(candidate.hex(), digest)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()  # 256 random bits: a fast hash is enough


def _row_user(row) -> User:
    return User(row[0], row[1], row[2], row[3], bool(row[4]))


_USER_SQL = "SELECT users.id, users.username, users.role, users.enterprise_id, users.disabled FROM users"


def add_user(
    conn: sqlite3.Connection, username: str, role: str, password: str, enterprise_id: int | None, actor: str, now: str
) -> User:
    """Create an account (inside a write transaction)."""
    if not _NAME_RE.fullmatch(username):
        raise AccountError("a user name is 2-64 characters: letters, digits and _ . @ -")
    if role not in ROLES:
        raise AccountError(f"a role is one of {', '.join(ROLES)}")
    if (role == "enterprise") != (enterprise_id is not None):
        raise AccountError("an enterprise account needs --enterprise, and only it")
    try:
        cur = conn.execute(
            "INSERT INTO users (username, role, enterprise_id, password_hash, created_at) VALUES (?, ?, ?, ?, ?)",
            (username, role, enterprise_id, hash_password(password), now),
        )
    except sqlite3.IntegrityError:
        raise AccountError(f"user {username!r} already exists") from None
    auditlog.append(conn, "user.added", {"user": username, "role": role, "enterprise_id": enterprise_id}, now, actor)
    return User(cur.lastrowid, username, role, enterprise_id, False)


def find_user(conn: sqlite3.Connection, username: str) -> User:
    row = conn.execute(_USER_SQL + " WHERE users.username = ?", (username,)).fetchone()
    if row is None:
        raise AccountError(f"no user {username!r} (see `verifier users list`)")
    return _row_user(row)


def list_users(conn: sqlite3.Connection) -> list[dict]:
    rows = conn.execute(
        """SELECT u.id, u.username, u.role, e.name, u.disabled, u.created_at,
           (SELECT count(*) FROM api_tokens t WHERE t.user_id = u.id AND t.revoked_at IS NULL)
           FROM users u LEFT JOIN enterprises e ON e.id = u.enterprise_id ORDER BY u.id"""
    ).fetchall()
    keys = ("id", "username", "role", "enterprise", "disabled", "created_at", "active_tokens")
    return [dict(zip(keys, row)) for row in rows]


def disable_user(conn: sqlite3.Connection, username: str, actor: str, now: str) -> User:
    """Disable an account: its sessions and tokens stop working at once."""
    user = find_user(conn, username)
    conn.execute("UPDATE users SET disabled = 1 WHERE id = ?", (user.id,))
    conn.execute("DELETE FROM web_sessions WHERE user_id = ?", (user.id,))
    conn.execute("UPDATE api_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL", (now, user.id))
    auditlog.append(conn, "user.disabled", {"user": username}, now, actor)
    return User(user.id, user.username, user.role, user.enterprise_id, True)


def issue_token(conn: sqlite3.Connection, username: str, label: str, actor: str, now: str) -> tuple[int, str]:
    """A new API token for a user: (token id, the token). The token is shown once, stored hashed."""
    user = find_user(conn, username)
    if user.disabled:
        raise AccountError(f"user {username!r} is disabled")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    cur = conn.execute(
        "INSERT INTO api_tokens (user_id, token_hash, label, created_at) VALUES (?, ?, ?, ?)",
        (user.id, _token_hash(token), label, now),
    )
    auditlog.append(conn, "token.issued", {"user": username, "token_id": cur.lastrowid, "label": label}, now, actor)
    return cur.lastrowid, token


def revoke_token(conn: sqlite3.Connection, token_id: int, actor: str, now: str) -> None:
    if not conn.execute(
        "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, token_id)
    ).rowcount:
        raise AccountError(f"no active token {token_id}")
    auditlog.append(conn, "token.revoked", {"token_id": token_id}, now, actor)


def user_for_token(conn: sqlite3.Connection, token: str) -> User | None:
    """The enabled user a bearer token belongs to, or None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        return None
    row = conn.execute(
        _USER_SQL.replace("FROM users", "FROM api_tokens t JOIN users ON users.id = t.user_id")
        + " WHERE t.token_hash = ? AND t.revoked_at IS NULL AND users.disabled = 0",
        (_token_hash(token),),
    ).fetchone()
    return _row_user(row) if row else None


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
# What an unknown name is checked against: the same scrypt parameters as a real hash, the same cost.
DUMMY_HASH = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}$" + "00" * 16 + "$" + "00" * 64


@dataclass(frozen=True)
class LoginResult:
    """A login attempt's outcome: a user and a session, or neither (and then maybe a wait)."""

    user: User | None = None
    session: str | None = None
    retry_after: int = 0  # seconds; > 0 when the attempt was refused unchecked, for too many failures


def login(
    conn: sqlite3.Connection,
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
    with store.transaction(conn):
        conn.execute("DELETE FROM login_failures WHERE at <= ?", (auditlog.now_text(now - LOGIN_WINDOW),))
        wait, own_fault = _login_wait(conn, client, name, now)
        if wait:
            if own_fault:  # an address that keeps trying a name it is throttled for uses up its own allowance
                _count_failure(conn, now, client, None)
            return LoginResult(retry_after=wait)
        row = conn.execute("SELECT id, password_hash, disabled FROM users WHERE username = ?", (username,)).fetchone()
        _count_failure(conn, now, client, name)  # counted before the check, forgiven if it succeeds
    # scrypt runs outside the transaction: 0.1 s under the writer lock would stall every scan
    right = check(row[1] if row else DUMMY_HASH, password)
    if row is None or row[2] or not right:
        return LoginResult()
    session = secrets.token_urlsafe(32)
    now_s = auditlog.now_text(now)
    with store.transaction(conn):
        conn.execute("DELETE FROM login_failures WHERE client_hash = ? AND account_hash = ?", (client, name))
        conn.execute(
            "INSERT INTO web_sessions (id_hash, user_id, created_at, last_seen_at) VALUES (?, ?, ?, ?)",
            (_token_hash(session), row[0], now_s, now_s),
        )
        user = _row_user(conn.execute(_USER_SQL + " WHERE users.id = ?", (row[0],)).fetchone())
    return LoginResult(user, session)


def _login_wait(conn: sqlite3.Connection, client: str, name: str, now: dt.datetime) -> tuple[int, bool]:
    """(seconds before this address may try this name, or 0; whether the address caused the wait)."""
    since = auditlog.now_text(now - LOGIN_WINDOW)

    def nth_newest(where: str, params: tuple[str, ...], n: int) -> dt.datetime | None:
        row = conn.execute(
            f"SELECT at FROM login_failures WHERE {where} AND at > ? ORDER BY at DESC LIMIT 1 OFFSET ?",
            (*params, since, n - 1),
        ).fetchone()
        return dt.datetime.fromisoformat(row[0]) if row else None

    if oldest := nth_newest("client_hash = ?", (client,), FAILURES_PER_CLIENT):
        return _seconds(oldest + LOGIN_WINDOW - now), False  # a full allowance: refused, no longer counted
    if oldest := nth_newest("client_hash = ? AND account_hash = ?", (client, name), FAILURES_PER_CLIENT_AND_NAME):
        return _seconds(oldest + LOGIN_WINDOW - now), True
    if nth_newest("account_hash = ?", (name,), FAILURES_PER_NAME):
        newest = nth_newest("account_hash = ?", (name,), 1)
        if newest and newest + NAME_BACKOFF > now:
            return _seconds(newest + NAME_BACKOFF - now), False
    return 0, False


def _count_failure(conn: sqlite3.Connection, now: dt.datetime, client: str, name: str | None) -> None:
    conn.execute(
        "INSERT INTO login_failures (at, client_hash, account_hash) VALUES (?, ?, ?)",
        (auditlog.now_text(now), client, name),
    )


def _seconds(delta: dt.timedelta) -> int:
    return max(1, math.ceil(delta.total_seconds()))


def user_for_session(conn: sqlite3.Connection, session: str, now: dt.datetime) -> User | None:
    """The user of a live session (idle and absolute timeouts); refreshes its idle clock."""
    row = conn.execute(
        _USER_SQL.replace("FROM users", "FROM web_sessions s JOIN users ON users.id = s.user_id").replace(
            "SELECT ", "SELECT s.created_at, s.last_seen_at, "
        )
        + " WHERE s.id_hash = ? AND users.disabled = 0",
        (_token_hash(session),),
    ).fetchone()
    if row is None:
        return None
    created, seen = dt.datetime.fromisoformat(row[0]), dt.datetime.fromisoformat(row[1])
    if now - seen > SESSION_IDLE or now - created > SESSION_ABSOLUTE:
        conn.execute("DELETE FROM web_sessions WHERE id_hash = ?", (_token_hash(session),))
        return None
    conn.execute(
        "UPDATE web_sessions SET last_seen_at = ? WHERE id_hash = ?", (auditlog.now_text(now), _token_hash(session))
    )
    return _row_user(row[2:])


def logout(conn: sqlite3.Connection, session: str) -> None:
    conn.execute("DELETE FROM web_sessions WHERE id_hash = ?", (_token_hash(session),))
