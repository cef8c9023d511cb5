"""The trace and the report form in a real browser (headless Chromium via Playwright): a phone at
360 x 740 and a desktop, the trace section, a report sent with a photo; screenshots in the test's tmp dir."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from browsers import DESKTOP, chromium, require_chromium
from conftest import database_env

require_chromium()

from PIL import Image  # noqa: E402

from verifier import db, events, lifecycle  # noqa: E402
from verifier.events import Step  # noqa: E402

AT = "2026-11-26T09:00:00.000+00:00"
NOW = dt.datetime(2026, 11, 26, 9, 5, tzinfo=dt.UTC)
PHONE = {
    "viewport": {"width": 360, "height": 740},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}  # a small one


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


@pytest.fixture
def shipped_server(trace_world, trace_copy, serve):
    """The trace world's copy with a case packed, released and shipped to 四川, and an inspection report."""
    case = int(trace_world["cases"][1][0]["serial"])
    items = trace_world["items"][1][:24]
    steps = [
        Step(lifecycle.AGGREGATION, "ADD", "packing", AT, tuple(int(r["serial"]) for r in items), parent=case),
        Step(lifecycle.OBJECT, "ADD", "commissioning", AT, (case,)),
        Step(lifecycle.OBJECT, "OBSERVE", "shipping", AT, (case,), dealer="dealer:SC-01"),
    ]
    conn = db.connect(trace_copy)
    with db.transaction(conn):
        events.capture(conn, steps, enterprise_id=None, actor="test", now=NOW)
        events.attach_report(
            conn, trace_world["items"][0], b"%PDF-1.4\n%%EOF\n", "report.pdf", enterprise_id=None, actor="test", now=NOW
        )
    conn.close()
    return serve(**database_env(trace_copy)), items


def no_sideways_scroll(page, shot, width):
    page.screenshot(path=str(shot), full_page=True)
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"{shot.name}: the page scrolls sideways ({scroll} px)"


@pytest.mark.parametrize(
    "device, locale, words",
    [
        ("phone", "zh-CN", ("产品溯源", "四川", "随密封整箱出厂", "举报/反馈此产品", "提交反馈", "已收到您的反馈")),
        (
            "phone",
            "en-US",
            ("Trace", "Sichuan", "sealed case", "Report this product", "Send report", "Report received"),
        ),
        ("desktop", "zh-CN", ("产品溯源", "四川", "随密封整箱出厂", "举报/反馈此产品", "提交反馈", "已收到您的反馈")),
    ],
)
def test_the_trace_and_a_report_with_a_photo(browser, shipped_server, tmp_path, device, locale, words):
    server, items = shipped_server
    options = PHONE if device == "phone" else DESKTOP
    width = options["viewport"]["width"]
    trace, shipped, case, link, submit, thanks = words
    context = browser.new_context(locale=locale, **options)
    page = context.new_page()
    url = server.url + "/" + items[0]["url"].split("://", 1)[1].split("/", 1)[1]
    page.goto(url)
    text = page.locator("main").inner_text()
    assert trace in text and shipped in text and case in text and "成都" not in text
    no_sideways_scroll(page, tmp_path / f"{device}-{locale}-1-trace.png", width)
    report_link = page.get_by_role("link", name=link)
    if device == "phone":
        assert report_link.bounding_box()["height"] >= 44  # a thumb-sized target
        assert page.locator("a.doc").bounding_box()["height"] >= 44
    report_link.click()
    page.wait_for_load_state("load")
    no_sideways_scroll(page, tmp_path / f"{device}-{locale}-2-form.png", width)
    photo = tmp_path / "photo.jpg"
    buffer = io.BytesIO()
    Image.new("RGB", (1200, 900), (180, 40, 40)).save(buffer, "JPEG")
    photo.write_bytes(buffer.getvalue())
    page.locator("input[name=what][value=fake]").check()
    page.fill("input[name=bought_at]", "成都某超市")
    page.fill("textarea[name=details]", "包装印刷模糊，封口有撕开痕迹")
    page.set_input_files("input[name=photo]", str(photo))
    page.fill("input[name=contact]", "13800138000")
    page.get_by_role("button", name=submit).click()
    page.wait_for_load_state("load")
    assert thanks in page.locator("main").inner_text()
    no_sideways_scroll(page, tmp_path / f"{device}-{locale}-3-sent.png", width)
    context.close()
    conn = db.connect(server.env.get("VERIFIER_DB") or server.env["VERIFIER_DATABASE_URL"])
    try:
        row = conn.execute("SELECT what, photo_sha256, contact FROM consumer_reports").fetchone()
    finally:
        conn.close()
    assert row[0] == "fake" and row[1] and row[2].endswith("13800138000")
