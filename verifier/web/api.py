"""The JSON API (docs/openapi.yaml) and the public keys (/.well-known/jwks.json).

One error shape for every failure: {"ok": false, "error": {"code": ..., "message": ...}}.
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources

from flask import Blueprint, Response, g, jsonify, request

from .. import codes, lookup, store
from . import describe_request_client, state
from .consumer import rate_limited

bp = Blueprint("api", __name__)
_DIGITS_RE = re.compile(r"[0-9]*")  # a printed code once normalised (full-width digits, separators); blank too


def api_error(code: str, message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    response = jsonify({"ok": False, "error": {"code": code, "message": message}})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _answer(verdict: lookup.Verdict) -> Response:
    return jsonify({"ok": True, **verdict.public()})


def _limited(outcome) -> Response:
    return api_error("rate-limited", f"too many requests; retry after {outcome.retry_after} s", 429,
                     {"Retry-After": str(outcome.retry_after)})  # fmt: skip


@bp.get("/api/v1/verify")
def verify_get() -> Response:
    """Verify a scanned URL or a printed code given as ?code=."""
    text = request.args.get("code")
    if not text:  # a blank or malformed code is a verdict, like on the page; only a missing one is an error
        return api_error("missing-parameter", "give the code or URL as ?code=", 400)
    return _verify(text, pin=None)


@bp.post("/api/v1/verify")
def verify_post() -> Response:
    """Verify a printed code with its scratch-off PIN (kept out of URLs and logs)."""
    data = request.get_json(silent=True) if request.is_json else request.form
    if not isinstance(data, dict) and not hasattr(data, "get"):
        return api_error("bad-request", "send a JSON object {\"code\": ..., \"pin\": ...}", 400)
    text, pin = data.get("code"), data.get("pin")
    if not isinstance(text, str) or not text:
        return api_error("missing-parameter", "'code' is required", 400)
    if pin is not None and not isinstance(pin, str):
        return api_error("bad-request", "'pin' must be a string", 400)
    return _verify(text, pin=pin[:64] if pin and codes.normalize_typed(pin) else None)


def _verify(text: str, pin: str | None) -> Response:
    st, client = state(), describe_request_client()
    settings = st.settings()
    typed = pin is not None or _DIGITS_RE.fullmatch(codes.normalize_typed(text[:2048])) is not None
    verification = None if typed else lookup.examine_url(text, settings)
    conn = st.connection()
    with store.transaction(conn):
        if over := rate_limited(conn, client):
            return _limited(over)
        if typed:
            verdict = lookup.record_typed(conn, text[:64], pin, settings, client, "api", g.now)
        else:
            verdict = lookup.record_url(conn, verification, settings, client, "api", g.now)
    return _answer(verdict)


@bp.get("/api/v1/openapi.json")
def openapi() -> Response:
    response = Response(_openapi_json(), mimetype="application/json")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@functools.cache
def _openapi_json() -> str:
    import yaml

    text = resources.files("verifier.web").joinpath("openapi.yaml").read_text("utf-8")
    return json.dumps(yaml.safe_load(text), ensure_ascii=False)


@bp.get("/.well-known/jwks.json")
def jwks() -> Response:
    response = jsonify(state().public_jwks())
    response.headers["Cache-Control"] = "public, max-age=300"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response
