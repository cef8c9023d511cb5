"""The province map, pure: real outlines where the places are, neighbours that meet, small divisions
that can be found, its source and licence recorded and shipped; classes, legend, no style."""

from __future__ import annotations

import itertools
import json
import re
from importlib import resources

import pytest

from verifier import chinamap, regions

OUTLINE = chinamap.outline()
DATA = resources.files("verifier").joinpath("data", "chinamap")

# Each division's seat of government (degrees east, north): it is inside that division's outline only.
SEATS = {
    "110000": ("Beijing", 116.40, 39.90),
    "120000": ("Tianjin", 117.20, 39.13),
    "130000": ("Shijiazhuang", 114.51, 38.04),
    "140000": ("Taiyuan", 112.55, 37.87),
    "150000": ("Hohhot", 111.75, 40.84),
    "210000": ("Shenyang", 123.43, 41.80),
    "220000": ("Changchun", 125.32, 43.82),
    "230000": ("Harbin", 126.53, 45.80),
    "310000": ("Shanghai", 121.47, 31.23),
    "320000": ("Nanjing", 118.80, 32.06),
    "330000": ("Hangzhou", 120.16, 30.27),
    "340000": ("Hefei", 117.23, 31.82),
    "350000": ("Fuzhou", 119.30, 26.08),
    "360000": ("Nanchang", 115.86, 28.68),
    "370000": ("Jinan", 117.12, 36.65),
    "410000": ("Zhengzhou", 113.63, 34.75),
    "420000": ("Wuhan", 114.31, 30.59),
    "430000": ("Changsha", 112.94, 28.23),
    "440000": ("Guangzhou", 113.26, 23.13),
    "450000": ("Nanning", 108.37, 22.82),
    "460000": ("Haikou", 110.35, 20.02),
    "500000": ("Chongqing", 106.55, 29.56),
    "510000": ("Chengdu", 104.07, 30.67),
    "520000": ("Guiyang", 106.63, 26.65),
    "530000": ("Kunming", 102.83, 24.88),
    "540000": ("Lhasa", 91.14, 29.65),
    "610000": ("Xi'an", 108.94, 34.34),
    "620000": ("Lanzhou", 103.83, 36.06),
    "630000": ("Xining", 101.78, 36.62),
    "640000": ("Yinchuan", 106.23, 38.49),
    "650000": ("Urumqi", 87.62, 43.83),
    "710000": ("Taipei", 121.56, 25.04),
    "810000": ("Hong Kong", 114.17, 22.32),
    "820000": ("Macao", 113.54, 22.19),
}
SARS = {"810000", "820000"}  # drawn from other linework than Guangdong's coast: they meet it, without shared vertices


def inside(point: tuple[float, float], shape: chinamap.Shape) -> bool:
    """Even-odd ray casting over all the shape's rings (its marker is not its territory)."""
    x, y = point
    crossings = 0
    for ring in shape.rings:
        for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1]):
            if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
                crossings += 1
    return crossings % 2 == 1


def area(ring: tuple[tuple[int, int], ...]) -> float:
    return abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1]))) / 2


def box(shape: chinamap.Shape) -> tuple[int, int, int, int]:
    xs = [x for ring in shape.rings for x, _ in ring]
    ys = [y for ring in shape.rings for _, y in ring]
    return min(xs), min(ys), max(xs), max(ys)


def vertices(shape: chinamap.Shape) -> set[tuple[int, int]]:
    return {point for ring in shape.rings for point in ring}


def test_every_provincial_level_division_has_one_shape():
    assert set(OUTLINE.shapes) == {p.code for p in regions.provinces()}
    assert len(OUTLINE.shapes) == 34


@pytest.mark.parametrize("code", sorted(SEATS))
def test_every_outline_is_a_real_polygon(code):
    shape = OUTLINE.shapes[code]
    assert all(len(set(ring)) >= 3 and area(ring) > 0 for ring in shape.rings)
    x0, y0, x1, y1 = box(shape)
    assert 0 <= x0 < x1 <= OUTLINE.width and 0 <= y0 < y1 <= OUTLINE.height
    if code not in SARS:  # a province of real extent, not a dot: at least 12 units across
        assert max(x1 - x0, y1 - y0) >= 12 and sum(area(r) for r in shape.rings) >= 50


@pytest.mark.parametrize("code", sorted(SEATS))
def test_each_seat_of_government_is_inside_its_own_division_only(code):
    name, lon, lat = SEATS[code]
    point = chinamap.project(lon, lat)
    assert [c for c, s in OUTLINE.shapes.items() if inside(point, s)] == [code], name


def test_chengdu_is_in_sichuan_and_guangzhou_in_guangdong_not_the_other_way():
    chengdu, guangzhou = chinamap.project(104.07, 30.67), chinamap.project(113.26, 23.13)
    sichuan, guangdong = OUTLINE.shapes["510000"], OUTLINE.shapes["440000"]
    assert inside(chengdu, sichuan) and not inside(guangzhou, sichuan)
    assert inside(guangzhou, guangdong) and not inside(chengdu, guangdong)


def test_the_projection_puts_the_compass_points_where_they_belong():
    kashgar, fuyuan = chinamap.project(75.99, 39.47), chinamap.project(134.29, 48.36)  # west, east
    mohe, sanya = chinamap.project(122.54, 52.97), chinamap.project(109.51, 18.25)  # north, south
    assert kashgar[0] < 60 and fuyuan[0] > OUTLINE.width - 40
    assert mohe[1] < 30 and sanya[1] > OUTLINE.height - 30


@pytest.mark.parametrize(
    "pair", sorted(tuple(sorted(p)) for p in itertools.combinations(sorted(SEATS), 2) if regions.neighbours(*p))
)
def test_neighbours_in_the_border_list_meet_on_the_map(pair):
    a, b = (OUTLINE.shapes[c] for c in pair)
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = box(a), box(b)
    assert ax0 <= bx1 + 1 and bx0 <= ax1 + 1 and ay0 <= by1 + 1 and by0 <= ay1 + 1  # the boxes touch or overlap
    if SARS & set(pair):
        gap = min(abs(px - qx) + abs(py - qy) for px, py in vertices(a) for qx, qy in vertices(b))
        assert gap <= 3
    else:  # simplified once for both: the same line, so at least a stretch of common vertices
        assert len(vertices(a) & vertices(b)) >= 2


def test_divisions_that_do_not_border_share_no_stretch_of_boundary():
    shared = [
        pair
        for pair in itertools.combinations(sorted(SEATS), 2)
        if not regions.neighbours(*pair)
        and len(vertices(OUTLINE.shapes[pair[0]]) & vertices(OUTLINE.shapes[pair[1]])) >= 2
    ]
    assert shared == []


@pytest.mark.parametrize("code", sorted(SARS))
def test_hong_kong_and_macao_have_a_marker_at_sea_that_points_at_them(code):
    shape = OUTLINE.shapes[code]
    assert shape.marker is not None and shape.marker.size >= 10
    (mx, my), size = shape.marker.corner, shape.marker.size
    centre = (mx + size / 2, my + size / 2)
    assert not any(inside(centre, s) for s in OUTLINE.shapes.values())  # at sea
    others = [p for c, s in OUTLINE.shapes.items() if c != code for p in vertices(s)]
    assert not any(mx <= x <= mx + size and my <= y <= my + size for x, y in others)
    (sx, sy), (ex, ey) = shape.marker.leader
    x0, y0, x1, y1 = box(shape)
    assert x0 <= sx <= x1 and y0 <= sy <= y1  # the leader starts on the division
    assert mx <= ex <= mx + size and my <= ey <= my + size  # and ends on its marker
    assert [c for c, s in OUTLINE.shapes.items() if s.marker] == sorted(SARS)


def test_a_small_division_is_drawn_with_its_marker_leader_and_name():
    svg = chinamap.render(
        {"820000": 3}, {"820000": "澳门: 3"}, {"820000": "澳门", "810000": "香港"}, label="m", legend_title="l"
    )
    macao = re.search(r'<path class="c4" data-code="820000" d="([^"]+)"><title>澳门: 3</title></path>', svg)
    assert macao and macao.group(1).endswith("h16v16h-16z")  # the marker square is part of the division's path
    assert svg.count('<path class="leader"') == 2 and ">澳门</text>" in svg and ">香港</text>" in svg


def test_a_province_with_no_figure_is_drawn_in_the_lowest_class():
    svg = chinamap.render({"510000": 9}, {}, {}, label="map", legend_title="scans")
    classes = {code: c for c, code in re.findall(r'<path class="(c\d)" data-code="(\d{6})"', svg)}
    assert len(classes) == 34
    assert classes["510000"] == "c4" and classes["440000"] == "c0"
    assert set(classes.values()) == {"c0", "c4"}


def test_classes_and_legend_are_equal_intervals_up_to_the_largest_figure():
    assert [chinamap.class_of(v, 8) for v in range(9)] == [0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert chinamap.legend(8) == [(0, 0, 0), (1, 1, 2), (2, 3, 4), (3, 5, 6), (4, 7, 8)]
    assert chinamap.legend(0) == [(0, 0, 0)]
    assert chinamap.legend(1) == [(0, 0, 0), (4, 1, 1)]  # the largest figure is always the darkest


def test_titles_are_escaped_and_the_svg_has_no_style_or_script():
    svg = chinamap.render({}, {"110000": "<b>北京</b>"}, {"810000": "<i>"}, label='a"b', legend_title="x")
    assert (
        "<title>&lt;b&gt;北京&lt;/b&gt;</title>" in svg and 'aria-label="a&#34;b"' in svg and ">&lt;i&gt;</text>" in svg
    )
    assert "style" not in svg and "script" not in svg


def test_the_shipped_outlines_are_small():
    # 34 real outlines at the map's scale are about 5,000 points; with the page's ~40-byte tooltips
    # the SVG stays near 30 kB and the map page under its 60 kB (tests/test_inspector_ui.py).
    svg = chinamap.render({p.code: i for i, p in enumerate(regions.provinces())}, {}, {}, label="m", legend_title="l")
    assert len(svg.encode()) < 30_000


def test_the_file_records_its_source_licence_and_input_and_ships_the_licence():
    data = json.loads(DATA.joinpath("provinces.json").read_text("utf-8"))
    source = data["source"]
    assert data["kind"] == OUTLINE.kind == "dcw-gmt"
    assert source["licence"] == OUTLINE.licence == "LGPL-3.0-or-later"
    assert re.fullmatch(r"[0-9a-f]{64}", source["sha256"]) and re.fullmatch(r"[0-9a-f]{64}", source["package_sha256"])
    assert source["url"].startswith("https://") and "gmt-dcw 2.1.1-1" in source["package"]
    assert "DCW-GMT" in OUTLINE.attribution and "LGPL" in OUTLINE.attribution
    readme = DATA.joinpath("README.md").read_text("utf-8")
    assert source["sha256"] in readme and source["package_sha256"] in readme
    assert "GNU LESSER GENERAL PUBLIC LICENSE" in DATA.joinpath("LICENSE-LGPL-3.0.txt").read_text("utf-8")
    assert "GNU GENERAL PUBLIC LICENSE" in DATA.joinpath("LICENSE-GPL-3.0.txt").read_text("utf-8")
