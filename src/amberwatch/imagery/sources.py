"""Open any imagery spec as a TileSource: cache-first 256x256 RGB Web Mercator tiles with capture dates.

``open_source(spec)`` accepts an XYZ/TMS/quadkey URL template, an xyzservices preset name, a GeoTIFF/COG
in any CRS, a ``{z}/{x}/{y}.png|jpg`` tile folder or an .mbtiles file. Every tile read is stored once in
the TileCache (status 'ok' with the encoded bytes, or 'empty' for no imagery), so later reads never refetch.
Failures that persist after retries raise ImageryError and are never cached, so the next run retries them.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import threading
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime

import mercantile
import numpy as np
from PIL import Image

from amberwatch.errors import (
    AmberwatchWarning,
    BlankTileWarning,
    ImageError,
    ImageryError,
    InvalidInputError,
    NoImageryWarning,
    OversizedTileWarning,
    ResampledTileWarning,
    TileTooLargeError,
)
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.decode import MAX_TILE_PIXELS, decode_with_valid
from amberwatch.imagery.tiles import MAX_ZOOM, check_tile, tile_lnglat_bbox, tile_resolution_m_per_px
from amberwatch.imagery.types import TILE_SIZE_PX, GeoImage, LngLatBbox, check_imagery_date, dated_source_id

TileKey = tuple[int, int, int]  # (z, x, y), XYZ rows (top origin)
TileRead = GeoImage | None | ImageryError  # what reading one tile gives: an image, nothing there, or the error

_MISS = object()
_COLLECTOR = threading.local()  # .into: the list this thread's tile warnings go to (None: warn as usual)


@contextlib.contextmanager
def collect_tile_warnings() -> Iterator[list[AmberwatchWarning]]:
    """Collect the typed warnings this thread's tile reads give into a list instead of issuing them.

    Per thread, unlike ``warnings.catch_warnings`` (process-global): another thread's filters (an "ignore" around
    its own work) cannot swallow them, nor can they catch that thread's warnings."""
    caught: list[AmberwatchWarning] = []
    previous = getattr(_COLLECTOR, "into", None)
    _COLLECTOR.into = caught
    try:
        yield caught
    finally:
        _COLLECTOR.into = previous


def _warn(warning: AmberwatchWarning, stacklevel: int) -> None:
    """Issue a tile warning, or add it to this thread's collector (``collect_tile_warnings``)."""
    into = getattr(_COLLECTOR, "into", None)
    if into is None:
        warnings.warn(warning, stacklevel=stacklevel + 1)
    else:
        into.append(warning)


@dataclass
class FetchedTile:
    """A tile as a reader produced it: encoded bytes to cache plus the decoded RGB pixels and their imagery mask."""

    data: bytes
    content_type: str | None
    pixels: np.ndarray
    capture_date: str | None = None
    valid: np.ndarray | None = None  # HxW bool, True where there is imagery; None: everywhere


def tile_key(tile: object) -> TileKey:
    """(z, x, y) ints from a (z, x, y) tuple or a mercantile.Tile (which is ordered x, y, z)."""
    if isinstance(tile, mercantile.Tile):
        return (int(tile.z), int(tile.x), int(tile.y))
    z, x, y = tile  # type: ignore[misc]
    return (int(z), int(x), int(y))


def parse_capture_date(value: str | date | None, name: str = "capture date") -> date | None:
    """Parse 'YYYY-MM-DD', an ISO datetime or a TIFF 'YYYY:MM:DD HH:MM:SS' stamp to a date; None stays None."""
    if value is None or isinstance(value, date):
        return value if not isinstance(value, datetime) else value.date()
    text = str(value).strip()
    if not text:
        return None
    candidates = [text, text.replace(":", "-", 2) if len(text) >= 10 and text[4] == ":" else text]
    for cand in candidates:
        try:
            return date.fromisoformat(cand[:10])
        except ValueError:
            continue
    raise InvalidInputError(f"{name} {text!r} is not a date (expected YYYY-MM-DD)")


def is_blank(pixels: np.ndarray) -> bool:
    """True when a tile holds no imagery: one uniform colour (transparent tiles decode to uniform black)."""
    return bool(pixels.size == 0 or (pixels == pixels[0, 0]).all())


def spec_hash(text: str) -> str:
    """A short stable hash of a normalised, secret-free spec."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _as_tile_pixels(pixels: np.ndarray) -> np.ndarray:
    if pixels.shape[:2] == (TILE_SIZE_PX, TILE_SIZE_PX):
        return pixels
    img = Image.fromarray(pixels).resize((TILE_SIZE_PX, TILE_SIZE_PX), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8).copy()


def _as_tile_valid(valid: np.ndarray | None) -> np.ndarray | None:
    if valid is None or valid.shape == (TILE_SIZE_PX, TILE_SIZE_PX):
        return valid
    img = Image.fromarray(valid.astype(np.uint8) * 255).resize((TILE_SIZE_PX, TILE_SIZE_PX), Image.Resampling.NEAREST)
    return np.asarray(img) >= 128


class TileSource(abc.ABC):
    """A source of 256x256 RGB Web Mercator tiles, read cache-first."""

    kind: str = "tiles"
    source_id: str
    spec: str
    min_zoom: int = 0
    max_zoom: int = MAX_ZOOM
    bounds: LngLatBbox | None = None
    native_resolution_m_per_px: float | None = None
    attribution: str | None = None
    imagery_date: str | None = None  # the date or release of this imagery (given, or the kind's own), None: undated

    def __init__(
        self, *, cache: TileCache | None = None, capture_date: str | None = None, imagery_date: str | None = None
    ) -> None:
        """Set the cache, the default capture date and the imagery date or release asked for (both validated)."""
        self.cache = cache
        self.default_capture_date = parse_capture_date(capture_date, "capture_date option")
        self._asked_date = check_imagery_date(imagery_date)

    def _register(self, base_id: str) -> None:
        """Fix the source id (``base_id``, dated when an imagery date was asked for) and record it in the cache.

        A date the imagery knows itself (``_own_imagery_date``) is kept in ``imagery_date`` but not added to the id:
        such kinds' base ids already fingerprint the file the date comes from.
        """
        self.source_id = dated_source_id(base_id, self._asked_date)
        self.imagery_date = self._asked_date or self._own_imagery_date()
        if self.cache is not None:
            self.cache.register_source(self.source_id, self.spec, self.attribution, base_id, self.imagery_date)

    def _own_imagery_date(self) -> str | None:
        """The date the imagery records about itself (a GeoTIFF tag, a folder's dates file), None when it has none."""
        return None

    # -- reading -------------------------------------------------------------------------------------
    def read_tile(self, z: int, x: int, y: int) -> GeoImage | None:
        """The RGB tile (XYZ rows), None when there is no imagery; ImageryError when it keeps failing."""
        z, x, y = int(z), int(x), int(y)
        check_tile(z, x, y)
        hit = self._from_cache(z, x, y)
        if hit is not _MISS:
            return hit  # type: ignore[return-value]
        try:
            fetched = self._fetch_tile(z, x, y)
        except ImageryError as exc:
            self._failed(exc)
            raise
        return self._accept((z, x, y), fetched)

    def read_tiles(self, tiles: Iterable[TileKey]) -> Iterator[tuple[TileKey, TileRead]]:
        """Read many tiles, yielding (tile, GeoImage | None | ImageryError); streamed, never materialised."""
        for t in tiles:
            key = tile_key(t)
            try:
                yield key, self.read_tile(*key)
            except ImageryError as exc:
                yield key, exc

    @staticmethod
    def _failed(exc: ImageryError) -> ImageryError:
        """Warn about a tile refused for its size (typed, so scans count it) and hand the error back."""
        if isinstance(exc, TileTooLargeError):
            _warn(OversizedTileWarning(str(exc)), stacklevel=4)
        return exc

    @abc.abstractmethod
    def _fetch_tile(self, z: int, x: int, y: int) -> FetchedTile | None:
        """Produce one tile from the underlying source (no cache); None = no imagery there."""

    # Deliberately a concrete no-op, not abstract: sources holding nothing (folder, cached) don't override it.
    def close(self) -> None:  # noqa: B027
        """Release files, connections and threads (the cache belongs to the caller)."""

    def __enter__(self) -> TileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, object]:
        """A plain summary: type, id, spec, zooms, bounds, resolution."""
        return {
            "type": self.kind,
            "source_id": self.source_id,
            "spec": self.spec,
            "min_zoom": self.min_zoom,
            "max_zoom": self.max_zoom,
            "bounds": self.bounds.as_tuple() if self.bounds else None,
            "native_resolution_m_per_px": self.native_resolution_m_per_px,
            "attribution": self.attribution,
        }

    # -- shared machinery ----------------------------------------------------------------------------
    def _tile_label(self, z: int, x: int, y: int) -> str:
        return f"tile z={z} x={x} y={y} of {self.spec}"

    def _geoimage(
        self, key: TileKey, pixels: np.ndarray, capture_date: str | None, valid: np.ndarray | None = None
    ) -> GeoImage:
        z, x, y = key
        when = self.default_capture_date
        if when is None and capture_date:
            try:
                when = parse_capture_date(capture_date)
            except InvalidInputError:
                when = None
        return GeoImage(
            pixels=_as_tile_pixels(pixels),
            bbox=tile_lnglat_bbox(z, x, y),
            resolution_m_per_px=tile_resolution_m_per_px(z, x, y),
            source_id=self.source_id,
            capture_date=when,
            tile=(x, y, z),
            valid=_as_tile_valid(valid),
        )

    def _from_cache(self, z: int, x: int, y: int) -> object:
        if self.cache is None:
            return _MISS
        row = self.cache.get(self.source_id, z, x, y)
        if row is None:
            return _MISS
        if row.image is None:
            return None
        try:
            pixels, valid = decode_with_valid(row.image, self._tile_label(z, x, y), max_pixels=MAX_TILE_PIXELS)
        except ImageError:
            return _MISS  # a damaged cache entry is refetched and replaced
        return self._geoimage((z, x, y), pixels, row.capture_date, valid)

    def _accept(self, key: TileKey, fetched: FetchedTile | None) -> GeoImage | None:
        """Cache a freshly fetched tile (or its absence) and turn it into a GeoImage or None."""
        z, x, y = key
        if fetched is None or (fetched.valid is not None and not fetched.valid.any()):
            _warn(NoImageryWarning(f"no imagery for {self._tile_label(z, x, y)}"), stacklevel=3)
            self._cache_put(key, None, status="empty")
            return None
        if is_blank(fetched.pixels):
            _warn(BlankTileWarning(f"blank {self._tile_label(z, x, y)} (uniform colour)"), stacklevel=3)
            self._cache_put(key, None, status="empty")
            return None
        if fetched.pixels.shape[:2] != (TILE_SIZE_PX, TILE_SIZE_PX):
            h, w = fetched.pixels.shape[:2]
            _warn(
                ResampledTileWarning(
                    f"{self._tile_label(z, x, y)} is {w}x{h} px, not {TILE_SIZE_PX}x{TILE_SIZE_PX}: resampled to fit"
                ),
                stacklevel=3,
            )
        date_text = fetched.capture_date
        if date_text is None and self.default_capture_date is not None:
            date_text = self.default_capture_date.isoformat()
        self._cache_put(key, fetched.data, content_type=fetched.content_type, capture_date=date_text)
        return self._geoimage(key, fetched.pixels, date_text, fetched.valid)

    def _cache_put(
        self,
        key: TileKey,
        data: bytes | None,
        *,
        status: str = "ok",
        content_type: str | None = None,
        capture_date: str | None = None,
    ) -> None:
        if self.cache is not None:
            z, x, y = key
            self.cache.put(
                self.source_id, z, x, y, data, status=status, content_type=content_type, capture_date=capture_date
            )


class CachedTileSource(TileSource):
    """A read-only source over one source id in the tile cache: no network, missing tiles read as None."""

    kind = "cache"

    def __init__(self, cache: TileCache, source_id: str) -> None:
        """Wrap the cached tiles of ``source_id``."""
        super().__init__(cache=cache)
        self.source_id = source_id
        self.spec = cache.source_spec(source_id) or f"cache:{source_id}"
        zooms = cache.zoom_range(source_id)
        if zooms is not None:
            self.min_zoom, self.max_zoom = zooms

    def _fetch_tile(self, z: int, x: int, y: int) -> FetchedTile | None:
        raise AssertionError("unreachable: read_tile is overridden")

    def read_tile(self, z: int, x: int, y: int) -> GeoImage | None:
        """The cached tile or None (never fetched, or recorded as empty)."""
        z, x, y = int(z), int(x), int(y)
        check_tile(z, x, y)
        hit = self._from_cache(z, x, y)
        return None if hit is _MISS else hit  # type: ignore[return-value]


def open_cached_source(cache: TileCache, source_id: str) -> TileSource:
    """A read-only TileSource over the cache only (no network), for the web app and the story builder."""
    return CachedTileSource(cache, source_id)
