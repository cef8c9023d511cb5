"""Consumer lookups: the verdict for a scanned or typed code, and the durable record of the scan.

A lookup has a pure part (decode and verify the signature, outside any lock) and a recording
part that runs inside the caller's write transaction: registry checks, the check count, the
PIN state and the scan row. The web page, the API and the scan log share these reason codes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import auditlog, certificates, clock, codes, db, lifecycle, pins, regions
from .clients import Client
from .repos import registry
from .repos import scans as scans_repo

# Verdict reasons: stable machine codes.
GENUINE = "genuine"  # first check of an issued code
GENUINE_REPEAT = "genuine-repeat"  # checked before, within the repeat threshold
SUSPICIOUS_REPEAT = "suspicious-repeat"  # checked more often than a genuine label would be
PIN_REUSED = "pin-reused"  # the PIN was verified before
RECALLED = "recalled"
REPORTED = "reported-counterfeit"  # an inspector reported this code as used on counterfeits
BLOCKED = "blocked"  # the enterprise blocked the code: counterfeit, stolen or destroyed (detail says which)
NOT_RELEASED = "not-released"  # a genuine code not yet released for sale: goods off the packing line
EXPIRED = "expired"
MARK_SUSPENDED = (
    "mark-suspended"  # the batch's mark certificate is suspended, revoked or past its date (detail: its number)
)
MISTYPED = "mistyped"  # a typed code with a wrong check digit or length (detail says which)
PIN_MISMATCH = "pin-mismatch"
PIN_THROTTLED = "pin-throttled"  # too many wrong PINs for this code lately: the PIN was not checked
UNKNOWN_BATCH = "unknown-batch"  # validly signed, but not a registered code of that batch
UNKNOWN_CODE = "unknown-code"  # a typed code that was never issued
KEY_REVOKED = codes.KEY_REVOKED
BAD_SIGNATURE = codes.BAD_SIGNATURE
UNKNOWN_KEY = codes.UNKNOWN_KEY
MALFORMED = codes.MALFORMED

TONE = {  # how a page presents each verdict: ok (green), warn (amber), stop (dark red: a recall), bad (red)
    GENUINE: "ok",
    GENUINE_REPEAT: "ok",
    RECALLED: "stop",
    NOT_RELEASED: "warn",
    MARK_SUSPENDED: "warn",
    SUSPICIOUS_REPEAT: "warn",
    PIN_REUSED: "warn",
    PIN_THROTTLED: "warn",
    EXPIRED: "warn",
    MISTYPED: "warn",
    PIN_MISMATCH: "bad",
    REPORTED: "bad",
    BLOCKED: "bad",
    UNKNOWN_BATCH: "bad",
    UNKNOWN_CODE: "bad",
    KEY_REVOKED: "bad",
    BAD_SIGNATURE: "bad",
    UNKNOWN_KEY: "bad",
    MALFORMED: "bad",
}
REASONS = tuple(TONE)
CHANNELS = ("qr", "manual", "api")
SESSIONS_KEPT = 32  # browser sessions remembered per code for "a repeat view counts once"


@dataclass
class Verdict:
    """What a consumer is told, and what the scan log records."""

    reason: str
    detail: str | None = None
    serial: int | None = None
    checks: int | None = None
    first_checked_at: dt.datetime | None = None
    batch: dict[str, Any] | None = (
        None  # enterprise (credit code), product (spec, GTIN), mark, lot, dates, recall, has PIN
    )
    pin: str | None = None  # first | reused | mismatch | throttled
    pin_verified_at: dt.datetime | None = None
    kid: str | None = None
    scan_id: int | None = None  # the scan recorded (its receipt's capability); None while the engine gives it later

    @property
    def tone(self) -> str:
        return TONE[self.reason]

    @property
    def genuine(self) -> bool:
        return self.reason in (GENUINE, GENUINE_REPEAT)

    @property
    def human_code(self) -> str | None:
        return codes.human_code(self.serial) if self.serial is not None else None

    def public(self) -> dict[str, object]:
        """The JSON the API answers: nothing about other scanners, nothing internal."""
        batch = self.batch or {}
        return {
            "reason": self.reason,
            "detail": self.detail,
            "genuine": self.genuine,
            "tone": self.tone,
            "checks": self.checks,
            "first_checked_at": _iso(self.first_checked_at),
            "code": self.human_code,
            "pin": self.pin,
            "pin_verified_at": _iso(self.pin_verified_at),
            "product": {
                k: batch.get(k)
                for k in (
                    "enterprise",
                    "credit_code",
                    "product",
                    "spec",
                    "mark",
                    "lot",
                    "gtin",
                    "production_date",
                    "expiry_date",
                    "recalled_at",
                    "recall_reason",
                )
            }
            | {
                "certificate": {
                    "number": batch["certificate"],
                    "valid_until": batch.get("certificate_valid_until"),
                    "status": batch.get("certificate_status"),
                }
                if batch.get("certificate")
                else None,
                "commitment": {"text": batch["commitment"], "url": batch.get("commitment_url")}
                if batch.get("commitment")
                else None,
            }
            if batch
            else None,
            "trace": self.trace(),
        }

    def trace(self) -> dict[str, object] | None:
        """What a consumer sees of the code's life: producer, production, inspection report,
        shipment region (a province, never the dealer) and date, sale; nothing for a code that is
        not genuine, so a counterfeiter learns nothing from a forged label's page."""
        batch = self.batch
        if not batch or self.reason in (UNKNOWN_BATCH, UNKNOWN_CODE):
            return None
        shipped_to = regions.provinces_of(batch.get("shipped_region"))
        return {
            "state": batch.get("state"),
            "unit": batch.get("unit"),
            "producer": batch.get("enterprise"),
            "production_date": batch.get("production_date"),
            "production_place": batch.get("production_place"),
            "inspection_report": {
                "sha256": batch["report_sha256"],
                "url": f"/doc/{batch['report_sha256']}",
            }
            if batch.get("report_sha256")
            else None,
            "shipped_to": [{"code": p.code, "zh": p.short_zh, "en": p.name_en} for p in shipped_to],
            "shipped_on": _day(batch.get("shipped_at")),
            "sold_on": _day(batch.get("sold_at")),
            "in_case": batch.get("parent") is not None,
        }


def _day(text: str | None) -> str | None:
    """A stored UTC time as the date in China."""
    moment = clock.parse(text)
    return moment.astimezone(clock.CHINA).date().isoformat() if moment else None


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


@dataclass(frozen=True)
class Settings:
    """What lookups need: trusted public keys, accepted addresses, thresholds, the PIN secret."""

    keys: Mapping[bytes, codes.TrustedKey]
    base_urls: tuple[str, ...]
    repeat_threshold: int = 4
    pin_secret: bytes | None = None
    pin_failures: int = 5  # wrong PINs for one code, from anyone, before its PIN attempts wait...
    pin_window: dt.timedelta = dt.timedelta(hours=1)  # ...until this long after the first of them
    _decoy: codes.TrustedKey = field(default_factory=lambda: _make_decoy())


def _make_decoy() -> codes.TrustedKey:
    private = Ed25519PrivateKey.from_private_bytes(bytes(32))
    return codes.TrustedKey(b"\0\0", private.public_key())


# The decoy checks a well-formed signature (canonical S, R not of small order) against another
# message: libsodium then does all of a verification's work and only the last comparison fails.
# (An all-zero signature would be refused early, before the work that the decoy is there to do.)
_DECOY_MESSAGE = b"verifier timing decoy"
_DECOY_SIGNATURE = Ed25519PrivateKey.from_private_bytes(bytes(32)).sign(b"verifier timing decoy, signed")


# --- the pure part ------------------------------------------------------------------------


def examine_url(text: str, settings: Settings) -> codes.Verification:
    """Decode and verify a scanned URL or code. Forged, unknown-key and malformed codes all pay
    for one signature verification, so response times do not tell them apart."""
    result = codes.verify(text, settings.keys, settings.base_urls)
    if result.reason in (codes.UNKNOWN_KEY, codes.MALFORMED):
        codes.signature_valid(settings._decoy.raw, _DECOY_SIGNATURE, _DECOY_MESSAGE)
    return result


# --- the recording part: call inside db.transaction() -------------------------------------


def _matches(code: codes.Code, batch: dict[str, Any]) -> bool:
    """Whether a validly signed code is the registered code of that serial."""
    if code.form == codes.FORM_COMPACT:
        return bool(code.batch == batch["id"] and batch["form"] == codes.FORM_COMPACT)
    return batch["form"] == codes.FORM_GS1 and (code.gtin, code.lot) == (batch["gtin"], batch["lot"])


def record_url(
    conn: db.Conn,
    verification: codes.Verification,
    settings: Settings,
    client: Client,
    channel: str,
    now: dt.datetime,
) -> Verdict:
    """The verdict for a verified URL, recorded as a scan."""
    code = verification.code
    if not verification.genuine or code is None:
        verdict = Verdict(
            verification.reason,
            verification.detail,
            kid=code.kid_hex if code else None,
            serial=code.serial if code else None,
        )
        _insert_scan(conn, verdict, client, channel, now, batch_id=None, counted=False, claim=code)
        return verdict
    batch = registry.batch_for_serial(conn, code.serial, lock=True)  # the code's lock, too
    if batch is None or not _matches(code, batch):
        verdict = Verdict(UNKNOWN_BATCH, serial=code.serial, kid=code.kid_hex)
        _insert_scan(conn, verdict, client, channel, now, batch_id=None, counted=False, claim=code)
        return verdict
    return _record_issued(conn, code.serial, batch, code.kid_hex, settings, client, channel, now, pin=None)


def record_typed(
    conn: db.Conn,
    typed: str,
    pin: str | None,
    settings: Settings,
    client: Client,
    channel: str,
    now: dt.datetime,
) -> Verdict:
    """The verdict for a code (and PIN) typed from a label, recorded as a scan."""
    try:
        serial = codes.parse_human_code(typed)
    except codes.InvalidCode as exc:
        # Something typed cannot be a forgery: a wrong check digit or a wrong length is a typing error.
        # Only a blank entry is malformed.
        verdict = Verdict(MISTYPED if codes.normalize_typed(typed) else MALFORMED, exc.detail)
        _insert_scan(conn, verdict, client, channel, now, batch_id=None, counted=False)
        return verdict
    batch = registry.batch_for_serial(conn, serial, lock=True)  # the code's lock, too
    if batch is None:
        verdict = Verdict(UNKNOWN_CODE, serial=serial)
        _insert_scan(conn, verdict, client, channel, now, batch_id=None, counted=False)
        return verdict
    pin = codes.normalize_typed(pin) if pin else None  # as the code: full-width digits, spaces, zero-width...
    return _record_issued(conn, serial, batch, None, settings, client, channel, now, pin=pin or None)


def _record_issued(
    conn: db.Conn,
    serial: int,
    batch: dict[str, Any],
    kid: str | None,
    settings: Settings,
    client: Client,
    channel: str,
    now: dt.datetime,
    pin: str | None,
) -> Verdict:
    """Check the PIN, count the check, apply report, recall, expiry, PIN and repeat rules, record the scan."""
    now_text = clock.utc_text(now)
    # PostgreSQL: two nodes checking one code take turns; the caller's batch_for_serial(lock=True)
    # took the code's lock (SQLite: the writer lock), so the check count below is read after it.
    state = scans_repo.code_checks(conn, serial)
    pin_state = None
    if pin is not None and batch["has_pin"]:
        pin_state = _check_pin(conn, serial, pin, settings, now)
        if pin_state == "right":
            pin_state = "first" if state is None or state.pin_verified_at is None else "reused"
    session = client.session_hash
    # A wrong (or unchecked) PIN is not a check of the label: it would push a genuine label towards
    # "suspicious". A repeat view from the same browser counts once.
    # A code not yet released is not a consumer's check either: goods are not on sale yet.
    counted = (
        pin_state not in ("mismatch", "throttled")
        and batch["state"] != lifecycle.ISSUED
        and not (state and session and session in state.sessions.split())
    )
    checks: int | None
    first_checked_at: str | None
    pin_verified_at: str | None
    if counted:
        kept = state.sessions.split()[: SESSIONS_KEPT - 1] if state else []
        sessions = " ".join(([session] if session else []) + kept)
        checks, first_checked_at, pin_verified_at = scans_repo.count_check(conn, serial, now_text, sessions)
    elif state:  # nothing changes
        checks, first_checked_at, pin_verified_at = state.checks, state.first_checked_at, state.pin_verified_at
    else:
        checks = first_checked_at = pin_verified_at = None
    verdict = Verdict(
        GENUINE,
        serial=serial,
        checks=checks,
        first_checked_at=clock.parse(first_checked_at),
        batch=batch,
        kid=kid,
        pin=pin_state,
    )
    if pin_state == "first":
        scans_repo.mark_pin_verified(conn, serial, now_text)
    elif pin_state == "reused":
        verdict.pin_verified_at = clock.parse(pin_verified_at)
    today = now.astimezone(clock.CHINA).date()
    # As the lookup sees it today: a valid certificate past its date is "expired".
    batch["certificate_status"] = certificates.standing(
        batch.get("certificate_status"), batch.get("certificate_valid_until"), today
    )
    if batch["reported"]:
        verdict.reason = REPORTED  # whatever else holds: labels with this code are known fakes
    elif batch["state"] == lifecycle.BLOCKED:
        verdict.reason = BLOCKED
        verdict.detail = batch["block_reason"]
    elif batch["status"] == "recalled":
        verdict.reason = RECALLED
    elif batch["certificate_status"] in (certificates.SUSPENDED, certificates.REVOKED, certificates.EXPIRED):
        verdict.reason = MARK_SUSPENDED
        verdict.detail = batch["certificate"]
    elif batch["state"] == lifecycle.ISSUED:
        verdict.reason = NOT_RELEASED
    elif batch["expiry_date"] and dt.date.fromisoformat(batch["expiry_date"]) < today:
        verdict.reason = EXPIRED
    elif pin_state == "throttled":
        verdict.reason = PIN_THROTTLED
    elif pin_state == "mismatch":
        verdict.reason = PIN_MISMATCH
    elif pin_state == "reused":
        verdict.reason = PIN_REUSED
    elif pin_state == "first" or (checks or 0) <= 1:
        verdict.reason = GENUINE  # the buyer's first PIN verification outweighs earlier scans
    elif checks is not None and checks <= settings.repeat_threshold:
        verdict.reason = GENUINE_REPEAT
    else:
        verdict.reason = SUSPICIOUS_REPEAT
    _insert_scan(conn, verdict, client, channel, now, batch_id=batch["id"], counted=counted)
    return verdict


def _check_pin(conn: db.Conn, serial: int, pin: str, settings: Settings, now: dt.datetime) -> str:
    """ "right", "mismatch" (counted against the code), or "throttled": too many wrong PINs for this
    code within the window, so this one is not even checked."""
    attempts = scans_repo.pin_attempts(conn, serial)
    if attempts and now - dt.datetime.fromisoformat(attempts[0]) >= settings.pin_window:
        attempts = None  # the window has passed: start afresh
    if attempts and attempts[1] >= settings.pin_failures:
        return "throttled"
    if settings.pin_secret is not None and pins.check_pin(settings.pin_secret, serial, pin):
        return "right"
    window_start, failures = attempts if attempts else (clock.utc_text(now), 0)
    scans_repo.set_pin_attempts(conn, serial, window_start, failures + 1)
    return "mismatch"


def _insert_scan(
    conn: db.Conn,
    verdict: Verdict,
    client: Client,
    channel: str,
    now: dt.datetime,
    batch_id: int | None,
    counted: bool,
    claim: codes.Code | None = None,
) -> None:
    """The scan row and (SQLite) its entry in the hash-chained log, in the caller's transaction.

    `claim`: a decoded code that is not genuine (forged, unknown key or batch, revoked key): what it
    says of itself is recorded, so the enterprise it imitates sees it (verifier/audit.py)."""
    region = client.region
    at = clock.utc_text(now)
    scan: dict[str, object] = {
        "id": scans_repo.next_scan_id(conn),
        "at": at,
        "channel": channel,
        "reason": verdict.reason,
        "detail": verdict.detail,
        "serial": verdict.serial,
        "batch_id": batch_id,
        "kid": verdict.kid,
        "counted": int(counted),
        "checks": verdict.checks,
        "pin": verdict.pin,
        "country": region.country,
        "claimed_batch": claim.batch if claim else None,
        "claimed_gtin": claim.gtin if claim else None,
        "claimed_mark": claim.mark.slug if claim else None,
        "ip_prefix": client.ip_prefix,
        "ip_hash": client.ip_hash,
        "region": region.region,
        "city": region.city,
        "user_agent": client.user_agent,
        "session_hash": client.session_hash,
    }
    salt = auditlog.new_salt()
    seq = auditlog.append_scan(conn, scan, salt)  # PostgreSQL: None, the sequencer chains it
    verdict.scan_id = scans_repo.insert_scan(conn, {**scan, "log_seq": seq, "personal_salt": salt})
