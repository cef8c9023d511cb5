"""The audit UI for inspectors, enterprises and admins: server-rendered pages, no scripts.

Login with a password (throttled per address and per name), a server-side session with idle and
absolute timeouts, and a CSRF token on every form, the login form included. The same object-level
rules as the audit API (verifier/web/audit.py).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, g, redirect, render_template, request, url_for

from .. import accounts, anomalies, auditlog, budget, codes, keys, lookup, store
from .audit import (
    BUSY,
    DAYS_MAX,
    PAGE_MAX,
    RECALL_REASON_MAX,
    TOO_BROAD,
    BadFilter,
    Busy,
    _batch_for,
    _columns,
    _int,
    anomalies_for,
    batch_id_of,
    batch_stats,
    heavy_reads,
    limited_reads,
    parse_text,
    scan_filters,
    scans_csv,
    serial_of,
    store_db,
)
from .state import state

bp = Blueprint("audit_ui", __name__, url_prefix="/audit")
COOKIE = "vaudit"
PRE_COOKIE = "vaudit_login"  # random, before login: what the login form's CSRF token is bound to
PRE_COOKIE_SECONDS = 3600
_PRE_RE = re.compile(r"[A-Za-z0-9_-]{43}")
NOTE_MAX = 500


def session_user() -> accounts.User | None:
    session = request.cookies.get(COOKIE)
    if not session:
        return None
    conn = state().connection()
    with store.transaction(conn):
        return accounts.user_for_session(conn, session, g.now)


def csrf_token() -> str:
    session = request.cookies.get(COOKIE, "")
    return hmac.new(state().hash_key, f"csrf\x00{session}".encode(), hashlib.sha256).hexdigest()[:32]


def login_csrf_token(pre: str) -> str:
    """The login form's token: bound to the pre-login cookie (signed double submit)."""
    return hmac.new(state().hash_key, f"login-csrf\x00{pre}".encode(), hashlib.sha256).hexdigest()[:32]


def login_required(*roles: str):
    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            user = session_user()
            if user is None:
                return redirect(url_for("audit_ui.login"))
            if roles and user.role not in roles:
                abort(403)
            if request.method == "POST" and not hmac.compare_digest(request.form.get("csrf", ""), csrf_token()):
                abort(403)
            g.user = user
            return view(*args, **kwargs)

        return wrapper

    return decorate


def render(template: str, status: int = 200, **context) -> Response:
    html = render_template(template, user=getattr(g, "user", None), csrf=csrf_token(), **context)
    return Response(html, status, mimetype="text/html")


@bp.errorhandler(BadFilter)
def bad_filter(error: BadFilter) -> Response:
    return render("audit/message.html", 400, title="Bad filter", message=str(error))


@bp.errorhandler(budget.OverBudget)
def over_budget(_error: budget.OverBudget) -> Response:
    return render(
        "audit/message.html", 400, title="Too much to read at once", message=TOO_BROAD[0].upper() + TOO_BROAD[1:] + "."
    )


@bp.errorhandler(Busy)
def busy(_error: Busy) -> Response:
    response = render("audit/message.html", 503, title="Busy", message=BUSY[0].upper() + BUSY[1:] + ".")
    response.headers["Retry-After"] = "5"
    return response


@bp.errorhandler(403)
def forbidden(_error) -> Response:
    return render("audit/message.html", 403, title="Not allowed", message="Your role cannot do this.")


LOGIN_FAILED = "Wrong user name or password, or the account cannot sign in now."
LOGIN_FORM_STALE = (
    "This form was not sent: it has expired or did not come from this site's login page. "
    "Enter your user name and password again."
)


def login_page(status: int = 200, error: str | None = None, headers: dict[str, str] | None = None) -> Response:
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
def login() -> Response:
    if request.method == "GET":
        return login_page()
    pre = request.cookies.get(PRE_COOKIE, "")
    if not (_PRE_RE.fullmatch(pre) and hmac.compare_digest(request.form.get("csrf", ""), login_csrf_token(pre))):
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
    response = redirect(url_for("audit_ui.scans"))
    response.set_cookie(
        COOKIE, result.session, httponly=True, samesite="Strict", secure=request.is_secure, path="/audit"
    )
    response.delete_cookie(PRE_COOKIE, path="/audit/login")
    return response


@bp.post("/logout")
@login_required()
def logout() -> Response:
    conn = state().connection()
    with store.transaction(conn):
        accounts.logout(conn, request.cookies[COOKIE])
    response = redirect(url_for("audit_ui.login"))
    response.delete_cookie(COOKIE, path="/audit")
    return response


FILTERS = ("enterprise", "batch", "code", "reason", "channel", "since", "until", "country", "region")


@bp.get("/")
@login_required()
def scans() -> Response:
    where, params = scan_filters(g.user)
    if (after := _int("after", 1)) is not None:
        where += " AND s.id < ?"
        params.append(after)
    columns = _columns(g.user)
    with limited_reads():
        rows = (
            state()
            .connection()
            .execute(
                f"SELECT {', '.join('s.' + c for c in columns)} FROM scans s WHERE {where} ORDER BY s.id DESC LIMIT ?",
                [*params, 101],
            )
            .fetchall()
        )
    items = [dict(zip(columns, row)) for row in rows[:100]]
    current = {k: request.args[k] for k in FILTERS if request.args.get(k)}
    next_link = f"/audit/?{urlencode({**current, 'after': items[-1]['id']})}" if len(rows) > 100 else None
    return render(
        "audit/scans.html",
        scans=items,
        columns=columns,
        filters=current,
        next_link=next_link,
        export_link=f"/audit/scans.csv?{urlencode(current)}",
        reasons=lookup.REASONS,
        channels=lookup.CHANNELS,
        page_max=PAGE_MAX,
    )


@bp.get("/scans.csv")
@login_required()
def export() -> Response:
    return scans_csv(g.user)


@bp.get("/batches")
@login_required()
def batches() -> Response:
    items = store.list_batches(store_db())
    if not g.user.sees_everything():
        items = [b for b in items if b["enterprise_id"] == g.user.enterprise_id]
    return render("audit/batches.html", batches=items)


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
def batch(batch: str) -> Response:
    batch_id = batch_id_of(batch)
    found = _batch_for(g.user, batch_id)
    if found is None:
        abort(404)
    if request.method == "POST":
        if g.user.role != "admin":
            abort(403)
        try:
            reason = parse_text("reason", request.form.get("reason", ""), RECALL_REASON_MAX)
            store.recall_batch(store_db(), batch_id, reason, actor=f"ui:{g.user.username}")
        except store.StoreError as exc:
            return render("audit/message.html", 400, title="Recall not done", message=str(exc))
        return redirect(f"/audit/batches/{batch_id}")
    with limited_reads():
        stats = batch_stats(batch_id)
    return render(
        "audit/batch.html",
        batch=found,
        chart=bar_chart(stats["per_day"]),
        mix=stats["verdicts"],
        top=[(f"{s:016d}", codes.human_code(s), c, n) for s, c, n in stats["top_codes"]],
    )


@bp.route("/codes/<code>", methods=["GET", "POST"])
@login_required()
def code(code: str) -> Response:
    serial = serial_of(code)
    conn = state().connection()
    row = conn.execute("SELECT batch_id FROM codes WHERE serial = ?", (serial,)).fetchone()
    if row is None or _batch_for(g.user, row[0]) is None:
        abort(404)
    if request.method == "POST":
        if g.user.role != "admin":
            abort(403)
        with store.transaction(conn):
            report_code(
                conn, serial, parse_text("note", request.form.get("note", ""), NOTE_MAX), f"ui:{g.user.username}"
            )
        return redirect(f"/audit/codes/{serial:016d}")
    columns = _columns(g.user)
    with limited_reads():
        history = [
            dict(zip(columns, r))
            for r in conn.execute(
                f"SELECT {', '.join(columns)} FROM scans WHERE serial = ? ORDER BY id LIMIT 1000", (serial,)
            )
        ]
    reported = conn.execute(
        "SELECT reported_at, reported_by, note FROM reported_codes WHERE serial = ?", (serial,)
    ).fetchone()
    return render(
        "audit/code.html",
        serial=f"{serial:016d}",
        human=codes.human_code(serial),
        batch_id=row[0],
        scans=history,
        columns=columns,
        reported=reported,
    )


def report_code(conn, serial: int, note: str, actor: str) -> None:
    """Mark a code as reported counterfeit (inside a write transaction), and log it."""
    now = auditlog.now_text()
    conn.execute(
        "INSERT OR IGNORE INTO reported_codes (serial, reported_at, reported_by, note) VALUES (?, ?, ?, ?)",
        (serial, now, actor, note.strip()[:NOTE_MAX]),
    )
    auditlog.append(conn, "code.reported", {"serial": serial, "note": note.strip()[:NOTE_MAX]}, now, actor)


@bp.get("/anomalies")
@login_required()
def anomaly_list() -> Response:
    days = _int("days", 1, DAYS_MAX) or 30
    with heavy_reads():
        _, found = anomalies_for(g.user, days, g.now)
    return render("audit/anomalies.html", anomalies=found, rules=anomalies.RULES, days=days)


@bp.route("/keys", methods=["GET", "POST"])
@login_required("admin")
def key_list() -> Response:
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
            with store.transaction(conn):
                auditlog.append(
                    conn,
                    "key.status",
                    {"kid": record.kid, "name": record.name, "status": record.status},
                    auditlog.now_text(g.now),
                    f"ui:{g.user.username}",
                )

        try:
            keys.set_status(folder, request.form.get("kid", ""), "revoked", g.now, log_change)
        except keys.KeyringError as exc:
            return render("audit/message.html", 400, title="Not revoked", message=str(exc))
        return redirect("/audit/keys")
    return render("audit/keys.html", keys=keys.read_keyring(folder))


@bp.route("/<path:rest>", methods=["GET", "POST"])
def not_found(rest: str) -> Response:
    """Anything else under /audit/ (e.g. a code with a slash): not a consumer lookup, not a page."""
    return render("audit/message.html", 404, title="Not found", message="There is no such audit page.")
