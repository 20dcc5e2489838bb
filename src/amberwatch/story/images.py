"""Images of the story: fragment crops sized for the web (WebP srcset) and the map's small static tile set."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import mercantile
import numpy as np
from PIL import Image

from amberwatch.errors import AmberwatchWarning, ImageError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.decode import decode_image, encode_jpeg
from amberwatch.imagery.mosaic import render_bbox
from amberwatch.imagery.sources import TileSource
from amberwatch.imagery.tiles import tiles_for_bbox
from amberwatch.imagery.types import LngLatBbox
from amberwatch.story.selection import Site

FRAGMENT_WIDTHS_PX = (320, 640, 1024)
FRAGMENT_MAX_PX = 1024
FRAGMENT_MARGIN = 0.35  # share of the detection's size added around it on each side
MIN_FRAGMENT_SIDE_M = 120.0
WEBP_QUALITY = 78
TILE_JPEG_QUALITY = 80
BACKGROUND_RGB = (46, 52, 44)  # the map's plain background, also used for missing parts of exported tiles
MAX_EXPORT_TILES = 600
EXPORT_ZOOM_LEVELS = 6  # the scan zoom and the five below it (a few tiles each)


@dataclass(frozen=True)
class FragmentImage:
    """The files of one fragment: (width_px, relative path) per size, its footprint when known, its origin."""

    files: tuple[tuple[int, str], ...]
    width_px: int
    height_px: int
    bbox: LngLatBbox | None  # None for a thumbnail (its footprint is not recorded)
    origin: str  # "cache" | "thumbnail" | "placeholder"


def fragment_bbox(site: Site) -> LngLatBbox:
    """A square (in metres) around the detection with a margin, so the pit field sits in context."""
    b = site.bbox
    x0, y0 = mercantile.xy(b.west_deg, b.south_deg)
    x1, y1 = mercantile.xy(b.east_deg, b.north_deg)
    scale = math.cos(math.radians(site.centroid_lat))  # Mercator metres per true metre is 1/cos(lat)
    side = max(x1 - x0, y1 - y0, MIN_FRAGMENT_SIDE_M / scale) * (1 + 2 * FRAGMENT_MARGIN)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    w, s = mercantile.lnglat(cx - side / 2, cy - side / 2)
    e, n = mercantile.lnglat(cx + side / 2, cy + side / 2)
    return LngLatBbox(max(w, -180.0), max(s, -85.0), min(e, 180.0), min(n, 85.0))


def _has_imagery(cache: TileCache, source_id: str, z: int, x: int, y: int) -> bool:
    row = cache.get(source_id, z, x, y)
    return row is not None and row["status"] == "ok" and row["data"] is not None


def cached_share(cache: TileCache, source_id: str, bbox: LngLatBbox, zoom: int) -> float:
    """Share (0..1) of the tiles covering bbox at zoom that the cache holds with imagery."""
    tiles = list(tiles_for_bbox(bbox, zoom))
    if not tiles:
        return 0.0
    return sum(_has_imagery(cache, source_id, *t) for t in tiles) / len(tiles)


def covered_crop(cache: TileCache, source_id: str, bbox: LngLatBbox, zoom: int) -> LngLatBbox | None:
    """bbox shrunk to the extent of the cached tiles with imagery inside it (None when there are none)."""
    ok = [(x, y) for z, x, y in tiles_for_bbox(bbox, zoom) if _has_imagery(cache, source_id, z, x, y)]
    if not ok:
        return None
    ul = mercantile.bounds(min(x for x, _ in ok), min(y for _, y in ok), zoom)
    lr = mercantile.bounds(max(x for x, _ in ok), max(y for _, y in ok), zoom)
    west, east = max(bbox.west_deg, ul.west), min(bbox.east_deg, lr.east)
    south, north = max(bbox.south_deg, lr.south), min(bbox.north_deg, ul.north)
    if west >= east or south >= north:
        return None
    return LngLatBbox(west, south, east, north)


def _contains(outer: LngLatBbox, inner: LngLatBbox) -> bool:
    return (
        outer.west_deg <= inner.west_deg
        and outer.south_deg <= inner.south_deg
        and outer.east_deg >= inner.east_deg
        and outer.north_deg >= inner.north_deg
    )


def _save_sizes(pixels: np.ndarray, out_dir: Path, stem: str, rel_prefix: str) -> tuple[tuple[int, str], ...]:
    img = Image.fromarray(pixels)
    widths = sorted({w for w in FRAGMENT_WIDTHS_PX if w < img.width} | {min(img.width, FRAGMENT_MAX_PX)})
    files: list[tuple[int, str]] = []
    for w in widths:
        h = max(1, round(img.height * w / img.width))
        resized = img if w == img.width else img.resize((w, h), Image.Resampling.LANCZOS)
        name = f"{stem}-{w}.webp"
        resized.save(out_dir / name, format="WEBP", quality=WEBP_QUALITY, method=4)
        files.append((w, f"{rel_prefix}/{name}"))
    return tuple(files)


def write_fragment(
    site: Site, source: TileSource | None, cache: TileCache | None, out_dir: Path, rel_prefix: str
) -> FragmentImage:
    """Cut one fragment from the cached imagery (else the detection's thumbnail) and save its web sizes."""
    bbox = fragment_bbox(site)
    stem = f"site-{site.id}"
    crop = None
    if source is not None and cache is not None:
        # Near the edge of the scanned imagery the margin is cut back to what the cache holds.
        crop = covered_crop(cache, site.imagery_source_id, bbox, site.zoom)
    complete = (
        crop is not None
        and cache is not None
        and _contains(crop, site.bbox)
        and cached_share(cache, site.imagery_source_id, crop, site.zoom) >= 0.999
    )
    if complete and crop is not None and source is not None:
        image = render_bbox(source, crop, site.zoom, max_px=FRAGMENT_MAX_PX)
        files = _save_sizes(image.pixels, out_dir, stem, rel_prefix)
        return FragmentImage(files, image.width_px, image.height_px, image.bbox, "cache")
    if site.thumbnail:
        try:
            pixels = decode_image(bytes(site.thumbnail), f"thumbnail of detection {site.id}")
        except ImageError as exc:
            warnings.warn(AmberwatchWarning(str(exc)), stacklevel=2)
        else:
            files = _save_sizes(pixels, out_dir, stem, rel_prefix)
            return FragmentImage(files, int(pixels.shape[1]), int(pixels.shape[0]), None, "thumbnail")
    if crop is not None and source is not None:
        image = render_bbox(source, crop, site.zoom, max_px=FRAGMENT_MAX_PX)
        files = _save_sizes(image.pixels, out_dir, stem, rel_prefix)
        return FragmentImage(files, image.width_px, image.height_px, image.bbox, "cache")
    warnings.warn(
        AmberwatchWarning(f"detection {site.id}: no cached imagery and no thumbnail; using a plain placeholder"),
        stacklevel=2,
    )
    pixels = np.zeros((320, 320, 3), dtype=np.uint8)
    pixels[:] = BACKGROUND_RGB
    files = _save_sizes(pixels, out_dir, stem, rel_prefix)
    return FragmentImage(files, 320, 320, None, "placeholder")


def _downsample(children: dict[tuple[int, int], np.ndarray | None]) -> np.ndarray:
    """A 256 px tile from its four children keyed by (dx, dy); absent children show the background."""
    canvas = np.empty((512, 512, 3), dtype=np.uint8)
    canvas[:] = BACKGROUND_RGB
    for (dx, dy), px in children.items():
        if px is not None:
            canvas[dy * 256 : dy * 256 + 256, dx * 256 : dx * 256 + 256] = px
    return np.asarray(Image.fromarray(canvas).resize((256, 256), Image.Resampling.BOX), dtype=np.uint8)


def export_tiles(
    source: TileSource,
    areas: Iterable[LngLatBbox],
    zoom: int,
    out_dir: Path,
    *,
    levels: int = EXPORT_ZOOM_LEVELS,
    max_tiles: int = MAX_EXPORT_TILES,
) -> dict[int, list[tuple[int, int]]]:
    """Write out_dir/{z}/{x}/{y}.jpg around the areas, from the cached tiles at ``zoom`` and a pyramid below it.

    Returns {z: [(x, y), ...]} of the tiles written. The count is bounded by ``max_tiles``: the
    coarser levels are kept first, the finest level is written only for as many tiles as fit.
    """
    wanted: set[tuple[int, int]] = set()
    for bbox in areas:
        for _, x, y in tiles_for_bbox(bbox, zoom):
            wanted.add((x, y))
    # Cap the finest level so the whole pyramid stays within max_tiles (each level is about 1/4 of the one above).
    budget_finest = max(1, int(max_tiles * 0.75))
    finest: dict[tuple[int, int], np.ndarray] = {}
    for x, y in sorted(wanted):
        if len(finest) >= budget_finest:
            break
        img = source.read_tile(zoom, x, y)
        if img is not None:
            finest[(x, y)] = img.pixels
    written: dict[int, list[tuple[int, int]]] = {}
    level: dict[tuple[int, int], np.ndarray] = finest
    for z in range(zoom, max(zoom - levels, 0), -1):
        written[z] = []
        for (x, y), px in sorted(level.items()):
            path = out_dir / str(z) / str(x) / f"{y}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode_jpeg(px, quality=TILE_JPEG_QUALITY))
            written[z].append((x, y))
        if z - 1 <= zoom - levels or z == 0:
            break
        parents: dict[tuple[int, int], dict[tuple[int, int], np.ndarray | None]] = {}
        for (x, y), px in level.items():
            parents.setdefault((x // 2, y // 2), {})[(x % 2, y % 2)] = px
        level = {key: _downsample(kids) for key, kids in parents.items()}
    return {z: xs for z, xs in written.items() if xs}
