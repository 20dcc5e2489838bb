"""Helpers of the timeline tests: dated scans written through results.store into a real project DB."""

from __future__ import annotations

import json

import mercantile
from shapely.geometry import box, mapping

from amberwatch.db import connect
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

ZOOM = 18
X0, Y0 = mercantile.tile(26.90, 51.32, ZOOM)[:2]
AOI = '{"type":"Polygon","coordinates":[[[26.9,51.3],[26.91,51.3],[26.91,51.31],[26.9,51.3]]]}'


def open_db(path):
    """A project DB with the results tables."""
    conn = connect(path)
    ensure_schema(conn)
    return conn


def tile_box(i: int, j: int, inset: float = 0.1, z: int = ZOOM):
    """A box inside tile (X0 + i, Y0 + j), inset by a share of the tile on each side."""
    b = mercantile.bounds(X0 + i, Y0 + j, z)
    dx, dy = (b.east - b.west) * inset, (b.north - b.south) * inset
    return box(b.west + dx, b.south + dy, b.east - dx, b.north - dy)


def detection(geom, area_ha: float) -> DetectionRow:
    """A detection row of a polygon with the given hectares."""
    c = geom.centroid
    return DetectionRow(json.dumps(mapping(geom)), c.x, c.y, geom.bounds, area_ha, 0.9, 0.95, None, "1", None)


def add_scan(conn, date, found, *, tiles=None, zoom=ZOOM, model="1", aoi=AOI, valid=None, finished=True) -> int:
    """A finished scan at an imagery date: done tiles (i, j) offsets (default a 4x4 block), its detections
    (geometry, hectares); ``valid``: (i, j) -> valid_cells bytes of that tile (8 x 8 cells)."""
    tiles = [(i, j) for i in range(4) for j in range(4)] if tiles is None else tiles
    new = NewScan(f"scan {date}", aoi, "test", f"src@{date}", zoom, model, 0.5, ScanParams(), len(tiles), None, date)
    scan_id = create_scan(conn, new)
    valid = valid or {}
    rows = [TileRow(zoom, X0 + i, Y0 + j, "done", grid_cells=8, valid_cells=valid.get((i, j))) for i, j in tiles]
    write_tiles(conn, scan_id, rows)
    replace_detections(conn, scan_id, [detection(g, a) for g, a in found])
    if finished:
        set_scan_status(conn, scan_id, "finished")
    return scan_id
