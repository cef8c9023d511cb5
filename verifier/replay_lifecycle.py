"""The lifecycle's part of `audit verify`'s replay: events, the codes each changed, each code's
state, dealers, batch releases, inspection reports and consumers' reports against their entries.

The events' rows must be what their entries recorded (fields, the SHA-256 of the event document
and of the serials it changed); each code's state must be what folding its events through the
rules of verifier/lifecycle.py makes, so a state no event could have produced is caught. Codes
and their histories are streamed in serial order: memory grows with the events, never the codes.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import db, lifecycle
from .lifecycle import CodeState, Facts, Refused
from .repos import lifecycle as repo

EVENT_FIELDS = (
    "event_id",
    "type",
    "action",
    "biz_step",
    "disposition",
    "event_time",
    "enterprise_id",
    "batch_id",
    "parent",
    "dealer_id",
    "region",
    "read_point",
    "biz_location",
    "reason",
    "codes",
)
DEALER_FIELDS = ("enterprise_id", "code", "name", "gln", "regions", "created_at", "created_by")
REPORT_FIELDS = ("serial", "enterprise_id", "verdict", "what", "region", "photo_sha256", "brand_may_contact")


KINDS = frozenset(
    {
        "code.event",
        "dealer.registered",
        "batch.released",
        "batch.document",
        "consumer.report",
        "consumer.report.answered",
    }
)


@dataclass
class Logged:
    """An entry as the replay keeps it."""

    seq: int
    at: str
    actor: str
    body: dict[str, Any]


@dataclass
class LifecycleLog:
    """What the entries say of each code's life, fed by the replay."""

    events: dict[int, Logged] = field(default_factory=dict)
    dealers: dict[int, Logged] = field(default_factory=dict)
    releases: dict[int, Logged] = field(default_factory=dict)
    documents: dict[str, Logged] = field(default_factory=dict)
    batch_reports: dict[int, Logged] = field(default_factory=dict)  # the last document attached to each batch
    reports: dict[int, Logged] = field(default_factory=dict)
    answers: dict[int, Logged] = field(default_factory=dict)  # the last answer to each consumer report

    def feed(self, kind: str, e: Logged) -> bool:
        """Keep an entry of a lifecycle kind; whether it was one."""
        if kind == "code.event":
            self.events[int(e.body["id"])] = e
        elif kind == "dealer.registered":
            self.dealers[int(e.body["id"])] = e
        elif kind == "batch.released":
            self.releases.setdefault(int(e.body["batch"]), e)
        elif kind == "batch.document":
            self.documents.setdefault(str(e.body["sha256"]), e)
            self.batch_reports[int(e.body["batch"])] = e
        elif kind == "consumer.report":
            self.reports[int(e.body["id"])] = e
        elif kind == "consumer.report.answered":
            self.answers[int(e.body["id"])] = e
        else:
            return False
        return True


Found = list[tuple[int, str]]  # (seq, what): replay.Disagreement's fields


def compare(log: LifecycleLog, conn: db.Conn, limit: int) -> Found:
    """Every lifecycle table against the log, at most `limit` disagreements of each kind. (A
    consumer report's personal fields are committed to in its entry's salted personal hash, as a
    scan's are; verify compares the fields that route and count it.)"""
    found: Found = []
    found += _events(log, conn, limit)
    found += _serials(log, conn, limit)
    found += _states(log, conn, limit)
    found += _dealers(log, conn, limit)
    found += _batches(log, conn, limit)
    found += _documents(log, conn, limit)
    found += _reports(log, conn, limit)
    return found


def _events(log: LifecycleLog, conn: db.Conn, limit: int) -> Found:
    found: Found = []
    seen: set[int] = set()
    for rows in repo.events_in_order(conn):
        for row in rows:
            event = int(row["id"])
            seen.add(event)
            entry = log.events.get(event)
            if entry is None:
                found.append((0, f"events: event {event} ({row['biz_step']}) was never logged"))
                continue
            body = entry.body
            logged = {k: body.get(k) for k in EVENT_FIELDS}
            logged.update(recorded_at=entry.at, actor=entry.actor)
            stored = {k: row[k] for k in (*EVENT_FIELDS, "recorded_at", "actor")}
            for key, value in logged.items():
                if stored[key] != value:
                    found.append(
                        (entry.seq, f"events: event {event}'s {key} is {stored[key]!r}, the log says {value!r}")
                    )
            digest = hashlib.sha256(str(row["document"]).encode()).hexdigest()
            if digest != body.get("document_sha256"):
                found.append((entry.seq, f"events: event {event}'s EPCIS document is not the one logged"))
            if len(found) >= limit:
                return found
    for event, entry in log.events.items():
        if event not in seen:
            found.append((entry.seq, f"events: event {event} is gone"))
    return found[:limit]


def _serials(log: LifecycleLog, conn: db.Conn, limit: int) -> Found:
    """The codes each event changed against the count and SHA-256 its entry logged."""
    found: Found = []
    current: int | None = None
    chunk: list[int] = []
    hasher = hashlib.sha256()
    count = 0
    done: set[int] = set()

    def close(event: int) -> None:
        hasher.update(struct.pack(f">{len(chunk)}Q", *chunk))
        chunk.clear()
        done.add(event)
        entry = log.events.get(event)
        if entry is None:
            found.append((0, f"event_codes: {count} codes name event {event}, which was never logged"))
        elif count != entry.body.get("codes") or hasher.hexdigest() != entry.body.get("serials_sha256"):
            found.append((entry.seq, f"event_codes: the codes event {event} changed are not those its entry logged"))

    for rows in repo.event_serials_in_order(conn):
        for event, serial in rows:
            if event != current:
                if current is not None:
                    close(current)
                current, hasher, count = event, hashlib.sha256(), 0
            chunk.append(serial)
            count += 1
            if len(chunk) == 8192:
                hasher.update(struct.pack(f">{len(chunk)}Q", *chunk))
                chunk.clear()
        if len(found) >= limit:
            return found[:limit]
    if current is not None:
        close(current)
    empty = hashlib.sha256().hexdigest()
    for event, entry in log.events.items():
        if event not in done and (entry.body.get("codes") or entry.body.get("serials_sha256", empty) != empty):
            found.append((entry.seq, f"event_codes: the codes event {event} changed are gone"))
    return found[:limit]


def _histories(conn: db.Conn) -> Iterator[tuple[int, list[tuple[Any, ...]]]]:
    """(serial, its events' rows in order), serial by serial."""
    serial: int | None = None
    rows_of: list[tuple[Any, ...]] = []
    for rows in repo.code_histories(conn):
        for row in rows:
            if row[0] != serial:
                if serial is not None:
                    yield serial, rows_of
                serial, rows_of = row[0], []
            rows_of.append(row)
    if serial is not None:
        yield serial, rows_of


def _stored_states(conn: db.Conn) -> Iterator[tuple[int, CodeState, int]]:
    for rows in repo.stored_states_in_order(conn):
        for row in rows:
            yield row[0], CodeState(*row[1:9]), row[9]


def fold(serial: int, rows: list[tuple[Any, ...]]) -> tuple[CodeState, int]:
    """A code's state after its events (code_histories rows, in order), and the last event's id;
    Refused (with the event's id in `event`) when one of them could not have applied."""
    state = lifecycle.UNRELEASED
    last = 0
    for row in rows:
        (_, event, type_, action, biz_step, event_time, disposition, parent, dealer_id, region, reason, recorded_at) = (
            row[:12]
        )
        unit, activation, activated_at = row[12:15]
        facts = Facts(type_, action, biz_step, event_time, disposition, parent, dealer_id, region, reason)
        code = lifecycle.Code(unit or "item", activation or "issue")
        state = lifecycle.effective_state(state, code.activation, activated_at, recorded_at)
        named_parent = type_ == lifecycle.AGGREGATION and parent == serial
        try:
            state = lifecycle.apply(serial, code, state, facts, named_parent=named_parent)
        except Refused as exc:
            exc.event = event  # type: ignore[attr-defined]
            raise
        last = event
    return state, last


def _states(log: LifecycleLog, conn: db.Conn, limit: int) -> Found:
    """Each code's state row against the fold of its events (both streams in serial order)."""
    found: Found = []
    histories = _histories(conn)
    stored = _stored_states(conn)
    history = next(histories, None)
    row = next(stored, None)

    def seq_of(event: int) -> int:
        entry = log.events.get(event)
        return entry.seq if entry else 0

    while (history is not None or row is not None) and len(found) < limit:
        if row is None or (history is not None and history[0] < row[0]):
            assert history is not None
            serial, rows = history
            found.append(
                (seq_of(rows[-1][1]), f"code_states: code {serial:016d}'s state is gone (its events made one)")
            )
            history = next(histories, None)
            continue
        if history is None or row[0] < history[0]:
            found.append((0, f"code_states: code {row[0]:016d} is {row[1].state} but no event made it so"))
            row = next(stored, None)
            continue
        serial, rows = history
        try:
            expected, last = fold(serial, rows)
        except Refused as exc:
            event = int(getattr(exc, "event", 0))
            found.append((seq_of(event), f"events: event {event} could not have applied to code {serial:016d}: {exc}"))
        else:
            if (row[1], row[2]) != (expected, last):
                found.append(
                    (
                        seq_of(last),
                        f"code_states: code {serial:016d} is {_describe(row[1])} (event {row[2]}), its events make it "
                        f"{_describe(expected)} (event {last})",
                    )
                )
        history, row = next(histories, None), next(stored, None)
    return found


def _describe(state: CodeState) -> str:
    parts = [state.state]
    if state.parent is not None:
        parts.append(f"in case {state.parent:016d}")
    if state.region:
        parts.append(f"shipped to {state.region} (dealer {state.dealer_id}) on {state.shipped_at}")
    if state.reason:
        parts.append(f"({state.reason})")
    return " ".join(parts)


def _dealers(log: LifecycleLog, conn: db.Conn, limit: int) -> Found:
    found: Found = []
    rows = {int(r["id"]): r for r in repo.dealers(conn)}
    for dealer_id, row in rows.items():
        entry = log.dealers.get(dealer_id)
        if entry is None:
            found.append((0, f"dealers: dealer {dealer_id} ({row['code']}) was never registered in the log"))
            continue
        for key in DEALER_FIELDS:
            if row[key] != entry.body.get(key):
                found.append(
                    (
                        entry.seq,
                        f"dealers: dealer {dealer_id}'s {key} is {row[key]!r}, the log says {entry.body.get(key)!r}",
                    )
                )
    for dealer_id, entry in log.dealers.items():
        if dealer_id not in rows:
            found.append((entry.seq, f"dealers: dealer {dealer_id} is gone"))
    return found[:limit]


def _batches(log: LifecycleLog, conn: db.Conn, limit: int) -> Found:
    """Each batch's release and inspection report against the log."""
    found: Found = []
    for batch_id, (activated_at, report_sha256) in repo.batch_lifecycle_facts(conn).items():
        release = log.releases.get(batch_id)
        logged_at = release.body.get("activated_at") if release else None
        if activated_at != logged_at:
            seq = release.seq if release else 0
            found.append((seq, f"batches: batch {batch_id} was released {activated_at!r}, the log says {logged_at!r}"))
        document = log.batch_reports.get(batch_id)
        logged_sha = document.body.get("sha256") if document else None
        if report_sha256 != logged_sha:
            seq = document.seq if document else 0
            found.append(
                (
                    seq,
                    f"batches: batch {batch_id}'s inspection report is {report_sha256!r}, the log says {logged_sha!r}",
                )
            )
    return found[:limit]


def _documents(log: LifecycleLog, conn: db.Conn, limit: int) -> Found:
    found: Found = []
    stored: set[str] = set()
    for sha256, media_type, size, actual in repo.document_facts(conn):
        stored.add(sha256)
        entry = log.documents.get(sha256)
        if entry is None:
            found.append((0, f"documents: document {sha256[:16]}… was never attached in the log"))
        elif actual != sha256 or (media_type, size) != (entry.body.get("media_type"), entry.body.get("size")):
            found.append((entry.seq, f"documents: document {sha256[:16]}…'s content is not what was attached"))
    for sha256, entry in log.documents.items():
        if sha256 not in stored:
            found.append((entry.seq, f"documents: document {sha256[:16]}… is gone"))
    return found[:limit]


def _reports(log: LifecycleLog, conn: db.Conn, limit: int) -> Found:
    found: Found = []
    rows = {int(r["id"]): r for r in repo.all_reports(conn)}
    for report_id, row in rows.items():
        entry = log.reports.get(report_id)
        if entry is None:
            found.append((0, f"consumer_reports: report {report_id} was never logged"))
            continue
        logged: Mapping[str, Any] = entry.body
        for key in REPORT_FIELDS:
            if row[key] != logged.get(key):
                found.append(
                    (
                        entry.seq,
                        f"consumer_reports: report {report_id}'s {key} is {row[key]!r}, logged {logged.get(key)!r}",
                    )
                )
        if row["at"] != entry.at:
            found.append(
                (entry.seq, f"consumer_reports: report {report_id}'s time is {row['at']!r}, the log says {entry.at!r}")
            )
        answer = log.answers.get(report_id)
        expected = (answer.body.get("status"), answer.body.get("answer")) if answer else ("open", None)
        if (row["status"], row["answer"]) != expected:
            seq = answer.seq if answer else entry.seq
            found.append(
                (seq, f"consumer_reports: report {report_id} is {row['status']!r}, the log says {expected[0]!r}")
            )
    for report_id, entry in log.reports.items():
        if report_id not in rows:
            found.append((entry.seq, f"consumer_reports: report {report_id} is gone"))
    return found[:limit]
