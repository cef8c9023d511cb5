"""The production server over real HTTP: pages, API, rate limits across workers, durability."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from conftest import BASE_URL, log_trust_for_tests, settle

from verifier import auditlog, db


def get(url: str, headers: dict | None = None, timeout: float = 5) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def api(server, text: str, **kwargs) -> tuple[int, dict]:
    status, _, body = get(f"{server.url}/api/v1/verify?code={urllib.parse.quote(text)}", **kwargs)
    return status, json.loads(body)


def test_serve_answers_pages_api_and_keys(serve, world):
    server = serve()
    row = world["pin"][1][0]
    status, headers, body = get(server.url + "/" + row["url"].split("/", 3)[3])
    assert status == 200 and "正品：首次查询".encode() in body
    assert headers["Server"] == "verifier" and headers["Referrer-Policy"] == "no-referrer"
    assert api(server, row["url"])[1]["reason"] == "genuine-repeat"
    status, headers, body = get(server.url + "/.well-known/jwks.json")
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "*" and json.loads(body)["keys"]
    assert get(server.url + "/api/v1/openapi.json")[0] == 200


@pytest.mark.parametrize("workers", [2, 4])
def test_rate_limit_holds_across_workers_and_ignores_spoofed_forwarded_for(serve, world, workers):
    server = serve(workers=workers, VERIFIER_RATELIMIT="10/hour")
    url = world["pin"][1][1]["url"]
    for _attempt in range(2):  # a burst that straddles the end of a window is run again in the new one
        window = int(time.time() // 3600)
        statuses = [api(server, url, headers={"X-Forwarded-For": f"198.51.100.{i}"})[0] for i in range(30)]
        if int(time.time() // 3600) == window:
            break
    assert statuses.count(200) == 10 and statuses.count(429) == 20, statuses


def test_every_acknowledged_scan_survives_kill_9(serve, world, db_copy, server_env):
    """Scans run while the whole server is killed with SIGKILL, again and again."""
    from conftest import RunningServer

    urls = [row["url"] for row in world["pin"][1][:20]]
    acknowledged: list[tuple[int, int]] = []
    stop = threading.Event()
    current = {"server": None}

    def scanner():
        i = 0
        while not stop.is_set():
            server = current["server"]
            if server is None:
                time.sleep(0.01)
                continue
            try:
                status, answer = api(server, urls[i % len(urls)], timeout=2)
            except (OSError, ValueError, http.client.HTTPException):
                continue  # killed mid-request: not acknowledged
            if status == 200:
                acknowledged.append((int(answer["code"].replace(" ", "")[:16]), answer["checks"]))
            i += 1

    threads = [threading.Thread(target=scanner) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(5):
            server = RunningServer(server_env, workers=2).start()
            current["server"] = server
            time.sleep(0.8)
            server.kill()
            current["server"] = None
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert len(acknowledged) > 50
    settle(db_copy)
    conn = db.connect(db_copy)
    try:
        if not db.is_postgres_conn(conn):
            assert db.integrity_problem(conn) is None  # the file itself survived the kills
        rows = conn.execute("SELECT serial, checks FROM scans WHERE channel = 'api' AND counted = 1").fetchall()
        report = auditlog.verify(conn, log_trust_for_tests())
    finally:
        conn.close()
    recorded = {tuple(row) for row in rows}
    missing = [pair for pair in acknowledged if pair not in recorded]
    assert missing == []
    assert len(set(acknowledged)) == len(acknowledged)  # every acknowledged check has its own count
    assert (report.problems, report.pending) == ((), 0)  # and the log holds each of them, chained


def test_the_lookup_server_never_opens_a_private_key(world, make_app):
    """An audit hook sees every file the server opens while starting and answering scans."""
    import sys

    opened: list[str] = []
    watching = True

    def hook(event, args):
        if watching and event == "open" and args and isinstance(args[0], (str, bytes)):
            opened.append(str(args[0]))

    sys.addaudithook(hook)  # hooks cannot be removed: `watching` turns it off
    try:
        app = make_app()
        client = app.test_client()
        for row in world["pin"][1][:3]:
            assert client.get("/" + row["url"].split("/", 3)[3]).status_code == 200
        assert client.get("/.well-known/jwks.json").status_code == 200
    finally:
        watching = False
    assert any(path.endswith("keyring.json") for path in opened)
    assert not [path for path in opened if path.endswith(".pem")]
    assert list(world["keys_dir"].glob("*.pem"))  # the private key was right there


def test_serve_accepts_codes_issued_under_every_base_url(serve, world, db_copy, tmp_path):
    """VERIFIER_BASE_URL with two bases: a label printed under the second one is genuine on the page."""
    import csv

    from verifier import codes, issue

    old = "https://old.example.cn/v/"
    request = issue.BatchRequest(
        mark=codes.MARKS[0],
        enterprise="Other Co",
        product="Soap",
        count=1,
        out_dir=tmp_path / "old",
        base_url=old,
        formats=("csv",),
    )
    issue.issue_batch(db_copy, request, world["private"], world["kid"])
    with open(tmp_path / "old" / "codes.csv", encoding="utf-8") as fh:
        old_url = next(csv.DictReader(fh))["url"]
    server = serve(VERIFIER_BASE_URL=f"{BASE_URL},{old}")
    for url, expected in ((old_url, "正品：首次查询"), (world["pin"][1][2]["url"], "正品：首次查询")):
        status, _, body = get(server.url + "/" + url.split("/", 3)[3])
        assert status == 200 and expected.encode() in body, url
    assert api(server, old_url)[1]["reason"] == "genuine-repeat"


def test_two_nodes_on_one_host_share_no_control_socket(serve, tmp_path):
    """gunicorn 27 opens a control socket under $HOME by default, one path for every server of a
    user: lookup nodes on one host would fight over it. verifier serve opens none."""
    home = tmp_path / "home"
    home.mkdir()
    first, second = serve(HOME=str(home)), serve(HOME=str(home))
    assert get(first.url + "/healthz")[0] == 200 and get(second.url + "/healthz")[0] == 200
    assert not (home / ".gunicorn").exists()


def test_one_pin_verified_at_once_by_many_clients_is_first_exactly_once(serve, world):
    """Eight clients send a label's right PIN at the same moment to four workers: one of them is the
    first verification, the others see it (pin-reused), and each has its own check count."""
    server = serve(workers=4)
    row = world["pin"][1][3]
    body = json.dumps({"code": row["code"], "pin": row["pin"]}).encode()
    start, answers = threading.Barrier(8), []

    def client():
        request = urllib.request.Request(
            server.url + "/api/v1/verify", data=body, headers={"Content-Type": "application/json"}
        )
        start.wait()
        with urllib.request.urlopen(request, timeout=30) as response:
            answers.append(json.loads(response.read()))

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a["pin"] for a in answers) == ["first"] + ["reused"] * 7
    assert sorted(a["checks"] for a in answers) == list(range(1, 9))
