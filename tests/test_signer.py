"""Batch requests and the signer process: an enterprise requests a batch, a second person approves
it, `verifier signer` (on the machine with the key) issues it and stores its label files in the
database, where they are served from; both engines (docs/signer.md)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile

import pypdfium2
import pytest
import zxingcpp
from click.testing import CliRunner
from conftest import BASE_URL, PIN_SECRET, database_env, settle
from test_tamper import attacker, query

from verifier import auditlog, clock, codes, db, issue, keys, pins, requests, signer
from verifier.cli import cli
from verifier.repos import registry

NOW = dt.datetime(2026, 11, 22, 9, tzinfo=dt.UTC)
MAIN_COUNT = 400  # the main test's batch: two PDF sheets and more
PARAMS = {
    "mark": "stable-qualified",
    "product": "绿茶",
    "spec": "500g",
    "lot": "L2026-11",
    "production_date": "2026-11-20",
    "count": 2000,
    "pin": True,
    "formats": ["csv", "pdf"],
}


@pytest.fixture
def office(staffed):
    """The world's database with accounts (conftest's `staffed`): eve of 华茶集团 requests, eva approves."""
    return staffed


def ask(office, who="eve", **params):
    """A request of 华茶集团 by `who` (PARAMS with `params` on top)."""
    merged = {**PARAMS, **params}
    return requests.request_batch(office["conn"], office["mine"], office["users"][who], merged, NOW, BASE_URL)


def approved(office, **params):
    request = ask(office, **params)
    return requests.approve(office["conn"], request["id"], office["users"]["eva"], NOW)


def signer_env(office, tmp_path, **extra) -> dict[str, str]:
    env = {
        **os.environ,
        **database_env(office["db"]),
        "VERIFIER_KEYS": str(office["world"]["keys_dir"]),
        "VERIFIER_KEY_PASSPHRASE": "pw",
        "VERIFIER_PIN_SECRET": PIN_SECRET.decode(),
        "VERIFIER_BASE_URL": BASE_URL,
        "VERIFIER_INSTANCE": str(tmp_path / "instance"),
        **extra,
    }
    return {k: v for k, v in env.items() if v is not None}


def run_signer(office, tmp_path, *args, **extra) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "verifier", "signer", "--once", "--key", "dev", *args]
    return subprocess.run(
        command, env=signer_env(office, tmp_path, **extra), capture_output=True, text=True, timeout=300
    )


def start_signer(office, tmp_path, *args) -> subprocess.Popen:
    command = [sys.executable, "-m", "verifier", "signer", "--key", "dev", "--poll", "0.2", *args]
    return subprocess.Popen(
        command,
        env=signer_env(office, tmp_path),
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def status(office, request_id) -> str:
    return query(office["db"], "SELECT status FROM batch_requests WHERE id = ?", (request_id,))[0][0]


def batch_count(office) -> tuple[int, int]:
    return query(office["db"], "SELECT (SELECT count(*) FROM batches), (SELECT count(*) FROM codes)")[0]


def verify_log(office) -> auditlog.Report:
    settle(office["db"])
    conn = db.connect(office["db"])
    try:
        return auditlog.verify(conn)
    finally:
        conn.close()


def trusted(office):
    return keys.trust_from_folder(office["world"]["keys_dir"])


# --- the whole path -----------------------------------------------------------------------------


def test_an_approved_request_is_issued_by_the_signer_and_its_files_are_in_the_database(office, tmp_path):
    request = approved(office, count=MAIN_COUNT)  # 2,000 go through the console's browser test
    done = run_signer(office, tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"Request {request['id']}: batch " in done.stdout and f"{MAIN_COUNT:,} codes" in done.stdout

    conn = office["conn"]
    row = requests.get(conn, request["id"], office["users"]["eve"])
    assert (row["status"], row["progress"], row["error"]) == ("done", MAIN_COUNT, None)
    assert row["claimed_by"].endswith(tuple("0123456789"))  # host/pid
    batch = registry.get_batch(conn, row["batch_id"])
    assert (batch["enterprise"], batch["product"], batch["lot"], batch["count"], batch["pin"]) == (
        "华茶集团",
        "绿茶",
        "L2026-11",
        MAIN_COUNT,
        1,
    )
    assert batch["created_by"] == "eve"
    stored = {f["name"]: f for f in requests.files(conn, request["id"], office["users"]["eva"])}
    assert set(stored) == {"codes.csv", "labels.pdf", "manifest.json", "labels.zip"}
    assert stored["labels.pdf"]["media_type"] == "application/pdf"

    # codes.csv: every code verifies, in the batch, with its PIN
    text = requests.file(conn, request["id"], "codes.csv", office["users"]["eve"]).decode("utf-8")
    rows = list(issue.read_codes_csv(io.StringIO(text, newline="")))
    assert len(rows) == MAIN_COUNT
    for r in rows:
        result = codes.verify(r["url"], trusted(office), [BASE_URL])
        assert result.genuine and result.code.batch == row["batch_id"]
        assert r["pin"] == pins.derive_pin(PIN_SECRET, int(r["serial"]))

    # the PDF sheets decode to exactly those codes
    pdf = pypdfium2.PdfDocument(requests.file(conn, request["id"], "labels.pdf"))
    found = []
    for page in pdf:
        image = page.render(scale=200 / 72).to_pil().convert("L")
        found += [b.text for b in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)]
    # zxing-cpp now and then reads a stray short "QR code" off a sheet's print (seen: "3640"): only
    # what is one of our addresses is a label; every label must be read, and nothing twice
    labels = [text for text in found if text.startswith(BASE_URL)]
    assert sorted(labels) == sorted(r["url"] for r in rows)
    assert len(found) - len(labels) <= 2
    found = labels
    assert all(codes.verify(url, trusted(office), [BASE_URL]).genuine for url in found)

    # the zip holds the same files, and the signer's disk keeps nothing
    archive = zipfile.ZipFile(io.BytesIO(requests.file(conn, request["id"], "labels.zip")))
    assert archive.read("codes.csv").decode("utf-8") == text
    assert archive.read("labels.pdf") == requests.file(conn, request["id"], "labels.pdf")
    assert not list((tmp_path / "instance" / "signer").iterdir())

    assert verify_log(office).problems == ()
    kinds = [k for (k,) in query(office["db"], "SELECT kind FROM audit_log ORDER BY seq")]
    assert kinds[-4:] == ["batch.requested", "batch.approved", "batch.issued", "batch.request.done"]


# --- who may do what ------------------------------------------------------------------------------


def test_the_requester_cannot_approve_their_own_request(office):
    request = ask(office)
    with pytest.raises(requests.RequestForbidden, match="other than its requester"):
        requests.approve(office["conn"], request["id"], office["users"]["eve"], NOW)
    assert status(office, request["id"]) == "requested"


@pytest.mark.parametrize(
    "who, error",
    [
        pytest.param("ian", requests.RequestForbidden, id="an inspector"),
        pytest.param("oscar", requests.RequestNotFound, id="another enterprise's account (it does not see it)"),
    ],
)
def test_only_an_admin_or_the_enterprise_approves(office, who, error):
    request = ask(office)
    with pytest.raises(error):
        requests.approve(office["conn"], request["id"], office["users"][who], NOW)
    assert requests.approve(office["conn"], request["id"], office["users"]["ada"], NOW)["approved_by"] == "ada"
    with pytest.raises(requests.RequestConflict, match="not waiting for approval"):
        requests.approve(office["conn"], request["id"], office["users"]["eva"], NOW)


def test_an_enterprise_requests_only_its_own_batches_and_sees_only_its_own(office):
    with pytest.raises(requests.RequestForbidden):
        requests.request_batch(office["conn"], office["mine"], office["users"]["oscar"], PARAMS, NOW, BASE_URL)
    request = ask(office)
    users = office["users"]
    assert [r["id"] for r in requests.list_requests(office["conn"], users["eva"])] == [request["id"]]
    assert requests.list_requests(office["conn"], users["oscar"]) == []
    assert [r["id"] for r in requests.list_requests(office["conn"], users["ian"])] == [request["id"]]
    with pytest.raises(requests.RequestNotFound):
        requests.files(office["conn"], request["id"], users["ian"])  # inspectors never get label files


@pytest.mark.parametrize(
    "params, message",
    [
        pytest.param({"count": 0}, "--count must be between", id="count zero"),
        pytest.param({"count": "12"}, "count must be a whole number", id="count as text"),
        pytest.param({"count": 50_001}, "at most 50,000", id="count above the request limit"),
        pytest.param({"formats": ["csv", "docx"]}, "--format takes", id="unknown format"),
        pytest.param({"mark": "gold"}, "mark", id="unknown mark"),
        pytest.param({"gtin": "09506000134353", "expiry": "2030-01-31"}, "check digit", id="bad GTIN"),
        pytest.param({"label_size": "5x5"}, "label", id="label too small"),
        pytest.param({"base_url": "HTTPS://EVIL.EXAMPLE/"}, "unknown request parameter", id="base_url is not theirs"),
    ],
)
def test_a_bad_request_is_refused_and_nothing_is_stored(office, params, message):
    with pytest.raises(issue.InvalidRequest, match=message):
        ask(office, **params)
    assert query(office["db"], "SELECT count(*) FROM batch_requests")[0][0] == 0


# --- cancel, fail -----------------------------------------------------------------------------------


def test_a_cancelled_request_is_never_issued(office, tmp_path):
    request = approved(office)
    cancelled = requests.cancel(office["conn"], request["id"], office["users"]["eve"], NOW)
    assert (cancelled["status"], cancelled["cancelled_by"]) == ("cancelled", "eve")
    before = batch_count(office)
    result = run_signer(office, tmp_path)
    assert result.returncode == 0 and "No approved requests." in result.stdout
    assert batch_count(office) == before
    with pytest.raises(requests.RequestConflict):
        requests.cancel(office["conn"], request["id"], office["users"]["eva"], NOW)
    assert verify_log(office).problems == ()


def test_a_request_that_cannot_be_issued_fails_with_its_error_and_registers_nothing(office, tmp_path):
    request = approved(office, count=40)
    before = batch_count(office)
    result = run_signer(office, tmp_path, VERIFIER_PIN_SECRET=None)  # this signer has no PIN secret
    assert result.returncode == 1
    row = requests.get(office["conn"], request["id"])
    assert row["status"] == "failed" and "needs a PIN secret" in row["error"]
    assert row["error"] in result.stderr
    assert (row["batch_id"], requests.files(office["conn"], request["id"])) == (None, [])
    assert batch_count(office) == before
    with pytest.raises(requests.RequestConflict):
        requests.cancel(office["conn"], request["id"], office["users"]["eve"], NOW)
    assert verify_log(office).problems == ()


# --- several signers, dead signers, stopped signers -----------------------------------------------


def test_two_signers_never_claim_the_same_request(office):
    ids = [approved(office, count=10)["id"] for _ in range(6)]
    claimed: list[list[int]] = [[], [], [], []]
    barrier = threading.Barrier(len(claimed))

    def claim_all(index: int) -> None:
        conn = db.connect(office["db"])
        try:
            barrier.wait()
            while (claim := requests.claim_next(conn, f"signer-{index}", NOW, dt.timedelta(minutes=10))) is not None:
                claimed[index].append(claim.id)
        finally:
            conn.close()

    threads = [threading.Thread(target=claim_all, args=(i,)) for i in range(len(claimed))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for ids_of in claimed for i in ids_of]
    assert sorted(everything) == ids  # each exactly once
    rows = query(office["db"], "SELECT id, status, claimed_by FROM batch_requests ORDER BY id")
    assert all(s == "issuing" for _, s, _ in rows)
    assert {by for _, _, by in rows} <= {f"signer-{i}" for i in range(len(claimed))}


@pytest.mark.postgres_only("FOR UPDATE SKIP LOCKED: a claim in progress is skipped, not waited for")
def test_a_claim_in_progress_is_skipped_by_another_signer(office):
    first, second = approved(office, count=10), approved(office, count=10)
    holder = db.connect(office["db"])
    try:
        with db.transaction(holder):
            holder.execute("SELECT id FROM batch_requests WHERE id = ? FOR UPDATE", (first["id"],)).fetchall()
            other = db.connect(office["db"])
            try:
                claim = requests.claim_next(other, "signer-b", NOW, dt.timedelta(minutes=10))
            finally:
                other.close()
        assert claim is not None and claim.id == second["id"]
    finally:
        holder.close()


def test_a_killed_signers_claim_is_taken_over_and_issued_once(office, tmp_path):
    request = approved(office)
    before = batch_count(office)
    dead = start_signer(office, tmp_path)
    try:
        wait_for(lambda: status(office, request["id"]) == "issuing")
        time.sleep(0.5)
    finally:
        os.killpg(dead.pid, signal.SIGKILL)
        dead.wait()
        dead.stdout.close()
        dead.stderr.close()
    assert status(office, request["id"]) == "issuing"
    assert batch_count(office)[0] - before[0] <= 1  # at most its batch, still `issuing`
    quick = run_signer(office, tmp_path, "--takeover-after", "60")
    assert "No approved requests." in quick.stdout  # a claim silent for less than that is left alone
    time.sleep(1.5)
    taken = run_signer(office, tmp_path, "--takeover-after", "1")
    assert taken.returncode == 0, taken.stderr
    assert "taken over from a silent signer" in taken.stdout
    row = requests.get(office["conn"], request["id"])
    assert row["status"] == "done"
    assert batch_count(office) == (before[0] + 1, before[1] + 2000)  # the dead signer's batch was rolled back
    assert verify_log(office).problems == ()


def test_sigterm_rolls_the_batch_back_and_gives_the_request_back(office, tmp_path):
    request = approved(office)
    before = batch_count(office)
    proc = start_signer(office, tmp_path)
    try:
        wait_for(lambda: status(office, request["id"]) == "issuing")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err
    assert "rolled back and given back" in err
    row = requests.get(office["conn"], request["id"])
    assert (row["status"], row["claimed_by"], row["progress"]) == ("approved", None, 0)
    assert batch_count(office) == before
    assert verify_log(office).problems == ()


# --- audit verify ------------------------------------------------------------------------------------


def sign_here(office, tmp_path) -> list[signer.Outcome]:
    """The signer's loop in this process, once: for tests about what it stores, not the process
    (the tests above run `verifier signer`)."""
    world = office["world"]
    config = signer.SignerConfig(office["db"], world["private"], world["kid"], tmp_path / "work", PIN_SECRET)
    return signer.run(config, clock.now, signer.Stop(), once=True)


@pytest.fixture
def issued(office, tmp_path):
    """One request issued as batch (40 codes), one still waiting for approval."""
    done = approved(office, count=40)
    (outcome,) = sign_here(office, tmp_path)
    assert outcome.status == requests.DONE, outcome.error
    waiting = ask(office, count=10)
    assert verify_log(office).problems == ()
    return {**office, "done": done["id"], "waiting": waiting["id"]}


@pytest.mark.parametrize(
    "edit, found",
    [
        pytest.param(
            "UPDATE batch_requests SET params = replace(params, '\"count\":40', '\"count\":4000') WHERE id = :done",
            "request {done}'s its parameters are not the ones requested",
            id="parameters edited",
        ),
        pytest.param(
            "UPDATE batch_requests SET status = 'approved', approved_by = 'eva', approved_at = created_at "
            "WHERE id = :waiting",
            "request {waiting}'s approved_by is 'eva', the log says None",
            id="approved without an approval",
        ),
        pytest.param(
            "UPDATE batch_requests SET requested_by = 'eva' WHERE id = :waiting",
            "request {waiting}'s requested_by is 'eva'",
            id="requester changed (to approve their own)",
        ),
        pytest.param(
            "UPDATE batch_requests SET batch_id = 1 WHERE id = :done",
            "request {done}'s batch_id is 1",
            id="linked to another batch",
        ),
        pytest.param(
            "UPDATE batch_files SET content = :pdf WHERE request_id = :done AND name = 'labels.pdf'",
            "request {done}'s labels.pdf's content is not the file logged",
            id="label sheet swapped",
        ),
        pytest.param(
            "DELETE FROM batch_files WHERE request_id = :done AND name = 'codes.csv'",
            "request {done}'s codes.csv is gone",
            id="file deleted",
        ),
        pytest.param(
            "DELETE FROM batch_requests WHERE id = :waiting",
            "request {waiting} was requested but its row is gone",
            id="request deleted",
        ),
    ],
)
def test_audit_verify_catches_an_edited_request(issued, edit, found):
    conn = attacker(issued["db"])
    with db.transaction(conn):
        conn.execute(edit, {"done": issued["done"], "waiting": issued["waiting"], "pdf": b"%PDF-1.4 not the labels"})
    conn.close()
    problems = [p.what for p in verify_log(issued).problems]
    expected = found.format(done=issued["done"], waiting=issued["waiting"])
    assert any(expected in p for p in problems), problems


# --- the terminal's commands ------------------------------------------------------------------------


def test_requests_commands_list_show_approve_and_cancel(office, tmp_path):
    env = signer_env(office, tmp_path)
    env.pop("VERIFIER_DB" if office["world"]["engine"] == "postgresql" else "VERIFIER_DATABASE_URL", None)
    runner = CliRunner(env={k: v for k, v in env.items() if k.startswith("VERIFIER_")})
    first, second = ask(office), ask(office, count=10)

    listed = runner.invoke(cli, ["requests", "list", "--status", "requested"])
    assert listed.exit_code == 0, listed.output
    assert f"{first['id']:>6}  requested" in listed.output and "华茶集团 / 绿茶 500g / L2026-11" in listed.output

    approve = runner.invoke(cli, ["requests", "approve", str(first["id"])])
    assert approve.exit_code == 0 and "approved by cli:" in approve.output
    cancel = runner.invoke(cli, ["requests", "cancel", str(second["id"])])
    assert cancel.exit_code == 0 and "cancelled by cli:" in cancel.output
    again = runner.invoke(cli, ["requests", "cancel", str(second["id"])])
    assert again.exit_code == 1 and "Error: batch request" in again.output

    shown = runner.invoke(cli, ["requests", "show", str(first["id"]), "--json"])
    body = json.loads(shown.output)
    assert (body["status"], body["params"]["count"], body["files"]) == ("approved", 2000, [])
    missing = runner.invoke(cli, ["requests", "show", "999"])
    assert missing.exit_code == 1 and "no batch request 999" in missing.output
    assert verify_log(office).problems == ()


def test_the_signer_needs_its_key_and_passphrase(office, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "verifier", "signer", "--once", "--key", "dev"],
        env=signer_env(office, tmp_path, VERIFIER_KEY_PASSPHRASE=None),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0 and "no key passphrase" in result.stderr


def test_codes_csv_is_what_the_batch_registered(issued):
    conn = issued["conn"]
    row = requests.get(conn, issued["done"])
    text = requests.file(conn, issued["done"], "codes.csv").decode("utf-8")
    serials = sorted(int(r["serial"]) for r in csv.DictReader(io.StringIO(text)) if r)
    registered = [
        s
        for (s,) in query(
            issued["db"], "SELECT serial FROM codes WHERE batch_id = ? ORDER BY serial", (row["batch_id"],)
        )
    ]
    assert serials == registered
