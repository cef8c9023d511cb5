"""What the benchmark scripts share: a signed batch to scan, servers in their own process groups,
their CPU time. Imported by scripts/bench_*.py (scripts/ is on sys.path when they run); never by
the package.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from verifier import codes, issue, keys


def issue_bench_batch(
    folder: Path,
    count: int,
    base_url: str,
    database: Path | str | None = None,
    out_dir: Path | None = None,
    enterprise: str = "Bench",
) -> list[str]:
    """A key (folder/keys) and a registered batch of `count` codes in `database` (a path or a
    PostgreSQL URL; default folder/verifier.db), written to `out_dir` (folder/batch): the label
    URLs' paths, in codes.csv order."""
    out_dir = out_dir or folder / "batch"
    now = dt.datetime.now(dt.UTC)
    record = keys.create_key(folder / "keys", "bench", b"bench", now)
    _, private = keys.load_private_key(folder / "keys", "bench", b"bench")
    request = issue.BatchRequest(
        mark=codes.MARKS[0],
        enterprise=enterprise,
        product="Tea",
        count=count,
        out_dir=out_dir,
        base_url=base_url,
        formats=("csv",),
    )
    issue.issue_batch(database or folder / "verifier.db", request, private, bytes.fromhex(record.kid))
    return batch_paths(out_dir, base_url)


def batch_paths(out_dir: Path, base_url: str) -> list[str]:
    """The label URLs' paths of the batch written to `out_dir`, in codes.csv order."""
    return [path for path, _ in batch_codes(out_dir, base_url)]


def batch_codes(out_dir: Path, base_url: str) -> list[tuple[str, int]]:
    """(label URL's path, serial) of each code of the batch written to `out_dir`, in codes.csv order."""
    with open(out_dir / "codes.csv", encoding="utf-8", newline="") as fh:
        return [("/" + row["url"][len(base_url) :], int(row["serial"])) for row in issue.read_codes_csv(fh)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30) -> None:
    """Poll `url` until it answers; exit the script if the server exits or does not start."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"server for {url} exited with status {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server at {url} did not start")


def start(stack: ExitStack, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A server in its own process group, stopped (the whole group) when `stack` closes."""
    proc = subprocess.Popen(args, env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    stack.callback(stop, proc)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the group, then SIGKILL to whatever of it is left (a worker its master lost)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def group_cpu_seconds(pgid: int) -> float:
    """User+system CPU of every process in the group, with the children its members reaped."""
    return _cpu_seconds(lambda pid, ppid, pgrp: pgrp == pgid)


def tree_cpu_seconds(root: int) -> float:
    """User+system CPU of `root` and its children, with the children they reaped: a server whose
    children lead groups of their own (PostgreSQL's backends call setsid)."""
    return _cpu_seconds(lambda pid, ppid, pgrp: root in (pid, ppid))


def _cpu_seconds(wanted: Callable[[int, int, int], bool]) -> float:
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # it ended meanwhile
            continue
        fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
        if wanted(int(entry.name), int(fields[1]), int(fields[2])):  # ppid, pgrp
            ticks += sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


# --- the PostgreSQL cluster -----------------------------------------------------------------


def pg_bin() -> Path:
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0
    )
    if not found:
        raise SystemExit("PostgreSQL is needed: apt-get install postgresql (Debian's /usr/lib/postgresql/*/bin)")
    return found[-1]


@dataclass
class Cluster:
    url: str  # the maintenance database
    data: Path
    port: int
    postmaster: int


def start_cluster(stack: ExitStack) -> Cluster:
    """A durable throwaway cluster on 127.0.0.1, stopped and removed when `stack` closes."""
    binaries = pg_bin()
    folder = Path(tempfile.mkdtemp(prefix="bench-scaleout-pg-"))
    stack.callback(shutil.rmtree, folder, ignore_errors=True)
    stack.callback(
        lambda: (
            shutil.copy(folder / "server.log", "/tmp/bench-pg-server.log") if os.environ.get("BENCH_KEEP_LOG") else None
        )
    )
    as_pg: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root: the cluster belongs to `postgres`
        shutil.chown(folder, "postgres")
        as_pg = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()
    subprocess.run(
        [*as_pg, str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "verifier", "-E", "UTF8"]
        + ["--locale=C.UTF-8"],
        check=True,
        capture_output=True,
    )
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={folder} "
        "-c fsync=on -c synchronous_commit=on -c full_page_writes=on -c max_connections=100 "
        "-c shared_buffers=256MB -c max_wal_size=2GB"
    )
    subprocess.run(
        [*as_pg, str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", "60"]
        + ["start", "-o", options],
        check=True,
        stdout=subprocess.DEVNULL,
        start_new_session=True,  # not in this script's group: a Ctrl-C reaches it through the ExitStack only
    )
    stack.callback(
        subprocess.run,
        [*as_pg, str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    return Cluster(f"postgresql://verifier@127.0.0.1:{port}/postgres", data, port, postmaster)


# The wrk script of the lookup benchmarks (bench_lookup, bench_scaleout).
# Each line of BENCH_REQUESTS: "<path> <client address>". Thread n of N walks lines
# [n*len/N, (n+1)*len/N): every request of the run is a distinct line until a slice runs out.
WRK_SCRIPT = """
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local count = tonumber(os.getenv("BENCH_THREADS"))
  local fixed_path = os.getenv("BENCH_FIXED_PATH")
  local all = {}
  for line in io.lines(os.getenv("BENCH_REQUESTS")) do all[#all + 1] = line end
  local first = math.floor(id * #all / count) + 1
  local last = math.floor((id + 1) * #all / count)
  paths, addrs = {}, {}
  for k = first, last do
    local path, addr = all[k]:match("^(%S+) (%S+)$")
    paths[#paths + 1] = fixed_path or path
    addrs[#addrs + 1] = addr
  end
  i, sent, reused = 0, 0, 0
end

function request()
  i = i % #paths + 1
  sent = sent + 1
  if sent > #paths then reused = reused + 1 end
  return wrk.format("GET", paths[i], {["X-Forwarded-For"] = addrs[i]})
end

function done(summary, latency, requests)
  local sent_all, reused_all = 0, 0
  for _, thread in ipairs(threads) do
    sent_all = sent_all + thread:get("sent")
    reused_all = reused_all + thread:get("reused")
  end
  io.write(string.format("BENCH sent=%d reused=%d\\n", sent_all, reused_all))
end
"""
