"""Write verifier/data/chinamap/provinces.json: the outlines of China's 34 provincial-level divisions
in SVG units, keyed by GB/T 2260 code (verifier/regions.py). A development task, not imported by the
package; its inputs are read here only (h5py for the netCDF file is needed by this script alone).

What ships, and how to make it again (verifier/data/chinamap/README.md says why this source):

  apt-get download gmt-dcw            # Debian's gmt-dcw 2.1.1-1: DCW-GMT, LGPL-3.0-or-later
  dpkg-deb -x gmt-dcw_2.1.1-1_all.deb dcw
  pip install h5py markupsafe         # in a throwaway venv (markupsafe: verifier.chinamap)
  python scripts/make_chinamap.py --dcw dcw/usr/share/gmt-dcw/dcw-gmt.nc --package gmt-dcw_2.1.1-1_all.deb

Natural Earth's 1:10m admin-1 layer (public domain) goes through the same steps:

  python scripts/make_chinamap.py --natural-earth ne_10m_admin_1_states_provinces.geojson --commit SHA

Both: every feature is mapped to its GB/T 2260 code by its ISO 3166-2 code, cross-checked with its
name where the name is one regions.py knows (a missing or doubled division stops the script);
neighbours' vertices within 0.0005° are merged; the rings are projected (Albers equal-area,
standard parallels 25°N and 47°N, central meridian 105°E); shared borders are simplified once
(Douglas-Peucker on the arcs between junctions, so neighbours keep one common line); islets smaller
than --min-area square units are dropped, never a division's largest ring; coordinates are rounded
to whole units. A division too small to see or point at (Hong Kong,
Macao) also gets a marker: a square out at sea with a leader line to it and its name under it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from verifier import chinamap, regions  # noqa: E402

OUT = ROOT / "verifier" / "data" / "chinamap" / "provinces.json"
FORMAT = "verifier-chinamap/2"

Ring = list[tuple[float, float]]
Key = tuple[float, float]  # a vertex after snapping: neighbours' copies of one point are one key

# Divisions whose outline is smaller than MIN_VISIBLE units across get a MARKER-unit square placed
# (dx, dy) units from the outline's centre: south, out in the South China Sea, clear of Hainan.
MIN_VISIBLE = 12
MARKER = 16
MARKERS = {"810000": (18, 32), "820000": (-18, 36)}

DCW_PROVENANCE = {
    "name": "DCW-GMT 2.1.1 (the Digital Chart of the World for the Generic Mapping Tools)",
    "url": "https://github.com/GenericMappingTools/dcw-gmt",
    "licence": "LGPL-3.0-or-later",
    "package": "Debian bookworm gmt-dcw 2.1.1-1 (pool/main/g/gmt-dcw/gmt-dcw_2.1.1-1_all.deb)",
    "file": "/usr/share/gmt-dcw/dcw-gmt.nc",
    "attribution": "DCW-GMT 2.1.1, © The GMT Team, LGPL-3.0-or-later",
}
NE_PROVENANCE = {
    "name": "Natural Earth 1:10m admin-1 states and provinces",
    "url": "https://github.com/nvkelso/natural-earth-vector",
    "licence": "public domain",
    "file": "geojson/ne_10m_admin_1_states_provinces.geojson",
    "attribution": "Natural Earth (public domain)",
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def code_of(iso: str, name: str) -> str:
    """The GB/T 2260 code of an ISO 3166-2 code ("CN-SC"), checked against the name where it is known."""
    found = regions.province_of_place(iso)
    if found is None:
        raise SystemExit(f"{iso} ({name}): no GB/T 2260 provincial-level division")
    by_name = regions.province_of_place(name)
    if by_name is not None and by_name.code != found.code:
        raise SystemExit(f"{iso} is {found.code} but its name {name!r} is {by_name.code}")
    return found.code


def checked(rings_by_code: dict[str, list[Ring]]) -> dict[str, list[Ring]]:
    expected = {p.code for p in regions.provinces()}
    missing, unknown = expected - set(rings_by_code), set(rings_by_code) - expected
    if missing or unknown:
        raise SystemExit(f"no outline for {sorted(missing)}; not a division: {sorted(unknown)}")
    return rings_by_code


def read_dcw(path: Path) -> dict[str, list[Ring]]:
    """DCW-GMT's China states (CN.AH ... CN.ZJ, Hong Kong, Macao and Taiwan among them) as lon/lat rings."""
    try:
        import h5py
    except ImportError:
        raise SystemExit("reading dcw-gmt.nc (netCDF-4) needs h5py: pip install h5py") from None
    states = {}
    for line in (path.parent / "dcw-states.txt").read_text("utf-8").splitlines():
        if line.startswith("CN "):
            _, state, name = line.split(maxsplit=2)
            states[state] = name
    rings_by_code: dict[str, list[Ring]] = {}
    with h5py.File(path, "r") as nc:
        for state, name in sorted(states.items()):
            code = code_of(f"CN-{state}", name.split(" (")[0])
            if code in rings_by_code:
                raise SystemExit(f"CN.{state}: a second outline for {code}")
            lon, lat = nc[f"CN{state}_lon"], nc[f"CN{state}_lat"]
            scale_x, min_x = float(lon.attrs["scale"][0]), float(lon.attrs["min"][0])
            scale_y, min_y = float(lat.attrs["scale"][0]), float(lat.attrs["min"][0])
            rings: list[Ring] = []
            for x, y in zip(lon[:].tolist(), lat[:].tolist()):
                if x == 65535:  # a new polygon starts; y says perimeter (0) or hole
                    if y != 0:
                        raise SystemExit(f"CN.{state}: holes are not expected in China's states")
                    rings.append([])
                    continue
                rings[-1].append((x / scale_x + min_x, y / scale_y + min_y))
            rings_by_code[code] = rings
    return checked(rings_by_code)


def read_natural_earth(path: Path) -> dict[str, list[Ring]]:
    """Natural Earth's admin-1 features of CHN, HKG, MAC and TWN (Taiwan's counties all become 710000)."""
    data = json.loads(path.read_text("utf-8"))
    rings_by_code: dict[str, list[Ring]] = {}
    seen: dict[str, str] = {}
    for feature in data["features"]:
        props = feature["properties"]
        whole = {"HKG": "CN-HK", "MAC": "CN-MO", "TWN": "CN-TW"}.get(props.get("adm0_a3") or "")
        if props.get("adm0_a3") != "CHN" and whole is None:
            continue
        iso = whole or props.get("iso_3166_2") or ""
        if not iso.startswith("CN-"):
            print(f"skipped: {props.get('name')} ({iso})", file=sys.stderr)  # e.g. the Paracel Islands
            continue
        code = code_of(iso, "" if whole else props.get("name") or "")
        if whole is None and seen.setdefault(code, props.get("adm1_code") or "") != props.get("adm1_code"):
            raise SystemExit(f"{iso}: two features for {code}")
        geometry = feature["geometry"]
        polygons = geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
        for polygon in polygons:  # the outer ring; a province's holes are its neighbours, drawn over it
            rings_by_code.setdefault(code, []).append([(lon, lat) for lon, lat in polygon[0]])
    return checked(rings_by_code)


def area(points: Iterable[tuple[float, float]]) -> float:
    pts = list(points)
    return abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1]))) / 2


def douglas_peucker(points: list[tuple[float, float]], tolerance: float) -> list[int]:
    """The indices of the points of a line that keep it within `tolerance` (iterative, ends kept)."""
    if len(points) < 3:
        return list(range(len(points)))
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
    return [i for i, k in enumerate(keep) if k]


class Snapper:
    """Vertices within `within` degrees of one already seen become that one: each division's copy of a
    shared border was quantised on its own (DCW stores 16-bit steps of each division's extent)."""

    def __init__(self, within: float = 0.0005) -> None:
        self.within = within
        self.cells: dict[tuple[int, int], list[Key]] = {}

    def key(self, lon: float, lat: float) -> Key:
        cx, cy = int(lon // self.within), int(lat // self.within)
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for seen in self.cells.get((cx + dx, cy + dy), ()):
                    if abs(seen[0] - lon) <= self.within and abs(seen[1] - lat) <= self.within:
                        return seen
        self.cells.setdefault((cx, cy), []).append((lon, lat))
        return (lon, lat)

    def ring(self, ring: Ring) -> list[Key]:
        keys: list[Key] = []
        for lon, lat in ring:
            key = self.key(lon, lat)
            if not keys or keys[-1] != key:
                keys.append(key)
        while len(keys) > 1 and keys[0] == keys[-1]:
            keys.pop()  # rings are kept open here: the closing point is implied
        return keys


def junctions(rings: list[list[Key]]) -> set[Key]:
    """The vertices where the rings sharing a border change: a border between them runs from one to the next."""
    around: dict[Key, set[frozenset[Key]]] = {}
    for ring in rings:
        for i, key in enumerate(ring):
            around.setdefault(key, set()).add(frozenset((ring[i - 1], ring[(i + 1) % len(ring)])))
    return {key for key, pairs in around.items() if len(pairs) > 1}


class Simplifier:
    """Douglas-Peucker on the arcs between junctions, each arc once, so shared borders stay shared."""

    def __init__(self, at: dict[Key, tuple[float, float]], tolerance: float, joints: set[Key]) -> None:
        self.at, self.tolerance, self.joints = at, tolerance, joints
        self.done: dict[tuple[Key, ...], list[Key]] = {}

    def arc(self, keys: list[Key]) -> list[Key]:
        forward, backward = tuple(keys), tuple(reversed(keys))
        canonical = min(forward, backward)
        if canonical not in self.done:
            kept = douglas_peucker([self.at[k] for k in canonical], self.tolerance)
            self.done[canonical] = [canonical[i] for i in kept]
        simple = self.done[canonical]
        return simple if canonical == forward else simple[::-1]

    def ring(self, keys: list[Key]) -> list[Key]:
        cuts = [i for i, k in enumerate(keys) if k in self.joints]
        if not cuts:  # an island, or a ring no other touches: cut at its least vertex and the one opposite
            start = keys.index(min(keys))
            keys = keys[start:] + keys[:start]
            if keys[1:] > keys[:0:-1]:
                keys = keys[:1] + keys[:0:-1]  # one direction for equal rings walked either way
            half = len(keys) // 2
            cuts = [0, half] if half else [0]
        out: list[Key] = []
        for a, b in zip(cuts, cuts[1:] + [cuts[0] + len(keys)]):
            piece = (keys + keys)[a : b + 1]
            out += self.arc(piece)[:-1]
        return out


def draw(rings_by_code: dict[str, list[Ring]], tolerance: float, width: int, min_area: float) -> dict:
    snapper = Snapper()
    snapped_by_code = {
        code: [r for r in map(snapper.ring, rings) if len(r) >= 3] for code, rings in rings_by_code.items()
    }
    projected = {k: chinamap.albers(*k) for rings in snapped_by_code.values() for ring in rings for k in ring}

    def bbox(rings: Iterable[list[Key]]) -> tuple[float, float, float, float]:
        pts = [projected[k] for ring in rings for k in ring]
        return min(x for x, _ in pts), min(y for _, y in pts), max(x for x, _ in pts), max(y for _, y in pts)

    def biggest(rings: list[list[Key]]) -> list[Key]:
        return max(rings, key=lambda r: area(projected[k] for k in r))

    pad = 6
    largest = {code: biggest(rings) for code, rings in snapped_by_code.items()}
    x0, y0, x1, y1 = bbox(largest.values())  # the far islets would stretch the map
    factor = (width - 2 * pad) / (x1 - x0)
    kept = {
        code: [r for r in rings if r is largest[code] or area(projected[k] for k in r) * factor**2 >= min_area]
        for code, rings in snapped_by_code.items()
    }
    x0, y0, x1, y1 = bbox(r for rings in kept.values() for r in rings)
    factor = (width - 2 * pad) / (x1 - x0)
    at = {k: ((x - x0) * factor + pad, (y - y0) * factor + pad) for k, (x, y) in projected.items()}
    simplifier = Simplifier(at, tolerance, junctions([r for rings in kept.values() for r in rings]))

    provinces: dict[str, dict] = {}
    for code, rings in sorted(kept.items()):
        out = []
        for ring in rings:
            rounded: list[list[int]] = []
            for key in simplifier.ring(ring):
                point = [round(at[key][0]), round(at[key][1])]
                if not rounded or rounded[-1] != point:
                    rounded.append(point)
            while len(rounded) > 1 and rounded[0] == rounded[-1]:
                rounded.pop()
            if len(rounded) >= 3 and area((x, y) for x, y in rounded) > 0:
                out.append(rounded)
        if not out:  # too small for one whole unit: a 2-unit square where it is, so it is still there
            cx, cy = (round(c) for c in at[largest[code][0]])
            out = [[[cx - 1, cy - 1], [cx + 1, cy - 1], [cx + 1, cy + 1], [cx - 1, cy + 1]]]
        provinces[code] = {"rings": out}
        xs = [x for ring in out for x, _ in ring]
        ys = [y for ring in out for _, y in ring]
        small = max(xs) - min(xs) < MIN_VISIBLE and max(ys) - min(ys) < MIN_VISIBLE
        if small and code not in MARKERS:
            raise SystemExit(f"{code} is under {MIN_VISIBLE} units across: give it a place in MARKERS")
        if code in MARKERS:
            cx, cy = round((max(xs) + min(xs)) / 2), round((max(ys) + min(ys)) / 2)
            dx, dy = MARKERS[code]
            mx, my = cx + dx - MARKER // 2, cy + dy - MARKER // 2
            provinces[code]["marker"] = [mx, my, MARKER]
            provinces[code]["leader"] = [[cx, cy], [mx + MARKER // 2, my]]
            provinces[code]["label"] = [mx + MARKER // 2, my + MARKER + 13]
    height = round((y1 - y0) * factor) + 2 * pad
    projection = {"x0": x0, "y0": y0, "factor": factor, "pad": pad}  # chinamap.project reads these
    return {"provinces": provinces, "width": width, "height": height, "projection": projection}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--dcw", type=Path, help="dcw-gmt.nc (dcw-states.txt beside it)")
    group.add_argument("--natural-earth", type=Path, help="ne_10m_admin_1_states_provinces.geojson")
    parser.add_argument("--package", type=Path, help="the gmt-dcw .deb the --dcw file came from (hashed)")
    parser.add_argument("--commit", default="", help="the natural-earth-vector commit the file came from")
    parser.add_argument("--tolerance", type=float, default=1.0, help="Douglas-Peucker tolerance, in output units")
    parser.add_argument("--min-area", type=float, default=6.0, help="islets under this many square units go")
    parser.add_argument("--width", type=int, default=800)
    args = parser.parse_args()
    if args.dcw:
        rings, kind, source = read_dcw(args.dcw), "dcw-gmt", dict(DCW_PROVENANCE)
        source["sha256"] = sha256_of(args.dcw)
        if args.package:
            source["package_sha256"] = sha256_of(args.package)
    else:
        rings, kind, source = read_natural_earth(args.natural_earth), "natural-earth", dict(NE_PROVENANCE)
        source["sha256"], source["commit"] = sha256_of(args.natural_earth), args.commit
    drawn = draw(rings, args.tolerance, args.width, args.min_area)
    made = {
        "format": FORMAT,
        "kind": kind,
        "source": source,
        "made": {
            "by": "scripts/make_chinamap.py",
            "on": dt.date.today().isoformat(),
            "steps": "Albers (25N, 47N, 105E); Douglas-Peucker on shared arcs, tolerance "
            f"{args.tolerance:g}; islets under {args.min_area:g} square units dropped; whole units; "
            "markers for Hong Kong and Macao",
        },
        **drawn,
    }
    OUT.write_text(json.dumps(made, ensure_ascii=False, separators=(",", ":"), sort_keys=True) + "\n", "utf-8")
    points = sum(len(r) for p in drawn["provinces"].values() for r in p["rings"])
    print(f"{OUT}: {len(drawn['provinces'])} divisions, {points} points, {OUT.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
