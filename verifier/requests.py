"""Batch requests: an enterprise asks for a batch (from the console), a second person approves it, a
signer process on the machine that holds the keys claims it, issues it and stores its label files
in the database; private keys never reach the web server (docs/signer.md).

A request's life: requested -> approved -> issuing -> done | failed, or cancelled before it is
claimed. Requesting, approving, cancelling, finishing (the files' SHA-256 and the batch) and
failing are log entries; claims and progress are the signer's working state and are not.

Who may act (`Who`): an account (accounts.User), or a terminal operator (a str such as
"cli:alice": the registry's operator, as every `verifier` command runs). An enterprise account
acts on its own enterprise's requests only; an admin on any. The requester never approves their
own request: an admin or another account of the same enterprise does. Inspectors read requests
but never their label files (a copy of a label is a genuine label).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import accounts, auditlog, codes, db, errors, issue, labels
from . import clock as clocks
from .repos import requests as repo

REQUESTED, APPROVED, ISSUING, DONE, FAILED, CANCELLED = (
    "requested",
    "approved",
    "issuing",
    "done",
    "failed",
    "cancelled",
)
STATUSES = (REQUESTED, APPROVED, ISSUING, DONE, FAILED, CANCELLED)

# The parameters a request may carry, with their defaults (None: not given). `base_url` is not the
# requester's to choose: the service records the address the installation issues under.
PARAMS: dict[str, Any] = {
    "mark": None,
    "product": None,
    "spec": "",
    "lot": None,
    "gtin": None,
    "production_date": None,
    "expiry": None,
    "count": None,
    "pin": False,
    "formats": ["csv", "pdf"],
    "label_size": "40x30",
    "unit": "item",
    "activation": "issue",
    "production_place": None,
    "certificate": None,  # the number of the mark certificate it is issued under (certificates.py)
    "note": "",
}
_TEXT: tuple[str, ...] = ("mark", "product", "spec", "lot", "gtin", "production_date", "expiry", "label_size")
_TEXT += ("unit", "activation", "production_place", "certificate", "note")
# Its files are kept in the database (batch_files) and read whole into memory by the signer and the
# console. Measured: 2,000 labels with PINs make a 2.0 MB PDF, a 0.4 MB codes.csv and a 2.3 MB zip of
# both, ~2.4 kB a label in all (docs/signer.md): 50,000 is ~120 MB. Larger runs belong to
# `verifier batch issue` on the signing machine.
MAX_COUNT = 50_000
MAX_ERROR = 2000  # characters of a failure's text kept and logged

Who = accounts.User | str  # an account, or a terminal operator ("cli:alice")


class RequestError(errors.VerifierError):
    """A request operation that cannot be done; the message is for the user."""

    exit_code = 1


class RequestNotFound(RequestError, errors.NotFound):
    """No such request (or not one the asker may see)."""


class RequestConflict(RequestError, errors.Conflict):
    """The request is not in a state that allows it (approved twice, cancelled while issued...)."""


class RequestForbidden(RequestError, errors.Forbidden):
    """The asker may not do this (approve their own request, act for another enterprise)."""


class ClaimLost(RequestConflict):
    """The signer's claim was taken over (it was silent too long) or the request changed under it."""


@dataclass(frozen=True)
class Claim:
    """A signer's hold on one request: who and when (together they name the claim), and the request."""

    request: dict[str, Any]
    claimed_by: str
    claimed_at: str
    taken_over: bool  # another signer had claimed it and fell silent

    @property
    def id(self) -> int:
        return int(self.request["id"])

    @property
    def params(self) -> dict[str, Any]:
        return dict(json.loads(self.request["params"]))


@dataclass(frozen=True)
class File:
    """A label file a signer produced, to keep in the database."""

    name: str
    media_type: str
    content: bytes


# --- parameters -----------------------------------------------------------------------------


def normalize_params(params: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    """Every parameter with its default, types checked, GTIN as 14 digits; InvalidRequest else."""
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise issue.InvalidRequest(f"unknown request parameter(s): {', '.join(unknown)}")
    out = {**PARAMS, **{k: v for k, v in params.items() if v is not None}}
    for name in _TEXT:
        value = out[name]
        if value is not None and not isinstance(value, str):
            raise issue.InvalidRequest(f"{name} must be text")
        if isinstance(value, str):
            out[name] = value.strip()
    for name in ("lot", "gtin", "production_date", "expiry", "production_place", "certificate"):
        out[name] = out[name] or None
    if not out["mark"] or not out["product"]:
        raise issue.InvalidRequest("a request needs a mark and a product")
    if not isinstance(out["count"], int) or isinstance(out["count"], bool):
        raise issue.InvalidRequest("count must be a whole number")
    if out["count"] > MAX_COUNT:
        raise issue.InvalidRequest(
            f"a requested batch has at most {MAX_COUNT:,} codes (larger: `verifier batch issue`)"
        )
    if not isinstance(out["pin"], bool):
        raise issue.InvalidRequest("pin must be true or false")
    formats = out["formats"]
    if isinstance(formats, str):
        formats = [f for f in formats.split(",")]
    if not isinstance(formats, list | tuple) or not all(isinstance(f, str) for f in formats):
        raise issue.InvalidRequest(f"formats is a list of {', '.join(issue.FORMATS)}")
    out["formats"] = list(dict.fromkeys(f.strip().lower() for f in formats if f.strip()))
    if out["gtin"]:
        try:
            out["gtin"] = codes.normalize_gtin(out["gtin"])
        except (codes.InvalidCode, ValueError) as exc:
            raise issue.InvalidRequest(str(exc).split(": ", 1)[-1]) from None
    out["base_url"] = codes.normalize_base_url(base_url)
    return out


def batch_request(
    params: Mapping[str, Any],
    enterprise: str,
    credit_code: str | None,
    out_dir: Path,
    label_font: str | None = None,
    created_by: str = "",
) -> issue.BatchRequest:
    """The issue.BatchRequest of normalized `params` (GS1 Digital Link when a GTIN is given), validated."""
    try:
        mark = codes.mark_by_slug(str(params["mark"]))
        layout = labels.SheetLayout(label_mm=labels.parse_label_size(str(params["label_size"])))
        production_date = _date(params["production_date"], "production_date")
        expiry = _date(params["expiry"], "expiry")
    except (ValueError, KeyError, codes.InvalidCode) as exc:
        raise issue.InvalidRequest(
            str(exc).split(": ", 1)[-1] if isinstance(exc, codes.InvalidCode) else str(exc)
        ) from None
    request = issue.BatchRequest(
        mark=mark,
        enterprise=enterprise,
        product=params["product"],
        count=params["count"],
        out_dir=out_dir,
        base_url=params["base_url"],
        formats=tuple(params["formats"]),
        credit_code=credit_code,
        spec=params["spec"],
        gtin=params["gtin"],
        lot=params["lot"],
        production_date=production_date,
        expiry=expiry,
        form=codes.FORM_GS1 if params["gtin"] else codes.FORM_COMPACT,
        pin=params["pin"],
        layout=layout,
        note=params["note"],
        created_by=created_by,
        label_font=label_font,
        unit=params["unit"],
        activation=params["activation"],
        production_place=params["production_place"],
        certificate=params.get("certificate"),  # requests made before it was a parameter have none
    )
    request.validate()
    return request


def _date(value: object, name: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{name} is a date YYYY-MM-DD") from None


# --- who may do what ---------------------------------------------------------------------------


def _name(who: Who) -> str:
    return who if isinstance(who, str) else who.username


def _acts_for(who: Who, enterprise_id: int) -> bool:
    """Whether `who` may act on requests of the enterprise (operator, admin, or its own account)."""
    if isinstance(who, str):
        return True
    if who.disabled:
        return False
    return who.role == "admin" or (who.role == "enterprise" and who.enterprise_id == enterprise_id)


def _sees(who: Who | None, row: Mapping[str, Any], files: bool = False) -> bool:
    if who is None or _acts_for(who, int(row["enterprise_id"])):
        return True
    return not files and isinstance(who, accounts.User) and who.role == "inspector" and not who.disabled


def _get(conn: db.Conn, request_id: int, who: Who | None, *, lock: bool = False, files: bool = False) -> dict[str, Any]:
    row = repo.get(conn, request_id, lock=lock)
    if row is None or not _sees(who, row, files):
        raise RequestNotFound(f"no batch request {request_id}")
    return row


def _log(conn: db.Conn, kind: str, body: Mapping[str, object], at: str, actor: str) -> None:
    auditlog.append(conn, kind, body, at, actor=actor)


# --- the requester, the approver ------------------------------------------------------------------


def request_batch(
    conn: db.Conn,
    enterprise_id: int,
    user: Who,
    params: Mapping[str, Any],
    now: dt.datetime,
    base_url: str,
    label_font: str | None = None,
) -> dict[str, Any]:
    """Ask for a batch of the enterprise's labels (validated as `batch issue` validates); the request."""
    if not _acts_for(user, enterprise_id):
        raise RequestForbidden("only the enterprise's own accounts or an admin may request its batches")
    normalized = normalize_params(params, base_url)
    at = clocks.utc_text(now)
    with db.transaction(conn):
        name, credit_code = _enterprise(conn, enterprise_id)
        batch_request(normalized, name, credit_code, Path("unused"), label_font)  # refused as `batch issue` would
        text = auditlog.canonical(normalized)
        request_id = repo.insert(conn, enterprise_id, _name(user), text, REQUESTED, at)
        body = {"id": request_id, "enterprise_id": enterprise_id, "requested_by": _name(user), "params": normalized}
        _log(conn, "batch.requested", body, at, _name(user))
    return get(conn, request_id)


def _enterprise(conn: db.Conn, enterprise_id: int) -> tuple[str, str | None]:
    found = repo.enterprise(conn, enterprise_id)
    if found is None:
        raise RequestNotFound(f"no enterprise {enterprise_id}")
    return found


def approve(conn: db.Conn, request_id: int, approver: Who, now: dt.datetime) -> dict[str, Any]:
    """Approve a request for a signer to issue: an admin, or another account of its enterprise."""
    at = clocks.utc_text(now)
    with db.transaction(conn):
        row = _get(conn, request_id, approver, lock=True)
        if not _acts_for(approver, int(row["enterprise_id"])):
            raise RequestForbidden("only an admin or an account of the enterprise may approve its batches")
        if _name(approver) == row["requested_by"]:
            raise RequestForbidden("a request is approved by someone other than its requester")
        if row["status"] != REQUESTED:
            raise RequestConflict(f"batch request {request_id} is {row['status']}, not waiting for approval")
        repo.update(conn, request_id, status=APPROVED, approved_by=_name(approver), approved_at=at)
        _log(conn, "batch.approved", {"id": request_id, "approved_by": _name(approver)}, at, _name(approver))
    return get(conn, request_id)


def cancel(conn: db.Conn, request_id: int, who: Who, now: dt.datetime) -> dict[str, Any]:
    """Cancel a request no signer has claimed yet."""
    at = clocks.utc_text(now)
    with db.transaction(conn):
        row = _get(conn, request_id, who, lock=True)
        if not _acts_for(who, int(row["enterprise_id"])):
            raise RequestForbidden("only an admin or an account of the enterprise may cancel its requests")
        if row["status"] not in (REQUESTED, APPROVED):
            raise RequestConflict(
                f"batch request {request_id} is {row['status']}: only one not yet issued is cancelled"
            )
        repo.update(conn, request_id, status=CANCELLED, cancelled_by=_name(who), finished_at=at)
        _log(conn, "batch.cancelled", {"id": request_id, "cancelled_by": _name(who)}, at, _name(who))
    return get(conn, request_id)


# --- the signer -------------------------------------------------------------------------------------


def claim_next(conn: db.Conn, signer_name: str, now: dt.datetime, stale_after: dt.timedelta) -> Claim | None:
    """Claim the oldest approved request, or one whose signer has been silent for `stale_after`
    (it died): one signer per request, whatever number run (PostgreSQL: FOR UPDATE SKIP LOCKED;
    SQLite: the writer lock). None when there is nothing to do."""
    at = clocks.utc_text(now)
    with db.transaction(conn):
        request_id = repo.next_claimable(conn, clocks.utc_text(now - stale_after))
        if request_id is None:
            return None
        row = repo.get(conn, request_id)
        assert row is not None
        taken_over = row["status"] == ISSUING
        repo.update(conn, request_id, status=ISSUING, claimed_by=signer_name, claimed_at=at, progress=0, progress_at=at)
    row = repo.get(conn, request_id)
    assert row is not None
    return Claim(row, signer_name, at, taken_over)


def report_progress(conn: db.Conn, claim: Claim, done: int, now: dt.datetime) -> None:
    """Record how many codes are done; ClaimLost if another signer took the request over."""
    with db.transaction(conn):
        held = repo.report_progress(conn, claim.id, claim.claimed_by, claim.claimed_at, done, clocks.utc_text(now))
    if not held:
        raise ClaimLost(f"batch request {claim.id} is no longer this signer's")


def _held(conn: db.Conn, claim: Claim) -> dict[str, Any]:
    row = repo.get(conn, claim.id, lock=True)
    if row is None or (row["status"], row["claimed_by"], row["claimed_at"]) != (
        ISSUING,
        claim.claimed_by,
        claim.claimed_at,
    ):
        raise ClaimLost(f"batch request {claim.id} is no longer this signer's")
    return row


def release(conn: db.Conn, claim: Claim) -> None:
    """Give a claimed request back (the signer stopped before issuing it): approved again, for the
    next signer. Nothing of it was registered (issue_batch is all or nothing)."""
    with db.transaction(conn):
        _held(conn, claim)
        repo.update(conn, claim.id, status=APPROVED, claimed_by=None, claimed_at=None, progress=0, progress_at=None)


def finish(conn: db.Conn, claim: Claim, batch_id: int, files: Sequence[File], now: dt.datetime) -> dict[str, Any]:
    """Store the label files of the issued batch and link it: the request is done (and logged, with
    every file's SHA-256 and size, so an edited or swapped file is caught by `audit verify`)."""
    at = clocks.utc_text(now)
    with db.transaction(conn):
        _held(conn, claim)
        listed: dict[str, dict[str, object]] = {}
        for f in files:
            digest = hashlib.sha256(f.content).hexdigest()
            repo.insert_file(conn, claim.id, f.name, f.media_type, f.content, digest)
            listed[f.name] = {"sha256": digest, "size": len(f.content), "media_type": f.media_type}
        count = int(claim.params["count"])
        repo.update(conn, claim.id, status=DONE, batch_id=batch_id, progress=count, progress_at=at, finished_at=at)
        body = {"id": claim.id, "batch": batch_id, "files": listed}
        _log(conn, "batch.request.done", body, at, claim.claimed_by)
    return get(conn, claim.id)


def fail(conn: db.Conn, claim: Claim, error: str, now: dt.datetime) -> dict[str, Any]:
    """The request could not be issued (nothing of it was registered): failed, with why."""
    at = clocks.utc_text(now)
    error = (error.strip() or "failed")[:MAX_ERROR]
    with db.transaction(conn):
        _held(conn, claim)
        repo.update(conn, claim.id, status=FAILED, error=error, finished_at=at)
        _log(conn, "batch.request.failed", {"id": claim.id, "error": error}, at, claim.claimed_by)
    return get(conn, claim.id)


# --- reading ---------------------------------------------------------------------------------------


def list_requests(
    conn: db.Conn,
    who: Who | None = None,
    statuses: Sequence[str] = (),
    before: int | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Requests newest first: an enterprise account's own enterprise's, anyone else's all (None: the
    operator); of `statuses` (all if empty), with ids below `before` (keyset pages)."""
    unknown = set(statuses) - set(STATUSES)
    if unknown:
        raise issue.InvalidRequest(f"a status is one of {', '.join(STATUSES)}")
    enterprise_id = None
    if isinstance(who, accounts.User) and who.role == "enterprise":
        if who.enterprise_id is None or who.disabled:
            return []
        enterprise_id = who.enterprise_id
    elif isinstance(who, accounts.User) and (who.disabled or who.role not in ("admin", "inspector")):
        return []
    return [_present(r) for r in repo.listing(conn, enterprise_id, tuple(statuses), before, max(1, min(limit, 500)))]


def get(conn: db.Conn, request_id: int, who: Who | None = None) -> dict[str, Any]:
    """One request, its parameters decoded; RequestNotFound unless `who` may see it (None: the operator)."""
    return _present(_get(conn, request_id, who))


def _present(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "params": json.loads(row["params"])}


def files(conn: db.Conn, request_id: int, who: Who | None = None) -> list[dict[str, Any]]:
    """The request's label files (name, media type, size, SHA-256), for `who` (None: the operator)."""
    _get(conn, request_id, who, files=True)
    return repo.files(conn, request_id)


def file(conn: db.Conn, request_id: int, name: str, who: Who | None = None) -> bytes:
    """One label file's bytes; RequestNotFound if there is no such file for `who`."""
    _get(conn, request_id, who, files=True)
    content = repo.file_content(conn, request_id, name)
    if content is None:
        raise RequestNotFound(f"batch request {request_id} has no file {name!r}")
    return content
