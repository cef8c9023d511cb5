"""Every SQL statement on users, api_tokens, web_sessions and login_failures; nothing else.

Functions take the connection first and plain values (stored text for times, hashes for secrets);
they neither hash, nor decide, nor open transactions: that is verifier/accounts.py, the service.
"""

from __future__ import annotations

from typing import Any

from .. import db

# id, username, role, enterprise_id, disabled (0/1): what verifier.accounts.User is built from
UserRow = tuple[int, str, str, int | None, int]

_USER = "SELECT users.id, users.username, users.role, users.enterprise_id, users.disabled"


def _user(row: Any) -> UserRow | None:
    return None if row is None else (row[0], row[1], row[2], row[3], row[4])


# --- users ------------------------------------------------------------------------------------


def insert_user(
    conn: db.Conn,
    username: str,
    role: str,
    enterprise_id: int | None,
    password_hash: str,
    created_at: str,
) -> int | None:
    """The new user's id, or None if the name is taken."""
    rows = conn.execute(
        """INSERT INTO users (username, role, enterprise_id, password_hash, created_at) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (username) DO NOTHING RETURNING id""",
        (username, role, enterprise_id, password_hash, created_at),
    ).fetchall()
    return int(rows[0][0]) if rows else None


def user_by_name(conn: db.Conn, username: str) -> UserRow | None:
    return _user(conn.execute(_USER + " FROM users WHERE users.username = ?", (username,)).fetchone())


def user_by_id(conn: db.Conn, user_id: int) -> UserRow | None:
    return _user(conn.execute(_USER + " FROM users WHERE users.id = ?", (user_id,)).fetchone())


def credentials(conn: db.Conn, username: str) -> tuple[int, str, bool] | None:
    """(id, password hash, disabled) of the account named `username`, or None."""
    row = conn.execute("SELECT id, password_hash, disabled FROM users WHERE username = ?", (username,)).fetchone()
    return None if row is None else (row[0], row[1], bool(row[2]))


def list_users(conn: db.Conn) -> list[dict[str, Any]]:
    """Every account with its enterprise's name and its number of active tokens, oldest first."""
    rows = conn.execute(
        """SELECT u.id, u.username, u.role, e.name, u.disabled, u.created_at,
           (SELECT count(*) FROM api_tokens t WHERE t.user_id = u.id AND t.revoked_at IS NULL)
           FROM users u LEFT JOIN enterprises e ON e.id = u.enterprise_id ORDER BY u.id"""
    ).fetchall()
    keys = ("id", "username", "role", "enterprise", "disabled", "created_at", "active_tokens")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def enterprise_id(conn: db.Conn, name: str) -> int | None:
    """The id of the enterprise an account may belong to (read only; the registry creates them)."""
    row = conn.execute("SELECT id FROM enterprises WHERE name = ?", (name,)).fetchone()
    return None if row is None else int(row[0])


def disable_user(conn: db.Conn, user_id: int, at: str) -> None:
    """Mark the account disabled, end its sessions and revoke its active tokens (at `at`)."""
    conn.execute("UPDATE users SET disabled = 1 WHERE id = ?", (user_id,))
    conn.execute("DELETE FROM web_sessions WHERE user_id = ?", (user_id,))
    conn.execute("UPDATE api_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL", (at, user_id))


# --- API tokens -------------------------------------------------------------------------------


def insert_token(conn: db.Conn, user_id: int, token_hash: str, label: str, created_at: str) -> int:
    rows = conn.execute(
        "INSERT INTO api_tokens (user_id, token_hash, label, created_at) VALUES (?, ?, ?, ?) RETURNING id",
        (user_id, token_hash, label, created_at),
    ).fetchall()
    return int(rows[0][0])


def revoke_token(conn: db.Conn, token_id: int, at: str) -> bool:
    """Whether an active token `token_id` was there to revoke."""
    cur = conn.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (at, token_id))
    return cur.rowcount > 0


def user_for_token_hash(conn: db.Conn, token_hash: str) -> UserRow | None:
    """The enabled user of an active token."""
    row = conn.execute(
        _USER + " FROM api_tokens t JOIN users ON users.id = t.user_id"
        " WHERE t.token_hash = ? AND t.revoked_at IS NULL AND users.disabled = 0",
        (token_hash,),
    ).fetchone()
    return _user(row)


# --- web sessions -----------------------------------------------------------------------------


def insert_session(conn: db.Conn, id_hash: str, user_id: int, at: str) -> None:
    conn.execute(
        "INSERT INTO web_sessions (id_hash, user_id, created_at, last_seen_at) VALUES (?, ?, ?, ?)",
        (id_hash, user_id, at, at),
    )


def session(conn: db.Conn, id_hash: str) -> tuple[str, str, UserRow] | None:
    """(created_at, last_seen_at, the user) of a session of an enabled user."""
    row = conn.execute(
        "SELECT s.created_at, s.last_seen_at, users.id, users.username, users.role, users.enterprise_id,"
        " users.disabled FROM web_sessions s JOIN users ON users.id = s.user_id"
        " WHERE s.id_hash = ? AND users.disabled = 0",
        (id_hash,),
    ).fetchone()
    if row is None:
        return None
    return row[0], row[1], (row[2], row[3], row[4], row[5], row[6])


def touch_session(conn: db.Conn, id_hash: str, at: str) -> None:
    conn.execute("UPDATE web_sessions SET last_seen_at = ? WHERE id_hash = ?", (at, id_hash))


def delete_session(conn: db.Conn, id_hash: str) -> None:
    conn.execute("DELETE FROM web_sessions WHERE id_hash = ?", (id_hash,))


# --- login failures (keyed hashes of the address and of the name tried, never either) ----------

# The three counts the throttles read; fixed statements, chosen by which hashes are given.
_FAILURES_OF = {
    (True, False): "client_hash = ?",
    (True, True): "client_hash = ? AND account_hash = ?",
    (False, True): "account_hash = ?",
}


def lock_failures(conn: db.Conn) -> None:
    """Inside a transaction: no other transaction reads or counts failures until this one ends, so
    attempts sent at once are counted one after another (SQLite: the writer lock does it; on
    PostgreSQL each would otherwise read the counts before any of them had added its failure)."""
    if db.is_postgres_conn(conn):
        conn.execute("LOCK TABLE login_failures IN SHARE ROW EXCLUSIVE MODE")  # excludes itself and writers


def forget_failures_before(conn: db.Conn, at: str) -> None:
    """Drop failures at or before `at` (they have left every window)."""
    conn.execute("DELETE FROM login_failures WHERE at <= ?", (at,))


def nth_newest_failure(
    conn: db.Conn, since: str, n: int, *, client: str | None = None, name: str | None = None
) -> str | None:
    """The time of the `n`-th newest failure after `since` of `client`, `name`, or both; None if fewer."""
    where = _FAILURES_OF[(client is not None, name is not None)]
    params = tuple(p for p in (client, name) if p is not None)
    row = conn.execute(
        f"SELECT at FROM login_failures WHERE {where} AND at > ? ORDER BY at DESC LIMIT 1 OFFSET ?",
        (*params, since, n - 1),
    ).fetchone()
    return None if row is None else str(row[0])


def add_failure(conn: db.Conn, at: str, client: str, name: str | None) -> None:
    """One failure of `client` trying `name` (None: an attempt refused unchecked, the address's own)."""
    conn.execute("INSERT INTO login_failures (at, client_hash, account_hash) VALUES (?, ?, ?)", (at, client, name))


def forgive_failures(conn: db.Conn, client: str, name: str) -> None:
    """A successful login forgets what this address failed on this name."""
    conn.execute("DELETE FROM login_failures WHERE client_hash = ? AND account_hash = ?", (client, name))
