"""EPCIS 2.0 capture and queries on the registry: the service `POST /epcis/capture`, `GET /epcis/events`
and the CLI share (no Flask).

`capture_document` reads a document (verifier/epcis.py), resolves what each event names to codes
(`urn:verifier:code:<serial>`, compact URLs, Digital Link URIs, SGTIN URNs, printed codes) and its
destination to a dealer, and captures the events all or nothing (verifier/events.py) inside the
caller's transaction. Every refusal is one `epcis.DocumentError` listing each event's problems
(index, eventID, code, message): those of the document, of its references, then of the codes'
states; nothing is written when there is any. A code named in GS1 form must carry its batch's
GTIN and lot. A code of another enterprise reads as one that does not exist (no oracle).

`query_events` answers an `epcis.Query` with an EPCISQueryDocument of the stored events (each as it was
captured), keyset-paged by event id.

Cost beside events.capture's: resolving an EPC takes about 2 µs as `urn:verifier:code:`, 5 µs as
an SGTIN URN, 7 µs as a Digital Link URI; GS1's schema 2 µs an event (verifier/epcis.py).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from . import codes, db, epcis, errors, events, lifecycle
from .epcis import EventError
from .repos import epcis as repo
from .repos import lifecycle as lifecycle_repo

BAD_REFERENCE = "bad-reference"
UNKNOWN_CODE = "unknown-code"
ERRORS_PER_EVENT = events.ERRORS_PER_STEP

# A step that is always refused (no CBV step has this name): captured beside the steps of a document
# whose references already failed, it makes `events.capture` check those steps against the codes'
# states, report their problems too, and write nothing.
_NEVER = events.Step(lifecycle.OBJECT, "OBSERVE", "verifier:never-captured", "", index=-1)


class _Ref(NamedTuple):
    """One EPC of an event, resolved: the code's serial and the GTIN and lot it claims (GS1 form)."""

    uri: str
    serial: int
    gtin: str | None = None
    lot: str | None = None
    batch: int | None = None  # a compact label URL: the batch, mark and key it claims
    mark: str | None = None
    kid: str | None = None


@dataclass(frozen=True)
class CapturedDocument(events.Captured):
    """What a document's capture wrote: `events.Captured`, and each event's EPCIS eventID in order."""

    epcis_ids: list[str]


def _resolve(uri: str, base_urls: Sequence[str]) -> _Ref:
    """The code `uri` names; codes.InvalidCode when it names none."""
    serial = events.serial_of_urn(uri) if isinstance(uri, str) else None
    if serial is not None:
        return _Ref(uri, serial)
    ref = epcis.code_ref(uri, base_urls)
    return _Ref(uri, ref.serial, ref.gtin, ref.lot, ref.batch, ref.mark, ref.kid)


def _refs(event: epcis.Event, base_urls: Sequence[str]) -> tuple[list[_Ref], _Ref | None, list[EventError]]:
    """The event's EPCs and parent as codes, and the references that name none."""
    found: list[EventError] = []
    refused = 0

    def resolve(uri: str) -> _Ref | None:
        nonlocal refused
        try:
            return _resolve(uri, base_urls)
        except codes.InvalidCode as exc:
            refused += 1
            if refused <= ERRORS_PER_EVENT:
                found.append(EventError(event.index, event.event_id, BAD_REFERENCE, f"{uri}: {exc}"))
            return None

    epcs = [ref for ref in map(resolve, event.epcs) if ref is not None]
    parent = resolve(event.parent) if event.parent is not None else None
    if refused > ERRORS_PER_EVENT:
        more = f"{refused - ERRORS_PER_EVENT} more references of this event name no code"
        found.append(EventError(event.index, event.event_id, "more-errors", more))
    return epcs, parent, found


def _wrong_lot(conn: db.Conn, refs: Sequence[_Ref], enterprise_id: int | None) -> dict[_Ref, str]:
    """Why, for each reference in GS1 form whose code's batch has another GTIN or lot. Only the
    caller's codes are checked: another's code is refused by capture in the words of a missing one."""
    claimed = [ref for ref in refs if ref.gtin is not None or ref.lot is not None or ref.batch is not None]
    if not claimed:
        return {}
    keys = repo.gs1_keys(conn, [ref.serial for ref in claimed])
    wrong: dict[_Ref, str] = {}
    for ref in claimed:
        if ref.serial not in keys:
            continue
        owner, gtin, lot, batch_id, mark, kid = keys[ref.serial]
        if enterprise_id is not None and owner != enterprise_id:
            continue
        if (ref.gtin is not None and ref.gtin != gtin) or (ref.lot is not None and ref.lot != lot):
            wrong[ref] = f"{ref.uri} names no issued code of yours: code {ref.serial:016d} is of GTIN {gtin} lot {lot}"
        elif ref.batch is not None and (ref.batch, ref.mark, ref.kid) != (batch_id, mark, kid):
            wrong[ref] = f"{ref.uri[:80]} names no issued code of yours: it is not code {ref.serial:016d}'s label"
    return wrong


def _step(event: epcis.Event, epcs: Sequence[_Ref], parent: _Ref | None) -> events.Step:
    destination = event.destination
    # A destination that is not a party reference is looked up as a dealer's code, and the refusal names it.
    dealer = (epcis.party_key(destination) or destination) if destination is not None else None
    reason = event.raw.get("verifier:reason")
    return events.Step(
        type=event.type,
        action=event.action,
        biz_step=event.biz_step or lifecycle.UNPACKING,  # only an AggregationEvent DELETE may omit it
        event_time=event.event_time,
        serials=tuple(ref.serial for ref in epcs),
        parent=parent.serial if parent is not None else None,
        disposition=event.disposition,
        dealer=dealer,
        reason=reason if isinstance(reason, str) else None,
        # Given or made here, so the answer can name every event by its eventID.
        event_id=event.event_id or f"urn:uuid:{uuid.uuid4()}",
        read_point=event.read_point,
        biz_location=event.biz_location,
        document=event.raw,
        index=event.index,
    )


def capture_document(
    conn: db.Conn,
    data: bytes | str | Mapping[str, Any],
    *,
    enterprise_id: int | None,
    actor: str,
    now: dt.datetime,
    base_urls: Sequence[str],
) -> CapturedDocument:
    """Capture an EPCIS 2.0 document's events all or nothing, in the caller's transaction;
    `epcis.DocumentError` with every event's problems (and nothing written) when any is refused.
    `enterprise_id`: the caller's enterprise (its own codes only), None for an administrator."""
    parsed = epcis.parse_document(data)
    steps: list[events.Step] = []
    found: list[EventError] = []
    resolved = []
    for event in parsed:
        epcs, parent, problems = _refs(event, base_urls)
        found += problems
        resolved.append((event, epcs, parent, not problems))
    wrong = _wrong_lot(
        conn, [r for _, epcs, parent, _ in resolved for r in (*epcs, *([parent] if parent else []))], enterprise_id
    )
    for event, epcs, parent, ok in resolved:
        bad = [ref for ref in (*epcs, *([parent] if parent else [])) if ref in wrong]
        for ref in dict.fromkeys(bad):
            found.append(EventError(event.index, event.event_id, UNKNOWN_CODE, wrong[ref]))
        if ok and not bad:
            steps.append(_step(event, epcs, parent))
    try:
        captured = events.capture(
            conn, [*steps, _NEVER] if found else steps, enterprise_id=enterprise_id, actor=actor, now=now
        )
    except events.EventsRefused as refused:
        found += [EventError(e.index, e.event_id, e.code, e.message) for e in refused.errors if e.index >= 0]
    if found:
        raise epcis.DocumentError(epcis.bounded_errors(sorted(found, key=lambda e: -1 if e.index is None else e.index)))
    return CapturedDocument(captured.event_ids, captured.codes, [str(step.event_id) for step in steps])


# --- queries ------------------------------------------------------------------------------


def _query_serials(conn: db.Conn, uris: Sequence[str], base_urls: Sequence[str]) -> list[int]:
    """The codes a query's EPCs name; one that names none, or a code of another GTIN or lot, matches nothing."""
    refs = []
    for uri in uris:
        try:
            refs.append(_resolve(uri, base_urls))
        except codes.InvalidCode:
            continue
    wrong = _wrong_lot(conn, refs, None)
    return sorted({ref.serial for ref in refs if ref not in wrong})


def stored_event(row: Mapping[str, Any]) -> dict[str, Any]:
    """An events row as its EPCIS event: the JSON captured, with the eventID it was recorded under."""
    event: dict[str, Any] = json.loads(row["document"])
    if "eventID" not in event:
        event["eventID"] = row["event_id"]
    return event


def query_events(
    conn: db.Conn,
    q: epcis.Query,
    *,
    enterprise_id: int | None,
    now: dt.datetime,
    base_urls: Sequence[str] = (),
) -> tuple[dict[str, Any], int | None]:
    """(the EPCISQueryDocument of the events `q` matches, the nextPageToken of the next page or
    None); `enterprise_id`: only that enterprise's events (None: every event)."""
    serials: list[int] = []
    if q.epcs:
        serials = _query_serials(conn, q.epcs, base_urls)
        if not serials:
            return epcis.query_document([], now), None
    batches: list[int | None] = [None]
    lot = q.lot_key()
    if lot is not None:
        batches = list(repo.lot_batches(conn, *lot, enterprise_id=enterprise_id))
        if not batches:
            return epcis.query_document([], now), None
    rows: dict[int, dict[str, Any]] = {}
    for batch_id in batches:  # a lot may be several batches (cases and items): one page of each, merged
        for row in lifecycle_repo.events(
            conn,
            serials=serials,
            batch_id=batch_id,
            enterprise_id=enterprise_id,
            since=q.ge_time,
            until=q.lt_time,
            types=q.event_types,
            biz_steps=q.biz_steps,
            actions=q.actions,
            after=q.after or 0,
            limit=q.limit + 1,
        ):
            rows[int(row["id"])] = row
    page = [rows[i] for i in sorted(rows)[: q.limit + 1]]
    more = len(page) > q.limit
    page = page[: q.limit]
    return epcis.query_document([stored_event(r) for r in page], now), int(page[-1]["id"]) if more else None


def get_event(conn: db.Conn, event_id: str, *, enterprise_id: int | None) -> dict[str, Any]:
    """One stored event by its EPCIS eventID; errors.NotFound when there is none (or it is another
    enterprise's)."""
    row = repo.event_by_event_id(conn, event_id)
    if row is None or (enterprise_id is not None and row["enterprise_id"] != enterprise_id):
        raise errors.NotFound(f"no event {event_id}")
    return stored_event(row)
