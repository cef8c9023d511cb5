#!/usr/bin/env python3
"""Lookup throughput: `verifier serve` vs a Flask hello-world and a floor app, under gunicorn, loaded by wrk.

    .venv/bin/python scripts/bench_lookup.py [--seconds 10] [--connections 32] [--codes N] [--clients 65536]

Three servers, one after the other in the same run, each under gunicorn with sync workers (one a
core) on 127.0.0.1, wrk in its own process:

- hello-world: Flask returning a constant;
- floor: the least a lookup must do, on the same gunicorn settings as hello-world: decode and
  verify one compact code with `verifier.codes.verify` (the same keyring), one durable INSERT into
  SQLite (WAL, synchronous=FULL, one connection per worker process), a tiny body;
- lookup: `verifier serve`, the product, with its rate limit at the production default.

Every request of a run is a distinct issued code: the codes are shuffled with a fixed seed and each
wrk thread walks its own disjoint slice (wrk's `setup(thread)` gives the ids); the script says how
many requests had to reuse a code (and exits 1 if any did: raise --codes). Each phone is a fresh
one: wrk sends no cookie, so each request gets a new session.

Client addresses: production sits behind a reverse proxy, so the lookup runs with
VERIFIER_TRUSTED_PROXIES=1 and every request carries an `X-Forwarded-For` from a rotating pool of
public IPv4 addresses (--clients). The rate limit (120/minute per client unless the code's default
changes) then counts per pool address, as it counts per phone in production; the pool is checked
to be large enough that no address can exceed the limit, and the non-2xx count must be 0. All three
servers get the same Lua script and headers, so wrk's own cost is the same for each.

CPU per request: user+system CPU of the server's whole process group (gunicorn master and
workers, /proc/<pid>/stat) over the wrk phase, divided by the requests wrk completed.
Target (issue 4): lookup rps / hello-world rps >= 0.5, p99 well under 300 ms.

`--postgres`: the same on PostgreSQL with two lookup nodes. A throwaway durable cluster (fsync and
synchronous_commit on; scripts/_benchlib.start_cluster) holds the registry; the floor app inserts
into it (psycopg, autocommit: one durable INSERT a request); the lookup is two `verifier serve`
nodes with half the workers each (their sequencers beside them, one leading), each loaded by its
own wrk with half the connections and its own half of the codes, as a load balancer would split
them: rps is the sum, p50 the mean and p99 the worse of the two. CPU a request then counts the
nodes' groups and, in brackets, PostgreSQL's (the postmaster and every backend).
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import math
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from contextlib import ExitStack
from pathlib import Path

import psycopg
from _benchlib import WRK_SCRIPT, free_port, group_cpu_seconds, start, start_cluster, stop, tree_cpu_seconds, wait_ready

from verifier import codes, db, issue, keys, ratelimit, settings

BASE = "HTTPS://VERIFY.EXAMPLE.CN/"
CODES_PER_SECOND = 4_000  # above hello-world's rps on the development machine: lookups never run out

HELLO = """
from flask import Flask
app = Flask(__name__)

@app.get("/")
def hello():
    return "Hello, World!"
"""

# The floor: verify one code, one durable INSERT, a tiny body. Nothing else a lookup does.
FLOOR = """
import datetime as dt
import os
import sqlite3
from pathlib import Path

from flask import Flask

from verifier import codes, keys

app = Flask(__name__)
TRUSTED = keys.trust_from_folder(Path(os.environ["VERIFIER_KEYS"]))
BASES = (os.environ["VERIFIER_BASE_URL"],)
HOST = BASES[0].split("://", 1)[1].rstrip("/")
_conn = None
_pid = 0


def connection():
    global _conn, _pid
    if _conn is None or _pid != os.getpid():  # one connection per worker process, made after the fork
        _conn = sqlite3.connect(os.environ["BENCH_FLOOR_DB"], timeout=10, isolation_level=None)
        _conn.execute("PRAGMA journal_mode = WAL")
        _conn.execute("PRAGMA synchronous = FULL")
        _pid = os.getpid()
    return _conn


@app.get("/")
def ready():
    return "ready"


@app.get("/<path:subpath>")
def check(subpath):
    result = codes.verify(f"{HOST}/{subpath}", TRUSTED, BASES)
    if not result.genuine:
        return result.reason, 400
    connection().execute(
        "INSERT INTO scans (at, serial, kid) VALUES (?, ?, ?)",
        (dt.datetime.now(dt.UTC).isoformat(), result.code.serial, result.code.kid_hex),
    )
    return "ok"
"""

# The floor on PostgreSQL: the same, with the durable INSERT into the server (one connection a worker).
FLOOR_POSTGRES = (
    FLOOR.replace("import sqlite3\n", "import psycopg\n")
    .replace(
        """        _conn = sqlite3.connect(os.environ["BENCH_FLOOR_DB"], timeout=10, isolation_level=None)
        _conn.execute("PRAGMA journal_mode = WAL")
        _conn.execute("PRAGMA synchronous = FULL")""",
        """        _conn = psycopg.connect(os.environ["BENCH_FLOOR_DB"], autocommit=True)
        _conn.execute("SET synchronous_commit = on")""",
    )
    .replace("VALUES (?, ?, ?)", "VALUES (%s, %s, %s)")
)


def to_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def run_wrk(
    url: str, pgid: int, args: argparse.Namespace, script: Path, env: dict[str, str], postmaster: int = 0
) -> dict[str, float]:
    return run_wrks([(url, pgid, env)], args, script, postmaster)


def run_wrks(
    targets: list[tuple[str, int, dict[str, str]]], args: argparse.Namespace, script: Path, postmaster: int = 0
) -> dict[str, float]:
    """One wrk a target (url, server's process group, environment), all at once: rps summed, p50
    averaged, p99 the worst; CPU of the servers' groups (and of PostgreSQL's postmaster tree)."""
    connections = max(1, args.connections // len(targets))  # the same total as one target gets
    threads = min(2, connections)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{args.seconds}s", "--latency", "--timeout", "5s"]
    cpu_before = sum(group_cpu_seconds(pgid) for _, pgid, _ in targets)
    pg_before = tree_cpu_seconds(postmaster) if postmaster else 0.0
    procs = [
        subprocess.Popen(
            [*command, "-s", str(script), url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, "BENCH_THREADS": str(threads)},
        )
        for url, _, env in targets
    ]
    outs = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"wrk failed: {err[-500:]}")
        outs.append(out)
    cpu = sum(group_cpu_seconds(pgid) for _, pgid, _ in targets) - cpu_before
    pg_cpu = (tree_cpu_seconds(postmaster) - pg_before) if postmaster else 0.0
    parts = [_parse_wrk(out) for out in outs]
    result = {key: sum(part[key] for part in parts) for key in ("rps", "requests", "non2xx", "socket_errors")}
    result |= {key: sum(part[key] for part in parts) for key in ("sent", "reused")}
    result["p50"] = sum(part["p50"] for part in parts) / len(parts)
    result["p99"] = max(part["p99"] for part in parts)
    result["cpu_us"] = cpu / max(result["requests"], 1) * 1e6
    result["pg_cpu_us"] = pg_cpu / max(result["requests"], 1) * 1e6
    return result


def _parse_wrk(out: str) -> dict[str, float]:
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    result["requests"] = float(re.search(r"(\d+) requests in", out).group(1))
    for pct in ("50", "99"):
        result[f"p{pct}"] = to_ms(re.search(rf"\s{pct}%\s+([\d.]+\w+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non2xx"] = float(errors.group(1)) if errors else 0.0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["socket_errors"] = float(sum(map(int, socket_errors.groups()))) if socket_errors else 0.0
    sent, reused = re.search(r"BENCH sent=(\d+) reused=(\d+)", out).groups()
    result["sent"], result["reused"] = float(sent), float(reused)
    return result


def client_pool(size: int, rng: random.Random) -> list[str]:
    """`size` distinct public IPv4 addresses (never contacted: they only travel in a header)."""
    pool: dict[str, None] = {}
    while len(pool) < size:
        address = ipaddress.IPv4Address(rng.getrandbits(32))
        if address.is_global:
            pool[str(address)] = None
    return list(pool)


def gunicorn(workers: int, port: int, folder: Path, app: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-w",
        str(workers),
        "-k",
        "sync",
        "-b",
        f"127.0.0.1:{port}",
        "--chdir",
        str(folder),
        "--log-level",
        "warning",  # as `verifier serve`
        "--control-socket",
        str(folder / f"{app.partition(':')[0]}.ctl"),  # not the shared default under ~/.gunicorn
        app,
    ]


def line(name: str, r: dict[str, float]) -> str:
    reused = "-" if name == "hello-world" else f"{r['reused']:,.0f}"  # hello-world is one path
    return (
        f"{name:<12}{r['rps']:>8,.0f}{r['p50']:>9.1f}{r['p99']:>9.1f}{r['cpu_us']:>11,.0f}"
        f"{r['requests']:>10,.0f}{r['non2xx']:>8,.0f}{r['socket_errors']:>8,.0f}{reused:>8}"
    )


def bench(args: argparse.Namespace, stack: ExitStack, tmp_path: Path) -> int:
    workers = max(2, os.cpu_count() or 1)
    rng = random.Random(args.seed)
    cluster = None
    database: str | Path = tmp_path / "verifier.db"
    if args.postgres:
        cluster = start_cluster(stack)
        with psycopg.connect(cluster.url, autocommit=True) as admin:
            admin.execute("CREATE DATABASE bench")
            admin.execute("CREATE DATABASE floor")
        database = cluster.url.rsplit("/", 1)[0] + "/bench"
    now = dt.datetime.now(dt.UTC)
    record = keys.create_key(tmp_path / "keys", "bench", b"bench", now)
    _, private = keys.load_private_key(tmp_path / "keys", "bench", b"bench")
    request = issue.BatchRequest(
        mark=codes.MARKS[0],
        enterprise="Bench",
        product="Tea",
        count=args.codes,
        out_dir=tmp_path / "batch",
        base_url=BASE,
        formats=("csv",),
    )
    started = time.monotonic()
    issue.issue_batch(database, request, private, bytes.fromhex(record.kid))
    print(f"issued {args.codes:,} codes in {time.monotonic() - started:.1f} s", file=sys.stderr)
    with open(tmp_path / "batch" / "codes.csv", encoding="utf-8", newline="") as fh:
        paths = ["/" + row["url"][len(BASE) :] for row in issue.read_codes_csv(fh)]
    rng.shuffle(paths)  # not in serial order: no help from the B-tree's locality
    pool = client_pool(args.clients, rng)
    lines = [f"{path} {pool[k % len(pool)]}\n" for k, path in enumerate(paths)]
    requests_file = tmp_path / "requests.txt"
    requests_file.write_text("".join(lines))
    halves = [tmp_path / "requests-a.txt", tmp_path / "requests-b.txt"]  # --postgres: one a node
    for k, half in enumerate(halves):
        half.write_text("".join(lines[k::2]))
    script = tmp_path / "requests.lua"
    script.write_text(textwrap.dedent(WRK_SCRIPT))
    (tmp_path / "hello.py").write_text(HELLO)
    (tmp_path / "floor.py").write_text(FLOOR_POSTGRES if cluster else FLOOR)
    if cluster:
        floor_db: str | Path = cluster.url.rsplit("/", 1)[0] + "/floor"
        with psycopg.connect(str(floor_db), autocommit=True) as pg:
            pg.execute(
                "CREATE TABLE scans (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at TEXT NOT NULL, "
                "serial BIGINT, kid TEXT)"
            )
    else:
        floor_db = tmp_path / "floor.db"
        with sqlite3.connect(floor_db) as conn:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("CREATE TABLE scans (id INTEGER PRIMARY KEY, at TEXT NOT NULL, serial INTEGER, kid TEXT)")
        conn.close()

    env = {name: value for name, value in os.environ.items() if not name.startswith("VERIFIER_")}
    env |= {
        "BENCH_REQUESTS": str(requests_file),
        "BENCH_FLOOR_DB": str(floor_db),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH")])),
        **({"VERIFIER_DATABASE_URL": str(database)} if cluster else {"VERIFIER_DB": str(database)}),
        "VERIFIER_KEYS": str(tmp_path / "keys"),
        "VERIFIER_BASE_URL": BASE,
        "VERIFIER_INSTANCE": str(tmp_path / "instance"),
        "VERIFIER_TRUSTED_PROXIES": "1",  # production sits behind one reverse proxy
    }
    limit = ratelimit.parse_limit(settings.load(env).ratelimit)  # the production default: not overridden
    # An address is used at most ceil(codes / clients) times in the whole run while no code is reused.
    per_client = math.ceil(args.codes / len(pool))
    if limit is not None and per_client > limit.hits:
        raise SystemExit(f"--clients {len(pool):,} is too small: {per_client} requests a client, limit {limit}")

    postmaster = cluster.postmaster if cluster else 0
    results = {}
    for name, app, ready in (("hello-world", "hello:app", "/"), ("floor", "floor:app", "/")):
        port = free_port()
        proc = start(stack, gunicorn(workers, port, tmp_path, app), env)
        wait_ready(f"http://127.0.0.1:{port}{ready}", proc)
        run_env = env | {"BENCH_FIXED_PATH": "/"} if name == "hello-world" else env
        results[name] = run_wrk(f"http://127.0.0.1:{port}", proc.pid, args, script, run_env, postmaster)
        stop(proc)

    nodes = 2 if cluster else 1  # PostgreSQL: two lookup nodes, half the workers each
    targets = []
    for k in range(nodes):
        port = free_port()
        serve = [sys.executable, "-m", "verifier", "serve", "--port", str(port), "--workers", str(workers // nodes)]
        proc = start(stack, serve, env)
        wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
        targets.append((f"http://127.0.0.1:{port}", proc, env | {"BENCH_REQUESTS": str(halves[k])} if cluster else env))
    results["lookup"] = run_wrks(
        [(url, proc.pid, node_env) for url, proc, node_env in targets], args, script, postmaster
    )
    for _, proc, _ in targets:
        stop(proc)

    conn = db.connect(database)
    scans, first = conn.execute(
        "SELECT count(*), sum(CASE WHEN reason = 'genuine' THEN 1 ELSE 0 END) FROM scans"
    ).fetchone()
    conn.close()
    counters = ratelimit.counters(database)
    table = "rate_hits" if cluster else "hits"
    clients, max_hits = counters.execute(f"SELECT count(DISTINCT client), max(hits) FROM {table}").fetchone()
    counters.close()
    if cluster:
        with psycopg.connect(str(floor_db)) as pg:
            floor_rows = pg.execute("SELECT count(*) FROM scans").fetchone()[0]
    else:
        floor_rows = sqlite3.connect(floor_db).execute("SELECT count(*) FROM scans").fetchone()[0]

    hello, floor, lookup = results["hello-world"], results["floor"], results["lookup"]
    engine = (
        f"PostgreSQL (durable; lookup: {nodes} nodes x {workers // nodes} workers, a wrk each)" if cluster else "SQLite"
    )
    print(
        f"{engine}; gunicorn sync workers: {workers}; wrk -t{min(2, args.connections)} -c{args.connections} for "
        f"{args.seconds} s on 127.0.0.1; {args.codes:,} codes (seed {args.seed}), {len(pool):,} client addresses"
    )
    print(
        f"{'':<12}{'rps':>8}{'p50 ms':>9}{'p99 ms':>9}{'CPU µs/req':>11}{'requests':>10}"
        f"{'non-2xx':>8}{'sockerr':>8}{'reused':>8}"
    )
    for name, r in results.items():
        print(line(name, r) + (f"  (+ PostgreSQL {r['pg_cpu_us']:,.0f} µs)" if cluster else ""))
    print(
        f"ratios (rps): lookup/hello {lookup['rps'] / hello['rps']:.2f} (target >= 0.50) · "
        f"floor/hello {floor['rps'] / hello['rps']:.2f} · lookup/floor {lookup['rps'] / floor['rps']:.2f}"
    )
    print(
        f"CPU a request: lookup/hello {lookup['cpu_us'] / hello['cpu_us']:.2f} · "
        f"floor/hello {floor['cpu_us'] / hello['cpu_us']:.2f} · lookup/floor {lookup['cpu_us'] / floor['cpu_us']:.2f}"
    )
    print(
        f"lookup: scans recorded {scans:,}: first checks {first or 0:,}, repeats {scans - (first or 0):,}; "
        f"rate limit {limit}: at most {per_client} request(s) an address; its live window counted "
        f"{clients or 0:,} clients, at most {max_hits or 0} hits by one; "
        f"floor rows {floor_rows:,}; p99 {lookup['p99']:.1f} ms (EU FMD bar: 95 % within 300 ms)"
    )
    status = 0
    if any(r["non2xx"] for r in results.values()):
        print("FAILED: non-2xx responses (a rate limit hit, or a code not verified)", file=sys.stderr)
        status = 1
    if lookup["reused"] or floor["reused"]:
        most = max(lookup["sent"], floor["sent"])
        print(f"FAILED: codes reused; rerun with --codes above {most:,.0f}", file=sys.stderr)
        status = 1
    return status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--codes", type=int, default=0, help=f"codes to issue (default: {CODES_PER_SECOND:,} a second of the run)"
    )
    parser.add_argument("--clients", type=int, default=65_536, help="client addresses in the rotating pool")
    parser.add_argument("--seed", type=int, default=15, help="seed of the code order and the address pool")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL, two lookup nodes (see above)")
    args = parser.parse_args()
    args.codes = args.codes or CODES_PER_SECOND * args.seconds
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    # Ctrl-C and kill both unwind through the ExitStack, which stops every server's process group.
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="bench-lookup-") as tmp, ExitStack() as stack:
        status = bench(args, stack, Path(tmp))
    sys.exit(status)


if __name__ == "__main__":
    main()
