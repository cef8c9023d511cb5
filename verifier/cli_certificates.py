"""The CLI of the issuing association's mark certificates (`verifier certificates ...`) and of
enterprises' quality commitments (`verifier enterprises commitment`), docs/certificates.md.

Every command runs as the registry's operator and is logged with the operator's name.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from . import certificates, codes, db
from .cli_base import CliError, _actor, _now, _open_registry

T = TypeVar("T")


def _write(work: Callable[[db.Conn], T]) -> T:
    conn = _open_registry()
    try:
        with db.transaction(conn):
            return work(conn)
    finally:
        conn.close()


def _mark(slug: str) -> codes.Mark:
    try:
        return codes.mark_by_slug(slug)
    except (ValueError, KeyError, codes.InvalidCode):
        raise CliError(f"--mark is one of {', '.join(m.slug for m in codes.MARKS)}", 2) from None


def _line(c: dict[str, Any]) -> str:
    status = c["status"] + (f" ({c['reason']})" if c["reason"] else "")
    products = "all products" if not c["products"] else "products " + ", ".join(c["product_names"])
    return (
        f"{c['number']}  {c['enterprise']}  {c['mark']}  {c['valid_from']} .. {c['valid_until']}  {status}  "
        f"{products}  (granted by {c['association']})"
    )


@click.group("certificates")
def certificates_group() -> None:
    """The issuing association's mark certificates: grant, list, suspend, reinstate, revoke.

    Example: verifier certificates suspend ZJWD-2026-0001 --reason "failed the spot check"
    """


@certificates_group.command("grant")
@click.option("--enterprise", required=True, help="The enterprise granted the mark (created on first use).")
@click.option("--mark", required=True, help=f"The mark: {', '.join(m.slug for m in codes.MARKS)}.")
@click.option("--number", required=True, help="The certificate's number, e.g. ZJWD-2026-0001.")
@click.option(
    "--until",
    "until",
    required=True,
    type=click.DateTime(["%Y-%m-%d"]),
    help="Last valid day, YYYY-MM-DD (China time).",
)
@click.option(
    "--from", "since", type=click.DateTime(["%Y-%m-%d"]), help="First valid day (default: today, China time)."
)
@click.option(
    "--product",
    "products",
    multiple=True,
    help="A product it covers: its id, NAME (every spec of it) or NAME:SPEC; repeat it. None: all products.",
)
@click.option("--association", default=certificates.DEFAULT_ASSOCIATION, show_default=True, help="Who grants it.")
def certificates_grant(
    enterprise: str,
    mark: str,
    number: str,
    until: dt.datetime,
    since: dt.datetime | None,
    products: tuple[str, ...],
    association: str,
) -> None:
    """Grant an enterprise a mark on its products until a date (logged).

    Example: verifier certificates grant --enterprise E --mark stable-qualified --number N-1 --until 2027-12-31
    """
    mark_obj = _mark(mark)
    now = _now()

    def work(conn: db.Conn) -> dict[str, Any]:
        product_ids = None
        if products:
            from .repos import registry

            enterprise_id = registry.ensure_enterprise(conn, enterprise, None, now)
            product_ids = certificates.resolve_products(conn, enterprise_id, products, now)
        grant = certificates.Grant(
            number=number,
            enterprise=enterprise,
            mark=mark_obj,
            valid_until=until.date(),
            valid_from=since.date() if since else None,
            products=product_ids,
            association=association,
        )
        return certificates.grant(conn, grant, actor=_actor(), now=now)

    found = _write(work)
    click.echo(
        f"Granted certificate {found['number']}: {found['mark']} to {found['enterprise']} "
        f"until {found['valid_until']} (logged)"
    )


@certificates_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON, one object per certificate.")
def certificates_list(as_json: bool) -> None:
    """Every certificate with its status.

    Example: verifier certificates list --json
    """
    conn = _open_registry()
    try:
        rows = certificates.list_all(conn)
    finally:
        conn.close()
    if as_json:
        keys = (
            "number",
            "association",
            "enterprise",
            "mark",
            "product_ids",
            "product_names",
            "valid_from",
            "valid_until",
            "status",
            "reason",
            "granted_at",
            "granted_by",
            "changed_at",
            "changed_by",
        )
        click.echo(json.dumps([{k: r[k] for k in keys} for r in rows], ensure_ascii=False, indent=1))
        return
    if not rows:
        click.echo("No certificates.")
    for r in rows:
        click.echo(_line(r))


def _change(number: str, status: str, reason: str | None) -> dict[str, Any]:
    now = _now()
    return _write(lambda conn: certificates.change_status(conn, number, status, reason, actor=_actor(), now=now))


@certificates_group.command("suspend")
@click.argument("number")
@click.option("--reason", required=True, help="Why (shown to inspectors, not to consumers).")
def certificates_suspend(number: str, reason: str) -> None:
    """Suspend a certificate: its codes answer "mark suspended" until it is reinstated.

    Example: verifier certificates suspend ZJWD-2026-0001 --reason "failed the 2026 spot check"
    """
    found = _change(number, certificates.SUSPENDED, reason)
    click.echo(f"Suspended certificate {found['number']} (logged): its codes now answer mark-suspended")


@certificates_group.command("reinstate")
@click.argument("number")
def certificates_reinstate(number: str) -> None:
    """Reinstate a suspended certificate.

    Example: verifier certificates reinstate ZJWD-2026-0001
    """
    found = _change(number, certificates.VALID, None)
    click.echo(f"Reinstated certificate {found['number']} (logged)")


@certificates_group.command("revoke")
@click.argument("number")
@click.option("--reason", required=True, help="Why.")
def certificates_revoke(number: str, reason: str) -> None:
    """Revoke a certificate for good: its codes answer "mark suspended" from now on.

    Example: verifier certificates revoke ZJWD-2026-0001 --reason "the enterprise left the scheme"
    """
    found = _change(number, certificates.REVOKED, reason)
    click.echo(f"Revoked certificate {found['number']} (logged): its codes now answer mark-suspended")


@click.group("enterprises")
def enterprises_group() -> None:
    """Enterprises' published facts: their quality commitment.

    Example: verifier enterprises commitment --enterprise 华茶集团 --text "我们承诺……"
    """


@enterprises_group.command("commitment")
@click.option("--enterprise", required=True, help="The enterprise (registered with its first batch).")
@click.option("--text", required=True, help="The commitment (质量诚信承诺), at most 2,000 characters; '' withdraws it.")
@click.option("--url", help="Where the full commitment is published (http or https).")
def enterprises_commitment(enterprise: str, text: str, url: str | None) -> None:
    """Publish an enterprise's quality commitment, shown on its genuine codes' pages (logged).

    Example: verifier enterprises commitment --enterprise 华茶集团 --text "我们承诺……" --url https://example.cn/commitment
    """
    now = _now()
    _write(lambda conn: certificates.publish_commitment(conn, enterprise, text, url, actor=_actor(), now=now))
    click.echo(f"{'Published' if text.strip() else 'Withdrew'} the quality commitment of {enterprise.strip()} (logged)")
