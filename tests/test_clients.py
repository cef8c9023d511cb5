"""What a scan keeps of its client: the region headers a proxy sends are validated before storing."""

from __future__ import annotations

import pytest

from verifier import clients


@pytest.mark.parametrize(
    "value, expected",
    [
        pytest.param("CN", "CN", id="upper"),
        pytest.param("cn", "CN", id="lower-is-upper-cased"),
        pytest.param(" de ", "DE", id="surrounding-spaces"),
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param("CHN", None, id="three-letters"),
        pytest.param("C", None, id="one-letter"),
        pytest.param("C1", None, id="digit"),
        pytest.param("ÇN", None, id="non-ascii-letter"),
        pytest.param("ＣＮ", None, id="full-width"),
        pytest.param("C\nN", None, id="line-break"),
        pytest.param("=1", None, id="formula"),
    ],
)
def test_clean_country(value, expected):
    assert clients.clean_country(value) == expected


@pytest.mark.parametrize(
    "value, expected",
    [
        pytest.param("Guangdong", "Guangdong", id="latin"),
        pytest.param("广东省", "广东省", id="cjk"),
        pytest.param("St. John's", "St. John's", id="dot-apostrophe-space"),
        pytest.param("Baden-Württemberg", "Baden-Württemberg", id="hyphen-and-umlaut"),
        pytest.param("Cu\u0300 Chi", "C\u00f9 Chi", id="combining-accent-is-composed"),
        pytest.param("กรุงเทพมหานคร", "กรุงเทพมหานคร", id="thai-vowel-marks"),
        pytest.param("District 9", "District 9", id="digits"),
        pytest.param("  Shenzhen  ", "Shenzhen", id="surrounding-spaces"),
        pytest.param("x" * 64, "x" * 64, id="64-characters"),
        pytest.param("x" * 65, None, id="65-characters"),
        pytest.param(None, None, id="absent"),
        pytest.param("   ", None, id="blank"),
        pytest.param("=HYPERLINK(1)", None, id="formula-equals"),
        pytest.param("+cmd", None, id="formula-plus"),
        pytest.param("-Shenzhen", None, id="formula-minus"),
        pytest.param("@SUM", None, id="formula-at"),
        pytest.param("Shen\u200bzhen", None, id="zero-width-space-format"),
        pytest.param("Shen\u202ezhen", None, id="bidi-override-format"),
        pytest.param("Shen\tzhen", None, id="tab-control"),
        pytest.param("Shen\x00zhen", None, id="nul-control"),
        pytest.param("a,b", None, id="comma"),
        pytest.param("<b>", None, id="markup"),
        pytest.param("\u0300x", None, id="starts-with-a-mark"),
        pytest.param("深圳\u3000市", None, id="ideographic-space"),
    ],
)
def test_clean_place(value, expected):
    assert clients.clean_place(value) == expected


def test_resolver_ignores_headers_unless_trusted():
    headers = {"X-Geo-Country": "CN", "X-Geo-Region": "Guangdong", "X-Geo-City": "Shenzhen"}
    assert clients.RegionResolver(trust_headers=False).resolve(None, headers) == clients.Region()
    assert clients.RegionResolver(trust_headers=True).resolve(None, headers) == clients.Region(
        "CN", "Guangdong", "Shenzhen"
    )
    wire = {"X-Geo-City": "深圳".encode().decode("latin-1")}  # what a WSGI server hands over for UTF-8 bytes
    assert clients.RegionResolver(trust_headers=True).resolve(None, wire).city == "深圳"
