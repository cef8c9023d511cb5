"""Each code's life is in the log: `audit verify` replays the events and finds a state table that
an attacker with write access edited (both engines), naming the entry whose fact it contradicts
(0: a fact no entry made)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from conftest import settle
from test_events import _capture, _serials, _step
from test_tamper import attacker, query

from verifier import auditlog, db, events, feedback

NOW = dt.datetime(2026, 11, 26, 10, tzinfo=dt.UTC)


@pytest.fixture
def lived(trace_world, trace_copy):
    """A case of 24 items packed, released, shipped to 成都 and received; one item sold, one blocked,
    an inspection report attached; every entry sequenced."""
    location = trace_copy
    case = _serials(trace_world["cases"][1])[0]
    items = _serials(trace_world["items"][1])[:24]
    _capture(
        location,
        [
            _step("packing", items, parent=case),
            _step("commissioning", [case]),
            _step("shipping", [case], dealer="dealer:SC-01"),
            _step("receiving", [case], event_time="2026-11-27T09:00:00.000+00:00"),
        ],
    )
    _capture(location, [_step("retail_selling", [items[0]], event_time="2026-11-28T09:00:00.000+00:00")])
    conn = db.connect(location)
    with db.transaction(conn):
        events.block(conn, [items[1]], "stolen", enterprise_id=None, actor="test", now=NOW)
        events.attach_report(
            conn, trace_world["cases"][0], b"%PDF-1.4 inspection", "report.pdf", enterprise_id=None, actor="qa", now=NOW
        )
        report = feedback.check_report(
            serial=items[5],
            verdict="genuine",
            what="diverted",
            bought_at="a shop in 广州",
            details="sold far from 四川",
            contact="13800138000",
            brand_may_contact=False,
            photo=None,
        )
        feedback.submit_report(conn, report, region="Guangdong", now=NOW)
    settle(conn)
    conn.close()
    return {"db": location, "case": case, "items": items}


def verified(location) -> auditlog.Report:
    conn = db.connect(location)
    try:
        return auditlog.verify(conn)
    finally:
        conn.close()


def event_entry(location, **fields) -> int:
    found = [
        seq
        for seq, body in query(location, "SELECT seq, body FROM audit_log WHERE kind = 'code.event' ORDER BY seq")
        if all(json.loads(body).get(k) == v for k, v in fields.items())
    ]
    assert len(found) == 1, (fields, found)
    return found[0]


def tamper(location, sql, params=()):
    conn = attacker(location)
    with db.transaction(conn):
        conn.execute(sql, params)
    conn.close()


def problems_at(report, seq, *words):
    assert not report.ok
    matching = [p for p in report.problems if p.seq == seq and all(w in p.what for w in words)]
    assert matching, f"no problem at entry {seq} saying {words}: {report.problems}"


def test_a_lived_database_verifies(lived):
    report = verified(lived["db"])
    assert report.ok, report.problems


def test_a_blocked_code_unblocked_in_the_table_is_named_by_its_block(lived):
    blocked = lived["items"][1]
    tamper(lived["db"], "UPDATE code_states SET state = 'shipped', reason = NULL WHERE serial = ?", (blocked,))
    problems_at(verified(lived["db"]), event_entry(lived["db"], biz_step="decommissioning"), "code_states", "blocked")


def test_a_diverted_shipment_rewritten_to_another_region_is_caught(lived):
    item = lived["items"][3]
    tamper(lived["db"], "UPDATE code_states SET region = '440000' WHERE serial = ?", (item,))
    problems_at(verified(lived["db"]), event_entry(lived["db"], biz_step="receiving"), "code_states", "510100")


def test_an_event_row_edited_is_named_by_its_entry(lived):
    tamper(lived["db"], "UPDATE events SET region = '440000' WHERE biz_step = 'shipping'")
    report = verified(lived["db"])
    problems_at(report, event_entry(lived["db"], biz_step="shipping"), "events", "region")


def test_a_code_slipped_into_an_event_is_caught(lived, trace_world):
    stranger = _serials(trace_world["items"][1])[30]
    event = query(lived["db"], "SELECT id FROM events WHERE biz_step = 'shipping'")[0][0]
    tamper(lived["db"], "INSERT INTO event_codes (serial, event) VALUES (?, ?)", (stranger, event))
    problems_at(verified(lived["db"]), event_entry(lived["db"], biz_step="shipping"), "event_codes")


def test_a_state_no_event_made_is_named_entry_0(lived, trace_world):
    stranger = _serials(trace_world["items"][1])[30]
    tamper(
        lived["db"],
        "INSERT INTO code_states (serial, state, event) VALUES (?, 'active', 1)",
        (stranger,),
    )
    problems_at(verified(lived["db"]), 0, "code_states", "no event")


def test_a_dealers_regions_widened_are_caught(lived):
    tamper(lived["db"], "UPDATE dealers SET regions = '510100 440000' WHERE code = 'SC-01'")
    seq = [
        s
        for s, body in query(lived["db"], "SELECT seq, body FROM audit_log WHERE kind = 'dealer.registered'")
        if json.loads(body)["code"] == "SC-01"
    ][0]
    problems_at(verified(lived["db"]), seq, "dealers", "regions")


def test_a_swapped_inspection_report_is_caught(lived):
    tamper(lived["db"], "UPDATE documents SET content = ?", (b"%PDF-1.4 forged",))
    report = verified(lived["db"])
    assert any("documents" in p.what and "not what was attached" in p.what for p in report.problems), report.problems


def test_a_release_without_its_entry_is_named_entry_0(lived, trace_world):
    tamper(
        lived["db"],
        "UPDATE batches SET activated_at = '2026-11-25T00:00:00.000+00:00' WHERE id = ?",
        (trace_world["items"][0],),
    )
    problems_at(verified(lived["db"]), 0, "batches", "released")


@pytest.mark.parametrize(
    "edit, words",
    [
        ("UPDATE consumer_reports SET enterprise_id = NULL", "enterprise_id"),  # taken from the brand
        ("UPDATE consumer_reports SET brand_may_contact = 1", "brand_may_contact"),  # the contact shown to the brand
        ("UPDATE consumer_reports SET status = 'closed'", "closed"),  # closed without an answer
    ],
)
def test_a_consumer_report_rerouted_or_closed_in_the_table_is_caught(lived, edit, words):
    seq = query(lived["db"], "SELECT seq FROM audit_log WHERE kind = 'consumer.report'")[0][0]
    tamper(lived["db"], edit)
    report = verified(lived["db"])
    assert not report.ok and any("consumer_reports" in p.what and words in p.what for p in report.problems), (
        report.problems
    )
    assert seq in {p.seq for p in report.problems}
