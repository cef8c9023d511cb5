"""The CLI of cases: `verifier audit cases ...` (list, show, open, assign, note, status, link,
export) and `verifier audit verify-export`, the offline check of an evidence export
(docs/cases.md). Every command runs as the registry's operator, logged with the operator's name.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from . import cases, clock, db, evidence, files
from .cli_base import CliError, _actor, _now, _open_registry, _settings, read_upto

EXPORT_MAX_BYTES = 16 * 1024 * 1024
PENDING_EXIT = 3


def _vkey(option: str, text: str | None) -> Any:
    """A C2SP vkey given on the command line (or VERIFIER_LOG_PUBLIC_KEY); exit 2 if it is not one."""
    from . import note

    if not text:
        raise CliError(f"give the log's public key with {option} or VERIFIER_LOG_PUBLIC_KEY", 2)
    try:
        return note.parse_vkey(text.strip())
    except note.InvalidNote as exc:
        raise CliError(f"{option} is not a verifier key (name+hex id+base64 key): {exc}", 2) from None


def _operator() -> Any:
    return cases.operator(_actor().split(":", 1)[-1])


@click.group("cases")
def cases_group() -> None:
    """Anomalies worked as cases: open one from an anomaly, assign, note, close, export its evidence.

    Example: verifier audit cases open --rule diversion --subject 'code 0000000000000042: SC-01 Sichuan -> Guangdong'
    """


@cases_group.command("list")
@click.option("--status", type=click.Choice(cases.STATUSES), help="Only cases of this status.")
@click.option("--severity", type=click.Choice(cases.SEVERITIES), help="Only cases of this severity.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def cases_list(status: str | None, severity: str | None, as_json: bool) -> None:
    """The cases, newest first.

    Example: verifier audit cases list --status open
    """
    conn = _open_registry()
    found = cases.list_cases(conn, _operator(), status, severity)
    if as_json:
        click.echo(json.dumps(found, ensure_ascii=False, indent=2))
        return
    for row in found:
        assignee = row["assignee"] or "unassigned"
        click.echo(
            f"{row['id']:>5}  {row['status']:<13} {row['severity'] or '-':<4} {row['rule']:<20} "
            f"{row['subject']}  ({assignee})"
        )
    if not found:
        click.echo("No cases.")


@cases_group.command("show")
@click.argument("case")
def cases_show(case: str) -> None:
    """A case, its notes and its evidence scans (times in China Standard Time).

    Example: verifier audit cases show 3
    """
    conn = _open_registry()
    found = cases.get_case(conn, _operator(), cases.case_id_of(case))
    row = found.case
    click.echo(f"Case {row['id']}: {row['rule']} · {row['subject']} · {row['severity'] or '-'} · {row['status']}")
    click.echo(f"  opened {_cst(row['opened_at'])} by {row['opened_by']}; assignee {row['assignee'] or '-'}")
    if row["closed_at"]:
        click.echo(f"  closed {_cst(row['closed_at'])} by {row['closed_by']}")
    for note in found.notes:
        click.echo(f"  note {_cst(note['at'])} {note['author']}: {note['text']}")
    for scan in found.evidence:
        click.echo(f"  scan {scan['id']} {_cst(scan['at'])} {scan['reason']} {scan.get('region') or ''}")


def _cst(text: str | None) -> str:
    moment = clock.parse(text)
    return "" if moment is None else moment.astimezone(clock.CHINA).strftime("%Y-%m-%d %H:%M:%S CST")


def _write(do: Any) -> Any:
    conn = _open_registry()
    try:
        with db.transaction(conn):
            return do(conn)
    finally:
        conn.close()


@cases_group.command("open")
@click.option("--rule", required=True, help="The anomaly's rule, e.g. diversion.")
@click.option("--subject", required=True, help="The anomaly's subject, as `verifier audit anomalies` prints it.")
@click.option("--days", type=click.IntRange(1, 3650), default=30, show_default=True, help="The anomalies' window.")
def cases_open(rule: str, subject: str, days: int) -> None:
    """Open a case from an anomaly the rules find now (its evidence scans linked).

    Example: verifier audit cases open --rule blocked-scanned --subject 'code 0000000000000042'
    """
    user, now = _operator(), _now()

    def do(conn: db.Conn) -> int:
        return cases.open_case(conn, user, cases.find_anomaly(conn, user, rule, subject, days, now), _actor(), now)

    click.echo(f"Opened case {_write(do)} (logged)")


@cases_group.command("assign")
@click.argument("case")
@click.argument("inspector")
def cases_assign(case: str, inspector: str) -> None:
    """Give a case to an inspector.

    Example: verifier audit cases assign 3 ian
    """
    case_id = cases.case_id_of(case)
    _write(lambda conn: cases.assign(conn, _operator(), case_id, inspector, _actor(), _now()))
    click.echo(f"Case {case_id} assigned to {inspector} (logged)")


@cases_group.command("note")
@click.argument("case")
@click.argument("text")
def cases_note(case: str, text: str) -> None:
    """Add a note to a case.

    Example: verifier audit cases note 3 'called the dealer; the goods went to 广州'
    """
    case_id = cases.case_id_of(case)
    _write(lambda conn: cases.add_note(conn, _operator(), case_id, text, _actor(), _now()))
    click.echo(f"Note added to case {case_id} (logged)")


@cases_group.command("status")
@click.argument("case")
@click.argument("status", type=click.Choice(cases.STATUSES))
def cases_status(case: str, status: str) -> None:
    """Move a case to open, investigating or closed.

    Example: verifier audit cases status 3 closed
    """
    case_id = cases.case_id_of(case)
    _write(lambda conn: cases.set_status(conn, _operator(), case_id, status, _actor(), _now()))
    click.echo(f"Case {case_id} is {status} (logged)")


@cases_group.command("link")
@click.argument("case")
@click.argument("scan_ids", nargs=-1, required=True)
def cases_link(case: str, scan_ids: tuple[str, ...]) -> None:
    """Link more scans to a case as evidence.

    Example: verifier audit cases link 3 120 121
    """
    case_id = cases.case_id_of(case)
    ids = cases.parse_scan_ids(" ".join(scan_ids))
    new = _write(lambda conn: cases.link_evidence(conn, _operator(), case_id, ids, _actor(), _now()))
    click.echo(f"Linked {len(new)} scan(s) to case {case_id} (logged)")


@cases_group.command("export")
@click.argument("case")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False), help="The export file to write.")
def cases_export(case: str, out_file: str) -> None:
    """Write a case's evidence export: the case, notes, scans as CSV, their log entries with
    inclusion proofs against one signed checkpoint. Check it with `verifier audit verify-export`.

    Example: verifier audit cases export 3 --out case-3-evidence.json
    """
    conn = _open_registry()
    try:
        export = cases.export(conn, _operator(), cases.case_id_of(case))
    finally:
        conn.close()
    files.write_atomic(Path(out_file), evidence.dumps(export).encode("utf-8"))
    state = "complete" if export["state"] == evidence.COMPLETE else "pending (not in a signed checkpoint yet)"
    click.echo(f"Wrote {out_file}: {len(export['entries'])} log entries, {len(export['evidence'])} scans, {state}")


@click.command("verify-export")
@click.argument("export_file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--log-key", help="The log's public key (a C2SP vkey); default VERIFIER_LOG_PUBLIC_KEY.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def verify_export(export_file: str, log_key: str | None, as_json: bool) -> None:
    """Check a case's evidence export offline (no database): every leaf and inclusion proof
    against the checkpoint, its signature, each CSV row against its scan's entry, the case and
    notes against theirs. Exit 0 verified; 1 tampered (names what); 2 not an export (or a bad key
    or file); 3 not yet covered by a checkpoint.

    Example: verifier audit verify-export case-3-evidence.json --log-key 'verify.example.cn/log+1a2b3c4d+AQ...'
    """
    vkey = _vkey("--log-key", log_key or _settings().log_public_key)
    data = read_upto(export_file, EXPORT_MAX_BYTES)
    try:
        if len(data) > EXPORT_MAX_BYTES:
            raise evidence.InvalidExport(evidence.NOT_AN_EXPORT, f"larger than {EXPORT_MAX_BYTES:,} bytes")
        verified = evidence.verify(evidence.loads(data), [vkey])
    except evidence.InvalidExport as exc:
        code = {evidence.NOT_AN_EXPORT: 2, evidence.EXPORT_PENDING: PENDING_EXIT}.get(exc.reason, 1)
        if as_json:
            click.echo(
                json.dumps({"ok": False, "error": {"code": exc.reason, "message": str(exc)}}, ensure_ascii=False)
            )
        elif code == PENDING_EXIT:
            click.echo(f"Export pending: {exc}")
        elif code == 2:
            click.echo(f"NOT AN EXPORT: {exc}")
        else:
            click.echo(f"TAMPERED: {exc}")
        sys.exit(code)
    if as_json:
        click.echo(json.dumps({"ok": True, **verified.as_dict()}, ensure_ascii=False, indent=2))
        return
    click.echo(
        f"Export OK: case {verified.case_id} ({verified.rule}, {verified.subject}, {verified.status}), "
        f"{verified.notes} note(s), {verified.scans} scan(s): {verified.entries} entries of log {verified.origin} "
        f"in its checkpoint of {verified.size:,}"
    )
