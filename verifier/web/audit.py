"""The audit API for inspectors, enterprises and admins (bearer tokens from `verifier users token`).

Object-level authorisation on every route: an enterprise account sees its own enterprise's
batches and their scans only, and another enterprise's batch is "not found", not "forbidden".
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import io
import os
import re
import sqlite3
import unicodedata
from collections.abc import Iterator

from flask import Blueprint, Response, current_app, g, jsonify, request

from .. import accounts, anomalies, auditlog, budget, codes, csvcells, lookup, store
from .errors import api_error
from .state import state

bp = Blueprint("audit", __name__, url_prefix="/api/v1/audit")

PAGE_MAX = 500
INT64_MAX = 2**63 - 1  # SQLite's INTEGER: a larger number is no id of anything
DAYS_MAX = 3650
CSV_CHUNK = 2000
TEXT_CSV_COLUMNS = ("serial", "ip_hash", "session_hash")  # digit (and hex) strings spreadsheets would mangle
PERSONAL_COLUMNS = ("ip_prefix", "ip_hash", "session_hash", "user_agent")
SCAN_COLUMNS = (
    "id",
    "at",
    "channel",
    "reason",
    "detail",
    "serial",
    "batch_id",
    "kid",
    "counted",
    "checks",
    "pin",
    "country",
    "region",
    "city",
) + PERSONAL_COLUMNS


def authenticated(*roles: str):
    """Require a bearer token (or an audit UI session) of one of `roles` (any role if none)."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            user = current_user()
            if user is None:
                return api_error(
                    "unauthorized",
                    "send Authorization: Bearer <token>",
                    401,
                    {"WWW-Authenticate": 'Bearer realm="verifier-audit"'},
                )
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
    """A parameter that is not what the route accepts; its message says what is."""


class Busy(Exception):
    """Every slot for heavy audit requests is taken."""


_TIME_RE = re.compile(r"\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d{1,6})?)?)?(Z|[+-]\d\d:\d\d)?", re.ASCII)
_DIGITS_RE = re.compile(r"[0-9]+", re.ASCII)
_COUNTRY_RE = re.compile(r"[A-Z]{2}", re.ASCII)
TEXT_MAX = {"enterprise": 200, "region": 64}


def parse_int(name: str, value: str, low: int = 0, high: int = INT64_MAX) -> int:
    """`value` as a whole number from `low` to `high`: ASCII digits only (not ², not full-width ９)."""
    if not _DIGITS_RE.fullmatch(value) or len(value) > 19 or not low <= int(value) <= high:
        raise BadFilter(f"{name} must be a whole number from {low} to {high}")
    return int(value)


def parse_time(name: str, value: str) -> str:
    """An ISO date or time (China Standard Time unless a zone is given) as UTC text; BadFilter if no such time."""
    message = f"{name} is an ISO date or time, e.g. 2026-11-01 or 2026-11-01T08:00:00+08:00"
    if not _TIME_RE.fullmatch(value):
        raise BadFilter(message)
    try:
        return _utc(value)
    except (ValueError, OverflowError):  # 2026-02-30, 25:00, an offset of 99 hours, the year 1 in UTC+8
        raise BadFilter(f"{name}: {value} is not a real date or time; {message}") from None


def parse_text(name: str, value: str, max_length: int) -> str:
    """Free text of a filter: printable, at most `max_length` characters."""
    if len(value) > max_length or any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in value):
        raise BadFilter(f"{name} is text of at most {max_length} printable characters")
    return value


def _time(name: str) -> str | None:
    value = request.args.get(name)
    return parse_time(name, value) if value else None


def _int(name: str, low: int = 0, high: int = INT64_MAX) -> int | None:
    value = request.args.get(name)
    if value in (None, ""):
        return None
    return parse_int(name, value, low, high)


def batch_id_of(text: str) -> int:
    """A batch id from a URL path."""
    return parse_int("a batch id", text, 1)


def scan_filters(user: accounts.User) -> tuple[str, list]:
    """The WHERE clause of the scan filters in the request, restricted to what `user` may see."""
    where, params = ["1 = 1"], []
    if not user.sees_everything():
        where.append("s.batch_id IN (SELECT id FROM batches WHERE enterprise_id = ?)")
        params.append(user.enterprise_id)
    if enterprise := request.args.get("enterprise"):
        parse_text("enterprise", enterprise, TEXT_MAX["enterprise"])
        where.append(
            "s.batch_id IN (SELECT b.id FROM batches b JOIN enterprises e ON e.id = b.enterprise_id WHERE e.name = ?)"
        )
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
            if name == "country" and not _COUNTRY_RE.fullmatch(value):
                raise BadFilter("country is a two-letter ISO 3166 code in capitals, e.g. CN")
            if name == "region":
                parse_text("region", value, TEXT_MAX["region"])
            where.append(f"s.{name} = ?")
            params.append(value)
            if name == "reason" and value not in ("genuine", "genuine-repeat"):
                where.append("s.reason NOT IN ('genuine', 'genuine-repeat')")  # lets SQLite use scans_reason
    if since := _time("since"):  # times become id bounds: ids grow with time, and id ranges are cheap
        where.append(
            "s.id >= coalesce((SELECT id FROM scans INDEXED BY scans_at WHERE at >= ? ORDER BY at LIMIT 1), 1 << 62)"
        )
        params.append(since)
    if until := _time("until"):
        where.append(
            "s.id < coalesce((SELECT id FROM scans INDEXED BY scans_at WHERE at >= ? ORDER BY at LIMIT 1), 1 << 62)"
        )
        params.append(until)
    return " AND ".join(where), params


def serial_of(code: str) -> int:
    """The serial of a printed code (17 digits, check digit verified) or of a 16-digit serial (ASCII digits)."""
    digits = re.sub(r"[ -]", "", code) if len(code) <= 40 else ""
    try:
        if not _DIGITS_RE.fullmatch(digits):
            raise codes.InvalidCode("malformed", "not ASCII digits")
        if len(digits) == 17:
            return codes.parse_human_code(digits)
        if len(digits) == codes.SERIAL_DIGITS and digits.isdigit():
            return int(digits)
    except codes.InvalidCode:
        pass
    raise BadFilter("a code is a printed code (17 digits) or a serial (16 digits)")


def _utc(text: str) -> str:
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


TOO_BROAD = (
    "this needs more work than an audit request may do: narrow the time range (days, since/until) "
    "or add a batch or code filter"
)
BUSY = "another heavy audit request (anomalies or an export) is running; retry in a few seconds"


@bp.errorhandler(budget.OverBudget)
def over_budget(_error: budget.OverBudget) -> Response:
    return api_error("too-broad", TOO_BROAD, 400)


@bp.errorhandler(Busy)
def busy(_error: Busy) -> Response:
    return api_error("busy", BUSY, 503, {"Retry-After": "5"})


# --- limits: audit reads must never starve the lookup ------------------------------------


def _budget() -> tuple[int | None, float | None]:
    cfg = current_app.config
    steps, seconds = cfg.get("AUDIT_BUDGET", 100_000_000), cfg.get("AUDIT_SECONDS", 5.0)
    return (int(steps) if steps else None), (float(seconds) if seconds else None)


@contextlib.contextmanager
def limited_reads(conn: sqlite3.Connection | None = None) -> Iterator[budget.Meter]:
    """The block's statements on this process's connection (or `conn`) within the audit budget."""
    with budget.limited(conn or state().connection(), *_budget()) as meter:
        yield meter


def acquire_heavy_slot() -> int:
    """A file lock, one of AUDIT_HEAVY_SLOTS shared by every worker; Busy if all are taken.

    With sync workers, a slot is a worker: one slot on a two-worker server keeps one worker for lookups.
    """
    for slot in range(max(1, int(current_app.config.get("AUDIT_HEAVY_SLOTS", 1)))):
        fd = os.open(f"{state().database}-audit{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return fd
    raise Busy(BUSY)


@contextlib.contextmanager
def heavy_reads() -> Iterator[budget.Meter]:
    """A heavy slot and the audit budget for the block."""
    fd = acquire_heavy_slot()
    try:
        with limited_reads() as meter:
            yield meter
    finally:
        os.close(fd)  # releases the lock


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
    with limited_reads():
        rows = (
            state()
            .connection()
            .execute(
                f"SELECT {', '.join('s.' + c for c in columns)} FROM scans s WHERE {where} ORDER BY s.id DESC LIMIT ?",
                [*params, limit + 1],
            )
            .fetchall()
        )
    scans = [dict(zip(columns, row)) for row in rows[:limit]]
    return _json({"ok": True, "scans": scans, "next": scans[-1]["id"] if len(rows) > limit else None})


@bp.get("/scans.csv")
@authenticated()
def export_scans() -> Response:
    return scans_csv(g.user)


def scans_csv(user: accounts.User) -> Response:
    """All matching scans as CSV (docs/audit.md: cell rules), streamed from a dedicated read connection.

    Parameters are checked and the first rows read before the answer starts: a bad filter or a query
    over budget is a proper error, not a broken stream. Later chunks get the budget each.
    """
    where, params = scan_filters(user)
    columns = _columns(user)
    fd = acquire_heavy_slot()
    conn = None
    try:
        conn = sqlite3.connect(f"file:{state().database}?mode=ro", uri=True)
        with limited_reads(conn):
            cursor = conn.execute(
                f"SELECT {', '.join('s.' + c for c in columns)} FROM scans s WHERE {where} ORDER BY s.id", params
            )
            first = cursor.fetchmany(CSV_CHUNK)
    except BaseException:
        if conn is not None:
            conn.close()
        os.close(fd)
        raise
    response = Response(_Export(conn, fd, cursor, first, columns, _budget()), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="scans.csv"'
    return response


class _Export:
    """The CSV body: an iterable that the WSGI server closes, which frees the connection and the slot."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        fd: int,
        cursor: sqlite3.Cursor,
        first: list[tuple],
        columns: tuple[str, ...],
        limits: tuple[int | None, float | None],
    ):
        self.conn, self.fd, self.cursor, self.first, self.columns, self.limits = (
            conn,
            fd,
            cursor,
            first,
            columns,
            limits,
        )
        self.serial = columns.index("serial")
        self.text = frozenset(i for i, c in enumerate(columns) if c in TEXT_CSV_COLUMNS)

    def __iter__(self) -> Iterator[str]:
        buffer = io.StringIO()
        writer = csvcells.writer(buffer)
        writer.writerow(self.columns)
        chunk = self.first
        try:
            with budget.limited(self.conn, *self.limits) as meter:
                while chunk:
                    for row in chunk:
                        cells = list(row)
                        if cells[self.serial] is not None:
                            cells[self.serial] = f"{cells[self.serial]:016d}"  # leading zeros are part of a serial
                        writer.writerow(cells, text_columns=self.text)
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
                    meter.restart()
                    chunk = self.cursor.fetchmany(CSV_CHUNK)
            yield buffer.getvalue()
        finally:
            self.close()  # over budget mid-stream: the connection is cut, the client sees a truncated body

    def close(self) -> None:
        if self.fd >= 0:
            self.conn.close()
            os.close(self.fd)
            self.fd = -1


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


@bp.get("/batches/<batch>")
@authenticated()
def batch_dashboard(batch: str) -> Response:
    """A batch with its scans per day, verdict mix and most suspicious codes."""
    batch_id = batch_id_of(batch)
    found = _batch_for(g.user, batch_id)
    if found is None:
        return api_error("not-found", f"no batch {batch_id}", 404)
    with limited_reads():
        stats = batch_stats(batch_id)
    batch = found
    return _json(
        {
            "ok": True,
            "batch": _public_batch(batch),
            "scans_per_day": [{"day": d, "scans": n} for d, n in stats["per_day"]],
            "verdicts": dict(stats["verdicts"]),
            "top_codes": [
                {"serial": f"{s:016d}", "code": codes.human_code(s), "checks": c, "scans": n}
                for s, c, n in stats["top_codes"]
            ],
        }
    )


def batch_stats(batch_id: int) -> dict[str, list[tuple]]:
    """A batch's scans per day, verdict mix and most checked codes (served by scans(batch_id, id))."""
    conn = state().connection()
    return {
        "per_day": conn.execute(
            "SELECT substr(at, 1, 10), count(*) FROM scans WHERE batch_id = ? GROUP BY 1 ORDER BY 1", (batch_id,)
        ).fetchall(),
        "verdicts": conn.execute(
            "SELECT reason, count(*) FROM scans WHERE batch_id = ? GROUP BY 1 ORDER BY 2 DESC", (batch_id,)
        ).fetchall(),
        "top_codes": conn.execute(
            """SELECT serial, max(checks), count(*) FROM scans WHERE batch_id = ? AND serial IS NOT NULL
               GROUP BY serial ORDER BY max(checks) DESC, count(*) DESC LIMIT 10""",
            (batch_id,),
        ).fetchall(),
    }


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
    with limited_reads():
        scans = [
            dict(zip(columns, r))
            for r in conn.execute(
                f"SELECT {', '.join(columns)} FROM scans WHERE serial = ? ORDER BY id LIMIT 1000", (serial,)
            )
        ]
    state_row = conn.execute(
        "SELECT checks, first_checked_at, pin_verified_at FROM code_checks WHERE serial = ?", (serial,)
    ).fetchone()
    return _json(
        {
            "ok": True,
            "serial": f"{serial:016d}",
            "code": codes.human_code(serial),
            "batch_id": row[0],
            "checks": state_row[0] if state_row else 0,
            "first_checked_at": state_row[1] if state_row else None,
            "scans": scans,
        }
    )


@bp.get("/anomalies")
@authenticated()
def list_anomalies() -> Response:
    days = _int("days", 1, DAYS_MAX) or 30
    with heavy_reads():
        since, found = anomalies_for(g.user, days, g.now)
    return _json({"ok": True, "since": since, "anomalies": [a.as_dict() for a in found]})


def anomalies_for(user: accounts.User, days: int, now: dt.datetime) -> tuple[str, list[anomalies.Anomaly]]:
    """The anomalies of the `days` before `now` that `user` may see: an enterprise, its own codes and batches."""
    since = anomalies.since_days(days, now)
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


RECALL_REASON_MAX = 500


@bp.post("/batches/<batch>/recall")
@authenticated("admin")
def recall(batch: str) -> Response:
    batch_id = batch_id_of(batch)
    data = request.get_json(silent=True) or {}
    reason = data.get("reason") if isinstance(data, dict) else None
    if not isinstance(reason, str) or not reason.strip():
        return api_error("missing-parameter", "'reason' is required", 400)
    parse_text("reason", reason, RECALL_REASON_MAX)
    try:
        batch = store.recall_batch(store_db(), batch_id, reason, actor=f"api:{g.user.username}")
    except store.StoreError as exc:
        status = 404 if "no batch" in str(exc) else 409
        return api_error("not-found" if status == 404 else "conflict", str(exc), status)
    return _json({"ok": True, "batch": _public_batch(batch)})


def _json(data: dict) -> Response:
    return jsonify(data)


@bp.route("/<path:rest>", methods=["GET", "POST"])
def not_found(rest: str) -> Response:
    """Anything else under /api/v1/audit/: the API's error shape, not the consumer's page."""
    return api_error("not-found", "no such audit API route", 404)
