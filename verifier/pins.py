"""Scratch-off PINs: derived from the serial with a server-side secret, so none is stored."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from pathlib import Path

from . import codes

PIN_DIGITS = 8
MIN_SECRET_BYTES = 16
_CONTEXT = b"verifier.pin\x00"


class PinSecretError(Exception):
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


def load_secret(env: Mapping[str, str] = os.environ, required: bool = True) -> bytes | None:
    """The secret from VERIFIER_PIN_SECRET, or from the file VERIFIER_PIN_SECRET_FILE names."""
    value = env.get("VERIFIER_PIN_SECRET")
    path = env.get("VERIFIER_PIN_SECRET_FILE")
    if value is None and path:
        try:
            value = Path(path).read_text("utf-8").strip()
        except OSError as exc:
            raise PinSecretError(f"cannot read PIN secret file {path}: {exc.strerror}") from None
    if value is None:
        if required:
            raise PinSecretError("no PIN secret: set VERIFIER_PIN_SECRET or VERIFIER_PIN_SECRET_FILE")
        return None
    secret = value.encode("utf-8")
    if len(secret) < MIN_SECRET_BYTES:
        raise PinSecretError(f"the PIN secret must be at least {MIN_SECRET_BYTES} characters")
    return secret
