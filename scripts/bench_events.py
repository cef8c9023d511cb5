#!/usr/bin/env python3
"""What each code's life costs: capturing events for a million item codes packed into cases, and
a lookup that shows the trace.

    .venv/bin/python scripts/bench_events.py [--items 1000000] [--per-case 24] [--per-document 500]
        [--postgres-url URL] [--epcis] [--lookups 1500] [--runs 4]

Capture (each engine: SQLite always; PostgreSQL with --postgres-url, the maintenance database of a
running server where databases are made and dropped): a database with a batch of `--items` item
codes and a batch of case codes (items / per-case), registered with bulk SQL (issuing a million
signed labels is bench_issue's business), then every item packed into its case: AggregationEvent
ADD packing steps, `--per-document` events a transaction, through `events.capture` (the rules,
every code's state read and written, one log entry per event) — what the CLI, the API and an
EPCIS capture run after parsing. Baseline in the same run: a bare executemany INSERT of exactly
the rows the capture wrote (events, event_codes, code_states, the log entries), in the same
transactions, into a copy of the same database. Target (issue 13): capture >= 0.5 x baseline.
`--epcis` also times the same packing sent as EPCIS 2.0 JSON documents through
`capture.capture_document` (parse, GS1 schema validation, references resolved, then capture).

Lookup (in-process Flask test client, SQLite, each request a distinct genuine code): the verdict
page of codes with a trace (shipped to a dealer in 四川, in a case, an inspection report and a
production place on the batch) against codes without one (released on issue, no events), in
ABBA pairs; the median of the pairs' ratios and the best run of each.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from verifier import clock, codes, db, events, issue, keys, lifecycle
from verifier.events import Step

BASE = "https://bench.example.cn/"
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


# --- capture ------------------------------------------------------------------------------


def registry(location: Path | str, items: int, per_case: int, seed: int) -> tuple[list[int], list[int]]:
    """A fresh database with an enterprise, a dealer, a case batch and an item batch registered
    with bulk SQL: (case serials, item serials)."""
    conn = db.connect(location, create=True)
    rng = random.Random(seed)
    cases = -(-items // per_case)
    serials = rng.sample(range(10**15, 10**16), items + cases)
    case_serials, item_serials = sorted(serials[:cases]), serials[cases:]
    at = clock.utc_text_seconds(NOW)
    with db.transaction(conn):
        enterprise = conn.execute(
            "INSERT INTO enterprises (name, created_at) VALUES ('Bench', ?) RETURNING id", (at,)
        ).fetchone()[0]
        product = conn.execute(
            "INSERT INTO products (enterprise_id, name, created_at) VALUES (?, 'Tea', ?) RETURNING id", (enterprise, at)
        ).fetchone()[0]
        batch_ids = []
        for unit, count in (("case", cases), ("item", items)):
            batch_ids.append(
                conn.execute(
                    "INSERT INTO batches (enterprise_id, product_id, mark, form, count, kid, base_url, status, "
                    "created_at, created_by, unit, activation) VALUES (?, ?, 'traceability', 'compact', ?, '0000', ?, "
                    "'active', ?, 'bench', ?, 'case') RETURNING id",
                    (enterprise, product, count, BASE, at, unit),
                ).fetchone()[0]
            )
        for batch_id, group in zip(batch_ids, (case_serials, item_serials)):
            ordered = sorted(group)
            for start in range(0, len(ordered), 50_000):
                conn.executemany(
                    "INSERT INTO codes (serial, batch_id) VALUES (?, ?)",
                    [(s, batch_id) for s in ordered[start : start + 50_000]],
                )
    conn.close()
    return case_serials, item_serials


def packing_steps(cases: list[int], items: list[int], per_case: int) -> list[Step]:
    at = clock.utc_text(NOW)
    return [
        Step(
            lifecycle.AGGREGATION,
            "ADD",
            lifecycle.PACKING,
            at,
            tuple(items[i * per_case : (i + 1) * per_case]),
            parent=case,
        )
        for i, case in enumerate(cases)
    ]


def time_capture(location: Path | str, steps: list[Step], per_document: int) -> float:
    conn = db.connect(location)
    started = time.perf_counter()
    for start in range(0, len(steps), per_document):
        with db.transaction(conn):
            events.capture(conn, steps[start : start + per_document], enterprise_id=None, actor="bench", now=NOW)
    seconds = time.perf_counter() - started
    conn.close()
    return seconds


def captured_rows(location: Path | str) -> dict[str, list[tuple[Any, ...]]]:
    """The rows a capture wrote, in the order it wrote them: what the baseline inserts."""
    conn = db.connect(location)
    try:
        out = {
            "events": [tuple(r) for r in conn.execute("SELECT * FROM events ORDER BY id").fetchall()],
            "event_codes": [
                tuple(r) for r in conn.execute("SELECT serial, event FROM event_codes ORDER BY event, serial")
            ],
            "code_states": [tuple(r) for r in conn.execute("SELECT * FROM code_states ORDER BY event, serial")],
        }
        if db.is_postgres_conn(conn):
            out["log_pending"] = [
                tuple(r)
                for r in conn.execute("SELECT at, kind, actor, body, personal_hash FROM log_pending ORDER BY id")
            ]
        else:
            out["audit_log"] = [
                tuple(r) for r in conn.execute("SELECT * FROM audit_log WHERE kind = 'code.event' ORDER BY seq")
            ]
        return out
    finally:
        conn.close()


def time_bare_inserts(location: Path | str, rows: dict[str, list[tuple[Any, ...]]], documents: int) -> float:
    """Insert `rows` (the capture's) with executemany, in `documents` transactions, each holding
    its share of every table's rows."""
    conn = db.connect(location)
    columns = {
        "log_pending": "(at, kind, actor, body, personal_hash)",
    }
    started = time.perf_counter()
    for part in range(documents):
        with db.transaction(conn):
            for table, table_rows in rows.items():
                size = -(-len(table_rows) // documents)
                chunk = table_rows[part * size : (part + 1) * size]
                if chunk:
                    marks = db.placeholders(chunk[0])
                    conn.executemany(f"INSERT INTO {table} {columns.get(table, '')} VALUES ({marks})", chunk)
    seconds = time.perf_counter() - started
    conn.close()
    return seconds


def epcis_documents(cases: list[int], items: list[int], per_case: int, per_document: int) -> list[bytes]:
    """The same packing as EPCIS 2.0 documents naming codes by urn:verifier:code:."""
    documents = []
    for start in range(0, len(cases), per_document):
        event_list = [
            {
                "type": "AggregationEvent",
                "eventTime": "2026-12-01T00:00:00.000Z",
                "eventTimeZoneOffset": "+08:00",
                "action": "ADD",
                "bizStep": "packing",
                "parentID": events.code_uri(case),
                "childEPCs": [events.code_uri(s) for s in items[i * per_case : (i + 1) * per_case]],
            }
            for i, case in enumerate(cases[start : start + per_document], start)
        ]
        documents.append(
            json.dumps(
                {
                    "@context": ["https://ref.gs1.org/standards/epcis/epcis-context.jsonld"],
                    "type": "EPCISDocument",
                    "schemaVersion": "2.0",
                    "creationDate": "2026-12-01T00:00:00.000Z",
                    "epcisBody": {"eventList": event_list},
                }
            ).encode()
        )
    return documents


def time_epcis(location: Path | str, documents: list[bytes]) -> float:
    from verifier import capture

    conn = db.connect(location)
    started = time.perf_counter()
    for document in documents:
        with db.transaction(conn):
            capture.capture_document(conn, document, enterprise_id=None, actor="bench", now=NOW, base_urls=[BASE])
    seconds = time.perf_counter() - started
    conn.close()
    return seconds


class Engine:
    """Where the databases of one engine live."""

    def __init__(self, folder: Path, admin_url: str | None):
        self.folder, self.admin_url, self.made = folder, admin_url, []

    @property
    def name(self) -> str:
        return "postgresql" if self.admin_url else "sqlite"

    def new(self, label: str) -> Path | str:
        if not self.admin_url:
            return self.folder / f"{label}.db"
        import psycopg

        name = f"bench_events_{label}"
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name}")
            admin.execute(f"CREATE DATABASE {name}")
        self.made.append(name)
        return self.admin_url.rsplit("/", 1)[0] + "/" + name

    def copy(self, source: Path | str, label: str) -> Path | str:
        if not self.admin_url:
            target = self.folder / f"{label}.db"
            conn = db.connect(source)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()
            shutil.copyfile(source, target)
            return target
        import psycopg

        name = f"bench_events_{label}"
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name}")
            admin.execute(f"CREATE DATABASE {name} TEMPLATE {str(source).rsplit('/', 1)[1]}")
        self.made.append(name)
        return self.admin_url.rsplit("/", 1)[0] + "/" + name

    def drop(self, location: Path | str) -> None:
        """Drop a database made here (a file: removed)."""
        if not self.admin_url:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{location}{suffix}").unlink(missing_ok=True)
            return
        import psycopg

        name = str(location).rsplit("/", 1)[1]
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def drop_all(self) -> None:
        if not self.admin_url:
            return
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            for name in self.made:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def bench_capture(engine: Engine, args: argparse.Namespace) -> dict[str, float]:
    print(f"[{engine.name}] registering {args.items:,} item codes and their cases ...", file=sys.stderr)
    source = engine.new("source")
    cases, items = registry(source, args.items, args.per_case, args.seed)
    steps = packing_steps(cases, items, args.per_case)
    documents = -(-len(steps) // args.per_document)
    captures: list[float] = []
    bares: list[float] = []
    rows: dict[str, list[tuple[Any, ...]]] = {}
    for run in range(args.capture_runs):  # capture and baseline alternate, so both see the same machine
        captured = engine.copy(source, f"captured{run}")
        print(f"[{engine.name}] run {run + 1}: capturing {len(steps):,} packing events ...", file=sys.stderr)
        captures.append(time_capture(captured, steps, args.per_document))
        if not rows:
            rows = captured_rows(captured)
        engine.drop(captured)
        bare = engine.copy(source, f"bare{run}")
        print(f"[{engine.name}] run {run + 1}: bare INSERT of the same rows ...", file=sys.stderr)
        bares.append(time_bare_inserts(bare, rows, documents))
        engine.drop(bare)
    ratios = sorted(b / c for b, c in zip(bares, captures))
    result = {
        "events": len(steps),
        "codes": len(steps) + len(items),
        "rows": sum(len(r) for r in rows.values()),
        "capture_s": min(captures),
        "bare_s": min(bares),
        "ratio": statistics.median(ratios),
    }
    if args.epcis:
        via_epcis = engine.copy(source, "epcis")
        print(f"[{engine.name}] the same packing as EPCIS 2.0 documents ...", file=sys.stderr)
        result["epcis_s"] = time_epcis(via_epcis, epcis_documents(cases, items, args.per_case, args.per_document))
        result["epcis_ratio"] = result["bare_s"] / result["epcis_s"]
        engine.drop(via_epcis)
    return result


# --- lookups with and without the trace -----------------------------------------------------


def bench_lookup(folder: Path, args: argparse.Namespace) -> dict[str, float]:
    from verifier.web import create_app

    location = folder / "lookup.db"
    record = keys.create_key(folder / "keys", "bench", b"bench", NOW)
    _, private = keys.load_private_key(folder / "keys", "bench", b"bench")
    per_variant = args.lookups * args.runs // 2 + args.lookups
    paths: dict[str, list[str]] = {}
    for variant, extra in (
        ("trace", {"production_place": "浙江杭州", "production_date": dt.date(2026, 11, 20), "activation": "shipment"}),
        ("plain", {"production_date": dt.date(2026, 11, 20)}),
    ):
        request = issue.BatchRequest(
            mark=codes.MARKS[1],
            enterprise="Bench",
            product="Tea",
            count=per_variant,
            out_dir=folder / variant,
            base_url=BASE,
            formats=("csv",),
            **extra,  # type: ignore[arg-type]
        )
        result = issue.issue_batch(location, request, private, bytes.fromhex(record.kid), now=NOW)
        with open(folder / variant / "codes.csv", encoding="utf-8", newline="") as fh:
            rows = list(issue.read_codes_csv(fh))
        paths[variant] = ["/" + r["url"][len(BASE) :] for r in rows]
        if variant == "trace":
            conn = db.connect(location)
            with db.transaction(conn):
                enterprise = conn.execute("SELECT id FROM enterprises WHERE name = 'Bench'").fetchone()[0]
                events.register_dealer(conn, enterprise, "SC-01", "成都", ["510100"], None, actor="bench", now=NOW)
                events.attach_report(
                    conn, result.batch_id, b"%PDF-1.4 bench", "r.pdf", enterprise_id=None, actor="b", now=NOW
                )
                serials = [int(r["serial"]) for r in rows]
                for start in range(0, len(serials), 1000):
                    step = Step(
                        lifecycle.OBJECT,
                        "OBSERVE",
                        lifecycle.SHIPPING,
                        clock.utc_text(NOW),
                        tuple(serials[start : start + 1000]),
                        dealer="dealer:SC-01",
                    )
                    events.capture(conn, [step], enterprise_id=None, actor="bench", now=NOW)
            conn.close()
    app = create_app(
        {
            "DATABASE": str(location),
            "KEYS_DIR": str(folder / "keys"),
            "JWKS_FILE": None,
            "BASE_URLS": [BASE],
            "SECRET_KEY": b"bench-secret",
            "RATELIMIT": "off",
            "INSTANCE": str(folder / "instance"),
            "TRUSTED_PROXIES": 0,
        }
    )
    client = app.test_client()
    queues = {v: iter(p) for v, p in paths.items()}
    rates: dict[str, list[float]] = {"trace": [], "plain": []}
    for _ in range(20):  # warm up both templates
        client.get(next(queues["trace"]))
        client.get(next(queues["plain"]))
    check = client.get("/api/v1/verify", query_string={"code": BASE + next(queues["trace"])[1:]}).get_json()
    if not check["trace"]["shipped_to"]:
        raise SystemExit(f"the trace codes show no shipment: nothing to measure ({check})")
    try:
        for run in range(args.runs):
            for variant in ("trace", "plain") if run % 2 == 0 else ("plain", "trace"):
                chunk = [next(queues[variant]) for _ in range(args.lookups // 2)]
                started = time.perf_counter()
                for path in chunk:
                    client.get(path)
                rates[variant].append(len(chunk) / (time.perf_counter() - started))
    finally:
        app.extensions["verifier"].pool.close()
    ratios = sorted(t / p for t, p in zip(rates["trace"], rates["plain"]))
    return {"trace": max(rates["trace"]), "plain": max(rates["plain"]), "ratio": statistics.median(ratios)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--per-case", type=int, default=24)
    parser.add_argument("--per-document", type=int, default=500, help="events a transaction (an EPCIS document)")
    parser.add_argument("--postgres-url", help="a PostgreSQL server's maintenance database: also bench it")
    parser.add_argument("--epcis", action="store_true", help="also time the packing sent as EPCIS documents")
    parser.add_argument("--lookups", type=int, default=1500, help="lookups a run (half each variant)")
    parser.add_argument("--runs", type=int, default=4, help="lookup runs (ABBA)")
    parser.add_argument("--capture-runs", type=int, default=2, help="capture / bare INSERT pairs")
    parser.add_argument("--no-lookup", action="store_true")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-events-"))
    try:
        results = []
        for admin_url in [None, *([args.postgres_url] if args.postgres_url else [])]:
            engine = Engine(folder, admin_url)
            try:
                results.append((engine.name, bench_capture(engine, args)))
            finally:
                engine.drop_all()
        lookup = None if args.no_lookup else bench_lookup(folder, args)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(
        f"\nCapture: {args.items:,} item codes packed {args.per_case} a case, {args.per_document} events a transaction"
    )
    header = f"{'engine':<11} {'events':>8} {'codes':>10} {'rows':>10} {'capture s':>10} {'codes/s':>9}"
    print(header + f" {'bare s':>8} {'ratio':>6}")
    for name, r in results:
        print(
            f"{name:<11} {r['events']:>8,} {r['codes']:>10,} {r['rows']:>10,} {r['capture_s']:>10.1f} "
            f"{r['codes'] / r['capture_s']:>9,.0f} {r['bare_s']:>8.1f} {r['ratio']:>6.2f}"
        )
        if "epcis_s" in r:
            print(
                f"{'  via EPCIS':<11} {'':>8} {'':>10} {'':>10} {r['epcis_s']:>10.1f} "
                f"{r['codes'] / r['epcis_s']:>9,.0f} {'':>8} {r['epcis_ratio']:>6.2f}"
            )
    print(
        "capture s, bare s: the best of --capture-runs; ratio: the median of the runs' bare / capture (target >= 0.5)"
    )
    if lookup:
        print(
            f"\nLookup page, in-process: with the trace {lookup['trace']:,.0f}/s, without {lookup['plain']:,.0f}/s, "
            f"median ratio {lookup['ratio']:.2f}"
        )


if __name__ == "__main__":
    main()
