"""A choropleth map of China's provincial-level divisions as an SVG string (no Flask, no I/O but
the package's own data file, read once).

The outlines are verifier/data/chinamap/provinces.json (made by scripts/make_chinamap.py from
boundary data it names, keyed by GB/T 2260 code; the README there gives the source and licence).
Each division is one <path> of class `c0`..`c4` (0: no figure; 1-4: equal intervals of (0, max])
with its words in a <title>. A division too small to point at (Hong Kong, Macao) also has a marker
square in that path, a leader line to it and its name under it. The stylesheet colours the classes,
so the SVG has no style attributes (the audit UI's CSP).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from markupsafe import escape

from . import regions

CLASSES = 5  # c0 for nothing, c1..c4 for the figures
FORMAT = "verifier-chinamap/2"

Point = tuple[int, int]


@dataclass(frozen=True)
class Marker:
    """A small division's square (top-left corner, side), the line from its outline and its label's place."""

    corner: Point
    size: int
    leader: tuple[Point, Point]
    label: Point


@dataclass(frozen=True)
class Shape:
    """A division's outline: rings of whole-unit points, and a marker when it is too small to see."""

    rings: tuple[tuple[Point, ...], ...]
    marker: Marker | None = None


@dataclass(frozen=True)
class Outline:
    """The shipped map: its source's words and licence, its size in SVG units, shapes, projection."""

    kind: str  # the source: "dcw-gmt" or "natural-earth"
    attribution: str  # what the map page says it is drawn from
    licence: str
    width: int
    height: int
    shapes: dict[str, Shape]  # GB/T 2260 code -> shape
    projection: tuple[float, float, float, float]  # x0, y0, factor, pad: albers() to SVG units


def albers(lon: float, lat: float) -> tuple[float, float]:
    """Albers equal-area on the sphere, as maps of China draw it (standard parallels 25°N and 47°N,
    central meridian 105°E), in earth radii; y grows southwards, as in SVG."""
    phi1, phi2 = math.radians(25), math.radians(47)
    n = (math.sin(phi1) + math.sin(phi2)) / 2
    c = math.cos(phi1) ** 2 + 2 * n * math.sin(phi1)
    rho = math.sqrt(c - 2 * n * math.sin(math.radians(lat))) / n
    theta = n * math.radians(lon - 105)
    return rho * math.sin(theta), rho * math.cos(theta)


def project(lon: float, lat: float) -> tuple[float, float]:
    """Where a place (degrees east, degrees north) is on the shipped map, in its SVG units."""
    x0, y0, factor, pad = outline().projection
    x, y = albers(lon, lat)
    return (x - x0) * factor + pad, (y - y0) * factor + pad


def _point(pair: list[int]) -> Point:
    return int(pair[0]), int(pair[1])


def _shape(data: Mapping[str, Any]) -> Shape:
    rings = tuple(tuple(_point(p) for p in ring) for ring in data["rings"])
    if not rings or any(len(ring) < 3 for ring in rings):
        raise ValueError("provinces.json: a shape with no ring or a ring of under 3 points")
    marker = None
    if "marker" in data:
        x, y, size = (int(v) for v in data["marker"])
        start, end = data["leader"]
        marker = Marker((x, y), size, (_point(start), _point(end)), _point(data["label"]))
    return Shape(rings, marker)


@functools.cache
def outline() -> Outline:
    """The shipped outlines, checked: one shape for each of the 34 provincial-level divisions."""
    text = resources.files("verifier").joinpath("data", "chinamap", "provinces.json").read_text("utf-8")
    data = json.loads(text)
    if data.get("format") != FORMAT:
        raise ValueError(f"provinces.json: not a {FORMAT} file")
    shapes = {code: _shape(shape) for code, shape in data["provinces"].items()}
    expected = {p.code for p in regions.provinces()}
    if set(shapes) != expected:
        raise ValueError(f"provinces.json: shapes for {sorted(set(shapes) ^ expected)} are missing or unknown")
    source, projection = data["source"], data["projection"]
    return Outline(
        str(data["kind"]),
        str(source["attribution"]),
        str(source["licence"]),
        int(data["width"]),
        int(data["height"]),
        shapes,
        (float(projection["x0"]), float(projection["y0"]), float(projection["factor"]), float(projection["pad"])),
    )


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
    """A shape as SVG path data: absolute start, then relative steps (short text); the marker last."""
    parts = []
    for ring in shape.rings:
        (x0, y0), rest = ring[0], ring[1:]
        steps, (px, py) = [], (x0, y0)
        for x, y in rest:
            steps.append(f"{x - px} {y - py}")
            px, py = x, y
        parts.append(f"M{x0} {y0}l" + " ".join(steps) + "z")
    if shape.marker:
        (x, y), size = shape.marker.corner, shape.marker.size
        parts.append(f"M{x} {y}h{size}v{size}h-{size}z")
    return "".join(parts)


def leader(marker: Marker) -> str:
    """The line from a small division to its marker, and a frame round the marker (seen even in c0)."""
    (sx, sy), (ex, ey) = marker.leader
    (x, y), side = marker.corner, marker.size + 2
    return f'<path class="leader" d="M{sx} {sy}L{ex} {ey}M{x - 1} {y - 1}h{side}v{side}h-{side}z"></path>'


def render(
    values: Mapping[str, int],
    titles: Mapping[str, str],
    names: Mapping[str, str],
    *,
    label: str,
    legend_title: str,
) -> str:
    """The map as an <svg>: each province of `values` (GB/T 2260 code -> figure; absent is 0) in its
    class, `titles[code]` its tooltip, `names[code]` the label of a small division's marker; a legend."""
    shape_of = outline()
    top = max(values.values(), default=0)
    marked = sorted((code, s.marker) for code, s in shape_of.shapes.items() if s.marker)
    body = [leader(m) for _, m in marked]  # first: the divisions and their marker squares are drawn over them
    for code, shape in sorted(shape_of.shapes.items()):
        value = values.get(code, 0)
        body.append(
            f'<path class="c{class_of(value, top)}" data-code="{code}" d="{path_data(shape)}">'
            f"<title>{escape(titles.get(code, code))}</title></path>"
        )
    body += [f'<text x="{m.label[0]}" y="{m.label[1]}">{escape(names.get(code, ""))}</text>' for code, m in marked]
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
