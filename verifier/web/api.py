"""The JSON API (docs/openapi.yaml) and the public keys (/.well-known/jwks.json).

One error shape for every failure (web/errors.py): {"ok": false, "error": {"code": ..., "message": ...}}.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from importlib import resources

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from .. import codes
from .errors import api_error
from .state import check_code, is_prefetch, is_typed, receipt_url, state

bp = Blueprint("api", __name__)


@bp.get("/api/v1/verify")
def verify_get() -> Response:
    """Verify a scanned URL or a printed code given as ?code=."""
    if is_prefetch():
        return Response(status=204)  # HEAD or a prefetch: not a check, like a label URL's link preview
    text = request.args.get("code")
    if not text:  # a blank or malformed code is a verdict, like on the page; only a missing one is an error
        return api_error("missing-parameter", "give the code or URL as ?code=", 400)
    return _verify(text, pin=None)


@bp.post("/api/v1/verify")
def verify_post() -> Response:
    """Verify a printed code with its scratch-off PIN (kept out of URLs and logs)."""
    data = _request_object()
    if isinstance(data, Response):
        return data
    text, pin = data.get("code"), data.get("pin")
    if not isinstance(text, str) or not text:
        return api_error("missing-parameter", "'code' is required", 400)
    if pin is not None and not isinstance(pin, str):
        return api_error("bad-request", "'pin' must be a string", 400)
    return _verify(text, pin=pin[:64] if pin and codes.normalize_typed(pin) else None)


MAX_JSON_DEPTH = 16  # {"code", "pin"} needs 1; deeper bodies are refused before they are parsed
_JSON_SPECIAL = re.compile(r'[\\"\[\]{}]')


def _request_object() -> Mapping[str, object] | Response:
    """The request's form, or its JSON object; the API error for anything else.

    JSON is checked before it is parsed: at most MAX_CONTENT_LENGTH bytes and MAX_JSON_DEPTH
    levels, so no body makes the parser recurse (an array nested 5,000 deep raised RecursionError)."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    try:
        body = request.get_data(cache=True)  # raises when the body is longer than the limit
    except RequestEntityTooLarge:
        return api_error("payload-too-large", f"the body is limited to {limit} bytes", 413)
    if not request.is_json:
        return request.form
    not_an_object = api_error("bad-request", 'send a JSON object {"code": ..., "pin": ...}', 400)
    try:
        text = body.decode("utf-8-sig")  # strictly (a BOM aside): the depth scan sees what the parser sees
    except UnicodeDecodeError:
        return not_an_object
    if _too_deep(text):
        return not_an_object
    try:
        data = json.loads(text)
    except ValueError:  # not JSON, or a number too long to convert
        return not_an_object
    return data if isinstance(data, dict) else not_an_object


def _too_deep(text: str) -> bool:
    """Whether arrays and objects nest deeper than MAX_JSON_DEPTH in `text` (brackets inside
    strings do not count). It stops at the first level too many, so a hostile body costs little."""
    in_string, escaped_at, depth = False, -1, 0
    for match in _JSON_SPECIAL.finditer(text):
        at, char = match.start(), match.group()
        if at == escaped_at:
            continue  # the character after a backslash
        if in_string:
            if char == "\\":
                escaped_at = at + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif char in "]}":
            depth = max(0, depth - 1)  # unbalanced text is the parser's to refuse
    return False


def _verify(text: str, pin: str | None) -> Response:
    """The check (a rate-limited request is the app's `RateLimited` answer: 429, Retry-After)."""
    if is_typed(text, pin):
        verdict = check_code(text[:64], "api", typed=True, pin=pin)
    else:
        verdict = check_code(text, "api", typed=False)
    return jsonify({"ok": True, **verdict.public(), "receipt": receipt_url(verdict, external=True)})


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
