"""GS1 EPCIS 2.0 documents (JSON / JSON-LD): what verifier reads from a capture, and writes for a query.

Pure: values in, values out; no clock, no database, no Flask. GS1's published JSON schema
(`verifier/data/epcis/`, gs1/EPCIS at a pinned commit) is loaded and compiled once, lazily, by
jsonschema-rs.

- `parse_document(data)` validates an EPCISDocument against the schema and returns its events as
  `Event`s, or raises `DocumentError` listing every problem at once (nothing partial). verifier
  records ObjectEvent (ADD / OBSERVE / DELETE) and AggregationEvent (ADD / DELETE) with one of
  `BIZ_STEPS`; everything else is refused by name: the other event types, an AggregationEvent
  OBSERVE (GS1's own aggregation examples are OBSERVE at receiving: they are refused), a missing
  bizStep (except an AggregationEvent DELETE, an unpacking may omit it), class-level events with no
  EPCs (quantityList only), and corrections (`errorDeclaration`), which would otherwise count twice.
- CBV values are read in any of their spellings (`shipping`, `cbv:BizStep-shipping`,
  `https://ref.gs1.org/cbv/BizStep-shipping`, EPCIS 1.x `urn:epcglobal:cbv:bizstep:shipping`) and
  kept as the short name. GS1's 2.0 schema forbids the 1.x URN spelling; a known CBV value in it is
  read as its short name before validation, so 1.x-converted documents are accepted.
- Times are UTC text as `clock.utc_text` makes them (`2005-04-04T02:33:31.116+00:00`); an eventTime
  without an offset takes its eventTimeZoneOffset. The schema's `format`s are not asserted (that
  would depend on which optional packages are installed); eventTime is checked here instead.
- JSON is read strictly: UTF-8, no duplicate keys (two parsers could read two different events),
  no NaN or Infinity.
- `code_ref(uri, base_urls)` names the verifier code an EPC refers to: our compact URL (decoded,
  signature NOT checked: capture authenticates by token), a GS1 Digital Link URI on any host with
  AI 01 and 21 (and 10), an SGTIN URN with our 16-digit serial, or the printed 17-digit code.
- `party_key(uri)` turns a party or location (PGLN / SGLN URN, Digital Link 417 / 414, or
  `urn:verifier:dealer:<code>`) into a dealer key.
- `parse_query(args)` reads EPCIS 2.0 REST query parameters (pipe-delimited lists). verifier's
  meanings: MATCH_epc, MATCH_anyEPC and MATCH_parentID all match an event's EPCs or its parent
  (the trace of a code wants both); MATCH_epcClass names a lot (`.../01/<gtin>/10/<lot>` or an
  LGTIN URN) whose codes' events are wanted; nextPageToken is the decimal id after which the next
  page starts. Standard parameters verifier does not offer, and unknown ones, raise `QueryError`.
- `query_document(events, creation_date)` wraps stored events in an EPCISQueryDocument that
  validates against the same schema (`validate_document`); `creation_date` is an aware datetime
  (the adapter's `now`), written as `clock.utc_text` writes it.

Cost: jsonschema-rs checks GS1's schema at about 2 µs an event (jsonschema took 0.8-1 ms) and reading
the events some 20 µs more, so a document of `DEFAULT_MAX_EVENTS` (10,000) events parses in 0.2 s.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jsonschema_rs

from . import clock, codes, errors

SCHEMA_FILE = "EPCIS-JSON-Schema.json"
CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
SCHEMA_VERSION = "2.0"

SUPPORTED: dict[str, tuple[str, ...]] = {
    "ObjectEvent": ("ADD", "OBSERVE", "DELETE"),
    "AggregationEvent": ("ADD", "DELETE"),
}
BIZ_STEPS = ("commissioning", "packing", "unpacking", "shipping", "receiving", "retail_selling", "decommissioning")
EVENT_TYPES = ("ObjectEvent", "AggregationEvent", "TransactionEvent", "TransformationEvent", "AssociationEvent")
ACTIONS = ("ADD", "OBSERVE", "DELETE")

DEFAULT_MAX_EVENTS = 10_000
DEFAULT_PER_PAGE = 100
MAX_PER_PAGE = 1000
MAX_ERRORS = 1000  # a document of 10,000 bad events still gets an answer of bounded size
_ERRORS_PER_EVENT = 3  # schema errors shown for one event: the first few say what is wrong
_MESSAGE_CHARS = 300  # an anyOf message repeats the whole instance

# EventError codes (stable, for machines). Document level: index None.
NOT_JSON = "not-json"
NOT_A_DOCUMENT = "not-an-epcis-document"
TOO_MANY_EVENTS = "too-many-events"
TOO_MANY_ERRORS = "too-many-errors"
SCHEMA = "schema"
# Per event.
UNSUPPORTED_EVENT_TYPE = "unsupported-event-type"
UNSUPPORTED_ACTION = "unsupported-action"
UNSUPPORTED_BIZ_STEP = "unsupported-biz-step"
MISSING_BIZ_STEP = "missing-biz-step"
UNSUPPORTED_ERROR_DECLARATION = "unsupported-error-declaration"
NO_EPCS = "no-epcs"
MISSING_PARENT = "missing-parent"
BAD_EVENT_TIME = "bad-event-time"
BAD_URI = "bad-uri"
# An absolute URI (RFC 3986: a scheme, then printable ASCII without spaces), at most 2,000 characters.
_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,31}:[!-~]{1,2000}")
DUPLICATE_EVENT_ID = "duplicate-event-id"


@dataclass(frozen=True)
class EventError:
    """One problem of a document: in event `index` of its eventList, or of the document (None)."""

    index: int | None
    event_id: str | None
    code: str  # stable machine code, one of the constants above
    message: str


class DocumentError(errors.InvalidInput, ValueError):
    """An EPCIS document verifier does not record; `errors` lists every problem at once."""

    api_code = "events-refused"  # capture's answer too (verifier/capture.py): one shape for both

    def __init__(self, errors_: list[EventError]):
        first = errors_[0].message if errors_ else "invalid EPCIS document"
        more = f" (and {len(errors_) - 1} more)" if len(errors_) > 1 else ""
        super().__init__(first + more)
        self.errors = errors_


class QueryError(errors.InvalidInput, ValueError):
    """An EPCIS query parameter verifier cannot answer (EPCIS: QueryParameterException)."""


@dataclass(frozen=True)
class Event:
    """One captured event, as verifier records it."""

    index: int  # position in epcisBody.eventList
    event_id: str | None
    type: str  # "ObjectEvent" | "AggregationEvent"
    action: str  # ADD | OBSERVE | DELETE
    biz_step: str | None  # CBV short name ("shipping")
    disposition: str | None  # CBV short name ("in_transit"), or the URI of a non-CBV value as given
    event_time: str  # UTC, clock.utc_text
    epcs: tuple[str, ...]  # epcList (ObjectEvent) or childEPCs (AggregationEvent), as given
    parent: str | None  # parentID (AggregationEvent)
    read_point: str | None
    biz_location: str | None
    destination: str | None  # the owning_party entry of destinationList, else its first entry
    source: str | None  # likewise for sourceList
    raw: Mapping[str, Any]  # the event object as given


# --- the schema -------------------------------------------------------------------------------


@functools.cache
def _schema() -> dict[str, Any]:
    """GS1's schema, read from the package."""
    text = resources.files("verifier").joinpath("data/epcis", SCHEMA_FILE).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator() -> jsonschema_rs.Draft7Validator:
    """GS1's schema compiled once; `format`s not asserted (see the module docstring)."""
    return jsonschema_rs.Draft7Validator(_schema(), validate_formats=False)


@functools.cache
def _cbv_names(definition: str) -> frozenset[str]:
    """The CBV short names GS1's schema lists for `definition` (bizStep, disposition)."""
    names: set[str] = set()
    for option in _schema()["definitions"][definition]["anyOf"]:
        names.update(option.get("enum", ()))
    return frozenset(names)


_Error = jsonschema_rs.ValidationError
_BRANCHES = (jsonschema_rs.ValidationErrorKind.AnyOf, jsonschema_rs.ValidationErrorKind.OneOfNotValid)


def _branching(error: _Error) -> bool:
    return isinstance(error.kind, _BRANCHES)


def _schema_errors(doc: Mapping[str, Any], list_path: tuple[str, ...]) -> Iterator[EventError]:
    """Schema violations, each placed in its event when its path is inside the event list."""
    events = _event_list(doc, list_path)
    grouped: dict[int | None, list[_Error]] = {}
    for error in _validator().iter_errors(doc):
        grouped.setdefault(_index(list(error.instance_path), list_path), []).append(error)
    for index in sorted(grouped, key=lambda i: -1 if i is None else i):
        # An anyOf / oneOf failure is usually the echo of a plainer error beside it: show that one.
        direct = [e for e in grouped[index] if not _branching(e)]
        chosen = sorted(
            direct or map(_leaf, grouped[index]), key=lambda e: (list(map(str, e.instance_path)), e.message)
        )
        event_id = _event_id(events[index]) if index is not None and events and index < len(events) else None
        messages = dict.fromkeys(_describe(e, list_path, index) for e in chosen)
        for message in list(messages)[:_ERRORS_PER_EVENT]:
            yield EventError(index, event_id, SCHEMA, message)


def _index(path: list[Any], list_path: tuple[str, ...]) -> int | None:
    """The event a path is inside of, or None."""
    inside = len(path) > len(list_path) and tuple(path[: len(list_path)]) == list_path
    return path[len(list_path)] if inside and isinstance(path[len(list_path)], int) else None


def _leaf(error: _Error) -> _Error:
    """The most specific error under an anyOf / oneOf failure, which otherwise just says 'not valid'."""
    while _branching(error):
        found = [e for branch in getattr(error.kind, "context", None) or () for e in branch]
        if not found:
            break
        # As jsonschema's best_match: the error deepest in the instance says the most, and a nested
        # anyOf / oneOf is opened in turn.
        error = max(found, key=lambda e: (len(e.instance_path), _branching(e)))
    return error


def _describe(error: _Error, list_path: tuple[str, ...], index: int | None) -> str:
    path = list(error.instance_path)
    inner = path[len(list_path) + 1 :] if index is not None else path
    where = "/" + "/".join(map(str, inner)) if inner else "the event" if index is not None else "the document"
    message = str(error.message)
    if len(message) > _MESSAGE_CHARS:
        message = message[: _MESSAGE_CHARS - 1] + "…"
    return f"{where}: {message}"


def validate_document(doc: Mapping[str, Any]) -> list[EventError]:
    """The schema violations of an EPCISDocument or EPCISQueryDocument (empty: it is valid)."""
    return list(_schema_errors(doc, _list_path(doc)))


def _list_path(doc: Mapping[str, Any]) -> tuple[str, ...]:
    if isinstance(doc, Mapping) and doc.get("type") == "EPCISQueryDocument":
        return ("epcisBody", "queryResults", "resultsBody", "eventList")
    return ("epcisBody", "eventList")


def _event_list(doc: Any, path: tuple[str, ...]) -> list[Any] | None:
    for key in path:
        if not isinstance(doc, Mapping):
            return None
        doc = doc.get(key)
    return doc if isinstance(doc, list) else None


def _event_id(event: Any) -> str | None:
    value = event.get("eventID") if isinstance(event, Mapping) else None
    return value if isinstance(value, str) else None


# --- CBV values ---------------------------------------------------------------------------------


def _cbv_short(value: Any, web: str, urn: str) -> Any:
    """A CBV value's short name from any of its spellings; anything else unchanged."""
    if not isinstance(value, str):
        return value
    for prefix in (f"urn:epcglobal:cbv:{urn}:", f"https://ref.gs1.org/cbv/{web}-", f"http://ref.gs1.org/cbv/{web}-"):
        if value.startswith(prefix):
            return value[len(prefix) :]
    if value.startswith(f"cbv:{web}-"):
        return value[len(web) + 5 :]
    return value


def _biz_step(value: Any) -> Any:
    return _cbv_short(value, "BizStep", "bizstep")


def _disposition(value: Any) -> Any:
    return _cbv_short(value, "Disp", "disp")


def _with_cbv_names(doc: Mapping[str, Any], events: list[Any]) -> Mapping[str, Any]:
    """The document with 1.x URN spellings of known CBV values as short names (GS1's 2.0 schema refuses them)."""
    steps, dispositions = _cbv_names("bizStep"), _cbv_names("disposition")
    changed = False
    out = []
    for event in events:
        if isinstance(event, Mapping):
            step, disp = event.get("bizStep"), event.get("disposition")
            new_step, new_disp = _biz_step(step), _disposition(disp)
            fix: dict[str, Any] = {}
            if new_step != step and new_step in steps:
                fix["bizStep"] = new_step
            if new_disp != disp and new_disp in dispositions:
                fix["disposition"] = new_disp
            if fix:
                event, changed = {**event, **fix}, True
        out.append(event)
    if not changed:
        return doc
    return {**doc, "epcisBody": {**doc["epcisBody"], "eventList": out}}


# --- times ----------------------------------------------------------------------------------------

_TIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,12}))?([Zz]|[+-]\d{2}:\d{2})?",
    re.ASCII,
)
_OFFSET_RE = re.compile(r"([+-])(\d{2}):(\d{2})", re.ASCII)


def _offset(text: str) -> dt.timezone:
    if text in ("Z", "z"):
        return dt.UTC
    m = _OFFSET_RE.fullmatch(text)
    if not m or int(m.group(3)) > 59 or int(m.group(2)) * 60 + int(m.group(3)) > 14 * 60:
        raise ValueError(f"{text!r} is not a time zone offset (+hh:mm, at most 14:00)")
    minutes = int(m.group(2)) * 60 + int(m.group(3))
    return dt.timezone(dt.timedelta(minutes=-minutes if m.group(1) == "-" else minutes))


def utc_time(text: str, zone_offset: str | None = None) -> str:
    """An RFC 3339 time as UTC text (`clock.utc_text`); without an offset, `zone_offset` applies."""
    m = _TIME_RE.fullmatch(text) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"{text!r} is not an RFC 3339 date-time")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    micro = int((m.group(7) or "0")[:6].ljust(6, "0"))
    if m.group(8) is not None:
        zone = _offset(m.group(8))
    elif zone_offset is not None:
        zone = _offset(zone_offset)
    else:
        raise ValueError(f"{text!r} has no time zone offset")
    try:
        moment = dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=zone)
        return clock.utc_text(moment)
    except (ValueError, OverflowError):
        raise ValueError(f"{text!r} is not a calendar time") from None


# --- reading a document -------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} is given twice in one object")
        out[key] = value
    return out


def _load(data: bytes | str) -> Any:
    text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
    return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)


_JSON_NAMES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def _document_error(code: str, message: str) -> DocumentError:
    return DocumentError([EventError(None, None, code, message)])


def parse_document(data: bytes | str | Mapping[str, Any], max_events: int = DEFAULT_MAX_EVENTS) -> list[Event]:
    """The events of an EPCIS 2.0 document, or DocumentError with every problem it has."""
    if isinstance(data, Mapping):
        doc: Any = data
    else:
        try:
            doc = _load(data)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise _document_error(NOT_JSON, f"not a JSON document: {exc}") from None
    if not isinstance(doc, Mapping) or doc.get("type") != "EPCISDocument":
        what = repr(doc.get("type")) if isinstance(doc, Mapping) else f"a JSON {_JSON_NAMES.get(type(doc), 'value')}"
        raise _document_error(NOT_A_DOCUMENT, f"expected an EPCISDocument, not {what}")
    events = _event_list(doc, ("epcisBody", "eventList"))
    if events is not None and len(events) > max_events:
        raise _document_error(TOO_MANY_EVENTS, f"{len(events)} events: send at most {max_events} a document")
    checked = _with_cbv_names(doc, events) if events is not None else doc
    problems = list(_schema_errors(checked, ("epcisBody", "eventList")))
    if any(p.index is None for p in problems) or events is None:
        raise DocumentError(bounded_errors(problems))
    schema_bad = {p.index for p in problems}
    by_index: dict[int, list[EventError]] = {}
    for p in problems:
        if p.index is not None:
            by_index.setdefault(p.index, []).append(p)
    out: list[Event] = []
    seen_ids: dict[str, int] = {}
    found: list[EventError] = []
    for index, event in enumerate(events):
        event_id = _event_id(event)
        kind = event.get("type") if isinstance(event, Mapping) else None
        if not isinstance(kind, str) or kind not in SUPPORTED:
            found.append(EventError(index, event_id, UNSUPPORTED_EVENT_TYPE, _unsupported_type(kind)))
            continue
        if index in schema_bad:
            found.extend(by_index[index])
            continue
        if event_id is not None:
            if event_id in seen_ids:
                found.append(
                    EventError(
                        index, event_id, DUPLICATE_EVENT_ID, f"eventID {event_id} is also event {seen_ids[event_id]}"
                    )
                )
                continue
            seen_ids[event_id] = index
        result = _read_event(index, event)
        if isinstance(result, Event):
            out.append(result)
        else:
            found.extend(result)
    if found:
        raise DocumentError(bounded_errors(found))
    return out


def bounded_errors(found: list[EventError]) -> list[EventError]:
    """At most MAX_ERRORS of `found`, then one saying how many more there were."""
    if len(found) <= MAX_ERRORS:
        return found
    rest = len(found) - MAX_ERRORS
    return found[:MAX_ERRORS] + [EventError(None, None, TOO_MANY_ERRORS, f"{rest} more errors not shown")]


def _unsupported_type(kind: Any) -> str:
    recorded = " and ".join(SUPPORTED)
    if kind is None or not isinstance(kind, str):
        return f"an event without a type name is not supported: verifier records {recorded}"
    return f"{kind} is not supported: verifier records {recorded}"


def _read_event(index: int, event: Mapping[str, Any]) -> Event | list[EventError]:
    """One schema-valid event of a supported type as an Event, or what verifier refuses in it."""
    event_id = _event_id(event)
    kind: str = event["type"]
    action: str = event["action"]
    found: list[EventError] = []

    def refuse(code: str, message: str) -> None:
        found.append(EventError(index, event_id, code, message))

    if action not in SUPPORTED[kind]:
        refuse(
            UNSUPPORTED_ACTION,
            f"{kind} {action} is not supported: verifier records {kind} {' / '.join(SUPPORTED[kind])}",
        )
    step = _biz_step(event.get("bizStep"))
    if step is None:
        if not (kind == "AggregationEvent" and action == "DELETE"):
            refuse(MISSING_BIZ_STEP, f"the bizStep is missing: verifier records one of {', '.join(BIZ_STEPS)}")
    elif step not in BIZ_STEPS:
        refuse(UNSUPPORTED_BIZ_STEP, f"bizStep {step} is not supported: verifier records {', '.join(BIZ_STEPS)}")
    if "errorDeclaration" in event:
        refuse(
            UNSUPPORTED_ERROR_DECLARATION,
            "corrections (errorDeclaration) are not supported: capture a new event instead",
        )
    epcs = tuple(event.get("epcList" if kind == "ObjectEvent" else "childEPCs") or ())
    parent = event.get("parentID")
    if not epcs and not (kind == "AggregationEvent" and action == "DELETE"):
        field = "epcList" if kind == "ObjectEvent" else "childEPCs"
        refuse(NO_EPCS, f"{field} is empty: verifier records events of individual codes, not quantities of a class")
    if kind == "AggregationEvent" and parent is None:
        refuse(MISSING_PARENT, f"an AggregationEvent {action} needs the parentID of the case")
    try:
        event_time = utc_time(event["eventTime"], event.get("eventTimeZoneOffset"))
    except ValueError as exc:
        refuse(BAD_EVENT_TIME, f"eventTime: {exc}")
        event_time = ""
    # The schema's "format: uri" is not checked by the validator (formats are off): these are.
    disposition = _disposition(event.get("disposition"))
    places = {
        "eventID": event.get("eventID"),
        "readPoint.id": (event.get("readPoint") or {}).get("id"),
        "bizLocation.id": (event.get("bizLocation") or {}).get("id"),
        "disposition": disposition if disposition not in _cbv_names("disposition") else None,
    }
    for name, value in places.items():
        if value is not None and not (isinstance(value, str) and _URI_RE.fullmatch(value)):
            refuse(BAD_URI, f"{name} is a URI (such as urn:epc:id:sgln:0614141.00777.0), not {str(value)[:40]!r}")
    if found:
        return found
    return Event(
        index=index,
        event_id=event_id,
        type=kind,
        action=action,
        biz_step=step,
        disposition=disposition,
        event_time=event_time,
        epcs=epcs,
        parent=parent,
        read_point=(event.get("readPoint") or {}).get("id"),
        biz_location=(event.get("bizLocation") or {}).get("id"),
        destination=_party(event.get("destinationList"), "destination"),
        source=_party(event.get("sourceList"), "source"),
        raw=event,
    )


def _party(entries: Any, field: str) -> str | None:
    """The owning party of a source or destination list, else its first entry."""
    if not entries:
        return None
    for entry in entries:
        if _cbv_short(entry.get("type"), "SDT", "sdt") == "owning_party":
            return str(entry[field])
    return str(entries[0][field])


# --- the codes and parties events name ----------------------------------------------------------


@dataclass(frozen=True)
class CodeRef:
    """The verifier code an EPC names: its serial, and the GTIN and lot when the EPC carries them."""

    serial: int
    gtin: str | None
    lot: str | None
    form: str  # codes.FORM_COMPACT | codes.FORM_GS1
    batch: int | None = None  # a compact label URL's batch number, its mark and key id: what it claims of its batch
    mark: str | None = None
    kid: str | None = None


# Digital Link: any host, any base path; AI 10 optional; the query (17, 91, 8030, others) is ignored.
_DL_CODE_RE = re.compile(r"https?://[^/?#]+(?:/[^?#]*)?/01/([^/?#]*)(?:/10/([^/?#]*))?/21/([^/?#]*)(?:\?[^#]*)?", re.I)
_SGTIN_RE = re.compile(r"urn:epc:id:sgtin:([0-9]{6,12})\.([0-9]{1,7})\.([^.]+)", re.ASCII)


def _malformed(detail: str, message: str) -> codes.InvalidCode:
    return codes.InvalidCode(codes.MALFORMED, detail, message)


def _serial(text: str) -> int:
    if len(text) != codes.SERIAL_DIGITS or not (text.isascii() and text.isdigit()):
        raise _malformed("bad-serial", f"a verifier serial is {codes.SERIAL_DIGITS} digits, not {text!r}")
    return int(text)


def _sgtin_gtin(company: str, item: str) -> str:
    """The GTIN-14 of an SGTIN URN's company prefix and indicator + item reference."""
    if len(company) + len(item) != 13:
        raise _malformed("bad-gtin", "an SGTIN's company prefix and item reference have 13 digits")
    first13 = item[0] + company + item[1:]
    return first13 + str(codes.gtin_check_digit(first13))


def code_ref(uri: str, base_urls: Iterable[str]) -> CodeRef:
    """The code an EPC refers to (compact URL, Digital Link, SGTIN URN, printed code); InvalidCode if none."""
    if not isinstance(uri, str) or len(uri) > codes.MAX_INPUT_CHARS:
        raise _malformed("bad-length", "too long to name a code")
    text = uri.strip(" \t\r\n")
    # The URI forms first: a document of a million EPCs names them so, and NFKC costs 20 µs an EPC.
    m = _DL_CODE_RE.fullmatch(text)
    if m:
        gtin, lot, serial = m.groups()
        codes.validate_gtin(gtin)
        if lot is not None:
            codes.validate_lot(lot)
        return CodeRef(_serial(serial), gtin, lot, codes.FORM_GS1)
    m = _SGTIN_RE.fullmatch(text)
    if m:
        gtin = codes.validate_gtin(_sgtin_gtin(m.group(1), m.group(2)))
        return CodeRef(_serial(m.group(3)), gtin, None, codes.FORM_GS1)
    typed = codes.normalize_typed(text)
    if typed.isascii() and typed.isdigit():
        return CodeRef(codes.parse_human_code(text), None, None, codes.FORM_COMPACT)
    if text.lower().startswith("urn:"):
        raise _malformed("bad-prefix", "not a verifier code's EPC")
    code = codes.decode(text, base_urls)  # no signature check: capture is authenticated by its token
    # compact: a GS1 URL matched the rule above
    return CodeRef(code.serial, code.gtin, code.lot, code.form, code.batch, code.mark.slug, code.kid_hex)


_PGLN_RE = re.compile(r"urn:epc:id:pgln:([0-9]{6,12})\.([0-9]{0,6})", re.ASCII)
_SGLN_RE = re.compile(r"urn:epc:id:sgln:([0-9]{6,12})\.([0-9]{0,6})\.[!-~]{1,20}", re.ASCII)
_DL_GLN_RE = re.compile(r"https?://[^/?#]+(?:/[^?#]*)?/(?:417|414)/([0-9]{13})(?:/254/[^/?#]+)?/?(?:\?[^#]*)?", re.I)
_DEALER_RE = re.compile(r"urn:verifier:dealer:([A-Za-z0-9._-]{1,64})", re.ASCII)


def gln_check_digit(first12: str) -> int:
    """The GS1 mod-10 check digit of a GLN's first 12 digits."""
    return codes.gtin_check_digit("0" + first12)  # a leading zero weighs nothing: same weights from the right


def party_key(uri: str) -> str | None:
    """A dealer reference: "gln:<13 digits>" for a PGLN / SGLN / Digital Link GLN, "dealer:<code>", else None."""
    m = _PGLN_RE.fullmatch(uri) or _SGLN_RE.fullmatch(uri)
    if m:
        first12 = m.group(1) + m.group(2)
        return f"gln:{first12}{gln_check_digit(first12)}" if len(first12) == 12 else None
    m = _DL_GLN_RE.fullmatch(uri)
    if m:
        gln = m.group(1)
        return f"gln:{gln}" if gln_check_digit(gln[:12]) == int(gln[12]) else None
    m = _DEALER_RE.fullmatch(uri)
    return f"dealer:{m.group(1)}" if m else None


# --- queries ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """An EPCIS events query, as verifier answers it (see the module docstring for the meanings)."""

    epcs: tuple[str, ...] = ()  # MATCH_epc | MATCH_anyEPC | MATCH_parentID, as given
    lot_class: str | None = None  # MATCH_epcClass as https://id.gs1.org/01/<gtin14>/10/<lot>
    ge_time: str | None = None  # GE_eventTime, UTC text
    lt_time: str | None = None  # LT_eventTime, UTC text
    event_types: tuple[str, ...] = ()
    biz_steps: tuple[str, ...] = ()  # short names
    actions: tuple[str, ...] = ()
    limit: int = DEFAULT_PER_PAGE  # perPage
    after: int | None = None  # nextPageToken

    def lot_key(self) -> tuple[str, str] | None:
        """(GTIN-14, lot) of `lot_class`."""
        if self.lot_class is None:
            return None
        gtin, _, lot = self.lot_class.removeprefix("https://id.gs1.org/01/").partition("/10/")
        return gtin, lot


_QUERY_PARAMS = (
    "MATCH_epc",
    "MATCH_anyEPC",
    "MATCH_parentID",
    "MATCH_epcClass",
    "GE_eventTime",
    "LT_eventTime",
    "eventType",
    "EQ_bizStep",
    "EQ_action",
    "perPage",
    "nextPageToken",
)
# Standard EPCIS 2.0 parameters verifier does not answer: named as such, not as unknown.
_STANDARD_PARAMS = re.compile(
    r"(GE|LT)_recordTime|EQ_(disposition|readPoint|bizLocation|transformationID|eventID|errorReason|"
    r"correctiveEventID|quantity|type|deviceID|dataProcessingMethod|microorganism|chemicalSubstance|bizRules|"
    r"stringValue|hexBinaryValue|uriValue|booleanValue|persistentDisposition_set|persistentDisposition_unset)|"
    r"WD_(readPoint|bizLocation)|MATCH_(inputEPC|outputEPC|inputEPCClass|outputEPCClass|anyEPCClass)|"
    r"(GT|GE|LT|LE)_quantity|EXISTS_errorDeclaration|(GE|LT)_errorDeclarationTime|orderBy|orderDirection|"
    r"eventCountLimit|maxEventCount|(GE|LT)_(startTime|endTime)|(EQ|GT|GE|LT|LE)_(INNER_)?[A-Za-z_]+"
)
_DL_LOT_RE = re.compile(r"https?://[^/?#]+(?:/[^?#]*)?/01/([0-9]{14})/10/([^/?#]+)/?", re.I)
_LGTIN_RE = re.compile(r"urn:epc:class:lgtin:([0-9]{6,12})\.([0-9]{1,7})\.([^.]+)", re.ASCII)
_TOKEN_RE = re.compile(r"[0-9]{1,18}", re.ASCII)
_SPACED_OFFSET_RE = re.compile(r"(.*[0-9])[ ]([0-9]{2}:[0-9]{2})")  # "+hh:mm" arrives as " hh:mm" when not %-escaped


def _values(name: str, value: str) -> tuple[str, ...]:
    """A pipe-delimited list (the REST binding's style), without empty or repeated items."""
    items = tuple(dict.fromkeys(part.strip() for part in value.split("|")))
    if not items or any(not item for item in items):
        raise QueryError(f"{name}: give one or more values separated by |")
    return items


def _query_time(name: str, value: str) -> str:
    m = _SPACED_OFFSET_RE.fullmatch(value.strip())
    text = f"{m.group(1)}+{m.group(2)}" if m else value.strip()
    try:
        return utc_time(text)  # no zone_offset: a query time without its offset is ambiguous
    except ValueError as exc:
        raise QueryError(f"{name}: {exc}; expected a date-time such as 2026-11-22T08:00:00Z") from None


def _lot_class(value: str) -> str:
    m = _DL_LOT_RE.fullmatch(value.strip())
    try:
        if m:
            gtin, lot = codes.validate_gtin(m.group(1)), codes.validate_lot(m.group(2))
        else:
            m = _LGTIN_RE.fullmatch(value.strip())
            if not m:
                raise QueryError("MATCH_epcClass: expected a lot, https://id.gs1.org/01/<GTIN>/10/<lot>")
            gtin, lot = codes.validate_gtin(_sgtin_gtin(m.group(1), m.group(2))), codes.validate_lot(m.group(3))
    except codes.InvalidCode as exc:
        raise QueryError(f"MATCH_epcClass: {exc}") from None
    return f"https://id.gs1.org/01/{gtin}/10/{lot}"


def parse_query(args: Mapping[str, str]) -> Query:
    """A Query from EPCIS 2.0 REST query parameters; QueryError names the first one it cannot take."""
    for name in args:
        if name not in _QUERY_PARAMS:
            if _STANDARD_PARAMS.fullmatch(name):
                raise QueryError(f"{name} is not supported: verifier answers {', '.join(_QUERY_PARAMS)}")
            raise QueryError(f"unknown query parameter {name!r}")
    epcs: tuple[str, ...] = ()
    for name in ("MATCH_epc", "MATCH_anyEPC", "MATCH_parentID"):
        if name in args:
            epcs += tuple(v for v in _values(name, args[name]) if v not in epcs)
    lot_class = None
    if "MATCH_epcClass" in args:
        classes = _values("MATCH_epcClass", args["MATCH_epcClass"])
        if len(classes) > 1:
            raise QueryError("MATCH_epcClass: verifier answers for one lot at a time")
        lot_class = _lot_class(classes[0])
    ge = _query_time("GE_eventTime", args["GE_eventTime"]) if "GE_eventTime" in args else None
    lt = _query_time("LT_eventTime", args["LT_eventTime"]) if "LT_eventTime" in args else None
    types = _values("eventType", args["eventType"]) if "eventType" in args else ()
    for kind in types:
        if kind not in SUPPORTED:
            raise QueryError(f"eventType {kind} is not recorded: verifier records {' and '.join(SUPPORTED)}")
    steps = tuple(_biz_step(s) for s in _values("EQ_bizStep", args["EQ_bizStep"])) if "EQ_bizStep" in args else ()
    for step in steps:
        if step not in BIZ_STEPS:
            raise QueryError(f"EQ_bizStep {step} is not recorded: verifier records {', '.join(BIZ_STEPS)}")
    actions = _values("EQ_action", args["EQ_action"]) if "EQ_action" in args else ()
    for action in actions:
        if action not in ACTIONS:
            raise QueryError(f"EQ_action {action}: an action is ADD, OBSERVE or DELETE")
    limit = DEFAULT_PER_PAGE
    if "perPage" in args:
        text = args["perPage"].strip()
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_PER_PAGE:
            raise QueryError(f"perPage: a number of events from 1 to {MAX_PER_PAGE}")
        limit = int(text)
    after = None
    if "nextPageToken" in args:
        if not _TOKEN_RE.fullmatch(args["nextPageToken"].strip()):
            raise QueryError("nextPageToken: not a token this server gave")
        after = int(args["nextPageToken"].strip())
    return Query(epcs, lot_class, ge, lt, types, tuple(dict.fromkeys(steps)), actions, limit, after)


def query_document(
    events: Iterable[Mapping[str, Any]], creation_date: dt.datetime, query_name: str = "verifier"
) -> dict[str, Any]:
    """An EPCISQueryDocument (JSON-LD) whose results are `events`, the stored event objects."""
    return {
        "@context": [CONTEXT],
        "type": "EPCISQueryDocument",
        "schemaVersion": SCHEMA_VERSION,
        "creationDate": clock.utc_text(creation_date),
        "epcisBody": {
            "queryResults": {
                "queryName": query_name,
                "resultsBody": {"eventList": [dict(event) for event in events]},
            }
        },
    }
