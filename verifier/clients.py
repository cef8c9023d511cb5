"""What a scan records about the person scanning: as little as the anomaly rules need.

An IP address is personal data (GDPR; PIPL treats whereabouts as sensitive). A scan keeps a
truncated IP (/24 for IPv4, /48 for IPv6), a keyed hash of the full IP (to correlate abuse
without storing the address), a coarse region, a coarse user agent and a keyed hash of the
browser session. Never the full IP, never a position.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Region:
    country: str | None = None  # ISO 3166-1 alpha-2
    region: str | None = None  # province / state
    city: str | None = None


@dataclass(frozen=True)
class Client:
    """The minimised description of one scanning client."""

    ip_prefix: str | None
    ip_hash: str | None
    region: Region
    user_agent: str
    session_hash: str | None
    rate_key: str  # what rate limits count: the hash of the IPv4 address or of the IPv6 /64


def keyed_hash(key: bytes, purpose: str, value: str) -> str:
    """A short HMAC-SHA256 of `value`, separated by purpose, for correlation without the value."""
    return hmac.digest(key, f"{purpose}\x00{value}".encode(), "sha256").hex()[:16]  # one-shot: in C


# An IPv4 address exactly as `ipaddress` accepts one: four decimal octets 0-255, no leading zeros.
# The common case skips building address objects (the answers are the same: tests/test_clients.py).
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_RE = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")


def truncate_ip(ip: str) -> str | None:
    """The /24 (IPv4) or /48 (IPv6) network of an address, or None if it is not one."""
    if _IPV4_RE.fullmatch(ip):
        return ip[: ip.rindex(".")] + ".0/24"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def rate_network(ip: str) -> str:
    """What one client is, for rate limits: an IPv4 address, or an IPv6 /64 (one household)."""
    if _IPV4_RE.fullmatch(ip):
        return ip
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6 and not address.ipv4_mapped:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address.ipv4_mapped or address) if address.version == 6 else str(address)


_APPS = (
    ("MicroMessenger", "WeChat"),
    ("AlipayClient", "Alipay"),
    ("QQ/", "QQ"),
    ("DingTalk", "DingTalk"),
    ("Weibo", "Weibo"),
    ("HeadlessChrome", "Headless"),
    ("Edg/", "Edge"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
    ("curl/", "curl"),
    ("python", "script"),
)
_SYSTEMS = (
    ("iPhone", "iOS"),
    ("iPad", "iOS"),
    ("Android", "Android"),
    ("HarmonyOS", "HarmonyOS"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("Linux", "Linux"),
)


@functools.lru_cache(maxsize=1024)
def coarse_user_agent(user_agent: str) -> str:
    """'WeChat/Android', 'Safari/iOS', 'other': the app and the system, no versions or models."""
    app = next((name for marker, name in _APPS if marker in user_agent), "other")
    system = next((name for marker, name in _SYSTEMS if marker in user_agent), "other")
    return f"{app}/{system}"


@functools.cache
def country_table() -> Any:  # a GeoIP2Fast (untyped package), or None without it
    """The process's one copy of the country table (read-only; loading it takes about 0.1 s)."""
    try:
        from geoip2fast import GeoIP2Fast
    except ImportError:  # the lookup works without regions; anomaly rules then lack them
        return None
    return GeoIP2Fast(geoip2fast_data_file="geoip2fast-ipv6.dat.gz", verbose=False)


class RegionResolver:
    """Country from the offline GeoLite2-derived table that the geoip2fast package ships;
    province and city from a trusted reverse proxy's headers when one is configured."""

    HEADERS = {"country": "X-Geo-Country", "region": "X-Geo-Region", "city": "X-Geo-City"}

    def __init__(self, trust_headers: bool = False):
        self.trust_headers = trust_headers

    def warm_up(self) -> None:
        """Load the table now (before workers fork, so they share it)."""
        country_table()

    def resolve(self, ip: str | None, headers: Mapping[str, str]) -> Region:
        """The client's region: the proxy's headers if trusted and valid, else the table's country."""
        country = region = city = None
        if self.trust_headers:
            country = clean_country(_header_text(headers.get(self.HEADERS["country"])))
            region = clean_place(_header_text(headers.get(self.HEADERS["region"])))
            city = clean_place(_header_text(headers.get(self.HEADERS["city"])))
        if country is None and ip and (table := country_table()) is not None:
            try:
                result = table.lookup(ip)
            except Exception:  # noqa: BLE001 - a malformed address is simply not located
                result = None
            code = getattr(result, "country_code", None)
            country = code if code and _COUNTRY_RE.fullmatch(code) else None
        return Region(country, region, city)


_COUNTRY_RE = re.compile(r"[A-Z]{2}")
PLACE_MAX = 64
_PLACE_CHARACTERS = frozenset("0123456789 -.'")
_FORMULA_STARTS = tuple("=+-@")  # a spreadsheet would run a cell starting so (scan exports are CSV)


def _header_text(value: str | None) -> str | None:
    """A header value as text: WSGI servers pass its bytes on as latin-1, proxies send UTF-8."""
    if value is None:
        return None
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:  # already decoded by the server
        return value
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def clean_country(value: str | None) -> str | None:
    """An ISO 3166-1 alpha-2 code: exactly two ASCII letters, upper-cased; anything else None."""
    if value is None:
        return None
    value = value.strip()
    return value.upper() if re.fullmatch(r"[A-Za-z]{2}", value) else None


def clean_place(value: str | None) -> str | None:
    """A province or city name, or None: letters of any script (with their combining marks),
    digits, spaces, '-', '.' and "'", at most 64 characters, not starting like a formula."""
    if value is None:
        return None
    value = unicodedata.normalize("NFC", value.strip())
    if not value or len(value) > PLACE_MAX or value.startswith(_FORMULA_STARTS) or _is_mark(value[0]):
        return None
    if not all(ch.isalpha() or ch in _PLACE_CHARACTERS or _is_mark(ch) for ch in value):
        return None
    return value


def _is_mark(ch: str) -> bool:
    return unicodedata.category(ch).startswith("M")  # a vowel sign or accent, part of the letter before it


def client_rate_key(key: bytes, ip: str) -> str:
    """What rate limits count for the client at `ip`: the keyed hash of its `rate_network`."""
    return keyed_hash(key, "rate", rate_network(ip))


def describe_client(
    ip: str | None,
    user_agent: str,
    session_id: str | None,
    headers: Mapping[str, str],
    key: bytes,
    resolver: RegionResolver,
    rate_key: str | None = None,
) -> Client:
    """The minimised record of a client, computed once at scan time (`rate_key`: the one the rate
    limit already computed for this `ip`, to save computing it again)."""
    ip = ip or ""
    return Client(
        ip_prefix=truncate_ip(ip),
        ip_hash=keyed_hash(key, "ip", ip) if ip else None,
        region=resolver.resolve(ip or None, headers),
        user_agent=coarse_user_agent(user_agent[:512]),
        session_hash=keyed_hash(key, "session", session_id) if session_id else None,
        rate_key=rate_key if rate_key is not None else client_rate_key(key, ip),
    )
