"""What the web's requests share: the per-process `ServerState`, the request's client, and the
one "check a code" path that the QR page, the manual form and the JSON API all take.

Blueprints import this module, `errors` and `i18n`, and services; never each other.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from flask import Flask, current_app, g, has_app_context, request, url_for

from .. import accounts, clients, codes, db, errors, files, keys, lookup, note, ratelimit, receipts

log = logging.getLogger("verifier.web")

SESSION_COOKIE = "vsid"
DATABASE_UNAVAILABLE = "the registry cannot be reached; retry shortly"
UNAVAILABLE_RETRY_SECONDS = 5
_DIGITS_RE = re.compile(r"[0-9]*")  # a printed code once normalised (full-width digits, separators); blank too


class RateLimited(errors.VerifierError):
    """The client is over its rate limit: no signature check, nothing written to the registry."""

    http_status = 429
    api_code = "rate-limited"

    def __init__(self, retry_after: int):
        super().__init__(f"too many requests; retry after {retry_after} s")
        self.retry_after = retry_after


def _instance_secret(instance: Path) -> bytes:
    """A random key kept in the instance folder (0600), made on first start, for keyed hashes.

    Made whole or not at all: the key is written and fsynced under a unique temporary name, then
    linked to `secret.key`, which fails if another process starting at the same moment linked
    its key first; then that key is the one. No process ever reads a partly written file.
    """
    path = instance / "secret.key"
    files.make_private_dir(instance)
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=instance, prefix=".secret.key.", suffix=".tmp")  # 0600
        try:
            with os.fdopen(fd, "w") as fh:
                os.fchmod(fh.fileno(), files.PRIVATE_FILE)
                fh.write(secrets.token_hex(32))
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            else:
                files.fsync_dir(instance)
        finally:
            os.unlink(tmp)
    files.tighten(path)
    secret = path.read_bytes().strip()
    if not secret:
        raise ValueError(f"{path} is empty: delete it and a new key is made on the next start")
    return secret


def _trust_geo_headers(cfg: Mapping[str, Any]) -> bool:
    """X-Geo-* headers count only when a trusted proxy sets them: any client can send its own."""
    if not cfg["TRUST_GEO_HEADERS"]:
        return False
    if not int(cfg["TRUSTED_PROXIES"]):
        log.warning(
            "VERIFIER_TRUST_GEO_HEADERS is ignored: X-Geo-* headers are trusted only from a proxy "
            "(set VERIFIER_TRUSTED_PROXIES)"
        )
        return False
    return True


class ServerState:
    """Per-process resources: the database connections (SQLite: one a process; PostgreSQL: a
    pool, a connection a request), trusted keys reloaded when they change, the rate-limit
    counters, the key of the scan log's keyed hashes and receipt tokens, the log's witnesses."""

    KEY_RECHECK_SECONDS = 2.0

    def __init__(self, app: Flask):
        cfg = app.config
        self.database = db.location(str(cfg["DATABASE"]))  # a SQLite path or a PostgreSQL URL
        self.pool = db.Pool(self.database, max_size=int(cfg.get("DATABASE_POOL_SIZE") or 4))
        self.keys_source = Path(cfg["JWKS_FILE"]) if cfg["JWKS_FILE"] else Path(cfg["KEYS_DIR"]) / keys.KEYRING_FILE
        self.base_urls = tuple(cfg["BASE_URLS"])
        for base in self.base_urls:
            codes.normalize_base_url(base)  # fail at start, not on the first scan
        self.repeat_threshold = int(cfg["REPEAT_THRESHOLD"])
        self.pin_secret: bytes | None = cfg["PIN_SECRET"]
        self.limit = ratelimit.parse_limit(str(cfg["RATELIMIT"]))
        self.hash_key: bytes = cfg["SECRET_KEY"] or _instance_secret(Path(cfg["INSTANCE"]))
        self.resolver = clients.RegionResolver(trust_headers=_trust_geo_headers(cfg))
        # Witness vkeys: a bad one stops the start (InvalidNote names it), not the first cosignature.
        self.log_witnesses = tuple(note.parse_vkey(text) for text in cfg.get("LOG_WITNESSES") or ())
        self._settings: lookup.Settings | None = None
        self._keys_mtime: float | None = None
        self._keys_checked = 0.0

    def connection(self) -> db.Conn:
        """The request's connection, taken from the pool on first use and given back when the
        request ends (`release_connection`); SQLite: the process's one connection."""
        if not has_app_context():
            return self._acquire()
        conn = g.get("verifier_conn")
        if conn is None:
            conn = g.verifier_conn = self._acquire()
        return conn  # type: ignore[no-any-return]

    def _acquire(self) -> db.Conn:
        try:
            return self.pool.acquire()  # type: ignore[no-any-return]
        except db.StoreError as exc:
            # The server is down, the pool exhausted, the file unwritable: the operator's to fix,
            # and the location is for the log only, never for a page or the API.
            log.error("database unavailable: %s", exc.message)
            raise errors.Unavailable(DATABASE_UNAVAILABLE, retry_after=UNAVAILABLE_RETRY_SECONDS) from None

    def release_connection(self) -> None:
        """At the end of a request: its connection back to the pool."""
        conn = g.pop("verifier_conn", None)
        if conn is not None:
            self.pool.release(conn)

    def counters(self) -> db.Conn:
        """This process's handle on the non-durable rate-limit counters next to the database."""
        return ratelimit.counters(self.database)

    def settings(self) -> lookup.Settings:
        """Lookup settings, with the trusted keys re-read when their file changes (a revocation)."""
        now = time.monotonic()
        if self._settings is None or now - self._keys_checked > self.KEY_RECHECK_SECONDS:
            self._keys_checked = now
            try:
                mtime: float | None = self.keys_source.stat().st_mtime
            except FileNotFoundError:
                mtime = None
            if self._settings is None or mtime != self._keys_mtime:
                self._keys_mtime = mtime
                self._settings = lookup.Settings(
                    self._load_keys(), self.base_urls, self.repeat_threshold, self.pin_secret
                )
        return self._settings

    def _load_keys(self) -> dict[bytes, codes.TrustedKey]:
        if self.keys_source.name == keys.KEYRING_FILE:
            return keys.trust_from_folder(self.keys_source.parent)
        return keys.load_jwks_file(self.keys_source)

    def public_jwks(self) -> dict[str, Any]:
        """Active and retired public keys, as /.well-known/jwks.json serves them."""
        if self.keys_source.name == keys.KEYRING_FILE:
            return cast(dict[str, Any], keys.jwks(keys.read_keyring(self.keys_source.parent), include_revoked=False))
        return cast(dict[str, Any], keys.public_jwks_file(self.keys_source, include_revoked=False))  # never verbatim


def state() -> ServerState:
    """The current app's `ServerState`."""
    return cast(ServerState, current_app.extensions["verifier"])


def describe_request_client(rate_key: str | None = None) -> clients.Client:
    """The minimised client of the current request (`rate_key`: the one `rate_limit` returned)."""
    st = state()
    return clients.describe_client(
        request.remote_addr,
        request.headers.get("User-Agent", ""),
        g.session_id,
        cast(Mapping[str, str], request.headers),  # read with .get only
        st.hash_key,
        st.resolver,
        rate_key,
    )


_PURPOSE_KEYS = ("HTTP_SEC_PURPOSE", "HTTP_PURPOSE", "HTTP_X_PURPOSE", "HTTP_X_MOZ")


def is_prefetch() -> bool:
    """HEAD requests, link previews and prefetches: they must not count as a consumer's check."""
    if request.method == "HEAD":
        return True
    # Sec-Purpose (Fetch spec, Chrome's "prefetch;prerender"), Purpose (older Chrome), X-Purpose
    # (Safari's "preview"), X-Moz (older Firefox's "prefetch").
    environ = request.environ  # the headers, read where request.headers.get reads them
    hints = " ".join(environ.get(key, "") for key in _PURPOSE_KEYS).lower()
    return "prefetch" in hints or "preview" in hints


def is_typed(text: str, pin: str | None = None) -> bool:
    """Whether `text` is a printed code (digits once normalised, or sent with a PIN), not a URL."""
    return pin is not None or _DIGITS_RE.fullmatch(codes.normalize_typed(text[:2048])) is not None


def rate_limit() -> str | None:
    """Count the request against its client's limit; `RateLimited` if it is over. The client's
    rate key (None when there is no limit).

    Runs before the signature check and the registry's writer lock: a request over the limit
    costs one non-durable counter update and writes nothing to the registry."""
    st = state()
    if st.limit is None:
        return None
    key = clients.client_rate_key(st.hash_key, request.remote_addr or "")
    try:
        outcome = ratelimit.hit(st.counters(), key, st.limit, g.now.timestamp())
    except db.DatabaseError as exc:  # the counters are protection, not the service: fail open
        current_app.logger.error("rate-limit counters failed: %r", exc)
        return key
    if not outcome.allowed:
        raise RateLimited(outcome.retry_after)
    return key


def check_code(text: str, channel: str, *, typed: bool, pin: str | None = None) -> lookup.Verdict:
    """THE check of a code, for every channel: rate limit, the signature examined outside the
    writer lock, then one write transaction that records the scan and returns the verdict.

    `text` is a label's URL (`typed=False`) or a printed code (`typed=True`, with the PIN if any;
    the caller trims both to what its form accepts). Over the limit: `RateLimited`."""
    rate_key = rate_limit()
    st = state()
    settings = st.settings()
    client = describe_request_client(rate_key)
    verification = None if typed else lookup.examine_url(text, settings)  # outside the write lock
    conn = st.connection()
    with db.transaction(conn):
        if verification is None:
            return lookup.record_typed(conn, text, pin, settings, client, channel, g.now)
        return lookup.record_url(conn, verification, settings, client, channel, g.now)


def receipt_url(verdict: lookup.Verdict, external: bool = False) -> str | None:
    """The link to the receipt of the scan a verdict recorded (None: the scan's id is not known
    here). Its token is the scan id and an HMAC of it under the instance's secret: unguessable."""
    if verdict.scan_id is None:
        return None
    return url_for("log.receipt", token=receipts.token(state().hash_key, verdict.scan_id), _external=external)


# --- who is asking: the audit API's bearer tokens, the audit UI's session -----------------

AUDIT_SESSION_COOKIE = "vaudit"  # the audit UI's session (path /audit); SESSION_COOKIE is a consumer's browser


def bearer_user() -> accounts.User | None:
    """The user of the request's bearer token (Authorization: Bearer ...), or None."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return accounts.user_for_token(state().connection(), header[7:].strip())
    return None


def session_user() -> accounts.User | None:
    """The user of the request's audit UI session cookie, or None."""
    session = request.cookies.get(AUDIT_SESSION_COOKIE)
    if not session:
        return None
    conn = state().connection()
    with db.transaction(conn):
        return accounts.user_for_session(conn, session, g.now)
