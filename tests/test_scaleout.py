"""Several lookup nodes on one database: `verifier serve` processes on their own ports, each with
its own workers (and on PostgreSQL its own log sequencer on standby), sharing one registry.

Check counts, "a repeat view counts once", PIN first use, rate limits and anomalies must come
out as on one node; a node or the sequencer killed with SIGKILL under load loses no scan it
acknowledged, and the log catches up and verifies. The same tests run on SQLite (two nodes on
one host share the file) and on PostgreSQL (the scale-out store).
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from conftest import settle

from verifier import anomalies, auditlog, clock, db, sequencer

CATCH_UP_SECONDS = 30  # the most a test waits for a sequencer to chain what is pending


def check(node, code: str, session: str | None = None, pin: str | None = None) -> dict:
    """One check through the JSON API of `node` (a browser session's cookie, if given)."""
    headers = {"Cookie": f"vsid={session}"} if session else {}
    if pin is None:
        request = urllib.request.Request(f"{node.url}/api/v1/verify?code={urllib.parse.quote(code)}", headers=headers)
    else:
        body = json.dumps({"code": code, "pin": pin}).encode()
        request = urllib.request.Request(
            f"{node.url}/api/v1/verify", data=body, headers={**headers, "Content-Type": "application/json"}
        )
    with urllib.request.urlopen(request, timeout=15) as response:
        return json.load(response)


def new_session() -> str:
    return secrets.token_hex(16)


def code_checks(location, serial: int) -> int:
    conn = db.connect(location)
    try:
        row = conn.execute("SELECT checks FROM code_checks WHERE serial = ?", (int(serial),)).fetchone()
        return 0 if row is None else int(row[0])
    finally:
        conn.close()


def scans_of(location, serials) -> list[tuple[int, int | None]]:
    """(serial, checks) of every scan of `serials`, in id order."""
    conn = db.connect(location)
    try:
        wanted = [int(s) for s in serials]
        rows = conn.execute(
            f"SELECT serial, checks FROM scans WHERE serial IN ({db.placeholders(wanted)}) ORDER BY id", wanted
        ).fetchall()
        return [(int(r[0]), r[1]) for r in rows]
    finally:
        conn.close()


def wait_for_the_log(location) -> auditlog.Report:
    """Until nothing is pending (the nodes' sequencer chains it), then the log's verification."""
    conn = db.connect(location)
    try:
        deadline = time.monotonic() + CATCH_UP_SECONDS
        while sequencer.status(conn)["pending"] and time.monotonic() < deadline:
            time.sleep(0.05)  # polls the sequencer's progress; no result depends on the interval
        return auditlog.verify(conn)
    finally:
        conn.close()


@pytest.fixture
def two_nodes(serve):
    """Two lookup nodes (one worker each) on the test's database."""
    return serve(workers=1), serve(workers=1)


# --- what one node would say, said by two -------------------------------------------------


def test_check_counts_add_up_across_nodes(two_nodes, world, db_copy):
    a, b = two_nodes
    url = world["pin"][1][1]["url"]
    answers = [check(node, url, new_session()) for node in (a, b, a, b, a)]
    assert [x["checks"] for x in answers] == [1, 2, 3, 4, 5]
    assert [x["reason"] for x in answers] == ["genuine"] + ["genuine-repeat"] * 3 + ["suspicious-repeat"]
    assert answers[4]["first_checked_at"] == answers[0]["first_checked_at"]
    assert code_checks(db_copy, world["pin"][1][1]["serial"]) == 5


def test_a_repeat_view_counts_once_on_any_node(two_nodes, world):
    a, b = two_nodes
    url, session = world["pin"][1][2]["url"], new_session()
    assert check(a, url, session)["checks"] == 1
    assert check(b, url, session)["checks"] == 1  # the same browser, another node: not counted again
    assert check(b, url, new_session())["checks"] == 2


def test_pin_first_use_is_known_to_every_node(two_nodes, world):
    a, b = two_nodes
    row = world["pin"][1][3]
    first = check(a, row["code"], new_session(), pin=row["pin"])
    again = check(b, row["code"], new_session(), pin=row["pin"])
    assert (first["reason"], first["pin"]) == ("genuine", "first")
    assert (again["reason"], again["pin"]) == ("pin-reused", "reused")
    assert again["pin_verified_at"] is not None


def test_the_rate_limit_is_shared_by_the_nodes(serve, world):
    a = serve(workers=1, VERIFIER_RATELIMIT="5/day")  # a day's window: the test never straddles one
    b = serve(workers=1, VERIFIER_RATELIMIT="5/day")
    url = world["gs1"][1][0]["url"]
    for node in (a, b, a, b, a):
        assert check(node, url)["ok"] is True
    with pytest.raises(urllib.error.HTTPError) as refused:
        check(b, url)  # the sixth request of this client, whichever node it reaches
    assert refused.value.code == 429 and int(refused.value.headers["Retry-After"]) >= 1


def test_anomalies_see_the_scans_of_every_node(two_nodes, world, db_copy):
    a, b = two_nodes
    row = world["pin"][1][4]
    for node in (a, b) * 3:  # six counted checks, three on each node
        check(node, row["url"], new_session())
    conn = db.connect(db_copy)
    try:
        since = clock.utc_text(clock.now() - dt.timedelta(days=1))
        found = [x for x in anomalies.find(conn, since) if x.serial == int(row["serial"])]
    finally:
        conn.close()
    assert [x.rule for x in found if x.rule == "repeat-checks"] == ["repeat-checks"]


def test_concurrent_checks_of_one_code_on_two_nodes_are_each_counted_once(two_nodes, world, db_copy):
    """Per-code serialisation without a global lock: 2 x 15 checks at once, counts 1..30, no count twice."""
    a, b = two_nodes
    row = world["pin"][1][5]
    answers: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def client(node):
        start.wait()
        try:
            for _ in range(5):
                answers.append(check(node, row["url"], new_session())["checks"])
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(node,)) for node in (a, b, a, b, a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert sorted(answers) == list(range(1, 31))
    assert sorted(checks for _, checks in scans_of(db_copy, [row["serial"]])) == list(range(1, 31))
    assert code_checks(db_copy, row["serial"]) == 30


def test_the_log_of_two_nodes_verifies(two_nodes, world, db_copy):
    a, b = two_nodes
    for i, row in enumerate(world["pin"][1][6:16]):
        check((a, b)[i % 2], row["url"], new_session())
    report = wait_for_the_log(db_copy)
    assert report.ok and report.pending == 0
    assert len(scans_of(db_copy, [r["serial"] for r in world["pin"][1][6:16]])) == 10


# --- SIGKILL under load ---------------------------------------------------------------------


class Load:
    """Clients checking codes against one node until stopped, counting the checks it acknowledged."""

    def __init__(self, node, rows, clients: int = 3):
        self.node, self.rows = node, rows
        self.acknowledged: dict[str, int] = {}
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(clients)]

    def _run(self, index: int) -> None:
        n = index
        while not self.stop.is_set():
            row = self.rows[n % len(self.rows)]
            n += len(self.threads)
            try:
                check(self.node, row["url"], new_session())
            except (OSError, ValueError, http.client.HTTPException):  # the node is gone, mid-answer too: not acked
                if self.stop.wait(0.01):
                    return
                continue
            with self.lock:
                self.acknowledged[row["serial"]] = self.acknowledged.get(row["serial"], 0) + 1

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def wait_for(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while sum(self.acknowledged.values()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sum(self.acknowledged.values()) >= count, "the load did not get going"


def assert_every_acknowledged_scan_is_kept(location, acknowledged: dict[str, int]) -> None:
    kept: dict[int, int] = {}
    for serial, _ in scans_of(location, acknowledged):
        kept[serial] = kept.get(serial, 0) + 1
    lost = {s: n - kept.get(int(s), 0) for s, n in acknowledged.items() if kept.get(int(s), 0) < n}
    assert not lost, f"acknowledged scans missing after SIGKILL: {lost}"


def test_sigkill_of_a_lookup_node_under_load_loses_no_acknowledged_scan(serve, world, db_copy):
    doomed, survivor = serve(workers=2), serve(workers=1)
    mine, theirs = world["pin"][1][16:28], world["pin"][1][28:40]
    with Load(doomed, mine) as load_a, Load(survivor, theirs) as load_b:
        load_a.wait_for(30)
        doomed.kill()  # SIGKILL to the node's process group: master, workers (and its sequencer)
        load_b.wait_for(sum(load_b.acknowledged.values()) + 20)  # the other node goes on
    assert_every_acknowledged_scan_is_kept(db_copy, load_a.acknowledged)
    assert_every_acknowledged_scan_is_kept(db_copy, load_b.acknowledged)
    report = wait_for_the_log(db_copy)  # on PostgreSQL the survivor's sequencer takes over
    assert report.ok and report.pending == 0, report.problems


@pytest.mark.postgres_only("the log sequencer exists on PostgreSQL; SQLite chains every entry as it is written")
def test_sigkill_of_the_sequencer_under_load_loses_nothing_and_the_log_catches_up(serve, server_env, world, db_copy):
    node = serve(workers=2, args=("--no-sequencer",))  # the log is left to `verifier sequence` processes
    sequencers = [start_sequencer(server_env)]
    try:
        with Load(node, world["pin"][1][:20]) as load:
            load.wait_for(40)
            sequencers[0].kill()  # mid-batch, perhaps: its transaction is rolled back, nothing half-chained
            sequencers[0].wait(10)
            load.wait_for(sum(load.acknowledged.values()) + 40)  # lookups never wait for the sequencer
            conn = db.connect(db_copy)
            try:
                assert sequencer.status(conn)["pending"] > 0  # nobody chains now
            finally:
                conn.close()
            sequencers.append(start_sequencer(server_env))  # a new leader catches up under load
            load.wait_for(sum(load.acknowledged.values()) + 20)
        assert_every_acknowledged_scan_is_kept(db_copy, load.acknowledged)
        report = wait_for_the_log(db_copy)
        assert report.ok and report.pending == 0, report.problems
        assert report.entries >= sum(load.acknowledged.values())
    finally:
        for process in sequencers:
            if process.poll() is None:
                process.kill()
            process.wait(10)


def start_sequencer(env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "verifier", "sequence"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.mark.postgres_only("leader election is a PostgreSQL advisory lock")
def test_of_two_sequencers_one_leads_and_the_other_takes_over(db_copy, world, make_app):
    conn = db.connect(db_copy)
    before = auditlog.verify(conn).entries
    app = make_app()
    for row in world["pin"][1][:5]:
        app.test_client().get("/" + row["url"].split("/", 3)[3])
    first_stop, second_stop = threading.Event(), threading.Event()
    led: dict[str, int] = {"first": 0, "second": 0}

    def counting(name):
        return lambda done: led.__setitem__(name, led[name] + done)

    first = threading.Thread(
        target=sequencer.run, args=(db_copy, sequencer.Stop(first_stop)), kwargs={"on_batch": counting("first")}
    )
    first.start()
    try:
        deadline = time.monotonic() + CATCH_UP_SECONDS
        while led["first"] < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        second = threading.Thread(
            target=sequencer.run, args=(db_copy, sequencer.Stop(second_stop)), kwargs={"on_batch": counting("second")}
        )
        second.start()
        for row in world["pin"][1][5:8]:
            app.test_client().get("/" + row["url"].split("/", 3)[3])
        while led["first"] < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert led == {"first": 8, "second": 0}  # the standby chained nothing while the leader ran
        first_stop.set()
        first.join(10)
        for row in world["pin"][1][8:10]:
            app.test_client().get("/" + row["url"].split("/", 3)[3])
        deadline = time.monotonic() + CATCH_UP_SECONDS
        while led["second"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert led["second"] == 2  # the standby took over
    finally:
        first_stop.set()
        second_stop.set()
        first.join(10)
        if "second" in locals():
            second.join(10)
    report = auditlog.verify(conn)
    conn.close()
    assert report.ok and report.pending == 0 and report.entries == before + 10
    assert settle(db_copy) == 0


def children(node) -> dict[int, str]:
    """The processes of a node's master: its workers and (PostgreSQL) its `verifier sequence`."""
    from conftest import process_table

    return {
        pid: cmd for pid, (ppid, state, cmd) in process_table().items() if ppid == node.proc.pid and state not in "ZX"
    }


def sequencer_children(node) -> list[int]:
    return [pid for pid, cmd in children(node).items() if "verifier sequence" in cmd]


@pytest.mark.postgres_only("the sequencer beside `verifier serve` runs on PostgreSQL only")
def test_the_nodes_sequencer_survives_a_reload_of_the_workers(serve, world, db_copy):
    import signal

    node = serve(workers=2)
    [child] = sequencer_children(node)
    workers = set(children(node)) - {child}
    node.proc.send_signal(signal.SIGHUP)  # gunicorn starts new workers and stops the old ones
    deadline = time.monotonic() + 20
    while set(children(node)) & workers and time.monotonic() < deadline:
        time.sleep(0.05)  # polls the reload's progress
    assert not set(children(node)) & workers, "the old workers did not exit"
    assert sequencer_children(node) == [child]  # old workers leaving did not take the sequencer with them
    check(node, world["pin"][1][1]["url"], new_session())
    report = wait_for_the_log(db_copy)
    assert report.ok and report.pending == 0
