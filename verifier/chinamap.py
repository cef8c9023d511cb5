"""A choropleth map of China's provincial-level divisions as an SVG string (no Flask, no I/O but
the package's own data file, read once).

The polygons are verifier/data/chinamap/provinces.json (made by scripts/make_chinamap.py, keyed
by GB/T 2260 code). Each province is a <path> of class `c0`..`c4` (0: no figure; 1-4: equal
intervals of (0, max]), with its words in a <title>; the stylesheet colours the classes, so the
SVG has no style attributes (the audit UI's CSP).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

from markupsafe import escape

from . import regions

CLASSES = 5  # c0 for nothing, c1..c4 for the figures


@dataclass(frozen=True)
class Shape:
    """A province's outline: rings of whole-unit points, and where its label goes."""

    rings: tuple[tuple[tuple[int, int], ...], ...]
    label: tuple[int, int]


@dataclass(frozen=True)
class Outline:
    kind: str  # "tile-grid" or "natural-earth"
    width: int
    height: int
    shapes: dict[str, Shape]  # GB/T 2260 code -> shape


@functools.cache
def outline() -> Outline:
    """The shipped polygons, checked: one shape for each of the 34 provincial-level divisions."""
    text = resources.files("verifier").joinpath("data", "chinamap", "provinces.json").read_text("utf-8")
    data = json.loads(text)
    if data.get("format") != "verifier-chinamap/1":
        raise ValueError("provinces.json: not a verifier-chinamap/1 file")
    shapes = {
        code: Shape(
            tuple(tuple((int(x), int(y)) for x, y in ring) for ring in shape["rings"]),
            (int(shape["label"][0]), int(shape["label"][1])),
        )
        for code, shape in data["provinces"].items()
    }
    expected = {p.code for p in regions.provinces()}
    if set(shapes) != expected:
        raise ValueError(f"provinces.json: shapes for {sorted(set(shapes) ^ expected)} are missing or unknown")
    return Outline(str(data["kind"]), int(data["width"]), int(data["height"]), shapes)


def class_of(value: int, top: int) -> int:
    """The choropleth class of `value` when the largest figure is `top`: 0 for none, else 1..4."""
    if value <= 0 or top <= 0:
        return 0
    return min(CLASSES - 1, -(-value * (CLASSES - 1) // top))  # equal intervals of (0, top]: the top is c4


def legend(top: int) -> list[tuple[int, int, int]]:
    """(class, lowest, highest) of each class that some figure from 0 to `top` falls in."""
    rows = [(0, 0, 0)]
    if top <= 0:
        return rows
    for c in range(1, CLASSES):
        low = (c - 1) * top // (CLASSES - 1) + 1
        high = c * top // (CLASSES - 1)
        if low <= high:
            rows.append((c, low, high))
    return rows


def path_data(shape: Shape) -> str:
    """A shape as SVG path data: absolute start, then relative steps (short text)."""
    parts = []
    for ring in shape.rings:
        (x0, y0), rest = ring[0], ring[1:]
        steps, (px, py) = [], (x0, y0)
        for x, y in rest:
            steps.append(f"{x - px} {y - py}")
            px, py = x, y
        parts.append(f"M{x0} {y0}l" + " ".join(steps) + "z")
    return "".join(parts)


def render(
    values: Mapping[str, int],
    titles: Mapping[str, str],
    names: Mapping[str, str],
    *,
    label: str,
    legend_title: str,
) -> str:
    """The map as an <svg>: each province of `values` (GB/T 2260 code -> figure; absent is 0) in its
    class, `titles[code]` its tooltip, `names[code]` its short label on a tile grid; a legend."""
    shape_of = outline()
    top = max(values.values(), default=0)
    body = []
    for code, shape in sorted(shape_of.shapes.items()):
        value = values.get(code, 0)
        body.append(
            f'<path class="c{class_of(value, top)}" data-code="{code}" d="{path_data(shape)}">'
            f"<title>{escape(titles.get(code, code))}</title></path>"
        )
    if shape_of.kind == "tile-grid":  # a grid names its tiles; real outlines are recognised by shape
        body += [
            f'<text x="{s.label[0]}" y="{s.label[1]}">{escape(names.get(code, ""))}</text>'
            for code, s in sorted(shape_of.shapes.items())
        ]
    keys = legend(top)
    top_y = shape_of.height + 10
    items = [f'<text class="legend-title" x="0" y="{top_y + 12}">{escape(legend_title)}</text>']
    for i, (c, low, high) in enumerate(keys):
        x = 4 + i * 100
        words = str(low) if low == high else f"{low}–{high}"
        items.append(
            f'<rect class="c{c}" x="{x}" y="{top_y + 20}" width="18" height="14"></rect>'
            f'<text x="{x + 24}" y="{top_y + 32}">{words}</text>'
        )
    height = top_y + 44
    return (
        f'<svg class="chinamap" viewBox="0 0 {shape_of.width} {height}" role="img" aria-label="{escape(label)}">'
        + "".join(body)
        + '<g class="legend">'
        + "".join(items)
        + "</g></svg>"
    )
