"""C2SP signed notes, tlog checkpoints and tlog cosignatures (v1), with Ed25519.

Pure: values in, values out; keys and times are passed in. Specs: c2sp.org/signed-note,
c2sp.org/tlog-checkpoint, c2sp.org/tlog-cosignature; notes in docs/transparency-log.md.

    text     = "<origin>\n<size>\n<base64 root>\n" [+ extension lines]     (a checkpoint)
    note     = text + "\n" + one or more "— <key name> <base64(key ID || signature)>\n"
    key ID   = SHA-256(key name || 0x0A || type || public key)[:4], big-endian
    vkey     = "<key name>+<hex key ID>+<base64(type || public key)>"

Type 0x01 signs the note text with Ed25519; type 0x04 (cosignature/v1) signs
"cosignature/v1\ntime <t>\n" + text and its signature is the 8-byte big-endian t || the Ed25519
signature. Everything rejected raises `InvalidNote` with a stable machine `reason`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from verifier import merkle

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
SIGNATURE_TYPES = (ED25519, COSIGNATURE_V1)
MAX_SIGNATURES = 100  # the spec asks verifiers to accept at least 16; Go's sumdb/note stops at 100
MAX_TIMESTAMP = 2**63 - 1
EM_DASH = "\u2014"
_SIGNATURE_PREFIX = EM_DASH + " "
_COSIGNATURE_HEADER = "cosignature/v1\n"
_ED25519_SIGNATURE_BYTES = 64

# The machine reasons of InvalidNote.
MALFORMED = "malformed"  # not a signed note: syntax, encoding, control characters, too many signatures
BAD_SIGNATURE = "bad-signature"  # a signature by a known key that does not verify: the whole note is rejected
UNVERIFIED = "unverified"  # no signature by a known key
BAD_VKEY = "bad-vkey"  # a verifier key text that is not name+hex id+base64(type || key) with a matching id
BAD_CHECKPOINT = "bad-checkpoint"  # a note text that is not a checkpoint body


class InvalidNote(ValueError):
    """A note, key or checkpoint that is rejected; `reason` is one of the constants above."""

    def __init__(self, reason: str, message: str = ""):
        super().__init__(message or reason)
        self.reason = reason


def _b64decode(text: str) -> bytes:
    """Standard base64 in its one canonical spelling (no stray characters, padding or trailing bits)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("not canonical base64")
    return raw


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def valid_key_name(name: str) -> bool:
    """Key names are non-empty, with no Unicode space and no plus sign."""
    return bool(name) and "+" not in name and not any(c.isspace() for c in name) and _valid_text(name)


def _valid_text(text: str) -> bool:
    """No ASCII control character but newline (text is a str, so it is valid UTF-8 once encoded)."""
    return not any(c < " " and c != "\n" for c in text) and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def key_id(name: str, signature_type: int, public_key: bytes) -> int:
    """SHA-256(name || 0x0A || type || public key)[:4] as a big-endian uint32."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([signature_type]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def _raw_public_key(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class VerifierKey:
    """A known key: its name, key ID, signature type (0x01 note signatures, 0x04 cosignatures) and Ed25519 key."""

    name: str
    key_id: int
    signature_type: int
    public_key: bytes


def verifier_key(
    name: str, key: Ed25519PublicKey | Ed25519PrivateKey | bytes, signature_type: int = ED25519
) -> VerifierKey:
    """The verifier key of an Ed25519 key under `name`, with its key ID computed."""
    raw = key if isinstance(key, bytes) else _raw_public_key(key)
    if not valid_key_name(name):
        raise InvalidNote(BAD_VKEY, f"invalid key name {name!r}")
    if signature_type not in SIGNATURE_TYPES or len(raw) != 32:
        raise InvalidNote(BAD_VKEY, "an Ed25519 key (type 0x01 or 0x04, 32 bytes) is expected")
    return VerifierKey(name, key_id(name, signature_type, raw), signature_type, raw)


def format_vkey(key: VerifierKey) -> str:
    """`<name>+<hex key ID>+<base64(type || public key)>`."""
    return f"{key.name}+{key.key_id:08x}+{_b64encode(bytes([key.signature_type]) + key.public_key)}"


def _key_parts(text: str, shape: str) -> tuple[str, str, bytes]:
    """(name, hex key ID, decoded key material) of `<name>+<8 hex digits>+<base64>`; `shape` says
    what was expected. The base64 may itself hold "+"."""
    parts = text.split("+", 2)
    if len(parts) != 3 or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
        raise InvalidNote(BAD_VKEY, shape)
    try:
        return parts[0], parts[1], _b64decode(parts[2])
    except ValueError:
        raise InvalidNote(BAD_VKEY, "the key is not base64") from None


def parse_vkey(text: str) -> VerifierKey:
    """The verifier key a vkey text names; its key ID must be the one its name and key give."""
    name, hex_id, material = _key_parts(text, "a vkey is <name>+<8 hex digits>+<base64 key>")
    if not material:
        raise InvalidNote(BAD_VKEY, "empty key")
    key = verifier_key(name, material[1:], material[0])
    if key.key_id != int(hex_id, 16):
        raise InvalidNote(BAD_VKEY, "the key ID does not match the name and key")
    return key


_SKEY_PREFIX = "PRIVATE+KEY+"


@dataclass(frozen=True)
class SignerKey:
    """A signing key as a Go note skey names it: the key name, the signature type and the private key."""

    name: str
    signature_type: int
    private_key: Ed25519PrivateKey

    @property
    def verifier(self) -> VerifierKey:
        return verifier_key(self.name, self.private_key, self.signature_type)


def format_skey(key: SignerKey) -> str:
    """`PRIVATE+KEY+<name>+<hex key ID>+<base64(type || 32-byte seed)>` (golang.org/x/mod/sumdb/note)."""
    seed = key.private_key.private_bytes_raw()
    return f"{_SKEY_PREFIX}{key.name}+{key.verifier.key_id:08x}+{_b64encode(bytes([key.signature_type]) + seed)}"


def parse_skey(text: str) -> SignerKey:
    """The signing key an skey text holds; its key ID must match, as for a vkey."""
    if not text.startswith(_SKEY_PREFIX):
        raise InvalidNote(BAD_VKEY, "a signing key starts with PRIVATE+KEY+")
    name, hex_id, material = _key_parts(
        text[len(_SKEY_PREFIX) :], "a signing key is PRIVATE+KEY+<name>+<8 hex digits>+<base64 key>"
    )
    if len(material) != 33 or material[0] not in SIGNATURE_TYPES:
        raise InvalidNote(BAD_VKEY, "an Ed25519 signing key is a type byte and a 32-byte seed")
    key = SignerKey(name, material[0], Ed25519PrivateKey.from_private_bytes(material[1:]))
    if key.verifier.key_id != int(hex_id, 16):
        raise InvalidNote(BAD_VKEY, "the key ID does not match the name and key")
    return key


@dataclass(frozen=True)
class Signature:
    """One signature line: key name, key ID and the signature bytes after the key ID."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> str:
        """The line as it appears in a note, newline included."""
        return f"{_SIGNATURE_PREFIX}{self.name} {_b64encode(self.key_id.to_bytes(4, 'big') + self.signature)}\n"

    @property
    def timestamp(self) -> int | None:
        """The time of a cosignature/v1 signature (its first 8 bytes), None for other lengths."""
        if len(self.signature) != 8 + _ED25519_SIGNATURE_BYTES:
            return None
        return int.from_bytes(self.signature[:8], "big")


@dataclass(frozen=True)
class Note:
    """An opened note: its text, the signatures verified by known keys, and the others (ignored)."""

    text: str
    verified: tuple[Signature, ...]
    unverified: tuple[Signature, ...]


def _malformed(message: str) -> InvalidNote:
    return InvalidNote(MALFORMED, message)


def parse_note(message: str | bytes) -> tuple[str, list[Signature]]:
    """Split a signed note into its text and signature lines, checking syntax only (nothing is verified)."""
    if isinstance(message, bytes):
        try:
            message = message.decode("utf-8")
        except UnicodeDecodeError:
            raise _malformed("not UTF-8") from None
    if not _valid_text(message):
        raise _malformed("control characters")
    split = message.rfind("\n\n")
    if split < 0:
        raise _malformed("no blank line before the signatures")
    text, block = message[: split + 1], message[split + 2 :]
    if not block or not block.endswith("\n"):
        raise _malformed("no signature lines, or no final newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise _malformed(f"more than {MAX_SIGNATURES} signatures")
    signatures = []
    for line in lines:
        if not line.startswith(_SIGNATURE_PREFIX):
            raise _malformed("a line after the blank line is not a signature")
        name, space, b64 = line[len(_SIGNATURE_PREFIX) :].partition(" ")
        if not space or not valid_key_name(name):
            raise _malformed("invalid key name")
        try:
            raw = _b64decode(b64)
        except ValueError:
            raise _malformed("the signature is not base64") from None
        if len(raw) < 5:
            raise _malformed("signature too short")
        signatures.append(Signature(name, int.from_bytes(raw[:4], "big"), raw[4:]))
    return text, signatures


def cosigned_message(text: str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: the header line, the time line, then the checkpoint text."""
    return f"{_COSIGNATURE_HEADER}time {timestamp}\n{text}".encode()


def _verifies(key: VerifierKey, text: str, signature: bytes) -> bool:
    public = Ed25519PublicKey.from_public_bytes(key.public_key)
    if key.signature_type == COSIGNATURE_V1:
        if len(signature) != 8 + _ED25519_SIGNATURE_BYTES:
            return False
        timestamp = int.from_bytes(signature[:8], "big")
        if timestamp > MAX_TIMESTAMP:
            return False
        message, signature = cosigned_message(text, timestamp), signature[8:]
    else:
        message = text.encode("utf-8")
    if len(signature) != _ED25519_SIGNATURE_BYTES:
        return False
    try:
        public.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def open_note(message: str | bytes, known: Iterable[VerifierKey]) -> Note:
    """Verify a signed note against known keys: others are ignored, a known key's bad signature rejects it all.

    At least one signature by a known key must verify. A known key is matched by name and key ID
    together. Repeated lines are kept once.
    """
    text, signatures = parse_note(message)
    keys: dict[tuple[str, int], VerifierKey] = {}
    for key in known:
        other = keys.setdefault((key.name, key.key_id), key)
        if other != key:
            raise ValueError(f"two known keys share the name and key ID {key.name}+{key.key_id:08x}")
    verified: list[Signature] = []
    unverified: list[Signature] = []
    for signature in signatures:
        known_key = keys.get((signature.name, signature.key_id))
        if known_key is None:
            if signature not in unverified:
                unverified.append(signature)
            continue
        if not _verifies(known_key, text, signature.signature):
            raise InvalidNote(BAD_SIGNATURE, f"invalid signature by {signature.name}+{signature.key_id:08x}")
        if signature not in verified:
            verified.append(signature)
    if not verified:
        raise InvalidNote(UNVERIFIED, "no signature by a known key")
    return Note(text, tuple(verified), tuple(unverified))


def _check_text(text: str) -> None:
    if not text.endswith("\n") or not _valid_text(text):
        raise _malformed("a note text ends with a newline and has no control characters")


def sign_text(text: str, name: str, private_key: Ed25519PrivateKey) -> Signature:
    """The Ed25519 (type 0x01) note signature of `text` by `name`."""
    _check_text(text)
    key = verifier_key(name, private_key)
    return Signature(name, key.key_id, private_key.sign(text.encode("utf-8")))


def cosign_text(text: str, name: str, private_key: Ed25519PrivateKey, timestamp: int) -> Signature:
    """The cosignature/v1 (type 0x04) of a checkpoint `text` by `name` at POSIX time `timestamp`."""
    _check_text(text)
    parse_checkpoint(text)
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError(f"timestamp {timestamp} out of range")
    key = verifier_key(name, private_key, COSIGNATURE_V1)
    signature = private_key.sign(cosigned_message(text, timestamp))
    return Signature(name, key.key_id, timestamp.to_bytes(8, "big") + signature)


def format_note(text: str, signatures: Iterable[Signature]) -> str:
    """A signed note: the text, a blank line, the signature lines (at least one)."""
    _check_text(text)
    lines = [signature.line() for signature in signatures]
    if not lines or len(lines) > MAX_SIGNATURES:
        raise _malformed(f"a note has 1 to {MAX_SIGNATURES} signatures")
    return text + "\n" + "".join(lines)


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """`text` signed by one Ed25519 key: the whole note."""
    return format_note(text, [sign_text(text, name, private_key)])


@dataclass(frozen=True)
class Checkpoint:
    """A log's signed tree head: origin, tree size, root hash and (not recommended) extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()


def format_checkpoint(checkpoint: Checkpoint) -> str:
    """The note text of a checkpoint: `<origin>\\n<size>\\n<base64 root>\\n` then the extension lines."""
    text = f"{checkpoint.origin}\n{checkpoint.size}\n{_b64encode(checkpoint.root)}\n"
    text += "".join(line + "\n" for line in checkpoint.extensions)
    if parse_checkpoint(text) != checkpoint:
        raise InvalidNote(BAD_CHECKPOINT, "the checkpoint does not format to itself")
    return text


def parse_checkpoint(text: str) -> Checkpoint:
    """The checkpoint a note text holds (the text of an opened note, not the signed note itself)."""
    if not text.endswith("\n") or not _valid_text(text):
        raise InvalidNote(BAD_CHECKPOINT, "a checkpoint is newline-terminated lines without control characters")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or not all(lines):
        raise InvalidNote(BAD_CHECKPOINT, "a checkpoint is at least three non-empty lines")
    origin, size, root = lines[:3]
    if not re.fullmatch(r"0|[1-9][0-9]{0,18}", size) or int(size) > 2**63 - 1:
        raise InvalidNote(BAD_CHECKPOINT, "the size is a decimal without leading zeroes")
    try:
        root_hash = _b64decode(root)
    except ValueError:
        raise InvalidNote(BAD_CHECKPOINT, "the root hash is not base64") from None
    if len(root_hash) != merkle.HASH_SIZE:
        raise InvalidNote(BAD_CHECKPOINT, f"the root hash is not {merkle.HASH_SIZE} bytes")
    return Checkpoint(origin, int(size), root_hash, tuple(lines[3:]))
