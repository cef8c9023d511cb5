"""The consumer pages in a real browser: headless Chromium at a phone viewport, via Playwright."""

from __future__ import annotations

from pathlib import Path

import browsers
import pytest
from browsers import ARTIFACTS, chromium, require_chromium
from conftest import forged_url, settle

require_chromium()


PHONE = {  # a phone in WeChat, where most of these labels are scanned
    **browsers.PHONE,
    "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148 MicroMessenger/8.0.47",
}


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


def phone_page(browser, locale: str):
    context = browser.new_context(locale=locale, **PHONE)
    return context, context.new_page()


def visit(page, url: str, shot: str):
    page.goto(url)
    page.wait_for_load_state("load")
    page.screenshot(path=str(ARTIFACTS / f"{shot}.png"), full_page=True)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"{shot}: the page scrolls sideways ({width} px)"
    return page.locator("main").inner_text()


def path_of(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


@pytest.mark.parametrize(
    "locale, words",
    [
        (
            "zh-CN",
            {
                "first": "正品：首次查询",
                "repeat": "已被查询 2 次",
                "forged": "警告：非正品防伪码",
                "manual": "输入防伪码查询",
                "pin": "刮开验证码正确",
                "product": "华茶集团",
            },
        ),
        (
            "en-US",
            {
                "first": "Genuine: first check",
                "repeat": "checked 2 times",
                "forged": "Warning: not a genuine code",
                "manual": "Check a printed code",
                "pin": "The PIN is correct",
                "product": "华茶集团",
            },
        ),
    ],
)
def test_consumer_pages_on_a_phone(browser, serve, world, locale, words):
    server = serve()
    rows = world["pin"][1]
    lang = locale[:2]
    code_url = server.url + path_of(rows[20 if lang == "zh" else 21]["url"])

    context, page = phone_page(browser, locale)
    first = visit(page, code_url, f"{lang}-1-genuine-first")
    assert words["first"] in first and words["product"] in first
    context.close()

    context, page = phone_page(browser, locale)  # another phone: a second check
    repeat = visit(page, code_url, f"{lang}-2-genuine-repeat")
    assert words["repeat"] in repeat
    context.close()

    context, page = phone_page(browser, locale)
    forged = server.url + path_of(forged_url(rows[20 if lang == "zh" else 21]["url"]))  # always a well-formed forgery
    assert words["forged"] in visit(page, forged, f"{lang}-3-forged")

    row = rows[22 if lang == "zh" else 23]
    assert words["manual"] in visit(page, server.url + "/", f"{lang}-4-manual-entry")
    page.fill("input[name=code]", row["code"])
    page.fill("input[name=pin]", row["pin"])
    page.click("button[type=submit]")
    page.wait_for_load_state("load")
    page.screenshot(path=str(ARTIFACTS / f"{lang}-5-manual-verdict.png"), full_page=True)
    assert words["pin"] in page.locator("main").inner_text()
    context.close()


def test_language_switch_link(browser, serve, world):
    server = serve()
    context, page = phone_page(browser, "zh-CN")
    assert "正品" in visit(page, server.url + path_of(world["pin"][1][24]["url"]), "switch-zh")
    page.click("header a.lang")
    page.wait_for_load_state("load")
    assert "Genuine" in page.locator("main").inner_text()
    page.goto(server.url + "/")
    assert "Check a printed code" in page.locator("main").inner_text()  # remembered
    context.close()


def report(db, serial) -> None:
    """What `verifier audit report-code` does."""
    from verifier import db as database
    from verifier.audit import report_code
    from verifier.clock import now

    conn = database.connect(db)
    try:
        with database.transaction(conn):
            report_code(conn, int(serial), "seen at a market stall", "test", now())
    finally:
        conn.close()


@pytest.mark.parametrize(
    "locale, words",
    [
        (
            "zh-CN",
            {
                "reported": "已被举报为假冒",
                "recalled": "请立即停止使用该产品",
                "mismatch": "验证码不正确",
                "typo": "防伪码输入有误",
                "genuine": "刮开验证码正确",
            },
        ),
        (
            "en-US",
            {
                "reported": "Warning: reported counterfeit",
                "recalled": "Stop using the product now.",
                "mismatch": "Wrong PIN",
                "typo": "Typing error",
                "genuine": "The PIN is correct",
            },
        ),
    ],
)
def test_new_verdicts_on_a_phone(browser, serve, world, db_copy, locale, words):
    lang = locale[:2]
    rows = world["pin"][1]
    reported, row = rows[30 if lang == "zh" else 31], rows[32 if lang == "zh" else 33]
    report(db_copy, reported["serial"])
    server = serve()
    context, page = phone_page(browser, locale)

    text = visit(page, server.url + path_of(reported["url"]), f"{lang}-6-reported")
    assert words["reported"] in text and page.locator("section.verdict.bad").count() == 1
    assert page.locator("input[name=pin]").count() == 0

    text = visit(page, server.url + path_of(world["recalled"][1][0]["url"]), f"{lang}-7-recalled")
    assert words["recalled"] in text and page.locator("section.verdict.stop").count() == 1
    assert (
        page.locator("section.remedy a[href='tel:12315']").count() == 1 and page.locator("input[name=pin]").count() == 0
    )

    visit(page, server.url + "/", f"{lang}-8-manual")
    page.fill("input[name=code]", row["code"])
    page.fill("input[name=pin]", "00000000" if row["pin"] != "00000000" else "11111111")
    page.click("button[type=submit]")
    page.wait_for_load_state("load")
    page.screenshot(path=str(ARTIFACTS / f"{lang}-9-wrong-pin-retry.png"), full_page=True)
    assert words["mismatch"] in page.locator("main").inner_text()
    assert page.input_value("input[name=code]") == row["code"] and page.input_value("input[name=pin]") == ""
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.fill("input[name=pin]", row["pin"])  # the retry form, the code already filled in
    page.click("button[type=submit]")
    page.wait_for_load_state("load")
    assert words["genuine"] in page.locator("main").inner_text()

    visit(page, server.url + "/", f"{lang}-8-manual")
    typo = row["code"][:-1]
    page.fill("input[name=code]", typo)
    page.click("button[type=submit]")
    page.wait_for_load_state("load")
    page.screenshot(path=str(ARTIFACTS / f"{lang}-10-typo.png"), full_page=True)
    assert words["typo"] in page.locator("main").inner_text() and page.locator("section.verdict.warn").count() == 1
    assert page.input_value("input[name=code]") == typo
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    context.close()


@pytest.mark.parametrize("locale, words", [("zh-CN", "保存本次查验凭证"), ("en-US", "Keep a receipt of this check")])
def test_a_phone_keeps_a_receipt_of_its_check(browser, serve, world, locale, words):
    """The verdict page's receipt link is a thumb-sized target (44 px) on a phone, and tapping it saves
    the receipt of this very scan. The test is the log's sequencer (the server runs none), so the scan
    is in a signed checkpoint before the tap: on PostgreSQL a server's own sequencer may not have
    taken it yet, and a receipt of a scan not yet in the log has no serial to compare."""
    import json

    from verifier import codes

    server = serve(args=("--no-sequencer",))
    row = world["pin"][1][24 if locale == "zh-CN" else 25]
    context, page = phone_page(browser, locale)
    visit(page, server.url + path_of(row["url"]), f"{locale[:2]}-6-receipt-link")
    settle(server.env.get("VERIFIER_DATABASE_URL") or server.env["VERIFIER_DB"])
    link = page.get_by_role("link", name=words)
    box = link.bounding_box()
    assert box is not None and box["height"] >= 44 and box["x"] >= 0 and box["x"] + box["width"] <= 390
    with page.expect_download() as download:
        link.click()
    saved = json.loads(Path(download.value.path()).read_text("utf-8"))
    assert saved["format"] == "verifier-receipt/1" and saved["state"] == "complete"
    assert saved["serial"] == f"{int(row['serial']):016d}" and saved["code"] == codes.human_code(int(row["serial"]))
    assert download.value.suggested_filename == f"receipt-{saved['scan']}.json"
    context.close()
