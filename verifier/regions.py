"""China's provincial-level divisions (GB/T 2260): codes, names, the places a geo header names, borders.

Pure: the data files under verifier/data/regions/ are read once, on first use; nothing else is read.
"""

from __future__ import annotations

import csv
import functools
import io
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

KINDS = ("province", "municipality", "autonomous-region", "SAR", "Taiwan")
LANGUAGES = ("zh", "en")

_CODE_RE = re.compile(r"[0-9]{6}")
# GB/T 2260's city part: 01-20 and 51-70 prefecture-level cities, 21-50 prefectures (地区, 自治州, 盟),
# 90 the county-level divisions a province administers directly; 00 the province itself.
_CITY_PARTS = frozenset(f"{n:02d}" for n in [*range(1, 71), 90])
# The ISO 3166-2:CN code (CN-SC), the bare letters a proxy's subdivision header gives (SC), and the
# numeric form ISO used before 2017 (CN-51).
_ISO_RE = re.compile(r"(?:CN[-_ ]?)?([A-Z]{2})|CN[-_ ]?([0-9]{2})")
_IGNORED = str.maketrans("", "", " -_.'’")  # "Nei Mongol", "Hong Kong S.A.R.", "Xi'an"-style apostrophes

# What a name may carry after it: the kind of division in Chinese, English or pinyin, and for three
# autonomous regions the people they are named after (广西壮族自治区, "Xinjiang Uygur").
_SUFFIXES = (
    "省",
    "市",
    "自治区",
    "自治區",
    "特别行政区",
    "特別行政區",
    "sheng",
    "province",
    "shi",
    "municipality",
    "city",
    "zizhiqu",
    "autonomousregion",
    "region",
    "ar",
    "tebiexingzhengqu",
    "specialadministrativeregion",
    "sar",
)
_PEOPLES = {
    "450000": ("壮族", "壯族", "zhuang", "zhuangzu"),
    "640000": ("回族", "hui", "huizu"),
    "650000": ("维吾尔", "維吾爾", "uygur", "uyghur", "uighur", "weiwuer", "weiwuerzu"),
}
_COUNTRY_PREFIXES = ("中国", "中國", "中华人民共和国", "中華人民共和國", "china", "prc")
_NO_CITY_CODES = frozenset({"71", "81", "82"})  # GB/T 2260 lists Taiwan, Hong Kong and Macao as a whole only


@dataclass(frozen=True)
class Province:
    """A provincial-level division: its GB/T 2260 code (510000), names and kind."""

    code: str
    name_zh: str
    short_zh: str
    name_en: str
    kind: str


@dataclass(frozen=True)
class _Data:
    by_code: dict[str, Province]
    by_iso: dict[str, str]  # "SC" and "51" -> "510000"
    by_name: dict[str, str]  # a normalised name -> code
    borders: frozenset[frozenset[str]]


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files("verifier").joinpath("data", "regions", name).read_text("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def _normalise(text: str) -> str:
    # NFKC folds full-width letters and digits (ＳＣ) to ASCII; case and separators carry nothing.
    return unicodedata.normalize("NFKC", text).casefold().translate(_IGNORED)


def _name_keys(code: str, bases: Iterable[str]) -> set[str]:
    peoples = ("", *_PEOPLES.get(code, ()))
    return {_normalise(base) + people + suffix for base in bases for people in peoples for suffix in ("", *_SUFFIXES)}


@functools.cache
def _data() -> _Data:
    """The three data files, checked against each other (a mistyped code is refused, not loaded)."""
    by_code: dict[str, Province] = {}
    by_iso: dict[str, str] = {}
    bases: dict[str, list[str]] = {}
    for row in _rows("gbt2260-provinces.csv"):
        code = row["code"]
        if not _CODE_RE.fullmatch(code) or not code.endswith("0000") or code in by_code:
            raise ValueError(f"gbt2260-provinces.csv: bad or repeated code {code!r}")
        if row["kind"] not in KINDS:
            raise ValueError(f"gbt2260-provinces.csv: {code} has an unknown kind {row['kind']!r}")
        by_code[code] = Province(code, row["name_zh"], row["short_zh"], row["name_en"], row["kind"])
        by_iso[row["iso_3166_2"].removeprefix("CN-")] = code
        by_iso[code[:2]] = code
        bases[code] = [row["name_zh"], row["short_zh"], row["name_en"]]
    for row in _rows("gbt2260-aliases.csv"):
        if row["code"] not in bases:
            raise ValueError(f"gbt2260-aliases.csv: unknown code {row['code']!r}")
        bases[row["code"]].append(row["alias"])

    by_name: dict[str, str] = {}
    for code, names in bases.items():
        for key in _name_keys(code, names):
            if by_name.setdefault(key, code) != code:
                raise ValueError(f"regions: {key!r} would name both {by_name[key]} and {code}")

    borders: set[frozenset[str]] = set()
    for row in _rows("gbt2260-borders.csv"):
        a, b = row["code_a"], row["code_b"]
        if a not in by_code or b not in by_code or a == b:
            raise ValueError(f"gbt2260-borders.csv: bad pair {a}, {b}")
        if (by_code[a].short_zh, by_code[b].short_zh) != (row["short_zh_a"], row["short_zh_b"]):
            raise ValueError(f"gbt2260-borders.csv: {a}, {b} are not {row['short_zh_a']}, {row['short_zh_b']}")
        borders.add(frozenset((a, b)))
    return _Data(by_code, by_iso, by_name, frozenset(borders))


def parse_region_code(text: str) -> str:
    """A GB/T 2260 code (province, city or county level) checked for its structure, or ValueError."""
    code = text.strip()
    if not _CODE_RE.fullmatch(code):
        raise ValueError(f"a region code is 6 digits (GB/T 2260, e.g. 510100), not {text!r}")
    prefix, city, county = code[:2], code[2:4], code[4:]
    if prefix + "0000" not in _data().by_code:
        raise ValueError(f"{code}: {prefix} is not a province's code in GB/T 2260")
    if city == "00":
        if county != "00":
            raise ValueError(f"{code}: a county code needs its city part (digits 3-4 are 00)")
        return code
    if prefix in _NO_CITY_CODES:
        raise ValueError(f"{code}: GB/T 2260 has no city or county codes under {prefix}0000")
    if city not in _CITY_PARTS:
        raise ValueError(f"{code}: {city} is not a city part in GB/T 2260 (01-70 or 90)")
    return code


def province(code: str) -> Province:
    """The province of any valid GB/T 2260 code (510100 is in Sichuan), or ValueError."""
    return _data().by_code[parse_region_code(code)[:2] + "0000"]


def provinces() -> tuple[Province, ...]:
    """The 34 provincial-level divisions in code order."""
    return tuple(sorted(_data().by_code.values(), key=lambda p: p.code))


def province_of_place(text: str | None) -> Province | None:
    """The province a geo header's region names ("四川省", "Sichuan Sheng", "CN-SC", "510100"), or None."""
    if text is None:
        return None
    data = _data()
    stripped = unicodedata.normalize("NFKC", text).strip()
    iso = _ISO_RE.fullmatch(stripped.upper())
    if iso:
        code = data.by_iso.get(iso.group(1) or iso.group(2))
        return data.by_code[code] if code else None
    if _CODE_RE.fullmatch(stripped):
        try:
            return province(stripped)
        except ValueError:
            return None
    key = _normalise(stripped)
    for prefix in _COUNTRY_PREFIXES:  # "中国四川省", "China Sichuan"
        if key.startswith(prefix) and key != prefix:
            key = key.removeprefix(prefix)
            break
    code = data.by_name.get(key)
    return data.by_code[code] if code else None


def neighbours(a: str, b: str) -> bool:
    """Whether two regions' provinces share a land border (codes at any level; a province is not its own)."""
    return frozenset((province(a).code, province(b).code)) in _data().borders


def display(code: str, lang: str) -> str:
    """The province's short name in `lang` ("zh" 四川, "en" Sichuan); a city code shows its province."""
    found = province(code)
    primary = lang.split("-")[0].casefold()
    if primary == "zh":
        return found.short_zh
    if primary == "en":
        return found.name_en
    raise ValueError(f"no province names in {lang!r}: {', '.join(LANGUAGES)}")


def provinces_of(regions: str | None) -> list[Province]:
    """The distinct provinces of a space-separated list of region codes (a dealer's sales regions), in order."""
    found: dict[str, Province] = {}
    for code in (regions or "").split():
        try:
            p = province(code)
        except (KeyError, ValueError):
            continue
        found.setdefault(p.code, p)
    return list(found.values())
