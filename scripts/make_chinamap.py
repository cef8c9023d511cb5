"""Write verifier/data/chinamap/provinces.json: China's provincial-level divisions as polygons in
SVG coordinates, keyed by GB/T 2260 code (verifier/regions.py). Not imported by the package.

Two sources:

  python scripts/make_chinamap.py --grid
      a tile grid (one square per province, placed roughly where the province lies): what ships
      today, see verifier/data/chinamap/README.md;
  python scripts/make_chinamap.py --natural-earth ne_10m_admin_1_states_provinces.geojson [--commit SHA]
      Natural Earth's admin-1 polygons (public domain): the features of CHN, HKG, MAC and TWN,
      mapped to GB/T 2260 by their ISO 3166-2 code (all of TWN's counties become 710000),
      projected equirectangularly (x scaled by cos 35°), simplified with Douglas-Peucker and
      rounded to whole units.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from verifier import regions  # noqa: E402

OUT = ROOT / "verifier" / "data" / "chinamap" / "provinces.json"
CELL, GAP = 60, 4

# (column, row) of each province in the tile grid, by ISO 3166-2 letters.
GRID = {
    "HL": (8, 0),
    "NM": (5, 1),
    "BJ": (6, 1),
    "LN": (7, 1),
    "JL": (8, 1),
    "XJ": (1, 2),
    "GS": (3, 2),
    "NX": (4, 2),
    "SX": (5, 2),
    "HE": (6, 2),
    "TJ": (7, 2),
    "QH": (2, 3),
    "SN": (4, 3),
    "HA": (5, 3),
    "SD": (6, 3),
    "XZ": (1, 4),
    "SC": (3, 4),
    "CQ": (4, 4),
    "HB": (5, 4),
    "AH": (6, 4),
    "JS": (7, 4),
    "SH": (8, 4),
    "YN": (3, 5),
    "GZ": (4, 5),
    "HN": (5, 5),
    "JX": (6, 5),
    "ZJ": (7, 5),
    "GX": (4, 6),
    "GD": (5, 6),
    "FJ": (6, 6),
    "TW": (7, 6),
    "HI": (4, 7),
    "MO": (5, 7),
    "HK": (6, 7),
}


def code_of(iso: str) -> str:
    found = regions.province_of_place(iso)
    if found is None:
        raise SystemExit(f"{iso}: no GB/T 2260 province")
    return found.code


def grid() -> dict:
    provinces = {}
    for iso, (col, row) in GRID.items():
        x, y = col * CELL + GAP // 2, row * CELL + GAP // 2
        size = CELL - GAP
        ring = [[x, y], [x + size, y], [x + size, y + size], [x, y + size]]
        provinces[code_of(iso)] = {"rings": [ring], "label": [x + size // 2, y + size // 2 + 5]}
    width = (max(c for c, _ in GRID.values()) + 1) * CELL
    height = (max(r for _, r in GRID.values()) + 1) * CELL
    return {
        "kind": "tile-grid",
        "source": "tile grid made for this project (no boundary data)",
        "provinces": provinces,
        "width": width,
        "height": height,
    }


def douglas_peucker(points: list[tuple[float, float]], tolerance: float) -> list[tuple[float, float]]:
    """The points of a line that keep it within `tolerance` (iterative, ends kept)."""
    if len(points) < 3:
        return points
    keep = [False] * len(points)
    keep[0] = keep[-1] = True
    stack = [(0, len(points) - 1)]
    while stack:
        first, last = stack.pop()
        (ax, ay), (bx, by) = points[first], points[last]
        length = math.hypot(bx - ax, by - ay)
        best, index = 0.0, -1
        for i in range(first + 1, last):
            px, py = points[i]
            if length == 0:
                d = math.hypot(px - ax, py - ay)
            else:
                d = abs((bx - ax) * (ay - py) - (ax - px) * (by - ay)) / length
            if d > best:
                best, index = d, i
        if best > tolerance and index > 0:
            keep[index] = True
            stack += [(first, index), (index, last)]
    return [p for p, k in zip(points, keep) if k]


def natural_earth(path: Path, tolerance: float, width: int) -> dict:
    data = json.loads(path.read_text("utf-8"))
    features = [f for f in data["features"] if f["properties"].get("adm0_a3") in ("CHN", "HKG", "MAC", "TWN")]
    scale_x = math.cos(math.radians(35))
    rings_by_code: dict[str, list[list[tuple[float, float]]]] = {}
    for feature in features:
        props = feature["properties"]
        iso = {"HKG": "CN-HK", "MAC": "CN-MO", "TWN": "CN-TW"}.get(props["adm0_a3"]) or props.get("iso_3166_2") or ""
        found = regions.province_of_place(iso) or regions.province_of_place(props.get("name") or "")
        if found is None:
            print(f"skipped: {props.get('name')} ({iso})", file=sys.stderr)  # e.g. the Paracel Islands
            continue
        geometry = feature["geometry"]
        polygons = geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
        for polygon in polygons:
            rings_by_code.setdefault(found.code, []).append([(lon * scale_x, -lat) for lon, lat in polygon[0]])
    missing = {p.code for p in regions.provinces()} - set(rings_by_code)
    if missing:
        raise SystemExit(f"no polygons for {sorted(missing)}")
    xs = [x for rings in rings_by_code.values() for ring in rings for x, _ in ring]
    ys = [y for rings in rings_by_code.values() for ring in rings for _, y in ring]
    factor = width / (max(xs) - min(xs))
    provinces = {}
    for code, rings in sorted(rings_by_code.items()):
        out = []
        for ring in rings:
            projected = [((x - min(xs)) * factor, (y - min(ys)) * factor) for x, y in ring]
            simple = douglas_peucker(projected, tolerance)
            rounded = [[round(x), round(y)] for x, y in simple]
            if len(rounded) >= 4:  # islands smaller than the tolerance drop out
                out.append(rounded)
        biggest = max(out, key=len)
        label = [round(sum(x for x, _ in biggest) / len(biggest)), round(sum(y for _, y in biggest) / len(biggest))]
        provinces[code] = {"rings": out, "label": label}
    height = round((max(ys) - min(ys)) * factor)
    return {
        "kind": "natural-earth",
        "source": "Natural Earth admin-1 (public domain)",
        "provinces": provinces,
        "width": width,
        "height": height,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--grid", action="store_true")
    group.add_argument("--natural-earth", type=Path)
    parser.add_argument("--commit", default="", help="the natural-earth-vector commit the file came from")
    parser.add_argument("--tolerance", type=float, default=1.5, help="Douglas-Peucker tolerance, in output units")
    parser.add_argument("--width", type=int, default=800)
    args = parser.parse_args()
    made = grid() if args.grid else natural_earth(args.natural_earth, args.tolerance, args.width)
    made = {"format": "verifier-chinamap/1", **made, "commit": args.commit}
    OUT.write_text(json.dumps(made, ensure_ascii=False, separators=(",", ":"), sort_keys=True) + "\n", "utf-8")
    print(f"{OUT}: {len(made['provinces'])} provinces, {OUT.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
