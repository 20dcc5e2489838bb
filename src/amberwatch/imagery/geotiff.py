"""GeoTIFF / Cloud-Optimised GeoTIFF in any CRS, read as Web Mercator tiles through a per-tile WarpedVRT."""

from __future__ import annotations

import io
import math
import os
import threading
from pathlib import Path

import mercantile
import numpy as np
import rasterio
from PIL import Image
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import RasterioError
from rasterio.transform import from_bounds
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform, transform_bounds

from amberwatch.errors import CRSError, ImageryError, InvalidInputError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.decode import encode_png
from amberwatch.imagery.sources import FetchedTile, TileSource, parse_capture_date, spec_hash
from amberwatch.imagery.tiles import zoom_for_resolution
from amberwatch.imagery.types import TILE_SIZE_PX, LngLatBbox

DATE_TAGS = ("ACQUISITIONDATE", "ACQUISITION_DATE", "CAPTURE_DATE", "TIFFTAG_DATETIME")
MIN_ZOOM_SPAN = 8  # lower zooms than max_zoom - 8 would warp huge windows per tile
STATS_MAX_PX = 1024


def file_fingerprint(path: Path) -> str:
    """Resolved path plus size and mtime: a changed file gets a new source id (and fresh cache entries)."""
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def raster_capture_date(tags: dict[str, str]) -> str | None:
    """The capture date from GeoTIFF tags (ACQUISITIONDATE first, then TIFFTAG_DATETIME) as YYYY-MM-DD."""
    upper = {k.upper(): v for k, v in tags.items()}
    for name in DATE_TAGS:
        if upper.get(name):
            try:
                when = parse_capture_date(upper[name], f"tag {name}")
            except InvalidInputError:
                continue
            if when is not None:
                return when.isoformat()
    return None


class GeoTiffTileSource(TileSource):
    """A georeferenced raster (any CRS) served as 256x256 Web Mercator tiles; outside/nodata reads as None."""

    kind = "geotiff"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        cache: TileCache | None = None,
        capture_date: str | None = None,
        imagery_date: str | None = None,
    ):
        """Open the raster and work out its bounds, native resolution, zooms, bands and date."""
        super().__init__(cache=cache, capture_date=capture_date, imagery_date=imagery_date)
        self.path = Path(path)
        if not self.path.is_file():
            raise InvalidInputError(f"GeoTIFF {str(self.path)!r} does not exist")
        try:
            self._ds = rasterio.open(self.path)
        except RasterioError as exc:
            raise ImageryError(f"GeoTIFF {str(self.path)!r} cannot be read ({exc})") from exc
        ds = self._ds
        if ds.crs is None:
            ds.close()
            raise CRSError(
                f"GeoTIFF {str(self.path)!r} has no CRS; georeference it first (e.g. amberwatch imagery from-image)"
            )
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.spec = str(self.path)
        try:
            w, s, e, n = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)
            self.bounds = LngLatBbox(max(w, -180.0), max(s, -90.0), min(e, 180.0), min(n, 90.0))
            merc_transform, _, _ = calculate_default_transform(ds.crs, "EPSG:3857", ds.width, ds.height, *ds.bounds)
        except (RasterioError, ValueError) as exc:
            ds.close()
            raise CRSError(f"GeoTIFF {str(self.path)!r}: cannot reproject from {ds.crs} to EPSG:3857 ({exc})") from exc
        lat = (self.bounds.south_deg + self.bounds.north_deg) / 2
        self.native_resolution_m_per_px = abs(merc_transform.a) * math.cos(math.radians(lat))
        self.max_zoom = zoom_for_resolution(self.native_resolution_m_per_px, lat)
        self.min_zoom = max(0, self.max_zoom - MIN_ZOOM_SPAN)
        self._bands, self._colormap = self._pick_bands()
        flags = ds.mask_flag_enums[0] if ds.count else []
        self._add_alpha = ds.nodata is None and all(f == MaskFlags.all_valid for f in flags)
        self._scale = None if ds.dtypes[self._bands[0] - 1] == "uint8" else self._value_range()
        self._tag_date = raster_capture_date(ds.tags())
        self._register("geotiff-" + spec_hash(file_fingerprint(self.path)))

    def _own_imagery_date(self) -> str | None:
        """The raster's date tag (ACQUISITIONDATE, TIFFTAG_DATETIME, ...) as YYYY-MM-DD."""
        return self._tag_date

    def _pick_bands(self) -> tuple[list[int], dict | None]:
        ds = self._ds
        interp = list(ds.colorinterp)
        if ds.count >= 3:
            try:
                return [
                    interp.index(ColorInterp.red) + 1,
                    interp.index(ColorInterp.green) + 1,
                    interp.index(ColorInterp.blue) + 1,
                ], None
            except ValueError:
                return [1, 2, 3], None
        if interp and interp[0] == ColorInterp.palette:
            try:
                return [1], ds.colormap(1)
            except ValueError:
                pass
        return [1], None

    def _value_range(self) -> tuple[float, float]:
        """Robust min/max of the bands from a decimated read, to scale 16-bit/float data to 8 bits."""
        ds = self._ds
        f = max(1, math.ceil(max(ds.width, ds.height) / STATS_MAX_PX))
        arr = ds.read(
            self._bands, out_shape=(len(self._bands), max(1, ds.height // f), max(1, ds.width // f)), masked=True
        )
        vals = arr.compressed().astype(np.float64)
        vals = vals[np.isfinite(vals)]
        if vals.size == 0:
            return (0.0, 1.0)
        lo, hi = np.percentile(vals, [0.5, 99.5])
        return (float(lo), float(max(hi, lo + 1e-9)))

    def _fetch_tile(self, z: int, x: int, y: int) -> FetchedTile | None:
        b = mercantile.bounds(x, y, z)
        assert self.bounds is not None
        if (
            b.east <= self.bounds.west_deg
            or b.west >= self.bounds.east_deg
            or b.north <= self.bounds.south_deg
            or b.south >= self.bounds.north_deg
        ):
            return None
        m = mercantile.xy_bounds(x, y, z)
        transform = from_bounds(m.left, m.bottom, m.right, m.top, TILE_SIZE_PX, TILE_SIZE_PX)
        if self._pid != os.getpid():  # GDAL handles must not be shared with a forked parent
            self._lock, self._pid = threading.Lock(), os.getpid()
            self._ds = rasterio.open(self.path)
        try:
            with (
                self._lock,
                WarpedVRT(
                    self._ds,
                    crs="EPSG:3857",
                    transform=transform,
                    width=TILE_SIZE_PX,
                    height=TILE_SIZE_PX,
                    resampling=Resampling.bilinear,
                    add_alpha=self._add_alpha,
                ) as vrt,
            ):
                data = vrt.read(indexes=self._bands)
                mask = vrt.dataset_mask()
        except RasterioError as exc:
            raise ImageryError(f"tile z={z} x={x} y={y} of GeoTIFF {self.spec!r} cannot be read ({exc})") from exc
        valid = mask > 0
        if not valid.any():
            return None
        rgb = self._to_rgb(data)
        rgb[~valid] = 0
        mask = None if valid.all() else valid
        png = encode_png(rgb) if mask is None else encode_png_rgba(rgb, mask)
        return FetchedTile(data=png, content_type="image/png", pixels=rgb, capture_date=self._tag_date, valid=mask)

    def _to_rgb(self, data: np.ndarray) -> np.ndarray:
        if self._colormap is not None:
            lut = np.zeros((256, 3), dtype=np.uint8)
            for idx, rgba in self._colormap.items():
                if 0 <= idx < 256:
                    lut[idx] = rgba[:3]
            return lut[data[0].astype(np.uint8)]
        if self._scale is not None:
            lo, hi = self._scale
            data = np.clip((data.astype(np.float64) - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)
        else:
            data = data.astype(np.uint8, copy=False)
        if data.shape[0] == 1:
            data = np.repeat(data, 3, axis=0)
        return np.ascontiguousarray(np.moveaxis(data, 0, -1))

    def close(self) -> None:
        """Close the raster."""
        with self._lock:
            self._ds.close()


def encode_png_rgba(rgb: np.ndarray, valid: np.ndarray) -> bytes:
    """PNG with an alpha channel that is opaque where the raster had data."""
    rgba = np.dstack([rgb, np.where(valid, 255, 0).astype(np.uint8)])
    buf = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buf, format="PNG")
    return buf.getvalue()
