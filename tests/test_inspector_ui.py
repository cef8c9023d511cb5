"""The inspector's UI: Chinese by default, China Standard Time, the province map (its table is the
oracle, checked against the scans table) and trends; both engines; a real browser at phone and
desktop widths."""

from __future__ import annotations

import datetime as dt
import os
import re

import pytest
from browsers import ARTIFACTS, CHROMIUM, chromium
from conftest import forged_url, log_in
from test_diversion import _api, shipped  # noqa: F401  (a fixture: 24 items shipped to 成都)

from verifier import anomalies, chinamap, db, regions

CST = dt.timezone(dt.timedelta(hours=8))
COUNTRY_PROVINCES = {"HK": "810000", "MO": "820000", "TW": "710000"}


def client_of(app, who, lang=None):
    client = app.test_client()
    assert log_in(client, who).status_code == 302
    if lang:
        client.set_cookie("vaudit_lang", lang, path="/audit")
    return client


def map_table(html: str) -> dict[str, tuple[int, int, int]]:
    rows = re.findall(
        r'<tr data-code="(\d{6})"><td>[^<]*</td><td>(\d+)</td><td>(\d+)</td><td>(?:<a [^>]*>)?(\d+)(?:</a>)?</td></tr>',
        html,
    )
    return {code: (int(a), int(b), int(c)) for code, a, b, c in rows}


def expected_from_scans(location, enterprise_id=None) -> dict[str, tuple[int, int]]:
    """(scans, counterfeit scans) per province, read straight from the scans table."""
    conn = db.connect(location)
    try:
        sql = "SELECT country, region, reason FROM scans"
        if enterprise_id is not None:
            sql += f" WHERE batch_id IN (SELECT id FROM batches WHERE enterprise_id = {int(enterprise_id)})"
        rows = conn.execute(sql).fetchall()
    finally:
        conn.close()
    counts = {p.code: [0, 0] for p in regions.provinces()}
    for country, region, reason in rows:
        if country in COUNTRY_PROVINCES:
            code = COUNTRY_PROVINCES[country]
        elif country in (None, "CN"):
            found = regions.province_of_place(region)
            code = found.code if found else None
        else:
            code = None
        if code:
            counts[code][0] += 1
            counts[code][1] += reason in anomalies.COUNTERFEIT_REASONS
    return {code: (a, b) for code, (a, b) in counts.items()}


@pytest.fixture
def scanned(shipped):  # noqa: F811
    """Genuine scans in several provinces, forged ones in 广东 and 香港, one abroad; one diversion."""
    scan, rows, app = shipped["scan"], shipped["rows"], shipped["app"]
    scan(0, "Sichuan")
    scan(0, "四川省")
    scan(2, "Guangdong")  # shipped to 成都: diverted (high)
    scan(30, "Zhejiang")  # never shipped: no dealer to divert from
    scan(9, "SC", country="US")  # South Carolina: abroad
    for i, (region, country) in enumerate([("Guangdong", None), ("广东省", "CN"), ("", "HK")]):
        headers = {"X-Geo-Region": region} | ({"X-Geo-Country": country} if country else {})
        app.test_client().get("/" + forged_url(rows[10 + i]["url"]).split("/", 3)[3], headers=headers)
    return shipped


def test_the_map_table_equals_counts_from_the_scans_table(scanned):
    html = client_of(scanned["app"], "ian").get("/audit/map").get_data(as_text=True)
    table = map_table(html)
    assert len(table) == 34
    expected = expected_from_scans(scanned["db"])
    assert {code: row[:2] for code, row in table.items()} == expected
    assert table["510000"][:2] == (2, 0) and table["440000"][:2] == (3, 2) and table["810000"][:2] == (1, 1)
    assert '<tr class="elsewhere"><td>境外或未定位</td><td>1</td><td>0</td>' in html


def test_a_diversion_anomaly_is_on_the_map_in_the_scans_province(scanned):
    diverted = [a for a in _api(scanned, "ian") if a["rule"] == "diversion"]
    assert len(diverted) == 1
    html = client_of(scanned["app"], "ian").get("/audit/map?metric=diversions").get_data(as_text=True)
    table = map_table(html)
    assert table["440000"][2] == 1 and sum(row[2] for row in table.values()) == 1
    assert re.search(
        r'<path class="c4" data-code="440000" d="[^"]+"><title>广东: 查询次数 3, 假冒码查询 2, 窜货异常 1</title>', html
    )


def test_the_maps_diversion_figure_links_to_the_provinces_diversion_anomalies(scanned):
    scanned["scan"](1, "Chongqing")  # a second diversion, next door: not 广东's
    client = client_of(scanned["app"], "ian")
    html = client.get("/audit/map?metric=diversions&days=7").get_data(as_text=True).replace("&amp;", "&")
    links = dict(re.findall(r'<tr data-code="(\d{6})">(?:(?!</tr>).)*?<a href="(/audit/anomalies\?[^"]+)"', html))
    assert set(links) == {"440000", "500000"}  # a province without a diversion links nowhere
    page = client.get(links["440000"]).get_data(as_text=True)
    assert {"rule=diversion", "province=440000", "days=7"} <= set(links["440000"].split("?")[1].split("&"))
    assert page.count('<tr data-rule="diversion">') == 1 and "出现于 广东" in page and "重庆" not in page
    assert "窜货：出现于 广东" in page and "全部异常" in page
    everything = client.get("/audit/anomalies?days=7").get_data(as_text=True)
    assert everything.count('<tr data-rule="diversion">') == 2
    for bad in ("rule=nonsense", "province=999999", "province=44", "province=广东"):
        assert client.get(f"/audit/anomalies?{bad}").status_code == 400, bad


def test_a_province_with_no_scans_is_drawn_in_the_lowest_class(scanned):
    html = client_of(scanned["app"], "ian").get("/audit/map").get_data(as_text=True)
    assert re.search(r'<path class="c0" data-code="650000"', html)  # 新疆: nothing
    assert not re.search(r'<path class="c0" data-code="440000"', html)


def test_enterprise_users_see_only_their_own_figures(scanned):
    app = scanned["app"]
    eve = map_table(client_of(app, "eve").get("/audit/map").get_data(as_text=True))
    assert {c: r[:2] for c, r in eve.items()} == expected_from_scans(scanned["db"], scanned["enterprise"])
    assert eve["440000"] == (1, 0, 1) and eve["810000"] == (0, 0, 0)  # forged codes claim no batch of hers
    oscar = map_table(client_of(app, "oscar").get("/audit/map").get_data(as_text=True))
    assert set(oscar.values()) == {(0, 0, 0)}
    trends = client_of(app, "oscar").get("/audit/trends").get_data(as_text=True)
    assert "华茶集团" not in trends and "无企业" not in trends


def test_trends_tables_add_up_to_the_scans_of_the_window(scanned):
    html = client_of(scanned["app"], "ian", "en").get("/audit/trends").get_data(as_text=True)
    total = len(expected_from_scans(scanned["db"])) and _scan_count(scanned["db"])
    for table in ("verdicts", "enterprises"):
        body = re.search(rf'<table class="{table}">.*?<tbody>(.*?)</tbody>', html, re.S).group(1)
        assert sum(int(x) for x in re.findall(r"<td>(\d+)</td></tr>", body)) == total, table
    assert "not genuine" in html and "no enterprise (forged or unknown codes)" in html and "华茶集团" in html


def _scan_count(location) -> int:
    conn = db.connect(location)
    try:
        return conn.execute("SELECT count(*) FROM scans").fetchone()[0]
    finally:
        conn.close()


def test_pages_are_in_chinese_by_default_and_in_english_on_request(scanned):
    client = client_of(scanned["app"], "ian")
    zh = client.get("/audit/map").get_data(as_text=True)
    assert '<html lang="zh-CN">' in zh and "各省查询分布" in zh and "窜货异常" in zh
    assert "省界数据：DCW-GMT 2.1.1, © The GMT Team, LGPL-3.0-or-later" in zh  # the map's source, under it
    en = client.get("/audit/map?lang=en")
    assert "Scans by province" in en.get_data(as_text=True)
    assert "vaudit_lang=en" in en.headers["Set-Cookie"] and "Path=/audit" in en.headers["Set-Cookie"]
    assert "Scan log" in client.get("/audit/").get_data(as_text=True)  # remembered
    scans = client.get("/audit/?lang=zh").get_data(as_text=True)
    assert "判定" in scans and "计入查询次数" in scans and "签名密钥" in scans and ">reason<" not in scans


def test_times_are_shown_in_china_standard_time(scanned):
    conn = db.connect(scanned["db"])
    try:
        serial, at = conn.execute("SELECT serial, at FROM scans WHERE serial IS NOT NULL ORDER BY id").fetchone()
    finally:
        conn.close()
    local = dt.datetime.fromisoformat(at).astimezone(CST)
    html = client_of(scanned["app"], "ian").get(f"/audit/codes/{serial:016d}").get_data(as_text=True)
    assert f"{local.year}年{local.month}月{local.day}日 {local:%H:%M:%S}" in html
    assert f'<time datetime="{at}">' in html


# --- a real browser --------------------------------------------------------------------------------

SIZES = {"phone": {"width": 360, "height": 780}, "desktop": {"width": 1280, "height": 900}}
# SVG user units to the viewport's pixels, and what is under a pixel (and whether it is hovered).
TO_SCREEN = """([x, y]) => { const svg = document.querySelector('svg.chinamap'); const p = svg.createSVGPoint();
  p.x = x; p.y = y; const q = p.matrixTransform(svg.getScreenCTM()); return [q.x, q.y]; }"""
POINTED_AT = "([x, y]) => { const e = document.elementFromPoint(x, y); return [e.dataset.code, e.matches(':hover')]; }"
PAGES = {"map": "/audit/map", "trends": "/audit/trends", "scans": "/audit/", "anomalies": "/audit/anomalies"}


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="no Debian chromium")
@pytest.mark.parametrize("size", SIZES)
def test_inspector_pages_in_a_browser_fit_the_screen_and_weigh_under_60_kB(audit_world, serve, size):
    server = serve()
    with chromium() as browser:
        context = browser.new_context(viewport=SIZES[size], locale="en-US")
        page = context.new_page()
        weights: dict[str, int] = {}
        page.on("response", lambda r: weights.__setitem__(r.url, len(r.body())) if r.ok else None)
        page.goto(server.url + "/audit/login")
        page.fill("input[name=username]", "ian")
        page.fill("input[name=password]", "correct horse battery")
        page.click("button")
        page.wait_for_load_state("load")
        for name, path in PAGES.items():
            weights.clear()
            page.goto(server.url + path)
            page.wait_for_load_state("load")
            page.screenshot(path=str(ARTIFACTS / f"inspector-{name}-{size}.png"), full_page=True)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= SIZES[size]["width"], f"{name}: the page scrolls sideways ({width} px)"
            assert sum(weights.values()) < 60_000, (name, weights)
            assert page.locator("html").get_attribute("lang") == "zh-CN"  # an English browser still gets Chinese
        svg = page.goto(server.url + "/audit/map") and page.locator("svg.chinamap").bounding_box()
        assert svg is not None and svg["width"] <= SIZES[size]["width"]
        for code in ("810000", "820000"):  # Hong Kong and Macao: their markers make them big enough to point at
            marker = chinamap.outline().shapes[code].marker
            assert marker is not None
            centre = [marker.corner[0] + marker.size / 2, marker.corner[1] + marker.size / 2]
            x, y = page.evaluate(TO_SCREEN, centre)
            page.mouse.move(x, y)
            assert page.evaluate(POINTED_AT, [x, y]) == [code, True]  # the pointer is on its path, which shows it
            side = (
                page.evaluate(TO_SCREEN, [marker.corner[0] + marker.size, 0])[0]
                - page.evaluate(TO_SCREEN, [marker.corner[0], 0])[0]
            )
            assert side >= 6, (code, side)  # px on the screen
        context.close()
