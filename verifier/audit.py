"""The audit service: scan lists, code histories, batch statistics, anomalies, recalls, reported
codes, the retention purge and log checkpoints, for the audit API, the audit UI and the CLI.

Explicit arguments only: a connection, a validated `ScanFilter`, the `accounts.User` asking, `now`.
Object-level authorisation is here: an enterprise account sees its own enterprise's batches and
their scans only, and another enterprise's batch is "not found", not "forbidden". Parameters come
in as text and are checked by the `parse_*` functions, which raise `BadFilter` (a 400).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import accounts, anomalies, auditlog, budget, clock, codes, csvcells, db, errors, feedback, issue, lookup
from .repos import log, projections, registry, scans
from .repos.scans import ScanFilter

__all__ = ["ScanFilter"]  # and everything below

PAGE_MAX = 500
INT64_MAX = 2**63 - 1  # SQLite's INTEGER: a larger number is no id of anything
DAYS_MAX = 3650
CSV_CHUNK = 2000
HEAVY_RETRY_SECONDS = 5
RECALL_REASON_MAX = 500
NOTE_MAX = 500
TEXT_MAX = {"enterprise": 200, "region": 64}
TEXT_CSV_COLUMNS = ("serial", "ip_hash", "session_hash")  # digit (and hex) strings spreadsheets would mangle
PERSONAL_COLUMNS = ("ip_prefix", "ip_hash", "session_hash", "user_agent")
SCAN_COLUMNS = scans.SCAN_FIELDS + ("region", "city") + PERSONAL_COLUMNS  # what the audit shows

TOO_BROAD = (
    "this needs more work than an audit request may do: narrow the time range (days, since/until) "
    "or add a batch or code filter"
)
DEFAULT_THRESHOLDS = anomalies.Thresholds()
BUSY = "another heavy audit request (anomalies or an export) is running; retry in a few seconds"


class BadFilter(errors.InvalidInput):
    """A parameter that is not what the operation accepts; its message says what is."""

    api_code = "bad-filter"


class TooBroad(errors.InvalidInput):
    """A read that needs more work than its budget allows."""

    api_code = "too-broad"


class Busy(errors.Unavailable):
    """Every slot for heavy audit reads (anomalies, exports) is taken."""


# --- parameters ----------------------------------------------------------------------------

_TIME_RE = re.compile(r"\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d{1,6})?)?)?(Z|[+-]\d\d:\d\d)?", re.ASCII)
_DIGITS_RE = re.compile(r"[0-9]+", re.ASCII)
_COUNTRY_RE = re.compile(r"[A-Z]{2}", re.ASCII)


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
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "T"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=clock.CHINA)  # inspectors think in China Standard Time
        return clock.utc_text(moment)
    except (ValueError, OverflowError):  # 2026-02-30, 25:00, an offset of 99 hours, the year 1 in UTC+8
        raise BadFilter(f"{name}: {value} is not a real date or time; {message}") from None


def parse_text(name: str, value: str, max_length: int) -> str:
    """Free text of a filter or form: printable, at most `max_length` characters."""
    if len(value) > max_length or any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in value):
        raise BadFilter(f"{name} is text of at most {max_length} printable characters")
    return value


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


def batch_id_of(text: str) -> int:
    """A batch id from a URL path."""
    return parse_int("a batch id", text, 1)


def int_arg(args: Mapping[str, str], name: str, low: int = 0, high: int = INT64_MAX) -> int | None:
    """An optional whole-number parameter (absent or empty: None)."""
    value = args.get(name)
    if value in (None, ""):
        return None
    return parse_int(name, str(value), low, high)


def scan_filter(args: Mapping[str, str]) -> ScanFilter:
    """The scan filters of a request's parameters (enterprise, batch, code, reason, channel,
    country, region, since, until), each checked; BadFilter names the first that is wrong."""
    if enterprise := args.get("enterprise") or None:
        parse_text("enterprise", enterprise, TEXT_MAX["enterprise"])
    batch = int_arg(args, "batch", 1)
    serial = serial_of(code) if (code := args.get("code")) else None
    values: dict[str, str | None] = {}
    for name in ("reason", "channel", "country", "region"):
        value = args.get(name) or None
        if value is not None:
            if name == "reason" and value not in lookup.REASONS:
                raise BadFilter(f"reason is one of {', '.join(lookup.REASONS)}")
            if name == "channel" and value not in lookup.CHANNELS:
                raise BadFilter(f"channel is one of {', '.join(lookup.CHANNELS)}")
            if name == "country" and not _COUNTRY_RE.fullmatch(value):
                raise BadFilter("country is a two-letter ISO 3166 code in capitals, e.g. CN")
            if name == "region":
                parse_text("region", value, TEXT_MAX["region"])
        values[name] = value
    since = parse_time("since", v) if (v := args.get("since")) else None
    until = parse_time("until", v) if (v := args.get("until")) else None
    return ScanFilter(enterprise, batch, serial, since=since, until=until, **values)


# --- limits: audit reads must never starve the lookup --------------------------------------


@dataclass(frozen=True)
class Limits:
    """What one audit read may use: SQLite instructions and seconds (None: unlimited)."""

    steps: int | None = None
    seconds: float | None = None


@contextlib.contextmanager
def reads(conn: db.Conn, limits: Limits) -> Iterator[budget.Meter]:
    """The block's statements on `conn` within `limits`; TooBroad if they need more."""
    try:
        with budget.limited(conn, limits.steps, limits.seconds) as meter:
            yield meter
    except budget.OverBudget:
        raise TooBroad(TOO_BROAD) from None


def heavy_slot(database: Path | str, slots: int) -> db.NamedLock:
    """One of `slots` locks shared by every process on `database` (every node, on PostgreSQL);
    Busy if all are taken. `release()` gives the slot back.

    With sync workers, a slot is a worker: one slot on a two-worker server keeps one worker for
    lookups.
    """
    for slot in range(max(1, slots)):
        lock = db.acquire_lock_at(database, f"audit{slot}")
        if lock is not None:
            return lock
    raise Busy(BUSY, retry_after=HEAVY_RETRY_SECONDS)


@contextlib.contextmanager
def heavy_reads(conn: db.Conn, database: Path | str, slots: int, limits: Limits) -> Iterator[budget.Meter]:
    """A heavy slot and the read budget for the block."""
    slot = heavy_slot(database, slots)
    try:
        with reads(conn, limits) as meter:
            yield meter
    finally:
        slot.release()


# --- who sees what -------------------------------------------------------------------------


def columns_for(user: accounts.User) -> tuple[str, ...]:
    """The scan columns `user` may see: an enterprise sees no personal fields."""
    return SCAN_COLUMNS if user.sees_everything() else tuple(c for c in SCAN_COLUMNS if c not in PERSONAL_COLUMNS)


def visible_batch(conn: db.Conn, user: accounts.User, batch_id: int) -> dict[str, Any]:
    """A registered batch `user` may see; NotFound otherwise (another enterprise's batch included)."""
    try:
        batch = registry.get_batch(conn, batch_id)
    except errors.NotFound:
        raise errors.NotFound(f"no batch {batch_id}") from None
    if not user.sees_everything() and batch["enterprise_id"] != user.enterprise_id:
        raise errors.NotFound(f"no batch {batch_id}")  # another enterprise's batch does not exist for this user
    return batch


def list_batches(conn: db.Conn, user: accounts.User) -> list[dict[str, Any]]:
    """The registered batches `user` may see, newest first."""
    batches = registry.list_batches(conn)
    if not user.sees_everything():
        batches = [b for b in batches if b["enterprise_id"] == user.enterprise_id]
    return batches


def public_batch(batch: Mapping[str, Any]) -> dict[str, Any]:
    """A batch without the fields about the issuing host."""
    return {k: v for k, v in batch.items() if k not in ("issuing_pid", "output_dir")}


def visible_code(conn: db.Conn, user: accounts.User, serial: int) -> int:
    """The batch id of a code `user` may see; NotFound otherwise."""
    batch = registry.batch_for_serial(conn, serial)
    if batch is None:
        raise errors.NotFound("no such code")
    try:
        visible_batch(conn, user, batch["id"])
    except errors.NotFound:
        raise errors.NotFound("no such code") from None
    return int(batch["id"])


# --- reads ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanPage:
    scans: list[dict[str, Any]]
    next: int | None  # pass as `after` for the next page; None on the last one


def list_scans(conn: db.Conn, flt: ScanFilter, user: accounts.User, after: int | None, limit: int) -> ScanPage:
    """Matching scans `user` may see, newest first, keyset-paginated by id."""
    columns = columns_for(user)
    rows = scans.newest_first(
        conn,
        columns,
        flt,
        everything=user.sees_everything(),
        enterprise_id=user.enterprise_id,
        after=after,
        limit=limit + 1,
    )
    items = [dict(zip(columns, row)) for row in rows[:limit]]
    return ScanPage(items, items[-1]["id"] if len(rows) > limit else None)


@dataclass(frozen=True)
class CodeHistory:
    serial: int
    batch_id: int
    checks: int
    first_checked_at: str | None
    scans: list[dict[str, Any]] = field(default_factory=list)  # oldest first, at most repos.scans.HISTORY_MAX
    reported: tuple[str, str, str] | None = None  # (reported_at, reported_by, note)

    @property
    def human_code(self) -> str:
        return codes.human_code(self.serial)


def code_history(conn: db.Conn, user: accounts.User, serial: int) -> CodeHistory:
    """Every scan of one code `user` may see, with its check count; NotFound if it may not."""
    batch_id = visible_code(conn, user, serial)
    columns = columns_for(user)
    history = [dict(zip(columns, row)) for row in scans.code_history(conn, columns, serial)]
    state = scans.code_checks(conn, serial)
    return CodeHistory(
        serial,
        batch_id,
        state.checks if state else 0,
        state.first_checked_at if state else None,
        history,
        registry.code_report(conn, serial),
    )


def batch_statistics(conn: db.Conn, batch_id: int) -> scans.BatchStatistics:
    """A batch's scans per day, verdict mix (with the scans of codes that are not genuine claiming
    the batch) and most checked codes (check `visible_batch` first)."""
    return scans.batch_statistics(conn, batch_id)


def anomalies_for(
    conn: db.Conn,
    user: accounts.User,
    days: int,
    now: dt.datetime,
    thresholds: anomalies.Thresholds = DEFAULT_THRESHOLDS,
) -> tuple[str, list[anomalies.Anomaly]]:
    """The anomalies of the `days` before `now` that `user` may see: an enterprise, its own codes
    and batches, and the regional clusters of forged or unknown codes that claim its batches or its
    products' GTINs (a mark alone is nobody's); and the window's start."""
    since = anomalies.since_days(days, now)
    if user.sees_everything():
        return since, anomalies.find(conn, since, thresholds)
    # The lifecycle rules' queries read only the enterprise's codes (their LIMIT is spent on its own
    # codes; an account without an enterprise reads none); every anomaly is checked below as well.
    enterprise = user.enterprise_id if user.enterprise_id is not None else -1
    found = anomalies.find(conn, since, thresholds, enterprise_id=enterprise)
    own = {b["id"] for b in list_batches(conn, user)}

    def mine(a: anomalies.Anomaly) -> bool:
        if a.batch_id is not None:
            return a.batch_id in own
        if a.serial is not None:
            batch = registry.batch_for_serial(conn, a.serial)
            return batch is not None and batch["id"] in own
        if a.rule == "counterfeit-cluster":  # its query read the enterprise's claimed scans only
            return bool(a.evidence) and scans.of_enterprise(conn, a.evidence, enterprise) == set(a.evidence)
        return False

    return since, [a for a in found if mine(a)]


class ScanExport:
    """Matching scans as CSV text chunks (docs/audit.md: cell rules), from a dedicated read-only
    connection. Iterate it once; `close()` (the WSGI server calls it) frees the connection and the
    heavy slot. The budget applies to each chunk; over it mid-stream, the iteration stops with
    budget.OverBudget (the client sees a truncated body)."""

    def __init__(
        self,
        conn: db.Conn,
        slot: db.NamedLock | None,
        cursor: db.Cursor,
        first: list[tuple[Any, ...]],
        columns: tuple[str, ...],
        limits: Limits,
    ):
        self.conn, self.slot, self.cursor, self.first, self.columns, self.limits = (
            conn,
            slot,
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
            with budget.limited(self.conn, self.limits.steps, self.limits.seconds) as meter:
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
            self.close()

    def close(self) -> None:
        if self.slot is not None:
            self.conn.close()
            self.slot.release()
            self.slot = None


def export_scans(database: Path | str, flt: ScanFilter, user: accounts.User, limits: Limits, slots: int) -> ScanExport:
    """All matching scans `user` may see, oldest first, as a CSV export holding a heavy slot.

    The first rows are read here: a query over budget is TooBroad before anything is sent.
    """
    columns = columns_for(user)
    slot = heavy_slot(database, slots)
    conn = None
    try:
        conn = db.connect_read_only(database)
        with reads(conn, limits):
            cursor = scans.oldest_first(
                conn, columns, flt, everything=user.sees_everything(), enterprise_id=user.enterprise_id, chunk=CSV_CHUNK
            )
            first = cursor.fetchmany(CSV_CHUNK)
    except BaseException:
        if conn is not None:
            conn.close()
        slot.release()
        raise
    return ScanExport(conn, slot, cursor, first, columns, limits)


# --- what an irreversible action will affect (the audit UI's confirmation pages) ---------------


def codes_signed_by(conn: db.Conn, kid: str) -> int:
    """How many issued codes key `kid` signed: the labels its revocation turns "not genuine"."""
    return sum(int(b["count"]) for b in registry.list_batches(conn) if b["kid"] == kid)


# --- writes: inside the caller's write transaction (db.transaction) unless said otherwise ----


def recall(conn: db.Conn, batch_id: int, reason: str, actor: str, now: dt.datetime) -> dict[str, Any]:
    """Recall a batch with a reason (logged; runs its own write transaction); the batch after it.

    InvalidInput without a reason, NotFound for no such batch, Conflict if it was recalled already
    (before or meanwhile, by another process): `issue.recall_batch`'s errors.
    """
    return issue.recall_batch(conn, batch_id, reason, now, actor)


def report_code(conn: db.Conn, serial: int, note: str, actor: str, now: dt.datetime) -> None:
    """Mark an issued code as reported counterfeit, and log it; NotFound if it was never issued."""
    if registry.batch_for_serial(conn, serial) is None:
        raise errors.NotFound(f"code {serial:016d} was never issued")
    note = note.strip()[:NOTE_MAX]
    first = registry.report_code(conn, serial, actor, note, now)
    body = {"serial": serial, "note": note, "first": first}  # first: this report is the one that stands
    auditlog.append(conn, "code.reported", body, clock.utc_text(now), actor)


@dataclass(frozen=True)
class Purged:
    cutoff: str  # UTC text: scans before it lost their personal fields
    scans: int


def purge(conn: db.Conn, days: int, now: dt.datetime, actor: str) -> Purged:
    """Erase the personal fields of scans older than `days` before `now`, and log it.

    The chain still verifies: log entries commit to a salted hash of these fields. The entry
    records the cutoff and the highest scan id the purge could erase (`through_id`): `audit verify`
    reports a scan erased that no logged purge covers.
    """
    cutoff = clock.utc_text(now - dt.timedelta(days=days))
    erased = scans.erase_personal(conn, cutoff)
    body = {"older_than": cutoff, "scans": erased, "through_id": projections.last_scan_id(conn)}
    body["reports"] = feedback.purge_reports(conn, cutoff)  # consumers' reports: details, contact, photo
    auditlog.append(conn, "audit.purged", body, clock.utc_text(now), actor)
    return Purged(cutoff, erased)


def retire(conn: db.Conn, below_id: int, now: dt.datetime, actor: str) -> int:
    """Record in the log that the scans below `below_id` are retired (PostgreSQL: their monthly
    partitions are then dropped or detached, docs/scale-out.md); how many scans that is. Their log
    entries stay in the chain, with every verdict field; `audit verify` stops expecting their rows.
    Inside the caller's write transaction."""
    if not db.is_postgres_conn(conn):
        raise errors.InvalidInput(
            "scans are retired with PostgreSQL's partitions; on SQLite scans stay (erase personal data with "
            "'verifier audit purge')"
        )
    if below_id < 1:
        raise errors.InvalidInput("--below-id must be a scan id, 1 or more")
    if log.pending_scans_below(conn, below_id):
        raise db.StoreConflict(f"scans below id {below_id} are not all chained yet: run 'verifier sequence --once'")
    count = scans.count_below(conn, below_id)
    auditlog.append(conn, log.RETIRED, {"below_id": below_id, "scans": count}, clock.utc_text(now), actor)
    return count
