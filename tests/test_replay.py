"""The replay's own rules: what the entries record, what is not tampering (a batch being issued, an
entry still pending, a retired scan), and the commitment to a batch's serials."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
from conftest import settle

from verifier import audit, auditlog, clock, db, replay
from verifier.repos import registry

NOW = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)


def query(location, sql, params=()):
    conn = db.connect(location)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def report(location) -> auditlog.Report:
    conn = db.connect(location)
    try:
        return auditlog.verify(conn)
    finally:
        conn.close()


# --- the commitment to a batch's serials ------------------------------------------------------

SERIALS = {
    "none": [],
    "one": [1],
    "three": [7, 4_000_000_000, 9_999_999_999_999_999],
    "a long run": list(range(10, 30_000, 3)),
}


@pytest.mark.parametrize("serials", SERIALS.values(), ids=SERIALS.keys())
def test_serials_sha256_is_sha256_of_8_byte_big_endian_serials_in_order(serials):
    expected = hashlib.sha256(b"".join(s.to_bytes(8, "big") for s in serials)).hexdigest()
    assert replay.serials_sha256(serials) == expected
    halves = [serials[::2], serials[1::2]]  # two sorted runs, as a batch registers them
    assert replay.merged_serials_sha256(halves) == expected


def test_batch_issued_records_what_a_verdict_shows_and_its_exact_serials(world):
    batch_id, rows = world["pin"]
    (body,) = [
        json.loads(b)
        for (b,) in query(world["db"], "SELECT body FROM audit_log WHERE kind = 'batch.issued'")
        if json.loads(b)["id"] == batch_id
    ]
    serials = sorted(int(r["serial"]) for r in rows)
    assert body["serials_sha256"] == replay.serials_sha256(serials)
    assert body["count"] == len(serials) == 40
    facts = {k: v for k, v in body.items() if k != "serials_sha256"}
    assert facts == {
        "id": batch_id,
        "enterprise_id": facts["enterprise_id"],
        "enterprise": "华茶集团",
        "credit_code": None,
        "product_id": facts["product_id"],
        "product": "绿茶",
        "spec": "500g",
        "product_gtin": None,
        "mark": "stable-qualified",
        "form": "compact",
        "lot": "L2026-11",
        "gtin": None,
        "production_date": "2026-11-01",
        "expiry_date": "2030-10-31",
        "count": 40,
        "kid": world["kid"].hex(),
        "base_url": "HTTPS://VERIFY.EXAMPLE.CN/",
        "pin": 1,
        "created_by": facts["created_by"],
        "unit": "item",
        "activation": "issue",
        "production_place": None,
    }
    assert isinstance(facts["enterprise_id"], int) and isinstance(facts["product_id"], int)


def test_the_registry_reads_back_the_logged_commitment(world):
    """What recovery logs for a batch whose issuer died (serials read back from the registry) is
    what the issuer would have logged."""
    conn = db.connect(world["db"])
    try:
        for batch_id, _ in (world["pin"], world["gs1"]):
            (body,) = [
                json.loads(b)
                for (b,) in conn.execute("SELECT body FROM audit_log WHERE kind = 'batch.issued'").fetchall()
                if json.loads(b)["id"] == batch_id
            ]
            assert replay.serials_sha256(registry.batch_serials(conn, batch_id)) == body["serials_sha256"]
    finally:
        conn.close()


# --- the bodies of account entries --------------------------------------------------------------


def test_account_entries_commit_to_the_stored_hashes(audit_world, db_copy):
    settle(db_copy)
    added = {
        json.loads(b)["user"]: json.loads(b)
        for (b,) in query(db_copy, "SELECT body FROM audit_log WHERE kind = 'user.added'")
    }
    for user_id, name, password_hash in query(db_copy, "SELECT id, username, password_hash FROM users"):
        assert added[name]["user_id"] == user_id
        assert added[name]["password_sha256"] == hashlib.sha256(password_hash.encode()).hexdigest()
    issued = {
        json.loads(b)["token_id"]: json.loads(b)
        for (b,) in query(db_copy, "SELECT body FROM audit_log WHERE kind = 'token.issued'")
    }
    for token_id, user_id, token_hash in query(db_copy, "SELECT id, user_id, token_hash FROM api_tokens"):
        assert issued[token_id]["user_id"] == user_id
        assert issued[token_id]["token_sha256"] == hashlib.sha256(token_hash.encode()).hexdigest()
    for (body,) in query(db_copy, "SELECT body FROM audit_log WHERE kind IN ('user.added', 'token.issued')"):
        assert "password_hash" not in body and "token_hash" not in body  # commitments only


# --- what is not tampering ----------------------------------------------------------------------


def test_a_batch_being_issued_has_no_entry_yet_and_is_not_tampering(world, db_copy):
    conn = db.connect(db_copy)
    with db.transaction(conn):
        row = registry.batch_row(conn, world["pin"][0])
        fields = {k: row[k] for k in ("enterprise_id", "product_id", "mark", "form", "kid", "base_url", "created_by")}
        batch_id = registry.insert_batch(conn, {**fields, "count": 2, "status": registry.BATCH_ISSUING}, NOW)
        registry.insert_codes(conn, batch_id, [11, 12])
    conn.close()
    assert report(db_copy).ok, report(db_copy).problems


def test_entries_not_chained_yet_are_facts_already(world, db_copy):
    """PostgreSQL: a recall committed with its entry queued for the sequencer verifies (the entry
    is pending), and so does a report; SQLite chains them at once."""
    conn = db.connect(db_copy)
    audit.recall(conn, world["pin"][0], "mislabelled", "test", NOW)
    with db.transaction(conn):
        audit.report_code(conn, int(world["pin"][1][0]["serial"]), "seen on fakes", "ian", NOW)
    conn.close()
    result = report(db_copy)
    assert result.ok, result.problems


def test_a_second_report_of_a_code_leaves_the_first_standing(world, db_copy):
    conn = db.connect(db_copy)
    serial = int(world["pin"][1][0]["serial"])
    for note in ("first", "second"):
        with db.transaction(conn):
            audit.report_code(conn, serial, note, "ian", NOW)
    settle(conn)
    conn.close()
    bodies = [json.loads(b) for (b,) in query(db_copy, "SELECT body FROM audit_log WHERE kind = 'code.reported'")]
    assert [(b["note"], b["first"]) for b in bodies] == [("first", True), ("second", False)]
    assert report(db_copy).ok


def test_a_purge_logged_before_it_recorded_its_bound_covers_every_scan(world, db_copy, make_app):
    """Entries of purges written before `through_id` existed: the cutoff alone decides."""
    app = make_app()
    app.test_client().get("/" + world["gs1"][1][0]["url"].split("/", 3)[3])
    conn = db.connect(db_copy)
    with db.transaction(conn):
        auditlog.append(
            conn,
            "audit.purged",
            {"older_than": "2999-01-01T00:00:00.000+00:00", "scans": 1},
            "2026-11-22T00:00:00.000+00:00",
        )
    settle(conn)
    conn.close()
    attacker = db.connect(db_copy)
    if db.is_postgres_conn(attacker):
        attacker.execute("SET session_replication_role = replica")
    else:
        attacker.execute("DROP TRIGGER scans_only_purge")
    attacker.execute(
        "UPDATE scans SET ip_prefix = NULL, ip_hash = NULL, region = NULL, city = NULL, user_agent = NULL, "
        "session_hash = NULL, personal_salt = NULL"
    )
    attacker.close()
    assert report(db_copy).ok


def test_scan_entries_are_never_parsed_by_the_replay():
    replayed = replay.Replay()
    replayed.feed(1, "2026-11-22T00:00:00.000+00:00", "scan", "", "not JSON at all")
    replayed.feed(2, "2026-11-22T00:00:00.000+00:00", "user.added", "", "[]")
    assert replayed.state.scans == 1
    assert replayed.state.unreadable == [replay.Disagreement(2, "user.added entry's body is not a JSON object")]


@pytest.mark.postgres_only("scans are retired with PostgreSQL's partitions")
def test_a_partly_retired_codes_count_is_still_compared_with_its_last_scan(world, db_copy, make_app):
    app = make_app()
    path = "/" + world["pin"][1][20]["url"].split("/", 3)[3]
    for _ in range(3):
        app.test_client().get(path)
    settle(db_copy)
    serial = int(world["pin"][1][20]["serial"])
    ids = [r[0] for r in query(db_copy, "SELECT id FROM scans WHERE serial = ? ORDER BY id", (serial,))]
    conn = db.connect(db_copy)
    with db.transaction(conn):
        audit.retire(conn, ids[1], clock.now(), "test")  # the code's first scan is retired...
    settle(conn)
    conn.execute("SET session_replication_role = replica")
    conn.execute("DELETE FROM scans WHERE id < ?", (ids[1],))  # ...and its partition dropped
    assert report(db_copy).ok, report(db_copy).problems
    conn.execute("UPDATE code_checks SET checks = 1 WHERE serial = ?", (serial,))
    (last,) = query(db_copy, "SELECT seq FROM audit_log WHERE scan_id = ?", (ids[-1],))[0]
    result = report(db_copy)
    assert any(p.seq == last and "code_checks" in p.what for p in result.problems), result.problems
    conn.close()


def test_checks_that_count_in_another_order_than_their_times_are_not_tampering(world, db_copy):
    """A scan's time is its request's, read before it waits for the code's lock: two checks a
    millisecond apart can count in the other order. The first and last check are the scans that
    made the lowest and highest count, whatever their times (found by the kill -9 test under load)."""
    from conftest import BASE_URL, PIN_SECRET

    from verifier import clients, lookup

    settings = lookup.Settings({}, (BASE_URL,), pin_secret=PIN_SECRET)
    anyone = clients.Client(None, None, clients.Region(), "", None, "x")
    row, t0 = world["pin"][1][38], dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.UTC)
    conn = db.connect(db_copy)
    try:
        counts = []
        for ms in (5, 3, 9, 7):  # each waited for the one before: later times counted first
            with db.transaction(conn):
                verdict = lookup.record_typed(
                    conn,
                    row["code"],
                    row["pin"] if not counts else None,
                    settings,
                    anyone,
                    "api",
                    t0 + dt.timedelta(milliseconds=ms),
                )
            counts.append(verdict.checks)
        assert counts == [1, 2, 3, 4]
        settle(conn)
        report = auditlog.verify(conn)
        assert report.ok, report.problems
        first, last = conn.execute(
            "SELECT first_checked_at, last_checked_at FROM code_checks WHERE serial = ?", (int(row["serial"]),)
        ).fetchone()
        assert (first, last) == (
            clock.utc_text(t0 + dt.timedelta(milliseconds=5)),
            clock.utc_text(t0 + dt.timedelta(milliseconds=7)),
        )
    finally:
        conn.close()
