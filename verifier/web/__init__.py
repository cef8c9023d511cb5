"""The lookup server: `create_app(config=None)` and the state its requests share.

Settings: defaults, then `VERIFIER_*` environment variables, then the `config` mapping.
The server loads public keys only (the keyring's public half or a JWKS file) and the PIN
secret: it can verify codes but never sign them.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import sqlite3
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from flask import Flask, Response, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from .. import clients, codes, config, files, keys, lookup, pins, ratelimit, store

log = logging.getLogger("verifier.web")

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "camera=(), geolocation=(), microphone=()",
}


def settings_from_env(env: Mapping[str, str] = os.environ) -> dict[str, object]:
    """The server's settings from `VERIFIER_*` variables, with defaults."""
    return {
        "DATABASE": str(config.db_path(env)),
        "KEYS_DIR": str(config.keys_dir(env)),
        "JWKS_FILE": env.get("VERIFIER_JWKS") or None,
        "BASE_URLS": config.base_urls(env),
        "REPEAT_THRESHOLD": int(env.get("VERIFIER_REPEAT_THRESHOLD", "4")),
        "RATELIMIT": env.get("VERIFIER_RATELIMIT", "120/minute"),
        "TRUSTED_PROXIES": int(env.get("VERIFIER_TRUSTED_PROXIES", "0")),
        "TRUST_GEO_HEADERS": env.get("VERIFIER_TRUST_GEO_HEADERS", "") in ("1", "true", "yes"),
        "SECRET_KEY": _secret_from_env(env, "VERIFIER_SECRET_KEY"),
        "PIN_SECRET": pins.load_secret(env, required=False),
        "REPORT_CONTACT": env.get("VERIFIER_REPORT_CONTACT", "12315"),
        "INSTANCE": str(config.instance_dir(env)),
        # Audit reads: SQLite instructions and seconds a request may use, and how many heavy ones
        # (anomalies, CSV exports) may run at once across the workers (docs/audit.md).
        "AUDIT_BUDGET": int(env.get("VERIFIER_AUDIT_BUDGET", "100000000")),
        "AUDIT_SECONDS": float(env.get("VERIFIER_AUDIT_SECONDS", "5")),
        "AUDIT_HEAVY_SLOTS": int(env.get("VERIFIER_AUDIT_HEAVY_SLOTS", "1")),
    }


def _secret_from_env(env: Mapping[str, str], name: str) -> bytes | None:
    if env.get(name):
        return env[name].encode()
    if env.get(name + "_FILE"):
        return Path(env[name + "_FILE"]).read_bytes().strip()
    return None


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


def _trust_geo_headers(cfg: Mapping[str, object]) -> bool:
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
    """Per-process resources: one database connection, trusted keys reloaded when they change."""

    KEY_RECHECK_SECONDS = 2.0

    def __init__(self, app: Flask):
        cfg = app.config
        self.database = Path(cfg["DATABASE"])
        self.keys_source = Path(cfg["JWKS_FILE"]) if cfg["JWKS_FILE"] else Path(cfg["KEYS_DIR"]) / keys.KEYRING_FILE
        self.base_urls = tuple(cfg["BASE_URLS"])
        for base in self.base_urls:
            codes.normalize_base_url(base)  # fail at start, not on the first scan
        self.repeat_threshold = int(cfg["REPEAT_THRESHOLD"])
        self.pin_secret = cfg["PIN_SECRET"]
        self.limit = ratelimit.parse_limit(str(cfg["RATELIMIT"]))
        self.hash_key = cfg["SECRET_KEY"] or _instance_secret(Path(cfg["INSTANCE"]))
        self.resolver = clients.RegionResolver(trust_headers=_trust_geo_headers(cfg))
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._settings: lookup.Settings | None = None
        self._keys_mtime: float | None = None
        self._keys_checked = 0.0

    def connection(self) -> sqlite3.Connection:
        """This process's connection (made after a fork, never shared across one)."""
        if self._conn is None or self._pid != os.getpid():
            self._conn = store.connect(self.database).conn
            self._pid = os.getpid()
        return self._conn

    def settings(self) -> lookup.Settings:
        """Lookup settings, with the trusted keys re-read when their file changes (a revocation)."""
        now = time.monotonic()
        if self._settings is None or now - self._keys_checked > self.KEY_RECHECK_SECONDS:
            self._keys_checked = now
            try:
                mtime = self.keys_source.stat().st_mtime
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

    def public_jwks(self) -> dict:
        """Active and retired public keys, as /.well-known/jwks.json serves them."""
        if self.keys_source.name == keys.KEYRING_FILE:
            return keys.jwks(keys.read_keyring(self.keys_source.parent), include_revoked=False)
        return keys.public_jwks_file(self.keys_source, include_revoked=False)  # never the file verbatim


def state() -> ServerState:
    from flask import current_app

    return current_app.extensions["verifier"]


def create_app(config: Mapping[str, object] | None = None) -> Flask:
    """The lookup server: consumer pages, the JSON API and the public keys."""
    app = Flask(__name__, instance_relative_config=False)
    app.config.update(settings_from_env())
    app.config.update(config or {})
    app.config.update(JSON_AS_ASCII=False, MAX_CONTENT_LENGTH=16 * 1024, PROPAGATE_EXCEPTIONS=False)
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    if app.config["TRUSTED_PROXIES"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=int(app.config["TRUSTED_PROXIES"]), x_proto=1, x_host=0)
    app.extensions["verifier"] = ServerState(app)

    from . import api, audit, audit_ui, consumer

    app.register_blueprint(api.bp)
    app.register_blueprint(audit.bp)
    app.register_blueprint(audit_ui.bp)
    app.register_blueprint(consumer.bp)

    @app.after_request
    def security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.before_request
    def request_clock_and_session() -> None:
        g.now = dt.datetime.now(dt.UTC)
        cookie = request.cookies.get(SESSION_COOKIE, "")
        g.new_session = not (len(cookie) == 32 and all(c in "0123456789abcdef" for c in cookie))
        g.session_id = secrets.token_hex(16) if g.new_session else cookie

    return app


def describe_request_client() -> clients.Client:
    """The minimised client of the current request."""
    st = state()
    return clients.describe_client(
        request.remote_addr,
        request.headers.get("User-Agent", ""),
        g.session_id,
        request.headers,
        st.hash_key,
        st.resolver,
    )


SESSION_COOKIE = "vsid"


def is_prefetch() -> bool:
    """HEAD requests, link previews and prefetches: they must not count as a consumer's check."""
    if request.method == "HEAD":
        return True
    # Sec-Purpose (Fetch spec, Chrome's "prefetch;prerender"), Purpose (older Chrome), X-Purpose
    # (Safari's "preview"), X-Moz (older Firefox's "prefetch").
    hints = " ".join(request.headers.get(name, "") for name in ("Sec-Purpose", "Purpose", "X-Purpose", "X-Moz"))
    return "prefetch" in hints.lower() or "preview" in hints.lower()
