"""Anomalies worked as cases: opened from an anomaly, assigned to an inspector, noted, linked to
more evidence, moved from open to investigating to closed; and each case's evidence export.

The service: explicit arguments (a connection, the `accounts.User` asking, `now`), every change
inside the caller's write transaction and logged as a "case.*" entry that `audit verify`'s replay
compares (verifier/replay_cases.py). Who may do what: inspectors and admins work cases; an
enterprise account reads the cases about its own codes and batches, and another enterprise's case
is "not found". docs/cases.md.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from . import accounts, anomalies, audit, auditlog, clock, db, errors, evidence, logtree
from .repos import cases as repo
from .repos import log, registry

STATUSES = ("open", "investigating", "closed")
SEVERITIES = ("high", "low")
NOTE_MAX = 2000
EVIDENCE_MAX = 200  # scans linked to one case
LIST_MAX = 500
WORKERS = ("inspector", "admin")  # who works cases; enterprises read theirs


def operator(name: str) -> accounts.User:
    """The registry's operator at the command line, who works every case (as `verifier events` does)."""
    return accounts.User(0, name, "admin", None, False)


class CaseNotFound(errors.NotFound):
    """No such case (or not the caller's to see)."""


@dataclass(frozen=True)
class Case:
    """A case as its page shows it: its row, notes (oldest first) and evidence scans."""

    case: dict[str, Any]
    notes: list[dict[str, Any]]
    evidence: list[dict[str, Any]]  # the linked scans the reader may see, oldest first
    hidden: int  # linked scans not shown to this reader (another enterprise's codes)


def require_worker(user: accounts.User) -> None:
    """Forbidden unless `user` works cases (an inspector or an admin)."""
    if user.role not in WORKERS:
        raise errors.Forbidden("only inspectors and admins work cases")


def parse_status(value: str) -> str:
    if value not in STATUSES:
        raise audit.BadFilter(f"status is one of {', '.join(STATUSES)}")
    return value


def parse_severity(value: str) -> str:
    if value not in SEVERITIES:
        raise audit.BadFilter(f"severity is one of {', '.join(SEVERITIES)}")
    return value


def case_id_of(text: str) -> int:
    """A case number from a URL or the command line."""
    return audit.parse_int("a case number", text, 1)


# --- reading ----------------------------------------------------------------------------------


def _visible(conn: db.Conn, user: accounts.User, case_id: int) -> dict[str, Any]:
    row = repo.get_case(conn, case_id)
    if row is None or not (user.sees_everything() or row["enterprise_id"] == user.enterprise_id):
        raise CaseNotFound(f"no case {case_id}")  # another enterprise's case does not exist for this user
    if user.enterprise_id is None and not user.sees_everything():
        raise CaseNotFound(f"no case {case_id}")
    row["details"] = json.loads(row["details"])
    return row


def list_cases(
    conn: db.Conn, user: accounts.User, status: str | None = None, severity: str | None = None
) -> list[dict[str, Any]]:
    """The cases `user` may see, newest first, by status and severity."""
    return repo.list_cases(conn, user.enterprise_id, user.sees_everything(), status, severity, LIST_MAX)


def cases_by_anomaly(conn: db.Conn, user: accounts.User) -> dict[tuple[str, str], dict[str, Any]]:
    """The newest case `user` may see of each anomaly (rule, subject): what the anomaly list links to."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for row in list_cases(conn, user):  # newest first
        found.setdefault((row["rule"], row["subject"]), row)
    return found


def get_case(conn: db.Conn, user: accounts.User, case_id: int) -> Case:
    """A case `user` may see, with its notes and the evidence scans it may see."""
    row = _visible(conn, user, case_id)
    linked = [int(e["scan_id"]) for e in repo.evidence(conn, case_id)]
    scans = repo.scans(conn, linked, audit.columns_for(user))
    if not user.sees_everything():
        own = {b["id"] for b in audit.list_batches(conn, user)}
        scans = [s for s in scans if s.get("batch_id") in own]
    return Case(row, repo.notes(conn, case_id), scans, len(linked) - len(scans))


def find_anomaly(
    conn: db.Conn, user: accounts.User, rule: str, subject: str, days: int, now: dt.datetime
) -> anomalies.Anomaly:
    """The anomaly of `rule` about `subject` among those `user` sees in the `days` before `now`
    (recomputed: a case is opened from what the rules find, never from what a form says)."""
    if rule not in anomalies.RULES:
        raise audit.BadFilter(f"rule is one of {', '.join(anomalies.RULES)}")
    _, found = audit.anomalies_for(conn, user, days, now)
    for anomaly in found:
        if anomaly.rule == rule and anomaly.subject == subject:
            return anomaly
    raise errors.NotFound(f"no {rule} anomaly about {subject!r} in the last {days} days")


# --- writing (inside the caller's write transaction) ---------------------------------------------


def open_case(conn: db.Conn, user: accounts.User, anomaly: anomalies.Anomaly, actor: str, now: dt.datetime) -> int:
    """A case opened from `anomaly` (status open, its evidence scans linked); its number."""
    require_worker(user)
    batch_id = anomaly.batch_id
    if batch_id is None and anomaly.serial is not None:
        found = registry.batch_for_serial(conn, anomaly.serial)
        batch_id = found["id"] if found is not None else None
    enterprise_id = repo.batch_enterprises(conn, [batch_id]).get(batch_id) if batch_id is not None else None
    details = auditlog.canonical(anomaly.details)
    evidence_ids = sorted(repo.existing_scans(conn, sorted(set(anomaly.evidence))[:EVIDENCE_MAX]))
    at = clock.utc_text(now)
    fields: dict[str, Any] = {
        "rule": anomaly.rule,
        "subject": anomaly.subject,
        "serial": anomaly.serial,
        "batch_id": batch_id,
        "enterprise_id": enterprise_id,
        "severity": anomaly.severity,
        "details": details,
        "status": "open",
        "opened_at": at,
        "opened_by": actor,
    }
    case_id = repo.insert_case(conn, fields)
    repo.insert_evidence(conn, case_id, evidence_ids, at, actor)
    body: dict[str, Any] = {
        "case": case_id,
        **{k: fields[k] for k in ("rule", "subject", "serial", "batch_id", "enterprise_id")},
    }
    body.update(severity=anomaly.severity, details=anomaly.details, evidence=evidence_ids)
    auditlog.append(conn, "case.opened", body, at, actor)
    return case_id


def assign(conn: db.Conn, user: accounts.User, case_id: int, assignee: str, actor: str, now: dt.datetime) -> None:
    """Give a case to an inspector (or an admin) by user name."""
    require_worker(user)
    _visible(conn, user, case_id)
    try:
        target = accounts.find_user(conn, assignee)
    except accounts.AccountNotFound:
        raise audit.BadFilter(f"no inspector {assignee!r}") from None
    if target.role not in WORKERS or target.disabled:
        raise audit.BadFilter(f"{assignee} is not an inspector who can work cases")
    repo.update_case(conn, case_id, assignee=target.username)
    auditlog.append(
        conn,
        "case.assigned",
        {"case": case_id, "assignee": target.username},
        clock.utc_text(now),
        actor,
    )


def add_note(conn: db.Conn, user: accounts.User, case_id: int, text: str, actor: str, now: dt.datetime) -> int:
    """A note on a case (who and when are recorded); its id."""
    require_worker(user)
    _visible(conn, user, case_id)
    text = audit.parse_text("note", text.replace("\r\n", "\n").strip(), NOTE_MAX).replace("\n", " ")
    if not text:
        raise audit.BadFilter("a note says something")
    at = clock.utc_text(now)
    note_id = repo.insert_note(conn, case_id, at, actor, text)
    auditlog.append(conn, "case.note", {"case": case_id, "note": note_id, "text": text}, at, actor)
    return note_id


def set_status(conn: db.Conn, user: accounts.User, case_id: int, status: str, actor: str, now: dt.datetime) -> None:
    """Move a case to `status`; closing records who closed it and when, reopening clears that."""
    require_worker(user)
    row = _visible(conn, user, case_id)
    status = parse_status(status)
    if row["status"] == status:
        raise errors.Conflict(f"case {case_id} is {status} already")
    at = clock.utc_text(now)
    closed = (at, actor) if status == "closed" else (None, None)
    repo.update_case(conn, case_id, status=status, closed_at=closed[0], closed_by=closed[1])
    auditlog.append(conn, "case.status", {"case": case_id, "status": status}, at, actor)


def link_evidence(
    conn: db.Conn, user: accounts.User, case_id: int, scan_ids: Iterable[int], actor: str, now: dt.datetime
) -> list[int]:
    """Link more scans to a case as evidence; the ones newly linked (NotFound for no such scan)."""
    require_worker(user)
    _visible(conn, user, case_id)
    wanted = sorted(set(scan_ids))
    missing = sorted(set(wanted) - repo.existing_scans(conn, wanted))
    if missing:
        raise errors.NotFound(f"no scan {missing[0]}")
    linked = {int(e["scan_id"]) for e in repo.evidence(conn, case_id)}
    new = [s for s in wanted if s not in linked]
    if len(linked) + len(new) > EVIDENCE_MAX:
        raise audit.BadFilter(f"a case links at most {EVIDENCE_MAX} scans")
    if new:
        at = clock.utc_text(now)
        repo.insert_evidence(conn, case_id, new, at, actor)
        auditlog.append(conn, "case.linked", {"case": case_id, "scans": new}, at, actor)
    return new


def parse_scan_ids(text: str) -> list[int]:
    """Scan ids written with commas or spaces."""
    parts = [p for p in text.replace(",", " ").split() if p]
    if not parts:
        raise audit.BadFilter("give scan ids, e.g. 120, 121")
    return [audit.parse_int("a scan id", p, 1) for p in parts]


# --- the evidence export ---------------------------------------------------------------------


def export(conn: db.Conn, user: accounts.User, case_id: int) -> dict[str, Any]:
    """The case's evidence export (verifier/evidence.py): the case, its notes, the evidence scans
    as CSV, the case's and the scans' log entries with inclusion proofs against the newest signed
    checkpoint; "pending" while an entry is not covered by one. Inspectors and admins only."""
    require_worker(user)
    with db.read_snapshot(conn):
        row = _visible(conn, user, case_id)
        linked = [int(e["scan_id"]) for e in repo.evidence(conn, case_id)]
        scans = repo.scans(conn, linked, evidence.CSV_COLUMNS)
        indexes: list[int | None] = [_scan_index(conn, int(s["id"])) for s in scans]
        indexes += [int(r[0]) - 1 for r in repo.case_entries(conn) if _entry_case(r[5]) == case_id]
        if repo.queued_case_entries(conn):
            indexes.append(None)  # an entry of some case is not numbered yet: maybe this one's
        entries = _entries(conn, indexes)
        checkpoint = logtree.latest_checkpoint(conn)
        proofs: dict[int, list[bytes]] | None = None
        if checkpoint is not None and None not in indexes and all(i < checkpoint.size for i in entries):
            proofs = {i: logtree.inclusion_proof(conn, i, checkpoint.size) for i in entries}
        return evidence.build(
            row,
            repo.notes(conn, case_id),
            linked,
            scans,
            entries,
            checkpoint.note if checkpoint is not None and proofs is not None else None,
            proofs,
        )


def _scan_index(conn: db.Conn, scan_id: int) -> int | None:
    seq = log.scan_entry_seq(conn, scan_id)
    return None if seq is None else seq - 1


def _entry_case(body: str) -> int | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value.get("case") if isinstance(value, dict) and isinstance(value.get("case"), int) else None


def _entries(conn: db.Conn, indexes: Sequence[int | None]) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    for index in sorted({i for i in indexes if i is not None}):
        leaf = logtree.entry_leaf(conn, index)
        if leaf is not None:
            found[index] = leaf
    return found
