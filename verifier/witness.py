"""A witness's check before it cosigns: the new checkpoint extends the one it cosigned before.

The witness knows only what a mirror can fetch: the log's hash tiles (C2SP tlog-tiles). From them
it builds the RFC 9162 consistency proof between the two sizes itself, and checks it against both
signed roots; a log that forked or rewrote its past cannot give tiles that pass. Pure apart from
`fetch`, which the caller supplies (HTTP in `verifier log cosign`, a test client in tests).
"""

from __future__ import annotations

from collections.abc import Callable

from . import merkle, note

Fetch = Callable[[str], bytes]  # a tile path (merkle.tile_path) -> the tile's bytes


class Inconsistent(ValueError):
    """The new checkpoint does not extend the old one (or the tiles could not show that it does)."""


def tile_hash_reader(fetch: Fetch, tree_size: int) -> merkle.HashAt:
    """`hash_at(level, index)` for complete subtrees of a tree of `tree_size`, from its hash tiles:
    a level-l hash is the tree hash of 2**(l mod 8) consecutive hashes of the tile level below it."""
    tiles: dict[tuple[int, int], list[bytes]] = {}

    def tile_at(tile_level: int, index: int) -> list[bytes]:
        key = (tile_level, index)
        if key not in tiles:
            available = (tree_size >> (merkle.TILE_HEIGHT * tile_level)) - index * merkle.TILE_WIDTH
            width = min(merkle.TILE_WIDTH, available)
            if width < 1:
                raise Inconsistent(f"the tree of {tree_size} has no tile {tile_level}/{index}")
            data = fetch(merkle.tile_path(merkle.Tile(tile_level, index, width)))
            if len(data) != width * merkle.HASH_SIZE:
                raise Inconsistent(f"tile {tile_level}/{index} has {len(data)} bytes, not {width * merkle.HASH_SIZE}")
            tiles[key] = [data[i : i + merkle.HASH_SIZE] for i in range(0, len(data), merkle.HASH_SIZE)]
        return tiles[key]

    def hash_at(level: int, index: int) -> bytes:
        tile_level, rest = divmod(level, merkle.TILE_HEIGHT)
        first = index << rest  # the first hash at the tile level under this subtree
        hashes = tile_at(tile_level, first // merkle.TILE_WIDTH)
        start = first % merkle.TILE_WIDTH
        covered = hashes[start : start + (1 << rest)]
        if len(covered) != 1 << rest:
            raise Inconsistent(f"the tiles do not hold the subtree at level {level}, index {index}")
        return merkle.tree_hash(covered) if rest else covered[0]

    return hash_at


def check_extends(old: note.Checkpoint, new: note.Checkpoint, fetch: Fetch) -> None:
    """Raise Inconsistent unless `new` (whose tiles `fetch` reads) extends `old`: same origin, not
    smaller, and a consistency proof built from the tiles joins the two signed roots."""
    if old.origin != new.origin:
        raise Inconsistent(f"the checkpoints are of two logs ({old.origin!r}, {new.origin!r})")
    if new.size < old.size:
        raise Inconsistent(f"the new checkpoint has {new.size} entries, fewer than the {old.size} cosigned before")
    if old.size == 0:
        return  # every tree extends the empty one
    try:
        proof = merkle.consistency_proof(old.size, new.size, tile_hash_reader(fetch, new.size))
        merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)
    except merkle.InvalidProof as exc:
        raise Inconsistent(f"the new checkpoint does not extend the old one ({exc.reason})") from None
