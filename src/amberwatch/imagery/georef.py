"""Turn a plain image (screenshot, drone photo, Texty crop) into a georeferenced local tile source."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mercantile
import numpy as np
import rasterio
from rasterio.transform import from_origin

from amberwatch.errors import InvalidInputError
from amberwatch.imagery.decode import read_image_file
from amberwatch.imagery.geotiff import GeoTiffTileSource
from amberwatch.imagery.sources import parse_capture_date
from amberwatch.imagery.tiles import MAX_MERCATOR_LAT_DEG, tiles_for_bbox, zoom_for_resolution
from amberwatch.imagery.types import LngLatBbox, ground_resolution_m_per_px

MAX_RESOLUTION_M_PER_PX = 10_000.0
MAX_TILES = 20_000
MARKER_FILE = ".amberwatch-from-image"  # marks a tile folder this module wrote, so a re-run may replace it


@dataclass
class GeorefResult:
    """What from-image wrote: the GeoTIFF and/or tile folder, their zoom and footprint."""

    geotiff_path: Path | None
    tiles_dir: Path | None
    zoom: int
    tile_count: int
    bounds: LngLatBbox
    resolution_m_per_px: float

    @property
    def spec(self) -> str:
        """The spec to pass as --imagery (the tile folder when written, else the GeoTIFF)."""
        return str(self.tiles_dir if self.tiles_dir is not None else self.geotiff_path)


def check_center(lat_deg: float, lon_deg: float) -> None:
    """Raise InvalidInputError unless (lat, lon) is a finite point inside the Web Mercator world."""
    if not (math.isfinite(lat_deg) and math.isfinite(lon_deg)):
        raise InvalidInputError(f"centre {lat_deg},{lon_deg} must be finite numbers LAT,LON")
    if not -MAX_MERCATOR_LAT_DEG < lat_deg < MAX_MERCATOR_LAT_DEG:
        raise InvalidInputError(f"centre latitude {lat_deg} must be within +-85 degrees (give LAT,LON, not LON,LAT)")
    if not -180 <= lon_deg <= 180:
        raise InvalidInputError(f"centre longitude {lon_deg} must be within -180..180 degrees")


def check_resolution(resolution_m_per_px: float) -> None:
    """Raise InvalidInputError unless the ground resolution is a plausible positive m/px."""
    if not (math.isfinite(resolution_m_per_px) and 0 < resolution_m_per_px <= MAX_RESOLUTION_M_PER_PX):
        raise InvalidInputError(
            f"resolution {resolution_m_per_px} m/px must be a positive number up to {MAX_RESOLUTION_M_PER_PX:g}"
        )


def write_georeferenced_geotiff(
    pixels: np.ndarray,
    path: Path,
    *,
    center_lat_deg: float,
    center_lon_deg: float,
    resolution_m_per_px: float,
    capture_date: str | None = None,
) -> LngLatBbox:
    """Write RGB pixels as an EPSG:3857 GeoTIFF centred on a point at a ground resolution; return its bounds."""
    h, w = pixels.shape[:2]
    # Web Mercator metres are stretched by 1/cos(lat) relative to ground metres.
    merc_px_m = resolution_m_per_px / math.cos(math.radians(center_lat_deg))
    cx, cy = mercantile.xy(center_lon_deg, center_lat_deg)
    left, top = cx - w / 2 * merc_px_m, cy + h / 2 * merc_px_m
    tags = {}
    if capture_date:
        tags = {"ACQUISITIONDATE": capture_date, "TIFFTAG_DATETIME": capture_date.replace("-", ":") + " 00:00:00"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=w,
        height=h,
        count=3,
        dtype="uint8",
        crs="EPSG:3857",
        transform=from_origin(left, top, merc_px_m, merc_px_m),
        compress="deflate",
        photometric="RGB",
    ) as ds:
        ds.write(np.moveaxis(pixels, -1, 0))
        if tags:
            ds.update_tags(**tags)
    west, north = mercantile.lnglat(left, top)
    east, south = mercantile.lnglat(left + w * merc_px_m, top - h * merc_px_m)
    return LngLatBbox(west, south, east, north)


def georeference_image(
    image: str | os.PathLike[str],
    *,
    center_lat_deg: float,
    center_lon_deg: float,
    resolution_m_per_px: float,
    out_dir: str | os.PathLike[str],
    zoom: int | None = None,
    capture_date: str | None = None,
    write_geotiff: bool = True,
    write_tiles: bool = True,
) -> GeorefResult:
    """Georeference a plain image by centre and ground resolution; write a GeoTIFF and/or a {z}/{x}/{y}.png folder.

    The tile zoom defaults to the one whose ground resolution at the centre is closest to the image's.
    """
    check_center(center_lat_deg, center_lon_deg)
    check_resolution(resolution_m_per_px)
    if not (write_geotiff or write_tiles):
        raise InvalidInputError("nothing to write: ask for the GeoTIFF, the tiles, or both")
    when = parse_capture_date(capture_date, "--date")
    date_text = when.isoformat() if when else None
    pixels = read_image_file(image)
    z = zoom_for_resolution(resolution_m_per_px, center_lat_deg) if zoom is None else int(zoom)
    if not 0 <= z <= 24:
        raise InvalidInputError(f"zoom {zoom} must be within 0..24")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(image).stem
    with tempfile.TemporaryDirectory() as tmp:
        tif = out / f"{stem}.tif" if write_geotiff else Path(tmp) / f"{stem}.tif"
        bounds = write_georeferenced_geotiff(
            pixels,
            tif,
            center_lat_deg=center_lat_deg,
            center_lon_deg=center_lon_deg,
            resolution_m_per_px=resolution_m_per_px,
            capture_date=date_text,
        )
        tiles_dir = None
        count = 0
        if write_tiles:
            tiles_dir = out / "tiles"
            count = _write_tiles(tif, tiles_dir, bounds, z, date_text)
    return GeorefResult(
        geotiff_path=tif if write_geotiff else None,
        tiles_dir=tiles_dir,
        zoom=z,
        tile_count=count,
        bounds=bounds,
        resolution_m_per_px=ground_resolution_m_per_px(center_lat_deg, z) if write_tiles else resolution_m_per_px,
    )


def _write_tiles(tif: Path, tiles_dir: Path, bounds: LngLatBbox, zoom: int, date_text: str | None) -> int:
    """Cut the GeoTIFF into {z}/{x}/{y}.png tiles (alpha outside the image); returns the tile count."""
    keys = list(tiles_for_bbox(bounds, zoom))
    if len(keys) > MAX_TILES:
        raise InvalidInputError(
            f"zoom {zoom} would cut the image into {len(keys)} tiles (limit {MAX_TILES}); use a lower --zoom"
        )
    if tiles_dir.exists() and any(tiles_dir.iterdir()):
        if not (tiles_dir / MARKER_FILE).is_file():
            raise InvalidInputError(
                f"{str(tiles_dir)!r} already exists and was not written by from-image; choose another --out"
            )
        shutil.rmtree(tiles_dir)  # stale tiles of an earlier image must not mix with this one
    tiles_dir.mkdir(parents=True, exist_ok=True)
    (tiles_dir / MARKER_FILE).write_text("written by amberwatch imagery from-image\n", encoding="utf-8")
    count = 0
    src = GeoTiffTileSource(tif)
    try:
        for z, x, y in keys:
            fetched = src._fetch_tile(z, x, y)
            if fetched is None:
                continue
            p = tiles_dir / str(z) / str(x) / f"{y}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(fetched.data)
            count += 1
    finally:
        src.close()
    if date_text:
        (tiles_dir / "dates.json").write_text(json.dumps({"default": date_text}) + "\n", encoding="utf-8")
    return count
