"""Lifecycle anomalies (both engines): diversion (窜货) of shipped codes out of their dealer's sales
regions, scans before release and scans of blocked codes, shown to the owning enterprise and to
inspectors in the API, the audit UI and the CLI."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from conftest import database_env, log_in

from verifier import anomalies, db, events, lifecycle, lookup
from verifier.cli import cli
from verifier.events import Step
from verifier.repos import scans as scans_repo

AT = "2026-11-26T09:00:00.000+00:00"
NOW = dt.datetime(2026, 11, 26, 9, 5, tzinfo=dt.UTC)


# --- the rule's judgement, pure ---------------------------------------------------------------

JUDGEMENTS = {
    "inside: the city's province": ("Sichuan", "510100", None),
    "inside: Chinese name": ("四川省", "510100", None),
    "inside: ISO code": ("CN-SC", "510100", None),
    "neighbour: low": ("Chongqing", "510100", "low"),
    "far: high": ("Guangdong", "510100", "high"),
    "far, Chinese name: high": ("广东省", "510100", "high"),
    "neighbour of one of two regions: low": ("Hunan", "510100 440000", "low"),
    "inside the second region": ("Guangdong", "510100 440000", None),
    "unknown region text: not judged": ("Atlantis", "510100", None),
    "no valid shipment region: not judged": ("Guangdong", "999999", None),
}


@pytest.mark.parametrize("place, shipped, severity", JUDGEMENTS.values(), ids=JUDGEMENTS.keys())
def test_a_scan_outside_the_sales_regions_is_diverted_high_unless_next_door(place, shipped, severity):
    judged = anomalies.judge_place(place, shipped)
    assert (judged.severity if judged else None) == severity


# What the other rules judge, not this one: a code the lookup could not tie to a registered,
# validly signed label, or one whose verdict is already a lifecycle anomaly of its own.
NOT_DIVERSION = {
    "reported-counterfeit": "the counterfeit cluster's business",
    "blocked": "blocked-scanned",
    "not-released": "scan-before-release",
    **dict.fromkeys(
        ("mistyped", "unknown-batch", "unknown-code", "key-revoked", "bad-signature", "unknown-key", "malformed"),
        "not a registered label",
    ),
}


def test_every_verdict_is_either_judged_for_diversion_or_named_as_another_rules():
    registered = set(scans_repo.REGISTERED_REASONS)
    assert registered.isdisjoint(NOT_DIVERSION) and registered | set(NOT_DIVERSION) == set(lookup.REASONS)


# --- on the registry, through the app -----------------------------------------------------------


def _step(biz_step: str, serials=(), **fields) -> Step:
    kinds = {
        "packing": (lifecycle.AGGREGATION, "ADD"),
        "commissioning": (lifecycle.OBJECT, "ADD"),
        "shipping": (lifecycle.OBJECT, "OBSERVE"),
        "retail_selling": (lifecycle.OBJECT, "OBSERVE"),
    }
    type_, action = kinds[biz_step]
    return Step(type_, action, biz_step, AT, tuple(serials), **fields)


@pytest.fixture
def shipped(trace_world, trace_copy, make_app, monkeypatch):
    """24 items packed in a case, released, shipped to SC-01 (成都, 510100); one of them sold, one
    blocked as stolen; an app that trusts the proxy's geo headers; the CLI on the same database."""
    for name, value in database_env(trace_copy).items():
        monkeypatch.setenv(name, value)
    case = int(trace_world["cases"][1][0]["serial"])
    rows = trace_world["items"][1]
    items = [int(r["serial"]) for r in rows[:24]]
    conn = db.connect(trace_copy)
    try:
        with db.transaction(conn):
            captured = events.capture(
                conn,
                [
                    _step("packing", items, parent=case),
                    _step("commissioning", [case]),
                    _step("shipping", [case], dealer="dealer:SC-01"),
                    _step("retail_selling", [items[6]]),
                ],
                enterprise_id=None,
                actor="test",
                now=NOW,
            )
            events.block(conn, [items[5]], "stolen", enterprise_id=None, actor="test", now=NOW)
        shipping = captured.event_ids[2]
        urn = conn.execute("SELECT event_id FROM events WHERE id = ?", (shipping,)).fetchone()[0]
    finally:
        conn.close()
    app = make_app(DATABASE=str(trace_copy), TRUST_GEO_HEADERS=True, TRUSTED_PROXIES=1)

    def scan(index, region, country=None):
        headers = {"X-Geo-Region": region} | ({"X-Geo-Country": country} if country else {})
        response = app.test_client().get("/" + rows[index]["url"].split("/", 3)[3], headers=headers)
        assert response.status_code == 200
        conn = db.connect(trace_copy)
        try:
            serial = int(rows[index]["serial"])
            return conn.execute("SELECT max(id) FROM scans WHERE serial = ?", (serial,)).fetchone()[0]
        finally:
            conn.close()

    return {
        **trace_world,
        "db": trace_copy,
        "app": app,
        "scan": scan,
        "items": items,
        "items_batch": trace_world["items"][0],
        "rows": rows,
        "shipping": (shipping, urn),
    }


def _api(shipped, who):
    token = shipped["tokens"][who]
    response = (
        shipped["app"]
        .test_client()
        .get("/api/v1/audit/anomalies?days=30", headers={"Authorization": f"Bearer {token}"})
    )
    assert response.status_code == 200
    return response.get_json()["anomalies"]


def _by_rule(found, rule):
    return {a["serial"] if a["serial"] is not None else a["batch_id"]: a for a in found if a["rule"] == rule}


def _cli(*args):
    from click.testing import CliRunner

    result = CliRunner().invoke(cli, ["audit", "anomalies", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_diversion_is_judged_by_province_with_the_shipment_as_evidence(shipped):
    scan, items = shipped["scan"], shipped["items"]
    scan(0, "Sichuan")  # where it was shipped: nothing
    scan(0, "CN-SC")
    low = scan(1, "Chongqing")  # next door: low
    high = [scan(2, "Guangdong"), scan(2, "广东省")]  # far away: high, one anomaly for the code
    mixed = [scan(3, "Chongqing"), scan(3, "Guangdong")]  # high wins
    scan(4, "Atlantis")  # names no province: not judged
    scan(4, "SC", country="US")  # South Carolina, not Sichuan
    sold = scan(6, "Jiangsu")  # sold after shipping: still the dealer's region

    found = _by_rule(_api(shipped, "ian"), "diversion")
    assert set(found) == {items[1], items[2], items[3], items[6]}
    assert {s: (a["severity"], a["count"]) for s, a in found.items()} == {
        items[1]: ("low", 1),
        items[2]: ("high", 2),
        items[3]: ("high", 2),
        items[6]: ("high", 1),
    }
    assert found[items[1]]["evidence"] == [low]
    assert found[items[2]]["evidence"] == sorted(high)
    assert found[items[3]]["evidence"] == sorted(mixed)
    assert found[items[6]]["evidence"] == [sold]
    shipping, urn = shipped["shipping"]
    details = found[items[2]]["details"]
    assert details == {
        "dealer": {"id": shipped["dealers"]["sichuan"], "code": "SC-01", "name": "成都茶行"},
        "shipped_regions": ["510100"],
        "shipped_provinces": [{"code": "510000", "name": "Sichuan", "name_zh": "四川"}],
        "shipped_at": AT,
        "event": shipping,
        "event_id": urn,
        "scan_provinces": [{"code": "440000", "name": "Guangdong", "name_zh": "广东", "severity": "high"}],
    }
    assert found[items[2]]["batch_id"] == shipped["items_batch"]
    assert found[items[2]]["subject"] == f"code {items[2]:016d}: SC-01 Sichuan -> Guangdong"
    assert [p["code"] for p in found[items[3]]["details"]["scan_provinces"]] == ["500000", "440000"]
    assert [a for a in _api(shipped, "ian") if a["rule"] == "diversion"][0]["severity"] == "high"  # high first


def test_scans_before_release_and_of_blocked_codes(shipped):
    scan, items = shipped["scan"], shipped["items"]
    early = [scan(30, "Zhejiang"), scan(30, "Zhejiang"), scan(31, "Zhejiang")]  # never packed nor released
    stolen = [scan(5, "Guangdong"), scan(5, "Guangdong")]
    found = _api(shipped, "ian")
    before = [a for a in found if a["rule"] == "scan-before-release"]
    assert len(before) == 1 and before[0]["count"] == 3 and before[0]["details"] == {"codes": 2}
    assert before[0]["batch_id"] == shipped["items_batch"] and sorted(before[0]["evidence"]) == early
    assert before[0]["subject"] == f"batch {shipped['items_batch']}: 2 codes"
    blocked = _by_rule(found, "blocked-scanned")
    assert set(blocked) == {items[5]}
    assert sorted(blocked[items[5]]["evidence"]) == stolen and blocked[items[5]]["details"] == {"reason": "stolen"}
    assert items[5] not in _by_rule(found, "diversion")  # a blocked code is not a dealer's business


def test_the_owning_enterprise_and_inspectors_see_them_another_enterprise_does_not(shipped):
    scan = shipped["scan"]
    scan(2, "Guangdong")
    scan(30, "Zhejiang")
    scan(5, "Guangdong")
    rules = {"diversion", "scan-before-release", "blocked-scanned"}
    for who in ("ian", "ada", "eve"):
        assert {a["rule"] for a in _api(shipped, who)} == rules, who
    assert _api(shipped, "oscar") == []

    client = shipped["app"].test_client()
    assert log_in(client, "eve").status_code == 302
    page = client.get("/audit/anomalies?lang=en").get_data(as_text=True)
    assert all(rule in page for rule in rules)
    assert (
        '<td data-label="Severity">high</td>' in page and "dealer SC-01 成都茶行" in page and "blocked: stolen" in page
    )
    assert "seen in Guangdong" in page and "shipped to Sichuan（510100" in page
    page = client.get("/audit/anomalies?lang=zh").get_data(as_text=True)
    assert (
        '<td data-label="严重程度">高</td>' in page
        and "窜货" in page
        and "出现于 广东" in page
        and "发往 四川（510100" in page
    )
    other = shipped["app"].test_client()
    assert log_in(other, "oscar").status_code == 302
    page = other.get("/audit/anomalies?lang=en").get_data(as_text=True)
    assert "No anomalies." in page and "SC-01" not in page


def test_the_cli_lists_them_with_severity_and_details(shipped):
    scan, items = shipped["scan"], shipped["items"]
    scan(1, "Chongqing")
    scan(2, "Guangdong")
    found = json.loads(_cli("--json"))
    diverted = _by_rule(found, "diversion")
    assert {s: a["severity"] for s, a in diverted.items()} == {items[1]: "low", items[2]: "high"}
    assert diverted[items[2]]["details"]["dealer"]["code"] == "SC-01"
    text = _cli()
    lines = [line for line in text.splitlines() if line.startswith("diversion")]
    assert len(lines) == 2 and "Sichuan -> Guangdong" in lines[0] and "Sichuan -> Chongqing" in lines[1]
    assert "high: dealer SC-01 成都茶行, shipped 2026-11-26 to 510100" in text
    assert "seen in Guangdong (high)" in text and "seen in Chongqing (low)" in text


@pytest.mark.sqlite_only("SQLite's query planner and its index hints")
def test_the_diversion_queries_read_the_window_through_the_time_index(shipped):
    from verifier.repos import scans

    params = anomalies.parameters(
        "2026-11-01T00:00:00.000+00:00", anomalies.Thresholds(), diverted=["Guangdong/510100"]
    )
    conn = db.connect(shipped["db"])
    try:
        for sql in (scans.DIVERSION_PLACES, scans.ANOMALY_QUERIES["diversion"]):
            steps = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
            assert "SEARCH s USING INDEX scans_at (at>?)" in steps, steps
            assert "SEARCH cs USING INTEGER PRIMARY KEY (rowid=?)" in steps, steps
            assert not [s for s in steps if s in ("SCAN s", "SCAN cs", "SCAN scans")], steps
    finally:
        conn.close()


@pytest.mark.postgres_only("PostgreSQL's planner on the PostgreSQL spelling of the rules")
def test_postgres_diversion_queries_read_the_window_never_the_whole_table(db_copy):
    from test_anomalies import fill_scans, scan_nodes

    from verifier.repos import scans

    newest = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
    fill_scans(db_copy, 200_000, newest, dt.timedelta(minutes=5))  # about two years of scans
    conn = db.connect(db_copy)
    try:
        conn.execute(  # every code of the log shipped to 成都
            "INSERT INTO code_states (serial, state, region, shipped_at, event) "
            "SELECT i, 'shipped', '510100', '2026-01-01T00:00:00+00:00', 1 FROM generate_series(0, 49999) AS i"
        )
        conn.execute("ANALYZE code_states")
        since = anomalies.since_days(30, newest)
        params = anomalies.parameters(since, anomalies.Thresholds(), diverted=["R1/510100", "R2/510100"])
        window = conn.execute("SELECT count(*) FROM scans WHERE at >= ?", (since,)).fetchone()[0]
        for sql in (scans.POSTGRES_DIVERSION_PLACES, scans.POSTGRES_ANOMALY_QUERIES["diversion"]):
            plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params).fetchone()[0][0]["Plan"]
            nodes = list(scan_nodes(plan))
            assert nodes and not [n for n in nodes if n["Node Type"] == "Seq Scan"], plan
            for node in nodes:
                read = node["Actual Loops"] * sum(
                    node.get(k, 0) for k in ("Actual Rows", "Rows Removed by Filter", "Rows Removed by Index Recheck")
                )
                assert read <= 2 * window, (node["Node Type"], node.get("Index Name"), read, window)
        assert len(conn.execute(scans.POSTGRES_ANOMALY_QUERIES["diversion"], params).fetchall()) > 0
    finally:
        conn.close()
