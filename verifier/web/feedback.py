"""Consumers' reports: the "report this product" form of every verdict page, its thank-you page, and
the audit API that routes reports to the enterprise and inspectors (verifier/feedback.py holds the rules).

The form is a multipart POST (a photo of up to 4 MB: the app's 16 kB body limit is raised for this
route only), protected by a CSRF token bound to the consumer's browser-session cookie (`vsid`), as the
audit UI binds its tokens to its session; rate-limited per client, and per code and client a day.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import Blueprint, Response, current_app, g, jsonify, request
from markupsafe import Markup
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .. import accounts, audit, clients, codes, db, errors, feedback, ratelimit
from .auth import token_required
from .i18n import TEXT, choose_language, page, with_contact
from .state import describe_request_client, rate_limit, state

bp = Blueprint("feedback", __name__)

REQUEST_MAX = feedback.PHOTO_MAX_BYTES + 64 * 1024  # the photo and the form's few text fields
REPORTS_PER_CODE_PER_DAY = 3  # per client; the app's REPORTS_PER_CODE_PER_DAY overrides it
_STATUS = {"too-many": 429, "photo-too-large": 413, "stale": 400, "bad-form": 400}


def csrf_token() -> str:
    """The report form's token, bound to the browser session (`vsid`): a page of another site cannot make it."""
    message = f"report-csrf\x00{g.session_id}".encode()
    return hmac.new(state().hash_key, message, hashlib.sha256).hexdigest()[:32]


def _serial(code: str) -> int | None:
    try:
        return codes.parse_human_code(code) if code.strip() else None
    except codes.InvalidCode:
        return None


def _form_page(values: dict[str, str], status: int = 200, error: tuple[str, str | None] | None = None) -> Response:
    """The form, filled with `values` (code, v, s and what the consumer typed), with an error if any."""
    lang = choose_language()
    text = TEXT[lang]
    serial = _serial(values.get("code", ""))
    verdict = feedback.attested_verdict(state().hash_key, serial, values.get("v", ""), values.get("s", ""))
    message: str | Markup | None = None
    if error is not None:
        code, field = error
        if code == "too-many":
            message = with_contact(lang, "report_err.too-many", str(current_app.config["REPORT_CONTACT"]))
        else:
            key = f"report_err.{code}.{field}" if code == "too-long" else f"report_err.{code}"
            message = text.get(key, text["report_err.bad-form"])
    return page(
        "report_form.html",
        status,
        lang=lang,
        values=values,
        code_shown=codes.human_code(serial) if serial is not None else values.get("code", ""),
        verdict=verdict,
        attested=verdict != feedback.NO_VERDICT,
        recipients=_recipients(lang, serial, verdict),
        whats=feedback.WHATS,
        csrf=csrf_token(),
        error=message,
        error_field=error[1] if error else None,
    )


def _recipients(lang: str, serial: int | None, verdict: str) -> str:
    to = feedback.recipient(state().connection(), serial, verdict)
    text = TEXT[lang]
    if to is None:
        return text["report_to_inspectors"]
    name = f"「{to[1]}」" if lang == "zh" else to[1]
    return text["report_to_enterprise"].format(enterprise=name)


@bp.get("/report")
def report_form() -> Response:
    """The form, from a verdict page's link (?code=&v=&s=) or opened directly (then inspectors only)."""
    values = {k: request.args.get(k, "")[:64] for k in ("code", "v", "s")}
    return _form_page(values)


@bp.post("/report")
def submit_report() -> Response:
    request.max_content_length = REQUEST_MAX  # this route only: the app's limit is 16 kB
    try:
        form, files = request.form, request.files
    except RequestEntityTooLarge:
        return _form_page({}, 413, ("photo-too-large", "photo"))
    except HTTPException:  # a multipart body that cannot be parsed
        return _form_page({}, 400, ("bad-form", None))
    values = {k: form.get(k, "") for k in ("code", "v", "s", "what", "bought_at", "details", "contact", "brand")}
    values = {k: v[: feedback.DETAILS_MAX * 2] for k, v in values.items()}  # what is shown back: bounded
    rate_key = rate_limit()  # RateLimited: the 429 page
    if g.new_session or not hmac.compare_digest(form.get("csrf", "").encode(), csrf_token().encode()):
        return _form_page(values, 400, ("stale", None))  # before anything is read or written
    st = state()
    serial = _serial(values["code"])
    verdict = feedback.attested_verdict(st.hash_key, serial, values["v"], values["s"])
    upload = files.get("photo")
    photo = upload.read(feedback.PHOTO_MAX_BYTES + 1) if upload is not None and upload.filename else None
    try:
        report = feedback.check_report(
            serial=serial,
            verdict=verdict,
            what=values["what"],
            bought_at=values["bought_at"],
            details=values["details"],
            contact=values["contact"],
            brand_may_contact=values["brand"] == "1",
            photo=photo,
        )
    except feedback.ReportRefused as refused:
        return _form_page(values, _STATUS.get(refused.code, 400), (refused.code, refused.field))
    if not _within_daily_limit(serial):
        return _form_page(values, 429, ("too-many", None))
    client = describe_request_client(rate_key)
    conn = st.connection()
    with db.transaction(conn):
        report_id = feedback.submit_report(
            conn, report, region=client.region.region or client.region.country, now=g.now
        )
    lang = choose_language()
    contact = str(current_app.config["REPORT_CONTACT"])
    return page(
        "report_sent.html",
        lang=lang,
        report_id=report_id,
        recipients=_recipients(lang, report.serial, report.verdict),
        urgent=with_contact(lang, "report_next_urgent", contact),
        has_contact=report.contact is not None,
    )


def _within_daily_limit(serial: int | None) -> bool:
    """At most REPORTS_PER_CODE_PER_DAY reports on one code (or without one) from one client a day;
    the counters are protection, not the service: when they fail, the report goes through."""
    st = state()
    hits = int(current_app.config.get("REPORTS_PER_CODE_PER_DAY") or REPORTS_PER_CODE_PER_DAY)
    client = clients.client_rate_key(st.hash_key, request.remote_addr or "")
    key = clients.keyed_hash(st.hash_key, "report", f"{client}:{serial if serial is not None else '-'}")
    try:
        outcome = ratelimit.hit(st.counters(), key, ratelimit.Limit(hits, 86400), g.now.timestamp())
    except db.DatabaseError as exc:
        current_app.logger.error("report counters failed: %r", exc)
        return True
    return outcome.allowed


# --- the audit API: reports for the enterprise and inspectors ---------------------------------


authenticated = token_required(*accounts.AUDIT_READERS)  # what each of them sees is feedback's rule


@bp.get("/api/v1/audit/reports")
@authenticated
def list_reports() -> Response:
    """Reports by id, oldest first: pass the last `id` as `after` for the next page."""
    limit = audit.int_arg(request.args, "limit", 1, feedback.PAGE_MAX) or 100
    after = audit.int_arg(request.args, "after", 0) or 0
    reports = feedback.list_reports(state().connection(), g.user, after, limit)
    for report in reports:
        report["photo"] = f"/api/v1/audit/reports/{report['id']}/photo" if report.pop("has_photo") else None
    following = reports[-1]["id"] if len(reports) == limit else None
    return jsonify({"ok": True, "reports": reports, "next": following})


@bp.get("/api/v1/audit/reports/<int:report_id>/photo")
@authenticated
def report_photo(report_id: int) -> Response:
    data = feedback.report_photo(state().connection(), g.user, report_id)  # NotFound: 404
    response = Response(data, mimetype="image/jpeg")
    response.headers["Content-Disposition"] = f'inline; filename="report-{report_id}.jpg"'
    return response


@bp.post("/api/v1/audit/reports/<int:report_id>/answer")
@authenticated
def answer_report(report_id: int) -> Response:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("status"), str):
        raise errors.InvalidInput('send {"status": "answered" | "closed", "answer": "..."}')
    answer = body.get("answer", "")
    if not isinstance(answer, str):
        raise errors.InvalidInput("answer is a string")
    conn = state().connection()
    with db.transaction(conn):
        report = feedback.answer_report(conn, g.user, report_id, body["status"], answer, g.now)
    report["photo"] = f"/api/v1/audit/reports/{report_id}/photo" if report.pop("has_photo") else None
    return jsonify({"ok": True, "report": report})
