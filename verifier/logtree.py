"""The transparency log's Merkle tree (RFC 9162) over the audit log's entries, and its checkpoints.

Entry `seq` of `audit_log` is leaf `seq - 1`; its leaf data is `auditlog.leaf_bytes(...)`. The tree
is stored as the hashes of its complete subtrees (`log_hashes`, keyed by level and index, written
once, never changed), so proofs for any past size and C2SP tiles are served from one store.
The sequencer (verifier/sequencer.py) extends the tree and signs checkpoints (C2SP
tlog-checkpoint notes) with the log key; nothing on the request path waits for it.

STATUS: interface committed first so that helpers can build on it; bodies land next.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from . import db, merkle, note


@dataclass(frozen=True)
class LogSigner:
    """The log's signing key: the origin (its key name) and the Ed25519 private key."""

    origin: str
    private_key: object  # Ed25519PrivateKey

    @property
    def vkey(self) -> str:
        """The verifier key text (C2SP signed-note vkey) that checks this log's checkpoints."""
        raise NotImplementedError


@dataclass(frozen=True)
class StoredCheckpoint:
    """A signed checkpoint kept in `log_checkpoints`: its size, when it was signed, the whole note
    (the log's signature followed by any witness cosignatures gathered for it)."""

    size: int
    at: str
    note: str

    @property
    def checkpoint(self) -> note.Checkpoint:
        raise NotImplementedError


class NotInTree(LookupError):
    """An index or size beyond the tree built so far (the sequencer has not reached it yet)."""


def size(conn: db.Conn) -> int:
    """How many entries the stored tree covers."""
    raise NotImplementedError


def hash_reader(conn: db.Conn) -> merkle.HashAt:
    """`hash_at(level, index)` from the stored hashes; raises NotInTree for a subtree not stored."""
    raise NotImplementedError


def root(conn: db.Conn, tree_size: int) -> bytes:
    """The root hash of the first `tree_size` entries (tree_size <= size(conn))."""
    raise NotImplementedError


def extend(conn: db.Conn, limit: int = 10_000) -> int:
    """Add up to `limit` entries beyond the stored tree, inside the caller's write transaction; how many."""
    raise NotImplementedError


def sign_checkpoint(conn: db.Conn, signer: LogSigner, now: dt.datetime) -> StoredCheckpoint | None:
    """Sign and store a checkpoint of the tree as it is, inside the caller's write transaction; None
    when the latest stored checkpoint already has this size."""
    raise NotImplementedError


def latest_checkpoint(conn: db.Conn) -> StoredCheckpoint | None:
    """The newest signed checkpoint with its cosignatures, or None before the first."""
    raise NotImplementedError


def checkpoint_covering(conn: db.Conn, index: int) -> StoredCheckpoint | None:
    """The newest checkpoint whose tree includes leaf `index` (None: none does yet)."""
    return None if (latest := latest_checkpoint(conn)) is None or latest.size <= index else latest


def inclusion_proof(conn: db.Conn, index: int, tree_size: int) -> list[bytes]:
    """RFC 9162 inclusion proof of leaf `index` in the tree of `tree_size` (NotInTree beyond it)."""
    raise NotImplementedError


def consistency_proof(conn: db.Conn, old_size: int, new_size: int) -> list[bytes]:
    """RFC 9162 consistency proof between two sizes of the tree (NotInTree beyond it)."""
    raise NotImplementedError


def tile(conn: db.Conn, level: int, index: int, width: int) -> bytes | None:
    """A C2SP hash tile's content (width * 32 bytes); None unless the tree holds exactly that tile
    (a full one, or the partial one of the current size)."""
    raise NotImplementedError


def entry_bundle(conn: db.Conn, index: int, width: int) -> bytes | None:
    """A C2SP entry bundle: leaves index*256 .. index*256+width-1, each as a big-endian uint16
    length and the leaf data; None unless the tree holds that bundle."""
    raise NotImplementedError


def scan_entry_index(conn: db.Conn, scan_id: int) -> int | None:
    """The leaf index of a scan's entry (None: not sequenced yet, PostgreSQL)."""
    raise NotImplementedError


def entry_leaf(conn: db.Conn, index: int) -> bytes | None:
    """The leaf data of entry `index` (None: no such entry)."""
    raise NotImplementedError


def add_cosignature(conn: db.Conn, cosigned: str, witnesses: list[note.VerifierKey]) -> StoredCheckpoint:
    """Store a witness's cosignature of a stored checkpoint (the checkpoint note with the witness's
    cosignature/v1 line), inside the caller's write transaction. Raises note.InvalidNote if no
    configured witness cosigned it, NotInTree if the log never signed that checkpoint."""
    raise NotImplementedError
