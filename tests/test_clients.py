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


def _truncate_ip_reference(ip: str) -> str | None:
    """truncate_ip as it was written before its IPv4 fast path: `ipaddress` alone."""
    import ipaddress

    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def _rate_network_reference(ip: str) -> str:
    import ipaddress

    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6 and not address.ipv4_mapped:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address.ipv4_mapped or address) if address.version == 6 else str(address)


def test_ip_fast_path_answers_as_ipaddress_does():
    """The IPv4 fast path of truncate_ip and rate_network gives `ipaddress`'s answer for every input."""
    import random

    rng = random.Random(15)
    octets = ["0", "00", "01", "1", "9", "10", "99", "100", "199", "200", "249", "250", "255", "256", "300", "0255"]
    octets += ["", " 1", "1 ", "+1", "-1", "١", "１", "1e1", "0x1", "999", "1000"]
    samples = ["", ".", "...", "1.2.3", "1.2.3.4.5", "1.2.3.4.", ".1.2.3.4", "1.2.3.4\n", "::ffff:198.51.100.7"]
    samples += ["203.0.113.9", "2001:db8:1234:5678::9", "::1", "::", "fe80::1%eth0", "1.2.3.4/24", "junk"]
    samples += [".".join(rng.choice(octets) for _ in range(4)) for _ in range(5000)]
    samples += [".".join(str(rng.randrange(256)) for _ in range(4)) for _ in range(5000)]
    for ip in samples:
        assert clients.truncate_ip(ip) == _truncate_ip_reference(ip), ip
        assert clients.rate_network(ip) == _rate_network_reference(ip), ip
