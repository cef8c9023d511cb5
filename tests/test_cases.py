"""Anomalies as cases, both engines: an inspector opens one from a real diversion anomaly in the
audit UI, assigns, notes and closes it (after a confirmation); every route answers each role as
it should with nothing leaked; forms without the CSRF token are refused; `audit verify` catches
an edited case, note or link."""

from __future__ import annotations

import re

import pytest
from conftest import csrf_of, log_in, log_trust_for_tests, settle
from test_diversion import shipped  # noqa: F401 - the fixture: shipped codes, scans with regions

from verifier import auditlog, db


@pytest.fixture
def diverted(shipped):  # noqa: F811
    shipped["far"] = [shipped["scan"](2, "Guangdong"), shipped["scan"](2, "广东省")]
    shipped["subject"] = f"code {shipped['items'][2]:016d}: SC-01 Sichuan -> Guangdong"
    return shipped


def _client(world, who):
    client = world["app"].test_client()
    assert log_in(client, who).status_code == 302
    return client


def _open(world, who="ian"):
    client = _client(world, who)
    page = client.get("/audit/anomalies?days=30").get_data(as_text=True)  # in Chinese: 立案调查
    link = re.search(r'href="(/audit/cases/new\?[^"]+)">立案调查', page.replace("&amp;", "&"))
    assert link, page
    confirm = client.get(link.group(1))
    assert confirm.status_code == 200 and "确认立案" in confirm.get_data(as_text=True)
    html = confirm.get_data(as_text=True)
    fields = dict(re.findall(r'name="(rule|subject|days)" value="([^"]*)"', html))
    fields["subject"] = fields["subject"].replace("&gt;", ">")
    response = client.post("/audit/cases/new", data={**fields, "csrf": csrf_of(html)})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client, int(response.headers["Location"].rsplit("/", 1)[1])


def _verify(world):
    conn = db.connect(world["db"])
    try:
        settle(conn)
        return auditlog.verify(conn, log_trust_for_tests())
    finally:
        conn.close()


def test_an_inspector_opens_assigns_notes_and_closes_a_case_from_a_diversion(diverted):
    client, case_id = _open(diverted)
    page = client.get(f"/audit/cases/{case_id}").get_data(as_text=True)
    assert "diversion" in page and diverted["subject"].replace(">", "&gt;") in page and "待处理" in page
    assert all(f'<td data-label="扫描">{s}</td>' in page for s in diverted["far"])  # the evidence scans
    assert "成都茶行" in page and "广东" in page  # the anomaly's details
    token = csrf_of(page)
    base = f"/audit/cases/{case_id}"
    assert client.post(f"{base}/assign", data={"assignee": "ian", "csrf": token}).status_code == 302
    assert client.post(f"{base}/note", data={"text": "经销商承认窜货", "csrf": token}).status_code == 302
    assert client.post(f"{base}/assign", data={"assignee": "eve", "csrf": token}).status_code == 400  # not an inspector
    confirm = client.post(f"{base}/status", data={"status": "closed", "csrf": token})
    assert confirm.status_code == 200 and "确认结案" in confirm.get_data(as_text=True)
    assert "待处理" in client.get(base).get_data(as_text=True)  # not closed before the confirmation
    done = client.post(f"{base}/status", data={"status": "closed", "confirm": "yes", "csrf": token})
    assert done.status_code == 302
    page = client.get(base).get_data(as_text=True)
    assert "已结案" in page and "经销商承认窜货" in page and "ui:ian" in page
    times = re.findall(r"2\d{3}年\d{1,2}月\d{1,2}日 \d\d:\d\d", page)
    assert times  # China Standard Time, as the whole audit UI shows it
    listed = client.get("/audit/cases/?status=closed&severity=high").get_data(as_text=True)
    assert f">{case_id}</a>" in listed
    assert "暂无案件" in client.get("/audit/cases/?status=open").get_data(as_text=True)
    export = client.get(f"{base}/export")
    assert export.status_code == 200 and export.headers["Content-Disposition"].endswith('-evidence.json"')
    assert _verify(diverted).ok


def test_the_anomaly_list_links_to_its_case_and_the_header_to_the_case_list(diverted):
    client = _client(diverted, "ian")
    subject = diverted["subject"].replace(">", "&gt;")

    def actions():
        page = client.get("/audit/anomalies?days=30").get_data(as_text=True)
        row = next(r for r in page.split("<tr ") if subject in r)
        return re.findall(r'<a href="(/audit/cases/[^"]*)">([^<]+)</a>', row.replace("&amp;", "&"))

    assert [text for _, text in actions()] == ["立案调查"]
    _, case_id = _open(diverted)
    assert actions() == [(f"/audit/cases/{case_id}", f"案件 {case_id}（待处理）")]  # not a second case
    assert '<a href="/audit/cases/">案件</a>' in client.get("/audit/").get_data(as_text=True)
    token = csrf_of(client.get(f"/audit/cases/{case_id}").get_data(as_text=True))
    client.post(f"/audit/cases/{case_id}/status", data={"status": "closed", "confirm": "yes", "csrf": token})
    assert [text for _, text in actions()] == [f"案件 {case_id}（已结案）", "立案调查"]  # seen again: a new case
    eve = _client(diverted, "eve")  # the owning enterprise reads the case, opens none
    page = eve.get("/audit/anomalies?days=30").get_data(as_text=True)
    assert f"案件 {case_id}（已结案）" in page and "立案调查" not in page


def test_the_case_pages_speak_the_uis_words_in_chinese_and_in_english(diverted):
    client, case_id = _open(diverted)
    page = client.get(f"/audit/cases/{case_id}").get_data(as_text=True)
    assert "<b>窜货</b>" in page and "已发货的防伪码在经销商销售区域以外的省份被查询" in page
    for label, value in (
        ("经销商", "SC-01 成都茶行"),
        ("发往省份", "四川"),
        ("销售区域（行政区划代码）", "510100"),
        ("发货时间（北京时间）", '<time datetime="2026-11-26T09:00:00.000+00:00">2026年11月26日 17:00</time>'),
        ("查询所在省份", "广东（高）"),
    ):
        assert f"<dt>{label}</dt><dd>{value}</dd>" in page, label
    assert "shipped_regions" not in page and ">genuine" not in page and "正品（首次查询）" in page
    listed = client.get("/audit/cases/").get_data(as_text=True)
    assert '<td data-label="规则" data-rule="diversion">窜货</td>' in listed
    english = client.get(f"/audit/cases/{case_id}?lang=en").get_data(as_text=True)
    assert f"Case {case_id} · open" in english and "<b>diversion</b>" in english
    assert (
        "<dt>Shipped to</dt><dd>Sichuan</dd>" in english and "<dt>Scanned in</dt><dd>Guangdong (high)</dd>" in english
    )
    assert "Download the evidence export" in english and "genuine (first check)" in english
    for data in ("成都茶行", "广东省", "中文", "(窜货)"):  # names, a scan's region, the other language, the rule's term
        english = english.replace(data, "")
    assert not re.search(r"[\u4e00-\u9fff]", english), "Chinese words left on the English page"
    assert "Cases" in client.get("/audit/cases/").get_data(as_text=True)  # remembered


def _routes(case_id):
    return [
        ("GET", "/audit/cases/", None),
        ("GET", f"/audit/cases/{case_id}", None),
        ("GET", f"/audit/cases/{case_id}/export", None),
        ("POST", f"/audit/cases/{case_id}/note", {"text": "x"}),
        ("POST", f"/audit/cases/{case_id}/status", {"status": "investigating"}),
    ]


def test_every_route_answers_each_role_and_leaks_nothing(diverted):
    _, case_id = _open(diverted)
    expected = {  # (list, page, export, note, status) per principal
        "anonymous": (302, 302, 302, 302, 302),
        "ian": (200, 200, 200, 302, 302),
        "ada": (200, 200, 200, 302, 409),  # ian moved it to investigating already
        "eve": (200, 200, 403, 403, 403),  # the owning enterprise reads it
        "oscar": (200, 404, 403, 403, 403),  # another enterprise: no such case
    }
    for who, statuses in expected.items():
        client = diverted["app"].test_client() if who == "anonymous" else _client(diverted, who)
        for (method, path, data), status in zip(_routes(case_id), statuses):
            if method == "GET":
                response = client.get(path)
            else:
                page = client.get("/audit/").get_data(as_text=True)
                token = csrf_of(page) if 'name="csrf"' in page else ""
                response = client.post(path, data={**data, "csrf": token})
            assert response.status_code == status, (who, path, response.status_code)
            body = response.get_data(as_text=True)
            if who in ("oscar", "anonymous"):
                assert "SC-01" not in body and "diversion" not in body, (who, path)
        if who == "oscar":
            assert "暂无案件" in client.get("/audit/cases/").get_data(as_text=True)
    api = diverted["app"].test_client()
    for who, status in {"anonymous": 401, "ian": 200, "ada": 200, "eve": 200, "oscar": 404}.items():
        token = diverted["tokens"][who]
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = api.get(f"/api/v1/audit/cases/{case_id}", headers=headers)
        assert response.status_code == status, (who, response.get_json())
        listed = api.get("/api/v1/audit/cases", headers=headers)
        if who == "oscar":
            assert listed.get_json()["cases"] == []
        export = api.get(f"/api/v1/audit/cases/{case_id}/export", headers=headers)
        assert export.status_code == {"anonymous": 401, "ian": 200, "ada": 200}.get(who, 403), who
        note = api.post(f"/api/v1/audit/cases/{case_id}/notes", json={"text": "api"}, headers=headers)
        assert note.status_code == {"anonymous": 401, "ian": 200, "ada": 200}.get(who, 403), who
    opened = api.post(
        "/api/v1/audit/cases",
        json={"rule": "diversion", "subject": diverted["subject"]},
        headers={"Authorization": f"Bearer {diverted['tokens']['ian']}"},
    )
    assert opened.status_code == 201 and opened.get_json()["case"]["rule"] == "diversion"
    assert _verify(diverted).ok


def test_forms_without_the_csrf_token_are_refused(diverted):
    client, case_id = _open(diverted)
    for action, data in (("note", {"text": "x"}), ("status", {"status": "closed", "confirm": "yes"})):
        for token in ("", "0" * 32):
            response = client.post(f"/audit/cases/{case_id}/{action}", data={**data, "csrf": token})
            assert response.status_code == 403
    response = client.post("/audit/cases/new", data={"rule": "diversion", "subject": diverted["subject"]})
    assert response.status_code == 403
    assert "待处理" in client.get(f"/audit/cases/{case_id}").get_data(as_text=True)


EDITS = {
    "a closed case reopened": ("UPDATE cases SET status = 'open', closed_at = NULL, closed_by = NULL", "status"),
    "the severity lowered": ("UPDATE cases SET severity = 'low'", "severity"),
    "the assignee changed": ("UPDATE cases SET assignee = 'ada'", "assignee"),
    "a note rewritten": ("UPDATE case_notes SET text = 'nothing happened'", "case_notes"),
    "a note deleted": ("DELETE FROM case_notes", "case_notes"),
    "evidence unlinked": ("DELETE FROM case_evidence", "case_evidence"),
}


@pytest.mark.parametrize("sql, named", EDITS.values(), ids=EDITS.keys())
def test_audit_verify_catches_an_edited_case(diverted, sql, named):
    client, case_id = _open(diverted)
    token = csrf_of(client.get(f"/audit/cases/{case_id}").get_data(as_text=True))
    client.post(f"/audit/cases/{case_id}/assign", data={"assignee": "ian", "csrf": token})
    client.post(f"/audit/cases/{case_id}/note", data={"text": "seen", "csrf": token})
    client.post(f"/audit/cases/{case_id}/status", data={"status": "closed", "confirm": "yes", "csrf": token})
    assert _verify(diverted).ok
    conn = db.connect(diverted["db"])
    try:
        with db.transaction(conn):
            conn.execute(sql)
    finally:
        conn.close()
    report = _verify(diverted)
    assert not report.ok and any(named in p.what for p in report.problems), report.problems
