"""The audit API: every route as anonymous, each role and another enterprise. Nothing leaks."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest

from verifier import codes


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
    "anonymous": dict.fromkeys(["scans", "scans.csv", "batches", "my batch", "their batch", "my code", "their code",
                                "anomalies", "recall their batch"], 401),
    "revoked": dict.fromkeys(["scans", "scans.csv", "batches", "my batch", "their batch", "my code", "their code",
                              "anomalies", "recall their batch"], 401),
    "ada": {"scans": 200, "scans.csv": 200, "batches": 200, "my batch": 200, "their batch": 200, "my code": 200,
            "their code": 200, "anomalies": 200, "recall their batch": 200},
    "ian": {"scans": 200, "scans.csv": 200, "batches": 200, "my batch": 200, "their batch": 200, "my code": 200,
            "their code": 200, "anomalies": 200, "recall their batch": 403},
    "eve": {"scans": 200, "scans.csv": 200, "batches": 200, "my batch": 200, "their batch": 404, "my code": 200,
            "their code": 404, "anomalies": 200, "recall their batch": 403},
    "oscar": {"scans": 200, "scans.csv": 200, "batches": 200, "my batch": 404, "their batch": 200, "my code": 404,
              "their code": 200, "anomalies": 200, "recall their batch": 403},
}  # fmt: skip


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
    status = call(audit_world, "ada", *routes(audit_world)["recall their batch"][:2], json={"reason": "test"}).status_code
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
    exported = list(csv.DictReader(io.StringIO(call(audit_world, "oscar", "GET", "/api/v1/audit/scans.csv").get_data(as_text=True))))
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


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "after=x", "reason=nope", "channel=fax", "since=yesterday",
                                   "code=12", "batch=-1"])  # fmt: skip
def test_bad_filters_are_400_with_the_error_shape(audit_world, query):
    response = call(audit_world, "ian", "GET", f"/api/v1/audit/scans?{query}")
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "bad-filter"


def test_batch_dashboard_and_code_history(audit_world):
    dashboard = call(audit_world, "eve", "GET", f"/api/v1/audit/batches/{audit_world['mine'][0]}").get_json()
    assert dashboard["verdicts"] == {"genuine": 1, "genuine-repeat": 1}
    assert dashboard["top_codes"][0]["checks"] == 2 and sum(d["scans"] for d in dashboard["scans_per_day"]) == 2
    history = call(audit_world, "eve", "GET", f"/api/v1/audit/codes/{audit_world['my_serial']}").get_json()
    assert history["checks"] == 2 and [s["reason"] for s in history["scans"]] == ["genuine", "genuine-repeat"]
