"""One case of 24 items through its whole life, as its users meet it (both engines):

the enterprise issues case and item labels (`verifier batch issue`), packs, releases, ships the
case to a dealer in 四川 and receives it through GS1 EPCIS 2.0 documents sent to a running
`verifier serve`; a consumer in 四川 scans an item in a real browser (genuine, the trace shown);
another item turns up in 广东 (the enterprise's diversion anomaly, with its evidence); an item is
decommissioned at sale; a stolen item is blocked (red on the page, in the API and on the CLI);
and `audit verify` proves the whole life from the log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from browsers import ARTIFACTS, PHONE, chromium, require_chromium
from conftest import BASE_URL, PIN_SECRET, RunningServer, database_env, settle

from verifier import auditlog, db, issue

require_chromium()

EVENT_TIME = "2026-11-26T09:00:00.000+08:00"


def _cli(env, *args, input=None):
    return subprocess.run(
        [sys.executable, "-m", "verifier", *args], env=env, input=input, capture_output=True, text=True, timeout=120
    )


def _rows(folder):
    with open(folder / "codes.csv", encoding="utf-8", newline="") as fh:
        return list(issue.read_codes_csv(fh))


def _http(server, method, path, token=None, body=None, headers=()):
    request = urllib.request.Request(
        server.url + path, method=method, data=None if body is None else json.dumps(body).encode()
    )
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        request.add_header("Content-Type", "application/ld+json")
    for name, value in headers:
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _document(*events):
    return {
        "@context": ["https://ref.gs1.org/standards/epcis/epcis-context.jsonld"],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-11-26T09:00:00.000+08:00",
        "epcisBody": {"eventList": list(events)},
    }


def _event(type_, action, biz_step, **fields):
    return {
        "type": type_,
        "eventTime": fields.pop("eventTime", EVENT_TIME),
        "eventTimeZoneOffset": "+08:00",
        "action": action,
        "bizStep": biz_step,
        **fields,
    }


@pytest.fixture
def life(world, trace_world, trace_copy, tmp_path):
    env = {
        **os.environ,
        **database_env(trace_copy),
        "VERIFIER_KEYS": str(world["keys_dir"]),
        "VERIFIER_KEY_PASSPHRASE": "pw",
        "VERIFIER_BASE_URL": BASE_URL,
        "VERIFIER_PIN_SECRET": PIN_SECRET.decode(),
        "VERIFIER_RATELIMIT": "off",
        "VERIFIER_SECRET_KEY": "test-secret",
        "VERIFIER_INSTANCE": str(tmp_path / "instance"),
        "VERIFIER_TRUSTED_PROXIES": "1",  # the consumer's region comes from the proxy's X-Geo-* headers
        "VERIFIER_TRUST_GEO_HEADERS": "1",
    }
    server = RunningServer(env).start()
    try:
        yield {"env": env, "server": server, "db": trace_copy, "token": trace_world["tokens"]["eve"], "tmp": tmp_path}
    finally:
        server.stop()


def test_one_case_of_24_items_from_the_packing_line_to_the_consumer(life):
    env, server, token, tmp = life["env"], life["server"], life["token"], life["tmp"]

    # 1. Issue: one case label and 24 item labels, released with their case.
    common = (
        "--key",
        "dev",
        "--mark",
        "traceability",
        "--enterprise",
        "华茶集团",
        "--product",
        "绿茶",
        "--spec",
        "500g",
    )
    common += (
        "--lot",
        "L2026-11",
        "--production-date",
        "2026-11-20",
        "--production-place",
        "浙江杭州",
        "--format",
        "csv",
    )
    made = _cli(
        env,
        "batch",
        "issue",
        *common,
        "--count",
        "1",
        "--unit",
        "case",
        "--activation",
        "case",
        "--out",
        str(tmp / "case"),
    )
    assert made.returncode == 0, made.stderr
    made = _cli(env, "batch", "issue", *common, "--count", "24", "--activation", "case", "--out", str(tmp / "items"))
    assert made.returncode == 0, made.stderr
    (case,) = _rows(tmp / "case")
    items = _rows(tmp / "items")
    urls = [row["url"] for row in items]

    # Before release, a consumer is told the product is not released for sale.
    status, verdict = _http(server, "GET", "/api/v1/verify?code=" + urllib.request.quote(urls[5]))
    assert (status, verdict["reason"]) == (200, "not-released")

    # 2. Pack, release (commission the case), ship to the dealer in 成都, 四川: one EPCIS document.
    dealer = "urn:epc:id:pgln:6901234.00001"  # the dealer SC-01: GLN 6901234000016
    shipment = _document(
        _event("AggregationEvent", "ADD", "packing", parentID=case["url"], childEPCs=urls),
        _event("ObjectEvent", "ADD", "commissioning", epcList=[case["url"]], disposition="active"),
        _event(
            "ObjectEvent",
            "OBSERVE",
            "shipping",
            epcList=[case["url"]],
            disposition="in_transit",
            destinationList=[{"type": "owning_party", "destination": dealer}],
        ),
    )
    status, answer = _http(server, "POST", "/epcis/capture", token, shipment)
    assert status == 201 and answer["ok"], answer
    assert answer["events"] == 3
    # 3. The dealer receives it.
    received = _document(
        _event("ObjectEvent", "OBSERVE", "receiving", epcList=[case["url"]], eventTime="2026-11-27T10:00:00.000+08:00")
    )
    status, answer = _http(server, "POST", "/epcis/capture", token, received)
    assert status == 201, answer

    # 4. A consumer in 四川 scans an item with a phone: genuine, and the trace.
    with chromium() as browser:
        sichuan = browser.new_context(
            locale="zh-CN", extra_http_headers={"X-Geo-Country": "CN", "X-Geo-Region": "Sichuan"}, **PHONE
        )
        page = sichuan.new_page()
        page.goto(server.url + "/" + urls[0].split("/", 3)[3])
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "lifecycle-sichuan-genuine.png"), full_page=True)
        text = page.locator("main").inner_text()
        assert page.locator("section.verdict").get_attribute("data-reason") == "genuine"
        for words in ("正品", "产品溯源", "浙江杭州", "发往", "四川"):
            assert words in text, (words, text)
        assert "成都茶行" not in text and "SC-01" not in text  # the dealer is never shown
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["viewport"]["width"]

        # 5. Another item of the case turns up in 广东.
        guangdong = browser.new_context(
            locale="zh-CN", extra_http_headers={"X-Geo-Country": "CN", "X-Geo-Region": "Guangdong"}, **PHONE
        )
        page = guangdong.new_page()
        page.goto(server.url + "/" + urls[1].split("/", 3)[3])
        assert page.locator("section.verdict").get_attribute("data-reason") == "genuine"

        # 6. Decommission at sale; 7. block a stolen item.
        sold = _document(
            _event("ObjectEvent", "DELETE", "retail_selling", epcList=[urls[2]], disposition="retail_sold")
        )
        status, answer = _http(server, "POST", "/epcis/capture", token, sold)
        assert status == 201, answer
        blocked = _cli(env, "events", "block", items[3]["code"], "--reason", "stolen")
        assert blocked.returncode == 0, blocked.stderr
        page = sichuan.new_page()
        page.goto(server.url + "/" + urls[3].split("/", 3)[3])
        page.screenshot(path=str(ARTIFACTS / "lifecycle-blocked.png"), full_page=True)
        verdict_section = page.locator("section.verdict")
        assert verdict_section.get_attribute("data-reason") == "blocked"
        assert "bad" in verdict_section.get_attribute("class")
        assert "已被盗" in page.locator("main").inner_text()

    # Red in the API and on the CLI too.
    status, verdict = _http(server, "GET", "/api/v1/verify?code=" + urllib.request.quote(urls[3]))
    assert (verdict["reason"], verdict["detail"], verdict["tone"]) == ("blocked", "stolen", "bad")
    history = _cli(env, "events", "history", items[3]["code"])
    assert history.stdout.splitlines()[0].split(": ", 1)[1].startswith("blocked (stolen)")
    status, verdict = _http(server, "GET", "/api/v1/verify?code=" + urllib.request.quote(urls[2]))
    assert verdict["genuine"] and verdict["trace"]["state"] == "sold"

    # The enterprise sees the diversion, with its evidence; the scan in 四川 is not one.
    status, found = _http(server, "GET", "/api/v1/audit/anomalies?days=30", token)
    assert status == 200, found
    diversions = [a for a in found["anomalies"] if a["rule"] == "diversion"]
    assert [a["serial"] for a in diversions] == [int(items[1]["serial"])]
    (diversion,) = diversions
    assert diversion["severity"] == "high"
    assert diversion["details"]["dealer"]["code"] == "SC-01"

    # The EPCIS query answers the item's events, its case's shipment included.
    status, queried = _http(server, "GET", "/epcis/events?MATCH_epc=" + urllib.request.quote(urls[0]), token)
    assert status == 200
    steps = [e["bizStep"] for e in queried["epcisBody"]["queryResults"]["resultsBody"]["eventList"]]
    assert steps[:4] == ["packing", "commissioning", "shipping", "receiving"]

    # And the log proves it all.
    settle(life["db"])
    conn = db.connect(life["db"])
    try:
        report = auditlog.verify(conn)
    finally:
        conn.close()
    assert report.ok, report.problems
