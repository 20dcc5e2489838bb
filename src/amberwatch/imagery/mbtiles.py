"""MBTiles files (SQLite, TMS rows: tile_row counts from the bottom) as tile sources."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from amberwatch.errors import ImageError, ImageryError, ImageTooLargeError, InvalidInputError, TileTooLargeError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.decode import MAX_TILE_PIXELS, decode_with_valid
from amberwatch.imagery.geotiff import file_fingerprint
from amberwatch.imagery.sources import FetchedTile, TileSource, parse_capture_date, spec_hash
from amberwatch.imagery.tiles import lnglat_to_tile, tile_resolution_m_per_px, xyz_to_tms_y
from amberwatch.imagery.types import LngLatBbox

MAX_MBTILES_ZOOM = 30
CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}


class MBTilesTileSource(TileSource):
    """Raster tiles from an .mbtiles file, opened read-only; rows are flipped from TMS to XYZ."""

    kind = "mbtiles"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        cache: TileCache | None = None,
        capture_date: str | None = None,
        imagery_date: str | None = None,
    ):
        """Open the file read-only and read its metadata (bounds, zooms, format, optional capture_date)."""
        super().__init__(cache=cache, capture_date=capture_date, imagery_date=imagery_date)
        self.path = Path(path)
        if not self.path.is_file():
            raise InvalidInputError(f"MBTiles file {str(self.path)!r} does not exist")
        self.spec = str(self.path)
        self._lock = threading.Lock()
        try:
            self._conn = self._open()
            cols = {r[1] for r in self._conn.execute("PRAGMA table_info(tiles)")}
            if not {"zoom_level", "tile_column", "tile_row", "tile_data"} <= cols:
                raise InvalidInputError(
                    f"{str(self.path)!r} is not an MBTiles file"
                    " (no tiles(zoom_level, tile_column, tile_row, tile_data));"
                    " an amberwatch tile cache is not an imagery source"
                )
            meta = (
                dict(self._conn.execute("SELECT name, value FROM metadata").fetchall()) if self._has_metadata() else {}
            )
            zrow = self._conn.execute("SELECT MIN(zoom_level), MAX(zoom_level) FROM tiles").fetchone()
        except sqlite3.DatabaseError as exc:
            raise InvalidInputError(f"{str(self.path)!r} is not a readable MBTiles file ({exc})") from exc
        self.attribution = meta.get("attribution")
        self._format = str(meta.get("format", "png")).lower()
        self.min_zoom = self._zoom(meta, "minzoom", zrow[0])
        self.max_zoom = self._zoom(meta, "maxzoom", zrow[1])
        self.bounds = self._parse_bounds(meta.get("bounds"))
        if self.bounds is not None:
            lon, lat = self.bounds.center_deg
            self.native_resolution_m_per_px = tile_resolution_m_per_px(*lnglat_to_tile(lon, lat, self.max_zoom))
        when = parse_capture_date(meta.get("capture_date"), f"capture_date metadata of {str(self.path)!r}")
        self._meta_date = when.isoformat() if when else None
        self._register("mbtiles-" + spec_hash(file_fingerprint(self.path)))

    def _own_imagery_date(self) -> str | None:
        """The file's ``capture_date`` metadata as YYYY-MM-DD."""
        return self._meta_date

    def _open(self) -> sqlite3.Connection:
        self._pid = os.getpid()
        return sqlite3.connect(f"file:{self.path.resolve()}?mode=ro", uri=True, check_same_thread=False)

    def _has_metadata(self) -> bool:
        return self._conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'metadata'").fetchone() is not None

    def _zoom(self, meta: dict, key: str, table_zoom: int | None) -> int:
        """A zoom from the metadata (else the tiles table's), InvalidInputError naming a value that is not one."""
        value = meta.get(key, table_zoom if table_zoom is not None else 0)
        try:
            zoom = int(str(value).strip())
        except ValueError:
            zoom = -1
        if not 0 <= zoom <= MAX_MBTILES_ZOOM:
            raise InvalidInputError(
                f"MBTiles file {str(self.path)!r} has {key} {value!r}: not a zoom from 0 to {MAX_MBTILES_ZOOM}"
            )
        return zoom

    def _parse_bounds(self, text: str | None) -> LngLatBbox | None:
        if not text:
            return None
        try:
            w, s, e, n = (float(v) for v in str(text).split(","))
            return LngLatBbox(w, s, e, n)
        except (ValueError, InvalidInputError):
            return None

    def _fetch_tile(self, z: int, x: int, y: int) -> FetchedTile | None:
        if self._pid != os.getpid():  # SQLite connections must not cross a fork
            self._lock = threading.Lock()
            self._conn = self._open()
        with self._lock:
            row = self._conn.execute(
                "SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
                (z, x, xyz_to_tms_y(z, y)),
            ).fetchone()
        if row is None or row[0] is None:
            return None
        data = bytes(row[0])
        try:
            pixels, valid = decode_with_valid(data, f"{self.spec} z={z} x={x} y={y}", max_pixels=MAX_TILE_PIXELS)
        except ImageTooLargeError as exc:
            raise TileTooLargeError(f"tile z={z} x={x} y={y} of {self.spec!r}: {exc}") from None
        except ImageError as exc:
            raise ImageryError(f"tile z={z} x={x} y={y} of {self.spec!r} is corrupt ({exc})") from exc
        return FetchedTile(
            data=data,
            content_type=CONTENT_TYPES.get(self._format),
            pixels=pixels,
            capture_date=self._meta_date,
            valid=valid,
        )

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._conn.close()
