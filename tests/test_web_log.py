"""The log served read-only as C2SP tlog-tiles (verifier/web/log.py): checkpoint, hash tiles,
entry bundles for inspectors and admins, witness cosignatures; never a 500 on junk.

A mirror's view: everything fetched over the app's routes is checked with merkle.py and note.py
against leaves read from the database, not against what the server says of itself.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from conftest import log_in, settle
from conftest import log_signer_for_tests as log_signer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from verifier import auditlog, db, logtree, merkle, note
from verifier.web import log as web_log

NOW = dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.UTC)
WITNESS = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"witness one").digest())
WITNESS_VKEY = note.verifier_key("witness.example.org", WITNESS, note.COSIGNATURE_V1)
STRANGER = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"not a witness").digest())
STRANGER_VKEY = note.verifier_key("stranger.example.org", STRANGER, note.COSIGNATURE_V1)
LOG_SIZE = 2 * 256 + 40  # two full level-0 tiles and a partial one of 40; a partial level-1 tile of 2


def fill_log(location, size: int = LOG_SIZE) -> int:
    """Append entries up to `size`, build the tree and sign a checkpoint: the tree's size."""
    conn = db.connect(location)
    try:
        settle(conn)
        (entries,) = conn.execute("SELECT count(*) FROM audit_log").fetchone()
        with db.transaction(conn):
            for n in range(size - entries):
                auditlog.append(conn, "test.filler", {"n": n}, auditlog_time(n), actor="test")
        settle(conn)
        assert logtree.size(conn) == size
        return size
    finally:
        conn.close()


def auditlog_time(n: int) -> str:
    return (NOW + dt.timedelta(milliseconds=n)).isoformat(timespec="milliseconds")


def leaves_in_database(location) -> list[bytes]:
    """Every entry's leaf data, from the rows themselves (auditlog.leaf_bytes of each)."""
    conn = db.connect(location)
    try:
        rows = conn.execute("SELECT kind, at, actor, personal_hash, body FROM audit_log ORDER BY seq").fetchall()
    finally:
        conn.close()
    return [logtree.leaf_bytes(*map(str, row)) for row in rows]


@pytest.fixture
def served(db_copy, make_app):
    """An app over a log of LOG_SIZE entries, with a signed checkpoint and one witness."""
    size = fill_log(db_copy)
    app = make_app(LOG_WITNESSES=[note.format_vkey(WITNESS_VKEY)])
    return {"app": app, "client": app.test_client(), "size": size, "db": db_copy}


def fetch_tile(client, tile: merkle.Tile) -> bytes:
    response = client.get("/log/" + merkle.tile_path(tile))
    assert response.status_code == 200, (merkle.tile_path(tile), response.get_data(as_text=True))
    return response.get_data()


def checkpoint_of(client) -> note.Checkpoint:
    response = client.get("/log/checkpoint")
    assert response.status_code == 200
    opened = note.open_note(response.get_data(as_text=True), [log_signer().verifier])
    return note.parse_checkpoint(opened.text)


# --- the checkpoint ---------------------------------------------------------------------------


def test_the_checkpoint_is_the_latest_signed_note_as_plain_text(served):
    response = served["client"].get("/log/checkpoint")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Cache-Control"] == "public, max-age=5"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    checkpoint = checkpoint_of(served["client"])
    assert checkpoint.origin == log_signer().origin and checkpoint.size == served["size"]
    leaves = leaves_in_database(served["db"])
    assert len(leaves) == served["size"]
    assert checkpoint.root == merkle.tree_hash([merkle.leaf_hash(leaf) for leaf in leaves])


def test_head_answers_like_get_without_a_body(served):
    got, head = served["client"].get("/log/checkpoint"), served["client"].head("/log/checkpoint")
    assert head.status_code == 200 and head.get_data() == b""
    assert head.headers["Content-Type"] == got.headers["Content-Type"]
    assert served["client"].head("/log/tile/0/000").status_code == 200


def test_before_the_first_checkpoint_there_is_none_to_serve(new_database, make_app):
    empty = new_database("empty.db")
    db.connect(empty).close()
    response = make_app(DATABASE=str(empty)).test_client().get("/log/checkpoint")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not-found"


# --- hash tiles ---------------------------------------------------------------------------------


def test_every_tile_served_is_the_hashes_of_the_tree_over_the_leaves(served):
    leaf_hashes = [merkle.leaf_hash(leaf) for leaf in leaves_in_database(served["db"])]
    hash_at = merkle.hash_at_from_leaves(leaf_hashes)
    tiles = merkle.tiles_for_size(served["size"])
    assert [t.width for t in tiles if t.level == 0][:2] == [256, 256] and any(t.level == 1 for t in tiles)
    for tile in tiles:
        assert fetch_tile(served["client"], tile) == merkle.tile_hashes(tile, hash_at), tile


def test_the_root_recomputed_from_served_tiles_is_the_checkpoints(served):
    """A mirror's check: hashes at levels 0, 8, 16... from the tiles, the levels between recomputed."""
    client = served["client"]
    checkpoint = checkpoint_of(client)
    tiles = {(t.level, t.index): fetch_tile(client, t) for t in merkle.tiles_for_size(checkpoint.size)}

    def hash_at(level: int, index: int) -> bytes:
        if level % merkle.TILE_HEIGHT:
            return merkle.node_hash(hash_at(level - 1, 2 * index), hash_at(level - 1, 2 * index + 1))
        content = tiles[(level // merkle.TILE_HEIGHT, index // merkle.TILE_WIDTH)]
        offset = index % merkle.TILE_WIDTH * merkle.HASH_SIZE
        return content[offset : offset + merkle.HASH_SIZE]

    assert merkle.root_hash(checkpoint.size, hash_at) == checkpoint.root


def test_tiles_are_binary_and_cacheable_for_good(served):
    full = served["client"].get("/log/tile/0/000")
    partial = served["client"].get("/log/tile/0/002.p/40")
    for response in (full, partial):
        assert response.headers["Content-Type"] == "application/octet-stream"
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert len(full.get_data()) == 256 * 32 and len(partial.get_data()) == 40 * 32


def test_a_narrower_partial_tile_is_a_prefix_of_the_wider_one(served):
    """Hashes are written once: a partial tile of any width the tree holds never changes."""
    wide = served["client"].get("/log/tile/0/002.p/40").get_data()
    assert served["client"].get("/log/tile/0/002.p/7").get_data() == wide[: 7 * 32]


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/003",  # a full tile beyond the tree
        "tile/0/002",  # the tree's edge is only partly there
        "tile/0/002.p/41",  # one hash more than the tree holds
        "tile/1/000",  # a full level-1 tile needs 65,536 entries
        "tile/2/000.p/1",
        "tile/0/x001/000",
        "tile/63/000",
    ],
)
def test_a_tile_the_tree_does_not_hold_is_not_found(served, path):
    response = served["client"].get("/log/" + path)
    assert response.status_code == 404
    assert response.get_json() == {"ok": False, "error": {"code": "not-found", "message": "the log holds no such tile"}}


STRICT_CASES = {
    "level-leading-zero": "00/000",
    "level-64": "64/000",
    "level-huge": "99999999999999999999/000",
    "level-negative": "-1/000",
    "level-letter": "a/000",
    "index-two-digits": "0/00",
    "index-four-digits": "0/0000",
    "index-leading-x000": "0/x000/001",
    "index-x-last": "0/x001",
    "index-uppercase-x": "0/X001/000",
    "index-no-x": "0/001/000",
    "index-too-large": "0/x999/x999/x999/x999/x999/x999/999",
    "width-0": "0/000.p/0",
    "width-256": "0/000.p/256",
    "width-leading-zero": "0/000.p/040",
    "width-missing": "0/000.p/",
    "width-letters": "0/000.p/ab",
    "partial-without-p": "0/000/40",
    "dot-dot": "0/../000",
    "double-slash": "0//000",
    "trailing-slash": "0/000/",
    "query-like": "0/000;1",
    "unicode-digits": "0/０００",
    "entries-level": "entries/0/000",
    "nothing": "",
}


@pytest.mark.parametrize("path", STRICT_CASES.values(), ids=STRICT_CASES.keys())
def test_a_non_canonical_tile_path_is_refused(path):
    assert web_log.parse_tile_path(path) is None


@pytest.mark.parametrize(
    "path, parsed",
    [
        ("0/000", ("0", 0, 256)),
        ("0/001.p/1", ("0", 1, 1)),
        ("1/x001/x234/067.p/255", ("1", 1234067, 255)),
        ("63/000", ("63", 0, 256)),
        ("entries/x001/000.p/9", ("entries", 1000, 9)),
    ],
)
def test_canonical_tile_paths_are_read_as_merkle_writes_them(path, parsed):
    assert web_log.parse_tile_path(path) == parsed
    kind, index, width = parsed
    if kind != "entries":
        assert merkle.tile_path(merkle.Tile(int(kind), index, width)) == "tile/" + path
    else:
        assert merkle.entries_path(index, width) == "tile/" + path


@pytest.mark.parametrize("path", [f"/log/tile/{p}" for p in STRICT_CASES.values()])
def test_non_canonical_tile_paths_are_404_in_the_api_shape(served, path):
    response = served["client"].get(path)
    assert response.status_code in (404, 401), path  # entries/... asks who you are first
    assert response.get_json()["ok"] is False


# --- entry bundles: inspectors and admins only ------------------------------------------------


def bundle_leaves(bundle: bytes) -> list[bytes]:
    leaves, at = [], 0
    while at < len(bundle):
        length = int.from_bytes(bundle[at : at + 2], "big")
        leaves.append(bundle[at + 2 : at + 2 + length])
        at += 2 + length
    return leaves


@pytest.fixture
def bundles(audit_world, db_copy, make_app):
    """The audit world's accounts, over a log with a checkpoint."""
    fill_log(db_copy)
    app = make_app()
    return {"client": app.test_client(), "tokens": audit_world["tokens"], "db": db_copy}


@pytest.mark.parametrize("who", ["ian", "ada"], ids=["inspector", "admin"])
def test_inspectors_and_admins_read_entry_bundles_with_a_token(bundles, who):
    headers = {"Authorization": f"Bearer {bundles['tokens'][who]}"}
    leaves = leaves_in_database(bundles["db"])
    response = bundles["client"].get("/log/tile/entries/000", headers=headers)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/octet-stream"
    assert "public" not in response.headers["Cache-Control"]
    assert bundle_leaves(response.get_data()) == leaves[:256]
    partial = bundles["client"].get("/log/tile/entries/000.p/3", headers=headers)
    assert bundle_leaves(partial.get_data()) == leaves[:3]


def test_an_inspectors_audit_session_reads_entry_bundles_under_audit(bundles):
    """The audit UI's session cookie is scoped to /audit: the bundles are served there too."""
    assert log_in(bundles["client"], "ian").status_code == 302
    response = bundles["client"].get("/audit/log/tile/entries/000.p/1")
    assert response.status_code == 200
    assert bundle_leaves(response.get_data()) == leaves_in_database(bundles["db"])[:1]
    assert bundles["client"].get("/log/tile/entries/000.p/1").status_code == 401  # the cookie stays under /audit


@pytest.mark.parametrize(
    "who, status, code",
    [
        ("anonymous", 401, "unauthorized"),
        ("revoked", 401, "unauthorized"),
        ("eve", 403, "forbidden"),
        ("oscar", 403, "forbidden"),
    ],
    ids=["anonymous", "disabled-user", "enterprise", "other-enterprise"],
)
def test_anyone_else_is_refused_entry_bundles(bundles, who, status, code):
    token = bundles["tokens"][who]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for path in (
        "/log/tile/entries/000",
        "/log/tile/entries/000.p/1",
        "/log/tile/entries/junk",
        "/audit/log/tile/entries/000",
    ):
        response = bundles["client"].get(path, headers=headers)
        assert response.status_code == status, path
        assert response.get_json()["error"]["code"] == code
        assert b"verifier-log-entry" not in response.get_data()


def test_an_enterprise_audit_session_is_refused_entry_bundles(bundles):
    log_in(bundles["client"], "eve")
    response = bundles["client"].get("/audit/log/tile/entries/000")
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "forbidden"


def test_a_bogus_bearer_token_is_not_saved_by_a_session(bundles):
    log_in(bundles["client"], "ian")
    response = bundles["client"].get("/audit/log/tile/entries/000", headers={"Authorization": "Bearer vt_nonsense"})
    assert response.status_code == 401


def test_an_entry_bundle_beyond_the_tree_is_not_found(bundles):
    headers = {"Authorization": f"Bearer {bundles['tokens']['ian']}"}
    assert bundles["client"].get("/log/tile/entries/009", headers=headers).status_code == 404


# --- witness cosignatures -----------------------------------------------------------------------


def cosigned(checkpoint_note: str, key=WITNESS, vkey=WITNESS_VKEY, timestamp: int = 1_795_000_000) -> str:
    """The log's note as served, with the witness's cosignature/v1 line added."""
    text = note.parse_note(checkpoint_note)[0]
    return checkpoint_note + note.cosign_text(text, vkey.name, key, timestamp).line()


def flip_last_signature_bit(signed: str, bit: int = 8 * 8 + 5) -> str:
    body, _, last = signed.rstrip("\n").rpartition("\n")
    name, b64 = last.rsplit(" ", 1)
    raw = bytearray(__import__("base64").b64decode(b64))
    raw[4 + bit // 8] ^= 1 << (bit % 8)
    return f"{body}\n{name} {__import__('base64').b64encode(bytes(raw)).decode()}\n"


def test_a_witness_cosignature_is_stored_and_served_with_the_checkpoint(served):
    client = served["client"]
    served_note = client.get("/log/checkpoint").get_data(as_text=True)
    response = client.post("/log/cosignature", data=cosigned(served_note), content_type="text/plain")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["checkpoint"]["size"] == served["size"]
    now_served = client.get("/log/checkpoint").get_data(as_text=True)
    opened = note.open_note(now_served, [WITNESS_VKEY])
    assert [s.name for s in opened.verified] == ["witness.example.org"]
    note.open_note(now_served, [log_signer().verifier])  # still the log's, too
    again = client.post("/log/cosignature", data=cosigned(served_note), content_type="text/plain")
    assert again.status_code == 200  # the same cosignature again changes nothing
    assert client.get("/log/checkpoint").get_data(as_text=True).count("witness.example.org") == 1


def forged_checkpoint(size: int, root: bytes) -> str:
    signer = log_signer()
    return note.sign_note(
        note.format_checkpoint(note.Checkpoint(signer.origin, size, root)), signer.origin, signer.private_key
    )


COSIGNATURE_REFUSALS = {
    "cosignature-bit-flipped": lambda n, size: flip_last_signature_bit(cosigned(n)),
    "cosignature-time-edited": lambda n, size: flip_last_signature_bit(cosigned(n), bit=7 * 8),
    "unknown-witness": lambda n, size: cosigned(n, STRANGER, STRANGER_VKEY),
    "no-cosignature": lambda n, size: n,
    "unknown-checkpoint-other-root": lambda n, size: cosigned(forged_checkpoint(size, b"\x07" * 32)),
    "unknown-checkpoint-larger": lambda n, size: cosigned(forged_checkpoint(size + 1, b"\x07" * 32)),
    "checkpoint-text-edited": lambda n, size: cosigned(n).replace(f"\n{size}\n", f"\n{size - 1}\n", 1),
    "not-a-note": lambda n, size: "hello\n",
    "empty": lambda n, size: "",
    "not-utf8": lambda n, size: b"\xff\xfe" + cosigned(n).encode(),
}


@pytest.mark.parametrize("make", COSIGNATURE_REFUSALS.values(), ids=COSIGNATURE_REFUSALS.keys())
def test_a_cosignature_that_is_not_a_configured_witnesss_on_a_signed_checkpoint_is_refused(served, make):
    client = served["client"]
    before = client.get("/log/checkpoint").get_data(as_text=True)
    response = client.post("/log/cosignature", data=make(before, served["size"]), content_type="text/plain")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "bad-cosignature"
    assert client.get("/log/checkpoint").get_data(as_text=True) == before


def test_a_log_without_witnesses_takes_no_cosignature(served, make_app):
    client = make_app().test_client()
    served_note = client.get("/log/checkpoint").get_data(as_text=True)
    response = client.post("/log/cosignature", data=cosigned(served_note), content_type="text/plain")
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "bad-cosignature"


def test_a_cosignature_body_is_bounded(served):
    response = served["client"].post("/log/cosignature", data="x" * 9000, content_type="text/plain")
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "payload-too-large"


def test_a_bad_witness_vkey_stops_the_start(make_app):
    with pytest.raises(note.InvalidNote):
        make_app(LOG_WITNESSES=["witness.example.org+00000000+AQ=="])


# --- methods and junk ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path, allowed",
    [
        ("POST", "/log/checkpoint", "GET, HEAD"),
        ("PUT", "/log/tile/0/000", "GET, HEAD"),
        ("DELETE", "/log/checkpoint", "GET, HEAD"),
        ("GET", "/log/cosignature", "POST"),
        ("PUT", "/log/cosignature", "POST"),
        ("POST", "/receipt/1-00000000000000000000000000000000", "GET, HEAD"),
    ],
)
def test_wrong_methods_are_405_in_the_api_shape(served, method, path, allowed):
    response = served["client"].open(path, method=method)
    assert response.status_code == 405
    assert response.headers["Allow"] == allowed
    assert response.get_json()["error"]["code"] == "method-not-allowed"


JUNK = [
    "/log",
    "/log/",
    "/log/checkpoints",
    "/log/tile",
    "/log/tile/",
    "/log/tile/entries",
    "/log/tile/0",
    "/log/tile/0/000.p",
    "/log/tile/0/%00",
    "/log/tile/0/000%2F",
    "/log/tile/%E2%80%8B0/000",
    "/log/tile/0/" + "x999/" * 2000 + "999",
    "/log/tile/9223372036854775808/000",
    "/log/tile/0/000.p/99999999999999999999999",
    "/log/checkpoint/extra",
    "/receipt/",
    "/receipt/..",
    "/receipt/1-",
    "/receipt/%ff",
    "/receipt/" + "9" * 5000 + "-" + "0" * 32,
    "/receipt/1-00000000000000000000000000000000/more",
]


@pytest.mark.parametrize("path", JUNK)
def test_junk_paths_are_never_a_server_error_nor_a_recorded_scan(served, path):
    conn = db.connect(served["db"])
    (scans_before,) = conn.execute("SELECT count(*) FROM scans").fetchone()
    response = served["client"].get(path)
    assert response.status_code in (308, 404), (path, response.status_code)
    (scans_after,) = conn.execute("SELECT count(*) FROM scans").fetchone()
    conn.close()
    assert scans_after == scans_before


def test_a_witness_cosigns_with_verifier_log_cosign_and_posts_it(db_copy, make_app, runner, tmp_path):
    """The witness's side as the CLI does it: keygen --witness, cosign the served note, POST it."""
    from verifier.cli import cli

    fill_log(db_copy)
    made = runner.invoke(cli, ["log", "keygen", "--witness", "--origin", "w.example", "--out", str(tmp_path / "w.key")])
    assert made.exit_code == 0, made.output
    client = make_app(LOG_WITNESSES=[made.stdout.strip()]).test_client()
    (tmp_path / "checkpoint.txt").write_text(client.get("/log/checkpoint").get_data(as_text=True), "utf-8")
    log_vkey = log_signer().vkey
    args = ["log", "cosign", "--key", str(tmp_path / "w.key"), "--log-key", log_vkey, str(tmp_path / "checkpoint.txt")]
    cosigned_note = runner.invoke(cli, args)
    assert cosigned_note.exit_code == 0, cosigned_note.output
    response = client.post("/log/cosignature", data=cosigned_note.stdout, content_type="text/plain")
    assert response.status_code == 200, response.get_data(as_text=True)
    served = client.get("/log/checkpoint").get_data(as_text=True)
    assert [s.name for s in note.open_note(served, [note.parse_vkey(made.stdout.strip())]).verified] == ["w.example"]
