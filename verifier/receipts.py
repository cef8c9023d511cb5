"""Scan receipts ("verifier-receipt/1"): one scan's log entry, and its inclusion proof against a
signed checkpoint, as a JSON document the consumer keeps and anyone checks offline.

Pure: values in, values out. A receipt is made from what the log holds (`build`): the entry's
leaf index and leaf data, the checkpoint note that covers it (with any witness cosignatures) and
the RFC 9162 inclusion proof. The summary fields (serial, printed code, check number, time,
verdict) are a convenience for the reader: `verify` recomputes each from the leaf data and refuses
a receipt whose summary says anything else. Reaching a receipt takes a capability, the scan id
and a truncated HMAC of it (`token`): a receipt holds a serial, which answers a typed-code lookup,
so receipts must not be enumerable. Format and rules: docs/transparency-log.md, docs/lookup.md.

    {"format": "verifier-receipt/1", "state": "complete" | "pending", "scan": 123,
     "serial": "0000000031415926", "code": "3141 5926 5358 97934", "check": 2,
     "at": "2026-11-22T08:00:00.000+00:00", "verdict": "genuine-repeat",
     "index": 41, "leaf": "<base64 leaf data>",
     "checkpoint": "<signed checkpoint note>", "proof": ["<base64 hash>", ...]}

"pending": the entry is not in a signed checkpoint yet (`checkpoint` and `proof` are null), or
not in the log yet (PostgreSQL, for the moment the sequencer takes: `index`, `leaf` and the
summary are null too). Every refusal is an `InvalidReceipt` with a stable machine `reason`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from . import codes, logentry, merkle, note

FORMAT = "verifier-receipt/1"
COMPLETE = "complete"
PENDING = "pending"
SCAN_KIND = "scan"
MAX_PROOF = 64  # a tree of 2**63 leaves needs 63 hashes
MAX_LEAF_BYTES = 64 * 1024
MAX_NOTE_BYTES = 64 * 1024
TOKEN_MAC_HEX = 32  # 128 bits of HMAC-SHA256: unguessable, short enough for a link
_TOKEN_CONTEXT = b"verifier-receipt-token\x00"  # this instance's secret also keys other hashes
_TOKEN_RE = re.compile(r"([1-9][0-9]{0,18})-([0-9a-f]{32})", re.ASCII)

# The machine reasons of InvalidReceipt.
NOT_A_RECEIPT = "not-a-receipt"  # not a JSON object of this format: the CLI's exit status 2
MALFORMED = "malformed"  # a field missing or of the wrong type or encoding
RECEIPT_PENDING = "pending"  # well formed, but nothing proven yet: the CLI's exit status 3
BAD_CHECKPOINT = "bad-checkpoint"  # the note is not signed by the log key, or is not a checkpoint
TOO_FEW_COSIGNATURES = "too-few-cosignatures"  # fewer known witnesses cosigned it than asked
BAD_PROOF = "bad-proof"  # the leaf is not at that index of the checkpoint's tree
BAD_LEAF = "bad-leaf"  # the leaf data is not a scan entry
SUMMARY_MISMATCH = "summary-mismatch"  # a summary field differs from what the leaf says


class InvalidReceipt(ValueError):
    """A receipt that proves nothing, or not what it claims; `reason` is one of the constants above."""

    def __init__(self, reason: str, message: str = ""):
        super().__init__(message or reason)
        self.reason = reason


@dataclass(frozen=True)
class ScanEntry:
    """What a scan's leaf data says: the entry's time and the scan's recorded fields."""

    at: str
    scan_id: int
    serial: int | None
    checks: int | None
    reason: str


@dataclass(frozen=True)
class Proven:
    """What a verified receipt proves: this scan is entry `index` of the log `origin`, in its
    signed checkpoint of `size` entries (`root`), cosigned by `cosigners` (witness key names)."""

    scan_id: int
    serial: int | None
    code: str | None
    check: int | None
    at: str
    verdict: str
    index: int
    origin: str
    size: int
    root: bytes
    cosigners: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "scan": self.scan_id,
            "serial": _serial_text(self.serial),
            "code": self.code,
            "check": self.check,
            "at": self.at,
            "verdict": self.verdict,
            "index": self.index,
            "origin": self.origin,
            "size": self.size,
            "root": _b64(self.root),
            "cosigners": list(self.cosigners),
        }


# --- capabilities ------------------------------------------------------------------------


def token(key: bytes, scan_id: int) -> str:
    """The receipt's capability: `<scan id>-<HMAC-SHA256(key, context || scan id), 128 bits in hex>`."""
    if not 0 < scan_id < 2**63:
        raise ValueError(f"no scan id {scan_id}")
    return f"{scan_id}-{_token_mac(key, scan_id)}"


def scan_of_token(key: bytes, text: str) -> int | None:
    """The scan id a token was made for, or None (not a token, or not one of this key's)."""
    match = _TOKEN_RE.fullmatch(text)
    if match is None or int(match[1]) >= 2**63:
        return None
    scan_id = int(match[1])
    return scan_id if hmac.compare_digest(match[2], _token_mac(key, scan_id)) else None


def _token_mac(key: bytes, scan_id: int) -> str:
    return hmac.new(key, _TOKEN_CONTEXT + str(scan_id).encode(), hashlib.sha256).hexdigest()[:TOKEN_MAC_HEX]


# --- leaf data -----------------------------------------------------------------------------


def parse_scan_leaf(leaf: bytes) -> ScanEntry:
    """The scan a leaf's data records (logentry.leaf_bytes of a "scan" entry); InvalidReceipt(BAD_LEAF) otherwise."""
    try:
        entry = logentry.parse_leaf(leaf)
    except ValueError as exc:
        raise InvalidReceipt(BAD_LEAF, f"the leaf data is not a log entry: {exc}") from None
    kind, at, body_text = entry.kind, entry.at, entry.body
    if kind != SCAN_KIND:
        raise InvalidReceipt(BAD_LEAF, f"the entry is a {kind!r} entry, not a scan")
    try:
        body = json.loads(body_text)
    except ValueError:
        raise InvalidReceipt(BAD_LEAF, "the entry's body is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidReceipt(BAD_LEAF, "the entry's body is not a JSON object")
    scan_id, serial, checks, reason = (body.get(k) for k in ("id", "serial", "checks", "reason"))
    if not _is_count(scan_id) or not _is_count(serial, optional=True) or not _is_count(checks, optional=True):
        raise InvalidReceipt(BAD_LEAF, "the scan's id, serial or check count is not a number")
    if not isinstance(reason, str) or not reason or body.get("at") != at:
        raise InvalidReceipt(BAD_LEAF, "the scan's verdict or time is missing or differs from the entry's")
    return ScanEntry(at, scan_id, serial, checks, reason)


def _is_count(value: object, optional: bool = False) -> TypeGuard[int]:
    """A whole number of JSON (not a boolean) in 0 .. 2**63 - 1; or None when `optional` (then
    the guard's "int" means "int or None", which is what the callers take)."""
    if value is None:
        return optional
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


# --- making one ----------------------------------------------------------------------------


def build(
    scan_id: int,
    index: int | None = None,
    leaf: bytes | None = None,
    checkpoint: str | None = None,
    proof: Sequence[bytes] | None = None,
) -> dict[str, Any]:
    """A receipt for scan `scan_id`: its entry `index` and `leaf` data once the log holds it, and
    the checkpoint note and inclusion proof once a signed checkpoint covers it ("complete")."""
    receipt: dict[str, Any] = {"format": FORMAT, "state": PENDING, "scan": scan_id}
    receipt.update(dict.fromkeys(("serial", "code", "check", "at", "verdict", "index", "leaf")))
    receipt.update(checkpoint=None, proof=None)
    if index is None or leaf is None:
        return receipt
    entry = parse_scan_leaf(leaf)
    if entry.scan_id != scan_id:
        raise ValueError(f"entry {index} records scan {entry.scan_id}, not scan {scan_id}")
    receipt.update(_summary(entry), index=index, leaf=_b64(leaf))
    if checkpoint is not None and proof is not None:
        receipt.update(state=COMPLETE, checkpoint=checkpoint, proof=[_b64(h) for h in proof])
    return receipt


def _summary(entry: ScanEntry) -> dict[str, object]:
    return {
        "serial": _serial_text(entry.serial),
        "code": _code(entry.serial),
        "check": entry.checks,
        "at": entry.at,
        "verdict": entry.reason,
    }


def _serial_text(serial: int | None) -> str | None:
    return None if serial is None else f"{serial:016d}"


def _code(serial: int | None) -> str | None:
    if serial is None:
        return None
    try:
        return codes.human_code(serial)
    except ValueError:  # a forged code's serial beyond 16 digits: it has no printed form
        return None


def dumps(receipt: Mapping[str, Any]) -> str:
    """The receipt file's text: indented JSON, keys in the documented order, a final newline."""
    return json.dumps(receipt, ensure_ascii=False, indent=2) + "\n"


# --- checking one --------------------------------------------------------------------------


def loads(text: str | bytes) -> dict[str, Any]:
    """A receipt file's JSON object; InvalidReceipt(NOT_A_RECEIPT) for anything that is not one."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidReceipt(NOT_A_RECEIPT, "not JSON") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidReceipt(NOT_A_RECEIPT, f"not a {FORMAT} document")
    return data


def verify(
    receipt: Mapping[str, Any],
    log_vkeys: Iterable[note.VerifierKey],
    witnesses: Iterable[note.VerifierKey] = (),
    min_cosignatures: int = 0,
) -> Proven:
    """Check a receipt offline: the checkpoint is signed by a log key (and cosigned by at least
    `min_cosignatures` of `witnesses`), the leaf is entry `index` of its tree, and every summary
    field says what the leaf says. What it proves, or InvalidReceipt with the reason."""
    if not isinstance(receipt, Mapping) or receipt.get("format") != FORMAT:
        raise InvalidReceipt(NOT_A_RECEIPT, f"not a {FORMAT} document")
    log_keys, witness_keys = list(log_vkeys), list(witnesses)
    state = receipt.get("state")
    if state not in (COMPLETE, PENDING):
        raise InvalidReceipt(MALFORMED, "state is neither complete nor pending")
    if state == PENDING:
        raise InvalidReceipt(RECEIPT_PENDING, "the scan is not in a signed checkpoint yet: fetch the receipt again")
    scan_id, index = receipt.get("scan"), receipt.get("index")
    if not _is_count(scan_id) or not _is_count(index):
        raise InvalidReceipt(MALFORMED, "scan and index are whole numbers")
    leaf = _b64_field(receipt.get("leaf"), "leaf", MAX_LEAF_BYTES)
    proof = receipt.get("proof")
    if not isinstance(proof, list) or len(proof) > MAX_PROOF:
        raise InvalidReceipt(MALFORMED, f"proof is a list of at most {MAX_PROOF} hashes")
    hashes = [_b64_field(h, "a proof hash", merkle.HASH_SIZE) for h in proof]
    if any(len(h) != merkle.HASH_SIZE for h in hashes):
        raise InvalidReceipt(MALFORMED, f"a proof hash is {merkle.HASH_SIZE} bytes")
    signed, cosigners = _open_checkpoint(receipt.get("checkpoint"), log_keys, witness_keys)
    if len(cosigners) < min_cosignatures:
        raise InvalidReceipt(
            TOO_FEW_COSIGNATURES, f"{len(cosigners)} known witnesses cosigned the checkpoint, {min_cosignatures} asked"
        )
    try:
        merkle.verify_inclusion(merkle.leaf_hash(leaf), index, signed.size, hashes, signed.root)
    except merkle.InvalidProof as exc:
        raise InvalidReceipt(BAD_PROOF, f"the leaf is not entry {index} of the checkpoint ({exc.reason})") from None
    entry = parse_scan_leaf(leaf)
    expected = {"scan": entry.scan_id, **_summary(entry)}
    for field, value in expected.items():
        if receipt.get(field) != value or type(receipt.get(field)) is not type(value):
            raise InvalidReceipt(SUMMARY_MISMATCH, f"{field} is not what the log entry records")
    return Proven(
        entry.scan_id,
        entry.serial,
        _code(entry.serial),
        entry.checks,
        entry.at,
        entry.reason,
        index,
        signed.origin,
        signed.size,
        signed.root,
        cosigners,
    )


def _open_checkpoint(
    text: object, log_keys: list[note.VerifierKey], witness_keys: list[note.VerifierKey]
) -> tuple[note.Checkpoint, tuple[str, ...]]:
    """The checkpoint a note holds, signed by a log key named as its origin, and the names of the
    known witnesses whose cosignatures verify."""
    if not isinstance(text, str) or len(text.encode("utf-8")) > MAX_NOTE_BYTES:
        raise InvalidReceipt(MALFORMED, "checkpoint is a signed note")
    try:
        opened = note.open_note(text, log_keys)
        checkpoint = note.parse_checkpoint(opened.text)
    except note.InvalidNote as exc:
        raise InvalidReceipt(BAD_CHECKPOINT, f"the checkpoint is not signed by the log key ({exc.reason})") from None
    if not any(s.name == checkpoint.origin for s in opened.verified):
        raise InvalidReceipt(BAD_CHECKPOINT, "the checkpoint's origin is not the name of the key that signed it")
    cosigners: list[str] = []
    if witness_keys:
        try:
            witnessed = note.open_note(text, witness_keys)
        except note.InvalidNote as exc:
            if exc.reason != note.UNVERIFIED:  # a known witness's bad cosignature: the note is altered
                raise InvalidReceipt(BAD_CHECKPOINT, f"a witness cosignature does not verify ({exc.reason})") from None
        else:
            cosigners = sorted({s.name for s in witnessed.verified})
    return checkpoint, tuple(cosigners)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def canonical_b64(value: object, limit: int) -> bytes:
    """Standard base64 in its one canonical spelling, at most `limit` bytes decoded; ValueError
    (saying what it is not) otherwise. Receipts and case exports read their proofs with it."""
    if not isinstance(value, str) or len(value) > 4 * (limit // 3 + 1):
        raise ValueError(f"is not base64 of at most {limit} bytes")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not base64") from None
    if _b64(raw) != value or len(raw) > limit:
        raise ValueError(f"is not canonical base64 of at most {limit} bytes")
    return raw


def _b64_field(value: object, what: str, limit: int) -> bytes:
    try:
        return canonical_b64(value, limit)
    except ValueError as exc:
        raise InvalidReceipt(MALFORMED, f"{what} {exc}") from None
