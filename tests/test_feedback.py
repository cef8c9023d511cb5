"""Consumers' reports from the verdict page (both engines): the form, its limits and CSRF, the daily
limit, what is stored and logged, routing to the enterprise and inspectors, answers, the purge."""

from __future__ import annotations

import datetime as dt
import html as htmllib
import io
import json
import re

import pytest
from conftest import forged_url
from PIL import Image

from verifier import audit, auditlog, db, events, feedback, lifecycle
from verifier.events import Step

AT = "2026-11-26T09:00:00.000+00:00"
NOW = dt.datetime(2026, 11, 26, 9, 5, tzinfo=dt.UTC)


def run(location, work):
    conn = db.connect(location)
    try:
        with db.transaction(conn):
            return work(conn)
    finally:
        conn.close()


def path_of(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


@pytest.fixture
def shop(trace_world, trace_copy, make_app):
    """Items packed in a case, released and shipped to 四川: genuine on their pages."""
    case = int(trace_world["cases"][1][0]["serial"])
    items = trace_world["items"][1][:24]
    steps = [
        Step(lifecycle.AGGREGATION, "ADD", "packing", AT, tuple(int(r["serial"]) for r in items), parent=case),
        Step(lifecycle.OBJECT, "ADD", "commissioning", AT, (case,)),
        Step(lifecycle.OBJECT, "OBSERVE", "shipping", AT, (case,), dealer="dealer:SC-01"),
    ]
    run(trace_copy, lambda conn: events.capture(conn, steps, enterprise_id=None, actor="test", now=NOW))
    return {**trace_world, "db": trace_copy, "items": items, "make_app": make_app}


def form_of(client, label_url: str, lang: str = "zh") -> tuple[str, dict[str, str]]:
    """Open a label's page, follow its report link: the form's page and its hidden fields."""
    verdict = client.get(path_of(label_url), headers={"Accept-Language": lang}).get_data(as_text=True)
    link = htmllib.unescape(re.search(r'href="(/report\?[^"]+)"', verdict).group(1))
    page = client.get(link, headers={"Accept-Language": lang}).get_data(as_text=True)
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page))
    return page, hidden


def send(client, hidden, lang="zh", **fields):
    data = {**hidden, "what": "fake", "bought_at": "成都某超市", "details": "包装印刷模糊", **fields}
    data = {k: v for k, v in data.items() if v is not None}
    if isinstance(data.get("photo"), tuple):  # (bytes, file name): a fresh file each time
        data["photo"] = (io.BytesIO(data["photo"][0]), data["photo"][1])
    return client.post("/report", data=data, content_type="multipart/form-data", headers={"Accept-Language": lang})


def rows(location):
    return run(location, lambda conn: db.dicts(conn.execute("SELECT * FROM consumer_reports ORDER BY id")))


def report_entries(location):
    """(kind, body, personal commitment) of the log's report entries (PostgreSQL: sequenced first)."""
    from conftest import settle

    settle(location, sign=False)
    found = run(
        location,
        lambda conn: conn.execute(
            "SELECT kind, body, personal_hash FROM audit_log WHERE kind LIKE 'consumer.report%' ORDER BY seq"
        ).fetchall(),
    )
    return [(kind, json.loads(body), commitment) for kind, body, commitment in found]


def jpeg_with_gps() -> bytes:
    """A phone photo: EXIF with a GPS position and the phone's make, a comment."""
    image = Image.new("RGB", (640, 480), (200, 30, 30))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x8825] = {1: "N", 2: (30.0, 39.0, 36.0), 3: "E", 4: (104.0, 3.0, 58.0)}  # GPS IFD
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif, comment=b"secret comment")
    return out.getvalue()


# --- the consumer's side ----------------------------------------------------------------------


def test_a_report_from_a_genuine_page_goes_to_the_enterprise_and_is_logged_minimised(shop):
    app = shop["make_app"](DATABASE=str(shop["db"]))
    client = app.test_client()
    page, hidden = form_of(client, shop["items"][0]["url"])
    assert "生产企业「华茶集团」和市场监管核查人员" in page and 'enctype="multipart/form-data"' in page
    sent = send(client, hidden, contact="13800138000", brand="1")
    assert sent.status_code == 200
    thanks = sent.get_data(as_text=True)
    assert "已收到您的反馈" in thanks and "华茶集团" in thanks and "接下来会怎样" in thanks and "12315" in thanks
    (row,) = rows(shop["db"])
    assert (row["serial"], row["enterprise_id"], row["verdict"], row["what"]) == (
        int(shop["items"][0]["serial"]),
        shop["enterprise"],
        "genuine",
        "fake",
    )
    assert (row["details"], row["bought_at"], row["contact"], row["photo"]) == (
        "包装印刷模糊",
        "成都某超市",
        "13800138000",
        None,
    )
    ((kind, body, commitment),) = report_entries(shop["db"])
    assert kind == "consumer.report"
    assert set(body) == {
        "id",
        "serial",
        "enterprise_id",
        "verdict",
        "what",
        "region",
        "photo_sha256",
        "brand_may_contact",
    }
    assert "包装" not in json.dumps(body, ensure_ascii=False) and "13800138000" not in json.dumps(body)
    assert commitment == feedback.personal_commitment(row["personal_salt"], "包装印刷模糊", "成都某超市", "13800138000")


def test_a_photo_is_stored_re_encoded_without_its_metadata(shop):
    client = shop["make_app"](DATABASE=str(shop["db"])).test_client()
    _, hidden = form_of(client, shop["items"][1]["url"])
    original = jpeg_with_gps()
    assert b"PhoneMaker" in original and b"secret comment" in original
    sent = send(client, hidden, photo=(original, "IMG_0001.JPG"))
    assert sent.status_code == 200
    (row,) = rows(shop["db"])
    stored = bytes(row["photo"])
    assert b"PhoneMaker" not in stored and b"secret comment" not in stored and b"Exif" not in stored
    with Image.open(io.BytesIO(stored)) as image:
        assert image.format == "JPEG" and image.size == (640, 480) and not image.getexif()
    import hashlib

    assert row["photo_sha256"] == hashlib.sha256(stored).hexdigest()
    assert report_entries(shop["db"])[0][1]["photo_sha256"] == row["photo_sha256"]


@pytest.mark.parametrize(
    "case, fields, status, message",
    [
        ("no-what", {"what": None}, 400, "请选择发生了什么"),
        ("unknown-what", {"what": "everything"}, 400, "请选择发生了什么"),
        ("bought-at-too-long", {"bought_at": "店" * 201}, 400, "购买地点过长"),
        ("details-too-long", {"details": "假" * 2001}, 400, "详细情况过长"),
        ("contact-too-long", {"contact": "1" * 101}, 400, "联系方式过长"),
        ("contact-not-a-phone-or-email", {"contact": "call me maybe"}, 400, "手机号码或电子邮箱"),
        ("photo-not-an-image", {"photo": (b"%PDF-1.4 not a photo", "a.jpg")}, 400, "无法读取此照片"),
        ("photo-too-large", {"photo": (b"\xff\xd8\xff" + bytes(4_000_000), "big.jpg")}, 413, "照片太大"),
        ("body-over-the-route-limit", {"photo": (bytes(4_200_000), "huge.jpg")}, 413, "照片太大"),
    ],
)
def test_bad_input_re_shows_the_form_with_the_error_and_stores_nothing(shop, case, fields, status, message):
    client = shop["make_app"](DATABASE=str(shop["db"])).test_client()
    _, hidden = form_of(client, shop["items"][2]["url"])
    response = send(client, hidden, **fields)
    page = response.get_data(as_text=True)
    assert response.status_code == status and message in page and 'class="form-error"' in page
    assert 'name="csrf"' in page  # the form again, ready to be sent
    assert rows(shop["db"]) == [] and report_entries(shop["db"]) == []


def test_what_was_typed_is_kept_when_the_form_comes_back(shop):
    client = shop["make_app"](DATABASE=str(shop["db"])).test_client()
    _, hidden = form_of(client, shop["items"][2]["url"], "en")
    page = send(client, hidden, "en", contact="nope", details="<b>torn seal</b>").get_data(as_text=True)
    assert "A contact is a phone number or an email address." in page
    assert "&lt;b&gt;torn seal&lt;/b&gt;" in page and "<b>torn" not in page  # escaped, never markup


@pytest.mark.parametrize("case", ["no-token", "wrong-token", "not-ascii", "no-session-cookie"])
def test_a_report_without_the_forms_csrf_token_is_refused(shop, case):
    app = shop["make_app"](DATABASE=str(shop["db"]))
    client = app.test_client()
    _, hidden = form_of(client, shop["items"][3]["url"])
    if case == "no-token":
        hidden.pop("csrf")
    elif case == "wrong-token":
        hidden["csrf"] = "0" * 32
    elif case == "not-ascii":
        hidden["csrf"] = "é" * 32  # found by scripts/adversarial.py: a TypeError, a 500
    else:
        client = app.test_client()  # another browser: the token is not bound to its session
    response = send(client, hidden)
    assert response.status_code == 400 and "表单已过期" in response.get_data(as_text=True)
    assert rows(shop["db"]) == []


def test_at_most_n_reports_a_day_per_code_and_client(shop):
    client = shop["make_app"](DATABASE=str(shop["db"]), REPORTS_PER_CODE_PER_DAY=2).test_client()
    _, hidden = form_of(client, shop["items"][4]["url"])
    assert [send(client, hidden).status_code for _ in range(3)] == [200, 200, 429]
    assert "今天您对此防伪码的反馈已达上限" in send(client, hidden).get_data(as_text=True)
    _, other = form_of(client, shop["items"][5]["url"])  # another code: its own count
    assert send(client, other).status_code == 200
    assert len(rows(shop["db"])) == 3


def test_the_report_form_counts_against_the_clients_rate_limit(shop):
    client = shop["make_app"](DATABASE=str(shop["db"]), RATELIMIT="2/minute").test_client()
    page = client.get("/report").get_data(as_text=True)  # opened directly: no verdict to count
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page))
    statuses = [send(client, hidden).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


@pytest.mark.parametrize(
    "case, verdict",
    [
        ("forged-label", "bad-signature"),
        ("tampered-verdict", feedback.NO_VERDICT),
        ("opened-directly", feedback.NO_VERDICT),
    ],
)
def test_a_report_that_names_no_issued_code_goes_to_inspectors_only(shop, case, verdict):
    client = shop["make_app"](DATABASE=str(shop["db"])).test_client()
    item = shop["items"][6]
    if case == "forged-label":
        page, hidden = form_of(client, forged_url(item["url"]))
    elif case == "tampered-verdict":  # a forged label's link, its verdict changed to genuine
        _, hidden = form_of(client, forged_url(item["url"]))
        hidden["v"] = "genuine"
        page = ""
    else:
        page = client.get("/report").get_data(as_text=True)
        hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page))
        hidden["code"] = item["code"]  # typed into the form's code field
    assert "华茶集团" not in page  # whether the serial is an issued one is not told
    assert send(client, hidden).status_code == 200
    (row,) = rows(shop["db"])
    assert (row["verdict"], row["enterprise_id"]) == (verdict, None)


# --- the enterprise's and inspectors' side -----------------------------------------------------


@pytest.fixture
def reported(shop):
    """Two reports on 华茶集团's code (one with a photo and a contact for inspectors only, one whose
    contact the brand may see) and one on a forged label: inspectors only."""
    app = shop["make_app"](DATABASE=str(shop["db"]))
    client = app.test_client()
    _, hidden = form_of(client, shop["items"][7]["url"])
    send(client, hidden, contact="inspectors@example.cn", photo=(jpeg_with_gps(), "a.jpg"))
    send(client, hidden, what="diverted", contact="+86 138 0013 8000", brand="1")
    _, forged = form_of(client, forged_url(shop["items"][8]["url"]))
    send(client, forged, what="other")
    return {**shop, "app": app, "ids": [r["id"] for r in rows(shop["db"])]}


def api(reported, who, method, path, **kwargs):
    token = reported["tokens"][who]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return getattr(reported["app"].test_client(), method)(path, headers=headers, **kwargs)


@pytest.mark.parametrize(
    "who, status, seen, contacts",
    [
        ("anonymous", 401, None, None),
        ("eve", 200, [0, 1], [None, "+86 138 0013 8000"]),  # her enterprise's; a contact only if agreed
        ("oscar", 200, [], []),  # another enterprise: nothing
        ("ian", 200, [0, 1, 2], ["inspectors@example.cn", "+86 138 0013 8000", None]),
        ("ada", 200, [0, 1, 2], ["inspectors@example.cn", "+86 138 0013 8000", None]),
    ],
)
def test_reports_are_routed_by_role(reported, who, status, seen, contacts):
    response = api(reported, who, "get", "/api/v1/audit/reports")
    assert response.status_code == status
    if status != 200:
        assert response.get_json()["error"]["code"] == "unauthorized"
        return
    listed = response.get_json()["reports"]
    assert [r["id"] for r in listed] == [reported["ids"][i] for i in seen]
    assert [r["contact"] for r in listed] == contacts
    if listed:
        assert listed[0]["photo"] == f"/api/v1/audit/reports/{reported['ids'][0]}/photo"
        assert listed[0]["code"] == reported["items"][7]["code"]


def test_the_list_is_paged_by_id(reported):
    first = api(reported, "ian", "get", "/api/v1/audit/reports?limit=2").get_json()
    assert len(first["reports"]) == 2 and first["next"] == reported["ids"][1]
    rest = api(reported, "ian", "get", f"/api/v1/audit/reports?after={first['next']}&limit=2").get_json()
    assert [r["id"] for r in rest["reports"]] == [reported["ids"][2]] and rest["next"] is None
    assert api(reported, "ian", "get", "/api/v1/audit/reports?limit=0").status_code == 400


@pytest.mark.parametrize("who, status", [("eve", 200), ("ian", 200), ("oscar", 404), ("anonymous", 401)])
def test_a_photo_is_for_those_who_see_the_report(reported, who, status):
    response = api(reported, who, "get", f"/api/v1/audit/reports/{reported['ids'][0]}/photo")
    assert response.status_code == status
    if status == 200:
        assert response.mimetype == "image/jpeg" and response.data.startswith(b"\xff\xd8")
    assert api(reported, "ian", "get", f"/api/v1/audit/reports/{reported['ids'][1]}/photo").status_code == 404


@pytest.mark.parametrize(
    "who, which, status",
    [
        ("eve", 0, 200),  # its own enterprise's
        ("ada", 2, 200),  # an admin: any
        ("oscar", 0, 404),  # another enterprise's: not found, not forbidden
        ("eve", 2, 404),  # inspectors only
        ("ian", 0, 403),  # inspectors read, they do not answer
        ("anonymous", 0, 401),
    ],
)
def test_a_report_is_answered_by_its_enterprise_or_an_admin_and_logged(reported, who, which, status):
    report_id = reported["ids"][which]
    body = {"status": "answered", "answer": "已核实，感谢反馈"}
    response = api(reported, who, "post", f"/api/v1/audit/reports/{report_id}/answer", json=body)
    assert response.status_code == status
    answered = [e for e in report_entries(reported["db"]) if e[0] == "consumer.report.answered"]
    if status != 200:
        assert answered == []
        return
    assert response.get_json()["report"]["status"] == "answered"
    listed = api(reported, "ian", "get", "/api/v1/audit/reports").get_json()["reports"]
    assert [(r["status"], r["answer"]) for r in listed if r["id"] == report_id] == [("answered", "已核实，感谢反馈")]
    ((_, logged, _),) = answered
    assert logged["id"] == report_id and logged["status"] == "answered" and "已核实" not in json.dumps(logged)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"status": "maybe"}, id="unknown-status"),
        pytest.param({"answer": "x"}, id="no-status"),
        pytest.param({"status": "closed", "answer": 5}, id="answer-not-text"),
        pytest.param({"status": "closed", "answer": "x" * 2001}, id="answer-too-long"),
        pytest.param([], id="not-an-object"),
    ],
)
def test_a_bad_answer_is_400(reported, body):
    response = api(reported, "eve", "post", f"/api/v1/audit/reports/{reported['ids'][0]}/answer", json=body)
    assert response.status_code in (400, 413) and response.get_json()["ok"] is False


def test_purge_erases_old_reports_personal_fields_and_the_log_still_verifies(reported):
    from conftest import log_trust_for_tests, settle

    location = reported["db"]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=200)
    purged = run(location, lambda conn: audit.purge(conn, 180, later, "test"))
    assert purged.cutoff > rows(location)[-1]["at"]
    for row in rows(location):
        assert (row["details"], row["bought_at"], row["contact"], row["photo"]) == ("", "", None, None)
        assert row["photo_sha256"] is None or len(row["photo_sha256"]) == 64  # the log's record stays
    assert run(location, lambda conn: feedback.purge_reports(conn, purged.cutoff)) == 0  # nothing left to erase
    settle(location)
    conn = db.connect(location)
    try:
        assert auditlog.verify(conn, log_trust_for_tests()).ok
    finally:
        conn.close()
