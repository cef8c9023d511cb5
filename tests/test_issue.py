"""Batch issuance: what an enterprise gets, what the registry records, and all-or-nothing runs."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import biip
import pytest
from conftest import database_env

from verifier import clock, codes, issue, keys, pins
from verifier import db as database
from verifier.cli import cli
from verifier.repos import registry as repo

PIN_SECRET = "test-pin-secret-0123456789"


@pytest.fixture
def location(new_database):
    """The registry of the test's engine that `issuer`'s commands use (VERIFIER_DB or VERIFIER_DATABASE_URL):
    on SQLite the instance's own database file, so the tests' folders hold what they did before."""
    return new_database("instance/verifier.db")


@pytest.fixture
def issuer(instance, runner, monkeypatch, location):
    """An instance with a signing key `dev` and a PIN secret, over the registry at `location`."""
    monkeypatch.setenv("VERIFIER_PIN_SECRET", PIN_SECRET)
    for name, value in database_env(location).items():
        monkeypatch.setenv(name, value)
    assert runner.invoke(cli, ["keys", "new", "dev"]).exit_code == 0
    return instance


def issue_cli(runner, out: Path, *extra: str, count: int = 40):
    args = [
        "batch",
        "issue",
        "--key",
        "dev",
        "--mark",
        "stable-qualified",
        "--enterprise",
        "华茶集团",
        "--product",
        "绿茶 500g",
        "--count",
        str(count),
        "--out",
        str(out),
        *extra,
    ]
    return runner.invoke(cli, args)


def read_csv(path: Path) -> list[dict]:
    """codes.csv as a label printer's software reads it: exact serials and PINs."""
    with open(path, encoding="utf-8", newline="") as fh:
        return list(issue.read_codes_csv(fh))


def query(location, sql: str, params=()) -> list[tuple]:
    """The rows of one query on the registry at `location`, on a connection of its own."""
    conn = database.connect(location, create=False)
    try:
        return [tuple(row) for row in conn.execute(sql, params).fetchall()]
    finally:
        conn.close()


def count(location, table: str) -> int:
    return query(location, f"SELECT count(*) FROM {table}")[0][0]


def dump(location) -> str:
    """Every row of every table of the registry, as text (what a stolen copy of it would show)."""
    conn = database.connect(location, create=False)
    try:
        if database.is_postgres_conn(conn):
            sql = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        else:
            sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
        tables = sorted(name for (name,) in conn.execute(sql))
        return "\n".join(f"{t}: {row}" for t in tables for row in conn.execute(f"SELECT * FROM {t}").fetchall())
    finally:
        conn.close()


def is_registry(location) -> bool:
    """Whether there is a registry at `location` yet (a command may fail before making it)."""
    try:
        database.connect(location, create=False).close()
    except database.StoreNotFound:
        return False
    return True


def test_issue_writes_every_format_and_registers_the_batch(issuer, location, runner, tmp_path):
    out = tmp_path / "labels"
    result = issue_cli(
        runner,
        out,
        "--format",
        "csv,png,label-png,svg,pdf",
        "--production-date",
        "2026-11-01",
        "--expiry",
        "2028-10-31",
        "--credit-code",
        "91350100M000100Y43",
    )
    assert result.exit_code == 0, result.stderr
    assert "Issued batch 1: 40 codes" in result.stdout
    rows = read_csv(out / "codes.csv")
    assert list(rows[0]) == ["serial", "code", "url"] and len(rows) == 40
    assert len({r["serial"] for r in rows}) == 40
    trusted = keys.trust_from_folder(issuer / "keys")
    for row in rows:
        verdict = codes.verify(row["url"], trusted, ["HTTPS://VERIFY.EXAMPLE.CN/"])
        assert verdict.genuine and verdict.code.batch == 1 and f"{verdict.code.serial:016d}" == row["serial"]
        assert codes.parse_human_code(row["code"]) == int(row["serial"])
        assert (out / "png" / f"{row['serial']}.png").is_file() and (out / "svg" / f"{row['serial']}.svg").is_file()
        assert (out / "label-png" / f"{row['serial']}.png").is_file()
    manifest = json.loads((out / "manifest.json").read_text("utf-8"))
    assert manifest["batch"]["enterprise"] == "华茶集团" and manifest["batch"]["count"] == 40
    assert manifest["counts"] == {
        "codes": 40,
        "png_files": 40,
        "label_png_files": 40,
        "svg_files": 40,
        "pdf_files": 1,
        "pdf_pages": 2,
    }
    assert len(manifest["files"]) == 122 and issue.verify_outputs(out) == []
    assert query(location, "SELECT count(*) FROM codes WHERE batch_id = 1") == [(40,)]
    assert query(location, "SELECT status, mark, expiry_date FROM batches") == [
        ("active", "stable-qualified", "2028-10-31")
    ]
    assert query(location, "SELECT credit_code FROM enterprises") == [("91350100M000100Y43",)]


def test_manifest_detects_an_edited_file(issuer, runner, tmp_path):
    out = tmp_path / "labels"
    assert issue_cli(runner, out).exit_code == 0
    with open(out / "codes.csv", "a") as fh:
        fh.write("0000000000000000,0000 0000 0000 00000,HTTPS://EVIL/\r\n")
    assert issue.verify_outputs(out) == ["codes.csv"]


def test_gs1_batch_urls_parse_with_biip(issuer, runner, tmp_path):
    out = tmp_path / "gs1"
    result = issue_cli(
        runner, out, "--gtin", "9506000134352", "--lot", "L2026-11", "--expiry", "2028-11-30", "--format", "csv"
    )
    assert result.exit_code == 0, result.stderr
    for row in read_csv(out / "codes.csv"):
        values = {e.ai.ai: e.value for e in biip.parse(row["url"]).gs1_digital_link_uri.element_strings}
        assert values["01"] == "09506000134352" and values["10"] == "L2026-11" and values["21"] == row["serial"]
        assert values["17"] == "281130"


def test_pins_are_in_the_printer_file_only(issuer, location, runner, tmp_path):
    out = tmp_path / "pin"
    result = issue_cli(runner, out, "--pin", "--format", "csv")
    assert result.exit_code == 0 and "PINs are in codes.csv only" in result.stdout
    rows = read_csv(out / "codes.csv")
    assert all(len(r["pin"]) == 8 and r["pin"].isdigit() for r in rows)
    assert all(pins.check_pin(PIN_SECRET.encode(), int(r["serial"]), r["pin"]) for r in rows)
    stored = dump(location)
    assert f"{int(rows[0]['serial'])}" in stored  # the dump shows the registry's codes...
    assert not any(r["pin"] in stored for r in rows)  # ...and no PIN


def test_many_chunks_on_all_cores_keep_order_and_uniqueness(issuer, location, tmp_path, keypair):
    kid, private = keypair
    request = issue.BatchRequest(
        mark=codes.MARKS[2],
        enterprise="E",
        product="P",
        count=9001,
        out_dir=tmp_path / "big",
        base_url="HTTPS://VERIFY.EXAMPLE.CN/",
        formats=("csv",),
    )
    seen = []
    result = issue.issue_batch(location, request, private, kid, progress=seen.append, workers=2)
    rows = read_csv(tmp_path / "big" / "codes.csv")
    assert result.count == len(rows) == len({r["serial"] for r in rows}) == 9001 and sum(seen) == 9001
    assert len(seen) == -(-9001 // issue.chunk_size(request.layout))
    assert count(location, "codes") == 9001
    assert {int(r["serial"]) for r in rows} == {s for (s,) in query(location, "SELECT serial FROM codes")}


def test_interrupted_issue_registers_nothing_and_leaves_no_output(issuer, location, tmp_path, keypair):
    kid, private = keypair
    request = issue.BatchRequest(
        mark=codes.MARKS[0],
        enterprise="E",
        product="P",
        count=9000,
        out_dir=tmp_path / "out",
        base_url="HTTPS://VERIFY.EXAMPLE.CN/",
        formats=("csv",),
    )

    def interrupt_after_first_chunk(count):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        issue.issue_batch(location, request, private, kid, progress=interrupt_after_first_chunk, workers=2)
    assert (count(location, "batches"), count(location, "codes")) == (0, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["instance"]


def start_issuer(out: Path, *extra: str) -> subprocess.Popen:
    """`verifier batch issue` of 400,000 codes in its own session (so its whole group can be killed)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "verifier",
            "batch",
            "issue",
            "--key",
            "dev",
            "--mark",
            "traceability",
            "--enterprise",
            "E",
            "--product",
            "P",
            "--count",
            "400000",
            "--out",
            str(out),
            "--format",
            "csv",
            *extra,
        ],
        env={**os.environ, "VERIFIER_DEBUG": ""},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_for(condition, what: str, timeout: float = 60) -> None:
    """Poll `condition` until it holds (readiness of another process, not a time window)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def codes_registered(location) -> int:
    """How many codes the registry holds (0 while the issuer has not made it yet)."""
    try:
        return count(location, "codes")
    except (database.StoreNotFound, *database.Error):
        return 0


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def batch_locks_left(location) -> list:
    """Batch locks still held or lying about: SQLite's lock files beside the database, PostgreSQL's
    advisory locks on the database (a session's, alive or not yet noticed dead by the server)."""
    if not database.is_postgres(location):
        return list(Path(location).parent.glob("*-batch-*.lock"))
    return query(
        location,
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )


def assert_rolled_back_by_the_next_command(location, out: Path) -> None:
    assert query(location, "SELECT status FROM batches") == [("issuing",)]
    listing = subprocess.run([sys.executable, "-m", "verifier", "batch", "list"], capture_output=True, text=True)
    assert listing.returncode == 0 and "No batches yet" in listing.stdout, listing.stderr
    assert (count(location, "batches"), count(location, "codes")) == (0, 0)
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.partial-*"))
    assert batch_locks_left(location) == []


def test_killed_issue_is_rolled_back_by_the_next_command(issuer, location, tmp_path):
    """kill -9 of the issuer and its workers in the middle of a run: the next batch command forgets the half batch."""
    out = tmp_path / "killed"
    proc = start_issuer(out)
    try:
        wait_for(lambda: codes_registered(location) > 0, "codes being registered")
    finally:
        kill_group(proc)
    assert_rolled_back_by_the_next_command(location, out)


def test_pool_workers_die_with_their_issuer_and_do_not_hold_its_lock(issuer, location, tmp_path):
    """kill -9 of the issuer alone: its pool workers die too, and its batch lock is free at once."""
    from conftest import running_descendants

    out = tmp_path / "orphans"
    proc = start_issuer(out, "--workers", "2")
    try:
        wait_for(lambda: len(running_descendants(proc.pid)) >= 2, "two pool workers")
        workers = running_descendants(proc.pid)
        wait_for(lambda: codes_registered(location) > 0, "codes being registered")  # the lock is held
        assert {w: lock_descriptors(w, proc.pid, location) for w in workers} == {w: set() for w in workers}
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        lock = lock_when_the_server_has_noticed(location, proc.pid)
        assert lock is not None, "a worker still holds the dead issuer's batch lock"
        lock.release()
        wait_for(lambda: not workers & running_pids(), "the workers to die with their parent", timeout=20)
    finally:
        kill_group(proc)
    assert_rolled_back_by_the_next_command(location, out)


def lock_descriptors(worker: int, issuer: int, location) -> set[str]:
    """What of the issuer's batch lock a pool worker has open: SQLite, the lock file; PostgreSQL, the
    socket of the issuer's session (the only socket an issuer shares with its workers: their
    queues are pipes)."""

    def links(pid: int) -> set[str]:
        found = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                found.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
            except OSError:  # closed meanwhile
                pass
        return found

    if database.is_postgres(location):
        return {link for link in links(worker) & links(issuer) if link.startswith("socket:")}
    return {link for link in links(worker) if link.endswith("-batch-1.lock")}


def lock_when_the_server_has_noticed(location, issuer_pid: int):
    """Batch 1's lock, tried once the dead issuer's connection is gone. SQLite: at once (the kernel
    dropped its flock with its last descriptor). PostgreSQL: once the server has ended the backend
    of the issuer's session, which it does when the session's socket is closed by every process
    that had it; a pool worker still holding a copy would keep the lock, and the wait times out."""
    conn = database.connect(location)
    if database.is_postgres_conn(conn):
        sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid != pg_backend_pid()"
        wait_for(lambda: conn.execute(sql).fetchone()[0] == 0, "the server to end the issuer's session", timeout=20)
    return issue._batch_lock(conn, 1, wait=False)


def running_pids() -> set[int]:
    from conftest import process_table

    return {pid for pid, (_, state, _) in process_table().items() if state not in "ZX"}


@pytest.mark.parametrize("recorded_pid", ["dead", "the-recoverers-own"])
def test_recovery_leaves_a_batch_whose_issuer_holds_its_lock(
    issuer, location, tmp_path, keypair, monkeypatch, recorded_pid
):
    """An issuer in another PID namespace records a pid that is dead, or is ours, here: its lock says it is alive."""
    kid, private = keypair
    monkeypatch.setattr(issue, "REGISTER_PER_TRANSACTION", 1)  # register chunk by chunk: more after the recovery
    request = issue.BatchRequest(
        mark=codes.MARKS[0],
        enterprise="E",
        product="P",
        count=9000,
        out_dir=tmp_path / "out",
        base_url="HTTPS://VERIFY.EXAMPLE.CN/",
        formats=("csv",),
    )
    recoveries = []

    def meanwhile_another_container_runs_a_batch_command(count):
        if recoveries:
            return
        other = database.connect(location)
        pid = 999_999_999 if recorded_pid == "dead" else os.getpid()
        with database.transaction(other) as conn:
            conn.execute("UPDATE batches SET issuing_pid = ?", [pid])
        recoveries.append(issue.recover_interrupted(other, clock.now()))
        other.close()

    result = issue.issue_batch(
        location, request, private, kid, progress=meanwhile_another_container_runs_a_batch_command, workers=1
    )
    assert recoveries == [[]]
    assert query(location, "SELECT id, status FROM batches") == [(result.batch_id, "active")]
    assert count(location, "codes") == 9000
    assert len(read_csv(tmp_path / "out" / "codes.csv")) == 9000


def test_a_batch_removed_while_being_issued_fails_at_once_with_a_clear_error(
    issuer, location, tmp_path, keypair, monkeypatch
):
    """What a wrongful recovery did: the issuer's next registration violates the foreign key. No endless retry."""
    kid, private = keypair
    monkeypatch.setattr(issue, "REGISTER_PER_TRANSACTION", 1)
    request = issue.BatchRequest(
        mark=codes.MARKS[0],
        enterprise="E",
        product="P",
        count=9000,
        out_dir=tmp_path / "out",
        base_url="HTTPS://VERIFY.EXAMPLE.CN/",
        formats=("csv",),
    )

    def delete_the_batch_behind_its_back(count):
        other = database.connect(location)
        with database.transaction(other) as conn:
            conn.execute("DELETE FROM codes")
            conn.execute("DELETE FROM batches")
        other.close()

    with pytest.raises(issue.IssueError, match="batch 1 was removed from the registry while it was being issued"):
        issue.issue_batch(location, request, private, kid, progress=delete_the_batch_behind_its_back, workers=1)
    assert count(location, "codes") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["instance"]


def test_serial_collision_redraws_are_bounded(issuer, location, tmp_path, keypair):
    """A random source that keeps hitting issued serials ends in an IssueError, not in a busy loop."""
    import struct

    kid, private = keypair
    first = issue.BatchRequest(
        mark=codes.MARKS[0],
        enterprise="E",
        product="P",
        count=2,
        out_dir=tmp_path / "first",
        base_url="HTTPS://VERIFY.EXAMPLE.CN/",
        formats=("csv",),
    )
    issue.issue_batch(location, first, private, kid)
    taken = [int(r["serial"]) for r in read_csv(tmp_path / "first" / "codes.csv")]
    block = b"".join(struct.pack("<Q", s) for s in taken) * 8  # only ever the two issued serials

    second = issue.BatchRequest(**{**first.__dict__, "out_dir": tmp_path / "second", "count": 1})
    with pytest.raises(issue.IssueError, match=f"collided with issued ones {issue.MAX_REDRAWS + 1} times"):
        issue.issue_batch(location, second, private, kid, random_bytes=lambda n: block[:n])
    assert (count(location, "codes"), count(location, "batches")) == (2, 1)
    assert not (tmp_path / "second").exists()


def test_a_batch_killed_after_its_outputs_were_complete_is_rolled_forward(issuer, location, runner, tmp_path):
    out = tmp_path / "done"
    assert issue_cli(runner, out).exit_code == 0
    conn = database.connect(location)
    conn.execute("UPDATE batches SET status = 'issuing', issuing_pid = 999999999")
    assert issue.recover_interrupted(conn, clock.now()) == [(1, "completed")]
    assert repo.get_batch(conn, 1)["status"] == "active"


@pytest.mark.parametrize(
    "args, message",
    [
        (("--mark", "gold"), "Error: unknown mark type 'gold'"),
        (("--gtin", "9506000134353", "--lot", "L", "--expiry", "2028-01-01"), "Error: GTIN check digit is wrong"),
        (("--count", "0"), "Error: --count must be between 1 and 100,000,000"),
        (("--count", "-5"), "Error: --count must be between 1 and 100,000,000"),
        (("--format", "csv,docx"), "Error: --format takes a comma-separated list of csv, png, label-png, svg, pdf"),
        (
            ("--label-size", "25x20"),
            "Error: a 25 x 20 mm label cannot hold its text and a scannable QR code: it needs at "
            "least 30 x 27 mm (--label-size)",
        ),
        (("--gtin", "9506000134352"), "Error: a GS1 Digital Link batch needs --gtin, --lot and --expiry"),
        (("--label-size", "10x10"), "Error: a label must be at least 15 x 20 mm"),
        (
            ("--credit-code", "91350100M000100Y44"),
            "Error: unified social credit code 91350100M000100Y44 has a wrong check character",
        ),
        (("--out", "/proc/verifier-labels"), "Error: output folder /proc/verifier-labels is not writable"),
        (("--key", "missing"), "Error: no key named 'missing'"),
    ],
)
def test_bad_input_is_one_line_and_registers_nothing(issuer, location, runner, tmp_path, args, message):
    base = {
        "--key": "dev",
        "--mark": "stable-qualified",
        "--enterprise": "E",
        "--product": "P",
        "--count": "5",
        "--out": str(tmp_path / "o"),
    }
    extra = dict(zip(args[::2], args[1::2]))
    merged = [item for pair in {**base, **extra}.items() for item in pair]
    result = runner.invoke(cli, ["batch", "issue", *merged])
    assert result.exit_code != 0 and result.stdout == ""
    assert result.stderr.startswith(message) and len(result.stderr.strip().splitlines()) == 1
    if is_registry(location):
        assert count(location, "batches") == 0


def test_missing_passphrase_registers_nothing(issuer, location, runner, tmp_path, monkeypatch):
    monkeypatch.delenv("VERIFIER_KEY_PASSPHRASE")
    result = issue_cli(runner, tmp_path / "o")
    assert result.exit_code == 1 and result.stderr.startswith("Error: no key passphrase")
    assert not is_registry(location)


def test_pin_without_secret_is_refused(issuer, runner, tmp_path, monkeypatch):
    monkeypatch.delenv("VERIFIER_PIN_SECRET")
    result = issue_cli(runner, tmp_path / "o", "--pin")
    assert result.exit_code == 2 and result.stderr.startswith("Error: no PIN secret")


def test_output_folder_that_is_not_empty_is_refused(issuer, runner, tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "keep.txt").write_text("mine")
    result = issue_cli(runner, tmp_path / "o")
    assert result.exit_code == 1 and "already exists and is not empty" in result.stderr
    assert (tmp_path / "o" / "keep.txt").read_text() == "mine"


def test_list_show_recall_export(issuer, runner, tmp_path):
    assert issue_cli(runner, tmp_path / "a", "--lot", "L1").exit_code == 0
    assert issue_cli(runner, tmp_path / "b", count=3).exit_code == 0
    listing = runner.invoke(cli, ["batch", "list", "--json"])
    assert [b["id"] for b in json.loads(listing.stdout)] == [2, 1]
    shown = json.loads(runner.invoke(cli, ["batch", "show", "1", "--json"]).stdout)
    assert shown["lot"] == "L1" and shown["status"] == "active"
    recalled = runner.invoke(cli, ["batch", "recall", "1", "--reason", "contaminated lot"])
    assert recalled.exit_code == 0 and "contaminated lot" in recalled.stdout
    again = runner.invoke(cli, ["batch", "recall", "1", "--reason", "x"])
    assert again.exit_code == 1 and "already recalled" in again.stderr
    no_reason = runner.invoke(cli, ["batch", "recall", "2", "--reason", " "])
    assert no_reason.exit_code == 1 and "needs a reason" in no_reason.stderr
    exported = runner.invoke(cli, ["batch", "export", "1", "--key", "dev"])
    rows = list(issue.read_codes_csv(io.StringIO(exported.stdout)))
    issued = read_csv(tmp_path / "a" / "codes.csv")
    assert sorted((r["serial"], r["url"]) for r in rows) == sorted((r["serial"], r["url"]) for r in issued)
    assert {r["status"] for r in rows} == {"recalled"}
    missing = runner.invoke(cli, ["batch", "show", "99"])
    assert missing.exit_code == 1 and missing.stderr.strip() == "Error: no batch 99 (see `verifier batch list`)"


def test_progress_is_drawn_on_a_terminal_only():
    from verifier.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term, pipe = Terminal(), io.StringIO()
    for stream in (term, pipe):
        meter = Progress(1000, stream=stream, interval=0)
        meter.advance(250)
        meter.advance(750)
        meter.close()
    assert pipe.getvalue() == ""
    assert "1,000/1,000 codes" in term.getvalue() and "codes/s" in term.getvalue() and "ETA" in term.getvalue()


def test_credit_code_validation():
    assert repo.validate_credit_code("91350100m000100y43") == "91350100M000100Y43"
    with pytest.raises(database.StoreError):
        repo.validate_credit_code("91350100M000100Y4")


def test_migrations_are_recorded_and_idempotent(new_database):
    conn = database.connect(new_database("r.db"))
    assert database.migrations_applied(conn) == list(database.MIGRATION_NAMES)
    assert database.migrate(conn) == []
    conn.close()


@pytest.mark.sqlite_only("SQLite's journal mode and foreign-key pragma")
def test_a_sqlite_registry_is_in_wal_mode_with_foreign_keys(new_database):
    conn = database.connect(new_database("r.db"))
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    conn.close()


def test_a_serial_already_issued_elsewhere_is_redrawn(issuer, location, tmp_path, keypair):
    """The same random stream twice: the second batch's first three serials are all taken, and redrawn."""
    from conftest import seeded_random_bytes

    kid, private = keypair
    request = issue.BatchRequest(
        mark=codes.MARKS[0],
        enterprise="E",
        product="P",
        count=3,
        out_dir=tmp_path / "first",
        base_url="HTTPS://VERIFY.EXAMPLE.CN/",
        formats=("csv",),
    )
    issue.issue_batch(location, request, private, kid, random_bytes=seeded_random_bytes("same"))
    taken = {int(r["serial"]) for r in read_csv(tmp_path / "first" / "codes.csv")}
    second = issue.BatchRequest(**{**request.__dict__, "out_dir": tmp_path / "second", "count": 5})
    issue.issue_batch(location, second, private, kid, random_bytes=seeded_random_bytes("same"))
    serials = {int(r["serial"]) for r in read_csv(tmp_path / "second" / "codes.csv")}
    assert len(serials) == 5 and not serials & taken
    batches = query(location, "SELECT batch_id, count(*) FROM codes GROUP BY batch_id ORDER BY batch_id")
    assert batches == [(1, 3), (2, 5)]


def test_serials_are_repeatable_from_the_test_seed(issuer, new_database, tmp_path, keypair):
    """Serials come from the injected source (the suite's seed), so a failing run can be repeated."""
    from conftest import seeded_random_bytes

    kid, private = keypair
    drawn = []
    for name in ("a", "b"):
        db_path = new_database(f"{name}.db")
        request = issue.BatchRequest(
            mark=codes.MARKS[0],
            enterprise="E",
            product="P",
            count=4,
            out_dir=tmp_path / name / "out",
            base_url="HTTPS://VERIFY.EXAMPLE.CN/",
            formats=("csv",),
        )
        issue.issue_batch(db_path, request, private, kid, random_bytes=seeded_random_bytes("repeat"))
        drawn.append([r["serial"] for r in read_csv(tmp_path / name / "out" / "codes.csv")])
    assert drawn[0] == drawn[1]
    assert issue._draw_serials(4) != issue._draw_serials(4)  # production: the OS CSPRNG


def test_codes_csv_keeps_serials_and_pins_exact_in_spreadsheets_and_is_owner_only(issuer, location, tmp_path, keypair):
    """Serials and PINs are text digits (a leading tab: no lost zeros, no rounding past 15 digits),
    every field is quoted, rows are what csvcells.SafeWriter writes; folder 0700, files 0600."""
    import stat
    import struct

    from verifier import csvcells

    kid, private = keypair
    small = [42, 7_000_000_000_000_001]  # 0000000000000042 and a 16-digit number beyond float precision
    block = b"".join(struct.pack("<Q", s) for s in small) + bytes(range(256)) * 4
    request = issue.BatchRequest(
        mark=codes.MARKS[0],
        enterprise="E",
        product="P",
        count=2,
        pin=True,
        out_dir=tmp_path / "out",
        base_url="HTTPS://VERIFY.EXAMPLE.CN/",
        formats=("csv", "png", "pdf"),
    )
    issue.issue_batch(location, request, private, kid, pin_secret=PIN_SECRET.encode(), random_bytes=lambda n: block[:n])
    raw = (tmp_path / "out" / "codes.csv").read_bytes().decode("utf-8")
    lines = raw.split("\r\n")
    assert lines[0] == '"serial","code","url","pin"' and lines[-1] == ""
    assert lines[1].startswith('"\t0000000000000042","0000 0000 0000 0042') and lines[2].startswith(
        '"\t7000000000000001"'
    )
    rows = read_csv(tmp_path / "out" / "codes.csv")
    assert [r["serial"] for r in rows] == ["0000000000000042", "7000000000000001"]
    expected = io.StringIO()
    writer = csvcells.writer(expected)
    writer.writerow(["serial", "code", "url", "pin"])
    for r in rows:
        writer.writerow([r["serial"], r["code"], r["url"], r["pin"]], text_columns=frozenset({0, 3}))
    assert raw == expected.getvalue()
    assert all(pins.check_pin(PIN_SECRET.encode(), int(r["serial"]), r["pin"]) for r in rows)
    out = tmp_path / "out"
    assert stat.S_IMODE(out.stat().st_mode) == 0o700 and stat.S_IMODE((out / "png").stat().st_mode) == 0o700
    modes = {p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*") if p.is_file()}
    assert len(modes) == 5 and set(modes.values()) == {0o600}, modes


def test_batch_export_writes_serials_as_text_and_an_owner_only_file(issuer, runner, tmp_path):
    import stat

    assert issue_cli(runner, tmp_path / "a", count=3).exit_code == 0
    target = tmp_path / "export.csv"
    result = runner.invoke(cli, ["batch", "export", "1", "--key", "dev", "--out", str(target)])
    assert result.exit_code == 0, result.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    raw = target.read_bytes().decode("utf-8")
    assert raw.startswith('"serial","code","batch","status","url"\r\n"\t')
    with open(target, encoding="utf-8", newline="") as fh:
        exported = list(issue.read_codes_csv(fh))
    assert {r["serial"] for r in exported} == {r["serial"] for r in read_csv(tmp_path / "a" / "codes.csv")}
    assert all(len(r["serial"]) == 16 and r["batch"] == "1" and r["status"] == "active" for r in exported)
    unwritable = runner.invoke(cli, ["batch", "export", "1", "--out", str(tmp_path / "missing" / "x.csv")])
    assert unwritable.exit_code == 1 and unwritable.stderr.startswith("Error: cannot write ")


def test_reading_codes_csv_undoes_formula_neutralisation():
    from verifier import csvcells

    buffer = io.StringIO()
    writer = csvcells.writer(buffer)
    writer.writerow(["serial", "code", "note"])
    writer.writerow(["0000000000000001", '=HYPERLINK("x")', "-5"], text_columns=frozenset({0}))
    raw = buffer.getvalue()
    assert '"\'=HYPERLINK(""x"")"' in raw and '"\'-5"' in raw
    assert list(issue.read_codes_csv(io.StringIO(raw, newline=""))) == [
        {"serial": "0000000000000001", "code": '=HYPERLINK("x")', "note": "-5"}
    ]


@pytest.mark.postgres_only("transactions side by side (SQLite's writer lock runs one at a time)")
def test_a_recall_waits_for_one_in_progress_and_is_then_refused(issuer, location, runner, tmp_path, monkeypatch):
    """A second recall that starts while the first is still in its transaction waits for it, then
    finds the batch recalled: one recall, one log entry, never two."""
    import threading

    from conftest import settle

    from verifier import auditlog

    assert issue_cli(runner, tmp_path / "a", count=3).exit_code == 0
    first, second = database.connect(location), database.connect(location)
    release, in_first = threading.Event(), threading.Event()
    real_append = auditlog.append

    def append_then_hold(conn, *args, **kwargs):  # the first recall, between its update and its commit
        result = real_append(conn, *args, **kwargs)
        if conn is first:
            in_first.set()
            assert release.wait(30)
        return result

    monkeypatch.setattr(auditlog, "append", append_then_hold)
    outcomes: dict[str, object] = {}  # by recall: the two threads end in either order

    def recall(conn, reason):
        try:
            outcomes[reason] = issue.recall_batch(conn, 1, reason, clock.now())["recall_reason"]
        except database.StoreConflict as exc:
            outcomes[reason] = exc

    one = threading.Thread(target=recall, args=(first, "first"))
    one.start()
    assert in_first.wait(30)
    two = threading.Thread(target=recall, args=(second, "second"))
    two.start()
    backend = second.raw.info.backend_pid
    watcher = database.connect(location)
    waiting = "SELECT wait_event_type FROM pg_stat_activity WHERE pid = ?"
    wait_for(lambda: watcher.execute(waiting, (backend,)).fetchone() == ("Lock",), "the second recall to wait")
    release.set()
    one.join(30)
    two.join(30)
    assert outcomes["first"] == "first" and isinstance(outcomes["second"], database.StoreConflict), outcomes
    settle(watcher)
    kinds = [body for (body,) in watcher.execute("SELECT body FROM audit_log WHERE kind = 'batch.recalled'")]
    assert len(kinds) == 1 and '"first"' in kinds[0]
    for conn in (first, second, watcher):
        conn.close()


def test_recalls_sent_at_once_recall_once(issuer, location, runner, tmp_path):
    """Four operators recall one batch at the same moment: one recall is made and logged, the
    others are told it was already recalled (PostgreSQL runs their transactions side by side)."""
    from conftest import settle
    from together import run_together

    assert issue_cli(runner, tmp_path / "a", count=3).exit_code == 0
    recall = (
        "from verifier.cli import cli",
        "cli.main(['batch', 'recall', '1', '--reason', 'r{}'], prog_name='verifier')",
    )
    done = run_together([(recall[0], recall[1].format(i)) for i in range(4)])
    assert sorted(p.returncode for p in done) == [0, 1, 1, 1], [p.stderr[-2000:] for p in done]
    assert all("already recalled" in p.stderr for p in done if p.returncode)
    settle(location)
    assert count(location, "audit_log WHERE kind = 'batch.recalled'") == 1
