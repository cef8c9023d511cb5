#!/usr/bin/env python3
"""The cost of a request over the rate limit: `verifier serve` answering 429s to one client.

    .venv/bin/python scripts/bench_ratelimit.py [--requests 3000] [--concurrency 8] [--workers 2]

A bounded load on 127.0.0.1 (no wrk needed): the server runs with VERIFIER_RATELIMIT=1/day, so
after the first request every request of the client is over the limit. Reports the throughput,
latency, the workers' CPU time per request (from /proc), and what the rejected requests wrote to
the registry (its WAL's growth and PRAGMA data_version). Run it with PYTHONPATH pointing at
another checkout to compare versions.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import http.client
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from verifier import codes, issue, keys


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server at {url} did not start")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes, from /proc/<pid>/stat."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-ratelimit-") as tmp:
        tmp_path = Path(tmp)
        base = "HTTPS://VERIFY.EXAMPLE.CN/"
        now = dt.datetime.now(dt.UTC)
        record = keys.create_key(tmp_path / "keys", "bench", b"bench", now)
        _, private = keys.load_private_key(tmp_path / "keys", "bench", b"bench")
        request = issue.BatchRequest(
            mark=codes.MARKS[0],
            enterprise="Bench",
            product="Tea",
            count=10,
            out_dir=tmp_path / "batch",
            base_url=base,
            formats=("csv",),
        )
        db_path = tmp_path / "verifier.db"
        issue.issue_batch(db_path, request, private, bytes.fromhex(record.kid))
        with open(tmp_path / "batch" / "codes.csv", encoding="utf-8") as fh:
            path = "/" + next(csv.DictReader(fh))["url"][len(base) :]
        env = {
            **os.environ,
            "VERIFIER_DB": str(db_path),
            "VERIFIER_KEYS": str(tmp_path / "keys"),
            "VERIFIER_BASE_URL": base,
            "VERIFIER_RATELIMIT": "1/day",
            "VERIFIER_SECRET_KEY": "bench",
            "VERIFIER_INSTANCE": str(tmp_path / "instance"),
        }
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "verifier", "serve", "--port", str(port), "--workers", str(args.workers)],
            env=env,
            start_new_session=True,
        )
        try:
            wait_ready(f"http://127.0.0.1:{port}/healthz")

            def get(_: int) -> tuple[int, float]:
                started = time.perf_counter()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                conn.close()
                return response.status, time.perf_counter() - started

            assert get(0)[0] == 200  # the one allowed request; everything after it is over the limit
            for _ in range(50):
                get(0)  # warm up every worker
            workers = children(server.pid)
            watcher = sqlite3.connect(db_path)
            version, wal = watcher.execute("PRAGMA data_version").fetchone()[0], os.path.getsize(f"{db_path}-wal")
            cpu = cpu_seconds(workers)
            started = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                results = list(pool.map(get, range(args.requests)))
            elapsed = time.perf_counter() - started
            cpu = cpu_seconds(workers) - cpu
            changed = watcher.execute("PRAGMA data_version").fetchone()[0] != version
            wal_growth = os.path.getsize(f"{db_path}-wal") - wal
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=15)

    statuses = {status for status, _ in results}
    latencies = sorted(seconds for _, seconds in results)
    print(
        f"{args.requests} requests over the limit, {args.concurrency} at a time, {args.workers} sync workers, "
        f"127.0.0.1; statuses {sorted(statuses)}"
    )
    print(
        f"throughput {args.requests / elapsed:,.0f} rps; latency p50 {statistics.median(latencies) * 1000:.2f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.2f} ms"
    )
    print(f"worker CPU per request {cpu / args.requests * 1e6:,.0f} µs")
    print(
        f"registry: WAL grew {wal_growth:,} bytes ({wal_growth / args.requests:,.0f} a request); "
        f"data_version {'changed' if changed else 'unchanged'}"
    )


if __name__ == "__main__":
    main()
