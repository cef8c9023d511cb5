"""Consumers' reports from a verdict page ("report this product"), routed to the enterprise and inspectors.

A report is stored minimised: the category, where it was bought and what happened as the consumer
wrote them, the client's coarse region (never an address), the photo re-encoded without metadata
(verifier/photos.py), a contact only when given. The log records the report without the personal
fields (details, where bought, contact): only a salted commitment to them, so `purge_reports` can
erase them later and the log still verifies.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from . import accounts, auditlog, clock, codes, db, errors, lookup, photos
from .repos import feedback as repo
from .repos import lifecycle as lifecycle_repo
from .repos import registry

REPORTED_KIND = "consumer.report"
ANSWERED_KIND = "consumer.report.answered"

WHATS = ("fake", "damaged", "diverted", "other")  # counterfeit, damaged, sold outside its region, other
BOUGHT_AT_MAX = 200
DETAILS_MAX = 2000
CONTACT_MAX = 100
ANSWER_MAX = 2000
PHOTO_MAX_BYTES = 4_000_000
ANSWER_STATUSES = ("answered", "closed")
NO_VERDICT = "none"  # a report that did not come from a verdict page (no valid verdict token)
PAGE_MAX = 500

# The verdicts of a label matched to an issued code: its enterprise gets the report. The others (a
# forged signature, an unknown code, a typing error...) name no enterprise it could be trusted to
# belong to: those go to inspectors only.
ROUTED_TO_ENTERPRISE = frozenset(
    {
        lookup.GENUINE,
        lookup.GENUINE_REPEAT,
        lookup.SUSPICIOUS_REPEAT,
        lookup.PIN_REUSED,
        lookup.PIN_MISMATCH,
        lookup.PIN_THROTTLED,
        lookup.RECALLED,
        lookup.REPORTED,
        lookup.BLOCKED,
        lookup.NOT_RELEASED,
        lookup.EXPIRED,
    }
)
VERDICTS = frozenset({*lookup.REASONS, NO_VERDICT})

# Whether the brand may see the contact is one bit the consumer_reports table has no column for:
_PHONE_RE = re.compile(r"\+?[0-9][0-9 ()-]{4,30}")
_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


class ReportRefused(errors.InvalidInput):
    """A report not accepted; `field` names the form field, `code` is a stable machine reason."""

    def __init__(self, field: str, code: str, message: str):
        super().__init__(message)
        self.field = field
        self.code = code


@dataclass(frozen=True)
class Report:
    """What a consumer reports, checked and cleaned (`check_report`)."""

    serial: int | None
    verdict: str
    what: str
    bought_at: str
    details: str
    contact: str | None
    brand_may_contact: bool
    photo: photos.Photo | None


def clean_text(text: str, *, multiline: bool) -> str:
    """NFC text without control characters (NUL, escapes, bidi overrides; line breaks kept if
    `multiline`), trimmed."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    kept = (
        ch
        for ch in text
        if (ch == "\n" and multiline) or (ch == "\t" and multiline) or unicodedata.category(ch) not in ("Cc", "Cf")
    )
    return "".join(kept).strip()


def check_report(
    *,
    serial: int | None,
    verdict: str,
    what: str,
    bought_at: str,
    details: str,
    contact: str,
    brand_may_contact: bool,
    photo: bytes | None,
) -> Report:
    """The report as it will be stored; ReportRefused names the first field that is wrong."""
    if verdict not in VERDICTS:
        raise ReportRefused("verdict", "bad-verdict", f"unknown verdict {verdict!r}")
    if what not in WHATS:
        raise ReportRefused("what", "what-missing", f"what happened is one of {', '.join(WHATS)}")
    fields = {}
    for name, value, limit, multiline in (
        ("bought_at", bought_at, BOUGHT_AT_MAX, False),
        ("details", details, DETAILS_MAX, True),
        ("contact", contact, CONTACT_MAX, False),
    ):
        cleaned = clean_text(value, multiline=multiline)
        if len(cleaned) > limit:
            raise ReportRefused(name, "too-long", f"{name} is at most {limit} characters, not {len(cleaned)}")
        fields[name] = cleaned
    if fields["contact"] and not (_PHONE_RE.fullmatch(fields["contact"]) or _EMAIL_RE.fullmatch(fields["contact"])):
        raise ReportRefused("contact", "bad-contact", "a contact is a phone number or an email address")
    minimised = None
    if photo:
        try:
            minimised = photos.minimise_photo(photo, max_bytes=PHOTO_MAX_BYTES)
        except photos.PhotoRejected as exc:
            raise ReportRefused("photo", f"photo-{exc.reason}", str(exc)) from None
    return Report(
        serial,
        verdict,
        what,
        fields["bought_at"],
        fields["details"],
        fields["contact"] or None,
        brand_may_contact and bool(fields["contact"]),
        minimised,
    )


def personal_commitment(salt: str, details: str, bought_at: str, contact: str | None) -> str:
    """The log's commitment to a report's personal fields: SHA-256 over the salt and their canonical JSON."""
    personal = auditlog.canonical({"bought_at": bought_at, "contact": contact, "details": details})
    return hashlib.sha256(f"{salt}\n{personal}".encode()).hexdigest()


def recipient(conn: db.Conn, serial: int | None, verdict: str) -> tuple[int, str] | None:
    """(id, name) of the enterprise a report goes to besides inspectors: the code's, for a verdict
    of an issued code; None: inspectors only."""
    if serial is None or verdict not in ROUTED_TO_ENTERPRISE:
        return None
    batch = registry.batch_for_serial(conn, serial)
    return None if batch is None else (int(batch["enterprise_id"]), str(batch["enterprise"]))


def submit_report(conn: db.Conn, report: Report, *, region: str | None, now: dt.datetime) -> int:
    """Store a consumer's report and log it, inside the caller's write transaction; its id."""
    to = recipient(conn, report.serial, report.verdict)
    enterprise_id = to[0] if to else None
    salt = auditlog.new_salt()
    at = clock.utc_text(now)
    photo = report.photo
    row = {
        "at": at,
        "serial": report.serial,
        "enterprise_id": enterprise_id,
        "verdict": report.verdict,
        "what": report.what,
        "details": report.details,
        "bought_at": report.bought_at,
        "region": region,
        "photo": photo.data if photo else None,
        "photo_sha256": photo.sha256 if photo else None,
        "contact": report.contact,
        "brand_may_contact": int(bool(report.contact) and report.brand_may_contact),
        "personal_salt": salt,
    }
    report_id = lifecycle_repo.insert_report(conn, row)
    body = {
        "id": report_id,
        "serial": report.serial,
        "enterprise_id": enterprise_id,
        "verdict": report.verdict,
        "what": report.what,
        "region": region,
        "photo_sha256": row["photo_sha256"],
        "brand_may_contact": row["brand_may_contact"],
    }
    commitment = personal_commitment(salt, report.details, report.bought_at, report.contact)
    auditlog.append(conn, REPORTED_KIND, body, at, actor="", personal_commitment=commitment)
    return report_id


# --- the enterprise's and inspectors' side ------------------------------------------------


def _visible_to(user: accounts.User, enterprise_id: int | None) -> bool:
    return user.sees_everything() or (enterprise_id is not None and enterprise_id == user.enterprise_id)


def _present(row: dict[str, Any], user: accounts.User) -> dict[str, Any]:
    contact, brand_may = row["contact"], bool(row["brand_may_contact"])
    serial = row["serial"]
    return {
        "id": row["id"],
        "at": row["at"],
        "serial": f"{serial:016d}" if serial is not None else None,
        "code": codes.human_code(serial) if serial is not None else None,
        "enterprise_id": row["enterprise_id"],
        "verdict": row["verdict"],
        "what": row["what"],
        "details": row["details"],
        "bought_at": row["bought_at"],
        "region": row["region"],
        "photo_sha256": row["photo_sha256"],
        "has_photo": bool(row["has_photo"]),
        "contact": contact if (user.sees_everything() or brand_may) else None,
        "brand_may_contact": brand_may,
        "status": row["status"],
        "answer": row["answer"],
    }


def list_reports(conn: db.Conn, user: accounts.User, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
    """Reports by id after `after`: an enterprise user's own enterprise's, everyone's for inspectors and admins."""
    if not user.sees_everything() and user.enterprise_id is None:
        return []
    enterprise_id = None if user.sees_everything() else user.enterprise_id
    rows = repo.reports(conn, enterprise_id, after, min(limit, PAGE_MAX))
    return [_present(row, user) for row in rows]


def report_photo(conn: db.Conn, user: accounts.User, report_id: int) -> bytes:
    """A report's photo (JPEG); NotFound when there is none or it is not the user's to see."""
    found = lifecycle_repo.report_photo(conn, report_id)
    if found is None or not _visible_to(user, found[0]):
        raise errors.NotFound(f"no photo of report {report_id}")
    return found[1]


def answer_report(
    conn: db.Conn, user: accounts.User, report_id: int, status: str, answer: str, now: dt.datetime
) -> dict[str, Any]:
    """The enterprise's (or an admin's) answer to a report, logged; the report as the user sees it."""
    if user.role not in ("enterprise", "admin"):
        raise errors.Forbidden("a report is answered by its enterprise or an admin")
    if status not in ANSWER_STATUSES:
        raise errors.InvalidInput(f"status is one of {', '.join(ANSWER_STATUSES)}")
    answer = clean_text(answer, multiline=True)
    if len(answer) > ANSWER_MAX:
        raise errors.InvalidInput(f"an answer is at most {ANSWER_MAX} characters")
    row = repo.report(conn, report_id)
    if row is None or not _visible_to(user, row["enterprise_id"]):
        raise errors.NotFound(f"no report {report_id}")
    lifecycle_repo.answer_report(conn, report_id, status, answer)
    body = {"id": report_id, "status": status, "answer_sha256": hashlib.sha256(answer.encode()).hexdigest()}
    auditlog.append(conn, ANSWERED_KIND, body, clock.utc_text(now), actor=user.username)
    return _present({**row, "status": status, "answer": answer}, user)


def purge_reports(conn: db.Conn, cutoff: str) -> int:
    """Erase the personal fields (details, where bought, contact) and the photo of reports made
    before `cutoff` (UTC text); how many. The log's commitments are salted: they still verify."""
    return repo.erase_personal(conn, cutoff)


# --- what the verdict page and the report form share --------------------------------------


def verdict_token(key: bytes, serial: int | None, verdict: str) -> str:
    """The verdict page's attestation of what it showed for a code, carried by its report link, so
    a report's verdict (and who gets it) is the page's, not what a sender claims."""
    message = f"verifier-report-verdict\x00{'' if serial is None else serial}\x00{verdict}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:20]  # 80 bits: a link, not a secret kept long


def attested_verdict(key: bytes, serial: int | None, verdict: str, token: str) -> str:
    """`verdict` when `token` is the page's for it, else NO_VERDICT."""
    if verdict in lookup.REASONS and hmac.compare_digest(token.encode(), verdict_token(key, serial, verdict).encode()):
        return verdict
    return NO_VERDICT


@dataclass(frozen=True)
class Document:
    """A document attached to a batch (an inspection report): served by its SHA-256."""

    sha256: str
    media_type: str
    name: str
    content: bytes


_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def document(conn: db.Conn, sha256: str) -> Document | None:
    """The attached document of that SHA-256 (lower-case hex), or None (unknown or ill-formed)."""
    if not _SHA256_RE.fullmatch(sha256):
        return None
    found = lifecycle_repo.document(conn, sha256)
    return None if found is None else Document(sha256, *found)
