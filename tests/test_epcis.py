"""EPCIS 2.0 documents: GS1's examples, what verifier records and refuses, code and party references, queries."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest

from verifier import codes, epcis

VECTORS = Path(__file__).parent / "vectors_epcis"
BASE = "HTTPS://VERIFY.EXAMPLE.CN/"
MARK = codes.mark_by_slug("traceability")
SERIAL = 1234567890123456
NOW = dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.UTC)


def gs1(name: str) -> dict:
    """One of GS1's example documents, as shipped in tests/vectors_epcis/."""
    return json.loads((VECTORS / name).read_text("utf-8"))


def event(**fields) -> dict:
    """A valid ObjectEvent verifier records; `fields` replace or (None) remove its fields."""
    out = {
        "type": "ObjectEvent",
        "eventID": "urn:uuid:7c1ba2a4-0d3f-4d5c-9a8e-000000000001",
        "action": "OBSERVE",
        "bizStep": "shipping",
        "disposition": "in_transit",
        "eventTime": "2026-11-22T16:00:00.000+08:00",
        "eventTimeZoneOffset": "+08:00",
        "epcList": ["https://id.gs1.org/01/09506000134352/10/LOT-7/21/1234567890123456"],
        "readPoint": {"id": "urn:epc:id:sgln:0614141.12345.400"},
    }
    out.update(fields)
    return {k: v for k, v in out.items() if v is not None}


def document(*events: dict) -> dict:
    return {
        "@context": [epcis.CONTEXT],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-11-22T08:00:00.000Z",
        "epcisBody": {"eventList": list(events)},
    }


def numbered(count: int, **fields) -> list[dict]:
    return [event(eventID=f"urn:uuid:7c1ba2a4-0d3f-4d5c-9a8e-{i:012d}", **fields) for i in range(count)]


def refusal(data, **kwargs) -> list[tuple[int | None, str]]:
    with pytest.raises(epcis.DocumentError) as caught:
        epcis.parse_document(data, **kwargs)
    assert caught.value.errors and str(caught.value)
    return [(e.index, e.code) for e in caught.value.errors]


# --- the shipped schema -----------------------------------------------------------------------


def test_gs1_schema_is_packaged_with_its_licence_and_every_gs1_example_validates():
    data = Path(epcis.__file__).parent / "data" / "epcis"
    assert (
        json.loads((data / epcis.SCHEMA_FILE).read_text())["$id"]
        == "https://gs1.github.io/EPCIS/EPCIS-JSON-Schema.json"
    )
    assert "GS1" in (data / "LICENSE-GS1.txt").read_text() and "2b888be" in (data / "README.md").read_text()
    for path in sorted(VECTORS.glob("*.jsonld")):
        assert epcis.validate_document(json.loads(path.read_text())) == [], path.name


def test_what_verifier_records_is_cbv_vocabulary():
    assert set(epcis.BIZ_STEPS) <= epcis._cbv_names("bizStep")
    assert set(epcis.SUPPORTED) <= set(epcis.EVENT_TYPES)
    assert all(set(actions) <= set(epcis.ACTIONS) for actions in epcis.SUPPORTED.values())


# --- GS1's examples ---------------------------------------------------------------------------


def test_gs1_object_event_example_9_6_1():
    first, second = epcis.parse_document((VECTORS / "Example_9.6.1-ObjectEvent.jsonld").read_bytes())
    assert first == epcis.Event(
        index=0,
        event_id="ni:///sha-256;df7bb3c352fef055578554f09f5e2aa41782150ced7bd0b8af24dd3ccb30ba69?ver=CBV2.0",
        type="ObjectEvent",
        action="OBSERVE",
        biz_step="shipping",
        disposition="in_transit",
        event_time="2005-04-04T02:33:31.116+00:00",
        epcs=("urn:epc:id:sgtin:0614141.107346.2017", "urn:epc:id:sgtin:0614141.107346.2018"),
        parent=None,
        read_point="urn:epc:id:sgln:0614141.07346.1234",
        biz_location=None,
        destination=None,
        source=None,
        raw=gs1("Example_9.6.1-ObjectEvent.jsonld")["epcisBody"]["eventList"][0],
    )
    assert (second.index, second.biz_step, second.disposition) == (1, "receiving", "in_progress")
    assert (second.event_time, second.epcs) == (
        "2005-04-05T02:33:31.116+00:00",
        ("urn:epc:id:sgtin:0614141.107346.2018",),
    )
    assert (second.read_point, second.biz_location) == (
        "urn:epc:id:sgln:0012345.11111.400",
        "urn:epc:id:sgln:0012345.11111.0",
    )
    assert second.raw["example:myField"] == "Example of a vendor/user extension"


def test_gs1_object_event_example_with_digital_link_ids():
    first, second = epcis.parse_document((VECTORS / "Example_9.6.1-ObjectEventWithDigitalLink.jsonld").read_text())
    assert first.epcs == (
        "https://id.gs1.org/01/70614141123451/21/2017",
        "https://id.gs1.org/01/70614141123451/21/2018",
    )
    assert (first.biz_step, second.biz_step, second.event_time) == (
        "shipping",
        "receiving",
        "2005-04-05T02:33:31.116+00:00",
    )


def test_gs1_object_event_with_every_field_once_its_correction_is_taken_out():
    doc = gs1("object_event_all_possible_fields.jsonld")
    del doc["epcisBody"]["eventList"][0]["errorDeclaration"]
    (only,) = epcis.parse_document(doc)
    assert (only.action, only.biz_step, only.event_time) == ("ADD", "receiving", "2005-04-05T02:33:31.116+00:00")
    assert only.epcs == ("urn:epc:id:sgtin:0614141.107346.2018",)
    assert only.source == "urn:epc:id:pgln:4012345.00225"  # owning_party, not the first entry (a location)
    assert only.destination == "urn:epc:id:pgln:0614141.00777"


def test_gs1_persistent_disposition_example_parties_once_its_inspection_is_taken_out():
    doc = gs1("PersistentDisposition-example.jsonld")
    doc["epcisBody"]["eventList"].pop()
    (only,) = epcis.parse_document(doc)
    assert (only.source, only.destination) == ("urn:epc:id:pgln:9520001.11111", "urn:epc:id:pgln:9520999.99999")
    assert len(only.epcs) == 10 and only.event_time == "2020-06-07T17:10:16.000+00:00"


def test_gs1_aggregation_example_as_packing_and_as_unpacking():
    packing = gs1("Example_9.6.3-AggregationEvent.jsonld")
    packing["epcisBody"]["eventList"][0].update(action="ADD", bizStep="packing")
    (packed,) = epcis.parse_document(packing)
    assert (packed.type, packed.action, packed.biz_step) == ("AggregationEvent", "ADD", "packing")
    assert packed.parent == "urn:epc:id:sscc:0614141.1234567890"
    assert packed.epcs == ("urn:epc:id:sgtin:0614141.107346.2017", "urn:epc:id:sgtin:0614141.107346.2018")
    assert (packed.read_point, packed.biz_location) == (
        "urn:epc:id:sgln:0614141.00777.0",
        "urn:epc:id:sgln:0614141.00888.0",
    )
    assert packed.event_time == "2013-06-08T14:58:56.591+00:00"  # already UTC; the offset is the local zone

    unpacking = gs1("Example_9.6.3-AggregationEventWithDigitalLink.jsonld")
    unpacked_event = unpacking["epcisBody"]["eventList"][0]
    unpacked_event["action"] = "DELETE"
    for field in ("bizStep", "disposition", "childEPCs", "childQuantityList"):
        del unpacked_event[field]
    (unpacked,) = epcis.parse_document(unpacking)
    assert (unpacked.action, unpacked.biz_step, unpacked.epcs) == ("DELETE", None, ())  # all children leave the case


UNSUPPORTED_EXAMPLES = {
    "Example_9.6.4-TransformationEvent.jsonld": [(0, "unsupported-event-type")],
    "Example_9.6.4-TransformationEventWithDigitalLink.jsonld": [(0, "unsupported-event-type")],
    "AssociationEvent-a.jsonld": [(0, "unsupported-event-type")],
    "AssociationEvent-c.jsonld": [(0, "unsupported-event-type")],
    "Example-TransactionEvents-2020_07_03y.jsonld": [(0, "unsupported-event-type"), (1, "unsupported-event-type")],
    "transaction_event_all_possible_fields.jsonld": [(0, "unsupported-event-type")],
    "Example_9.6.3-AggregationEvent.jsonld": [(0, "unsupported-action")],  # OBSERVE
    "Example_9.6.3-AggregationEventWithDigitalLink.jsonld": [(0, "unsupported-action")],
    "aggregation_event_all_possible_fields.jsonld": [(0, "unsupported-action"), (0, "unsupported-error-declaration")],
    "Example_9.6.2-ObjectEvent.jsonld": [(0, "no-epcs")],  # a quantity of a class, no codes
    "Example_9.6.2-ObjectEventWithDigitalLink.jsonld": [(0, "no-epcs")],
    "SensorDataExample8.jsonld": [(0, "no-epcs")],
    "Example_9.6.1-ObjectEvent-with-error-declaration.jsonld": [(0, "unsupported-error-declaration")],
    "object_event_all_possible_fields.jsonld": [(0, "unsupported-error-declaration")],
    "PersistentDisposition-example.jsonld": [(1, "unsupported-biz-step")],  # inspecting; event 0 is fine
    "EPCISQueryDocument.jsonld": [(None, "not-an-epcis-document")],
}


@pytest.mark.parametrize("name", sorted(UNSUPPORTED_EXAMPLES))
def test_gs1_examples_verifier_does_not_record_are_refused_with_their_reason(name):
    assert refusal((VECTORS / name).read_bytes()) == UNSUPPORTED_EXAMPLES[name]


def test_every_shipped_gs1_example_is_either_parsed_or_refused_by_name():
    parsed = {"Example_9.6.1-ObjectEvent.jsonld", "Example_9.6.1-ObjectEventWithDigitalLink.jsonld"}
    assert {p.name for p in VECTORS.glob("*.jsonld")} == parsed | set(UNSUPPORTED_EXAMPLES)


def test_refusal_reasons_name_what_verifier_records():
    with pytest.raises(epcis.DocumentError) as caught:
        epcis.parse_document((VECTORS / "Example_9.6.4-TransformationEvent.jsonld").read_bytes())
    (error,) = caught.value.errors
    assert error.message == "TransformationEvent is not supported: verifier records ObjectEvent and AggregationEvent"
    assert error.event_id == gs1("Example_9.6.4-TransformationEvent.jsonld")["epcisBody"]["eventList"][0]["eventID"]


# --- documents verifier refuses -------------------------------------------------------------

SCHEMA_BAD_EVENT_3_OF_5 = document(*numbered(5))
SCHEMA_BAD_EVENT_3_OF_5["epcisBody"]["eventList"][2]["eventTimeZoneOffset"] = "+25:00"

INVALID = {
    "not JSON": (b"{not json", [(None, "not-json")]),
    "not UTF-8": (b'{"type": "EPCISDocument\xff"}', [(None, "not-json")]),
    "NaN is not JSON": ('{"type": "EPCISDocument", "n": NaN}', [(None, "not-json")]),
    "a key twice": ('{"type": "EPCISDocument", "type": "EPCISDocument"}', [(None, "not-json")]),
    "a JSON array": (b"[]", [(None, "not-an-epcis-document")]),
    "wrong document type": ({**document(event()), "type": "EPCISQueryDocument"}, [(None, "not-an-epcis-document")]),
    "a bare event": (event(), [(None, "not-an-epcis-document")]),
    "no epcisBody": ({k: v for k, v in document().items() if k != "epcisBody"}, [(None, "schema")]),
    "no schemaVersion": ({k: v for k, v in document(event()).items() if k != "schemaVersion"}, [(None, "schema")]),
    "missing eventTime": (document(event(), event(eventTime=None, eventID="urn:uuid:b")), [(1, "schema")]),
    "bad action": (document(event(action="PACK")), [(0, "schema")]),
    "schema violation in event 3 of 5": (SCHEMA_BAD_EVENT_3_OF_5, [(2, "schema")]),
    "eventTime not a time": (document(event(eventTime="yesterday")), [(0, "bad-event-time")]),
    "eventTime not a calendar date": (document(event(eventTime="2026-02-30T10:00:00Z")), [(0, "bad-event-time")]),
    "unsupported bizStep": (document(event(bizStep="inspecting")), [(0, "unsupported-biz-step")]),
    "a custom bizStep": (document(event(bizStep="https://example.cn/bizstep/tasting")), [(0, "unsupported-biz-step")]),
    "missing bizStep": (document(event(bizStep=None)), [(0, "missing-biz-step")]),
    "ObjectEvent without EPCs": (document(event(epcList=[])), [(0, "no-epcs")]),
    "aggregation OBSERVE": (
        document(event(type="AggregationEvent", epcList=None, childEPCs=["urn:x:1"], parentID="urn:x:case")),
        [(0, "unsupported-action")],
    ),
    "aggregation ADD without a parent": (
        document(event(type="AggregationEvent", action="ADD", bizStep="packing", epcList=None, childEPCs=["urn:x:1"])),
        [(0, "missing-parent")],
    ),
    "aggregation ADD without a bizStep": (
        document(
            event(type="AggregationEvent", action="ADD", bizStep=None, epcList=None, childEPCs=["a:1"], parentID="a:c")
        ),
        [(0, "missing-biz-step")],
    ),
    "an extension event type": (
        document({"type": "example:CustomEvent", "eventTime": "2026-11-22T08:00:00Z", "eventTimeZoneOffset": "+00:00"}),
        [(0, "unsupported-event-type")],
    ),
    "an event without a type": (document({"eventTime": "2026-11-22T08:00:00Z"}), [(0, "unsupported-event-type")]),
    "an event whose type is a list": (document(event(type=["ObjectEvent"])), [(0, "unsupported-event-type")]),
    "an event that is a number": (document(7), [(0, "unsupported-event-type")]),
    "one eventID twice": (document(event(), event()), [(1, "duplicate-event-id")]),
    "an eventID that is not a URI": (document(event(eventID="¹²³")), [(0, "bad-uri")]),
    "a readPoint that is not a URI": (document(event(readPoint={"id": "the back door"})), [(0, "bad-uri")]),
    "a disposition neither CBV nor a URI": (document(event(disposition="１２")), [(0, "bad-uri")]),
    "every problem at once": (
        document(event(bizStep="inspecting"), event(eventID="urn:uuid:ok"), event(eventID="urn:uuid:c", action="x")),
        [(0, "unsupported-biz-step"), (2, "schema")],
    ),
    "two problems of one event": (
        document(event(bizStep="inspecting", epcList=[], eventTime="2026-11-22T08:00:00")),  # no offset: takes +08:00
        [(0, "unsupported-biz-step"), (0, "no-epcs")],
    ),
}


@pytest.mark.parametrize("case", INVALID)
def test_invalid_documents_give_errors_per_event(case):
    data, expected = INVALID[case]
    if isinstance(data, dict):
        data = json.dumps(data)
    assert refusal(data) == expected


def test_too_many_events_is_one_document_error():
    assert refusal(document(*numbered(3)), max_events=2) == [(None, "too-many-events")]
    assert len(epcis.parse_document(document(*numbered(3)), max_events=3)) == 3


def test_schema_errors_say_where_in_the_event():
    with pytest.raises(epcis.DocumentError) as caught:
        epcis.parse_document(SCHEMA_BAD_EVENT_3_OF_5)
    (error,) = caught.value.errors
    assert error.event_id == "urn:uuid:7c1ba2a4-0d3f-4d5c-9a8e-000000000002"
    assert error.message.startswith('/eventTimeZoneOffset: "+25:00" does not match')


def test_errors_are_bounded(monkeypatch):
    monkeypatch.setattr(epcis, "MAX_ERRORS", 2)
    assert refusal(document(*numbered(4, bizStep="inspecting"))) == [
        (0, "unsupported-biz-step"),
        (1, "unsupported-biz-step"),
        (None, "too-many-errors"),
    ]


# --- reading values ---------------------------------------------------------------------------

SPELLINGS = {
    "short name": ("shipping", "in_transit"),
    "compact IRI": ("cbv:BizStep-shipping", "cbv:Disp-in_transit"),
    "web URI": ("https://ref.gs1.org/cbv/BizStep-shipping", "https://ref.gs1.org/cbv/Disp-in_transit"),
    "EPCIS 1.x URN": ("urn:epcglobal:cbv:bizstep:shipping", "urn:epcglobal:cbv:disp:in_transit"),
}


@pytest.mark.parametrize("case", SPELLINGS)
def test_cbv_values_in_any_spelling_are_read_as_short_names(case):
    step, disposition = SPELLINGS[case]
    (only,) = epcis.parse_document(document(event(bizStep=step, disposition=disposition)))
    assert (only.biz_step, only.disposition) == ("shipping", "in_transit")


def test_a_1x_urn_of_an_unknown_cbv_value_is_still_a_schema_error():
    assert refusal(document(event(bizStep="urn:epcglobal:cbv:bizstep:teleporting"))) == [(0, "schema")]


TIMES = {
    "offset": ("2005-04-03T20:33:31.116000-06:00", None, "2005-04-04T02:33:31.116+00:00"),
    "Z": ("2013-06-08T14:58:56.591Z", "+02:00", "2013-06-08T14:58:56.591+00:00"),
    "no fraction": ("2026-11-22T16:00:00+08:00", None, "2026-11-22T08:00:00.000+00:00"),
    "nanoseconds truncated": ("2026-11-22T08:00:00.123456789Z", None, "2026-11-22T08:00:00.123+00:00"),
    "no offset: the event's zone": ("2026-11-22T16:00:00", "+08:00", "2026-11-22T08:00:00.000+00:00"),
    "into the previous year": ("2027-01-01T05:00:00+14:00", None, "2026-12-31T15:00:00.000+00:00"),
}


@pytest.mark.parametrize("case", TIMES)
def test_event_times_as_utc_text(case):
    text, zone, expected = TIMES[case]
    assert epcis.utc_time(text, zone) == expected


@pytest.mark.parametrize(
    "text, zone",
    [
        ("2026-11-22 08:00:00Z", None),
        ("2026-11-22T08:00:00", None),
        ("2026-13-01T08:00:00Z", None),
        ("", "+01:00"),
        ("2026-11-22T08:00:00", "+15:00"),
        ("2026-11-22T08:00:00+08:60", None),
    ],
    ids=["space", "no offset at all", "month 13", "empty", "offset too large", "minute 60"],
)
def test_bad_event_times(text, zone):
    with pytest.raises(ValueError):
        epcis.utc_time(text, zone)


def test_a_mapping_a_string_and_bytes_parse_alike():
    doc = document(event())
    assert (
        epcis.parse_document(doc)
        == epcis.parse_document(json.dumps(doc))
        == epcis.parse_document(json.dumps(doc).encode())
    )


def test_parsing_does_not_change_the_document():
    doc = document(event(bizStep="urn:epcglobal:cbv:bizstep:shipping"))
    before = copy.deepcopy(doc)
    (only,) = epcis.parse_document(doc)
    assert doc == before and only.raw["bizStep"] == "urn:epcglobal:cbv:bizstep:shipping"


# --- the codes events name ----------------------------------------------------------------------


@pytest.fixture
def compact_url(keypair):
    kid, private = keypair
    return codes.encode_url(codes.sign(codes.Code(codes.FORM_COMPACT, kid, MARK, SERIAL, batch=42), private), BASE)


@pytest.fixture
def gs1_url(keypair):
    kid, private = keypair
    code = codes.Code(codes.FORM_GS1, kid, MARK, SERIAL, gtin="09506000134352", lot="LOT-7", expiry="281130")
    return codes.encode_url(codes.sign(code, private), BASE)


COMPACT = epcis.CodeRef(SERIAL, None, None, codes.FORM_COMPACT)
WITH_LOT = epcis.CodeRef(SERIAL, "09506000134352", "LOT-7", codes.FORM_GS1)
NO_LOT = epcis.CodeRef(SERIAL, "09506000134352", None, codes.FORM_GS1)

CODE_REFS = {
    "compact URL": (lambda c, g: c, COMPACT),
    "compact URL in lower case": (lambda c, g: c.lower(), COMPACT),
    "compact URL with a forged signature": (lambda c, g: c[:-8] + "AAAAAAAA", COMPACT),  # capture checks no signature
    "our signed GS1 URL": (lambda c, g: g, WITH_LOT),
    "Digital Link with lot": (
        lambda c, g: "https://id.gs1.org/01/09506000134352/10/LOT-7/21/1234567890123456",
        WITH_LOT,
    ),
    "Digital Link without lot": (lambda c, g: "https://id.gs1.org/01/09506000134352/21/1234567890123456", NO_LOT),
    "Digital Link, another host, a path and a query": (
        lambda c, g: "https://brand.example.com/dl/01/09506000134352/21/1234567890123456?17=281130&utm=x",
        NO_LOT,
    ),
    "SGTIN URN with our serial": (lambda c, g: "urn:epc:id:sgtin:9506000.013435.1234567890123456", NO_LOT),
    "printed code": (lambda c, g: codes.human_code(SERIAL), COMPACT),
    "printed code typed without spaces": (lambda c, g: codes.human_code(SERIAL).replace(" ", ""), COMPACT),
}


@pytest.mark.parametrize("case", CODE_REFS)
def test_code_refs(case, compact_url, gs1_url):
    make, expected = CODE_REFS[case]
    found = epcis.code_ref(make(compact_url, gs1_url), [BASE])
    assert dataclasses.replace(found, batch=None, mark=None, kid=None) == expected


def test_a_compact_label_url_says_what_it_claims_of_its_batch(compact_url, keypair):
    found = epcis.code_ref(compact_url, [BASE])
    assert (found.batch, found.mark, found.kid) == (42, MARK.slug, keypair[0].hex())


BAD_CODE_REFS = {
    "printed code with a bad check digit": (codes.human_code(SERIAL)[:-1] + "0", "bad-check-digit"),
    "foreign URL": ("https://example.com/product/42", "bad-prefix"),
    "GS1's SGTIN example (serial 2017)": ("urn:epc:id:sgtin:0614141.107346.2017", "bad-serial"),
    "GS1's Digital Link example (serial 2017)": ("https://id.gs1.org/01/70614141123451/21/2017", "bad-serial"),
    "Digital Link with a bad GTIN check digit": (
        "https://id.gs1.org/01/09506000134353/21/1234567890123456",
        "bad-gtin",
    ),
    "Digital Link with a lot we never issue": (
        "https://id.gs1.org/01/09506000134352/10/L%2F1/21/1234567890123456",
        "bad-lot",
    ),
    "an SSCC": ("urn:epc:id:sscc:0614141.1234567890", "bad-prefix"),
    "a class, not a code": ("https://id.gs1.org/01/09506000134352/10/LOT-7", "bad-prefix"),
}


@pytest.mark.parametrize("case", BAD_CODE_REFS)
def test_bad_code_refs(case):
    text, detail = BAD_CODE_REFS[case]
    with pytest.raises(codes.InvalidCode) as caught:
        epcis.code_ref(text, [BASE])
    assert (caught.value.reason, caught.value.detail) == (codes.MALFORMED, detail)


# --- parties ------------------------------------------------------------------------------------

PARTIES = {
    # GS1 Tag Data Standard's example: urn:epc:id:pgln:0614141.12345 is GLN 061414112345 and check digit 2.
    "PGLN URN": ("urn:epc:id:pgln:0614141.12345", "gln:0614141123452"),
    "SGLN URN": ("urn:epc:id:sgln:0614141.12345.400", "gln:0614141123452"),
    "SGLN URN without extension": ("urn:epc:id:sgln:0614141.12345.0", "gln:0614141123452"),
    "PGLN of a 12-digit company prefix": ("urn:epc:id:pgln:061414112345.", "gln:0614141123452"),
    "GS1's PGLN example": ("urn:epc:id:pgln:0614141.00777", "gln:0614141007776"),
    "Digital Link party GLN (417)": ("https://id.gs1.org/417/0614141123452", "gln:0614141123452"),
    "Digital Link location GLN (414) with extension": (
        "https://id.gs1.org/414/0614141123452/254/400",
        "gln:0614141123452",
    ),
    "Digital Link GLN with a bad check digit": ("https://id.gs1.org/417/0614141123453", None),
    "verifier dealer": ("urn:verifier:dealer:SH-0042", "dealer:SH-0042"),
    "PGLN of the wrong length": ("urn:epc:id:pgln:0614141.1234", None),
    "an SGTIN is no party": ("urn:epc:id:sgtin:0614141.107346.2017", None),
    "an unknown URI": ("https://dealer.example.cn/42", None),
    "empty": ("", None),
}


@pytest.mark.parametrize("case", PARTIES)
def test_party_keys(case):
    uri, expected = PARTIES[case]
    assert epcis.party_key(uri) == expected


def test_gln_check_digit_is_the_gs1_mod_10():
    # weights 3 and 1 from the right over 061414112345: 78, so the check digit is 2
    assert epcis.gln_check_digit("061414112345") == 2


# --- queries ------------------------------------------------------------------------------------

QUERIES = {
    "nothing": ({}, epcis.Query()),
    "one EPC": ({"MATCH_epc": "urn:x:1"}, epcis.Query(epcs=("urn:x:1",))),
    "EPCs pipe-delimited, from every MATCH parameter, once each": (
        {"MATCH_epc": "urn:x:1|urn:x:2", "MATCH_anyEPC": "urn:x:2", "MATCH_parentID": "urn:x:case"},
        epcis.Query(epcs=("urn:x:1", "urn:x:2", "urn:x:case")),
    ),
    "a lot by Digital Link": (
        {"MATCH_epcClass": "https://id.gs1.org/01/09506000134352/10/LOT-7"},
        epcis.Query(lot_class="https://id.gs1.org/01/09506000134352/10/LOT-7"),
    ),
    "a lot by LGTIN URN": (
        {"MATCH_epcClass": "urn:epc:class:lgtin:9506000.013435.LOT-7"},
        epcis.Query(lot_class="https://id.gs1.org/01/09506000134352/10/LOT-7"),
    ),
    "a time range": (
        {"GE_eventTime": "2026-11-22T08:00:00+08:00", "LT_eventTime": "2026-11-23T00:00:00Z"},
        epcis.Query(ge_time="2026-11-22T00:00:00.000+00:00", lt_time="2026-11-23T00:00:00.000+00:00"),
    ),
    "a time whose + arrived as a space": (
        {"GE_eventTime": "2022-06-30T00:15:47.000 05:00"},
        epcis.Query(ge_time="2022-06-29T19:15:47.000+00:00"),
    ),
    "types, steps and actions": (
        {
            "eventType": "ObjectEvent|AggregationEvent",
            "EQ_bizStep": "shipping|cbv:BizStep-receiving",
            "EQ_action": "ADD",
        },
        epcis.Query(
            event_types=("ObjectEvent", "AggregationEvent"), biz_steps=("shipping", "receiving"), actions=("ADD",)
        ),
    ),
    "a page": ({"perPage": "1000", "nextPageToken": "4711"}, epcis.Query(limit=1000, after=4711)),
}


@pytest.mark.parametrize("case", QUERIES)
def test_queries(case):
    args, expected = QUERIES[case]
    assert epcis.parse_query(args) == expected


def test_a_query_lot_as_gtin_and_lot():
    query = epcis.parse_query({"MATCH_epcClass": "https://id.gs1.org/01/09506000134352/10/LOT-7"})
    assert query.lot_key() == ("09506000134352", "LOT-7") and epcis.Query().lot_key() is None


BAD_QUERIES = {
    "unknown parameter": ({"color": "red"}, "unknown query parameter 'color'"),
    "a standard parameter verifier does not answer": (
        {"EQ_disposition": "in_transit"},
        "EQ_disposition is not supported",
    ),
    "perPage over 1000": ({"perPage": "1001"}, "perPage"),
    "perPage 0": ({"perPage": "0"}, "perPage"),
    "perPage not a number": ({"perPage": "ten"}, "perPage"),
    "an event type verifier does not record": ({"eventType": "TransformationEvent"}, "eventType TransformationEvent"),
    "a bizStep verifier does not record": ({"EQ_bizStep": "inspecting"}, "EQ_bizStep inspecting"),
    "an action that is none": ({"EQ_action": "PACK"}, "EQ_action PACK"),
    "a time that is none": ({"GE_eventTime": "yesterday"}, "GE_eventTime"),
    "a time without its zone": ({"LT_eventTime": "2026-11-22T08:00:00"}, "LT_eventTime"),
    "a token we never gave": ({"nextPageToken": "abc"}, "nextPageToken"),
    "a class that is no lot": ({"MATCH_epcClass": "https://id.gs1.org/01/09506000134352"}, "MATCH_epcClass"),
    "a lot with a bad GTIN": ({"MATCH_epcClass": "https://id.gs1.org/01/09506000134353/10/LOT-7"}, "MATCH_epcClass"),
    "two lots": (
        {"MATCH_epcClass": "urn:epc:class:lgtin:9506000.013435.A|urn:epc:class:lgtin:9506000.013435.B"},
        "one lot",
    ),
    "an empty item": ({"MATCH_epc": "urn:x:1||urn:x:2"}, "MATCH_epc"),
}


@pytest.mark.parametrize("case", BAD_QUERIES)
def test_bad_queries(case):
    args, message = BAD_QUERIES[case]
    with pytest.raises(epcis.QueryError, match=message.replace("(", r"\(")):
        epcis.parse_query(args)


# --- answering queries --------------------------------------------------------------------------


def test_a_query_document_of_stored_events_validates_against_gs1_schema():
    stored = [e.raw for e in epcis.parse_document((VECTORS / "Example_9.6.1-ObjectEvent.jsonld").read_bytes())]
    stored += [e.raw for e in epcis.parse_document(document(event()))]
    doc = epcis.query_document(stored, NOW)
    assert epcis.validate_document(doc) == []
    assert doc["type"] == "EPCISQueryDocument" and doc["schemaVersion"] == "2.0" and doc["@context"] == [epcis.CONTEXT]
    assert doc["creationDate"] == "2026-11-22T08:00:00.000+00:00"
    assert doc["epcisBody"]["queryResults"]["queryName"] == "verifier"
    assert doc["epcisBody"]["queryResults"]["resultsBody"]["eventList"] == stored
    assert epcis.validate_document(epcis.query_document([], NOW, "SimpleEventQuery")) == []


def test_a_broken_query_document_names_its_event():
    doc = epcis.query_document([event(), event(action=None)], NOW)
    assert [(e.index, e.code) for e in epcis.validate_document(doc)] == [(1, "schema")]
    assert epcis.validate_document(gs1("EPCISQueryDocument.jsonld")) == []
