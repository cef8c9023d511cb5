"""The audit API for inspectors, enterprises and admins (bearer tokens from `verifier users token`).

Object-level authorisation on every route: an enterprise account sees its own enterprise's
batches and their scans only, and another enterprise's batch is "not found", not "forbidden".
"""

from __future__ import annotations

import csv
import functools
import io
import re
import sqlite3

from flask import Blueprint, Response, g, jsonify, request, stream_with_context

from .. import accounts, anomalies, auditlog, codes, lookup, store
from . import state
from .api import api_error

bp = Blueprint("audit", __name__, url_prefix="/api/v1/audit")

PAGE_MAX = 500
PERSONAL_COLUMNS = ("ip_prefix", "ip_hash", "session_hash", "user_agent")
SCAN_COLUMNS = ("id", "at", "channel", "reason", "detail", "serial", "batch_id", "kid", "counted", "checks", "pin",
                "country", "region", "city") + PERSONAL_COLUMNS  # fmt: skip


def authenticated(*roles: str):
    """Require a bearer token (or an audit UI session) of one of `roles` (any role if none)."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            user = current_user()
            if user is None:
                return api_error("unauthorized", "send Authorization: Bearer <token>", 401,
                                 {"WWW-Authenticate": 'Bearer realm="verifier-audit"'})  # fmt: skip
            if roles and user.role not in roles:
                return api_error("forbidden", f"this needs the {' or '.join(roles)} role", 403)
            g.user = user
            return view(*args, **kwargs)

        return wrapper

    return decorate


def current_user() -> accounts.User | None:
    """The user of the request's bearer token."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return accounts.user_for_token(state().connection(), header[7:].strip())
    return None


# --- filters -----------------------------------------------------------------------------


class BadFilter(ValueError):
    pass


def _time(name: str) -> str | None:
    value = request.args.get(name)
    if not value:
        return None
    if not re.fullmatch(r"\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d+)?)?)?(Z|[+-]\d\d:\d\d)?", value):
        raise BadFilter(f"{name} is an ISO date or time, e.g. 2026-11-01 or 2026-11-01T08:00:00+08:00")
    return value


def _int(name: str, low: int = 0, high: int | None = None) -> int | None:
    value = request.args.get(name)
    if value in (None, ""):
        return None
    if not value.isdigit() or int(value) < low or (high is not None and int(value) > high):
        raise BadFilter(f"{name} must be a whole number" + (f" from {low} to {high}" if high else ""))
    return int(value)


def scan_filters(user: accounts.User) -> tuple[str, list]:
    """The WHERE clause of the scan filters in the request, restricted to what `user` may see."""
    where, params = ["1 = 1"], []
    if not user.sees_everything():
        where.append("s.batch_id IN (SELECT id FROM batches WHERE enterprise_id = ?)")
        params.append(user.enterprise_id)
    if enterprise := request.args.get("enterprise"):
        where.append("s.batch_id IN (SELECT b.id FROM batches b JOIN enterprises e ON e.id = b.enterprise_id WHERE e.name = ?)")
        params.append(enterprise)
    if (batch := _int("batch", 1)) is not None:
        where.append("s.batch_id = ?")
        params.append(batch)
    if code := request.args.get("code"):
        where.append("s.serial = ?")
        params.append(serial_of(code))
    for name in ("reason", "channel", "country", "region"):
        if value := request.args.get(name):
            if name == "reason" and value not in lookup.REASONS:
                raise BadFilter(f"reason is one of {', '.join(lookup.REASONS)}")
            if name == "channel" and value not in lookup.CHANNELS:
                raise BadFilter(f"channel is one of {', '.join(lookup.CHANNELS)}")
            where.append(f"s.{name} = ?")
            params.append(value)
    if since := _time("since"):  # times become id bounds: ids grow with time, and id ranges are cheap
        where.append("s.id >= coalesce((SELECT id FROM scans WHERE at >= ? ORDER BY at LIMIT 1), 1 << 62)")
        params.append(_utc(since))
    if until := _time("until"):
        where.append("s.id < coalesce((SELECT id FROM scans WHERE at >= ? ORDER BY at LIMIT 1), 1 << 62)")
        params.append(_utc(until))
    return " AND ".join(where), params


def serial_of(code: str) -> int:
    """The serial of a printed code (17 digits, check digit verified) or of a 16-digit serial."""
    digits = re.sub(r"[\s-]", "", code)
    try:
        if len(digits) == 17:
            return codes.parse_human_code(digits)
        if len(digits) == codes.SERIAL_DIGITS and digits.isdigit():
            return int(digits)
    except codes.InvalidCode:
        pass
    raise BadFilter("a code is a printed code (17 digits) or a serial (16 digits)")


def _utc(text: str) -> str:
    import datetime as dt

    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=lookup.CHINA)  # inspectors think in China Standard Time
    return auditlog.now_text(value)


def _visible(row: dict, user: accounts.User) -> dict:
    if not user.sees_everything():
        for column in PERSONAL_COLUMNS:
            row.pop(column, None)
    return row


def _columns(user: accounts.User) -> tuple[str, ...]:
    return SCAN_COLUMNS if user.sees_everything() else tuple(c for c in SCAN_COLUMNS if c not in PERSONAL_COLUMNS)


@bp.errorhandler(BadFilter)
def bad_filter(error: BadFilter) -> Response:
    return api_error("bad-filter", str(error), 400)


# --- routes ------------------------------------------------------------------------------


@bp.get("/scans")
@authenticated()
def list_scans() -> Response:
    """Newest first, keyset-paginated: pass the last `id` as `after` for the next page."""
    user = g.user
    where, params = scan_filters(user)
    limit = _int("limit", 1, PAGE_MAX) or 100
    if (after := _int("after", 1)) is not None:
        where += " AND s.id < ?"
        params.append(after)
    columns = _columns(user)
    rows = state().connection().execute(
        f"SELECT {', '.join('s.' + c for c in columns)} FROM scans s WHERE {where} ORDER BY s.id DESC LIMIT ?",
        [*params, limit + 1],
    ).fetchall()
    scans = [dict(zip(columns, row)) for row in rows[:limit]]
    return _json({"ok": True, "scans": scans, "next": scans[-1]["id"] if len(rows) > limit else None})


@bp.get("/scans.csv")
@authenticated()
def export_scans() -> Response:
    return scans_csv(g.user)


def scans_csv(user: accounts.User) -> Response:
    """All matching scans as CSV, streamed from a dedicated read connection."""
    where, params = scan_filters(user)
    columns = _columns(user)
    database = state().database

    def rows():
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(columns)
            cursor = conn.execute(f"SELECT {', '.join('s.' + c for c in columns)} FROM scans s WHERE {where} ORDER BY s.id",
                                  params)  # fmt: skip
            while chunk := cursor.fetchmany(2000):
                writer.writerows(chunk)
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
            yield buffer.getvalue()
        finally:
            conn.close()

    response = Response(stream_with_context(rows()), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="scans.csv"'
    return response


def _batch_for(user: accounts.User, batch_id: int) -> dict | None:
    try:
        batch = store.get_batch(store_db(), batch_id)
    except store.StoreError:
        return None
    if not user.sees_everything() and batch["enterprise_id"] != user.enterprise_id:
        return None  # another enterprise's batch does not exist for this user
    return batch


def store_db():
    import sqlite_utils

    return sqlite_utils.Database(state().connection())


@bp.get("/batches")
@authenticated()
def list_batches() -> Response:
    batches = store.list_batches(store_db())
    if not g.user.sees_everything():
        batches = [b for b in batches if b["enterprise_id"] == g.user.enterprise_id]
    return _json({"ok": True, "batches": [_public_batch(b) for b in batches]})


def _public_batch(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k not in ("issuing_pid", "output_dir")}


@bp.get("/batches/<int:batch_id>")
@authenticated()
def batch_dashboard(batch_id: int) -> Response:
    """A batch with its scans per day, verdict mix and most suspicious codes."""
    batch = _batch_for(g.user, batch_id)
    if batch is None:
        return api_error("not-found", f"no batch {batch_id}", 404)
    stats = batch_stats(batch_id)
    return _json({
        "ok": True, "batch": _public_batch(batch),
        "scans_per_day": [{"day": d, "scans": n} for d, n in stats["per_day"]],
        "verdicts": dict(stats["verdicts"]),
        "top_codes": [{"serial": f"{s:016d}", "code": codes.human_code(s), "checks": c, "scans": n}
                      for s, c, n in stats["top_codes"]],
    })  # fmt: skip


def batch_stats(batch_id: int) -> dict[str, list[tuple]]:
    """A batch's scans per day, verdict mix and most checked codes (served by scans(batch_id, id))."""
    conn = state().connection()
    return {
        "per_day": conn.execute("SELECT substr(at, 1, 10), count(*) FROM scans WHERE batch_id = ? GROUP BY 1 ORDER BY 1",
                                (batch_id,)).fetchall(),
        "verdicts": conn.execute("SELECT reason, count(*) FROM scans WHERE batch_id = ? GROUP BY 1 ORDER BY 2 DESC",
                                 (batch_id,)).fetchall(),
        "top_codes": conn.execute(
            """SELECT serial, max(checks), count(*) FROM scans WHERE batch_id = ? AND serial IS NOT NULL
               GROUP BY serial ORDER BY max(checks) DESC, count(*) DESC LIMIT 10""", (batch_id,)).fetchall(),
    }  # fmt: skip


@bp.get("/codes/<code>")
@authenticated()
def code_history(code: str) -> Response:
    """Every scan of one code, oldest first."""
    serial = serial_of(code)
    conn = state().connection()
    row = conn.execute("SELECT batch_id FROM codes WHERE serial = ?", (serial,)).fetchone()
    if row is None or _batch_for(g.user, row[0]) is None:
        return api_error("not-found", "no such code", 404)
    columns = _columns(g.user)
    scans = [dict(zip(columns, r)) for r in conn.execute(
        f"SELECT {', '.join(columns)} FROM scans WHERE serial = ? ORDER BY id LIMIT 1000", (serial,))]  # fmt: skip
    state_row = conn.execute("SELECT checks, first_checked_at, pin_verified_at FROM code_checks WHERE serial = ?",
                             (serial,)).fetchone()  # fmt: skip
    return _json({"ok": True, "serial": f"{serial:016d}", "code": codes.human_code(serial), "batch_id": row[0],
                  "checks": state_row[0] if state_row else 0, "first_checked_at": state_row[1] if state_row else None,
                  "scans": scans})  # fmt: skip


@bp.get("/anomalies")
@authenticated()
def list_anomalies() -> Response:

    days = _int("days", 1, 3650) or 30
    since, found = anomalies_for(g.user, days)
    return _json({"ok": True, "since": since, "anomalies": [a.as_dict() for a in found]})


def anomalies_for(user: accounts.User, days: int) -> tuple[str, list[anomalies.Anomaly]]:
    """The anomalies of the last `days` that `user` may see: an enterprise, its own codes and batches."""
    import datetime as dt

    since = auditlog.now_text(dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days))
    conn = state().connection()
    found = anomalies.find(conn, since)
    if user.sees_everything():
        return since, found
    own = {b["id"] for b in store.list_batches(store_db()) if b["enterprise_id"] == user.enterprise_id}

    def mine(a: anomalies.Anomaly) -> bool:
        if a.batch_id is not None:
            return a.batch_id in own
        if a.serial is not None:
            row = conn.execute("SELECT batch_id FROM codes WHERE serial = ?", (a.serial,)).fetchone()
            return bool(row) and row[0] in own
        return False  # regional clusters of forged codes are for inspectors

    return since, [a for a in found if mine(a)]


@bp.post("/batches/<int:batch_id>/recall")
@authenticated("admin")
def recall(batch_id: int) -> Response:
    data = request.get_json(silent=True) or {}
    reason = data.get("reason") if isinstance(data, dict) else None
    if not isinstance(reason, str) or not reason.strip():
        return api_error("missing-parameter", "'reason' is required", 400)
    try:
        batch = store.recall_batch(store_db(), batch_id, reason, actor=f"api:{g.user.username}")
    except store.StoreError as exc:
        status = 404 if "no batch" in str(exc) else 409
        return api_error("not-found" if status == 404 else "conflict", str(exc), status)
    return _json({"ok": True, "batch": _public_batch(batch)})


def _json(data: dict) -> Response:
    return jsonify(data)
