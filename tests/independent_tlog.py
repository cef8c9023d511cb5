"""A second transparency-log client, written only from the texts, on PyNaCl (libsodium).

Sources: RFC 9162 §2.1 (Merkle tree hashing, inclusion and consistency proofs), C2SP signed-note,
tlog-checkpoint, tlog-cosignature and tlog-tiles, and the log's own formats as documented in
docs/transparency-log.md (leaf data "verifier-log-entry/1", receipts "verifier-receipt/1").

It shares no code with the `verifier` package (it imports nothing from it) and is written another
way: the proof checkers rebuild both roots from the recursive definitions of PATH and SUBPROOF
(RFC 9162 §2.1.3.1 and §2.1.4.1), consuming the proof from its top end, instead of running the
iterative algorithms of §2.1.3.2 / §2.1.4.2 that verifier/merkle.py follows. If both agree on every
proof the product makes, and on the published vectors, a third party can check the log with the
documents alone.

Everything rejected raises `Rejected(reason)`; the reasons are this module's own words.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import nacl.exceptions
import nacl.signing


class Rejected(Exception):
    """Whatever this client does not accept, with a short machine `reason`."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def b64decode(text: str, what: str) -> bytes:
    """Standard base64 (RFC 4648 §4, padded), accepted only in its one canonical spelling."""
    if not re.fullmatch(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?", text):
        raise Rejected("malformed", f"{what} is not base64")
    raw = base64.b64decode(text)
    if base64.b64encode(raw).decode() != text:  # non-zero trailing bits
        raise Rejected("malformed", f"{what} is not canonical base64")
    return raw


# --- RFC 9162 §2.1.1: the Merkle tree hash -------------------------------------------------------


def leaf_hash(entry: bytes) -> bytes:
    return sha256(b"\x00" + entry)


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


def split_point(n: int) -> int:
    """k: the largest power of two smaller than n (n >= 2)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of the tree whose leaves hash to `leaf_hashes`, by a bottom-up fold of a stack of
    perfect subtrees (the shape of a binary counter) rather than the top-down recursion."""
    if not leaf_hashes:
        return sha256(b"")
    stack: list[tuple[int, bytes]] = []  # (leaves, hash) of perfect subtrees, largest first
    for h in leaf_hashes:
        size, value = 1, h
        while stack and stack[-1][0] == size:
            left = stack.pop()[1]
            size, value = size * 2, node_hash(left, value)
        stack.append((size, value))
    value = stack.pop()[1]
    while stack:  # the right edge: smaller subtrees hang right of larger ones
        value = node_hash(stack.pop()[1], value)
    return value


def _hash32(value: bytes, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != 32:
        raise Rejected("bad-hash", f"{what} is not a 32-byte SHA-256 hash")
    return value


# --- RFC 9162 §2.1.3: inclusion ------------------------------------------------------------------


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that PATH(index, D[0:size]) = `proof` and the leaf hash imply.

    §2.1.3.1: for n > 1 and k = split_point(n), PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) if
    m < k, else PATH(m - k, D[k:n]) : MTH(D[0:k]). So the LAST element is the sibling at the top;
    undo the definition from the top down, then fold the hashes back up.
    """
    if not 0 <= index < size:
        raise Rejected("index-out-of-range", f"leaf {index} of a tree of {size}")
    steps: list[bool] = []  # for each level from the top: is our subtree the right child?
    m, n = index, size
    while n > 1:
        k = split_point(n)
        if m < k:
            steps.append(False)
            n = k
        else:
            steps.append(True)
            m, n = m - k, n - k
    if len(proof) != len(steps):
        raise Rejected("wrong-length", f"the path of leaf {index} in {size} has {len(steps)} hashes, not {len(proof)}")
    value = leaf
    for is_right, sibling in zip(reversed(steps), proof):  # proof[0] is the leaf's own sibling
        value = node_hash(sibling, value) if is_right else node_hash(value, sibling)
    return value


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """`leaf` (a leaf hash) is entry `index` of the tree of `size` leaves whose root is `root`."""
    _hash32(leaf, "the leaf hash")
    _hash32(root, "the root")
    for p in proof:
        _hash32(p, "a proof hash")
    if root_from_inclusion(index, size, leaf, proof) != root:
        raise Rejected("root-mismatch", "the proof leads to another root")


# --- RFC 9162 §2.1.4: consistency ----------------------------------------------------------------


def roots_from_consistency(
    old_size: int, new_size: int, old_root: bytes, proof: Sequence[bytes]
) -> tuple[bytes, bytes]:
    """(old root, new root) that PROOF(old_size, D[0:new_size]) = `proof` implies.

    §2.1.4.1: SUBPROOF(m, D[n], b) is [] if m = n and b, [MTH(D[n])] if m = n and not b; for m < n
    and k = split_point(n): SUBPROOF(m, D[0:k], b) : MTH(D[k:n]) if m <= k, else
    SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k]). Walk the definition from the top, taking the
    proof's elements from its end, then fold both roots up again.
    """
    if not 0 < old_size <= new_size:
        raise Rejected("bad-sizes", f"no consistency proof from {old_size} to {new_size}")
    rest = list(proof)
    shape: list[tuple[bool, bytes]] = []  # from the top: (the old tree reaches into the right half, sibling)
    m, n, whole = old_size, new_size, True
    while m != n:
        if not rest:
            raise Rejected("wrong-length", "the proof is too short")
        sibling = rest.pop()
        k = split_point(n)
        if m <= k:
            shape.append((False, sibling))
            n = k
        else:
            shape.append((True, sibling))
            m, n, whole = m - k, n - k, False
    if whole:
        seed = old_root  # the old tree is this whole subtree: its hash is the old root itself
    else:
        if not rest:
            raise Rejected("wrong-length", "the proof is too short")
        seed = rest.pop()
    if rest:
        raise Rejected("wrong-length", "the proof is too long")
    old_value = new_value = seed
    for right, sibling in reversed(shape):
        if right:  # both trees hold the complete left half, `sibling`
            old_value, new_value = node_hash(sibling, old_value), node_hash(sibling, new_value)
        else:  # the old tree ends inside the left half; the new one has `sibling` to its right
            new_value = node_hash(new_value, sibling)
    return old_value, new_value


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """The tree of `old_size` with `old_root` is a prefix of the tree of `new_size` with `new_root`."""
    _hash32(old_root, "the old root")
    _hash32(new_root, "the new root")
    for p in proof:
        _hash32(p, "a proof hash")
    old, new = roots_from_consistency(old_size, new_size, old_root, proof)
    if old != old_root:
        raise Rejected("old-root-mismatch", "the proof does not lead to the old root")
    if new != new_root:
        raise Rejected("root-mismatch", "the proof does not lead to the new root")


# --- C2SP signed-note ------------------------------------------------------------------------------

TYPE_ED25519 = 0x01
TYPE_COSIGNATURE_V1 = 0x04
SIGNATURE_PREFIX = "\u2014 "  # an em dash and a space


@dataclass(frozen=True)
class Vkey:
    """A verifier key: name, 4-byte key ID, signature type, raw Ed25519 public key."""

    name: str
    key_id: bytes
    kind: int
    public: bytes

    @property
    def verify_key(self) -> nacl.signing.VerifyKey:
        return nacl.signing.VerifyKey(self.public)


def derive_key_id(name: str, kind: int, public: bytes) -> bytes:
    """signed-note: key ID = SHA-256(key name || 0x0A || signature type || public key)[:4]."""
    return sha256(name.encode() + b"\x0a" + bytes([kind]) + public)[:4]


def key_name_ok(name: str) -> bool:
    return bool(name) and "+" not in name and not re.search(r"\s", name) and name.isprintable()


def parse_vkey(text: str) -> Vkey:
    """`<name>+<hex key ID>+<base64(type || key)>`, the ID checked against the name and key."""
    match = re.fullmatch(r"([^+]+)\+([0-9a-f]{8})\+(\S+)", text)
    if not match or not key_name_ok(match[1]):
        raise Rejected("bad-vkey", "not name+hexid+base64")
    material = b64decode(match[3], "the vkey's key")
    if len(material) != 33 or material[0] not in (TYPE_ED25519, TYPE_COSIGNATURE_V1):
        raise Rejected("bad-vkey", "not an Ed25519 note or cosignature/v1 key")
    key = Vkey(match[1], bytes.fromhex(match[2]), material[0], material[1:])
    if derive_key_id(key.name, key.kind, key.public) != key.key_id:
        raise Rejected("bad-vkey", "the key ID is not the one of this name and key")
    return key


@dataclass(frozen=True)
class SignatureLine:
    name: str
    key_id: bytes
    signature: bytes  # what follows the key ID


@dataclass(frozen=True)
class OpenedNote:
    text: str
    verified: list[SignatureLine] = field(default_factory=list)  # by known keys, checked
    others: list[SignatureLine] = field(default_factory=list)  # by unknown keys, ignored


def split_note(note: str | bytes) -> tuple[str, list[SignatureLine]]:
    """The text (up to and including the newline before the blank line) and the signature lines."""
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError:
            raise Rejected("malformed", "a note is UTF-8") from None
    if re.search(r"[\x00-\x09\x0b-\x1f]", note):
        raise Rejected("malformed", "a note has no control characters but newlines")
    if not note.endswith("\n"):
        raise Rejected("malformed", "a note ends with a newline")
    lines = note[:-1].split("\n")
    # The signatures are the lines after the LAST empty line; everything before is the text.
    try:
        blank = len(lines) - 1 - lines[::-1].index("")
    except ValueError:
        raise Rejected("malformed", "no blank line before the signatures") from None
    text = "".join(line + "\n" for line in lines[:blank])
    sig_lines = lines[blank + 1 :]
    if not sig_lines:
        raise Rejected("malformed", "no signature")
    if not text:
        raise Rejected("malformed", "an empty text")
    signatures = []
    for line in sig_lines:
        match = re.fullmatch(r"\u2014 (\S+) (\S+)", line)
        if not match or not key_name_ok(match[1]):
            raise Rejected("malformed", f"not a signature line: {line[:40]!r}")
        raw = b64decode(match[2], "a signature")
        if len(raw) < 5:
            raise Rejected("malformed", "a signature shorter than its key ID")
        signatures.append(SignatureLine(match[1], raw[:4], raw[4:]))
    return text, signatures


def cosignature_message(text: str, timestamp: int) -> bytes:
    """tlog-cosignature: what a cosignature/v1 signs."""
    return b"cosignature/v1\ntime " + str(timestamp).encode() + b"\n" + text.encode()


def signature_valid(key: Vkey, text: str, signature: bytes) -> bool:
    if key.kind == TYPE_ED25519:
        message, raw = text.encode(), signature
    else:  # cosignature/v1: 8-byte big-endian POSIX time, then the Ed25519 signature
        if len(signature) != 72:
            return False
        timestamp = int.from_bytes(signature[:8], "big")
        if timestamp >= 2**63:
            return False
        message, raw = cosignature_message(text, timestamp), signature[8:]
    if len(raw) != 64:
        return False
    try:
        key.verify_key.verify(message, raw)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def open_note(note: str | bytes, keys: Iterable[Vkey]) -> OpenedNote:
    """Check a note's signatures by `keys` (matched by name AND key ID): any bad one rejects the
    note, signatures by other keys are set aside, and at least one must verify."""
    text, signatures = split_note(note)
    known = {(k.name, k.key_id): k for k in keys}
    opened = OpenedNote(text)
    for line in signatures:
        key = known.get((line.name, line.key_id))
        if key is None:
            opened.others.append(line)
        elif not signature_valid(key, text, line.signature):
            raise Rejected("bad-signature", f"{line.name}'s signature does not verify")
        else:
            opened.verified.append(line)
    if not opened.verified:
        raise Rejected("unverified", "no signature by a known key")
    return opened


def cosignature_time(line: SignatureLine) -> int:
    return int.from_bytes(line.signature[:8], "big")


# --- C2SP tlog-checkpoint ----------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()


def parse_checkpoint(text: str) -> Checkpoint:
    """The body of a checkpoint note: origin, decimal size, base64 root, then extension lines."""
    if not text.endswith("\n"):
        raise Rejected("bad-checkpoint", "a checkpoint ends with a newline")
    lines = text.split("\n")[:-1]
    if len(lines) < 3 or "" in lines:
        raise Rejected("bad-checkpoint", "origin, size, root hash (and extensions), none empty")
    origin, size, root = lines[0], lines[1], lines[2]
    if not re.fullmatch(r"[1-9][0-9]*|0", size) or int(size) >= 2**63:
        raise Rejected("bad-checkpoint", "the size is an ASCII decimal without leading zeroes")
    root_hash = b64decode(root, "the root hash")
    if len(root_hash) != 32:
        raise Rejected("bad-checkpoint", "the root is a SHA-256 hash")
    return Checkpoint(origin, int(size), root_hash, tuple(lines[3:]))


@dataclass(frozen=True)
class VerifiedCheckpoint:
    checkpoint: Checkpoint
    cosigned_by: dict[str, int]  # witness name -> cosignature time


def verify_checkpoint(
    note: str, log_key: Vkey, witnesses: Sequence[Vkey] = (), min_cosignatures: int = 0
) -> VerifiedCheckpoint:
    """A checkpoint signed by the log (its key name is the origin), with at least
    `min_cosignatures` valid cosignature/v1 lines by distinct `witnesses`."""
    if log_key.kind != TYPE_ED25519:
        raise Rejected("bad-vkey", "the log signs with an Ed25519 note key")
    cosigners = [w for w in witnesses if w.kind == TYPE_COSIGNATURE_V1]
    opened = open_note(note, [log_key, *cosigners])
    checkpoint = parse_checkpoint(opened.text)
    if not any(line.name == log_key.name and line.key_id == log_key.key_id for line in opened.verified):
        raise Rejected("unverified", "not signed by the log")
    if checkpoint.origin != log_key.name:
        raise Rejected("wrong-origin", f"checkpoint of {checkpoint.origin!r}, the log key is {log_key.name!r}")
    cosigned = {
        line.name: cosignature_time(line)
        for line in opened.verified
        if (line.name, line.key_id) in {(w.name, w.key_id) for w in cosigners}
    }
    if len(cosigned) < min_cosignatures:
        raise Rejected("too-few-cosignatures", f"{len(cosigned)} of {min_cosignatures}")
    return VerifiedCheckpoint(checkpoint, cosigned)


# --- C2SP tlog-tiles ---------------------------------------------------------------------------

TILE_HEIGHT = 8
WIDTH = 256


@dataclass(frozen=True, order=True)
class TileRef:
    level: int
    index: int
    width: int  # 1..256

    def path(self) -> str:
        suffix = "" if self.width == WIDTH else f".p/{self.width}"
        return f"tile/{self.level}/{encode_index(self.index)}{suffix}"

    def entries_path(self) -> str:
        suffix = "" if self.width == WIDTH else f".p/{self.width}"
        return f"tile/entries/{encode_index(self.index)}{suffix}"


def encode_index(n: int) -> str:
    """tlog-tiles: N in zero-padded 3-digit path elements, every element but the last prefixed "x"."""
    digits = str(n)
    digits = digits.zfill(-(-len(digits) // 3) * 3)
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join(["x" + g for g in groups[:-1]] + groups[-1:])


def decode_index(text: str) -> int:
    """The inverse of encode_index, refusing every other spelling."""
    parts = text.split("/")
    if not all(re.fullmatch(r"x\d{3}", p) for p in parts[:-1]) or not re.fullmatch(r"\d{3}", parts[-1]):
        raise Rejected("bad-path", text)
    n = int("".join(p.lstrip("x") for p in parts))
    if encode_index(n) != text:  # a leading x000 group
        raise Rejected("bad-path", text)
    return n


def parse_tile_path(path: str) -> TileRef:
    match = re.fullmatch(r"tile/(0|[1-9]\d?)/((?:x\d{3}/)*\d{3})(?:\.p/([1-9]\d{0,2}))?", path)
    if not match or int(match[1]) > 63:
        raise Rejected("bad-path", path)
    width = int(match[3]) if match[3] else WIDTH
    if match[3] and width >= WIDTH:  # a 256-wide tile is the full one, named without .p/
        raise Rejected("bad-path", path)
    return TileRef(int(match[1]), decode_index(match[2]), width)


def tile_width(level: int, index: int, size: int, height: int = TILE_HEIGHT) -> int:
    """How many hashes tile `index` of `level` holds in a tree of `size` (0: none yet)."""
    hashes = size >> (height * level)  # complete subtrees of 2**(height*level) leaves
    return max(0, min(1 << height, hashes - (index << height)))


def all_tiles(size: int, height: int = TILE_HEIGHT) -> list[TileRef]:
    """Every tile of a tree of `size` leaves."""
    found = []
    level = 0
    while size >> (height * level):
        hashes = size >> (height * level)
        for index in range(-(-hashes >> height)):  # ceil(hashes / 2**height)
            found.append(TileRef(level, index, tile_width(level, index, size, height)))
        level += 1
    return found


def changed_tiles(old_size: int, new_size: int, height: int = TILE_HEIGHT) -> list[TileRef]:
    """The tiles a mirror of the tree of `old_size` must fetch to hold the tree of `new_size`:
    those that are new or wider (a partial tile grows in place under a new path)."""
    found = []
    level = 0
    while new_size >> (height * level):
        old_hashes, new_hashes = old_size >> (height * level), new_size >> (height * level)
        if new_hashes > old_hashes:
            for index in range(old_hashes >> height, ((new_hashes - 1) >> height) + 1):
                found.append(TileRef(level, index, tile_width(level, index, new_size, height)))
        level += 1
    return found


def tiles_for_root(size: int) -> list[TileRef]:
    """The fewest tiles from which the root of `size` can be computed: one per perfect subtree of
    the size's binary decomposition (several subtrees may share a tile)."""
    needed: set[TileRef] = set()
    start = 0
    for bit in reversed(range(size.bit_length())):
        if size >> bit & 1:
            level = bit // TILE_HEIGHT
            first = start >> (TILE_HEIGHT * level)  # its first hash at the tile level
            index = first >> TILE_HEIGHT
            needed.add(TileRef(level, index, tile_width(level, index, size)))
            start += 1 << bit
    return sorted(needed)


Fetch = Callable[[str], bytes]


def _tile_hashes(data: bytes, tile: TileRef) -> list[bytes]:
    if len(data) != 32 * tile.width:
        raise Rejected("bad-tile", f"{tile.path()} is {len(data)} bytes, not {32 * tile.width}")
    return [data[i : i + 32] for i in range(0, len(data), 32)]


def root_from_tiles(size: int, fetch: Fetch) -> bytes:
    """The root of the tree of `size`, from the tiles `fetch(path)` returns (say, over HTTP)."""
    if size == 0:
        return sha256(b"")
    cache: dict[TileRef, list[bytes]] = {}
    for tile in tiles_for_root(size):
        cache[tile] = _tile_hashes(fetch(tile.path()), tile)
    subtrees = []  # the perfect subtrees of the decomposition, left to right
    start = 0
    for bit in reversed(range(size.bit_length())):
        if size >> bit & 1:
            level, rest = divmod(bit, TILE_HEIGHT)
            first = start >> (TILE_HEIGHT * level)
            index = first >> TILE_HEIGHT
            hashes = cache[TileRef(level, index, tile_width(level, index, size))]
            offset = first - (index << TILE_HEIGHT)
            subtrees.append(mth(hashes[offset : offset + (1 << rest)]))  # 2**rest tile hashes: perfect
            start += 1 << bit
    value = subtrees[-1]
    for left in reversed(subtrees[:-1]):
        value = node_hash(left, value)
    return value


def check_all_tiles(size: int, fetch: Fetch) -> tuple[bytes, dict[TileRef, list[bytes]]]:
    """Fetch every tile of the tree (a mirror), check each hash of level L+1 is the MTH of the 256
    hashes below it, and compute the root; (root, the tiles' hashes)."""
    tiles = {t: _tile_hashes(fetch(t.path()), t) for t in all_tiles(size)}
    for t, hashes in tiles.items():
        if t.level == 0:
            continue
        for i, h in enumerate(hashes):
            below_index = (t.index << TILE_HEIGHT) + i  # the level L-1 tile it summarizes
            below = tiles.get(TileRef(t.level - 1, below_index, WIDTH))
            if below is None or mth(below) != h:
                raise Rejected("bad-tile", f"hash {i} of {t.path()} is not the hash of the tile below")
    return root_from_tiles(size, lambda path: b"".join(tiles[parse_tile_path(path)])), tiles


def parse_entry_bundle(data: bytes) -> list[bytes]:
    """tlog-tiles entry bundle: each entry as a big-endian uint16 length and that many bytes."""
    entries = []
    at = 0
    while at < len(data):
        if at + 2 > len(data):
            raise Rejected("bad-bundle", "a length cut short")
        length = int.from_bytes(data[at : at + 2], "big")
        if at + 2 + length > len(data):
            raise Rejected("bad-bundle", "an entry cut short")
        entries.append(data[at + 2 : at + 2 + length])
        at += 2 + length
    if len(entries) > WIDTH:
        raise Rejected("bad-bundle", "more than 256 entries")
    return entries


# --- the log's leaves and receipts (docs/transparency-log.md) -------------------------------------

LEAF_PREFIX = "verifier-log-entry/1"


@dataclass(frozen=True)
class Entry:
    kind: str
    at: str
    actor: str
    personal_hash: str
    body: dict[str, object]


def parse_leaf(data: bytes) -> Entry:
    """`verifier-log-entry/1` LF kind LF at LF actor LF personal_hash LF body (canonical JSON)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected("bad-leaf", "not UTF-8") from None
    parts = text.split("\n")
    if len(parts) != 6 or parts[0] != LEAF_PREFIX:
        raise Rejected("bad-leaf", "not a verifier-log-entry/1")
    try:
        body = json.loads(parts[5])
    except ValueError:
        raise Rejected("bad-leaf", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise Rejected("bad-leaf", "the body is not a JSON object")
    if json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False) != parts[5]:
        raise Rejected("bad-leaf", "the body is not canonical JSON")
    return Entry(parts[1], parts[2], parts[3], parts[4], body)


# --- signing, for an independent witness (tlog-cosignature) and for cross-checks -----------------


def parse_skey(text: str) -> tuple[str, nacl.signing.SigningKey, int]:
    """A Go-style note signer key `PRIVATE+KEY+<name>+<hex id>+<base64(type || seed)>`: (name, key, type)."""
    match = re.fullmatch(r"PRIVATE\+KEY\+([^+]+)\+([0-9a-f]{8})\+(\S+)", text)
    if not match:
        raise Rejected("bad-skey", "not PRIVATE+KEY+name+hexid+base64")
    material = b64decode(match[3], "the skey's key")
    if len(material) != 33 or material[0] not in (TYPE_ED25519, TYPE_COSIGNATURE_V1):
        raise Rejected("bad-skey", "not an Ed25519 seed")
    signing = nacl.signing.SigningKey(material[1:])
    if derive_key_id(match[1], material[0], bytes(signing.verify_key)) != bytes.fromhex(match[2]):
        raise Rejected("bad-skey", "the key ID does not match")
    return match[1], signing, material[0]


def vkey_text(name: str, kind: int, public: bytes) -> str:
    return f"{name}+{derive_key_id(name, kind, public).hex()}+{base64.b64encode(bytes([kind]) + public).decode()}"


def signature_line(name: str, kind: int, public: bytes, signature: bytes) -> str:
    raw = derive_key_id(name, kind, public) + signature
    return f"{SIGNATURE_PREFIX}{name} {base64.b64encode(raw).decode()}\n"


def sign_note(text: str, name: str, key: nacl.signing.SigningKey) -> str:
    """`text` as a note signed by one Ed25519 (type 0x01) key."""
    signature = key.sign(text.encode()).signature
    return text + "\n" + signature_line(name, TYPE_ED25519, bytes(key.verify_key), signature)


def cosign(note: str, name: str, key: nacl.signing.SigningKey, timestamp: int) -> str:
    """`note` (a signed checkpoint) with a cosignature/v1 line by `name` added at `timestamp`."""
    text, _ = split_note(note)
    parse_checkpoint(text)
    signature = timestamp.to_bytes(8, "big") + key.sign(cosignature_message(text, timestamp)).signature
    return note + signature_line(name, TYPE_COSIGNATURE_V1, bytes(key.verify_key), signature)


# The Damm quasigroup of order 10 (Damm 2004; the table printed in the Wikipedia article), for
# the check digit of the printed code (docs/code-format.md: 16 serial digits, then the digit).
DAMM = [
    [0, 3, 1, 7, 5, 9, 8, 6, 4, 2],
    [7, 0, 9, 2, 1, 5, 4, 8, 6, 3],
    [4, 2, 0, 6, 8, 7, 1, 3, 5, 9],
    [1, 7, 5, 0, 9, 8, 3, 4, 2, 6],
    [6, 1, 2, 3, 0, 4, 5, 9, 7, 8],
    [3, 6, 7, 4, 2, 0, 9, 5, 8, 1],
    [5, 8, 6, 9, 7, 2, 0, 1, 3, 4],
    [8, 9, 4, 5, 3, 6, 2, 0, 1, 7],
    [9, 4, 3, 8, 6, 1, 7, 2, 0, 5],
    [2, 5, 8, 1, 4, 3, 6, 7, 9, 0],
]


def printed_code(serial: int) -> str:
    """`dddd dddd dddd ddddC`: the zero-padded serial and its Damm check digit."""
    digits = f"{serial:016d}"
    interim = 0
    for d in digits:
        interim = DAMM[interim][int(d)]
    text = digits + str(interim)
    return f"{text[:4]} {text[4:8]} {text[8:12]} {text[12:]}"


RECEIPT_FORMAT = "verifier-receipt/1"


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def verify_receipt(
    receipt: object, log_key: Vkey, witnesses: Sequence[Vkey] = (), min_cosignatures: int = 0
) -> dict[str, object]:
    """Check a verifier-receipt/1 document (docs/transparency-log.md): its checkpoint is signed by
    the log, the leaf is entry `index` of that tree, and the summary says what the leaf says.
    What it proves, as a dict, or Rejected."""
    if not isinstance(receipt, dict) or receipt.get("format") != RECEIPT_FORMAT:
        raise Rejected("not-a-receipt")
    if receipt.get("state") != "complete":
        raise Rejected("pending" if receipt.get("state") == "pending" else "malformed", "nothing proven yet")
    index, proof, leaf_text, note = (receipt.get(k) for k in ("index", "proof", "leaf", "checkpoint"))
    if not _whole(index) or not isinstance(proof, list) or not isinstance(leaf_text, str) or not isinstance(note, str):
        raise Rejected("malformed", "index, proof, leaf and checkpoint are needed")
    if not all(isinstance(p, str) for p in proof):
        raise Rejected("malformed", "the proof is a list of base64 hashes")
    assert isinstance(index, int)
    hashes = [b64decode(p, "a proof hash") for p in proof]
    leaf = b64decode(leaf_text, "the leaf")
    verified = verify_checkpoint(note, log_key, witnesses, min_cosignatures)
    tree = verified.checkpoint
    verify_inclusion(leaf_hash(leaf), index, tree.size, hashes, tree.root)
    entry = parse_leaf(leaf)
    body = entry.body
    if entry.kind != "scan" or body.get("at") != entry.at:
        raise Rejected("bad-leaf", "not a scan entry")
    serial, checks, scan_id = body.get("serial"), body.get("checks"), body.get("id")
    if not _whole(scan_id) or not (serial is None or _whole(serial)) or not (checks is None or _whole(checks)):
        raise Rejected("bad-leaf", "the scan's id, serial and check count are numbers")
    assert isinstance(serial, int | None)
    expected = {
        "scan": scan_id,
        "serial": None if serial is None else f"{serial:016d}",
        "code": None if serial is None or serial >= 10**16 else printed_code(serial),
        "check": checks,
        "at": entry.at,
        "verdict": body.get("reason"),
    }
    for name, value in expected.items():
        if receipt.get(name) != value or type(receipt.get(name)) is not type(value):
            raise Rejected("summary-mismatch", f"{name} is not what the leaf records")
    return {**expected, "index": index, "origin": tree.origin, "size": tree.size, "cosigned_by": verified.cosigned_by}


def skey_text(name: str, seed: bytes, kind: int = TYPE_ED25519) -> str:
    """The Go-style note signer key of a 32-byte Ed25519 seed (what VERIFIER_LOG_KEY_FILE holds)."""
    public = bytes(nacl.signing.SigningKey(seed).verify_key)
    material = base64.b64encode(bytes([kind]) + seed).decode()
    return f"PRIVATE+KEY+{name}+{derive_key_id(name, kind, public).hex()}+{material}"
