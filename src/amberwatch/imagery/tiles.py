"""Small pure Web Mercator tile helpers over mercantile: tile footprints, quadkeys, TMS rows, zoom choice, and the
one copy of the pixel and row math (``lnglat_to_world_px``, ``world_px_to_lnglat``, ``mercator_row_lat_deg``)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import mercantile
import numpy as np

from amberwatch.errors import InvalidInputError
from amberwatch.imagery.types import EARTH_CIRCUMFERENCE_M, TILE_SIZE_PX, LngLatBbox, ground_resolution_m_per_px

MAX_ZOOM = 24
# mercantile clamps latitudes to the Web Mercator limit; tiles never extend beyond it.
MAX_MERCATOR_LAT_DEG = 85.0511287798066
_HALF_WORLD_M = EARTH_CIRCUMFERENCE_M / 2  # Web Mercator x and y run from minus to plus this


def check_tile(z: int, x: int, y: int) -> None:
    """Raise InvalidInputError unless (z, x, y) is a valid XYZ tile."""
    if not (0 <= z <= MAX_ZOOM) or not (0 <= x < 2**z) or not (0 <= y < 2**z):
        raise InvalidInputError(f"tile z={z} x={x} y={y} does not exist (zoom 0..{MAX_ZOOM}, x and y in 0..2**z-1)")


def tile_lnglat_bbox(z: int, x: int, y: int) -> LngLatBbox:
    """The WGS84 footprint of an XYZ tile."""
    b = mercantile.bounds(x, y, z)
    return LngLatBbox(b.west, b.south, b.east, b.north)


def tile_center_lnglat(z: int, x: int, y: int) -> tuple[float, float]:
    """(lon, lat) in degrees of the centre of an XYZ tile."""
    b = mercantile.xy_bounds(x, y, z)
    return mercantile.lnglat((b.left + b.right) / 2, (b.bottom + b.top) / 2)


def tile_resolution_m_per_px(z: int, x: int, y: int) -> float:
    """Ground resolution of an XYZ tile at its centre latitude, in metres per pixel."""
    return ground_resolution_m_per_px(tile_center_lnglat(z, x, y)[1], z)


def tile_to_quadkey(z: int, x: int, y: int) -> str:
    """Bing-style quadkey of an XYZ tile ('' for zoom 0)."""
    return mercantile.quadkey(x, y, z)


def quadkey_to_tile(quadkey: str) -> tuple[int, int, int]:
    """(z, x, y) of a Bing-style quadkey."""
    try:
        t = mercantile.quadkey_to_tile(quadkey)
    except (mercantile.QuadKeyError, ValueError) as exc:
        raise InvalidInputError(f"quadkey {quadkey!r} is not valid (digits 0-3 only)") from exc
    return (t.z, t.x, t.y)


def xyz_to_tms_y(z: int, y: int) -> int:
    """Flip an XYZ (top-origin) row to a TMS (bottom-origin) row; the flip is its own inverse."""
    return (1 << z) - 1 - y


tms_to_xyz_y = xyz_to_tms_y


def lnglat_to_tile(lon_deg: float, lat_deg: float, z: int) -> tuple[int, int, int]:
    """(z, x, y) of the tile containing a point."""
    t = mercantile.tile(lon_deg, lat_deg, z)
    return (t.z, t.x, t.y)


def tiles_for_bbox(bbox: LngLatBbox, z: int) -> Iterator[tuple[int, int, int]]:
    """(z, x, y) of every tile intersecting a bbox, row by row, lazily."""
    for t in mercantile.tiles(bbox.west_deg, bbox.south_deg, bbox.east_deg, bbox.north_deg, zooms=[z]):
        yield (t.z, t.x, t.y)


def tile_count_for_bbox(bbox: LngLatBbox, z: int) -> int:
    """How many tiles intersect a bbox at a zoom, without listing them."""
    ul = mercantile.tile(bbox.west_deg, min(bbox.north_deg, MAX_MERCATOR_LAT_DEG), z)
    lr = mercantile.tile(bbox.east_deg, max(bbox.south_deg, -MAX_MERCATOR_LAT_DEG), z)
    return (abs(lr.x - ul.x) + 1) * (abs(lr.y - ul.y) + 1)


def zoom_for_resolution(resolution_m_per_px: float, lat_deg: float, *, max_zoom: int = MAX_ZOOM) -> int:
    """The zoom whose ground resolution at a latitude is closest (in log scale) to a given m/px."""
    if not (math.isfinite(resolution_m_per_px) and resolution_m_per_px > 0):
        raise InvalidInputError(f"resolution {resolution_m_per_px!r} m/px must be a positive number")
    z0_res = ground_resolution_m_per_px(lat_deg, 0, TILE_SIZE_PX)
    z = round(math.log2(z0_res / resolution_m_per_px))
    return int(min(max(z, 0), max_zoom))


def tile_area_km2(zoom: int, y: int) -> float:
    """Ground area of a web-map tile at its centre latitude, in km²."""
    lat = _tile_center_lat_deg(zoom, y)
    side_m = EARTH_CIRCUMFERENCE_M / (1 << zoom) * math.cos(math.radians(lat))
    return side_m * side_m / 1e6


def _tile_center_lat_deg(zoom: int, y: float) -> float:
    return mercator_row_lat_deg(y + 0.5, 1 << zoom)


def mercator_row_lat_deg(row, rows_across_world: float):
    """Convert a Web Mercator row edge to latitude

    Parameters
    ----------
    row : float or numpy.ndarray
        Distance from the world's north edge, in rows: tiles at a zoom
        (``rows_across_world`` = 2**zoom), cells of a grid or pixels.
    rows_across_world : int or float
        How many such rows span the world from north to south.

    Returns
    -------
    lat_deg : float or numpy.ndarray
        Latitude in decimal degrees (an array for an array). Computed as
        ``mercantile.bounds`` does, so tile edges are the same floats.
    """
    if isinstance(row, np.ndarray):
        return np.degrees(np.arctan(np.sinh(np.pi * (1.0 - 2.0 * row / rows_across_world))))
    return math.degrees(math.atan(math.sinh(math.pi * (1.0 - 2.0 * row / rows_across_world))))


def lnglat_to_world_px(lng_deg: float, lat_deg: float, zoom: float) -> tuple[float, float]:
    """Convert longitude and latitude to Web Mercator pixel coordinates

    Parameters
    ----------
    lng_deg, lat_deg : float
        Longitude and latitude in decimal degrees. The latitude is clamped to
        +/- MAX_MERCATOR_LAT_DEG, where the Web Mercator square ends.
    zoom : int or float
        Zoom level: the world is TILE_SIZE_PX * 2**zoom pixels a side.

    Returns
    -------
    px, py : float
        Pixels from the world's top-left (north-west) corner, y growing south.
    """
    x_m, y_m = mercantile.xy(lng_deg, max(min(lat_deg, MAX_MERCATOR_LAT_DEG), -MAX_MERCATOR_LAT_DEG))
    size = TILE_SIZE_PX * 2**zoom
    return (x_m + _HALF_WORLD_M) / (2 * _HALF_WORLD_M) * size, (_HALF_WORLD_M - y_m) / (2 * _HALF_WORLD_M) * size


def world_px_to_lnglat(px: float, py: float, zoom: float) -> tuple[float, float]:
    """Convert Web Mercator pixel coordinates to longitude and latitude

    Parameters
    ----------
    px, py : float
        Pixels from the world's top-left (north-west) corner at ``zoom``, y growing south.
    zoom : int or float
        Zoom level: the world is TILE_SIZE_PX * 2**zoom pixels a side.

    Returns
    -------
    lng_deg, lat_deg : float
        Longitude and latitude in decimal degrees (the inverse of ``lnglat_to_world_px``).
    """
    size = TILE_SIZE_PX * 2**zoom
    x_m, y_m = px / size * 2 * _HALF_WORLD_M - _HALF_WORLD_M, _HALF_WORLD_M - py / size * 2 * _HALF_WORLD_M
    lng, lat = mercantile.lnglat(x_m, y_m)
    return float(lng), float(lat)
