"""Enterprises see the counterfeits of their own products, where the code says so.

A forged, unknown-key or unknown-batch code still decodes: its scan records what it claims (the
batch number of a compact code, the GTIN of a GS1 code, the mark). An enterprise's account then
sees, in its scan lists, batch statistics and counterfeit clusters, the scans claiming its batches
or its products' GTINs, and never another enterprise's. A mark alone is claimed of nobody.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from conftest import BASE_URL, forged_url, log_in, log_trust_for_tests, settle
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_audit_api import call

from verifier import auditlog, codes, db, keys

NOW = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def scan(aw, url: str) -> None:
    assert aw["app"].test_client().get(path_of(url)).status_code == 200


def stranger_url(batch: int, serial: int = 1234567890123456, mark: codes.Mark = codes.MARKS[0]) -> str:
    """A compact code signed by a key nobody trusts, claiming batch `batch`."""
    private = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    kid = keys.kid_for(private.public_key().public_bytes_raw())
    return codes.compact_signer(private, kid, mark, batch, BASE_URL)(serial)


def scans_seen(aw, who: str, **params) -> list[dict]:
    response = call(aw, who, "GET", "/api/v1/audit/scans", query_string=params)
    assert response.status_code == 200
    return response.get_json()["scans"]


def not_genuine(aw, who: str, **params) -> list[dict]:
    return [s for s in scans_seen(aw, who, **params) if s["batch_id"] is None]


def verified(aw) -> auditlog.Report:
    database = aw["app"].config["DATABASE"]
    settle(database)
    conn = db.connect(database)
    try:
        return auditlog.verify(conn, log_trust_for_tests())
    finally:
        conn.close()


# --- what a scan records -----------------------------------------------------------------------


def test_a_forged_compact_code_records_the_batch_and_mark_it_claims(audit_world):
    batch, rows = audit_world["mine"]
    scan(audit_world, forged_url(rows[0]["url"]))
    (seen,) = not_genuine(audit_world, "ian", reason="bad-signature")
    assert (seen["claimed_batch"], seen["claimed_gtin"], seen["claimed_mark"]) == (batch, None, "stable-qualified")
    assert seen["serial"] == int(rows[0]["serial"])


def test_a_genuine_scan_claims_nothing_its_batch_does_not_say(audit_world):
    batch, rows = audit_world["mine"]
    scan(audit_world, rows[1]["url"])
    (seen,) = [s for s in scans_seen(audit_world, "ian") if s["serial"] == int(rows[1]["serial"])]
    assert seen["batch_id"] == batch
    assert (seen["claimed_batch"], seen["claimed_gtin"], seen["claimed_mark"]) == (None, None, None)


# --- who sees it -------------------------------------------------------------------------------


def test_a_forgery_claiming_its_batch_is_seen_by_that_enterprise_only(audit_world):
    batch, rows = audit_world["mine"]
    scan(audit_world, forged_url(rows[0]["url"]))
    assert [s["claimed_batch"] for s in not_genuine(audit_world, "eve")] == [batch]
    assert not_genuine(audit_world, "oscar") == []
    assert [s["reason"] for s in not_genuine(audit_world, "eve", batch=batch)] == ["bad-signature"]


def test_the_other_enterprise_sees_forgeries_of_its_own_batch_and_not_of_this_one(audit_world):
    their_batch, their_rows = audit_world["theirs"]
    scan(audit_world, forged_url(their_rows[0]["url"]))
    assert [s["claimed_batch"] for s in not_genuine(audit_world, "oscar")] == [their_batch]
    assert not_genuine(audit_world, "eve") == []


def test_filtering_by_another_enterprises_batch_shows_nothing_of_it(audit_world):
    their_batch, their_rows = audit_world["theirs"]
    scan(audit_world, forged_url(their_rows[0]["url"]))
    assert len(scans_seen(audit_world, "oscar", batch=their_batch)) == 3  # two genuine scans and the forgery
    assert scans_seen(audit_world, "eve", batch=their_batch) == []  # read from the claims alone
    assert scans_seen(audit_world, "eve", batch=999_999) == []  # no such batch


def test_a_gs1_forgery_claiming_its_gtin_is_seen_by_that_enterprise_only(audit_world, world):
    gs1_batch, rows = world["gs1"]
    scan(audit_world, forged_url(rows[0]["url"]))
    (seen,) = not_genuine(audit_world, "eve")
    assert (seen["claimed_gtin"], seen["claimed_batch"], seen["claimed_mark"]) == (
        "09506000134352",
        None,
        "anti-counterfeit",
    )
    assert not_genuine(audit_world, "oscar") == []
    assert [s["claimed_gtin"] for s in not_genuine(audit_world, "eve", batch=gs1_batch)] == ["09506000134352"]


def test_an_unknown_key_code_claiming_its_batch_is_seen_by_that_enterprise_only(audit_world):
    batch, _ = audit_world["mine"]
    scan(audit_world, stranger_url(batch))
    (seen,) = not_genuine(audit_world, "eve")
    assert (seen["reason"], seen["claimed_batch"]) == ("unknown-key", batch)
    assert not_genuine(audit_world, "oscar") == []


def test_a_code_claiming_no_registered_batch_is_nobodys_whatever_its_mark(audit_world):
    scan(audit_world, stranger_url(999_999, mark=codes.MARKS[0]))  # the mark both enterprises' batches use
    assert not_genuine(audit_world, "eve") == [] and not_genuine(audit_world, "oscar") == []
    (seen,) = not_genuine(audit_world, "ian")  # inspectors see every scan
    assert (seen["claimed_batch"], seen["claimed_mark"]) == (999_999, "stable-qualified")


def test_an_enterprise_filter_of_an_inspector_includes_the_scans_claiming_its_batches(audit_world):
    scan(audit_world, forged_url(audit_world["mine"][1][0]["url"]))
    assert len(not_genuine(audit_world, "ian", enterprise="华茶集团")) == 1
    assert not_genuine(audit_world, "ian", enterprise="Other Co") == []


def test_the_csv_export_and_the_ui_list_include_them_too(audit_world):
    batch, rows = audit_world["mine"]
    scan(audit_world, forged_url(rows[0]["url"]))
    mine = call(audit_world, "eve", "GET", "/api/v1/audit/scans.csv").get_data(as_text=True)
    theirs = call(audit_world, "oscar", "GET", "/api/v1/audit/scans.csv").get_data(as_text=True)
    assert "bad-signature" in mine and "bad-signature" not in theirs
    browser = audit_world["app"].test_client()
    log_in(browser, "eve")
    page = browser.get("/audit/").get_data(as_text=True)  # the inspector UI's words, in Chinese
    assert "签名无效（伪造）" in page and "所称批次" in page


def test_an_enterprise_sees_only_the_minimised_fields_of_those_scans(audit_world):
    scan(audit_world, forged_url(audit_world["mine"][1][0]["url"]))
    (seen,) = not_genuine(audit_world, "eve")
    assert not {"ip_prefix", "ip_hash", "session_hash", "user_agent"} & set(seen)


# --- statistics and anomalies ------------------------------------------------------------------


def test_the_batch_statistics_count_the_forgeries_claiming_the_batch(audit_world):
    batch, rows = audit_world["mine"]
    scan(audit_world, forged_url(rows[0]["url"]))
    scan(audit_world, stranger_url(batch))
    verdicts = call(audit_world, "eve", "GET", f"/api/v1/audit/batches/{batch}").get_json()["verdicts"]
    assert verdicts["bad-signature"] == 1 and verdicts["unknown-key"] == 1
    their_batch = audit_world["theirs"][0]
    theirs = call(audit_world, "oscar", "GET", f"/api/v1/audit/batches/{their_batch}").get_json()["verdicts"]
    assert "bad-signature" not in theirs and "unknown-key" not in theirs


def clusters(aw, who: str) -> list[dict]:
    found = call(aw, who, "GET", "/api/v1/audit/anomalies").get_json()["anomalies"]
    return [a for a in found if a["rule"] == "counterfeit-cluster"]


def test_a_counterfeit_cluster_claiming_its_products_is_that_enterprises(audit_world):
    batch, rows = audit_world["mine"]
    for bit in range(3):
        scan(audit_world, forged_url(rows[bit]["url"], bit=bit))
    (cluster,) = clusters(audit_world, "eve")
    assert cluster["count"] == 3
    assert clusters(audit_world, "oscar") == []
    assert [c["count"] for c in clusters(audit_world, "ian")] == [3]


def test_an_enterprise_cluster_counts_only_its_own_claims(audit_world):
    _, rows = audit_world["mine"]
    _, their_rows = audit_world["theirs"]
    for bit in range(2):
        scan(audit_world, forged_url(rows[bit]["url"], bit=bit))
    scan(audit_world, forged_url(their_rows[0]["url"]))
    assert clusters(audit_world, "eve") == [] and clusters(audit_world, "oscar") == []
    assert [c["count"] for c in clusters(audit_world, "ian")] == [3]  # the inspector's region sees all three


# --- the log -----------------------------------------------------------------------------------


def test_audit_verify_passes_with_claiming_scans_and_their_entries_record_the_claims(audit_world, world):
    batch, rows = audit_world["mine"]
    scan(audit_world, forged_url(rows[0]["url"]))
    scan(audit_world, forged_url(world["gs1"][1][0]["url"]))
    scan(audit_world, stranger_url(batch))
    scan(audit_world, rows[1]["url"])
    report = verified(audit_world)
    assert report.ok, report.problems
    conn = db.connect(audit_world["app"].config["DATABASE"])
    try:
        bodies = [json.loads(b) for (b,) in conn.execute("SELECT body FROM audit_log WHERE kind = 'scan'").fetchall()]
    finally:
        conn.close()
    claims = [{k: v for k, v in b.items() if k.startswith("claimed_")} for b in bodies if b["batch_id"] is None]
    assert claims == [
        {"claimed_batch": batch, "claimed_mark": "stable-qualified"},
        {"claimed_gtin": "09506000134352", "claimed_mark": "anti-counterfeit"},
        {"claimed_batch": batch, "claimed_mark": "stable-qualified"},
    ]
    genuine = [b for b in bodies if b["batch_id"] is not None]
    assert genuine and not any(k.startswith("claimed_") for b in genuine for k in b)  # as entries before claims


def test_a_claim_changed_in_the_table_is_refused_and_a_bypass_is_caught(audit_world):
    scan(audit_world, forged_url(audit_world["mine"][1][0]["url"]))
    database = audit_world["app"].config["DATABASE"]
    settle(database)
    conn = db.connect(database)
    try:
        with pytest.raises(Exception, match="personal fields erased"):
            with db.transaction(conn):
                conn.execute("UPDATE scans SET claimed_batch = ? WHERE claimed_batch IS NOT NULL", (424242,))
        with db.transaction(conn):  # an attacker with the database's owner rights: the rule dropped
            if db.is_postgres_conn(conn):
                conn.execute("ALTER TABLE scans DISABLE TRIGGER scans_only_purge")
            else:
                conn.execute("DROP TRIGGER scans_only_purge")
            conn.execute("UPDATE scans SET claimed_batch = ? WHERE claimed_batch IS NOT NULL", (424242,))
        report = auditlog.verify(conn, log_trust_for_tests())
    finally:
        conn.close()
    assert not report.ok
    assert any("differs from its log entry" in p.what for p in report.problems), report.problems
