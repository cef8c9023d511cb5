"""The lookup server: `create_app(config=None)`.

Settings: `settings.load()` (the `VERIFIER_*` environment and its defaults), then the `config`
mapping, whose keys are those of `_config_from` ("DATABASE", "BASE_URLS", ...). The server loads
public keys only (the keyring's public half or a JWKS file) and the PIN secret: it can verify
codes but never sign them. What requests share is in `state`, the error handlers in `errors`.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from flask import Flask, Response, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from .. import clock, settings
from . import errors
from .i18n import first
from .state import SESSION_COOKIE, ServerState, _instance_secret

__all__ = ["create_app", "_instance_secret"]  # _instance_secret: tests/test_files.py

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "camera=(), geolocation=(), microphone=()",
}
# What every response gets unless its view set it: (lower-case name, name, value), in this order.
_DEFAULT_HEADERS = tuple(
    (name.lower(), name, value) for name, value in (*SECURITY_HEADERS.items(), ("Cache-Control", "no-store"))
)


def _config_from(loaded: settings.Settings) -> dict[str, object]:
    """The app's config keys, from the loaded settings."""
    return {
        "DATABASE": str(loaded.database),  # a SQLite path or a PostgreSQL URL
        "DATABASE_POOL_SIZE": loaded.database_pool_size,
        "KEYS_DIR": str(loaded.keys_dir),
        "JWKS_FILE": str(loaded.jwks_file) if loaded.jwks_file else None,
        "BASE_URLS": list(loaded.base_urls),
        "REPEAT_THRESHOLD": loaded.repeat_threshold,
        "RATELIMIT": loaded.ratelimit,
        "TRUSTED_PROXIES": loaded.trusted_proxies,
        "TRUST_GEO_HEADERS": loaded.trust_geo_headers,
        "SECRET_KEY": loaded.secret_key,
        "PIN_SECRET": loaded.pin_secret,
        "REPORT_CONTACT": loaded.report_contact,
        "INSTANCE": str(loaded.instance),
        # Audit reads: SQLite instructions and seconds a request may use, and how many heavy ones
        # (anomalies, CSV exports) may run at once across the workers (docs/audit.md).
        "AUDIT_BUDGET": loaded.audit_budget,
        "AUDIT_SECONDS": loaded.audit_seconds,
        "AUDIT_HEAVY_SLOTS": loaded.audit_heavy_slots,
        # The transparency log: the vkeys of the witnesses whose cosignatures it accepts and serves
        # (docs/transparency-log.md). The log's signing key is the sequencer's, never the web's.
        "LOG_WITNESSES": list(loaded.log_witnesses),
    }


def create_app(config: Mapping[str, object] | None = None, loaded: settings.Settings | None = None) -> Flask:
    """The lookup server: consumer pages, the JSON API, the audit API and UI, the public keys, the
    transparency log's checkpoints and tiles, scan receipts.

    `loaded`: settings already loaded by the caller (`settings.load()` by default)."""
    app = Flask(__name__, instance_relative_config=False)
    app.config.update(_config_from(loaded or settings.load()))
    app.config.update(config or {})
    app.config.update(JSON_AS_ASCII=False, MAX_CONTENT_LENGTH=16 * 1024, PROPAGATE_EXCEPTIONS=False)
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    if app.config["TRUSTED_PROXIES"]:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=int(app.config["TRUSTED_PROXIES"]), x_proto=1, x_host=0
        )
    state = app.extensions["verifier"] = ServerState(app)
    app.teardown_appcontext(lambda _exc: state.release_connection())

    from . import api, audit, audit_ui, console, consumer, feedback, log
    from . import cases as cases_web
    from . import epcis as epcis_web

    app.register_blueprint(api.bp)
    app.register_blueprint(audit.bp)
    app.register_blueprint(audit_ui.bp)
    app.register_blueprint(cases_web.ui)
    app.register_blueprint(cases_web.api)
    app.register_blueprint(console.bp)
    app.register_blueprint(console.association)
    app.register_blueprint(log.bp)
    app.register_blueprint(epcis_web.bp)
    app.register_blueprint(feedback.bp)
    app.register_blueprint(consumer.bp)
    errors.register(app)

    @app.after_request
    def security_headers(response: Response) -> Response:
        headers = response.headers  # as setdefault on each, with one pass over the names (15 µs less)
        present = {name.lower() for name in headers.keys()}
        for lower, name, value in _DEFAULT_HEADERS:
            if lower not in present:
                headers.add(name, value)
        return response

    @app.before_request
    def request_clock_and_session() -> None:
        g.now = clock.now()
        cookie = first(request.cookies, SESSION_COOKIE) or ""
        g.new_session = not (len(cookie) == 32 and all(c in "0123456789abcdef" for c in cookie))
        g.session_id = secrets.token_hex(16) if g.new_session else cookie

    return app
