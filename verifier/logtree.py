"""The transparency log's Merkle tree (RFC 9162) over the audit log's entries, and its checkpoints.

Entry `seq` of `audit_log` is leaf `seq - 1`; its leaf data is `leaf_bytes(...)`. The tree is
stored as the hashes of its complete subtrees (`log_hashes`, keyed by level and index, written
once, never changed), so proofs for any past size and C2SP tiles are served from one store.
The sequencer (verifier/sequencer.py) extends the tree and signs checkpoints (C2SP
tlog-checkpoint notes) with the log key; nothing on the request path waits for it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import clock, db, merkle, note
from .logentry import LEAF_FORMAT, MAX_LEAF_BYTES, LeafEntry, leaf_bytes, parse_leaf
from .note import Checkpoint
from .repos import log, tree

__all__ = ["LEAF_FORMAT", "MAX_LEAF_BYTES", "LeafEntry", "leaf_bytes", "parse_leaf"]  # re-exported


@dataclass(frozen=True)
class LogSigner:
    """The log's signing key: the origin (its key name) and the Ed25519 private key."""

    origin: str
    private_key: Ed25519PrivateKey

    @classmethod
    def from_skey(cls, text: str) -> LogSigner:
        """The signer a note skey text (`PRIVATE+KEY+<origin>+...`) holds; note.InvalidNote if not one."""
        key = note.parse_skey(text.strip())
        if key.signature_type != note.ED25519:
            raise note.InvalidNote(note.BAD_VKEY, "a log key signs notes (type 0x01), not cosignatures")
        return cls(key.name, key.private_key)

    @property
    def verifier(self) -> note.VerifierKey:
        return note.verifier_key(self.origin, self.private_key)

    @property
    def vkey(self) -> str:
        """The verifier key text (C2SP signed-note vkey) that checks this log's checkpoints."""
        return note.format_vkey(self.verifier)

    @property
    def skey(self) -> str:
        return note.format_skey(note.SignerKey(self.origin, note.ED25519, self.private_key))


def new_signer(origin: str) -> LogSigner:
    """A fresh log key for `origin` (a key name: no spaces, no '+')."""
    if not note.valid_key_name(origin):
        raise ValueError(f"a log origin is a key name without spaces or '+', not {origin!r}")
    return LogSigner(origin, Ed25519PrivateKey.generate())


@dataclass(frozen=True)
class StoredCheckpoint:
    """A signed checkpoint kept in `log_checkpoints`: its size, when it was signed, the whole note
    (the log's signature followed by any witness cosignatures gathered for it)."""

    size: int
    at: str
    note: str

    @property
    def checkpoint(self) -> Checkpoint:
        return note.parse_checkpoint(note.parse_note(self.note)[0])


class NotInTree(LookupError):
    """An index or size beyond the tree built so far (the sequencer has not reached it yet)."""


def size(conn: db.Conn) -> int:
    """How many entries the stored tree covers."""
    return tree.size(conn)


def hash_reader(conn: db.Conn) -> merkle.HashAt:
    """`hash_at(level, index)` from the stored hashes; raises NotInTree for a subtree not stored."""

    def hash_at(level: int, index: int) -> bytes:
        found = tree.hash_at(conn, level, index)
        if found is None:
            raise NotInTree(f"the tree holds no subtree at level {level}, index {index}")
        return found

    return hash_at


def _check_size(conn: db.Conn, tree_size: int) -> None:
    if tree_size < 0 or tree_size > size(conn):
        raise NotInTree(f"the tree has {size(conn)} entries, not {tree_size}")


def root(conn: db.Conn, tree_size: int) -> bytes:
    """The root hash of the first `tree_size` entries (tree_size <= size(conn))."""
    _check_size(conn, tree_size)
    return _prefetched(conn, lambda hash_at: merkle.root_hash(tree_size, hash_at))


def _stored_hashes(start: int, leaf_hashes: Sequence[bytes], hash_at: merkle.HashAt) -> list[tuple[int, int, bytes]]:
    """The hashes to store when leaves `start`.. are appended: each leaf, and every subtree it
    completes (as golang.org/x/mod/sumdb/tlog's StoredHashes), as (level, index, hash)."""
    new: dict[tuple[int, int], bytes] = {}
    rows: list[tuple[int, int, bytes]] = []
    for offset, digest in enumerate(leaf_hashes):
        index, level = start + offset, 0
        new[(0, index)] = digest
        rows.append((0, index, digest))
        while index & 1:
            left = new.get((level, index - 1)) or hash_at(level, index - 1)
            digest = merkle.node_hash(left, digest)
            level, index = level + 1, index >> 1
            new[(level, index)] = digest
            rows.append((level, index, digest))
    return rows


def append_leaves(conn: db.Conn, start: int, leaves: Sequence[bytes]) -> None:
    """Store leaves `start`.. (their data) and the subtrees they complete, inside the caller's
    write transaction; `start` must be the stored tree's size."""
    if any(len(leaf) > MAX_LEAF_BYTES for leaf in leaves):
        raise ValueError(f"a log entry is at most {MAX_LEAF_BYTES} bytes")
    rows = _stored_hashes(start, [merkle.leaf_hash(leaf) for leaf in leaves], hash_reader(conn))
    tree.insert_hashes(conn, rows)


def _leaf_of(row: Sequence[object]) -> bytes:
    _seq, kind, at, actor, personal_hash, body = row[:6]
    return leaf_bytes(str(kind), str(at), str(actor), str(personal_hash), str(body))


def extend(conn: db.Conn, limit: int = 10_000) -> int:
    """Add up to `limit` entries beyond the stored tree, inside the caller's write transaction; how
    many. Stops before a gap in the entries' sequence numbers (`audit verify` reports it)."""
    start = size(conn)
    rows = log.leaf_rows(conn, start + 1, start + 1 + limit)
    leaves = []
    for expected, row in enumerate(rows, start + 1):
        if int(row[0]) != expected:
            break
        leaves.append(_leaf_of(row))
    if leaves:
        append_leaves(conn, start, leaves)
    return len(leaves)


def pending(conn: db.Conn) -> int:
    """Entries written but not in the tree yet (SQLite: appended since the sequencer last ran)."""
    return max(0, log.last_seq(conn) - size(conn))


def checkpoint_text(origin: str, tree_size: int, root_hash: bytes) -> str:
    return note.format_checkpoint(note.Checkpoint(origin, tree_size, root_hash))


def sign_checkpoint(conn: db.Conn, signer: LogSigner, now: dt.datetime) -> StoredCheckpoint | None:
    """Sign and store a checkpoint of the tree as it is, inside the caller's write transaction; None
    when the latest stored checkpoint already has this size."""
    tree_size = size(conn)
    latest = tree.latest_checkpoint(conn)
    if latest is not None and latest[0] >= tree_size:
        return None
    text = checkpoint_text(signer.origin, tree_size, root(conn, tree_size))
    signed = note.sign_note(text, signer.origin, signer.private_key)
    at = clock.utc_text(now)
    if not tree.insert_checkpoint(conn, tree_size, at, signed):
        return None  # another signer stored this size a moment ago
    return StoredCheckpoint(tree_size, at, signed)


def _with_cosignatures(conn: db.Conn, row: tuple[int, str, str] | None) -> StoredCheckpoint | None:
    if row is None:
        return None
    tree_size, at, signed = row
    return StoredCheckpoint(tree_size, at, signed + "".join(tree.cosignature_lines(conn, tree_size)))


def latest_checkpoint(conn: db.Conn, min_cosignatures: int = 0) -> StoredCheckpoint | None:
    """The newest signed checkpoint with its cosignatures, or None before the first; with
    `min_cosignatures`, the newest that that many witnesses cosigned."""
    if min_cosignatures > 0:
        return _with_cosignatures(conn, tree.cosigned_checkpoint(conn, min_cosignatures))
    return _with_cosignatures(conn, tree.latest_checkpoint(conn))


def checkpoint_of_size(conn: db.Conn, tree_size: int) -> StoredCheckpoint | None:
    return _with_cosignatures(conn, tree.checkpoint(conn, tree_size))


def checkpoint_covering(conn: db.Conn, index: int) -> StoredCheckpoint | None:
    """The newest checkpoint whose tree includes leaf `index` (None: none does yet)."""
    return None if (latest := latest_checkpoint(conn)) is None or latest.size <= index else latest


_Proven = TypeVar("_Proven")


def _prefetched(conn: db.Conn, prove: Callable[[merkle.HashAt], _Proven]) -> _Proven:
    """Run a prover twice: first to learn which stored hashes it reads (which hashes a proof needs
    depends on the sizes and index only, never on their values), then on those, fetched in one
    query instead of one a hash (a round trip each on PostgreSQL)."""
    wanted: list[tuple[int, int]] = []

    def record(level: int, index: int) -> bytes:
        wanted.append((level, index))
        return bytes(merkle.HASH_SIZE)

    prove(record)
    found = tree.hashes_at(conn, sorted(set(wanted)))

    def hash_at(level: int, index: int) -> bytes:
        if (level, index) not in found:
            raise NotInTree(f"the tree holds no subtree at level {level}, index {index}")
        return found[(level, index)]

    return prove(hash_at)


def inclusion_proof(conn: db.Conn, index: int, tree_size: int) -> list[bytes]:
    """RFC 9162 inclusion proof of leaf `index` in the tree of `tree_size` (NotInTree beyond it)."""
    _check_size(conn, tree_size)
    if not 0 <= index < tree_size:
        raise NotInTree(f"leaf {index} is not in a tree of {tree_size}")
    return _prefetched(conn, lambda hash_at: merkle.inclusion_proof(index, tree_size, hash_at))


def consistency_proof(conn: db.Conn, old_size: int, new_size: int) -> list[bytes]:
    """RFC 9162 consistency proof between two sizes of the tree (NotInTree beyond it)."""
    _check_size(conn, new_size)
    if not 0 < old_size <= new_size:
        raise NotInTree(f"no consistency proof from {old_size} to {new_size}")
    return _prefetched(conn, lambda hash_at: merkle.consistency_proof(old_size, new_size, hash_at))


def _tile_exists(conn: db.Conn, level: int, index: int, width: int) -> bool:
    """Whether the tree holds every hash of that tile: a partial tile of any width is a prefix of
    hashes written once, so it never changes either (C2SP tlog-tiles lets clients ask for one)."""
    if not (0 <= level <= merkle.MAX_TILE_LEVEL and index >= 0 and 1 <= width <= merkle.TILE_WIDTH):
        return False
    leaves_per_hash = 1 << (merkle.TILE_HEIGHT * level)  # a tile of level L holds hashes of 256**L leaves each
    return (index * merkle.TILE_WIDTH + width) * leaves_per_hash <= size(conn)


def tile(conn: db.Conn, level: int, index: int, width: int) -> bytes | None:
    """A C2SP hash tile's content (width * 32 bytes); None unless the tree holds all of it."""
    if not _tile_exists(conn, level, index, width):
        return None
    first = index * merkle.TILE_WIDTH
    found = tree.hashes(conn, merkle.TILE_HEIGHT * level, first, first + width)
    return b"".join(found) if len(found) == width else None


def entry_bundle(conn: db.Conn, index: int, width: int) -> bytes | None:
    """A C2SP entry bundle: leaves index*256 .. index*256+width-1, each as a big-endian uint16
    length and the leaf data; None unless the tree holds that bundle."""
    if not _tile_exists(conn, 0, index, width):
        return None
    first = index * merkle.TILE_WIDTH
    rows = log.leaf_rows(conn, first + 1, first + 1 + width)
    if len(rows) != width:
        return None
    return b"".join(len(leaf).to_bytes(2, "big") + leaf for leaf in (_leaf_of(row) for row in rows))


def scan_entry_index(conn: db.Conn, scan_id: int) -> int | None:
    """The leaf index of a scan's entry (None: not sequenced yet, PostgreSQL)."""
    seq = log.scan_entry_seq(conn, scan_id)
    return None if seq is None else seq - 1


def entry_leaf(conn: db.Conn, index: int) -> bytes | None:
    """The leaf data of entry `index` (None: no such entry)."""
    rows = log.leaf_rows(conn, index + 1, index + 2)
    return _leaf_of(rows[0]) if rows else None


def add_cosignature(
    conn: db.Conn, cosigned: str, witnesses: Iterable[note.VerifierKey], now: dt.datetime
) -> StoredCheckpoint:
    """Store a witness's cosignature of a stored checkpoint (the checkpoint note with the witness's
    cosignature/v1 line), inside the caller's write transaction. Raises note.InvalidNote if no
    configured witness cosigned it, NotInTree if the log never signed that checkpoint."""
    cosigners = [w for w in witnesses if w.signature_type == note.COSIGNATURE_V1]
    opened = note.open_note(cosigned, cosigners)
    checkpoint = note.parse_checkpoint(opened.text)
    stored = tree.checkpoint(conn, checkpoint.size)
    if stored is None or note.parse_note(stored[2])[0] != opened.text:
        raise NotInTree(f"this log signed no such checkpoint of size {checkpoint.size}")
    at = clock.utc_text(now)
    for signature in opened.verified:
        tree.insert_cosignature(conn, checkpoint.size, f"{signature.name}+{signature.key_id:08x}", at, signature.line())
    found = checkpoint_of_size(conn, checkpoint.size)
    assert found is not None
    return found
