"""A second verifier, written only from docs/code-format.md and a JWKS, on PyNaCl (libsodium).

It shares no code with the `verifier` package: if both agree on every vector, the spec is
complete enough for third parties to verify codes offline.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import json
import re

import nacl.exceptions
import nacl.signing

MARK_BYTES = {1: "SQ", 2: "TR", 3: "AC"}
MARK_LETTERS = {v: k for k, v in MARK_BYTES.items()}


class Rejected(Exception):
    def __init__(self, step: str, reason: str, detail: str | None = None):
        super().__init__(reason)
        self.step, self.reason, self.detail = step, reason, detail


def malformed(step: str, detail: str) -> Rejected:
    return Rejected(step, "malformed", detail)


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_jwks(jwks: dict) -> dict[bytes, tuple[nacl.signing.VerifyKey, str]]:
    keys = {}
    for jwk in jwks["keys"]:
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        thumb = hashlib.sha256(
            json.dumps({"crv": "Ed25519", "kty": "OKP", "x": jwk["x"]}, separators=(",", ":")).encode()
        ).digest()
        keys[thumb[:2]] = (nacl.signing.VerifyKey(b64url_decode(jwk["x"])), jwk.get("status", "active"))
    return keys


def gtin_ok(gtin: str) -> bool:
    if not re.fullmatch(r"\d{14}", gtin):
        return False
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(gtin[:13]))
    return (10 - total % 10) % 10 == int(gtin[13])


def date_ok(yymmdd: str) -> bool:
    if not re.fullmatch(r"\d{6}", yymmdd):
        return False
    year, month, day = 2000 + int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:])
    return 1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]


def verify(text: str, jwks: dict, base_urls: list[str]) -> dict:
    """{'reason', 'detail', 'step', 'fields'} for one scanned text."""
    try:
        fields, message, kid, signature = parse(text, base_urls)
        keys = load_jwks(jwks)
        if kid not in keys:
            raise Rejected("key", "unknown-key")
        key, status = keys[kid]
        try:
            key.verify(message, signature)
        except nacl.exceptions.BadSignatureError:
            raise Rejected("signature", "bad-signature") from None
        if status == "revoked":
            raise Rejected("status", "key-revoked")
        return {"reason": "genuine", "detail": None, "step": None, "fields": fields}
    except Rejected as r:
        return {"reason": r.reason, "detail": r.detail, "step": r.step, "fields": None}


def parse(text: str, base_urls: list[str]):
    # step text
    if len(text) > 512:
        raise malformed("text", "bad-length")
    text = text.strip(" \t\r\n")
    if not text:
        raise malformed("text", "bad-length")
    if any(not (0x21 <= ord(ch) <= 0x7E) for ch in text) or "#" in text:
        raise malformed("text", "bad-character")
    # step prefix
    low = text.lower()
    if low.startswith("https://"):
        text = text[8:]
    elif low.startswith("http://"):
        text = text[7:]
    elif "://" in text:
        raise malformed("prefix", "bad-prefix")
    if not any(ch in text for ch in "/?."):
        return parse_compact(text, "")
    host, _, path = text.partition("/")
    for base in base_urls:
        b_host, _, b_path = base.split("://", 1)[1].partition("/")
        if host.lower() == b_host.lower() and path.lower().startswith(b_path.lower()):
            tail = path[len(b_path) :]
            if tail.startswith("01/"):
                return parse_gs1(tail)
            payload, _, query = tail.partition("?")
            if "/" in payload:
                raise malformed("prefix", "bad-path")
            return parse_compact(payload, query)
    raise malformed("prefix", "bad-prefix")


def parse_compact(payload: str, query: str):
    for part in query.split("&") if query else []:
        if re.fullmatch(r"\d+", part.split("=", 1)[0]):
            raise malformed("syntax", "unknown-field")
    payload = payload.upper()
    if not payload:
        raise malformed("syntax", "bad-length")
    if not re.fullmatch(r"[A-Z2-7]+", payload):
        raise malformed("syntax", "bad-encoding")
    if len(payload) != 127:
        raise malformed("syntax", "bad-length")
    raw = base64.b32decode(payload + "=")
    if base64.b32encode(raw).decode().rstrip("=") != payload:
        raise malformed("syntax", "bad-encoding")
    version, kid, mark = raw[0], raw[1:3], raw[3]
    batch = int.from_bytes(raw[4:8], "big")
    serial = int.from_bytes(raw[8:15], "big")
    if version != 1:
        raise malformed("syntax", "bad-version")
    if mark not in MARK_BYTES:
        raise malformed("syntax", "bad-mark")
    if batch == 0:
        raise malformed("syntax", "bad-batch")
    if serial >= 10**16:
        raise malformed("syntax", "bad-serial")
    message = b"verifier.code\x00" + bytes([1]) + b"C" + kid + bytes([mark]) + raw[8:15] + raw[4:8]
    fields = {"form": "compact", "kid": kid.hex(), "mark": MARK_BYTES[mark], "serial": f"{serial:016d}", "batch": batch}
    return fields, message, kid, raw[15:]


def parse_gs1(tail: str):
    path, _, query = tail.partition("?")
    m = re.fullmatch(r"01/([^/]*)/10/([^/]*)/21/([^/]*)", path)
    if not m:
        raise malformed("prefix", "bad-path")
    gtin, lot, serial = m.groups()
    if not gtin_ok(gtin):
        raise malformed("syntax", "bad-gtin")
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,20}", lot):
        raise malformed("syntax", "bad-lot")
    if not re.fullmatch(r"\d{16}", serial):
        raise malformed("syntax", "bad-serial")
    attrs: dict[str, str] = {}
    for part in query.split("&") if query else []:
        name, eq, value = part.partition("=")
        if not re.fullmatch(r"\d+", name):
            continue
        if name not in ("17", "91", "8030") or not eq:
            raise malformed("syntax", "unknown-field")
        if name in attrs:
            raise malformed("syntax", "duplicate-field")
        attrs[name] = value
    for name in ("17", "91", "8030"):
        if name not in attrs:
            raise malformed("syntax", "missing-field")
    if not date_ok(attrs["17"]):
        raise malformed("syntax", "bad-expiry")
    if attrs["91"] not in MARK_LETTERS:
        raise malformed("syntax", "bad-mark")
    digsig = attrs["8030"]
    if not re.fullmatch(r"[A-Za-z0-9_-]+", digsig):
        raise malformed("syntax", "bad-encoding")
    if len(digsig) != 90:
        raise malformed("syntax", "bad-length")
    raw = b64url_decode(digsig)
    if base64.urlsafe_b64encode(raw).decode().rstrip("=") != digsig:
        raise malformed("syntax", "bad-encoding")
    if raw[0] != 1:
        raise malformed("syntax", "bad-version")
    kid = raw[1:3]
    mark = MARK_LETTERS[attrs["91"]]
    message = (
        b"verifier.code\x00"
        + bytes([1])
        + b"G"
        + kid
        + bytes([mark])
        + int(serial).to_bytes(7, "big")
        + (gtin + attrs["17"] + lot).encode()
    )
    fields = {
        "form": "gs1",
        "kid": kid.hex(),
        "mark": attrs["91"],
        "serial": serial,
        "gtin": gtin,
        "lot": lot,
        "expiry": attrs["17"],
    }
    return fields, message, kid, raw[3:]
