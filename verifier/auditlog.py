"""The tamper-evident log: every scan and administrative action, hash-chained, append-only.

Entry hash = SHA-256 of the previous hash and the entry's fields (see `entry_hash`). Personal
data is not in the chain itself: an entry commits to SHA-256(salt ‖ personal fields), so the
retention purge can erase those fields (and the salt) while the chain still verifies. Triggers
refuse UPDATE and DELETE on the log. Checkpoints (sequence number + head hash) are signed with a
log key, which is never an issuing key, and exported off the host: they detect truncation and a
rewritten chain.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import clock, db, replay
from .keys import KeyRecord
from .repos import log
from .repos.scans import PERSONAL_FIELDS, SCAN_FIELDS

GENESIS = "0" * 64
CHECKPOINT_CONTEXT = b"verifier.log-checkpoint\x00"  # these signatures mean nothing elsewhere


def canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(prev_hash: str, seq: int, at: str, kind: str, actor: str, personal_hash: str, body: str) -> str:
    """The hash that chains entry `seq` to its predecessor."""
    text = f"{prev_hash}\n{seq}\n{at}\n{kind}\n{actor}\n{personal_hash}\n{body}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def personal_hash(salt: str, personal: Mapping[str, object]) -> str:
    """The commitment to a scan's personal fields; the salt stops guessing them from the hash."""
    return hashlib.sha256(f"{salt}\n{canonical({k: personal.get(k) for k in PERSONAL_FIELDS})}".encode()).hexdigest()


def head(conn: db.Conn) -> tuple[int, str]:
    """The log's last sequence number and hash ((0, GENESIS) for an empty log)."""
    return log.head(conn) or (0, GENESIS)


def append(
    conn: db.Conn,
    kind: str,
    body: Mapping[str, object],
    at: str,
    actor: str = "",
    personal_commitment: str = "",
) -> int | None:
    """Append one entry inside the caller's write transaction; its sequence number, or None on
    PostgreSQL, where the entry is queued for the sequencer (verifier/sequencer.py) to chain."""
    if "\n" in kind or "\n" in actor or "\n" in at:
        raise ValueError("log fields cannot hold line breaks")
    if not db.sequences_inline(conn):
        log.queue(conn, at, kind, actor, canonical(body), personal_commitment)
        return None
    seq, prev = head(conn)
    seq += 1
    body_text = canonical(body)
    digest = entry_hash(prev, seq, at, kind, actor, personal_commitment, body_text)
    log.insert(conn, seq, at, kind, actor, body_text, personal_commitment, prev, digest)
    return seq


def append_scan(conn: db.Conn, scan: Mapping[str, object], salt: str) -> int | None:
    """A scan's entry, inside the transaction that inserts the scan: its sequence number on SQLite;
    None on PostgreSQL, where the sequencer chains the scan row itself once it is committed."""
    if not db.sequences_inline(conn):
        return None
    at = str(scan["at"])
    return append(conn, "scan", scan_body(scan), at, personal_commitment=personal_hash(salt, scan))


def new_salt() -> str:
    return secrets.token_hex(16)


def scan_body(scan: Mapping[str, object]) -> dict[str, object]:
    """What the chain records of a scan: everything but the personal fields."""
    return {field: scan.get(field) for field in SCAN_FIELDS}


# --- verification -------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    seq: int
    what: str


@dataclass(frozen=True)
class Report:
    entries: int
    head_seq: int
    head_hash: str
    problems: tuple[Problem, ...]
    pending: int = 0  # written but not chained yet (PostgreSQL's sequencer): neither valid nor tampered
    retired_below: int = 0  # scans below this id were retired (their partitions dropped); their entries stay

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_seq(self) -> int | None:
        return min((p.seq for p in self.problems), default=None)


def verify(
    conn: db.Conn,
    checkpoints: list[dict[str, Any]] | None = None,
    log_keys: Mapping[str, Ed25519PublicKey] | None = None,
    max_problems: int = 20,
    keyring: Sequence[KeyRecord] | None = None,
) -> Report:
    """Recompute the chain, compare scans with their entries, check signed checkpoints, all on one
    snapshot of the database. Entries the sequencer has not chained yet are counted as pending."""
    with db.read_snapshot(conn):
        return _verify(conn, checkpoints, log_keys, max_problems, keyring)


def _verify(
    conn: db.Conn,
    checkpoints: list[dict[str, Any]] | None,
    log_keys: Mapping[str, Ed25519PublicKey] | None,
    max_problems: int,
    keyring: Sequence[KeyRecord] | None,
) -> Report:
    problems: list[Problem] = []
    expected_seq, prev, count = 1, GENESIS, 0
    hashes_at: dict[int, str] = {}
    wanted = {int(c["seq"]) for c in checkpoints or []}
    replayed = replay.Replay()
    for seq, at, kind, actor, body, p_hash, stored_prev, stored_hash in log.entries(conn):
        count += 1
        replayed.feed(seq, at, kind, actor, body)
        if seq != expected_seq:
            problems.append(Problem(expected_seq, f"entries {expected_seq}..{seq - 1} are missing"))
        elif stored_prev != prev:
            problems.append(Problem(seq, "does not chain to the entry before it (reordered or replaced)"))
        if entry_hash(stored_prev, seq, at, kind, actor, p_hash, body) != stored_hash:
            problems.append(Problem(seq, "its content does not match its hash (edited)"))
        if seq in wanted:
            hashes_at[seq] = stored_hash
        prev, expected_seq = stored_hash, seq + 1
        if len(problems) >= max_problems:
            break
    head_seq = expected_seq - 1
    problems += _check_scans(conn, max_problems)
    problems += [Problem(d.seq, d.what) for d in replayed.compare(conn, keyring, max_problems)]
    retired = retired_below(conn)
    scan_entries, linked = log.scan_entry_counts(conn, retired)
    if scan_entries != linked and not problems:  # each linked scan matched a distinct entry above
        problems.append(Problem(head_seq, f"{scan_entries - linked} scan entries have lost their scan (unlinked)"))
    for checkpoint in checkpoints or []:
        problems += _check_checkpoint(checkpoint, head_seq, hashes_at, log_keys or {})
    pending = log.pending_count(conn)
    return Report(count, head_seq, prev, tuple(sorted(problems, key=lambda p: p.seq)), pending, retired)


def retired_below(conn: db.Conn) -> int:
    """The id below which scans were retired by a chained `scans.retired` entry (0: none). Only
    PostgreSQL retires scans (a partition dropped); the entries of retired scans stay in the chain."""
    if not db.is_postgres_conn(conn):
        return 0
    bounds = [json.loads(body).get("below_id", 0) for body in log.retirements(conn)]
    return max((b for b in bounds if isinstance(b, int)), default=0)


def _check_scans(conn: db.Conn, limit: int) -> list[Problem]:
    """Every scan row must equal what its log entry recorded (and its personal fields, unless
    purged); scans still waiting for the sequencer (PostgreSQL) are pending, not checked."""
    problems: list[Problem] = []
    names = SCAN_FIELDS + PERSONAL_FIELDS
    for log_seq, salt, body, p_hash, queued, *values in log.scans_with_entries(conn, names):
        scan = dict(zip(names, values))
        if body is None and queued:
            continue  # written, not chained yet
        if body is None:
            problems.append(Problem(log_seq or 0, f"scan {scan['id']} has no log entry"))
        elif canonical(scan_body(scan)) != body:
            problems.append(Problem(log_seq, f"scan {scan['id']} differs from its log entry (edited)"))
        elif salt is not None and personal_hash(salt, scan) != p_hash:
            problems.append(Problem(log_seq, f"scan {scan['id']}'s personal fields were edited"))
        elif salt is None and any(scan[f] is not None for f in PERSONAL_FIELDS):
            problems.append(Problem(log_seq, f"scan {scan['id']} has personal fields but no salt (edited)"))
        if len(problems) >= limit:
            break
    return problems


def checkpoint_message(seq: int, head_hash: str, at: str) -> bytes:
    return CHECKPOINT_CONTEXT + canonical({"seq": seq, "head": head_hash, "at": at}).encode()


CHECKPOINT_FORMAT = "verifier-log-checkpoint/1"
_HEX64 = re.compile(r"[0-9a-f]{64}", re.ASCII)
_HEX128 = re.compile(r"[0-9a-f]{128}", re.ASCII)


def parse_checkpoint(data: object) -> dict[str, Any]:
    """A checkpoint read from a file, checked field by field; ValueError says what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    if "format" in data and data["format"] != CHECKPOINT_FORMAT:
        raise ValueError(f"format is {data['format']!r}, expected {CHECKPOINT_FORMAT!r}")
    missing = [k for k in ("seq", "head", "at", "kid", "signature") if k not in data]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    seq, head, at, kid, signature = (data[k] for k in ("seq", "head", "at", "kid", "signature"))
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2**63:
        raise ValueError("seq is not a sequence number")
    if not isinstance(head, str) or not _HEX64.fullmatch(head):
        raise ValueError("head is not a SHA-256 in lower-case hex")
    if not isinstance(at, str) or not at:
        raise ValueError("at is not a time")
    if not isinstance(kid, str) or not kid:
        raise ValueError("kid is not a key id")
    if not isinstance(signature, str) or not _HEX128.fullmatch(signature):
        raise ValueError("signature is not an Ed25519 signature in lower-case hex")
    return {"seq": seq, "head": head, "at": at, "kid": kid, "signature": signature}


def sign_checkpoint(conn: db.Conn, private_key: Ed25519PrivateKey, kid: str, now: dt.datetime) -> dict[str, Any]:
    """A signed statement of the log's current head; store it and export it off the host."""
    seq, head_hash = head(conn)
    at = clock.utc_text(now)
    signature = private_key.sign(checkpoint_message(seq, head_hash, at)).hex()
    return {"format": CHECKPOINT_FORMAT, "seq": seq, "head": head_hash, "at": at, "kid": kid, "signature": signature}


def stored_checkpoints(conn: db.Conn) -> list[dict[str, Any]]:
    """The checkpoints kept in the database (`verify` checks them with those exported off the host)."""
    return log.checkpoints(conn)


def _check_checkpoint(
    checkpoint: Mapping[str, Any], head_seq: int, hashes_at: Mapping[int, str], log_keys: Mapping[str, Ed25519PublicKey]
) -> list[Problem]:
    seq = int(checkpoint["seq"])
    key = log_keys.get(str(checkpoint.get("kid")))
    if key is None:
        return [Problem(seq, f"checkpoint {seq} is signed by unknown log key {checkpoint.get('kid')!r}")]
    try:
        key.verify(
            bytes.fromhex(checkpoint["signature"]), checkpoint_message(seq, checkpoint["head"], checkpoint["at"])
        )
    except (InvalidSignature, ValueError):
        return [Problem(seq, f"checkpoint {seq} has a bad signature (forged or altered)")]
    if seq > head_seq:
        return [Problem(head_seq + 1, f"the log ends at {head_seq} but a signed checkpoint covers {seq} (truncated)")]
    if seq and hashes_at.get(seq) != checkpoint["head"]:
        return [Problem(seq, f"entry {seq} differs from the signed checkpoint (the chain was rewritten)")]
    return []
