"""Rate limits off the durable path, hostile API bodies, and HEAD requests that are not checks."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import multiprocessing
import os
import sqlite3
import threading
from pathlib import Path

import psycopg
import pytest

from verifier import clients, db, ratelimit
from verifier.repos import ratecounters
from verifier.web import create_app

NOW = dt.datetime(2026, 11, 22, 8, 30, 20, tzinfo=dt.UTC)  # 20 s into a minute
NOW_SECONDS = NOW.timestamp()


def path_of(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def limited_app(app, limit: str = "2/minute", now: dt.datetime = NOW):
    """The app with a rate limit and a fixed request clock (the limit counts by the request's time)."""
    from flask import g

    limited = create_app({**app.config, "RATELIMIT": limit})

    @limited.before_request
    def fixed_clock() -> None:  # runs after the app's own hook, which reads the real clock
        g.now = now

    return limited


def scan_count(location) -> int:
    conn = db.connect(location)
    try:
        return conn.execute("SELECT count(*) FROM scans").fetchone()[0]
    finally:
        conn.close()


def counters_of(new_database):
    """A connection to the counters of a new database: its `-ratelimit` file on SQLite, its
    table `rate_hits` on PostgreSQL."""
    return ratelimit.connect(ratelimit.counters_path(new_database()))


def counted_clients(conn) -> list[str]:
    table = ratecounters._TABLE[db.dialect(conn)]
    return [row[0] for row in conn.execute(f"SELECT client FROM {table} ORDER BY client")]


# --- 1. a request over the limit costs no durable write ------------------------------------


def test_ratelimit_counts_each_window_of_the_injected_clock(new_database):
    conn = counters_of(new_database)
    limit = ratelimit.Limit(3, 60)
    outcomes = [ratelimit.hit(conn, "a", limit, NOW_SECONDS) for _ in range(4)]
    assert [o.allowed for o in outcomes] == [True, True, True, False]
    assert [o.remaining for o in outcomes] == [2, 1, 0, 0]
    assert outcomes[-1].retry_after == 40  # the window ends 40 s after NOW
    assert ratelimit.hit(conn, "b", limit, NOW_SECONDS).allowed  # another client has its own count
    assert ratelimit.hit(conn, "a", limit, NOW_SECONDS + 40).allowed  # the next window starts afresh


def _hammer(path: str, hits: int, queue) -> None:
    conn = ratelimit.connect(path)
    limit = ratelimit.Limit(50, 3600)
    queue.put(sum(ratelimit.hit(conn, "client", limit, NOW_SECONDS).allowed for _ in range(hits)))


def test_ratelimit_counters_hold_across_concurrent_processes(new_database):
    """Four processes, 40 requests each at the same instant, a limit of 50: exactly 50 pass."""
    path = str(ratelimit.counters_path(new_database()))
    ratelimit.connect(path).close()
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(path, 40, queue)) for _ in range(4)]
    for proc in procs:
        proc.start()
    allowed = [queue.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert sum(allowed) == 50, allowed


@pytest.mark.sqlite_only("the counters file beside the database, its pragmas")
def test_ratelimit_counters_are_not_durable_and_live_next_to_the_database(new_database):
    location = new_database()
    conn = ratelimit.counters(location)
    assert ratelimit.counters(location) is conn  # one connection a process
    assert Path(conn.execute("PRAGMA database_list").fetchone()[2]) == Path(f"{location}-ratelimit")
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 0  # OFF: no fsync per request
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.postgres_only("the counters table of a PostgreSQL registry")
def test_ratelimit_counters_are_not_durable_and_live_in_the_database(new_database):
    location = new_database()
    conn = ratelimit.counters(location)
    assert ratelimit.counters(location) is conn  # one connection a process
    assert db.location_of(conn) == location  # every node that shares the database shares the counts
    persistence = conn.execute("SELECT relpersistence FROM pg_class WHERE relname = 'rate_hits'").fetchone()
    assert persistence == ("u",)  # UNLOGGED: no WAL
    assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)  # no WAL flush waited for


@pytest.mark.postgres_only("a lost connection to the PostgreSQL server")
def test_ratelimit_counters_reconnect_after_losing_their_connection(new_database):
    """A restarted server (or an idle connection ended by a proxy) fails open once, not for good."""
    location = new_database()
    limit = ratelimit.Limit(2, 60)
    conn = ratelimit.counters(location)
    assert ratelimit.hit(conn, "a", limit, NOW_SECONDS).allowed
    killer = db.connect(location)
    backend = conn.raw.info.backend_pid
    assert killer.execute("SELECT pg_terminate_backend(?)", (backend,)).fetchone() == (True,)
    killer.close()
    with pytest.raises(db.DatabaseError):  # the request that meets the broken connection fails open
        ratelimit.hit(conn, "a", limit, NOW_SECONDS)
    again = ratelimit.counters(location)
    assert again is not conn
    assert [ratelimit.hit(again, "a", limit, NOW_SECONDS).allowed for _ in range(2)] == [True, False]
    assert ratelimit.counters(location) is again


@pytest.mark.sqlite_only("the counters file, damaged as by a power loss")
def test_ratelimit_damaged_counters_file_is_replaced(tmp_path):
    path = tmp_path / "counters"
    path.write_bytes(b"this is not a database, as after a power loss" * 100)
    conn = ratelimit.connect(path)
    assert ratelimit.hit(conn, "a", ratelimit.Limit(1, 60), NOW_SECONDS).allowed


def test_ratelimit_old_windows_are_pruned(new_database):
    conn = counters_of(new_database)
    limit = ratelimit.Limit(5, 60)
    ratelimit.hit(conn, "old", limit, NOW_SECONDS - 3600)
    for _ in range(1000):  # one hit in a thousand prunes the ended windows
        ratelimit.hit(conn, "new", limit, NOW_SECONDS)
    assert counted_clients(conn) == ["new"]


def test_ratelimit_key_is_the_clients_rate_key(app):
    """The limit is counted before the client is described; both must name the same client."""
    state = app.extensions["verifier"]
    for ip in ("203.0.113.9", "2001:db8:1234:5678::9", "::ffff:198.51.100.7", "", "junk"):
        described = clients.describe_client(ip, "", None, {}, state.hash_key, state.resolver)
        assert described.rate_key == clients.keyed_hash(state.hash_key, "rate", clients.rate_network(ip))


def registry_tables(conn) -> set[str]:
    if db.is_postgres_conn(conn):
        sql = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    return {name for (name,) in conn.execute(sql)}


def test_ratelimit_table_is_gone_from_the_registry(db_copy):
    """The durable table of counters is gone; PostgreSQL keeps them in the non-durable `rate_hits`."""
    conn = db.connect(db_copy)
    tables = registry_tables(conn)
    assert "rate_limits" not in tables
    assert ("rate_hits" in tables) == db.is_postgres_conn(conn)
    assert conn.execute("SELECT 1 FROM _migrations WHERE name = '007_ratelimit'").fetchone()
    conn.close()


REJECTED_REQUESTS = {
    "label URL": lambda c, row: c.get(path_of(row["url"])),
    "manual entry": lambda c, row: c.post("/check", data={"code": row["code"]}),
    "API GET": lambda c, row: c.get("/api/v1/verify", query_string={"code": row["url"]}),
    "API POST": lambda c, row: c.post("/api/v1/verify", json={"code": row["code"], "pin": row["pin"]}),
}


def registry_writes(app, location):
    """`watch()`: a value that changes whenever anything commits a write to the registry's durable
    tables. SQLite: the file's data_version seen from another connection, the workers' connection's
    changes and commits, the WAL's size; PostgreSQL: the version (xmin) and place (ctid) of every
    row of every table but the counters. Both: the number of scans."""
    if db.is_postgres(location):
        conn = db.connect(location)
        tables = sorted(registry_tables(conn) - {"rate_hits"})

        def watch():
            versions = tuple(
                conn.execute(
                    f"SELECT string_agg(xmin::text || '@' || ctid::text, ',' ORDER BY ctid) FROM {t}"
                ).fetchone()[0]
                for t in tables
            )
            return versions, scan_count(location)

        return watch
    main = app.extensions["verifier"].connection()  # the workers' connection to the registry
    watcher = db.connect(location)  # data_version changes when any other connection commits

    def watch():
        return (
            watcher.execute("PRAGMA data_version").fetchone()[0],
            main.total_changes,
            main.commits,
            os.path.getsize(f"{location}-wal"),
            scan_count(location),
        )

    return watch


def test_ratelimit_rejected_request_does_not_write_to_the_main_database(app, world, db_copy):
    limited = limited_app(app, "2/minute")
    client = limited.test_client()
    row = world["pin"][1][0]
    assert [client.get(path_of(row["url"])).status_code for _ in range(2)] == [200, 200]
    watch = registry_writes(limited, db_copy)
    before = watch()
    for name, send in REJECTED_REQUESTS.items():
        response = send(client, row)
        assert response.status_code == 429, name
        assert response.headers["Retry-After"] == "40", name
    assert watch() == before
    assert scan_count(db_copy) == 2


@contextlib.contextmanager
def registry_writes_locked(location):
    """Hold what every write to the registry waits for: SQLite's writer lock (an flock, from another
    open file, which excludes it like another process); on PostgreSQL, every durable table locked
    against writes (EXCLUSIVE: reads go on) by a transaction of another connection."""
    if not db.is_postgres(location):
        fd = os.open(f"{location}-writer.lock", os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        return
    conn = db.connect(location)
    try:
        with db.transaction(conn):
            tables = sorted(registry_tables(conn) - {"rate_hits"})
            conn.execute(f"LOCK TABLE {', '.join(tables)} IN EXCLUSIVE MODE")
            yield
    finally:
        conn.close()


def test_ratelimit_rejected_request_does_not_wait_for_the_writer_lock(app, world, db_copy):
    """While another process holds the registry's writer lock, a request over the limit is answered."""
    limited = limited_app(app, "1/minute")
    client = limited.test_client()
    row = world["pin"][1][1]
    assert client.get(path_of(row["url"])).status_code == 200
    statuses: list[int] = []
    with registry_writes_locked(db_copy):
        worker = threading.Thread(
            target=lambda: statuses.extend(send(client, row).status_code for send in REJECTED_REQUESTS.values())
        )
        worker.start()
        worker.join(timeout=10)
        answered_while_locked = not worker.is_alive()
    worker.join()
    assert answered_while_locked and statuses == [429] * len(REJECTED_REQUESTS)


def test_ratelimit_failing_counters_fail_open(app, world, monkeypatch, engine):
    error = {"sqlite": sqlite3.OperationalError("disk I/O error"), "postgresql": psycopg.OperationalError("gone")}

    def broken(*args):
        raise error[engine]

    limited = limited_app(app, "1/minute")
    monkeypatch.setattr(ratelimit, "hit", broken)
    statuses = [limited.test_client().get(path_of(world["pin"][1][2]["url"])).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]


# --- 2. hostile JSON bodies are a 400 in the API's error shape, never a 500 ----------------

DEEP = 5000
HOSTILE_BODIES = {
    "array 5,000 deep": "[" * DEEP + "]" * DEEP,
    "object 5,000 deep": '{"a":' * DEEP + "1" + "}" * DEEP,
    "deep array as the code": '{"code": ' + "[" * DEEP + "]" * DEEP + "}",
    "deep array after brackets in a string": '{"code": "[[{{", "x": ' + "[" * DEEP + "]" * DEEP + "}",
    "deep array after escaped quotes": '{"code": "\\"\\\\\\"[", "x": ' + "[" * DEEP + "]" * DEEP + "}",
    "deep array after a closing excess": "]]]]" + "[" * DEEP,
    "unclosed deep array": "[" * DEEP,
    "17 levels": '{"a":' * 17 + "1" + "}" * 17,
    "top-level array": '["code"]',
    "top-level string": '"0123 4567 8901 2345 6"',
    "top-level number": "42",
    "null": "null",
    "empty": "",
    "not JSON": "{code: 1}",
    "invalid UTF-8": b'{"code": "\xff\xfe"}',
    "UTF-16 deep array": ("[" * DEEP + "]" * DEEP).encode("utf-16"),
    "a 5,000-digit number": '{"code": "1", "pin": ' + "9" * DEEP + "}",
    "NaN as the code": '{"code": NaN}',
    "object as the code": '{"code": {"a": 1}}',
}


@pytest.mark.parametrize("body", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES.keys())
def test_api_post_refuses_deep_or_non_object_json(app, db_copy, body):
    app.config["MAX_CONTENT_LENGTH"] = 1 << 20  # the depth check, not the size limit, refuses them
    response = app.test_client().post("/api/v1/verify", data=body, content_type="application/json")
    assert response.status_code == 400
    answer = response.get_json()
    assert answer["ok"] is False and answer["error"]["code"] in ("bad-request", "missing-parameter")
    assert set(answer["error"]) == {"code", "message"}
    assert scan_count(db_copy) == 0


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
@pytest.mark.parametrize("body", [HOSTILE_BODIES["object 5,000 deep"], "[" * 20_000])
def test_api_post_refuses_a_body_too_large_in_the_error_shape(client, content_type, body):
    response = client.post("/api/v1/verify", data=body, content_type=content_type)
    assert response.status_code == 413
    assert response.get_json() == {
        "ok": False,
        "error": {"code": "payload-too-large", "message": "the body is limited to 16384 bytes"},
    }


def test_api_post_accepts_extra_fields_nested_a_little_and_a_byte_order_mark(client, world):
    row = world["pin"][1][3]
    body = json.dumps({"code": row["code"], "pin": row["pin"], "client": {"app": ["x", {"v": "[[[{"}]}})
    answer = client.post("/api/v1/verify", data=body, content_type="application/json").get_json()
    assert (answer["reason"], answer["pin"]) == ("genuine", "first")
    with_bom = client.post("/api/v1/verify", data=b'\xef\xbb\xbf{"code": "1"}', content_type="application/json")
    assert with_bom.get_json()["reason"] == "mistyped"  # parsed: RFC 8259 lets a parser ignore a BOM; main did
    form = client.post("/api/v1/verify", data={"code": row["code"], "pin": row["pin"]})  # a form is read as before
    assert (form.get_json()["reason"], form.get_json()["pin"]) == ("pin-reused", "reused")


# --- 3. HEAD and prefetches are not checks, on label URLs and on the API ------------------

CHECKS = {
    "label URL": lambda row: path_of(row["url"]),
    "API": lambda row: "/api/v1/verify?code=" + row["code"].replace(" ", ""),
}


@pytest.mark.parametrize("route", CHECKS.keys())
@pytest.mark.parametrize(
    "method, headers, counts",
    [
        ("GET", {}, True),
        ("HEAD", {}, False),
        ("GET", {"Sec-Purpose": "prefetch"}, False),
        ("GET", {"Sec-Purpose": "prefetch;prerender"}, False),
        ("GET", {"Purpose": "prefetch"}, False),
        ("GET", {"X-Purpose": "preview"}, False),
        ("GET", {"X-Moz": "prefetch"}, False),
    ],
    ids=["GET", "HEAD", "Sec-Purpose", "prerender", "Purpose", "X-Purpose", "X-Moz"],
)
def test_head_and_prefetch_are_not_checks(app, world, db_copy, route, method, headers, counts):
    limited = limited_app(app, "1/minute")
    row = world["pin"][1][4]
    path = CHECKS[route](row)
    response = limited.test_client().open(path, method=method, headers=headers)
    if counts:
        assert response.status_code == 200 and scan_count(db_copy) == 1
        return
    assert response.status_code == 204 and response.data == b"" and scan_count(db_copy) == 0
    assert limited.test_client().get(path).status_code == 200  # nor did it use up the client's limit
    conn = db.connect(db_copy)
    assert conn.execute("SELECT checks FROM code_checks WHERE serial = ?", (int(row["serial"]),)).fetchone() == (1,)
    conn.close()
