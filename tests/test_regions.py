"""China's provincial-level divisions: GB/T 2260 codes, the names a geo header gives, shared borders."""

from __future__ import annotations

import itertools

import pytest

from verifier import regions

# The 34 divisions as the Ministry of Civil Affairs lists them: code, short name, English name, kind.
EXPECTED = [
    ("110000", "北京", "Beijing", "municipality"),
    ("120000", "天津", "Tianjin", "municipality"),
    ("130000", "河北", "Hebei", "province"),
    ("140000", "山西", "Shanxi", "province"),
    ("150000", "内蒙古", "Inner Mongolia", "autonomous-region"),
    ("210000", "辽宁", "Liaoning", "province"),
    ("220000", "吉林", "Jilin", "province"),
    ("230000", "黑龙江", "Heilongjiang", "province"),
    ("310000", "上海", "Shanghai", "municipality"),
    ("320000", "江苏", "Jiangsu", "province"),
    ("330000", "浙江", "Zhejiang", "province"),
    ("340000", "安徽", "Anhui", "province"),
    ("350000", "福建", "Fujian", "province"),
    ("360000", "江西", "Jiangxi", "province"),
    ("370000", "山东", "Shandong", "province"),
    ("410000", "河南", "Henan", "province"),
    ("420000", "湖北", "Hubei", "province"),
    ("430000", "湖南", "Hunan", "province"),
    ("440000", "广东", "Guangdong", "province"),
    ("450000", "广西", "Guangxi", "autonomous-region"),
    ("460000", "海南", "Hainan", "province"),
    ("500000", "重庆", "Chongqing", "municipality"),
    ("510000", "四川", "Sichuan", "province"),
    ("520000", "贵州", "Guizhou", "province"),
    ("530000", "云南", "Yunnan", "province"),
    ("540000", "西藏", "Xizang", "autonomous-region"),
    ("610000", "陕西", "Shaanxi", "province"),
    ("620000", "甘肃", "Gansu", "province"),
    ("630000", "青海", "Qinghai", "province"),
    ("640000", "宁夏", "Ningxia", "autonomous-region"),
    ("650000", "新疆", "Xinjiang", "autonomous-region"),
    ("710000", "台湾", "Taiwan", "Taiwan"),
    ("810000", "香港", "Hong Kong", "SAR"),
    ("820000", "澳门", "Macao", "SAR"),
]
BY_CODE = {p.code: p for p in regions.provinces()}
CODE = {short: code for code, short, _, _ in EXPECTED}

# How many divisions each one borders on land (Inner Mongolia and Shaanxi eight, Sichuan seven, ...).
NEIGHBOUR_COUNTS = {
    "北京": 2, "天津": 2, "河北": 7, "山西": 4, "内蒙古": 8, "辽宁": 3, "吉林": 3, "黑龙江": 2,
    "上海": 2, "江苏": 4, "浙江": 5, "安徽": 6, "福建": 3, "江西": 6, "山东": 4, "河南": 6,
    "湖北": 6, "湖南": 6, "广东": 6, "广西": 4, "海南": 0, "重庆": 5, "四川": 7, "贵州": 5,
    "云南": 4, "西藏": 4, "陕西": 8, "甘肃": 6, "青海": 4, "宁夏": 3, "新疆": 3, "台湾": 0,
    "香港": 1, "澳门": 1,
}  # fmt: skip


def ids(rows):
    return [row[1] for row in rows]


# --- the data ----------------------------------------------------------------------------------


def test_the_34_divisions_in_code_order():
    assert [(p.code, p.short_zh, p.name_en, p.kind) for p in regions.provinces()] == EXPECTED


@pytest.mark.parametrize("province", regions.provinces(), ids=lambda p: p.short_zh)
def test_each_full_name_is_the_short_name_and_its_kind(province):
    suffix = province.name_zh.removeprefix(province.short_zh)
    expected = {
        "province": ("省",),
        "municipality": ("市",),
        "autonomous-region": ("自治区", "壮族自治区", "回族自治区", "维吾尔自治区"),
        "SAR": ("特别行政区",),
        "Taiwan": ("省",),
    }[province.kind]
    assert province.name_zh.startswith(province.short_zh) and suffix in expected


# --- codes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("code, short, name_en, kind", EXPECTED, ids=ids(EXPECTED))
def test_every_province_round_trips_by_code(code, short, name_en, kind):
    found = regions.province(code)
    assert found == BY_CODE[code]
    assert (found.code, found.short_zh, found.name_en, found.kind) == (code, short, name_en, kind)
    assert regions.parse_region_code(code) == code


@pytest.mark.parametrize(
    "code, short",
    [
        pytest.param("510100", "四川", id="prefecture-city-chengdu"),
        pytest.param("510104", "四川", id="district-jinjiang"),
        pytest.param("440300", "广东", id="shenzhen"),
        pytest.param("440305", "广东", id="shenzhen-nanshan"),
        pytest.param("110101", "北京", id="municipal-district-dongcheng"),
        pytest.param("500235", "重庆", id="municipal-county-yunyang"),
        pytest.param("513200", "四川", id="autonomous-prefecture-aba"),
        pytest.param("152900", "内蒙古", id="league-alxa"),
        pytest.param("469001", "海南", id="province-administered-county-city-wuzhishan"),
        pytest.param("659001", "新疆", id="region-administered-city-shihezi"),
        pytest.param(" 510100 ", "四川", id="surrounding-spaces"),
    ],
)
def test_a_city_or_county_code_is_in_its_province(code, short):
    assert regions.province(code).short_zh == short
    assert regions.parse_region_code(code) == code.strip()


@pytest.mark.parametrize(
    "text, message",
    [
        pytest.param("", "6 digits", id="empty"),
        pytest.param("51", "6 digits", id="two-digits"),
        pytest.param("5101000", "6 digits", id="seven-digits"),
        pytest.param("51010a", "6 digits", id="a-letter"),
        pytest.param("５１０１００", "6 digits", id="full-width-digits"),
        pytest.param("510 100", "6 digits", id="inner-space"),
        pytest.param("CN-SC", "6 digits", id="iso-code-is-not-a-region-code"),
        pytest.param("000000", "not a province", id="zero-province"),
        pytest.param("160000", "not a province", id="unassigned-province-16"),
        pytest.param("720000", "not a province", id="unassigned-province-72"),
        pytest.param("990000", "not a province", id="unassigned-province-99"),
        pytest.param("510001", "city part", id="county-without-city"),
        pytest.param("517100", "not a city part", id="city-part-71"),
        pytest.param("518900", "not a city part", id="city-part-89"),
        pytest.param("519900", "not a city part", id="city-part-99"),
        pytest.param("810100", "no city or county codes", id="hong-kong-has-no-city-codes"),
        pytest.param("710100", "no city or county codes", id="taiwan-has-no-city-codes"),
    ],
)
def test_a_malformed_or_unknown_code_is_refused_clearly(text, message):
    with pytest.raises(ValueError, match=message):
        regions.parse_region_code(text)
    with pytest.raises(ValueError, match=message):
        regions.province(text)


# --- the places a geo header names -------------------------------------------------------------


@pytest.mark.parametrize("code, short, name_en, kind", EXPECTED, ids=ids(EXPECTED))
def test_every_province_is_found_by_its_chinese_and_english_names(code, short, name_en, kind):
    found = BY_CODE[code]
    for text in (found.name_zh, found.short_zh, found.name_en, found.name_en.upper(), found.name_en.lower()):
        assert regions.province_of_place(text) == found, text


@pytest.mark.parametrize(
    "text, short",
    [
        pytest.param("Sichuan", "四川", id="english"),
        pytest.param("四川", "四川", id="short-chinese"),
        pytest.param("四川省", "四川", id="full-chinese"),
        pytest.param("Sichuan Sheng", "四川", id="pinyin-with-sheng"),
        pytest.param("SC", "四川", id="iso-letters"),
        pytest.param("CN-SC", "四川", id="iso-3166-2"),
        pytest.param("cn-sc", "四川", id="iso-3166-2-lower-case"),
        pytest.param("CN-51", "四川", id="iso-3166-2-before-2017"),
        pytest.param("510000", "四川", id="gbt2260-province-code"),
        pytest.param("510100", "四川", id="gbt2260-city-code"),
        pytest.param("中国四川省", "四川", id="country-first"),
        pytest.param("Szechwan", "四川", id="postal-romanisation"),
        pytest.param("Guangdong Province", "广东", id="english-with-province"),
        pytest.param("廣東省", "广东", id="traditional-characters"),
        pytest.param("Shanxi", "山西", id="shanxi-is-14"),
        pytest.param("Shaanxi", "陕西", id="shaanxi-is-61"),
        pytest.param("CN-SN", "陕西", id="iso-shaanxi"),
        pytest.param("CN-SX", "山西", id="iso-shanxi"),
        pytest.param("Anhui", "安徽", id="anhui-is-not-an-plus-hui"),
        pytest.param("Inner Mongolia", "内蒙古", id="inner-mongolia"),
        pytest.param("Nei Mongol", "内蒙古", id="nei-mongol"),
        pytest.param("Nei Mongol Zizhiqu", "内蒙古", id="iso-subdivision-name"),
        pytest.param("Inner Mongolia Autonomous Region", "内蒙古", id="autonomous-region"),
        pytest.param("內蒙古自治區", "内蒙古", id="traditional-autonomous-region"),
        pytest.param("Xinjiang Uygur", "新疆", id="xinjiang-uygur"),
        pytest.param("Xinjiang Uyghur Autonomous Region", "新疆", id="xinjiang-uyghur-autonomous-region"),
        pytest.param("新疆维吾尔自治区", "新疆", id="xinjiang-full-chinese"),
        pytest.param("Guangxi Zhuang Autonomous Region", "广西", id="guangxi-zhuang"),
        pytest.param("Guangxi Zhuangzu Zizhiqu", "广西", id="guangxi-pinyin"),
        pytest.param("Ningxia Hui", "宁夏", id="ningxia-hui"),
        pytest.param("Tibet", "西藏", id="tibet"),
        pytest.param("Xizang Zizhiqu", "西藏", id="xizang-zizhiqu"),
        pytest.param("Beijing Shi", "北京", id="beijing-shi"),
        pytest.param("Chongqing Municipality", "重庆", id="chongqing-municipality"),
        pytest.param("北京市", "北京", id="beijing-chinese"),
        pytest.param("HK", "香港", id="hk"),
        pytest.param("Hong Kong SAR", "香港", id="hong-kong-sar"),
        pytest.param("Hong Kong S.A.R.", "香港", id="hong-kong-s-a-r"),
        pytest.param("Hongkong", "香港", id="hongkong"),
        pytest.param("Xianggang Tebie Xingzhengqu", "香港", id="xianggang-iso-name"),
        pytest.param("Macau", "澳门", id="macau"),
        pytest.param("MO", "澳门", id="mo"),
        pytest.param("澳門特別行政區", "澳门", id="macao-traditional"),
        pytest.param("臺灣", "台湾", id="taiwan-traditional"),
        pytest.param("Taiwan Sheng", "台湾", id="taiwan-sheng"),
        pytest.param("  Sichuan  ", "四川", id="surrounding-spaces"),
        pytest.param("ＳＩＣＨＵＡＮ", "四川", id="full-width-letters"),
        pytest.param("sichuan-sheng", "四川", id="hyphenated"),
    ],
)
def test_a_place_names_its_province(text, short):
    found = regions.province_of_place(text)
    assert found is not None and found.short_zh == short


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(None, id="absent"),
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("Chengdu", id="a-city"),
        pytest.param("成都市", id="a-city-in-chinese"),
        pytest.param("中国", id="the-country"),
        pytest.param("China", id="the-country-in-english"),
        pytest.param("Mongolia", id="the-neighbouring-country"),
        pytest.param("Bavaria", id="another-countrys-region"),
        pytest.param("XX", id="unknown-letters"),
        pytest.param("CN-XX", id="unknown-iso-code"),
        pytest.param("CN-99", id="unknown-numeric-iso-code"),
        pytest.param("990000", id="unknown-gbt2260-code"),
        pytest.param("Sichuan Sichuan", id="repeated"),
        pytest.param("Province", id="only-a-suffix"),
        pytest.param("省", id="only-a-chinese-suffix"),
        pytest.param("Sichuan Shi Sheng", id="two-suffixes"),
        pytest.param("Sichuan Uygur", id="another-regions-people"),
        pytest.param("Shǎnxī", id="pinyin-tones-are-ambiguous"),
        pytest.param("An", id="a-prefix-of-a-name"),
    ],
)
def test_a_place_that_names_no_province_is_none(text):
    assert regions.province_of_place(text) is None


# --- borders ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "a, b, expected",
    [
        pytest.param("四川", "重庆", True, id="sichuan-chongqing"),
        pytest.param("广东", "广西", True, id="guangdong-guangxi"),
        pytest.param("四川", "广东", False, id="sichuan-guangdong"),
        pytest.param("广东", "香港", True, id="guangdong-hong-kong"),
        pytest.param("广东", "澳门", True, id="guangdong-macao"),
        pytest.param("香港", "澳门", False, id="hong-kong-macao-across-the-estuary"),
        pytest.param("广东", "海南", False, id="guangdong-hainan-across-the-strait"),
        pytest.param("福建", "台湾", False, id="fujian-taiwan-across-the-strait"),
        pytest.param("新疆", "西藏", True, id="xinjiang-xizang"),
        pytest.param("广西", "湖南", True, id="guangxi-hunan"),
        pytest.param("河北", "辽宁", True, id="hebei-liaoning"),
        pytest.param("北京", "上海", False, id="beijing-shanghai"),
        pytest.param("内蒙古", "黑龙江", True, id="inner-mongolia-heilongjiang"),
        pytest.param("内蒙古", "新疆", False, id="inner-mongolia-xinjiang"),
        pytest.param("山西", "陕西", True, id="shanxi-shaanxi"),
        pytest.param("四川", "四川", False, id="a-province-is-not-its-own-neighbour"),
    ],
)
def test_neighbours(a, b, expected):
    assert regions.neighbours(CODE[a], CODE[b]) is expected
    assert regions.neighbours(CODE[b], CODE[a]) is expected


@pytest.mark.parametrize(
    "a, b, expected",
    [
        pytest.param("510100", "500101", True, id="chengdu-wanzhou"),
        pytest.param("510100", "440300", False, id="chengdu-shenzhen"),
        pytest.param("510100", "510104", False, id="two-places-in-one-province"),
    ],
)
def test_neighbours_of_city_codes_are_their_provinces(a, b, expected):
    assert regions.neighbours(a, b) is expected


def test_neighbours_refuses_a_bad_code():
    with pytest.raises(ValueError, match="not a province"):
        regions.neighbours("510000", "990000")


def test_borders_are_symmetric():
    codes = [p.code for p in regions.provinces()]
    for a, b in itertools.product(codes, codes):
        assert regions.neighbours(a, b) == regions.neighbours(b, a), (a, b)


@pytest.mark.parametrize("short, count", NEIGHBOUR_COUNTS.items(), ids=list(NEIGHBOUR_COUNTS))
def test_each_divisions_count_of_neighbours(short, count):
    others = [p for p in regions.provinces() if p.code != CODE[short]]
    assert sum(regions.neighbours(CODE[short], p.code) for p in others) == count


def test_seventy_borders_in_all():
    assert sum(NEIGHBOUR_COUNTS.values()) == 2 * 70
    pairs = itertools.combinations([p.code for p in regions.provinces()], 2)
    assert sum(regions.neighbours(a, b) for a, b in pairs) == 70


# --- display ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code, lang, expected",
    [
        pytest.param("510000", "zh", "四川", id="province-zh"),
        pytest.param("510000", "en", "Sichuan", id="province-en"),
        pytest.param("510100", "zh", "四川", id="city-shows-its-province-zh"),
        pytest.param("510104", "en", "Sichuan", id="county-shows-its-province-en"),
        pytest.param("150000", "zh", "内蒙古", id="inner-mongolia-zh"),
        pytest.param("150000", "en", "Inner Mongolia", id="inner-mongolia-en"),
        pytest.param("820000", "en", "Macao", id="macao-en"),
        pytest.param("440300", "zh-CN", "广东", id="a-language-tag"),
        pytest.param("440300", "en-GB", "Guangdong", id="an-english-tag"),
    ],
)
def test_display(code, lang, expected):
    assert regions.display(code, lang) == expected


def test_display_refuses_another_language():
    with pytest.raises(ValueError, match="no province names in 'fr'"):
        regions.display("510000", "fr")
