#!/usr/bin/env python3
"""Audit queries and CSV export over a generated scan log (default 10,000,000 scans).

    .venv/bin/python scripts/bench_audit.py [--scans 10000000] [--keep DIR]

Generates scans spread over 90 days, 200 batches of 5 enterprises, realistic verdict and
region mixes, straight into SQLite (the hash chain is not the subject here), then measures,
through the audit API in-process: filtered first pages, a deep keyset page, and the streamed
CSV export of one enterprise (rows/s and the peak memory of the exporting process).
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from verifier import accounts, store
from verifier.web import create_app

REASONS = ["genuine"] * 60 + ["genuine-repeat"] * 30 + ["suspicious-repeat"] * 4 + ["bad-signature"] * 2 + \
          ["unknown-batch", "malformed", "recalled", "mistyped"]  # fmt: skip
REGIONS = [("CN", "Guangdong"), ("CN", "Zhejiang"), ("CN", "Beijing"), ("CN", "Sichuan"), ("CN", "Yunnan"), ("US", None)]


def generate(db_path: Path, total: int) -> None:
    db = store.connect(db_path)
    conn = db.conn
    with store.transaction(conn):
        for e in range(1, 6):
            conn.execute("INSERT INTO enterprises (id, name, created_at) VALUES (?, ?, '2026-01-01')", (e, f"Enterprise {e}"))
            conn.execute("INSERT INTO products (id, enterprise_id, name, created_at) VALUES (?, ?, 'P', '2026-01-01')", (e, e))
        for b in range(1, 201):
            e = (b - 1) % 5 + 1
            conn.execute("""INSERT INTO batches (id, enterprise_id, product_id, mark, form, count, kid, base_url, status,
                            created_at, created_by) VALUES (?, ?, ?, 'traceability', 'compact', 100000, 'abcd',
                            'HTTPS://V.CN/', 'active', '2026-01-01', 'bench')""", (b, e, e))  # fmt: skip
        accounts.add_user(conn, "ian", "inspector", "bench password", None, "bench", "2026-01-01")
        accounts.add_user(conn, "eve", "enterprise", "bench password", 3, "bench", "2026-01-01")
    rng = random.Random(7)
    start = dt.datetime(2026, 8, 1, tzinfo=dt.timezone.utc)
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
            rows.append((i, at, rng.choice(("qr", "qr", "qr", "manual", "api")), reason, serial, batch, 1, 1, country,
                         region, f"203.0.{i % 256}.0/24", f"{i:016x}", "WeChat/Android"))  # fmt: skip
        with store.transaction(conn):
            conn.executemany("""INSERT INTO scans (id, at, channel, reason, serial, batch_id, counted, checks, country,
                                region, ip_prefix, ip_hash, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                             rows)  # fmt: skip
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
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-audit-"))
    folder.mkdir(parents=True, exist_ok=True)
    db_path = folder / "verifier.db"
    if not db_path.exists():
        generate(db_path, args.scans)
    size = db_path.stat().st_size
    app = create_app({"DATABASE": str(db_path), "KEYS_DIR": str(folder / "keys"), "BASE_URLS": ["HTTPS://V.CN/"],
                      "RATELIMIT": "off", "INSTANCE": str(folder), "SECRET_KEY": b"bench"})  # fmt: skip
    conn = app.extensions["verifier"].connection()
    with store.transaction(conn):
        ian = accounts.issue_token(conn, "ian", "bench", "bench", "2026-01-01")[1]
        eve = accounts.issue_token(conn, "eve", "bench", "bench", "2026-01-01")[1]
    total = conn.execute("SELECT max(id) FROM scans").fetchone()[0]
    client = app.test_client()
    serial = conn.execute("SELECT serial FROM scans WHERE id = ?", (total // 2,)).fetchone()[0]
    print(f"{total:,} scans, database {size / 1e9:.2f} GB")
    queries = {
        "newest page (no filter)": "/api/v1/audit/scans?limit=100",
        "batch filter": "/api/v1/audit/scans?batch=42&limit=100",
        "code filter": f"/api/v1/audit/scans?code={serial:016d}",
        "verdict bad-signature": "/api/v1/audit/scans?reason=bad-signature&limit=100",
        "time range (one day, 2 months back)": "/api/v1/audit/scans?since=2026-09-15&until=2026-09-16&limit=100",
        "region + channel": "/api/v1/audit/scans?country=CN&region=Yunnan&channel=manual&limit=100",
        "deep keyset page (id 1,000)": "/api/v1/audit/scans?after=1000&limit=100",
        "enterprise account, first page": "/api/v1/audit/scans?limit=100",
    }
    for label, path in queries.items():
        token = eve if label.startswith("enterprise") else ian
        ms, status = timed(client, path, token)
        print(f"  {label:<38} {ms:8.1f} ms  (HTTP {status})")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    response = client.get("/api/v1/audit/scans.csv?batch=3", headers={"Authorization": f"Bearer {eve}"})
    rows = sum(chunk.count(b"\n") for chunk in response.response) - 1
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    response = client.get("/api/v1/audit/scans.csv?since=2026-09-01&until=2026-09-21", headers={"Authorization": f"Bearer {ian}"})
    big_rows = sum(chunk.count(b"\n") for chunk in response.response) - 1
    big_seconds = time.perf_counter() - t
    peak = max(peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    print(f"CSV export, one batch (enterprise account): {rows:,} rows in {seconds:.1f} s = {rows / seconds:,.0f} rows/s")
    print(f"CSV export, three weeks (inspector): {big_rows:,} rows in {big_seconds:.1f} s = {big_rows / big_seconds:,.0f} rows/s")
    print(f"peak RSS of this process: {peak / 1024:.0f} MiB (before the exports: {before / 1024:.0f} MiB)")
    if not args.keep:
        print(f"(generated database left in {folder}; delete it or pass --keep to reuse it)")


if __name__ == "__main__":
    main()
