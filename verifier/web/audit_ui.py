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
from markupsafe import escape
from werkzeug.wrappers import Response as BaseResponse  # what redirect() returns; flask's Response is one

from .. import (
    accounts,
    anomalies,
    audit,
    auditlog,
    cases,
    chinamap,
    clock,
    codes,
    db,
    errors,
    keys,
    lookup,
    regions,
    trends,
)
from . import audit_i18n, audit_reads
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


def lang() -> str:
    return audit_i18n.language()


def words() -> dict[str, str]:
    return audit_i18n.TEXT[lang()]


@bp.app_context_processor
def audit_words() -> dict[str, Any]:
    """The audit templates' words on every page under /audit/, the app's error pages included."""
    if not request.path.startswith("/audit/"):
        return {}
    return audit_i18n.context(lang())


def render(template: str, status: int = 200, **context) -> BaseResponse:
    """An audit page in the request's language (?lang= is remembered in a cookie scoped to /audit)."""
    language = lang()
    html = render_template(
        template, user=getattr(g, "user", None), csrf=csrf_token(), **audit_i18n.context(language), **context
    )
    response = Response(html, status, mimetype="text/html")
    if request.args.get("lang") in audit_i18n.LANGUAGES:
        response.set_cookie(
            audit_i18n.COOKIE,
            language,
            max_age=365 * 86400,
            httponly=True,
            samesite="Strict",
            secure=request.is_secure,
            path="/audit",
        )
    return response


def confirmed() -> bool:
    """Whether a POST is the confirmation of an irreversible action (its CSRF token is checked by
    login_required); a first POST only shows what the action will affect."""
    return request.form.get("confirm") == "yes"


def confirm_page(title: str, effect: str, button: str, fields: dict[str, str], cancel: str, note: str) -> BaseResponse:
    """The confirmation of an irreversible action: what it will affect, Confirm (the same form
    again, with confirm=yes and the CSRF token) and Cancel (back, nothing done)."""
    return render(
        "audit/confirm.html", title=title, effect=effect, note=note, button=button, fields=fields, cancel=cancel
    )


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."


def message(status: int, title: str, text: str) -> BaseResponse:
    return render("audit/message.html", status, title=title, message=text)


@bp.errorhandler(errors.VerifierError)
def verifier_error(error: errors.VerifierError) -> BaseResponse:
    """The service's errors as message pages, with the status of the error's kind."""
    t = words()
    if isinstance(error, audit.TooBroad):
        title, text = t["too_broad.title"], t["too_broad"] or _sentence(error.message)
    elif isinstance(error, errors.Unavailable):
        title, text = t["busy.title"], t["busy"] or _sentence(error.message)
    elif isinstance(error, errors.NotFound):
        title, text = t["not_found.title"], t["not_found"]
    elif isinstance(error, errors.InvalidInput):
        title, text = t["bad_filter.title"], error.message  # the service's words (English)
    else:
        title, text = t["not_done.title"], error.message
    response = message(error.http_status, title, text)
    if isinstance(error, errors.Unavailable) and error.retry_after:
        response.headers["Retry-After"] = str(error.retry_after)
    return response


@bp.errorhandler(403)
def forbidden(_error) -> BaseResponse:
    t = words()
    return message(403, t["forbidden.title"], t["forbidden"])


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
        return login_page(400, words()["login_stale"])  # before the database: a forged form counts nothing
    result = accounts.login(
        state().connection(),
        request.form.get("username", "")[:64],
        request.form.get("password", "")[:256],
        g.now,
        ip=request.remote_addr or "",
        key=state().hash_key,
    )
    if result.user is None:
        t = words()
        if result.retry_after:
            minutes = -(-result.retry_after // 60)
            retry = t["login_retry"].format(minutes=minutes, s="s" * (minutes != 1))
            return login_page(429, f"{t['login_failed']} {retry}", {"Retry-After": str(result.retry_after)})
        return login_page(401, t["login_failed"])
    assert result.session is not None  # a login with a user always opens a session
    home = "association.certificate_list" if result.user.role == "association" else "audit_ui.scans"
    response = redirect(url_for(home))
    response.set_cookie(
        COOKIE, result.session, httponly=True, samesite="Strict", secure=request.is_secure, path="/audit"
    )
    response.delete_cookie(PRE_COOKIE, path="/audit/login")
    return response


@bp.post("/logout")
@login_required()  # any role: the association's staff sign out here too
def logout() -> BaseResponse:
    conn = state().connection()
    with db.transaction(conn):
        accounts.logout(conn, request.cookies[COOKIE])
    response = redirect(url_for("audit_ui.login"))
    response.delete_cookie(COOKIE, path="/audit")
    return response


FILTERS = ("enterprise", "batch", "code", "reason", "channel", "since", "until", "country", "region")


@bp.get("/")
@login_required(*accounts.AUDIT_READERS)
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
@login_required(*accounts.AUDIT_READERS)
def export() -> BaseResponse:
    return audit_reads.csv_response(g.user, audit.scan_filter(request.args))


@bp.get("/batches")
@login_required(*accounts.AUDIT_READERS)
def batches() -> BaseResponse:
    return render("audit/batches.html", batches=audit.list_batches(state().connection(), g.user))


def bar_chart(points: list[tuple[str, int]], label: str = "", width: int = 640, height: int = 160) -> str:
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
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">'
        f'<text x="0" y="10">max {top}</text>{bars}{labels}</svg>'
    )


def stacked_bars(
    days: list[str], series: list[tuple[str, str, list[int]]], label: str, width: int = 640, height: int = 180
) -> str:
    """A server-side SVG chart of stacked bars: one bar a day, one (name, css class, values) a layer."""
    if not days:
        return ""
    totals = [sum(values[i] for _, _, values in series) for i in range(len(days))]
    top = max(totals) or 1
    bar = width / len(days)
    scale = (height - 30) / top
    rects = []
    for i, day in enumerate(days):
        y = height - 20.0
        for name, css, values in series:
            if values[i]:
                h = values[i] * scale
                y -= h
                rects.append(
                    f'<rect class="{css}" x="{i * bar:.1f}" y="{y:.1f}" width="{max(bar - 1, 1):.1f}" height="{h:.1f}">'
                    f"<title>{escape(day)} {escape(name)}: {values[i]}</title></rect>"
                )
    labels = (
        f'<text x="0" y="{height - 4}">{escape(days[0])}</text>'
        f'<text x="{width}" y="{height - 4}" text-anchor="end">{escape(days[-1])}</text>'
    )
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">'
        f'<text x="0" y="10">max {top}</text>{"".join(rects)}{labels}</svg>'
    )


@bp.route("/batches/<batch>", methods=["GET", "POST"])
@login_required(*accounts.AUDIT_READERS)
def batch(batch: str) -> BaseResponse:
    batch_id = audit.batch_id_of(batch)
    conn = state().connection()
    found = audit.visible_batch(conn, g.user, batch_id)
    if request.method == "POST":
        if g.user.role != "admin":
            abort(403)
        reason = audit.parse_text("reason", request.form.get("reason", ""), audit.RECALL_REASON_MAX)
        if not confirmed():
            t, count = words(), found["count"]
            return confirm_page(
                t["confirm.recall.title"].format(batch=batch_id),
                t["confirm.recall.effect"].format(
                    count=f"{count:,}",
                    s="s" * (count != 1),
                    batch=batch_id,
                    enterprise=found["enterprise"],
                    product=found["product"],
                ),
                t["confirm.recall.button"].format(batch=batch_id),
                {"reason": reason},
                url_for(".batch", batch=batch_id),
                t["confirm.recall.note"].format(reason=reason or "—"),
            )
        try:
            audit.recall(conn, batch_id, reason, f"ui:{g.user.username}", g.now)
        except errors.VerifierError as exc:
            return message(400, words()["recall_failed"], exc.message)
        return redirect(url_for(".batch", batch=batch_id))
    with audit_reads.reads():
        stats = audit.batch_statistics(conn, batch_id)
    return render(
        "audit/batch.html",
        batch=found,
        chart=bar_chart(stats.per_day, words()["scans_per_day"]),
        mix=stats.verdicts,
        top=[(f"{s:016d}", codes.human_code(s), c, n) for s, c, n in stats.top_codes],
    )


@bp.route("/codes/<code>", methods=["GET", "POST"])
@login_required(*accounts.AUDIT_READERS)
def code(code: str) -> BaseResponse:
    serial = audit.serial_of(code)
    conn = state().connection()
    if request.method == "POST":
        audit.visible_code(conn, g.user, serial)
        if g.user.role != "admin":
            abort(403)
        note = audit.parse_text("note", request.form.get("note", ""), NOTE_MAX)
        if not confirmed():
            t, human = words(), codes.human_code(serial)
            return confirm_page(
                t["confirm.report.title"].format(code=human),
                t["confirm.report.effect"].format(code=human),
                t["confirm.report.button"],
                {"note": note},
                url_for(".code", code=f"{serial:016d}"),
                t["confirm.report.note"].format(note=note or "—"),
            )
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
@login_required(*accounts.AUDIT_READERS)
def anomaly_list() -> BaseResponse:
    """The anomalies of the last `days`, of one `rule` and seen in one `province` if asked (the
    map's diversion figures link here), each with a link to its case or to open one."""
    days = audit.int_arg(request.args, "days", 1, audit.DAYS_MAX) or 30
    rule = request.args.get("rule") or None
    if rule is not None and rule not in anomalies.RULES:
        raise audit.BadFilter(f"rule is one of {', '.join(anomalies.RULES)}")
    province = None
    if request.args.get("province"):
        try:
            province = regions.province(request.args["province"]).code
        except (KeyError, ValueError):
            raise audit.BadFilter("province is a GB/T 2260 code, e.g. 440000") from None
    conn = state().connection()
    with audit_reads.heavy_reads():
        _, found = audit.anomalies_for(conn, g.user, days, g.now)
    found = [
        a for a in found if (rule is None or a.rule == rule) and (province is None or anomalies.seen_in(a, province))
    ]
    return render(
        "audit/anomalies.html",
        anomalies=found,
        rules=anomalies.RULES,
        days=days,
        rule=rule,
        province=province and regions.display(province, lang()),
        opened=cases.cases_by_anomaly(conn, g.user),
    )


TREND_DAYS_MAX = 366
METRICS = ("scans", "counterfeit", "diversions")


def _days() -> int:
    return audit.int_arg(request.args, "days", 1, TREND_DAYS_MAX) or 30


@bp.get("/map")
@login_required(*accounts.AUDIT_READERS)
def province_map() -> BaseResponse:
    """Scans, counterfeit scans and diversion anomalies per province: a choropleth and its table."""
    days = _days()
    metric = request.args.get("metric") or "scans"
    if metric not in METRICS:
        raise audit.BadFilter(f"metric is one of {', '.join(METRICS)}")
    since = anomalies.since_days(days, g.now)
    with audit_reads.heavy_reads():  # the diversion rule's queries
        figures = trends.province_figures(state().connection(), g.user, since)
    language, t = lang(), words()
    names = {f.province.code: regions.display(f.province.code, language) for f in figures.provinces}
    titles = {
        f.province.code: f"{names[f.province.code]}: {t['metric.scans']} {f.scans}, "
        f"{t['metric.counterfeit']} {f.counterfeit}, {t['metric.diversions']} {f.diversions}"
        for f in figures.provinces
    }
    svg = chinamap.render(
        {f.province.code: getattr(f, metric) for f in figures.provinces},
        titles,
        names,
        label=t["map_label"].format(metric=t[f"metric.{metric}"]),
        legend_title=t[f"metric.{metric}"],
    )
    return render(
        "audit/map.html",
        svg=svg,
        figures=figures,
        names=names,
        metric=metric,
        metrics=METRICS,
        days=days,
        map_source=chinamap.outline().attribution,
    )


@bp.get("/trends")
@login_required(*accounts.AUDIT_READERS)
def trend_charts() -> BaseResponse:
    """Scans per day (China Standard Time) by verdict class and by enterprise: charts and tables."""
    days = _days()
    since = anomalies.since_days(days, g.now)
    with audit_reads.reads():
        found = trends.daily(state().connection(), g.user, since, g.now)
    language, t = lang(), words()
    labels = [audit_i18n.format_day(d, language) for d in found.days]
    verdict_series = [(t[f"class.{c}"], f"v-{c}", found.verdicts[c]) for c in trends.VERDICT_CLASSES]

    def enterprise_name(name: str) -> str:
        return {trends.NO_ENTERPRISE: t["no_enterprise"], trends.OTHERS: t["others"]}.get(name, name)

    enterprise_series = [
        (enterprise_name(name), f"e{i}", values) for i, (name, values) in enumerate(found.enterprises.items())
    ]
    return render(
        "audit/trends.html",
        days=days,
        labels=labels,
        verdict_series=verdict_series,
        enterprise_series=enterprise_series,
        verdict_chart=stacked_bars(labels, verdict_series, t["by_verdict"]),
        enterprise_chart=stacked_bars(labels, enterprise_series, t["by_enterprise"]),
    )


@bp.route("/keys", methods=["GET", "POST"])
@login_required("admin")
def key_list() -> BaseResponse:
    st = state()
    folder = st.keys_source.parent
    if st.keys_source.name != keys.KEYRING_FILE:
        t = words()
        return message(409, t["jwks.title"], t["jwks"])
    if request.method == "POST" and not confirmed():
        kid = request.form.get("kid", "")
        record = next((r for r in keys.read_keyring(folder) if r.kid == kid and r.status != "revoked"), None)
        t = words()
        if record is None:
            return message(400, t["revoke_failed"], t["revoke.none"])
        with audit_reads.reads():
            signed = audit.codes_signed_by(st.connection(), record.kid)
        return confirm_page(
            t["confirm.revoke.title"].format(kid=record.kid, name=record.name),
            t["confirm.revoke.effect"].format(count=f"{signed:,}", s="s" * (signed != 1), kid=record.kid),
            t["confirm.revoke.button"].format(kid=record.kid),
            {"kid": record.kid},
            url_for(".key_list"),
            t["confirm.revoke.note"],
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
            return message(400, words()["revoke_failed"], str(exc))
        return redirect(url_for(".key_list"))
    return render("audit/keys.html", keys=keys.read_keyring(folder))


@bp.route("/<path:rest>", methods=["GET", "POST"])
def not_found(rest: str) -> BaseResponse:
    """Anything else under /audit/ (e.g. a code with a slash): not a consumer lookup, not a page."""
    t = words()
    return message(404, t["not_found.title"], t["not_found"])
