"""Every guarded route of the app (the audit UI, the consoles, the audit API, EPCIS) for every
principal, both engines: anonymous, an admin, an inspector, the owning enterprise, another
enterprise and the issuing association. The routes come from the app's own URL map, so a route
added later is in the sweep (and fails it until its row below says who may use it); no answer is
a 500; nothing of 华茶集团's reaches another enterprise, the association or anyone anonymous."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from conftest import BASE_URL, csrf_of, log_in
from test_diversion import shipped  # noqa: F401 - the fixture: shipped codes, scans with regions
from test_feedback import form_of, send

from verifier import accounts, cases, certificates, codes, db, requests

NOW = dt.datetime(2026, 11, 26, 9, 10, tzinfo=dt.UTC)
PRINCIPALS = ("anonymous", "ada", "ian", "eve", "oscar", "asa")
CERTIFICATE = "ZJWD-2026-0042"
GUARDED = ("/audit", "/api/v1/audit", "/epcis")
# Words only 华茶集团's own pages, and those of who oversees it, may show.
SECRETS = ("华茶集团", "成都茶行", "SC-01", "6901234000016", "inspectors@example.cn")
PUBLIC = {"audit_ui.login", "audit_ui.logout", "audit_ui.not_found", "audit.not_found", "epcis.not_found"}
PUBLIC |= {"epcis.capture_options", "log.audit_entry_bundle"}  # discovery; the log's public tiles


@pytest.fixture
def office(shipped):  # noqa: F811
    """The shipped world with: a diversion (a 成都 code scanned in 广东) opened as a case, a
    consumer report, a batch request, a certificate, and asa of the association (with a token)."""
    shipped["scan"](2, "Guangdong")
    client = shipped["app"].test_client()
    _, hidden = form_of(client, shipped["rows"][9]["url"])
    assert send(client, hidden, contact="inspectors@example.cn").status_code == 200
    conn = db.connect(shipped["db"])
    try:
        with db.transaction(conn):
            accounts.add_user(conn, "asa", "association", "correct horse battery", None, "test", NOW)
            shipped["tokens"]["asa"] = accounts.issue_token(conn, "asa", "test", "test", NOW)[1]
            grant = certificates.Grant(CERTIFICATE, "华茶集团", codes.MARKS[0], dt.date(2030, 12, 31))
            certificates.grant(conn, grant, actor="test", now=NOW)
            ian = accounts.user_for_token(conn, shipped["tokens"]["ian"])
            subject = f"code {shipped['items'][2]:016d}: SC-01 Sichuan -> Guangdong"
            case_id = cases.open_case(
                conn, ian, cases.find_anomaly(conn, ian, "diversion", subject, 30, NOW), "test", NOW
            )
            eve = accounts.user_for_token(conn, shipped["tokens"]["eve"])
        params = {"mark": "traceability", "product": "绿茶", "lot": "L-MATRIX", "count": 5}
        request_id = requests.request_batch(conn, shipped["enterprise"], eve, params, NOW, BASE_URL)["id"]
        report_id = conn.execute("SELECT max(id) FROM consumer_reports").fetchone()[0]
    finally:
        conn.close()
    values = {
        "batch": shipped["items_batch"],
        "batch_id": shipped["items_batch"],
        "code": shipped["rows"][2]["code"],
        "case_id": case_id,
        "number": CERTIFICATE,
        "report_id": report_id,
        "request_id": request_id,
        "name": "labels.pdf",
        "event_id": shipped["shipping"][1],
    }
    return {**shipped, "values": values}


def guarded_routes(app) -> list[tuple[str, str, str]]:
    """(endpoint, method, rule) of every route under GUARDED that is not PUBLIC."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC or not rule.rule.startswith(GUARDED):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((rule.endpoint, method, rule.rule))
    return sorted(found)


def concrete(rule: str, endpoint: str, values: dict) -> str:
    """The rule with each <converter:name> replaced by the office's value for it."""
    actions = {"audit_cases.case_action": "note", "audit_cases_api.api_action": "notes"}

    def value(match: re.Match) -> str:
        name = match.group(1)
        if name == "action":
            return actions.get(endpoint, "suspend")
        return str(values[name])

    return re.sub(r"<(?:\w+:)?(\w+)>", value, rule)


# Who gets what, per (endpoint, method): the statuses of anonymous, ada (admin), ian (inspector),
# eve (华茶集团), oscar (Other Co), asa (association). 302 for anonymous is the login page; 404 for
# oscar on 华茶集团's things is "no such thing", as for a thing that does not exist.
EXPECTED: dict[tuple[str, str], str] = {
    ("association.certificate_list", "GET"): "302 200 403 403 403 200",
    ("association.certificate_status", "GET"): "302 200 403 403 403 200",
    ("audit.batch_dashboard", "GET"): "401 200 200 200 404 403",
    ("audit.code_history", "GET"): "401 200 200 200 404 403",
    ("audit.export_scans", "GET"): "401 200 200 200 200 403",
    ("audit.list_anomalies", "GET"): "401 200 200 200 200 403",
    ("audit.list_batches", "GET"): "401 200 200 200 200 403",
    ("audit.list_scans", "GET"): "401 200 200 200 200 403",
    ("audit_cases.case_export", "GET"): "302 200 200 403 403 403",
    ("audit_cases.case_list", "GET"): "302 200 200 200 200 403",
    ("audit_cases.case_page", "GET"): "302 200 200 200 404 403",
    ("audit_cases.new_case", "GET"): "302 400 400 403 403 403",
    ("audit_cases_api.api_case", "GET"): "401 200 200 200 404 403",
    ("audit_cases_api.api_export", "GET"): "401 200 200 403 403 403",
    ("audit_cases_api.api_list", "GET"): "401 200 200 200 200 403",
    ("audit_ui.anomaly_list", "GET"): "302 200 200 200 200 403",
    ("audit_ui.batch", "GET"): "302 200 200 200 404 403",
    ("audit_ui.batches", "GET"): "302 200 200 200 200 403",
    ("audit_ui.code", "GET"): "302 200 200 200 404 403",
    ("audit_ui.export", "GET"): "302 200 200 200 200 403",
    ("audit_ui.key_list", "GET"): "302 200 403 403 403 403",
    ("audit_ui.province_map", "GET"): "302 200 200 200 200 403",
    ("audit_ui.scans", "GET"): "302 200 200 200 200 403",
    ("audit_ui.trend_charts", "GET"): "302 200 200 200 200 403",
    ("console.batch_list", "GET"): "302 200 403 200 200 403",
    ("console.batch_report", "GET"): "302 200 403 200 404 403",
    ("console.block", "GET"): "302 200 403 200 200 403",
    ("console.dealers", "GET"): "302 200 403 200 200 403",
    ("console.download", "GET"): "302 404 403 404 404 403",
    ("console.home", "GET"): "302 200 403 200 200 403",
    ("console.new_request", "GET"): "302 200 403 200 200 403",
    ("console.recall", "GET"): "302 200 403 200 404 403",
    ("console.reports", "GET"): "302 200 403 200 200 403",
    ("console.request_page", "GET"): "302 200 403 200 404 403",
    ("console.shipments", "GET"): "302 200 403 200 200 403",
    ("epcis.event_get", "GET"): "401 200 200 200 404 403",
    ("epcis.events_query", "GET"): "401 200 200 200 200 403",
    ("feedback.list_reports", "GET"): "401 200 200 200 200 403",
    ("feedback.report_photo", "GET"): "401 404 404 404 404 403",
    ("association.certificate_status", "POST"): "302 302 403 403 403 302",
    ("association.grant", "POST"): "302 400 403 403 403 400",
    ("audit.recall", "POST"): "401 200 403 403 403 403",
    ("audit_cases.case_action", "POST"): "302 302 302 403 403 403",
    ("audit_cases.new_case", "POST"): "302 400 400 403 403 403",
    ("audit_cases_api.api_action", "POST"): "401 200 200 403 403 403",
    ("audit_cases_api.api_open", "POST"): "401 400 400 403 403 403",
    ("audit_ui.batch", "POST"): "302 200 403 403 404 403",
    ("audit_ui.code", "POST"): "302 200 403 403 404 403",
    ("audit_ui.key_list", "POST"): "302 400 403 403 403 403",
    ("console.answer", "POST"): "302 302 403 302 404 403",
    ("console.approve", "POST"): "302 302 403 403 404 403",
    ("console.batch_report", "POST"): "302 400 403 400 404 403",
    ("console.block", "POST"): "302 400 403 400 400 403",
    ("console.cancel", "POST"): "302 302 403 302 404 403",
    ("console.dealers", "POST"): "302 400 403 400 400 403",
    ("console.new_request", "POST"): "302 400 403 400 400 403",
    ("console.recall", "POST"): "302 409 403 302 404 403",
    ("console.shipments", "POST"): "302 400 403 400 400 403",
    ("epcis.capture_post", "POST"): "401 400 403 400 400 403",
    ("feedback.answer_report", "POST"): "401 200 403 200 404 403",
}


class Principal:
    """One principal's requests: a browser session for the audit UI (signed in once), its bearer
    token for the APIs; a form is sent with the session's CSRF token and fields a user fills in."""

    def __init__(self, office, who: str):
        self.who, self.token = who, office["tokens"].get(who)
        self.browser = office["app"].test_client()
        self.csrf = ""
        if who != "anonymous":
            assert log_in(self.browser, who).status_code == 302
            home = "/audit/association/" if who == "asa" else "/audit/"
            self.csrf = csrf_of(self.browser.get(home).get_data(as_text=True))

    def call(self, method: str, path: str):
        if path.startswith("/audit"):
            if method == "GET":
                return self.browser.get(path)
            return self.browser.post(path, data={"csrf": self.csrf, **FORM})
        client = self.browser.application.test_client()  # no session cookie: the token alone
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if method == "GET":
            return client.get(path, headers=headers)
        return client.post(path, headers=headers, json=FORM)


FORM = {"text": "seen", "reason": "matrix", "status": "closed", "answer": "已核实"}


def sweep(office, who: str) -> list[tuple[str, str, str, int, str]]:
    """(endpoint, method, path, status, body) of every guarded route as `who`: reads first, then
    the forms, so that what a form changes comes after every read."""
    principal = Principal(office, who)
    routes = sorted(guarded_routes(office["app"]), key=lambda r: (r[1] != "GET", r))
    answers = []
    for endpoint, method, rule in routes:
        path = concrete(rule, endpoint, office["values"])
        response = principal.call(method, path)
        answers.append((endpoint, method, path, response.status_code, response.get_data(as_text=True)))
        response.close()
    return answers


def test_every_guarded_route_has_a_row_in_the_matrix(office):
    assert {(endpoint, method) for endpoint, method, _ in guarded_routes(office["app"])} == set(EXPECTED)


@pytest.mark.parametrize("who", PRINCIPALS)
def test_each_principal_gets_what_its_role_allows_and_nothing_of_another_enterprise(office, who):
    column = PRINCIPALS.index(who)
    wrong, leaks = [], []
    for endpoint, method, path, status, body in sweep(office, who):
        expected = int(EXPECTED[endpoint, method].split()[column])
        if status != expected:
            wrong.append(f"{method} {path}: {status}, not {expected}")
        if who in ("anonymous", "oscar", "asa"):
            seen = [
                s
                for s in SECRETS
                if s in body and not (who == "asa" and s == "华茶集团" and path.startswith("/audit/association/"))
            ]
            leaks += [f"{method} {path}: {s}" for s in seen]
    assert (wrong, leaks) == ([], [])


def test_every_form_is_refused_without_its_csrf_token(office):
    """An admin may send each form of the audit UI and the consoles; without the session's token,
    or with another, every one is 403 and nothing is written."""
    admin = Principal(office, "ada")
    conn = db.connect(office["db"])
    try:
        before = conn.execute("SELECT count(*) FROM audit_log").fetchone()[0]
        forms = [
            (e, rule)
            for e, method, rule in guarded_routes(office["app"])
            if method == "POST" and rule.startswith("/audit")
        ]
        assert len(forms) >= 15  # the audit UI's, the console's and the association's
        another = admin.csrf[:-1] + ("1" if admin.csrf.endswith("0") else "0")  # one digit off the session's
        for endpoint, rule in forms:
            path = concrete(rule, endpoint, office["values"])
            for token in ({}, {"csrf": "0" * 32}, {"csrf": another}):
                response = admin.browser.post(path, data={**FORM, **token})
                assert response.status_code == 403, (path, token)
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone()[0] == before
    finally:
        conn.close()


def test_the_association_signs_in_to_its_console_and_its_nav_offers_nothing_else(office):
    browser = office["app"].test_client()
    signed_in = log_in(browser, "asa")
    assert signed_in.headers["Location"].endswith("/audit/association/")
    refused = browser.get("/audit/").get_data(as_text=True)
    assert 'href="/audit/association/"' in refused and 'href="/audit/map"' not in refused
    enterprise = office["app"].test_client()
    assert log_in(enterprise, "eve").headers["Location"].endswith("/audit/")
    assert 'href="/audit/console/"' in enterprise.get("/audit/").get_data(as_text=True)
