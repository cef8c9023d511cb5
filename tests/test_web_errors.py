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
