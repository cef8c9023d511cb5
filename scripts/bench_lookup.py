#!/usr/bin/env python3
"""Lookup throughput: `verifier serve` vs a Flask hello-world, both under gunicorn, loaded by wrk.

    .venv/bin/python scripts/bench_lookup.py [--seconds 10] [--connections 32] [--codes 20000]

Both servers run the same way (gunicorn, sync workers, one a core) on 127.0.0.1; wrk runs in
its own process. The lookup requests cycle through many distinct valid codes, so every request
verifies a signature, writes a scan durably (synchronous=FULL) and renders the verdict page.
Target (issue 4): lookup rps / hello-world rps >= 0.5, p99 well under 300 ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

from verifier import codes, issue, keys

HELLO = """
from flask import Flask
app = Flask(__name__)

@app.get("/")
def hello():
    return "Hello, World!"
"""

WRK_SCRIPT = """
local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
local i = math.random(#paths)
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
"""


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


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def to_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def run_wrk(url: str, seconds: int, connections: int, script: Path | None, env: dict) -> dict[str, float]:
    args = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    if script:
        args += ["-s", str(script)]
    out = subprocess.run(args + [url], capture_output=True, text=True, env=env, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct in ("50", "99"):
        result[f"p{pct}"] = to_ms(re.search(rf"\s{pct}%\s+([\d.]+\w+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non2xx"] = float(errors.group(1)) if errors else 0.0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--codes", type=int, default=20_000)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    workers = max(2, os.cpu_count() or 1)

    with tempfile.TemporaryDirectory(prefix="bench-lookup-") as tmp:
        tmp_path = Path(tmp)
        base = "HTTPS://VERIFY.EXAMPLE.CN/"
        now = dt.datetime.now(dt.UTC)
        record = keys.create_key(tmp_path / "keys", "bench", b"bench", now)
        _, private = keys.load_private_key(tmp_path / "keys", "bench", b"bench")
        request = issue.BatchRequest(
            mark=codes.MARKS[0],
            enterprise="Bench",
            product="Tea",
            count=args.codes,
            out_dir=tmp_path / "batch",
            base_url=base,
            formats=("csv",),
        )
        issue.issue_batch(tmp_path / "verifier.db", request, private, bytes.fromhex(record.kid))
        paths_file = tmp_path / "paths.txt"
        with open(tmp_path / "batch" / "codes.csv", encoding="utf-8", newline="") as fh, open(paths_file, "w") as out:
            for row in issue.read_codes_csv(fh):
                out.write("/" + row["url"][len(base) :] + "\n")
        script = tmp_path / "codes.lua"
        script.write_text(textwrap.dedent(WRK_SCRIPT))
        (tmp_path / "hello.py").write_text(HELLO)
        env = {
            **os.environ,
            "BENCH_PATHS": str(paths_file),
            "VERIFIER_DB": str(tmp_path / "verifier.db"),
            "VERIFIER_KEYS": str(tmp_path / "keys"),
            "VERIFIER_BASE_URL": base,
            "VERIFIER_RATELIMIT": "off",
            "VERIFIER_INSTANCE": str(tmp_path / "instance"),
        }

        port = free_port()
        hello = subprocess.Popen(
            [
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
                str(tmp_path),
                "hello:app",
            ],
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_ready(f"http://127.0.0.1:{port}/")
            baseline = run_wrk(f"http://127.0.0.1:{port}/", args.seconds, args.connections, None, env)
        finally:
            stop(hello)

        port = free_port()
        lookup = subprocess.Popen(
            [sys.executable, "-m", "verifier", "serve", "--port", str(port), "--workers", str(workers)],
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_ready(f"http://127.0.0.1:{port}/healthz")
            result = run_wrk(f"http://127.0.0.1:{port}", args.seconds, args.connections, script, env)
        finally:
            stop(lookup)
        import sqlite3

        scans = (
            sqlite3.connect(tmp_path / "verifier.db")
            .execute("SELECT count(*), sum(reason = 'genuine') FROM scans")
            .fetchone()
        )

    print(f"gunicorn sync workers: {workers}; wrk -c{args.connections} for {args.seconds} s on 127.0.0.1")
    print(f"hello-world: {baseline['rps']:,.0f} rps  p50 {baseline['p50']:.1f} ms  p99 {baseline['p99']:.1f} ms")
    print(
        f"lookup:      {result['rps']:,.0f} rps  p50 {result['p50']:.1f} ms  p99 {result['p99']:.1f} ms  "
        f"(non-2xx: {result['non2xx']:.0f}; scans recorded: {scans[0]:,}, first checks: {scans[1]:,})"
    )
    print(
        f"ratio lookup / hello-world: {result['rps'] / baseline['rps']:.2f} (target >= 0.50); "
        f"p99 {result['p99']:.1f} ms (EU FMD bar: 95 % within 300 ms)"
    )


if __name__ == "__main__":
    main()
