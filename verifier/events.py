"""Lifecycle events: capture them (from EPCIS documents, the CLI, the API), register dealers,
release batches, attach inspection reports; every one of them a log entry.

`capture` applies a list of steps all or nothing: every step is checked against the rules of
verifier/lifecycle.py, on the codes it names and, through a case, on what the case holds, with
the effects of the earlier steps of the same list; one refused step refuses the list, with every
step's errors, and nothing is written. Call inside the caller's write transaction.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import auditlog, clock, codes, db, errors, lifecycle
from .lifecycle import Code, CodeState, Facts, Refused
from .replay import serials_sha256
from .repos import lifecycle as repo
from .repos import registry

EVENT_KIND = "code.event"
DEALER_KIND = "dealer.registered"
ACTIVATED_KIND = "batch.released"
DOCUMENT_KIND = "batch.document"
ERRORS_PER_STEP = 5  # a step naming 10,000 bad codes says so five times, then how many more
MAX_DOCUMENT_BYTES = 8_000_000
DOCUMENT_TYPES = {"application/pdf": b"%PDF-", "image/jpeg": b"\xff\xd8\xff", "image/png": b"\x89PNG\r\n\x1a\n"}


@dataclass(frozen=True)
class Step:
    """One event to capture, whatever it came from (an EPCIS event, a CLI command)."""

    type: str
    action: str
    biz_step: str
    event_time: str  # UTC text
    serials: tuple[int, ...] = ()
    parent: int | None = None
    disposition: str | None = None
    dealer: str | None = None  # "dealer:<code>" | "gln:<13 digits>" (epcis.party_key), or a dealer's code
    reason: str | None = None
    event_id: str | None = None
    read_point: str | None = None
    biz_location: str | None = None
    document: Mapping[str, Any] | None = None  # the EPCIS event as given; None: made from the step
    index: int = 0  # where it stood in its document or command


@dataclass(frozen=True)
class StepError:
    index: int
    event_id: str | None
    code: str
    message: str

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


class EventsRefused(errors.InvalidInput):
    """Steps that cannot be captured; every step's errors, and nothing was written."""

    api_code = "events-refused"

    def __init__(self, found: Sequence[StepError]):
        first = found[0]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        super().__init__(f"event {first.index + 1}: {first.message}{more}")
        self.errors = list(found)


@dataclass(frozen=True)
class Captured:
    event_ids: list[int]  # events rows
    codes: int  # codes changed, counted once per event


@dataclass
class _Work:
    """The codes a capture has read, and their states as its steps change them."""

    conn: db.Conn
    at: str  # when the capture runs (UTC text): a batch released by then is active
    facts: dict[int, tuple[Code, int, int, str | None, str]] = field(default_factory=dict)
    states: dict[int, CodeState] = field(default_factory=dict)
    kids: dict[int, set[int]] = field(default_factory=dict)
    missing: set[int] = field(default_factory=set)
    stored: set[int] = field(default_factory=set)  # the codes that have a state row

    def load(self, serials: Sequence[int]) -> None:
        new = sorted({s for s in serials if s not in self.facts and s not in self.missing})
        if not new:
            return
        found = repo.code_facts(self.conn, new)
        self.missing.update(s for s in new if s not in found)
        holders = []
        for serial, (batch, stored) in found.items():
            self.facts[serial] = batch
            code, activated_at = batch[0], batch[3]
            if stored is not None:
                self.stored.add(serial)
            state = stored or lifecycle.UNRELEASED
            self.states[serial] = lifecycle.effective_state(state, code.activation, activated_at, self.at)
            if code.unit != "item":
                holders.append(serial)
        if holders:
            packed = repo.children(self.conn, holders)
            for holder in holders:
                self.kids[holder] = set(packed.get(holder, ()))

    def contents(self, serial: int) -> list[int]:
        """What the code holds now, down to the items (a pallet's cases and their items)."""
        found: list[int] = []
        todo = [serial]
        while todo:
            holder = todo.pop()
            inside = sorted(self.kids.get(holder, ()))
            self.load(inside)
            found += inside
            todo += [s for s in inside if s in self.facts and self.facts[s][0].unit != "item"]
        return found


def capture(
    conn: db.Conn,
    steps: Sequence[Step],
    *,
    enterprise_id: int | None,
    actor: str,
    now: dt.datetime,
) -> Captured:
    """Apply `steps` (all or nothing) and log each; `enterprise_id`: the caller's enterprise (it may
    only name its own codes), None for an administrator (each event belongs to its codes' enterprise)."""
    recorded_at = clock.utc_text(now)
    work = _Work(conn, recorded_at)
    work.load([s for step in steps for s in (*step.serials, *([step.parent] if step.parent else []))])
    found: list[StepError] = []
    planned: list[tuple[Step, int, dict[int, CodeState], dict[str, Any]]] = []
    given_ids = [step.event_id for step in steps if step.event_id]
    taken = repo.event_id_taken(conn, given_ids) if given_ids else set()
    seen_ids: set[str] = set()
    dealers: dict[tuple[int, str], dict[str, Any] | None] = {}
    for step in steps:
        problems: list[StepError] = []

        def refuse(code: str, message: str, step: Step = step, problems: list[StepError] = problems) -> None:
            problems.append(StepError(step.index, step.event_id, code, message))

        if step.event_id and (step.event_id in taken or step.event_id in seen_ids):
            refuse("duplicate-event", f"event {step.event_id} was captured before")
        if step.event_id:
            seen_ids.add(step.event_id)
        owner, affected, result, extra = _plan(work, step, enterprise_id, dealers, refuse)
        if problems:
            found += problems
            continue
        planned.append((step, owner, result, extra))
    if found:
        raise EventsRefused(found)
    ids = repo.reserve_event_ids(conn, len(planned))
    total = 0
    final: dict[int, tuple[CodeState, int]] = {}
    event_rows: list[dict[str, Any]] = []
    code_rows: list[tuple[int, int]] = []
    entries: list[tuple[str, Mapping[str, object], str, str]] = []
    for event, (step, owner, result, extra) in zip(ids, planned):
        event_id = step.event_id or f"urn:uuid:{uuid.uuid4()}"
        document = dict(step.document) if step.document is not None else _document(work, step, event_id, extra)
        row = {
            "id": event,
            "event_id": event_id,
            "type": step.type,
            "action": step.action,
            "biz_step": step.biz_step,
            "disposition": step.disposition,
            "event_time": step.event_time,
            "recorded_at": recorded_at,
            "enterprise_id": owner,
            "actor": actor,
            "batch_id": None,
            "parent": step.parent,
            "dealer_id": extra.get("dealer_id"),
            "region": extra.get("region"),
            "read_point": step.read_point,
            "biz_location": step.biz_location,
            "reason": step.reason,
            "codes": len(result),
            "document": auditlog.canonical(document),
        }
        event_rows.append(row)
        serials = sorted(result)
        code_rows += [(serial, event) for serial in serials]
        for serial in serials:
            final[serial] = (result[serial], event)
        total += len(serials)
        entries.append((EVENT_KIND, _event_entry(row, serials), recorded_at, actor))
    # One statement a table for the whole capture, as a bulk load would (scripts/bench_events.py).
    repo.insert_events(conn, event_rows)
    repo.insert_event_codes(conn, code_rows)
    auditlog.append_many(conn, entries)
    ordered = sorted(final.items())  # in key order: fewer B-tree pages touched
    for new in (True, False):  # codes without a state row yet get a plain INSERT
        rows = [(serial, *s, event) for serial, (s, event) in ordered if (serial in work.stored) != new]
        if rows:
            repo.write_states(conn, rows, new=new)
    return Captured(ids, total)


def _event_entry(row: Mapping[str, Any], serials: Sequence[int]) -> dict[str, Any]:
    """What an event's log entry records: its fields, and the SHA-256 of the serials it changed
    and of its EPCIS document."""
    body = {k: row[k] for k in ("event_id", "type", "action", "biz_step", "disposition", "event_time")}
    body.update(
        id=row["id"],
        enterprise_id=row["enterprise_id"],
        batch_id=row["batch_id"],
        parent=row["parent"],
        dealer_id=row["dealer_id"],
        region=row["region"],
        read_point=row["read_point"],
        biz_location=row["biz_location"],
        reason=row["reason"],
        codes=len(serials),
        serials_sha256=serials_sha256(serials),
        document_sha256=hashlib.sha256(row["document"].encode()).hexdigest(),
    )
    return body


def _plan(
    work: _Work,
    step: Step,
    enterprise_id: int | None,
    dealers: dict[tuple[int, str], dict[str, Any] | None],
    refuse: Any,
) -> tuple[int, list[int], dict[int, CodeState], dict[str, Any]]:
    """Check one step against the working states and apply it to them; (its enterprise, the codes
    it changes, their states after it, what it resolved). Problems go to `refuse`."""
    extra: dict[str, Any] = {}
    facts = Facts(
        step.type, step.action, step.biz_step, step.event_time, step.disposition, step.parent, None, None, step.reason
    )
    try:
        lifecycle.check_supported(facts)
    except Refused as exc:
        refuse(exc.code, str(exc))
        return 0, [], {}, extra
    if step.reason is not None and step.reason not in lifecycle.BLOCK_REASONS:
        refuse("bad-reason", f"a block's reason is one of {', '.join(lifecycle.BLOCK_REASONS)}")
    aggregation = step.type == lifecycle.AGGREGATION
    if aggregation and step.parent is None:
        refuse("missing-parent", "an AggregationEvent names its case as parentID")
    named = list(step.serials)
    if not named and not (aggregation and step.action == "DELETE"):
        refuse("no-codes", "the event names no codes")
    owners: set[int] = set()
    for serial in [*named, *([step.parent] if step.parent is not None else [])]:
        got = work.facts.get(serial)
        if got is None or (enterprise_id is not None and got[2] != enterprise_id):
            refuse("unknown-code", f"code {serial:016d} is not an issued code of yours")  # same words: no oracle
        elif got[4] != registry.BATCH_ACTIVE:
            refuse(
                "recalled" if got[4] == registry.BATCH_RECALLED else "unknown-code",
                f"code {serial:016d}'s batch is {got[4]}",
            )
        else:
            owners.add(got[2])
    if len(owners) > 1:
        refuse("mixed-enterprises", "an event names the codes of one enterprise only")
    owner = next(iter(owners)) if owners else (enterprise_id or 0)
    if step.biz_step == lifecycle.SHIPPING:
        dealer = _dealer(work.conn, owner, step.dealer, dealers) if step.dealer else None
        if dealer is None:
            refuse(
                "unknown-dealer",
                f"shipping names a registered dealer as its destination ({step.dealer!r} is not one)"
                if step.dealer
                else "shipping names a registered dealer as its destination",
            )
        else:
            extra.update(dealer_id=dealer["id"], region=dealer["regions"], dealer=dealer)
            facts = dataclasses.replace(facts, dealer_id=dealer["id"], region=dealer["regions"])
    if not owners or any(work.facts.get(s) is None for s in named):
        return owner, [], {}, extra
    result: dict[int, CodeState] = {}
    errors_here = 0
    affected: list[int] = []
    if aggregation:
        parent_code = work.facts[step.parent][0] if step.parent is not None else None
        if step.action == "DELETE" and not named and step.parent is not None:
            named = sorted(work.kids.get(step.parent, ()))
            work.load(named)
        checked: dict[lifecycle.Code, str | None] = {}  # a Code is its batch's: check each batch once
        for serial in named:
            if parent_code is not None and step.parent is not None and step.action == "ADD":
                code = work.facts[serial][0]
                if serial == step.parent or code not in checked:
                    try:
                        lifecycle.check_packing(step.parent, parent_code, serial, code)
                        checked[code] = None
                    except Refused as exc:
                        checked[code] = str(exc) if serial != step.parent else None
                        refuse(exc.code, str(exc))
                        errors_here += 1
                        continue
                elif checked[code] is not None:
                    errors_here += 1
                    continue
            affected.append(serial)
        if step.parent is not None:
            result[step.parent] = work.states[step.parent]  # the case: recorded, not changed
    else:
        affected = list(named)
        if facts.through_cases:
            for serial in named:
                if work.facts[serial][0].unit != "item":
                    affected += work.contents(serial)
    for serial in dict.fromkeys(affected):
        try:
            new = lifecycle.apply(serial, work.facts[serial][0], work.states[serial], facts)
        except Refused as exc:
            errors_here += 1
            if errors_here <= ERRORS_PER_STEP:
                refuse(exc.code, str(exc))
            continue
        result[serial] = new
    if errors_here > ERRORS_PER_STEP:
        refuse("more-errors", f"{errors_here - ERRORS_PER_STEP} more codes of this event were refused")
    if errors_here:
        return owner, [], {}, extra
    for serial, new in result.items():
        old = work.states[serial]
        work.states[serial] = new
        if serial == step.parent:
            continue
        if old.parent != new.parent:  # packed or unpacked: keep what each case holds current
            if old.parent is not None:
                work.kids.setdefault(old.parent, set()).discard(serial)
            if new.parent is not None:
                work.kids.setdefault(new.parent, set()).add(serial)
    return owner, affected, result, extra


def _dealer(
    conn: db.Conn, enterprise_id: int, ref: str, cache: dict[tuple[int, str], dict[str, Any] | None]
) -> dict[str, Any] | None:
    key = (enterprise_id, ref)
    if key not in cache:
        if ref.startswith("gln:"):
            cache[key] = repo.dealer_by(conn, enterprise_id, gln=ref[4:])
        else:
            cache[key] = repo.dealer_by(conn, enterprise_id, code=ref.removeprefix("dealer:"))
    return cache[key]


def code_uri(serial: int) -> str:
    """How an event made by verifier names a code: a URN by its serial (EPCIS capture takes it too)."""
    return f"urn:verifier:code:{serial:016d}"


_CODE_URN = re.compile(r"urn:verifier:code:([0-9]{16})")


def serial_of_urn(text: str) -> int | None:
    match = _CODE_URN.fullmatch(text)
    return int(match.group(1)) if match else None


def _document(work: _Work, step: Step, event_id: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    """The EPCIS 2.0 event for a step that did not come as one (the CLI's)."""
    event: dict[str, Any] = {
        "type": step.type,
        "eventID": event_id,
        "eventTime": step.event_time.replace("+00:00", "Z"),
        "eventTimeZoneOffset": "+00:00",
        "action": step.action,
        "bizStep": step.biz_step,
    }
    codes_named = [code_uri(s) for s in step.serials]
    if step.type == lifecycle.AGGREGATION:
        event["parentID"] = code_uri(step.parent or 0)
        event["childEPCs"] = codes_named
    else:
        event["epcList"] = codes_named
    if step.disposition:
        event["disposition"] = step.disposition
    if step.read_point:
        event["readPoint"] = {"id": step.read_point}
    if step.biz_location:
        event["bizLocation"] = {"id": step.biz_location}
    if step.reason:
        event["verifier:reason"] = step.reason
    dealer = extra.get("dealer")
    if dealer is not None:
        event["destinationList"] = [{"type": "owning_party", "destination": f"urn:verifier:dealer:{dealer['code']}"}]
    return event


# --- what the CLI and the API do besides capturing documents ------------------------------


def block(
    conn: db.Conn,
    serials: Sequence[int],
    reason: str,
    *,
    enterprise_id: int | None,
    actor: str,
    now: dt.datetime,
    location: str | None = None,
) -> Captured:
    """Block codes (and what their cases hold): a red verdict from now on."""
    if reason not in lifecycle.BLOCK_REASONS:
        raise errors.InvalidInput(f"--reason is one of {', '.join(lifecycle.BLOCK_REASONS)}")
    disposition = reason if reason in ("stolen", "destroyed") else "inactive"
    step = Step(
        lifecycle.OBJECT,
        "DELETE",
        lifecycle.DECOMMISSIONING,
        clock.utc_text(now),
        tuple(serials),
        disposition=disposition,
        reason=reason,
        biz_location=location,
    )
    return capture(conn, [step], enterprise_id=enterprise_id, actor=actor, now=now)


def release_batch(conn: db.Conn, batch_id: int, *, enterprise_id: int | None, actor: str, now: dt.datetime) -> None:
    """Release a whole batch for sale (its activation 'batch'): every code without a state of its
    own becomes active."""
    batch = registry.get_batch(conn, batch_id)  # NotFound
    if enterprise_id is not None and batch["enterprise_id"] != enterprise_id:
        raise errors.NotFound(f"no batch {batch_id}")
    if batch["activation"] != "batch":
        how = "on issue" if batch["activation"] == "issue" else "by " + batch["activation"]
        raise errors.Conflict(f"batch {batch_id} is released {how}, not as a whole")
    if batch["activated_at"]:
        raise errors.Conflict(f"batch {batch_id} was released on {batch['activated_at']}")
    at = clock.utc_text(now)  # milliseconds: events recorded before it are compared with it (audit verify)
    repo.set_batch_activated(conn, batch_id, at)
    auditlog.append(conn, ACTIVATED_KIND, {"batch": batch_id, "activated_at": at}, at, actor)


def register_dealer(
    conn: db.Conn,
    enterprise_id: int,
    code: str,
    name: str,
    regions: Sequence[str],
    gln: str | None,
    *,
    actor: str,
    now: dt.datetime,
) -> int:
    """Register a dealer and its sales regions (GB/T 2260 codes); its id."""
    from . import regions as gbt2260

    code, name = code.strip(), name.strip()
    if not code or len(code) > 64 or any(c.isspace() for c in code):
        raise errors.InvalidInput("a dealer's code is 1-64 characters without spaces")
    if not name or len(name) > 200:
        raise errors.InvalidInput("a dealer's name is 1-200 characters")
    if not regions:
        raise errors.InvalidInput("a dealer has at least one sales region (a GB/T 2260 code, e.g. 510000)")
    try:
        parsed = [gbt2260.parse_region_code(r) for r in regions]
    except ValueError as exc:
        raise errors.InvalidInput(str(exc)) from None
    if gln is not None and not (
        re.fullmatch(r"[0-9]{13}", gln) and codes.gtin_check_digit("0" + gln[:12]) == int(gln[12])
    ):
        raise errors.InvalidInput("a GLN is 13 digits, the last a GS1 check digit")
    if repo.dealer_by(conn, enterprise_id, code=code) is not None:
        raise errors.Conflict(f"dealer {code} is registered already")
    at = clock.utc_text_seconds(now)
    row = {
        "enterprise_id": enterprise_id,
        "code": code,
        "name": name,
        "gln": gln,
        "regions": " ".join(parsed),
        "created_at": at,
        "created_by": actor,
    }
    dealer_id = repo.insert_dealer(conn, row)
    auditlog.append(conn, DEALER_KIND, {"id": dealer_id, **row}, clock.utc_text(now), actor)
    return dealer_id


def list_dealers(conn: db.Conn, enterprise_id: int | None = None) -> list[dict[str, Any]]:
    """The registered dealers (of one enterprise), with their regions."""
    return repo.dealers(conn, enterprise_id)


def attach_report(
    conn: db.Conn,
    batch_id: int,
    content: bytes,
    name: str,
    *,
    enterprise_id: int | None,
    actor: str,
    now: dt.datetime,
) -> str:
    """Attach an inspection report (PDF, JPEG or PNG) to a batch, shown to consumers with its
    SHA-256, which the log records; the SHA-256."""
    batch = registry.get_batch(conn, batch_id)
    if enterprise_id is not None and batch["enterprise_id"] != enterprise_id:
        raise errors.NotFound(f"no batch {batch_id}")
    if len(content) > MAX_DOCUMENT_BYTES:
        raise errors.InvalidInput(f"an inspection report is at most {MAX_DOCUMENT_BYTES // 1_000_000} MB")
    media_type = next((t for t, magic in DOCUMENT_TYPES.items() if content.startswith(magic)), None)
    if media_type is None:
        raise errors.InvalidInput("an inspection report is a PDF, JPEG or PNG file")
    name = re.sub(r"[^\w. -]", "_", name.strip())[:100] or "report"
    sha256 = hashlib.sha256(content).hexdigest()
    at = clock.utc_text_seconds(now)
    row = {
        "sha256": sha256,
        "media_type": media_type,
        "name": name,
        "size": len(content),
        "content": content,
        "attached_at": at,
        "attached_by": actor,
    }
    repo.insert_document(conn, row)
    repo.set_batch_report(conn, batch_id, sha256)
    body = {"batch": batch_id, "sha256": sha256, "media_type": media_type, "name": name, "size": len(content)}
    auditlog.append(conn, DOCUMENT_KIND, body, clock.utc_text(now), actor)
    return sha256
