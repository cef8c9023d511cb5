"""The tamper-evident log: every scan and every fact that decides a verdict or access, as the
leaves of a Merkle tree (RFC 9162, verifier/logtree.py) with signed checkpoints.

An entry is (seq, at, kind, actor, personal commitment, canonical JSON body); its leaf data is
`logentry.leaf_bytes`. Personal data is not in the log itself: a scan's entry commits to
SHA-256(salt ‖ personal fields), so the retention purge can erase those fields (and the salt)
while the log still verifies. Triggers refuse UPDATE and DELETE on the log and the tree.
`verify` recomputes every leaf and every stored subtree hash, checks the signed checkpoints
(C2SP notes by the log key), compares each scan with its entry, and replays the log against the
state tables (verifier/replay.py).

Entries written before the Merkle tree (migration 010) also carry a hash chain (prev_hash,
hash); `verify` still checks it, so checkpoints signed over the chain's head stay verifiable.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from . import db, logtree, merkle, note, replay
from .keys import KeyRecord
from .logentry import MAX_LEAF_BYTES, leaf_bytes
from .repos import log, tree
from .repos.scans import CLAIM_FIELDS, PERSONAL_FIELDS, SCAN_FIELDS

GENESIS = "0" * 64  # the legacy chain's "previous hash" of its first entry
CHECKPOINT_CONTEXT = b"verifier.log-checkpoint\x00"  # legacy checkpoints' signatures mean nothing elsewhere


def canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def personal_hash(salt: str, personal: Mapping[str, object]) -> str:
    """The commitment to a scan's personal fields; the salt stops guessing them from the hash."""
    return hashlib.sha256(f"{salt}\n{canonical({k: personal.get(k) for k in PERSONAL_FIELDS})}".encode()).hexdigest()


def head(conn: db.Conn) -> tuple[int, str]:
    """The log's last sequence number and its stored hash ((0, GENESIS) for an empty log)."""
    return log.head(conn) or (0, GENESIS)


def new_entry_hash(kind: str, at: str, actor: str, personal_commitment: str, body_text: str) -> str:
    """What an entry written since the Merkle tree stores as its hash: its leaf hash, in hex."""
    return merkle.leaf_hash(leaf_bytes(kind, at, actor, personal_commitment, body_text)).hex()


def append(
    conn: db.Conn,
    kind: str,
    body: Mapping[str, object],
    at: str,
    actor: str = "",
    personal_commitment: str = "",
) -> int | None:
    """Append one entry inside the caller's write transaction; its sequence number, or None on
    PostgreSQL, where the entry is queued for the sequencer (verifier/sequencer.py) to number."""
    if "\n" in kind or "\n" in actor or "\n" in at or "\n" in personal_commitment:
        raise ValueError("log fields cannot hold line breaks")
    body_text = canonical(body)
    if len(leaf_bytes(kind, at, actor, personal_commitment, body_text)) > MAX_LEAF_BYTES:
        raise ValueError(f"a log entry is at most {MAX_LEAF_BYTES} bytes")
    if not db.sequences_inline(conn):
        log.queue(conn, at, kind, actor, body_text, personal_commitment)
        return None
    seq = log.last_seq(conn) + 1
    digest = new_entry_hash(kind, at, actor, personal_commitment, body_text)
    log.insert(conn, seq, at, kind, actor, body_text, personal_commitment, "", digest)
    return seq


def append_many(conn: db.Conn, entries: Sequence[tuple[str, Mapping[str, object], str, str]]) -> None:
    """Append (kind, body, at, actor) entries in order, as `append` does one by one, with one
    statement for all of them (a capture of 500 events logs 500 entries)."""
    rows = []
    for kind, body, at, actor in entries:
        if "\n" in kind or "\n" in actor or "\n" in at:
            raise ValueError("log fields cannot hold line breaks")
        body_text = canonical(body)
        if len(leaf_bytes(kind, at, actor, "", body_text)) > MAX_LEAF_BYTES:
            raise ValueError(f"a log entry is at most {MAX_LEAF_BYTES} bytes")
        rows.append((at, kind, actor, body_text))
    if not db.sequences_inline(conn):
        log.queue_many(conn, [(at, kind, actor, body_text, "") for at, kind, actor, body_text in rows])
        return
    seq = log.last_seq(conn)
    inserted = []
    for at, kind, actor, body_text in rows:
        seq += 1
        digest = new_entry_hash(kind, at, actor, "", body_text)
        inserted.append((seq, at, kind, actor, body_text, "", "", digest))
    log.insert_many(conn, inserted)


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
    """What the chain records of a scan: everything but the personal fields; a code's claims only
    when it made them, so scans logged before claims were recorded still equal their entries."""
    body = {field: scan.get(field) for field in SCAN_FIELDS}
    for claim in CLAIM_FIELDS:
        if body[claim] is None:
            del body[claim]
    return body


# --- verification -------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    seq: int
    what: str


@dataclass(frozen=True)
class Report:
    entries: int
    head_seq: int
    head_hash: str  # the root hash of the tree over every entry (hex)
    problems: tuple[Problem, ...]
    pending: int = 0  # written but not in the tree yet (the sequencer is behind): neither valid nor tampered
    retired_below: int = 0  # scans below this id were retired (their partitions dropped); their entries stay
    tree_size: int = 0  # entries the stored tree covers
    checkpoints: int = 0  # signed checkpoints checked (stored and given)
    legacy_chain: int = 0  # entries 1..legacy_chain carry the pre-Merkle hash chain
    unchecked_checkpoints: int = 0  # checkpoint notes not checked: no log key was given

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_seq(self) -> int | None:
        """The first entry named; 0 only when every problem is a fact no entry made."""
        named = [p.seq for p in self.problems if p.seq > 0]
        return min(named) if named else (0 if self.problems else None)


@dataclass(frozen=True)
class Trust:
    """What `verify` checks signatures with: the log's vkeys (checkpoint notes), witnesses'
    cosignature vkeys, and the legacy JSON checkpoints' Ed25519 keys by kid."""

    log_keys: Sequence[note.VerifierKey] = ()
    witnesses: Sequence[note.VerifierKey] = ()
    legacy_keys: Mapping[str, Ed25519PublicKey] = field(default_factory=dict)


def verify(
    conn: db.Conn,
    trust: Trust | None = None,
    checkpoint_notes: Sequence[str] = (),
    legacy_checkpoints: Sequence[Mapping[str, Any]] = (),
    keyring: Sequence[KeyRecord] | None = None,
    max_problems: int = 20,
) -> Report:
    """Recompute every leaf and stored hash, check the signed checkpoints (those stored and those
    given, exported off the host), every scan against its entry, and the state tables against a
    replay of the log, all on one snapshot. Entries not in the tree yet are counted as pending."""
    with db.read_snapshot(conn):
        return _Verification(conn, trust or Trust(), max_problems).run(checkpoint_notes, legacy_checkpoints, keyring)


class _Verification:
    def __init__(self, conn: db.Conn, trust: Trust, limit: int) -> None:
        self.conn, self.trust, self.limit = conn, trust, limit
        self.problems: list[Problem] = []
        self.unchecked = 0

    def add(self, seq: int, what: str) -> None:
        self.problems.append(Problem(seq, what))

    @property
    def full(self) -> bool:
        return len(self.problems) >= self.limit

    def run(
        self,
        notes: Sequence[str],
        legacy_checkpoints: Sequence[Mapping[str, Any]],
        keyring: Sequence[KeyRecord] | None,
    ) -> Report:
        conn = self.conn
        tree_size = tree.size(conn)
        replayed = replay.Replay()
        wanted = {int(c["seq"]) for c in [*log.checkpoints(conn), *legacy_checkpoints]}
        count, head_seq, chain_end, chain_at = self._entries(tree_size, replayed, wanted)
        self._tree_levels(tree_size)
        if tree_size > head_seq:
            self.add(head_seq + 1, f"the tree holds {tree_size} entries but the log ends at {head_seq} (truncated)")
        try:
            root = logtree.root(conn, tree_size)
        except logtree.NotInTree:
            root = b""
        checked = self._checkpoints(tree_size, head_seq, notes)
        stored = log.checkpoints(conn)
        for checkpoint in [*stored, *legacy_checkpoints]:
            if checkpoint in stored and str(checkpoint.get("kid")) not in self.trust.legacy_keys:
                self.unchecked += 1  # signed by a key not given here: not checked, not a problem
                continue
            self.problems += _check_legacy_checkpoint(checkpoint, head_seq, chain_end, chain_at, self.trust.legacy_keys)
            checked += 1
        if not self.full:
            self.problems += _check_scans(conn, self.limit)
        retired = retired_below(conn)
        scan_entries, linked = log.scan_entry_counts(conn, retired)
        if scan_entries != linked and not self.problems:  # each linked scan matched a distinct entry
            self.add(head_seq, f"{scan_entries - linked} scan entries have lost their scan (deleted scans)")
        if not self.full:
            self.problems += [Problem(d.seq, d.what) for d in replayed.compare(conn, keyring, self.limit)]
        pending = log.pending_count(conn) + max(0, head_seq - tree_size)
        problems = tuple(sorted(self.problems, key=lambda p: p.seq))
        return Report(
            count, head_seq, root.hex(), problems, pending, retired, tree_size, checked, chain_end, self.unchecked
        )

    def _entries(
        self, tree_size: int, replayed: replay.Replay, wanted: set[int]
    ) -> tuple[int, int, int, dict[int, str]]:
        """Stream the entries: their numbering, the legacy chain, each leaf against the stored
        leaf hash, and the replay. (entries, last seq, last chained seq, chain hashes at `wanted`)."""
        leaves: Iterator[tuple[int, bytes]] = tree.stream_level(self.conn, 0)
        expected, prev, count, chain_end = 1, GENESIS, 0, 0
        chain_at: dict[int, str] = {}
        for seq, kind, at, actor, p_hash, body, stored_prev, stored_hash in log.stream_leaf_rows(self.conn):
            count += 1
            replayed.feed(seq, at, kind, actor, body)
            if seq != expected:
                self.add(expected, f"entries {expected}..{seq - 1} are missing (deleted)")
            digest = merkle.leaf_hash(leaf_bytes(kind, at, actor, p_hash, body))
            if stored_prev:  # the legacy chain: entries 1..chain_end, before the Merkle tree
                if chain_end != seq - 1:
                    self.add(seq, "a chained entry after the chain ended (inserted)")
                elif stored_prev != prev:
                    self.add(seq, "does not chain to the entry before it (reordered or replaced)")
                elif entry_hash(stored_prev, seq, at, kind, actor, p_hash, body) != stored_hash:
                    self.add(seq, "its content does not match its hash (edited)")
                prev, chain_end = stored_hash, seq
                if seq in wanted:
                    chain_at[seq] = stored_hash
            elif stored_hash != digest.hex():
                self.add(seq, "its content does not match its hash (edited)")
            if seq <= tree_size:
                stored = next(leaves, None)
                if stored is None or stored[0] != seq - 1:
                    self.add(seq, f"the tree has no leaf for entry {seq} (its hashes were deleted)")
                    leaves = iter(())
                elif stored[1] != digest:
                    self.add(seq, "differs from the tree's leaf (edited or reordered after it was logged)")
            expected = seq + 1
            if self.full:
                break
        return count, expected - 1, chain_end, chain_at

    def _tree_levels(self, tree_size: int) -> None:
        """Each stored level against the one below (node = SHA-256(0x01 || left || right)), and no
        hash above the leaves stored: that means leaves were deleted from the tree's end."""
        level = 1
        while level < 64 and not self.full:
            width, found = tree_size >> level, 0
            below = tree.stream_level(self.conn, level - 1)
            for index, digest in tree.stream_level(self.conn, level):
                if index >= width:
                    self.add(
                        tree_size + 1, f"the tree's leaves from {tree_size} on were deleted (level {level} remains)"
                    )
                    break
                left, right = next(below, None), next(below, None)
                if index != found or left is None or right is None or left[0] != 2 * index:
                    self.add(found * 2**level + 1, f"the tree's level {level} is missing hashes (deleted)")
                    break
                if merkle.node_hash(left[1], right[1]) != digest:
                    self.add(index * 2**level + 1, f"the tree's hash at level {level}, index {index} was edited")
                    break
                found += 1
            else:
                if found != width:
                    self.add(found * 2**level + 1, f"the tree's level {level} is missing hashes (deleted)")
            if width == 0:
                break
            level += 1

    def _checkpoints(self, tree_size: int, head_seq: int, given: Sequence[str]) -> int:
        """Every checkpoint note (stored and given) must be signed by a log key and match the tree;
        the first that does not names the entries after the last one that does."""
        conn, trust = self.conn, self.trust
        notes = [(f"the stored checkpoint of size {s}", n) for s, _at, n in tree.checkpoints(conn)]
        notes += [(f"given checkpoint {i + 1}", text) for i, text in enumerate(given)]
        if not trust.log_keys:
            self.unchecked += len(notes)  # reported, not a problem: nothing says they are wrong
            return 0
        matching: list[int] = []
        differing: list[int] = []
        for label, text in notes:
            try:
                checkpoint = note.parse_checkpoint(note.open_note(text, trust.log_keys).text)
            except note.InvalidNote as exc:
                if exc.reason == note.UNVERIFIED and label.startswith("the stored"):
                    self.unchecked += 1  # signed by a key not given here (an earlier log key): not checked
                else:
                    self.add(0, f"{label} is not signed by the log key ({exc.reason}: forged or altered)")
                continue
            if checkpoint.size > tree_size:
                self.add(
                    max(tree_size, head_seq) + 1,
                    f"a signed checkpoint covers {checkpoint.size} entries but the tree holds {tree_size} (truncated)",
                )
                continue
            try:
                same = logtree.root(conn, checkpoint.size) == checkpoint.root
            except logtree.NotInTree:
                continue  # stored hashes are missing: reported with the tree
            (matching if same else differing).append(checkpoint.size)
        if differing:
            bad = min(differing)
            good = max((s for s in matching if s < bad), default=0)
            self.add(
                good + 1,
                f"entries {good + 1}..{bad} differ from the signed checkpoint of size {bad} (the log was rewritten)",
            )
        self._cosignatures()
        return len(notes)

    def _cosignatures(self) -> None:
        """Stored cosignatures by configured witnesses must verify (others are ignored)."""
        if not self.trust.witnesses:
            return
        known = {f"{w.name}+{w.key_id:08x}": w for w in self.trust.witnesses}
        for size, witness, line in tree.all_cosignatures(self.conn):
            if witness not in known:
                continue
            stored = tree.checkpoint(self.conn, size)
            text = note.parse_note(stored[2])[0] if stored else ""
            try:
                note.open_note(text + "\n" + line, [known[witness]])
            except note.InvalidNote:
                self.add(0, f"the cosignature of {witness} on the checkpoint of size {size} does not verify (edited)")


def retired_below(conn: db.Conn) -> int:
    """The id below which scans were retired by a logged `scans.retired` entry (0: none). Only
    PostgreSQL retires scans (a partition dropped); the entries of retired scans stay in the log."""
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
            continue  # written, not in the log yet
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


# --- the legacy chain's checkpoints (signed JSON, before migration 010) -------------------------


def entry_hash(prev_hash: str, seq: int, at: str, kind: str, actor: str, personal_hash: str, body: str) -> str:
    """The legacy chain's hash of entry `seq` (entries written before the Merkle tree)."""
    text = f"{prev_hash}\n{seq}\n{at}\n{kind}\n{actor}\n{personal_hash}\n{body}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def checkpoint_message(seq: int, head_hash: str, at: str) -> bytes:
    return CHECKPOINT_CONTEXT + canonical({"seq": seq, "head": head_hash, "at": at}).encode()


CHECKPOINT_FORMAT = "verifier-log-checkpoint/1"
_HEX64 = re.compile(r"[0-9a-f]{64}", re.ASCII)
_HEX128 = re.compile(r"[0-9a-f]{128}", re.ASCII)


def parse_checkpoint(data: object) -> dict[str, Any]:
    """A legacy checkpoint read from a JSON file, checked field by field; ValueError says what is wrong."""
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


def sign_legacy_checkpoint(private_key: Any, kid: str, seq: int, head_hash: str, now: dt.datetime) -> dict[str, Any]:
    """A legacy JSON checkpoint (tests of the migration make them as the old code did)."""
    from . import clock

    at = clock.utc_text(now)
    signature = private_key.sign(checkpoint_message(seq, head_hash, at)).hex()
    return {"format": CHECKPOINT_FORMAT, "seq": seq, "head": head_hash, "at": at, "kid": kid, "signature": signature}


def _check_legacy_checkpoint(
    checkpoint: Mapping[str, Any],
    head_seq: int,
    chain_end: int,
    chain_at: Mapping[int, str],
    keys: Mapping[str, Ed25519PublicKey],
) -> list[Problem]:
    seq = int(checkpoint["seq"])
    key = keys.get(str(checkpoint.get("kid")))
    if key is None:
        return [Problem(seq, f"checkpoint {seq} is signed by unknown log key {checkpoint.get('kid')!r}")]
    try:
        key.verify(
            bytes.fromhex(str(checkpoint["signature"])),
            checkpoint_message(seq, str(checkpoint["head"]), str(checkpoint["at"])),
        )
    except (InvalidSignature, ValueError):
        return [Problem(seq, f"checkpoint {seq} has a bad signature (forged or altered)")]
    if seq > head_seq:
        return [Problem(head_seq + 1, f"the log ends at {head_seq} but a signed checkpoint covers {seq} (truncated)")]
    if seq > chain_end:
        return [
            Problem(chain_end + 1, f"a chain checkpoint covers {seq} but the chain ends at {chain_end} (rewritten)")
        ]
    if seq and chain_at.get(seq) != checkpoint["head"]:
        return [Problem(seq, f"entry {seq} differs from the signed checkpoint (the chain was rewritten)")]
    return []
