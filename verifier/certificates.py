"""The issuing association's mark certificates, and enterprises' quality commitments.

An association (e.g. a quality inspection association granting the 全国质检稳定合格产品 mark)
grants an enterprise the right to use a mark on named products (or all of its products) from one
date until another (China time, both days included): a certificate with a number. It may suspend
it, reinstate it, or revoke it for good. Once any certificate exists for a mark, every new batch
of that mark must be issued under a valid certificate of its enterprise covering its product
(`check_issuance`); while none exists, issuance of the mark is as before. A code whose batch's
certificate is suspended, revoked or past its date answers "mark-suspended" (verifier/lookup.py).

Every grant and status change, and every published commitment, is a log entry that
`audit verify` replays (verifier/replay_certificates.py). docs/certificates.md is the guide.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import auditlog, clock, codes, db, errors
from .repos import certificates as repo
from .repos import registry

VALID = "valid"
SUSPENDED = "suspended"
REVOKED = "revoked"
EXPIRED = "expired"  # not stored: a valid certificate past its valid_until, as a lookup sees it
STATUSES = (VALID, SUSPENDED, REVOKED)

GRANTED = "certificate.granted"
KIND_OF = {SUSPENDED: "certificate.suspended", VALID: "certificate.reinstated", REVOKED: "certificate.revoked"}
COMMITMENT = "enterprise.commitment"

DEFAULT_ASSOCIATION = "全国质检稳定合格产品工作委员会"
COMMITMENT_MAX = 2000
_NUMBER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./-]{0,63}")
_URL_RE = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~!$&'()*+,;=:@%/?#-]*)?")


class CertificateError(errors.VerifierError):
    """A certificate that cannot be granted, changed or used as asked; the message says why."""

    exit_code = 1


class InvalidCertificate(CertificateError, errors.InvalidInput):
    """A certificate request that is not one: a bad number, dates, product... (CLI exit status 2)."""

    exit_code = 2


class CertificateConflict(CertificateError, errors.Conflict):
    """Contradicts a certificate's state: a number taken, a revoked certificate reinstated..."""


class NoCertificate(CertificateError, errors.NotFound):
    """No certificate has that number."""


@dataclass(frozen=True)
class Grant:
    """What an association grants: `products` are product ids of the enterprise (None: all of them)."""

    number: str
    enterprise: str
    mark: codes.Mark
    valid_until: dt.date
    valid_from: dt.date | None = None  # None: the day of the grant (China time)
    products: tuple[int, ...] | None = None
    association: str = DEFAULT_ASSOCIATION


def china_today(now: dt.datetime) -> dt.date:
    """The date in China at `now`: what certificates' dates are compared with."""
    return now.astimezone(clock.CHINA).date()


def standing(status: str | None, valid_until: str | None, today: dt.date) -> str | None:
    """A certificate as a lookup sees it on `today`: valid, suspended, revoked or expired (None: no
    certificate). Pure: the lookup calls it with the batch's joined certificate columns."""
    if status is None:
        return None
    if status == VALID and valid_until is not None and dt.date.fromisoformat(valid_until) < today:
        return EXPIRED
    return status


def check_number(number: str) -> str:
    """A certificate number as stored: 1-64 letters, digits and - _ . / (e.g. ZJWD-2026-0001)."""
    number = number.strip()
    if not _NUMBER_RE.fullmatch(number):
        raise InvalidCertificate("a certificate number is 1-64 letters, digits and - _ . / (e.g. ZJWD-2026-0001)")
    return number


def resolve_products(conn: db.Conn, enterprise_id: int, names: Sequence[str], now: dt.datetime) -> tuple[int, ...]:
    """Product ids from the CLI's --product values: an id of the enterprise's, `NAME` (every spec
    of that name it has, or a new product with no spec) or `NAME:SPEC` (created on first use, as
    issuance does)."""
    found: set[int] = set()
    for text in names:
        text = text.strip()
        if text.isdigit():
            if repo.product_owner(conn, int(text)) != enterprise_id:
                raise InvalidCertificate(f"product {text} is not one of this enterprise's products")
            found.add(int(text))
            continue
        name, _, spec = text.partition(":")
        if not spec and (named := repo.products_named(conn, enterprise_id, name.strip())):
            found.update(named)
            continue
        try:
            found.add(registry.ensure_product(conn, enterprise_id, name, spec.strip(), None, now))
        except db.StoreError as exc:
            raise InvalidCertificate(exc.message) from None
    return tuple(sorted(found))


def products_of(conn: db.Conn, enterprise: str, names: Sequence[str], now: dt.datetime) -> tuple[int, ...]:
    """resolve_products for an enterprise by name (registered here if it is new, as a grant does)."""
    enterprise_id = registry.ensure_enterprise(conn, enterprise, None, now)
    return resolve_products(conn, enterprise_id, names, now)


def grant(conn: db.Conn, request: Grant, *, actor: str, now: dt.datetime) -> dict[str, Any]:
    """Grant a certificate (logged as certificate.granted); the certificate as stored."""
    number = check_number(request.number)
    association = request.association.strip()
    if not 1 <= len(association) <= 200:
        raise InvalidCertificate("an association's name is 1-200 characters")
    valid_from = request.valid_from or china_today(now)
    if request.valid_until < valid_from:
        raise InvalidCertificate(f"the certificate would end ({request.valid_until}) before it begins ({valid_from})")
    enterprise_id = registry.enterprise_id(conn, request.enterprise.strip())
    if enterprise_id is None:
        enterprise_id = registry.ensure_enterprise(conn, request.enterprise, None, now)
    products = request.products
    if products is not None:
        if not products:
            raise InvalidCertificate("a certificate covers at least one product (or all of them: name none)")
        for product_id in products:
            if repo.product_owner(conn, product_id) != enterprise_id:
                raise InvalidCertificate(f"product {product_id} is not one of {request.enterprise}'s products")
        products = tuple(sorted(set(products)))
    if repo.certificate_by_number(conn, number) is not None:
        raise CertificateConflict(f"certificate {number} exists already")
    at = clock.utc_text(now)
    row = {
        "number": number,
        "association": association,
        "enterprise_id": enterprise_id,
        "mark": request.mark.slug,
        "products": None if products is None else " ".join(map(str, products)),
        "valid_from": valid_from.isoformat(),
        "valid_until": request.valid_until.isoformat(),
        "status": VALID,
        "reason": None,
        "granted_at": at,
        "granted_by": actor,
    }
    try:
        certificate_id = repo.insert_certificate(conn, row)
    except db.IntegrityError:
        raise CertificateConflict(f"certificate {number} exists already") from None
    body = {
        "id": certificate_id,
        **{k: row[k] for k in ("number", "association", "enterprise_id", "mark", "valid_from", "valid_until")},
        "enterprise": request.enterprise.strip(),
        "products": None if products is None else list(products),
    }
    auditlog.append(conn, GRANTED, body, at, actor)
    found = repo.certificate_by_number(conn, number)
    assert found is not None
    return found


def change_status(
    conn: db.Conn, number: str, status: str, reason: str | None, *, actor: str, now: dt.datetime
) -> dict[str, Any]:
    """Suspend (`suspended`), reinstate (`valid`) or revoke (`revoked`) a certificate, logged;
    the certificate as stored. A revoked certificate stays revoked."""
    if status not in STATUSES:
        raise InvalidCertificate(f"a certificate's status is one of {', '.join(STATUSES)}")
    reason = reason.strip() if reason else None
    if status != VALID and not (reason and len(reason) <= 500):
        raise InvalidCertificate(f"a certificate is {status} for a reason: --reason, 1-500 characters")
    certificate = repo.certificate_by_number(conn, number.strip(), lock=True)
    if certificate is None:
        raise NoCertificate(f"no certificate {number.strip()} (see `verifier certificates list`)")
    current = certificate["status"]
    if current == REVOKED:
        raise CertificateConflict(f"certificate {certificate['number']} is revoked: it cannot be changed")
    if current == status:
        raise CertificateConflict(f"certificate {certificate['number']} is {status} already")
    if status == VALID:
        reason = None
    at = clock.utc_text(now)
    repo.set_status(conn, int(certificate["id"]), status, reason, at, actor)
    body = {"id": certificate["id"], "number": certificate["number"], "status": status, "reason": reason}
    auditlog.append(conn, KIND_OF[status], body, at, actor)
    found = repo.certificate_by_number(conn, certificate["number"])
    assert found is not None
    return found


def list_all(conn: db.Conn, enterprise_id: int | None = None) -> list[dict[str, Any]]:
    """Every certificate (of one enterprise), with its products' names (`product_names`)."""
    rows = repo.list_certificates(conn, enterprise_id)
    ids = sorted({int(p) for r in rows if r["products"] for p in r["products"].split()})
    names = repo.product_names(conn, ids)
    for r in rows:
        r["product_ids"] = [int(p) for p in r["products"].split()] if r["products"] else None
        r["product_names"] = [names.get(p, str(p)) for p in r["product_ids"]] if r["product_ids"] else None
    return rows


def affected(conn: db.Conn, number: str) -> tuple[int, int]:
    """How many batches and labels are issued under the certificate `number`: what a change of its
    status changes on the consumer's page (NoCertificate if there is none)."""
    certificate = repo.certificate_by_number(conn, number.strip())
    if certificate is None:
        raise NoCertificate(f"no certificate {number.strip()} (see `verifier certificates list`)")
    return repo.batches_under(conn, int(certificate["id"]))


def check_issuance(
    conn: db.Conn, mark: codes.Mark, enterprise_id: int, product_id: int, number: str | None, now: dt.datetime
) -> int | None:
    """The id of the certificate a new batch is issued under, or None when its mark uses no
    certificates and none was named; CertificateError naming what is wrong otherwise."""
    if number is None or not number.strip():
        if repo.mark_has_certificates(conn, mark.slug):
            raise CertificateError(
                f"mark {mark.slug} is granted by certificate: name the enterprise's certificate covering "
                "this product (--certificate NUMBER; see `verifier certificates list`)"
            )
        return None
    number = number.strip()
    certificate = repo.certificate_by_number(conn, number)
    if certificate is None:
        raise CertificateError(f"no certificate {number} (see `verifier certificates list`)")
    if int(certificate["enterprise_id"]) != enterprise_id:
        raise CertificateError(f"certificate {number} was granted to {certificate['enterprise']}, not this enterprise")
    if certificate["mark"] != mark.slug:
        raise CertificateError(f"certificate {number} grants mark {certificate['mark']}, not {mark.slug}")
    if certificate["products"] and str(product_id) not in certificate["products"].split():
        raise CertificateError(f"certificate {number} does not cover this product")
    if certificate["status"] != VALID:
        why = f" ({certificate['reason']})" if certificate["reason"] else ""
        raise CertificateError(f"certificate {number} is {certificate['status']}{why}: no codes can be issued under it")
    today = china_today(now)
    if not certificate["valid_from"] <= today.isoformat() <= certificate["valid_until"]:
        raise CertificateError(
            f"certificate {number} is valid from {certificate['valid_from']} until {certificate['valid_until']}, "
            f"not on {today.isoformat()} (China time)"
        )
    return int(certificate["id"])


def publish_commitment(
    conn: db.Conn, enterprise: str, text: str, url: str | None, *, actor: str, now: dt.datetime
) -> int:
    """Publish (or, with an empty text, withdraw) an enterprise's quality commitment (质量诚信承诺),
    shown on its genuine codes' pages; logged as enterprise.commitment. The enterprise's id."""
    enterprise_id = registry.enterprise_id(conn, enterprise.strip())
    if enterprise_id is None:
        raise errors.NotFound(f"no enterprise {enterprise.strip()!r} (it is registered with its first batch)")
    text = text.strip().replace("\r\n", "\n")
    if len(text) > COMMITMENT_MAX:
        raise errors.InvalidInput(f"a quality commitment is at most {COMMITMENT_MAX:,} characters")
    url = url.strip() if url else None
    if url and not (len(url) <= 500 and _URL_RE.fullmatch(url)):
        raise errors.InvalidInput("the commitment's URL is an http(s) address of at most 500 characters")
    if not text and url:
        raise errors.InvalidInput("a commitment's URL goes with its text")
    stored_text = text or None
    repo.set_commitment(conn, enterprise_id, stored_text, url)
    body = {"enterprise_id": enterprise_id, "enterprise": enterprise.strip(), "text": stored_text, "url": url}
    auditlog.append(conn, COMMITMENT, body, clock.utc_text(now), actor)
    return enterprise_id
