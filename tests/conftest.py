"""Shared fixtures: a fixed-seed key pair, the test vectors, an isolated instance folder."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from verifier import keys

VECTORS = Path(__file__).parent / "vectors"

# One seed for everything random in the suite (serials of test batches): a failure is repeated by
# running again with the seed the header printed, e.g. VERIFIER_TEST_SEED=7 ./scripts/test -k ...
TEST_SEED = int(os.environ.get("VERIFIER_TEST_SEED", "20261122"))


def pytest_report_header(config) -> str:
    return f"VERIFIER_TEST_SEED={TEST_SEED} (serials of test batches; set it to repeat a run)"


def seeded_random_bytes(label: str):
    """A deterministic stand-in for os.urandom, from TEST_SEED and `label` (the test or fixture)."""
    return random.Random(f"{TEST_SEED}:{label}").randbytes


@pytest.fixture(autouse=True)
def seeded_serials(request, monkeypatch):
    """Batches issued by a test without their own source of randomness draw serials from the test seed."""
    from verifier import issue

    real = issue.issue_batch
    source = seeded_random_bytes(request.node.nodeid)

    def issue_batch(*args, **kwargs):
        kwargs.setdefault("random_bytes", source)
        return real(*args, **kwargs)

    monkeypatch.setattr(issue, "issue_batch", issue_batch)


# --- processes: nothing the suite starts may outlive it -----------------------------------------


def process_table() -> dict[int, tuple[int, str, str]]:
    """Live processes on this machine (Linux /proc): pid -> (parent pid, state letter, command line)."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                stat = fh.read()
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:  # gone meanwhile
            continue
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        table[int(entry.name)] = (int(ppid), state, cmdline)
    return table


def running_descendants(pid: int, table: dict | None = None) -> set[int]:
    """Processes below `pid` that are still running (zombies are dead: only their exit status is left)."""
    table = process_table() if table is None else table
    found, frontier = set(), [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, _, _) in table.items():
            if ppid == parent and child not in found:
                found.add(child)
                frontier.append(child)
    return {p for p in found if table[p][1] not in "ZX"}


def leftover_processes(root_pid: int, marker: str) -> dict[int, str]:
    """Running processes below `root_pid`, or anywhere with `marker` (the suite's temporary folder)
    in their command line, as orphans reparented away from the suite have: pid -> command line."""
    table = process_table()
    pids = running_descendants(root_pid, table)
    pids |= {p for p, (_, state, cmd) in table.items() if marker in cmd and state not in "ZX" and p != root_pid}
    # multiprocessing's resource tracker is the suite's own helper: it exits when pytest closes its pipe
    return {p: table[p][2] for p in sorted(pids) if "multiprocessing.resource_tracker" not in table[p][2]}


@pytest.fixture(scope="session", autouse=True)
def no_leftover_processes(tmp_path_factory):
    """Fail the run if a process started by the suite is still alive at its end (then kill it)."""
    yield
    if not os.path.isdir("/proc/self/task"):
        return
    left = leftover_processes(os.getpid(), str(tmp_path_factory.getbasetemp()) + os.sep)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if left:
        listing = "; ".join(f"{pid}: {cmd[:160]}" for pid, cmd in left.items())
        pytest.fail(
            f"{len(left)} process(es) started by the tests outlived them (now killed): {listing}", pytrace=False
        )


def load_vector(path: Path) -> dict:
    case = json.loads(path.read_text("utf-8"))
    if "input_repeat" in case:
        spec = case["input_repeat"]
        case["input"] = spec["prefix"] + spec["repeat"] * spec["count"]
    return case


def vector_params(kind: str) -> list:
    return [pytest.param(load_vector(p), id=p.stem) for p in sorted((VECTORS / kind).glob("*.json"))]


@pytest.fixture(scope="session")
def vector_config() -> dict:
    return json.loads((VECTORS / "config.json").read_text("utf-8"))


@pytest.fixture(scope="session")
def vector_jwks() -> dict:
    return json.loads((VECTORS / "jwks.json").read_text("utf-8"))


@pytest.fixture
def keypair() -> tuple[bytes, Ed25519PrivateKey]:
    """A fixed-seed signing key and its key id."""
    private = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"verifier fixture key").digest())
    return keys.kid_for(keys.raw_public(private)), private


@pytest.fixture
def instance(tmp_path, monkeypatch) -> Path:
    """An empty instance folder that VERIFIER_* settings point to."""
    folder = tmp_path / "instance"
    monkeypatch.setenv("VERIFIER_INSTANCE", str(folder))
    monkeypatch.delenv("VERIFIER_KEYS", raising=False)
    monkeypatch.delenv("VERIFIER_DB", raising=False)
    monkeypatch.setenv("VERIFIER_BASE_URL", "HTTPS://VERIFY.EXAMPLE.CN/")
    monkeypatch.setenv("VERIFIER_KEY_PASSPHRASE", "correct horse battery staple")
    return folder


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


# --- an issued world for lookup tests: keys, batches, a fresh database copy per test ---------

PIN_SECRET = b"test-pin-secret-0123456789"
BASE_URL = "HTTPS://VERIFY.EXAMPLE.CN/"


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> dict:
    """A key and four batches, issued once: compact with PINs, GS1, recalled, expired."""
    import datetime as dt
    import sqlite3

    from verifier import clock, codes, db, issue

    root = tmp_path_factory.mktemp("world")
    keys_dir = root / "keys"
    record = keys.create_key(keys_dir, "dev", b"pw", dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    _, private = keys.load_private_key(keys_dir, "dev", b"pw")
    kid = bytes.fromhex(record.kid)
    db_path = root / "verifier.db"

    random_bytes = seeded_random_bytes("world")

    def batch(name, **fields):
        request = issue.BatchRequest(
            enterprise="华茶集团",
            product="绿茶",
            spec="500g",
            out_dir=root / name,
            base_url=BASE_URL,
            formats=("csv",),
            **fields,
        )
        result = issue.issue_batch(db_path, request, private, kid, pin_secret=PIN_SECRET, random_bytes=random_bytes)
        with open(root / name / "codes.csv", encoding="utf-8", newline="") as fh:
            return result.batch_id, list(issue.read_codes_csv(fh))

    sq, tr, ac = codes.MARKS
    world = {"root": root, "keys_dir": keys_dir, "db": db_path, "private": private, "kid": kid}
    world["pin"] = batch(
        "pin",
        mark=sq,
        count=40,
        pin=True,
        lot="L2026-11",
        production_date=dt.date(2026, 11, 1),
        expiry=dt.date(2030, 10, 31),
    )
    world["gs1"] = batch(
        "gs1", mark=ac, count=10, form="gs1", gtin="09506000134352", lot="L7", expiry=dt.date(2030, 1, 31)
    )
    world["recalled"] = batch("recalled", mark=tr, count=5)
    world["expired"] = batch(
        "expired", mark=tr, count=5, production_date=dt.date(2019, 1, 1), expiry=dt.date(2020, 1, 1)
    )
    conn = db.connect(db_path)
    issue.recall_batch(conn, world["recalled"][0], "contaminated lot", clock.now())
    conn.close()
    with sqlite3.connect(db_path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return world


@pytest.fixture
def db_copy(world, tmp_path) -> Path:
    """A fresh copy of the world's database."""
    import shutil

    target = tmp_path / "verifier.db"
    shutil.copyfile(world["db"], target)
    return target


@pytest.fixture
def app_config(world, db_copy, tmp_path):
    """The lookup server's test settings, with `overrides` (config keys) on top: a plain dict, so a
    test can also hand it to a subprocess."""

    def make(**overrides) -> dict:
        return {
            "DATABASE": str(db_copy),
            "KEYS_DIR": str(world["keys_dir"]),
            "JWKS_FILE": None,
            "BASE_URLS": [BASE_URL],
            "PIN_SECRET": PIN_SECRET,
            "SECRET_KEY": b"test-secret",
            "RATELIMIT": "off",
            "INSTANCE": str(tmp_path),
            "TRUSTED_PROXIES": 0,
            "TESTING": True,
            **overrides,
        }

    return make


@pytest.fixture
def make_app(app_config):
    """`make_app(**overrides)`: a lookup server over a fresh copy of the world's database, with the
    world's keys and PIN secret, no rate limit and a test secret key; `overrides` are config keys,
    e.g. make_app(TRUSTED_PROXIES=1, DATABASE=str(other_db))."""
    from verifier.web import create_app

    def make(**overrides):
        return create_app(app_config(**overrides))

    return make


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RunningServer:
    """`verifier serve` in its own process group, on a free port of 127.0.0.1."""

    def __init__(self, env: dict, workers: int = 2):
        self.env, self.workers = env, workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, timeout: float = 30) -> RunningServer:
        import subprocess
        import sys
        import time
        import urllib.request

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "verifier", "serve", "--port", str(self.port), "--workers", str(self.workers)],
            env=self.env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def kill(self) -> None:
        import os
        import signal

        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        import os
        import signal

        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except Exception:  # noqa: BLE001
                self.kill()


@pytest.fixture
def server_env(world, db_copy, tmp_path) -> dict:
    import os

    return {
        **os.environ,
        "VERIFIER_DB": str(db_copy),
        "VERIFIER_KEYS": str(world["keys_dir"]),
        "VERIFIER_BASE_URL": BASE_URL,
        "VERIFIER_PIN_SECRET": PIN_SECRET.decode(),
        "VERIFIER_RATELIMIT": "off",
        "VERIFIER_SECRET_KEY": "test-secret",
        "VERIFIER_INSTANCE": str(tmp_path / "instance"),
    }


@pytest.fixture
def serve(server_env):
    """Start `verifier serve` with extra environment; stopped after the test."""
    started = []

    def start(workers: int = 2, **env) -> RunningServer:
        server = RunningServer({**server_env, **env}, workers).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def audit_world(world, db_copy, tmp_path, make_app):
    """Scans of two enterprises' batches, and one account (with a token) per principal."""
    import datetime as dt

    from verifier import accounts, codes, db, issue

    NOW = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
    request = issue.BatchRequest(
        mark=codes.MARKS[1],
        enterprise="Other Co",
        product="Soap",
        count=3,
        out_dir=tmp_path / "other",
        base_url=BASE_URL,
        formats=("csv",),
    )
    other = issue.issue_batch(
        db_copy, request, world["private"], world["kid"], random_bytes=seeded_random_bytes("audit_world")
    )
    app = make_app()
    with open(tmp_path / "other" / "codes.csv", encoding="utf-8", newline="") as fh:
        other_rows = list(issue.read_codes_csv(fh))
    for url in [world["pin"][1][0]["url"]] * 2 + [other_rows[0]["url"]] * 2:
        app.test_client().get("/" + url.split("/", 3)[3])
    conn = db.connect(db_copy)
    tokens = {"anonymous": None}
    with db.transaction(conn):
        mine = conn.execute("SELECT id FROM enterprises WHERE name = '华茶集团'").fetchone()[0]
        theirs = conn.execute("SELECT id FROM enterprises WHERE name = 'Other Co'").fetchone()[0]
        for name, role, enterprise in (
            ("ada", "admin", None),
            ("ian", "inspector", None),
            ("eve", "enterprise", mine),
            ("oscar", "enterprise", theirs),
        ):
            accounts.add_user(conn, name, role, "correct horse battery", enterprise, "test", NOW)
            tokens[name] = accounts.issue_token(conn, name, "test", "test", NOW)[1]
        accounts.add_user(conn, "gone", "inspector", "correct horse battery", None, "test", NOW)
        tokens["revoked"] = accounts.issue_token(conn, "gone", "", "test", NOW)[1]
        accounts.disable_user(conn, "gone", "test", NOW)
    return {
        "app": app,
        "tokens": tokens,
        "mine": world["pin"],
        "theirs": (other.batch_id, other_rows),
        "my_serial": world["pin"][1][0]["serial"],
        "their_serial": other_rows[0]["serial"],
    }


# --- forging codes: flip one signature bit, so the result is always a well-formed forgery ---------


def forged_url(url: str, bit: int = 0, base_url: str = BASE_URL) -> str:
    """`url` with one bit of its signature flipped: well formed, validly keyed, never genuine."""
    from verifier import codes

    code = codes.decode(url, [base_url])
    signature = bytearray(code.signature)
    signature[bit // 8] ^= 1 << (bit % 8)
    code.signature = bytes(signature)
    return codes.encode_url(code, base_url)


# --- the audit UI as a browser uses it ---------------------------------------------------------


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    import re

    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)


def log_in(client, who, password="correct horse battery", ip="192.0.2.10"):
    """Post the login form as a browser does: fetch it (cookie and token), then send it."""
    form = client.get("/audit/login", environ_base={"REMOTE_ADDR": ip}).get_data(as_text=True)
    return client.post(
        "/audit/login",
        data={"username": who, "password": password, "csrf": csrf_of(form)},
        environ_base={"REMOTE_ADDR": ip},
    )
