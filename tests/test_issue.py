"""Batch issuance: what an enterprise gets, what the registry records, and all-or-nothing runs."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import biip
import pytest

from verifier import clock, codes, issue, keys, pins
from verifier import db as database
from verifier.cli import cli
from verifier.repos import registry as repo

PIN_SECRET = "test-pin-secret-0123456789"


@pytest.fixture
def issuer(instance, runner, monkeypatch):
    """An instance with a signing key `dev` and a PIN secret."""
    monkeypatch.setenv("VERIFIER_PIN_SECRET", PIN_SECRET)
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


def registry(instance: Path) -> sqlite3.Connection:
    return sqlite3.connect(instance / "verifier.db")


def test_issue_writes_every_format_and_registers_the_batch(issuer, runner, tmp_path):
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
    db = registry(issuer)
    assert db.execute("SELECT count(*) FROM codes WHERE batch_id = 1").fetchone() == (40,)
    assert db.execute("SELECT status, mark, expiry_date FROM batches").fetchall() == [
        ("active", "stable-qualified", "2028-10-31")
    ]
    assert db.execute("SELECT credit_code FROM enterprises").fetchone() == ("91350100M000100Y43",)


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


def test_pins_are_in_the_printer_file_only(issuer, runner, tmp_path):
    out = tmp_path / "pin"
    result = issue_cli(runner, out, "--pin", "--format", "csv")
    assert result.exit_code == 0 and "PINs are in codes.csv only" in result.stdout
    rows = read_csv(out / "codes.csv")
    assert all(len(r["pin"]) == 8 and r["pin"].isdigit() for r in rows)
    assert all(pins.check_pin(PIN_SECRET.encode(), int(r["serial"]), r["pin"]) for r in rows)
    dump = "\n".join(registry(issuer).iterdump())
    assert not any(r["pin"] in dump for r in rows)


def test_many_chunks_on_all_cores_keep_order_and_uniqueness(issuer, tmp_path, keypair):
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
    result = issue.issue_batch(issuer / "verifier.db", request, private, kid, progress=seen.append, workers=2)
    rows = read_csv(tmp_path / "big" / "codes.csv")
    assert result.count == len(rows) == len({r["serial"] for r in rows}) == 9001 and sum(seen) == 9001
    assert len(seen) == -(-9001 // issue.chunk_size(request.layout))
    db = registry(issuer)
    assert db.execute("SELECT count(*) FROM codes").fetchone() == (9001,)
    assert {int(r["serial"]) for r in rows} == {s for (s,) in db.execute("SELECT serial FROM codes")}


def test_interrupted_issue_registers_nothing_and_leaves_no_output(issuer, tmp_path, keypair):
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
        issue.issue_batch(
            issuer / "verifier.db", request, private, kid, progress=interrupt_after_first_chunk, workers=2
        )
    db = registry(issuer)
    assert db.execute("SELECT count(*) FROM batches").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM codes").fetchone() == (0,)
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


def codes_registered(db_path: Path) -> int:
    try:
        return sqlite3.connect(db_path).execute("SELECT count(*) FROM codes").fetchone()[0]
    except sqlite3.Error:
        return 0


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def assert_rolled_back_by_the_next_command(db_path: Path, out: Path) -> None:
    assert sqlite3.connect(db_path).execute("SELECT status FROM batches").fetchall() == [("issuing",)]
    listing = subprocess.run([sys.executable, "-m", "verifier", "batch", "list"], capture_output=True, text=True)
    assert listing.returncode == 0 and "No batches yet" in listing.stdout
    db = sqlite3.connect(db_path)
    assert db.execute("SELECT count(*) FROM batches").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM codes").fetchone() == (0,)
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.partial-*"))
    assert not list(db_path.parent.glob("*-batch-*.lock"))


def test_killed_issue_is_rolled_back_by_the_next_command(issuer, tmp_path):
    """kill -9 of the issuer and its workers in the middle of a run: the next batch command forgets the half batch."""
    out, db_path = tmp_path / "killed", issuer / "verifier.db"
    proc = start_issuer(out)
    try:
        wait_for(lambda: codes_registered(db_path) > 0, "codes being registered")
    finally:
        kill_group(proc)
    assert_rolled_back_by_the_next_command(db_path, out)


def test_pool_workers_die_with_their_issuer_and_do_not_hold_its_lock(issuer, tmp_path):
    """kill -9 of the issuer alone: its pool workers die too, and its batch lock is free at once."""
    from conftest import running_descendants

    out, db_path = tmp_path / "orphans", issuer / "verifier.db"
    proc = start_issuer(out, "--workers", "2")
    try:
        wait_for(lambda: len(running_descendants(proc.pid)) >= 2, "two pool workers")
        workers = running_descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        lock = issue._batch_lock(database.connect(db_path), 1, wait=False)
        assert lock is not None, "a worker still holds the dead issuer's batch lock"
        lock.release()
        wait_for(lambda: not workers & running_pids(), "the workers to die with their parent", timeout=20)
    finally:
        kill_group(proc)
    assert_rolled_back_by_the_next_command(db_path, out)


def running_pids() -> set[int]:
    from conftest import process_table

    return {pid for pid, (_, state, _) in process_table().items() if state not in "ZX"}


@pytest.mark.parametrize("recorded_pid", ["dead", "the-recoverers-own"])
def test_recovery_leaves_a_batch_whose_issuer_holds_its_lock(issuer, tmp_path, keypair, monkeypatch, recorded_pid):
    """An issuer in another PID namespace records a pid that is dead, or is ours, here: its lock says it is alive."""
    kid, private = keypair
    monkeypatch.setattr(issue, "REGISTER_PER_TRANSACTION", 1)  # register chunk by chunk: more after the recovery
    db_path = issuer / "verifier.db"
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
        other = database.connect(db_path)
        pid = 999_999_999 if recorded_pid == "dead" else os.getpid()
        with database.transaction(other) as conn:
            conn.execute("UPDATE batches SET issuing_pid = ?", [pid])
        recoveries.append(issue.recover_interrupted(other, clock.now()))
        other.close()

    result = issue.issue_batch(
        db_path, request, private, kid, progress=meanwhile_another_container_runs_a_batch_command, workers=1
    )
    assert recoveries == [[]]
    db = registry(issuer)
    assert db.execute("SELECT id, status FROM batches").fetchall() == [(result.batch_id, "active")]
    assert db.execute("SELECT count(*) FROM codes").fetchone() == (9000,)
    assert len(read_csv(tmp_path / "out" / "codes.csv")) == 9000


def test_a_batch_removed_while_being_issued_fails_at_once_with_a_clear_error(issuer, tmp_path, keypair, monkeypatch):
    """What a wrongful recovery did: the issuer's next registration violates the foreign key. No endless retry."""
    kid, private = keypair
    monkeypatch.setattr(issue, "REGISTER_PER_TRANSACTION", 1)
    db_path = issuer / "verifier.db"
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
        other = database.connect(db_path)
        with database.transaction(other) as conn:
            conn.execute("DELETE FROM codes")
            conn.execute("DELETE FROM batches")
        other.close()

    with pytest.raises(issue.IssueError, match="batch 1 was removed from the registry while it was being issued"):
        issue.issue_batch(db_path, request, private, kid, progress=delete_the_batch_behind_its_back, workers=1)
    assert registry(issuer).execute("SELECT count(*) FROM codes").fetchone() == (0,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["instance"]


def test_serial_collision_redraws_are_bounded(issuer, tmp_path, keypair):
    """A random source that keeps hitting issued serials ends in an IssueError, not in a busy loop."""
    import struct

    kid, private = keypair
    db_path = issuer / "verifier.db"
    first = issue.BatchRequest(
        mark=codes.MARKS[0],
        enterprise="E",
        product="P",
        count=2,
        out_dir=tmp_path / "first",
        base_url="HTTPS://VERIFY.EXAMPLE.CN/",
        formats=("csv",),
    )
    issue.issue_batch(db_path, first, private, kid)
    taken = [int(r["serial"]) for r in read_csv(tmp_path / "first" / "codes.csv")]
    block = b"".join(struct.pack("<Q", s) for s in taken) * 8  # only ever the two issued serials

    second = issue.BatchRequest(**{**first.__dict__, "out_dir": tmp_path / "second", "count": 1})
    with pytest.raises(issue.IssueError, match=f"collided with issued ones {issue.MAX_REDRAWS + 1} times"):
        issue.issue_batch(db_path, second, private, kid, random_bytes=lambda n: block[:n])
    db = registry(issuer)
    assert db.execute("SELECT count(*) FROM codes").fetchone() == (2,)
    assert db.execute("SELECT count(*) FROM batches").fetchone() == (1,)
    assert not (tmp_path / "second").exists()


def test_a_batch_killed_after_its_outputs_were_complete_is_rolled_forward(issuer, runner, tmp_path):
    out = tmp_path / "done"
    assert issue_cli(runner, out).exit_code == 0
    conn = database.connect(issuer / "verifier.db")
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
def test_bad_input_is_one_line_and_registers_nothing(issuer, runner, tmp_path, args, message):
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
    db_file = issuer / "verifier.db"
    if db_file.exists():
        assert sqlite3.connect(db_file).execute("SELECT count(*) FROM batches").fetchone() == (0,)


def test_missing_passphrase_registers_nothing(issuer, runner, tmp_path, monkeypatch):
    monkeypatch.delenv("VERIFIER_KEY_PASSPHRASE")
    result = issue_cli(runner, tmp_path / "o")
    assert result.exit_code == 1 and result.stderr.startswith("Error: no key passphrase")
    assert not (issuer / "verifier.db").exists()


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


def test_migrations_are_recorded_and_idempotent(tmp_path):
    conn = database.connect(tmp_path / "r.db")
    assert database.migrations_applied(conn) == list(database.MIGRATION_NAMES)
    assert database.migrate(conn) == []
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_a_serial_already_issued_elsewhere_is_redrawn(issuer, tmp_path, keypair):
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
    issue.issue_batch(issuer / "verifier.db", request, private, kid, random_bytes=seeded_random_bytes("same"))
    taken = {int(r["serial"]) for r in read_csv(tmp_path / "first" / "codes.csv")}
    second = issue.BatchRequest(**{**request.__dict__, "out_dir": tmp_path / "second", "count": 5})
    issue.issue_batch(issuer / "verifier.db", second, private, kid, random_bytes=seeded_random_bytes("same"))
    serials = {int(r["serial"]) for r in read_csv(tmp_path / "second" / "codes.csv")}
    assert len(serials) == 5 and not serials & taken
    batches = registry(issuer).execute("SELECT batch_id, count(*) FROM codes GROUP BY batch_id").fetchall()
    assert batches == [(1, 3), (2, 5)]


def test_serials_are_repeatable_from_the_test_seed(issuer, tmp_path, keypair):
    """Serials come from the injected source (the suite's seed), so a failing run can be repeated."""
    from conftest import seeded_random_bytes

    kid, private = keypair
    drawn = []
    for name in ("a", "b"):
        db_path = tmp_path / name / "verifier.db"
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


def test_codes_csv_keeps_serials_and_pins_exact_in_spreadsheets_and_is_owner_only(issuer, tmp_path, keypair):
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
    issue.issue_batch(
        issuer / "verifier.db", request, private, kid, pin_secret=PIN_SECRET.encode(), random_bytes=lambda n: block[:n]
    )
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
