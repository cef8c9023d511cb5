"""Mark certificates (both engines): the issuing association grants an enterprise a mark for its
products until a date; once a mark is granted by certificate, batches of it are issued only under
a valid certificate of their enterprise covering their product; a suspended, revoked or expired
certificate turns its codes' verdict to "mark-suspended"; genuine pages show the certificate and
the enterprise's quality commitment; `audit verify` catches a certificates table edited behind
the log's back; the CLI's errors are one line."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from conftest import BASE_URL, PIN_SECRET, database_env, seeded_random_bytes, settle
from test_tamper import attacker, query

from verifier import auditlog, certificates, clients, codes, db, issue, lookup
from verifier.cli import cli

NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
SQ, TR, _ = codes.MARKS  # stable-qualified: granted by certificate here; traceability: not
NUMBER = "ZJWD-2026-0001"
COMMITMENT = "我们承诺：严格按照国家标准组织生产，每批产品检验合格后出厂。"
COMMITMENT_URL = "https://huacha.example.cn/commitment"


def run(location, work):
    conn = db.connect(location)
    try:
        with db.transaction(conn):
            return work(conn)
    finally:
        conn.close()


def grant(
    location, number=NUMBER, *, enterprise="华茶集团", mark=SQ, until=dt.date(2099, 12, 31), products=("绿茶:500g",)
):
    def work(conn):
        product_ids = None
        if products is not None:
            enterprise_id = conn.execute("SELECT id FROM enterprises WHERE name = ?", [enterprise]).fetchone()
            enterprise_id = enterprise_id[0] if enterprise_id else None
            if enterprise_id is None:
                from verifier.repos import registry

                enterprise_id = registry.ensure_enterprise(conn, enterprise, None, NOW)
            product_ids = certificates.resolve_products(conn, enterprise_id, products, NOW)
        request = certificates.Grant(
            number, enterprise, mark, until, valid_from=dt.date(2026, 1, 1), products=product_ids
        )
        return certificates.grant(conn, request, actor="association:zhou", now=NOW)

    return run(location, work)


def change(location, number, status, reason=None, now=NOW):
    return run(location, lambda conn: certificates.change_status(conn, number, status, reason, actor="zhou", now=now))


def issue_batch(
    world, location, tmp_path, name, *, certificate=None, mark=SQ, product="绿茶", enterprise="华茶集团", now=NOW
):
    request = issue.BatchRequest(
        mark=mark,
        enterprise=enterprise,
        product=product,
        spec="500g",
        count=5,
        out_dir=tmp_path / name,
        base_url=BASE_URL,
        formats=("csv",),
        certificate=certificate,
    )
    result = issue.issue_batch(
        location,
        request,
        world["private"],
        world["kid"],
        now=now,
        clock=lambda: now,
        random_bytes=seeded_random_bytes(f"certificates-{name}"),
    )
    with open(tmp_path / name / "codes.csv", encoding="utf-8", newline="") as fh:
        return result.batch_id, list(issue.read_codes_csv(fh))


@pytest.fixture
def certified(world, db_copy, tmp_path):
    """ZJWD-2026-0001 grants 华茶集团 the stable-qualified mark for 绿茶 500g until 2099; its
    quality commitment is published; 5 codes are issued under the certificate."""
    grant(db_copy)
    run(
        db_copy,
        lambda conn: certificates.publish_commitment(conn, "华茶集团", COMMITMENT, COMMITMENT_URL, actor="qa", now=NOW),
    )
    batch_id, rows = issue_batch(world, db_copy, tmp_path, "certified", certificate=NUMBER)
    return {"db": db_copy, "batch": batch_id, "rows": rows}


def path_of(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def page(app, url, lang="zh"):
    response = app.test_client().get(path_of(url), headers={"Accept-Language": lang})
    assert response.status_code == 200
    return response.get_data(as_text=True)


def api(app, url):
    return app.test_client().get("/api/v1/verify", query_string={"code": url}).get_json()


# --- what consumers see -------------------------------------------------------------------


def test_a_genuine_page_shows_the_certificate_its_validity_and_the_commitment(certified, make_app):
    app = make_app(DATABASE=str(certified["db"]))
    zh = page(app, certified["rows"][0]["url"])
    assert 'data-reason="genuine"' in zh
    assert "证书编号" in zh and NUMBER in zh
    assert "2026年1月1日 至 2099年12月31日" in zh
    assert "企业质量诚信承诺" in zh and COMMITMENT in zh and f'href="{COMMITMENT_URL}"' in zh
    en = page(app, certified["rows"][1]["url"], "en")
    assert "Certificate no." in en and NUMBER in en and "The producer&#39;s quality commitment" in en
    answer = api(app, certified["rows"][2]["url"])
    assert answer["product"]["certificate"] == {"number": NUMBER, "valid_until": "2099-12-31", "status": "valid"}
    assert answer["product"]["commitment"] == {"text": COMMITMENT, "url": COMMITMENT_URL}


def test_suspending_the_certificate_turns_its_codes_to_mark_suspended_and_reinstating_back(certified, make_app):
    app = make_app(DATABASE=str(certified["db"]))
    url = certified["rows"][0]["url"]
    change(certified["db"], NUMBER, certificates.SUSPENDED, "failed the 2026 spot check")
    zh = page(app, url)
    assert 'data-reason="mark-suspended"' in zh and 'class="verdict warn"' in zh
    assert "此产品的标志使用资格已暂停" in zh and "证书编号" in zh and NUMBER in zh and "已暂停" in zh
    assert COMMITMENT not in zh  # the commitment is for genuine pages
    assert "The right to use this mark is suspended" in page(app, url, "en")
    answer = api(app, url)
    assert (answer["reason"], answer["tone"], answer["detail"], answer["genuine"]) == (
        "mark-suspended",
        "warn",
        NUMBER,
        False,
    )
    assert answer["product"]["certificate"]["status"] == "suspended"
    change(certified["db"], NUMBER, certificates.VALID)
    assert api(app, url)["reason"] in ("genuine", "genuine-repeat")
    assert api(app, certified["rows"][1]["url"])["reason"] == "genuine"


def test_a_revoked_certificate_stays_revoked(certified, make_app):
    change(certified["db"], NUMBER, certificates.REVOKED, "left the scheme")
    with pytest.raises(certificates.CertificateConflict, match="revoked"):
        change(certified["db"], NUMBER, certificates.VALID)
    answer = api(make_app(DATABASE=str(certified["db"])), certified["rows"][0]["url"])
    assert (answer["reason"], answer["product"]["certificate"]["status"]) == ("mark-suspended", "revoked")


def test_a_recall_outweighs_a_suspended_mark(certified, make_app):
    change(certified["db"], NUMBER, certificates.SUSPENDED, "spot check")
    conn = db.connect(certified["db"])
    issue.recall_batch(conn, certified["batch"], "contaminated", NOW)
    conn.close()
    assert api(make_app(DATABASE=str(certified["db"])), certified["rows"][0]["url"])["reason"] == "recalled"


@pytest.mark.parametrize(
    ("moment", "reason"),
    [
        ("2026-12-31T15:59:00+00:00", "genuine"),  # 23:59 on the last day, China time
        ("2026-12-31T16:00:00+00:00", "mark-suspended"),  # midnight in China: the day after
        ("2027-03-01T08:00:00+00:00", "mark-suspended"),
    ],
    ids=["last-day", "next-day-in-china", "months-later"],
)
def test_a_certificate_past_its_last_day_in_china_is_expired(world, db_copy, tmp_path, moment, reason):
    grant(db_copy, until=dt.date(2026, 12, 31))
    _, rows = issue_batch(world, db_copy, tmp_path, "expiring", certificate=NUMBER)
    settings = lookup.Settings({}, (BASE_URL,), pin_secret=PIN_SECRET)
    anyone = clients.Client(None, None, clients.Region(), "", None, "x")
    now = dt.datetime.fromisoformat(moment)
    verdict = run(db_copy, lambda conn: lookup.record_typed(conn, rows[0]["code"], None, settings, anyone, "api", now))
    assert verdict.reason == reason
    status = verdict.public()["product"]["certificate"]["status"]  # type: ignore[index]
    assert status == ("valid" if reason == "genuine" else "expired")


# --- issuing under a certificate ----------------------------------------------------------


def test_a_mark_nobody_certifies_issues_as_before(world, db_copy, tmp_path):
    grant(db_copy)  # stable-qualified uses certificates; traceability does not
    batch_id, _ = issue_batch(world, db_copy, tmp_path, "plain", mark=TR)
    assert query(db_copy, "SELECT certificate_id FROM batches WHERE id = ?", (batch_id,)) == [(None,)]


def test_before_any_certificate_a_mark_needs_none(world, db_copy, tmp_path):
    batch_id, _ = issue_batch(world, db_copy, tmp_path, "before")
    assert query(db_copy, "SELECT certificate_id FROM batches WHERE id = ?", (batch_id,)) == [(None,)]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("none", "mark stable-qualified is granted by certificate"),
        ("unknown", "no certificate NOPE-1"),
        ("other-enterprise", "was granted to Other Co, not this enterprise"),
        ("other-mark", "grants mark traceability, not stable-qualified"),
        ("other-product", "does not cover this product"),
        ("suspended", "is suspended (spot check)"),
        ("expired", "is valid from 2026-01-01 until 2026-06-30, not on 2026-11-25"),
    ],
)
def test_issuing_without_a_valid_certificate_of_its_own_is_refused(world, db_copy, tmp_path, case, message):
    grant(db_copy)
    grant(db_copy, "OTHER-1", enterprise="Other Co", products=None)
    grant(db_copy, "TRACE-1", mark=TR, products=None)
    grant(db_copy, "OLD-1", until=dt.date(2026, 6, 30))
    number = {
        "none": None,
        "unknown": "NOPE-1",
        "other-enterprise": "OTHER-1",
        "other-mark": "TRACE-1",
        "other-product": NUMBER,
        "suspended": NUMBER,
        "expired": "OLD-1",
    }[case]
    if case == "suspended":
        change(db_copy, NUMBER, certificates.SUSPENDED, "spot check")
    batches_before = query(db_copy, "SELECT count(*) FROM batches")
    with pytest.raises(issue.IssueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        issue_batch(
            world, db_copy, tmp_path, case, certificate=number, product="红茶" if case == "other-product" else "绿茶"
        )
    assert query(db_copy, "SELECT count(*) FROM batches") == batches_before  # nothing registered


def test_a_certificate_for_all_products_covers_a_new_one(world, db_copy, tmp_path):
    grant(db_copy, "ALL-1", products=None)
    batch_id, _ = issue_batch(world, db_copy, tmp_path, "new-product", certificate="ALL-1", product="白茶")
    entry = _batch_entry(db_copy, batch_id)
    ((certificate_id,),) = query(db_copy, "SELECT id FROM certificates WHERE number = 'ALL-1'")
    assert (entry["certificate"], entry["certificate_id"]) == ("ALL-1", certificate_id)


def _batch_entry(location, batch_id):
    settle(location)
    for (body,) in query(location, "SELECT body FROM audit_log WHERE kind = 'batch.issued' ORDER BY seq"):
        found = json.loads(body)
        if found["id"] == batch_id:
            return found
    raise AssertionError(f"no batch.issued entry of batch {batch_id}")


# --- the log ------------------------------------------------------------------------------


def verified(location) -> auditlog.Report:
    settle(location)
    conn = db.connect(location)
    try:
        return auditlog.verify(conn)
    finally:
        conn.close()


def tamper(location, sql, params=()):
    conn = attacker(location)
    with db.transaction(conn):
        conn.execute(sql, params)
    conn.close()


def entry_seq(location, kind):
    settle(location)
    (seq,) = query(location, "SELECT max(seq) FROM audit_log WHERE kind = ?", (kind,))[0]
    return seq


@pytest.mark.parametrize(
    ("case", "sql", "kind", "what"),
    [
        (
            "status-restored",
            "UPDATE certificates SET status = 'valid', reason = NULL",
            "certificate.suspended",
            "certificate ZJWD-2026-0001's status is 'valid', the log says 'suspended'",
        ),
        (
            "validity-extended",
            "UPDATE certificates SET valid_until = '2199-12-31'",
            "certificate.granted",
            "certificate ZJWD-2026-0001's valid_until is '2199-12-31'",
        ),
        (
            "products-widened",
            "UPDATE certificates SET products = NULL",
            "certificate.granted",
            "certificate ZJWD-2026-0001's products is None",
        ),
        (
            "batch-moved",
            "UPDATE batches SET certificate_id = NULL WHERE certificate_id IS NOT NULL",
            "batch.issued",
            "'s certificate_id is None, the log says",
        ),
        (
            "commitment-edited",
            "UPDATE enterprises SET commitment = 'nothing to see' WHERE commitment IS NOT NULL",
            "enterprise.commitment",
            "quality commitment is not the one it published",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and " " not in v and len(v) < 24 else None,
)
def test_audit_verify_catches_an_edited_certificates_table(certified, case, sql, kind, what):
    change(certified["db"], NUMBER, certificates.SUSPENDED, "spot check")
    assert verified(certified["db"]).ok
    seq = entry_seq(certified["db"], kind)
    tamper(certified["db"], sql)
    report = verified(certified["db"])
    assert not report.ok
    found = [d for d in report.problems if what in d.what]
    assert found, report.problems
    assert found[0].seq == seq


def test_a_certificate_no_entry_granted_is_caught(certified):
    tamper(
        certified["db"],
        "INSERT INTO certificates (number, association, enterprise_id, mark, valid_from, valid_until, status, "
        "granted_at, granted_by) SELECT 'FAKE-1', 'nobody', enterprise_id, mark, valid_from, valid_until, 'valid', "
        "granted_at, granted_by FROM certificates",
    )
    report = verified(certified["db"])
    assert any(d.seq == 0 and "FAKE-1 was never granted" in d.what for d in report.problems)


# --- the command line ---------------------------------------------------------------------


@pytest.fixture
def terminal(world, db_copy, instance, runner, monkeypatch):
    for name, value in database_env(db_copy).items():
        monkeypatch.setenv(name, value)

    def invoke(*args):
        return runner.invoke(cli, list(args))

    return invoke


def test_the_association_grants_lists_suspends_reinstates_and_revokes_from_the_terminal(terminal):
    granted = terminal(
        "certificates",
        "grant",
        "--enterprise",
        "华茶集团",
        "--mark",
        "stable-qualified",
        "--number",
        NUMBER,
        "--until",
        "2099-12-31",
        "--product",
        "绿茶",
    )
    assert granted.exit_code == 0, granted.output
    assert f"Granted certificate {NUMBER}" in granted.output
    listed = json.loads(terminal("certificates", "list", "--json").output)
    assert [(c["number"], c["status"], c["product_names"]) for c in listed] == [(NUMBER, "valid", ["绿茶 500g"])]
    assert terminal("certificates", "suspend", NUMBER, "--reason", "spot check").exit_code == 0
    assert "suspended (spot check)" in terminal("certificates", "list").output
    assert terminal("certificates", "reinstate", NUMBER).exit_code == 0
    assert terminal("certificates", "revoke", NUMBER, "--reason", "left").exit_code == 0
    assert json.loads(terminal("certificates", "list", "--json").output)[0]["status"] == "revoked"
    published = terminal(
        "enterprises", "commitment", "--enterprise", "华茶集团", "--text", COMMITMENT, "--url", COMMITMENT_URL
    )
    assert published.exit_code == 0, published.output


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (("certificates", "suspend", "NOPE-1", "--reason", "x"), 1, "Error: no certificate NOPE-1"),
        (("certificates", "reinstate", NUMBER), 1, f"Error: certificate {NUMBER} is valid already"),
        (
            (
                "certificates",
                "grant",
                "--enterprise",
                "华茶集团",
                "--mark",
                "gold",
                "--number",
                "X-1",
                "--until",
                "2030-01-01",
            ),
            2,
            "Error: --mark is one of",
        ),
        (
            (
                "certificates",
                "grant",
                "--enterprise",
                "华茶集团",
                "--mark",
                "traceability",
                "--number",
                NUMBER,
                "--until",
                "2030-01-01",
            ),
            1,
            f"Error: certificate {NUMBER} exists already",
        ),
        (
            (
                "certificates",
                "grant",
                "--enterprise",
                "华茶集团",
                "--mark",
                "traceability",
                "--number",
                "bad number",
                "--until",
                "2030-01-01",
            ),
            2,
            "Error: a certificate number is",
        ),
        (
            (
                "certificates",
                "grant",
                "--enterprise",
                "华茶集团",
                "--mark",
                "traceability",
                "--number",
                "Y-1",
                "--from",
                "2030-01-02",
                "--until",
                "2030-01-01",
            ),
            2,
            "Error: the certificate would end",
        ),
        (("enterprises", "commitment", "--enterprise", "Nobody", "--text", "x"), 2, "Error: no enterprise 'Nobody'"),
        (
            ("enterprises", "commitment", "--enterprise", "华茶集团", "--text", "x", "--url", "javascript:alert(1)"),
            2,
            "Error: the commitment's URL",
        ),
        (
            (
                "batch",
                "issue",
                "--key",
                "dev",
                "--mark",
                "stable-qualified",
                "--enterprise",
                "华茶集团",
                "--product",
                "绿茶",
                "--spec",
                "500g",
                "--count",
                "1",
                "--format",
                "csv",
                "--out",
                "OUT",
            ),
            1,
            "Error: mark stable-qualified is granted by certificate",
        ),
    ],
    ids=[
        "unknown",
        "already-valid",
        "bad-mark",
        "number-taken",
        "bad-number",
        "ends-before-it-begins",
        "no-enterprise",
        "bad-url",
        "issue-without",
    ],
)
def test_the_cli_says_what_is_wrong_in_one_line(
    terminal, world, db_copy, tmp_path, monkeypatch, args, exit_code, message
):
    grant(db_copy)
    monkeypatch.setenv("VERIFIER_KEYS", str(world["keys_dir"]))
    monkeypatch.setenv("VERIFIER_KEY_PASSPHRASE", "pw")
    result = terminal(*[str(tmp_path / "out") if a == "OUT" else a for a in args])
    lines = result.output.strip().splitlines()
    assert (result.exit_code, len(lines)) == (exit_code, 1), result.output
    assert lines[0].startswith(message), lines[0]
