"""verifier.note against the published vectors of golang.org/x/mod's sumdb/note and the C2SP specs.

Vectors: tests/vectors_tlog/notes.json (README.md there names sources, commits and licences).
Signatures made here are checked a second way, with PyNaCl (libsodium) and hashlib only, from
the C2SP text: key IDs, the signed bytes and the cosignature/v1 message.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import nacl.signing
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from verifier import merkle, note

TLOG = Path(__file__).resolve().parent / "vectors_tlog"
VECTORS = json.loads((TLOG / "notes.json").read_text("utf-8"))
GO = VECTORS["go"]
C2SP = VECTORS["c2sp"]
PETER = note.parse_vkey(GO["peter_vkey"])
ENOCH = note.parse_vkey(GO["enoch_vkey"])
TEXT = GO["text"]
PETER_SIG = GO["peter_signature_line"]
ENOCH_SIG = GO["enoch_signature_line"]


def go_private_key(skey: str) -> tuple[str, Ed25519PrivateKey]:
    """Go's private key text, PRIVATE+KEY+<name>+<hex id>+base64(0x01 || seed): a test-only reader."""
    _, _, name, _, material = skey.split("+", 4)
    raw = base64.b64decode(material)
    assert raw[0] == note.ED25519
    return name, Ed25519PrivateKey.from_private_bytes(raw[1:])


def seeded(label: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(label.encode()).digest())


def reason_of(call, *args) -> str:
    with pytest.raises(note.InvalidNote) as caught:
        call(*args)
    return caught.value.reason


# --- golang.org/x/mod sumdb/note ---------------------------------------------------------------


@pytest.mark.parametrize("vkey", [GO["peter_vkey"], GO["enoch_vkey"], C2SP["vkey"]])
def test_vkeys_round_trip(vkey):
    key = note.parse_vkey(vkey)
    assert note.format_vkey(key) == vkey
    assert key.key_id == note.key_id(key.name, key.signature_type, key.public_key)


def test_sign_reproduces_go_output():
    name, private = go_private_key(GO["peter_skey"])
    assert note.format_vkey(note.verifier_key(name, private)) == GO["peter_vkey"]
    assert note.sign_note(TEXT, name, private) == TEXT + "\n" + PETER_SIG


def test_open_one_known_one_unknown():
    opened = note.open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [PETER])
    assert opened.text == TEXT
    assert [s.line() for s in opened.verified] == [PETER_SIG]
    assert [s.line() for s in opened.unverified] == [ENOCH_SIG]


def test_open_both_known():
    opened = note.open_note((TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode(), [PETER, ENOCH])
    assert [s.line() for s in opened.verified] == [PETER_SIG, ENOCH_SIG]
    assert opened.unverified == ()


def test_no_known_key_is_unverified():
    assert reason_of(lambda: note.open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [])) == note.UNVERIFIED


def test_repeated_signatures_are_kept_once():
    bad_enoch = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
    opened = note.open_note(TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + bad_enoch, [PETER])
    assert [s.line() for s in opened.verified] == [PETER_SIG]
    assert [s.line() for s in opened.unverified] == [ENOCH_SIG, bad_enoch]


def test_a_known_keys_bad_signature_rejects_the_note():
    bad = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    assert reason_of(lambda: note.open_note(TEXT + "\n" + bad, [PETER])) == note.BAD_SIGNATURE
    assert reason_of(lambda: note.open_note(TEXT + "\n" + ENOCH_SIG + bad, [PETER, ENOCH])) == note.BAD_SIGNATURE


def test_same_id_other_name_is_ignored():
    misnamed = PETER_SIG.replace("PeterNeumann", "CarmenSandiego")
    assert reason_of(lambda: note.open_note(TEXT + "\n" + misnamed, [PETER])) == note.UNVERIFIED
    wrong_id = PETER_SIG.replace("x08g", "xxxx")
    assert reason_of(lambda: note.open_note(TEXT + "\n" + wrong_id, [PETER])) == note.UNVERIFIED


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(TEXT, id="no-signatures"),
        pytest.param(TEXT + "\n", id="blank-line-only"),
        pytest.param(TEXT + "\n" + PETER_SIG[:-1], id="no-final-newline"),
        pytest.param("\x01" + TEXT + "\n" + PETER_SIG, id="control-character"),
        pytest.param(b"\xff" + (TEXT + "\n" + PETER_SIG).encode(), id="not-utf8"),
        pytest.param(TEXT + "\n" + "— Bad Name " + PETER_SIG.split(" ")[-1], id="name-with-space"),
        pytest.param(TEXT + "\n" + PETER_SIG + "Unexpected line.\n", id="unexpected-line"),
        pytest.param(TEXT + "\n" + PETER_SIG * 101, id="101-signatures"),
        pytest.param(TEXT + "\n" + PETER_SIG.replace("—", "-"), id="hyphen-not-em-dash"),
        pytest.param(TEXT + "\n" + PETER_SIG.replace("=\n", "\n"), id="unpadded-base64"),
        pytest.param(TEXT + "\n" + "— PeterNeumann AAAA\n", id="signature-too-short"),
        pytest.param(TEXT + "\n" + "— a+b " + PETER_SIG.split(" ")[-1], id="name-with-plus"),
    ],
)
def test_malformed_notes(message):
    assert reason_of(lambda: note.open_note(message, [PETER])) == note.MALFORMED


def test_bad_vkeys_from_go():
    for vkey in GO["bad_vkeys"]:
        assert reason_of(note.parse_vkey, vkey) == note.BAD_VKEY


def test_every_mangled_vkey_is_rejected():
    """As Go's TestNewVerifier: every proper substring and every single byte incremented."""
    vkey = GO["peter_vkey"].encode()
    mangled = [vkey[i:j] for i in range(len(vkey) + 1) for j in range(i + 1, len(vkey) + 1) if (i, j) != (0, len(vkey))]
    mangled += [vkey[:i] + bytes([vkey[i] + 1]) + vkey[i + 1 :] for i in range(len(vkey))]
    for text in mangled:
        assert reason_of(note.parse_vkey, text.decode()) == note.BAD_VKEY, text


def test_conflicting_known_keys_are_refused():
    other = note.VerifierKey(PETER.name, PETER.key_id, note.ED25519, bytes(32))
    with pytest.raises(ValueError):
        note.open_note(TEXT + "\n" + PETER_SIG, [PETER, other])
    assert note.open_note(TEXT + "\n" + PETER_SIG, [PETER, PETER]).verified  # the same key twice is one key


# --- C2SP examples -----------------------------------------------------------------------------


def test_c2sp_signed_note_example():
    opened = note.open_note(C2SP["note"], [note.parse_vkey(C2SP["vkey"])])
    assert opened.text == "This is an example message.\n"


def test_c2sp_checkpoint_example_parses():
    """No vkey is published for this example, so only its form is checked."""
    text, signatures = note.parse_note(C2SP["checkpoint"])
    checkpoint = note.parse_checkpoint(text)
    assert (checkpoint.origin, checkpoint.size, checkpoint.extensions) == ("example.com/behind-the-sofa", 20852163, ())
    assert base64.b64encode(checkpoint.root).decode() == "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
    assert [s.name for s in signatures] == ["example.com/behind-the-sofa"]
    assert note.format_checkpoint(checkpoint) == text


def test_c2sp_cosigned_message_example():
    example = C2SP["cosigned_message"]
    text, _ = note.parse_note(C2SP["checkpoint"])
    assert note.cosigned_message(text, example["timestamp"]) == example["message"].encode()


def test_go_tree_note_is_a_checkpoint():
    tree = GO["tree_note"]
    checkpoint = note.parse_checkpoint(tree["text"])
    assert (checkpoint.origin, checkpoint.size) == (tree["origin"], tree["size"])
    assert checkpoint.root == merkle.leaf_hash(tree["root_is_leaf_hash_of"].encode())
    assert note.format_checkpoint(checkpoint) == tree["text"]
    with_extension = note.parse_checkpoint(tree["text"] + "JOE\n")
    assert with_extension.extensions == ("JOE",)


ROOT_B64 = base64.b64encode(merkle.leaf_hash(b"hello world")).decode()


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(f"go.sum database tree\n0xabcdef\n{ROOT_B64}\n", id="hex-size"),
        pytest.param(
            "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBTOOBIG=\n", id="bad-root-go"
        ),
        pytest.param(f"log\n012\n{ROOT_B64}\n", id="leading-zero"),
        pytest.param(f"log\n-1\n{ROOT_B64}\n", id="negative-size"),
        pytest.param(f"log\n{2**63}\n{ROOT_B64}\n", id="size-beyond-int63"),
        pytest.param(f"\n12\n{ROOT_B64}\n", id="empty-origin"),
        pytest.param(f"log\n12\n{ROOT_B64}", id="no-final-newline"),
        pytest.param(f"log\n12\n{ROOT_B64}\n\next\n", id="empty-extension-line"),
        pytest.param("log\n12\n", id="two-lines"),
        pytest.param(f"log\n12\n{base64.b64encode(bytes(31)).decode()}\n", id="short-root"),
        pytest.param(f"log\n12\n{ROOT_B64.rstrip('=')}\n", id="unpadded-root"),
        pytest.param(f"log\n12\n{ROOT_B64[:-2]}1=\n", id="non-canonical-root"),
        pytest.param(f"log\t1\n12\n{ROOT_B64}\n", id="control-character"),
    ],
)
def test_bad_checkpoints(text):
    assert reason_of(lambda: note.parse_checkpoint(text)) == note.BAD_CHECKPOINT


# --- our own signatures, checked a second way -------------------------------------------------

LOG_NAME = "verifier.example/log"
CHECKPOINT = note.Checkpoint(LOG_NAME, 64, merkle.leaf_hash(b"root"))


def independent_key_id(name: str, signature_type: int, public: bytes) -> int:
    return int.from_bytes(hashlib.sha256(name.encode() + b"\n" + bytes([signature_type]) + public).digest()[:4], "big")


def test_checkpoint_signature_independently():
    private = seeded("log key")
    public = nacl.signing.SigningKey(private.private_bytes_raw()).verify_key
    text = note.format_checkpoint(CHECKPOINT)
    assert text == f"{LOG_NAME}\n64\n{base64.b64encode(CHECKPOINT.root).decode()}\n"
    signed = note.sign_note(text, LOG_NAME, private)
    body, _, line = signed.rpartition("\n\n")
    assert body + "\n" == text and line.startswith("\u2014 " + LOG_NAME + " ") and line.endswith("\n")
    raw = base64.b64decode(line.split(" ")[2])
    assert int.from_bytes(raw[:4], "big") == independent_key_id(LOG_NAME, 0x01, bytes(public))
    public.verify(text.encode(), raw[4:])  # raises if not
    material = base64.b64encode(b"\x01" + bytes(public)).decode()
    vkey = f"{LOG_NAME}+{independent_key_id(LOG_NAME, 0x01, bytes(public)):08x}+{material}"
    opened = note.open_note(signed, [note.parse_vkey(vkey)])
    assert note.parse_checkpoint(opened.text) == CHECKPOINT


def test_cosignature_independently():
    log_key, witness_key = seeded("log key"), seeded("witness key")
    witness = "witness.example/w1"
    text = note.format_checkpoint(CHECKPOINT)
    cosig = note.cosign_text(text, witness, witness_key, 1679315147)
    signed = note.format_note(text, [note.sign_text(text, LOG_NAME, log_key), cosig])

    public = bytes(nacl.signing.SigningKey(witness_key.private_bytes_raw()).verify_key)
    line = signed.split("\n")[-2]
    raw = base64.b64decode(line.split(" ")[2])
    assert int.from_bytes(raw[:4], "big") == independent_key_id(witness, 0x04, public)
    assert raw[4:12] == (1679315147).to_bytes(8, "big") and len(raw) == 4 + 8 + 64
    message = b"cosignature/v1\ntime 1679315147\n" + text.encode()
    nacl.signing.VerifyKey(public).verify(message, raw[12:])

    witness_vkey = note.verifier_key(witness, witness_key, note.COSIGNATURE_V1)
    opened = note.open_note(signed, [witness_vkey])
    assert [s.timestamp for s in opened.verified] == [1679315147]
    assert [s.name for s in opened.unverified] == [LOG_NAME]
    # The same key as a plain note key has another key ID: it does not match the cosignature.
    as_note_key = note.verifier_key(witness, witness_key)
    assert as_note_key.key_id != witness_vkey.key_id
    assert reason_of(lambda: note.open_note(signed, [as_note_key])) == note.UNVERIFIED


def test_cosignature_with_another_time_is_rejected():
    witness_key = seeded("witness key")
    text = note.format_checkpoint(CHECKPOINT)
    cosig = note.cosign_text(text, "w", witness_key, 1000)
    moved = note.Signature(cosig.name, cosig.key_id, (1001).to_bytes(8, "big") + cosig.signature[8:])
    vkey = note.verifier_key("w", witness_key, note.COSIGNATURE_V1)
    assert reason_of(lambda: note.open_note(note.format_note(text, [moved]), [vkey])) == note.BAD_SIGNATURE


def test_every_changed_character_of_the_text_is_caught():
    private = seeded("log key")
    text = note.format_checkpoint(CHECKPOINT)
    signed = note.sign_note(text, LOG_NAME, private)
    key = note.verifier_key(LOG_NAME, private)
    for i, c in enumerate(text):
        if c == "\n":
            continue
        changed = signed[:i] + ("A" if c != "A" else "B") + signed[i + 1 :]
        assert reason_of(note.open_note, changed, [key]) == note.BAD_SIGNATURE


@pytest.mark.parametrize(
    "call, reason",
    [
        pytest.param(lambda: note.sign_note("no newline", "k", seeded("k")), note.MALFORMED, id="text-without-newline"),
        pytest.param(lambda: note.sign_note("a\x00\n", "k", seeded("k")), note.MALFORMED, id="text-with-nul"),
        pytest.param(lambda: note.sign_note("a\n", "a b", seeded("k")), note.BAD_VKEY, id="name-with-space"),
        pytest.param(lambda: note.sign_note("a\n", "a+b", seeded("k")), note.BAD_VKEY, id="name-with-plus"),
        pytest.param(lambda: note.sign_note("a\n", "", seeded("k")), note.BAD_VKEY, id="empty-name"),
        pytest.param(
            lambda: note.cosign_text("not a checkpoint\n", "w", seeded("k"), 1),
            note.BAD_CHECKPOINT,
            id="cosign-non-checkpoint",
        ),
        pytest.param(lambda: note.format_note("a\n", []), note.MALFORMED, id="no-signature"),
        pytest.param(
            lambda: note.format_checkpoint(note.Checkpoint("a\nb", 1, bytes(32))),
            note.BAD_CHECKPOINT,
            id="origin-with-newline",
        ),
        pytest.param(
            lambda: note.format_checkpoint(note.Checkpoint("log", 1, bytes(31))), note.BAD_CHECKPOINT, id="short-root"
        ),
        pytest.param(lambda: note.verifier_key("k", bytes(32), 0x02), note.BAD_VKEY, id="unsupported-type"),
    ],
)
def test_refused_to_sign_or_format(call, reason):
    assert reason_of(call) == reason


def test_cosignature_time_out_of_range():
    text = note.format_checkpoint(CHECKPOINT)
    with pytest.raises(ValueError):
        note.cosign_text(text, "w", seeded("k"), 2**63)


def test_go_skey_is_read_and_written_back_exactly():
    key = note.parse_skey(GO["peter_skey"])
    assert key.name == "PeterNeumann" and key.signature_type == note.ED25519
    assert key.verifier == note.parse_vkey(GO["peter_vkey"])
    assert note.format_skey(key) == GO["peter_skey"]


@pytest.mark.parametrize(
    "text",
    [
        GO["peter_skey"].replace("PRIVATE+KEY+", "PRIVATE+KEYS+"),
        GO["peter_skey"].replace("c74f20a3", "c74f20a4"),  # an ID that is not the key's
        GO["peter_skey"].replace("PeterNeumann", "PeterNeuman"),  # another name: another ID
        GO["peter_skey"][:-4],  # a seed too short
        GO["peter_skey"] + "AAAA",  # too long
        "PRIVATE+KEY+PeterNeumann+c74f20a3+not base64!",
        "PRIVATE+KEY+PeterNeumann",
    ],
    ids=["prefix", "key-id", "name", "short", "long", "not-base64", "no-key"],
)
def test_a_bad_skey_is_refused(text):
    with pytest.raises(note.InvalidNote) as caught:
        note.parse_skey(text)
    assert caught.value.reason == note.BAD_VKEY
