"""verifier.merkle against published vectors, and against a second implementation written from RFC 9162.

Vectors (tests/vectors_tlog/README.md): transparency-dev/merkle's reference tree and its inclusion
and consistency probes, and the examples of C2SP tlog-tiles. The second implementation below
(`rfc_*`) shares no code with verifier.merkle: it follows the recursive definitions of RFC 9162
§2.1.1, §2.1.3.1 and §2.1.4.1 over plain lists, and the verification steps of §2.1.3.2 and
§2.1.4.2 with hashlib.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from verifier import merkle

TLOG = Path(__file__).resolve().parent / "vectors_tlog"


def load(name: str) -> dict:
    return json.loads((TLOG / name).read_text("utf-8"))


def b64(text: str) -> bytes:
    return base64.b64decode(text)


# --- the second implementation, from the RFC text ---------------------------------------------


def rfc_hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def rfc_k(n: int) -> int:
    """The largest power of two smaller than n."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def rfc_mth(d: list[bytes]) -> bytes:
    """MTH(D[n]) over entries (not leaf hashes), RFC 9162 §2.1.1."""
    if not d:
        return rfc_hash(b"")
    if len(d) == 1:
        return rfc_hash(b"\x00" + d[0])
    k = rfc_k(len(d))
    return rfc_hash(b"\x01" + rfc_mth(d[:k]) + rfc_mth(d[k:]))


def rfc_path(m: int, d: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]), RFC 9162 §2.1.3.1."""
    if len(d) == 1:
        return []
    k = rfc_k(len(d))
    if m < k:
        return rfc_path(m, d[:k]) + [rfc_mth(d[k:])]
    return rfc_path(m - k, d[k:]) + [rfc_mth(d[:k])]


def rfc_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b), RFC 9162 §2.1.4.1."""
    n = len(d)
    if m == n:
        return [] if b else [rfc_mth(d)]
    k = rfc_k(n)
    if m <= k:
        return rfc_subproof(m, d[:k], b) + [rfc_mth(d[k:])]
    return rfc_subproof(m - k, d[k:], False) + [rfc_mth(d[:k])]


def rfc_verify_inclusion(leaf_index: int, tree_size: int, root_hash: bytes, path: list[bytes], hash_: bytes) -> bool:
    """RFC 9162 §2.1.3.2, step by step."""
    if leaf_index >= tree_size:
        return False
    fn, sn = leaf_index, tree_size - 1
    r = hash_
    for p in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = rfc_hash(b"\x01" + p + r)
            if fn % 2 == 0:
                while not (fn % 2 == 1 or fn == 0):
                    fn //= 2
                    sn //= 2
        else:
            r = rfc_hash(b"\x01" + r + p)
        fn //= 2
        sn //= 2
    return sn == 0 and r == root_hash


def rfc_verify_consistency(first: int, second: int, first_hash: bytes, second_hash: bytes, path: list[bytes]) -> bool:
    """RFC 9162 §2.1.4.2, step by step (defined for 0 < first < second)."""
    if not path:
        return False
    if first & (first - 1) == 0:
        path = [first_hash] + path
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn //= 2
        sn //= 2
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr = rfc_hash(b"\x01" + c + fr)
            sr = rfc_hash(b"\x01" + c + sr)
            if fn % 2 == 0:
                while not (fn % 2 == 1 or fn == 0):
                    fn //= 2
                    sn //= 2
        else:
            sr = rfc_hash(b"\x01" + sr + c)
        fn //= 2
        sn //= 2
    return fr == first_hash and sr == second_hash and sn == 0


# --- published vectors ------------------------------------------------------------------------

REFERENCE = load("rfc6962-tree.json")
REFERENCE_LEAVES = [bytes.fromhex(h) for h in REFERENCE["leaf_inputs_hex"]]


def test_reference_tree_roots_for_every_size():
    leaf_hashes = [merkle.leaf_hash(d) for d in REFERENCE_LEAVES]
    for size, root in enumerate(REFERENCE["root_hashes_hex"]):
        assert merkle.tree_hash(leaf_hashes[:size]).hex() == root
    assert merkle.EMPTY_ROOT.hex() == REFERENCE["root_hashes_hex"][0]


def test_reference_tree_stored_subtree_hashes():
    hash_at = merkle.hash_at_from_leaves([merkle.leaf_hash(d) for d in REFERENCE_LEAVES])
    for level, hashes in enumerate(REFERENCE["node_hashes_hex"]):
        for index, expected in enumerate(hashes):
            assert hash_at(level, index).hex() == expected


# Where verifier.merkle is stricter than transparency-dev/merkle, on purpose: file -> our reason.
STRICTER = {
    # Go accepts equal sizes with equal roots of any length ("don't care", 12 bytes); we take 32-byte hashes only.
    "testdata/consistency/additional/sizes-are-equal-one-and-proof-is-empty.json": merkle.BAD_HASH,
}


def probe_params(name: str) -> list:
    return [pytest.param(p, id=p["file"].removeprefix("testdata/")) for p in load(name)["probes"]]


def outcome(check) -> str | None:
    try:
        check()
    except merkle.InvalidProof as e:
        return e.reason
    return None


@pytest.mark.parametrize("probe", probe_params("inclusion-probes.json"))
def test_inclusion_probe(probe):
    reason = outcome(
        lambda: merkle.verify_inclusion(
            b64(probe["leafHash"]),
            probe["leafIdx"],
            probe["treeSize"],
            [b64(p) for p in probe["proof"] or []],
            b64(probe["root"]),
        )
    )
    assert (reason is not None) == probe["wantErr"], (probe["desc"], reason)


@pytest.mark.parametrize("probe", probe_params("consistency-probes.json"))
def test_consistency_probe(probe):
    reason = outcome(
        lambda: merkle.verify_consistency(
            probe["size1"],
            probe["size2"],
            b64(probe["root1"]),
            b64(probe["root2"]),
            [b64(p) for p in probe["proof"] or []],
        )
    )
    if probe["file"] in STRICTER:
        assert reason == STRICTER[probe["file"]]
    else:
        assert (reason is not None) == probe["wantErr"], (probe["desc"], reason)


def test_the_stricter_case_passes_with_real_hashes():
    root = merkle.leaf_hash(b"x")
    merkle.verify_consistency(1, 1, root, root, [])


def test_happy_path_probes_are_the_proofs_we_build():
    """The probes' happy paths are over the reference tree: our prover builds exactly those proofs."""
    hash_at = merkle.hash_at_from_leaves([merkle.leaf_hash(d) for d in REFERENCE_LEAVES])
    checked = 0
    for probe in load("inclusion-probes.json")["probes"]:
        if probe["desc"] == "happy path" and probe["treeSize"] <= len(REFERENCE_LEAVES):
            proof = merkle.inclusion_proof(probe["leafIdx"], probe["treeSize"], hash_at)
            assert [base64.b64encode(p).decode() for p in proof] == (probe["proof"] or [])
            checked += 1
    for probe in load("consistency-probes.json")["probes"]:
        if probe["desc"] == "happy path" and 0 < probe["size1"] and probe["size2"] <= len(REFERENCE_LEAVES):
            proof = merkle.consistency_proof(probe["size1"], probe["size2"], hash_at)
            assert [base64.b64encode(p).decode() for p in proof] == (probe["proof"] or [])
            checked += 1
    assert checked >= 8


# --- against the RFC implementation, every size 1..64 -----------------------------------------

SIZES = range(1, 65)
ENTRIES = [f"entry {i}".encode() for i in range(max(SIZES))]
LEAF_HASHES = [merkle.leaf_hash(e) for e in ENTRIES]
HASH_AT = merkle.hash_at_from_leaves(LEAF_HASHES)


@pytest.mark.parametrize("size", SIZES)
def test_tree_hash_matches_the_rfc(size):
    assert merkle.tree_hash(LEAF_HASHES[:size]) == rfc_mth(ENTRIES[:size])
    assert merkle.root_hash(size, HASH_AT) == rfc_mth(ENTRIES[:size])


@pytest.mark.parametrize("size", SIZES)
def test_inclusion_proofs_match_the_rfc(size):
    root = rfc_mth(ENTRIES[:size])
    for index in range(size):
        proof = merkle.inclusion_proof(index, size, HASH_AT)
        assert proof == rfc_path(index, ENTRIES[:size])
        assert rfc_verify_inclusion(index, size, root, proof, LEAF_HASHES[index])
        merkle.verify_inclusion(LEAF_HASHES[index], index, size, proof, root)


@pytest.mark.parametrize("size", SIZES)
def test_consistency_proofs_match_the_rfc(size):
    root = rfc_mth(ENTRIES[:size])
    for old in range(1, size + 1):
        old_root = rfc_mth(ENTRIES[:old])
        proof = merkle.consistency_proof(old, size, HASH_AT)
        assert proof == rfc_subproof(old, ENTRIES[:size], True)
        if old < size:
            assert rfc_verify_consistency(old, size, old_root, root, proof)
        merkle.verify_consistency(old, size, old_root, root, proof)


def flips(proof: list[bytes]):
    """Every proof with exactly one bit of one element flipped."""
    for i, element in enumerate(proof):
        for bit in range(8 * len(element)):
            changed = bytearray(element)
            changed[bit // 8] ^= 1 << (bit % 8)
            yield proof[:i] + [bytes(changed)] + proof[i + 1 :]


def resized(proof: list[bytes]):
    """The proof truncated at either end, extended at either end, and with one element repeated."""
    extra = merkle.leaf_hash(b"extra")
    yield from (proof[1:], proof[:-1], proof + [extra], [extra] + proof)
    yield from (proof[:i] + [proof[i]] + proof[i:] for i in range(len(proof)))


def rejected(verify, *args) -> bool:
    try:
        verify(*args)
    except merkle.InvalidProof:
        return True
    return False


TAMPER_SIZES = [*range(1, 18), 31, 32, 33, 63, 64]


@pytest.mark.parametrize("size", TAMPER_SIZES)
def test_tampered_inclusion_proofs_are_rejected(size):
    root = merkle.tree_hash(LEAF_HASHES[:size])
    for index in range(size):
        proof = merkle.inclusion_proof(index, size, HASH_AT)
        for bad in [*flips(proof), *resized(proof)]:
            if bad == proof:  # an element repeated can leave a proof of equal elements unchanged
                continue
            assert rejected(merkle.verify_inclusion, LEAF_HASHES[index], index, size, bad, root)
        for bad_leaf, bad_root in [
            *((leaf, root) for [leaf] in flips([LEAF_HASHES[index]])),
            *((LEAF_HASHES[index], r) for [r] in flips([root])),
        ]:
            assert rejected(merkle.verify_inclusion, bad_leaf, index, size, proof, bad_root)


@pytest.mark.parametrize("size", TAMPER_SIZES)
def test_tampered_consistency_proofs_are_rejected(size):
    root = merkle.tree_hash(LEAF_HASHES[:size])
    for old in range(1, size + 1):
        old_root = merkle.tree_hash(LEAF_HASHES[:old])
        proof = merkle.consistency_proof(old, size, HASH_AT)
        for bad in [*flips(proof), *resized(proof)]:
            if bad == proof:
                continue
            assert rejected(merkle.verify_consistency, old, size, old_root, root, bad)
        for [bad_old] in flips([old_root]):
            assert rejected(merkle.verify_consistency, old, size, bad_old, root, proof)
        for [bad_new] in flips([root]):
            assert rejected(merkle.verify_consistency, old, size, old_root, bad_new, proof)


# --- malformed arguments, each its own case ---------------------------------------------------

H = merkle.leaf_hash(b"h")


@pytest.mark.parametrize(
    "args, reason",
    [
        pytest.param((H, 1, 1, [], H), merkle.INDEX_OUT_OF_RANGE, id="index-equals-size"),
        pytest.param((H, 5, 2, [H], H), merkle.INDEX_OUT_OF_RANGE, id="index-beyond-size"),
        pytest.param((H, -1, 2, [H], H), merkle.INDEX_OUT_OF_RANGE, id="negative-index"),
        pytest.param((H, 0, 0, [], H), merkle.INDEX_OUT_OF_RANGE, id="empty-tree"),
        pytest.param((H[:31], 0, 1, [], H), merkle.BAD_HASH, id="short-leaf"),
        pytest.param((H, 0, 1, [], H + b"\x00"), merkle.BAD_HASH, id="long-root"),
        pytest.param((H, 0, 2, [b""], H), merkle.BAD_HASH, id="empty-element"),
        pytest.param((H, 0, 1, [H], H), merkle.WRONG_LENGTH, id="proof-for-a-single-leaf"),
        pytest.param((H, 0, 4, [H], H), merkle.WRONG_LENGTH, id="too-short"),
        pytest.param((H, 0, 1, [], merkle.leaf_hash(b"other")), merkle.ROOT_MISMATCH, id="single-leaf-wrong-root"),
    ],
)
def test_malformed_inclusion(args, reason):
    with pytest.raises(merkle.InvalidProof) as caught:
        merkle.verify_inclusion(*args)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    "args, reason",
    [
        pytest.param((2, 1, H, H, [H]), merkle.SIZE_ORDER, id="old-larger-than-new"),
        pytest.param((-1, 1, H, H, []), merkle.SIZE_ORDER, id="negative-old-size"),
        pytest.param((0, 5, merkle.EMPTY_ROOT, H, []), merkle.EMPTY_OLD_TREE, id="from-empty-tree"),
        pytest.param((0, 0, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, []), merkle.EMPTY_OLD_TREE, id="both-empty"),
        pytest.param((3, 3, H, H, [H]), merkle.WRONG_LENGTH, id="equal-sizes-with-proof"),
        pytest.param((3, 3, H, merkle.EMPTY_ROOT, []), merkle.ROOT_MISMATCH, id="equal-sizes-other-root"),
        pytest.param((3, 4, H, H, []), merkle.WRONG_LENGTH, id="empty-proof"),
        pytest.param((3, 4, H, H, [H[:16]]), merkle.BAD_HASH, id="short-element"),
        pytest.param((3, 4, b"", H, [H]), merkle.BAD_HASH, id="empty-old-root"),
    ],
)
def test_malformed_consistency(args, reason):
    with pytest.raises(merkle.InvalidProof) as caught:
        merkle.verify_consistency(*args)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: merkle.inclusion_proof(3, 3, HASH_AT), id="inclusion-index-equals-size"),
        pytest.param(lambda: merkle.inclusion_proof(-1, 3, HASH_AT), id="inclusion-negative-index"),
        pytest.param(lambda: merkle.consistency_proof(0, 3, HASH_AT), id="consistency-from-empty"),
        pytest.param(lambda: merkle.consistency_proof(4, 3, HASH_AT), id="consistency-shrinking"),
        pytest.param(lambda: merkle.root_hash(-1, HASH_AT), id="negative-size"),
    ],
)
def test_impossible_proof_requests(call):
    with pytest.raises(ValueError):
        call()


def test_provers_ask_only_for_complete_subtrees_inside_the_tree():
    asked: list[tuple[int, int]] = []

    def hash_at(level: int, index: int) -> bytes:
        asked.append((level, index))
        return HASH_AT(level, index)

    for size in (1, 7, 13, 37):
        for index in range(size):
            merkle.inclusion_proof(index, size, hash_at)
        for old in range(1, size + 1):
            merkle.consistency_proof(old, size, hash_at)
        assert all((index + 1) << level <= size for level, index in asked)
        asked.clear()


# --- C2SP tlog-tiles --------------------------------------------------------------------------

TILES = load("tiles.json")


@pytest.mark.parametrize("case", TILES["index_paths"], ids=lambda c: str(c["index"]))
def test_tile_index_path_from_the_spec(case):
    assert merkle.format_tile_index(case["index"]) == case["path"]


@pytest.mark.parametrize("case", TILES["sizes"], ids=lambda c: str(c["size"]))
def test_tiles_for_size_from_the_spec(case):
    tiles = merkle.tiles_for_size(case["size"])
    full: dict[str, int] = {}
    partial: dict[str, int] = {}
    for tile in tiles:
        if tile.width == merkle.TILE_WIDTH:
            full[str(tile.level)] = full.get(str(tile.level), 0) + 1
        else:
            assert str(tile.level) not in partial
            partial[str(tile.level)] = tile.width
    assert full == case["full"]
    assert partial == case["partial"]


@pytest.mark.parametrize(
    "tile, path",
    [
        pytest.param(merkle.Tile(0, 0), "tile/0/000", id="first"),
        pytest.param(merkle.Tile(0, 273, 112), "tile/0/273.p/112", id="partial"),
        pytest.param(merkle.Tile(2, 1234067), "tile/2/x001/x234/067", id="deep-index"),
        pytest.param(merkle.Tile(1, 1000, 1), "tile/1/x001/000.p/1", id="thousand"),
    ],
)
def test_tile_paths(tile, path):
    assert merkle.tile_path(tile) == path


def test_entries_path():
    assert merkle.entries_path(1234067) == "tile/entries/x001/x234/067"
    assert merkle.entries_path(0, 5) == "tile/entries/000.p/5"


@pytest.mark.parametrize(
    "level, index, width",
    [
        pytest.param(-1, 0, 256, id="negative-level"),
        pytest.param(64, 0, 256, id="level-64"),
        pytest.param(0, -1, 256, id="negative-index"),
        pytest.param(0, 0, 0, id="width-0"),
        pytest.param(0, 0, 257, id="width-257"),
    ],
)
def test_impossible_tiles(level, index, width):
    with pytest.raises(ValueError):
        merkle.Tile(level, index, width)


def test_tile_contents_are_the_spec_formula():
    """The n-th tile at level l holds MTH(D[(n*256+i)*256**l : (n*256+i+1)*256**l]) for i < width."""
    entries = [f"tile entry {i}".encode() for i in range(600)]
    hash_at = merkle.hash_at_from_leaves([merkle.leaf_hash(e) for e in entries])
    tiles = merkle.tiles_for_size(len(entries))
    assert [merkle.tile_path(t) for t in tiles] == ["tile/0/000", "tile/0/001", "tile/0/002.p/88", "tile/1/000.p/2"]
    for tile in tiles:
        data = merkle.tile_hashes(tile, hash_at)
        span = 256**tile.level
        expected = [
            rfc_mth(entries[(tile.index * 256 + i) * span : (tile.index * 256 + i + 1) * span])
            for i in range(tile.width)
        ]
        assert data == b"".join(expected)
