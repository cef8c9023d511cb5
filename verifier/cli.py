"""The `verifier` command: a thin adapter that reads settings and the clock once, calls the
services and prints what they return; errors are `errors.VerifierError`s, printed by the group."""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click

from . import accounts, clock, codes, errors, keys, settings
from .cli_base import CliError, Run, _actor, _now, _open_registry, _run, _settings, read_upto  # noqa: F401


class OneLineErrors(click.Group):
    """A group whose every failure prints one line `Error: ...`, never usage blocks or tracebacks.

    A `VerifierError` of any module exits with its class's `exit_code` (1: could not do it; 2: a
    bad argument, setting or file; see each module's error classes)."""

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            _fail(exc.format_message(), 2)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except errors.VerifierError as exc:
            _fail(exc.message, exc.exit_code)
        except click.Abort:
            _fail("aborted", 1)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
            if _debug():
                raise
            _fail(f"unexpected {type(exc).__name__}: {exc} (set VERIFIER_DEBUG=1 for details)", 1)
        sys.exit(rv if isinstance(rv, int) else 0)


def _fail(message: str, code: int) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _debug() -> bool:
    try:
        return settings.load().debug
    except errors.VerifierError:
        return False


def passphrase(confirm: bool = False) -> bytes:
    """The key passphrase from VERIFIER_KEY_PASSPHRASE, or a prompt in a terminal."""
    value = _settings().key_passphrase
    if value is None:
        if not sys.stdin.isatty():
            raise CliError("no key passphrase: set VERIFIER_KEY_PASSPHRASE or run in a terminal")
        value = click.prompt("Key passphrase", hide_input=True, confirmation_prompt=confirm).encode("utf-8")
    return value


@click.group(cls=OneLineErrors)
@click.version_option(package_name="verifier", message="%(version)s")
def cli() -> None:
    """Signed anti-counterfeit and traceability codes for product labels.

    Settings come from VERIFIER_* environment variables: VERIFIER_INSTANCE (default
    ./instance), VERIFIER_KEYS, VERIFIER_DB, VERIFIER_BASE_URL, VERIFIER_KEY_PASSPHRASE.

    Example: verifier verify 'HTTP://127.0.0.1:8000/AEB...'
    """


# --- keys ---------------------------------------------------------------------------------


@cli.group("keys")
def keys_group() -> None:
    """Create, list, export, retire and revoke signing keys.

    Example: verifier keys list
    """


@keys_group.command("new")
@click.argument("name")
@click.option(
    "--purpose",
    type=click.Choice(keys.PURPOSES),
    default="codes",
    show_default=True,
    help="codes: signs labels; log: signs audit-log checkpoints (never codes).",
)
def keys_new(name: str, purpose: str) -> None:
    """Create an Ed25519 signing key NAME (encrypted with the key passphrase).

    Example: VERIFIER_KEY_PASSPHRASE=... verifier keys new factory-2026
    """
    folder = _settings().keys_dir
    record = keys.create_key(folder, name, passphrase(confirm=True), _now(), purpose)
    click.echo(f"Created key {record.name} (kid {record.kid}) in {folder}")
    click.echo(f"Private key: {folder / (record.name + '.pem')} (mode 0600, keep it off the web server)")


@keys_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def keys_list(as_json: bool) -> None:
    """List the keys of the keyring with their status.

    Example: verifier keys list --json
    """
    folder = _settings().keys_dir
    records = keys.read_keyring(folder)
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in records], indent=2))
        return
    if not records:
        click.echo(f"No keys in {folder} (create one with `verifier keys new NAME`)")
    for r in records:
        click.echo(f"{r.kid}  {r.status:<8} {r.purpose:<6} {r.name:<24} created {r.created_at}")


@keys_group.command("export-jwks")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), help="Write to this file instead of stdout.")
@click.option("--public", is_flag=True, help="Leave revoked keys out (what /.well-known/jwks.json serves).")
def keys_export(out: str | None, public: bool) -> None:
    """Export the public keys as a JWKS (RFC 8037) for verifiers and the lookup server.

    Example: verifier keys export-jwks --out keys/jwks.json
    """
    text = json.dumps(keys.jwks(keys.read_keyring(_settings().keys_dir), not public), indent=2) + "\n"
    if out:
        Path(out).write_text(text, "utf-8")
        click.echo(f"Wrote {out}", err=True)
    else:
        click.echo(text, nl=False)


def _status_command(status: str):
    @click.argument("kid")
    def command(kid: str) -> None:
        def log_change(record: keys.KeyRecord) -> None:  # under the keyring lock, once written
            _log_admin("key.status", {"kid": record.kid, "name": record.name, "status": record.status})

        record = keys.set_status(_settings().keys_dir, kid, status, _now(), log_change)
        click.echo(f"Key {record.name} ({record.kid}) is now {record.status}")

    return command


keys_group.command(
    "retire",
    help="Retire key KID (a name or key id): its codes still verify, it signs nothing new.\n\n"
    "Example: verifier keys retire 3f2a",
)(_status_command(codes.KEY_RETIRED))
keys_group.command(
    "revoke",
    help="Revoke key KID (a name or key id): its codes are reported as key-revoked. Final.\n\n"
    "Example: verifier keys revoke 3f2a",
)(_status_command(codes.KEY_REVOKED_STATUS))


def _log_admin(kind: str, body: dict[str, object]) -> None:
    """Record an administrative action in the audit log, if this installation has a database."""
    from . import auditlog, db

    location = _settings().database
    if not db.is_postgres(location) and not Path(location).exists():
        return
    conn = db.connect(location)
    try:
        with db.transaction(conn):
            auditlog.append(conn, kind, body, clock.utc_text(_now()), actor=_actor())
    finally:
        conn.close()


# --- sign and verify ----------------------------------------------------------------------


@cli.command("sign")
@click.option("--key", "key_name", required=True, help="Name of the signing key.")
@click.option(
    "--mark",
    default="anti-counterfeit",
    show_default=True,
    type=click.Choice([m.slug for m in codes.MARKS]),
    help="Mark type.",
)
@click.option("--batch", type=int, default=1, show_default=True, help="Batch number (compact form).")
@click.option("--serial", type=int, help="Serial number (default: random).")
@click.option("--gtin", help="GTIN: makes a GS1 Digital Link URL instead of a compact one.")
@click.option("--lot", help="Lot (GS1 form).")
@click.option("--expiry", type=click.DateTime(["%Y-%m-%d"]), help="Expiry date YYYY-MM-DD (GS1 form).")
def sign_command(key_name, mark, batch, serial, gtin, lot, expiry) -> None:
    """Sign one code and print its URL (batches: `verifier batch issue`).

    Example: verifier sign --key dev --mark stable-qualified --batch 7
    """
    from . import issue

    private, kid = issue.signing_key(_settings().keys_dir, key_name, passphrase())
    serial = secrets.randbelow(codes.SERIAL_LIMIT) if serial is None else serial
    url = issue.sign_code(
        private,
        kid,
        codes.mark_by_slug(mark),
        serial,
        _settings().base_urls[0],
        batch=batch,
        gtin=gtin,
        lot=lot,
        expiry=expiry.date() if expiry else None,
    )
    click.echo(url)


def _read_image(path: Path) -> list[str]:
    import zxingcpp
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            found = zxingcpp.read_barcodes(img.convert("L"), formats=zxingcpp.BarcodeFormat.QRCode)  # type: ignore[arg-type]  # one format is accepted; the stub wants the flag set
    except (UnidentifiedImageError, OSError) as exc:
        raise CliError(f"cannot read image {path}: {exc}", 2) from None
    if not found:
        raise CliError(f"no QR code found in {path}", 2)
    return [barcode.text for barcode in found]


VERDICT_TEXT = {
    codes.GENUINE: "GENUINE: the signature is valid",
    codes.MALFORMED: "NOT GENUINE: this is not a well-formed code",
    codes.UNKNOWN_KEY: "NOT GENUINE: signed by an unknown key",
    codes.BAD_SIGNATURE: "NOT GENUINE: the signature does not match (forged or altered)",
    codes.KEY_REVOKED: "NOT GENUINE: the signing key has been revoked",
}


@cli.command("verify")
@click.argument("code")
@click.option("--jwks", "jwks_path", type=click.Path(dir_okay=False), help="Trust the keys of this JWKS file.")
@click.option("--base-url", "base_url", multiple=True, help="Accept codes under this address (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def verify_command(code: str, jwks_path: str | None, base_url: tuple[str, ...], as_json: bool) -> None:
    """Verify a code, a URL, or the QR code in an image file. Exit 0 genuine, 1 not, 2 error.

    Example: verifier verify label.png --json
    """
    try:  # exit 2 for an unusable keyring or JWKS: 1 means "checked, not genuine"
        trusted = keys.load_jwks_file(Path(jwks_path)) if jwks_path else keys.trust_from_folder(_settings().keys_dir)
    except keys.KeyringError as exc:
        raise CliError(exc.message, 2) from None
    texts = _read_image(Path(code)) if _looks_like_file(code) else [code]
    bases = list(base_url) or list(_settings().base_urls)
    try:
        results = [codes.verify(text, trusted, bases) for text in texts]
    except ValueError as exc:  # a bad --base-url
        raise CliError(str(exc), 2) from None
    if as_json:
        out = [_result_json(text, r) for text, r in zip(texts, results)]
        click.echo(json.dumps(out[0] if len(out) == 1 else out, indent=2, ensure_ascii=False))
    else:
        for text, result in zip(texts, results):
            _print_result(text, result, len(texts) > 1)
    sys.exit(0 if all(r.genuine for r in results) else 1)


def _looks_like_file(arg: str) -> bool:
    return len(arg) < 4096 and "://" not in arg and os.path.isfile(arg)


def _result_json(text: str, result: codes.Verification) -> dict[str, object]:
    return {
        "input": text,
        "genuine": result.genuine,
        "reason": result.reason,
        "detail": result.detail,
        "key_status": result.key_status,
        "fields": result.code.fields() if result.code else None,
    }


def _print_result(text: str, result: codes.Verification, show_input: bool) -> None:
    if show_input:
        click.echo(f"Code: {text}")
    line = VERDICT_TEXT[result.reason]
    if result.detail:
        line += f" ({result.detail})"
    if result.genuine and result.key_status == codes.KEY_RETIRED:
        line += " (signed by a retired key)"
    click.echo(line)
    if result.code is not None:
        for name, value in result.code.fields().items():
            click.echo(f"  {name:<11} {value}")


# --- batches ------------------------------------------------------------------------------


@cli.group("batch")
def batch_group() -> None:
    """Issue label batches, list and show them, recall them, export their codes.

    Example: verifier batch list
    """


def _split_formats(value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(part.strip().lower() for part in value.split(",") if part.strip()))


@batch_group.command("issue")
@click.option("--key", "key_name", required=True, help="Name of the signing key.")
@click.option("--mark", required=True, help="stable-qualified, traceability or anti-counterfeit.")
@click.option("--enterprise", required=True, help="Enterprise name (created on first use).")
@click.option("--credit-code", help="The enterprise's unified social credit code (18 characters).")
@click.option("--product", required=True, help="Product name (created on first use).")
@click.option("--spec", default="", help="Product specification, e.g. '500 ml'.")
@click.option("--count", required=True, type=int, help="Number of codes.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder (new or empty).")
@click.option(
    "--format",
    "formats",
    default="csv,pdf",
    show_default=True,
    help="Any of csv,png,label-png,svg,pdf (label-png: QR code with its printed code and mark).",
)
@click.option(
    "--form",
    type=click.Choice(["auto", "compact", "gs1"]),
    default="auto",
    show_default=True,
    help="URL form: gs1 (Digital Link) when --gtin is given, else compact.",
)
@click.option("--gtin", help="GTIN-8/12/13/14 of the product.")
@click.option("--lot", help="Lot / batch number printed by the enterprise (GS1 AI 10).")
@click.option("--production-date", type=click.DateTime(["%Y-%m-%d"]), help="YYYY-MM-DD.")
@click.option("--expiry", type=click.DateTime(["%Y-%m-%d"]), help="Expiry / mark validity, YYYY-MM-DD.")
@click.option("--pin", is_flag=True, help="Add a scratch-off PIN column (needs VERIFIER_PIN_SECRET).")
@click.option("--base-url", help="Address the codes point to (default: the first of VERIFIER_BASE_URL).")
@click.option("--label-size", default="40x30", show_default=True, help="PDF label size in mm, WIDTHxHEIGHT.")
@click.option("--note", default="", help="A note kept with the batch.")
@click.option("--workers", type=int, help="Processes for signing and rendering (default: all cores).")
@click.option(
    "--unit",
    type=click.Choice(["item", "case", "pallet"]),
    default="item",
    show_default=True,
    help="What the labels go on: items, or cases/pallets that items are packed into.",
)
@click.option(
    "--activation",
    type=click.Choice(["issue", "batch", "case", "shipment"]),
    default="issue",
    show_default=True,
    help="When codes are released for sale: on issue, as a whole batch, with their case, or when shipped.",
)
@click.option("--production-place", help="Where it was made, shown to consumers (e.g. 浙江杭州).")
@click.option(
    "--certificate", help="The number of the mark certificate it is issued under (`verifier certificates list`)."
)
def batch_issue(
    key_name,
    mark,
    enterprise,
    credit_code,
    product,
    spec,
    count,
    out_dir,
    formats,
    form,
    gtin,
    lot,
    production_date,
    expiry,
    pin,
    base_url,
    label_size,
    note,
    workers,
    unit,
    activation,
    production_place,
    certificate,
) -> None:
    """Issue a batch of signed codes with printer files (codes.csv, PNG/SVG, PDF sheets).

    Example: verifier batch issue --key dev --mark traceability --enterprise Acme --product Tea --count 1000 --out l/
    """
    from . import issue, labels, pins, progress

    try:
        mark_obj = codes.mark_by_slug(mark)
        layout = labels.SheetLayout(label_mm=labels.parse_label_size(label_size))
        gtin14 = codes.normalize_gtin(gtin) if gtin else None
    except (ValueError, codes.InvalidCode) as exc:
        raise CliError(str(exc).split(": ", 1)[-1] if isinstance(exc, codes.InvalidCode) else str(exc), 2) from None
    if workers is not None and workers < 1:
        raise CliError("--workers must be at least 1", 2)
    cfg = _settings()
    request = issue.BatchRequest(
        mark=mark_obj,
        enterprise=enterprise,
        product=product,
        count=count,
        out_dir=Path(out_dir),
        base_url=base_url or cfg.base_urls[0],
        formats=_split_formats(formats),
        credit_code=credit_code,
        spec=spec,
        gtin=gtin14,
        lot=lot,
        production_date=production_date.date() if production_date else None,
        expiry=expiry.date() if expiry else None,
        form=("gs1" if gtin14 else "compact") if form == "auto" else form,
        pin=pin,
        layout=layout,
        note=note,
        label_font=cfg.label_font,
        unit=unit,
        activation=activation,
        production_place=production_place,
        certificate=certificate,
    )
    request.validate()
    secret = pins.require_secret(cfg.pin_secret) if pin else None
    private, kid = issue.signing_key(cfg.keys_dir, key_name, passphrase())
    meter = progress.Progress(count)
    try:
        result = issue.issue_batch(cfg.database, request, private, kid, secret, meter.advance, workers, _now())
    except KeyboardInterrupt:
        raise CliError("interrupted: nothing was registered and the partial output was removed", 130) from None
    finally:
        meter.close()
    rate = result.count / result.seconds if result.seconds else 0
    click.echo(
        f"Issued batch {result.batch_id}: {result.count:,} codes in {result.seconds:.1f} s ({rate:,.0f} codes/s)"
    )
    click.echo(
        f"Output: {result.out_dir} ({result.files:,} files"
        + (f", {result.pdf_pages:,} PDF pages)" if result.pdf_pages else ")")
    )
    if pin:
        where = "codes.csv and the PDF labels' scratch-off boxes" if "pdf" in request.formats else "codes.csv"
        click.echo(
            f"PINs are in {where} only: they are never stored; print them under a scratch-off layer, "
            "then keep these files as safe as the labels themselves."
        )
    if not labels.label_font(cfg.label_font)[1] and "pdf" in request.formats:
        click.echo(
            "Note: no CJK TrueType font found, so the PDF references STSong-Light without embedding it; "
            "set VERIFIER_LABEL_FONT to a .ttf/.ttc to embed one.",
            err=True,
        )


def _batch_summary(b: dict[str, Any]) -> str:
    return (
        f"{b['id']:>6}  {b['status']:<8} {b['mark']:<17} {b['count']:>10,}  {b['enterprise']} / {b['product']}"
        f"{' / ' + b['lot'] if b['lot'] else ''}  {b['created_at']}"
    )


@batch_group.command("list")
@click.option("--enterprise", help="Only this enterprise's batches.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def batch_list(enterprise: str | None, as_json: bool) -> None:
    """List registered batches, newest first.

    Example: verifier batch list --enterprise Acme
    """
    from .repos import registry

    batches = registry.list_batches(_open_registry(), enterprise)
    if as_json:
        click.echo(json.dumps(batches, indent=2, ensure_ascii=False))
    elif not batches:
        click.echo("No batches yet (issue one with `verifier batch issue`).")
    else:
        click.echo(f"{'batch':>6}  {'status':<8} {'mark':<17} {'codes':>10}  enterprise / product / lot  created")
        for b in batches:
            click.echo(_batch_summary(b))


@batch_group.command("show")
@click.argument("batch_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def batch_show(batch_id: int, as_json: bool) -> None:
    """Show one batch: product, mark, dates, key, status, recall.

    Example: verifier batch show 3
    """
    from .repos import registry

    batch = registry.get_batch(_open_registry(), batch_id)
    if as_json:
        click.echo(json.dumps(batch, indent=2, ensure_ascii=False))
        return
    for name in (
        "id",
        "status",
        "enterprise",
        "credit_code",
        "product",
        "spec",
        "mark",
        "form",
        "gtin",
        "lot",
        "production_date",
        "expiry_date",
        "count",
        "kid",
        "base_url",
        "pin",
        "output_dir",
        "created_at",
        "created_by",
        "note",
        "recalled_at",
        "recall_reason",
        "unit",
        "activation",
        "activated_at",
        "production_place",
        "report_sha256",
    ):
        if batch.get(name) not in (None, ""):
            click.echo(f"{name:<16} {batch[name]}")


@batch_group.command("recall")
@click.argument("batch_id", type=int)
@click.option("--reason", required=True, help="Why: shown to inspectors and kept in the record.")
def batch_recall(batch_id: int, reason: str) -> None:
    """Recall a batch: its codes are reported as recalled from now on.

    Example: verifier batch recall 3 --reason 'contaminated lot'
    """
    from . import issue

    batch = issue.recall_batch(_open_registry(), batch_id, reason, _now(), actor=_actor())
    click.echo(f"Batch {batch_id} recalled at {batch['recalled_at']}: {batch['recall_reason']}")


@batch_group.command("attach-report")
@click.argument("batch_id", type=int)
@click.argument("report", type=click.Path(exists=True, dir_okay=False))
def batch_attach_report(batch_id: int, report: str) -> None:
    """Attach an inspection report (PDF, JPEG or PNG) to a batch: consumers see it, with its SHA-256.

    Example: verifier batch attach-report 3 report-2026-11.pdf
    """
    from . import db, events

    content = Path(report).read_bytes()
    conn = _open_registry()
    try:
        with db.transaction(conn):
            sha256 = events.attach_report(
                conn, batch_id, content, Path(report).name, enterprise_id=None, actor=_actor(), now=_now()
            )
    finally:
        conn.close()
    click.echo(f"Attached to batch {batch_id}: {Path(report).name}, SHA-256 {sha256} (logged)")


@batch_group.command("export")
@click.argument("batch_id", type=int)
@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="Write to this file instead of stdout.")
@click.option("--key", "key_name", help="Re-sign to include each code's URL (Ed25519 signatures are deterministic).")
def batch_export(batch_id: int, out_file: str | None, key_name: str | None) -> None:
    """Export a batch's codes as CSV: serial, printed code, status (and URL with --key).

    The format of codes.csv: every field quoted, the serial as text digits (docs/batches.md).

    Example: verifier batch export 3 --out batch-3.csv
    """
    from . import csvcells, issue
    from .repos import registry

    conn = _open_registry()
    batch = registry.get_batch(conn, batch_id)
    signer = None
    if key_name:
        signer = issue.load_signer_for_batch(_settings().keys_dir, key_name, passphrase(), batch)
    try:  # owner-only, like the batch folder: with --key it holds every label's URL
        out = (
            os.fdopen(
                os.open(out_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8", newline=""
            )
            if out_file
            else sys.stdout
        )
    except OSError as exc:
        raise CliError(f"cannot write {out_file}: {exc.strerror}") from None
    try:
        writer = csvcells.writer(out)
        writer.writerow(list(issue.EXPORT_HEADER) + (["url"] if signer else []))
        for row in issue.export_rows(conn, batch, signer):
            writer.writerow(row, text_columns=frozenset({0}))
    finally:
        if out_file:
            out.close()
    if out_file:
        click.echo(f"Wrote {batch['count']:,} codes to {out_file}", err=True)


# --- the lookup server --------------------------------------------------------------------


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port.")
@click.option("--workers", type=click.IntRange(1, 64), help="Worker processes (default: one a core, at least 2).")
@click.option("--access-log", is_flag=True, help="Log every request (holds full IP addresses; off by default).")
@click.option(
    "--no-sequencer",
    is_flag=True,
    help="Do not run a log sequencer beside the workers (run 'verifier sequence' elsewhere).",
)
def serve_command(host: str, port: int, workers: int | None, access_log: bool, no_sequencer: bool) -> None:
    """Serve the consumer lookup, the JSON API and the public keys (gunicorn).

    The server reads public keys and the PIN secret only; it never sees a private key. On
    PostgreSQL every node also runs a log sequencer on standby; one of them leads.

    Example: verifier serve --host 0.0.0.0 --port 8000
    """
    from . import serve

    try:
        serve.run(host, port, workers, access_log, with_sequencer=not no_sequencer)
    except (ValueError, OSError) as exc:
        raise CliError(str(exc)) from None


@cli.command("sequence")
@click.option("--once", is_flag=True, help="Sequence what is pending now, sign a checkpoint, then exit.")
def sequence_command(once: bool) -> None:
    """Add pending scans and actions to the transparency log's tree and sign checkpoints with the
    log key (VERIFIER_LOG_KEY_FILE, if set): the log sequencer.

    Each `verifier serve` runs one; any number may run, one leads, the others stand by.

    Example: verifier sequence --once
    """
    import signal
    import threading

    from . import db, sequencer

    loaded = _settings()
    location = loaded.database
    signer = _log_signer(required=False)
    if once:
        conn = db.connect(location, create=False)
        try:
            done = sequencer.drain(conn, signer=signer)
            status = sequencer.status(conn)
        finally:
            conn.close()
        click.echo(f"Sequenced {done:,} entries; {status['pending']:,} pending")
        leader = status["leader"]
        if isinstance(leader, dict):  # it held the lock throughout: this run chained and signed nothing
            click.echo(
                f"Another sequencer leads (from {leader['client']}, backend {leader['pid']}): it chains the"
                " entries and signs the checkpoints, so this run did neither"
            )
        return
    event = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: event.set())
    signal.signal(signal.SIGINT, lambda *_: event.set())
    signing = f", signing checkpoints as {signer.origin}" if signer else ", no log key: no checkpoints"
    click.echo(f"Sequencing {db.describe(location)}{signing} (Ctrl-C to stop)", err=True)
    checkpoints = sequencer.Checkpoints(signer, loaded.log_checkpoint_seconds)
    sequencer.run(location, sequencer.Stop(event), checkpoints=checkpoints)


# --- audit --------------------------------------------------------------------------------


@cli.group("audit")
def audit_group() -> None:
    """Prove the scan log was not edited, sign checkpoints, purge personal data.

    Example: verifier audit verify --checkpoint offsite/checkpoint-latest.json
    """


def _log_public_keys() -> dict[str, Any]:
    return {r.kid: r.public_key() for r in keys.read_keyring(_settings().keys_dir) if r.purpose == "log"}


def _log_signer(required: bool) -> Any:
    """The log key from VERIFIER_LOG_KEY_FILE (a logtree.LogSigner), or None when not `required`."""
    from . import logtree, note

    path = _settings().log_signing_key_file
    if path is None:
        if required:
            raise CliError("no log key: set VERIFIER_LOG_KEY_FILE (make one with 'verifier log keygen')")
        return None
    try:
        return logtree.LogSigner.from_skey(path.read_text("utf-8"))
    except OSError as exc:
        raise CliError(f"cannot read the log key {path}: {exc.strerror}") from None
    except (note.InvalidNote, UnicodeDecodeError) as exc:
        raise CliError(f"{path} is not a log key: {exc}") from None


def _vkeys(texts: Iterable[str], what: str) -> list[Any]:
    from . import note

    found = []
    for text in texts:
        try:
            found.append(note.parse_vkey(text.strip()))
        except note.InvalidNote as exc:
            raise CliError(f"{what} {text.strip()!r} is not a verifier key: {exc}") from None
    return found


def _log_trust(log_keys: Iterable[str] = ()) -> Any:
    """What checks the log's signatures: given vkeys, VERIFIER_LOG_PUBLIC_KEY and the log key's own
    (when this host has it), witnesses from VERIFIER_LOG_WITNESSES, the legacy keyring log keys."""
    from . import auditlog

    loaded = _settings()
    texts = [*log_keys, *([loaded.log_public_key] if loaded.log_public_key else [])]
    vkeys = _vkeys(texts, "log key")
    signer = _log_signer(required=False)
    if signer is not None and signer.verifier not in vkeys:
        vkeys.append(signer.verifier)
    witnesses = _vkeys(loaded.log_witnesses, "witness key")
    return auditlog.Trust(tuple(vkeys), tuple(witnesses), _log_public_keys())


def _read_checkpoint_file(path: str) -> tuple[str | None, dict[str, Any] | None]:
    """A checkpoint exported off the host: a C2SP note (text) or a legacy JSON checkpoint."""
    from . import auditlog

    try:
        text = Path(path).read_text("utf-8")
        if text.lstrip().startswith("{"):
            return None, auditlog.parse_checkpoint(json.loads(text))
    except (ValueError, UnicodeDecodeError) as exc:  # exit 2: a bad file, never "tampered" (1)
        raise CliError(f"{path} is not a checkpoint file: {exc}", 2) from None
    if "\n\n" not in text:
        raise CliError(f"{path} is not a checkpoint file: not a signed note", 2)
    return text, None


@audit_group.command("verify")
@click.option(
    "--checkpoint",
    "checkpoint_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="A checkpoint exported off the host (repeatable): detects truncation and rewriting.",
)
@click.option("--log-key", "log_keys", multiple=True, help="The log's verifier key (vkey); repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def audit_verify(checkpoint_files: tuple[str, ...], log_keys: tuple[str, ...], as_json: bool) -> None:
    """Recompute the log's tree, check its checkpoints, every scan, and replay the log against the
    state tables (batches, codes, check counts, users, tokens, key statuses). Exit 1 if tampered,
    2 on a bad file.

    Example: verifier audit verify --checkpoint /mnt/offsite/checkpoint-000120.txt
    """
    from . import auditlog

    trust = _log_trust(log_keys)
    notes, legacy = [], []
    for path in checkpoint_files:
        text, old = _read_checkpoint_file(path)
        notes += [text] if text is not None else []
        legacy += [old] if old is not None else []
    keys_dir = _settings().keys_dir
    keyring = keys.read_keyring(keys_dir) if (keys_dir / keys.KEYRING_FILE).exists() else None
    conn = _open_registry()
    report = auditlog.verify(conn, trust, notes, legacy, keyring)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "pending": report.pending,
                    "retired_below": report.retired_below,
                    "entries": report.entries,
                    "head_seq": report.head_seq,
                    "tree_size": report.tree_size,
                    "root": report.head_hash,
                    "head_hash": report.head_hash,
                    "checkpoints": report.checkpoints,
                    "legacy_chain": report.legacy_chain,
                    "unchecked_checkpoints": report.unchecked_checkpoints,
                    "first_bad_seq": report.first_bad_seq,
                    "problems": [p.__dict__ for p in report.problems],
                },
                indent=2,
            )
        )
    elif report.ok:
        click.echo(
            f"OK: {report.entries:,} entries, tree of {report.tree_size:,} (root {report.head_hash[:16]}...); "
            f"{report.checkpoints} checkpoint(s) match; the tables agree with the log"
        )
        if report.pending:
            click.echo(f"Pending: {report.pending:,} entries are not in the tree yet (the sequencer is behind)")
        if report.unchecked_checkpoints:
            click.echo(
                f"Not checked: {report.unchecked_checkpoints} checkpoint(s), no log key "
                "(set VERIFIER_LOG_PUBLIC_KEY or give --log-key)"
            )
        if report.retired_below:
            click.echo(f"Retired: scans below id {report.retired_below} (their entries stay in the log)")
    else:
        click.echo(f"TAMPERED: first bad entry is {report.first_bad_seq}")
        for problem in report.problems:
            click.echo(f"  entry {problem.seq}: {problem.what}")
    sys.exit(0 if report.ok else 1)


@audit_group.command("checkpoint")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="Also write the checkpoint to this file.")
def audit_checkpoint(out_file: str | None) -> None:
    """Add what is pending to the log's tree and sign a checkpoint (a C2SP note) with the log key
    (VERIFIER_LOG_KEY_FILE); print it, store it, export it.

    The sequencer beside `verifier serve` signs checkpoints by itself; this is for a host that runs
    none. Copy checkpoints off the host: `audit verify --checkpoint` then detects truncation and a
    rewritten log.

    Example: verifier audit checkpoint --out /mnt/offsite/checkpoint.txt
    """
    from . import logtree, sequencer

    signer = _log_signer(required=True)
    conn = _open_registry()
    sequencer.drain(conn, signer=signer)
    signed = logtree.latest_checkpoint(conn)
    assert signed is not None
    if out_file:
        Path(out_file).write_text(signed.note, "utf-8")
        click.echo(f"Checkpoint of {signed.size:,} entries written to {out_file}")
    else:
        click.echo(signed.note, nl=False)


# --- the transparency log's keys and witnesses ---------------------------------------------


@cli.group("log")
def log_group() -> None:
    """The transparency log's key, and a witness's cosignature of its checkpoints.

    Example: verifier log keygen --origin verify.example.cn/log --out /etc/verifier/log.key
    """


@log_group.command("keygen")
@click.option("--origin", required=True, help="The log's name in its checkpoints, e.g. verify.example.cn/log.")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False), help="The key file to create.")
@click.option("--witness", is_flag=True, help="A witness's cosigning key instead of a log key.")
def log_keygen(origin: str, out_file: str, witness: bool) -> None:
    """Create a log (or witness) signing key file, readable by its owner only, and print its
    verifier key: publish that one (VERIFIER_LOG_PUBLIC_KEY, VERIFIER_LOG_WITNESSES).

    Example: verifier log keygen --origin verify.example.cn/log --out /etc/verifier/log.key
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from . import files, note

    if not note.valid_key_name(origin):
        raise CliError(f"an origin is a name without spaces or '+', not {origin!r}")
    kind = note.COSIGNATURE_V1 if witness else note.ED25519
    key = note.SignerKey(origin, kind, Ed25519PrivateKey.generate())
    path = Path(out_file)
    try:
        if not files.create_private_file(path):
            raise CliError(f"{out_file} exists: a key file is never overwritten")
        files.write_atomic(path, (note.format_skey(key) + "\n").encode())
    except OSError as exc:
        raise CliError(f"cannot write {out_file}: {exc.strerror}") from None
    click.echo(note.format_vkey(key.verifier))


@log_group.command("cosign")
@click.option(
    "--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False), help="The witness key file."
)
@click.option("--log-key", "log_key", required=True, help="The log's verifier key (vkey).")
@click.option(
    "--previous",
    "previous_file",
    type=click.Path(exists=True, dir_okay=False),
    help="The checkpoint this witness cosigned last: the new one must extend it.",
)
@click.option("--log-url", help="The log's address (…/log/): its tiles prove the extension (with --previous).")
@click.argument("checkpoint_file", type=click.Path(exists=True, dir_okay=False))
def log_cosign(
    key_file: str, log_key: str, previous_file: str | None, log_url: str | None, checkpoint_file: str
) -> None:
    """As a witness: check a checkpoint's log signature and, with --previous, that it extends the
    checkpoint you cosigned before (a consistency proof built from the log's tiles); then print it
    with your cosignature/v1 line added (POST that to the log's /log/cosignature).

    Example: verifier log cosign --key w.key --log-key "$VKEY" --previous a.txt --log-url https://v.cn/log/ b.txt
    """
    import time

    from . import note, witness

    if previous_file and not log_url:
        raise CliError("--previous needs --log-url: the log's tiles prove the extension")
    vkeys = _vkeys([log_key], "log key")
    try:
        signer = note.parse_skey(Path(key_file).read_text("utf-8").strip())
        opened = note.open_note(Path(checkpoint_file).read_text("utf-8"), vkeys)
        checkpoint = note.parse_checkpoint(opened.text)
        if previous_file:
            previous = note.parse_checkpoint(note.open_note(Path(previous_file).read_text("utf-8"), vkeys).text)
            witness.check_extends(previous, checkpoint, _http_fetch(str(log_url)))
    except (note.InvalidNote, UnicodeDecodeError, witness.Inconsistent) as exc:
        raise CliError(str(exc)) from None
    if signer.signature_type != note.COSIGNATURE_V1:
        raise CliError(f"{key_file} is not a witness key (make one with 'verifier log keygen --witness')")
    line = note.cosign_text(opened.text, signer.name, signer.private_key, int(time.time()))
    click.echo(note.format_note(opened.text, [*opened.verified, line]), nl=False)


def _http_fetch(base_url: str) -> Any:
    """GET `<base_url>/<path>` (a witness fetching the log's tiles); errors say which tile."""
    import urllib.error
    import urllib.request

    from . import witness

    def fetch(path: str) -> bytes:
        url = base_url.rstrip("/") + "/" + path
        if not url.startswith(("http://", "https://")):
            raise witness.Inconsistent(f"--log-url must be an http(s) address, not {base_url!r}")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (http(s) only, checked above)
                return bytes(response.read(1 << 20))
        except (urllib.error.URLError, OSError) as exc:
            raise witness.Inconsistent(f"cannot fetch {url}: {exc}") from None

    return fetch


@audit_group.command("purge")
@click.option("--older-than", "days", required=True, type=click.IntRange(1, None), help="Retention in days.")
def audit_purge(days: int) -> None:
    """Erase personal fields (truncated IP, hashes, region, user agent) of scans older than DAYS.

    The chain still verifies: log entries commit to a salted hash of these fields.

    Example: verifier audit purge --older-than 180
    """
    from . import audit, db

    with db.transaction(_open_registry()) as conn:
        purged = audit.purge(conn, days, _now(), _actor())
    click.echo(f"Erased the personal fields of {purged.scans:,} scans older than {purged.cutoff}")


@audit_group.command("retire")
@click.option("--below-id", "below_id", required=True, type=int, help="Retire the scans with ids below this one.")
def audit_retire(below_id: int) -> None:
    """PostgreSQL: record in the log that scans below an id are retired, before their monthly
    partitions are dropped; `audit verify` then stops expecting their rows. Their log entries, with
    every verdict field, stay in the chain. See docs/scale-out.md.

    Example: verifier audit retire --below-id 123456790
    """
    from . import audit, db, sequencer

    conn = _open_registry()
    with db.transaction(conn):
        count = audit.retire(conn, below_id, _now(), _actor())
    sequencer.drain(conn)  # the retirement chained now, before anyone drops a partition
    click.echo(f"Retired {count:,} scans below id {below_id}: their partitions may now be dropped")


@audit_group.command("anomalies")
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, None), help="Look at the last DAYS.")
@click.option(
    "--repeat-checks", default=4, show_default=True, type=click.IntRange(1, None), help="Checks a code may have."
)
@click.option("--sessions", default=3, show_default=True, type=click.IntRange(1, None), help="Browsers a code may see.")
@click.option(
    "--distant-hours",
    default=24.0,
    show_default=True,
    type=click.FloatRange(0, None),
    help="Two regions within this many hours are suspicious.",
)
@click.option(
    "--cluster",
    default=3,
    show_default=True,
    type=click.IntRange(1, None),
    help="Not-genuine scans in one region on one day that make a cluster.",
)
@click.option(
    "--pin-guesses",
    default=5,
    show_default=True,
    type=click.IntRange(1, None),
    help="Wrong or throttled PINs for one code that make guessing.",
)
@click.option(
    "--pin-clients",
    default=2,
    show_default=True,
    type=click.IntRange(1, None),
    help="...from at least this many clients.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def audit_anomalies(days, repeat_checks, sessions, distant_hours, cluster, pin_guesses, pin_clients, as_json) -> None:
    """List cloned-label, counterfeit and lifecycle signals (diversion, scans before release or of
    blocked codes) in the scan log, with the scans as evidence.

    Example: verifier audit anomalies --days 7 --json
    """
    from . import anomalies

    since = anomalies.since_days(days, _now())
    thresholds = anomalies.Thresholds(repeat_checks, sessions, distant_hours, cluster, pin_guesses, pin_clients)
    found = anomalies.find(_open_registry(), since, thresholds)
    if as_json:
        click.echo(json.dumps([a.as_dict() for a in found], indent=2, ensure_ascii=False))
        return
    if not found:
        click.echo(f"No anomalies since {since}.")
    for a in found:
        click.echo(
            f"{a.rule:<20} {a.subject:<40} {a.count:>6}  {a.first_at[:19]} .. {a.last_at[:19]}  "
            f"scans {','.join(map(str, a.evidence[:8]))}{'...' if len(a.evidence) > 8 else ''}"
        )
        details = a.details
        if dealer := details.get("dealer"):  # diversion: who it was shipped to, and where it was seen
            seen = ", ".join(f"{p['name']} ({p['severity']})" for p in details["scan_provinces"])
            click.echo(
                f"{'':<20} {a.severity}: dealer {dealer['code']} {dealer['name']}, shipped "
                f"{(details['shipped_at'] or '')[:10]} to {' '.join(details['shipped_regions'])} "
                f"(event {details['event_id']}), seen in {seen}"
            )
        elif details.get("reason"):
            click.echo(f"{'':<20} blocked: {details['reason']}")


# --- accounts -----------------------------------------------------------------------------


@cli.group("users")
def users_group() -> None:
    """Accounts for admins, inspectors and enterprises, and their API tokens.

    Example: verifier users list
    """


def _accounts_call(fn, *args):
    """Run an accounts operation in one write transaction, at the command's `now`."""
    from . import db

    conn = _open_registry(create=True)
    try:
        with db.transaction(conn):
            return fn(conn, *args, _actor(), _now())
    finally:
        conn.close()


@users_group.command("add")
@click.argument("username")
@click.option(
    "--role",
    required=True,
    type=click.Choice(list(accounts.ROLES)),
    help="admin, inspector, enterprise or association.",
)
@click.option("--enterprise", help="The enterprise an `enterprise` account belongs to.")
def users_add(username: str, role: str, enterprise: str | None) -> None:
    """Create an account; the password comes from VERIFIER_USER_PASSWORD or a prompt.

    Example: verifier users add li.wei --role inspector
    """
    from . import accounts, settings

    password = settings.load().user_password
    if password is None:
        if not sys.stdin.isatty():
            raise CliError("no password: set VERIFIER_USER_PASSWORD or run in a terminal")
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)

    def add(conn, username, role, password, actor, now):
        enterprise_id = accounts.enterprise_id(conn, enterprise) if enterprise else None
        return accounts.add_user(conn, username, role, password, enterprise_id, actor, now)

    user = _accounts_call(add, username, role, password)
    click.echo(f"Created {user.role} {user.username}")


@users_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def users_list(as_json: bool) -> None:
    """List accounts with their role, enterprise and active tokens.

    Example: verifier users list --json
    """
    from . import accounts

    conn = _open_registry(create=True)
    try:
        users = accounts.list_users(conn)
    finally:
        conn.close()
    if as_json:
        click.echo(json.dumps(users, indent=2, ensure_ascii=False))
        return
    for u in users:
        state = "disabled" if u["disabled"] else "active"
        click.echo(
            f"{u['username']:<24} {u['role']:<10} {state:<8} {u['enterprise'] or '':<20} tokens {u['active_tokens']}"
        )


@users_group.command("disable")
@click.argument("username")
def users_disable(username: str) -> None:
    """Disable an account: its sessions end and its tokens stop working at once.

    Example: verifier users disable li.wei
    """
    from . import accounts

    _accounts_call(accounts.disable_user, username)
    click.echo(f"Disabled {username}; its sessions and tokens are revoked")


@users_group.command("token")
@click.argument("username")
@click.option("--label", default="", help="What the token is for.")
def users_token(username: str, label: str) -> None:
    """Issue an API token (shown once, stored hashed) for scripts: Authorization: Bearer <token>.

    Example: verifier users token li.wei --label nightly-export
    """
    from . import accounts

    token_id, token = _accounts_call(accounts.issue_token, username, label)
    click.echo(token)
    click.echo(
        f"Token {token_id} for {username}: shown once, keep it secret (revoke: verifier users revoke-token {token_id})",
        err=True,
    )


@users_group.command("revoke-token")
@click.argument("token_id", type=int)
def users_revoke_token(token_id: int) -> None:
    """Revoke an API token by its number.

    Example: verifier users revoke-token 3
    """
    from . import accounts

    _accounts_call(accounts.revoke_token, token_id)
    click.echo(f"Token {token_id} revoked")


@audit_group.command("report-code")
@click.argument("code")
@click.option("--note", default="", help="Where and how it was found.")
def audit_report_code(code: str, note: str) -> None:
    """Mark a code as reported counterfeit (logged); inspectors see it on the code's history.

    Example: verifier audit report-code '3141 5926 5358 97934' --note 'seen at a market stall'
    """
    from . import audit, db, errors

    try:
        serial = audit.serial_of(code)
    except audit.BadFilter as exc:
        raise CliError(exc.message, 2) from None
    conn = _open_registry()  # outside the try: no database is not "never issued"
    try:
        with db.transaction(conn):
            audit.report_code(conn, serial, note, _actor(), _now())
    except errors.NotFound:
        raise CliError(f"code {code} was never issued") from None
    click.echo(f"Code {serial:016d} marked as reported counterfeit")


# --- database -----------------------------------------------------------------------------


@cli.group("db")
def db_group() -> None:
    """Create, migrate, inspect, copy, back up and restore the database.

    The database is VERIFIER_DATABASE_URL (sqlite:///path or postgresql://...), else the SQLite
    file VERIFIER_DB, else instance/verifier.db.

    Example: verifier db backup /var/backups/verifier-$(date +%F).db
    """


def _database_status(conn: Any, location: str) -> dict[str, Any]:
    from . import db, logtree, sequencer

    applied = db.migrations_applied(conn)
    latest = logtree.latest_checkpoint(conn) if "010_transparency_log" in applied else None
    return {
        "database": db.describe(location),
        "engine": db.dialect(conn),
        "migrations": applied,
        "missing": [name for name in db.MIGRATION_NAMES if name not in applied],
        **sequencer.status(conn),
        "tree_size": logtree.size(conn) if "010_transparency_log" in applied else 0,
        "checkpoint": {"size": latest.size, "at": latest.at} if latest else None,
    }


@db_group.command("init")
def db_init() -> None:
    """Create the database's tables (an empty PostgreSQL database, or a new SQLite file).

    Example: VERIFIER_DATABASE_URL=postgresql://verifier@db1/verifier verifier db init
    """
    from . import db

    location = _settings().database
    conn = db.connect(location)
    try:
        applied = len(db.migrations_applied(conn))
        click.echo(f"Ready: {db.describe(location)} ({db.dialect(conn)}, {applied} migrations)")
    finally:
        conn.close()


@db_group.command("migrate")
def db_migrate() -> None:
    """Apply the migrations an existing database lacks (safe while other nodes run).

    Example: verifier db migrate
    """
    from . import db

    location = _settings().database
    conn = db.connect(location, create=False)  # connecting migrates; say what it did
    try:
        click.echo(f"Up to date: {db.describe(location)} has all {len(db.migrations_applied(conn))} migrations")
    finally:
        conn.close()


@db_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def db_status(as_json: bool) -> None:
    """The database's engine, its migrations and what waits for the log sequencer.

    Example: verifier db status --json
    """
    from . import db

    location = _settings().database
    conn = db.connect(location, create=False)
    try:
        status = _database_status(conn, location)
    finally:
        conn.close()
    if as_json:
        click.echo(json.dumps(status, indent=2))
        return
    click.echo(f"{status['database']} ({status['engine']})")
    click.echo(f"  migrations: {len(status['migrations'])} applied, latest {status['migrations'][-1]}")
    pending = status["pending"]
    since = f" (oldest written {status['oldest_pending_at']})" if pending else ""
    click.echo(f"  log entries waiting for the sequencer: {pending:,}{since}")
    checkpoint = status["checkpoint"]
    signed = (
        f"latest checkpoint of {checkpoint['size']:,} signed {checkpoint['at']}"
        if checkpoint
        else "no checkpoint yet (the sequencer signs them with VERIFIER_LOG_KEY_FILE)"
    )
    click.echo(f"  log tree: {status['tree_size']:,} entries; {signed}")
    if status["engine"] == "postgresql":
        leader = status["leader"]
        if leader:
            click.echo(
                f"  sequencer: leading from {leader['client']} (backend {leader['pid']}, since {leader['since']})"
            )
        else:
            click.echo("  sequencer: none leads (start 'verifier serve' or 'verifier sequence'): nothing gets chained")


@db_group.command("copy")
@click.option("--from", "source", required=True, help="The database to copy: a path, sqlite:///path or a URL.")
@click.option("--to", "target", required=True, help="A new, empty database: a path, sqlite:///path or a URL.")
def db_copy(source: str, target: str) -> None:
    """Copy a whole instance's database to another engine: registry, scans, log, checkpoints, accounts.

    Stop the lookup nodes first. The target must be empty; the log must verify on the copy.

    Example: verifier db copy --from sqlite:///instance/verifier.db --to postgresql://verifier@db1/verifier
    """
    from . import db, dbcopy

    def progress(table: str, rows: int) -> None:
        click.echo(f"  {table}: {rows:,} rows", err=True)

    copied = dbcopy.copy(db.location(source), db.location(target), progress)
    click.echo(
        f"Copied {sum(copied.rows.values()):,} rows to {db.describe(target)}: audit log verifies "
        f"({copied.report.entries:,} entries, head {copied.report.head_hash[:16]}...)"
    )


@db_group.command("backup")
@click.argument("target", type=click.Path(dir_okay=False))
def db_backup(target: str) -> None:
    """Write a consistent, checked snapshot of the live database to TARGET (safe while serving).

    Example: verifier db backup /var/backups/verifier-2026-11-22.db
    """
    from . import backup

    report = backup.backup(_settings().database, Path(target))  # PostgreSQL: a SQLite file too
    size = Path(target).stat().st_size
    click.echo(
        f"Backed up to {target} ({size / 1e6:.1f} MB): integrity ok, audit log verifies "
        f"({report.entries:,} entries, head {report.head_hash[:16]}...)"
    )


@db_group.command("restore")
@click.argument("backup_file", type=click.Path(exists=True, dir_okay=False))
def db_restore(backup_file: str) -> None:
    """Replace the database with a checked backup (stop the server first); the old one is kept.

    Example: verifier db restore /var/backups/verifier-2026-11-22.db
    """
    from . import backup

    database = _settings().database
    report, kept = backup.restore(Path(backup_file), database, _now())
    click.echo(f"Restored {backup_file} to {database}: audit log verifies ({report.entries:,} entries)")
    if kept:
        click.echo(f"The previous database is kept as {kept}")


# --- receipts -----------------------------------------------------------------------------


RECEIPT_MAX_BYTES = 1024 * 1024  # a receipt is a few kB; anything this large is not one
RECEIPT_PENDING_EXIT = 3


@cli.group("receipt")
def receipt_group() -> None:
    """Scan receipts: what a consumer keeps of a check, verified offline against the log's key.

    Example: verifier receipt verify receipt-38.json --log-key 'verify.example.cn/log+1a2b3c4d+AQ...'
    """


@receipt_group.command("verify")
@click.argument("receipt_file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--log-key", help="The log's public key (a C2SP vkey); default VERIFIER_LOG_PUBLIC_KEY.")
@click.option("--witness-key", "witness_keys", multiple=True, help="A witness's vkey (repeatable).")
@click.option(
    "--min-cosignatures",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="How many of the --witness-key witnesses must have cosigned the checkpoint.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def receipt_verify(
    receipt_file: str, log_key: str | None, witness_keys: tuple[str, ...], min_cosignatures: int, as_json: bool
) -> None:
    """Check a scan receipt offline: the log key signed its checkpoint, the scan's entry is in it,
    and the summary says what the entry says. Exit 0 proven; 1 tampered or invalid; 2 not a
    receipt (or a bad key or file); 3 pending (not in a signed checkpoint yet: fetch it again).

    Example: verifier receipt verify receipt-38.json --log-key 'verify.example.cn/log+1a2b3c4d+AQ...'
    """
    from . import receipts

    log_vkey = _vkey("--log-key", log_key or _settings().log_public_key)
    witnesses = [_vkey("--witness-key", text) for text in witness_keys]
    if min_cosignatures > len(witnesses):
        raise CliError(
            f"--min-cosignatures {min_cosignatures} asks for more than the {len(witnesses)} --witness-key", 2
        )
    data = read_upto(receipt_file, RECEIPT_MAX_BYTES)
    try:
        if len(data) > RECEIPT_MAX_BYTES:
            raise receipts.InvalidReceipt(receipts.NOT_A_RECEIPT, f"larger than {RECEIPT_MAX_BYTES:,} bytes")
        receipt = receipts.loads(data)
        proven = receipts.verify(receipt, [log_vkey], witnesses, min_cosignatures)
    except receipts.InvalidReceipt as exc:
        exit_code = {receipts.NOT_A_RECEIPT: 2, receipts.RECEIPT_PENDING: RECEIPT_PENDING_EXIT}.get(exc.reason, 1)
        if as_json:
            click.echo(json.dumps({"ok": False, "error": {"code": exc.reason, "message": str(exc)}}, indent=2))
            sys.exit(exit_code)
        if exc.reason == receipts.RECEIPT_PENDING:
            click.echo(f"Receipt pending: scan {receipt.get('scan')} is not in a signed checkpoint yet; fetch it again")
            sys.exit(exit_code)
        what = "not a receipt" if exit_code == 2 else "receipt refused"
        raise CliError(f"{receipt_file}: {what}: {exc}", exit_code) from None
    if as_json:
        click.echo(json.dumps({"ok": True, **proven.as_dict()}, indent=2, ensure_ascii=False))
        return
    click.echo(_proven_line(proven))


def _vkey(option: str, text: str | None):
    """A C2SP vkey given on the command line (or VERIFIER_LOG_PUBLIC_KEY); exit 2 if it is not one."""
    from . import note

    if not text:
        raise CliError(f"give the log's public key with {option} or VERIFIER_LOG_PUBLIC_KEY", 2)
    try:
        return note.parse_vkey(text.strip())
    except note.InvalidNote as exc:
        raise CliError(f"{option} is not a verifier key (name+hex id+base64 key): {exc}", 2) from None


def _proven_line(proven: Any) -> str:
    """One line of what a receipt proves."""
    code = f"code {proven.code}" if proven.code else f"scan {proven.scan_id} (no printed code)"
    check = f"check {proven.check}" if proven.check is not None else "not counted as a check"
    cosigned = f", cosigned by {', '.join(proven.cosigners)}" if proven.cosigners else ""
    return (
        f"Receipt OK: {code}, {check} at {proven.at}, verdict {proven.verdict}, is entry {proven.index + 1} "
        f"of log {proven.origin} (checkpoint of {proven.size:,} entries{cosigned})"
    )


from .cli_events import dealers_group, events_group  # noqa: E402

cli.add_command(events_group)
cli.add_command(dealers_group)

from .cli_cases import cases_group, verify_export  # noqa: E402

audit_group.add_command(cases_group)
audit_group.add_command(verify_export)
from .cli_certificates import certificates_group, enterprises_group  # noqa: E402

cli.add_command(certificates_group)
cli.add_command(enterprises_group)
from .cli_signer import requests_group, signer_command  # noqa: E402

cli.add_command(signer_command)
cli.add_command(requests_group)
