"""A case's evidence export (verifier-case-export/1), both engines: it verifies offline against the
log's key alone, and a flipped bit in any part it proves (a leaf, a proof, the checkpoint, the
case, a note, the evidence list, a CSV row) is caught and named; what is not yet in a signed
checkpoint is pending (exit 3), what is not an export exits 2."""

from __future__ import annotations

import base64
import copy
import json

import pytest
from click.testing import CliRunner
from conftest import log_signer_for_tests, settle
from test_diversion import NOW, shipped  # noqa: F401 - the fixture: shipped codes, scans with regions

from verifier import accounts, cases, db, evidence, note
from verifier.cli import cli

IAN = accounts.User(0, "ian", "inspector", None, False)
VKEY = log_signer_for_tests().vkey


@pytest.fixture
def worked(shipped):  # noqa: F811
    """A diversion case opened from a real anomaly, assigned, noted, one more scan linked, closed;
    the log settled into a signed checkpoint."""
    far = [shipped["scan"](2, "Guangdong"), shipped["scan"](2, "广东省")]
    extra = shipped["scan"](0, "Sichuan")
    conn = db.connect(shipped["db"])
    try:
        settle(conn)
        subject = f"code {shipped['items'][2]:016d}: SC-01 Sichuan -> Guangdong"
        with db.transaction(conn):
            found = cases.find_anomaly(conn, IAN, "diversion", subject, 30, NOW)
            case_id = cases.open_case(conn, IAN, found, "ui:ian", NOW)
            cases.assign(conn, IAN, case_id, "ian", "ui:ian", NOW)
            cases.add_note(conn, IAN, case_id, "=cmd|' /C calc'!A0 dealer called", "ui:ian", NOW)
            cases.link_evidence(conn, IAN, case_id, [extra], "ui:ian", NOW)
            cases.set_status(conn, IAN, case_id, "closed", "ui:ian", NOW)
        settle(conn)
        export = cases.export(conn, IAN, case_id)
    finally:
        conn.close()
    return {**shipped, "case": case_id, "export": export, "far": far, "extra": extra}


def test_the_export_verifies_offline_with_the_log_key_alone(worked):
    export = json.loads(evidence.dumps(worked["export"]))
    proven = evidence.verify(export, [note.parse_vkey(VKEY)])
    assert export["state"] == "complete"
    assert export["evidence"] == sorted(worked["far"] + [worked["extra"]])
    assert (proven.case_id, proven.rule, proven.status, proven.notes, proven.scans) == (
        worked["case"],
        "diversion",
        "closed",
        1,
        3,
    )
    assert proven.entries == 3 + 5  # three scans; opened, assigned, note, linked, closed
    lines = export["scans_csv"].splitlines()
    assert lines[0].startswith('"id","at","channel"') and len(lines) == 4
    assert '"Guangdong"' in lines[1] and '"\t' in lines[1]  # the region; the serial kept as text
    assert export["notes"][0]["text"].startswith("=cmd")  # JSON, not a spreadsheet: kept as written


def _cli(*args):
    return CliRunner().invoke(cli, ["audit", *args])


def test_the_cli_writes_and_verifies_it(worked, tmp_path, monkeypatch):
    from conftest import database_env

    for name, value in database_env(worked["db"]).items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "case.json"
    result = _cli("cases", "export", str(worked["case"]), "--out", str(out))
    assert result.exit_code == 0, result.output
    result = _cli("verify-export", str(out), "--log-key", VKEY)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Export OK: case {worked['case']} (diversion,")
    assert len(result.output.splitlines()) == 1
    assert _cli("verify-export", str(out)).exit_code == 2  # no key given


def _flip_b64(text: str, bit: int = 0) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[bit // 8 % len(raw)] ^= 1 << (bit % 8)
    return base64.b64encode(bytes(raw)).decode()


def _flip_text(text: str, position: int) -> str:
    return text[:position] + chr(ord(text[position]) ^ 1) + text[position + 1 :]


def _csv_cell(export, line, column, value):
    rows = export["scans_csv"].split("\r\n")
    cells = rows[line].split('","')
    cells[evidence.CSV_COLUMNS.index(column)] = value
    rows[line] = '","'.join(cells)
    export["scans_csv"] = "\r\n".join(rows)


def _resized(checkpoint: str) -> str:
    lines = checkpoint.split("\n")
    lines[1] = str(int(lines[1]) + 1)
    return "\n".join(lines)


TAMPERS = {
    "a scan leaf's bit": (lambda e: e["entries"][0].update(leaf=_flip_b64(e["entries"][0]["leaf"], 200)), "bad-proof"),
    "a case leaf's bit": (lambda e: e["entries"][-1].update(leaf=_flip_b64(e["entries"][-1]["leaf"], 9)), "bad-proof"),
    "a proof hash's bit": (
        lambda e: e["entries"][1]["proof"].__setitem__(0, _flip_b64(e["entries"][1]["proof"][0], 3)),
        "bad-proof",
    ),
    "a proof hash dropped": (lambda e: e["entries"][1]["proof"].pop(), "bad-proof"),
    "an entry's index": (lambda e: e["entries"][0].update(index=e["entries"][0]["index"] + 1), "bad-proof"),
    "an entry dropped": (lambda e: e["entries"].pop(), "case-mismatch"),
    "the checkpoint's root": (
        lambda e: e.update(checkpoint=_flip_text(e["checkpoint"], e["checkpoint"].index("\n", 30) + 3)),
        "bad-checkpoint",
    ),
    "the checkpoint's size": (lambda e: e.update(checkpoint=_resized(e["checkpoint"])), "bad-checkpoint"),
    "the checkpoint's signature": (
        lambda e: e.update(checkpoint=_flip_text(e["checkpoint"], len(e["checkpoint"]) - 6)),
        "bad-checkpoint",
    ),
    "the case's status": (lambda e: e["case"].update(status="investigating"), "case-mismatch"),
    "the case's subject": (lambda e: e["case"].update(subject=_flip_text(e["case"]["subject"], 3)), "case-mismatch"),
    "the case's severity": (lambda e: e["case"].update(severity="low"), "case-mismatch"),
    "the case's details": (lambda e: e["case"]["details"]["dealer"].update(code="SC-02"), "case-mismatch"),
    "the case's assignee": (lambda e: e["case"].update(assignee="ada"), "case-mismatch"),
    "who closed it": (lambda e: e["case"].update(closed_by="ui:ada"), "case-mismatch"),
    "a note's text": (lambda e: e["notes"][0].update(text=_flip_text(e["notes"][0]["text"], 5)), "case-mismatch"),
    "a note's author": (lambda e: e["notes"][0].update(author="ui:ada"), "case-mismatch"),
    "a note's time": (lambda e: e["notes"][0].update(at=_flip_text(e["notes"][0]["at"], 12)), "case-mismatch"),
    "a note added": (lambda e: e["notes"].append(dict(e["notes"][0], id=99)), "case-mismatch"),
    "an evidence scan dropped": (lambda e: e["evidence"].pop(), "case-mismatch"),
    "a CSV verdict": (lambda e: _csv_cell(e, 1, "reason", "forged"), "csv-mismatch"),
    "a CSV time": (
        lambda e: e.update(
            scans_csv=_flip_text(e["scans_csv"], e["scans_csv"].index('","', e["scans_csv"].index("\r\n")) + 15)
        ),
        "csv-mismatch",
    ),
    "a CSV serial": (lambda e: _csv_cell(e, 2, "serial", "\t0000000000000001"), "csv-mismatch"),
    "a CSV row dropped": (
        lambda e: e.update(scans_csv="\r\n".join(e["scans_csv"].split("\r\n")[:-2]) + "\r\n"),
        "csv-mismatch",
    ),
    "the CSV header": (
        lambda e: e.update(scans_csv=e["scans_csv"].replace('"reason"', '"verdict"', 1)),
        "csv-mismatch",
    ),
    "a leaf not base64": (lambda e: e["entries"][0].update(leaf="not base64!"), "malformed"),
}


@pytest.mark.parametrize("tamper, reason", TAMPERS.values(), ids=TAMPERS.keys())
def test_every_tamper_is_caught_and_named(worked, tamper, reason):
    export = copy.deepcopy(worked["export"])
    tamper(export)
    with pytest.raises(evidence.InvalidExport) as caught:
        evidence.verify(json.loads(evidence.dumps(export)), [note.parse_vkey(VKEY)])
    assert caught.value.reason == reason, str(caught.value)


def test_flipping_any_bit_of_the_file_is_caught(worked):
    """Every 97th bit of the whole file flipped in turn: never verified, except in the personal
    region and city cells, which no entry records (docs/cases.md)."""
    text = evidence.dumps(worked["export"]).encode()
    key = note.parse_vkey(VKEY)
    caught = 0
    for bit in range(0, len(text) * 8, 97):
        data = bytearray(text)
        data[bit // 8] ^= 1 << (bit % 8)
        try:
            evidence.verify(evidence.loads(bytes(data)), [key])
        except evidence.InvalidExport:
            caught += 1
        except UnicodeDecodeError:
            caught += 1
        else:
            changed = json.loads(bytes(data))
            assert changed["scans_csv"] != worked["export"]["scans_csv"] or changed == json.loads(text), bit
    assert caught > 0


def test_the_cli_names_what_was_tampered(worked, tmp_path):
    export = copy.deepcopy(worked["export"])
    export["notes"][0]["text"] = "nothing happened"
    bad = tmp_path / "bad.json"
    bad.write_text(evidence.dumps(export), encoding="utf-8")
    result = _cli("verify-export", str(bad), "--log-key", VKEY)
    assert result.exit_code == 1 and result.output.startswith("TAMPERED: note 1 is not what its log entry records")
    other = tmp_path / "other.json"
    other.write_text('{"format": "verifier-receipt/1"}', encoding="utf-8")
    assert _cli("verify-export", str(other), "--log-key", VKEY).exit_code == 2
    other.write_text("PK\x03\x04 not json", encoding="utf-8")
    assert _cli("verify-export", str(other), "--log-key", VKEY).exit_code == 2


def test_a_case_not_yet_in_a_signed_checkpoint_is_pending(worked, tmp_path):
    conn = db.connect(worked["db"])
    try:
        with db.transaction(conn):
            cases.add_note(conn, IAN, worked["case"], "one more thing", "ui:ian", NOW)
        export = cases.export(conn, IAN, worked["case"])
    finally:
        conn.close()
    assert export["state"] == "pending" and export["checkpoint"] is None
    path = tmp_path / "pending.json"
    path.write_text(evidence.dumps(export), encoding="utf-8")
    result = _cli("verify-export", str(path), "--log-key", VKEY)
    assert result.exit_code == 3 and result.output.startswith("Export pending")


def test_another_log_key_proves_nothing(worked):
    other = note.parse_vkey(
        __import__("verifier.logtree", fromlist=["new_signer"]).new_signer("verifier.test/log").vkey
    )
    with pytest.raises(evidence.InvalidExport) as caught:
        evidence.verify(worked["export"], [other])
    assert caught.value.reason == "bad-checkpoint"
