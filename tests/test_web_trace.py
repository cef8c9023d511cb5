"""The trace on the consumer's verdict page (both engines): a case packed, released and shipped, then
an item's page in Chinese and English; blocked and not-released codes; a forged label's page; the
inspection report served by its SHA-256 at /doc/."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

import pytest
from conftest import forged_url

from verifier import db, events, lifecycle
from verifier.events import Step

AT = "2026-11-26T09:00:00.000+00:00"  # 2026年11月26日 in China too
NOW = dt.datetime(2026, 11, 26, 9, 5, tzinfo=dt.UTC)
REPORT_PDF = b"%PDF-1.4\n% an inspection report\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
KINDS = {
    "packing": (lifecycle.AGGREGATION, "ADD"),
    "commissioning": (lifecycle.OBJECT, "ADD"),
    "shipping": (lifecycle.OBJECT, "OBSERVE"),
}


def step(biz_step: str, serials=(), **fields) -> Step:
    type_, action = KINDS[biz_step]
    return Step(type_, action, biz_step, AT, tuple(serials), **fields)


def run(location, work):
    conn = db.connect(location)
    try:
        with db.transaction(conn):
            return work(conn)
    finally:
        conn.close()


def capture(location, steps):
    return run(location, lambda conn: events.capture(conn, steps, enterprise_id=None, actor="test", now=NOW))


def path_of(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


@pytest.fixture
def life(trace_world, trace_copy, make_app):
    """The trace world's copy with its server: `items` packed in `case` (24), `others` not."""
    case = int(trace_world["cases"][1][0]["serial"])
    items = trace_world["items"][1]
    return {
        **trace_world,
        "db": trace_copy,
        "app": make_app(DATABASE=str(trace_copy)),
        "case": case,
        "items": items[:24],
        "others": items[24:],
        "serials": [int(r["serial"]) for r in items[:24]],
        "items_batch": trace_world["items"][0],
    }


def shipped(life) -> str:
    """Pack, release and ship the case to the Sichuan dealer (成都); attach the inspection report; its SHA-256."""
    capture(
        life["db"],
        [
            step("packing", life["serials"], parent=life["case"]),
            step("commissioning", [life["case"]]),
            step("shipping", [life["case"]], dealer="dealer:SC-01", disposition="in_transit"),
        ],
    )
    return run(
        life["db"],
        lambda conn: events.attach_report(
            conn, life["items_batch"], REPORT_PDF, "检验报告 2026.pdf", enterprise_id=None, actor="test", now=NOW
        ),
    )


def page(life, url: str, lang: str) -> str:
    client = life["app"].test_client()
    response = client.get(path_of(url), headers={"Accept-Language": lang})
    assert response.status_code == 200
    return response.get_data(as_text=True)


def main_text(html: str) -> str:
    return html.split("<main>", 1)[1]


def reason_of(html: str) -> str:
    return re.search(r'data-reason="([a-z-]+)"', html).group(1)


@pytest.mark.parametrize(
    "lang, words",
    [
        (
            "zh",
            [
                "产品溯源",
                "生产企业",
                "华茶集团",
                "浙江杭州",
                "2026年11月20日",
                "发往",
                "四川",
                "2026年11月26日",
                "随密封整箱出厂",
                "检验报告",
            ],
        ),
        (
            "en",
            [
                "Trace",
                "Producer",
                "华茶集团",
                "浙江杭州",
                "20 Nov 2026",
                "Shipped to",
                "Sichuan",
                "26 Nov 2026",
                "left the factory in a sealed case",
                "Inspection report",
            ],
        ),
    ],
)
def test_a_shipped_items_page_shows_its_trace_with_the_province_only(life, lang, words):
    sha256 = shipped(life)
    html = page(life, life["items"][3]["url"], lang)
    assert reason_of(html) == "genuine"
    body = main_text(html)
    for word in words:
        assert word in body, word
    assert f'href="/doc/{sha256}"' in body and f'<dd class="num">{sha256}</dd>' in body  # wraps on a phone
    for secret in ("成都", "Chengdu", "成都茶行", "SC-01", "6901234000016", "510100"):
        assert secret not in body, secret  # the dealer and the city are never shown
    assert "<script" not in html and "style=" not in html


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_a_traced_page_with_its_stylesheet_stays_under_6_kb(life, lang):
    """The untraced verdict pages keep test_web's 4 kB; the trace's ten lines may add 2 kB more."""
    shipped(life)
    css = len(life["app"].test_client().get("/static/site.css").get_data())
    html = page(life, life["items"][4]["url"], lang).encode()
    assert len(html) + css < 6144, len(html) + css


def test_the_api_carries_the_same_trace(life):
    sha256 = shipped(life)
    answer = life["app"].test_client().get("/api/v1/verify", query_string={"code": life["items"][0]["url"]}).get_json()
    trace = answer["trace"]
    assert trace["shipped_to"] == [{"code": "510000", "zh": "四川", "en": "Sichuan"}]
    assert (trace["shipped_on"], trace["in_case"], trace["inspection_report"]["sha256"]) == ("2026-11-26", True, sha256)


@pytest.mark.parametrize(
    "reason, zh, en",
    [
        ("stolen", "该产品已被盗", "the product was stolen"),
        ("counterfeit", "该码已被复制到假冒产品上", "it was copied onto counterfeit products"),
        ("destroyed", "该产品已被销毁", "the product was destroyed"),
    ],
)
def test_a_blocked_code_is_red_says_why_and_puts_the_report_form_first(life, reason, zh, en):
    shipped(life)
    item = life["items"][1]
    run(
        life["db"],
        lambda conn: events.block(conn, [int(item["serial"])], reason, enterprise_id=None, actor="test", now=NOW),
    )
    for lang, words in (("zh", zh), ("en", en)):
        body = main_text(page(life, item["url"], lang))
        assert 'class="verdict bad" data-reason="blocked"' in body and words in body
        assert "产品溯源" not in body and "<h2>Trace</h2>" not in body  # a red verdict shows no trace
        link = body.index('href="/report?')
        assert link < body.index('<dl class="details">')  # the report link comes first, under the verdict
    answer = life["app"].test_client().get("/api/v1/verify", query_string={"code": item["url"]}).get_json()
    assert (answer["reason"], answer["detail"], answer["tone"]) == ("blocked", reason, "bad")


def test_a_code_not_released_says_so_and_keeps_its_trace(life):
    item = life["others"][0]
    zh = main_text(page(life, item["url"], "zh"))
    assert reason_of(zh) == "not-released" and "此产品尚未放行销售" in zh and "尚未出厂放行" in zh
    assert "产品溯源" in zh and "浙江杭州" in zh and "发往" not in zh  # not shipped: no shipment row
    en = main_text(page(life, item["url"], "en"))
    assert "Not yet released for sale" in en and "has not been released from the factory" in en
    assert 'href="/report?' in zh and 'href="/report?' in en


def test_a_forged_labels_page_shows_no_trace(life):
    shipped(life)
    forged = forged_url(life["items"][2]["url"])
    for lang in ("zh", "en"):
        body = main_text(page(life, forged, lang))
        assert reason_of(body) == "bad-signature"
        for word in ("产品溯源", "Trace", "华茶集团", "浙江杭州", "四川", "Sichuan", "/doc/"):
            assert word not in body, word
        assert 'href="/report?' in body  # reporting it is still the thing to do
    assert life["app"].test_client().get("/api/v1/verify", query_string={"code": forged}).get_json()["trace"] is None


def test_the_inspection_report_is_served_by_its_hash(life):
    sha256 = shipped(life)
    assert sha256 == hashlib.sha256(REPORT_PDF).hexdigest()
    client = life["app"].test_client()
    response = client.get(f"/doc/{sha256}")
    assert response.status_code == 200 and response.data == REPORT_PDF
    assert response.mimetype == "application/pdf"
    assert response.headers["X-Content-SHA256"] == sha256
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('inline; filename="') and "filename*=UTF-8''" in disposition
    assert "%E6%A3%80%E9%AA%8C" in disposition  # 检验, percent-encoded
    again = client.get(f"/doc/{sha256}", headers={"If-None-Match": f'"{sha256}"'})
    assert again.status_code == 304 and again.data == b""


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/doc/" + "0" * 64, id="unknown"),
        pytest.param("/doc/" + "A" * 64, id="upper-case"),
        pytest.param("/doc/abc", id="short"),
        pytest.param("/doc/" + "0" * 65, id="long"),
        pytest.param("/doc/..%2Fetc%2Fpasswd", id="traversal"),
        pytest.param("/doc/a/b", id="deeper"),
        pytest.param("/doc/", id="empty"),
    ],
)
def test_unknown_or_ill_formed_documents_are_not_found_and_record_no_scan(life, path):
    shipped(life)
    before = run(life["db"], lambda conn: conn.execute("SELECT count(*) FROM scans").fetchone()[0])
    assert life["app"].test_client().get(path).status_code == 404
    assert run(life["db"], lambda conn: conn.execute("SELECT count(*) FROM scans").fetchone()[0]) == before
