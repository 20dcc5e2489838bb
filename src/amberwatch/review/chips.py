"""Review chips: images of a detection or a tile, rendered from the tile cache around it, else its thumbnail.

Two kinds: training chips (``detection_chip``, ``tile_chip``: the pixels an example stores) and views for people
(``render_view``, ``outlined_detection_chip``, ``detection_view``, ``tile_view``, ``thumbnail_view``): a square of at
least ``VIEW_MIN_PX`` native pixels around the place with a ring of its surroundings, so a page never has to blow a
small chip up past twice its size.

Views for people never show no-data as black bands: where no imagery lies (outside the cached tiles, transparent
parts of tiles) they show a light neutral checkerboard (``neutral_nodata``). Training chips keep the pixels the model
sees. Without a ``valid`` mask (a stored thumbnail, a chip already rendered) no-data is found from the pixels, the way
``nodata_mask`` finds it: dark areas touching the border or large (the story uses it too).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3

import mercantile
import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from amberwatch.errors import InvalidInputError, NotFoundError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.decode import decode_image, encode_jpeg
from amberwatch.imagery.tiles import MAX_MERCATOR_LAT_DEG, lnglat_to_world_px, world_px_to_lnglat
from amberwatch.imagery.types import GeoImage, LngLatBbox
from amberwatch.results.store import get_detection

CHIP_MAX_PX = 512
VIEW_MIN_PX = 256  # a view is at least this many native pixels a side: pages show it at 1x to 2x
VIEW_MAX_PX = 512  # larger areas are shrunk to this (sharper than native, never blurrier)
VIEW_CONTEXT = 2.0  # a view spans twice the place's size: a ring of half its size on every side
OUTLINE_RGB = (0, 229, 255)
TILE_CONTEXT = 0.25  # a tile's chip shows a quarter of a tile of its neighbours on each side
MIN_CHIP_SIDE_M = 40.0
M_PER_DEG_LAT = 111_320.0
NODATA_LEVEL = 8  # JPEG noise keeps pure black within a few levels of 0
MIN_HOLE_SHARE = 0.01  # a dark area inside the image is no-data when at least this share of it
CHECKER_PX = 8
CHECKER_RGB = ((222, 222, 222), (240, 240, 240))  # light and neutral: never read as imagery, never as black
# A reported point's training chip: the side of the crop the recipes train on (160 px at 0.76 m/px, about 120 m).
POINT_CHIP_SIDE_M = 120.0
POINT_MARK_PX = 10  # radius of the ring marking a reported point on its view


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
        if row is not None and row.status == "ok":
            return True
    return False


def render_image(
    cache: TileCache, source_id: str, bbox: LngLatBbox, zoom: int, max_px: int = CHIP_MAX_PX
) -> GeoImage | None:
    """``bbox`` mosaicked from cached tiles at ``zoom`` (its bbox snapped to whole pixels), or None without tiles."""
    if not cache_covers(cache, source_id, bbox, zoom):
        return None
    from amberwatch.imagery.mosaic import open_cached_source, render_bbox

    source = open_cached_source(cache, source_id)
    try:
        return render_bbox(source, bbox, zoom, max_px=max_px)
    finally:
        source.close()


def render_from_cache(cache: TileCache, source_id: str, bbox: LngLatBbox, zoom: int) -> np.ndarray | None:
    """HxWx3 pixels of ``bbox`` mosaicked from cached tiles at ``zoom``, or None when the cache has none there."""
    image = render_image(cache, source_id, bbox, zoom)
    return None if image is None else image.pixels


def view_bbox(bbox: LngLatBbox, zoom: int) -> LngLatBbox:
    """The area a page shows around ``bbox``: a square twice its size, and at least VIEW_MIN_PX pixels at ``zoom``."""
    x0, y0 = lnglat_to_world_px(bbox.west_deg, bbox.north_deg, zoom)
    x1, y1 = lnglat_to_world_px(bbox.east_deg, bbox.south_deg, zoom)
    half = max(max(x1 - x0, y1 - y0) * VIEW_CONTEXT, VIEW_MIN_PX) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    west, north = world_px_to_lnglat(cx - half, cy - half, zoom)
    east, south = world_px_to_lnglat(cx + half, cy + half, zoom)
    return LngLatBbox(
        max(west, -180.0), max(south, -MAX_MERCATOR_LAT_DEG), min(east, 180.0), min(north, MAX_MERCATOR_LAT_DEG)
    )


def box_fractions(inner: LngLatBbox, outer: LngLatBbox) -> list[float]:
    """``inner`` as fractions [left, top, right, bottom] of ``outer``'s width and height, in Web Mercator."""
    ox0, oy0 = lnglat_to_world_px(outer.west_deg, outer.north_deg, 0)
    ox1, oy1 = lnglat_to_world_px(outer.east_deg, outer.south_deg, 0)
    ix0, iy0 = lnglat_to_world_px(inner.west_deg, inner.north_deg, 0)
    ix1, iy1 = lnglat_to_world_px(inner.east_deg, inner.south_deg, 0)
    w, h = (ox1 - ox0) or 1e-12, (oy1 - oy0) or 1e-12
    return [round(v, 4) for v in ((ix0 - ox0) / w, (iy0 - oy0) / h, (ix1 - ox0) / w, (iy1 - oy0) / h)]


def nodata_mask(pixels: np.ndarray) -> np.ndarray:
    """HxW booleans, True where an RGB image holds no imagery, from its pixels: dark areas (every channel at most
    NODATA_LEVEL) that touch the border or are large, grown by a pixel to swallow JPEG fringes."""
    dark = pixels.max(axis=2) <= NODATA_LEVEL
    if not dark.any():
        return dark
    labels, n = ndimage.label(dark)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= MIN_HOLE_SHARE * dark.size
    keep[np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))] = True
    keep[0] = False  # label 0 is the imagery
    mask = keep[labels]
    return ndimage.binary_dilation(mask) if mask.any() else mask


def neutral_nodata(pixels: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """The pixels with no-data (outside ``valid``, else found by ``nodata_mask``) shown as a light checkerboard."""
    missing = ~valid.astype(bool) if valid is not None else nodata_mask(pixels)
    if not missing.any():
        return pixels
    h, w = missing.shape
    yy, xx = np.mgrid[0:h, 0:w]
    checker = np.where((((yy // CHECKER_PX) + (xx // CHECKER_PX)) % 2 == 0)[..., None], *CHECKER_RGB)
    out = pixels.copy()
    out[missing] = checker[missing].astype(np.uint8)
    return out


def render_view(cache: TileCache, source_id: str, bbox: LngLatBbox, zoom: int) -> GeoImage | None:
    """The view of ``bbox`` (``view_bbox``) from cached imagery at ``zoom`` (no-data neutral), or None when none is
    cached there."""
    image = render_image(cache, source_id, view_bbox(bbox, zoom), zoom, max_px=VIEW_MAX_PX)
    if image is None or image.valid is None:
        return image
    return dataclasses.replace(image, pixels=neutral_nodata(image.pixels, image.valid))


def draw_outline(image: GeoImage, geometry: dict) -> np.ndarray:
    """A copy of the image's pixels with a GeoJSON (Multi)Polygon's rings drawn on: cyan over a dark halo."""
    canvas = Image.fromarray(image.pixels)
    draw = ImageDraw.Draw(canvas)
    h, w = image.pixels.shape[:2]
    b = image.bbox
    x0, y0 = lnglat_to_world_px(b.west_deg, b.north_deg, 0)
    x1, y1 = lnglat_to_world_px(b.east_deg, b.south_deg, 0)
    polygons = geometry["coordinates"] if geometry.get("type") == "MultiPolygon" else [geometry.get("coordinates", [])]
    for ring in (ring for polygon in polygons for ring in polygon):
        points = []
        for lon, lat, *_ in ring:
            px, py = lnglat_to_world_px(lon, lat, 0)
            points.append(((px - x0) / (x1 - x0) * w, (py - y0) / (y1 - y0) * h))
        if len(points) >= 2:
            draw.line(points + points[:1], fill=(0, 0, 0), width=4, joint="curve")
            draw.line(points + points[:1], fill=OUTLINE_RGB, width=2, joint="curve")
    return np.asarray(canvas, dtype=np.uint8)


def detection_chip(conn: sqlite3.Connection, cache: TileCache, detection_id: int) -> np.ndarray:
    """The image of a detection: from cached imagery around it, else its stored thumbnail, else NotFoundError."""
    det = get_detection(conn, detection_id, thumbnail=True)
    bbox = padded_bbox(*det.bbox.as_tuple())
    pixels = render_from_cache(cache, det.imagery_source_id, bbox, det.zoom)
    if pixels is not None:
        return pixels
    if det.thumbnail:
        return decode_image(det.thumbnail, f"thumbnail of detection {detection_id}")
    raise NotFoundError(f"detection {detection_id!r} has no cached imagery and no thumbnail")


def outlined_detection_chip(conn: sqlite3.Connection, cache: TileCache, detection_id: int) -> np.ndarray:
    """A detection's view with its outline drawn on, for reviewers (never a training chip: the line is not imagery).

    Without cached imagery it is the stored thumbnail, without outline (its exact extent is not known here).
    """
    det = get_detection(conn, detection_id)
    image = render_view(cache, det.imagery_source_id, det.bbox, det.zoom)
    if image is None:
        return neutral_nodata(detection_chip(conn, cache, detection_id))
    return draw_outline(image, json.loads(det.geometry_geojson))


def detection_view(conn: sqlite3.Connection, cache: TileCache, detection_id: int) -> np.ndarray:
    """A detection's training chip as people see it: its no-data neutral, not black."""
    return neutral_nodata(detection_chip(conn, cache, detection_id))


def thumbnail_view(jpeg: bytes, what: str) -> bytes:
    """A stored JPEG thumbnail as people see it: unchanged, or re-encoded with its no-data neutral."""
    pixels = decode_image(jpeg, what)
    shown = neutral_nodata(pixels)
    return jpeg if shown is pixels else encode_jpeg(shown)


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
        max(b.south_deg - dy, -MAX_MERCATOR_LAT_DEG),
        min(b.east_deg + dx, 180.0),
        min(b.north_deg + dy, MAX_MERCATOR_LAT_DEG),
    )


def tile_chip(cache: TileCache, source_id: str, z: int, x: int, y: int) -> np.ndarray:
    """Pixels of a tile with some context, from cached imagery at the tile's zoom; NotFoundError when none is cached."""
    pixels = render_from_cache(cache, source_id, tile_chip_bbox(z, x, y), z)
    if pixels is None:
        raise NotFoundError(f"no cached imagery of source {source_id!r} around tile {z}/{x}/{y}")
    return pixels


def tile_view(cache: TileCache, source_id: str, z: int, x: int, y: int) -> np.ndarray:
    """A tile's chip (``tile_chip``) as people see it: where no imagery is cached around it, a neutral checkerboard."""
    image = render_image(cache, source_id, tile_chip_bbox(z, x, y), z)
    if image is None:
        raise NotFoundError(f"no cached imagery of source {source_id!r} around tile {z}/{x}/{y}")
    return neutral_nodata(image.pixels, image.valid)


def point_bbox(lon: float, lat: float, side_m: float = POINT_CHIP_SIDE_M) -> LngLatBbox:
    """A square of ``side_m`` metres centred on a point."""
    return padded_bbox(lon, lat, lon, lat, pad_frac=0.0, min_side_m=side_m)


def point_chip(cache: TileCache, source_id: str, zoom: int, lon: float, lat: float) -> np.ndarray:
    """The training chip of a point (``POINT_CHIP_SIDE_M`` square, centred on it) from cached imagery at ``zoom``;
    NotFoundError when none is cached there."""
    pixels = render_from_cache(cache, source_id, point_bbox(lon, lat), zoom)
    if pixels is None:
        raise NotFoundError(f"no cached imagery of source {source_id!r} at ({lon:.6f}, {lat:.6f})")
    return pixels


def point_view(cache: TileCache, source_id: str, zoom: int, lon: float, lat: float) -> np.ndarray:
    """The view around a point for people (no-data neutral) with the point marked by a ring; NotFoundError without
    cached imagery there."""
    image = render_view(cache, source_id, point_bbox(lon, lat), zoom)
    if image is None:
        raise NotFoundError(f"no cached imagery of source {source_id!r} at ({lon:.6f}, {lat:.6f})")
    canvas = Image.fromarray(image.pixels)
    h, w = image.pixels.shape[:2]
    left, top, _, _ = box_fractions(LngLatBbox(lon, lat, lon, lat), image.bbox)
    cx, cy, r = left * w, top * h, POINT_MARK_PX
    draw = ImageDraw.Draw(canvas)
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=(0, 0, 0), width=4)
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=OUTLINE_RGB, width=2)
    return np.asarray(canvas, dtype=np.uint8)
