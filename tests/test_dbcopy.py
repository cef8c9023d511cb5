"""`verifier db copy` between the engines: a world copied SQLite -> PostgreSQL and PostgreSQL ->
SQLite verifies, answers lookups as the source does, and goes on where the source stopped.

Each test runs on the world of each engine and copies it to the other one: `[sqlite]` is the
SQLite -> PostgreSQL copy, `[postgresql]` the PostgreSQL -> SQLite one. Both need the test
PostgreSQL server.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest
from conftest import forged_url, log_signer_for_tests, settle
from test_auditlog import query
from test_backup import point_at

from verifier import accounts, db
from verifier.cli import cli
from verifier.repos import tables

NOW = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)


@pytest.fixture
def other_engine(world, tmp_path, postgres_server):
    """The location of a new, empty database of the engine the world is not on."""
    if world["engine"] == "postgresql":
        yield tmp_path / "copy.db"
        return
    if postgres_server is None:
        pytest.skip("a copy into PostgreSQL: no test server (VERIFIER_TEST_POSTGRES is unset)")
    url = postgres_server.create()
    yield url
    postgres_server.drop(url)


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


@pytest.fixture
def source(world, db_copy, instance, runner, monkeypatch, make_app, tmp_path):
    """The world with scans of every verdict, a verified PIN, accounts and tokens, a signed
    checkpoint exported to a file, and everything chained; the CLI pointed at it."""
    keys_dir = instance / "keys"
    shutil.copytree(world["keys_dir"], keys_dir)
    point_at(monkeypatch, db_copy)
    monkeypatch.setenv("VERIFIER_KEY_PASSPHRASE", "pw")
    log_key = instance / "log.key"
    log_key.write_text(log_signer_for_tests().skey)
    monkeypatch.setenv("VERIFIER_LOG_KEY_FILE", str(log_key))
    app = make_app(KEYS_DIR=str(keys_dir))
    urls = [row["url"] for row in world["pin"][1][:4]] + [
        world["gs1"][1][0]["url"],
        world["recalled"][1][0]["url"],
        world["expired"][1][0]["url"],
        forged_url(world["pin"][1][0]["url"]),
    ]
    for url in urls + urls[:2]:  # repeats too
        app.test_client().get(path_of(url))
    typed = world["pin"][1][5]
    app.test_client().post("/check", data={"code": typed["code"], "pin": typed["pin"]})
    conn = db.connect(db_copy)
    with db.transaction(conn):
        accounts.add_user(conn, "ada", "admin", "correct horse battery", None, "test", NOW)
        accounts.issue_token(conn, "ada", "ops", "test", NOW)
    conn.close()
    settle(db_copy)
    checkpoint = tmp_path / "checkpoint.txt"
    result = runner.invoke(cli, ["audit", "checkpoint", "--out", str(checkpoint)])
    assert result.exit_code == 0, result.stderr
    settle(db_copy)
    return {"db": db_copy, "app": app, "keys_dir": keys_dir, "checkpoint": checkpoint, "urls": urls, "typed": typed}


def every_row(location) -> dict[str, list[tuple]]:
    """Every row of every table, in the columns both engines have, and each scan's link to its log
    entry (kept as scans.log_seq on SQLite, audit_log.scan_id on PostgreSQL) as (scan id, entry seq)."""
    conn = db.connect(location)
    try:
        found = {}
        for t in tables.TABLES:
            names = [c for c in tables.columns(conn, t) if (t, c) not in tables.LINKS]
            found[t] = list(tables.rows(conn, t, names))
        found["links"] = query(
            location,
            "SELECT s.id, l.seq FROM scans s JOIN audit_log l ON "
            + ("l.scan_id = s.id" if db.is_postgres(location) else "l.seq = s.log_seq")
            + " ORDER BY s.id",
        )
        return found
    finally:
        conn.close()


def copy(runner, source, target):
    return runner.invoke(cli, ["db", "copy", "--from", str(source), "--to", str(target)])


def verify(runner, *extra):
    result = runner.invoke(cli, ["audit", "verify", "--json", *extra])
    return result.exit_code, json.loads(result.stdout)


def test_a_copy_to_the_other_engine_holds_every_row_and_its_log_verifies(source, other_engine, runner, monkeypatch):
    code, before = verify(runner, "--checkpoint", str(source["checkpoint"]))
    assert code == 0 and before["ok"] and before["pending"] == 0
    result = copy(runner, source["db"], other_engine)
    assert result.exit_code == 0, result.stderr
    assert "audit log verifies" in result.stdout and f"({before['entries']:,} entries" in result.stdout
    assert every_row(other_engine) == every_row(source["db"])
    point_at(monkeypatch, other_engine)
    code, after = verify(runner, "--checkpoint", str(source["checkpoint"]))
    assert code == 0 and after["ok"] and after["problems"] == []
    assert (after["entries"], after["head_seq"], after["head_hash"]) == (
        before["entries"],
        before["head_seq"],
        before["head_hash"],
    )
    stored = "SELECT size, note FROM log_checkpoints ORDER BY size"
    assert query(other_engine, stored) == query(source["db"], stored) != []  # the stored ones came along
    assert after["checkpoints"] == before["checkpoints"] >= 2


def test_lookups_on_the_copy_answer_as_on_the_source_and_ids_go_on(source, other_engine, runner, make_app, world):
    assert copy(runner, source["db"], other_engine).exit_code == 0
    copied = make_app(KEYS_DIR=str(source["keys_dir"]), DATABASE=str(other_engine))
    last = {t: query(other_engine, f"SELECT max(id) FROM {t}")[0][0] for t in ("scans", "users", "api_tokens")}
    fresh = world["pin"][1][20]["url"]  # never checked before the copy
    for url in source["urls"] + [fresh]:
        here = source["app"].test_client().get("/api/v1/verify", query_string={"code": url}).get_json()
        there = copied.test_client().get("/api/v1/verify", query_string={"code": url}).get_json()
        if url == fresh:  # the first check's time is each database's own
            here.pop("first_checked_at"), there.pop("first_checked_at")
        assert here == there, url
    counts = [
        query(other_engine, "SELECT checks FROM code_checks WHERE serial = ?", (int(row["serial"]),))[0][0]
        for row in world["pin"][1][:4]
    ]
    assert counts == [3, 3, 2, 2]  # the copied check counts went on
    typed = source["typed"]
    for app in (source["app"], copied):  # the PIN was verified before the copy: a second use is "reused"
        page = app.test_client().post("/check", data={"code": typed["code"], "pin": typed["pin"]})
        assert page.status_code == 200
    assert query(other_engine, "SELECT pin FROM scans ORDER BY id DESC LIMIT 1") == query(
        source["db"], "SELECT pin FROM scans ORDER BY id DESC LIMIT 1"
    )
    new_ids = [i for (i,) in query(other_engine, "SELECT id FROM scans WHERE id > ? ORDER BY id", (last["scans"],))]
    assert len(new_ids) == len(source["urls"]) + 2 and new_ids[0] == last["scans"] + 1  # after the copied ones
    conn = db.connect(other_engine)
    with db.transaction(conn):  # the identities of accounts and tokens go on too: no duplicate key
        accounts.add_user(conn, "zoe", "inspector", "correct horse battery", None, "test", NOW)
        accounts.issue_token(conn, "zoe", "ops", "test", NOW)
    conn.close()
    assert query(other_engine, "SELECT max(id) FROM users")[0][0] == last["users"] + 1
    assert query(other_engine, "SELECT max(id) FROM api_tokens")[0][0] == last["api_tokens"] + 1


def test_copy_refuses_a_non_empty_target_and_the_same_database(source, other_engine, runner):
    assert copy(runner, source["db"], other_engine).exit_code == 0
    again = copy(runner, source["db"], other_engine)
    assert again.exit_code == 1 and "the target is not empty" in again.stderr and again.stderr.count("\n") == 1
    same = copy(runner, source["db"], source["db"])
    assert same.exit_code == 1 and "the source and the target are the same database" in same.stderr


BAD_URLS = {
    "nobody listens": lambda server: "postgresql://verifier@127.0.0.1:1/verifier",
    "malformed": lambda server: "postgresql://verifier@[::1/verifier",
    "no such database": lambda server: server.url("verifier_no_such_database"),
}


@pytest.mark.parametrize("case", BAD_URLS)
def test_a_bad_url_is_one_line_of_error(source, other_engine, runner, postgres_server, case):
    url = BAD_URLS[case](postgres_server)
    for result in (copy(runner, source["db"], url), copy(runner, url, other_engine)):
        assert result.exit_code == 1 and result.stdout == ""
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
        assert "Traceback" not in result.stderr and "unexpected" not in result.stderr


@pytest.mark.postgres_only("entries waiting for PostgreSQL's log sequencer")
def test_a_move_refuses_a_source_with_pending_entries(source, other_engine, runner, world):
    source["app"].test_client().get(path_of(world["pin"][1][30]["url"]))  # a lookup, not chained yet
    refused = copy(runner, source["db"], other_engine)
    assert refused.exit_code == 1 and "1 log entries are not chained yet" in refused.stderr
    assert "verifier sequence --once" in refused.stderr and refused.stderr.count("\n") == 1
    assert runner.invoke(cli, ["sequence", "--once"]).exit_code == 0
    assert copy(runner, source["db"], other_engine).exit_code == 0


def test_a_backup_of_a_database_with_stored_checkpoints_verifies_with_them(source, runner, monkeypatch, tmp_path):
    """A PostgreSQL backup is a copy: its own check must not take the stored checkpoints for
    forgeries (it has no log keys); `audit verify` on the backup checks them."""
    backup = tmp_path / "backup.db"
    result = runner.invoke(cli, ["db", "backup", str(backup)])
    assert result.exit_code == 0 and "audit log verifies" in result.stdout, result.stderr
    point_at(monkeypatch, backup)
    code, report = verify(runner, "--checkpoint", str(source["checkpoint"]))
    assert code == 0 and report["ok"] and report["checkpoints"] >= 2 and report["unchecked_checkpoints"] == 0


def test_a_copy_that_does_not_verify_leaves_the_target_empty(source, other_engine, runner):
    from test_auditlog import attacker

    edit = attacker(source["db"])
    edit.execute("UPDATE scans SET checks = 99 WHERE id = (SELECT min(id) FROM scans)")  # an edit the log exposes
    edit.close()
    result = copy(runner, source["db"], other_engine)
    assert result.exit_code == 1 and "the copy's audit log does not verify" in result.stderr
    assert all(query(other_engine, f"SELECT count(*) FROM {t}")[0][0] == 0 for t in tables.TABLES)
