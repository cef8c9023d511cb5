"""Anomaly rules on a scan log made by real lookups."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from conftest import database_env, forged_url, log_in
from test_auditlog import attacker, query

from verifier import db
from verifier.cli import cli


@pytest.fixture
def lookups(db_copy, make_app, monkeypatch):
    for name, value in database_env(db_copy).items():
        monkeypatch.setenv(name, value)
    app = make_app(TRUST_GEO_HEADERS=True, TRUSTED_PROXIES=1)

    def scan(url, region="Guangdong", country="CN"):
        return app.test_client().get(
            "/" + url.split("/", 3)[3], headers={"X-Geo-Country": country, "X-Geo-Region": region}
        )

    def typed(code, pin, ip="127.0.0.1"):
        return app.test_client().post("/check", data={"code": code, "pin": pin}, environ_base={"REMOTE_ADDR": ip})

    return scan, typed


def anomalies(runner, *args):
    result = runner.invoke(cli, ["audit", "anomalies", "--json", *args])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_each_rule_fires_on_its_pattern(lookups, world, runner):
    scan, typed = lookups
    clone = world["pin"][1][0]["url"]
    for _ in range(6):  # six phones: repeat checks and many sessions
        scan(clone)
    traveller = world["pin"][1][1]["url"]
    scan(traveller, region="Guangdong")
    scan(traveller, region="Heilongjiang")
    forged = forged_url(clone)  # a flipped signature bit: always bad-signature, never malformed
    for _ in range(3):
        scan(forged, region="Yunnan")
    scan(world["recalled"][1][0]["url"])
    row = world["pin"][1][2]
    typed(row["code"], row["pin"])
    typed(row["code"], row["pin"])
    found = anomalies(runner)
    rules = {(a["rule"], a["subject"]) for a in found}
    serial = world["pin"][1][0]["serial"]
    assert ("repeat-checks", f"code {serial}") in rules and ("many-sessions", f"code {serial}") in rules
    assert any(r == "distant-regions" and "CN/Guangdong -> CN/Heilongjiang" in s for r, s in rules)
    assert any(r == "counterfeit-cluster" and s.startswith("CN/Yunnan") for r, s in rules)
    assert ("scan-after-recall", f"batch {world['recalled'][0]}") in rules
    assert ("pin-reused", f"code {row['serial']}") in rules
    assert all(a["evidence"] for a in found)


def test_thresholds_are_configurable_and_quiet_logs_are_quiet(lookups, world, runner):
    scan, _ = lookups
    for _ in range(3):
        scan(world["pin"][1][3]["url"])
    assert anomalies(runner) == []
    assert [a["rule"] for a in anomalies(runner, "--repeat-checks", "2")] == ["repeat-checks"]
    text = runner.invoke(cli, ["audit", "anomalies"]).stdout
    assert text.startswith("No anomalies since")


def test_report_code_cli(lookups, world, runner, db_copy):
    row = world["pin"][1][5]
    result = runner.invoke(cli, ["audit", "report-code", row["code"], "--note", "market stall"])
    assert result.exit_code == 0 and row["serial"] in result.stdout
    bad = runner.invoke(cli, ["audit", "report-code", "12"])
    assert bad.exit_code == 2 and bad.stderr.startswith("Error: a code is a printed code")
    assert query(db_copy, "SELECT note FROM reported_codes WHERE serial = ?", (int(row["serial"]),)) == [
        ("market stall",)
    ]


def test_forged_code_in_the_fixture_is_a_bad_signature_not_malformed(lookups, world, db_copy):
    scan, _ = lookups
    for bit in range(0, 512, 37):  # whichever bit is flipped, the verdict is the same
        scan(forged_url(world["pin"][1][0]["url"], bit))
    reasons = {r for (r,) in query(db_copy, "SELECT reason FROM scans")}
    assert reasons == {"bad-signature"}


# --- pin-guessing -----------------------------------------------------------------------


def test_pin_guessing_fires_on_many_wrong_pins_from_several_clients(lookups, world, runner, db_copy):
    _, typed = lookups
    row = world["pin"][1][6]
    for i in range(5):
        assert typed(row["code"], "00000000", ip=f"198.51.100.{i % 3}").status_code == 200
    found = [a for a in anomalies(runner) if a["rule"] == "pin-guessing"]
    assert len(found) == 1 and found[0]["serial"] == int(row["serial"]) and found[0]["count"] == 5
    assert found[0]["subject"] == f"code {row['serial']}: 3 clients"
    ids = [i for (i,) in query(db_copy, "SELECT id FROM scans WHERE pin = 'mismatch' ORDER BY id")]
    assert found[0]["evidence"] == ids


def test_pin_guessing_counts_throttled_attempts(lookups, world, runner, db_copy):
    _, typed = lookups
    row = world["pin"][1][7]
    for i in range(2):
        typed(row["code"], "00000000", ip=f"198.51.100.{i}")
    conn = attacker(db_copy)  # stand-in for the throttle, which records pin = 'throttled'
    conn.execute("UPDATE scans SET pin = 'throttled' WHERE pin = 'mismatch'")
    conn.close()
    for i in range(3):
        typed(row["code"], "00000000", ip=f"198.51.100.{i}")
    found = [a for a in anomalies(runner) if a["rule"] == "pin-guessing"]
    assert [a["count"] for a in found] == [5]


def test_pin_guessing_is_quiet_for_one_client_or_few_guesses(lookups, world, runner):
    _, typed = lookups
    one, few = world["pin"][1][8], world["pin"][1][9]
    for _ in range(8):
        typed(one["code"], "00000000", ip="198.51.100.7")  # one client: the lookup's throttle handles it
    for i in range(4):
        typed(few["code"], "00000000", ip=f"198.51.100.{i}")
    assert [a for a in anomalies(runner) if a["rule"] == "pin-guessing"] == []
    tuned = anomalies(runner, "--pin-guesses", "4", "--pin-clients", "4")
    assert [(a["rule"], a["serial"]) for a in tuned if a["rule"] == "pin-guessing"] == [
        ("pin-guessing", int(few["serial"]))
    ]


def test_pin_guessing_in_the_api_and_the_ui(lookups, world, db_copy, make_app):
    from verifier import accounts, db

    _, typed = lookups
    row = world["pin"][1][10]
    for i in range(6):
        typed(row["code"], "11111111", ip=f"198.51.100.{i}")
    conn = db.connect(db_copy)
    now = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
    with db.transaction(conn):
        accounts.add_user(conn, "ian", "inspector", "correct horse battery", None, "test", now)
        token = accounts.issue_token(conn, "ian", "t", "test", now)[1]
    client = make_app().test_client()
    api = client.get("/api/v1/audit/anomalies?days=1", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert [a["serial"] for a in api["anomalies"] if a["rule"] == "pin-guessing"] == [int(row["serial"])]
    assert log_in(client, "ian").status_code == 302
    page = client.get("/audit/anomalies").get_data(as_text=True)
    assert "pin-guessing" in page and f"/audit/codes/{row['serial']}" in page


# --- query plans and the budget ------------------------------------------------------------

# Statistics of a generated 2,000,000-scan log (scripts/bench_audit.py): with them, SQLite prefers
# walking the serial index (no sort for GROUP BY serial) over the time index, whatever the window.
BIG_LOG_STATS = [
    ("scans", "scans_reason", "200257 33377 1"),
    ("scans", "scans_serial", "2000000 1 1"),
    ("scans", "scans_batch", "2000000 10000 1"),
    ("scans", "scans_at", "2000000 1"),
]


@pytest.fixture
def planner(db_copy):
    conn = db.connect(db_copy)
    conn.execute("ANALYZE")
    conn.execute("DELETE FROM sqlite_stat1 WHERE tbl = 'scans'")
    conn.executemany("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)", BIG_LOG_STATS)
    conn.close()
    conn = db.connect(db_copy)  # statistics are read when a connection opens
    yield conn
    conn.close()


def plan(conn, sql, params) -> list[str]:
    return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]


@pytest.mark.sqlite_only("SQLite's query planner, its index hints and sqlite_stat1")
def test_query_plans_use_the_time_index_never_a_full_scan(planner):
    import re

    from verifier import anomalies as rules

    params = rules.parameters("2026-11-01T00:00:00.000+00:00", rules.Thresholds())
    assert set(rules.QUERIES) == set(rules.RULES)
    for rule, sql in rules.QUERIES.items():
        steps = plan(planner, sql, params)
        assert any("USING INDEX scans_at" in s or "USING COVERING INDEX scans_at" in s for s in steps), (rule, steps)
        assert not [s for s in steps if re.match(r"SCAN scans\b", s)], (rule, steps)  # no full scan of the table
        assert not [s for s in steps if "scans_serial (serial>?)" in s], (rule, steps)  # the plan of the 15 s query


@pytest.mark.sqlite_only("SQLite's query planner, its index hints and sqlite_stat1")
def test_the_unhinted_query_would_walk_the_serial_index(planner):
    """The regression itself: without the hint, the planner picks the serial index for a 30-day window."""
    sql = """SELECT serial, max(checks) FROM scans WHERE at >= ? AND serial IS NOT NULL GROUP BY serial"""
    assert any("scans_serial" in s for s in plan(planner, sql, ("2026-11-01",)))


@pytest.mark.sqlite_only("SQLite's query planner, its index hints and sqlite_stat1")
def test_audit_filter_queries_use_an_index(planner):
    from verifier.audit import SCAN_COLUMNS

    select = f"SELECT {', '.join('s.' + c for c in SCAN_COLUMNS)} FROM scans s WHERE "
    window = (
        "s.id >= coalesce((SELECT id FROM scans INDEXED BY scans_at WHERE at >= ? ORDER BY at LIMIT 1), 1 << 62) "
        "AND s.id < coalesce((SELECT id FROM scans INDEXED BY scans_at WHERE at >= ? ORDER BY at LIMIT 1), 1 << 62)"
    )
    cases = {
        "time range": (window, ["2026-11-01", "2026-11-02"], "INTEGER PRIMARY KEY (rowid>? AND rowid<?)"),
        "batch": ("s.batch_id = ?", [3], "scans_batch"),
        "code": ("s.serial = ?", [3], "scans_serial"),
        "rare verdict": (
            "s.reason = ? AND s.reason NOT IN ('genuine', 'genuine-repeat')",
            ["bad-signature"],
            "scans_reason",
        ),
    }
    for name, (where, params, index) in cases.items():
        steps = plan(planner, select + where + " ORDER BY s.id DESC LIMIT 101", params)
        assert any(index in s for s in steps), (name, steps)
        assert not [s for s in steps if s == "SCAN s"], (name, steps)
    assert any("scans_at" in s for s in plan(planner, select + window, ["2026-11-01", "2026-11-02"]))


def fill_scans(location, rows: int, newest: dt.datetime, step: dt.timedelta) -> None:
    """PostgreSQL: `rows` generated scans, one every `step` up to `newest`, ids in time order, with
    the proportions of a real log (mostly genuine repeats of many codes, a few forgeries, recalls
    and PIN events), then ANALYZE so the planner knows it."""
    conn = db.connect(location)
    try:
        conn.execute(
            """INSERT INTO scans (at, channel, reason, serial, batch_id, kid, counted, checks, pin, country,
                                  region, ip_hash, session_hash)
            SELECT to_char((?::timestamptz - (? - i) * ?::interval) AT TIME ZONE 'UTC',
                           'YYYY-MM-DD"T"HH24:MI:SS.MS"+00:00"'),
                   'web',
                   CASE WHEN i % 100 = 0 THEN 'bad-signature' WHEN i % 1000 = 1 THEN 'recalled'
                        WHEN i % 3 = 0 THEN 'genuine' ELSE 'genuine-repeat' END,
                   CASE WHEN i % 100 = 0 THEN NULL ELSE i % 50000 END,
                   CASE WHEN i % 100 = 0 THEN NULL ELSE (i % 50000) / 1000 + 1 END,
                   'k', 1, 1 + i % 3,
                   CASE WHEN i % 500 = 2 THEN 'reused' WHEN i % 400 = 3 THEN 'mismatch' END,
                   'CN', 'R' || (i % 30), md5((i % 7000)::text), md5(i::text)
            FROM generate_series(1, ?) AS i""",
            (newest.isoformat(), rows, f"{step.total_seconds()} seconds", rows),
        )
        conn.execute("ANALYZE scans")
    finally:
        conn.close()


def scan_nodes(plan: dict):
    """The nodes of a JSON query plan (EXPLAIN (ANALYZE, FORMAT JSON)) that read scans or its indexes."""
    if plan.get("Relation Name") == "scans" or str(plan.get("Index Name", "")).startswith("scans_"):
        yield plan
    for child in plan.get("Plans", []):
        yield from scan_nodes(child)


@pytest.mark.postgres_only("PostgreSQL's planner on the PostgreSQL spelling of the rules")
def test_postgres_query_plans_read_the_window_never_the_whole_table(db_copy):
    from verifier import anomalies as rules
    from verifier.repos import scans

    newest = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
    fill_scans(db_copy, 200_000, newest, dt.timedelta(minutes=5))  # about two years of scans
    since = rules.since_days(30, newest)
    params = rules.parameters(since, rules.Thresholds())
    assert set(scans.POSTGRES_ANOMALY_QUERIES) == set(rules.RULES)
    conn = db.connect(db_copy)
    try:
        window = conn.execute("SELECT count(*) FROM scans WHERE at >= ?", (since,)).fetchone()[0]
        assert 8000 < window < 10_000  # 30 days of 2 years
        for rule, sql in scans.POSTGRES_ANOMALY_QUERIES.items():
            plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params).fetchone()[0][0]["Plan"]
            nodes = list(scan_nodes(plan))
            assert nodes and not [n for n in nodes if n["Node Type"] == "Seq Scan"], (rule, plan)
            for node in nodes:  # an index walked from the table's start (filtering on `at`) is a full scan too
                read = node["Actual Loops"] * sum(
                    node.get(k, 0) for k in ("Actual Rows", "Rows Removed by Filter", "Rows Removed by Index Recheck")
                )
                assert read <= 2 * window, (rule, node["Node Type"], node.get("Index Name"), read, window)
    finally:
        conn.close()


@pytest.mark.sqlite_only("a budget of SQLite instructions (PostgreSQL has statement_timeout: test_audit_api)")
def test_budget_stops_a_query_that_reads_too_much(lookups, world, db_copy, monkeypatch):
    from verifier import anomalies as rules
    from verifier import budget

    scan, _ = lookups
    for row in world["pin"][1][:20]:
        scan(row["url"])
    monkeypatch.setattr(budget, "GRAIN", 10)  # a tiny log: count in tens of instructions
    conn = db.connect(db_copy)
    since = "2000-01-01T00:00:00.000+00:00"
    with budget.limited(conn, None) as meter:
        expected = rules.find(conn, since)
    assert meter.used > 100 and not meter.exceeded
    with pytest.raises(budget.OverBudget):
        with budget.limited(conn, meter.used // 2):  # deterministic: instructions, not seconds
            rules.find(conn, since)
    ticks = iter([0.0] + [10.0] * 1000)  # the clock passes the deadline at the first tick
    monkeypatch.setattr(budget, "clock", lambda: next(ticks))
    with pytest.raises(budget.OverBudget):
        with budget.limited(conn, None, seconds=1.0):
            rules.find(conn, since)
    assert rules.find(conn, since) == expected  # the handler is gone: the connection works as before
