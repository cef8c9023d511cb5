#!/usr/bin/env python3
"""Regenerate tests/vectors/: valid codes, their keys, and named invalid cases.

Each case is one JSON file. Invalid cases state their expected outcome from what the mutation
does to the format (docs/code-format.md), never by running the verifier under test.

    python scripts/make_vectors.py [OUT_DIR]
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from verifier import codes, keys

BASE = "HTTPS://VERIFY.EXAMPLE.CN/"
GS1_BASE = "https://verify.example.cn/"
HOST_LOWER = "verify.example.cn"
STEPS = ("text", "prefix", "syntax", "key", "signature", "status")
DETAIL_STEP = {"bad-prefix": "prefix", "bad-path": "prefix", "bad-character": "text"}


def seeded_key(label: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"verifier test key {label}".encode()).digest())


KEYS = {label: seeded_key(label) for label in ("active", "retired", "revoked", "unknown")}
KID = {label: keys.kid_for(keys.raw_public(k)) for label, k in KEYS.items()}
STATUS = {"active": "active", "retired": "retired", "revoked": "revoked"}
assert len(set(KID.values())) == 4, "test key ids must differ"
SQ, TR, AC = codes.MARKS


def compact(label="active", mark=SQ, batch=1234, serial=3141592653589793) -> codes.Code:
    code = codes.Code(codes.FORM_COMPACT, KID[label], mark, serial, batch=batch)
    return codes.sign(code, KEYS[label])


def gs1(
    label="active", mark=AC, gtin="09506000134352", lot="L2026-11.A", serial=2718281828459045, expiry="271231"
) -> codes.Code:
    code = codes.Code(codes.FORM_GS1, KID[label], mark, serial, gtin=gtin, lot=lot, expiry=expiry)
    return codes.sign(code, KEYS[label])


def url(code: codes.Code) -> str:
    return codes.encode_url(code, BASE if code.form == codes.FORM_COMPACT else GS1_BASE)


def raw_payload(code: codes.Code) -> bytes:
    return base64.b32decode(url(code)[len(BASE) :] + "=")


def compact_url_from_raw(raw: bytes) -> str:
    return BASE + base64.b32encode(raw).decode().rstrip("=")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def steps_for(reason: str, detail: str | None, step: str | None = None) -> dict[str, bool | None]:
    """Per decoding step: true passed, false failed, null not reached."""
    if reason == "genuine":
        return {s: True for s in STEPS}
    failing = (
        step
        or {
            "malformed": DETAIL_STEP.get(detail or "", "syntax"),
            "unknown-key": "key",
            "bad-signature": "signature",
            "key-revoked": "status",
        }[reason]
    )
    at = STEPS.index(failing)
    return {step: (True if i < at else False if i == at else None) for i, step in enumerate(STEPS)}


class Writer:
    def __init__(self, out: Path):
        self.out = out
        self.names: set[str] = set()

    def _write(self, folder: str, name: str, body: dict) -> None:
        assert name not in self.names, name
        self.names.add(name)
        path = self.out / folder / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", "utf-8")

    def valid(self, name: str, description: str, text: str, code: codes.Code, key: str = "active") -> None:
        self._write(
            "valid",
            name,
            {
                "name": name,
                "description": description,
                "input": text,
                "expected": {
                    "genuine": True,
                    "reason": "genuine",
                    "detail": None,
                    "key_status": STATUS[key],
                    "fields": code.fields(),
                    "steps": steps_for("genuine", None),
                },
            },
        )

    def invalid(
        self,
        category: str,
        name: str,
        description: str,
        text: str | dict,
        reason: str,
        detail: str | None = None,
        step: str | None = None,
    ) -> None:
        assert (reason == "malformed") == (detail is not None), name
        assert detail is None or detail in codes.MALFORMED_DETAILS, detail
        key = "input" if isinstance(text, str) else "input_repeat"
        self._write(
            "invalid",
            f"{category}--{name}",
            {
                "name": f"{category}--{name}",
                "category": category,
                "description": description,
                key: text,
                "expected": {
                    "genuine": False,
                    "reason": reason,
                    "detail": detail,
                    "steps": steps_for(reason, detail, step),
                },
            },
        )


def write_keys(out: Path) -> None:
    records = []
    for label in ("active", "retired", "revoked"):
        raw = keys.raw_public(KEYS[label])
        records.append(
            keys.KeyRecord(label, KID[label].hex(), keys._b64url(raw), STATUS[label], "2026-01-01T00:00:00+00:00")
        )
    (out / "jwks.json").write_text(json.dumps(keys.jwks(records), indent=2) + "\n", "utf-8")
    private = {
        "warning": "TEST KEYS ONLY: published with the vectors, never trust them for real codes",
        "base_url": BASE,
        "keys": {label: {"kid": KID[label].hex(), "seed": b64url(k.private_bytes_raw())} for label, k in KEYS.items()},
    }
    (out / "test-keys.json").write_text(json.dumps(private, indent=2) + "\n", "utf-8")
    (out / "config.json").write_text(json.dumps({"base_urls": [BASE]}, indent=2) + "\n", "utf-8")


def write_valid(w: Writer) -> None:
    c = compact()
    u = url(c)
    w.valid("compact-stable-qualified", "compact form, active key", u, c)
    c2 = compact(mark=TR, batch=1, serial=0)
    w.valid("compact-traceability-smallest", "batch 1, serial 0", url(c2), c2)
    c3 = compact(mark=AC, batch=2**32 - 1, serial=10**16 - 1)
    w.valid("compact-anti-counterfeit-largest", "largest batch and serial", url(c3), c3)
    c4 = compact("retired", serial=1111111111111111)
    w.valid("compact-retired-key", "a retired key's codes still verify", url(c4), c4, "retired")
    w.valid("compact-lowercase", "a scanner that lower-cases the whole URL", u.lower(), c)
    mixed = "".join(ch.lower() if i % 3 == 0 else ch for i, ch in enumerate(u))
    w.valid("compact-mixed-case", "case changes anywhere", mixed, c)
    w.valid("compact-no-scheme", "the URL without its scheme", u.split("://", 1)[1], c)
    w.valid("compact-http-scheme", "http instead of https", "http://" + u.split("://", 1)[1], c)
    w.valid("compact-surrounding-whitespace", "spaces, tab, CR/LF around the URL", " \t" + u + "\r\n", c)
    w.valid("compact-bare-payload", "the payload alone, as pasted", u[len(BASE) :], c)
    w.valid("compact-non-gs1-query", "a messenger's own query parameter is ignored", u + "?from=singlemessage", c)
    g = gs1()
    gu = url(g)
    w.valid("gs1-anti-counterfeit", "GS1 Digital Link, active key", gu, g)
    g2 = gs1("retired", mark=SQ, lot="A", serial=5, expiry="300101")
    w.valid("gs1-retired-key", "GS1 form, retired key, one-character lot", url(g2), g2, "retired")
    g3 = gs1(mark=TR, gtin="00000000000000", lot="x_Y-z.09_ABCDEFGHIJK", serial=10**16 - 1, expiry="000229")
    w.valid("gs1-edge-fields", "all-zero GTIN, 20-character lot, 29 Feb 2000", url(g3), g3)
    w.valid("gs1-no-scheme", "GS1 URL without scheme", gu.split("://", 1)[1], g)
    w.valid(
        "gs1-uppercase-host", "scheme and host in upper case", "HTTPS://VERIFY.EXAMPLE.CN" + gu[len(GS1_BASE) - 1 :], g
    )
    path, query = gu.split("?")
    reordered = path + "?" + "&".join(reversed(query.split("&")))
    w.valid("gs1-query-reordered", "data attributes in another order", reordered, g)
    w.valid("gs1-non-gs1-query", "a non-GS1 query parameter is ignored", gu + "&utm_source=wechat", g)


def write_invalid(w: Writer) -> None:
    c = compact()
    u = url(c)
    payload = u[len(BASE) :]
    raw = raw_payload(c)
    g = gs1()
    gu = url(g)
    gpath, gquery = gu.split("?")
    attrs = dict(pair.split("=") for pair in gquery.split("&"))
    digsig = base64.urlsafe_b64decode(attrs["8030"] + "==")

    def gs1_url(path: str = gpath, **changes: str | None) -> str:
        merged = {**attrs, **changes}
        return path + "?" + "&".join(f"{k}={v}" for k, v in merged.items() if v is not None)

    def gs1_path(gtin=g.gtin, lot=g.lot, serial=f"{g.serial:016d}") -> str:
        return f"{GS1_BASE}01/{gtin}/10/{lot}/21/{serial}"

    inv = w.invalid

    # truncated
    for k in (1, 2, 3, 5, 8, 16, 40, 64, 100, 126, 127):
        inv("truncated", f"compact-minus-{k}", f"last {k} payload characters cut", u[:-k], "malformed", "bad-length")
    for k in (1, 2, 4, 30, 89):
        inv(
            "truncated",
            f"gs1-digsig-minus-{k}",
            f"last {k} characters of AI 8030 cut",
            gu[:-k],
            "malformed",
            "bad-length",
        )
    inv("truncated", "gs1-no-digsig", "AI 8030 left out", gs1_url(**{"8030": None}), "malformed", "missing-field")
    inv("truncated", "gs1-cut-after-lot", "URL cut inside the path", gpath.split("/21/")[0], "malformed", "bad-path")
    inv("truncated", "gs1-cut-after-path", "query string cut", gpath, "malformed", "missing-field")
    inv("truncated", "base-url-only", "nothing after the base URL", BASE, "malformed", "bad-length")

    # extended
    for extra in ("A", "AA", "AAAAAAAA", "77777777", "2"):
        inv(
            "extended",
            f"compact-plus-{extra}",
            f"'{extra}' appended to the payload",
            u + extra,
            "malformed",
            "bad-length",
        )
    inv("extended", "compact-trailing-slash", "a slash after the payload", u + "/", "malformed", "bad-path")
    inv("extended", "compact-extra-segment", "a path segment after the payload", u + "/X", "malformed", "bad-path")
    inv("extended", "gs1-digsig-plus-1", "a character appended to AI 8030", gu + "A", "malformed", "bad-length")
    inv(
        "extended",
        "gs1-serial-plus-digit",
        "a digit appended to the serial",
        gs1_url(gs1_path(serial=f"{g.serial:016d}0")),
        "malformed",
        "bad-serial",
    )
    inv(
        "extended",
        "gs1-gtin-plus-digit",
        "a digit appended to the GTIN",
        gs1_url(gs1_path(gtin=g.gtin + "0")),
        "malformed",
        "bad-gtin",
    )
    inv(
        "extended",
        "gs1-lot-21-chars",
        "a lot longer than 20 characters",
        gs1_url(gs1_path(lot="A" * 21)),
        "malformed",
        "bad-lot",
    )
    inv("extended", "gs1-extra-path", "a segment after the serial", gs1_url(gpath + "/22/1"), "malformed", "bad-path")
    inv("extended", "gs1-unknown-ai", "an unsigned GS1 attribute (AI 99)", gu + "&99=X", "malformed", "unknown-field")
    inv(
        "extended",
        "compact-gs1-attribute",
        "a GS1 attribute after a compact payload",
        u + "?17=271231",
        "malformed",
        "unknown-field",
    )

    # every field altered, compact (re-encoded so only the field changes)
    def with_byte(index: int, value: int) -> str:
        changed = bytearray(raw)
        changed[index] = value
        return compact_url_from_raw(bytes(changed))

    for v in (0, 2, 255):
        inv("field-altered", f"compact-version-{v}", f"version byte {v}", with_byte(0, v), "malformed", "bad-version")

    def with_fields(**changes) -> str:
        return url(replace(c, **changes))

    inv(
        "field-altered",
        "compact-kid-of-retired-key",
        "key id of another trusted key",
        with_fields(kid=KID["retired"]),
        "bad-signature",
    )
    inv(
        "field-altered",
        "compact-kid-unknown",
        "key id no trusted key has",
        with_fields(kid=KID["unknown"]),
        "unknown-key",
    )
    inv(
        "field-altered",
        "compact-mark-traceability",
        "mark changed to another valid mark",
        with_fields(mark=TR),
        "bad-signature",
    )
    for v in (0, 4, 255):
        inv(
            "field-altered",
            f"compact-mark-{v}",
            f"mark byte {v} (no such mark)",
            with_byte(3, v),
            "malformed",
            "bad-mark",
        )
    inv("field-altered", "compact-batch-plus-1", "batch number + 1", with_fields(batch=c.batch + 1), "bad-signature")
    inv("field-altered", "compact-batch-max", "batch number 2^32-1", with_fields(batch=2**32 - 1), "bad-signature")
    inv(
        "field-altered",
        "compact-batch-0",
        "batch number 0",
        compact_url_from_raw(raw[:4] + bytes(4) + raw[8:]),
        "malformed",
        "bad-batch",
    )
    inv("field-altered", "compact-serial-plus-1", "serial + 1", with_fields(serial=c.serial + 1), "bad-signature")
    inv("field-altered", "compact-serial-0", "serial 0", with_fields(serial=0), "bad-signature")
    for serial, label in ((10**16, "1e16"), (2**56 - 1, "max")):
        inv(
            "field-altered",
            f"compact-serial-{label}",
            "serial beyond 16 digits",
            compact_url_from_raw(raw[:8] + serial.to_bytes(7, "big") + raw[15:]),
            "malformed",
            "bad-serial",
        )
    inv(
        "field-altered",
        "compact-signature-zero",
        "signature all zero bytes",
        with_fields(signature=bytes(64)),
        "bad-signature",
    )
    inv(
        "field-altered",
        "compact-signature-ff",
        "signature all 0xff bytes",
        with_fields(signature=b"\xff" * 64),
        "bad-signature",
    )

    # every field altered, GS1
    other_gtin = "09506000134369"
    assert codes.validate_gtin(other_gtin)
    inv(
        "field-altered",
        "gs1-gtin-other-valid",
        "another GTIN with a valid check digit",
        gs1_url(gs1_path(gtin=other_gtin)),
        "bad-signature",
    )
    inv(
        "field-altered",
        "gs1-gtin-check-digit",
        "GTIN check digit wrong",
        gs1_url(gs1_path(gtin=g.gtin[:13] + "3")),
        "malformed",
        "bad-gtin",
    )
    inv(
        "field-altered",
        "gs1-gtin-13-digits",
        "GTIN-13 instead of GTIN-14",
        gs1_url(gs1_path(gtin=g.gtin[1:])),
        "malformed",
        "bad-gtin",
    )
    inv(
        "field-altered",
        "gs1-gtin-letter",
        "a letter in the GTIN",
        gs1_url(gs1_path(gtin=g.gtin[:5] + "A" + g.gtin[6:])),
        "malformed",
        "bad-gtin",
    )
    inv("field-altered", "gs1-lot-other", "another lot", gs1_url(gs1_path(lot="L2026-11.B")), "bad-signature")
    inv(
        "field-altered",
        "gs1-lot-lowercase",
        "lot in lower case (lots are case-sensitive)",
        gs1_url(gs1_path(lot=g.lot.lower())),
        "bad-signature",
    )
    inv(
        "field-altered",
        "gs1-lot-bad-char",
        "a '*' in the lot",
        gs1_url(gs1_path(lot="L2026*11")),
        "malformed",
        "bad-lot",
    )
    inv(
        "field-altered",
        "gs1-lot-percent",
        "a percent-encoded lot",
        gs1_url(gs1_path(lot="L2026%2D11.A")),
        "malformed",
        "bad-lot",
    )
    inv("field-altered", "gs1-lot-empty", "an empty lot", gs1_url(gs1_path(lot="")), "malformed", "bad-lot")
    inv(
        "field-altered",
        "gs1-serial-other",
        "another serial",
        gs1_url(gs1_path(serial=f"{g.serial + 1:016d}")),
        "bad-signature",
    )
    inv(
        "field-altered",
        "gs1-serial-15-digits",
        "a 15-digit serial",
        gs1_url(gs1_path(serial=f"{g.serial:016d}"[1:])),
        "malformed",
        "bad-serial",
    )
    inv(
        "field-altered",
        "gs1-serial-letters",
        "letters in the serial",
        gs1_url(gs1_path(serial="ABCDEFGHIJKLMNOP")),
        "malformed",
        "bad-serial",
    )
    inv("field-altered", "gs1-expiry-later", "a later expiry", gs1_url(**{"17": "281231"}), "bad-signature")
    inv("field-altered", "gs1-expiry-month-13", "month 13", gs1_url(**{"17": "271331"}), "malformed", "bad-expiry")
    inv("field-altered", "gs1-expiry-feb-30", "30 February", gs1_url(**{"17": "270230"}), "malformed", "bad-expiry")
    inv(
        "field-altered",
        "gs1-expiry-5-digits",
        "a 5-digit expiry",
        gs1_url(**{"17": "27123"}),
        "malformed",
        "bad-expiry",
    )
    inv(
        "field-altered",
        "gs1-mark-other",
        "mark changed to another valid mark",
        gs1_url(**{"91": "SQ"}),
        "bad-signature",
    )
    inv("field-altered", "gs1-mark-unknown", "no such mark", gs1_url(**{"91": "XX"}), "malformed", "bad-mark")
    inv(
        "field-altered",
        "gs1-mark-lowercase",
        "mark code in lower case",
        gs1_url(**{"91": "ac"}),
        "malformed",
        "bad-mark",
    )
    inv(
        "field-altered",
        "gs1-digsig-version-2",
        "DigSig version byte 2",
        gs1_url(**{"8030": b64url(b"\x02" + digsig[1:])}),
        "malformed",
        "bad-version",
    )
    inv(
        "field-altered",
        "gs1-digsig-kid-unknown",
        "DigSig key id of an unknown key",
        gs1_url(**{"8030": b64url(digsig[:1] + KID["unknown"] + digsig[3:])}),
        "unknown-key",
    )
    inv("field-altered", "gs1-duplicate-expiry", "AI 17 twice", gu + "&17=271231", "malformed", "duplicate-field")
    inv("field-altered", "gs1-missing-expiry", "AI 17 left out", gs1_url(**{"17": None}), "malformed", "missing-field")
    inv("field-altered", "gs1-missing-mark", "AI 91 left out", gs1_url(**{"91": None}), "malformed", "missing-field")
    inv(
        "field-altered",
        "gs1-attribute-without-value",
        "AI 17 without '='",
        gs1_url(**{"17": None}) + "&17",
        "malformed",
        "unknown-field",
    )
    inv(
        "field-altered",
        "gs1-path-order",
        "lot before GTIN",
        gs1_url(f"{GS1_BASE}10/{g.lot}/01/{g.gtin}/21/{g.serial:016d}"),
        "malformed",
        "bad-path",
    )
    inv(
        "field-altered",
        "gs1-no-lot",
        "GTIN and serial only",
        gs1_url(f"{GS1_BASE}01/{g.gtin}/21/{g.serial:016d}"),
        "malformed",
        "bad-path",
    )

    # bit flips in the compact payload: expected outcome follows from the field the bit lands in
    for index in list(range(15)) + [15, 16, 30, 47, 63, 78]:
        for bit in (0, 7):
            changed = bytearray(raw)
            changed[index] ^= 1 << bit
            text = compact_url_from_raw(bytes(changed))
            reason, detail = expected_compact_flip(bytes(changed), index)
            inv(
                "bit-flip",
                f"compact-byte-{index}-bit-{bit}",
                f"bit {bit} of payload byte {index} flipped",
                text,
                reason,
                detail,
            )
    for index in (0, 1, 2, 3, 34, 66):
        changed = bytearray(digsig)
        changed[index] ^= 1
        if index == 0:
            expected = ("malformed", "bad-version")
        elif index in (1, 2):
            expected = ("unknown-key", None) if bytes(changed[1:3]) not in KID.values() else ("bad-signature", None)
        else:
            expected = ("bad-signature", None)
        inv(
            "bit-flip",
            f"gs1-digsig-byte-{index}",
            f"bit 0 of DigSig byte {index} flipped",
            gs1_url(**{"8030": b64url(bytes(changed))}),
            *expected,
        )

    # signature copied from another code
    other = compact(serial=c.serial + 7)
    inv(
        "copied-signature",
        "compact-from-other-serial",
        "signature of another code of the same batch",
        url(replace(c, signature=other.signature)),
        "bad-signature",
    )
    other_g = gs1(serial=g.serial + 7)
    inv(
        "copied-signature",
        "gs1-from-other-serial",
        "signature of another GS1 code",
        gs1_url(**{"8030": b64url(b"\x01" + KID["active"] + other_g.signature)}),
        "bad-signature",
    )
    same_as_compact = compact(mark=AC, serial=g.serial)
    inv(
        "copied-signature",
        "gs1-from-compact-form",
        "a compact code's signature over the same serial and mark",
        gs1_url(**{"8030": b64url(b"\x01" + KID["active"] + same_as_compact.signature)}),
        "bad-signature",
    )
    inv(
        "copied-signature",
        "compact-from-gs1-form",
        "a GS1 code's signature in a compact payload",
        url(replace(compact(mark=AC, serial=g.serial), signature=g.signature)),
        "bad-signature",
    )
    inv(
        "copied-signature",
        "compact-other-key-signature",
        "same content signed by the retired key, kid unchanged",
        url(replace(c, signature=compact("retired").signature)),
        "bad-signature",
    )

    # keys
    inv(
        "key",
        "compact-unknown-key",
        "well-formed, signed by a key nobody trusts",
        url(compact("unknown")),
        "unknown-key",
    )
    inv("key", "gs1-unknown-key", "well-formed GS1, signed by an untrusted key", url(gs1("unknown")), "unknown-key")
    inv("key", "compact-revoked-key", "signed by a revoked key", url(compact("revoked")), "key-revoked")
    inv("key", "gs1-revoked-key", "GS1, signed by a revoked key", url(gs1("revoked")), "key-revoked")
    inv(
        "key",
        "compact-revoked-key-forged",
        "revoked key id, signature does not match",
        url(replace(compact("revoked"), serial=5)),
        "bad-signature",
    )

    # bad encodings and padding
    for pos, ch in ((10, "0"), (20, "1"), (30, "8"), (40, "9"), (50, "-"), (0, "_")):
        text = BASE + payload[:pos] + ch + payload[pos + 1 :]
        inv(
            "bad-encoding",
            f"compact-char-{ord(ch):02x}-at-{pos}",
            f"'{ch}' is not base32",
            text,
            "malformed",
            "bad-encoding",
        )
    last = payload[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    noncanon = alphabet[alphabet.index(last) | 1]
    assert noncanon != last
    inv(
        "bad-encoding",
        "compact-unused-bits-set",
        "last character sets bits beyond the 79 bytes",
        BASE + payload[:-1] + noncanon,
        "malformed",
        "bad-encoding",
    )
    inv("padding", "compact-padded", "base32 '=' padding", u + "=", "malformed", "bad-encoding")
    inv(
        "padding", "compact-padded-full", "padded to a multiple of 8 and cut", u[:-1] + "=", "malformed", "bad-encoding"
    )
    inv("padding", "gs1-digsig-padded", "base64 '==' padding on AI 8030", gu + "==", "malformed", "bad-encoding")
    inv(
        "bad-encoding",
        "gs1-digsig-standard-alphabet",
        "'+' from the standard base64 alphabet",
        gs1_url(**{"8030": attrs["8030"][:40] + "+" + attrs["8030"][41:]}),
        "malformed",
        "bad-encoding",
    )
    inv(
        "bad-encoding",
        "gs1-digsig-unused-bits",
        "last character sets unused bits",
        gs1_url(**{"8030": attrs["8030"][:-1] + noncanonical_b64(attrs["8030"][-1])}),
        "malformed",
        "bad-encoding",
    )
    inv("bad-encoding", "gs1-digsig-empty", "empty AI 8030", gs1_url(**{"8030": ""}), "malformed", "bad-encoding")

    # oversize
    inv(
        "oversize",
        "513-chars",
        "one character over the input limit",
        u + "A" * (513 - len(u)),
        "malformed",
        "bad-length",
        step="text",
    )
    inv(
        "oversize",
        "10kB",
        "10 kB of base32",
        {"prefix": BASE, "repeat": "A", "count": 10240},
        "malformed",
        "bad-length",
        step="text",
    )
    inv(
        "oversize",
        "1MB",
        "1 MB of base32",
        {"prefix": BASE, "repeat": "A", "count": 1048576},
        "malformed",
        "bad-length",
        step="text",
    )
    inv(
        "oversize",
        "1MB-whitespace",
        "1 MB of spaces around a valid code",
        {"prefix": u, "repeat": " ", "count": 1048576},
        "malformed",
        "bad-length",
        step="text",
    )

    # NUL and control characters
    for label, ch in (
        ("nul", "\x00"),
        ("soh", "\x01"),
        ("esc", "\x1b"),
        ("del", "\x7f"),
        ("vt", "\x0b"),
        ("ff", "\x0c"),
        ("nel", "\x85"),
        ("zwsp", "\u200b"),
        ("bom", "\ufeff"),
        ("tab", "\t"),
        ("space", " "),
        ("newline", "\n"),
    ):
        inv(
            "control",
            f"{label}-inside",
            f"{label} inside the payload",
            u[:60] + ch + u[60:],
            "malformed",
            "bad-character",
        )
    for label, ch in (("nul", "\x00"), ("bom", "\ufeff"), ("vt", "\x0b")):
        inv("control", f"{label}-before", f"{label} before the URL", ch + u, "malformed", "bad-character")
        inv("control", f"{label}-after", f"{label} after the URL", u + ch, "malformed", "bad-character")
    inv("control", "empty", "empty input", "", "malformed", "bad-length", step="text")
    inv("control", "whitespace-only", "only whitespace", " \t\r\n ", "malformed", "bad-length", step="text")
    inv("control", "fragment", "a fragment after the payload", u + "#x", "malformed", "bad-character")

    # Unicode look-alikes
    for label, (old, new) in {
        "cyrillic-a-in-payload": (payload[payload.index("A")] if "A" in payload else payload[0], "\u0410"),
        "fullwidth-letter-in-payload": (payload[5], chr(ord(payload[5]) + 0xFEE0)),
        "greek-omicron-in-payload": ("O" if "O" in payload else payload[7], "\u039f"),
    }.items():
        idx = payload.index(old)
        inv(
            "lookalike",
            label,
            f"{old!r} replaced by U+{ord(new):04X}",
            BASE + payload[:idx] + new + payload[idx + 1 :],
            "malformed",
            "bad-character",
        )
    inv(
        "lookalike",
        "cyrillic-e-in-host",
        "Cyrillic е in the host",
        u.replace("EXAMPLE", "\u0415XAMPLE"),
        "malformed",
        "bad-character",
    )
    inv(
        "lookalike",
        "fullwidth-colon",
        "fullwidth colon after the scheme",
        u.replace("HTTPS:", "HTTPS\uff1a"),
        "malformed",
        "bad-character",
    )
    inv(
        "lookalike",
        "fullwidth-scheme",
        "fullwidth HTTPS",
        "\uff28\uff34\uff34\uff30\uff33" + u[5:],
        "malformed",
        "bad-character",
    )
    inv(
        "lookalike",
        "fraction-slash",
        "U+2044 instead of '/'",
        u.replace("CN/", "CN\u2044"),
        "malformed",
        "bad-character",
    )
    inv(
        "lookalike",
        "fullwidth-gtin-digit",
        "fullwidth digit in the GTIN",
        gu.replace("/01/0", "/01/\uff10"),
        "malformed",
        "bad-character",
    )
    inv(
        "lookalike",
        "punycode-host",
        "an IDN host that looks alike",
        u.replace("VERIFY.EXAMPLE.CN", "XN--VERIFY-EXAMPLE-CN"),
        "malformed",
        "bad-prefix",
    )

    # wrong host or path
    hosts = {
        "other-host": "HTTPS://VERIFY.EXAMPLE.COM/",
        "subdomain": "HTTPS://X.VERIFY.EXAMPLE.CN/",
        "suffix-attack": "HTTPS://VERIFY.EXAMPLE.CN.EVIL.COM/",
        "userinfo": "HTTPS://VERIFY.EXAMPLE.CN@EVIL.COM/",
        "port": "HTTPS://VERIFY.EXAMPLE.CN:8443/",
        "no-host": "HTTPS:///",
        "path-prefix": "HTTPS://VERIFY.EXAMPLE.CN/X/",
        "double-slash": "HTTPS://VERIFY.EXAMPLE.CN//",
        "single-slash-scheme": "HTTPS:/VERIFY.EXAMPLE.CN/",
        "backslashes": "HTTPS:\\\\VERIFY.EXAMPLE.CN\\",
    }
    for label, prefix in hosts.items():
        detail = "bad-path" if label in ("path-prefix", "double-slash") else "bad-prefix"
        inv("wrong-host", f"compact-{label}", f"payload under {prefix}", prefix + payload, "malformed", detail)
    inv("wrong-host", "ftp-scheme", "ftp://", "FTP://VERIFY.EXAMPLE.CN/" + payload, "malformed", "bad-prefix")
    inv("wrong-host", "javascript-scheme", "javascript: URL", "javascript://alert(1)", "malformed", "bad-prefix")
    inv(
        "wrong-host",
        "gs1-other-host",
        "GS1 URL on another host",
        gu.replace(HOST_LOWER, "verify.example.com"),
        "malformed",
        "bad-prefix",
    )
    inv(
        "wrong-host",
        "gs1-path-prefix",
        "GS1 URL under an extra path",
        gu.replace(HOST_LOWER + "/", HOST_LOWER + "/x/"),
        "malformed",
        "bad-path",
    )


def noncanonical_b64(ch: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # 67 bytes = 536 bits = 89 full characters + 2 bits: the last character keeps 4 unused bits
    return alphabet[alphabet.index(ch) | 1]


def expected_compact_flip(changed: bytes, index: int) -> tuple[str, str | None]:
    """What a flipped payload byte means, from the layout in docs/code-format.md."""
    if index == 0:
        return ("malformed", "bad-version")
    if index in (1, 2):
        return ("unknown-key", None) if changed[1:3] not in KID.values() else ("bad-signature", None)
    if index == 3:
        return ("bad-signature", None) if changed[3] in (1, 2, 3) else ("malformed", "bad-mark")
    if 4 <= index <= 7:
        return ("malformed", "bad-batch") if changed[4:8] == bytes(4) else ("bad-signature", None)
    if 8 <= index <= 14:
        return (
            ("malformed", "bad-serial") if int.from_bytes(changed[8:15], "big") >= 10**16 else ("bad-signature", None)
        )
    return ("bad-signature", None)


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / "tests" / "vectors"
    for sub in ("valid", "invalid"):
        shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    write_keys(out)
    w = Writer(out)
    write_valid(w)
    write_invalid(w)
    valid = len(list((out / "valid").glob("*.json")))
    invalid = len(list((out / "invalid").glob("*.json")))
    print(f"wrote {valid} valid and {invalid} invalid vectors to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
