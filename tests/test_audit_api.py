"""The audit API: every route as anonymous, each role and another enterprise. Nothing leaks."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from test_auditlog import attacker

from verifier import codes, db


def call(aw, who, method, path, **kwargs):
    token = aw["tokens"][who]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return aw["app"].test_client().open(path, method=method, headers=headers, **kwargs)


def routes(aw):
    my_batch, their_batch = aw["mine"][0], aw["theirs"][0]
    return {
        "scans": ("GET", "/api/v1/audit/scans", {}),
        "scans.csv": ("GET", "/api/v1/audit/scans.csv", {}),
        "batches": ("GET", "/api/v1/audit/batches", {}),
        "my batch": ("GET", f"/api/v1/audit/batches/{my_batch}", {}),
        "their batch": ("GET", f"/api/v1/audit/batches/{their_batch}", {}),
        "my code": ("GET", f"/api/v1/audit/codes/{aw['my_serial']}", {}),
        "their code": ("GET", f"/api/v1/audit/codes/{aw['their_serial']}", {}),
        "anomalies": ("GET", "/api/v1/audit/anomalies", {}),
        "recall their batch": ("POST", f"/api/v1/audit/batches/{their_batch}/recall", {"json": {"reason": "test"}}),
    }


EXPECTED = {  # principal -> route -> status; "eve" belongs to the first enterprise, "oscar" to the other
    "anonymous": dict.fromkeys(
        [
            "scans",
            "scans.csv",
            "batches",
            "my batch",
            "their batch",
            "my code",
            "their code",
            "anomalies",
            "recall their batch",
        ],
        401,
    ),
    "revoked": dict.fromkeys(
        [
            "scans",
            "scans.csv",
            "batches",
            "my batch",
            "their batch",
            "my code",
            "their code",
            "anomalies",
            "recall their batch",
        ],
        401,
    ),
    "ada": {
        "scans": 200,
        "scans.csv": 200,
        "batches": 200,
        "my batch": 200,
        "their batch": 200,
        "my code": 200,
        "their code": 200,
        "anomalies": 200,
        "recall their batch": 200,
    },
    "ian": {
        "scans": 200,
        "scans.csv": 200,
        "batches": 200,
        "my batch": 200,
        "their batch": 200,
        "my code": 200,
        "their code": 200,
        "anomalies": 200,
        "recall their batch": 403,
    },
    "eve": {
        "scans": 200,
        "scans.csv": 200,
        "batches": 200,
        "my batch": 200,
        "their batch": 404,
        "my code": 200,
        "their code": 404,
        "anomalies": 200,
        "recall their batch": 403,
    },
    "oscar": {
        "scans": 200,
        "scans.csv": 200,
        "batches": 200,
        "my batch": 404,
        "their batch": 200,
        "my code": 404,
        "their code": 200,
        "anomalies": 200,
        "recall their batch": 403,
    },
}


def test_role_route_matrix_has_no_leaks(audit_world, capsys):
    matrix, failures = [], []
    for who, expected in EXPECTED.items():
        for route, (method, path, kwargs) in routes(audit_world).items():
            if route == "recall their batch" and who == "ada":
                continue  # run last: it changes the batch
            status = call(audit_world, who, method, path, **kwargs).status_code
            matrix.append((who, route, status))
            if status != expected[route]:
                failures.append((who, route, status, expected[route]))
    status = call(
        audit_world, "ada", *routes(audit_world)["recall their batch"][:2], json={"reason": "test"}
    ).status_code
    matrix.append(("ada", "recall their batch", status))
    with capsys.disabled():
        print("\nrole x route matrix (HTTP status):")
        for who in EXPECTED:
            print(f"  {who:<10} " + " ".join(f"{route}={s}" for w, route, s in matrix if w == who))
        print(f"  leaks: {len(failures)}")
    assert failures == [] and status == 200


def test_enterprises_see_only_their_own_scans_and_no_personal_fields(audit_world):
    eve = call(audit_world, "eve", "GET", "/api/v1/audit/scans").get_json()["scans"]
    oscar = call(audit_world, "oscar", "GET", "/api/v1/audit/scans").get_json()["scans"]
    ian = call(audit_world, "ian", "GET", "/api/v1/audit/scans").get_json()["scans"]
    assert {s["batch_id"] for s in eve} == {audit_world["mine"][0]} and len(eve) == 2
    assert {s["batch_id"] for s in oscar} == {audit_world["theirs"][0]} and len(oscar) == 2
    assert len(ian) == 4 and "ip_prefix" in ian[0] and "ip_prefix" not in eve[0]
    exported = list(
        csv.DictReader(io.StringIO(call(audit_world, "oscar", "GET", "/api/v1/audit/scans.csv").get_data(as_text=True)))
    )
    assert len(exported) == 2 and {r["batch_id"] for r in exported} == {str(audit_world["theirs"][0])}
    assert "ip_prefix" not in exported[0]
    batches = call(audit_world, "oscar", "GET", "/api/v1/audit/batches").get_json()["batches"]
    assert [b["enterprise"] for b in batches] == ["Other Co"]
    filtered = call(audit_world, "eve", "GET", f"/api/v1/audit/scans?batch={audit_world['theirs'][0]}").get_json()
    assert filtered["scans"] == []


def test_keyset_pagination_and_filters(audit_world):
    first = call(audit_world, "ian", "GET", "/api/v1/audit/scans?limit=3").get_json()
    assert len(first["scans"]) == 3 and first["next"] == first["scans"][-1]["id"]
    rest = call(audit_world, "ian", "GET", f"/api/v1/audit/scans?limit=3&after={first['next']}").get_json()
    assert len(rest["scans"]) == 1 and rest["next"] is None
    ids = [s["id"] for s in first["scans"] + rest["scans"]]
    assert ids == sorted(ids, reverse=True)
    code = codes.human_code(int(audit_world["my_serial"]))
    by_code = call(audit_world, "ian", "GET", "/api/v1/audit/scans", query_string={"code": code}).get_json()["scans"]
    assert len(by_code) == 2 and {s["serial"] for s in by_code} == {int(audit_world["my_serial"])}
    repeat = call(audit_world, "ian", "GET", "/api/v1/audit/scans?reason=genuine-repeat").get_json()["scans"]
    assert {s["reason"] for s in repeat} == {"genuine-repeat"} and len(repeat) == 2
    future = call(audit_world, "ian", "GET", "/api/v1/audit/scans?since=2100-01-01").get_json()["scans"]
    past = call(audit_world, "ian", "GET", "/api/v1/audit/scans?until=2000-01-01").get_json()["scans"]
    assert future == [] and past == []
    today = dt.date.today().isoformat()
    assert len(call(audit_world, "ian", "GET", f"/api/v1/audit/scans?since={today}").get_json()["scans"]) >= 1


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=501", "after=x", "reason=nope", "channel=fax", "since=yesterday", "code=12", "batch=-1"]
)
def test_bad_filters_are_400_with_the_error_shape(audit_world, query):
    response = call(audit_world, "ian", "GET", f"/api/v1/audit/scans?{query}")
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "bad-filter"


def test_batch_dashboard_and_code_history(audit_world):
    dashboard = call(audit_world, "eve", "GET", f"/api/v1/audit/batches/{audit_world['mine'][0]}").get_json()
    assert dashboard["verdicts"] == {"genuine": 1, "genuine-repeat": 1}
    assert dashboard["top_codes"][0]["checks"] == 2 and sum(d["scans"] for d in dashboard["scans_per_day"]) == 2
    history = call(audit_world, "eve", "GET", f"/api/v1/audit/codes/{audit_world['my_serial']}").get_json()
    assert history["checks"] == 2 and [s["reason"] for s in history["scans"]] == ["genuine", "genuine-repeat"]


# --- hostile parameters: 400 with the one error shape, never a 500 ---------------------------

INT64 = 2**63
BAD_PARAMETERS = {
    "superscript limit": "scans?limit=²",
    "superscript after": "scans?after=¹²",
    "full-width batch": "scans?batch=１２",
    "after at 2^63": f"scans?after={INT64}",
    "batch at 2^63": f"scans?batch={INT64}",
    "batch of 4,400 digits": "scans?batch=" + "9" * 4400,
    "negative after": "scans?after=-1",
    "impossible date": "scans?since=2026-02-30",
    "impossible time": "scans?until=2026-11-01T25:00",
    "offset of 99 hours": "scans?since=2026-11-01T00:00:00+99:00",
    "year 1 in UTC+8": "scans?since=0001-01-01T00:00:00+08:00",
    "full-width date": "scans?since=２０２６-１１-０１",
    "superscript code": "scans?code=" + "²" * 16,
    "full-width code": "scans?code=" + "１" * 16,
    "NUL in region": "scans?region=Guang%00dong",
    "control character in enterprise": "scans?enterprise=A%07",
    "overlong region": "scans?region=" + "x" * 65,
    "lower-case country": "scans?country=cn",
    "csv batch 9...9": "scans.csv?batch=" + "9" * 30,
    "csv impossible date": "scans.csv?since=2026-02-30",
    "days superscript": "anomalies?days=³",
    "days zero": "anomalies?days=0",
    "days 2^63": f"anomalies?days={INT64}",
    "batch path 2^63": f"batches/{INT64}",
    "batch path full-width": "batches/１２",
    "batch path superscript": "batches/²",
    "code path superscript": "codes/" + "²" * 16,
    "code path overlong": "codes/" + "1" * 100,
}


@pytest.mark.parametrize("path", BAD_PARAMETERS.values(), ids=BAD_PARAMETERS.keys())
def test_hostile_parameters_are_400_never_500(audit_world, path):
    response = call(audit_world, "ian", "GET", f"/api/v1/audit/{path}")
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    error = response.get_json()
    assert error["ok"] is False and error["error"]["code"] == "bad-filter" and error["error"]["message"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"  # the app answered, with its headers


def test_hostile_recall_reason_and_batch_are_400(audit_world):
    their = audit_world["theirs"][0]
    for path, body in (
        (f"/api/v1/audit/batches/{INT64}/recall", {"reason": "x"}),
        (f"/api/v1/audit/batches/{their}/recall", {"reason": "a\x00b"}),
        (f"/api/v1/audit/batches/{their}/recall", {"reason": "x" * 501}),
    ):
        response = call(audit_world, "ada", "POST", path, json=body)
        assert response.status_code == 400 and response.get_json()["error"]["code"] == "bad-filter"


def test_valid_edge_values_still_work(audit_world):
    for path in (
        f"scans?after={INT64 - 1}",
        "scans?batch=0001",
        "scans?since=2024-02-29",
        "scans?limit=500",
        "scans?since=2026-11-01T08:00:00.5%2B08:00",
        "scans?region=广东",
        f"batches/{INT64 - 1}",
    ):
        assert call(audit_world, "ian", "GET", f"/api/v1/audit/{path}").status_code in (200, 404), path


# --- the budget: audit reads never starve the lookup ----------------------------------------


@pytest.mark.sqlite_only("a budget of SQLite instructions (PostgreSQL: test_audit_time_limit_answers_too_broad)")
def test_audit_budget_answers_narrow_the_time_range(audit_world, monkeypatch):
    from verifier import budget

    monkeypatch.setattr(budget, "GRAIN", 1)
    audit_world["app"].config["AUDIT_BUDGET"] = 5  # instructions: nothing fits
    for path in (
        "/api/v1/audit/anomalies",
        "/api/v1/audit/scans",
        "/api/v1/audit/scans.csv",
        f"/api/v1/audit/batches/{audit_world['mine'][0]}",
        f"/api/v1/audit/codes/{audit_world['my_serial']}",
    ):
        response = call(audit_world, "ian", "GET", path)
        assert response.status_code == 400, path
        assert response.get_json()["error"] == {"code": "too-broad", "message": response.get_json()["error"]["message"]}
        assert "narrow the time range" in response.get_json()["error"]["message"]
    audit_world["app"].config["AUDIT_BUDGET"] = None
    assert call(audit_world, "ian", "GET", "/api/v1/audit/anomalies").status_code == 200


@pytest.mark.postgres_only("statement_timeout, PostgreSQL's budget (SQLite: test_audit_budget_answers_...)")
def test_audit_time_limit_answers_too_broad(audit_world):
    from test_anomalies import fill_scans

    from verifier import clock

    fill_scans(audit_world["app"].config["DATABASE"], 50_000, clock.now(), dt.timedelta(milliseconds=10))
    audit_world["app"].config["AUDIT_SECONDS"] = 0.001  # statement_timeout 1 ms: 50,000 scans in the window
    for path in ("/api/v1/audit/anomalies", "/api/v1/audit/anomalies?days=1"):
        response = call(audit_world, "ian", "GET", path)
        assert response.status_code == 400, (path, response.status_code)
        assert response.get_json()["error"] == {"code": "too-broad", "message": response.get_json()["error"]["message"]}
        assert "narrow the time range" in response.get_json()["error"]["message"]
    audit_world["app"].config["AUDIT_SECONDS"] = 5.0
    found = call(audit_world, "ian", "GET", "/api/v1/audit/anomalies")
    assert found.status_code == 200 and found.get_json()["anomalies"]  # the generated log has pin reuses


def test_heavy_audit_requests_are_limited_to_their_slots(audit_world):
    slot = db.acquire_lock_at(audit_world["app"].config["DATABASE"], "audit0")  # another worker runs anomalies
    assert slot is not None
    try:
        for path in ("/api/v1/audit/anomalies", "/api/v1/audit/scans.csv"):
            response = call(audit_world, "ian", "GET", path)
            assert response.status_code == 503 and response.headers["Retry-After"] == "5"
            assert response.get_json()["error"]["code"] == "busy"
        assert call(audit_world, "ian", "GET", "/api/v1/audit/scans").status_code == 200  # light reads go on
        audit_world["app"].config["AUDIT_HEAVY_SLOTS"] = 2
        assert call(audit_world, "ian", "GET", "/api/v1/audit/anomalies").status_code == 200
    finally:
        slot.release()
    audit_world["app"].config["AUDIT_HEAVY_SLOTS"] = 1
    for _ in range(3):  # each export and anomaly list gives its slot back
        assert call(audit_world, "ian", "GET", "/api/v1/audit/scans.csv").status_code == 200
        assert call(audit_world, "ian", "GET", "/api/v1/audit/anomalies").status_code == 200


# --- CSV cells -------------------------------------------------------------------------------


def test_csv_export_neutralises_formulas_and_keeps_serials_as_text(audit_world):
    conn = attacker(audit_world["app"].config["DATABASE"])  # plant hostile cells, as a crafted User-Agent would
    conn.execute(
        "UPDATE scans SET user_agent = '=HYPERLINK(\"http://evil/\",\"x\")', detail = '+1+1', "
        "region = '@SUM(A1)', city = '-2', serial = 42 WHERE id = 1"
    )
    conn.close()
    text = call(audit_world, "ian", "GET", "/api/v1/audit/scans.csv").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(text)))
    first = next(r for r in rows if r["id"] == "1")
    assert first["user_agent"] == '\'=HYPERLINK("http://evil/","x")' and first["detail"] == "'+1+1"
    assert first["region"] == "'@SUM(A1)" and first["city"] == "'-2"
    assert first["serial"] == "\t0000000000000042"  # 16 digits with leading zeros, kept as text
    assert all(r["serial"].startswith("\t") and len(r["serial"]) == 17 for r in rows)
    assert text.startswith('"id","at",') and "\r\n" in text
