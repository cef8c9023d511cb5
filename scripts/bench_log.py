#!/usr/bin/env python3
"""The transparency log's costs: tree extension, proofs, `audit verify`, and what the log costs a lookup.

    .venv/bin/python scripts/bench_log.py [--entries 100000] [--proofs 2000] [--seconds 5] [--runs 2]
        [--postgres | --postgres-url URL] [--no-lookup] [--no-http]
    .venv/bin/python scripts/bench_log.py --entries 10000000 --no-lookup    # the issue's 10M figure

Each engine (SQLite always; PostgreSQL with --postgres, a throwaway durable cluster as in
bench_lookup, or --postgres-url, the maintenance database of a running server where a database
is made and dropped) gets a database of `--entries` log entries, built fast with bulk SQL rather
than through HTTP: one real scan of a forged code is made through the product (the Flask app,
in-process), then copied `--entries` times with new ids and times, each copy with its own entry
(leaf data `logtree.leaf_bytes`, hash = the hex leaf hash, as the lookup writes them). A forged
code's scan counts no check, so the copies leave every projection as the log says (verify finds
no problem, which the script checks). Then, on that database:

- sequencer: `logtree.extend(conn, batch)` in write transactions until the tree covers every
  entry: entries/s (`--batch`, default the sequencer's own batch);
- proofs: `logtree.inclusion_proof` of random leaves and `logtree.consistency_proof` from random
  old sizes, against the full tree: proofs/s (at most `--proofs` each, at most `--seconds`);
- audit verify: `auditlog.verify` (the replay and every comparison), entries/s.

Then what the log costs a lookup, in the same run, ratios against a baseline measured beside it
(alternating in ABBA order, `--runs` times each, best kept):

- in-process write path (SQLite, the Flask test client, distinct codes): scans/s with the
  per-scan log entry (`auditlog.append_scan` as shipped) and without it (patched to a no-op);
- HTTP (`--no-http` skips it; needs wrk): `verifier serve` with the log machinery (the sequencer
  extending the tree and signing checkpoints every second with a log key, beside the workers) vs
  `verifier serve --no-sequencer` without a log key, each loaded by wrk as in bench_lookup (every
  request a distinct code, X-Forwarded-For from a pool, production rate limit): rps and p99.
  Target (issue 12): the log costs the lookup <= 5 % (ratio >= 0.95).

Everything on 127.0.0.1; a short table at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import signal
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psycopg
from _benchlib import WRK_SCRIPT, free_port, issue_bench_batch, start, start_cluster, stop, wait_ready
from bench_lookup import client_pool, run_wrk

from verifier import auditlog, codes, db, logtree, merkle, sequencer
from verifier.repos.scans import INSERT_COLUMNS

BASE = "HTTPS://VERIFY.EXAMPLE.CN/"
LOG_NAME = "bench.example/log"
CHUNK = 50_000  # rows a bulk insert statement batch


# --- building a database of N entries ----------------------------------------------------------


def forged_path(path: str) -> str:
    """A label path with one signature bit flipped: well formed, never genuine."""
    code = codes.decode(BASE + path.lstrip("/"), [BASE])
    signature = bytearray(code.signature)
    signature[0] ^= 1
    code.signature = bytes(signature)
    return "/" + codes.encode_url(code, BASE)[len(BASE) :]


def app_config(location: Path | str, folder: Path) -> dict[str, object]:
    return {
        "DATABASE": str(location),
        "KEYS_DIR": str(folder / "keys"),
        "JWKS_FILE": None,
        "BASE_URLS": [BASE],
        "SECRET_KEY": b"bench-secret",
        "RATELIMIT": "off",
        "INSTANCE": str(folder / "instance"),
        "TRUSTED_PROXIES": 0,
    }


def columns(conn: db.Conn, table: str) -> list[str]:
    if db.is_postgres_conn(conn):
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
            (table,),
        ).fetchall()
    else:
        rows = [(r[1],) for r in conn.execute(f"PRAGMA table_info({table})").fetchall()]
    return [r[0] for r in rows]


def build(location: Path | str, folder: Path, entries: int) -> dict[str, float]:
    """A database with a small batch and `entries` more log entries (scans of a forged code)."""
    from verifier.web import create_app

    started = time.monotonic()
    paths = issue_bench_batch(folder, 10, BASE, database=location)
    app = create_app(app_config(location, folder))
    try:
        client = app.test_client()
        assert client.get(forged_path(paths[0])).status_code == 200
    finally:
        app.extensions["verifier"].pool.close()
    conn = db.connect(location)
    try:
        settle(conn)
        names = [c for c in INSERT_COLUMNS if c in columns(conn, "scans")]
        template = dict(zip(names, conn.execute(f"SELECT {', '.join(names)} FROM scans ORDER BY id DESC").fetchone()))
        log_columns = columns(conn, "audit_log")
        linked = "scan_id" in log_columns  # PostgreSQL: the entry names its scan
        first_seq = int(conn.execute("SELECT coalesce(max(seq), 0) FROM audit_log").fetchone()[0]) + 1
        first_id = int(conn.execute("SELECT coalesce(max(id), 0) FROM scans").fetchone()[0]) + 1
        base_time = dt.datetime.now(dt.UTC)
        salt = template["personal_salt"]
        entry_columns = ["seq", "at", "kind", "actor", "body", "personal_hash", "prev_hash", "hash"]
        entry_columns += ["scan_id"] if linked else []
        made = 0
        while made < entries:
            scan_rows, entry_rows = [], []
            for k in range(made, min(entries, made + CHUNK)):
                scan = dict(template, id=first_id + k, at=_at(base_time, k))
                seq = first_seq + k
                if "log_seq" in scan:
                    scan["log_seq"] = None if linked else seq
                body = auditlog.canonical(auditlog.scan_body(scan))
                personal = auditlog.personal_hash(salt, scan)
                digest = auditlog.new_entry_hash("scan", str(scan["at"]), "", personal, body)
                row = [seq, scan["at"], "scan", "", body, personal, "", digest]
                entry_rows.append(row + ([scan["id"]] if linked else []))
                scan_rows.append([scan[c] for c in names])
            with db.transaction(conn):
                db.copy_rows(conn, "scans", names, scan_rows)
                db.copy_rows(conn, "audit_log", entry_columns, entry_rows)
            made += len(scan_rows)
        if db.is_postgres_conn(conn):
            conn.execute("ANALYZE")
    finally:
        conn.close()
    seconds = time.monotonic() - started
    return {"entries": entries, "seconds": seconds, "rate": entries / seconds}


def _at(base: dt.datetime, k: int) -> str:
    return (base + dt.timedelta(milliseconds=k)).isoformat(timespec="milliseconds")


def settle(conn: db.Conn) -> None:
    """What is pending chained (PostgreSQL's sequencer); not the tree: that is measured."""
    if db.is_postgres_conn(conn):
        sequencer.drain(conn)


# --- the log's own rates ------------------------------------------------------------------------


def bench_extend(location: Path | str, batch: int) -> dict[str, float]:
    conn = db.connect(location)
    try:
        total = int(conn.execute("SELECT count(*) FROM audit_log").fetchone()[0])
        started, done = time.monotonic(), logtree.size(conn)
        first = done
        while done < total:
            with db.transaction(conn):
                added = logtree.extend(conn, batch)
            if not added:
                break
            done += added
        seconds = time.monotonic() - started
        return {"entries": done - first, "seconds": seconds, "rate": (done - first) / max(seconds, 1e-9)}
    finally:
        conn.close()


def bench_proofs(location: Path | str, count: int, seconds: float, rng: random.Random) -> dict[str, float]:
    conn = db.connect(location)
    try:
        size = logtree.size(conn)
        root = logtree.root(conn, size)
        result: dict[str, float] = {"size": size}
        for kind, make in (
            ("inclusion", lambda: logtree.inclusion_proof(conn, rng.randrange(size), size)),
            ("consistency", lambda: logtree.consistency_proof(conn, rng.randrange(1, size + 1), size)),
        ):
            made, started = 0, time.monotonic()
            while made < count and time.monotonic() - started < seconds:
                make()
                made += 1
            result[kind] = made / (time.monotonic() - started)
        # one of each checked, so the rates are of proofs that verify
        index = rng.randrange(size)
        merkle.verify_inclusion(
            merkle.leaf_hash(logtree.entry_leaf(conn, index) or b""),
            index,
            size,
            logtree.inclusion_proof(conn, index, size),
            root,
        )
        return result
    finally:
        conn.close()


def bench_verify(location: Path | str, signer: logtree.LogSigner) -> dict[str, float]:
    """`auditlog.verify` with the log's key, after a checkpoint of the whole tree is signed."""
    conn = db.connect(location)
    try:
        with db.transaction(conn):
            logtree.sign_checkpoint(conn, signer, dt.datetime.now(dt.UTC))
        started = time.monotonic()
        report = auditlog.verify(conn, auditlog.Trust(log_keys=(signer.verifier,)))
        seconds = time.monotonic() - started
    finally:
        conn.close()
    if report.problems:
        print(f"WARNING: audit verify found {len(report.problems)} problem(s): {report.problems[:3]}", file=sys.stderr)
    return {"entries": report.entries, "seconds": seconds, "rate": report.entries / seconds, "ok": report.ok}


# --- what the log costs a lookup ----------------------------------------------------------------


@contextmanager
def patched(module: Any, name: str, value: Any) -> Iterator[None]:
    real = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, real)


def bench_write_path(folder: Path, scans: int, runs: int) -> dict[str, float]:
    """In-process lookups (Flask test client, SQLite), each a distinct genuine code: scans/s with
    the per-scan log entry and without it (`auditlog.append_scan` patched to a no-op), in ABBA
    pairs; the median of the pairs' ratios, the best run of each, and the time spent inside
    `append_scan` itself as a share of the lookups' wall time (steadier than any rate here)."""
    from verifier.web import create_app

    location = folder / "verifier.db"
    paths = issue_bench_batch(folder, scans * runs * 2, BASE, database=location)
    app = create_app(app_config(location, folder))
    client = app.test_client()
    real = auditlog.append_scan
    inside = [0.0]

    def timed_append(conn: db.Conn, scan: Any, salt: str) -> int | None:
        started = time.perf_counter()
        try:
            return real(conn, scan, salt)
        finally:
            inside[0] += time.perf_counter() - started

    rates: dict[str, list[float]] = {"with": [], "without": []}
    with_wall = 0.0
    queue = iter(paths)
    try:
        for run in range(runs):
            for variant in ("with", "without") if run % 2 == 0 else ("without", "with"):  # ABBA
                chunk = [next(queue) for _ in range(scans)]
                stub = timed_append if variant == "with" else (lambda conn, scan, salt: None)
                with patched(auditlog, "append_scan", stub):
                    started = time.monotonic()
                    for path in chunk:
                        client.get(path)
                    wall = time.monotonic() - started
                rates[variant].append(scans / wall)
                with_wall += wall if variant == "with" else 0.0
    finally:
        app.extensions["verifier"].pool.close()
    ratios = sorted(w / wo for w, wo in zip(rates["with"], rates["without"]))
    return {
        "with": max(rates["with"]),
        "without": max(rates["without"]),
        "ratio": ratios[len(ratios) // 2],
        "entry_share": inside[0] / with_wall,
        "entry_us": inside[0] / (scans * runs) * 1e6,
    }


def bench_http(folder: Path, args: argparse.Namespace, stack: ExitStack) -> dict[str, dict[str, float]]:
    """`verifier serve` with the log machinery vs `--no-sequencer` without a log key, wrk each."""
    location = folder / "verifier.db"
    per_run = 1_500 * args.seconds  # above the rps of this machine's serve: no code is scanned twice
    paths = issue_bench_batch(folder, per_run * args.runs * 2, BASE, database=location)
    rng = random.Random(args.seed)
    rng.shuffle(paths)
    pool = client_pool(65_536, rng)
    script = folder / "requests.lua"
    script.write_text(textwrap.dedent(WRK_SCRIPT))
    signer = logtree.new_signer(LOG_NAME)
    key_file = folder / "log.key"
    key_file.write_text(signer.skey + "\n")
    key_file.chmod(0o600)
    env = {name: value for name, value in os.environ.items() if not name.startswith("VERIFIER_")}
    env |= {
        "VERIFIER_DB": str(location),
        "VERIFIER_KEYS": str(folder / "keys"),
        "VERIFIER_BASE_URL": BASE,
        "VERIFIER_INSTANCE": str(folder / "instance"),
        "VERIFIER_TRUSTED_PROXIES": "1",
        "VERIFIER_LOG_PUBLIC_KEY": signer.vkey,
    }
    variants = {
        "with log": (env | {"VERIFIER_LOG_KEY_FILE": str(key_file), "VERIFIER_LOG_CHECKPOINT_SECONDS": "1"}, []),
        "without": (env, ["--no-sequencer"]),
    }
    best: dict[str, dict[str, float]] = {}
    rps: dict[str, list[float]] = {name: [] for name in variants}
    offset = 0
    for run in range(args.runs):
        order = list(variants.items()) if run % 2 == 0 else list(variants.items())[::-1]  # ABBA: no order bias
        for name, (variant_env, extra) in order:
            requests = folder / f"requests-{offset}.txt"
            requests.write_text(
                "".join(
                    f"{p} {pool[(offset + k) % len(pool)]}\n" for k, p in enumerate(paths[offset : offset + per_run])
                )
            )
            offset += per_run
            port = free_port()
            command = [sys.executable, "-m", "verifier", "serve", "--port", str(port), *extra]
            proc = start(stack, command, variant_env)
            wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
            result = run_wrk(
                f"http://127.0.0.1:{port}", proc.pid, args, script, variant_env | {"BENCH_REQUESTS": str(requests)}
            )
            stop(proc)
            rps[name].append(result["rps"])
            if result["rps"] > best.get(name, {}).get("rps", 0):
                best[name] = result
            best[name]["reused_all"] = best[name].get("reused_all", 0) + result["reused"]
    ratios = sorted(a / b for a, b in zip(rps["with log"], rps["without"]))
    best["with log"]["ratio"] = ratios[len(ratios) // 2]
    conn = db.connect(location)
    try:
        best["with log"]["tree"] = logtree.size(conn)
        checkpoint = logtree.latest_checkpoint(conn)
        best["with log"]["checkpoint"] = checkpoint.size if checkpoint else 0
    finally:
        conn.close()
    return best


# --- the run ------------------------------------------------------------------------------------


def engines(args: argparse.Namespace, stack: ExitStack, folder: Path) -> Iterator[tuple[str, Path | str]]:
    (folder / "SQLite").mkdir()
    yield "SQLite", folder / "SQLite" / "verifier.db"
    url = args.postgres_url
    if args.postgres:
        url = start_cluster(stack).url
    if url:
        name = f"bench_log_{os.getpid()}"
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')

        def drop() -> None:
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        stack.callback(drop)
        yield "PostgreSQL", url.rsplit("/", 1)[0] + "/" + name


def say(what: str) -> None:
    print(f"{what}...", file=sys.stderr, flush=True)


def bench(args: argparse.Namespace, stack: ExitStack, folder: Path) -> int:
    rng = random.Random(args.seed)
    rows: list[tuple[str, str, str]] = []
    status = 0
    for engine, location in engines(args, stack, folder) if not args.lookup_only else ():
        (folder / engine).mkdir(exist_ok=True)
        say(f"{engine}: building {args.entries:,} entries")
        built = build(location, folder / engine, args.entries)
        rows.append(
            (engine, "bulk build (scans + entries)", f"{built['rate']:,.0f} entries/s ({built['seconds']:.1f} s)")
        )
        say(f"{engine}: extending the tree")
        extended = bench_extend(location, args.batch)
        rows.append(
            (engine, f"sequencer: logtree.extend, batches of {args.batch:,}", f"{extended['rate']:,.0f} entries/s")
        )
        say(f"{engine}: proofs")
        proofs = bench_proofs(location, args.proofs, args.seconds, rng)
        rows.append((engine, f"inclusion proofs (tree of {proofs['size']:,.0f})", f"{proofs['inclusion']:,.0f} /s"))
        rows.append((engine, "consistency proofs", f"{proofs['consistency']:,.0f} /s"))
        say(f"{engine}: audit verify")
        verified = bench_verify(location, logtree.new_signer(LOG_NAME))
        ok = "" if verified["ok"] else "  PROBLEMS FOUND"
        rows.append(
            (engine, f"audit verify ({verified['entries']:,.0f} entries)", f"{verified['rate']:,.0f} entries/s{ok}")
        )
        status |= 0 if verified["ok"] else 1
    if not args.no_lookup:
        say("write path")
        write = bench_write_path(folder / "write", args.scans, args.runs)
        rows.append(("SQLite", "write path with the per-scan entry", f"{write['with']:,.0f} scans/s"))
        rows.append(("SQLite", "write path without it", f"{write['without']:,.0f} scans/s"))
        rows.append(("SQLite", "  with / without, median of pairs (target >= 0.95)", f"{write['ratio']:.3f}"))
        rows.append(
            (
                "SQLite",
                "  time inside append_scan",
                f"{write['entry_us']:.0f} µs a scan, {write['entry_share']:.1%} of the lookup's wall time",
            )
        )
        if not args.no_http and shutil.which("wrk"):
            say("HTTP lookups")
            http = bench_http(folder / "http", args, stack)
            with_log, without = http["with log"], http["without"]
            for name, r in http.items():
                rows.append(("SQLite", f"lookup rps, serve {name}", f"{r['rps']:,.0f} rps (p99 {r['p99']:.1f} ms)"))
            rows.append(("SQLite", "  with / without, median of pairs (target >= 0.95)", f"{with_log['ratio']:.3f}"))
            if with_log["reused_all"] or without["reused_all"]:
                print("note: some codes were scanned twice (raise --seconds' code budget)", file=sys.stderr)
            rows.append(
                (
                    "SQLite",
                    "  tree and checkpoint after the run",
                    f"{with_log['tree']:,.0f} entries, checkpoint of {with_log['checkpoint']:,.0f}",
                )
            )
            if with_log["non2xx"] or without["non2xx"]:
                print("FAILED: non-2xx responses", file=sys.stderr)
                status = 1
        elif not args.no_http:
            print("wrk not found: the HTTP comparison is skipped (apt-get install wrk)", file=sys.stderr)
    width = max(len(r[1]) for r in rows)
    print(f"{'engine':<11}{'what':<{width + 2}}figure")
    for engine, what, figure in rows:
        print(f"{engine:<11}{what:<{width + 2}}{figure}")
    return status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000, help="log entries to build (bulk SQL)")
    parser.add_argument("--batch", type=int, default=sequencer.BATCH, help="entries a logtree.extend transaction")
    parser.add_argument("--proofs", type=int, default=2_000, help="at most this many proofs of each kind")
    parser.add_argument("--seconds", type=int, default=5, help="bound of each timed phase (proofs, wrk runs)")
    parser.add_argument("--runs", type=int, default=4, help="runs of each lookup variant, in ABBA pairs")
    parser.add_argument("--scans", type=int, default=2_000, help="in-process lookups a write-path run")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--postgres", action="store_true", help="also PostgreSQL, on a throwaway durable cluster")
    parser.add_argument("--postgres-url", default="", help="also PostgreSQL, a database made on this server")
    parser.add_argument("--no-lookup", action="store_true", help="only the log's own rates")
    parser.add_argument("--lookup-only", action="store_true", help="only what the log costs a lookup")
    parser.add_argument("--no-http", action="store_true", help="no `verifier serve` comparison (wrk)")
    args = parser.parse_args()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="bench-log-") as tmp, ExitStack() as stack:
        status = bench(args, stack, Path(tmp))
    sys.exit(status)


if __name__ == "__main__":
    main()
