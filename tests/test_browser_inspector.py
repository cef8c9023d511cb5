"""The inspector's path in a real browser (headless Debian Chromium via Playwright, phone 390x844
and desktop 1280x800), both engines: an inspector logs in, opens the map, sees 广东 coloured on the
diversions metric, follows its figure to the diversion anomaly and its evidence (dealer, shipped
region, the scan's province), opens a case from it, assigns it, notes it, moves it to
investigating, then closes it after the confirmation, all through the pages' links and forms
(with their CSRF tokens); downloads the evidence export, which `verifier audit verify-export`
verifies offline, and a copy with one byte changed in a log entry or in the CSV does not.
Every page: under 60 kB, no sideways scroll at phone width, no console error (a CSP violation is
one). Screenshots of each step at both sizes: test-artifacts/browser/inspector-path-*.png."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from browsers import ARTIFACTS, SIZES, chromium, require_chromium
from conftest import database_env, log_signer_for_tests, settle
from test_diversion import shipped  # noqa: F401 - the fixture: 24 items shipped to SC-01 (成都, 510100)

require_chromium()


PASSWORD = "correct horse battery"
PAGE_MAX_BYTES = 60_000
CSRF = re.compile(r"[0-9a-f]{32}")
VKEY = log_signer_for_tests().vkey


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


@pytest.fixture
def diverted(shipped):  # noqa: F811
    """A few scans of the shipped codes: inside 四川, next door in 重庆 (a low diversion), far away
    in 广东 twice (the high diversion the inspector follows), and one never shipped (in 浙江)."""
    scan = shipped["scan"]
    scan(0, "Sichuan")
    scan(0, "四川省")
    scan(1, "Chongqing")
    far = [scan(2, "Guangdong"), scan(2, "广东省")]
    scan(30, "Zhejiang")
    settle(shipped["db"])
    return {**shipped, "far": far, "serial": f"{shipped['items'][2]:016d}"}


class Walk:
    """One inspector's browser tab: each step's page is checked (status, weight, width, console)
    and photographed."""

    def __init__(self, page, size: str):
        self.page, self.size, self.steps = page, size, 0
        self.documents: list = []
        self.problems: list[str] = []
        page.on("response", lambda r: self.documents.append(r) if r.request.resource_type == "document" else None)
        page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))

    def step(self, name: str) -> str:
        """The page now shown, checked: its main text."""
        page = self.page
        page.wait_for_load_state("load")
        shown = self.documents[-1]
        assert shown.status == 200, (name, shown.url, shown.status)
        weight = len(shown.body())
        assert weight < PAGE_MAX_BYTES, f"{name}: {weight} bytes"
        self.steps += 1
        page.screenshot(path=str(ARTIFACTS / f"inspector-path-{self.steps:02d}-{name}-{self.size}.png"), full_page=True)
        width = page.evaluate("document.documentElement.scrollWidth")
        viewport = SIZES[self.size]["viewport"]["width"]
        assert width <= viewport, f"{name}: the page scrolls sideways ({width} px on a {viewport} px screen)"
        assert page.locator("html").get_attribute("lang") == "zh-CN", name
        assert not self.problems, (name, self.problems)
        return page.locator("main").inner_text()

    def on_screen(self, locator) -> None:
        """`locator` is within the screen's width: reached without scrolling anything sideways."""
        locator.scroll_into_view_if_needed()
        box = locator.bounding_box()
        viewport = SIZES[self.size]["viewport"]["width"]
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= viewport, (locator, box)

    def submit(self, form: str, button: str) -> None:
        """Click `button` of the form whose action ends with `form`, after checking its CSRF token."""
        clicked = self.page.get_by_role("button", name=button, exact=True)
        found = self.page.locator(f'form[action$="{form}"]').filter(has=clicked)
        assert CSRF.fullmatch(found.locator('input[name="csrf"]').get_attribute("value") or ""), form
        self.on_screen(found.locator(clicked))
        found.locator(clicked).click()


def verify_export(path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERIFIER_")}  # offline: no database
    command = [sys.executable, "-m", "verifier", "audit", "verify-export", str(path), "--log-key", VKEY]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def changed_byte(text: str, start: str, skip: int, alphabet: str) -> str:
    """`text` with one character changed: the first of `alphabet` at least `skip` characters after
    the first `start`, replaced by the next character of `alphabet`."""
    at = text.index(start) + len(start) + skip
    while text[at] not in alphabet:
        at += 1
    return text[:at] + alphabet[(alphabet.index(text[at]) + 1) % len(alphabet)] + text[at + 1 :]


BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


# Each engine and each size is walked once (the walk is 7 s): PostgreSQL at phone width, SQLite at desktop.
WALKS = {("sqlite", "desktop"), ("postgresql", "phone")}


@pytest.mark.parametrize("size", SIZES)
def test_an_inspector_follows_a_diversion_from_the_map_to_a_closed_case_and_a_verified_export(
    browser, engine, diverted, serve, tmp_path, size
):
    if (engine, size) not in WALKS:
        pytest.skip(f"{size} is walked on the other engine")
    # the test is the log's sequencer (settle, with the tests' log key): none beside the server to race it
    server = serve(args=("--no-sequencer",), **database_env(diverted["db"]))
    context = browser.new_context(locale="zh-CN", accept_downloads=True, **SIZES[size])
    context.set_default_timeout(10_000)
    walk = Walk(context.new_page(), size)
    page = walk.page

    # 1. log in; the map; its diversions metric colours 广东, and its table row agrees
    page.goto(server.url + "/audit/login")
    walk.step("login")
    page.fill("input[name=username]", "ian")
    page.fill("input[name=password]", PASSWORD)
    walk.submit("/audit/login", "登录")
    walk.step("scans")
    page.locator("header nav").get_by_role("link", name="地图", exact=True).click()
    walk.step("map")
    page.locator("p.choices").get_by_role("link", name="窜货异常").click()
    text = walk.step("map-diversions")
    assert "各省查询分布" in text
    tile = page.locator('svg.chinamap path[data-code="440000"]')
    assert tile.get_attribute("class") != "c0" and "窜货异常 1" in (tile.locator("title").text_content() or "")
    row = page.locator('table.figures tr[data-code="440000"]')
    assert [c.strip() for c in row.locator("td").all_inner_texts()] == ["广东", "2", "0", "1"]
    assert page.locator('svg.chinamap path[data-code="650000"]').get_attribute("class") == "c0"  # 新疆: nothing

    # 2. the row's diversions figure leads to the province's diversion anomalies and their evidence
    row.get_by_role("link", name="1").click()
    text = walk.step("anomalies")
    listed = page.locator('tbody tr[data-rule="diversion"]')
    assert listed.count() == 1  # 广东's: not 重庆's low one
    anomaly = listed.inner_text()
    assert diverted["serial"] in anomaly and "高" in anomaly
    assert "经销商 SC-01 成都茶行" in anomaly and "发往 四川（510100" in anomaly and "出现于 广东" in anomaly
    assert all(str(s) in anomaly for s in diverted["far"])
    walk.on_screen(listed.locator("small"))  # the dealer, where it was shipped and where it was seen

    # 3. a case from it: the confirmation of what will be opened, then the case with its evidence
    walk.on_screen(listed.get_by_role("link", name="立案调查"))
    listed.get_by_role("link", name="立案调查").click()
    text = walk.step("case-new")
    assert "由异常立案" in text and "窜货" in text and ", ".join(map(str, diverted["far"])) in text
    walk.submit("/audit/cases/new", "确认立案")
    text = walk.step("case-open")
    case_url = page.url
    case_id = int(case_url.rsplit("/", 1)[1])
    assert f"案件 {case_id} · 待处理" in text and "窜货" in text
    details = page.locator("dl.details").inner_text()
    assert "成都茶行" in details and "510100" in details and "四川" in details and "广东" in details
    evidence = page.locator("table.evidence tbody tr")
    assert [evidence.nth(i).locator("td").first.inner_text() for i in range(evidence.count())] == [
        str(s) for s in diverted["far"]
    ]
    assert "Guangdong" in evidence.first.inner_text() and "广东省" in evidence.last.inner_text()
    walk.on_screen(evidence.first.locator("td").last)  # the scan's province

    # assignee, a note, investigating, then closed after the confirmation
    page.fill("input[name=assignee]", "ian")
    walk.submit(f"/cases/{case_id}/assign", "指派")
    text = walk.step("case-assigned")
    assert "负责人 ian" in text
    page.fill("textarea[name=text]", "经销商承认将货物转售至广东")
    walk.submit(f"/cases/{case_id}/note", "添加备注")
    text = walk.step("case-noted")
    assert "经销商承认将货物转售至广东" in text and "ui:ian" in text
    page.select_option("select[name=status]", "investigating")
    walk.submit(f"/cases/{case_id}/status", "更改状态")
    text = walk.step("case-investigating")
    assert f"案件 {case_id} · 调查中" in text
    page.select_option("select[name=status]", "closed")
    walk.submit(f"/cases/{case_id}/status", "更改状态")
    text = walk.step("case-close-confirm")
    assert "确认结案" in text and f"案件 {case_id} · 调查中" in text  # nothing closed yet
    walk.submit(f"/cases/{case_id}/status", "确认结案")
    text = walk.step("case-closed")
    assert f"案件 {case_id} · 已结案" in text and "结案" in text

    # 4. the export, once the log's sequencer has put the case's entries into a signed checkpoint
    settle(diverted["db"])
    walk.on_screen(page.get_by_role("link", name="下载证据包"))
    with page.expect_download() as caught:
        page.get_by_role("link", name="下载证据包").click()
    download = caught.value
    assert download.suggested_filename == f"case-{case_id}-evidence.json"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    result = verify_export(saved)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"Export OK: case {case_id} (diversion, code {diverted['serial']}")
    assert len(result.stdout.splitlines()) == 1 and result.stderr == ""

    original = saved.read_text("utf-8")
    first_scan = diverted["far"][0]
    tampered = {  # one byte changed in a copy: what verify-export then says (exit 1, one line)
        "a log entry's leaf": (
            changed_byte(original, '"leaf": "', 40, BASE64),
            re.compile(r"TAMPERED: entry \d+ is not in the checkpoint's tree \(root-mismatch\)"),
        ),
        "the CSV's first scan time": (
            changed_byte(original, "\\r\\n", 20, "0123456789"),
            re.compile(rf"TAMPERED: CSV line 2 \(scan {first_scan}\): at is not what the scan's log entry says"),
        ),
    }
    for what, (text, says) in tampered.items():
        assert text != original
        copy = tmp_path / "tampered.json"
        copy.write_text(text, encoding="utf-8")
        result = verify_export(copy)
        assert result.returncode == 1, (what, result.stdout, result.stderr)
        assert says.match(result.stdout) and len(result.stdout.splitlines()) == 1, (what, result.stdout)
        assert result.stderr == "", (what, result.stderr)  # no traceback

    # 5. the anomaly now links to its case, and the header to the case list, where it is closed
    page.locator("header nav").get_by_role("link", name="异常", exact=True).click()
    walk.step("anomalies-with-case")
    listed = page.locator('tbody tr[data-rule="diversion"]').filter(has_text=diverted["serial"])
    walk.on_screen(listed.get_by_role("link", name=f"案件 {case_id}（已结案）"))
    listed.get_by_role("link", name=f"案件 {case_id}（已结案）").click()
    text = walk.step("case-from-anomalies")
    assert page.url == case_url and f"案件 {case_id} · 已结案" in text
    page.locator("header nav").get_by_role("link", name="案件", exact=True).click()
    walk.step("cases")
    assert (
        page.locator("table.cases tbody tr.case-closed").get_by_role("link", name=str(case_id), exact=True).count() == 1
    )
    assert not walk.problems
    context.close()
