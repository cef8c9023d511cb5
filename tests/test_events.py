"""Lifecycle events on the registry (both engines): packing, release, shipment, sale, blocks, all
or nothing, and what the lookup says after each."""

from __future__ import annotations

import datetime as dt

import pytest
from conftest import BASE_URL, PIN_SECRET

from verifier import clients, db, errors, events, lifecycle, lookup
from verifier.events import Step

AT = "2026-11-26T09:00:00.000+00:00"


def _step(biz_step: str, serials=(), **fields) -> Step:
    kinds = {
        "commissioning": (lifecycle.OBJECT, "ADD"),
        "packing": (lifecycle.AGGREGATION, "ADD"),
        "unpacking": (lifecycle.AGGREGATION, "DELETE"),
        "shipping": (lifecycle.OBJECT, "OBSERVE"),
        "receiving": (lifecycle.OBJECT, "OBSERVE"),
        "retail_selling": (lifecycle.OBJECT, "OBSERVE"),
        "decommissioning": (lifecycle.OBJECT, "DELETE"),
    }
    type_, action = kinds[biz_step]
    return Step(type_, fields.pop("action", action), biz_step, fields.pop("event_time", AT), tuple(serials), **fields)


def _capture(location, steps, enterprise_id=None, now=None):
    conn = db.connect(location)
    try:
        with db.transaction(conn):
            return events.capture(
                conn,
                steps,
                enterprise_id=enterprise_id,
                actor="test",
                now=now or dt.datetime(2026, 11, 26, 9, 5, tzinfo=dt.UTC),
            )
    finally:
        conn.close()


def _serials(rows):
    return [int(r["serial"]) for r in rows]


def _verdict(location, serial, world_keys=None):
    conn = db.connect(location)
    try:
        settings = lookup.Settings(keys={}, base_urls=(BASE_URL,), pin_secret=PIN_SECRET)
        client = clients.Client(None, None, clients.Region("CN", "Sichuan"), "other/other", None, "x")
        with db.transaction(conn):
            from verifier import codes

            return lookup.record_typed(
                conn,
                codes.human_code(serial),
                None,
                settings,
                client,
                "manual",
                dt.datetime(2026, 11, 27, tzinfo=dt.UTC),
            )
    finally:
        conn.close()


def _state(location, serial):
    conn = db.connect(location)
    try:
        row = conn.execute(
            "SELECT state, parent, dealer_id, region FROM code_states WHERE serial = ?", (serial,)
        ).fetchone()
        return tuple(row) if row else None
    finally:
        conn.close()


@pytest.fixture
def walk(trace_world, trace_copy):
    case_a, case_b = _serials(trace_world["cases"][1])
    items = _serials(trace_world["items"][1])
    return {
        **trace_world,
        "db": trace_copy,
        "case": case_a,
        "case_b": case_b,
        "items": items[:24],
        "others": items[24:],
    }


def test_an_item_is_not_released_until_its_case_is(walk):
    item = walk["items"][0]
    assert _verdict(walk["db"], item).reason == lookup.NOT_RELEASED
    _capture(walk["db"], [_step("packing", walk["items"], parent=walk["case"])])
    assert _state(walk["db"], item) == ("issued", walk["case"], None, None)
    _capture(walk["db"], [_step("commissioning", [walk["case"]])])
    verdict = _verdict(walk["db"], item)
    assert verdict.reason == lookup.GENUINE and verdict.trace()["in_case"] is True
    assert _verdict(walk["db"], walk["others"][0]).reason == lookup.NOT_RELEASED  # not in that case


def test_shipping_a_case_ships_every_item_in_it_with_the_dealers_region(walk):
    _capture(
        walk["db"],
        [
            _step("packing", walk["items"], parent=walk["case"]),
            _step("commissioning", [walk["case"]]),
            _step("shipping", [walk["case"]], dealer="dealer:SC-01", disposition="in_transit"),
        ],
    )
    sichuan = walk["dealers"]["sichuan"]
    assert {_state(walk["db"], s) for s in walk["items"]} == {("shipped", walk["case"], sichuan, "510100")}
    trace = _verdict(walk["db"], walk["items"][5]).trace()
    assert trace["shipped_to"] == [{"code": "510000", "zh": "四川", "en": "Sichuan"}]
    assert trace["shipped_on"] == "2026-11-26"


def test_a_dealer_is_found_by_its_gln(walk):
    steps = [
        _step("packing", walk["items"], parent=walk["case"]),
        _step("commissioning", [walk["case"]]),
        _step("shipping", [walk["case"]], dealer="gln:6901234000016"),
    ]
    _capture(walk["db"], steps)
    assert _state(walk["db"], walk["items"][0])[2] == walk["dealers"]["sichuan"]


def test_a_sale_is_final_and_a_second_sale_is_refused(walk):
    item = walk["items"][0]
    _capture(walk["db"], [_step("packing", walk["items"], parent=walk["case"]), _step("commissioning", [walk["case"]])])
    _capture(walk["db"], [_step("retail_selling", [item], disposition="retail_sold")])
    verdict = _verdict(walk["db"], item)
    assert verdict.genuine and verdict.trace()["sold_on"] == "2026-11-26"
    with pytest.raises(events.EventsRefused) as refused:
        _capture(walk["db"], [_step("retail_selling", [item])])
    assert [e.code for e in refused.value.errors] == ["already-sold"]


def test_a_blocked_code_is_red_and_nothing_moves_it_on(walk):
    item = walk["items"][0]
    _capture(walk["db"], [_step("packing", walk["items"], parent=walk["case"]), _step("commissioning", [walk["case"]])])
    conn = db.connect(walk["db"])
    with db.transaction(conn):
        events.block(
            conn,
            [item],
            "stolen",
            enterprise_id=walk["enterprise"],
            actor="test",
            now=dt.datetime(2026, 11, 26, tzinfo=dt.UTC),
        )
    conn.close()
    verdict = _verdict(walk["db"], item)
    assert (verdict.reason, verdict.detail, verdict.tone) == (lookup.BLOCKED, "stolen", "bad")
    with pytest.raises(events.EventsRefused) as refused:
        _capture(walk["db"], [_step("shipping", [item], dealer="dealer:SC-01")])
    assert refused.value.errors[0].code == "blocked"


@pytest.mark.parametrize(
    "case",
    [
        "item-into-item",
        "unknown-dealer",
        "not-released",
        "already-packed",
        "not-in-case",
        "unknown-code",
        "unsupported",
        "duplicate-event-id",
    ],
)
def test_a_refused_step_refuses_the_whole_document_and_writes_nothing(walk, case):
    item, other = walk["items"][0], walk["items"][1]
    good = _step("packing", walk["items"][2:10], parent=walk["case"])
    bad = {
        "item-into-item": [_step("packing", [item], parent=other)],
        "unknown-dealer": [_step("shipping", [walk["case"]], dealer="dealer:NOPE")],
        "not-released": [_step("shipping", [item], dealer="dealer:SC-01")],
        "already-packed": [
            _step("packing", [item], parent=walk["case"]),
            _step("packing", [item], parent=walk["case_b"]),
        ],
        "not-in-case": [_step("unpacking", [item], parent=walk["case_b"])],
        "unknown-code": [_step("commissioning", [1234567890123456])],
        "unsupported": [Step(lifecycle.OBJECT, "ADD", "shipping", AT, (item,))],
        "duplicate-event-id": [
            _step("commissioning", [walk["case"]], event_id="urn:uuid:1"),
            _step("commissioning", [walk["case"]], event_id="urn:uuid:1"),
        ],
    }[case]
    steps = [good, *bad]
    steps = [s.__class__(**{**s.__dict__, "index": i}) for i, s in enumerate(steps)]
    with pytest.raises(events.EventsRefused) as refused:
        _capture(walk["db"], steps)
    codes_ = {e.code for e in refused.value.errors}
    expected = {
        "item-into-item": "bad-aggregation",
        "unknown-dealer": "unknown-dealer",
        "not-released": "not-released",
        "already-packed": "already-packed",
        "not-in-case": "not-in-case",
        "unknown-code": "unknown-code",
        "unsupported": "unsupported-event",
        "duplicate-event-id": "duplicate-event",
    }[case]
    assert expected in codes_
    assert all(e.index >= 1 for e in refused.value.errors)  # the good first step is not blamed
    conn = db.connect(walk["db"])
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM code_states").fetchone()[0] == 0
    conn.close()


def test_an_enterprise_names_only_its_own_codes(walk):
    conn = db.connect(walk["db"])
    other = conn.execute("SELECT id FROM enterprises WHERE name = 'Other Co'").fetchone()[0]
    conn.close()
    with pytest.raises(events.EventsRefused) as refused:
        _capture(walk["db"], [_step("commissioning", [walk["case"]])], enterprise_id=other)
    assert [e.code for e in refused.value.errors] == ["unknown-code"]
    _capture(walk["db"], [_step("commissioning", [walk["case"]])], enterprise_id=walk["enterprise"])


def test_unpacking_without_children_empties_the_case(walk):
    _capture(walk["db"], [_step("packing", walk["items"], parent=walk["case"])])
    _capture(walk["db"], [_step("unpacking", [], parent=walk["case"])])
    assert {_state(walk["db"], s)[1] for s in walk["items"]} == {None}
    _capture(walk["db"], [_step("packing", walk["items"][:3], parent=walk["case_b"])])  # free to repack


def test_a_batch_released_as_a_whole(world, trace_copy, tmp_path):
    from conftest import seeded_random_bytes

    from verifier import codes, issue

    now = dt.datetime(2026, 11, 25, tzinfo=dt.UTC)
    request = issue.BatchRequest(
        mark=codes.MARKS[0],
        enterprise="华茶集团",
        product="红茶",
        count=3,
        out_dir=tmp_path / "b",
        base_url=BASE_URL,
        formats=("csv",),
        activation="batch",
    )
    result = issue.issue_batch(
        trace_copy, request, world["private"], world["kid"], now=now, random_bytes=seeded_random_bytes("whole")
    )
    serial = _batch_serials(trace_copy, result.batch_id)[0]
    assert _verdict(trace_copy, serial).reason == lookup.NOT_RELEASED
    conn = db.connect(trace_copy)
    with db.transaction(conn):
        events.release_batch(conn, result.batch_id, enterprise_id=None, actor="test", now=now)
    with pytest.raises(errors.Conflict), db.transaction(conn):
        events.release_batch(conn, result.batch_id, enterprise_id=None, actor="test", now=now)
    conn.close()
    assert _verdict(trace_copy, serial).reason == lookup.GENUINE


def _batch_serials(location, batch_id):
    conn = db.connect(location)
    try:
        return [r[0] for r in conn.execute("SELECT serial FROM codes WHERE batch_id = ?", (batch_id,)).fetchall()]
    finally:
        conn.close()
