"""A web project with one AOI scanned at three imagery dates, written through ``results.store`` into real files.

3 x 3 tiles at zoom 17 around Klesiv, each date with its own cached imagery (source ``dated@<date>``) where the pit
fields of that date are painted sandy. Four sites, one per tile:

- ``growing``: 0.2 ha in 2019, larger in 2021, larger again in 2023;
- ``new``: nothing in 2019 and 2021 (scanned, nothing found), found in 2023 (new since 2021-06-26);
- ``stable``: the same outline at every date;
- ``gap``: the same outline in 2019 and 2023; its tile has no imagery in 2021 (null there).

Probability grids are empty unless ``site_grids``: then a cell whose centre lies in a site of its date is mining.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import mercantile
import numpy as np
from shapely.geometry import Point, box, mapping

from amberwatch.db import connect
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.decode import encode_jpeg, encode_png
from amberwatch.project import tile_cache_path
from amberwatch.results.records import ScanParams
from amberwatch.results.store import (
    DetectionRow,
    NewScan,
    TileRow,
    create_scan,
    ensure_schema,
    replace_detections,
    set_scan_status,
    write_tiles,
)
from amberwatch.review.schema import ensure_schema as ensure_web_schema
from amberwatch.web.users import add_user
from tests.web.conftest import CENTER_LAT, CENTER_LON, ZOOM, imagery_tile

DATES = ("2019-06-26", "2021-06-26", "2023-06-26")
CENTER = mercantile.tile(CENTER_LON, CENTER_LAT, ZOOM)
# Site -> (tile offset, half size in tile shares per date; 0: nothing found there at that date).
SITES = {
    "growing": ((0, 0), (0.08, 0.14, 0.22)),
    "new": ((1, -1), (0.0, 0.0, 0.18)),
    "stable": ((-1, 0), (0.15, 0.15, 0.15)),
    "gap": ((1, 1), (0.12, 0.12, 0.12)),
}
NO_IMAGERY = {("gap", "2021-06-26")}  # (site, date) whose tile has no imagery at that date
SAND = np.array([215, 200, 160])


@dataclass
class DatedProject:
    """The project's paths, its scan per date, each site's detection id per date, and the users' tokens."""

    db_path: Path
    cache_path: Path
    scan_ids: dict[str, int]
    detections: dict[str, dict[str, int]]  # site -> date -> detection id (dates where it was found)
    reviewer_token: str
    tiles: list[tuple[int, int, int]]


def site_box(site: str, date: str):
    """The site's outline at a date (a box centred in its tile), or None where nothing is there."""
    (dx, dy), halves = SITES[site]
    half = halves[DATES.index(date)]
    if half <= 0 or (site, date) in NO_IMAGERY:
        return None
    b = mercantile.bounds(CENTER.x + dx, CENTER.y + dy, ZOOM)
    cx, cy, w, h = (b.west + b.east) / 2, (b.south + b.north) / 2, b.east - b.west, b.north - b.south
    return box(cx - half * w, cy - half * h, cx + half * w, cy + half * h)


def _tile_image(x: int, y: int, date: str) -> np.ndarray:
    """The tile at a date: fields, and the sites found then painted sandy; a blank tile where there is no imagery."""
    for site, ((dx, dy), _) in SITES.items():
        if (site, date) in NO_IMAGERY and (x, y) == (CENTER.x + dx, CENTER.y + dy):
            return np.full((256, 256, 3), 235, np.uint8)
    rng = np.random.default_rng(x * 7 + y)  # the same fields at every date
    img = imagery_tile(rng, 0, 0).copy()
    b = mercantile.bounds(x, y, ZOOM)
    for site in SITES:
        outline = site_box(site, date)
        if outline is None or not outline.intersects(box(b.west, b.south, b.east, b.north)):
            continue
        w, s, e, n = outline.bounds
        px = [int((v - b.west) / (b.east - b.west) * 256) for v in (w, e)]
        py = [int((b.north - v) / (b.north - b.south) * 256) for v in (n, s)]
        img[max(0, py[0]) : py[1], max(0, px[0]) : px[1]] = SAND
    return img


def site_grid(x: int, y: int, date: str, cells: int = 8) -> bytes:
    """The tile's probability grid at a date: 0.9 where a cell's centre is inside a site found then, else 0.1."""
    b = mercantile.bounds(x, y, ZOOM)
    grid = np.full((cells, cells), 26, np.uint8)
    for row in range(cells):
        for col in range(cells):
            lon = b.west + (col + 0.5) / cells * (b.east - b.west)
            lat = b.north - (row + 0.5) / cells * (b.north - b.south)
            if any(site_box(s, date) is not None and site_box(s, date).contains(Point(lon, lat)) for s in SITES):
                grid[row, col] = 230
    return grid.tobytes()


def _scan(conn, cache: TileCache, date: str, tiles: list[tuple[int, int, int]], aoi: str, grids: bool) -> int:
    source = f"dated@{date}"
    cache.register_source(source, "http://example.invalid/{date}/{z}/{x}/{y}.png", base_source_id="dated")
    rows = []
    for z, x, y in tiles:
        img = _tile_image(x, y, date)
        cache.put(source, z, x, y, encode_png(img), content_type="image/png", capture_date=date)
        blank = bool((img == 235).all())
        grid = site_grid(x, y, date) if grids else bytes(64)
        rows.append(TileRow(z, x, y, "done", None, date, 0.9, 8, grid, None, bytes(64) if blank else None))
    params = ScanParams(imagery_credit=f"Test imagery of {date}")
    new = NewScan(f"Klesiv {date}", aoi, "http://example.invalid/{date}", source, ZOOM, "0", 0.5, params, 9, None, date)
    scan_id = create_scan(conn, new)
    write_tiles(conn, scan_id, rows)
    found = []
    for site in SITES:
        outline = site_box(site, date)
        if outline is not None:
            c = outline.centroid
            area_ha = outline.area * (111_320**2) * 0.624 / 10_000
            thumb = encode_jpeg(_tile_image(*tiles[4][1:], date)[64:192, 64:192])
            geojson = json.dumps(mapping(outline))
            found.append(DetectionRow(geojson, c.x, c.y, outline.bounds, area_ha, 0.9, 0.95, date, "0", thumb))
    replace_detections(conn, scan_id, found)
    set_scan_status(conn, scan_id, "finished")
    return scan_id


def build_dated_project(tmp_path: Path, *, site_grids: bool = False) -> DatedProject:
    """The AOI scanned at the three dates, oldest first, with a reviewer (``site_grids``: grids that map the sites)."""
    db_path = tmp_path / "dated.db"
    conn = connect(db_path)
    ensure_schema(conn)
    ensure_web_schema(conn)
    tiles = [(ZOOM, CENTER.x + dx, CENTER.y + dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    nw, se = mercantile.bounds(CENTER.x - 1, CENTER.y - 1, ZOOM), mercantile.bounds(CENTER.x + 1, CENTER.y + 1, ZOOM)
    aoi = json.dumps(mapping(box(nw.west, se.south, se.east, nw.north)))
    cache_path = tile_cache_path(db_path)
    with TileCache(cache_path) as cache:
        scan_ids = {date: _scan(conn, cache, date, tiles, aoi, site_grids) for date in DATES}
    detections: dict[str, dict[str, int]] = {site: {} for site in SITES}
    for date, scan_id in scan_ids.items():
        for (did,) in conn.execute("SELECT id FROM detections WHERE scan_id = ? ORDER BY id", (scan_id,)):
            site = _site_at(conn, did)
            detections[site][date] = int(did)
    reviewer = add_user(conn, "olena", reviewer=True)
    conn.close()
    return DatedProject(db_path, cache_path, scan_ids, detections, reviewer, tiles)


def _site_at(conn, detection_id: int) -> str:
    sql = "SELECT centroid_lon, centroid_lat FROM detections WHERE id = ?"
    lon, lat = conn.execute(sql, (detection_id,)).fetchone()
    t = mercantile.tile(lon, lat, ZOOM)
    return next(s for s, ((dx, dy), _) in SITES.items() if (t.x, t.y) == (CENTER.x + dx, CENTER.y + dy))
