"""A local tile folder: ``{z}/{x}/{y}.png|jpg|jpeg|webp`` (XYZ rows), with an optional ``dates.json`` sidecar."""

from __future__ import annotations

import json
import os
from pathlib import Path

import mercantile

from amberwatch.errors import ImageError, ImageryError, ImageTooLargeError, InvalidInputError, TileTooLargeError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.decode import MAX_TILE_PIXELS, decode_with_valid
from amberwatch.imagery.sources import FetchedTile, TileSource, parse_capture_date, spec_hash
from amberwatch.imagery.tiles import tile_resolution_m_per_px
from amberwatch.imagery.types import LngLatBbox

TILE_EXTENSIONS = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
DATES_FILE = "dates.json"


def _int_names(path: Path) -> list[int]:
    out = []
    for entry in os.scandir(path):
        stem = entry.name.split(".")[0]
        if stem.isdigit() and (entry.is_dir() or Path(entry.name).suffix.lower() in TILE_EXTENSIONS):
            out.append(int(stem))
    return out


def read_dates(folder: Path) -> dict[str, str]:
    """The sidecar ``dates.json``: {"default": "YYYY-MM-DD", "z/x/y": "YYYY-MM-DD", ...}; {} when absent."""
    p = folder / DATES_FILE
    if not p.is_file():
        return {}
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{str(p)!r} is not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise InvalidInputError(f"{str(p)!r} must hold an object of 'z/x/y' (or 'default') -> 'YYYY-MM-DD'")
    out = {}
    for k, v in raw.items():
        when = parse_capture_date(str(v), f"date of {k!r} in {str(p)!r}")
        if when is not None:
            out[str(k)] = when.isoformat()
    return out


class FolderTileSource(TileSource):
    """Tiles stored as files ``{z}/{x}/{y}.<ext>``; a missing file means no imagery there."""

    kind = "folder"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        cache: TileCache | None = None,
        capture_date: str | None = None,
        imagery_date: str | None = None,
    ):
        """Index the zoom levels and coverage of the folder and read its dates sidecar."""
        super().__init__(cache=cache, capture_date=capture_date, imagery_date=imagery_date)
        self.path = Path(path)
        if not self.path.is_dir():
            raise InvalidInputError(f"tile folder {str(self.path)!r} does not exist")
        zooms = sorted(z for z in _int_names(self.path) if (self.path / str(z)).is_dir())
        if not zooms:
            raise InvalidInputError(f"folder {str(self.path)!r} holds no {{z}}/{{x}}/{{y}}.png|jpg tiles")
        self.min_zoom, self.max_zoom = zooms[0], zooms[-1]
        self.spec = str(self.path)
        self._dates = read_dates(self.path)
        self.bounds, fingerprint = self._survey(self.max_zoom)
        if self.bounds is not None:
            lon, lat = self.bounds.center_deg
            t = mercantile.tile(lon, lat, self.max_zoom)
            self.native_resolution_m_per_px = tile_resolution_m_per_px(self.max_zoom, t.x, t.y)
        self._register("folder-" + spec_hash(f"{self.path.resolve()}|{fingerprint}"))

    def _own_imagery_date(self) -> str | None:
        """The folder's date for all its tiles (``default`` in its dates file)."""
        return self._dates.get("default") or self._dates.get("*")

    def _survey(self, z: int) -> tuple[LngLatBbox | None, str]:
        """Coverage at one zoom and a fingerprint of its files (count, bytes, newest mtime)."""
        xs: list[int] = []
        ys: list[int] = []
        count = size = newest = 0
        zdir = self.path / str(z)
        for x in _int_names(zdir):
            xdir = zdir / str(x)
            if not xdir.is_dir():
                continue
            for entry in os.scandir(xdir):
                stem, ext = os.path.splitext(entry.name)
                if stem.isdigit() and ext.lower() in TILE_EXTENSIONS:
                    st = entry.stat()
                    count, size, newest = count + 1, size + st.st_size, max(newest, st.st_mtime_ns)
                    xs.append(x)
                    ys.append(int(stem))
        fingerprint = f"{z}|{count}|{size}|{newest}"
        if not xs:
            return None, fingerprint
        ul = mercantile.bounds(min(xs), min(ys), z)
        lr = mercantile.bounds(max(xs), max(ys), z)
        return LngLatBbox(ul.west, lr.south, lr.east, ul.north), fingerprint

    def tile_path(self, z: int, x: int, y: int) -> Path | None:
        """The file of a tile, or None when the folder has none."""
        xdir = self.path / str(z) / str(x)
        for ext in TILE_EXTENSIONS:
            p = xdir / f"{y}{ext}"
            if p.is_file():
                return p
        return None

    def _fetch_tile(self, z: int, x: int, y: int) -> FetchedTile | None:
        p = self.tile_path(z, x, y)
        if p is None:
            return None
        try:
            data = p.read_bytes()
            pixels, valid = decode_with_valid(data, str(p), max_pixels=MAX_TILE_PIXELS)
        except ImageTooLargeError as exc:
            raise TileTooLargeError(f"tile z={z} x={x} y={y}: {exc}") from None
        except (OSError, ImageError) as exc:
            raise ImageryError(f"tile z={z} x={x} y={y}: {str(p)!r} cannot be read ({exc})") from exc
        when = self._dates.get(f"{z}/{x}/{y}") or self._dates.get("default") or self._dates.get("*")
        ctype = TILE_EXTENSIONS[p.suffix.lower()]
        return FetchedTile(data=data, content_type=ctype, pixels=pixels, capture_date=when, valid=valid)
