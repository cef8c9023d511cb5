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
import http.client
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from _benchlib import free_port, group_cpu_seconds, issue_bench_batch, start, wait_ready


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-ratelimit-") as tmp:
        tmp_path = Path(tmp)
        base = "HTTPS://VERIFY.EXAMPLE.CN/"
        path = issue_bench_batch(tmp_path, 10, base)[0]
        db_path = tmp_path / "verifier.db"
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
        with ExitStack() as stack:
            serve = [sys.executable, "-m", "verifier", "serve", "--port", str(port), "--workers", str(args.workers)]
            server = start(stack, serve, env)
            wait_ready(f"http://127.0.0.1:{port}/healthz", server)

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
            watcher = sqlite3.connect(db_path)
            version, wal = watcher.execute("PRAGMA data_version").fetchone()[0], os.path.getsize(f"{db_path}-wal")
            cpu = group_cpu_seconds(server.pid)
            started = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                results = list(pool.map(get, range(args.requests)))
            elapsed = time.perf_counter() - started
            cpu = group_cpu_seconds(server.pid) - cpu
            changed = watcher.execute("PRAGMA data_version").fetchone()[0] != version
            wal_growth = os.path.getsize(f"{db_path}-wal") - wal

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
    print(f"server CPU per request (master and workers) {cpu / args.requests * 1e6:,.0f} µs")
    print(
        f"registry: WAL grew {wal_growth:,} bytes ({wal_growth / args.requests:,.0f} a request); "
        f"data_version {'changed' if changed else 'unchanged'}"
    )


if __name__ == "__main__":
    main()
