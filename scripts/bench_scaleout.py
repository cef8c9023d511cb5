#!/usr/bin/env python3
"""Scale-out on PostgreSQL: durable scans/s with 1, 2 and 4 lookup nodes, the log sequencer's rate,
the merge delay, and kill -9 of a node and of the sequencer under load.

    .venv/bin/python scripts/bench_scaleout.py [--seconds 10] [--drain 100000] [--kill-seconds 15] [--quick]

A throwaway PostgreSQL cluster (Debian's /usr/lib/postgresql/*/bin; initdb as `postgres` when run
as root) is made under a temporary folder and started on 127.0.0.1 at a free port in a durable
configuration: fsync on, synchronous_commit on, full_page_writes on (unlike the test server of
scripts/_postgres.sh). It is stopped and removed at the end, with every process the run started.

Phases, one after the other in the same run:

1. Throughput at N = 1, 2, 4 concurrent writers. Lookup: N nodes, each `verifier serve --workers 1`
   on its own port (VERIFIER_DATABASE_URL), loaded by one `wrk` each (the load balancer's share);
   every request is a real lookup of a distinct issued code (signature verified, rate limit
   counted, the scan committed durably) unless the batch runs out (then codes repeat: counted).
   Baseline, measured just before at the same N: N processes, psycopg in autocommit, one INSERT of
   a scan-sized row (the columns and values of a real scan, primary key only) per commit.
   Printed: both rates and their ratio (target >= 0.5 at N = 4), latencies, CPU a scan.
   Why nodes rather than the lookup path in-process per writer process: a node is what an operator
   runs, so the figure includes what scaling out costs in practice (gunicorn, Flask, the pool, the
   shared rate-limit table, the per-code advisory lock, the sequencer beside it); HTTP makes the
   ratio conservative, and wrk is C, a small share of the CPU.
2. Merge delay, during each throughput phase: the nodes run their sequencers (the product's
   default; one leads). A sampler polls the scans table every --poll seconds and takes, for every
   scan, the first poll that sees its log entry (audit_log.scan_id) minus its `at` (the request's start, before its
   commit): an upper bound of commit-to-chained, within one poll interval. p50/p99, target p99 <= 1 s.
3. Sequencer throughput: with the nodes stopped, --drain pending scans (copies of real ones, fresh
   salts) are inserted at once and chained by `verifier.sequencer.drain` in this process: entries/s.
4. Kill -9 under load: `verifier sequence` (leading) and two nodes (their sequencers on standby),
   loaded by a Python client (threads that fail over to the other node, as a load balancer would,
   and note the serial of every HTTP 200). The leading sequencer is killed with SIGKILL, then one
   node's whole process group (gunicorn master, worker and its sequencer). Afterwards every
   acknowledged scan must be in the scans table, pending must go back to 0 (a standby took over)
   and `verifier audit verify` must pass.

The machine is shared (2 cores, other jobs): run it twice and compare. Exit status 1 when a
correctness check fails (a non-2xx answer, an acknowledged scan missing, the log not caught up or
not verifying); the targets are reported, not enforced.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from _benchlib import (
    WRK_SCRIPT,
    Cluster,
    batch_codes,
    free_port,
    group_cpu_seconds,
    issue_bench_batch,
    start,
    start_cluster,
    stop,
    tree_cpu_seconds,
    wait_ready,
)

from verifier import auditlog, clock, db, sequencer
from verifier.db import postgres
from verifier.repos.scans import INSERT_COLUMNS

BASE = "HTTPS://VERIFY.EXAMPLE.CN/"
CODES_PER_SECOND = 1_500  # codes issued a second of load: above what 2 cores commit, so codes rarely repeat
CONCURRENCY = (1, 2, 4)
LOOK_BACK = 200  # scan ids behind the highest seen that may still commit (concurrent transactions)


# One baseline writer: durable INSERT+COMMIT of a scan-sized row, back to back, from a start time.
# The lookup's write path in one process, without HTTP: the signature examined, then one
# transaction that records the scan (lookup.record_url: the code's lock, the batch, the check
# count, the scan row). What a lookup node does per scan, minus gunicorn and Flask.
WRITE_PATH = """
import datetime as dt, json, secrets, sys, time
from pathlib import Path

from verifier import clients, db, keys, lookup

url, keys_dir, base, start_at, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
paths = json.loads(sys.stdin.read())
settings = lookup.Settings(keys.trust_from_folder(Path(keys_dir)), (base,), 4, None)
resolver = clients.RegionResolver(trust_headers=False)
pool = db.Pool(url, max_size=1)
key = secrets.token_bytes(32)

def one(k):
    address = f"198.51.{k // 256 % 256}.{k % 256}"
    client = clients.describe_client(address, "bench", secrets.token_hex(16), {}, key, resolver)
    verification = lookup.examine_url(base + paths[k % len(paths)].lstrip("/"), settings)
    conn = pool.acquire()
    try:
        with db.transaction(conn):
            return lookup.record_url(conn, verification, settings, client, "qr", dt.datetime.now(dt.UTC))
    finally:
        pool.release(conn)

for k in range(5):
    one(len(paths) - 1 - k)  # warm: statements prepared, as a node's are after its first requests
time.sleep(max(0.0, start_at - time.time()))
cpu = time.process_time()
latencies, k, end = [], 0, start_at + seconds
while True:
    t0 = time.perf_counter()
    one(k)
    latencies.append(time.perf_counter() - t0)
    k += 1
    if time.time() >= end:
        break
used = time.process_time() - cpu
print(json.dumps({"rows": len(latencies), "latencies": latencies, "cpu": used, "reused": max(0, k - len(paths) + 5)}))
"""

BASELINE = """
import json, sys, time
import psycopg

url, columns, row = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
start_at, seconds = float(sys.argv[4]), float(sys.argv[5])
conn = psycopg.connect(url, autocommit=True)
conn.execute("SET synchronous_commit = on")
sql = f"INSERT INTO floor_scans ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
for _ in range(10):
    conn.execute(sql, row)  # warm: prepared after the fifth use, as the lookup's statements are
time.sleep(max(0.0, start_at - time.time()))
cpu = time.process_time()
latencies = []
end = start_at + seconds
while True:
    t0 = time.perf_counter()
    conn.execute(sql, row)
    latencies.append(time.perf_counter() - t0)
    if time.time() >= end:
        break
conn.close()
print(json.dumps({"rows": len(latencies), "latencies": latencies, "cpu": time.process_time() - cpu}))
"""


def pg_cpu(cluster: Cluster) -> float:
    """CPU of the postmaster and its children: every backend (live, or exited and reaped), the WAL
    writer, the checkpointer. Not its process group: each backend leads a group of its own."""
    return tree_cpu_seconds(cluster.postmaster)


def wal_lsn(url: str) -> int:
    """The server's WAL insert position, in bytes."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn").fetchone()
        return int(row[0]) if row else 0


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk and baseline writers, once reaped
    return usage.ru_utime + usage.ru_stime


# --- load ----------------------------------------------------------------------------------


def client_address(k: int) -> str:
    """The k-th of 2^24 distinct public addresses (11.0.0.0/8), sent only in X-Forwarded-For."""
    return f"11.{k >> 16 & 255}.{k >> 8 & 255}.{k & 255}"


class Codes:
    """The shuffled batch, handed out in order: each request a distinct code until it runs out."""

    def __init__(self, codes: list[tuple[str, int]]) -> None:
        self.codes, self.next = codes, 0

    def take(self, count: int) -> list[tuple[int, str, int]]:
        """`count` (index, path, serial), wrapping around (a repeat scan) past the end."""
        taken = [(k % len(self.codes), *self.codes[k % len(self.codes)]) for k in range(self.next, self.next + count)]
        self.next += count
        return taken


def to_ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    assert match, value
    return float(match.group(1)) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[match.group(2)]


def parse_wrk(out: str) -> dict[str, float]:
    result = {
        "rps": float(_find(r"Requests/sec:\s+([\d.]+)", out)),
        "requests": float(_find(r"(\d+) requests in", out)),
    }
    for pct in ("50", "99"):
        result[f"p{pct}"] = to_ms(_find(rf"\s{pct}%\s+([\d.]+\w+)", out))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non2xx"] = float(errors.group(1)) if errors else 0.0
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["socket_errors"] = float(sum(map(int, sockets.groups()))) if sockets else 0.0
    result["reused"] = float(_find(r"BENCH sent=\d+ reused=(\d+)", out))
    return result


def _find(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if not match:
        raise SystemExit(f"wrk printed no {pattern!r}:\n{text}")
    return match.group(1)


# --- the merge delay -----------------------------------------------------------------------


@dataclass
class Sampler:
    """Polls the scans table: for each scan, the first poll that sees it chained, minus its `at`."""

    url: str
    poll: float
    since_id: int
    delays: list[float] = field(default_factory=list)
    max_pending: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        conn = psycopg.connect(self.url, autocommit=True)
        waiting: dict[int, float] = {}  # scan id -> its `at` as a timestamp
        seen: set[int] = set()
        seen_to = self.since_id
        try:
            while not self.stop.is_set():
                now = time.time()
                # A lower id may commit after a higher one (ids come from a sequence before the
                # commit): look back a little behind the highest id seen.
                rows = conn.execute(
                    "SELECT s.id, s.at, l.seq IS NOT NULL FROM scans s LEFT JOIN audit_log l ON l.scan_id = s.id "
                    "WHERE s.id > %s ORDER BY s.id",
                    (max(self.since_id, seen_to - LOOK_BACK),),
                ).fetchall()
                for scan_id, at, chained in rows:
                    if scan_id in seen:
                        continue
                    seen.add(scan_id)
                    seen_to = max(seen_to, scan_id)
                    moment = dt.datetime.fromisoformat(at).timestamp()
                    if chained:
                        self.delays.append(now - moment)
                    else:
                        waiting[scan_id] = moment
                if waiting:
                    chained_now = conn.execute(
                        "SELECT scan_id FROM audit_log WHERE scan_id = ANY(%s)", (list(waiting),)
                    ).fetchall()
                    for (scan_id,) in chained_now:
                        self.delays.append(now - waiting.pop(scan_id))
                self.max_pending = max(self.max_pending, len(waiting))
                self.stop.wait(max(0.0, self.poll - (time.time() - now)))
        finally:
            conn.close()

    def percentiles(self) -> tuple[float, float]:
        if len(self.delays) < 2:
            return (float("nan"), float("nan"))
        cuts = statistics.quantiles(self.delays, n=100, method="inclusive")
        return cuts[49], cuts[98]


def max_scan_id(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT coalesce(max(id), 0) FROM scans").fetchone()
        return int(row[0]) if row else 0


# --- phases --------------------------------------------------------------------------------


def serve_args(port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "verifier", "serve", "--port", str(port), "--workers", "1", *extra]


def throughput(
    args: argparse.Namespace,
    cluster: Cluster,
    url: str,
    nodes: list[tuple[subprocess.Popen[bytes], int]],
    codes: Codes,
    folder: Path,
    env: dict[str, str],
    n: int,
) -> dict[str, Any]:
    """N wrk processes against N nodes, with the merge-delay sampler polling meanwhile."""
    script = folder / "requests.lua"
    wanted = int(CODES_PER_SECOND * args.seconds / n) + 1
    files = []
    for i in range(n):
        path = folder / f"requests-{n}-{i}.txt"
        path.write_text("".join(f"{p} {client_address(k)}\n" for k, p, _ in codes.take(wanted)))
        files.append(path)
    sampler = Sampler(url, args.poll, max_scan_id(url))
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    time.sleep(args.poll * 2)  # the sampler's first poll is in
    cpu_nodes = sum(group_cpu_seconds(proc.pid) for proc, _ in nodes)
    cpu_pg, cpu_children, wal = pg_cpu(cluster), children_cpu(), wal_lsn(url)
    command = ["wrk", "-t1", f"-c{args.connections}", f"-d{args.seconds}s", "--latency", "--timeout", "5s"]
    procs = [
        subprocess.Popen(
            [*command, "-s", str(script), f"http://127.0.0.1:{port}"],
            stdout=subprocess.PIPE,
            text=True,
            env={**env, "BENCH_REQUESTS": str(files[i]), "BENCH_THREADS": "1"},
        )
        for i, (_, port) in enumerate(nodes[:n])
    ]
    outs = [proc.communicate()[0] for proc in procs]
    wrk_cpu = children_cpu() - cpu_children
    cpu_nodes = sum(group_cpu_seconds(proc.pid) for proc, _ in nodes) - cpu_nodes
    cpu_pg = pg_cpu(cluster) - cpu_pg
    time.sleep(1.0)  # the last scans get chained and seen
    sampler.stop.set()
    thread.join()
    wal = wal_lsn(url) - wal  # the scans, their chaining and the sampler's reads (none)
    results = [parse_wrk(out) for out in outs]
    requests = sum(r["requests"] for r in results)
    p50, p99 = sampler.percentiles()
    return {
        "rps": sum(r["rps"] for r in results),
        "requests": requests,
        "p50": max(r["p50"] for r in results),
        "p99": max(r["p99"] for r in results),
        "non2xx": sum(r["non2xx"] for r in results),
        "socket_errors": sum(r["socket_errors"] for r in results),
        "reused": sum(r["reused"] for r in results),
        "cpu_us": (cpu_nodes + cpu_pg) / max(requests, 1) * 1e6,
        "node_cpu_us": cpu_nodes / max(requests, 1) * 1e6,
        "pg_cpu_us": cpu_pg / max(requests, 1) * 1e6,
        "wrk_cpu_us": wrk_cpu / max(requests, 1) * 1e6,
        "wal_bytes": wal / max(requests, 1),
        "merge_p50": p50,
        "merge_p99": p99,
        "merge_samples": len(sampler.delays),
        "max_pending": sampler.max_pending,
    }


def baseline(args: argparse.Namespace, cluster: Cluster, url: str, template: dict[str, Any], n: int) -> dict[str, Any]:
    """N durable INSERT+COMMIT loops of a scan-sized row, started together."""
    columns = [c for c in INSERT_COLUMNS if c != "id"]
    row = [template[c] for c in columns]
    start_at = time.time() + 1.5  # after every writer connected and warmed up
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                BASELINE,
                url,
                json.dumps(columns),
                json.dumps(row),
                str(start_at),
                str(args.seconds),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    time.sleep(max(0.0, start_at - time.time()))
    return collect(args, cluster, url, procs)


def collect(args: argparse.Namespace, cluster: Cluster, url: str, procs: list[subprocess.Popen[str]]) -> dict[str, Any]:
    """The JSON answers of writer processes started together (their input already written and
    closed), with PostgreSQL's CPU and WAL over their run: rates, latencies, CPU and WAL a row."""
    cpu_pg, wal = pg_cpu(cluster), wal_lsn(url)
    outs = []
    for proc in procs:
        assert proc.stdout is not None
        outs.append(json.loads(proc.stdout.read()))
        proc.wait()
    cpu_pg, wal = pg_cpu(cluster) - cpu_pg, wal_lsn(url) - wal
    rows = sum(o["rows"] for o in outs)
    latencies = sorted(x for o in outs for x in o["latencies"])
    cpu = cpu_pg + sum(o["cpu"] for o in outs)  # the writers' loops and the server
    return {
        "rps": rows / args.seconds,
        "rows": rows,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "cpu_us": cpu / max(rows, 1) * 1e6,
        "pg_cpu_us": cpu_pg / max(rows, 1) * 1e6,
        "wal_bytes": wal / max(rows, 1),
        "reused": sum(o.get("reused", 0) for o in outs),
    }


def write_path(
    args: argparse.Namespace, cluster: Cluster, url: str, codes: Codes, folder: Path, env: dict[str, str], n: int
) -> dict[str, Any]:
    """N processes running the lookup's write path in-process (WRITE_PATH), started together."""
    per_process = int(CODES_PER_SECOND * args.seconds / n) + 10
    start_at = time.time() + 3.0  # after every process imported verifier and warmed up
    procs = []
    for _ in range(n):
        paths = [path for _, path, _ in codes.take(per_process)]
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITE_PATH, url, str(folder / "keys"), BASE, str(start_at), str(args.seconds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(paths))
        proc.stdin.close()
        procs.append(proc)
    time.sleep(max(0.0, start_at - time.time()))
    return collect(args, cluster, url, procs)


def storage(url: str) -> dict[str, Any]:
    """Bytes a scan takes: its row, each index of scans, its log entry, and how the sequencer's
    link UPDATE was done (HOT or not: a non-HOT update writes the row and its index entries again)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) scans, audit_log, code_checks")
        one = conn.execute  # every query below returns one row

        def value(sql: str) -> Any:
            row = one(sql).fetchone()
            return row[0] if row else None

        scans = int(value("SELECT count(*) FROM scans"))
        result: dict[str, Any] = {
            "scans": scans,
            "row_bytes": float(value("SELECT avg(pg_column_size(s.*)) FROM scans s")),
            "entry_bytes": float(value("SELECT avg(pg_column_size(l.*)) FROM audit_log l")),
            "heap_bytes": int(value("SELECT pg_table_size('scans')")) / scans,
            "log_bytes": int(value("SELECT pg_total_relation_size('audit_log')")) / scans,
            "code_checks_bytes": int(value("SELECT pg_total_relation_size('code_checks')"))
            / max(1, int(value("SELECT count(*) FROM code_checks"))),
        }
        result["indexes"] = {
            name: size / scans
            for name, size in conn.execute(
                "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index "
                "WHERE indrelid = 'scans'::regclass ORDER BY 1"
            ).fetchall()
        }
        updated, hot = conn.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'scans'"
        ).fetchone() or (0, 0)
        result["updates"], result["hot_updates"] = int(updated), int(hot)
    return result


def template_scan(url: str) -> dict[str, Any]:
    """The newest genuine scan's columns (a real row, for the baseline and the drain phase)."""
    conn = db.connect(url)
    try:
        cursor = conn.execute(
            f"SELECT {', '.join(INSERT_COLUMNS)} FROM scans WHERE reason = 'genuine' ORDER BY id DESC LIMIT 1"
        )
        found = db.one_dict(cursor)
    finally:
        conn.close()
    if found is None:
        raise SystemExit("the warm-up lookups recorded no genuine scan")
    return found


def drain_phase(cluster: Cluster, url: str, template: dict[str, Any], count: int, serials: list[int]) -> dict[str, Any]:
    """`count` pending scans inserted at once, then chained by sequencer.drain in this process."""
    conn = db.connect(url)
    try:
        left = sequencer.drain(conn)  # what the load phases left, so the timing covers ours only
        columns = [c for c in INSERT_COLUMNS if c not in ("id", "log_seq")]
        start = dt.datetime.now(dt.UTC) - dt.timedelta(milliseconds=count)
        rows = []
        for k in range(count):
            scan = {**template, "at": clock.utc_text(start + dt.timedelta(milliseconds=k))}
            scan["serial"] = serials[k % len(serials)]
            scan["personal_salt"] = auditlog.new_salt()
            rows.append([scan[c] for c in columns])
        before = max_scan_id(url)
        with db.transaction(conn):  # as lookups leave them: the rows, and their ids in the sequencer's queue
            db.copy_rows(conn, "scans", columns, rows)
            conn.execute("INSERT INTO scan_queue (scan_id) SELECT id FROM scans WHERE id > ?", (before,))
        cpu_pg, cpu_self, started = pg_cpu(cluster), time.process_time(), time.monotonic()
        done = sequencer.drain(conn)
        seconds = time.monotonic() - started
        cpu = time.process_time() - cpu_self + pg_cpu(cluster) - cpu_pg
        pending = int(sequencer.status(conn)["pending"])  # type: ignore[call-overload]
    finally:
        conn.close()
    return {
        "entries": done,
        "left_before": left,
        "seconds": seconds,
        "rate": done / seconds if seconds else float("nan"),
        "cpu_us": cpu / max(done, 1) * 1e6,
        "pending_after": pending,
    }


def leader_backend(url: str) -> int | None:
    """The PostgreSQL backend holding the sequencer's leader lock (a session advisory lock)."""
    key = postgres.named_key(sequencer.LEADER_LOCK) & 0xFFFF_FFFF_FFFF_FFFF
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
            "AND classid::bigint = %s AND objid::bigint = %s",
            (key >> 32, key & 0xFFFF_FFFF),
        ).fetchone()
    return int(row[0]) if row else None


def wait_for(condition: Any, timeout: float, step: float = 0.05) -> float | None:
    """Seconds until `condition()` is true, or None after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(step)
    return None


@dataclass
class Client:
    """A load balancer's view: threads spread over the nodes, failing over when one stops answering."""

    ports: list[int]
    jobs: list[list[tuple[int, str, int]]]
    acked: list[int] = field(default_factory=list)  # serials answered 200
    errors: int = 0
    other: int = 0  # answers that were not 200
    down: set[int] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def worker(self, index: int) -> None:
        node = index % len(self.ports)
        conn: http.client.HTTPConnection | None = None
        for k, path, serial in self.jobs[index]:
            if self.stop.is_set():
                break
            while node in self.down:
                node = (node + 1) % len(self.ports)
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.ports[node], timeout=10)
                conn.request("GET", path, headers={"X-Forwarded-For": client_address(k)})
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                with self.lock:
                    self.errors += 1
                    if len(self.down) < len(self.ports) - 1:
                        self.down.add(node)  # as a health check would take the node out
                if conn is not None:
                    conn.close()
                conn = None
                continue
            with self.lock:
                if status == 200:
                    self.acked.append(serial)
                else:
                    self.other += 1
        if conn is not None:
            conn.close()


def kill_phase(
    args: argparse.Namespace, stack: ExitStack, url: str, codes: Codes, env: dict[str, str]
) -> dict[str, Any]:
    """kill -9 of the leading sequencer, then of a whole node, under load; then the checks."""
    since = max_scan_id(url)
    sequence = start(stack, [sys.executable, "-m", "verifier", "sequence"], env)
    if wait_for(lambda: leader_backend(url) is not None, 30) is None:
        raise SystemExit("`verifier sequence` did not take the leader lock")
    first_leader = leader_backend(url)
    nodes = []
    for _ in range(2):
        port = free_port()
        proc = start(stack, serve_args(port), env)  # with its sequencer, on standby
        nodes.append((proc, port))
    for proc, port in nodes:
        wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
    threads_count = args.kill_threads
    wanted = int(CODES_PER_SECOND * args.kill_seconds / threads_count) + 1
    client = Client([port for _, port in nodes], [codes.take(wanted) for _ in range(threads_count)])
    sampler = Sampler(url, args.poll, since)
    sampling = threading.Thread(target=sampler.run, daemon=True)
    sampling.start()
    threads = [threading.Thread(target=client.worker, args=(i,), daemon=True) for i in range(threads_count)]
    started = time.monotonic()
    for thread in threads:
        thread.start()

    time.sleep(max(0.0, started + args.kill_seconds * 0.3 - time.monotonic()))
    os.killpg(sequence.pid, signal.SIGKILL)  # the leader, maybe mid-batch
    sequence.wait()
    takeover = wait_for(lambda: leader_backend(url) not in (None, first_leader), 10)
    time.sleep(max(0.0, started + args.kill_seconds * 0.6 - time.monotonic()))
    acked_before_node_kill = len(client.acked)
    victim = nodes[0][0]
    os.killpg(victim.pid, signal.SIGKILL)  # master, worker and its sequencer (maybe the new leader)
    victim.wait()
    time.sleep(max(0.0, started + args.kill_seconds - time.monotonic()))
    client.stop.set()
    for thread in threads:
        thread.join()
    load_seconds = time.monotonic() - started

    conn = db.connect(url)
    try:
        pending_at_end = int(sequencer.status(conn)["pending"])  # type: ignore[call-overload]
        caught_up = wait_for(lambda: sequencer.status(conn)["pending"] == 0, 60, 0.1)
        rows = conn.execute("SELECT serial FROM scans WHERE id > ?", (since,)).fetchall()
    finally:
        conn.close()
    sampler.stop.set()
    sampling.join()
    recorded = {row[0] for row in rows}
    missing = [serial for serial in client.acked if serial not in recorded]
    for proc, _ in nodes[1:]:
        stop(proc)
    verify = subprocess.run(
        [sys.executable, "-m", "verifier", "audit", "verify", "--json"], env=env, capture_output=True, text=True
    )
    report = json.loads(verify.stdout) if verify.stdout.startswith("{") else {"ok": False, "pending": None}
    status = subprocess.run(
        [sys.executable, "-m", "verifier", "db", "status", "--json"], env=env, capture_output=True, text=True
    )
    p50, p99 = sampler.percentiles()
    return {
        "seconds": load_seconds,
        "acked": len(client.acked),
        "acked_before_node_kill": acked_before_node_kill,
        "scans": len(rows),
        "missing": len(missing),
        "client_errors": client.errors,
        "not_200": client.other,
        "takeover_s": takeover,
        "pending_at_end": pending_at_end,
        "caught_up_s": caught_up,
        "merge_p50": p50,
        "merge_p99": p99,
        "max_pending": sampler.max_pending,
        "verify_ok": verify.returncode == 0 and bool(report.get("ok")),
        "verify_entries": report.get("entries"),
        "verify_pending": report.get("pending"),
        "db_status_pending": json.loads(status.stdout).get("pending") if status.returncode == 0 else None,
    }


# --- the run -------------------------------------------------------------------------------


def ms(value: float) -> str:
    return "-" if value != value else f"{value * 1000:,.0f}"  # NaN: too few samples


def whole_ms(value: float) -> int | None:
    return None if value != value else round(value * 1000)


def seconds_text(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def bench(args: argparse.Namespace, stack: ExitStack, folder: Path) -> int:
    started_run = time.monotonic()
    cluster = start_cluster(stack)
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE bench")
        settings = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in ("server_version", "fsync", "synchronous_commit", "full_page_writes", "wal_sync_method")
        }
    url = cluster.url.rsplit("/", 1)[0] + "/bench"
    total_seconds = 2 * args.seconds * len(CONCURRENCY) + args.kill_seconds
    count = args.codes or int(CODES_PER_SECOND * total_seconds) + 1000
    t0 = time.monotonic()
    issued = issue_bench_batch(folder, count, BASE, database=url)
    all_codes = batch_codes(folder / "batch", BASE)
    assert [p for p, _ in all_codes] == issued
    random.Random(args.seed).shuffle(all_codes)  # not in serial order: no help from the B-tree's locality
    codes = Codes(all_codes)
    print(f"issued {count:,} codes into PostgreSQL in {time.monotonic() - t0:.1f} s", file=sys.stderr)

    env = {name: value for name, value in os.environ.items() if not name.startswith("VERIFIER_")}
    env |= {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH")])),
        "VERIFIER_DATABASE_URL": url,
        "VERIFIER_KEYS": str(folder / "keys"),
        "VERIFIER_BASE_URL": BASE,
        "VERIFIER_INSTANCE": str(folder / "instance"),
        "VERIFIER_TRUSTED_PROXIES": "1",  # behind a load balancer; the rate limit stays at its default
    }
    (folder / "requests.lua").write_text(textwrap.dedent(WRK_SCRIPT))

    nodes = []
    for _ in range(max(CONCURRENCY)):
        port = free_port()
        nodes.append((start(stack, serve_args(port), env), port))
    for proc, port in nodes:
        wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
    for k, path, _ in codes.take(20):  # warm-up: every node's pool open, a genuine scan to copy
        node = nodes[k % len(nodes)][1]
        web = http.client.HTTPConnection("127.0.0.1", node, timeout=10)
        web.request("GET", path, headers={"X-Forwarded-For": client_address(k)})
        if web.getresponse().status != 200:
            raise SystemExit(f"warm-up lookup of {path} failed")
        web.close()
    template = template_scan(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE floor_scans (LIKE scans INCLUDING DEFAULTS INCLUDING IDENTITY, PRIMARY KEY (id))")

    rows: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    paths: dict[int, dict[str, Any]] = {}
    for n in CONCURRENCY:
        base = baseline(args, cluster, url, template, n)
        paths[n] = write_path(args, cluster, url, codes, folder, env, n)
        look = throughput(args, cluster, url, nodes, codes, folder, env, n)
        rows[n] = (base, look)
        print(f"  N={n}: write path {paths[n]['rps']:,.0f}/s", file=sys.stderr)
        print(
            f"  N={n}: lookup {look['rps']:,.0f}/s, baseline {base['rps']:,.0f}/s, "
            f"merge p99 {ms(look['merge_p99'])} ms",
            file=sys.stderr,
        )
    for proc, _ in nodes:
        stop(proc)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE floor_scans")
    sizes = storage(url)

    serials = sorted({serial for _, serial in all_codes})
    drained = drain_phase(cluster, url, template, args.drain, serials)
    print(f"  sequencer: {drained['rate']:,.0f} entries/s", file=sys.stderr)
    killed = kill_phase(args, stack, url, codes, env)
    elapsed = time.monotonic() - started_run

    print(
        f"PostgreSQL {settings['server_version']} on 127.0.0.1:{cluster.port}: fsync={settings['fsync']}, "
        f"synchronous_commit={settings['synchronous_commit']}, full_page_writes={settings['full_page_writes']}, "
        f"wal_sync_method={settings['wal_sync_method']}; {os.cpu_count()} cores; {args.seconds} s a phase; "
        f"lookup nodes: `verifier serve --workers 1`, wrk -t1 -c{args.connections} each"
    )
    print(
        f"{'N':>2} {'lookup/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'CPU µs':>7} "
        f"{'insert/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'CPU µs':>7} {'ratio':>6} "
        f"{'merge p50':>10} {'merge p99':>10} {'pending':>8} {'non-2xx':>8} {'reused':>7}"
    )
    for n, (base, look) in rows.items():
        print(
            f"{n:>2} {look['rps']:>9,.0f} {look['p50']:>7.1f} {look['p99']:>7.1f} {look['cpu_us']:>7,.0f} "
            f"{base['rps']:>9,.0f} {base['p50']:>7.1f} {base['p99']:>7.1f} {base['cpu_us']:>7,.0f} "
            f"{look['rps'] / base['rps']:>6.2f} {ms(look['merge_p50']):>7} ms {ms(look['merge_p99']):>7} ms "
            f"{look['max_pending']:>8,} {look['non2xx'] + look['socket_errors']:>8,.0f} {look['reused']:>7,.0f}"
        )
    print(
        "write path in-process (the lookup's transaction and signature check, no HTTP; N processes, "
        "a sequencer leading from the idle nodes):"
    )
    print(f"{'N':>2} {'scans/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'CPU µs':>7} {'PG µs':>7} {'WAL B':>7} {'ratio':>6}")
    for n, wp in paths.items():
        base = rows[n][0]
        print(
            f"{n:>2} {wp['rps']:>9,.0f} {wp['p50']:>7.1f} {wp['p99']:>7.1f} {wp['cpu_us']:>7,.0f} "
            f"{wp['pg_cpu_us']:>7,.0f} {wp['wal_bytes']:>7,.0f} {wp['rps'] / base['rps']:>6.2f}"
        )
    print(
        "  CPU µs: CPU a scan (lookup: the nodes' process groups, sequencers included, + PostgreSQL; insert: "
        "the writers + PostgreSQL); split lookup node/PostgreSQL: "
        + ", ".join(f"N={n} {look['node_cpu_us']:,.0f}/{look['pg_cpu_us']:,.0f}" for n, (_, look) in rows.items())
        + "; insert PostgreSQL: "
        + ", ".join(f"N={n} {base['pg_cpu_us']:,.0f}" for n, (base, _) in rows.items())
        + f"; wrk took {rows[max(CONCURRENCY)][1]['wrk_cpu_us']:,.0f} µs a request more"
    )
    print(
        f"  merge: commit-to-chained, an upper bound (scan `at` to the first poll that sees it chained, polled "
        f"every {args.poll * 1000:.0f} ms); pending: the most scans seen waiting at once"
    )
    print(
        "  WAL a scan (lookup, chaining included / insert): "
        + ", ".join(f"N={n} {look['wal_bytes']:,.0f}/{base['wal_bytes']:,.0f} B" for n, (base, look) in rows.items())
    )
    print(
        f"storage after the load phases ({sizes['scans']:,} scans, vacuumed): a scan row "
        f"{sizes['row_bytes']:,.0f} B (heap {sizes['heap_bytes']:,.0f} B a scan with page overhead and dead "
        f"versions), indexes "
        + ", ".join(f"{name} {size:,.0f}" for name, size in sizes["indexes"].items())
        + f" B a scan; its log entry {sizes['entry_bytes']:,.0f} B (audit_log with its index "
        f"{sizes['log_bytes']:,.0f} B a scan); code_checks {sizes['code_checks_bytes']:,.0f} B a code; "
        f"scans UPDATEs {sizes['updates']:,} of which HOT {sizes['hot_updates']:,}"
    )
    print(
        f"sequencer.drain: {drained['entries']:,} entries in {drained['seconds']:.1f} s = {drained['rate']:,.0f}/s "
        f"({drained['cpu_us']:,.0f} µs CPU an entry, this process + PostgreSQL); pending after: "
        f"{drained['pending_after']}"
    )
    print(
        f"kill -9 under load ({killed['seconds']:.0f} s, {args.kill_threads} client threads, 2 nodes): "
        f"acknowledged (HTTP 200) {killed['acked']:,} ({killed['acked_before_node_kill']:,} before the node's kill), "
        f"scans recorded {killed['scans']:,}, acknowledged but "
        f"missing {killed['missing']}; client errors {killed['client_errors']} (the killed node's connections), "
        f"other answers {killed['not_200']}; a standby sequencer took over {seconds_text(killed['takeover_s'])} "
        f"after the leader's kill; pending when the load stopped {killed['pending_at_end']:,}, 0 after "
        f"{seconds_text(killed['caught_up_s'])}; merge p50/p99 "
        f"{ms(killed['merge_p50'])}/{ms(killed['merge_p99'])} ms (kills included); `verifier audit verify`: "
        f"{'ok' if killed['verify_ok'] else 'FAILED'} ({killed['verify_entries']} entries, pending "
        f"{killed['verify_pending']}); `verifier db status` pending {killed['db_status_pending']}"
    )
    four_base, four = rows[max(CONCURRENCY)]
    summary = {
        "lookup_rps": {n: round(look["rps"], 1) for n, (_, look) in rows.items()},
        "baseline_rps": {n: round(base["rps"], 1) for n, (base, _) in rows.items()},
        "ratio": {n: round(look["rps"] / base["rps"], 3) for n, (base, look) in rows.items()},
        "write_path_rps": {n: round(wp["rps"], 1) for n, wp in paths.items()},
        "write_path_ratio": {n: round(wp["rps"] / rows[n][0]["rps"], 3) for n, wp in paths.items()},
        "write_path_cpu_us": {n: round(wp["cpu_us"]) for n, wp in paths.items()},
        "lookup_cpu_us": {n: round(look["cpu_us"]) for n, (_, look) in rows.items()},
        "lookup_node_cpu_us": {n: round(look["node_cpu_us"]) for n, (_, look) in rows.items()},
        "lookup_pg_cpu_us": {n: round(look["pg_cpu_us"]) for n, (_, look) in rows.items()},
        "baseline_cpu_us": {n: round(base["cpu_us"]) for n, (base, _) in rows.items()},
        "baseline_pg_cpu_us": {n: round(base["pg_cpu_us"]) for n, (base, _) in rows.items()},
        "merge_p50_ms": {n: whole_ms(look["merge_p50"]) for n, (_, look) in rows.items()},
        "merge_p99_ms": {n: whole_ms(look["merge_p99"]) for n, (_, look) in rows.items()},
        "wal_bytes_a_scan": {n: round(look["wal_bytes"]) for n, (_, look) in rows.items()},
        "wal_bytes_a_insert": {n: round(base["wal_bytes"]) for n, (base, _) in rows.items()},
        "storage": {k: (round(v) if isinstance(v, float) else v) for k, v in sizes.items() if k != "indexes"}
        | {"indexes": {k: round(v) for k, v in sizes["indexes"].items()}},
        "sequencer_rps": round(drained["rate"]),
        "sequencer_cpu_us": round(drained["cpu_us"]),
        "kill": killed,
        "seconds": round(elapsed),
    }
    print(json.dumps(summary, separators=(",", ":")))
    print(
        f"targets: ratio at N=4 {four['rps'] / four_base['rps']:.2f} over HTTP, "
        f"{paths[max(CONCURRENCY)]['rps'] / four_base['rps']:.2f} for the write path (>= 0.50), merge p99 at N=4 "
        f"{ms(four['merge_p99'])} ms (<= 1000); run took {elapsed:.0f} s"
    )

    failed = []
    if any(look["non2xx"] or look["socket_errors"] for _, look in rows.values()):
        failed.append("non-2xx answers or socket errors in a throughput phase")
    if killed["missing"]:
        failed.append(f"{killed['missing']} acknowledged scans are not in the scans table")
    if killed["caught_up_s"] is None:
        failed.append("the log did not catch up (pending never went to 0)")
    if not killed["verify_ok"] or killed["verify_pending"] != 0:
        failed.append("`verifier audit verify` did not pass with nothing pending")
    if drained["pending_after"]:
        failed.append("sequencer.drain left entries pending")
    for reason in failed:
        print(f"FAILED: {reason}", file=sys.stderr)
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="each throughput phase (lookup and baseline)")
    parser.add_argument("--connections", type=int, default=2, help="wrk connections a node (one sync worker each)")
    parser.add_argument("--drain", type=int, default=100_000, help="pending scans for the sequencer phase")
    parser.add_argument("--kill-seconds", type=int, default=15, help="the kill -9 phase's load")
    parser.add_argument("--kill-threads", type=int, default=4, help="client threads of the kill -9 phase")
    parser.add_argument("--poll", type=float, default=0.05, help="merge-delay sampling interval, seconds")
    parser.add_argument("--codes", type=int, default=0, help=f"codes to issue (default {CODES_PER_SECOND:,} a second)")
    parser.add_argument("--seed", type=int, default=15, help="seed of the code order")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3 s phases, 10,000 to drain, 6 s of kills")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.drain, args.kill_seconds = 3, 10_000, 6
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    # Ctrl-C and kill both unwind through the ExitStack: servers' process groups, then the cluster.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp, ExitStack() as stack:
        status = bench(args, stack, Path(tmp))
    sys.exit(status)


if __name__ == "__main__":
    main()
