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


def pytest_terminal_summary(terminalreporter) -> None:
    """Skips grouped by reason, one line each (the PostgreSQL half alone would take hundreds)."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        terminalreporter.section("skipped, by reason")
        for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
            terminalreporter.line(f"{count:5d} skipped: {reason.removeprefix('Skipped: ')}")


def pytest_report_header(config) -> str:
    return f"VERIFIER_TEST_SEED={TEST_SEED} (serials of test batches; set it to repeat a run)"


def seeded_random_bytes(label: str):
    """A deterministic stand-in for os.urandom, from TEST_SEED and `label` (the test or fixture)."""
    return random.Random(f"{TEST_SEED}:{label}").randbytes


_password_hashes: dict[str, str] = {}


@pytest.fixture(autouse=True)
def password_hashes_made_once(request, monkeypatch):
    """Accounts that tests make share one scrypt hash per password: it costs 0.1 s, and fixtures make
    hundreds of accounts. Signing in still checks it with scrypt; test_accounts.py, which is about
    the hashing, gets a fresh salt every time."""
    from verifier import accounts

    if request.module.__name__ == "test_accounts":
        return
    real = accounts.hash_password

    def hash_password(password: str) -> str:
        if password not in _password_hashes:
            _password_hashes[password] = real(password)
        return _password_hashes[password]

    monkeypatch.setattr(accounts, "hash_password", hash_password)


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
    monkeypatch.delenv("VERIFIER_DATABASE_URL", raising=False)
    monkeypatch.setenv("VERIFIER_BASE_URL", "HTTPS://VERIFY.EXAMPLE.CN/")
    monkeypatch.setenv("VERIFIER_KEY_PASSPHRASE", "correct horse battery staple")
    return folder


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


# --- an issued world for lookup tests: keys, batches, a fresh database copy per test ---------

PIN_SECRET = b"test-pin-secret-0123456789"
BASE_URL = "HTTPS://VERIFY.EXAMPLE.CN/"


# --- the two engines: every test that uses a database runs on SQLite and on PostgreSQL -----------
#
# scripts/test starts a throwaway PostgreSQL server and sets VERIFIER_TEST_POSTGRES to a URL of its
# maintenance database; without it the PostgreSQL half is skipped, and the summary says why.

POSTGRES_ADMIN_URL = os.environ.get("VERIFIER_TEST_POSTGRES", "")
ENGINES = ("sqlite", "postgresql")


class PostgresServer:
    """Databases on the test server: made empty or from a template, dropped at the end of the run."""

    def __init__(self, admin_url: str):
        self.admin_url = admin_url
        self.made: list[str] = []
        self._admin = None
        self._count = 0

    def admin(self):
        import psycopg

        if self._admin is None or self._admin.closed:
            self._admin = psycopg.connect(self.admin_url, autocommit=True)
        return self._admin

    def url(self, name: str) -> str:
        return self.admin_url.rsplit("/", 1)[0] + "/" + name  # postgresql://user@host:port/<name>

    def create(self, name: str | None = None, template: str | None = None) -> str:
        """A new database (a copy of the database at URL `template`, if given); its URL."""
        self._count += 1
        name = name or f"t{os.getpid()}_{self._count}"
        source = f' TEMPLATE "{template.rsplit("/", 1)[1]}" STRATEGY FILE_COPY' if template else ""
        self.admin().execute(f'CREATE DATABASE "{name}"{source}')
        self.made.append(name)
        return self.url(name)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self.admin().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def drop_all(self) -> None:
        if os.environ.get("VERIFIER_TEST_POSTGRES_THROWAWAY") == "1":  # scripts/test removes the whole cluster
            self.made.clear()  # (dropping some 1,500 databases one by one took 36 s)
        for name in self.made:
            try:
                self.admin().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception:  # noqa: BLE001  (the server is thrown away after the run anyway)
                pass
        if self._admin is not None:
            self._admin.close()


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers",
        "sqlite_only(reason): the test is about SQLite itself (its file, WAL, pragmas); skipped on PostgreSQL",
    )
    config.addinivalue_line("markers", "postgres_only(reason): the test is about PostgreSQL itself; skipped on SQLite")


def pytest_collection_modifyitems(config, items) -> None:
    """`@pytest.mark.sqlite_only("why")` / `postgres_only("why")`: the other engine's case is skipped, saying why."""
    for item in items:
        engine = getattr(item, "callspec", None) and item.callspec.params.get("engine")
        for marker, other in (("sqlite_only", "postgresql"), ("postgres_only", "sqlite")):
            found = item.get_closest_marker(marker)
            if found and engine == other:
                why = found.args[0] if found.args else found.kwargs.get("reason", "")
                item.add_marker(pytest.mark.skip(reason=f"{marker.replace('_', ' ')}: {why}"))


@pytest.fixture(scope="session")
def postgres_server():
    """The test PostgreSQL server, or None when VERIFIER_TEST_POSTGRES is not set."""
    if not POSTGRES_ADMIN_URL:
        yield None
        return
    server = PostgresServer(POSTGRES_ADMIN_URL)
    yield server
    server.drop_all()


@pytest.fixture(scope="session", params=ENGINES)
def engine(request) -> str:
    """`sqlite` or `postgresql`: the engine of the test's databases."""
    if request.param == "postgresql" and not POSTGRES_ADMIN_URL:
        pytest.skip("PostgreSQL half: no test server (scripts/test starts one; VERIFIER_TEST_POSTGRES is unset)")
    return request.param


@pytest.fixture
def new_database(engine, tmp_path, postgres_server):
    """`new_database(name)`: the location of a new, empty database of the test's engine (a path
    under tmp_path on SQLite, a URL on PostgreSQL)."""
    made = []

    def make(name: str = "verifier.db"):
        if engine == "postgresql":
            url = postgres_server.create()
            made.append(url)
            return url
        return tmp_path / name

    yield make
    for url in made:
        postgres_server.drop(url)


def database_env(location) -> dict[str, str]:
    """The environment variable that points verifier at `location` (VERIFIER_DB for a SQLite
    file, VERIFIER_DATABASE_URL for PostgreSQL)."""
    text = str(location)
    if text.startswith("postgresql://"):
        return {"VERIFIER_DATABASE_URL": text}
    return {"VERIFIER_DB": text}


def log_signer_for_tests():
    """The tests' log key (fixed seed): `settle` signs checkpoints with it."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from verifier import logtree

    return logtree.LogSigner(TEST_LOG_ORIGIN, Ed25519PrivateKey.from_private_bytes(bytes(range(32))))


TEST_LOG_ORIGIN = "verifier.test/log"


def log_trust_for_tests():
    """Trust in the tests' log key, for `auditlog.verify`."""
    from verifier import auditlog

    return auditlog.Trust(log_keys=(log_signer_for_tests().verifier,))


def settle(location_or_conn, sign: bool = True) -> int:
    """Let the log sequencer put everything pending into the tree (and number it, PostgreSQL), then
    sign a checkpoint with the tests' log key: how many entries."""
    from verifier import db, sequencer

    signer = log_signer_for_tests() if sign else None
    if isinstance(location_or_conn, (str, Path)):
        conn = db.connect(location_or_conn)
        try:
            return sequencer.drain(conn, signer=signer)
        finally:
            conn.close()
    return sequencer.drain(location_or_conn, signer=signer)


@pytest.fixture(scope="session")
def world(tmp_path_factory, engine, postgres_server) -> dict:
    """A key and four batches, issued once per engine: compact with PINs, GS1, recalled, expired."""
    import datetime as dt
    import sqlite3

    from verifier import clock, codes, db, issue

    root = tmp_path_factory.mktemp(f"world-{engine}")
    keys_dir = root / "keys"
    record = keys.create_key(keys_dir, "dev", b"pw", dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    _, private = keys.load_private_key(keys_dir, "dev", b"pw")
    kid = bytes.fromhex(record.kid)
    db_path = root / "verifier.db" if engine == "sqlite" else postgres_server.create(f"world_{os.getpid()}")

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
    world = {"root": root, "keys_dir": keys_dir, "db": db_path, "private": private, "kid": kid, "engine": engine}
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
    settle(conn)  # PostgreSQL: the batches' and the recall's log entries chained, as on SQLite
    conn.close()
    if engine == "sqlite":
        with sqlite3.connect(db_path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return world


@pytest.fixture
def db_copy(world, tmp_path, postgres_server):
    """A fresh copy of the world's database: a file (Path) on SQLite, a database (its URL) on PostgreSQL."""
    import shutil

    if world["engine"] == "postgresql":
        return postgres_server.create(template=world["db"])
    target = tmp_path / "verifier.db"
    shutil.copyfile(world["db"], target)
    return target


@pytest.fixture
def staffed(world, db_copy):
    """The world's database with Other Co and an account per principal: eve and eva of 华茶集团,
    oscar of Other Co, ian (inspector), asa (association), ada (admin). Its connection stays open
    for the test: {"db", "conn", "users" (name -> account), "mine", "theirs", "world"}."""
    import datetime as dt

    from verifier import accounts, db

    now = dt.datetime(2026, 11, 22, 9, tzinfo=dt.UTC)
    conn = db.connect(db_copy)
    users = {}
    with db.transaction(conn):
        mine = conn.execute("SELECT id FROM enterprises WHERE name = '华茶集团'").fetchone()[0]
        theirs = conn.execute(
            "INSERT INTO enterprises (name, created_at) VALUES ('Other Co', '2026-11-22T00:00:00+00:00') RETURNING id"
        ).fetchone()[0]
        for name, role, enterprise in (
            ("eve", "enterprise", mine),
            ("eva", "enterprise", mine),
            ("oscar", "enterprise", theirs),
            ("ian", "inspector", None),
            ("asa", "association", None),
            ("ada", "admin", None),
        ):
            users[name] = accounts.add_user(conn, name, role, "correct horse battery", enterprise, "test", now)
    yield {"db": db_copy, "conn": conn, "users": users, "mine": mine, "theirs": theirs, "world": world}
    conn.close()


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

    made = []

    def make(**overrides):
        app = create_app(app_config(**overrides))
        made.append(app)
        return app

    yield make
    for app in made:  # PostgreSQL: the pools' connections and threads end with the test
        app.extensions["verifier"].pool.close()


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

    def __init__(self, env: dict, workers: int = 2, args: tuple[str, ...] = ()):
        self.env, self.workers, self.args = env, workers, tuple(args)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, timeout: float = 30) -> RunningServer:
        import subprocess
        import sys
        import time
        import urllib.request

        self.proc = subprocess.Popen(
            [
                sys.executable,
                *("-m", "verifier", "serve", "--port", str(self.port), "--workers", str(self.workers)),
                *self.args,
            ],
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
        **database_env(db_copy),
        "VERIFIER_KEYS": str(world["keys_dir"]),
        "VERIFIER_BASE_URL": BASE_URL,
        "VERIFIER_PIN_SECRET": PIN_SECRET.decode(),
        "VERIFIER_RATELIMIT": "off",
        "VERIFIER_SECRET_KEY": "test-secret",
        "VERIFIER_INSTANCE": str(tmp_path / "instance"),
    }


@pytest.fixture
def serve(server_env):
    """Start `verifier serve` (with extra command-line `args` and environment); stopped after the test."""
    started = []

    def start(workers: int = 2, args: tuple[str, ...] = (), **env) -> RunningServer:
        server = RunningServer({**server_env, **env}, workers, args).start()
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


# --- each code's life: cases, items, dealers ------------------------------------------------------


@pytest.fixture(scope="session")
def trace_world(tmp_path_factory, world, postgres_server) -> dict:
    """A database per engine, with the world's key: 2 case labels (released case by case) and 48
    item labels (released with their case), of 华茶集团; dealers in 四川 (成都) and 广东; one
    account per role with a token, like audit_world's. Nothing is packed or shipped yet: tests
    walk the codes' lives on a copy (`trace_copy`)."""
    import datetime as dt

    from verifier import accounts, codes, db, events, issue

    now = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
    root = tmp_path_factory.mktemp(f"trace-{world['engine']}")
    location = root / "verifier.db" if world["engine"] == "sqlite" else postgres_server.create(f"trace_{os.getpid()}")
    random_bytes = seeded_random_bytes("trace_world")

    def batch(name, **fields):
        request = issue.BatchRequest(
            mark=codes.MARKS[1],
            enterprise="华茶集团",
            product="绿茶",
            spec="500g",
            out_dir=root / name,
            base_url=BASE_URL,
            formats=("csv",),
            lot="L2026-11",
            production_date=dt.date(2026, 11, 20),
            production_place="浙江杭州",
            **fields,
        )
        result = issue.issue_batch(
            location, request, world["private"], world["kid"], now=now, random_bytes=random_bytes
        )
        with open(root / name / "codes.csv", encoding="utf-8", newline="") as fh:
            return result.batch_id, list(issue.read_codes_csv(fh))

    cases = batch("cases", count=2, unit="case", activation="case")
    items = batch("items", count=48, activation="case")
    conn = db.connect(location)
    tokens: dict[str, str | None] = {"anonymous": None}
    with db.transaction(conn):
        enterprise = conn.execute("SELECT id FROM enterprises WHERE name = '华茶集团'").fetchone()[0]
        other = conn.execute(
            "INSERT INTO enterprises (name, created_at) VALUES ('Other Co', '2026-11-25T08:00:00+00:00') RETURNING id"
        ).fetchone()[0]
        sichuan = events.register_dealer(
            conn, enterprise, "SC-01", "成都茶行", ["510100"], "6901234000016", actor="test", now=now
        )
        guangdong = events.register_dealer(
            conn, enterprise, "GD-01", "广州茶行", ["440000"], None, actor="test", now=now
        )
        for name, role, owner in (
            ("ada", "admin", None),
            ("ian", "inspector", None),
            ("eve", "enterprise", enterprise),
            ("oscar", "enterprise", other),
        ):
            accounts.add_user(conn, name, role, "correct horse battery", owner, "test", now)
            tokens[name] = accounts.issue_token(conn, name, "test", "test", now)[1]
    settle(conn)
    conn.close()
    return {
        "db": location,
        "now": now,
        "cases": cases,
        "items": items,
        "enterprise": enterprise,
        "dealers": {"sichuan": sichuan, "guangdong": guangdong},
        "tokens": tokens,
        "engine": world["engine"],
    }


@pytest.fixture
def trace_copy(trace_world, tmp_path, postgres_server):
    """A fresh copy of the trace world's database (a path on SQLite, a URL on PostgreSQL)."""
    import shutil
    import sqlite3

    if trace_world["engine"] == "postgresql":
        return postgres_server.create(template=trace_world["db"])
    with sqlite3.connect(trace_world["db"]) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    target = tmp_path / "trace.db"
    shutil.copyfile(trace_world["db"], target)
    return target
