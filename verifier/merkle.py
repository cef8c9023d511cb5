"""RFC 9162 (CT v2) / RFC 6962 Merkle trees: hashes, inclusion and consistency proofs, tlog tiles.

Pure: values in, values out. Proofs are built from a `HashAt` function, `hash_at(level, index)`,
the hash of the complete subtree of 2**level leaves that starts at leaf `index * 2**level`. That
is what a log stores once and never rewrites (Go's sumdb/tlog keeps exactly these, a tile server
serves them 256 to a file), so a database table keyed by (level, index), a directory of tiles or
`hash_at_from_leaves` over a list can all serve proofs. The functions only ask for complete
subtrees inside the tree size they are given; the incomplete right edge is hashed here.

The verifiers follow RFC 9162 §2.1.3.2 and §2.1.4.2 step by step and raise `InvalidProof`
(a `ValueError` with a stable machine `reason`) for every proof they do not accept; they return
None otherwise. Spec and design notes: docs/transparency-log.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}) = SHA-256() (RFC 9162 §2.1.1)

HashAt = Callable[[int, int], bytes]
"""`hash_at(level, index)`: the stored hash of the complete subtree of leaves [index << level, (index + 1) << level)."""

# The machine reasons of InvalidProof.
BAD_HASH = "bad-hash"  # a root, leaf hash or proof element that is not 32 bytes
INDEX_OUT_OF_RANGE = "index-out-of-range"  # leaf_index >= tree_size
SIZE_ORDER = "size-order"  # old_size > new_size
EMPTY_OLD_TREE = "empty-old-tree"  # old_size == 0: nothing to prove (RFC 9162 defines 0 < m)
WRONG_LENGTH = "wrong-length"  # too many or too few proof elements
ROOT_MISMATCH = "root-mismatch"  # the computed root is not the one given
OLD_ROOT_MISMATCH = "old-root-mismatch"  # consistency: the old root recomputed from the proof differs


class InvalidProof(ValueError):
    """A proof that does not prove what it claims; `reason` is one of the constants above."""

    def __init__(self, reason: str, message: str = ""):
        super().__init__(message or reason)
        self.reason = reason


def leaf_hash(data: bytes) -> bytes:
    """MTH of one entry: SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The interior node over two subtree hashes: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1): the size of the left subtree."""
    return 1 << ((n - 1).bit_length() - 1)


def tree_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of the tree whose leaves hash to `leaf_hashes` (any size, 0 included)."""
    if not leaf_hashes:
        return EMPTY_ROOT
    return subtree_hash(0, len(leaf_hashes), hash_at_from_leaves(leaf_hashes))


def subtree_hash(start: int, end: int, hash_at: HashAt) -> bytes:
    """MTH(D[start:end]) for a range the RFC recursion produces (start a multiple of the split size)."""
    n = end - start
    if n <= 0:
        raise ValueError(f"empty subtree [{start}, {end})")
    if n & (n - 1) == 0 and start % n == 0:
        return hash_at(n.bit_length() - 1, start // n)
    k = _split(n)
    return node_hash(subtree_hash(start, start + k, hash_at), subtree_hash(start + k, end, hash_at))


def root_hash(size: int, hash_at: HashAt) -> bytes:
    """MTH of the first `size` leaves, from stored subtree hashes."""
    if size < 0:
        raise ValueError(f"negative tree size {size}")
    return EMPTY_ROOT if size == 0 else subtree_hash(0, size, hash_at)


def hash_at_from_leaves(leaf_hashes: Sequence[bytes]) -> HashAt:
    """A `HashAt` over leaf hashes held in memory: every complete subtree hash computed once, up front."""
    levels = [list(leaf_hashes)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])

    def hash_at(level: int, index: int) -> bytes:
        if not 0 <= level < len(levels) or not 0 <= index < len(levels[level]):
            raise IndexError(f"no complete subtree at level {level}, index {index}")
        return levels[level][index]

    return hash_at


def inclusion_proof(index: int, size: int, hash_at: HashAt) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 §2.1.3.1: the audit path of leaf `index`, leaf end first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} not in a tree of size {size}")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:  # walk from the root down, collecting the sibling of each step
        k = _split(end - start)
        if index < start + k:
            path.append(subtree_hash(start + k, end, hash_at))
            end = start + k
        else:
            path.append(subtree_hash(start, start + k, hash_at))
            start += k
    path.reverse()
    return path


def consistency_proof(old_size: int, new_size: int, hash_at: HashAt) -> list[bytes]:
    """PROOF(old_size, D[0:new_size]) of RFC 9162 §2.1.4.1; empty when the sizes are equal."""
    if not 0 < old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    path: list[bytes] = []
    start, end, m, whole = 0, new_size, old_size, True
    while m != end - start:  # SUBPROOF(m, D[start:end], whole)
        k = _split(end - start)
        if m <= k:
            path.append(subtree_hash(start + k, end, hash_at))
            end = start + k
        else:
            path.append(subtree_hash(start, start + k, hash_at))
            start, m, whole = start + k, m - k, False
    if not whole:
        path.append(subtree_hash(start, end, hash_at))
    path.reverse()
    return path


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise InvalidProof(BAD_HASH, f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that `leaf` (a leaf hash) is entry `index` of the tree of `size` with `root` (RFC 9162 §2.1.3.2)."""
    _check_hash(leaf, "leaf hash")
    _check_hash(root, "root")
    for p in proof:
        _check_hash(p, "proof element")
    if index < 0 or index >= size:
        raise InvalidProof(INDEX_OUT_OF_RANGE, f"leaf index {index} not in a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise InvalidProof(WRONG_LENGTH, "proof longer than the path")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise InvalidProof(WRONG_LENGTH, "proof shorter than the path")
    if r != root:
        raise InvalidProof(ROOT_MISMATCH)


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """Check that the tree of `old_size` is a prefix of the tree of `new_size` (RFC 9162 §2.1.4.2).

    Equal sizes take an empty proof and equal roots (RFC 9162 §2.1.4.1: PROOF(m, D[m]) is empty);
    an old size of 0 is rejected, as RFC 9162 defines proofs for 0 < old_size only.
    """
    _check_hash(old_root, "old root")
    _check_hash(new_root, "new root")
    for c in proof:
        _check_hash(c, "proof element")
    if old_size < 0 or old_size > new_size:
        raise InvalidProof(SIZE_ORDER, f"old size {old_size} > new size {new_size}")
    if old_size == 0:
        raise InvalidProof(EMPTY_OLD_TREE, "a consistency proof from the empty tree proves nothing")
    if old_size == new_size:
        if proof:
            raise InvalidProof(WRONG_LENGTH, "equal sizes take an empty proof")
        if old_root != new_root:
            raise InvalidProof(ROOT_MISMATCH, "equal sizes, different roots")
        return
    # 1. An empty path fails.
    if not proof:
        raise InvalidProof(WRONG_LENGTH, "empty proof")
    path = list(proof)
    # 2. If first is an exact power of 2, prepend first_hash.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # 3. fn = first - 1, sn = second - 1. 4. While LSB(fn) is set, shift both right.
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    # 5. fr = sr = the first value of the path. 6. Each later value c:
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise InvalidProof(WRONG_LENGTH, "proof longer than the path")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    # 7. fr == first_hash, sr == second_hash and sn == 0.
    if sn != 0:
        raise InvalidProof(WRONG_LENGTH, "proof shorter than the path")
    if fr != old_root:
        raise InvalidProof(OLD_ROOT_MISMATCH)
    if sr != new_root:
        raise InvalidProof(ROOT_MISMATCH)


# C2SP tlog-tiles (https://c2sp.org/tlog-tiles): tiles of height 8, 256 hashes wide.
TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
MAX_TILE_LEVEL = 63


@dataclass(frozen=True, order=True)
class Tile:
    """Tile `index` at tile level `level`, `width` hashes (256 for a full tile, 1..255 for a partial one)."""

    level: int
    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        if not 0 <= self.level <= MAX_TILE_LEVEL or self.index < 0 or not 1 <= self.width <= TILE_WIDTH:
            raise ValueError(f"no such tile: level {self.level}, index {self.index}, width {self.width}")


def format_tile_index(index: int) -> str:
    """`<N>` of a tile path: 3-digit elements, all but the last x-prefixed (1234067 -> x001/x234/067)."""
    if index < 0:
        raise ValueError(f"negative tile index {index}")
    groups = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        groups.append(f"x{index % 1000:03d}")
        index //= 1000
    return "/".join(reversed(groups))


def tile_path(tile: Tile) -> str:
    """`tile/<L>/<N>[.p/<W>]`, relative to the log's prefix."""
    partial = f".p/{tile.width}" if tile.width < TILE_WIDTH else ""
    return f"tile/{tile.level}/{format_tile_index(tile.index)}{partial}"


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    """`tile/entries/<N>[.p/<W>]`: the entry bundle beside level-0 tile `index`."""
    Tile(0, index, width)  # the same bounds
    partial = f".p/{width}" if width < TILE_WIDTH else ""
    return f"tile/entries/{format_tile_index(index)}{partial}"


def tiles_for_size(size: int) -> list[Tile]:
    """Every tile of a tree of `size` leaves, level by level: the full ones, then the partial one if any."""
    if size < 0:
        raise ValueError(f"negative tree size {size}")
    tiles: list[Tile] = []
    level = 0
    while size >> (TILE_HEIGHT * level):
        hashes = size >> (TILE_HEIGHT * level)  # complete subtrees of 256**level leaves
        tiles += [Tile(level, n) for n in range(hashes // TILE_WIDTH)]
        if hashes % TILE_WIDTH:
            tiles.append(Tile(level, hashes // TILE_WIDTH, hashes % TILE_WIDTH))
        level += 1
    return tiles


def tile_hashes(tile: Tile, hash_at: HashAt) -> bytes:
    """The content of `tile`: its `width` hashes, MTH(D[(n*256+i)*256**l : (n*256+i+1)*256**l]), concatenated."""
    level = TILE_HEIGHT * tile.level
    first = tile.index * TILE_WIDTH
    return b"".join(hash_at(level, first + i) for i in range(tile.width))
