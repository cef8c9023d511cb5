"""The consoles (docs/console.md): an enterprise's (`/audit/console/`: batch requests and their
label files, recalls, blocked codes, dealers, shipments, inspection reports, consumer reports) and
the issuing association's (`/audit/association/`: mark certificates). Server-rendered pages in
Chinese (English with ?lang=en), no scripts; they share the audit UI's sessions and CSRF tokens
(web/session_ui.py). An adapter: every rule is the services' (requests, issue, events, feedback,
certificates); what decides an access or a verdict is logged there.

The console never signs: a request waits for `verifier signer`, on the machine with the keys.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, Response, abort, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from .. import audit, certificates, clock, codes, db, errors, events, feedback, issue, lifecycle, requests
from . import console_i18n
from .session_ui import csrf_token, login_required
from .state import state

bp = Blueprint("console", __name__, url_prefix="/audit/console")
association = Blueprint("association", __name__, url_prefix="/audit/association")

ENTERPRISE_ROLES = ("enterprise", "admin")
ASSOCIATION_ROLES = ("association", "admin")
REFRESH_SECONDS = 3
CODES_MAX = 10_000  # codes one form may name (blocking, shipping)
FORM_MAX = 256 * 1024  # a request form, a list of codes
UPLOAD_MAX = events.MAX_DOCUMENT_BYTES + 64 * 1024
LANG_COOKIE_SECONDS = 365 * 86400
STATUS_OF_ACTION = {"suspend": certificates.SUSPENDED, "reinstate": certificates.VALID, "revoke": certificates.REVOKED}


def cst(text: str | None) -> str:
    """A stored UTC time in China Standard Time, to the minute."""
    moment = clock.parse(text) if text else None
    return "" if moment is None else moment.astimezone(clock.CHINA).strftime("%Y-%m-%d %H:%M")


def page(template: str, status: int = 200, **context: Any) -> BaseResponse:
    """A console page in the request's language (remembered when chosen with ?lang=)."""
    lang = console_i18n.language()
    html = render_template(
        template,
        user=getattr(g, "user", None),
        csrf=csrf_token(),
        w=console_i18n.TEXT[lang],
        lang=lang,
        other=[x for x in console_i18n.LANGUAGES if x != lang][0],
        cst=cst,
        human=codes.human_code,
        **context,
    )
    response = Response(html, status, mimetype="text/html")
    if request.args.get("lang") in console_i18n.LANGUAGES:
        response.set_cookie(
            console_i18n.COOKIE, lang, max_age=LANG_COOKIE_SECONDS, samesite="Strict", path="/audit", httponly=True
        )
    return response


def message(status: int, title: str, text: str) -> BaseResponse:
    return page("console/message.html", status, title=title, text=text)


def _error(error: errors.VerifierError) -> BaseResponse:
    w = console_i18n.words()
    if isinstance(error, errors.NotFound):
        return message(404, w["not_found"], w["not_found"])  # whose it is, or whether it exists, is not said
    if isinstance(error, errors.Forbidden):
        return message(403, w["not_allowed"], error.message)
    return message(error.http_status, w["not_done"], error.message)


def _forbidden(_error: Any) -> BaseResponse:
    w = console_i18n.words()
    return message(403, w["not_allowed"], w["not_allowed"])


def _too_large(_error: Any) -> BaseResponse:
    w = console_i18n.words()
    return message(413, w["not_done"], f"at most {UPLOAD_MAX // 1_000_000} MB")


for _bp in (bp, association):
    _bp.register_error_handler(errors.VerifierError, _error)
    _bp.register_error_handler(403, _forbidden)
    _bp.register_error_handler(413, _too_large)


@bp.before_request
def form_limits() -> None:
    """The app's 16 kB limit is the consumer's; a console form (and an upload) may be larger."""
    request.max_content_length = UPLOAD_MAX if request.endpoint == "console.batch_report" else FORM_MAX


def _actor() -> str:
    return f"ui:{g.user.username}"


def _own_enterprise() -> int | None:
    """The enterprise the user acts for: an enterprise account's own; None for an admin (any)."""
    if g.user.role == "admin":
        return None
    if g.user.enterprise_id is None:
        abort(403)
    return int(g.user.enterprise_id)


def _chosen_enterprise(form: Any) -> int:
    """The enterprise a new thing is for: the account's own, or the one an admin chose."""
    own = _own_enterprise()
    if own is not None:
        return own
    return audit.parse_int("enterprise", form.get("enterprise_id", ""), 1)


def _enterprises() -> list[tuple[int, str]]:
    """For an admin's forms: the enterprises with batches or certificates."""
    conn = state().connection()
    found = {int(b["enterprise_id"]): b["enterprise"] for b in audit.list_batches(conn, g.user)}
    found |= {int(c["enterprise_id"]): c["enterprise"] for c in certificates.list_all(conn)}
    return sorted(found.items())


def _serials(text: str) -> list[int]:
    lines = [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]
    if not lines:
        raise errors.InvalidInput("name at least one code")
    if len(lines) > CODES_MAX:
        raise errors.InvalidInput(f"at most {CODES_MAX:,} codes at once")
    return list(dict.fromkeys(audit.serial_of(line) for line in lines))


# --- batch requests ---------------------------------------------------------------------------


@bp.get("/")
@login_required(*ENTERPRISE_ROLES)
def home() -> BaseResponse:
    found = requests.list_requests(state().connection(), g.user)
    return page("console/home.html", requests=found)


def _params(form: Any) -> dict[str, Any]:
    count = audit.parse_int("count", form.get("count", ""), 1, requests.MAX_COUNT)
    return {
        "mark": form.get("mark", ""),
        "product": form.get("product", ""),
        "spec": form.get("spec", ""),
        "lot": form.get("lot", ""),
        "production_date": form.get("production_date", ""),
        "count": count,
        "pin": form.get("pin") == "1",
        "formats": form.getlist("formats") or ["csv"],
        "label_size": form.get("label_size", "") or requests.PARAMS["label_size"],
        "unit": form.get("unit", "") or requests.PARAMS["unit"],
        "activation": form.get("activation", "") or requests.PARAMS["activation"],
        "production_place": form.get("production_place", ""),
        "certificate": form.get("certificate", ""),
        "note": form.get("note", "")[:500],
    }


@bp.route("/requests/new", methods=["GET", "POST"])
@login_required(*ENTERPRISE_ROLES)
def new_request() -> BaseResponse:
    choices: dict[str, Any] = {"marks": codes.MARKS, "units": lifecycle.UNITS, "activations": lifecycle.ACTIVATIONS}
    enterprises = _enterprises() if g.user.role == "admin" else []
    if request.method == "GET":
        return page("console/request_form.html", form={}, error=None, enterprises=enterprises, **choices)
    try:
        enterprise_id = _chosen_enterprise(request.form)
        made = requests.request_batch(
            state().connection(), enterprise_id, g.user, _params(request.form), g.now, state().base_urls[0]
        )
    except errors.InvalidInput as exc:
        form = request.form.to_dict()
        return page("console/request_form.html", 400, form=form, error=exc.message, enterprises=enterprises, **choices)
    return redirect(url_for(".request_page", request_id=made["id"]))


@bp.get("/requests/<int:request_id>")
@login_required(*ENTERPRISE_ROLES)
def request_page(request_id: int) -> BaseResponse:
    conn = state().connection()
    found = requests.get(conn, request_id, g.user)
    stored = requests.files(conn, request_id, g.user) if found["status"] == requests.DONE else []
    refresh = REFRESH_SECONDS if found["status"] in (requests.APPROVED, requests.ISSUING) else None
    count = int(found["params"]["count"])
    percent = int(100 * (found["progress"] or 0) / count) if count else 0
    return page("console/request.html", r=found, files=stored, refresh=refresh, percent=percent)


@bp.post("/requests/<int:request_id>/approve")
@login_required(*ENTERPRISE_ROLES)
def approve(request_id: int) -> BaseResponse:
    requests.approve(state().connection(), request_id, g.user, g.now)
    return redirect(url_for(".request_page", request_id=request_id))


@bp.post("/requests/<int:request_id>/cancel")
@login_required(*ENTERPRISE_ROLES)
def cancel(request_id: int) -> BaseResponse:
    requests.cancel(state().connection(), request_id, g.user, g.now)
    return redirect(url_for(".request_page", request_id=request_id))


@bp.get("/requests/<int:request_id>/files/<name>")
@login_required(*ENTERPRISE_ROLES)
def download(request_id: int, name: str) -> BaseResponse:
    conn = state().connection()
    listed = {f["name"]: f for f in requests.files(conn, request_id, g.user)}
    if name not in listed:
        raise errors.NotFound(f"no file {name}")
    content = requests.file(conn, request_id, name, g.user)
    response = Response(content, 200, mimetype=listed[name]["media_type"])
    response.headers["Content-Disposition"] = f'attachment; filename="request-{request_id}-{name}"'
    return response


# --- batches: recall, inspection reports ---------------------------------------------------------


@bp.get("/batches")
@login_required(*ENTERPRISE_ROLES)
def batch_list() -> BaseResponse:
    return page("console/batches.html", batches=audit.list_batches(state().connection(), g.user))


@bp.route("/batches/<int:batch_id>/recall", methods=["GET", "POST"])
@login_required(*ENTERPRISE_ROLES)
def recall(batch_id: int) -> BaseResponse:
    conn = state().connection()
    batch = audit.visible_batch(conn, g.user, batch_id)
    w = console_i18n.words()
    if request.method == "GET":
        return page(
            "console/confirm.html",
            title=w["recall_title"],
            text=w["recall_text"].format(count=f"{int(batch['count']):,}"),
            action=url_for(".recall", batch_id=batch_id),
            fields={},
            reason=True,
            back=url_for(".batch_list"),
        )
    reason = audit.parse_text("reason", request.form.get("reason", ""), audit.RECALL_REASON_MAX)
    issue.recall_batch(conn, batch_id, reason, g.now, _actor())
    return redirect(url_for(".batch_list"))


@bp.route("/batches/<int:batch_id>/report", methods=["GET", "POST"])
@login_required(*ENTERPRISE_ROLES)
def batch_report(batch_id: int) -> BaseResponse:
    conn = state().connection()
    batch = audit.visible_batch(conn, g.user, batch_id)
    if request.method == "GET":
        return page("console/report_upload.html", batch=batch, sha256=None)
    upload = request.files.get("report")
    if upload is None:
        raise errors.InvalidInput("choose a file")
    with db.transaction(conn):
        sha256 = events.attach_report(
            conn,
            batch_id,
            upload.read(),
            upload.filename or "report",
            enterprise_id=_own_enterprise(),
            actor=_actor(),
            now=g.now,
        )
    return page("console/report_upload.html", batch=batch, sha256=sha256)


# --- codes: block, ship ---------------------------------------------------------------------------


@bp.route("/block", methods=["GET", "POST"])
@login_required(*ENTERPRISE_ROLES)
def block() -> BaseResponse:
    if request.method == "GET":
        return page("console/block.html", reasons=lifecycle.BLOCK_REASONS)
    conn = state().connection()
    text, reason = request.form.get("codes", ""), request.form.get("reason", "")
    serials = _serials(text)
    for serial in serials:
        audit.visible_code(conn, g.user, serial)  # another enterprise's code is not found
    if reason not in lifecycle.BLOCK_REASONS:
        raise errors.InvalidInput(f"a reason is one of {', '.join(lifecycle.BLOCK_REASONS)}")
    if request.form.get("confirmed") != "1":
        w = console_i18n.words()
        return page(
            "console/confirm.html",
            title=w["block_title"],
            text=w["block_text"].format(count=f"{len(serials):,}"),
            action=url_for(".block"),
            fields={"codes": text, "reason": reason, "confirmed": "1"},
            reason=False,
            back=url_for(".block"),
        )
    events.block(conn, serials, reason, enterprise_id=_own_enterprise(), actor=_actor(), now=g.now)
    return redirect(url_for(".batch_list"))


@bp.route("/dealers", methods=["GET", "POST"])
@login_required(*ENTERPRISE_ROLES)
def dealers() -> BaseResponse:
    conn = state().connection()
    error = None
    if request.method == "POST":
        enterprise_id = _chosen_enterprise(request.form)
        gln = request.form.get("gln", "").strip() or None
        try:
            with db.transaction(conn):
                events.register_dealer(
                    conn,
                    enterprise_id,
                    request.form.get("code", ""),
                    request.form.get("name", ""),
                    request.form.get("regions", "").split(),
                    gln,
                    actor=_actor(),
                    now=g.now,
                )
        except errors.InvalidInput as exc:
            error = exc.message
        else:
            return redirect(url_for(".dealers"))
    found = events.list_dealers(conn, _own_enterprise())
    enterprises = _enterprises() if g.user.role == "admin" else []
    return page("console/dealers.html", 400 if error else 200, dealers=found, error=error, enterprises=enterprises)


@bp.route("/shipments", methods=["GET", "POST"])
@login_required(*ENTERPRISE_ROLES)
def shipments() -> BaseResponse:
    conn = state().connection()
    found = events.list_dealers(conn, _own_enterprise())
    done = None
    if request.method == "POST":
        serials = _serials(request.form.get("codes", ""))
        dealer = request.form.get("dealer", "")
        step = events.Step(
            lifecycle.OBJECT,
            "OBSERVE",
            lifecycle.SHIPPING,
            clock.utc_text(g.now),
            tuple(serials),
            dealer=f"dealer:{dealer}",
            disposition="in_transit",
        )
        events.capture(conn, [step], enterprise_id=_own_enterprise(), actor=_actor(), now=g.now)
        done = len(serials)
    return page("console/shipments.html", dealers=found, done=done)


# --- consumer reports -----------------------------------------------------------------------------


@bp.get("/reports")
@login_required(*ENTERPRISE_ROLES)
def reports() -> BaseResponse:
    after = audit.int_arg(request.args, "after", 0) or 0
    return page("console/reports.html", reports=feedback.list_reports(state().connection(), g.user, after))


@bp.post("/reports/<int:report_id>")
@login_required(*ENTERPRISE_ROLES)
def answer(report_id: int) -> BaseResponse:
    conn = state().connection()
    with db.transaction(conn):
        feedback.answer_report(
            conn, g.user, report_id, request.form.get("status", ""), request.form.get("answer", ""), g.now
        )
    return redirect(url_for(".reports"))


# --- the association: certificates ---------------------------------------------------------------


@association.get("/")
@login_required(*ASSOCIATION_ROLES)
def certificate_list() -> BaseResponse:
    found = certificates.list_all(state().connection())
    return page("console/certificates.html", certificates=found, marks=codes.MARKS, error=None, form={})


@association.post("/certificates")
@login_required(*ASSOCIATION_ROLES)
def grant() -> BaseResponse:
    conn = state().connection()
    form = request.form
    try:
        valid_until = dt.date.fromisoformat(form.get("valid_until", ""))
        mark = codes.mark_by_slug(form.get("mark", ""))
    except ValueError as exc:
        return _grant_error(str(exc))
    try:
        with db.transaction(conn):
            names = [line.strip() for line in form.get("products", "").splitlines() if line.strip()]
            enterprise = form.get("enterprise", "").strip()
            products = None
            if names:
                products = certificates.products_of(conn, enterprise, names, g.now)
            grant = certificates.Grant(form.get("number", ""), enterprise, mark, valid_until, products=products)
            certificates.grant(conn, grant, actor=_actor(), now=g.now)
    except errors.InvalidInput as exc:
        return _grant_error(exc.message)
    return redirect(url_for(".certificate_list"))


def _grant_error(text: str) -> BaseResponse:
    found = certificates.list_all(state().connection())
    form = request.form.to_dict()
    return page("console/certificates.html", 400, certificates=found, marks=codes.MARKS, error=text, form=form)


@association.route("/certificates/<number>/<action>", methods=["GET", "POST"])
@login_required(*ASSOCIATION_ROLES)
def certificate_status(number: str, action: str) -> BaseResponse:
    if action not in STATUS_OF_ACTION:
        abort(404)
    conn = state().connection()
    batches, labels = certificates.affected(conn, number)
    if request.method == "GET":
        w = console_i18n.words()
        return page(
            "console/confirm.html",
            title=w[f"{action}_title"],
            text=w[f"{action}_text"].format(batches=f"{batches:,}", labels=f"{labels:,}"),
            action=url_for(".certificate_status", number=number, action=action),
            fields={},
            reason=action != "reinstate",
            back=url_for(".certificate_list"),
        )
    with db.transaction(conn):
        certificates.change_status(
            conn, number, STATUS_OF_ACTION[action], request.form.get("reason"), actor=_actor(), now=g.now
        )
    return redirect(url_for(".certificate_list"))
