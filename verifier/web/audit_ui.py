"""The audit UI for inspectors, enterprises and admins: server-rendered pages, no scripts.

Login with a password (throttled per address and per name), a server-side session with idle and
absolute timeouts, and a CSRF token on every form, the login form included. An adapter over the
audit service (verifier/audit.py), with the same object-level rules as the audit API.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Any

from flask import Blueprint, Response, abort, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse  # what redirect() returns; flask's Response is one

from .. import accounts, anomalies, audit, auditlog, clock, codes, db, errors, keys, lookup
from . import audit_reads
from .session_ui import csrf_token as csrf_token  # re-exported: web/cases.py imports them from here
from .session_ui import login_required as login_required
from .state import AUDIT_SESSION_COOKIE, state

bp = Blueprint("audit_ui", __name__, url_prefix="/audit")
COOKIE = AUDIT_SESSION_COOKIE
PRE_COOKIE = "vaudit_login"  # random, before login: what the login form's CSRF token is bound to
PRE_COOKIE_SECONDS = 3600
_PRE_RE = re.compile(r"[A-Za-z0-9_-]{43}")
NOTE_MAX = audit.NOTE_MAX
PAGE_SIZE = 100


def login_csrf_token(pre: str) -> str:
    """The login form's token: bound to the pre-login cookie (signed double submit)."""
    return hmac.new(state().hash_key, f"login-csrf\x00{pre}".encode(), hashlib.sha256).hexdigest()[:32]


def render(template: str, status: int = 200, **context) -> BaseResponse:
    html = render_template(template, user=getattr(g, "user", None), csrf=csrf_token(), **context)
    return Response(html, status, mimetype="text/html")


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


@bp.errorhandler(errors.VerifierError)
def verifier_error(error: errors.VerifierError) -> BaseResponse:
    """The service's errors as message pages, with the status of the error's kind."""
    if isinstance(error, audit.TooBroad):
        title, message = "Too much to read at once", _sentence(error.message)
    elif isinstance(error, errors.Unavailable):
        title, message = "Busy", _sentence(error.message)
    elif isinstance(error, errors.NotFound):
        title, message = "Not found", "There is no such audit page."
    elif isinstance(error, errors.InvalidInput):
        title, message = "Bad filter", error.message
    else:
        title, message = "Not done", error.message
    response = render("audit/message.html", error.http_status, title=title, message=message)
    if isinstance(error, errors.Unavailable) and error.retry_after:
        response.headers["Retry-After"] = str(error.retry_after)
    return response


@bp.errorhandler(403)
def forbidden(_error) -> BaseResponse:
    return render("audit/message.html", 403, title="Not allowed", message="Your role cannot do this.")


LOGIN_FAILED = "Wrong user name or password, or the account cannot sign in now."
LOGIN_FORM_STALE = (
    "This form was not sent: it has expired or did not come from this site's login page. "
    "Enter your user name and password again."
)


def login_page(status: int = 200, error: str | None = None, headers: dict[str, str] | None = None) -> BaseResponse:
    """The login form, with a CSRF token bound to the pre-login cookie (set here when missing)."""
    pre = request.cookies.get(PRE_COOKIE, "")
    fresh = not _PRE_RE.fullmatch(pre)
    if fresh:
        pre = secrets.token_urlsafe(32)
    response = render("audit/login.html", status, error=error, login_csrf=login_csrf_token(pre))
    response.headers.update(headers or {})
    if fresh:
        response.set_cookie(
            PRE_COOKIE,
            pre,
            max_age=PRE_COOKIE_SECONDS,
            httponly=True,
            samesite="Strict",
            secure=request.is_secure,
            path="/audit/login",
        )
    return response


@bp.route("/login", methods=["GET", "POST"])
def login() -> BaseResponse:
    if request.method == "GET":
        return login_page()
    pre = request.cookies.get(PRE_COOKIE, "")
    if not (
        _PRE_RE.fullmatch(pre)
        and hmac.compare_digest(request.form.get("csrf", "").encode(), login_csrf_token(pre).encode())
    ):
        return login_page(400, LOGIN_FORM_STALE)  # before the database: a forged form counts nothing
    result = accounts.login(
        state().connection(),
        request.form.get("username", "")[:64],
        request.form.get("password", "")[:256],
        g.now,
        ip=request.remote_addr or "",
        key=state().hash_key,
    )
    if result.user is None:
        if result.retry_after:
            minutes = -(-result.retry_after // 60)
            return login_page(
                429,
                f"{LOGIN_FAILED} Try again in {minutes} minute{'s' * (minutes != 1)}.",
                {"Retry-After": str(result.retry_after)},
            )
        return login_page(401, LOGIN_FAILED)
    assert result.session is not None  # a login with a user always opens a session
    response = redirect(url_for("audit_ui.scans"))
    response.set_cookie(
        COOKIE, result.session, httponly=True, samesite="Strict", secure=request.is_secure, path="/audit"
    )
    response.delete_cookie(PRE_COOKIE, path="/audit/login")
    return response


@bp.post("/logout")
@login_required()
def logout() -> BaseResponse:
    conn = state().connection()
    with db.transaction(conn):
        accounts.logout(conn, request.cookies[COOKIE])
    response = redirect(url_for("audit_ui.login"))
    response.delete_cookie(COOKIE, path="/audit")
    return response


FILTERS = ("enterprise", "batch", "code", "reason", "channel", "since", "until", "country", "region")


@bp.get("/")
@login_required()
def scans() -> BaseResponse:
    flt = audit.scan_filter(request.args)
    after = audit.int_arg(request.args, "after", 1)
    with audit_reads.reads():
        page = audit.list_scans(state().connection(), flt, g.user, after, PAGE_SIZE)
    current: dict[str, Any] = {k: request.args[k] for k in FILTERS if request.args.get(k)}
    return render(
        "audit/scans.html",
        scans=page.scans,
        columns=audit.columns_for(g.user),
        filters=current,
        next_link=url_for(".scans", **current, after=page.next) if page.next is not None else None,
        export_link=url_for(".export", **current),
        reasons=lookup.REASONS,
        channels=lookup.CHANNELS,
        page_max=audit.PAGE_MAX,
    )


@bp.get("/scans.csv")
@login_required()
def export() -> BaseResponse:
    return audit_reads.csv_response(g.user, audit.scan_filter(request.args))


@bp.get("/batches")
@login_required()
def batches() -> BaseResponse:
    return render("audit/batches.html", batches=audit.list_batches(state().connection(), g.user))


def bar_chart(points: list[tuple[str, int]], width: int = 640, height: int = 160) -> str:
    """A server-side SVG bar chart of (label, value) pairs."""
    if not points:
        return ""
    top = max(v for _, v in points) or 1
    bar = width / len(points)
    bars = "".join(
        f'<rect x="{i * bar:.1f}" y="{height - 20 - v / top * (height - 30):.1f}" width="{max(bar - 1, 1):.1f}" '
        f'height="{v / top * (height - 30):.1f}"><title>{label}: {v}</title></rect>'
        for i, (label, v) in enumerate(points)
    )
    labels = (
        f'<text x="0" y="{height - 4}">{points[0][0]}</text>'
        f'<text x="{width}" y="{height - 4}" text-anchor="end">{points[-1][0]}</text>'
    )
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="scans per day">'
        f'<text x="0" y="10">max {top}/day</text>{bars}{labels}</svg>'
    )


@bp.route("/batches/<batch>", methods=["GET", "POST"])
@login_required()
def batch(batch: str) -> BaseResponse:
    batch_id = audit.batch_id_of(batch)
    conn = state().connection()
    found = audit.visible_batch(conn, g.user, batch_id)
    if request.method == "POST":
        if g.user.role != "admin":
            abort(403)
        reason = audit.parse_text("reason", request.form.get("reason", ""), audit.RECALL_REASON_MAX)
        try:
            audit.recall(conn, batch_id, reason, f"ui:{g.user.username}", g.now)
        except errors.VerifierError as exc:
            return render("audit/message.html", 400, title="Recall not done", message=exc.message)
        return redirect(url_for(".batch", batch=batch_id))
    with audit_reads.reads():
        stats = audit.batch_statistics(conn, batch_id)
    return render(
        "audit/batch.html",
        batch=found,
        chart=bar_chart(stats.per_day),
        mix=stats.verdicts,
        top=[(f"{s:016d}", codes.human_code(s), c, n) for s, c, n in stats.top_codes],
    )


@bp.route("/codes/<code>", methods=["GET", "POST"])
@login_required()
def code(code: str) -> BaseResponse:
    serial = audit.serial_of(code)
    conn = state().connection()
    if request.method == "POST":
        audit.visible_code(conn, g.user, serial)
        if g.user.role != "admin":
            abort(403)
        note = audit.parse_text("note", request.form.get("note", ""), NOTE_MAX)
        with db.transaction(conn):
            audit.report_code(conn, serial, note, f"ui:{g.user.username}", g.now)
        return redirect(url_for(".code", code=f"{serial:016d}"))
    with audit_reads.reads():
        history = audit.code_history(conn, g.user, serial)
    return render(
        "audit/code.html",
        serial=f"{serial:016d}",
        human=history.human_code,
        batch_id=history.batch_id,
        scans=history.scans,
        columns=audit.columns_for(g.user),
        reported=history.reported,
    )


@bp.get("/anomalies")
@login_required()
def anomaly_list() -> BaseResponse:
    days = audit.int_arg(request.args, "days", 1, audit.DAYS_MAX) or 30
    with audit_reads.heavy_reads():
        _, found = audit.anomalies_for(state().connection(), g.user, days, g.now)
    return render("audit/anomalies.html", anomalies=found, rules=anomalies.RULES, days=days)


@bp.route("/keys", methods=["GET", "POST"])
@login_required("admin")
def key_list() -> BaseResponse:
    st = state()
    folder = st.keys_source.parent
    if st.keys_source.name != keys.KEYRING_FILE:
        return render(
            "audit/message.html",
            409,
            title="Keys come from a JWKS file",
            message="Revoke with `verifier keys revoke` where the keyring lives, then publish the JWKS again.",
        )
    if request.method == "POST":

        def log_change(record: keys.KeyRecord) -> None:  # under the keyring lock, once written
            conn = st.connection()
            with db.transaction(conn):
                auditlog.append(
                    conn,
                    "key.status",
                    {"kid": record.kid, "name": record.name, "status": record.status},
                    clock.utc_text(g.now),
                    f"ui:{g.user.username}",
                )

        try:
            keys.set_status(folder, request.form.get("kid", ""), "revoked", g.now, log_change)
        except keys.KeyringError as exc:
            return render("audit/message.html", 400, title="Not revoked", message=str(exc))
        return redirect(url_for(".key_list"))
    return render("audit/keys.html", keys=keys.read_keyring(folder))


@bp.route("/<path:rest>", methods=["GET", "POST"])
def not_found(rest: str) -> BaseResponse:
    """Anything else under /audit/ (e.g. a code with a slash): not a consumer lookup, not a page."""
    return render("audit/message.html", 404, title="Not found", message="There is no such audit page.")
