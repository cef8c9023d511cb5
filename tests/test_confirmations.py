"""Irreversible actions in the audit UI ask first: revoking a key, recalling a batch, reporting a code.

The first POST of the form changes nothing: it shows what the action will affect (the labels the
key signed, the batch's labels, the one code) with Confirm and Cancel. Only the confirmed POST,
with its CSRF token and confirm=yes, acts; a confirmation without the token is refused.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil

import pytest
from browsers import ARTIFACTS, CHROMIUM
from conftest import csrf_of, log_in, settle

from verifier import accounts, codes, db, keys

NOW = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)


def query(location, sql, params=()):
    conn = db.connect(location)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def logged_kinds(location) -> list[str]:
    settle(location)
    return [k for (k,) in query(location, "SELECT kind FROM audit_log ORDER BY seq")]


def codes_of_key(location, kid: str) -> int:
    return int(query(location, "SELECT sum(count) FROM batches WHERE kid = ? AND status != 'issuing'", (kid,))[0][0])


def text_of(response) -> str:
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


@pytest.fixture
def admin(audit_world, make_app, world, tmp_path):
    """The admin's browser on an app whose keyring is a copy (revocations change it)."""
    keys_dir = tmp_path / "keys-copy"
    shutil.copytree(world["keys_dir"], keys_dir)
    app = make_app(KEYS_DIR=str(keys_dir))
    browser = app.test_client()
    assert log_in(browser, "ada").status_code == 302
    return {"browser": browser, "keys_dir": keys_dir, "db": app.config["DATABASE"], "kid": world["kid"].hex()}


# --- revoking a key ----------------------------------------------------------------------------


def test_revoking_a_key_first_shows_how_many_labels_will_show_not_genuine(admin):
    browser, kid = admin["browser"], admin["kid"]
    before = logged_kinds(admin["db"])
    page = browser.get("/audit/keys").get_data(as_text=True)
    shown = browser.post("/audit/keys", data={"kid": kid, "csrf": csrf_of(page)})
    assert shown.status_code == 200
    signed = codes_of_key(admin["db"], kid)
    assert signed == 63  # the world's 60 labels and Other Co's 3
    assert f"{signed:,} 枚标签将显示“非正品”" in text_of(shown)  # the audit UI speaks Chinese by default
    assert "取消，不做任何操作" in text_of(shown)
    browser.set_cookie("vaudit_lang", "en", path="/audit")
    shown = browser.post("/audit/keys", data={"kid": kid, "csrf": csrf_of(page)})
    assert f"{signed:,} labels will show “not genuine”" in text_of(shown) and "Cancel: do nothing" in text_of(shown)
    assert 'name="confirm" value="yes"' in text_of(shown) and 'href="/audit/keys"' in text_of(shown)  # Cancel
    assert {r.kid: r.status for r in keys.read_keyring(admin["keys_dir"])}[kid] == "active"  # nothing changed
    assert logged_kinds(admin["db"]) == before


def test_the_confirmed_revocation_revokes_and_is_logged(admin):
    browser, kid = admin["browser"], admin["kid"]
    shown = browser.post("/audit/keys", data={"kid": kid, "csrf": csrf_of(browser.get("/audit/keys").text)})
    done = browser.post("/audit/keys", data={"kid": kid, "csrf": csrf_of(shown.text), "confirm": "yes"})
    assert done.status_code == 302
    assert {r.kid: r.status for r in keys.read_keyring(admin["keys_dir"])}[kid] == "revoked"
    assert logged_kinds(admin["db"])[-1] == "key.status"


def test_a_confirmation_without_its_csrf_token_is_refused(admin):
    browser, kid = admin["browser"], admin["kid"]
    for form in ({"kid": kid, "confirm": "yes"}, {"kid": kid, "confirm": "yes", "csrf": "0" * 32}):
        assert browser.post("/audit/keys", data=form).status_code == 403
    assert {r.kid: r.status for r in keys.read_keyring(admin["keys_dir"])}[kid] == "active"


def test_a_revocation_of_no_such_key_asks_nothing(admin):
    browser = admin["browser"]
    refused = browser.post("/audit/keys", data={"kid": "ffff", "csrf": csrf_of(browser.get("/audit/keys").text)})
    assert refused.status_code == 400 and "confirm" not in refused.text


# --- recalling a batch --------------------------------------------------------------------------


def test_recalling_a_batch_first_shows_its_label_count_and_changes_nothing(admin, audit_world):
    browser, batch = admin["browser"], audit_world["mine"][0]
    before = logged_kinds(admin["db"])
    page = browser.get(f"/audit/batches/{batch}").text
    shown = browser.post(f"/audit/batches/{batch}", data={"reason": "mould", "csrf": csrf_of(page)})
    assert shown.status_code == 200
    assert f"批次 {batch}（华茶集团 / " in text_of(shown) and "的 40 枚标签" in text_of(shown)
    assert "“已召回”" in text_of(shown)
    assert 'name="reason" value="mould"' in text_of(shown)
    assert query(admin["db"], "SELECT status FROM batches WHERE id = ?", (batch,)) == [("active",)]
    assert logged_kinds(admin["db"]) == before
    done = browser.post(f"/audit/batches/{batch}", data={"reason": "mould", "csrf": csrf_of(page), "confirm": "yes"})
    assert done.status_code == 302
    assert query(admin["db"], "SELECT status FROM batches WHERE id = ?", (batch,)) == [("recalled",)]
    assert logged_kinds(admin["db"])[-1] == "batch.recalled"


def test_a_recall_confirmation_without_csrf_is_refused(admin, audit_world):
    batch = audit_world["mine"][0]
    assert admin["browser"].post(f"/audit/batches/{batch}", data={"reason": "x", "confirm": "yes"}).status_code == 403
    assert query(admin["db"], "SELECT status FROM batches WHERE id = ?", (batch,)) == [("active",)]


# --- reporting a code ---------------------------------------------------------------------------


def test_reporting_a_code_first_shows_the_one_code_and_changes_nothing(admin, audit_world):
    browser, serial = admin["browser"], int(audit_world["my_serial"])
    human = codes.human_code(serial)
    page = browser.get(f"/audit/codes/{serial:016d}").text
    shown = browser.post(f"/audit/codes/{serial:016d}", data={"note": "market", "csrf": csrf_of(page)})
    assert shown.status_code == 200
    assert f"1 枚标签（防伪码 {human}），此后每位消费者扫码都会看到“已举报为假冒”" in text_of(shown)
    english = browser.post(f"/audit/codes/{serial:016d}?lang=en", data={"note": "market", "csrf": csrf_of(page)})
    assert f"1 label, code {human}, will show “reported counterfeit”" in text_of(english)
    assert query(admin["db"], "SELECT count(*) FROM reported_codes") == [(0,)]
    assert browser.post(f"/audit/codes/{serial:016d}", data={"note": "market", "confirm": "yes"}).status_code == 403
    assert query(admin["db"], "SELECT count(*) FROM reported_codes") == [(0,)]
    done = browser.post(f"/audit/codes/{serial:016d}", data={"note": "market", "csrf": csrf_of(page), "confirm": "yes"})
    assert done.status_code == 302
    assert query(admin["db"], "SELECT serial FROM reported_codes") == [(serial,)]
    assert logged_kinds(admin["db"])[-1] == "code.reported"


def test_confirmation_pages_have_no_script_and_only_admins_reach_them(admin, audit_world):
    browser = admin["browser"]
    shown = browser.post("/audit/keys", data={"kid": admin["kid"], "csrf": csrf_of(browser.get("/audit/keys").text)})
    assert "<script" not in shown.text and " style=" not in shown.text and not re.search(r"\son\w+=", shown.text)
    assert "default-src 'none'" in shown.headers["Content-Security-Policy"]
    inspector = audit_world["app"].test_client()
    log_in(inspector, "ian")
    page = inspector.get(f"/audit/batches/{audit_world['mine'][0]}").text
    assert (
        inspector.post(
            f"/audit/batches/{audit_world['mine'][0]}", data={"reason": "x", "csrf": csrf_of(page)}
        ).status_code
        == 403
    )


# --- in a real browser ---------------------------------------------------------------------------


@pytest.mark.skipif(
    not os.path.exists(CHROMIUM) and not os.environ.get("CI"), reason="no Chromium: install Debian's chromium"
)
def test_the_key_revocation_confirmation_on_a_phone(serve, server_env, world, db_copy, tmp_path):
    from browsers import PHONE
    from playwright.sync_api import sync_playwright

    keys_dir = tmp_path / "keys-copy"
    shutil.copytree(world["keys_dir"], keys_dir)
    conn = db.connect(db_copy)
    with db.transaction(conn):
        accounts.add_user(conn, "ada", "admin", "correct horse battery", None, "test", NOW)
    conn.close()
    server = serve(VERIFIER_KEYS=str(keys_dir))
    kid = world["kid"].hex()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            context = chromium.new_context(locale="en-US", **PHONE)
            page = context.new_page()
            page.goto(server.url + "/audit/login")
            page.fill("input[name=username]", "ada")
            page.fill("input[name=password]", "correct horse battery")
            page.click("button")
            page.wait_for_load_state("load")
            page.goto(server.url + "/audit/keys?lang=en")  # the audit UI speaks Chinese unless asked
            page.click("form.inline button:text('Revoke')")
            page.wait_for_load_state("load")
            page.screenshot(path=str(ARTIFACTS / "audit-confirm-key-revocation-phone.png"), full_page=True)
            main = page.locator("main").inner_text()
            assert "60 labels will show “not genuine”" in main  # the world's batches: Other Co is not in this copy
            assert page.evaluate("document.documentElement.scrollWidth") <= 390, "the page scrolls sideways"
            page.click("text=Cancel")
            page.wait_for_load_state("load")
            assert page.url.endswith("/audit/keys")
            assert {r.kid: r.status for r in keys.read_keyring(keys_dir)}[kid] == "active"
            page.click("form.inline button:text('Revoke')")
            page.wait_for_load_state("load")
            page.click(f"button:text('Revoke key {kid}')")
            page.wait_for_load_state("load")
            assert {r.kid: r.status for r in keys.read_keyring(keys_dir)}[kid] == "revoked"
            context.close()
        finally:
            chromium.close()
