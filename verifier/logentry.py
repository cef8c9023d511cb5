"""A transparency-log entry's leaf data: the one text a leaf of the Merkle tree hashes.

Pure: values in, values out. Used by the tree (verifier/logtree.py), the receipts
(verifier/receipts.py) and `audit verify`; docs/transparency-log.md, "Entries".
"""

from __future__ import annotations

from dataclasses import dataclass

LEAF_FORMAT = "verifier-log-entry/1"
MAX_LEAF_BYTES = 0xFFFF  # an entry bundle holds each leaf behind a uint16 length (C2SP tlog-tiles)


def leaf_bytes(kind: str, at: str, actor: str, personal_hash: str, body: str) -> bytes:
    """An entry's leaf data: the format line, then kind, time, actor, personal commitment and the
    canonical JSON body, one a line (none can hold a line break)."""
    return f"{LEAF_FORMAT}\n{kind}\n{at}\n{actor}\n{personal_hash}\n{body}".encode()


@dataclass(frozen=True)
class LeafEntry:
    """A leaf's fields, as `parse_leaf` reads them back."""

    kind: str
    at: str
    actor: str
    personal_hash: str
    body: str


def parse_leaf(data: bytes) -> LeafEntry:
    """The fields of a leaf's data; ValueError if it is not a verifier log entry."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("a log entry is UTF-8") from None
    parts = text.split("\n")
    if len(parts) != 6 or parts[0] != LEAF_FORMAT:
        raise ValueError(f"not a {LEAF_FORMAT} entry")
    return LeafEntry(*parts[1:])
