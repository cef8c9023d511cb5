"""The `verifier` command: a thin layer that calls the library and turns its errors into messages."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import sys
from pathlib import Path

import click

from . import codes, config, keys


class CliError(click.ClickException):
    """A failure reported as one line `Error: ...`."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class OneLineErrors(click.Group):
    """A group whose every failure prints one line `Error: ...`, never usage blocks or tracebacks."""

    def main(self, *args, **kwargs):  # type: ignore[override]
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            _fail(exc.format_message(), 2)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            _fail("aborted", 1)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
            if os.environ.get("VERIFIER_DEBUG"):
                raise
            _fail(f"unexpected {type(exc).__name__}: {exc} (set VERIFIER_DEBUG=1 for details)", 1)
        sys.exit(rv if isinstance(rv, int) else 0)


def _fail(message: str, code: int) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def passphrase(confirm: bool = False) -> bytes:
    """The key passphrase from VERIFIER_KEY_PASSPHRASE, or a prompt in a terminal."""
    value = os.environ.get("VERIFIER_KEY_PASSPHRASE")
    if value is None:
        if not sys.stdin.isatty():
            raise CliError("no key passphrase: set VERIFIER_KEY_PASSPHRASE or run in a terminal")
        value = click.prompt("Key passphrase", hide_input=True, confirmation_prompt=confirm)
    return value.encode("utf-8")


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


def _keys_call(fn, *args):
    try:
        return fn(*args)
    except keys.KeyringError as exc:
        raise CliError(str(exc)) from None


@keys_group.command("new")
@click.argument("name")
def keys_new(name: str) -> None:
    """Create an Ed25519 signing key NAME (encrypted with the key passphrase).

    Example: VERIFIER_KEY_PASSPHRASE=... verifier keys new factory-2026
    """
    folder = config.keys_dir()
    record = _keys_call(keys.create_key, folder, name, passphrase(confirm=True), _now())
    click.echo(f"Created key {record.name} (kid {record.kid}) in {folder}")
    click.echo(f"Private key: {folder / (record.name + '.pem')} (mode 0600, keep it off the web server)")


@keys_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def keys_list(as_json: bool) -> None:
    """List the keys of the keyring with their status.

    Example: verifier keys list --json
    """
    records = _keys_call(keys.read_keyring, config.keys_dir())
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in records], indent=2))
        return
    if not records:
        click.echo(f"No keys in {config.keys_dir()} (create one with `verifier keys new NAME`)")
    for r in records:
        click.echo(f"{r.kid}  {r.status:<8} {r.name:<24} created {r.created_at}")


@keys_group.command("export-jwks")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), help="Write to this file instead of stdout.")
@click.option("--public", is_flag=True, help="Leave revoked keys out (what /.well-known/jwks.json serves).")
def keys_export(out: str | None, public: bool) -> None:
    """Export the public keys as a JWKS (RFC 8037) for verifiers and the lookup server.

    Example: verifier keys export-jwks --out keys/jwks.json
    """
    text = json.dumps(keys.jwks(_keys_call(keys.read_keyring, config.keys_dir()), not public), indent=2) + "\n"
    if out:
        Path(out).write_text(text, "utf-8")
        click.echo(f"Wrote {out}", err=True)
    else:
        click.echo(text, nl=False)


def _status_command(status: str):
    @click.argument("kid")
    def command(kid: str) -> None:
        record = _keys_call(keys.set_status, config.keys_dir(), kid, status, _now())
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


# --- sign and verify ----------------------------------------------------------------------


@cli.command("sign")
@click.option("--key", "key_name", required=True, help="Name of the signing key.")
@click.option("--mark", default="anti-counterfeit", show_default=True,
              type=click.Choice([m.slug for m in codes.MARKS]), help="Mark type.")  # fmt: skip
@click.option("--batch", type=int, default=1, show_default=True, help="Batch number (compact form).")
@click.option("--serial", type=int, help="Serial number (default: random).")
@click.option("--gtin", help="GTIN: makes a GS1 Digital Link URL instead of a compact one.")
@click.option("--lot", help="Lot (GS1 form).")
@click.option("--expiry", type=click.DateTime(["%Y-%m-%d"]), help="Expiry date YYYY-MM-DD (GS1 form).")
def sign_command(key_name, mark, batch, serial, gtin, lot, expiry) -> None:
    """Sign one code and print its URL (batches: `verifier batch issue`).

    Example: verifier sign --key dev --mark stable-qualified --batch 7
    """
    record, private = _keys_call(keys.load_private_key, config.keys_dir(), key_name, passphrase())
    serial = secrets.randbelow(codes.SERIAL_LIMIT) if serial is None else serial
    kid = bytes.fromhex(record.kid)
    mark_obj = codes.mark_by_slug(mark)
    try:
        if gtin:
            if not lot or not expiry:
                raise CliError("a GS1 code needs --gtin, --lot and --expiry", 2)
            code = codes.Code(codes.FORM_GS1, kid, mark_obj, serial, gtin=codes.normalize_gtin(gtin),
                              lot=lot, expiry=codes.expiry_text(expiry.date()))  # fmt: skip
        else:
            code = codes.Code(codes.FORM_COMPACT, kid, mark_obj, serial, batch=batch)
        click.echo(codes.encode_url(codes.sign(code, private), config.base_urls()[0]))
    except (codes.InvalidCode, ValueError) as exc:
        raise CliError(str(exc).split(": ", 1)[-1], 2) from None


def _read_image(path: Path) -> list[str]:
    import zxingcpp
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            found = zxingcpp.read_barcodes(img.convert("L"), formats=zxingcpp.BarcodeFormat.QRCode)
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
    try:
        trusted = keys.load_jwks_file(Path(jwks_path)) if jwks_path else keys.trust_from_folder(config.keys_dir())
    except keys.KeyringError as exc:
        raise CliError(str(exc), 2) from None
    texts = _read_image(Path(code)) if _looks_like_file(code) else [code]
    bases = list(base_url) or config.base_urls()
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
        "input": text, "genuine": result.genuine, "reason": result.reason, "detail": result.detail,
        "key_status": result.key_status, "fields": result.code.fields() if result.code else None,
    }  # fmt: skip


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
