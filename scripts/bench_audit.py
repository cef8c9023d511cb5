#!/usr/bin/env python3
"""Audit queries and CSV export over a generated scan log (default 10,000,000 scans).

    .venv/bin/python scripts/bench_audit.py [--scans 10000000] [--keep DIR] [--lookup-seconds 15] [--no-serve]

Generates scans spread over 90 days, 200 batches of 5 enterprises, realistic verdict and
region mixes, straight into SQLite (the hash chain is not the subject here), then measures,
through the audit API in-process: filtered first pages, a deep keyset page, anomalies, and the
streamed CSV export of one enterprise (rows/s and the peak memory of the exporting process).

Then the starvation test: a real `verifier serve` (2 sync workers) on that database, loaded
with lookups of genuine codes (keep-alive HTTP clients, no rate limit), first alone and then
while an inspector requests /api/v1/audit/anomalies?days=30 back to back: lookup p50/p99 and
rate of both phases, same run, and what the anomaly requests answered.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import os
import random
import resource
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from _benchlib import batch_paths, free_port, issue_bench_batch, start, wait_ready

from verifier import accounts, db
from verifier.web import create_app

BASE = "HTTPS://V.CN/"

REASONS = (
    ["genuine"] * 60
    + ["genuine-repeat"] * 30
    + ["suspicious-repeat"] * 4
    + ["bad-signature"] * 2
    + ["unknown-batch", "malformed", "recalled", "mistyped"]
)
REGIONS = [
    ("CN", "Guangdong"),
    ("CN", "Zhejiang"),
    ("CN", "Beijing"),
    ("CN", "Sichuan"),
    ("CN", "Yunnan"),
    ("US", None),
]


def generate(db_path: Path, total: int) -> None:
    conn = db.connect(db_path)
    with db.transaction(conn):
        for e in range(1, 6):
            conn.execute(
                "INSERT INTO enterprises (id, name, created_at) VALUES (?, ?, '2026-01-01')", (e, f"Enterprise {e}")
            )
            conn.execute(
                "INSERT INTO products (id, enterprise_id, name, created_at) VALUES (?, ?, 'P', '2026-01-01')", (e, e)
            )
        for b in range(1, 201):
            e = (b - 1) % 5 + 1
            conn.execute(
                """INSERT INTO batches (id, enterprise_id, product_id, mark, form, count, kid, base_url, status,
                            created_at, created_by) VALUES (?, ?, ?, 'traceability', 'compact', 100000, 'abcd',
                            'HTTPS://V.CN/', 'active', '2026-01-01', 'bench')""",
                (b, e, e),
            )
        accounts.add_user(
            conn, "ian", "inspector", "bench password", None, "bench", dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        )
        accounts.add_user(
            conn, "eve", "enterprise", "bench password", 3, "bench", dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        )
    rng = random.Random(7)
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - dt.timedelta(days=89)  # the log ends today: anomaly windows (days before now) cover it
    step = 90 * 86400 / total
    conn.execute("PRAGMA synchronous = OFF")  # generated data: durability is not what is measured
    begun = time.perf_counter()
    chunk = 200_000
    for first in range(1, total + 1, chunk):
        rows = []
        for i in range(first, min(first + chunk, total + 1)):
            at = (start + dt.timedelta(seconds=i * step)).isoformat(timespec="milliseconds")
            reason = rng.choice(REASONS)
            country, region = rng.choice(REGIONS)
            batch = rng.randint(1, 200)
            serial = batch * 10**10 + rng.randrange(100000)
            channel = rng.choice(("qr", "qr", "qr", "manual", "api"))
            pin = (
                rng.choice(("first", "first", "mismatch", "reused"))
                if channel == "manual" and rng.random() < 0.2
                else None
            )
            rows.append(
                (
                    i,
                    at,
                    channel,
                    reason,
                    serial,
                    batch,
                    1,
                    1,
                    pin,
                    country,
                    region,
                    f"203.0.{i % 256}.0/24",
                    f"{i:016x}",
                    "WeChat/Android",
                    f"{rng.getrandbits(64):016x}",
                )
            )
        with db.transaction(conn):
            conn.executemany(
                """INSERT INTO scans (id, at, channel, reason, serial, batch_id, counted, checks, pin, country,
                                region, ip_prefix, ip_hash, user_agent, session_hash)
                                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                rows,
            )
        done = min(first + chunk - 1, total)
        rate = done / (time.perf_counter() - begun)
        print(f"\r  generated {done:,}/{total:,} scans ({rate:,.0f}/s)", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("ANALYZE")


def timed(client, path: str, token: str, repeat: int = 7) -> tuple[float, int]:
    times, status = [], 0
    for _ in range(repeat):
        t = time.perf_counter()
        response = client.get(path, headers={"Authorization": f"Bearer {token}"})
        response.get_data()
        times.append((time.perf_counter() - t) * 1000)
        status = response.status_code
    return statistics.median(times), status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=10_000_000)
    parser.add_argument("--keep", type=Path, help="Generate into (or reuse) this folder.")
    parser.add_argument("--lookup-seconds", type=float, default=15, help="Length of each lookup load phase.")
    parser.add_argument("--connections", type=int, default=4, help="Concurrent lookup clients.")
    parser.add_argument("--no-serve", action="store_true", help="Skip the lookup-under-audit-load test.")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-audit-"))
    folder.mkdir(parents=True, exist_ok=True)
    db_path = folder / "verifier.db"
    if not db_path.exists():
        generate(db_path, args.scans)
    size = db_path.stat().st_size
    app = create_app(
        {
            "DATABASE": str(db_path),
            "KEYS_DIR": str(folder / "keys"),
            "BASE_URLS": ["HTTPS://V.CN/"],
            "RATELIMIT": "off",
            "INSTANCE": str(folder),
            "SECRET_KEY": b"bench",
        }
    )
    conn = app.extensions["verifier"].connection()
    with db.transaction(conn):
        ian = accounts.issue_token(conn, "ian", "bench", "bench", dt.datetime(2026, 1, 1, tzinfo=dt.UTC))[1]
        eve = accounts.issue_token(conn, "eve", "bench", "bench", dt.datetime(2026, 1, 1, tzinfo=dt.UTC))[1]
    total = conn.execute("SELECT max(id) FROM scans").fetchone()[0]
    client = app.test_client()
    serial = conn.execute("SELECT serial FROM scans WHERE id = ?", (total // 2,)).fetchone()[0]
    first = dt.date.fromisoformat(conn.execute("SELECT min(at) FROM scans").fetchone()[0][:10])
    day = lambda n: (first + dt.timedelta(days=n)).isoformat()  # noqa: E731
    print(f"{total:,} scans from {first} to {day(89)}, database {size / 1e9:.2f} GB")
    queries = {
        "newest page (no filter)": "/api/v1/audit/scans?limit=100",
        "batch filter": "/api/v1/audit/scans?batch=42&limit=100",
        "code filter": f"/api/v1/audit/scans?code={serial:016d}",
        "verdict bad-signature": "/api/v1/audit/scans?reason=bad-signature&limit=100",
        "time range (one day, 2 months back)": f"/api/v1/audit/scans?since={day(45)}&until={day(46)}&limit=100",
        "region + channel": "/api/v1/audit/scans?country=CN&region=Yunnan&channel=manual&limit=100",
        "deep keyset page (id 1,000)": "/api/v1/audit/scans?after=1000&limit=100",
        "enterprise account, first page": "/api/v1/audit/scans?limit=100",
    }
    queries["anomalies, 7 days"] = "/api/v1/audit/anomalies?days=7"
    queries["anomalies, 30 days"] = "/api/v1/audit/anomalies?days=30"
    queries["enterprise anomalies, 30 days"] = "/api/v1/audit/anomalies?days=30"
    for label, path in queries.items():
        token = eve if label.startswith("enterprise") else ian
        ms, status = timed(client, path, token, repeat=3 if "anomalies" in path else 7)
        print(f"  {label:<38} {ms:8.1f} ms  (HTTP {status})")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    response = client.get("/api/v1/audit/scans.csv?batch=3", headers={"Authorization": f"Bearer {eve}"})
    rows = sum(chunk.count(b"\n") for chunk in response.response) - 1
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    response = client.get(
        f"/api/v1/audit/scans.csv?since={day(31)}&until={day(52)}", headers={"Authorization": f"Bearer {ian}"}
    )
    big_rows = sum(chunk.count(b"\n") for chunk in response.response) - 1
    big_seconds = time.perf_counter() - t
    peak = max(peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    print(
        f"CSV export, one batch (enterprise account): {rows:,} rows in {seconds:.1f} s = {rows / seconds:,.0f} rows/s"
    )
    print(
        f"CSV export, three weeks (inspector): {big_rows:,} rows in {big_seconds:.1f} s"
        f" = {big_rows / big_seconds:,.0f} rows/s"
    )
    print(f"peak RSS of this process: {peak / 1024:.0f} MiB (before the exports: {before / 1024:.0f} MiB)")
    if not args.no_serve:
        lookup_under_audit(folder, db_path, ian, args.lookup_seconds, args.connections)
    if not args.keep:
        print(f"(generated database left in {folder}; delete it or pass --keep to reuse it)")


# --- lookups while the audit works ---------------------------------------------------------


def genuine_paths(folder: Path, db_path: Path, count: int = 500) -> list[str]:
    """Paths of `count` genuine codes of a batch issued (once) into the bench database."""
    out_dir = folder / "lookup-codes"
    if (out_dir / "codes.csv").exists():
        return batch_paths(out_dir, BASE)
    return issue_bench_batch(folder, count, BASE, database=db_path, out_dir=out_dir, enterprise="Enterprise 1")


def load(
    port: int, paths: list[str], seconds: float, connections: int, headers: dict | None = None
) -> list[tuple[float, int]]:
    """(latency ms, status) of every request of `connections` keep-alive clients for `seconds`."""
    results: list[tuple[float, int]] = []
    stop = time.monotonic() + seconds

    def client(offset: int) -> None:
        conn, i, mine = http.client.HTTPConnection("127.0.0.1", port, timeout=60), offset, []
        while time.monotonic() < stop:
            t = time.perf_counter()
            try:
                conn.request("GET", paths[i % len(paths)], headers=headers or {})
                response = conn.getresponse()
                response.read()
                status = response.status
            except OSError:
                conn.close()
                conn, status = http.client.HTTPConnection("127.0.0.1", port, timeout=60), 599
            mine.append(((time.perf_counter() - t) * 1000, status))
            i += connections
        conn.close()
        results.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def summary(results: list[tuple[float, int]], seconds: float) -> str:
    times = sorted(ms for ms, _ in results)
    p = lambda q: times[min(len(times) - 1, int(q * len(times)))] if times else float("nan")  # noqa: E731
    errors = sum(status >= 500 for _, status in results)
    return (
        f"{len(times) / seconds:7.0f} req/s  p50 {p(0.5):6.1f} ms  p99 {p(0.99):7.1f} ms"
        f"  max {p(1.0):7.1f} ms  5xx {errors}"
    )


def lookup_under_audit(folder: Path, db_path: Path, token: str, seconds: float, connections: int) -> None:
    paths = genuine_paths(folder, db_path)
    port = free_port()
    env = {
        **os.environ,
        "VERIFIER_DB": str(db_path),
        "VERIFIER_KEYS": str(folder / "keys"),
        "VERIFIER_BASE_URL": BASE,
        "VERIFIER_RATELIMIT": "off",
        "VERIFIER_SECRET_KEY": "bench",
        "VERIFIER_INSTANCE": str(folder),
    }
    with ExitStack() as stack:
        serve = [sys.executable, "-m", "verifier", "serve", "--port", str(port), "--workers", "2"]
        server = start(stack, serve, env)
        wait_ready(f"http://127.0.0.1:{port}/healthz", server, timeout=60)
        load(port, paths, 2, connections)  # warm-up
        alone = load(port, paths, seconds, connections)
        audit: list[tuple[float, int]] = []
        done = threading.Event()

        def inspector() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            while not done.is_set():
                t = time.perf_counter()
                conn.request("GET", "/api/v1/audit/anomalies?days=30", headers={"Authorization": f"Bearer {token}"})
                response = conn.getresponse()
                response.read()
                audit.append(((time.perf_counter() - t) * 1000, response.status))
            conn.close()

        thread = threading.Thread(target=inspector)
        thread.start()
        busy = load(port, paths, seconds, connections)
        done.set()
        thread.join()
        statuses = {s: sum(1 for _, x in audit if x == s) for s in sorted({x for _, x in audit})}
        print(
            f"lookups under `verifier serve` (2 sync workers), {connections} keep-alive clients, {seconds:.0f} s each:"
        )
        print(f"  lookups alone:               {summary(alone, seconds)}")
        print(f"  lookups while anomalies run: {summary(busy, seconds)}")
        print(
            f"  anomalies?days=30 requests: {len(audit)}, HTTP {statuses}, "
            f"median {statistics.median(ms for ms, _ in audit) if audit else 0:.0f} ms"
        )
        a, b = (sorted(ms for ms, _ in r) for r in (alone, busy))
        print(f"  lookup p99 ratio (with / without anomalies): {b[int(0.99 * len(b))] / a[int(0.99 * len(a))]:.2f}")


if __name__ == "__main__":
    main()
