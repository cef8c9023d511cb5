"""EPCIS 2.0 over HTTP (GS1's REST binding, the parts verifier records): capture, events queries,
one event by its eventID, and the discovery headers (docs/openapi.yaml, docs/traceability.md).

An adapter over verifier/capture.py. Bearer tokens of the audit API: an enterprise account
captures and sees its own codes' events only; an administrator captures any enterprise's; an
inspector sees every event and captures none. Errors are the API's shape; a refused document's
also lists each event's problems under `error.events`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from .. import accounts, capture, db, epcis, errors
from . import errors as web_errors
from .auth import token_required
from .errors import api_error
from .state import RateLimited, rate_limit, state

bp = Blueprint("epcis", __name__, url_prefix="/epcis")

EPCIS_VERSION = "2.0.0"
CBV_VERSION = "2.0.0"
MAX_CAPTURE_BYTES = 8 * 1024 * 1024  # a document of epcis.DEFAULT_MAX_EVENTS events is some 5 MB
CAPTURE_TYPES = ("application/json", "application/ld+json")
JSON_LD = "application/ld+json"
VERSION_HEADERS = {"GS1-EPCIS-Version": EPCIS_VERSION, "GS1-CBV-Version": CBV_VERSION}
# What OPTIONS /epcis/capture tells a client before it sends a document (EPCIS 2.0, 12.8).
DISCOVERY_HEADERS = {
    **VERSION_HEADERS,
    "GS1-EPCIS-Min": EPCIS_VERSION,
    "GS1-EPCIS-Max": EPCIS_VERSION,
    "GS1-CBV-Min": CBV_VERSION,
    "GS1-CBV-Max": CBV_VERSION,
    "GS1-EPC-Format": "No_Preference",  # stored as given: URNs and Digital Link URIs alike
    "GS1-EPCIS-Capture-Limit": str(epcis.DEFAULT_MAX_EVENTS),
    "GS1-EPCIS-Capture-File-Size-Limit": str(MAX_CAPTURE_BYTES),
}


@bp.after_request
def version_headers(response: Response) -> Response:
    """Every EPCIS answer names the standard's versions it speaks."""
    for name, value in VERSION_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@bp.errorhandler(errors.VerifierError)
def verifier_error(error: errors.VerifierError) -> Response:
    """A refused document lists every event's problems; anything else is the API's error."""
    if isinstance(error, epcis.DocumentError):
        listed = [{"index": e.index, "eventID": e.event_id, "code": e.code, "message": e.message} for e in error.errors]
        response = jsonify({"ok": False, "error": {"code": error.api_code, "message": error.message, "events": listed}})
        response.status_code = 400
        return response
    if isinstance(error, epcis.QueryError):
        return api_error("bad-query", error.message, 400)  # EPCIS: QueryParameterException
    headers = {}
    retry_after = getattr(error, "retry_after", None)
    if isinstance(error, RateLimited | errors.Unavailable) and retry_after:
        headers["Retry-After"] = str(retry_after)
    return api_error(error.api_code, error.message, error.http_status, headers)


def database_lost(error: Exception) -> Response:
    """The database went away mid-request (web/errors.py says why): nothing was recorded; 503, retry."""
    current_app.logger.error("database error: %s %s: %r", request.method, request.path, error)
    headers = {"Retry-After": str(web_errors.DATABASE_RETRY_SECONDS)}
    return api_error("busy", web_errors.DATABASE_LOST, 503, headers)


for _operational in db.OperationalError:
    bp.register_error_handler(_operational, database_lost)


@bp.errorhandler(500)
def server_error(error: Exception) -> Response:
    """Logged, and answered in the API's shape without the exception's details."""
    current_app.logger.error(
        "request failed: %s %s: %r", request.method, request.path, getattr(error, "original_exception", error)
    )
    return api_error("server-error", web_errors.SERVER_ERROR, 500)


def authenticated(*roles: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Count the request against the client's rate limit, then require a bearer token (of one of `roles`)."""
    return token_required(*roles, realm="verifier-epcis", limited=True)


def _enterprise() -> int | None:
    """Whose events the user names and sees: an enterprise account its own, the others everyone's."""
    return None if g.user.sees_everything() else int(g.user.enterprise_id)


def _ld_json(data: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(data, ensure_ascii=False), status, mimetype=JSON_LD)


# --- capture ------------------------------------------------------------------------------


@bp.route("/capture", methods=["OPTIONS"], provide_automatic_options=False)
def capture_options() -> Response:
    """EPCIS discovery: the versions and limits of capture, without a token."""
    rate_limit()
    response = Response(status=204)
    response.headers.update(DISCOVERY_HEADERS)
    response.headers["Allow"] = "POST, OPTIONS"
    return response


@bp.post("/capture", provide_automatic_options=False)  # OPTIONS is capture_options
@authenticated("enterprise", "admin")
def capture_post() -> Response:
    """Capture an EPCISDocument all or nothing: 201 with what it recorded, or 400 with every event's problems."""
    if request.mimetype not in CAPTURE_TYPES:
        return api_error("unsupported-media-type", f"send the EPCISDocument as {' or '.join(CAPTURE_TYPES)}", 415)
    request.max_content_length = MAX_CAPTURE_BYTES  # this route only: the app's limit is 16 kB
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        return api_error("payload-too-large", f"an EPCIS document is limited to {MAX_CAPTURE_BYTES} bytes", 413)
    conn = state().connection()
    with db.transaction(conn):
        done = capture.capture_document(
            conn,
            body,
            enterprise_id=None if g.user.role == "admin" else int(g.user.enterprise_id),
            actor=f"api:{g.user.username}",
            now=g.now,
            base_urls=state().base_urls,
        )
    payload = {"ok": True, "events": len(done.event_ids), "codes": done.codes, "eventIDs": done.epcis_ids}
    return Response(json.dumps(payload, ensure_ascii=False), 201, mimetype="application/json")


# --- queries ------------------------------------------------------------------------------


@bp.get("/events")
@authenticated(*accounts.AUDIT_READERS)
def events_query() -> Response:
    """Events matching EPCIS 2.0 REST query parameters, a page at a time (Link: rel="next")."""
    repeated = [name for name, values in request.args.lists() if len(values) > 1]
    if repeated:
        return api_error("bad-query", f"{repeated[0]}: give it once, its values separated by |", 400)
    args = request.args.to_dict()
    q = epcis.parse_query(args)
    document, next_token = capture.query_events(
        state().connection(), q, enterprise_id=_enterprise(), now=g.now, base_urls=state().base_urls
    )
    response = _ld_json(document)
    if next_token is not None:
        query = urlencode({**args, "nextPageToken": str(next_token)})
        response.headers["Link"] = f'<{request.path}?{query}>; rel="next"'
    return response


@bp.get("/events/<path:event_id>")
@authenticated(*accounts.AUDIT_READERS)
def event_get(event_id: str) -> Response:
    """One event by its eventID (percent-encoded in the path), in an EPCISQueryDocument."""
    found = capture.get_event(state().connection(), event_id, enterprise_id=_enterprise())
    return _ld_json(epcis.query_document([found], g.now))


# What each route takes (the catch-all below answers 405 with them, not 404, for another method).
_ALLOWED = {"capture": "OPTIONS, POST", "events": "GET, HEAD"}


@bp.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def not_found(rest: str) -> Response:
    """Anything else under /epcis/: the API's error shape, not the consumer's page."""
    allowed = _ALLOWED.get(rest) or ("GET, HEAD" if rest.startswith("events/") else None)
    if allowed:
        return api_error("method-not-allowed", f"this EPCIS route takes {allowed}", 405, {"Allow": allowed})
    return api_error("not-found", "no such EPCIS route", 404)
