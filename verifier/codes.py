"""The signed code format: encode, decode, sign and verify (spec: docs/code-format.md).

Pure: values in, values out. No file, network or clock access; keys are passed in.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import nacl.bindings
import nacl.exceptions
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

VERSION = 1
CONTEXT = b"verifier.code\x00"  # domain separation: these signatures mean nothing elsewhere
FORM_COMPACT = "compact"
FORM_GS1 = "gs1"
_FORM_BYTES = {FORM_COMPACT: b"C", FORM_GS1: b"G"}

KID_BYTES = 2
SIGNATURE_BYTES = 64
SERIAL_DIGITS = 16
SERIAL_LIMIT = 10**SERIAL_DIGITS
BATCH_LIMIT = 2**32
_COMPACT_HEADER = 1 + KID_BYTES + 1 + 4 + 7  # version, kid, mark, batch, serial
COMPACT_PAYLOAD_BYTES = _COMPACT_HEADER + SIGNATURE_BYTES  # 79
COMPACT_PAYLOAD_CHARS = -(-COMPACT_PAYLOAD_BYTES * 8 // 5)  # 127 base32 characters, unpadded
DIGSIG_BYTES = 1 + KID_BYTES + SIGNATURE_BYTES  # 67 bytes = 90 base64url characters
DIGSIG_CHARS = -(-DIGSIG_BYTES * 8 // 6)
MAX_INPUT_CHARS = 512  # longer than any valid code; checked before any other work

# Reasons: stable machine codes shared by the CLI, the web page, the API and the scan log.
GENUINE = "genuine"
MALFORMED = "malformed"
UNKNOWN_KEY = "unknown-key"
BAD_SIGNATURE = "bad-signature"
KEY_REVOKED = "key-revoked"
REASONS = (GENUINE, MALFORMED, UNKNOWN_KEY, BAD_SIGNATURE, KEY_REVOKED)
MALFORMED_DETAILS = (
    "bad-length",
    "bad-character",
    "bad-prefix",
    "bad-path",
    "bad-encoding",
    "bad-version",
    "bad-mark",
    "bad-batch",
    "bad-serial",
    "bad-gtin",
    "bad-lot",
    "bad-expiry",
    "missing-field",
    "duplicate-field",
    "unknown-field",
    "bad-check-digit",
)

KEY_ACTIVE = "active"
KEY_RETIRED = "retired"
KEY_REVOKED_STATUS = "revoked"
KEY_STATUSES = (KEY_ACTIVE, KEY_RETIRED, KEY_REVOKED_STATUS)


class InvalidCode(ValueError):
    """A code that is not genuine; `reason` and `detail` are stable machine codes."""

    def __init__(self, reason: str, detail: str | None = None, message: str = ""):
        super().__init__(message or (f"{reason}: {detail}" if detail else reason))
        self.reason = reason
        self.detail = detail


def _malformed(detail: str, message: str = "") -> InvalidCode:
    return InvalidCode(MALFORMED, detail, message)


@dataclass(frozen=True)
class Mark:
    """A kind of mark a code can certify."""

    code: int  # the byte in compact payloads and signed messages
    slug: str  # the CLI and API name
    gs1: str  # the value of GS1 AI 91 in Digital Link URLs
    name_zh: str
    name_en: str


MARKS: tuple[Mark, ...] = (
    Mark(1, "stable-qualified", "SQ", "全国质检稳定合格产品", "Nationally inspected stable qualified product"),
    Mark(2, "traceability", "TR", "质量诚信溯源验证", "Quality integrity traceability verification"),
    Mark(3, "anti-counterfeit", "AC", "产品真假防伪鉴别", "Product authenticity verification"),
)
_MARK_BY_CODE = {m.code: m for m in MARKS}
_MARK_BY_GS1 = {m.gs1: m for m in MARKS}
_MARK_BY_SLUG = {m.slug: m for m in MARKS}


def mark_by_slug(slug: str) -> Mark:
    """The mark named `slug`, or ValueError listing the known ones."""
    try:
        return _MARK_BY_SLUG[slug]
    except KeyError:
        known = ", ".join(_MARK_BY_SLUG)
        raise ValueError(f"unknown mark type {slug!r} (known: {known})") from None


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 4x, and this is on every lookup
class Code:
    """The content of one code; `signature` is empty until signed. Treat it as immutable."""

    form: str
    kid: bytes
    mark: Mark
    serial: int
    batch: int | None = None  # compact form: the registry's batch number
    gtin: str | None = None  # GS1 form: GTIN-14, lot (AI 10) and expiry YYMMDD (AI 17)
    lot: str | None = None
    expiry: str | None = None
    signature: bytes = b""
    version: int = VERSION

    @property
    def kid_hex(self) -> str:
        return self.kid.hex()

    @property
    def human(self) -> str:
        return human_code(self.serial)

    def fields(self) -> dict[str, object]:
        """The decoded fields as plain JSON-ready values."""
        out: dict[str, object] = {
            "form": self.form,
            "version": self.version,
            "kid": self.kid_hex,
            "mark": self.mark.slug,
            "serial": f"{self.serial:0{SERIAL_DIGITS}d}",
            "human_code": self.human,
        }
        if self.form == FORM_COMPACT:
            out["batch"] = self.batch
        else:
            out.update(gtin=self.gtin, lot=self.lot, expiry=expiry_date(self.expiry or "").isoformat())
        return out


@dataclass(frozen=True)
class TrustedKey:
    """A public key a verifier trusts, with its status."""

    kid: bytes
    public_key: Ed25519PublicKey
    status: str = KEY_ACTIVE
    raw: bytes = field(init=False, repr=False, compare=False)  # the key's 32 bytes, as libsodium takes it

    def __post_init__(self) -> None:
        object.__setattr__(self, "raw", self.public_key.public_bytes_raw())


def signature_valid(public_raw: bytes, signature: bytes, message: bytes) -> bool:
    """Whether `signature` is an Ed25519 signature of `message` by the key `public_raw` (32 bytes).

    libsodium (PyNaCl) verifies about twice as fast as OpenSSL: this is the lookup's hot path.
    `cryptography` keeps signing and the keys themselves."""
    if len(signature) != SIGNATURE_BYTES:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + message, public_raw)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


@dataclass(frozen=True)
class Verification:
    """The outcome of verifying one scanned text."""

    reason: str
    detail: str | None = None
    code: Code | None = None
    key_status: str | None = None

    @property
    def genuine(self) -> bool:
        return self.reason == GENUINE


# --- field rules --------------------------------------------------------------------------

_LOT_RE = re.compile(r"[0-9A-Za-z._-]{1,20}")
_DIGITS_RE = re.compile(r"[0-9]+")
_BASE32_RE = re.compile(r"[A-Z2-7]+")
_BASE64URL_RE = re.compile(r"[A-Za-z0-9_-]+")


def gtin_check_digit(first13: str) -> int:
    """The GS1 mod-10 check digit of the first 13 digits of a GTIN-14."""
    raw = first13.encode("ascii")  # summing bytes runs in C; subtract the '0' offsets afterwards
    total = 3 * (sum(raw[0::2]) - 48 * 7) + sum(raw[1::2]) - 48 * 6
    return (10 - total % 10) % 10


@functools.lru_cache(maxsize=4096)  # a deployment has few GTINs, lots and dates: cache the checks
def validate_gtin(gtin: str) -> str:
    """A GTIN-14 with a correct check digit, or InvalidCode(bad-gtin)."""
    if len(gtin) != 14 or not (gtin.isascii() and gtin.isdigit()):
        raise _malformed("bad-gtin", "a GTIN must be 14 digits")
    if gtin_check_digit(gtin[:13]) != int(gtin[13]):
        raise _malformed("bad-gtin", "GTIN check digit is wrong")
    return gtin


def normalize_gtin(gtin: str) -> str:
    """GTIN-8/12/13/14 padded to GTIN-14 and validated."""
    if not _DIGITS_RE.fullmatch(gtin) or len(gtin) not in (8, 12, 13, 14):
        raise _malformed("bad-gtin", "a GTIN has 8, 12, 13 or 14 digits")
    return validate_gtin(gtin.zfill(14))


@functools.lru_cache(maxsize=4096)
def validate_lot(lot: str) -> str:
    if not _LOT_RE.fullmatch(lot):
        raise _malformed("bad-lot", "a lot is 1-20 characters of A-Z a-z 0-9 . _ -")
    return lot


@functools.lru_cache(maxsize=4096)
def expiry_date(yymmdd: str) -> dt.date:
    """The calendar date of a GS1 YYMMDD expiry (years 2000-2099)."""
    if len(yymmdd) != 6 or not _DIGITS_RE.fullmatch(yymmdd):
        raise _malformed("bad-expiry", "an expiry is YYMMDD")
    try:
        return dt.date(2000 + int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:]))
    except ValueError:
        raise _malformed("bad-expiry", "the expiry is not a calendar date") from None


def expiry_text(date: dt.date) -> str:
    """A date as GS1 YYMMDD; only years 2000-2099 are representable."""
    if not 2000 <= date.year <= 2099:
        raise ValueError("expiry must be between 2000 and 2099")
    return date.strftime("%y%m%d")


def _check_serial(serial: int) -> int:
    if not 0 <= serial < SERIAL_LIMIT:
        raise _malformed("bad-serial", f"a serial has at most {SERIAL_DIGITS} digits")
    return serial


# --- human-readable code: serial digits plus a Damm check digit -------------------------

_DAMM = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)


def damm_digit(digits: str, interim: int = 0) -> int:
    """The Damm check digit: catches every single-digit error and adjacent transposition."""
    for d in digits:
        interim = _DAMM[interim][ord(d) - 48]
    return interim


@functools.cache
def _damm_by_four() -> tuple[tuple[int, ...], ...]:
    """The Damm state after four digits from each start state: 4 look-ups a serial, not 16."""
    return tuple(tuple(damm_digit(f"{n:04d}", start) for n in range(10_000)) for start in range(10))


def human_code(serial: int) -> str:
    """The printed code: 16 serial digits and a check digit, grouped 4-4-4-5."""
    _check_serial(serial)
    groups = (serial // 10**12, serial // 10**8 % 10**4, serial // 10**4 % 10**4, serial % 10**4)
    table, state = _damm_by_four(), 0
    for group in groups:
        state = table[state][group]
    return "{:04d} {:04d} {:04d} {:04d}{}".format(*groups, state)


def normalize_typed(text: str) -> str:
    """What a person typed from a label, as plain characters: NFKC (full-width digits become ASCII),
    then without spaces of any kind, dashes and invisible format characters (zero-width space, BOM...)."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text) if not _typed_separator(ch))


def _typed_separator(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch) in ("Zs", "Zl", "Zp", "Cf", "Pd")


def parse_human_code(text: str) -> int:
    """The serial of a typed code; separators and full-width digits are accepted (`normalize_typed`).
    InvalidCode if mistyped."""
    digits = normalize_typed(text)
    if not _DIGITS_RE.fullmatch(digits or "x") or len(digits) != SERIAL_DIGITS + 1:
        raise _malformed("bad-length", f"a printed code has {SERIAL_DIGITS + 1} digits")
    if damm_digit(digits) != 0:
        raise _malformed("bad-check-digit", "the check digit does not match: a typing error?")
    return int(digits[:SERIAL_DIGITS])


# --- signing ------------------------------------------------------------------------------


def signed_message(code: Code) -> bytes:
    """The exact bytes an Ed25519 signature covers."""
    head = CONTEXT + bytes([code.version]) + _FORM_BYTES[code.form] + code.kid
    head += bytes([code.mark.code]) + code.serial.to_bytes(7, "big")
    if code.form == FORM_COMPACT:
        return head + (code.batch or 0).to_bytes(4, "big")
    return head + f"{code.gtin}{code.expiry}{code.lot}".encode("ascii")


def sign(code: Code, private_key: Ed25519PrivateKey) -> Code:
    """`code` with its signature filled in."""
    _validate_content(code)
    signature = private_key.sign(signed_message(code))
    return Code(code.form, code.kid, code.mark, code.serial, code.batch, code.gtin, code.lot, code.expiry, signature)


def compact_signer(
    private_key: Ed25519PrivateKey, kid: bytes, mark: Mark, batch: int, base_url: str
) -> Callable[[int], str]:
    """A function serial -> signed compact URL for one batch: the batch-issuing hot path."""
    _validate_content(Code(FORM_COMPACT, kid, mark, 0, batch=batch))
    head = bytes([VERSION]) + kid + bytes([mark.code])
    message_head = CONTEXT + bytes([VERSION]) + _FORM_BYTES[FORM_COMPACT] + kid + bytes([mark.code])
    batch_bytes = batch.to_bytes(4, "big")
    prefix = normalize_base_url(base_url).upper()
    sign_message = private_key.sign

    def sign_serial(serial: int) -> str:
        serial_bytes = _check_serial(serial).to_bytes(7, "big")
        signature = sign_message(message_head + serial_bytes + batch_bytes)
        return prefix + _b32(head + batch_bytes + serial_bytes + signature)

    return sign_serial


def gs1_signer(
    private_key: Ed25519PrivateKey, kid: bytes, mark: Mark, gtin: str, lot: str, expiry: str, base_url: str
) -> Callable[[int], str]:
    """A function serial -> signed GS1 Digital Link URL for one lot: the batch-issuing hot path."""
    _validate_content(Code(FORM_GS1, kid, mark, 0, gtin=gtin, lot=lot, expiry=expiry))
    message_head = CONTEXT + bytes([VERSION]) + _FORM_BYTES[FORM_GS1] + kid + bytes([mark.code])
    message_tail = f"{gtin}{expiry}{lot}".encode("ascii")
    head = bytes([VERSION]) + kid
    scheme, rest = normalize_base_url(base_url).split("://", 1)
    host, _, path = rest.partition("/")
    prefix = f"{scheme.lower()}://{host.lower()}/{path}01/{gtin}/10/{lot}/21/"
    middle = f"?17={expiry}&91={mark.gs1}&8030="
    sign_message = private_key.sign

    def sign_serial(serial: int) -> str:
        serial_bytes = _check_serial(serial).to_bytes(7, "big")
        signature = sign_message(message_head + serial_bytes + message_tail)
        return f"{prefix}{serial:016d}{middle}{_b64url(head + signature)}"

    return sign_serial


def _validate_content(code: Code) -> None:
    if len(code.kid) != KID_BYTES:
        raise ValueError("a key id is 2 bytes")
    _check_serial(code.serial)
    if code.form == FORM_COMPACT:
        if code.batch is None or not 1 <= code.batch < BATCH_LIMIT:
            raise _malformed("bad-batch", "a batch number is 1 to 4294967295")
    elif code.form == FORM_GS1:
        validate_gtin(code.gtin or "")
        validate_lot(code.lot or "")
        expiry_date(code.expiry or "")
    else:
        raise ValueError(f"unknown form {code.form!r}")


# --- URLs ---------------------------------------------------------------------------------


_B32_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_B32_TABLE = _B32_ALPHABET.encode("ascii") + bytes(256 - 32)
_B32_TO_INT_DIGITS = str.maketrans(_B32_ALPHABET, "0123456789ABCDEFGHIJKLMNOPQRSTUV")


def _spread_steps() -> list[tuple[int, int, int]]:
    """Masks that move each 5-bit group of a 640-bit number into its own byte (7 halvings)."""
    steps, data_bits, slot = [], 640, 1024
    while data_bits > 5:
        half, low, high = data_bits // 2, 0, 0
        for start in range(0, 1024, slot):
            low |= ((1 << half) - 1) << start
            high |= ((1 << half) - 1) << (start + half)
        steps.append((low, high, slot // 2 - half))
        data_bits, slot = half, slot // 2
    return steps


_SPREAD = _spread_steps()


def _b32(data: bytes) -> str:
    """Unpadded RFC 4648 base32; the 79-byte compact payload takes a fast path (hot in batches)."""
    if len(data) != COMPACT_PAYLOAD_BYTES:
        return base64.b32encode(data).decode("ascii").rstrip("=")
    m = int.from_bytes(data + b"\0", "big")
    for low, high, shift in _SPREAD:
        m = (m & low) | ((m & high) << shift)
    return m.to_bytes(128, "big").translate(_B32_TABLE)[:COMPACT_PAYLOAD_CHARS].decode("ascii")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


@functools.lru_cache(maxsize=64)
def normalize_base_url(base_url: str) -> str:
    """`scheme://host/path/` with a trailing slash; ValueError if it is not an http(s) URL."""
    m = re.fullmatch(r"(https?)://([A-Za-z0-9.-]+(?::[0-9]{1,5})?)(/[A-Za-z0-9._~/-]*)?", base_url.strip(), re.I)
    if not m:
        raise ValueError(f"base URL must look like https://host/ or https://host/path/, not {base_url!r}")
    path = m.group(3) or "/"
    return f"{m.group(1)}://{m.group(2)}{path if path.endswith('/') else path + '/'}"


def encode_url(code: Code, base_url: str) -> str:
    """The URL to print in the QR code: compact (all upper case) or GS1 Digital Link."""
    if not code.signature:
        raise ValueError("sign the code before encoding it")
    base = normalize_base_url(base_url)
    if code.form == FORM_COMPACT:
        payload = bytes([code.version]) + code.kid + bytes([code.mark.code])
        payload += (code.batch or 0).to_bytes(4, "big") + code.serial.to_bytes(7, "big") + code.signature
        return (base + _b32(payload)).upper()
    scheme, rest = base.split("://", 1)
    host, _, path = rest.partition("/")
    digsig = _b64url(bytes([code.version]) + code.kid + code.signature)
    return (
        f"{scheme.lower()}://{host.lower()}/{path}01/{code.gtin}/10/{code.lot}"
        f"/21/{code.serial:0{SERIAL_DIGITS}d}?17={code.expiry}&91={code.mark.gs1}&8030={digsig}"
    )


def _strip_scheme(text: str) -> str:
    low = text[:8].lower()
    for scheme in ("https://", "http://"):
        if low.startswith(scheme):
            return text[len(scheme) :]
    if "://" in text:
        raise _malformed("bad-prefix", "only http and https URLs are codes")
    return text


def _bases(base_urls: Iterable[str]) -> tuple[tuple[str, str], ...]:
    return _parse_bases(tuple(base_urls))


@functools.lru_cache(maxsize=64)
def _parse_bases(base_urls: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    out = []
    for base in base_urls:
        rest = normalize_base_url(base).split("://", 1)[1]
        host, _, path = rest.partition("/")
        out.append((host.lower(), path.lower()))
    return tuple(out)


def decode(text: str, base_urls: Iterable[str]) -> Code:
    """The code in a scanned or typed text, unverified; InvalidCode(malformed) if it is none."""
    if not isinstance(text, str) or len(text) > MAX_INPUT_CHARS:
        raise _malformed("bad-length", "too long to be a code")
    text = text.strip(" \t\r\n")
    if not text:
        raise _malformed("bad-length", "empty")
    if not (text.isascii() and text.isprintable()) or " " in text:
        raise _malformed("bad-character", "codes contain only printable ASCII characters")
    if "#" in text:
        raise _malformed("bad-character", "codes have no fragment")
    rest = _strip_scheme(text)
    if "/" not in rest and "?" not in rest and "." not in rest:
        return _decode_compact(rest)  # a bare payload, as typed or pasted
    host, _, path = rest.partition("/")
    for base_host, base_path in _bases(base_urls):
        if host.lower() == base_host and path.lower().startswith(base_path):
            tail = path[len(base_path) :]
            if tail.startswith("01/"):
                return _decode_gs1(tail)
            payload, _, query = tail.partition("?")
            if "/" in payload:
                raise _malformed("bad-path", "unexpected path segments")
            _check_extra_query(query)
            return _decode_compact(payload)
    raise _malformed("bad-prefix", "not one of this issuer's addresses")


def _check_extra_query(query: str) -> None:
    """Non-GS1 query parameters (keys not all digits) carry nothing signed and are ignored."""
    for pair in query.split("&") if query else ():
        key = pair.partition("=")[0]
        if _DIGITS_RE.fullmatch(key):
            raise _malformed("unknown-field", f"unexpected GS1 attribute {key}")


def _decode_compact(payload: str) -> Code:
    payload = payload.upper()
    if not payload:
        raise _malformed("bad-length", "no payload")
    if not _BASE32_RE.fullmatch(payload or "="):
        raise _malformed("bad-encoding", "the payload is base32 (A-Z, 2-7) without padding")
    if len(payload) != COMPACT_PAYLOAD_CHARS:
        raise _malformed("bad-length", f"the payload has {COMPACT_PAYLOAD_CHARS} characters")
    number = int(payload.translate(_B32_TO_INT_DIGITS), 32)  # base32 digits as a base-32 numeral
    unused = COMPACT_PAYLOAD_CHARS * 5 - COMPACT_PAYLOAD_BYTES * 8
    if number & ((1 << unused) - 1):
        raise _malformed("bad-encoding", "non-canonical base32 (unused bits set)")
    raw = (number >> unused).to_bytes(COMPACT_PAYLOAD_BYTES, "big")
    if raw[0] != VERSION:
        raise _malformed("bad-version", f"unsupported version {raw[0]}")
    mark = _MARK_BY_CODE.get(raw[3])
    if mark is None:
        raise _malformed("bad-mark", f"unknown mark type {raw[3]}")
    batch = int.from_bytes(raw[4:8], "big")
    if batch == 0:
        raise _malformed("bad-batch", "batch 0 is never issued")
    serial = _check_serial(int.from_bytes(raw[8:15], "big"))
    return Code(FORM_COMPACT, raw[1:3], mark, serial, batch=batch, signature=raw[15:])


_GS1_PATH_RE = re.compile(r"01/([^/]*)/10/([^/]*)/21/([^/]*)")


def _decode_gs1(tail: str) -> Code:
    path, _, query = tail.partition("?")
    m = _GS1_PATH_RE.fullmatch(path)
    if not m:
        raise _malformed("bad-path", "expected /01/{GTIN}/10/{lot}/21/{serial}")
    gtin, lot, serial_text = m.groups()
    validate_gtin(gtin)
    validate_lot(lot)
    if len(serial_text) != SERIAL_DIGITS or not (serial_text.isascii() and serial_text.isdigit()):
        raise _malformed("bad-serial", f"a serial is {SERIAL_DIGITS} digits")
    attrs: dict[str, str] = {}
    for pair in query.split("&") if query else ():
        key, eq, value = pair.partition("=")
        if not (key.isascii() and key.isdigit()):
            continue  # non-GS1 attributes are allowed by Digital Link and ignored
        if key not in ("17", "91", "8030") or not eq:
            raise _malformed("unknown-field", f"unexpected GS1 attribute {key}")
        if key in attrs:
            raise _malformed("duplicate-field", f"attribute {key} given twice")
        attrs[key] = value
    for key in ("17", "91", "8030"):
        if key not in attrs:
            raise _malformed("missing-field", f"attribute {key} is required")
    expiry_date(attrs["17"])
    mark = _MARK_BY_GS1.get(attrs["91"])
    if mark is None:
        raise _malformed("bad-mark", "unknown mark type")
    digsig = attrs["8030"]
    if not _BASE64URL_RE.fullmatch(digsig or "="):
        raise _malformed("bad-encoding", "AI 8030 is base64url without padding")
    if len(digsig) != DIGSIG_CHARS:
        raise _malformed("bad-length", f"AI 8030 has {DIGSIG_CHARS} characters")
    try:
        raw = base64.urlsafe_b64decode(digsig + "=" * (-len(digsig) % 4))
    except (binascii.Error, ValueError):
        raise _malformed("bad-encoding", "AI 8030 is not base64url") from None
    if digsig[-1] not in "AQgw":  # 67 bytes leave 4 unused bits in the last character
        raise _malformed("bad-encoding", "non-canonical base64url (unused bits set)")
    if raw[0] != VERSION:
        raise _malformed("bad-version", f"unsupported version {raw[0]}")
    return Code(
        FORM_GS1,
        raw[1:3],
        mark,
        int(serial_text),
        gtin=gtin,
        lot=lot,
        expiry=attrs["17"],
        signature=raw[3:],
    )


def check_signature(code: Code, keys: Mapping[bytes, TrustedKey]) -> TrustedKey:
    """The trusted key that signed `code`; InvalidCode if none did or the key is revoked."""
    key = keys.get(code.kid)
    if key is None:
        raise InvalidCode(UNKNOWN_KEY, message=f"no trusted key has id {code.kid_hex}")
    if not signature_valid(key.raw, code.signature, signed_message(code)):
        raise InvalidCode(BAD_SIGNATURE, message="the signature does not match")
    if key.status == KEY_REVOKED_STATUS:
        raise InvalidCode(KEY_REVOKED, message=f"key {code.kid_hex} has been revoked")
    return key


def verify(text: str, keys: Mapping[bytes, TrustedKey], base_urls: Iterable[str]) -> Verification:
    """Decode `text` and check its signature; never raises for bad input."""
    code = None
    try:
        code = decode(text, base_urls)
        key = check_signature(code, keys)
    except InvalidCode as exc:
        status = keys[code.kid].status if code is not None and code.kid in keys else None
        return Verification(exc.reason, exc.detail, code if exc.reason != MALFORMED else None, status)
    return Verification(GENUINE, None, code, key.status)
