"""The app-wide error handlers (verifier/web/errors.py) and the web package's import rules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from verifier import errors

WEB = Path(__file__).resolve().parent.parent / "verifier" / "web"
SECRET_DETAIL = "/srv/secret/path.db: table scans has 17 columns"


def _raising(app):
    """Routes that raise what a service may raise, under each part of the site."""

    def raise_kind(kind: str):
        if kind == "unavailable":
            raise errors.Unavailable("the registry is busy; retry shortly", retry_after=7)
        if kind == "crash":
            raise RuntimeError(SECRET_DETAIL)
        raise {"conflict": errors.Conflict, "notfound": errors.NotFound, "forbidden": errors.Forbidden}[kind](
            f"{kind}: said for the user"
        )

    for prefix in ("/api/v1/test", "/audit/test", "/test"):
        app.add_url_rule(f"{prefix}/<kind>", f"raise{prefix.replace('/', '_')}", raise_kind)
    return app.test_client()


@pytest.mark.parametrize(("kind", "status", "code"), [("conflict", 409, "conflict"), ("forbidden", 403, "forbidden")])
def test_a_verifier_error_under_the_api_is_the_json_error_shape_of_its_kind(app, kind, status, code):
    answer = _raising(app).get(f"/api/v1/test/{kind}")
    assert answer.status_code == status
    assert answer.get_json() == {"ok": False, "error": {"code": code, "message": f"{kind}: said for the user"}}


def test_unavailable_carries_retry_after_in_every_part(app):
    client = _raising(app)
    api = client.get("/api/v1/test/unavailable")
    assert api.status_code == 503 and api.headers["Retry-After"] == "7"
    assert api.get_json()["error"]["code"] == "busy"
    for path in ("/audit/test/unavailable", "/test/unavailable"):
        page = client.get(path)
        assert page.status_code == 503 and page.headers["Retry-After"] == "7"
        assert page.mimetype == "text/html"


def test_a_verifier_error_in_the_audit_ui_is_its_message_page(app):
    page = _raising(app).get("/audit/test/conflict")
    assert page.status_code == 409
    html = page.get_data(as_text=True)
    assert "verifier audit" in html and "conflict: said for the user" in html
    assert "Log out" not in html  # no user, no CSRF token: no signed-in navigation on this page


def test_a_verifier_error_on_the_consumer_side_is_a_page_in_the_readers_language(app):
    client = _raising(app)
    page = client.get("/test/notfound", headers={"Accept-Language": "en"})
    assert page.status_code == 404 and "Page not found" in page.get_data(as_text=True)
    page = client.get("/test/conflict", headers={"Accept-Language": "zh"})
    assert page.status_code == 409 and "暂时无法查询" in page.get_data(as_text=True)


def test_unexpected_errors_never_show_their_details(app, caplog):
    client = _raising(app)
    with caplog.at_level("ERROR"):
        api = client.get("/api/v1/test/crash")
        page = client.get("/test/crash")
        audit = client.get("/audit/test/crash")
    assert api.status_code == 500 and api.get_json()["error"]["code"] == "server-error"
    for answer in (api, page, audit):
        assert answer.status_code == 500
        assert SECRET_DETAIL not in answer.get_data(as_text=True)
    assert "verifier audit" in audit.get_data(as_text=True)  # the audit UI's own page
    assert SECRET_DETAIL in caplog.text  # logged for the operator


def _sibling_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update([node.module] if node.module else [alias.name for alias in node.names])
    return found


def test_the_lookup_blueprints_share_only_state_errors_and_i18n():
    for name in ("api", "consumer"):
        assert _sibling_imports(WEB / f"{name}.py") <= {"state", "errors", "i18n"}, name
    assert _sibling_imports(WEB / "state.py") == set()
    assert _sibling_imports(WEB / "i18n.py") <= {"state"}
    assert _sibling_imports(WEB / "errors.py") <= {"state", "i18n"}


def test_every_request_gives_its_database_connection_back(make_app, world):
    """With a pool of one connection every request still gets it: a scan, the health check, and a
    request that fails inside its transaction (rolled back, then given back like any other)."""
    from verifier import db
    from verifier.web.state import state

    app = make_app(DATABASE_POOL_SIZE=1)

    def half_done():
        conn = state().connection()
        with db.transaction(conn):
            conn.execute("INSERT INTO enterprises (name, created_at) VALUES (?, ?)", ("half done", "2026-11-22"))
            raise RuntimeError(SECRET_DETAIL)

    app.add_url_rule("/api/v1/test/half-done", "half_done", half_done)
    client = app.test_client()
    url = world["pin"][1][0]["url"]
    checks = []
    for _ in range(3):
        assert client.get("/api/v1/test/half-done").status_code == 500
        assert client.get("/healthz").status_code == 200
        checks.append(client.get("/api/v1/verify", query_string={"code": url}).get_json()["checks"])
    assert checks == [1, 2, 3]
    conn = db.connect(app.config["DATABASE"])
    try:
        assert conn.execute("SELECT count(*) FROM enterprises WHERE name = 'half done'").fetchone()[0] == 0
    finally:
        conn.close()


def test_a_database_out_of_reach_is_503_everywhere_and_its_location_is_only_logged(
    make_app, world, engine, tmp_path, caplog
):
    """The PostgreSQL server down, or a SQLite file that cannot be made: the service is unavailable
    for now (not the client's bad request), and no answer names the database."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    where = "postgresql://verifier@127.0.0.1:1/gone_db" if engine == "postgresql" else str(blocker / "gone.db")
    client = make_app(DATABASE=where).test_client()
    scan = "/" + world["pin"][1][0]["url"].split("/", 3)[3]
    with caplog.at_level("ERROR", logger="verifier.web"):
        answers = {
            path: client.get(path, headers={"Accept-Language": "en", "Authorization": "Bearer vt_someone"})
            for path in ("/healthz", scan, "/api/v1/verify?code=1234", "/api/v1/audit/scans")
        }
        answers["check"] = client.post("/check", data={"code": "1234"})
    for path, answer in answers.items():
        assert (answer.status_code, answer.headers.get("Retry-After")) == (503, "5"), path
        assert "gone" not in answer.get_data(as_text=True) and "127.0.0.1" not in answer.get_data(as_text=True), path
    assert answers["/api/v1/verify?code=1234"].get_json()["error"]["code"] == "busy"
    assert "try again later" in answers[scan].get_data(as_text=True)
    assert "服务暂时出现问题" in answers["check"].get_data(as_text=True)
    assert "gone" in caplog.text  # where it failed: for the operator


@pytest.mark.postgres_only("a server-side end of the connection: PostgreSQL's restart or failover")
def test_a_connection_lost_mid_request_is_503_once_then_the_pool_recovers(make_app, world, db_copy):
    from verifier import db

    app = make_app(DATABASE_POOL_SIZE=1)
    client = app.test_client()
    url = "/api/v1/verify?code=" + world["pin"][1][0]["url"]
    assert client.get(url).status_code == 200  # the pool's one connection is open now
    admin = db.connect(db_copy)
    try:
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND application_name = 'verifier' AND backend_type = 'client backend'"
        ).fetchall()
    finally:
        admin.close()
    assert ended  # the server ended the pooled connection, as a restart would
    lost = client.get(url)
    assert lost.status_code == 503 and lost.get_json()["error"]["code"] == "busy"
    assert lost.headers["Retry-After"] == "5" and "127.0.0.1" not in lost.get_data(as_text=True)
    again = client.get(url)
    assert again.status_code == 200 and again.get_json()["checks"] == 2  # the lost request recorded nothing
