"""The tamper-evident log: edits, deletions, reordering, insertion and truncation of the log and of
its Merkle tree are all caught, with the first bad entry named; checkpoints signed before the
Merkle tree (the legacy hash chain) still verify."""

from __future__ import annotations

import json

import pytest
from conftest import database_env, log_signer_for_tests, settle
from test_tamper import attacker, query

from verifier import auditlog, db, logtree, note
from verifier.cli import cli


@pytest.fixture
def logged(world, db_copy, instance, runner, monkeypatch, make_app):
    """A database with 12 scans in the chain, a log key, and the CLI pointed at both."""
    import shutil

    keys_dir = instance / "keys"
    shutil.copytree(world["keys_dir"], keys_dir)
    for name, value in database_env(db_copy).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("VERIFIER_KEY_PASSPHRASE", "pw")
    assert runner.invoke(cli, ["keys", "new", "audit", "--purpose", "log"]).exit_code == 0  # a legacy log key
    log_key = instance / "log.key"
    log_key.write_text(log_signer_for_tests().skey + "\n")  # the key `settle` signed the world's checkpoints with
    monkeypatch.setenv("VERIFIER_LOG_KEY_FILE", str(log_key))
    app = make_app(KEYS_DIR=str(keys_dir))
    for row in world["pin"][1][:6]:
        for _ in range(2):
            app.test_client().get("/" + row["url"].split("/", 3)[3])
    settle(db_copy)  # PostgreSQL: the sequencer chains the scans and the world's actions
    return db_copy


def verify(runner, *extra):
    result = runner.invoke(cli, ["audit", "verify", "--json", *extra])
    return result.exit_code, json.loads(result.stdout)


def test_a_clean_log_verifies(logged, runner):
    code, report = verify(runner)
    assert code == 0 and report["ok"] and report["entries"] >= 16, report[
        "problems"
    ]  # 12 scans + 4 batches issued + 1 recall
    assert report["pending"] == 0
    kinds = [k for (k,) in query(logged, "SELECT kind FROM audit_log ORDER BY seq")]
    assert kinds.count("scan") == 12 and kinds.count("batch.issued") == 4 and "batch.recalled" in kinds


def test_triggers_refuse_update_and_delete(logged):
    conn = db.connect(logged)
    for sql in (
        "UPDATE audit_log SET kind = 'x' WHERE seq = 3",
        "DELETE FROM audit_log WHERE seq = 3",
        "DELETE FROM scans WHERE id = 1",
        "UPDATE scans SET reason = 'genuine' WHERE id = 2",
        "UPDATE scans SET ip_prefix = '10.0.0.0/24' WHERE id = 2",
        "UPDATE scans SET log_seq = 999 WHERE id = 2",  # the link (SQLite's; PostgreSQL's is the entry's scan_id)
    ):
        with pytest.raises(db.IntegrityError, match="append-only|only have personal fields erased"):
            conn.execute(sql)


def scan_seq(location, n):
    """The sequence number of scan `n`'s entry (linked by scans.log_seq on SQLite, audit_log.scan_id on PostgreSQL)."""
    if db.is_postgres(location):
        return query(location, "SELECT seq FROM audit_log WHERE scan_id = ?", (n,))[0][0]
    return query(location, "SELECT log_seq FROM scans WHERE id = ?", (n,))[0][0]


def test_edited_entry_is_named(logged, runner):
    seq = scan_seq(logged, 3)
    attacker(logged).execute(
        "UPDATE audit_log SET body = replace(body, 'genuine', 'bad-signature') WHERE seq = ?", (seq,)
    )
    code, report = verify(runner)
    assert code == 1 and report["first_bad_seq"] == seq


def test_edited_scan_row_is_named(logged, runner):
    seq = scan_seq(logged, 4)
    attacker(logged).execute("UPDATE scans SET checks = 1 WHERE id = 4")
    assert verify(runner)[1]["first_bad_seq"] == seq


def test_edited_personal_fields_are_caught(logged, runner):
    seq = scan_seq(logged, 5)
    attacker(logged).execute("UPDATE scans SET ip_prefix = '203.0.113.0/24' WHERE id = 5")
    assert verify(runner)[1]["first_bad_seq"] == seq


def test_deleted_entry_is_named(logged, runner):
    seq = scan_seq(logged, 6)
    conn = attacker(logged)
    conn.execute("DELETE FROM audit_log WHERE seq = ?", (seq,))
    conn.execute("DELETE FROM scans WHERE id = 6")
    code, report = verify(runner)
    assert code == 1 and report["first_bad_seq"] == seq and "missing" in report["problems"][0]["what"]


def test_reordered_entries_are_named(logged, runner):
    a, b = scan_seq(logged, 7), scan_seq(logged, 8)
    conn = attacker(logged)
    conn.execute("UPDATE audit_log SET seq = -1 WHERE seq = ?", (a,))
    conn.execute("UPDATE audit_log SET seq = ? WHERE seq = ?", (a, b))
    conn.execute("UPDATE audit_log SET seq = ? WHERE seq = -1", (b,))
    assert verify(runner)[1]["first_bad_seq"] == a


def test_inserted_entry_is_named(logged, runner):
    conn = attacker(logged)
    seq, last = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    conn.execute(
        "INSERT INTO audit_log VALUES (?, '2026-01-01T00:00:00.000+00:00', 'scan', '', '{}', '', ?, ?)",
        (seq + 1, last, "f" * 64),
    )
    assert verify(runner)[1]["first_bad_seq"] == seq + 1


def checkpoint_file(runner, tmp_path, name="offsite.txt"):
    out = tmp_path / name
    result = runner.invoke(cli, ["audit", "checkpoint", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, note.parse_checkpoint(note.parse_note(out.read_text())[0])


def truncate(location, keep: int) -> None:
    """What an attacker removes to make the log end at entry `keep`: later entries, their scans, the
    tree's hashes over them and the stored checkpoints that cover them."""
    conn = attacker(location)
    conn.execute("DELETE FROM log_checkpoints WHERE size > ?", (keep,))
    conn.execute("DELETE FROM audit_log WHERE seq > ?", (keep,))
    for level in range(40):
        conn.execute("DELETE FROM log_hashes WHERE level = ? AND (idx + 1) * ? > ?", (level, 2**level, keep))
    if db.is_postgres(location):  # the scans of the removed entries go too
        conn.execute("DELETE FROM scans WHERE id NOT IN (SELECT scan_id FROM audit_log WHERE scan_id IS NOT NULL)")
    else:
        conn.execute("DELETE FROM scans WHERE log_seq > ?", (keep,))
    conn.close()


def test_truncation_is_caught_by_an_exported_checkpoint(logged, runner, tmp_path):
    out, checkpoint = checkpoint_file(runner, tmp_path)
    truncate(logged, checkpoint.size - 3)
    code, report = verify(runner)  # a shorter log is still a log, but the check counts remember the scans
    assert code == 1 and all("code_checks" in p["what"] for p in report["problems"])
    code, report = verify(runner, "--checkpoint", str(out))
    assert code == 1 and report["first_bad_seq"] == checkpoint.size - 2  # the off-host checkpoint names it
    assert any("truncated" in p["what"] for p in report["problems"] if p["seq"] == checkpoint.size - 2)


def test_a_truncated_tree_is_caught_by_the_stored_checkpoint(logged, runner, tmp_path):
    _, checkpoint = checkpoint_file(runner, tmp_path)
    conn = attacker(logged)
    conn.execute("DELETE FROM log_hashes WHERE level = 0 AND idx >= ?", (checkpoint.size - 2,))
    conn.close()
    code, report = verify(runner)
    assert code == 1 and report["first_bad_seq"] == checkpoint.size - 1


def test_an_entry_edited_with_its_whole_tree_rebuilt_is_caught_by_the_checkpoints(logged, world, runner, tmp_path):
    """The attacker edits entry k and recomputes every hash of the tree: the leaves and levels agree
    again, but the checkpoints signed since k do not; the first bad entry named is the first one
    after the last checkpoint that still matches."""
    _, first = checkpoint_file(runner, tmp_path, "first.txt")
    seq = first.size - 1
    sizes_before = query(logged, "SELECT size FROM log_checkpoints")
    reported = runner.invoke(cli, ["audit", "report-code", world["pin"][1][10]["code"]])  # one more entry
    assert reported.exit_code == 0, reported.output
    _, second = checkpoint_file(runner, tmp_path, "second.txt")
    assert second.size > first.size
    conn = attacker(logged)
    conn.execute("UPDATE audit_log SET actor = 'someone else' WHERE seq = ?", (seq,))
    kind, at, actor, p_hash, body = conn.execute(
        "SELECT kind, at, actor, personal_hash, body FROM audit_log WHERE seq = ?", (seq,)
    ).fetchone()
    conn.execute(
        "UPDATE audit_log SET hash = ? WHERE seq = ?", (auditlog.new_entry_hash(kind, at, actor, p_hash, body), seq)
    )
    conn.execute("DELETE FROM log_hashes")
    conn.commit() if not db.is_postgres_conn(conn) else None
    with db.transaction(conn):
        while logtree.extend(conn):
            pass
    conn.close()
    code, report = verify(runner)
    assert code == 1
    sizes = [size for (size,) in sizes_before if size < seq]
    assert report["problems"][0]["seq"] == max(sizes, default=0) + 1 <= seq  # after the last good checkpoint
    assert "differ from the signed checkpoint" in report["problems"][0]["what"]


def test_an_edited_tree_hash_is_named(logged, runner):
    conn = attacker(logged)
    conn.execute("UPDATE log_hashes SET hash = ? WHERE level = 1 AND idx = 2", (b"\x00" * 32,))
    conn.close()
    code, report = verify(runner)
    assert code == 1 and report["first_bad_seq"] == 5 and "level 1, index 2" in report["problems"][0]["what"]


def test_forged_checkpoint_is_refused(logged, runner, tmp_path):
    out, checkpoint = checkpoint_file(runner, tmp_path)
    text = out.read_text()
    forged = text.replace(f"\n{checkpoint.size}\n", f"\n{checkpoint.size + 5}\n", 1)
    out.write_text(forged)
    code, report = verify(runner, "--checkpoint", str(out))
    assert code == 1 and "not signed by the log key (bad-signature" in report["problems"][0]["what"]


def test_a_checkpoint_by_another_key_is_refused_and_without_a_log_key_is_unchecked(
    logged, runner, tmp_path, monkeypatch
):
    out, _ = checkpoint_file(runner, tmp_path)
    monkeypatch.delenv("VERIFIER_LOG_KEY_FILE")
    code, report = verify(runner, "--checkpoint", str(out))
    assert code == 0 and report["unchecked_checkpoints"] >= 2 and report["checkpoints"] == 0
    assert "Not checked: " in runner.invoke(cli, ["audit", "verify"]).stdout
    other = logtree.new_signer("verifier.test/log")
    code, report = verify(runner, "--checkpoint", str(out), "--log-key", other.vkey)
    assert code == 1 and "not signed by the log key (unverified" in report["problems"][0]["what"]


def test_checkpoints_need_the_log_key_file_and_the_keyring_log_key_signs_no_codes(logged, runner, monkeypatch):
    monkeypatch.delenv("VERIFIER_LOG_KEY_FILE")
    result = runner.invoke(cli, ["audit", "checkpoint"])
    assert result.exit_code == 1 and result.stderr.startswith("Error: no log key: set VERIFIER_LOG_KEY_FILE")
    issuing = runner.invoke(
        cli,
        [
            "batch",
            "issue",
            "--key",
            "audit",
            "--mark",
            "traceability",
            "--enterprise",
            "E",
            "--product",
            "P",
            "--count",
            "1",
            "--out",
            "/tmp/never",
        ],
    )
    assert issuing.exit_code == 1 and "signs log, not codes" in issuing.stderr


def test_log_keygen_writes_a_private_key_file_and_never_overwrites_one(logged, runner, instance):
    import stat

    key = instance / "new-log.key"
    made = runner.invoke(cli, ["log", "keygen", "--origin", "verify.example.cn/log", "--out", str(key)])
    assert made.exit_code == 0 and stat.S_IMODE(key.stat().st_mode) == 0o600
    signer = logtree.LogSigner.from_skey(key.read_text())
    assert made.stdout.strip() == signer.vkey and note.parse_vkey(signer.vkey).name == "verify.example.cn/log"
    again = runner.invoke(cli, ["log", "keygen", "--origin", "x/log", "--out", str(key)])
    assert again.exit_code == 1 and "never overwritten" in again.stderr
    bad = runner.invoke(cli, ["log", "keygen", "--origin", "has space", "--out", str(instance / "k2")])
    assert bad.exit_code == 1 and bad.stderr.startswith("Error: an origin is a name without spaces")


def test_purge_erases_personal_fields_and_the_chain_still_verifies(logged, runner, monkeypatch):
    import datetime as dt

    from verifier import clock

    before = query(logged, "SELECT count(*) FROM scans WHERE ip_prefix IS NOT NULL")[0][0]
    assert runner.invoke(cli, ["audit", "purge", "--older-than", "30"]).stdout.startswith(
        "Erased the personal fields of 0 "
    )
    in_a_year = clock.now() + dt.timedelta(days=365)
    monkeypatch.setattr(clock, "now", lambda: in_a_year)  # the one clock the commands read
    result = runner.invoke(cli, ["audit", "purge", "--older-than", "30"])
    assert result.exit_code == 0 and f"Erased the personal fields of {before} scans" in result.stdout
    rows = query(logged, "SELECT ip_prefix, ip_hash, region, city, user_agent, session_hash, personal_salt FROM scans")
    assert len(rows) == 12 and all(value is None for row in rows for value in row)
    settle(logged)
    code, report = verify(runner)
    assert code == 0 and report["ok"]
    kinds = [k for (k,) in query(logged, "SELECT kind FROM audit_log")]
    assert kinds.count("audit.purged") == 2


def _good_checkpoint(runner, tmp_path) -> dict:
    """A legacy JSON checkpoint (of the empty chain) signed by the keyring's log key, as the code
    before the Merkle tree wrote them."""
    import datetime as dt

    from verifier import keys
    from verifier.settings import load

    _record, private = keys.load_private_key(load().keys_dir, "audit", b"pw", "log")
    checkpoint = auditlog.sign_legacy_checkpoint(private, _record.kid, 0, auditlog.GENESIS, dt.datetime.now(dt.UTC))
    (tmp_path / "good.json").write_text(json.dumps(checkpoint))
    return checkpoint


MALFORMED_CHECKPOINTS = {
    "not JSON": lambda c: "{not json",
    "not UTF-8": lambda c: b"\xff\xfe{}",
    "a JSON list": lambda c: [c],
    "missing seq": lambda c: {k: v for k, v in c.items() if k != "seq"},
    "missing signature": lambda c: {k: v for k, v in c.items() if k != "signature"},
    "missing everything": lambda c: {},
    "seq is a string": lambda c: {**c, "seq": str(c["seq"])},
    "seq is a boolean": lambda c: {**c, "seq": True},
    "seq is negative": lambda c: {**c, "seq": -1},
    "head is a number": lambda c: {**c, "head": 12},
    "head is not hex": lambda c: {**c, "head": "z" * 64},
    "head is short": lambda c: {**c, "head": c["head"][:10]},
    "signature is not hex": lambda c: {**c, "signature": "g" * 128},
    "signature is base64": lambda c: {**c, "signature": "A" * 86 + "=="},
    "signature is null": lambda c: {**c, "signature": None},
    "kid is a list": lambda c: {**c, "kid": ["x"]},
    "at is missing": lambda c: {k: v for k, v in c.items() if k != "at"},
    "another format": lambda c: {**c, "format": "something-else/9"},
    "a note without signatures": lambda c: "verifier.test/log\n3\nAAAA\n",
    "an empty file": lambda c: "",
}


@pytest.mark.parametrize("malform", MALFORMED_CHECKPOINTS.values(), ids=MALFORMED_CHECKPOINTS.keys())
def test_malformed_checkpoint_file_is_error_exit_2_not_tampered(logged, runner, tmp_path, malform):
    bad = malform(_good_checkpoint(runner, tmp_path))
    path = tmp_path / "bad.json"
    if isinstance(bad, bytes):
        path.write_bytes(bad)
    else:
        path.write_text(bad if isinstance(bad, str) else json.dumps(bad))
    result = runner.invoke(cli, ["audit", "verify", "--checkpoint", str(path)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"Error: {path} is not a checkpoint file: ") and result.stderr.count("\n") == 1
    assert "unexpected" not in result.stderr and result.stdout == ""


def test_a_wellformed_checkpoint_file_still_verifies(logged, runner, tmp_path):
    _good_checkpoint(runner, tmp_path)
    code, report = verify(runner, "--checkpoint", str(tmp_path / "good.json"))
    assert code == 0 and report["ok"]


# --- entries the sequencer has not chained yet (PostgreSQL) -------------------------------


def test_pending_entries_are_reported_as_pending_never_missing_or_tampered(logged, world, make_app, runner):
    app = make_app()
    for row in world["pin"][1][10:13]:
        app.test_client().get("/" + row["url"].split("/", 3)[3])
    assert runner.invoke(cli, ["audit", "report-code", world["pin"][1][10]["code"]]).exit_code == 0
    conn = db.connect(logged)
    waiting = 4  # three scans and the report, written but not in the tree (nor numbered, PostgreSQL)
    conn.close()
    code, before = verify(runner)
    assert code == 0 and before["ok"] and before["problems"] == [] and before["pending"] == waiting
    text = runner.invoke(cli, ["audit", "verify"]).stdout
    assert text.startswith("OK:") and "Pending: 4 entries are not in the tree yet" in text
    settle(logged)
    code, after = verify(runner)
    numbered_late = waiting if db.is_postgres(logged) else 0  # SQLite numbers entries as they are written
    assert code == 0 and after["pending"] == 0 and after["entries"] == before["entries"] + numbered_late
    assert after["tree_size"] == after["entries"] == before["tree_size"] + waiting
    assert after["entries"] == len(query(logged, "SELECT seq FROM audit_log"))


def test_a_scan_unlinked_from_its_entry_is_caught(logged, runner):
    """Making a chained scan look pending (never checked) while its entry stays in the chain, to hide
    an edit: SQLite, its log_seq set back to NULL (the count of scan entries against linked scans
    catches it); PostgreSQL, its id put back in the sequencer's queue (it still has its entry, which
    it no longer matches; the sequencer drops it from the queue without chaining it twice). Caught
    before and after the sequencer runs."""
    conn = attacker(logged)
    if db.is_postgres(logged):
        conn.execute("INSERT INTO scan_queue (scan_id) VALUES (4)")
        conn.execute("UPDATE scans SET checks = 1 WHERE id = 4")  # hide an edit
    else:
        conn.execute("UPDATE scans SET log_seq = NULL, checks = 1 WHERE id = 4")  # hide an edit
    conn.close()
    code, report = verify(runner)
    assert code == 1 and not report["ok"]
    assert any(
        f"scan 4 {what}" in p["what"] or "lost their scan" in p["what"]
        for p in report["problems"]
        for what in ("has no log entry", "differs from its log entry")
    )
    settle(logged)
    code, report = verify(runner)
    assert code == 1 and not report["ok"]


@pytest.mark.postgres_only("scans are retired with PostgreSQL's partitions")
def test_retired_scans_may_be_dropped_and_the_log_still_verifies(logged, runner):
    ids = [row[0] for row in query(logged, "SELECT id FROM scans ORDER BY id")]
    below = ids[4]
    attacker(logged).execute("DELETE FROM scans WHERE id < ?", (below,))  # a partition dropped, unannounced
    code, report = verify(runner)
    assert code == 1 and any("lost their scan" in p["what"] for p in report["problems"])
    retired = runner.invoke(cli, ["audit", "retire", "--below-id", str(below)])
    assert retired.exit_code == 0 and retired.stdout.startswith("Retired 0 scans below id")  # already gone: 0 left
    code, report = verify(runner)
    assert code == 0 and report["ok"] and report["retired_below"] == below and report["pending"] == 0
    assert f"Retired: scans below id {below}" in runner.invoke(cli, ["audit", "verify"]).stdout
    attacker(logged).execute("DELETE FROM scans WHERE id = ?", (ids[6],))  # above the bound: still caught
    assert verify(runner)[0] == 1


@pytest.mark.postgres_only("scans are retired with PostgreSQL's partitions")
def test_retiring_counts_the_scans_and_refuses_what_is_not_chained(logged, runner, make_app, world):
    ids = [row[0] for row in query(logged, "SELECT id FROM scans ORDER BY id")]
    assert runner.invoke(cli, ["audit", "retire", "--below-id", str(ids[3])]).stdout.startswith("Retired 3 scans")
    app = make_app(DATABASE=str(logged))
    app.test_client().get("/" + world["gs1"][1][0]["url"].split("/", 3)[3])  # a scan the sequencer has not chained
    waiting = runner.invoke(cli, ["audit", "retire", "--below-id", str(ids[-1] + 10)])
    assert (
        waiting.exit_code == 1
        and waiting.stderr.startswith("Error: scans below id")
        and "not all chained" in waiting.stderr
    )


@pytest.mark.sqlite_only("on PostgreSQL scans are retired: above")
def test_retiring_scans_on_sqlite_is_one_line_of_error(logged, runner):
    result = runner.invoke(cli, ["audit", "retire", "--below-id", "3"])
    assert result.exit_code == 2 and result.stderr.startswith("Error: scans are retired with PostgreSQL's partitions")
    assert len(result.stderr.strip().splitlines()) == 1
