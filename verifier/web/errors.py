"""The app-wide error handlers, and the one JSON error shape of the API.

Every failure under /api/ is `{"ok": false, "error": {"code": ..., "message": ...}}`; elsewhere it
is a page (the consumer's in the request's language, the audit UI's under /audit/). An
`errors.VerifierError` is presented from its class (`http_status`, `api_code`) and its message,
which is written for the user; anything else is logged and answered with a generic message: no
handler here shows an exception's details.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, jsonify, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from .. import db, errors
from .i18n import TEXT, choose_language, message_page

SERVER_ERROR = "the check could not be completed; try again later"


def api_error(code: str, message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    """The API's error response: `{"ok": false, "error": {"code": code, "message": message}}`."""
    response = jsonify({"ok": False, "error": {"code": code, "message": message}})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _under(prefix: str) -> bool:
    return request.path.startswith(prefix)


def _audit_page(status: int, title: str, message: str) -> Response:
    """The audit UI's message page, without the signed-in navigation (no user, no CSRF token here)."""
    html = render_template("audit/message.html", user=None, csrf="", title=title, message=message)
    return Response(html, status, mimetype="text/html")


def not_found(_error: HTTPException) -> Response:
    if _under("/api/"):
        return api_error("not-found", "no such endpoint", 404)
    return message_page(404, "notfound_title", TEXT[choose_language()]["notfound_body"])


def not_allowed(_error: HTTPException) -> Response:
    if _under("/api/"):
        return api_error("method-not-allowed", "method not allowed on this endpoint", 405)
    return message_page(405, "notfound_title", TEXT[choose_language()]["notfound_body"])


def server_error(error: HTTPException) -> Response:
    current_app.logger.error(
        "request failed: %s %s: %r", request.method, request.path, getattr(error, "original_exception", error)
    )
    if _under("/api/"):
        return api_error("server-error", SERVER_ERROR, 500)
    if _under("/audit/"):
        return _audit_page(500, "Server error", "The request could not be completed; try again later.")
    return message_page(500, "error_title", TEXT[choose_language()]["error_body"])


def verifier_error(error: errors.VerifierError) -> Response:
    """An operation refused by a service or the web layer, presented from the error's kind."""
    status = error.http_status
    retry_after = getattr(error, "retry_after", None)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    if _under("/api/"):
        return api_error(error.api_code, error.message, status, headers)
    if _under("/audit/"):
        response = _audit_page(status, HTTP_STATUS_CODES.get(status, "Not done"), error.message)
    else:
        text = TEXT[choose_language()]
        if status == 429:
            response = message_page(status, "rate_title", text["rate_body"].format(seconds=retry_after))
        elif status == 404:
            response = message_page(status, "notfound_title", text["notfound_body"])
        elif status >= 500:  # nothing the reader did: said in the reader's language
            response = message_page(status, "error_title", text["error_body"])
        else:
            response = message_page(status, "error_title", error.message)
    response.headers.update(headers)
    return response


DATABASE_LOST = "the registry could not be reached; retry shortly"
DATABASE_RETRY_SECONDS = 5


def database_lost(error: Exception) -> Response:
    """The database went away mid-request (a PostgreSQL restart or failover: the pool's stale
    connection fails once and is dropped; SQLite: a lock wait that timed out). Nothing was
    recorded (the transaction rolled back): 503, retry."""
    current_app.logger.error("database error: %s %s: %r", request.method, request.path, error)
    return verifier_error(errors.Unavailable(DATABASE_LOST, retry_after=DATABASE_RETRY_SECONDS))


def register(app: Flask) -> None:
    """Install the app-wide handlers (a blueprint's own handlers still take precedence)."""
    app.register_error_handler(404, not_found)
    app.register_error_handler(405, not_allowed)
    app.register_error_handler(500, server_error)
    app.register_error_handler(errors.VerifierError, verifier_error)
    for operational in db.OperationalError:
        app.register_error_handler(operational, database_lost)
