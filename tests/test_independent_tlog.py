"""The transparency log checked by a second client written from the specs (tests/independent_tlog.py).

First the independent client against the published vectors (tests/vectors_tlog, README there),
so it is known to be right on its own; then against verifier's core (merkle, note) on trees
held in memory; then against the product: proofs from `logtree` over a real database built
through the lookup, and a real `verifier serve` over HTTP (checkpoint, tiles, a receipt).
"""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import independent_tlog as ind
import nacl.signing
import pytest

TLOG = Path(__file__).resolve().parent / "vectors_tlog"


def load(name: str) -> dict:
    return json.loads((TLOG / name).read_text("utf-8"))


def b64(text: str) -> bytes:
    return base64.b64decode(text)


def reason_of(call, *args) -> str | None:
    try:
        call(*args)
    except ind.Rejected as e:
        return e.reason
    return None


# --- the independent client on published vectors ---------------------------------------------------

REFERENCE = load("rfc6962-tree.json")
REFERENCE_LEAVES = [bytes.fromhex(h) for h in REFERENCE["leaf_inputs_hex"]]
REFERENCE_HASHES = [ind.leaf_hash(d) for d in REFERENCE_LEAVES]


def test_reference_roots_of_every_size():
    for size, root in enumerate(REFERENCE["root_hashes_hex"]):
        assert ind.mth(REFERENCE_HASHES[:size]).hex() == root


def test_reference_stored_subtree_hashes():
    for level, hashes in enumerate(REFERENCE["node_hashes_hex"]):
        for index, expected in enumerate(hashes):
            width = 1 << level
            assert ind.mth(REFERENCE_HASHES[index * width : (index + 1) * width]).hex() == expected


# The one probe where the independent client, like verifier, is stricter than transparency-dev/merkle:
# equal sizes with 12-byte "don't care" roots; both take 32-byte hashes only.
STRICTER = {"testdata/consistency/additional/sizes-are-equal-one-and-proof-is-empty.json": "bad-hash"}


def probes(name: str) -> list:
    return [pytest.param(p, id=p["file"].removeprefix("testdata/")) for p in load(name)["probes"]]


@pytest.mark.parametrize("probe", probes("inclusion-probes.json"))
def test_inclusion_probe(probe):
    reason = reason_of(
        ind.verify_inclusion,
        b64(probe["leafHash"]),
        probe["leafIdx"],
        probe["treeSize"],
        [b64(p) for p in probe["proof"] or []],
        b64(probe["root"]),
    )
    assert (reason is not None) == probe["wantErr"], (probe["desc"], reason)


@pytest.mark.parametrize("probe", probes("consistency-probes.json"))
def test_consistency_probe(probe):
    reason = reason_of(
        ind.verify_consistency,
        probe["size1"],
        probe["size2"],
        b64(probe["root1"]),
        b64(probe["root2"]),
        [b64(p) for p in probe["proof"] or []],
    )
    if probe["file"] in STRICTER:
        assert reason == STRICTER[probe["file"]]
    else:
        assert (reason is not None) == probe["wantErr"], (probe["desc"], reason)


NOTES = load("notes.json")
GO, C2SP = NOTES["go"], NOTES["c2sp"]


def test_go_vkeys_and_their_key_ids():
    for text in (GO["peter_vkey"], GO["enoch_vkey"], C2SP["vkey"]):
        key = ind.parse_vkey(text)
        assert ind.vkey_text(key.name, key.kind, key.public) == text


def test_go_bad_vkeys_are_rejected():
    for text in GO["bad_vkeys"]:
        assert reason_of(ind.parse_vkey, text) in ("bad-vkey", "malformed")


def test_go_skey_makes_the_go_signature():
    name, key, kind = ind.parse_skey(GO["peter_skey"])
    assert ind.vkey_text(name, kind, bytes(key.verify_key)) == GO["peter_vkey"]
    assert ind.sign_note(GO["text"], name, key) == GO["text"] + "\n" + GO["peter_signature_line"]


def test_go_note_signed_twice():
    note = GO["text"] + "\n" + GO["peter_signature_line"] + GO["enoch_signature_line"]
    peter, enoch = ind.parse_vkey(GO["peter_vkey"]), ind.parse_vkey(GO["enoch_vkey"])
    both = ind.open_note(note, [peter, enoch])
    assert [s.name for s in both.verified] == ["PeterNeumann", "EnochRoot"] and both.text == GO["text"]
    one = ind.open_note(note, [enoch])
    assert [s.name for s in one.verified] == ["EnochRoot"] and [s.name for s in one.others] == ["PeterNeumann"]


def test_a_known_keys_bad_signature_rejects_the_whole_note():
    line = GO["peter_signature_line"]
    forged = line[:-5] + ("A" if line[-5] != "A" else "B") + line[-4:]
    note = GO["text"] + "\n" + forged + GO["enoch_signature_line"]
    keys = [ind.parse_vkey(GO["peter_vkey"]), ind.parse_vkey(GO["enoch_vkey"])]
    assert reason_of(ind.open_note, note, keys) == "bad-signature"
    assert reason_of(ind.open_note, GO["text"] + "\n" + GO["enoch_signature_line"], keys[:1]) == "unverified"


@pytest.mark.parametrize(
    "note",
    [
        pytest.param("no blank line\n— PeterNeumann AAAA\n", id="no-blank-line"),
        pytest.param("text\n\n", id="no-signature"),
        pytest.param("text\n\nnot a signature\n", id="not-a-signature-line"),
        pytest.param("text\n\n— PeterNeumann x08go/ZJkuBS9UG\n", id="bad-base64"),
        pytest.param("text\n\n— PeterNeumann AAAAAA==\n", id="shorter-than-key-id"),
        pytest.param("te\x01xt\n\n— PeterNeumann AAAAAAAA\n", id="control-character"),
        pytest.param("text\n\n— PeterNeumann AAAAAAAA", id="no-final-newline"),
    ],
)
def test_malformed_notes(note):
    assert reason_of(ind.open_note, note, [ind.parse_vkey(GO["peter_vkey"])]) == "malformed"


def test_c2sp_signed_note_example():
    opened = ind.open_note(C2SP["note"], [ind.parse_vkey(C2SP["vkey"])])
    assert opened.text == "This is an example message.\n"


def test_c2sp_checkpoint_example_parses():
    text, signatures = ind.split_note(C2SP["checkpoint"])
    checkpoint = ind.parse_checkpoint(text)
    assert (checkpoint.origin, checkpoint.size) == ("example.com/behind-the-sofa", 20852163)
    assert [s.name for s in signatures] == ["example.com/behind-the-sofa"]


def test_c2sp_cosigned_message_example():
    example = C2SP["cosigned_message"]
    text = C2SP["checkpoint"].split("\n\n")[0] + "\n"
    assert ind.cosignature_message(text, example["timestamp"]).decode() == example["message"]


def test_go_tree_note_is_a_checkpoint():
    tree = GO["tree_note"]
    checkpoint = ind.parse_checkpoint(tree["text"])
    assert (checkpoint.origin, checkpoint.size) == (tree["origin"], tree["size"])
    assert checkpoint.root == ind.leaf_hash(tree["root_is_leaf_hash_of"].encode())


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("origin\n12\n", id="no-root"),
        pytest.param("origin\n012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n", id="leading-zero"),
        pytest.param("origin\n-1\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n", id="negative"),
        pytest.param("origin\n1\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0\n", id="unpadded-root"),
        pytest.param("origin\n1\nAAAA\n", id="short-root"),
        pytest.param("origin\n1\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n\n", id="empty-extension"),
        pytest.param("origin\n1\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=", id="no-final-newline"),
    ],
)
def test_bad_checkpoints(text):
    assert reason_of(ind.parse_checkpoint, text) in ("bad-checkpoint", "malformed")


TILES = load("tiles.json")
GO_TILES = load("go-tiles.json")


@pytest.mark.parametrize("case", TILES["index_paths"] + GO_TILES["index_paths"], ids=lambda c: c["path"])
def test_tile_index_encoding(case):
    assert ind.encode_index(case["index"]) == case["path"]
    assert ind.decode_index(case["path"]) == case["index"]


@pytest.mark.parametrize("path", GO_TILES["bad_index_paths"] + ["x000/001", "1", "0001", "x01/001", "001/"])
def test_non_canonical_tile_indexes_are_rejected(path):
    assert reason_of(ind.decode_index, path) == "bad-path"


@pytest.mark.parametrize("case", TILES["sizes"], ids=lambda c: str(c["size"]))
def test_tiles_of_a_size_from_the_spec(case):
    tiles = ind.all_tiles(case["size"])
    full = {str(level): sum(1 for t in tiles if t.level == level and t.width == 256) for level in range(4)}
    partial = {str(t.level): t.width for t in tiles if t.width < 256}
    assert {k: v for k, v in full.items() if v} == case["full"]
    assert partial == case["partial"]


@pytest.mark.parametrize("case", GO_TILES["new_tiles"], ids=lambda c: f"{c['old']}-{c['new']}")
def test_tiles_a_mirror_fetches_as_the_tree_grows(case):
    """Go's tlog.NewTiles counts (height 10); the same rule at C2SP's height 8 is what a mirror uses."""
    assert len(ind.changed_tiles(case["old"], case["new"], height=GO_TILES["height"])) == case["want"]


@pytest.mark.parametrize(
    "path, tile",
    [
        ("tile/0/000", (0, 0, 256)),
        ("tile/0/x001/x234/067.p/8", (0, 1234067, 8)),
        ("tile/63/999", (63, 999, 256)),
        ("tile/1/255.p/255", (1, 255, 255)),
    ],
)
def test_tile_paths(path, tile):
    assert ind.parse_tile_path(path) == ind.TileRef(*tile)
    assert ind.TileRef(*tile).path() == path


@pytest.mark.parametrize(
    "path",
    ["tile/64/000", "tile/00/000", "tile/0/000.p/256", "tile/0/000.p/0", "tile/0/000.p/007", "tile/0/0", "tile/-1/000"],
)
def test_bad_tile_paths(path):
    assert reason_of(ind.parse_tile_path, path) == "bad-path"


# --- the independent client on its own trees: tiles, roots, proofs ----------------------------------


def level_hashes(leaf_hashes: list[bytes], level: int) -> list[bytes]:
    """The hashes of the complete subtrees of 2**level leaves, left to right."""
    width = 1 << level
    return [ind.mth(leaf_hashes[i : i + width]) for i in range(0, len(leaf_hashes) - width + 1, width)]


def served_tiles(leaf_hashes: list[bytes]) -> dict[str, bytes]:
    """What a tlog-tiles server holds for the tree of these leaves: path -> content."""
    tiles, levels = {}, {}
    for tile in ind.all_tiles(len(leaf_hashes)):
        if tile.level not in levels:
            levels[tile.level] = level_hashes(leaf_hashes, 8 * tile.level)
        tiles[tile.path()] = b"".join(levels[tile.level][tile.index * 256 : tile.index * 256 + tile.width])
    return tiles


LEAVES = [ind.leaf_hash(f"leaf {i}".encode()) for i in range(70_000)]


@pytest.mark.parametrize("size", [1, 2, 3, 255, 256, 257, 511, 512, 513, 65_535, 65_536, 65_537, 70_000])
def test_root_from_the_fewest_tiles(size):
    tiles = served_tiles(LEAVES[:size])
    fetched = []

    def fetch(path):
        fetched.append(path)
        return tiles[path]

    assert ind.root_from_tiles(size, fetch) == ind.mth(LEAVES[:size])
    assert len(fetched) <= bin(size).count("1")
    root, _ = ind.check_all_tiles(size, tiles.__getitem__)
    assert root == ind.mth(LEAVES[:size])


def test_a_bad_tile_is_caught_by_the_mirror_check():
    tiles = served_tiles(LEAVES[:600])
    bad = bytearray(tiles["tile/0/001"])
    bad[5] ^= 1
    tiles["tile/0/001"] = bytes(bad)
    assert reason_of(ind.check_all_tiles, 600, tiles.__getitem__) == "bad-tile"
    tiles["tile/0/001"] = bytes(bad[:-32])
    assert reason_of(ind.root_from_tiles, 600, tiles.__getitem__) in ("bad-tile", None)


def test_entry_bundles():
    entries = [b"", b"a", bytes(range(256)) * 3, "检查".encode()]
    bundle = b"".join(len(e).to_bytes(2, "big") + e for e in entries)
    assert ind.parse_entry_bundle(bundle) == entries
    assert reason_of(ind.parse_entry_bundle, bundle[:-1]) == "bad-bundle"
    assert reason_of(ind.parse_entry_bundle, bundle + b"\x00") == "bad-bundle"


def test_cosignature_round_trip_and_forgeries():
    log = nacl.signing.SigningKey(bytes(range(32)))
    witness = nacl.signing.SigningKey(bytes(range(1, 33)))
    log_vkey = ind.parse_vkey(ind.vkey_text("example.org/log", 0x01, bytes(log.verify_key)))
    witness_vkey = ind.parse_vkey(ind.vkey_text("witness.example", 0x04, bytes(witness.verify_key)))
    text = f"example.org/log\n5\n{base64.b64encode(ind.mth(LEAVES[:5])).decode()}\n"
    cosigned = ind.cosign(ind.sign_note(text, "example.org/log", log), "witness.example", witness, 1_700_000_000)
    verified = ind.verify_checkpoint(cosigned, log_vkey, [witness_vkey], min_cosignatures=1)
    assert verified.cosigned_by == {"witness.example": 1_700_000_000} and verified.checkpoint.size == 5
    assert reason_of(ind.verify_checkpoint, cosigned, log_vkey, [], 1) == "too-few-cosignatures"
    line = cosigned.rsplit("\n", 2)[-2]
    raw = bytearray(b64(line.split(" ")[-1]))
    raw[4 + 7] ^= 1  # the cosignature's time
    forged = cosigned[: -len(line) - 1] + line.rsplit(" ", 1)[0] + " " + base64.b64encode(bytes(raw)).decode() + "\n"
    assert reason_of(ind.verify_checkpoint, forged, log_vkey, [witness_vkey], 1) == "bad-signature"


def test_checkpoint_origin_is_the_log_key_name():
    log = nacl.signing.SigningKey(bytes(range(32)))
    other = ind.parse_vkey(ind.vkey_text("other", 0x01, bytes(log.verify_key)))
    note = ind.sign_note(f"example.org/log\n1\n{base64.b64encode(LEAVES[0]).decode()}\n", "other", log)
    assert reason_of(ind.verify_checkpoint, note, other) == "wrong-origin"


# --- verifier's core, checked by the independent client ---------------------------------------------

RNG = random.Random(12)
CORE_SIZES = [*range(1, 70), 127, 128, 129, 255, 256, 257, 1000, 4097]


@pytest.mark.parametrize("size", CORE_SIZES)
def test_verifier_merkle_proofs(size):
    from verifier import merkle

    hash_at = merkle.hash_at_from_leaves(LEAVES[:size])
    root = merkle.root_hash(size, hash_at)
    assert root == ind.mth(LEAVES[:size])
    indexes = range(size) if size <= 70 else RNG.sample(range(size), 40) + [0, size - 1]
    for index in indexes:
        ind.verify_inclusion(LEAVES[index], index, size, merkle.inclusion_proof(index, size, hash_at), root)
    olds = range(1, size + 1) if size <= 70 else RNG.sample(range(1, size), 40) + [1, size]
    for old in olds:
        proof = merkle.consistency_proof(old, size, hash_at)
        ind.verify_consistency(old, size, ind.mth(LEAVES[:old]), root, proof)


def tampered(proof: list[bytes]):
    """Every single-bit flip of every element, the proof cut short and made longer."""
    for k, element in enumerate(proof):
        for bit in (0, 7, 100, 255):
            flipped = bytearray(element)
            flipped[bit // 8] ^= 1 << (bit % 8)
            yield proof[:k] + [bytes(flipped)] + proof[k + 1 :]
    if proof:
        yield proof[:-1]
    yield proof + [LEAVES[-1]]


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 32, 33])
def test_the_independent_checker_refuses_tampered_proofs(size):
    from verifier import merkle

    hash_at = merkle.hash_at_from_leaves(LEAVES[:size])
    root = ind.mth(LEAVES[:size])
    for index in range(size):
        proof = merkle.inclusion_proof(index, size, hash_at)
        for bad in tampered(proof):
            assert reason_of(ind.verify_inclusion, LEAVES[index], index, size, bad, root) is not None
        if index + 1 < size:
            assert reason_of(ind.verify_inclusion, LEAVES[index], index + 1, size, proof, root) is not None
    for old in range(1, size):
        proof = merkle.consistency_proof(old, size, hash_at)
        old_root = ind.mth(LEAVES[:old])
        for bad in tampered(proof):
            assert reason_of(ind.verify_consistency, old, size, old_root, root, bad) is not None
        assert reason_of(ind.verify_consistency, old, size, ind.mth(LEAVES[1 : old + 1]), root, proof) is not None


@pytest.mark.parametrize("size", [1, 5, 256, 257, 600, 65_537])
def test_verifier_merkle_tiles(size):
    from verifier import merkle

    hash_at = merkle.hash_at_from_leaves(LEAVES[:size])
    mine = served_tiles(LEAVES[:size])
    theirs = {merkle.tile_path(t): merkle.tile_hashes(t, hash_at) for t in merkle.tiles_for_size(size)}
    assert theirs == mine


def test_verifier_note_and_the_independent_client_agree():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from verifier import note

    seed = bytes(range(32))
    private = Ed25519PrivateKey.from_private_bytes(seed)
    checkpoint = note.Checkpoint("example.org/log", 5, ind.mth(LEAVES[:5]))
    signed = note.sign_note(note.format_checkpoint(checkpoint), "example.org/log", private)
    vkey = note.format_vkey(note.verifier_key("example.org/log", private))
    assert ind.verify_checkpoint(signed, ind.parse_vkey(vkey)).checkpoint == ind.Checkpoint(
        "example.org/log", 5, checkpoint.root
    )
    witness = nacl.signing.SigningKey(bytes(range(1, 33)))
    cosigned = ind.cosign(signed, "witness.example", witness, 1_700_000_000)
    witness_vkey = note.parse_vkey(ind.vkey_text("witness.example", 0x04, bytes(witness.verify_key)))
    opened = note.open_note(cosigned, [note.parse_vkey(vkey), witness_vkey])
    assert [s.timestamp for s in opened.verified if s.name == "witness.example"] == [1_700_000_000]


def test_the_independent_client_imports_nothing_of_verifier():
    import ast

    tree = ast.parse((Path(__file__).parent / "independent_tlog.py").read_text("utf-8"))
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [n for n in names if n == "verifier" or n.startswith("verifier.")]


def test_printed_codes_agree_with_the_code_format_vectors():
    checked = 0
    for path in sorted((Path(__file__).parent / "vectors" / "valid").glob("*.json")):
        fields = json.loads(path.read_text("utf-8"))["expected"].get("fields") or {}
        if "human_code" in fields:
            assert ind.printed_code(int(fields["serial"])) == fields["human_code"], path.name
            checked += 1
    assert checked >= 5


# --- a receipt made by hand from docs/transparency-log.md, and its tampered copies -------------------

LOG_SEED, LOG_NAME = bytes(range(32)), "example.org/log"


def scan_leaf(scan_id: int, serial: int, checks: int, reason: str, at: str) -> bytes:
    body = json.dumps(
        {"at": at, "checks": checks, "id": scan_id, "reason": reason, "serial": serial},
        sort_keys=True,
        separators=(",", ":"),
    )
    return f"verifier-log-entry/1\nscan\n{at}\n\n{'ab' * 32}\n{body}".encode()


def hand_made_receipt(index: int = 5, size: int = 9) -> tuple[dict, ind.Vkey]:
    at = "2026-11-22T08:00:00.000+00:00"
    leaf = scan_leaf(41, 3141592653589793, 2, "genuine-repeat", at)
    leaves = LEAVES[:size]
    leaves[index] = ind.leaf_hash(leaf)
    levels = {0: leaves}

    def proof(m: int, lo: int, hi: int) -> list[bytes]:  # PATH(m, D[lo:hi]) from the definition
        if hi - lo == 1:
            return []
        k = ind.split_point(hi - lo)
        if m < k:
            return proof(m, lo, lo + k) + [ind.mth(levels[0][lo + k : hi])]
        return proof(m - k, lo + k, hi) + [ind.mth(levels[0][lo : lo + k])]

    key = nacl.signing.SigningKey(LOG_SEED)
    text = f"{LOG_NAME}\n{size}\n{base64.b64encode(ind.mth(leaves)).decode()}\n"
    receipt = {
        "format": "verifier-receipt/1",
        "state": "complete",
        "scan": 41,
        "serial": "3141592653589793",
        "code": "3141 5926 5358 97934",
        "check": 2,
        "at": at,
        "verdict": "genuine-repeat",
        "index": index,
        "leaf": base64.b64encode(leaf).decode(),
        "checkpoint": ind.sign_note(text, LOG_NAME, key),
        "proof": [base64.b64encode(h).decode() for h in proof(index, 0, size)],
    }
    return receipt, ind.parse_vkey(ind.vkey_text(LOG_NAME, 0x01, bytes(key.verify_key)))


def test_a_hand_made_receipt_verifies():
    receipt, vkey = hand_made_receipt()
    proven = ind.verify_receipt(receipt, vkey)
    assert (proven["index"], proven["size"], proven["verdict"], proven["check"]) == (5, 9, "genuine-repeat", 2)


def flip_b64(text: str, bit: int) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[bit // 8 % len(raw)] ^= 1 << (bit % 8)
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    "tamper, reason",
    [
        pytest.param(lambda r: r.update(index=r["index"] + 1), "root-mismatch", id="index"),
        pytest.param(lambda r: r["proof"].__setitem__(0, flip_b64(r["proof"][0], 3)), "root-mismatch", id="proof"),
        pytest.param(lambda r: r["proof"].pop(), "wrong-length", id="proof-shortened"),
        pytest.param(lambda r: r.update(leaf=flip_b64(r["leaf"], 200)), "root-mismatch", id="leaf"),
        pytest.param(lambda r: r.update(check=1), "summary-mismatch", id="check"),
        pytest.param(lambda r: r.update(verdict="genuine"), "summary-mismatch", id="verdict"),
        pytest.param(lambda r: r.update(serial="3141592653589794"), "summary-mismatch", id="serial"),
        pytest.param(lambda r: r.update(code="3141 5926 5358 97932"), "summary-mismatch", id="code"),
        pytest.param(lambda r: r.update(scan=42), "summary-mismatch", id="scan"),
        pytest.param(lambda r: r.update(at="2026-11-22T08:00:01.000+00:00"), "summary-mismatch", id="at"),
        pytest.param(lambda r: r.update(check="2"), "summary-mismatch", id="check-as-text"),
        pytest.param(
            lambda r: r.update(checkpoint=r["checkpoint"].replace("\n9\n", "\n10\n")), "bad-signature", id="size"
        ),
        pytest.param(lambda r: r.update(state="pending"), "pending", id="pending"),
        pytest.param(lambda r: r.update(format="verifier-receipt/2"), "not-a-receipt", id="format"),
    ],
)
def test_every_tampered_receipt_is_refused(tamper, reason):
    receipt, vkey = hand_made_receipt()
    tamper(receipt)
    assert reason_of(ind.verify_receipt, receipt, vkey) == reason


# --- the product: proofs from logtree over a real database, built through the lookup ----------------

SCANS = 300  # with the world's own entries, more than one full level-0 tile


def scanned_log(world, make_app, db_copy, scans: int = SCANS):
    """`scans` lookups through the Flask app (repeats included), settled: (connection, leaf hashes)."""
    from conftest import settle

    from verifier import db

    client = make_app().test_client()
    rows = world["pin"][1] + world["gs1"][1] + world["recalled"][1] + world["expired"][1]
    rng = random.Random(f"scanned_log:{scans}")
    for _ in range(scans):
        url = rng.choice(rows)["url"]
        assert client.get("/" + url.split("/", 3)[3]).status_code == 200
    settle(db_copy)
    conn = db.connect(db_copy)
    settle(conn)
    return conn


def leaf_hashes_of(conn) -> list[bytes]:
    from verifier import logtree

    size = logtree.size(conn)
    leaves = [logtree.entry_leaf(conn, i) for i in range(size)]
    assert all(leaf is not None for leaf in leaves)
    for leaf in leaves:
        ind.parse_leaf(leaf)  # every entry is a documented verifier-log-entry/1
    return [ind.leaf_hash(leaf) for leaf in leaves]


def test_logtree_roots_and_proofs_verify_independently(world, make_app, db_copy):
    from verifier import logtree

    conn = scanned_log(world, make_app, db_copy)
    try:
        hashes = leaf_hashes_of(conn)
        size = len(hashes)
        assert size > SCANS
        rng = random.Random(size)
        sizes = sorted({1, 2, 3, 255, 256, 257, size - 1, size, *rng.sample(range(1, size + 1), 60)})
        for tree_size in sizes:
            root = logtree.root(conn, tree_size)
            assert root == ind.mth(hashes[:tree_size]), tree_size
            for index in {0, tree_size // 2, tree_size - 1, rng.randrange(tree_size)}:
                proof = logtree.inclusion_proof(conn, index, tree_size)
                ind.verify_inclusion(hashes[index], index, tree_size, proof, root)
            for old in {1, tree_size, max(1, tree_size - 1), rng.randrange(1, tree_size + 1)}:
                proof = logtree.consistency_proof(conn, old, tree_size)
                ind.verify_consistency(old, tree_size, ind.mth(hashes[:old]), root, proof)
        with pytest.raises(logtree.NotInTree):
            logtree.inclusion_proof(conn, size, size + 1)
    finally:
        conn.close()


def test_logtree_tiles_bundles_and_checkpoint_verify_independently(world, make_app, db_copy):
    from conftest import TEST_LOG_ORIGIN, log_signer_for_tests

    from verifier import logtree

    conn = scanned_log(world, make_app, db_copy)  # settled: the tests' log key signed a checkpoint
    try:
        hashes = leaf_hashes_of(conn)
        size = len(hashes)
        stored = logtree.latest_checkpoint(conn)
        assert stored is not None and stored.size == size
        log_vkey = ind.parse_vkey(log_signer_for_tests().vkey)
        checkpoint = ind.verify_checkpoint(stored.note, log_vkey).checkpoint
        assert (checkpoint.origin, checkpoint.size, checkpoint.root) == (TEST_LOG_ORIGIN, size, ind.mth(hashes))

        def fetch(path: str) -> bytes:
            tile = ind.parse_tile_path(path)
            data = logtree.tile(conn, tile.level, tile.index, tile.width)
            assert data is not None, path
            return data

        assert ind.root_from_tiles(size, fetch) == checkpoint.root
        root, tiles = ind.check_all_tiles(size, fetch)
        assert root == checkpoint.root
        for tile in (t for t in tiles if t.level == 0):
            bundle = logtree.entry_bundle(conn, tile.index, tile.width)
            assert bundle is not None
            entries = ind.parse_entry_bundle(bundle)
            assert b"".join(ind.leaf_hash(e) for e in entries) == b"".join(tiles[tile])
        last = max(t for t in tiles if t.level == 0)
        assert logtree.tile(conn, 0, last.index + 1, 1) is None  # beyond the tree
        if size % 256:  # a partial tile is served at the current width only
            assert logtree.tile(conn, 0, size // 256, size % 256 + 1) is None
    finally:
        conn.close()


# --- a real `verifier serve` over HTTP: checkpoint, tiles, a witness, a receipt -----------------------


def http(method: str, url: str, body: bytes | None = None, timeout: float = 5) -> tuple[int, dict, bytes]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def until(condition, what: str, seconds: float = 30):
    """Poll `condition` (the sequencer runs beside the server, on its own clock) until it answers."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


WITNESS_SEED, WITNESS_NAME = bytes(range(100, 132)), "witness.example/w1"


def log_server(serve, tmp_path):
    """`verifier serve` with a log key (the sequencer signs every 0.2 s) and one witness."""
    key_file = tmp_path / "log.key"
    key_file.write_text(ind.skey_text(LOG_NAME, LOG_SEED) + "\n")
    key_file.chmod(0o600)
    log_vkey = ind.vkey_text(LOG_NAME, 0x01, bytes(nacl.signing.SigningKey(LOG_SEED).verify_key))
    witness_vkey = ind.vkey_text(WITNESS_NAME, 0x04, bytes(nacl.signing.SigningKey(WITNESS_SEED).verify_key))
    server = serve(
        VERIFIER_LOG_KEY_FILE=str(key_file),
        VERIFIER_LOG_PUBLIC_KEY=log_vkey,
        VERIFIER_LOG_WITNESSES=witness_vkey,
        VERIFIER_LOG_CHECKPOINT_SECONDS="0.2",
    )
    return server, ind.parse_vkey(log_vkey), ind.parse_vkey(witness_vkey)


def api_scans(server, rows) -> list[dict]:
    import urllib.parse

    answers = []
    for row in rows:
        status, _, body = http("GET", f"{server.url}/api/v1/verify?code={urllib.parse.quote(row['url'])}")
        assert status == 200
        answers.append(json.loads(body))
    return answers


def tree_size(location) -> int:
    from verifier import db, logtree

    conn = db.connect(location)
    try:
        return logtree.size(conn)
    finally:
        conn.close()


def test_a_real_server_serves_a_log_the_independent_client_checks(serve, world, db_copy, tmp_path):
    import time

    before = tree_size(db_copy)  # the world's entries (its checkpoints are signed by the tests' key)
    server, log_vkey, witness_vkey = log_server(serve, tmp_path)
    api_scans(server, world["pin"][1][:3] * 2)

    def checkpoint_with_the_scans():
        status, _, body = http("GET", server.url + "/log/checkpoint")
        try:
            checkpoint = ind.verify_checkpoint(body.decode(), log_vkey).checkpoint
        except ind.Rejected:
            return None  # still the world's checkpoint, by the tests' key
        return (body.decode(), checkpoint) if checkpoint.size >= before + 6 else None

    note_text, checkpoint = until(checkpoint_with_the_scans, "a checkpoint covering the scans")
    status, headers, _ = http("GET", server.url + "/log/checkpoint")
    assert headers["Content-Type"].startswith("text/plain")

    def fetch(path: str) -> bytes:
        status, headers, body = http("GET", f"{server.url}/log/{path}")
        assert status == 200 and headers["Content-Type"] == "application/octet-stream", path
        return body

    assert ind.root_from_tiles(checkpoint.size, fetch) == checkpoint.root
    root, _ = ind.check_all_tiles(checkpoint.size, fetch)
    assert root == checkpoint.root
    first = ind.all_tiles(checkpoint.size)[0]
    assert http("GET", f"{server.url}/log/{first.entries_path()}")[0] == 401  # entries are not public

    # An independent witness cosigns the checkpoint; the log then serves it with the cosignature.
    witness = nacl.signing.SigningKey(WITNESS_SEED)
    cosigned = ind.cosign(note_text, WITNESS_NAME, witness, int(time.time()))
    forged = cosigned[:-6] + ("A" if cosigned[-6] != "A" else "B") + cosigned[-5:]
    assert http("POST", server.url + "/log/cosignature", forged.encode())[0] == 400
    status, _, body = http("POST", server.url + "/log/cosignature", cosigned.encode())
    assert status == 200, body
    status, _, body = http("GET", server.url + "/log/checkpoint")
    witnessed = ind.verify_checkpoint(body.decode(), log_vkey, [witness_vkey], min_cosignatures=1)
    assert witnessed.checkpoint == checkpoint and list(witnessed.cosigned_by) == [WITNESS_NAME]


def test_a_receipt_from_a_real_server_verifies_independently(serve, world, tmp_path):
    import urllib.parse

    server, log_vkey, _ = log_server(serve, tmp_path)
    answers = api_scans(server, world["pin"][1][:2] * 2 + world["recalled"][1][:1])
    path = urllib.parse.urlsplit(answers[-1]["receipt"]).path

    def complete_receipt():
        status, headers, body = http("GET", server.url + path)
        assert status == 200 and "attachment" in headers.get("Content-Disposition", "")
        receipt = json.loads(body)
        return receipt if receipt["state"] == "complete" else None

    proven = ind.verify_receipt(until(complete_receipt, "the receipt to be complete"), log_vkey)
    assert (proven["verdict"], proven["serial"]) == (answers[-1]["reason"], world["recalled"][1][0]["serial"].zfill(16))
    status, _, body = http("GET", server.url + "/log/checkpoint")
    assert ind.verify_checkpoint(body.decode(), log_vkey).checkpoint.size > proven["index"]
    assert http("GET", server.url + path[:-1] + ("0" if path[-1] != "0" else "1"))[0] == 404  # a guessed token
