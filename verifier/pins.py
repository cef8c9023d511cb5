"""Scratch-off PINs: derived from the serial with a server-side secret, so none is stored."""

from __future__ import annotations

import hashlib
import hmac

from . import codes, errors, settings

PIN_DIGITS = 8
MIN_SECRET_BYTES = settings.MIN_PIN_SECRET_BYTES
_CONTEXT = b"verifier.pin\x00"


class PinSecretError(errors.InvalidInput):
    """The PIN secret is missing or unusable; the message is for the user."""


def derive_pin(secret: bytes, serial: int, digits: int = PIN_DIGITS) -> str:
    """The PIN printed under the scratch-off layer of code `serial`."""
    mac = hmac.new(secret, _CONTEXT + serial.to_bytes(7, "big"), hashlib.sha256).digest()
    return f"{int.from_bytes(mac[:8], 'big') % 10**digits:0{digits}d}"


def check_pin(secret: bytes, serial: int, typed: str) -> bool:
    """Whether `typed` is the PIN of `serial`, normalised as codes are (full-width digits, spaces,
    dashes and zero-width characters); constant time."""
    cleaned = codes.normalize_typed(typed)
    return hmac.compare_digest(cleaned.encode("ascii", "replace"), derive_pin(secret, serial).encode("ascii"))


def require_secret(secret: bytes | None) -> bytes:
    """The PIN secret (`settings.pin_secret`, from VERIFIER_PIN_SECRET or its _FILE), which must be set."""
    if not secret:
        raise PinSecretError("no PIN secret: set VERIFIER_PIN_SECRET or VERIFIER_PIN_SECRET_FILE")
    return secret
