"""Scan receipts (verifier/receipts.py, "verifier-receipt/1"): made from a log, checked offline.

The pure part is checked against trees built here with merkle.py and notes signed with note.py;
the served receipts (the web's /receipt/<token>) and `verifier receipt verify` further down.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from verifier import merkle, note, receipts

ORIGIN = "verifier.example.cn/log"
LOG_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"test log key").digest())
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"another log key").digest())
WITNESS_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"witness one").digest())
WITNESS_TWO = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"witness two").digest())
LOG_VKEY = note.verifier_key(ORIGIN, LOG_KEY)
WITNESS_VKEY = note.verifier_key("witness.example.org", WITNESS_KEY, note.COSIGNATURE_V1)
WITNESS_TWO_VKEY = note.verifier_key("witness-two.example.org", WITNESS_TWO, note.COSIGNATURE_V1)
SECRET = b"test-secret"


def canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def leaf_bytes(kind: str, at: str, actor: str, personal_hash: str, body: str) -> bytes:
    """auditlog.leaf_bytes as the brief defines it (the test must not trust the code it checks)."""
    return f"verifier-log-entry/1\n{kind}\n{at}\n{actor}\n{personal_hash}\n{body}".encode()


def test_the_leaf_format_here_is_the_logs():
    from verifier import logtree

    assert leaf_bytes("scan", "t", "a", "p", "{}") == logtree.leaf_bytes("scan", "t", "a", "p", "{}")
    entry = logtree.parse_leaf(scan_leaf(7))
    assert receipts.parse_scan_leaf(scan_leaf(7)) == receipts.ScanEntry(
        entry.at, 7, 3141592653589793, 2, "genuine-repeat"
    )


def scan_leaf(scan_id: int, serial: int | None = 3141592653589793, checks: int | None = 2, reason="genuine-repeat"):
    at = f"2026-11-22T08:00:{scan_id % 60:02d}.000+00:00"
    body = {
        "id": scan_id,
        "at": at,
        "channel": "qr",
        "reason": reason,
        "detail": None,
        "serial": serial,
        "batch_id": 1,
        "kid": "ab12",
        "counted": 1,
        "checks": checks,
        "pin": None,
        "country": "CN",
    }
    return leaf_bytes("scan", at, "", "e3" * 32, canonical(body))


def batch_leaf(n: int) -> bytes:
    return leaf_bytes("batch.registered", "2026-11-01T00:00:00.000+00:00", "cli:ops", "", canonical({"batch": n}))


def make_log(size: int = 57) -> list[bytes]:
    """Leaves: a few batch entries, then scans (scan k at leaf 4 + k - 1)."""
    return [batch_leaf(i) for i in range(4)] + [scan_leaf(k) for k in range(1, size - 3)]


def signed_checkpoint(leaves: list[bytes], key=LOG_KEY, origin=ORIGIN, witnesses=(), at=1_790_000_000) -> str:
    root = merkle.tree_hash([merkle.leaf_hash(leaf) for leaf in leaves])
    text = note.format_checkpoint(note.Checkpoint(origin, len(leaves), root))
    signatures = [note.sign_text(text, origin, key)]
    signatures += [note.cosign_text(text, vkey.name, private, at) for vkey, private in witnesses]
    return note.format_note(text, signatures)


def receipt_for(leaves: list[bytes], index: int, checkpoint: str | None = None) -> dict:
    hash_at = merkle.hash_at_from_leaves([merkle.leaf_hash(leaf) for leaf in leaves])
    scan_id = receipts.parse_scan_leaf(leaves[index]).scan_id
    proof = merkle.inclusion_proof(index, len(leaves), hash_at)
    return receipts.build(scan_id, index, leaves[index], checkpoint or signed_checkpoint(leaves), proof)


@pytest.fixture
def log() -> list[bytes]:
    return make_log()


@pytest.fixture
def receipt(log) -> dict:
    return receipt_for(log, 41)


# --- a complete receipt ----------------------------------------------------------------------


def test_a_receipt_round_trips_through_its_file_and_proves_its_scan(receipt):
    text = receipts.dumps(receipt)
    assert text.endswith("\n") and json.loads(text)["format"] == "verifier-receipt/1"
    proven = receipts.verify(receipts.loads(text), [LOG_VKEY])
    assert proven == receipts.Proven(
        scan_id=38,
        serial=3141592653589793,
        code="3141 5926 5358 97934",
        check=2,
        at="2026-11-22T08:00:38.000+00:00",
        verdict="genuine-repeat",
        index=41,
        origin=ORIGIN,
        size=57,
        root=merkle.tree_hash([merkle.leaf_hash(leaf) for leaf in make_log()]),
        cosigners=(),
    )


def test_the_receipt_spells_out_its_summary_and_proof(receipt):
    assert list(receipt) == [
        *("format", "state", "scan", "serial", "code", "check", "at", "verdict", "index", "leaf"),
        *("checkpoint", "proof"),
    ]
    assert receipt["state"] == "complete" and receipt["serial"] == "3141592653589793"
    assert receipt["code"] == "3141 5926 5358 97934" and receipt["index"] == 41
    assert base64.b64decode(receipt["leaf"]) == scan_leaf(38)
    assert receipt["checkpoint"].startswith(f"{ORIGIN}\n57\n") and len(receipt["proof"]) == 6


@pytest.mark.parametrize("index", [0, 1, 4, 55], ids=lambda i: f"leaf-{i}")
@pytest.mark.parametrize("size", [5, 8, 57, 256, 300])
def test_every_scan_of_trees_of_many_sizes_has_a_receipt_that_verifies(size, index):
    leaves = [scan_leaf(k) for k in range(1, size + 1)]
    index = min(index, size - 1)
    assert receipts.verify(receipt_for(leaves, index), [LOG_VKEY]).index == index


def test_a_scan_without_a_serial_or_check_count_has_null_fields():
    leaves = [scan_leaf(1, serial=None, checks=None, reason="malformed"), scan_leaf(2)]
    receipt = receipt_for(leaves, 0)
    assert (receipt["serial"], receipt["code"], receipt["check"]) == (None, None, None)
    assert receipts.verify(receipt, [LOG_VKEY]).verdict == "malformed"


# --- every tamper is refused ------------------------------------------------------------------


def flip_b64(value: str, bit: int) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[bit // 8 % len(raw)] ^= 1 << (bit % 8)
    return base64.b64encode(bytes(raw)).decode()


def flip_signature(checkpoint: str, line: int = 0, bit: int = 100) -> str:
    """One bit of a signature line's signature (past its key ID) flipped."""
    text, _, signatures = checkpoint.partition("\n\n")
    lines = signatures.splitlines()
    name, b64 = lines[line].rsplit(" ", 1)
    lines[line] = f"{name} {flip_b64(b64, 32 + bit)}"
    return text + "\n\n" + "\n".join(lines) + "\n"


def resigned_with_text(checkpoint: str, old: str, new: str) -> str:
    return checkpoint.replace(old, new, 1)


TAMPERS = {
    # the proof
    "proof-first-hash-bit-0": (lambda r: r["proof"].__setitem__(0, flip_b64(r["proof"][0], 0)), "bad-proof"),
    "proof-last-hash-bit-255": (lambda r: r["proof"].__setitem__(-1, flip_b64(r["proof"][-1], 255)), "bad-proof"),
    "proof-middle-hash-bit-77": (lambda r: r["proof"].__setitem__(3, flip_b64(r["proof"][3], 77)), "bad-proof"),
    "proof-hash-dropped": (lambda r: r["proof"].pop(), "bad-proof"),
    "proof-hash-added": (lambda r: r["proof"].append(r["proof"][0]), "bad-proof"),
    "proof-hashes-swapped": (lambda r: r["proof"].reverse(), "bad-proof"),
    "proof-hash-short": (lambda r: r["proof"].__setitem__(0, base64.b64encode(b"\0" * 31).decode()), "malformed"),
    "proof-not-base64": (lambda r: r["proof"].__setitem__(0, "not base64!"), "malformed"),
    "proof-not-a-list": (lambda r: r.__setitem__("proof", r["proof"][0]), "malformed"),
    "proof-too-long": (lambda r: r.__setitem__("proof", r["proof"] * 11), "malformed"),
    # the leaf
    "leaf-bit-0": (lambda r: r.__setitem__("leaf", flip_b64(r["leaf"], 0)), "bad-proof"),
    "leaf-bit-in-the-body": (lambda r: r.__setitem__("leaf", flip_b64(r["leaf"], 8 * 200 + 1)), "bad-proof"),
    "leaf-last-bit": (lambda r: r.__setitem__("leaf", flip_b64(r["leaf"], -1)), "bad-proof"),
    "leaf-of-another-scan": (lambda r: r.__setitem__("leaf", base64.b64encode(scan_leaf(39)).decode()), "bad-proof"),
    "leaf-not-canonical-base64": (lambda r: r.__setitem__("leaf", r["leaf"] + "\n"), "malformed"),
    # the index
    "index-plus-one": (lambda r: r.__setitem__("index", r["index"] + 1), "bad-proof"),
    "index-minus-one": (lambda r: r.__setitem__("index", r["index"] - 1), "bad-proof"),
    "index-beyond-the-tree": (lambda r: r.__setitem__("index", 57), "bad-proof"),
    "index-negative": (lambda r: r.__setitem__("index", -41), "malformed"),
    "index-as-text": (lambda r: r.__setitem__("index", "41"), "malformed"),
    # the checkpoint
    "checkpoint-signature-bit": (
        lambda r: r.__setitem__("checkpoint", flip_signature(r["checkpoint"])),
        "bad-checkpoint",
    ),
    "checkpoint-size-edited": (
        lambda r: r.__setitem__("checkpoint", r["checkpoint"].replace("\n57\n", "\n58\n", 1)),
        "bad-checkpoint",
    ),
    "checkpoint-root-edited": (
        lambda r: r.__setitem__("checkpoint", r["checkpoint"].replace("\n57\n", "\n57\nA", 1)),
        "bad-checkpoint",
    ),
    "checkpoint-signed-by-another-key": (
        lambda r: r.__setitem__("checkpoint", signed_checkpoint(make_log(), key=OTHER_KEY)),
        "bad-checkpoint",
    ),
    "checkpoint-of-another-origin": (
        lambda r: r.__setitem__("checkpoint", signed_checkpoint(make_log(), origin="other.example/log")),
        "bad-checkpoint",
    ),
    "checkpoint-of-a-smaller-tree": (
        lambda r: r.__setitem__("checkpoint", signed_checkpoint(make_log()[:50])),
        "bad-proof",
    ),
    "checkpoint-of-another-tree": (
        lambda r: r.__setitem__("checkpoint", signed_checkpoint(make_log()[:56] + [batch_leaf(9)])),
        "bad-proof",
    ),
    "checkpoint-unsigned-text": (
        lambda r: r.__setitem__("checkpoint", r["checkpoint"].partition("\n\n")[0] + "\n"),
        "bad-checkpoint",
    ),
    "checkpoint-missing": (lambda r: r.__setitem__("checkpoint", None), "malformed"),
    # the summary fields
    "serial-edited": (lambda r: r.__setitem__("serial", "3141592653589794"), "summary-mismatch"),
    "serial-as-a-number": (lambda r: r.__setitem__("serial", 3141592653589793), "summary-mismatch"),
    "code-edited": (lambda r: r.__setitem__("code", "3141 5926 5358 97941"), "summary-mismatch"),
    "check-edited": (lambda r: r.__setitem__("check", 1), "summary-mismatch"),
    "check-as-true": (lambda r: r.__setitem__("check", True), "summary-mismatch"),
    "check-dropped": (lambda r: r.pop("check"), "summary-mismatch"),
    "time-edited": (lambda r: r.__setitem__("at", "2026-11-21T08:00:38.000+00:00"), "summary-mismatch"),
    "verdict-edited": (lambda r: r.__setitem__("verdict", "genuine"), "summary-mismatch"),
    "scan-id-edited": (lambda r: r.__setitem__("scan", 39), "summary-mismatch"),
    # the envelope
    "format-edited": (lambda r: r.__setitem__("format", "verifier-receipt/2"), "not-a-receipt"),
    "state-edited": (lambda r: r.__setitem__("state", "proven"), "malformed"),
    "state-pending": (lambda r: r.__setitem__("state", "pending"), "pending"),
}


@pytest.mark.parametrize("tamper, reason", TAMPERS.values(), ids=TAMPERS.keys())
def test_a_tampered_receipt_is_refused_with_its_reason(receipt, tamper, reason):
    tampered = copy.deepcopy(receipt)
    tamper(tampered)
    with pytest.raises(receipts.InvalidReceipt) as refused:
        receipts.verify(tampered, [LOG_VKEY])
    assert refused.value.reason == reason


def test_every_bit_of_the_proof_and_the_leaf_matters(receipt):
    """Exhaustively, not by sample: no bit of any proof hash or of the leaf can change unnoticed."""
    for i, element in enumerate(receipt["proof"]):
        for bit in range(8 * merkle.HASH_SIZE):
            tampered = copy.deepcopy(receipt)
            tampered["proof"][i] = flip_b64(element, bit)
            with pytest.raises(receipts.InvalidReceipt, match="not entry 41"):
                receipts.verify(tampered, [LOG_VKEY])
    for bit in range(8 * len(base64.b64decode(receipt["leaf"]))):
        tampered = dict(receipt, leaf=flip_b64(receipt["leaf"], bit))
        with pytest.raises(receipts.InvalidReceipt) as refused:
            receipts.verify(tampered, [LOG_VKEY])
        assert refused.value.reason == "bad-proof"


def test_a_leaf_that_is_not_a_scan_entry_proves_no_scan(log):
    hash_at = merkle.hash_at_from_leaves([merkle.leaf_hash(leaf) for leaf in log])
    receipt = receipt_for(log, 41)
    receipt.update(index=2, leaf=base64.b64encode(log[2]).decode())
    receipt["proof"] = [base64.b64encode(h).decode() for h in merkle.inclusion_proof(2, len(log), hash_at)]
    with pytest.raises(receipts.InvalidReceipt) as refused:
        receipts.verify(receipt, [LOG_VKEY])
    assert refused.value.reason == "bad-leaf"  # included, but a batch entry: nothing about a scan
    with pytest.raises(receipts.InvalidReceipt):
        receipts.build(1, 2, log[2])


@pytest.mark.parametrize(
    "text",
    ["", "[]", '"verifier-receipt/1"', "{}", '{"format": "verifier-log-checkpoint/1"}', "not json", "[" * 100_000],
    ids=["empty", "array", "string", "no-format", "another-format", "not-json", "deep-array"],
)
def test_a_file_that_is_not_a_receipt_is_named_so(text):
    with pytest.raises(receipts.InvalidReceipt) as refused:
        receipts.loads(text)
    assert refused.value.reason == "not-a-receipt"


# --- pending receipts ------------------------------------------------------------------------------


def test_a_receipt_before_any_checkpoint_is_pending_with_its_entry(log):
    receipt = receipts.build(38, 41, log[41])
    assert receipt["state"] == "pending" and receipt["proof"] is None and receipt["checkpoint"] is None
    assert receipt["index"] == 41 and receipt["code"] == "3141 5926 5358 97934"
    with pytest.raises(receipts.InvalidReceipt) as refused:
        receipts.verify(receipt, [LOG_VKEY])
    assert refused.value.reason == "pending"


def test_a_receipt_before_the_scan_is_in_the_log_is_pending_with_nulls():
    receipt = receipts.build(38)
    assert receipt["state"] == "pending" and receipt["scan"] == 38
    assert all(receipt[k] is None for k in ("serial", "code", "check", "at", "verdict", "index", "leaf", "proof"))
    with pytest.raises(receipts.InvalidReceipt) as refused:
        receipts.verify(receipt, [LOG_VKEY])
    assert refused.value.reason == "pending"


def test_build_refuses_a_leaf_of_another_scan(log):
    with pytest.raises(ValueError, match="records scan 38"):
        receipts.build(39, 41, log[41])


# --- witnesses --------------------------------------------------------------------------------------


def test_witness_cosignatures_are_counted_when_their_keys_are_known(log):
    checkpoint = signed_checkpoint(log, witnesses=[(WITNESS_VKEY, WITNESS_KEY), (WITNESS_TWO_VKEY, WITNESS_TWO)])
    receipt = receipt_for(log, 41, checkpoint)
    assert receipts.verify(receipt, [LOG_VKEY]).cosigners == ()  # none asked for: none counted
    proven = receipts.verify(receipt, [LOG_VKEY], [WITNESS_VKEY, WITNESS_TWO_VKEY], min_cosignatures=2)
    assert proven.cosigners == ("witness-two.example.org", "witness.example.org")
    assert receipts.verify(receipt, [LOG_VKEY], [WITNESS_VKEY], min_cosignatures=1).cosigners == (
        "witness.example.org",
    )


def test_too_few_known_cosignatures_are_refused(log):
    receipt = receipt_for(log, 41, signed_checkpoint(log, witnesses=[(WITNESS_VKEY, WITNESS_KEY)]))
    for witnesses, wanted in (([WITNESS_VKEY], 2), ([WITNESS_TWO_VKEY], 1), ([], 1)):
        with pytest.raises(receipts.InvalidReceipt) as refused:
            receipts.verify(receipt, [LOG_VKEY], witnesses, min_cosignatures=wanted)
        assert refused.value.reason == "too-few-cosignatures"


def test_a_forged_cosignature_of_a_known_witness_is_refused(log):
    checkpoint = flip_signature(signed_checkpoint(log, witnesses=[(WITNESS_VKEY, WITNESS_KEY)]), line=1, bit=8 * 8 + 3)
    receipt = receipt_for(log, 41, checkpoint)
    with pytest.raises(receipts.InvalidReceipt) as refused:
        receipts.verify(receipt, [LOG_VKEY], [WITNESS_VKEY])
    assert refused.value.reason == "bad-checkpoint"
    assert receipts.verify(receipt, [LOG_VKEY]).cosigners == ()  # an unknown key's line is ignored


def test_a_note_signed_by_a_witness_alone_is_not_a_checkpoint_of_the_log(log):
    text = note.format_checkpoint(
        note.Checkpoint(ORIGIN, len(log), merkle.tree_hash([merkle.leaf_hash(x) for x in log]))
    )
    only_witnessed = note.format_note(text, [note.cosign_text(text, WITNESS_VKEY.name, WITNESS_KEY, 1_790_000_000)])
    receipt = receipt_for(log, 41, only_witnessed)
    with pytest.raises(receipts.InvalidReceipt) as refused:
        receipts.verify(receipt, [LOG_VKEY], [WITNESS_VKEY])
    assert refused.value.reason == "bad-checkpoint"


# --- the capability ----------------------------------------------------------------------------------


def test_a_token_names_its_scan_under_this_instances_secret():
    made = receipts.token(SECRET, 38)
    assert made.startswith("38-") and len(made) == 3 + 32
    assert receipts.scan_of_token(SECRET, made) == 38
    assert receipts.scan_of_token(b"another-secret", made) is None
    assert receipts.token(SECRET, 39) != made.replace("38-", "39-")  # the MAC covers the id


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("0" if t[-1] != "0" else "1"),
        lambda t: t.upper(),
        lambda t: "0" + t,
        lambda t: t + "0",
        lambda t: t[:-1],
        lambda t: t.replace("-", "."),
        lambda t: "39" + t[2:],
        lambda t: " " + t,
        lambda t: "-1" + t[2:],
        lambda t: "99999999999999999999" + t[2:],
    ],
    ids=[
        "last-digit-changed",
        "upper-case",
        "leading-zero",
        "longer-mac",
        "shorter-mac",
        "another-separator",
        "another-scan",
        "leading-space",
        "negative-scan",
        "scan-too-large",
    ],
)
def test_a_mangled_token_names_no_scan(mangle):
    assert receipts.scan_of_token(SECRET, mangle(receipts.token(SECRET, 38))) is None


# --- served: /receipt/<token>, the verdict's link ------------------------------------------------


TEST_SECRET = b"test-secret"  # the app fixture's SECRET_KEY


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def last_scan_id(location) -> int:
    from verifier import db

    conn = db.connect(location)
    try:
        return int(conn.execute("SELECT max(id) FROM scans").fetchone()[0])
    finally:
        conn.close()


def fetch_receipt(client, scan_id: int, secret: bytes = TEST_SECRET):
    return client.get(f"/receipt/{receipts.token(secret, scan_id)}")


@pytest.mark.parametrize("lang, words", [("zh", "保存本次查验凭证"), ("en", "Keep a receipt of this check")])
def test_the_verdict_page_offers_a_receipt_of_the_check(client, world, db_copy, lang, words):
    page = client.get(path_of(world["pin"][1][3]["url"]) + f"?lang={lang}").get_data(as_text=True)
    link = f'href="/receipt/{receipts.token(TEST_SECRET, last_scan_id(db_copy))}"'
    assert words in page and link in page


def test_every_verdict_that_recorded_a_scan_offers_its_receipt(client, db_copy):
    page = client.post("/check", data={"code": "1234 5678 9012 34567"}).get_data(as_text=True)
    assert f"/receipt/{receipts.token(TEST_SECRET, last_scan_id(db_copy))}" in page  # a mistyped code too


def test_the_api_verdict_names_its_receipt_by_absolute_url(client, world, db_copy):
    body = client.get("/api/v1/verify", query_string={"code": world["gs1"][1][0]["url"]}).get_json()
    assert body["receipt"] == f"http://localhost/receipt/{receipts.token(TEST_SECRET, last_scan_id(db_copy))}"


def test_a_receipt_is_pending_until_a_signed_checkpoint_covers_its_scan(client, world, db_copy):
    from conftest import log_signer_for_tests, settle

    row = world["pin"][1][5]
    client.get(path_of(row["url"]))
    scan_id = last_scan_id(db_copy)
    pending = fetch_receipt(client, scan_id)
    assert pending.status_code == 200 and int(pending.headers["Retry-After"]) > 0
    assert pending.headers["Content-Type"] == "application/json"
    assert pending.headers["Content-Disposition"] == f'attachment; filename="receipt-{scan_id}.json"'
    assert "no-store" in pending.headers["Cache-Control"]
    body = json.loads(pending.get_data())
    assert (body["format"], body["state"], body["scan"], body["proof"]) == (
        "verifier-receipt/1",
        "pending",
        scan_id,
        None,
    )
    settle(db_copy)
    complete = fetch_receipt(client, scan_id)
    assert complete.status_code == 200 and "Retry-After" not in complete.headers
    receipt = json.loads(complete.get_data())
    proven = receipts.verify(receipt, [log_signer_for_tests().verifier])
    assert (proven.scan_id, proven.serial, proven.check, proven.verdict) == (scan_id, int(row["serial"]), 1, "genuine")
    assert proven.code == row["code"] and proven.origin == log_signer_for_tests().origin


def test_a_receipt_keeps_its_proof_as_the_log_grows(client, world, db_copy):
    from conftest import log_signer_for_tests, settle

    client.get(path_of(world["pin"][1][6]["url"]))
    first = last_scan_id(db_copy)
    settle(db_copy)
    early = json.loads(fetch_receipt(client, first).get_data())
    for row in world["pin"][1][7:10]:
        client.get(path_of(row["url"]))
    settle(db_copy)
    later = json.loads(fetch_receipt(client, first).get_data())
    for receipt in (early, later):
        assert receipts.verify(receipt, [log_signer_for_tests().verifier]).scan_id == first
    assert (
        receipts.verify(later, [log_signer_for_tests().verifier]).size
        > receipts.verify(early, [log_signer_for_tests().verifier]).size
    )


@pytest.mark.parametrize(
    "mangle",
    [
        lambda token: token[:-1] + ("1" if token[-1] == "0" else "0"),
        lambda token: token.split("-")[0] + "-" + "0" * 32,
        lambda token: token.split("-")[0],
        lambda token: token.upper(),
        lambda token: token + "0",
    ],
    ids=["last-digit", "zero-mac", "no-mac", "upper-case", "longer"],
)
def test_a_token_with_a_wrong_mac_is_not_found(client, world, db_copy, mangle):
    client.get(path_of(world["pin"][1][11]["url"]))
    token = receipts.token(TEST_SECRET, last_scan_id(db_copy))
    response = client.get(f"/receipt/{mangle(token)}")
    assert response.status_code == 404
    assert response.get_json() == {"ok": False, "error": {"code": "not-found", "message": "no such receipt"}}


def test_a_token_of_another_instances_secret_is_not_found(client, world, db_copy):
    client.get(path_of(world["pin"][1][12]["url"]))
    assert fetch_receipt(client, last_scan_id(db_copy), b"another instance").status_code == 404


def test_the_neighbours_receipts_are_not_reachable_from_ones_own(client, world, db_copy):
    """A receipt names its scan id: the next id's token is another MAC, not a guess away."""
    client.get(path_of(world["pin"][1][13]["url"]))
    client.get(path_of(world["pin"][1][14]["url"]))
    mine = last_scan_id(db_copy)
    token = receipts.token(TEST_SECRET, mine)
    neighbour = f"{mine - 1}-{token.split('-')[1]}"
    assert client.get(f"/receipt/{neighbour}").status_code == 404


# --- verifier receipt verify ------------------------------------------------------------------------


@pytest.fixture
def receipt_files(tmp_path, log):
    files = {}
    complete = receipt_for(log, 41, signed_checkpoint(log, witnesses=[(WITNESS_VKEY, WITNESS_KEY)]))
    tampered = dict(complete, check=3)
    for name, content in (
        ("complete", receipts.dumps(complete)),
        ("tampered", receipts.dumps(tampered)),
        ("pending", receipts.dumps(receipts.build(38, 41, log[41]))),
        ("not-a-receipt", '{"format": "verifier-log-checkpoint/1"}\n'),
        ("not-json", "\x89PNG\r\n"),
    ):
        (tmp_path / f"{name}.json").write_text(content, "utf-8")
        files[name] = str(tmp_path / f"{name}.json")
    return files


def verify_cli(runner, *args, log_key: str | None = note.format_vkey(LOG_VKEY), env=None):
    from verifier.cli import cli

    extra = ["--log-key", log_key] if log_key else []
    return runner.invoke(
        cli, ["receipt", "verify", *args, *extra], env={"VERIFIER_LOG_PUBLIC_KEY": None, **(env or {})}
    )


def test_cli_a_complete_receipt_prints_what_it_proves_and_exits_0(runner, receipt_files):
    result = verify_cli(runner, receipt_files["complete"])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "Receipt OK: code 3141 5926 5358 97934, check 2 at 2026-11-22T08:00:38.000+00:00, verdict genuine-repeat, "
        f"is entry 42 of log {ORIGIN} (checkpoint of 57 entries)\n"
    )


def test_cli_witnesses_are_counted_and_named(runner, receipt_files):
    witness = note.format_vkey(WITNESS_VKEY)
    result = verify_cli(runner, receipt_files["complete"], "--witness-key", witness, "--min-cosignatures", "1")
    assert result.exit_code == 0 and result.stdout.strip().endswith("entries, cosigned by witness.example.org)")
    other = note.format_vkey(WITNESS_TWO_VKEY)
    result = verify_cli(runner, receipt_files["complete"], "--witness-key", other, "--min-cosignatures", "1")
    assert result.exit_code == 1 and "1 asked" in result.stderr


def test_cli_the_log_key_may_come_from_the_environment(runner, receipt_files):
    result = verify_cli(
        runner, receipt_files["complete"], log_key=None, env={"VERIFIER_LOG_PUBLIC_KEY": note.format_vkey(LOG_VKEY)}
    )
    assert result.exit_code == 0 and result.stdout.startswith("Receipt OK: ")


def test_cli_json_says_what_is_proven(runner, receipt_files):
    result = verify_cli(runner, receipt_files["complete"], "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "ok": True,
        "scan": 38,
        "serial": "3141592653589793",
        "code": "3141 5926 5358 97934",
        "check": 2,
        "at": "2026-11-22T08:00:38.000+00:00",
        "verdict": "genuine-repeat",
        "index": 41,
        "origin": ORIGIN,
        "size": 57,
        "root": base64.b64encode(merkle.tree_hash([merkle.leaf_hash(x) for x in make_log()])).decode(),
        "cosigners": [],
    }


CLI_CASES = {
    "tampered": ("tampered", [], 1, "receipt refused: check is not what the log entry records"),
    "another-log-key": (
        "complete",
        ["--log-key", note.format_vkey(note.verifier_key(ORIGIN, OTHER_KEY))],
        1,
        "not signed by the log key",
    ),
    "not-a-receipt": ("not-a-receipt", [], 2, "not a receipt"),
    "not-json": ("not-json", [], 2, "not a receipt: not JSON"),
    "bad-log-key": ("complete", ["--log-key", "not a key"], 2, "--log-key is not a verifier key"),
    "too-many-cosignatures-asked": (
        "complete",
        ["--min-cosignatures", "1"],
        2,
        "asks for more than the 0 --witness-key",
    ),
}


@pytest.mark.parametrize("name, extra, status, message", CLI_CASES.values(), ids=CLI_CASES.keys())
def test_cli_refusals_are_one_error_line_with_their_exit_status(runner, receipt_files, name, extra, status, message):
    if extra[:1] == ["--log-key"]:
        result = verify_cli(runner, receipt_files[name], *extra, log_key=None)
    else:
        result = verify_cli(runner, receipt_files[name], *extra)
    assert result.exit_code == status, result.output
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("Error: ") and message in result.stderr


def test_cli_a_pending_receipt_says_so_and_exits_3(runner, receipt_files):
    result = verify_cli(runner, receipt_files["pending"])
    assert result.exit_code == 3
    assert result.stdout == "Receipt pending: scan 38 is not in a signed checkpoint yet; fetch it again\n"
    as_json = verify_cli(runner, receipt_files["pending"], "--json")
    assert as_json.exit_code == 3 and json.loads(as_json.stdout)["error"]["code"] == "pending"


def test_cli_without_a_log_key_exits_2(runner, receipt_files):
    result = verify_cli(runner, receipt_files["complete"], log_key=None)
    assert result.exit_code == 2 and "VERIFIER_LOG_PUBLIC_KEY" in result.stderr


def test_cli_a_missing_file_exits_2(runner, tmp_path):
    result = verify_cli(runner, str(tmp_path / "nowhere.json"))
    assert result.exit_code == 2 and result.stderr.startswith("Error: cannot read")


def test_receipts_count_against_the_clients_rate_limit(make_app):
    client = make_app(RATELIMIT="3/minute").test_client()
    statuses = [client.get(f"/receipt/1-{'0' * 32}").status_code for _ in range(5)]
    assert statuses == [404, 404, 404, 429, 429]
