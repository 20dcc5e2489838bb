"""Image chips for the web app: rendered from the tile cache around a place, else a detection's thumbnail."""

from __future__ import annotations

import math
import sqlite3

import mercantile
import numpy as np

from amberwatch.errors import InvalidInputError, NotFoundError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.decode import decode_image
from amberwatch.imagery.types import LngLatBbox
from amberwatch.results.store import get_detection

CHIP_MAX_PX = 512
MAX_MERCATOR_LAT = 85.0511287798
TILE_CONTEXT = 0.25  # a tile's chip shows a quarter of a tile of its neighbours on each side
MIN_CHIP_SIDE_M = 40.0
M_PER_DEG_LAT = 111_320.0


def padded_bbox(
    west: float, south: float, east: float, north: float, *, pad_frac: float = 0.25, min_side_m: float = MIN_CHIP_SIDE_M
) -> LngLatBbox:
    """A bbox grown by ``pad_frac`` on each side and to at least ``min_side_m`` metres square."""
    lat = (south + north) / 2
    m_per_deg_lon = M_PER_DEG_LAT * max(math.cos(math.radians(lat)), 1e-6)
    half_w_m = max((east - west) * m_per_deg_lon * (0.5 + pad_frac), min_side_m / 2)
    half_h_m = max((north - south) * M_PER_DEG_LAT * (0.5 + pad_frac), min_side_m / 2)
    half_m = max(half_w_m, half_h_m)
    cx, cy = (west + east) / 2, lat
    dx, dy = half_m / m_per_deg_lon, half_m / M_PER_DEG_LAT
    return LngLatBbox(max(cx - dx, -180.0), max(cy - dy, -85.0), min(cx + dx, 180.0), min(cy + dy, 85.0))


def cache_covers(cache: TileCache, source_id: str, bbox: LngLatBbox, zoom: int) -> bool:
    """True when at least one tile with imagery covering ``bbox`` at ``zoom`` is in the cache."""
    for t in mercantile.tiles(*bbox.as_tuple(), zooms=[zoom]):
        row = cache.get(source_id, t.z, t.x, t.y)
        if row is not None and row["status"] == "ok":
            return True
    return False


def render_from_cache(cache: TileCache, source_id: str, bbox: LngLatBbox, zoom: int) -> np.ndarray | None:
    """HxWx3 pixels of ``bbox`` mosaicked from cached tiles at ``zoom``, or None when the cache has none there."""
    if not cache_covers(cache, source_id, bbox, zoom):
        return None
    from amberwatch.imagery.mosaic import open_cached_source, render_bbox

    source = open_cached_source(cache, source_id)
    try:
        return render_bbox(source, bbox, zoom, max_px=CHIP_MAX_PX).pixels
    finally:
        source.close()


def detection_chip(conn: sqlite3.Connection, cache: TileCache, detection_id: int) -> np.ndarray:
    """The image of a detection: from cached imagery around it, else its stored thumbnail, else NotFoundError."""
    row = get_detection(conn, detection_id, thumbnail=True)
    bbox = padded_bbox(row["west"], row["south"], row["east"], row["north"])
    pixels = render_from_cache(cache, row["imagery_source_id"], bbox, int(row["zoom"]))
    if pixels is not None:
        return pixels
    if row["thumbnail"]:
        return decode_image(bytes(row["thumbnail"]), f"thumbnail of detection {detection_id}")
    raise NotFoundError(f"detection {detection_id!r} has no cached imagery and no thumbnail")


def tile_bbox(z: int, x: int, y: int) -> LngLatBbox:
    """Lon/lat bbox of a Web Mercator tile; InvalidInputError naming a tile outside the zoom's range."""
    if not (0 <= z <= 30 and 0 <= x < 2**z and 0 <= y < 2**z):
        raise InvalidInputError(f"tile {z}/{x}/{y} does not exist: x and y must be within 0..2^z-1 (z 0..30)")
    b = mercantile.bounds(x, y, z)
    return LngLatBbox(b.west, b.south, b.east, b.north)


def tile_chip_bbox(z: int, x: int, y: int) -> LngLatBbox:
    """The area a tile's chip shows: the tile and a margin of its neighbours (within the Web Mercator world)."""
    b = tile_bbox(z, x, y)
    dx, dy = (b.east_deg - b.west_deg) * TILE_CONTEXT, (b.north_deg - b.south_deg) * TILE_CONTEXT
    return LngLatBbox(
        max(b.west_deg - dx, -180.0),
        max(b.south_deg - dy, -MAX_MERCATOR_LAT),
        min(b.east_deg + dx, 180.0),
        min(b.north_deg + dy, MAX_MERCATOR_LAT),
    )


def tile_chip(cache: TileCache, source_id: str, z: int, x: int, y: int) -> np.ndarray:
    """Pixels of a tile with some context, from cached imagery at the tile's zoom; NotFoundError when none is cached."""
    pixels = render_from_cache(cache, source_id, tile_chip_bbox(z, x, y), z)
    if pixels is None:
        raise NotFoundError(f"no cached imagery of source {source_id!r} around tile {z}/{x}/{y}")
    return pixels
