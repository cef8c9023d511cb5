"""Cases in the audit UI (`/audit/cases`, in Chinese, or English on ?lang=en) and the audit API
(`/api/v1/audit/cases`).

An adapter over verifier/cases.py, which holds the rules: inspectors and admins work cases; an
enterprise account reads the cases about its own codes (another's is "not found"). The UI shares
the audit UI's sessions, CSRF tokens and layout (web/audit_ui.py); every form carries the token,
closing a case asks for a confirmation first, no page has a script.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, g, jsonify, redirect, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from .. import accounts, anomalies, audit, cases, db, errors, evidence
from . import audit_i18n, audit_reads
from .audit_ui import login_required, render
from .auth import token_required
from .errors import api_error
from .state import state

ui = Blueprint("audit_cases", __name__, url_prefix="/audit/cases")
api = Blueprint("audit_cases_api", __name__, url_prefix="/api/v1/audit/cases")
WORKERS = cases.WORKERS


def _words() -> dict[str, str]:
    """The case pages' words in the request's language (audit_i18n.CASE_TEXT, `cw` in templates)."""
    return audit_i18n.CASE_TEXT[audit_i18n.language()]


def _page(template: str, status: int = 200, **context: Any) -> BaseResponse:
    w = _words()
    statuses = {s: w[f"status.{s}"] for s in cases.STATUSES}
    return render(template, status, statuses=statuses, **context)  # cw, cst: the audit UI's (audit_i18n)


def _message(status: int, title: str, message: str) -> BaseResponse:
    return render("audit/message.html", status, title=title, message=message)


@ui.errorhandler(errors.VerifierError)
def ui_error(error: errors.VerifierError) -> BaseResponse:
    w = _words()
    if isinstance(error, errors.NotFound):
        return _message(404, w["not_found"], error.message)
    if isinstance(error, errors.Forbidden):
        return _message(403, w["not_allowed"], w["not_allowed"])
    return _message(error.http_status, w["not_done"], error.message)


@ui.errorhandler(403)
def ui_forbidden(_error: Any) -> BaseResponse:
    w = _words()
    return _message(403, w["not_allowed"], w["not_allowed"])


def _actor() -> str:
    return f"ui:{g.user.username}"


def _filters(args: Any) -> tuple[str | None, str | None]:
    status = cases.parse_status(args["status"]) if args.get("status") else None
    severity = cases.parse_severity(args["severity"]) if args.get("severity") else None
    return status, severity


# --- pages --------------------------------------------------------------------------------------


@ui.get("/")
@login_required(*accounts.AUDIT_READERS)
def case_list() -> BaseResponse:
    status, severity = _filters(request.args)
    found = cases.list_cases(state().connection(), g.user, status, severity)
    return _page("audit/cases.html", cases=found, status_filter=status, severity_filter=severity)


@ui.route("/new", methods=["GET", "POST"])
@login_required(*WORKERS)
def new_case() -> BaseResponse:
    source = request.form if request.method == "POST" else request.args
    rule = source.get("rule", "")
    subject = audit.parse_text("subject", source.get("subject", ""), 200)
    days = audit.int_arg(source, "days", 1, audit.DAYS_MAX) or 30
    conn = state().connection()
    with audit_reads.heavy_reads():
        found = cases.find_anomaly(conn, g.user, rule, subject, days, g.now)
    if request.method == "GET":
        return _page("audit/case.html", case=None, anomaly=found, days=days, rules=anomalies.RULES)
    with db.transaction(conn):
        case_id = cases.open_case(conn, g.user, found, _actor(), g.now)
    return redirect(url_for(".case_page", case_id=case_id))


@ui.get("/<int:case_id>")
@login_required(*accounts.AUDIT_READERS)
def case_page(case_id: int) -> BaseResponse:
    found = cases.get_case(state().connection(), g.user, case_id)
    return _page("audit/case.html", case=found, anomaly=None, rules=anomalies.RULES, confirm_close=False)


@ui.post("/<int:case_id>/<action>")
@login_required(*WORKERS)
def case_action(case_id: int, action: str) -> BaseResponse:
    conn = state().connection()
    form = request.form
    if action == "status" and form.get("status") == "closed" and form.get("confirm") != "yes":
        found = cases.get_case(conn, g.user, case_id)
        return _page("audit/case.html", case=found, anomaly=None, rules=anomalies.RULES, confirm_close=True)
    with db.transaction(conn):
        if action == "note":
            cases.add_note(conn, g.user, case_id, form.get("text", "")[: cases.NOTE_MAX + 1], _actor(), g.now)
        elif action == "assign":
            cases.assign(conn, g.user, case_id, form.get("assignee", "")[:64], _actor(), g.now)
        elif action == "status":
            cases.set_status(conn, g.user, case_id, form.get("status", ""), _actor(), g.now)
        elif action == "link":
            ids = cases.parse_scan_ids(form.get("scans", "")[:2000])
            cases.link_evidence(conn, g.user, case_id, ids, _actor(), g.now)
        else:
            abort(404)
    return redirect(url_for(".case_page", case_id=case_id))


@ui.get("/<int:case_id>/export")
@login_required(*WORKERS)
def case_export(case_id: int) -> BaseResponse:
    return _download(case_id)


def _download(case_id: int) -> Response:
    export = cases.export(state().connection(), g.user, case_id)
    response = Response(evidence.dumps(export), mimetype="application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="{evidence.filename(case_id)}"'
    return response


# --- the API -------------------------------------------------------------------------------------


@api.errorhandler(errors.VerifierError)
def api_verifier_error(error: errors.VerifierError) -> Response:
    return api_error(error.api_code, error.message, error.http_status)


def _json_body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise audit.BadFilter("send a JSON object")
    return data


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise audit.BadFilter(f"'{name}' is text")
    return value


@api.get("")
@token_required(*accounts.AUDIT_READERS)
def api_list() -> Response:
    status, severity = _filters(request.args)
    return jsonify({"ok": True, "cases": cases.list_cases(state().connection(), g.user, status, severity)})


@api.post("")
@token_required(*WORKERS)
def api_open() -> Response:
    data = _json_body()
    days = data.get("days", 30)
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= audit.DAYS_MAX:
        raise audit.BadFilter(f"days is a whole number from 1 to {audit.DAYS_MAX}")
    conn = state().connection()
    with audit_reads.heavy_reads():
        found = cases.find_anomaly(conn, g.user, _text(data, "rule"), _text(data, "subject"), days, g.now)
    with db.transaction(conn):
        case_id = cases.open_case(conn, g.user, found, f"api:{g.user.username}", g.now)
    return _case_json(case_id, 201)


def _case_json(case_id: int, status: int = 200) -> Response:
    found = cases.get_case(state().connection(), g.user, case_id)
    response = jsonify(
        {"ok": True, "case": found.case, "notes": found.notes, "evidence": found.evidence, "hidden": found.hidden}
    )
    response.status_code = status
    return response


@api.get("/<int:case_id>")
@token_required(*accounts.AUDIT_READERS)
def api_case(case_id: int) -> Response:
    return _case_json(case_id)


@api.post("/<int:case_id>/<action>")
@token_required(*WORKERS)
def api_action(case_id: int, action: str) -> Response:
    data = _json_body()
    conn = state().connection()
    actor, now = f"api:{g.user.username}", g.now
    with db.transaction(conn):
        if action == "notes":
            cases.add_note(conn, g.user, case_id, _text(data, "text"), actor, now)
        elif action == "assign":
            cases.assign(conn, g.user, case_id, _text(data, "assignee"), actor, now)
        elif action == "status":
            cases.set_status(conn, g.user, case_id, _text(data, "status"), actor, now)
        elif action == "evidence":
            scans = data.get("scans")
            if not isinstance(scans, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in scans):
                raise audit.BadFilter("'scans' is a list of scan ids")
            cases.link_evidence(conn, g.user, case_id, scans, actor, now)
        else:
            return api_error("not-found", "no such case action", 404)
    return _case_json(case_id)


@api.get("/<int:case_id>/export")
@token_required(*WORKERS)
def api_export(case_id: int) -> Response:
    return _download(case_id)
