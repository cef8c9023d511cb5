"""The consumer page and the JSON API, through the Flask test client on a real database (each engine)."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import BASE_URL, PIN_SECRET, forged_url, settle

from verifier import codes, db, keys, pins

PHONE_UA = "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/120 Mobile MicroMessenger/8.0.47"


def path_of(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def reason_of(response) -> str:
    return re.search(r'data-reason="([a-z-]+)"', response.get_data(as_text=True)).group(1)


def scan(client, url: str, **headers):
    return client.get(path_of(url), headers={"User-Agent": PHONE_UA, **headers})


def fresh(app):
    """A new browser: no cookies, so no session."""
    return app.test_client()


def scans(location: Path | str) -> list[dict]:
    """The scan log of the database at `location`, oldest first."""
    conn = db.connect(location)
    try:
        return db.dicts(conn.execute("SELECT * FROM scans ORDER BY id"))
    finally:
        conn.close()


def dump(location: Path | str) -> str:
    """Every row of every table of the database at `location`, as text (after the log is chained)."""
    settle(location)
    conn = db.connect(location)
    try:
        if db.is_postgres_conn(conn):
            listing = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1"
        else:
            listing = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1"
        names = [name for (name,) in conn.execute(listing).fetchall()]
        return "\n".join(f"{name}: {row!r}" for name in names for row in conn.execute(f"SELECT * FROM {name}"))
    finally:
        conn.close()


def copy_of_world(world, tmp_path: Path, postgres_server, name: str) -> Path | str:
    """A new copy of the world's database (a file on SQLite, a database made from it on PostgreSQL)."""
    import shutil

    if world["engine"] == "postgresql":
        return postgres_server.create(template=world["db"])
    target = tmp_path / f"{name}.db"
    shutil.copyfile(world["db"], target)
    return target


def test_first_scan_is_genuine_with_the_product(app, world, db_copy):
    url = world["pin"][1][0]["url"]
    response = scan(fresh(app), url)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and reason_of(response) == "genuine"
    assert "正品：首次查询" in html and "华茶集团" in html and "绿茶 500g" in html and "全国质检稳定合格产品" in html
    assert "L2026-11" in html and "2030年10月31日" in html
    [row] = scans(db_copy)
    assert (row["channel"], row["reason"], row["counted"], row["checks"]) == ("qr", "genuine", 1, 1)
    assert row["user_agent"] == "WeChat/Android" and row["ip_prefix"] == "127.0.0.0/24"


def test_repeat_checks_show_count_and_first_time_in_china_time(app, world):
    url = world["pin"][1][1]["url"]
    scan(fresh(app), url)
    second = scan(fresh(app), url)
    html = second.get_data(as_text=True)
    assert reason_of(second) == "genuine-repeat" and "已被查询 2 次" in html
    assert re.search(r"首次查询时间为 \d{4}年\d+月\d+日 \d\d:\d\d（北京时间）", html)


def test_repeat_views_from_one_browser_count_once(app, world, db_copy):
    url = world["pin"][1][2]["url"]
    browser = fresh(app)
    assert reason_of(scan(browser, url)) == "genuine"
    again = scan(browser, url)
    assert reason_of(again) == "genuine" and "<dd>1</dd>" in again.get_data(as_text=True)
    assert [r["counted"] for r in scans(db_copy)] == [1, 0]


def test_beyond_the_threshold_is_suspicious(app, world):
    url = world["pin"][1][3]["url"]
    reasons = [reason_of(scan(fresh(app), url)) for _ in range(5)]
    assert reasons == ["genuine", "genuine-repeat", "genuine-repeat", "genuine-repeat", "suspicious-repeat"]


def test_gs1_digital_link_path_resolves(app, world):
    row = world["gs1"][1][0]
    assert reason_of(scan(fresh(app), row["url"])) == "genuine"
    altered = row["url"].replace("/10/L7/", "/10/L8/")
    assert reason_of(scan(fresh(app), altered)) == "bad-signature"


def test_recalled_and_expired_batches(app, world):
    recalled = scan(fresh(app), world["recalled"][1][0]["url"])
    assert reason_of(recalled) == "recalled" and "contaminated lot" in recalled.get_data(as_text=True)
    expired = scan(fresh(app), world["expired"][1][0]["url"])
    assert reason_of(expired) == "expired" and "2020年1月1日" in expired.get_data(as_text=True)


def forged_variants(world) -> dict[str, str]:
    url = world["pin"][1][4]["url"]
    unregistered = codes.compact_signer(world["private"], world["kid"], codes.MARKS[0], 999, BASE_URL)(42)
    other_key = codes.compact_signer(
        __import__("cryptography.hazmat.primitives.asymmetric.ed25519", fromlist=["x"]).Ed25519PrivateKey.generate(),
        b"\xab\xcd",
        codes.MARKS[0],
        1,
        BASE_URL,
    )(42)
    return {
        "bad-signature": forged_url(url),
        "unknown-batch": unregistered,
        "unknown-key": other_key,
        "malformed": BASE_URL + "NOT-A-CODE",
    }


@pytest.mark.parametrize("reason", ["bad-signature", "unknown-batch", "unknown-key", "malformed"])
def test_not_genuine_codes_get_a_warning_never_an_error(app, world, reason, db_copy):
    response = scan(fresh(app), forged_variants(world)[reason])
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and reason_of(response) == reason
    assert "12315" in html and "Traceback" not in html
    assert scans(db_copy)[-1]["reason"] == reason and scans(db_copy)[-1]["counted"] == 0


@pytest.mark.parametrize(
    "path",
    [
        "/%00",
        "/" + "A" * 5000,
        "/01/x/10/y/21/z?17=1&8030=" + "%FF" * 50,
        "/a/b/c/d",
        "/\u4e2d\u6587",
        "/01/09506000134352/10/L7/21/0?17=300131&17=300131",
    ],
)
def test_junk_paths_are_verdicts(client, path):
    response = client.get(path)
    assert response.status_code == 200 and reason_of(response) == "malformed"


def manual(client, code, pin=None):
    return client.post("/check", data={"code": code, **({"pin": pin} if pin is not None else {})})


def test_manual_entry_flow(app, world, db_copy):
    row = world["pin"][1][5]
    browser = fresh(app)
    form = browser.get("/")
    assert "输入防伪码查询" in form.get_data(as_text=True)
    assert reason_of(manual(browser, row["code"])) == "genuine"
    first_pin = manual(fresh(app), row["code"], row["pin"])
    assert reason_of(first_pin) == "genuine" and "首次验证" in first_pin.get_data(as_text=True)
    reused = manual(fresh(app), row["code"].replace(" ", ""), row["pin"])
    assert reason_of(reused) == "pin-reused" and "已于" in reused.get_data(as_text=True)
    assert reason_of(manual(fresh(app), row["code"], "00000000" if row["pin"] != "00000000" else "1")) == "pin-mismatch"
    assert [r["channel"] for r in scans(db_copy)] == ["manual"] * 4


def test_manual_typo_is_called_a_typo_not_a_counterfeit(client, world):
    code = world["pin"][1][6]["code"]
    typo = code[:3] + str((int(code[3]) + 1) % 10) + code[4:]
    response = manual(client, typo)
    html = response.get_data(as_text=True)
    assert reason_of(response) == "mistyped" and "这不代表产品是假冒的" in html


def test_manual_unknown_code_and_full_width_digits(client, world):
    digits = "1234567890123456"
    unknown = f"{digits}{codes.damm_digit(digits)}"
    assert reason_of(manual(client, unknown)) == "unknown-code"
    code = world["pin"][1][7]["code"]
    full_width = code.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    assert reason_of(manual(client, full_width)) == "genuine"


def test_pin_form_appears_on_a_scanned_pin_label(client, world):
    html = scan(client, world["pin"][1][8]["url"]).get_data(as_text=True)
    assert 'action="/check"' in html and 'name="pin"' in html
    assert world["pin"][1][8]["code"] in html


def test_english_by_accept_language_and_by_switch(app, world):
    url = world["pin"][1][9]["url"]
    english = scan(fresh(app), url, **{"Accept-Language": "en-US,en;q=0.9"})
    assert "Genuine: first check" in english.get_data(as_text=True)
    browser = fresh(app)
    switched = browser.get(path_of(url) + "?lang=en")
    assert "Genuine" in switched.get_data(as_text=True) and "lang=en" in switched.headers["Set-Cookie"]
    assert "Check a printed code" in browser.get("/").get_data(as_text=True)  # the cookie remembers the choice
    chinese_default = scan(fresh(app), url, **{"Accept-Language": "fr"})
    assert "正品" in chinese_default.get_data(as_text=True)


def test_security_headers_no_script_and_light_pages(client, world):
    response = scan(client, world["pin"][1][10]["url"])
    headers = response.headers
    assert (
        "script-src" not in headers["Content-Security-Policy"]
        and "default-src 'none'" in headers["Content-Security-Policy"]
    )
    assert headers["Referrer-Policy"] == "no-referrer" and headers["X-Content-Type-Options"] == "nosniff"
    html = response.get_data()
    assert b"<script" not in html.lower() and b"style=" not in html
    css = client.get("/static/site.css").get_data()
    assert len(html) + len(css) < 30 * 1024


def test_pages_leak_no_version_or_earlier_locations(app, world):
    url = world["pin"][1][11]["url"]
    scan(fresh(app), url, **{"X-Forwarded-For": "203.0.113.9"})
    html = scan(fresh(app), url).get_data(as_text=True)
    assert "127.0.0" not in html and "203.0.113" not in html and "0.1.0" not in html


def test_forwarded_for_is_ignored_unless_configured(app, world, db_copy, tmp_path, make_app):
    scan(fresh(app), world["pin"][1][12]["url"], **{"X-Forwarded-For": "203.0.113.9"})
    assert scans(db_copy)[-1]["ip_prefix"] == "127.0.0.0/24"
    proxied = make_app(TRUSTED_PROXIES=1)
    proxied.test_client().get(path_of(world["pin"][1][13]["url"]), headers={"X-Forwarded-For": "203.0.113.9"})
    row = scans(db_copy)[-1]
    assert row["ip_prefix"] == "203.0.113.0/24" and row["ip_hash"] and len(row["ip_hash"]) == 16


def test_scan_log_never_holds_a_full_ip(app, world, db_copy, make_app):
    proxied = make_app(TRUSTED_PROXIES=1)
    proxied.test_client().get(path_of(world["pin"][1][14]["url"]), headers={"X-Forwarded-For": "2001:db8:1234:5678::9"})
    text = dump(db_copy)
    assert "2001:db8:1234:5678" not in text and "2001:db8:1234::/48" in text


GEO = {"X-Geo-Country": "cn", "X-Geo-Region": "Guangdong", "X-Geo-City": "Shenzhen"}


def test_geo_headers_are_ignored_without_a_trusted_proxy(app, world, db_copy, caplog, make_app):
    with caplog.at_level("WARNING", logger="verifier.web"):
        alone = make_app(TRUST_GEO_HEADERS=True, TRUSTED_PROXIES=0)
    assert [r.getMessage() for r in caplog.records if "X-Geo" in r.getMessage()] == [
        "VERIFIER_TRUST_GEO_HEADERS is ignored: X-Geo-* headers are trusted only from a proxy "
        "(set VERIFIER_TRUSTED_PROXIES)"
    ]
    scan(alone.test_client(), world["pin"][1][30]["url"], **GEO)
    assert {k: scans(db_copy)[-1][k] for k in ("country", "region", "city")} == {
        "country": None,
        "region": None,
        "city": None,
    }
    proxied = make_app(TRUST_GEO_HEADERS=True, TRUSTED_PROXIES=1)
    scan(proxied.test_client(), world["pin"][1][31]["url"], **GEO)
    assert {k: scans(db_copy)[-1][k] for k in ("country", "region", "city")} == {
        "country": "CN",
        "region": "Guangdong",
        "city": "Shenzhen",
    }


@pytest.mark.parametrize(
    "headers, stored",
    [
        pytest.param(
            {"X-Geo-Country": "cn", "X-Geo-Region": "广东省", "X-Geo-City": "深圳市"},
            ("CN", "广东省", "深圳市"),
            id="cjk-as-text",
        ),
        pytest.param(
            {"X-Geo-Country": "CN", "X-Geo-Region": "广东省".encode().decode("latin-1"), "X-Geo-City": "St. John's"},
            ("CN", "广东省", "St. John's"),
            id="utf-8-bytes-on-the-wire",
        ),
        pytest.param(
            {"X-Geo-Country": "CHN", "X-Geo-Region": '=HYPERLINK("http://x")', "X-Geo-City": "@SUM(A1)"},
            (None, None, None),
            id="formulas",
        ),
        pytest.param(
            {"X-Geo-Country": "C1", "X-Geo-Region": "-1+1", "X-Geo-City": "Shen\u200bzhen"},
            (None, None, None),
            id="minus-digit-and-zero-width-space",
        ),
        pytest.param(
            {"X-Geo-Country": "ÇN", "X-Geo-Region": "x" * 65, "X-Geo-City": "<script>"},
            (None, None, None),
            id="non-ascii-country-too-long-and-markup",
        ),
        pytest.param({"X-Geo-Region": "\xff\xfe", "X-Geo-City": "a\tb"}, (None, None, None), id="not-utf-8-and-tab"),
    ],
)
def test_geo_headers_are_validated_before_they_are_stored(app, world, db_copy, headers, stored, make_app):
    proxied = make_app(TRUST_GEO_HEADERS=True, TRUSTED_PROXIES=1)
    scan(proxied.test_client(), world["pin"][1][32]["url"], **headers)
    row = scans(db_copy)[-1]  # from 127.0.0.1: the offline table has no country for it
    assert (row["country"], row["region"], row["city"]) == stored


# --- the API ------------------------------------------------------------------------------


def test_api_verify_answers_reason_and_checks(app, world):
    url = world["pin"][1][15]["url"]
    first = fresh(app).get("/api/v1/verify", query_string={"code": url}).get_json()
    second = fresh(app).get("/api/v1/verify", query_string={"code": url}).get_json()
    assert (first["ok"], first["reason"], first["checks"]) == (True, "genuine", 1)
    assert (second["reason"], second["checks"]) == ("genuine-repeat", 2)
    assert second["product"]["enterprise"] == "华茶集团"


@pytest.mark.parametrize(
    "case",
    [
        "genuine",
        "recalled",
        "expired",
        "bad-signature",
        "unknown-batch",
        "unknown-key",
        "malformed",
        "mistyped",
        "unknown-code",
    ],
)
def test_page_and_api_give_the_same_verdict(world, tmp_path, postgres_server, make_app, case):
    """Each on its own fresh database, so neither sees the other's check."""
    variants = forged_variants(world)
    digits = "1234567890123456"
    texts = {
        "genuine": world["gs1"][1][1]["url"],
        "recalled": world["recalled"][1][1]["url"],
        "expired": world["expired"][1][1]["url"],
        "mistyped": "1234 5678 9012 34560",
        "unknown-code": f"{digits}{codes.damm_digit(digits)}",
        **variants,
    }
    text = texts[case]
    results = []
    for channel in ("page", "api"):
        app = make_app(DATABASE=str(copy_of_world(world, tmp_path, postgres_server, channel)))
        client = app.test_client()
        typed = case in ("mistyped", "unknown-code")
        if channel == "api":
            results.append(client.get("/api/v1/verify", query_string={"code": text}).get_json()["reason"])
        else:
            results.append(reason_of(manual(client, text) if typed else client.get(path_of(text))))
    assert results == [case, case]


@pytest.mark.parametrize("blank", [" ", "\r", "\t\n"])
def test_api_blank_code_is_a_malformed_verdict(client, blank):
    answer = client.get("/api/v1/verify", query_string={"code": blank}).get_json()
    assert (answer["ok"], answer["reason"]) == (True, "malformed")
    posted = client.post("/api/v1/verify", json={"code": blank}).get_json()
    assert (posted["ok"], posted["reason"]) == (True, "malformed")


def test_api_post_with_pin(app, world):
    row = world["pin"][1][16]
    answer = fresh(app).post("/api/v1/verify", json={"code": row["code"], "pin": row["pin"]}).get_json()
    assert (answer["reason"], answer["pin"]) == ("genuine", "first")
    again = fresh(app).post("/api/v1/verify", json={"code": row["code"], "pin": row["pin"]}).get_json()
    assert (again["reason"], again["pin"]) == ("pin-reused", "reused") and again["pin_verified_at"]


@pytest.mark.parametrize(
    "request_kwargs, status, code",
    [
        ({"method": "GET", "path": "/api/v1/verify"}, 400, "missing-parameter"),
        ({"method": "GET", "path": "/api/v1/verify?code="}, 400, "missing-parameter"),
        (
            {"method": "POST", "path": "/api/v1/verify", "data": "{not json", "content_type": "application/json"},
            400,
            "bad-request",
        ),
        ({"method": "POST", "path": "/api/v1/verify", "json": {"pin": "1"}}, 400, "missing-parameter"),
        ({"method": "POST", "path": "/api/v1/verify", "json": {"code": "1", "pin": 5}}, 400, "bad-request"),
        ({"method": "POST", "path": "/api/v1/verify", "json": ["code"]}, 400, "bad-request"),
        ({"method": "GET", "path": "/api/v1/nothing"}, 404, "not-found"),
        ({"method": "DELETE", "path": "/api/v1/verify"}, 405, "method-not-allowed"),
    ],
)
def test_api_errors_have_one_shape(client, request_kwargs, status, code):
    kwargs = dict(request_kwargs)
    response = client.open(kwargs.pop("path"), **kwargs)
    assert response.status_code == status
    assert response.get_json() == {
        "ok": False,
        "error": {"code": code, "message": response.get_json()["error"]["message"]},
    }


def test_jwks_is_public_cacheable_and_leaves_revoked_keys_out(client, world, tmp_path, make_app):
    response = client.get("/.well-known/jwks.json")
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "max-age" in response.headers["Cache-Control"]
    [jwk] = response.get_json()["keys"]
    assert jwk["kid"] == world["kid"].hex() and "d" not in jwk
    revoked = keys.KeyRecord("old", jwk["kid"], jwk["x"], "revoked", "2026-01-01")  # a served JWKS must be valid
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(keys.jwks([keys.KeyRecord(**{**revoked.__dict__, "status": "retired"})])))
    retired_app = make_app(JWKS_FILE=str(jwks_file))
    assert [k["status"] for k in retired_app.test_client().get("/.well-known/jwks.json").get_json()["keys"]] == [
        "retired"
    ]


def test_jwks_file_is_served_without_private_or_unknown_members(client, world, tmp_path, make_app):
    import base64
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    seed = hashlib.sha256(b"jwks with secrets").digest()
    raw = keys.raw_public(Ed25519PrivateKey.from_private_bytes(seed))
    revoked = keys.raw_public(Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"revoked").digest()))
    kid = keys.kid_for(raw).hex()
    [live] = client.get("/.well-known/jwks.json").get_json()["keys"]
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(
        json.dumps(
            {
                "keys": [
                    {
                        "kty": "OKP",
                        "crv": "Ed25519",
                        "x": b64(raw),
                        "d": b64(seed),
                        "kid": kid,
                        "use": "sig",
                        "alg": "EdDSA",
                        "status": "active",
                        "key_ops": ["sign"],
                        "x5c": ["MII..."],
                        "note": "<script>",
                        "ext": True,
                    },
                    {
                        "kty": "OKP",
                        "crv": "Ed25519",
                        "x": live["x"],
                        "d": "c2VjcmV0",
                        "status": "retired",
                        "use": "enc",
                    },
                    {"kty": "RSA", "n": "AQAB", "e": "AQAB", "d": "cHJpdmF0ZQ", "p": "AQ", "q": "AQ", "kid": "rsa-1"},
                    {"kty": "OKP", "crv": "Ed25519", "x": b64(revoked), "d": "AAAA", "status": "revoked"},
                ],
                "private_note": "not for the public",
            }
        )
    )
    served = make_app(JWKS_FILE=str(jwks_file)).test_client()
    response = served.get("/.well-known/jwks.json")
    assert response.get_json() == {
        "keys": [
            {
                "kty": "OKP",
                "crv": "Ed25519",
                "x": b64(raw),
                "kid": kid,
                "use": "sig",
                "alg": "EdDSA",
                "status": "active",
            },
            {"kty": "OKP", "crv": "Ed25519", "x": live["x"], "kid": live["kid"], "status": "retired"},
        ]
    }
    assert b64(seed) not in response.get_data(as_text=True) and '"d"' not in response.get_data(as_text=True)


def test_openapi_json_is_the_yaml_document(client):
    served = client.get("/api/v1/openapi.json").get_json()
    on_disk = yaml.safe_load((Path(__file__).parent.parent / "docs" / "openapi.yaml").read_text("utf-8"))
    assert served == on_disk and served["openapi"].startswith("3.1")
    assert set(on_disk["components"]["schemas"]["Verdict"]["properties"]["reason"]["enum"]) == set(
        __import__("verifier.lookup", fromlist=["REASONS"]).REASONS
    )


def test_rate_limit_page_and_api(app, world):
    from test_ratelimit import limited_app

    browser = limited_app(app, "3/minute").test_client()  # a fixed request clock: no window can end mid-test
    url = world["pin"][1][17]["url"]
    statuses = [browser.get(path_of(url)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    page = browser.get(path_of(url))
    assert "查询过于频繁" in page.get_data(as_text=True) and int(page.headers["Retry-After"]) >= 1
    api = browser.get("/api/v1/verify", query_string={"code": url})
    assert api.status_code == 429 and api.get_json()["error"]["code"] == "rate-limited"


def test_revocation_reaches_the_running_server(app, world, tmp_path, make_app):
    import shutil

    keys_dir = tmp_path / "keys"
    shutil.copytree(world["keys_dir"], keys_dir)
    server = make_app(KEYS_DIR=str(keys_dir))
    server.extensions["verifier"].KEY_RECHECK_SECONDS = 0
    url = world["pin"][1][18]["url"]
    assert reason_of(server.test_client().get(path_of(url))) == "genuine"
    keys.set_status(keys_dir, "dev", "revoked", dt.datetime.now(dt.UTC))
    assert reason_of(server.test_client().get(path_of(url))) == "key-revoked"


def test_server_needs_no_private_key(app, world, tmp_path, make_app):
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(keys.jwks(keys.read_keyring(world["keys_dir"]))))
    server = make_app(KEYS_DIR=str(tmp_path / "no-keys-here"), JWKS_FILE=str(jwks_file))
    assert reason_of(server.test_client().get(path_of(world["pin"][1][19]["url"]))) == "genuine"


def test_pin_secret_derivation_matches_the_printer_file(world):
    row = world["pin"][1][0]
    assert pins.derive_pin(PIN_SECRET, int(row["serial"])) == row["pin"]


# --- hardening round 2 ------------------------------------------------------------------------


def report(location: Path | str, serial: int | str, note: str = "seen at a market stall") -> None:
    """What `verifier audit report-code` does."""
    from verifier.audit import report_code
    from verifier.clock import now

    conn = db.connect(location)
    try:
        with db.transaction(conn):
            report_code(conn, int(serial), note, "test", now())
    finally:
        conn.close()


def test_reported_counterfeit_code_is_red_on_every_channel(app, world, db_copy):
    row = world["pin"][1][25]
    assert reason_of(scan(fresh(app), row["url"])) == "genuine"
    report(db_copy, row["serial"])
    page = scan(fresh(app), row["url"])
    html = page.get_data(as_text=True)
    assert reason_of(page) == "reported-counterfeit" and 'class="verdict bad"' in html and "已被举报为假冒" in html
    assert 'name="pin"' not in html and "12315" in html
    assert reason_of(manual(fresh(app), row["code"])) == "reported-counterfeit"
    assert reason_of(manual(fresh(app), row["code"], row["pin"])) == "reported-counterfeit"  # a PIN does not clear it
    answer = fresh(app).get("/api/v1/verify", query_string={"code": row["url"]}).get_json()
    assert (answer["reason"], answer["tone"], answer["genuine"]) == ("reported-counterfeit", "bad", False)
    posted = fresh(app).post("/api/v1/verify", json={"code": row["code"]}).get_json()
    assert posted["reason"] == "reported-counterfeit"
    english = scan(fresh(app), row["url"], **{"Accept-Language": "en"}).get_data(as_text=True)
    assert "Warning: reported counterfeit" in english
    assert {r["reason"] for r in scans(db_copy)[1:]} == {"reported-counterfeit"}
    recalled = world["recalled"][1][2]
    report(db_copy, recalled["serial"])
    assert reason_of(scan(fresh(app), recalled["url"])) == "reported-counterfeit"  # outranks the recall


def spaced(text: str, separator: str) -> str:
    return separator.join(text)


PIN_TYPINGS = {
    "full-width digits": lambda pin: pin.translate(str.maketrans("0123456789", "０１２３４５６７８９")),
    "nbsp": lambda pin: pin[:4] + "\u00a0" + pin[4:],
    "zero-width space": lambda pin: spaced(pin, "\u200b"),
    "zero-width joiner and bom": lambda pin: "\ufeff" + pin[:4] + "\u200d" + pin[4:],
    "spaces": lambda pin: " " + spaced(pin, " ") + " ",
    "ideographic space": lambda pin: pin[:4] + "\u3000" + pin[4:],
    "hyphens": lambda pin: pin[:4] + "-" + pin[4:],
    "full-width hyphen and en dash": lambda pin: pin[:2] + "－" + pin[2:5] + "–" + pin[5:],
}


@pytest.mark.parametrize("typing", list(PIN_TYPINGS))
@pytest.mark.parametrize("channel", ["manual", "api"])
def test_pin_normalised_like_codes_on_every_channel(app, world, typing, channel):
    row = world["pin"][1][26 if channel == "manual" else 27]
    pin, code = PIN_TYPINGS[typing](row["pin"]), row["code"][:4] + "\u200b" + row["code"][4:]
    if channel == "manual":
        reason = reason_of(manual(fresh(app), code, pin))
    else:
        reason = fresh(app).post("/api/v1/verify", json={"code": code, "pin": pin}).get_json()["reason"]
    assert reason == "genuine"  # each case runs on a fresh database: the first verification of this PIN


def test_pin_of_separators_only_is_no_pin(app, world):
    row = world["pin"][1][28]
    assert reason_of(manual(fresh(app), row["code"], " \u200b- ")) == "genuine"
    answer = fresh(app).post("/api/v1/verify", json={"code": row["code"], "pin": "\u3000"}).get_json()
    assert (answer["reason"], answer["pin"]) == ("genuine-repeat", None)


def test_api_get_recognises_a_typed_code_with_invisible_characters(client, world):
    row = world["pin"][1][29]
    answer = client.get(
        "/api/v1/verify", query_string={"code": "\ufeff" + row["code"].replace(" ", "\u00a0")}
    ).get_json()
    assert (answer["reason"], answer["code"]) == ("genuine", row["code"])


def wrong_pin(pin: str) -> str:
    return "00000000" if pin != "00000000" else "11111111"


def test_wrong_pins_do_not_add_to_the_check_count(app, world, db_copy):
    row = world["pin"][1][30]
    assert reason_of(scan(fresh(app), row["url"])) == "genuine"
    for _ in range(3):  # counted, these and the scan below would make the label "suspicious" (threshold 4)
        assert reason_of(manual(fresh(app), row["code"], wrong_pin(row["pin"]))) == "pin-mismatch"
    second = scan(fresh(app), row["url"])
    assert reason_of(second) == "genuine-repeat" and "已被查询 2 次" in second.get_data(as_text=True)
    answer = fresh(app).post("/api/v1/verify", json={"code": row["code"], "pin": wrong_pin(row["pin"])}).get_json()
    assert (answer["reason"], answer["pin"], answer["checks"]) == ("pin-mismatch", "mismatch", 2)
    assert [(r["pin"], r["counted"], r["checks"]) for r in scans(db_copy)] == [
        (None, 1, 1),
        *[("mismatch", 0, 1)] * 3,
        (None, 1, 2),
        ("mismatch", 0, 2),
    ]
    assert reason_of(manual(fresh(app), row["code"], row["pin"])) == "genuine"  # the right PIN still counts


def test_wrong_pin_before_any_check_counts_nothing(app, world, db_copy):
    row = world["pin"][1][31]
    answer = fresh(app).post("/api/v1/verify", json={"code": row["code"], "pin": wrong_pin(row["pin"])}).get_json()
    assert (answer["reason"], answer["checks"], answer["first_checked_at"]) == ("pin-mismatch", None, None)
    assert reason_of(scan(fresh(app), row["url"])) == "genuine"


def form_values(html: str) -> dict[str, str | None]:
    """The manual form's inputs on a page: name -> value attribute (None if absent)."""
    return {m.group(1): m.group(3) for m in re.finditer(r'<input name="(\w+)"[^>]*?( value="([^"]*)")?>', html)}


def test_wrong_pin_and_typo_pages_offer_the_form_again_with_the_typed_code(client, world):
    row = world["pin"][1][32]
    typed = row["code"].replace(" ", "-")
    mismatch = manual(client, typed, wrong_pin(row["pin"])).get_data(as_text=True)
    assert 'data-reason="pin-mismatch"' in mismatch and 'action="/check"' in mismatch
    assert form_values(mismatch) == {"code": typed, "pin": None}  # the PIN is never echoed
    assert wrong_pin(row["pin"]) not in mismatch
    typo = row["code"][:3] + str((int(row["code"][3]) + 1) % 10) + row["code"][4:]
    mistyped = manual(client, typo, "12345678").get_data(as_text=True)
    assert 'data-reason="mistyped"' in mistyped and form_values(mistyped) == {"code": typo, "pin": None}
    assert "12345678" not in mistyped
    hostile = manual(client, '"><b>1234').get_data(as_text=True)
    assert "<b>" not in hostile and "&#34;&gt;&lt;b&gt;1234" in hostile
    genuine = manual(client, row["code"]).get_data(as_text=True)
    assert 'name="code" inputmode' not in genuine  # a verdict that needs no retry has no form


@pytest.mark.parametrize("length", ["too short", "one digit missing", "one digit too many", "letters"])
def test_typed_code_of_the_wrong_length_gets_the_typo_page(client, world, length):
    code = world["pin"][1][33]["code"]
    typed = {
        "too short": "1234",
        "one digit missing": code[:-1],
        "one digit too many": code + "5",
        "letters": code[:-1] + "O",
    }[length]
    response = manual(client, typed)
    html = response.get_data(as_text=True)
    assert reason_of(response) == "mistyped" and 'class="verdict warn"' in html
    assert "17 位数字" in html and "这不代表产品是假冒的" in html and form_values(html)["code"] == typed
    answer = client.post("/api/v1/verify", json={"code": typed, "pin": "1"}).get_json()  # a PIN: a typed code
    assert (answer["reason"], answer["detail"], answer["tone"]) == ("mistyped", "bad-length", "warn")
    if length != "letters":
        assert client.get("/api/v1/verify", query_string={"code": typed}).get_json()["reason"] == "mistyped"


def test_pin_attempts_are_throttled_per_code_whatever_the_address(app, world, db_copy, make_app):
    proxied = make_app(TRUSTED_PROXIES=1)
    row, other = world["pin"][1][34], world["pin"][1][35]

    def attempt(pin, address, code=row["code"]):
        return proxied.test_client().post(
            "/check", data={"code": code, "pin": pin}, headers={"X-Forwarded-For": address}
        )

    reasons = [reason_of(attempt(wrong_pin(row["pin"]), f"198.51.100.{i}")) for i in range(5)]
    assert reasons == ["pin-mismatch"] * 5
    throttled = attempt(wrong_pin(row["pin"]), "203.0.113.1")
    html = throttled.get_data(as_text=True)
    assert reason_of(throttled) == "pin-throttled" and "验证码尝试次数过多" in html and 'class="verdict warn"' in html
    assert reason_of(attempt(row["pin"], "203.0.113.2")) == "pin-throttled"  # not even checked
    answer = (
        proxied.test_client()
        .post(
            "/api/v1/verify", json={"code": row["code"], "pin": row["pin"]}, headers={"X-Forwarded-For": "203.0.113.3"}
        )
        .get_json()
    )
    assert (answer["reason"], answer["pin"]) == ("pin-throttled", "throttled")
    assert reason_of(attempt(other["pin"], "203.0.113.4", other["code"])) == "genuine"  # per code
    assert reason_of(scan(fresh(app), row["url"])) == "genuine"  # the label itself is still genuine
    rows = [(r["pin"], r["counted"]) for r in scans(db_copy) if r["serial"] == int(row["serial"])]
    assert rows == [("mismatch", 0)] * 5 + [("throttled", 0)] * 3 + [(None, 1)]


def test_pin_throttle_window_follows_the_injected_clock(world, db_copy):
    from verifier import clients, lookup

    settings = lookup.Settings({}, (BASE_URL,), pin_secret=PIN_SECRET)
    anyone = clients.Client(None, None, clients.Region(), "", None, "x")
    conn = db.connect(db_copy)
    row, t0 = world["pin"][1][36], dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.UTC)

    def attempt(pin, minutes):
        with db.transaction(conn):
            return lookup.record_typed(
                conn, row["code"], pin, settings, anyone, "api", t0 + dt.timedelta(minutes=minutes)
            )

    wrong = wrong_pin(row["pin"])
    try:
        assert [attempt(wrong, m).reason for m in (0, 10, 20, 30, 40)] == ["pin-mismatch"] * 5
        assert [attempt(p, 59).reason for p in (wrong, row["pin"])] == ["pin-throttled"] * 2
        assert attempt(row["pin"], 60).pin == "first"  # an hour after the first wrong PIN: checked again
        assert [attempt(wrong, 61 + m).reason for m in range(6)] == ["pin-mismatch"] * 5 + ["pin-throttled"]
        assert attempt(row["pin"], 121).reason == "pin-reused"
    finally:
        conn.close()


NEW_BASE, OLD_BASE = "HTTPS://NEW.EXAMPLE.CN/", "https://old.example.cn/v/"


@pytest.fixture
def two_bases(world, db_copy, tmp_path, make_app):
    """An app with two base URLs, and a compact and a GS1 batch issued under each."""
    import csv

    from verifier import issue

    urls = {}
    for name, base in (("new", NEW_BASE), ("old", OLD_BASE)):
        for form, extra in (
            ("compact", {}),
            ("gs1", {"gtin": "09506000134376", "lot": "B" + name, "expiry": dt.date(2030, 1, 31)}),
        ):
            out = tmp_path / f"{name}-{form}"
            request = issue.BatchRequest(
                mark=codes.MARKS[0],
                enterprise="Other Co",
                product="Soap",
                count=1,
                out_dir=out,
                base_url=base,
                formats=("csv",),
                form=form,
                **extra,
            )
            issue.issue_batch(db_copy, request, world["private"], world["kid"])
            with open(out / "codes.csv", encoding="utf-8") as fh:
                urls[f"{name}-{form}"] = next(csv.DictReader(fh))["url"]
    app = make_app(BASE_URLS=[NEW_BASE, OLD_BASE])
    return app, urls


@pytest.mark.parametrize("issued", ["new-compact", "new-gs1", "old-compact", "old-gs1"])
@pytest.mark.parametrize("host", ["its own host", "another host (a proxy)"])
def test_codes_issued_under_every_base_url_are_genuine_on_the_page(two_bases, issued, host):
    app, urls = two_bases
    url = urls[issued]
    own = url.split("://", 1)[1].split("/", 1)[0].lower()
    assert own == ("new.example.cn" if issued.startswith("new") else "old.example.cn")
    base_url = f"https://{own}" if host == "its own host" else "http://127.0.0.1:8000"
    page = app.test_client().get(path_of(url), base_url=base_url)
    assert reason_of(page) == "genuine"
    assert app.test_client().get("/api/v1/verify", query_string={"code": url}).get_json()["reason"] == "genuine-repeat"


def test_a_path_outside_every_base_is_still_malformed(two_bases):
    app, urls = two_bases
    payload = urls["old-compact"].rsplit("/", 1)[1]
    assert reason_of(app.test_client().get(f"/w/{payload}", base_url="https://old.example.cn")) == "malformed"


def test_recall_has_its_own_look_no_pin_form_and_a_remedy(app, world, db_copy):
    from verifier import clock, issue

    conn = db.connect(db_copy)
    try:
        issue.recall_batch(conn, world["pin"][0], "glass fragments", clock.now())  # a batch with PINs
    finally:
        conn.close()
    row = world["pin"][1][37]
    page = scan(fresh(app), row["url"])
    html = page.get_data(as_text=True)
    assert reason_of(page) == "recalled" and 'class="verdict stop"' in html and "warn" not in html
    assert 'name="pin"' not in html and "glass fragments" in html
    assert "请立即停止使用该产品" in html and "退回购买处" in html and "「华茶集团」" in html and "12315" in html
    english = scan(fresh(app), row["url"], **{"Accept-Language": "en"}).get_data(as_text=True)
    assert "Stop using the product now." in english and "where you bought it, or contact 华茶集团 for" in english
    assert reason_of(manual(fresh(app), row["code"], row["pin"])) == "recalled"
    answer = fresh(app).get("/api/v1/verify", query_string={"code": row["url"]}).get_json()
    assert (answer["reason"], answer["tone"]) == ("recalled", "stop")
    css = app.test_client().get("/static/site.css").get_data(as_text=True)
    assert re.search(r"\.stop\{background:(#[0-9a-f]{6})", css).group(1) not in (
        "#b25e00",
        "#b3261e",
    )  # neither amber nor red


def test_only_codes_may_wrap_anywhere_words_never_break(client, world):
    css = client.get("/static/site.css").get_data(as_text=True)
    assert "break-all" not in css
    assert [rule.split("{")[0].strip() for rule in css.split("}") if "overflow-wrap:anywhere" in rule] == [
        ".details dd.num"
    ]
    html = scan(client, world["gs1"][1][2]["url"]).get_data(as_text=True)
    assert '<dd class="num">' + world["gs1"][1][2]["code"] + "</dd>" in html
    assert "<dd>华茶集团</dd>" in html


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_no_doubled_closing_parentheses_in_either_language(app, world, lang):
    from verifier.web.i18n import TEXT, format_time

    url = world["pin"][1][38]["url"]
    pages = [scan(fresh(app), url, **{"Accept-Language": lang}).get_data(as_text=True) for _ in range(6)]
    assert "suspicious-repeat" in pages[-1] and ("北京时间" if lang == "zh" else "China Standard Time") in pages[-1]
    for html in pages:
        assert "））" not in html and "))" not in html
    when = format_time(dt.datetime(2026, 11, 22, tzinfo=dt.UTC), lang)
    values = {
        "checks": 5,
        "first": when,
        "pin_time": when,
        "recalled": "2026年11月22日",
        "reason": "x",
        "expiry": "x",
        "contact": "12315",
        "seconds": 3,
        "enterprise": "x",
    }
    for key, template in TEXT[lang].items():
        text = template.format(**values)
        assert "））" not in text and "))" not in text, key


@pytest.mark.parametrize(
    "contact, link",
    [
        ("12315", '<a href="tel:12315">12315</a>'),
        ("+86 10 1234-5678", '<a href="tel:+861012345678">+86 10 1234-5678</a>'),
        ("https://www.12315.cn/?a=1&b=2", '<a href="https://www.12315.cn/?a=1&amp;b=2" rel="noopener noreferrer">'),
        ("report@example.cn", '<a href="mailto:report@example.cn">report@example.cn</a>'),
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("javascript:alert(1)", "javascript:alert(1)"),
        ('12315" onclick="x', "12315&#34; onclick=&#34;x"),
    ],
)
def test_report_contact_is_a_tel_link_only_for_a_phone_number(app, world, contact, link, make_app):
    configured = make_app(REPORT_CONTACT=contact)
    html = configured.test_client().get(path_of(forged_url(world["pin"][1][39]["url"]))).get_data(as_text=True)
    report = re.search(r'<p class="report">(.*?)</p>', html).group(1)
    assert link in report
    assert "<script" not in html and "onclick=" not in html.replace("onclick=&#34;", "")
    assert ("href=" in report) == (
        contact in ("12315", "+86 10 1234-5678", "https://www.12315.cn/?a=1&b=2", "report@example.cn")
    )
    recall = configured.test_client().get(path_of(world["recalled"][1][3]["url"])).get_data(as_text=True)
    assert link in re.search(r'<section class="remedy">(.*?)</section>', recall, re.S).group(1)


CREDIT_CODE, GTIN = "91330100MA2A111108", "06901234567892"


def test_enterprise_data_given_at_issue_is_on_the_page_and_in_the_api(app, world, db_copy, tmp_path):
    import csv

    from verifier import issue

    request = issue.BatchRequest(
        mark=codes.MARKS[0],
        enterprise="浙江好茶有限公司",
        product="龙井",
        spec="250g",
        count=1,
        out_dir=tmp_path / "uscc",
        base_url=BASE_URL,
        formats=("csv",),
        credit_code=CREDIT_CODE,
        gtin=GTIN,
    )
    issue.issue_batch(db_copy, request, world["private"], world["kid"])
    with open(tmp_path / "uscc" / "codes.csv", encoding="utf-8") as fh:
        url = next(csv.DictReader(fh))["url"]
    chinese = scan(fresh(app), url).get_data(as_text=True)
    assert f'<dt>统一社会信用代码</dt><dd class="num">{CREDIT_CODE}</dd>' in chinese
    assert f'<dt>商品条码</dt><dd class="num">{GTIN}</dd>' in chinese
    english = scan(fresh(app), url, **{"Accept-Language": "en"}).get_data(as_text=True)
    assert f'<dt>Unified social credit code</dt><dd class="num">{CREDIT_CODE}</dd>' in english
    assert f'<dt>GTIN</dt><dd class="num">{GTIN}</dd>' in english
    product = fresh(app).get("/api/v1/verify", query_string={"code": url}).get_json()["product"]
    assert (product["enterprise"], product["credit_code"], product["gtin"]) == ("浙江好茶有限公司", CREDIT_CODE, GTIN)
    without = fresh(app).get("/api/v1/verify", query_string={"code": world["gs1"][1][3]["url"]}).get_json()["product"]
    assert (without["credit_code"], without["gtin"]) == (None, "09506000134352")  # the GTIN a GS1 code signs
    assert "统一社会信用代码" not in scan(fresh(app), world["pin"][1][0]["url"]).get_data(as_text=True)


def test_new_verdict_pages_stay_under_4_kb_with_the_stylesheet(app, world, db_copy):
    css = len(fresh(app).get("/static/site.css").get_data())
    report(db_copy, world["pin"][1][39]["serial"])
    english = {"Accept-Language": "en"}
    pages = [
        scan(fresh(app), world["recalled"][1][4]["url"], **english),
        scan(fresh(app), world["pin"][1][39]["url"], **english),
        fresh(app).post("/check", data={"code": world["pin"][1][38]["code"], "pin": "1"}, headers=english),
        fresh(app).post("/check", data={"code": "1234"}, headers=english),
        scan(fresh(app), world["pin"][1][37]["url"]),  # genuine, with the PIN form
    ]
    for page in pages:
        html = page.get_data()
        assert len(html) + css < 4096 and b"<script" not in html and b"style=" not in html, reason_of(page)


@pytest.mark.postgres_only("advisory locks per code: on SQLite the writer lock serialises every write")
def test_a_check_waits_for_the_transaction_that_holds_its_code_and_for_no_other(app, world, db_copy):
    """Two nodes verifying one PIN at once: the second waits for the first to commit, then sees its
    verification (pin-reused, the second check), where it would otherwise also be "first"."""
    import threading
    import time

    from verifier import clients, lookup

    row, other = world["pin"][1][21], world["pin"][1][22]
    settings = lookup.Settings({}, (BASE_URL,), pin_secret=PIN_SECRET)
    anyone = clients.Client(None, None, clients.Region(), "", None, "x")
    holder, watcher = db.connect(db_copy), db.connect(db_copy)
    answers: dict[str, dict] = {}

    def second_node():
        answers["second"] = fresh(app).post("/api/v1/verify", json={"code": row["code"], "pin": row["pin"]}).get_json()

    def waiting_for_a_code_lock() -> bool:
        sql = """SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"""
        return watcher.execute(sql).fetchone()[0] == 1

    thread = threading.Thread(target=second_node)
    try:
        with db.transaction(holder):
            first = lookup.record_typed(
                holder, row["code"], row["pin"], settings, anyone, "api", dt.datetime.now(dt.UTC)
            )
            assert (first.reason, first.pin, first.checks) == ("genuine", "first", 1)
            assert reason_of(scan(fresh(app), other["url"])) == "genuine"  # another code: not held up
            thread.start()
            deadline = time.monotonic() + 30
            while not waiting_for_a_code_lock():
                assert time.monotonic() < deadline and thread.is_alive(), f"it never waited for the code: {answers}"
                time.sleep(0.01)
            assert "second" not in answers
        thread.join(timeout=30)
    finally:
        holder.close()
        watcher.close()
    assert (answers["second"]["reason"], answers["second"]["pin"], answers["second"]["checks"]) == (
        "pin-reused",
        "reused",
        2,
    )
