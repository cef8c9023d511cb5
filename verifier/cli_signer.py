"""The CLI of batch requests: `verifier signer` (the process that issues approved requests on the
machine with the keys) and `verifier requests list|show|approve|cancel` (docs/signer.md).

`requests` commands run as the registry's operator (`cli:<login>`), as every command does: they
see every enterprise's requests, and approve as that operator (never as the requester).
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import sys
from pathlib import Path
from typing import Any

import click

from . import clock, db, keys, requests, signer
from .cli_base import CliError, _actor, _now, _open_registry, _settings


def _passphrase() -> bytes:
    """The key passphrase from VERIFIER_KEY_PASSPHRASE (or its file), or a prompt in a terminal."""
    value = _settings().key_passphrase
    if value is None:
        if not sys.stdin.isatty():
            raise CliError("no key passphrase: set VERIFIER_KEY_PASSPHRASE or run in a terminal")
        value = click.prompt("Key passphrase", hide_input=True).encode("utf-8")
    return value


def _signing_key_name(keys_dir: Path, name: str | None) -> str:
    """--key, or the keyring's only active key that signs codes."""
    if name:
        return name
    active = [r.name for r in keys.read_keyring(keys_dir) if r.status == "active" and r.purpose == "codes"]
    if len(active) != 1:
        found = ", ".join(active) if active else "none"
        raise CliError(f"name the signing key with --key (active code-signing keys: {found})", 2)
    return active[0]


@click.command("signer")
@click.option("--once", is_flag=True, help="Issue what is approved now, then exit (else: keep polling).")
@click.option(
    "--poll",
    "poll_seconds",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds between looks for approved requests.",
)
@click.option("--key", "key_name", help="The signing key (default: the keyring's only active one).")
@click.option(
    "--takeover-after",
    "takeover_seconds",
    type=click.FloatRange(min=0),
    default=600.0,
    show_default=True,
    help="Seconds a signer may be silent before its claimed request is taken over.",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False),
    help="Private folder for label files until stored (default: $VERIFIER_INSTANCE/signer).",
)
@click.option("--workers", type=click.IntRange(min=1), help="Processes for signing and rendering (default: all cores).")
@click.option("--keep-files", is_flag=True, help="Also keep the label files in the work folder.")
def signer_command(
    once: bool,
    poll_seconds: float,
    key_name: str | None,
    takeover_seconds: float,
    work_dir: str | None,
    workers: int | None,
    keep_files: bool,
) -> None:
    """Issue approved batch requests on this machine (which holds the keys), storing their label
    files in the database for the console. SIGTERM or Ctrl-C stops it; a batch being issued is
    rolled back and its request given back for the next signer.

    Example: VERIFIER_KEY_PASSPHRASE=... VERIFIER_PIN_SECRET_FILE=/etc/verifier/pin verifier signer --key factory-2026
    """
    from . import issue

    cfg = _settings()
    name = _signing_key_name(cfg.keys_dir, key_name)
    private, kid = issue.signing_key(cfg.keys_dir, name, _passphrase())
    folder = Path(work_dir) if work_dir else cfg.instance / "signer"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.chmod(0o700)  # labels are secrets until printed
    _open_registry().close()  # migrations, and batches of a dead issuer recovered
    config = signer.SignerConfig(
        database=cfg.database,
        private_key=private,
        kid=kid,
        work_dir=folder,
        pin_secret=cfg.pin_secret,
        label_font=cfg.label_font,
        stale_after=dt.timedelta(seconds=takeover_seconds),
        workers=workers,
        keep_files=keep_files,
    )
    stop = signer.Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    pins = "with" if cfg.pin_secret else "without (requests with PINs will fail)"
    click.echo(f"Signer {config.name}: key {name} ({kid.hex()}), {pins} a PIN secret, on {db.describe(cfg.database)}")
    outcomes = signer.run(config, clock.now, stop, once=once, poll_seconds=poll_seconds, report=_print_outcome)
    if once and not outcomes:
        click.echo("No approved requests.")
    if any(o.status == requests.FAILED for o in outcomes) and once:
        sys.exit(1)


def _print_outcome(o: signer.Outcome) -> None:
    over = " (taken over from a silent signer)" if o.taken_over else ""
    if o.status == requests.DONE:
        rate = o.count / o.seconds if o.seconds else 0
        click.echo(
            f"Request {o.request_id}: batch {o.batch_id}, {o.count:,} codes in {o.seconds:.1f} s "
            f"({rate:,.0f} codes/s){over}"
        )
    elif o.status == requests.FAILED:
        click.echo(f"Request {o.request_id} failed: {o.error}{over}", err=True)
    elif o.status == "released":
        click.echo(f"Request {o.request_id}: stopped; rolled back and given back for the next signer", err=True)
    else:
        click.echo(f"Request {o.request_id}: {o.error}", err=True)


# --- requests ----------------------------------------------------------------------------------


@click.group("requests")
def requests_group() -> None:
    """List, show, approve and cancel batch requests (made in the console; issued by `verifier signer`).

    Example: verifier requests list --status requested
    """


def _line(r: dict[str, Any]) -> str:
    p = r["params"]
    progress = f" {r['progress']:,}/{p['count']:,}" if r["status"] == requests.ISSUING else ""
    batch = f" batch {r['batch_id']}" if r["batch_id"] else ""
    return (
        f"{r['id']:>6}  {r['status']:<9}{progress}{batch}  {p['count']:>8,} x {p['mark']}  {r['enterprise']} / "
        f"{p['product']}{' ' + p['spec'] if p['spec'] else ''}{' / ' + p['lot'] if p['lot'] else ''}  "
        f"by {r['requested_by']} {r['created_at']}"
    )


@requests_group.command("list")
@click.option(
    "--status", "statuses", multiple=True, type=click.Choice(requests.STATUSES), help="Only these (repeatable)."
)
@click.option(
    "--limit", type=click.IntRange(1, 500), default=50, show_default=True, help="At most this many, newest first."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def requests_list(statuses: tuple[str, ...], limit: int, as_json: bool) -> None:
    """List batch requests, newest first.

    Example: verifier requests list --status approved --status issuing
    """
    conn = _open_registry()
    try:
        rows = requests.list_requests(conn, None, statuses, limit=limit)
    finally:
        conn.close()
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("No batch requests.")
    for row in rows:
        click.echo(_line(row))


@requests_group.command("show")
@click.argument("request_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def requests_show(request_id: int, as_json: bool) -> None:
    """Show one batch request: its parameters, its state, its label files.

    Example: verifier requests show 12
    """
    conn = _open_registry()
    try:
        row = requests.get(conn, request_id)
        stored = requests.files(conn, request_id)
    finally:
        conn.close()
    if as_json:
        click.echo(json.dumps({**row, "files": stored}, indent=2, ensure_ascii=False))
        return
    click.echo(_line(row))
    for key in (
        "approved_by",
        "approved_at",
        "claimed_by",
        "claimed_at",
        "progress_at",
        "error",
        "cancelled_by",
        "finished_at",
    ):
        if row[key] is not None:
            click.echo(f"  {key:<13} {row[key]}")
    for key, value in row["params"].items():
        click.echo(f"  {key:<17} {value}")
    for f in stored:
        click.echo(f"  file {f['name']:<20} {f['size']:>12,} bytes  {f['media_type']:<16} sha256 {f['sha256']}")


def _act(action: str, request_id: int) -> dict[str, Any]:
    conn = _open_registry()
    try:
        result: dict[str, Any] = getattr(requests, action)(conn, request_id, _actor(), _now())
        return result
    finally:
        conn.close()


@requests_group.command("approve")
@click.argument("request_id", type=int)
def requests_approve(request_id: int) -> None:
    """Approve batch request REQUEST_ID for a signer to issue (as this terminal's operator).

    Example: verifier requests approve 12
    """
    row = _act("approve", request_id)
    click.echo(f"Request {row['id']} approved by {row['approved_by']} (logged): a signer issues it next")


@requests_group.command("cancel")
@click.argument("request_id", type=int)
def requests_cancel(request_id: int) -> None:
    """Cancel batch request REQUEST_ID before a signer claims it.

    Example: verifier requests cancel 12
    """
    row = _act("cancel", request_id)
    click.echo(f"Request {row['id']} cancelled by {row['cancelled_by']} (logged)")
