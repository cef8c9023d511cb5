"""Rate limits off the durable path."""

from __future__ import annotations

import datetime as dt
import fcntl
import multiprocessing
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from verifier import clients, ratelimit, store
from verifier.web import create_app

NOW = dt.datetime(2026, 11, 22, 8, 30, 20, tzinfo=dt.timezone.utc)  # 20 s into a minute
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


def scan_count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM scans").fetchone()[0]


# --- 1. a request over the limit costs no durable write ------------------------------------


def test_ratelimit_counts_each_window_of_the_injected_clock(tmp_path):
    conn = ratelimit.connect(tmp_path / "counters")
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


def test_ratelimit_counters_hold_across_concurrent_processes(tmp_path):
    """Four processes, 40 requests each at the same instant, a limit of 50: exactly 50 pass."""
    path = str(tmp_path / "counters")
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


def test_ratelimit_counters_are_not_durable_and_live_next_to_the_database(tmp_path):
    conn = ratelimit.counters(tmp_path / "verifier.db")
    assert ratelimit.counters(tmp_path / "verifier.db") is conn  # one connection a process
    assert Path(conn.execute("PRAGMA database_list").fetchone()[2]) == tmp_path / "verifier.db-ratelimit"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 0  # OFF: no fsync per request
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_ratelimit_damaged_counters_file_is_replaced(tmp_path):
    path = tmp_path / "counters"
    path.write_bytes(b"this is not a database, as after a power loss" * 100)
    conn = ratelimit.connect(path)
    assert ratelimit.hit(conn, "a", ratelimit.Limit(1, 60), NOW_SECONDS).allowed


def test_ratelimit_old_windows_are_pruned(tmp_path, monkeypatch):
    import itertools

    conn = ratelimit.connect(tmp_path / "counters")
    limit = ratelimit.Limit(5, 60)
    ratelimit.hit(conn, "old", limit, NOW_SECONDS - 3600)
    monkeypatch.setattr(ratelimit, "_pruning", itertools.count(1000))  # the next hit prunes
    ratelimit.hit(conn, "new", limit, NOW_SECONDS)
    assert [r[0] for r in conn.execute("SELECT client FROM hits")] == ["new"]


def test_ratelimit_key_is_the_clients_rate_key(app):
    """The limit is counted before the client is described; both must name the same client."""
    state = app.extensions["verifier"]
    for ip in ("203.0.113.9", "2001:db8:1234:5678::9", "::ffff:198.51.100.7", "", "junk"):
        described = clients.describe_client(ip, "", None, {}, state.hash_key, state.resolver)
        assert described.rate_key == clients.keyed_hash(state.hash_key, "rate", clients.rate_network(ip))


def test_ratelimit_table_is_gone_from_the_registry(db_copy):
    db = store.connect(db_copy)
    assert "rate_limits" not in db.table_names()
    assert db.execute("SELECT 1 FROM _migrations WHERE name = '006_ratelimit'").fetchone()


REJECTED_REQUESTS = {
    "label URL": lambda c, row: c.get(path_of(row["url"])),
    "manual entry": lambda c, row: c.post("/check", data={"code": row["code"]}),
    "API GET": lambda c, row: c.get("/api/v1/verify", query_string={"code": row["url"]}),
    "API POST": lambda c, row: c.post("/api/v1/verify", json={"code": row["code"], "pin": row["pin"]}),
}


def test_ratelimit_rejected_request_does_not_write_to_the_main_database(app, world, db_copy):
    limited = limited_app(app, "2/minute")
    client = limited.test_client()
    row = world["pin"][1][0]
    assert [client.get(path_of(row["url"])).status_code for _ in range(2)] == [200, 200]
    main = limited.extensions["verifier"].connection()  # the workers' connection to the registry
    watcher = sqlite3.connect(db_copy)  # data_version changes when any other connection commits
    before = (watcher.execute("PRAGMA data_version").fetchone()[0], main.total_changes, main.commits,
              os.path.getsize(f"{db_copy}-wal"), scan_count(db_copy))  # fmt: skip
    for name, send in REJECTED_REQUESTS.items():
        response = send(client, row)
        assert response.status_code == 429, name
        assert response.headers["Retry-After"] == "40", name
    after = (watcher.execute("PRAGMA data_version").fetchone()[0], main.total_changes, main.commits,
             os.path.getsize(f"{db_copy}-wal"), scan_count(db_copy))  # fmt: skip
    assert after == before


def test_ratelimit_rejected_request_does_not_wait_for_the_writer_lock(app, world, db_copy):
    """While another process holds the registry's writer lock, a request over the limit is answered."""
    limited = limited_app(app, "1/minute")
    client = limited.test_client()
    row = world["pin"][1][1]
    assert client.get(path_of(row["url"])).status_code == 200
    fd = os.open(f"{db_copy}-writer.lock", os.O_RDWR)  # another open file: flock excludes it like a process
    fcntl.flock(fd, fcntl.LOCK_EX)
    statuses: list[int] = []
    try:
        worker = threading.Thread(target=lambda: statuses.extend(send(client, row).status_code
                                                                 for send in REJECTED_REQUESTS.values()))  # fmt: skip
        worker.start()
        worker.join(timeout=10)
        answered_while_locked = not worker.is_alive()
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        worker.join()
    assert answered_while_locked and statuses == [429] * len(REJECTED_REQUESTS)


def test_ratelimit_failing_counters_fail_open(app, world, monkeypatch):
    def broken(*args):
        raise sqlite3.OperationalError("disk I/O error")

    limited = limited_app(app, "1/minute")
    monkeypatch.setattr(ratelimit, "hit", broken)
    statuses = [limited.test_client().get(path_of(world["pin"][1][2]["url"])).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
