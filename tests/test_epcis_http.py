"""EPCIS 2.0 over HTTP (both engines): GS1's example documents, rewritten to name trace_world's codes,
captured and queried; what is refused and why; who may capture and see what."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode

import pytest
from conftest import BASE_URL, database_env

from verifier import codes, db, epcis, events

VECTORS = Path(__file__).parent / "vectors_epcis"
LOT = "L2026-11"  # trace_world's lot, of its cases and its items
COMPANY = "6901234"  # a GS1 company prefix of 7 digits: SGTIN URNs split the GTIN after it


def _gtin(indicator: str) -> str:
    first13 = indicator + COMPANY + "00001"
    return first13 + str(codes.gtin_check_digit(first13))


ITEM_GTIN = _gtin("0")  # the items' GTIN-14, and the cases' (indicator 1: a case of those items)
CASE_GTIN = _gtin("1")
SICHUAN_GLN = "6901234000016"  # the 成都 dealer SC-01 of trace_world
SICHUAN_PGLN = "urn:epc:id:pgln:6901234.00001"  # the 成都 dealer's GLN as a PGLN URN
AT = "2026-11-26T09:00:00.000+08:00"


def sgtin(serial: int, gtin: str = ITEM_GTIN) -> str:
    return f"urn:epc:id:sgtin:{COMPANY}.{gtin[0]}{gtin[1 + len(COMPANY) : 13]}.{serial:016d}"


def digital_link(serial: int, gtin: str = ITEM_GTIN, lot: str | None = None) -> str:
    return f"https://id.gs1.org/01/{gtin}" + (f"/10/{lot}" if lot else "") + f"/21/{serial:016d}"


def urn(serial: int) -> str:
    return f"urn:verifier:code:{serial:016d}"


def gs1(name: str) -> dict:
    return json.loads((VECTORS / name).read_text("utf-8"))


def document(*events: dict) -> dict:
    return {
        "@context": [epcis.CONTEXT],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-11-26T01:00:00.000Z",
        "epcisBody": {"eventList": list(events)},
    }


def event(kind: str, epcs=(), number: int = 0, **fields) -> dict:
    """An event verifier records: `kind` is its bizStep; `fields` replace or (None) remove fields."""
    type_, action = {
        "packing": ("AggregationEvent", "ADD"),
        "unpacking": ("AggregationEvent", "DELETE"),
        "commissioning": ("ObjectEvent", "ADD"),
        "shipping": ("ObjectEvent", "OBSERVE"),
        "receiving": ("ObjectEvent", "OBSERVE"),
        "retail_selling": ("ObjectEvent", "OBSERVE"),
    }[kind]
    out = {
        "type": type_,
        "eventID": f"urn:uuid:5e1c0a4b-3a0e-4c8f-9d1e-{number:012d}",
        "action": action,
        "bizStep": kind,
        "eventTime": AT,
        "eventTimeZoneOffset": "+08:00",
        ("childEPCs" if type_ == "AggregationEvent" else "epcList"): list(epcs),
    }
    if kind == "shipping":
        out["destinationList"] = [{"type": "owning_party", "destination": SICHUAN_PGLN}]
    out.update(fields)
    return {k: v for k, v in out.items() if v is not None}


@pytest.fixture
def trace(trace_world, trace_copy, make_app):
    """trace_world's codes on a fresh copy, their batches given GTINs (GS1 names them so) and the 成都
    dealer a GLN with its check digit, an app over it."""
    conn = db.connect(trace_copy)
    with db.transaction(conn):
        conn.execute("UPDATE batches SET gtin = ? WHERE id = ?", (CASE_GTIN, trace_world["cases"][0]))
        conn.execute("UPDATE batches SET gtin = ? WHERE id = ?", (ITEM_GTIN, trace_world["items"][0]))
    conn.close()
    app = make_app(DATABASE=str(trace_copy))
    cases = [int(r["serial"]) for r in trace_world["cases"][1]]
    items = [int(r["serial"]) for r in trace_world["items"][1]]
    urls = {int(r["serial"]): r["url"] for r in [*trace_world["cases"][1], *trace_world["items"][1]]}
    return {
        **trace_world,
        "db": trace_copy,
        "client": app.test_client(),
        "case": cases[0],
        "case_b": cases[1],
        "items": items[:24],
        "others": items[24:],
        "urls": urls,
    }


def post(trace, doc, who: str = "eve", content_type: str = "application/ld+json"):
    body = doc if isinstance(doc, bytes | str) else json.dumps(doc)
    token = trace["tokens"][who]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return trace["client"].post("/epcis/capture", data=body, content_type=content_type, headers=headers)


def get(trace, path: str, who: str = "eve", **params):
    token = trace["tokens"][who]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return trace["client"].get(path, query_string=params, headers=headers)


def refused(response) -> list[tuple[int | None, str]]:
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "events-refused" and error["message"]
    return [(e["index"], e["code"]) for e in error["events"]]


def packed_and_released(trace) -> dict:
    """The case packed with its 24 items (named every way a code can be named) and commissioned."""
    items = trace["items"]
    named = (
        [trace["urls"][s] for s in items[:6]]
        + [urn(s) for s in items[6:12]]
        + [digital_link(s, lot=LOT) for s in items[12:18]]
        + [sgtin(s) for s in items[18:23]]
        + [codes.human_code(items[23])]
    )
    return document(
        event("packing", named, 1, parentID=digital_link(trace["case"], CASE_GTIN)),
        event("commissioning", [sgtin(trace["case"], CASE_GTIN)], 2),
    )


def counts(trace) -> tuple[int, int, int]:
    conn = db.connect(trace["db"])
    try:
        return tuple(
            conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("events", "event_codes", "code_states")
        )
    finally:
        conn.close()


def lookup(trace, serial: int) -> dict:
    response = trace["client"].get("/api/v1/verify", query_string={"code": trace["urls"][serial]})
    assert response.status_code == 200
    return response.get_json()


# --- GS1's examples -------------------------------------------------------------------------

_GS1_CODE = re.compile(r"urn:epc:id:(sgtin|sscc):[0-9.]+|https://id\.gs1\.org/(01|00)/[0-9]+(/21/[0-9A-Za-z]+)?")


def ours(doc: dict, trace) -> dict:
    """GS1's document with each GS1 code it names replaced by one of trace_world's, in the same
    spelling (an SSCC, a logistic unit, by the case): the structure kept, the codes ones that exist."""
    given: dict[str, str] = {}
    items = iter([*trace["items"], *trace["others"]])

    def replace(text: str) -> str:
        m = _GS1_CODE.fullmatch(text)
        if not m:
            return text
        if text not in given:
            case = m.group(1) == "sscc" or m.group(2) == "00"
            serial = trace["case"] if case else next(items)
            gtin = CASE_GTIN if case else ITEM_GTIN
            given[text] = sgtin(serial, gtin) if text.startswith("urn:") else digital_link(serial, gtin)
        return given[text]

    def walk(value):
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return replace(value) if isinstance(value, str) else value

    return walk(doc)


@pytest.mark.parametrize(
    "example", ["Example_9.6.1-ObjectEvent.jsonld", "Example_9.6.1-ObjectEventWithDigitalLink.jsonld"]
)
def test_gs1_shipping_and_receiving_example_ships_the_codes_to_the_dealers_region(trace, example):
    assert post(trace, packed_and_released(trace)).status_code == 201
    doc = ours(gs1(example), trace)
    shipping, receiving = doc["epcisBody"]["eventList"]
    shipping["destinationList"] = [{"type": "owning_party", "destination": SICHUAN_PGLN}]  # GS1's names no party
    response = post(trace, doc)
    assert response.status_code == 201, response.get_json()
    first, second = trace["items"][:2]
    assert response.get_json() == {
        "ok": True,
        "events": 2,
        "codes": 3,
        "eventIDs": [shipping["eventID"], receiving["eventID"]],
    }
    shipped = lookup(trace, first)
    assert shipped["genuine"] and shipped["trace"]["state"] == "shipped"
    assert shipped["trace"]["shipped_to"] == [{"code": "510000", "zh": "四川", "en": "Sichuan"}]
    assert lookup(trace, second)["trace"]["shipped_to"][0]["code"] == "510000"
    assert lookup(trace, trace["items"][2])["trace"]["shipped_to"] == []  # in the case, not shipped


UNSUPPORTED_GS1 = {
    "Example_9.6.4-TransformationEvent.jsonld": ([(0, "unsupported-event-type")], "TransformationEvent is not"),
    "Example_9.6.4-TransformationEventWithDigitalLink.jsonld": ([(0, "unsupported-event-type")], "Transformation"),
    "AssociationEvent-a.jsonld": ([(0, "unsupported-event-type")], "AssociationEvent is not supported"),
    "Example-TransactionEvents-2020_07_03y.jsonld": (
        [(0, "unsupported-event-type"), (1, "unsupported-event-type")],
        "TransactionEvent is not supported",
    ),
    "Example_9.6.3-AggregationEvent.jsonld": ([(0, "unsupported-action")], "AggregationEvent OBSERVE is not"),
    "Example_9.6.3-AggregationEventWithDigitalLink.jsonld": ([(0, "unsupported-action")], "OBSERVE is not"),
    "Example_9.6.1-ObjectEvent-with-error-declaration.jsonld": ([(0, "unsupported-error-declaration")], "correct"),
    "Example_9.6.2-ObjectEvent.jsonld": ([(0, "no-epcs")], "not quantities"),
    "PersistentDisposition-example.jsonld": ([(1, "unsupported-biz-step")], "is not supported"),
}


@pytest.mark.parametrize("example", list(UNSUPPORTED_GS1))
def test_each_unsupported_gs1_example_is_refused_with_its_reason(trace, example):
    expected, words = UNSUPPORTED_GS1[example]
    before = counts(trace)
    response = post(trace, ours(gs1(example), trace), who="ada")
    assert refused(response) == expected
    assert any(words in e["message"] for e in response.get_json()["error"]["events"])
    assert counts(trace) == before


# --- all or nothing, with every event's problems ----------------------------------------------


def _five(trace, third: dict | None = None) -> dict:
    """Five events; the third packs the second case, which nothing else names, unless `third` replaces it."""
    case, items, others = trace["case"], trace["items"], trace["others"]
    return document(
        event("packing", [urn(s) for s in items], 1, parentID=urn(case)),
        event("commissioning", [urn(case)], 2),
        third or event("packing", [urn(s) for s in others[1:13]], 3, parentID=urn(trace["case_b"])),
        event("shipping", [urn(case)], 4),
        event("receiving", [urn(case)], 5),
    )


INVALID_THIRD_EVENT = {
    "schema": (
        lambda t: event("packing", [urn(t["others"][0])], 3, parentID=urn(t["case_b"]), action="PACK"),
        "schema",
    ),
    "an EPC that names no code": (
        lambda t: event("packing", ["urn:epc:id:sgtin:6901234.000001.12345"], 3, parentID=urn(t["case_b"])),
        "bad-reference",
    ),
    "a code that does not exist": (
        lambda t: event("packing", [urn(9_999_999_999_999_999)], 3, parentID=urn(t["case_b"])),
        "unknown-code",
    ),
    "a code of another lot": (
        lambda t: event("packing", [digital_link(t["others"][0], lot="L2025-01")], 3, parentID=urn(t["case_b"])),
        "unknown-code",
    ),
    "a case of another GTIN": (
        lambda t: event("packing", [urn(t["others"][0])], 3, parentID=digital_link(t["case_b"], ITEM_GTIN)),
        "unknown-code",
    ),
    "an unsupported step": (
        lambda t: event("commissioning", [urn(t["case_b"])], 3, bizStep="inspecting"),
        "unsupported-biz-step",
    ),
    "a combination verifier does not record": (
        lambda t: event("commissioning", [urn(t["case_b"])], 3, action="DELETE", bizStep="shipping"),
        "unsupported-event",
    ),
    "an unknown dealer": (
        lambda t: event(
            "shipping",
            [urn(t["case_b"])],
            3,
            destinationList=[{"type": "owning_party", "destination": "urn:verifier:dealer:NOPE"}],
        ),
        "unknown-dealer",
    ),
    "a blocked code": (lambda t: event("retail_selling", [urn(t["others"][0])], 3), "blocked"),
    "a label URL claiming another batch": (
        lambda t: event("packing", [_other_batch(t["urls"][t["others"][0]])], 3, parentID=urn(t["case_b"])),
        "unknown-code",
    ),
}


def _other_batch(url: str) -> str:
    """The label URL with the batch number it signs changed (and so its signature no longer valid)."""
    code = codes.decode(url, [BASE_URL])
    code.batch = (code.batch or 0) + 1
    return codes.encode_url(code, BASE_URL)


@pytest.mark.parametrize("case", list(INVALID_THIRD_EVENT))
def test_a_document_whose_third_event_of_five_is_bad_is_refused_whole(trace, case):
    make, code = INVALID_THIRD_EVENT[case]
    conn = db.connect(trace["db"])
    with db.transaction(conn):  # an item blocked before: nothing but a block moves it on
        events.block(conn, [trace["others"][0]], "stolen", enterprise_id=None, actor="test", now=trace["now"])
    conn.close()
    before = counts(trace)
    found = refused(post(trace, _five(trace, make(trace))))
    assert (2, code) in found and {index for index, _ in found} == {2}
    assert counts(trace) == before
    assert post(trace, _five(trace)).status_code == 201  # the same document with a good third event


def test_problems_of_references_and_of_states_come_in_one_answer(trace):
    """Event 2 names something that is no code; event 4 ships a case nobody released; event 5
    receives what was not shipped: each is said, and nothing is written."""
    doc = _five(trace)
    events_ = doc["epcisBody"]["eventList"]
    events_[0]["childEPCs"][-1] = "urn:verifier:code:12"
    events_[1] = event("commissioning", ["urn:epc:id:sgtin:6901234.000001.1"], 2)
    before = counts(trace)
    found = list(dict.fromkeys(refused(post(trace, doc))))
    # The case holds nothing (its packing was refused): its shipment is refused for the case alone.
    assert found == [(0, "bad-reference"), (1, "bad-reference"), (3, "not-released"), (4, "not-shipped")]
    assert counts(trace) == before


def test_the_same_document_twice_is_refused_the_second_time(trace):
    assert post(trace, packed_and_released(trace)).status_code == 201
    before = counts(trace)
    assert refused(post(trace, packed_and_released(trace))) == [(0, "duplicate-event"), (1, "duplicate-event")]
    assert counts(trace) == before


def test_a_document_that_is_not_json_is_refused_as_a_whole(trace):
    assert refused(post(trace, b'{"type": "EPCISDocument",')) == [(None, "not-json")]


def test_a_document_larger_than_the_apps_16_kb_is_taken_and_one_over_8_mb_is_not(trace):
    body = json.dumps(packed_and_released(trace)) + " " * 40_000
    assert post(trace, body).status_code == 201
    too_big = post(trace, b" " * (8 * 1024 * 1024 + 1))
    assert too_big.status_code == 413 and too_big.get_json()["error"]["code"] == "payload-too-large"


@pytest.mark.parametrize("content_type", ["application/json", "application/ld+json", "application/json; charset=utf-8"])
def test_capture_takes_json_and_json_ld(trace, content_type):
    assert post(trace, packed_and_released(trace), content_type=content_type).status_code == 201


def test_capture_refuses_other_media_types(trace):
    response = post(trace, json.dumps(packed_and_released(trace)), content_type="text/plain")
    assert response.status_code == 415 and response.get_json()["error"]["code"] == "unsupported-media-type"


# --- who may capture ------------------------------------------------------------------------


def test_an_enterprise_capturing_anothers_codes_learns_nothing_of_them(trace):
    real, missing = trace["items"][0], 9_999_999_999_999_999
    answers = []
    for serial in (real, missing):
        for name in (urn(serial), digital_link(serial, "00000000000000", lot="X")):
            response = post(trace, document(event("commissioning", [name], 7)), who="oscar")
            (error,) = response.get_json()["error"]["events"]
            answers.append((error["code"], error["message"].replace(f"{serial:016d}", "<serial>")))
    assert answers[0][0] == "unknown-code" and len(set(answers)) == 1
    assert lookup(trace, real)["reason"] == "not-released"


def test_an_administrator_captures_any_enterprises_codes(trace):
    assert post(trace, packed_and_released(trace), who="ada").status_code == 201


@pytest.mark.parametrize(("who", "status", "code"), [("ian", 403, "forbidden"), ("anonymous", 401, "unauthorized")])
def test_inspectors_may_not_capture_and_a_token_is_required(trace, who, status, code):
    response = post(trace, packed_and_released(trace), who=who)
    assert response.status_code == status and response.get_json() == {
        "ok": False,
        "error": {"code": code, "message": response.get_json()["error"]["message"]},
    }


def test_a_bad_token_is_401_for_queries_too(trace):
    response = trace["client"].get("/epcis/events", headers={"Authorization": "Bearer vt_nope"})
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")


# --- queries --------------------------------------------------------------------------------


@pytest.fixture
def shipped(trace):
    """The case packed, released and shipped to 成都 (events 1-3 at 09:00, 10:00, 11:00 +08:00); another
    item sold from the second case on its own."""
    doc = packed_and_released(trace)
    pack, release = doc["epcisBody"]["eventList"]
    release["eventTime"] = "2026-11-26T10:00:00.000+08:00"
    ship = event("shipping", [digital_link(trace["case"], CASE_GTIN)], 3, eventTime="2026-11-26T11:00:00+08:00")
    assert post(trace, document(pack, release, ship)).status_code == 201
    return {**trace, "ids": [pack["eventID"], release["eventID"], ship["eventID"]]}


def ids(response) -> list[str]:
    assert response.status_code == 200, response.get_json(force=True)
    assert response.mimetype == "application/ld+json"
    doc = json.loads(response.get_data())
    assert epcis.validate_document(doc) == []
    return [e["eventID"] for e in doc["epcisBody"]["queryResults"]["resultsBody"]["eventList"]]


def test_an_items_query_finds_its_cases_shipping_event(shipped):
    item = shipped["items"][4]
    for name in (shipped["urls"][item], urn(item), sgtin(item), digital_link(item, lot=LOT)):
        assert ids(get(shipped, "/epcis/events", MATCH_epc=name)) == shipped["ids"], name
    shipping = ids(get(shipped, "/epcis/events", MATCH_anyEPC=urn(item), EQ_bizStep="shipping"))
    assert shipping == [shipped["ids"][2]]


def test_a_code_named_with_another_lot_matches_nothing(shipped):
    item = shipped["items"][4]
    assert ids(get(shipped, "/epcis/events", MATCH_epc=digital_link(item, lot="L1999"))) == []
    assert ids(get(shipped, "/epcis/events", MATCH_epc="urn:epc:id:sgtin:6901234.000001.1")) == []


def test_a_lots_query_finds_the_events_of_its_codes(shipped):
    lot = f"https://id.gs1.org/01/{ITEM_GTIN}/10/{LOT}"
    assert ids(get(shipped, "/epcis/events", MATCH_epcClass=lot)) == shipped["ids"]
    lgtin = f"urn:epc:class:lgtin:{COMPANY}.000001.{LOT}"
    assert ids(get(shipped, "/epcis/events", MATCH_epcClass=lgtin)) == shipped["ids"]
    other = f"https://id.gs1.org/01/{ITEM_GTIN}/10/L1999"
    assert ids(get(shipped, "/epcis/events", MATCH_epcClass=other)) == []


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"GE_eventTime": "2026-11-26T10:00:00+08:00"}, [1, 2]),
        ({"LT_eventTime": "2026-11-26T02:00:00Z"}, [0]),
        ({"GE_eventTime": "2026-11-26T02:00:00Z", "LT_eventTime": "2026-11-26T03:00:00Z"}, [1]),
        ({"eventType": "AggregationEvent"}, [0]),
        ({"EQ_action": "ADD"}, [0, 1]),
    ],
)
def test_queries_by_time_range_and_kind(shipped, params, expected):
    assert ids(get(shipped, "/epcis/events", **params)) == [shipped["ids"][i] for i in expected]


def test_pages_follow_the_link_header_to_the_end(shipped):
    seen, path, params = [], "/epcis/events", {"perPage": "1", "MATCH_epc": urn(shipped["items"][0])}
    while True:
        response = get(shipped, path, **params)
        seen += ids(response)
        link = response.headers.get("Link")
        if link is None:
            break
        m = re.fullmatch(r'<(/epcis/events)\?([^>]*)>; rel="next"', link)
        path, params = m.group(1), dict(parse_qsl(m.group(2)))
    assert seen == shipped["ids"]


@pytest.mark.parametrize(("who", "sees"), [("eve", 3), ("ian", 3), ("ada", 3), ("oscar", 0)])
def test_an_enterprise_sees_its_own_events_and_inspectors_all(shipped, who, sees):
    assert len(ids(get(shipped, "/epcis/events", who=who))) == sees


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"EQ_disposition": "in_transit"}, "not supported"),
        ({"color": "red"}, "unknown query parameter"),
        ({"perPage": "0"}, "perPage"),
    ],
)
def test_a_query_verifier_cannot_answer_is_a_400(shipped, params, words):
    response = get(shipped, "/epcis/events", **params)
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "bad-query"
    assert words in response.get_json()["error"]["message"]


def test_one_event_by_its_event_id(shipped):
    event_id = shipped["ids"][2]
    response = get(shipped, "/epcis/events/" + quote(event_id, safe=""))
    assert ids(response) == [event_id]
    found = json.loads(response.get_data())["epcisBody"]["queryResults"]["resultsBody"]["eventList"][0]
    assert found["destinationList"][0]["destination"] == SICHUAN_PGLN  # as it was captured
    assert get(shipped, "/epcis/events/" + quote(event_id, safe=""), who="oscar").status_code == 404
    assert get(shipped, "/epcis/events/urn:uuid:nope").get_json()["error"]["code"] == "not-found"


def test_gs1_event_ids_with_slashes_and_a_query_are_found(trace):
    assert post(trace, packed_and_released(trace)).status_code == 201
    doc = ours(gs1("Example_9.6.1-ObjectEvent.jsonld"), trace)
    doc["epcisBody"]["eventList"][0]["destinationList"] = [{"type": "owning_party", "destination": SICHUAN_PGLN}]
    assert post(trace, doc).status_code == 201
    event_id = doc["epcisBody"]["eventList"][0]["eventID"]  # ni:///sha-256;...?ver=CBV2.0
    assert ids(get(trace, "/epcis/events/" + quote(event_id, safe=""))) == [event_id]


# --- discovery and headers -------------------------------------------------------------------


def test_options_on_capture_says_the_epcis_version_without_a_token(trace):
    response = trace["client"].open("/epcis/capture", method="OPTIONS")
    assert response.status_code == 204
    assert response.headers["GS1-EPCIS-Version"] == "2.0.0" and response.headers["GS1-CBV-Version"] == "2.0.0"
    assert response.headers["GS1-EPCIS-Capture-Limit"] == str(epcis.DEFAULT_MAX_EVENTS)
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}


def test_every_epcis_answer_names_the_versions_and_unknown_routes_are_the_apis_404(trace):
    for response in (get(trace, "/epcis/events"), get(trace, "/epcis/nothing-here"), post(trace, b"[]")):
        assert response.headers["GS1-EPCIS-Version"] == "2.0.0"
    missing = get(trace, "/epcis/nothing-here")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not-found"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/epcis/capture", "OPTIONS, POST"),
        ("POST", "/epcis/events", "GET, HEAD"),
        ("DELETE", "/epcis/events/x", "GET, HEAD"),
    ],
)
def test_another_method_on_an_epcis_route_is_405_with_what_it_takes(trace, method, path, allow):
    response = trace["client"].open(path, method=method)
    assert response.status_code == 405 and response.headers["Allow"] == allow
    assert response.get_json()["error"]["code"] == "method-not-allowed"


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [(RuntimeError("a bug"), 500, "server-error"), (db.OperationalError[0]("the server went away"), 503, "busy")],
    ids=["a bug", "the database lost"],
)
def test_a_failure_inside_is_the_apis_error_without_its_details(trace, monkeypatch, failure, status, code):
    def fail(*_args, **_kwargs):
        raise failure

    monkeypatch.setattr("verifier.capture.capture_document", fail)
    response = post(trace, packed_and_released(trace))
    assert response.status_code == status and response.get_json()["error"]["code"] == code
    assert str(failure) not in response.get_data(as_text=True)


def test_capture_and_queries_are_rate_limited(trace, make_app):
    client = make_app(DATABASE=str(trace["db"]), RATELIMIT="2/minute").test_client()
    headers = {"Authorization": f"Bearer {trace['tokens']['eve']}"}
    answers = [client.get("/epcis/events", headers=headers).status_code for _ in range(3)]
    assert answers == [200, 200, 429]
    limited = client.post("/epcis/capture", data="{}", content_type="application/json", headers=headers)
    assert limited.status_code == 429 and limited.get_json()["error"]["code"] == "rate-limited"
    assert "Retry-After" in limited.headers


# --- a running server ----------------------------------------------------------------------


def test_a_running_server_captures_a_document_and_answers_a_query(trace, serve):
    server = serve(**database_env(trace["db"]))
    headers = {"Authorization": f"Bearer {trace['tokens']['eve']}", "Content-Type": "application/ld+json"}
    body = json.dumps(packed_and_released(trace)).encode()
    request = urllib.request.Request(server.url + "/epcis/capture", data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201 and response.headers["GS1-EPCIS-Version"] == "2.0.0"
        captured = json.loads(response.read())
    assert captured["events"] == 2 and captured["codes"] == (24 + 1) + (
        1 + 24
    )  # packed, then released through the case
    query = urlencode({"MATCH_epc": urn(trace["items"][0])})
    request = urllib.request.Request(server.url + "/epcis/events?" + query, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["Content-Type"] == "application/ld+json"
        doc = json.loads(response.read())
    assert epcis.validate_document(doc) == []
    found = doc["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    assert [e["eventID"] for e in found] == captured["eventIDs"]
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(urllib.request.Request(server.url + "/epcis/events"), timeout=30)
    assert caught.value.code == 401 and json.loads(caught.value.read())["error"]["code"] == "unauthorized"
