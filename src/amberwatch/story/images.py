"""Images of the story: fragment crops sized for the web (WebP srcset) and the map's small static tile set."""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import mercantile
import numpy as np
from PIL import Image

from amberwatch.errors import AmberwatchWarning, ImageError
from amberwatch.imagery.decode import decode_image
from amberwatch.imagery.mosaic import render_bbox
from amberwatch.imagery.pyramid import FolderSink, PyramidStyle, build_pyramid, halve_premultiplied
from amberwatch.imagery.sources import TileSource
from amberwatch.imagery.tiles import tiles_for_bbox
from amberwatch.imagery.types import GeoImage, LngLatBbox
from amberwatch.results.public import PublicDetection
from amberwatch.review.chips import draw_outline, nodata_mask
from amberwatch.story.nodata import (
    COMPLETE_TOLERANCE,
    Window,
    best_window,
    centred_window,
    nodata_share,
    trim_window,
)

FRAGMENT_WIDTHS_PX = (320, 640, 1024)
FRAGMENT_MAX_PX = 1024
FRAGMENT_MARGIN = 0.35  # share of the detection's size added around it on each side
MIN_FRAGMENT_SIDE_M = 120.0
WEBP_QUALITY = 78
TILE_QUALITY = 80
BACKGROUND_RGB = (46, 52, 44)  # the map's plain background, also the colour of placeholder fragments
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


def fragment_bbox(site: PublicDetection) -> LngLatBbox:
    """A square (in metres) around the detection with a margin, so the pit field sits in context."""
    return square_bbox(site.bbox, site.centroid_lat)


def square_bbox(b: LngLatBbox, lat_deg: float) -> LngLatBbox:
    """A square (in metres at lat_deg) around a footprint with FRAGMENT_MARGIN, at least MIN_FRAGMENT_SIDE_M a side."""
    x0, y0 = mercantile.xy(b.west_deg, b.south_deg)
    x1, y1 = mercantile.xy(b.east_deg, b.north_deg)
    scale = math.cos(math.radians(lat_deg))  # Mercator metres per true metre is 1/cos(lat)
    side = max(x1 - x0, y1 - y0, MIN_FRAGMENT_SIDE_M / scale) * (1 + 2 * FRAGMENT_MARGIN)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    w, s = mercantile.lnglat(cx - side / 2, cy - side / 2)
    e, n = mercantile.lnglat(cx + side / 2, cy + side / 2)
    return LngLatBbox(max(w, -180.0), max(s, -85.0), min(e, 180.0), min(n, 85.0))


def grow_bbox(b: LngLatBbox, factor: float) -> LngLatBbox:
    """bbox with factor x its width (height) added on each side, within the Web Mercator world."""
    dx = (b.east_deg - b.west_deg) * factor
    dy = (b.north_deg - b.south_deg) * factor
    return LngLatBbox(
        max(b.west_deg - dx, -180.0),
        max(b.south_deg - dy, -85.0),
        min(b.east_deg + dx, 180.0),
        min(b.north_deg + dy, 85.0),
    )


@dataclass(frozen=True)
class _Frame:
    """Pixel <-> lon/lat of a mosaic (linear in Web Mercator metres)."""

    left: float
    bottom: float
    right: float
    top: float
    width_px: int
    height_px: int

    @classmethod
    def of(cls, image: GeoImage) -> _Frame:
        left, bottom = mercantile.xy(image.bbox.west_deg, image.bbox.south_deg)
        right, top = mercantile.xy(image.bbox.east_deg, image.bbox.north_deg)
        return cls(left, bottom, right, top, image.width_px, image.height_px)

    def window(self, b: LngLatBbox) -> Window:
        """The pixels covering b, clipped to the mosaic."""
        x0, y1 = mercantile.xy(b.west_deg, b.south_deg)
        x1, y0 = mercantile.xy(b.east_deg, b.north_deg)
        sx, sy = self.width_px / (self.right - self.left), self.height_px / (self.top - self.bottom)
        c0 = min(max(math.floor((x0 - self.left) * sx), 0), self.width_px - 1)
        r0 = min(max(math.floor((self.top - y0) * sy), 0), self.height_px - 1)
        c1 = min(max(math.ceil((x1 - self.left) * sx), c0 + 1), self.width_px)
        r1 = min(max(math.ceil((self.top - y1) * sy), r0 + 1), self.height_px)
        return Window(c0, r0, c1, r1)

    def bbox(self, w: Window) -> LngLatBbox:
        """The footprint of a pixel window."""
        mx = (self.right - self.left) / self.width_px
        my = (self.top - self.bottom) / self.height_px
        west, north = mercantile.lnglat(self.left + w.x0 * mx, self.top - w.y0 * my)
        east, south = mercantile.lnglat(self.left + w.x1 * mx, self.top - w.y1 * my)
        return LngLatBbox(max(west, -180.0), south, min(east, 180.0), north)


@dataclass(frozen=True)
class FragmentCut:
    """A fragment's pixels from the imagery, their footprint, and the share of them without imagery."""

    pixels: np.ndarray
    bbox: LngLatBbox
    nodata_share: float


def cut_fragment(source: TileSource, site: PublicDetection) -> FragmentCut | None:
    """The fragment's square window centred on the site, shrunk to the imagery that exists; where even the site's
    own square crosses no-data, the window moved (keeping the detection inside) and then trimmed out of no-data.

    None when the imagery around the site is all no-data.
    """
    want = fragment_bbox(site)
    # Room to move the window by half its size either way, where imagery is missing on one side.
    image = render_bbox(source, grow_bbox(want, 0.5), site.zoom, max_px=2 * FRAGMENT_MAX_PX)
    mask = nodata_mask(image.pixels)
    if mask.all():
        return None
    frame = _Frame.of(image)
    keep, size = frame.window(site.bbox), frame.window(want)
    win = centred_window(mask, keep, max(size.width, size.height))
    if win is None:
        win = trim_window(mask, best_window(mask, size.width, size.height, keep), keep)
    pixels = np.ascontiguousarray(image.pixels[win.y0 : win.y1, win.x0 : win.x1])
    return FragmentCut(pixels, frame.bbox(win), nodata_share(mask, win))


def _trimmed_thumbnail(pixels: np.ndarray) -> np.ndarray:
    """A thumbnail without no-data bands at its edges (its middle third, where the site is, always stays)."""
    h, w = pixels.shape[:2]
    mask = nodata_mask(pixels)
    if not mask.any() or mask.all():
        return pixels
    win = trim_window(
        mask, Window(0, 0, w, h), Window(w // 3, h // 3, max(w * 2 // 3, w // 3 + 1), max(h * 2 // 3, h // 3 + 1))
    )
    return np.ascontiguousarray(pixels[win.y0 : win.y1, win.x0 : win.x1])


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


def write_fragment(site: PublicDetection, source: TileSource | None, out_dir: Path, rel_prefix: str) -> FragmentImage:
    """Cut one fragment from the cached imagery (else the detection's thumbnail) and save its web sizes."""
    stem = f"site-{site.id}"
    cut = cut_fragment(source, site) if source is not None else None
    if cut is not None and cut.nodata_share <= COMPLETE_TOLERANCE:
        files = _save_sizes(cut.pixels, out_dir, stem, rel_prefix)
        return FragmentImage(files, int(cut.pixels.shape[1]), int(cut.pixels.shape[0]), cut.bbox, "cache")
    if site.thumbnail:
        try:
            pixels = decode_image(bytes(site.thumbnail), f"thumbnail of detection {site.id}")
        except ImageError as exc:
            warnings.warn(AmberwatchWarning(str(exc)), stacklevel=2)
        else:
            pixels = _trimmed_thumbnail(pixels)
            files = _save_sizes(pixels, out_dir, stem, rel_prefix)
            return FragmentImage(files, int(pixels.shape[1]), int(pixels.shape[0]), None, "thumbnail")
    if cut is not None:
        files = _save_sizes(cut.pixels, out_dir, stem, rel_prefix)
        return FragmentImage(files, int(cut.pixels.shape[1]), int(cut.pixels.shape[0]), cut.bbox, "cache")
    warnings.warn(
        AmberwatchWarning(f"detection {site.id}: no cached imagery and no thumbnail; using a plain placeholder"),
        stacklevel=2,
    )
    pixels = np.zeros((320, 320, 3), dtype=np.uint8)
    pixels[:] = BACKGROUND_RGB
    files = _save_sizes(pixels, out_dir, stem, rel_prefix)
    return FragmentImage(files, 320, 320, None, "placeholder")


def pair_bbox(footprints: Sequence[LngLatBbox], lat_deg: float) -> LngLatBbox:
    """The one crop box of a then-and-now pair: a square around the site's outlines at both dates."""
    return square_bbox(
        LngLatBbox(
            min(b.west_deg for b in footprints),
            min(b.south_deg for b in footprints),
            max(b.east_deg for b in footprints),
            max(b.north_deg for b in footprints),
        ),
        lat_deg,
    )


def multipolygon(geometries: Iterable[dict]) -> dict:
    """GeoJSON Polygons and MultiPolygons as one MultiPolygon."""
    multi = [g["coordinates"] if g.get("type") == "MultiPolygon" else [g["coordinates"]] for g in geometries]
    parts = [polygon for polygons in multi for polygon in polygons]
    return {"type": "MultiPolygon", "coordinates": parts}


def write_pair_image(
    source: TileSource, bbox: LngLatBbox, zoom: int, outline: dict | None, out_dir: Path, stem: str
) -> FragmentImage:
    """One half of a then-and-now pair: exactly ``bbox`` from one date's imagery, the outline drawn on when given.

    Both halves keep the same box even where one date lacks imagery (it stays dark, with a warning).
    """
    image = render_bbox(source, bbox, zoom, max_px=FRAGMENT_MAX_PX)
    if nodata_share(nodata_mask(image.pixels), Window(0, 0, image.width_px, image.height_px)) > COMPLETE_TOLERANCE:
        warnings.warn(AmberwatchWarning(f"{stem}: the cached imagery does not cover the whole pair"), stacklevel=2)
    pixels = draw_outline(image, outline) if outline is not None else image.pixels
    files = _save_sizes(pixels, out_dir, stem, out_dir.name)
    return FragmentImage(files, image.width_px, image.height_px, image.bbox, "cache")


def _with_alpha(pixels: np.ndarray) -> Image.Image:
    """RGBA of a tile: transparent where it holds no imagery, so the map (or basemap) shows through."""
    alpha = np.where(nodata_mask(pixels), 0, 255).astype(np.uint8)
    return Image.fromarray(np.dstack([pixels, alpha]), "RGBA")


def _encode_webp(img: Image.Image) -> bytes | None:
    """A tile as WebP (with alpha only where needed); None, so nothing is written, when it is all no-data."""
    alpha_min, alpha_max = img.getchannel("A").getextrema()
    if alpha_max == 0:
        return None
    buf = io.BytesIO()
    (img if alpha_min < 255 else img.convert("RGB")).save(buf, format="WEBP", quality=TILE_QUALITY, method=4)
    return buf.getvalue()


STORY_TILE_STYLE = PyramidStyle(downsample=halve_premultiplied, encode=_encode_webp)


def export_tiles(
    source: TileSource,
    areas: Iterable[LngLatBbox],
    zoom: int,
    out_dir: Path,
    *,
    levels: int = EXPORT_ZOOM_LEVELS,
    max_tiles: int = MAX_EXPORT_TILES,
) -> dict[int, list[tuple[int, int]]]:
    """Write out_dir/{z}/{x}/{y}.webp around the areas, from the cached tiles at ``zoom`` and a pyramid below it.

    No-data is transparent. Returns {z: [(x, y), ...]} of the tiles written. The count is bounded by
    ``max_tiles``: the coarser levels are kept first, the finest level is written only for as many tiles as fit.
    """
    wanted: set[tuple[int, int]] = set()
    for bbox in areas:
        for _, x, y in tiles_for_bbox(bbox, zoom):
            wanted.add((x, y))
    # Cap the finest level so the whole pyramid stays within max_tiles (each level is about 1/4 of the one above).
    budget_finest = max(1, int(max_tiles * 0.75))
    finest: dict[tuple[int, int], Image.Image] = {}
    for x, y in sorted(wanted):
        if len(finest) >= budget_finest:
            break
        img = source.read_tile(zoom, x, y)
        if img is not None:
            finest[(x, y)] = _with_alpha(img.pixels)
    sink = FolderSink(out_dir, "webp")
    try:  # zoom and the levels - 1 below it, never zoom 0
        return build_pyramid(finest, zoom, max(zoom - levels, 0) + 1, sink, STORY_TILE_STYLE)
    finally:
        sink.close()
