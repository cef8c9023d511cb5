"""A witness cosigns a checkpoint only if it extends the one it cosigned before: the consistency
proof is built from the hash tiles the log serves (verifier/witness.py), so a forked or rewritten
log cannot pass; `verifier log cosign --previous --log-url` does it against a real server."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import log_signer_for_tests, settle
from test_web_log import LOG_SIZE, auditlog_time, fill_log

from verifier import auditlog, db, logtree, merkle, note, witness
from verifier.cli import cli

GROWTH = 300  # entries added between the two checkpoints: a new full tile and a partial one


def grow(location, count: int = GROWTH) -> None:
    conn = db.connect(location)
    try:
        with db.transaction(conn):
            for n in range(count):
                auditlog.append(conn, "test.filler", {"n": LOG_SIZE + n}, auditlog_time(LOG_SIZE + n), actor="test")
        settle(conn)
    finally:
        conn.close()


def checkpoint_of_size(location, size: int) -> note.Checkpoint:
    """A checkpoint of an earlier size of this log, as its log key signs it (the witness kept it)."""
    conn = db.connect(location)
    try:
        return note.Checkpoint(log_signer_for_tests().origin, size, logtree.root(conn, size))
    finally:
        conn.close()


@pytest.fixture
def grown(db_copy, make_app):
    fill_log(db_copy)
    old_sizes = [1, 2, 255, 256, 257, 511, 512, LOG_SIZE]
    old = {size: checkpoint_of_size(db_copy, size) for size in old_sizes}
    grow(db_copy)
    client = make_app().test_client()

    def fetch(path: str) -> bytes:
        response = client.get("/log/" + path)
        assert response.status_code == 200, path
        return response.get_data()

    return {"db": db_copy, "old": old, "new": checkpoint_of_size(db_copy, LOG_SIZE + GROWTH), "fetch": fetch}


def test_a_checkpoint_that_extends_the_old_one_passes_for_every_old_size(grown):
    for old in grown["old"].values():
        witness.check_extends(old, grown["new"], grown["fetch"])
    witness.check_extends(grown["new"], grown["new"], grown["fetch"])  # the same checkpoint again


def test_a_forked_log_is_refused(grown):
    """The log shows the witness a tree whose past differs from what it cosigned: the old root
    (as the witness kept it) is not the one the new tree's tiles lead to."""
    old = grown["old"][257]
    forked = dataclasses.replace(old, root=bytes([old.root[0] ^ 1]) + old.root[1:])
    with pytest.raises(witness.Inconsistent, match="does not extend"):
        witness.check_extends(forked, grown["new"], grown["fetch"])


def test_a_new_root_that_is_not_the_tiles_root_is_refused(grown):
    new = grown["new"]
    lying = dataclasses.replace(new, root=bytes(32))
    with pytest.raises(witness.Inconsistent, match="does not extend"):
        witness.check_extends(grown["old"][LOG_SIZE], lying, grown["fetch"])


def test_tiles_that_lie_are_refused(grown):
    def flipped(path: str) -> bytes:
        data = bytearray(grown["fetch"](path))
        data[-1] ^= 1
        return bytes(data)

    with pytest.raises(witness.Inconsistent):
        witness.check_extends(grown["old"][257], grown["new"], flipped)
    with pytest.raises(witness.Inconsistent, match="bytes, not"):
        witness.check_extends(grown["old"][257], grown["new"], lambda path: grown["fetch"](path)[:-1])


@pytest.mark.parametrize(
    "old, new, why",
    [
        (note.Checkpoint("other.example/log", 5, bytes(32)), None, "two logs"),
        (None, note.Checkpoint(log_signer_for_tests().origin, 3, bytes(32)), "fewer than"),
    ],
    ids=["another-origin", "a-smaller-tree"],
)
def test_what_cannot_extend_is_refused_before_any_tile(grown, old, new, why):
    with pytest.raises(witness.Inconsistent, match=why):
        witness.check_extends(old or grown["old"][LOG_SIZE], new or grown["new"], lambda path: pytest.fail(path))


def test_tile_hash_reader_gives_every_subtree_hash_the_tree_stores(grown):
    conn = db.connect(grown["db"])
    try:
        size = logtree.size(conn)
        stored = logtree.hash_reader(conn)
        from_tiles = witness.tile_hash_reader(grown["fetch"], size)
        for level in range(size.bit_length()):
            for index in range(size >> level):
                assert from_tiles(level, index) == stored(level, index), (level, index)
    finally:
        conn.close()
    assert merkle.TILE_HEIGHT == 8


def test_verifier_log_cosign_checks_the_extension_against_a_real_server(grown, serve, runner, tmp_path):
    signer = log_signer_for_tests()
    server = serve(VERIFIER_LOG_KEY_FILE="")  # the tests' key signed the checkpoints already
    key = tmp_path / "witness.key"
    assert runner.invoke(cli, ["log", "keygen", "--witness", "--origin", "w.example", "--out", str(key)]).exit_code == 0
    old = tmp_path / "old.txt"
    old.write_text(note.sign_note(note.format_checkpoint(grown["old"][257]), signer.origin, signer.private_key))
    new = tmp_path / "new.txt"
    new.write_text(note.sign_note(note.format_checkpoint(grown["new"]), signer.origin, signer.private_key))
    base = ["log", "cosign", "--key", str(key), "--log-key", signer.vkey]
    done = runner.invoke(cli, [*base, "--previous", str(old), "--log-url", server.url + "/log/", str(new)])
    assert done.exit_code == 0, done.output
    assert note.open_note(done.stdout, [signer.verifier]).text == note.format_checkpoint(grown["new"])
    lines = done.stdout.splitlines()
    assert lines[-2].startswith("\u2014 verifier.test/log ") and lines[-1].startswith("\u2014 w.example ")
    forked = dataclasses.replace(grown["old"][257], root=bytes(32))
    old.write_text(note.sign_note(note.format_checkpoint(forked), signer.origin, signer.private_key))
    refused = runner.invoke(cli, [*base, "--previous", str(old), "--log-url", server.url + "/log/", str(new)])
    assert refused.exit_code == 1 and refused.stderr.startswith("Error: the new checkpoint does not extend")
    alone = runner.invoke(cli, [*base, "--previous", str(old), str(new)])
    assert alone.exit_code == 1 and "--previous needs --log-url" in alone.stderr
