"""The CLI of each code's life: `verifier events ...` (pack, release, ship, receive, sell, block,
capture an EPCIS document, history) and `verifier dealers ...` (docs/traceability.md).

Codes are given as printed (17 digits), as 16-digit serials or as the label's URL. Every command
runs as the registry's operator (any enterprise's codes) and is logged with the operator's name.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import click

from . import clock, codes, db, errors, events, lifecycle
from .cli_base import CliError, _actor, _now, _open_registry, _settings

_CODES_HELP = "Codes: printed (17 digits), 16-digit serials or label URLs; '-' reads them from stdin, one a line."


def _serials(values: Iterable[str]) -> tuple[int, ...]:
    """The serials of codes given on the command line (or stdin for '-')."""
    from . import audit, epcis

    texts: list[str] = []
    for value in values:
        if value == "-":
            texts += [line.strip() for line in sys.stdin if line.strip()]
        else:
            texts.append(value)
    found: list[int] = []
    base_urls = _settings().base_urls
    for text in texts:
        try:
            if "/" in text or ":" in text:
                found.append(epcis.code_ref(text, base_urls).serial)
            else:
                found.append(audit.serial_of(text))
        except (errors.VerifierError, codes.InvalidCode, ValueError):
            raise CliError(f"not a code: {text[:60]!r} (a printed code, a 16-digit serial or a label URL)", 2) from None
    return tuple(found)


def _capture(steps: Sequence[events.Step]) -> events.Captured:
    conn = _open_registry()
    try:
        with db.transaction(conn):
            return events.capture(conn, steps, enterprise_id=None, actor=_actor(), now=_now())
    except events.EventsRefused as exc:
        _print_refused(exc.errors)
        raise CliError(
            f"nothing was recorded: {len(exc.errors)} problem(s), the first: {exc.errors[0].message}", 2
        ) from None
    finally:
        conn.close()


def _print_refused(found: Sequence[Any]) -> None:
    for e in found[:20]:
        click.echo(f"  event {e.index + 1}{' ' + e.event_id if e.event_id else ''}: {e.code}: {e.message}", err=True)
    if len(found) > 20:
        click.echo(f"  ... and {len(found) - 20} more", err=True)


def _step(biz_step: str, serials: tuple[int, ...] = (), location: str | None = None, **fields: Any) -> events.Step:
    type_, action = _KINDS[biz_step]
    return events.Step(
        type_, action, biz_step, clock.utc_text(_now()), serials, biz_location=_place(location), **fields
    )


def _place(location: str | None) -> str | None:
    if location is None:
        return None
    location = location.strip()
    if not 1 <= len(location) <= 200 or any(c in location for c in "\r\n"):
        raise CliError("--location is 1-200 characters on one line", 2)
    return location


_location = click.option(
    "--location",
    help="Where it happens (the event's bizLocation): a GLN URN such as urn:epc:id:sgln:6901234.00001.0, or a place.",
)


_KINDS = {
    lifecycle.COMMISSIONING: (lifecycle.OBJECT, "ADD"),
    lifecycle.PACKING: (lifecycle.AGGREGATION, "ADD"),
    lifecycle.UNPACKING: (lifecycle.AGGREGATION, "DELETE"),
    lifecycle.SHIPPING: (lifecycle.OBJECT, "OBSERVE"),
    lifecycle.RECEIVING: (lifecycle.OBJECT, "OBSERVE"),
    lifecycle.RETAIL_SELLING: (lifecycle.OBJECT, "OBSERVE"),
    lifecycle.DECOMMISSIONING: (lifecycle.OBJECT, "DELETE"),
}


def _done(captured: events.Captured, what: str) -> None:
    click.echo(f"{what}: {captured.codes:,} code changes in {len(captured.event_ids)} event(s) (logged)")


@click.group("events")
def events_group() -> None:
    """Each code's life after issue: pack, release, ship, receive, sell, block (docs/traceability.md).

    Example: verifier events ship 1234-5678-9012-3456-7 --dealer SC-01
    """


@events_group.command("pack")
@click.option("--case", "case", required=True, help="The case (or pallet) label's code.")
@click.argument("items", nargs=-1, required=True)
@_location
def events_pack(case: str, items: tuple[str, ...], location: str | None) -> None:
    """Pack item labels into a case label (an EPCIS AggregationEvent ADD, packing).

    Example: verifier events pack --case 1111-2222-3333-4444-5 - < items.txt
    """
    (parent,) = _serials([case])
    _done(_capture([_step(lifecycle.PACKING, _serials(items), location, parent=parent)]), "Packed")


@events_group.command("unpack")
@click.option("--case", "case", required=True, help="The case (or pallet) label's code.")
@click.argument("items", nargs=-1)
@_location
def events_unpack(case: str, items: tuple[str, ...], location: str | None) -> None:
    """Unpack items from a case (all of them when none are named).

    Example: verifier events unpack --case 1111-2222-3333-4444-5
    """
    (parent,) = _serials([case])
    _done(_capture([_step(lifecycle.UNPACKING, _serials(items), location, parent=parent)]), "Unpacked")


@events_group.command("release")
@click.option("--batch", "batch_id", type=int, help="Release a whole batch (its activation is 'batch').")
@click.argument("code_list", nargs=-1)
@_location
def events_release(batch_id: int | None, code_list: tuple[str, ...], location: str | None) -> None:
    """Release codes for sale (commissioning): a case releases what is packed in it.

    Example: verifier events release 1111-2222-3333-4444-5
    """
    if (batch_id is None) == (not code_list):
        raise CliError("give either --batch or codes", 2)
    if batch_id is not None:
        conn = _open_registry()
        try:
            with db.transaction(conn):
                events.release_batch(conn, batch_id, enterprise_id=None, actor=_actor(), now=_now())
        finally:
            conn.close()
        click.echo(f"Batch {batch_id} released for sale (logged)")
        return
    _done(_capture([_step(lifecycle.COMMISSIONING, _serials(code_list), location, disposition="active")]), "Released")


@events_group.command("ship")
@click.option("--dealer", required=True, help="The dealer's code (`verifier dealers list`).")
@click.argument("code_list", nargs=-1, required=True)
@_location
def events_ship(dealer: str, code_list: tuple[str, ...], location: str | None) -> None:
    """Ship codes (cases ship what they hold) to a registered dealer and its sales regions.

    Example: verifier events ship 1111-2222-3333-4444-5 --dealer SC-01
    """
    step = _step(lifecycle.SHIPPING, _serials(code_list), location, dealer=f"dealer:{dealer}", disposition="in_transit")
    _done(_capture([step]), "Shipped")


@events_group.command("receive")
@click.argument("code_list", nargs=-1, required=True)
@_location
def events_receive(code_list: tuple[str, ...], location: str | None) -> None:
    """Record that the dealer received shipped codes.

    Example: verifier events receive 1111-2222-3333-4444-5
    """
    _done(_capture([_step(lifecycle.RECEIVING, _serials(code_list), location, disposition="in_progress")]), "Received")


@events_group.command("sell")
@click.argument("code_list", nargs=-1, required=True)
@_location
def events_sell(code_list: tuple[str, ...], location: str | None) -> None:
    """Record a retail sale (a second sale of one code is refused).

    Example: verifier events sell 1234-5678-9012-3456-7
    """
    _done(_capture([_step(lifecycle.RETAIL_SELLING, _serials(code_list), location, disposition="retail_sold")]), "Sold")


@events_group.command("block")
@click.option("--reason", required=True, type=click.Choice(lifecycle.BLOCK_REASONS), help="Why.")
@click.argument("code_list", nargs=-1, required=True)
@_location
def events_block(reason: str, code_list: tuple[str, ...], location: str | None) -> None:
    """Block codes: every channel answers red from now on (counterfeit, stolen, destroyed).

    Example: verifier events block 1234-5678-9012-3456-7 --reason stolen
    """
    conn = _open_registry()
    try:
        with db.transaction(conn):
            captured = events.block(
                conn,
                _serials(code_list),
                reason,
                enterprise_id=None,
                actor=_actor(),
                now=_now(),
                location=_place(location),
            )
    except events.EventsRefused as exc:
        _print_refused(exc.errors)
        raise CliError(f"nothing was blocked: {exc.errors[0].message}", 2) from None
    finally:
        conn.close()
    _done(captured, f"Blocked ({reason})")


@events_group.command("capture")
@click.argument("document", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
def events_capture(document: str) -> None:
    """Capture a GS1 EPCIS 2.0 document (JSON-LD): all its events, or none with every error.

    Example: verifier events capture shipment.jsonld
    """
    from . import capture, epcis

    data = sys.stdin.buffer.read() if document == "-" else Path(document).read_bytes()
    conn = _open_registry()
    try:
        with db.transaction(conn):
            captured = capture.capture_document(
                conn, data, enterprise_id=None, actor=_actor(), now=_now(), base_urls=_settings().base_urls
            )
    except (events.EventsRefused, epcis.DocumentError) as exc:
        _print_refused(exc.errors)
        raise CliError(f"nothing was recorded: {len(exc.errors)} problem(s) in {document}", 2) from None
    finally:
        conn.close()
    _done(captured, "Captured")


@events_group.command("history")
@click.argument("code")
@click.option("--json", "as_json", is_flag=True, help="Print the EPCIS events as JSON.")
def events_history(code: str, as_json: bool) -> None:
    """A code's events, oldest first (through its case too), and its state now.

    Example: verifier events history 1234-5678-9012-3456-7
    """
    from .repos import lifecycle as repo
    from .repos import registry

    (serial,) = _serials([code])
    conn = _open_registry()
    try:
        batch = registry.batch_for_serial(conn, serial)
        if batch is None:
            raise errors.NotFound(f"code {serial:016d} was never issued")
        rows = repo.events(conn, serials=[serial], limit=1000)
    finally:
        conn.close()
    if as_json:
        click.echo(json.dumps([json.loads(r["document"]) for r in rows], indent=2, ensure_ascii=False))
        return
    state = batch["state"] + (f" ({batch['block_reason']})" if batch.get("block_reason") else "")
    click.echo(f"code {codes.human_code(serial)}: {state}, batch {batch['id']} ({batch['unit']})")
    for r in rows:
        extra = " ".join(
            x
            for x in (
                f"case {r['parent']:016d}" if r["parent"] else "",
                f"to regions {r['region']}" if r["region"] else "",
                f"reason {r['reason']}" if r["reason"] else "",
            )
            if x
        )
        click.echo(f"  {r['event_time']}  {r['biz_step']:<16} {r['type']} {r['action']:<7} {extra}".rstrip())


@click.group("dealers")
def dealers_group() -> None:
    """The dealers an enterprise ships to, and their sales regions (GB/T 2260 codes).

    Example: verifier dealers add --enterprise Acme --code SC-01 --name 'Chengdu Tea' --region 510100
    """


@dealers_group.command("add")
@click.option("--enterprise", required=True, help="The enterprise's name.")
@click.option("--code", "code", required=True, help="The enterprise's own dealer number.")
@click.option("--name", required=True, help="The dealer's name.")
@click.option("--region", "regions", multiple=True, required=True, help="A sales region: GB/T 2260 code (repeat).")
@click.option("--gln", help="The dealer's GS1 GLN (13 digits), how EPCIS documents name it.")
def dealers_add(enterprise: str, code: str, name: str, regions: tuple[str, ...], gln: str | None) -> None:
    """Register a dealer and its sales regions.

    Example: verifier dealers add --enterprise Acme --code SC-01 --name 'Chengdu Tea' --region 510100
    """
    from . import regions as gbt2260
    from .repos import registry

    conn = _open_registry()
    try:
        with db.transaction(conn):
            enterprise_id = registry.enterprise_id(conn, enterprise)
            if enterprise_id is None:
                raise errors.NotFound(f"no enterprise named {enterprise!r}")
            dealer_id = events.register_dealer(
                conn, enterprise_id, code, name, list(regions), gln, actor=_actor(), now=_now()
            )
    finally:
        conn.close()
    where = ", ".join(gbt2260.display(r, "en") for r in regions)
    click.echo(f"Dealer {code} registered (id {dealer_id}): {name}, sales regions {where}")


@dealers_group.command("list")
@click.option("--enterprise", help="Only this enterprise's dealers.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def dealers_list(enterprise: str | None, as_json: bool) -> None:
    """List registered dealers.

    Example: verifier dealers list --enterprise Acme
    """
    from .repos import lifecycle as repo
    from .repos import registry

    conn = _open_registry()
    try:
        enterprise_id = None
        if enterprise is not None:
            enterprise_id = registry.enterprise_id(conn, enterprise)
            if enterprise_id is None:
                raise errors.NotFound(f"no enterprise named {enterprise!r}")
        rows = repo.dealers(conn, enterprise_id)
    finally:
        conn.close()
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
    elif not rows:
        click.echo("No dealers yet (register one with `verifier dealers add`).")
    else:
        for r in rows:
            gln = f"  GLN {r['gln']}" if r["gln"] else ""
            click.echo(f"{r['id']:>5}  {r['code']:<12} {r['name']}  regions {r['regions']}{gln}")
