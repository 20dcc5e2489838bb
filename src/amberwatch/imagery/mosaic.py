"""Mosaics: the tiles covering a bbox at a zoom, stitched in Web Mercator and cropped to the bbox."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
from PIL import Image

from amberwatch.errors import ImageryError, InvalidInputError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.sources import TileSource, open_cached_source
from amberwatch.imagery.tiles import (
    lnglat_to_world_px,
    tile_count_for_bbox,
    tiles_for_bbox,
    world_px_to_lnglat,
)
from amberwatch.imagery.types import TILE_SIZE_PX, GeoImage, LngLatBbox, ground_resolution_m_per_px

MAX_MOSAIC_TILES = 4096

__all__ = ["TileCache", "open_cached_source", "render_bbox"]


def _check_request(bbox: LngLatBbox, zoom: int, max_px: int) -> None:
    if not (0 <= int(zoom) <= 24):
        raise InvalidInputError(f"zoom {zoom!r} must be within 0..24")
    if max_px < 1:
        raise InvalidInputError(f"max_px {max_px!r} must be at least 1")
    zoom = int(zoom)
    if bbox.east_deg < bbox.west_deg:
        raise InvalidInputError(f"bbox {bbox.as_tuple()} crosses the antimeridian; split it in two")
    n_tiles = tile_count_for_bbox(bbox, zoom)
    if n_tiles > MAX_MOSAIC_TILES:
        raise InvalidInputError(
            f"bbox {bbox.as_tuple()} covers {n_tiles} tiles at zoom {zoom} (limit {MAX_MOSAIC_TILES}); use a lower zoom"
        )


def _pixel_window(bbox: LngLatBbox, zoom: int) -> tuple[int, int, int, int]:
    """The whole-pixel world window (x0, y0, x1, y1) covering bbox at zoom, at least one pixel a side."""
    left, top = lnglat_to_world_px(bbox.west_deg, bbox.north_deg, zoom)  # latitudes clamped to the Mercator square
    right, bottom = lnglat_to_world_px(bbox.east_deg, bbox.south_deg, zoom)
    eps = 1e-6  # tile edges computed through degrees land a hair off whole pixels
    x0, y0 = math.floor(left + eps), math.floor(top + eps)
    x1, y1 = max(math.ceil(right - eps), x0 + 1), max(math.ceil(bottom - eps), y0 + 1)
    return x0, y0, x1, y1


def _paste_tile(canvas: np.ndarray, pixels: np.ndarray, sx0: int, sy0: int, scale: float) -> None:
    """Paste a tile (HxWx3 or HxW uint8) whose top-left is (sx0, sy0) in unscaled window pixels onto the canvas."""
    out_h, out_w = canvas.shape[:2]
    # Destination rectangle of this tile in output pixels (may overhang the canvas).
    dx0, dy0 = round(sx0 * scale), round(sy0 * scale)
    dx1, dy1 = round((sx0 + TILE_SIZE_PX) * scale), round((sy0 + TILE_SIZE_PX) * scale)
    if dx1 <= dx0 or dy1 <= dy0:
        return
    if (dx1 - dx0, dy1 - dy0) != (pixels.shape[1], pixels.shape[0]):
        pixels = np.asarray(
            Image.fromarray(pixels).resize((dx1 - dx0, dy1 - dy0), Image.Resampling.BILINEAR), dtype=np.uint8
        )
    cx0, cy0 = max(dx0, 0), max(dy0, 0)
    cx1, cy1 = min(dx1, out_w), min(dy1, out_h)
    if cx1 <= cx0 or cy1 <= cy0:
        return
    canvas[cy0:cy1, cx0:cx1] = pixels[cy0 - dy0 : cy1 - dy0, cx0 - dx0 : cx1 - dx0]


def render_bbox(source: TileSource, bbox: LngLatBbox, zoom: int, *, max_px: int = 1024) -> GeoImage:
    """Mosaic of the tiles covering bbox at zoom, cropped to bbox and shrunk to at most max_px a side.

    Missing tiles (no imagery, or failing) are black and out of the ``valid`` mask, as are the tiles' own
    no-data pixels; failures are listed in ``warnings``. The returned bbox is the bbox snapped to whole
    pixels of the zoom's grid.
    """
    _check_request(bbox, zoom, max_px)
    zoom = int(zoom)
    x0, y0, x1, y1 = _pixel_window(bbox, zoom)
    full_w, full_h = x1 - x0, y1 - y0
    scale = min(1.0, max_px / max(full_w, full_h))
    out_w, out_h = max(1, round(full_w * scale)), max(1, round(full_h * scale))
    canvas = np.zeros((out_h, out_w, 3), dtype=np.uint8)
    valid = np.zeros((out_h, out_w), dtype=np.uint8)  # 255 where a tile with imagery was pasted
    dates: Counter = Counter()
    notes: list[str] = []
    for (_z, tx, ty), result in source.read_tiles(tiles_for_bbox(bbox, zoom)):
        if isinstance(result, ImageryError):
            notes.append(str(result))
            continue
        if result is None:
            continue
        if result.capture_date is not None:
            dates[result.capture_date] += 1
        sx0, sy0 = tx * TILE_SIZE_PX - x0, ty * TILE_SIZE_PX - y0
        _paste_tile(canvas, result.pixels, sx0, sy0, scale)
        tile_valid = np.full(result.pixels.shape[:2], 255, np.uint8) if result.valid is None else result.valid * 255
        _paste_tile(valid, tile_valid.astype(np.uint8), sx0, sy0, scale)
    west, north_s = world_px_to_lnglat(x0, y0, zoom)
    east, south_s = world_px_to_lnglat(x1, y1, zoom)
    snapped = LngLatBbox(max(west, -180.0), south_s, min(east, 180.0), north_s)
    capture = max(dates.items(), key=lambda kv: (kv[1], kv[0]))[0] if dates else None
    return GeoImage(
        pixels=canvas,
        bbox=snapped,
        resolution_m_per_px=ground_resolution_m_per_px(snapped.center_deg[1], zoom) / scale,
        source_id=source.source_id,
        capture_date=capture,
        tile=None,
        warnings=notes,
        valid=None if (valid >= 128).all() else valid >= 128,
    )
