"""The province map, pure: every provincial-level division drawn once, classes, legend, no style."""

from __future__ import annotations

import re

from verifier import chinamap, regions


def test_every_provincial_level_division_has_one_shape():
    assert set(chinamap.outline().shapes) == {p.code for p in regions.provinces()}
    assert len(chinamap.outline().shapes) == 34


def test_a_province_with_no_figure_is_drawn_in_the_lowest_class():
    svg = chinamap.render({"510000": 9}, {}, {}, label="map", legend_title="scans")
    classes = dict(re.findall(r'<path class="(c\d)" data-code="(\d{6})"', svg)[i][::-1] for i in range(34))
    assert classes["510000"] == "c4" and classes["440000"] == "c0"
    assert set(classes.values()) == {"c0", "c4"}


def test_classes_and_legend_are_equal_intervals_up_to_the_largest_figure():
    assert [chinamap.class_of(v, 8) for v in range(9)] == [0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert chinamap.legend(8) == [(0, 0, 0), (1, 1, 2), (2, 3, 4), (3, 5, 6), (4, 7, 8)]
    assert chinamap.legend(0) == [(0, 0, 0)]
    assert chinamap.legend(1) == [(0, 0, 0), (4, 1, 1)]  # the largest figure is always the darkest


def test_titles_are_escaped_and_the_svg_has_no_style_or_script():
    svg = chinamap.render({}, {"110000": "<b>北京</b>"}, {"110000": "北京"}, label='a"b', legend_title="x")
    assert "<title>&lt;b&gt;北京&lt;/b&gt;</title>" in svg and 'aria-label="a&#34;b"' in svg
    assert "style" not in svg and "script" not in svg


def test_the_shipped_polygons_are_small():
    svg = chinamap.render({p.code: i for i, p in enumerate(regions.provinces())}, {}, {}, label="m", legend_title="l")
    assert len(svg.encode()) < 30_000
