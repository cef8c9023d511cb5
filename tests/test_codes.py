"""The code format: round trips, QR size, GS1 parsing by a third party, the printed code."""

from __future__ import annotations

import datetime as dt
import itertools

import biip
import pytest
import qrcode
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from verifier import codes, keys

BASE = "HTTPS://VERIFY.EXAMPLE.CN/"
MARK = codes.mark_by_slug("stable-qualified")
_PRIVATE = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))  # for hypothesis, which cannot take fixtures


def trusted(kid, private, status="active"):
    return {kid: codes.TrustedKey(kid, private.public_key(), status)}


def compact_code(kid, private, serial=1234567890123456, batch=42, mark=MARK):
    return codes.sign(codes.Code(codes.FORM_COMPACT, kid, mark, serial, batch=batch), private)


def gs1_code(kid, private, serial=1234567890123456, gtin="09506000134352", lot="LOT-7", expiry="281130"):
    code = codes.Code(codes.FORM_GS1, kid, MARK, serial, gtin=gtin, lot=lot, expiry=expiry)
    return codes.sign(code, private)


def test_compact_url_is_upper_case_and_fits_qr_version_6_m(keypair):
    kid, private = keypair
    url = codes.encode_url(compact_code(kid, private), BASE)
    assert url == url.upper() and len(url) == len(BASE) + 127 == 153
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M)
    qr.add_data(url)
    qr.make(fit=True)
    assert qr.version == 6
    assert [seg.mode for seg in qr.data_list] == [qrcode.util.MODE_ALPHA_NUM]


def test_compact_round_trip(keypair):
    kid, private = keypair
    code = compact_code(kid, private)
    result = codes.verify(codes.encode_url(code, BASE), trusted(kid, private), [BASE])
    assert result.genuine and result.code == code


def test_gs1_url_parses_with_biip_to_the_same_fields(keypair):
    kid, private = keypair
    code = gs1_code(kid, private)
    url = codes.encode_url(code, BASE)
    assert url.startswith("https://verify.example.cn/01/09506000134352/10/LOT-7/21/1234567890123456?17=281130")
    parsed = biip.parse(url).gs1_digital_link_uri
    values = {e.ai.ai: e.value for e in parsed.element_strings}
    assert values["01"] == "09506000134352" and values["10"] == "LOT-7" and values["21"] == "1234567890123456"
    assert [e.date for e in parsed.element_strings if e.ai.ai == "17"] == [dt.date(2028, 11, 30)]
    assert values["91"] == "SQ" and len(values["8030"]) == 90
    assert codes.verify(url, trusted(kid, private), [BASE]).genuine


@settings(max_examples=60, deadline=None)
@given(
    serial=st.integers(0, codes.SERIAL_LIMIT - 1),
    batch=st.integers(1, codes.BATCH_LIMIT - 1),
    mark=st.sampled_from(codes.MARKS),
)
def test_compact_round_trip_property(serial, batch, mark):
    kid, private = b"\x01\x02", _PRIVATE
    code = compact_code(kid, private, serial, batch, mark)
    for text in (codes.encode_url(code, BASE), codes.encode_url(code, BASE).lower()):
        assert codes.verify(text, trusted(kid, private), [BASE]).code == code


@settings(max_examples=60, deadline=None)
@given(
    serial=st.integers(0, codes.SERIAL_LIMIT - 1),
    lot=st.from_regex(r"[0-9A-Za-z._-]{1,20}", fullmatch=True),
    gtin13=st.from_regex(r"[0-9]{13}", fullmatch=True),
    expiry=st.dates(dt.date(2000, 1, 1), dt.date(2099, 12, 31)),
)
def test_gs1_round_trip_property(serial, lot, gtin13, expiry):
    gtin = gtin13 + str(codes.gtin_check_digit(gtin13))
    code = gs1_code(b"\x01\x02", _PRIVATE, serial, gtin, lot, codes.expiry_text(expiry))
    assert codes.verify(codes.encode_url(code, BASE), trusted(b"\x01\x02", _PRIVATE), [BASE]).code == code


def test_base_url_with_a_path_and_several_accepted_bases(keypair):
    kid, private = keypair
    url = codes.encode_url(compact_code(kid, private), "https://example.cn/v")
    assert url.startswith("HTTPS://EXAMPLE.CN/V/")
    assert codes.verify(url, trusted(kid, private), [BASE, "https://example.cn/v/"]).genuine
    assert codes.verify(url, trusted(kid, private), [BASE]).detail == "bad-prefix"


@pytest.mark.parametrize("bad_base", ["ftp://x.cn/", "https://", "x.cn", "https://x.cn/a b/"])
def test_bad_base_url_is_a_value_error(bad_base):
    with pytest.raises(ValueError, match="base URL"):
        codes.normalize_base_url(bad_base)


def test_retired_key_verifies_and_revoked_key_is_reported(keypair):
    kid, private = keypair
    url = codes.encode_url(compact_code(kid, private), BASE)
    retired = codes.verify(url, trusted(kid, private, "retired"), [BASE])
    assert retired.genuine and retired.key_status == "retired"
    revoked = codes.verify(url, trusted(kid, private, "revoked"), [BASE])
    assert (revoked.reason, revoked.key_status) == ("key-revoked", "revoked")


def test_the_signature_is_domain_separated(keypair):
    kid, private = keypair
    message = codes.signed_message(compact_code(kid, private))
    assert message.startswith(b"verifier.code\x00\x01C" + kid)


@pytest.mark.parametrize(
    "bad",
    [
        dict(batch=0),
        dict(batch=2**32),
        dict(serial=-1),
        dict(serial=10**16),
    ],
)
def test_signing_refuses_out_of_range_content(keypair, bad):
    kid, private = keypair
    fields = {"serial": 1, "batch": 1, **bad}
    with pytest.raises(codes.InvalidCode):
        codes.sign(codes.Code(codes.FORM_COMPACT, kid, MARK, **fields), private)


@pytest.mark.parametrize(
    "gtin, ok",
    [("09506000134352", True), ("09506000134353", False), ("9506000134352", False), ("0950600013435X", False)],
)
def test_gtin_check_digit(gtin, ok):
    if ok:
        assert codes.validate_gtin(gtin) == gtin
    else:
        with pytest.raises(codes.InvalidCode) as err:
            codes.validate_gtin(gtin)
        assert err.value.detail == "bad-gtin"


def test_normalize_gtin_pads_gtin_13():
    assert codes.normalize_gtin("9506000134352") == "09506000134352"


def test_human_code_groups_and_round_trips():
    text = codes.human_code(3141592653589793)
    assert text.replace(" ", "")[:16] == "3141592653589793" and [len(g) for g in text.split()] == [4, 4, 4, 5]
    assert codes.parse_human_code(text) == 3141592653589793
    assert codes.parse_human_code(text.replace(" ", "-")) == 3141592653589793


@given(st.integers(0, codes.SERIAL_LIMIT - 1))
def test_check_digit_catches_every_single_digit_error(serial):
    digits = codes.human_code(serial).replace(" ", "")
    for pos, wrong in itertools.product(range(len(digits)), "0123456789"):
        if wrong != digits[pos]:
            typo = digits[:pos] + wrong + digits[pos + 1 :]
            with pytest.raises(codes.InvalidCode, match="check digit"):
                codes.parse_human_code(typo)


@given(st.integers(0, codes.SERIAL_LIMIT - 1))
def test_check_digit_catches_every_adjacent_transposition(serial):
    digits = codes.human_code(serial).replace(" ", "")
    for pos in range(len(digits) - 1):
        if digits[pos] != digits[pos + 1]:
            swapped = digits[:pos] + digits[pos + 1] + digits[pos] + digits[pos + 2 :]
            with pytest.raises(codes.InvalidCode, match="check digit"):
                codes.parse_human_code(swapped)


@pytest.mark.parametrize("typed", ["", "1234", "3141 5926 5358 9793 21", "abcd efgh ijkl mnopq"])
def test_human_code_of_the_wrong_shape_is_bad_length(typed):
    with pytest.raises(codes.InvalidCode) as err:
        codes.parse_human_code(typed)
    assert err.value.detail == "bad-length"


def test_verify_never_raises_on_non_text(keypair):
    kid, private = keypair
    assert codes.verify(None, trusted(kid, private), [BASE]).reason == "malformed"  # type: ignore[arg-type]


def test_unknown_mark_slug_lists_the_known_ones():
    with pytest.raises(ValueError, match="stable-qualified, traceability, anti-counterfeit"):
        codes.mark_by_slug("gold")


def test_key_ids_come_from_the_rfc7638_thumbprint(keypair):
    kid, private = keypair
    assert keys.kid_for(keys.raw_public(private)) == keys.thumbprint(keys.raw_public(private))[:2] == kid


def test_batch_signer_makes_the_same_urls_as_sign_and_encode(keypair):
    kid, private = keypair
    signer = codes.compact_signer(private, kid, MARK, 42, BASE.lower())
    for serial in (0, 1, 1234567890123456, codes.SERIAL_LIMIT - 1):
        assert signer(serial) == codes.encode_url(compact_code(kid, private, serial=serial, batch=42), BASE)
    with pytest.raises(codes.InvalidCode):
        signer(codes.SERIAL_LIMIT)


def test_gs1_batch_signer_makes_the_same_urls_as_sign_and_encode(keypair):
    kid, private = keypair
    signer = codes.gs1_signer(private, kid, MARK, "09506000134352", "LOT-7", "281130", "https://VERIFY.example.cn")
    for serial in (0, 99, codes.SERIAL_LIMIT - 1):
        assert signer(serial) == codes.encode_url(gs1_code(kid, private, serial=serial), BASE)
