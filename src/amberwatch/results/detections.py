"""Detections: cells above the model threshold merged across tile edges into lon/lat polygons with hectares.

Cells are addressed globally as (column, row) on the scan zoom's grid of ``cells_per_tile`` cells per
tile, so neighbouring cells in different tiles are neighbours here too. Each 8-connected group of
positive cells becomes one (Multi)Polygon: the union of its cell squares in lon/lat, lightly
simplified, exterior rings counter-clockwise (RFC 7946). Areas are geodesic on the WGS84 ellipsoid.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import shapely
from pyproj import Geod
from shapely.geometry import MultiPolygon, Polygon, mapping
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

from amberwatch.errors import AmberwatchError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.decode import encode_jpeg
from amberwatch.imagery.mosaic import render_bbox
from amberwatch.imagery.sources import open_cached_source
from amberwatch.imagery.tiles import mercator_row_lat_deg
from amberwatch.imagery.types import DATE_FORM, LngLatBbox
from amberwatch.results.store import DetectionRow, get_scan, grid_tiles, replace_detections

_GEOD = Geod(ellps="WGS84")
THUMBNAIL_PX = 256
CHIP_MAX_TILES = 4  # a chip of a very large detection shows its central 4 x 4 tiles


@dataclass
class FoundDetection:
    """One merged detection before it is stored (``results.records.Detection`` is a stored one)."""

    geometry: BaseGeometry
    area_ha: float
    mean_prob: float
    max_prob: float
    capture_date: str | None
    n_cells: int


def geodesic_area_ha(geometry: BaseGeometry) -> float:
    """Area of a lon/lat (Multi)Polygon on the WGS84 ellipsoid, in hectares."""
    area_m2, _ = _GEOD.geometry_area_perimeter(geometry)
    return abs(area_m2) / 1e4


def cell_lon_deg(col: float, cells_across_world: int) -> float:
    """Longitude of a global cell column edge."""
    return col / cells_across_world * 360.0 - 180.0


def cell_lat_deg(row: float, cells_across_world: int) -> float:
    """Latitude of a global cell row edge (Web Mercator rows, top origin)."""
    return mercator_row_lat_deg(row, cells_across_world)


def orient_ccw(geometry: BaseGeometry) -> BaseGeometry:
    """Exterior rings counter-clockwise, holes clockwise (the GeoJSON right-hand rule)."""
    if isinstance(geometry, Polygon):
        return orient(geometry, sign=1.0)
    if isinstance(geometry, MultiPolygon):
        return MultiPolygon([orient(p, sign=1.0) for p in geometry.geoms])
    return geometry


def _components(cells: dict[tuple[int, int], float]) -> list[list[tuple[int, int]]]:
    """8-connected groups of cells, each sorted, groups ordered by their first cell (row, then column)."""
    seen: set[tuple[int, int]] = set()
    groups = []
    for start in sorted(cells, key=lambda c: (c[1], c[0])):
        if start in seen:
            continue
        seen.add(start)
        stack, group = [start], []
        while stack:
            cx, cy = stack.pop()
            group.append((cx, cy))
            for dx in (-1, 0, 1):
                for dy in (-1, 0, 1):
                    nb = (cx + dx, cy + dy)
                    if nb in cells and nb not in seen:
                        seen.add(nb)
                        stack.append(nb)
        groups.append(sorted(group, key=lambda c: (c[1], c[0])))
    return groups


def cells_polygon(group: Iterable[tuple[int, int]], cells_across_world: int) -> BaseGeometry:
    """Union of the lon/lat squares of global cells, lightly simplified, CCW exteriors.

    The union is traced on the cell raster (rasterio ``shapes``, 4-connected: cells touching only at a
    corner stay separate parts, as a shapely union of squares would) and the vertices are then mapped
    from cell edges to lon/lat; cell edges are meridians and parallels, so the shape is the same.
    """
    from rasterio.features import shapes

    cols = np.fromiter((c for c, _ in group), dtype=np.int64)
    rows = np.fromiter((r for _, r in group), dtype=np.int64)
    c0, r0 = int(cols.min()), int(rows.min())
    mask = np.zeros((int(rows.max()) - r0 + 1, int(cols.max()) - c0 + 1), dtype=np.uint8)
    mask[rows - r0, cols - c0] = 1
    parts = [
        shapely.geometry.shape(geom) for geom, value in shapes(mask, mask=mask.astype(bool), connectivity=4) if value
    ]
    merged = shapely.union_all(parts) if len(parts) > 1 else parts[0]
    n = cells_across_world

    def to_lonlat(xy: np.ndarray) -> np.ndarray:
        lon = (xy[:, 0] + c0) / n * 360.0 - 180.0
        lat = mercator_row_lat_deg(xy[:, 1] + r0, n)
        return np.column_stack([lon, lat])

    lonlat = shapely.transform(merged, to_lonlat)
    cell_deg = 360.0 / n
    simplified = lonlat.simplify(cell_deg * 0.05, preserve_topology=True)
    if simplified.is_empty or not simplified.is_valid:
        simplified = lonlat
    return orient_ccw(simplified)


def find_detections(conn: sqlite3.Connection, scan_id: int, *, min_area_ha: float) -> list[FoundDetection]:
    """Merge the above-threshold cells of a scan's tiles into detections (not yet stored).

    A detection's capture date is its cells' most common tile date (the latest on a tie); where its tiles have
    none, the scan's imagery date if that is a date (not a release name).
    """
    scan = get_scan(conn, scan_id)
    fallback_date = scan.imagery_date if scan.imagery_date and DATE_FORM.match(scan.imagery_date) else None
    zoom, threshold = scan.zoom, float(scan.model_threshold)
    min_level = math.ceil(threshold * 255.0 - 1e-9)  # cell positive when round(255 p) >= 255 thr
    cells: dict[tuple[int, int], float] = {}
    cell_dates: dict[tuple[int, int], str | None] = {}
    cells_per_tile = None
    for tile in grid_tiles(conn, scan_id, min_max_prob=(min_level - 0.5) / 255.0):
        g = int(tile.grid_cells)
        if cells_per_tile is None:
            cells_per_tile = g
        elif g != cells_per_tile:
            continue  # one grid size per scan; a mismatched row cannot be placed on the grid
        grid = np.frombuffer(tile.grid, dtype=np.uint8).reshape(g, g)
        for r, c in zip(*np.nonzero(grid >= min_level)):
            key = (int(tile.x) * g + int(c), int(tile.y) * g + int(r))
            cells[key] = float(grid[r, c]) / 255.0
            cell_dates[key] = tile.capture_date
    if not cells:
        return []
    n = (1 << zoom) * int(cells_per_tile)
    found = []
    for group in _components(cells):
        geom = cells_polygon(group, n)
        area = geodesic_area_ha(geom)
        if area < min_area_ha:
            continue
        probs = np.array([cells[c] for c in group])
        dates = Counter(cell_dates[c] for c in group if cell_dates[c])
        date = max(dates.items(), key=lambda kv: (kv[1], kv[0]))[0] if dates else fallback_date
        found.append(FoundDetection(geom, area, float(probs.mean()), float(probs.max()), date, len(group)))
    return found


def rebuild_detections(
    conn: sqlite3.Connection,
    scan_id: int,
    *,
    min_area_ha: float,
    cache_path: str | None = None,
    thumbnails: bool = True,
) -> int:
    """Replace a scan's detections with those built from all its tile grids, in one transaction.

    Unchanged outlines keep their ids; vanished ones are deleted, new ones inserted.
    """
    scan = get_scan(conn, scan_id)
    found = find_detections(conn, scan_id, min_area_ha=min_area_ha)
    chips = _thumbnails(found, cache_path, scan.imagery_source_id, scan.zoom) if thumbnails else {}
    rows = []
    for i, det in enumerate(found):
        centroid = det.geometry.centroid
        rows.append(
            DetectionRow(
                json.dumps(mapping(det.geometry)),
                centroid.x,
                centroid.y,
                det.geometry.bounds,
                det.area_ha,
                det.mean_prob,
                det.max_prob,
                det.capture_date,
                scan.model_version,
                chips.get(i),
            )
        )
    replace_detections(conn, scan_id, rows)
    return len(rows)


def _chip_bbox(geometry: BaseGeometry, zoom: int):
    """The polygon's bbox padded by a quarter, capped at CHIP_MAX_TILES tiles a side around its centre."""

    west, south, east, north = geometry.bounds
    pad_x, pad_y = (east - west) * 0.25 + 1e-5, (north - south) * 0.25 + 1e-5
    west, south, east, north = west - pad_x, south - pad_y, east + pad_x, north + pad_y
    max_deg = CHIP_MAX_TILES * 360.0 / (1 << zoom)
    cx, cy = (west + east) / 2, (south + north) / 2
    half_x = min((east - west) / 2, max_deg / 2)
    half_y = min((north - south) / 2, max_deg / 2 * math.cos(math.radians(cy)))
    return LngLatBbox(
        max(-180.0, cx - half_x), max(-85.0, cy - half_y), min(180.0, cx + half_x), min(85.0, cy + half_y)
    )


def _thumbnails(found: list[FoundDetection], cache_path: str | None, source_id: str, zoom: int) -> dict[int, bytes]:
    """JPEG chips of the cached imagery around each detection (missing tiles render black)."""
    if not found or not cache_path:
        return {}

    chips: dict[int, bytes] = {}
    with TileCache(cache_path) as cache:
        source = open_cached_source(cache, source_id)
        try:
            for i, det in enumerate(found):
                bbox = _chip_bbox(det.geometry, zoom)
                try:
                    image = render_bbox(source, bbox, zoom, max_px=THUMBNAIL_PX)
                    chips[i] = encode_jpeg(image.pixels)
                except AmberwatchError:
                    continue
        finally:
            source.close()
    return chips
