"""The consoles through the test client, both engines: who may open which page (anonymous, the
enterprise's own accounts, another enterprise's, an inspector, the association, an admin) with
nothing of another enterprise's shown; every form refused without its CSRF token; and what each
action does (docs/console.md)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from conftest import BASE_URL, csrf_of, log_in

from verifier import certificates, codes, db, requests
from verifier.repos import registry

NOW = dt.datetime(2026, 11, 22, 9, tzinfo=dt.UTC)
CERTIFICATE = "ZJWD-2026-0009"
PARAMS = {"mark": "traceability", "product": "绿茶", "spec": "500g", "lot": "L-CONSOLE", "count": 20}


@pytest.fixture
def desk(staffed, make_app):
    """conftest's `staffed` accounts, with a request of eve's and a certificate of 华茶集团's."""
    conn = staffed["conn"]
    with db.transaction(conn):
        grant = certificates.Grant(CERTIFICATE, "华茶集团", codes.MARKS[0], dt.date(2030, 12, 31))
        certificates.grant(conn, grant, actor="test", now=NOW)
    request = requests.request_batch(conn, staffed["mine"], staffed["users"]["eve"], PARAMS, NOW, BASE_URL)
    return {**staffed, "app": make_app(), "request": request["id"]}


def client_of(desk, who):
    client = desk["app"].test_client()
    if who != "anonymous":
        assert log_in(client, who).status_code == 302
    return client


def routes(desk):
    batch = desk["world"]["pin"][0]
    rid = desk["request"]
    console = [
        "/audit/console/",
        "/audit/console/requests/new",
        "/audit/console/batches",
        "/audit/console/block",
        "/audit/console/dealers",
        "/audit/console/shipments",
        "/audit/console/reports",
    ]
    owned = [
        f"/audit/console/requests/{rid}",
        f"/audit/console/batches/{batch}/recall",
        f"/audit/console/batches/{batch}/report",
    ]
    association = ["/audit/association/", f"/audit/association/certificates/{CERTIFICATE}/suspend"]
    return console, owned, association


# what each principal gets: (console pages, pages of 华茶集团's things, association pages)
EXPECTED = {
    "anonymous": (302, 302, 302),
    "eve": (200, 200, 403),
    "oscar": (200, 404, 403),
    "ian": (403, 403, 403),
    "asa": (403, 403, 200),
    "ada": (200, 200, 200),
}


@pytest.mark.parametrize("who", list(EXPECTED))
def test_the_role_by_route_matrix_shows_nothing_of_another_enterprise(desk, who):
    client = client_of(desk, who)
    for group, expected in zip(routes(desk), EXPECTED[who], strict=True):
        for path in group:
            response = client.get(path)
            body = response.get_data(as_text=True)
            assert response.status_code == expected, (who, path, response.status_code)
            if expected == 302:
                assert response.headers["Location"].endswith("/audit/login")
            assert len(body.encode()) < 60_000
            if who in ("oscar", "ian", "anonymous") or (who == "asa" and expected != 200):
                for secret in ("华茶集团", "绿茶", "L-CONSOLE", "L2026-11"):
                    assert secret not in body, (who, path, secret)
            assert "<script" not in body and " style=" not in body


def test_an_enterprise_never_downloads_another_enterprises_files_nor_an_inspector_any(desk):
    path = f"/audit/console/requests/{desk['request']}/files/labels.pdf"
    assert client_of(desk, "oscar").get(path).status_code == 404
    assert client_of(desk, "ian").get(path).status_code == 403
    assert client_of(desk, "eve").get(path).status_code == 404  # not issued yet: no files


def forms(desk):
    batch = desk["world"]["pin"][0]
    rid = desk["request"]
    code = desk["world"]["pin"][1][0]["code"]
    return [
        ("eve", "/audit/console/requests/new", {**PARAMS, "count": "5"}),
        ("eva", f"/audit/console/requests/{rid}/approve", {}),
        ("eve", f"/audit/console/requests/{rid}/cancel", {}),
        ("eve", f"/audit/console/batches/{batch}/recall", {"reason": "test"}),
        ("eve", f"/audit/console/batches/{batch}/report", {}),
        ("eve", "/audit/console/block", {"codes": code, "reason": "stolen", "confirmed": "1"}),
        ("eve", "/audit/console/dealers", {"code": "X-1", "name": "x", "regions": "510000"}),
        ("eve", "/audit/console/shipments", {"codes": code, "dealer": "X-1"}),
        ("eve", "/audit/console/reports/1", {"status": "closed", "answer": ""}),
        ("asa", "/audit/association/certificates", {"number": "N-1", "enterprise": "华茶集团"}),
        ("asa", f"/audit/association/certificates/{CERTIFICATE}/suspend", {"reason": "r"}),
    ]


def test_every_form_is_refused_without_its_csrf_token(desk):
    before = desk["conn"].execute("SELECT count(*) FROM audit_log").fetchone()[0]
    for who, path, data in forms(desk):
        client = client_of(desk, who)
        for token in (None, "0" * 32):
            sent = {**data, **({"csrf": token} if token else {})}
            response = client.post(path, data=sent)
            assert response.status_code == 403, (path, token)
    assert desk["conn"].execute("SELECT count(*) FROM audit_log").fetchone()[0] == before
    assert requests.get(desk["conn"], desk["request"])["status"] == "requested"


def post(client, page, path, data=None, **kwargs):
    """Submit a form as a browser does: the page's token, then the form."""
    token = csrf_of(client.get(page).get_data(as_text=True))
    return client.post(path, data={**(data or {}), "csrf": token}, **kwargs)


def test_a_request_is_approved_by_a_second_account_never_its_requester(desk):
    eve, eva = client_of(desk, "eve"), client_of(desk, "eva")
    made = post(eve, "/audit/console/requests/new", "/audit/console/requests/new", {**PARAMS, "pin": "1"})
    assert made.status_code == 302
    rid = int(made.headers["Location"].rsplit("/", 1)[1])
    page = eve.get(f"/audit/console/requests/{rid}").get_data(as_text=True)
    assert "待批准" in page and "您不能批准自己提交的申请" in page and 'http-equiv="refresh"' not in page
    refused = post(eve, f"/audit/console/requests/{rid}", f"/audit/console/requests/{rid}/approve")
    assert refused.status_code == 403 and requests.get(desk["conn"], rid)["status"] == "requested"
    assert post(eva, f"/audit/console/requests/{rid}", f"/audit/console/requests/{rid}/approve").status_code == 302
    row = requests.get(desk["conn"], rid)
    assert (row["status"], row["approved_by"], row["params"]["pin"]) == ("approved", "eva", True)
    page = eve.get(f"/audit/console/requests/{rid}").get_data(as_text=True)
    assert '<meta http-equiv="refresh" content="3">' in page and "已批准，等待签发" in page


def test_a_bad_request_is_shown_again_with_why(desk):
    eve = client_of(desk, "eve")
    page = post(eve, "/audit/console/requests/new", "/audit/console/requests/new", {**PARAMS, "mark": "nope"})
    assert page.status_code == 400 and "unknown mark type" in page.get_data(as_text=True)
    page = post(eve, "/audit/console/requests/new", "/audit/console/requests/new", {**PARAMS, "count": "0"})
    assert page.status_code == 400


def test_a_request_under_a_certificate_carries_its_number(desk):
    eve = client_of(desk, "eve")
    data = {**PARAMS, "mark": "stable-qualified", "certificate": CERTIFICATE}
    made = post(eve, "/audit/console/requests/new", "/audit/console/requests/new", data)
    assert made.status_code == 302, made.get_data(as_text=True)
    rid = int(made.headers["Location"].rsplit("/", 1)[1])
    assert requests.get(desk["conn"], rid)["params"]["certificate"] == CERTIFICATE


def test_a_recall_asks_first_and_says_how_many_labels_then_recalls(desk):
    batch, rows = desk["world"]["pin"]
    eve = client_of(desk, "eve")
    page = eve.get(f"/audit/console/batches/{batch}/recall").get_data(as_text=True)
    assert f"{len(rows)} 枚标签的查询结果将显示“已召回”" in page
    assert registry.get_batch(desk["conn"], batch)["status"] != "recalled"
    done = post(
        eve, f"/audit/console/batches/{batch}/recall", f"/audit/console/batches/{batch}/recall", {"reason": "抽检"}
    )
    assert done.status_code == 302
    assert registry.get_batch(desk["conn"], batch)["status"] == "recalled"


def test_blocking_codes_asks_first_then_blocks(desk):
    rows = desk["world"]["pin"][1]
    eve = client_of(desk, "eve")
    codes_text = "\n".join(r["code"] for r in rows[:3])
    asked = post(eve, "/audit/console/block", "/audit/console/block", {"codes": codes_text, "reason": "stolen"})
    assert "3 个防伪码" in asked.get_data(as_text=True)
    state = "SELECT count(*) FROM code_states WHERE state = 'blocked'"
    assert desk["conn"].execute(state).fetchone()[0] == 0
    token = csrf_of(asked.get_data(as_text=True))
    data = {"codes": codes_text, "reason": "stolen", "confirmed": "1", "csrf": token}
    assert eve.post("/audit/console/block", data=data).status_code == 302
    assert desk["conn"].execute(state).fetchone()[0] == 3
    theirs = client_of(desk, "oscar")
    refused = post(
        theirs, "/audit/console/block", "/audit/console/block", {"codes": rows[5]["code"], "reason": "stolen"}
    )
    assert refused.status_code == 404


def test_a_dealer_is_registered_then_shipped_to(desk):
    eve = client_of(desk, "eve")
    data = {"code": "SC-09", "name": "成都茶行", "regions": "510100", "gln": "6901234000016"}
    assert post(eve, "/audit/console/dealers", "/audit/console/dealers", data).status_code == 302
    assert "成都茶行" in eve.get("/audit/console/dealers").get_data(as_text=True)
    bad = post(eve, "/audit/console/dealers", "/audit/console/dealers", {**data, "code": "SC-10", "gln": "123"})
    assert bad.status_code == 400 and "GLN" in bad.get_data(as_text=True)
    assert "成都茶行" not in client_of(desk, "oscar").get("/audit/console/dealers").get_data(as_text=True)
    serial = int(desk["world"]["pin"][1][0]["serial"])
    shipped = post(
        eve, "/audit/console/shipments", "/audit/console/shipments", {"codes": f"{serial:016d}", "dealer": "SC-09"}
    )
    assert "已发货：1 个防伪码" in shipped.get_data(as_text=True)
    row = desk["conn"].execute("SELECT state, region FROM code_states WHERE serial = ?", (serial,)).fetchone()
    assert tuple(row) == ("shipped", "510100")


def test_an_inspection_report_is_attached(desk):
    batch = desk["world"]["pin"][0]
    eve = client_of(desk, "eve")
    page = f"/audit/console/batches/{batch}/report"
    token = csrf_of(eve.get(page).get_data(as_text=True))
    content = b"%PDF-1.4\n" + b"0" * 100_000  # larger than the app's 16 kB form limit
    import io

    sent = eve.post(page, data={"csrf": token, "report": (io.BytesIO(content), "检验报告.pdf")})
    assert sent.status_code == 200, sent.get_data(as_text=True)
    sha256 = re.search(r"SHA-256：([0-9a-f]{64})", sent.get_data(as_text=True)).group(1)
    assert registry.get_batch(desk["conn"], batch)["report_sha256"] == sha256


def test_the_association_grants_suspends_reinstates_and_revokes(desk):
    asa = client_of(desk, "asa")
    page = "/audit/association/"
    data = {"enterprise": "华茶集团", "mark": "traceability", "number": "ZJ-2", "products": "绿茶:500g"}
    assert post(asa, page, "/audit/association/certificates", {**data, "valid_until": "2030-01-01"}).status_code == 302
    listing = asa.get(page).get_data(as_text=True)
    assert "ZJ-2" in listing and "绿茶" in listing
    again = post(asa, page, "/audit/association/certificates", {**data, "valid_until": "2030-01-01"})
    assert again.status_code == 409 and "exists already" in again.get_data(as_text=True)
    asked = asa.get(f"/audit/association/certificates/{CERTIFICATE}/suspend").get_data(as_text=True)
    assert "0 个批次、0 枚标签的查询结果将显示“标志使用资格已暂停”" in asked
    for action, status in (("suspend", "suspended"), ("reinstate", "valid"), ("revoke", "revoked")):
        path = f"/audit/association/certificates/{CERTIFICATE}/{action}"
        assert post(asa, path, path, {"reason": "抽检不合格"}).status_code == 302
        found = {c["number"]: c for c in certificates.list_all(desk["conn"])}
        assert found[CERTIFICATE]["status"] == status
    final = post(asa, path, f"/audit/association/certificates/{CERTIFICATE}/reinstate")
    assert final.status_code == 409


def test_the_console_speaks_english_when_asked_and_remembers(desk):
    eve = client_of(desk, "eve")
    first = eve.get("/audit/console/?lang=en")
    assert "Batch requests" in first.get_data(as_text=True) and "vconsole_lang=en" in first.headers["Set-Cookie"]
    assert "Batch requests" in eve.get("/audit/console/batches").get_data(as_text=True)
    assert "批次申请" in eve.get("/audit/console/?lang=zh").get_data(as_text=True)
