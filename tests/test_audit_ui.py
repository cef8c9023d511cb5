"""The audit UI: login, CSRF, and the same object-level rules as the API, page by page."""

from __future__ import annotations

import datetime as dt

import pytest
from conftest import csrf_of, log_in, settle
from test_auditlog import query

from verifier import db

PASSWORD = "correct horse battery"
LOGIN_FAILED = "Wrong user name or password, or the account cannot sign in now."


def logged_in(aw, who, lang=None):
    """A client logged in as `who`; with `lang`, its pages in that language (the cookie ?lang= sets)."""
    client = aw["app"].test_client()
    if lang:
        client.set_cookie("vaudit_lang", lang, path="/audit")
    if who != "anonymous":
        response = log_in(client, who)
        assert response.status_code == 302, who
    return client


def login_failures(aw) -> int:
    return query(aw["app"].config["DATABASE"], "SELECT count(*) FROM login_failures")[0][0]


def pages(aw):
    return {
        "scans": "/audit/",
        "batches": "/audit/batches",
        "my batch": f"/audit/batches/{aw['mine'][0]}",
        "their batch": f"/audit/batches/{aw['theirs'][0]}",
        "my code": f"/audit/codes/{aw['my_serial']}",
        "their code": f"/audit/codes/{aw['their_serial']}",
        "anomalies": "/audit/anomalies",
        "keys": "/audit/keys",
        "export": "/audit/scans.csv",
    }


UI_EXPECTED = {
    "anonymous": dict.fromkeys(
        ["scans", "batches", "my batch", "their batch", "my code", "their code", "anomalies", "keys", "export"], 302
    ),
    "ada": {
        "scans": 200,
        "batches": 200,
        "my batch": 200,
        "their batch": 200,
        "my code": 200,
        "their code": 200,
        "anomalies": 200,
        "keys": 200,
        "export": 200,
    },
    "ian": {
        "scans": 200,
        "batches": 200,
        "my batch": 200,
        "their batch": 200,
        "my code": 200,
        "their code": 200,
        "anomalies": 200,
        "keys": 403,
        "export": 200,
    },
    "eve": {
        "scans": 200,
        "batches": 200,
        "my batch": 200,
        "their batch": 404,
        "my code": 200,
        "their code": 404,
        "anomalies": 200,
        "keys": 403,
        "export": 200,
    },
    "oscar": {
        "scans": 200,
        "batches": 200,
        "my batch": 404,
        "their batch": 200,
        "my code": 404,
        "their code": 200,
        "anomalies": 200,
        "keys": 403,
        "export": 200,
    },
}


def test_ui_role_page_matrix_has_no_leaks(audit_world, capsys):
    failures = []
    with capsys.disabled():
        print("\naudit UI role x page matrix (HTTP status):")
        for who, expected in UI_EXPECTED.items():
            client = logged_in(audit_world, who)
            seen = {page: client.get(path).status_code for page, path in pages(audit_world).items()}
            print(f"  {who:<10} " + " ".join(f"{p}={s}" for p, s in seen.items()))
            failures += [(who, p, s) for p, s in seen.items() if s != expected[p]]
        print(f"  leaks: {len(failures)}")
    assert failures == []


def test_enterprise_pages_show_only_their_scans(audit_world):
    html = logged_in(audit_world, "oscar").get("/audit/").get_data(as_text=True)
    assert audit_world["their_serial"] in html and audit_world["my_serial"] not in html
    assert "IP 前缀" not in html and "ip_prefix" not in html
    inspector = logged_in(audit_world, "ian").get("/audit/").get_data(as_text=True)
    assert audit_world["their_serial"] in inspector and audit_world["my_serial"] in inspector and "IP 前缀" in inspector


def test_user_enumeration_by_timing_every_failure_gets_the_same_answer(audit_world):
    client = audit_world["app"].test_client()
    client.set_cookie("vaudit_lang", "en", path="/audit")
    answers = {
        case: log_in(client, who, password)
        for case, (who, password) in {
            "wrong password": ("ian", "not the password"),
            "unknown user": ("nobody", PASSWORD),
            "disabled user": ("gone", PASSWORD),
        }.items()
    }
    assert {r.status_code for r in answers.values()} == {401}
    assert len({r.get_data() for r in answers.values()}) == 1
    assert LOGIN_FAILED in answers["unknown user"].get_data(as_text=True)


def test_lockout_as_denial_of_service_wrong_passwords_throttle_the_address_not_the_account(audit_world):
    attacker, owner = audit_world["app"].test_client(), audit_world["app"].test_client()
    attacker.set_cookie("vaudit_lang", "en", path="/audit")
    for _ in range(5):
        assert log_in(attacker, "ada", "nope", ip="203.0.113.66").status_code == 401
    throttled = log_in(attacker, "ada", PASSWORD, ip="203.0.113.66")
    assert throttled.status_code == 429 and 0 < int(throttled.headers["Retry-After"]) <= 15 * 60
    assert "cannot sign in now. Try again in 15 minutes." in throttled.get_data(as_text=True)
    assert log_in(owner, "ada", PASSWORD, ip="198.51.100.7").status_code == 302  # the owner, elsewhere
    assert log_in(attacker, "ian", PASSWORD, ip="203.0.113.66").status_code == 302  # another name, not yet


STALE_FORMS = {
    "no token": lambda client, form: {},
    "a wrong token": lambda client, form: {"csrf": "0" * 32},
    "a token that is not ASCII": lambda client, form: {"csrf": "é" * 32},  # once a TypeError, a 500
    "another browser's token": lambda client, form: {
        "csrf": csrf_of(client.application.test_client().get("/audit/login").get_data(as_text=True))
    },
    "a token without its cookie": lambda client, form: (
        client.delete_cookie("vaudit_login", path="/audit/login"),
        {"csrf": csrf_of(form)},
    )[1],
}


@pytest.mark.parametrize("case", STALE_FORMS)
def test_login_csrf_a_login_post_without_a_valid_token_is_refused_and_counts_nothing(audit_world, case):
    client = audit_world["app"].test_client()
    client.set_cookie("vaudit_lang", "en", path="/audit")
    form = client.get("/audit/login").get_data(as_text=True)
    extra = STALE_FORMS[case](client, form)
    for password in ("nope", PASSWORD):
        response = client.post("/audit/login", data={"username": "ada", "password": password, **extra})
        assert response.status_code == 400 and "This form was not sent" in response.get_data(as_text=True)
        assert "vaudit=" not in response.headers.get("Set-Cookie", "")
    assert login_failures(audit_world) == 0
    retry = {"username": "ada", "password": PASSWORD, "csrf": csrf_of(response.get_data(as_text=True))}
    assert client.post("/audit/login", data=retry).status_code == 302  # the 400 page's own form works


def test_login_csrf_the_cookie_is_strict_http_only_and_scoped_to_the_login_form(audit_world):
    client = audit_world["app"].test_client()
    first = client.get("/audit/login")
    cookie = first.headers["Set-Cookie"]
    assert cookie.startswith("vaudit_login=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Path=/audit/login" in cookie and "Max-Age=3600" in cookie
    again = client.get("/audit/login")
    page = first.get_data(as_text=True)
    assert "Set-Cookie" not in again.headers and csrf_of(again.get_data(as_text=True)) == csrf_of(page)
    assert "script" not in page and "default-src 'none'" in first.headers["Content-Security-Policy"]
    done = log_in(client, "ada")
    assert "vaudit_login=;" in " ".join(done.headers.getlist("Set-Cookie"))  # spent once it has served


def test_admin_actions_need_csrf_and_are_logged(audit_world):
    admin = logged_in(audit_world, "ada", "en")
    batch_page = admin.get(f"/audit/batches/{audit_world['mine'][0]}").get_data(as_text=True)
    assert "<svg" in batch_page and "Recall batch" in batch_page
    assert admin.post(f"/audit/batches/{audit_world['mine'][0]}", data={"reason": "x"}).status_code == 403  # no token
    done = admin.post(
        f"/audit/batches/{audit_world['mine'][0]}",
        data={"reason": "mould", "csrf": csrf_of(batch_page), "confirm": "yes"},
    )
    assert done.status_code == 302
    code_page = admin.get(f"/audit/codes/{audit_world['my_serial']}").get_data(as_text=True)
    admin.post(
        f"/audit/codes/{audit_world['my_serial']}",
        data={"note": "seen at a market", "csrf": csrf_of(code_page), "confirm": "yes"},
    )
    assert "reported counterfeit" in admin.get(f"/audit/codes/{audit_world['my_serial']}").get_data(as_text=True)
    database = audit_world["app"].config["DATABASE"]
    settle(database)
    kinds = [k for (k,) in query(database, "SELECT kind FROM audit_log")]
    assert "batch.recalled" in kinds and "code.reported" in kinds


def test_inspector_cannot_recall_and_logout_ends_the_session(audit_world):
    inspector = logged_in(audit_world, "ian")
    page = inspector.get(f"/audit/batches/{audit_world['mine'][0]}").get_data(as_text=True)
    assert "召回批次" not in page and "Recall batch" not in page
    assert (
        inspector.post(
            f"/audit/batches/{audit_world['mine'][0]}", data={"reason": "x", "csrf": csrf_of(page)}
        ).status_code
        == 403
    )
    assert inspector.post("/audit/logout", data={"csrf": csrf_of(page)}).status_code == 302
    assert inspector.get("/audit/").status_code == 302


def test_export_link_works_with_the_ui_session(audit_world):
    csv_text = logged_in(audit_world, "eve").get("/audit/scans.csv").get_data(as_text=True)
    assert csv_text.count("\n") == 3  # header and this enterprise's two scans


UI_BAD = {
    "superscript after": "/audit/?after=²",
    "after at 2^63": f"/audit/?after={2**63}",
    "impossible date": "/audit/?since=2026-02-30",
    "batch filter at 2^63": f"/audit/?batch={2**63}",
    "csv batch 9...9": "/audit/scans.csv?batch=" + "9" * 30,
    "days superscript": "/audit/anomalies?days=²",
    "days too many": "/audit/anomalies?days=3651",
    "batch page 2^63": f"/audit/batches/{2**63}",
    "batch page full-width": "/audit/batches/１",
    "code page superscript": "/audit/codes/" + "²" * 16,
}


def test_hostile_parameters_are_a_400_page_never_500(audit_world):
    client = logged_in(audit_world, "ian", "en")
    for name, path in UI_BAD.items():
        response = client.get(path)
        assert response.status_code == 400, (name, response.status_code)
        assert "text/html" in response.content_type and "<h1>Bad filter</h1>" in response.get_data(as_text=True), name
        assert response.headers["Content-Security-Policy"].startswith("default-src 'none'"), name
    zh = logged_in(audit_world, "ian").get(UI_BAD["impossible date"]).get_data(as_text=True)
    assert "<h1>筛选条件有误</h1>" in zh


def test_hostile_form_fields_are_a_400_page(audit_world):
    admin = logged_in(audit_world, "ada")
    page = admin.get(f"/audit/batches/{audit_world['mine'][0]}").get_data(as_text=True)
    for path, data in (
        (f"/audit/batches/{audit_world['mine'][0]}", {"reason": "x\x00"}),
        (f"/audit/codes/{audit_world['my_serial']}", {"note": "n" * 501}),
    ):
        assert admin.post(path, data={**data, "csrf": csrf_of(page)}).status_code == 400, path


@pytest.mark.sqlite_only("a budget of SQLite instructions (PostgreSQL: test_ui_over_the_time_limit_is_a_message_page)")
def test_ui_over_budget_is_a_message_page(audit_world, monkeypatch):
    from verifier import budget

    client = logged_in(audit_world, "ian", "en")
    monkeypatch.setattr(budget, "GRAIN", 1)
    audit_world["app"].config["AUDIT_BUDGET"] = 5
    for path in ("/audit/", "/audit/anomalies", "/audit/scans.csv", f"/audit/codes/{audit_world['my_serial']}"):
        response = client.get(path)
        assert response.status_code == 400 and "narrow the time range" in response.get_data(as_text=True), path
    zh = logged_in(audit_world, "ian").get("/audit/anomalies")
    assert zh.status_code == 400 and "请缩短时间范围" in zh.get_data(as_text=True)
    audit_world["app"].config["AUDIT_BUDGET"] = None
    assert client.get("/audit/anomalies").status_code == 200


@pytest.mark.postgres_only("statement_timeout, PostgreSQL's budget (SQLite: test_ui_over_budget_is_a_message_page)")
def test_ui_over_the_time_limit_is_a_message_page(audit_world):
    from test_anomalies import fill_scans

    from verifier import clock

    fill_scans(audit_world["app"].config["DATABASE"], 50_000, clock.now(), dt.timedelta(milliseconds=10))
    client = logged_in(audit_world, "ian", "en")
    audit_world["app"].config["AUDIT_SECONDS"] = 0.001  # statement_timeout 1 ms: 50,000 scans in the window
    for path in ("/audit/anomalies", "/audit/anomalies?days=1"):
        response = client.get(path)
        assert response.status_code == 400 and "narrow the time range" in response.get_data(as_text=True), path
    audit_world["app"].config["AUDIT_SECONDS"] = 5.0
    assert client.get("/audit/anomalies").status_code == 200


def test_ui_busy_is_a_message_page(audit_world):
    client = logged_in(audit_world, "ian")
    slot = db.acquire_lock_at(audit_world["app"].config["DATABASE"], "audit0")  # another worker's heavy read
    assert slot is not None
    try:
        busy = client.get("/audit/anomalies")
        assert busy.status_code == 503 and "<h1>系统繁忙</h1>" in busy.get_data(as_text=True)
        busy = client.get("/audit/anomalies?lang=en")
        assert busy.status_code == 503 and "<h1>Busy</h1>" in busy.get_data(as_text=True)
    finally:
        slot.release()
    assert client.get("/audit/anomalies").status_code == 200


def test_ui_csv_export_uses_safe_cells(audit_world):
    text = logged_in(audit_world, "ian").get("/audit/scans.csv").get_data(as_text=True)
    assert text.splitlines()[1].split(",")[5].startswith('"\t')  # the serial column, as text
