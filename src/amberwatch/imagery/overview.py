"""Overview tiles: a source's cached imagery at lower zooms, each tile the 2x2 downsampled mosaic of its four
children, recursively (like ``gdaladdo``), so the scanned area stays visible on a zoomed-out map.

Overviews are built on demand, one ``imagery.pyramid`` step (``OVERVIEW_STYLE``) at a time, and kept in the tile
cache through ``CacheOverviewSink`` (``TileCache.put_overview``) with the number of base tiles under them; when that
number changes (a scan added tiles), the overview is stale and is rebuilt. ``build_overviews`` builds a whole
pyramid level by level (each tile decoded once), e.g. in the background when the map starts. Only tiles with cached
imagery under them exist: anything else is None.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable, Iterable

from PIL import Image, UnidentifiedImageError

from amberwatch.errors import InvalidInputError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.decode import MAX_TILE_PIXELS
from amberwatch.imagery.pyramid import OVERVIEW_STYLE, content_type, parent_tiles
from amberwatch.imagery.tiles import tile_count_for_bbox
from amberwatch.imagery.types import TILE_SIZE_PX, LngLatBbox

log = logging.getLogger(__name__)

MIN_LEVELS = 5  # overviews reach at least base zoom - 5 (zoom 12 under zoom-17 imagery) ...
MAX_LEVELS = 12  # ... and never more than 12 levels below it (each level down covers 4x the ground)
FIT_TILES = 4  # ... and down to the zoom where the scanned area fits in 2 x 2 tiles
_build_lock = threading.Lock()  # one build at a time: a request waits for a tile another is building, not redoes it


def overview_min_zoom(base_z: int, bounds: LngLatBbox | None) -> int:
    """The lowest zoom overviews are built for: 5 levels below ``base_z``, or lower until ``bounds`` fit 2x2 tiles."""
    floor = max(0, base_z - MAX_LEVELS)
    z = max(floor, base_z - MIN_LEVELS)
    if bounds is None:
        return z
    while z > floor and tile_count_for_bbox(bounds, z) > FIT_TILES:
        z -= 1
    return z


def _span(base_z: int, z: int, x: int, y: int) -> tuple[range, range]:
    """The x and y ranges of the base tiles under tile (z, x, y)."""
    k = 1 << (base_z - z)
    return range(x * k, (x + 1) * k), range(y * k, (y + 1) * k)


def _decode(data: bytes) -> Image.Image | None:
    """A cached tile as a 256 px RGBA image, or None when it cannot be read (then it is left out)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_TILE_PIXELS:
                return None
            img.load()
            rgba = img.convert("RGBA")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    if rgba.size != (TILE_SIZE_PX, TILE_SIZE_PX):
        rgba = rgba.resize((TILE_SIZE_PX, TILE_SIZE_PX), Image.Resampling.BOX)
    return rgba


class CacheOverviewSink:
    """The overview tiles of one source's ``base_z`` imagery in the tile cache, each stored with the number of base
    tiles under it (so a scan adding tiles makes it stale)."""

    def __init__(self, cache: TileCache, source_id: str, base_z: int) -> None:
        self.cache, self.source_id, self.base_z = cache, source_id, base_z

    def put(self, z: int, x: int, y: int, data: bytes) -> None:
        """Store overview tile (z, x, y) with its content type and the base tiles now under it."""
        xs, ys = _span(self.base_z, z, x, y)
        self.put_counted(z, x, y, data, self.cache.count_ok_in(self.source_id, self.base_z, xs, ys))

    def put_counted(self, z: int, x: int, y: int, data: bytes, n_base: int) -> None:
        """Store overview tile (z, x, y) built from ``n_base`` base tiles (counted before it was built, so tiles
        added meanwhile make it stale rather than hidden)."""
        self.cache.put_overview(self.source_id, self.base_z, z, x, y, data, content_type(data), n_base)

    def close(self) -> None:
        """Nothing to finish: each put is its own transaction in the cache."""


def _child(cache: TileCache, source_id: str, base_z: int, z: int, x: int, y: int) -> bytes | None:
    """The encoded tile (z, x, y): a cached base tile at ``base_z``, else an overview (built if needed)."""
    if z == base_z:
        row = cache.get(source_id, z, x, y)
        return None if row is None else row.image
    built = _build(cache, source_id, base_z, z, x, y)
    return None if built is None else built[0]


def _stored(cache: TileCache, source_id: str, base_z: int, z: int, x: int, y: int) -> tuple[int, tuple | None]:
    """(base tiles under the tile, its stored (bytes, content type) if built from that many, else None)."""
    xs, ys = _span(base_z, z, x, y)
    n_base = cache.count_ok_in(source_id, base_z, xs, ys)
    row = cache.get_overview(source_id, base_z, z, x, y) if n_base else None
    if row is not None and row.n_base == n_base:
        return n_base, (row.data, row.content_type)
    return n_base, None


def _build(cache: TileCache, source_id: str, base_z: int, z: int, x: int, y: int) -> tuple[bytes, str] | None:
    """The overview tile from the cache when current, else built from its four children and stored."""
    n_base, current = _stored(cache, source_id, base_z, z, x, y)
    if n_base == 0 or current is not None:
        return current
    children = {}
    for dx in (0, 1):
        for dy in (0, 1):
            data = _child(cache, source_id, base_z, z + 1, 2 * x + dx, 2 * y + dy)
            img = None if data is None else _decode(data)
            if img is not None:
                children[(dx, dy)] = img
    data = OVERVIEW_STYLE.encode(OVERVIEW_STYLE.downsample(children))
    assert data is not None  # the overview style stores every tile
    CacheOverviewSink(cache, source_id, base_z).put_counted(z, x, y, data, n_base)
    return data, content_type(data)


def overview_tile(cache: TileCache, source_id: str, base_z: int, z: int, x: int, y: int) -> tuple[bytes, str] | None:
    """(encoded bytes, content type) of tile (z, x, y) built from the source's ``base_z`` tiles, or None when no
    cached imagery lies under it. ``z`` must be below ``base_z`` and at most MAX_LEVELS below it."""
    if not (base_z - MAX_LEVELS <= z < base_z) or not (0 <= x < 2**z and 0 <= y < 2**z):
        raise InvalidInputError(
            f"overview tile {z}/{x}/{y} of zoom-{base_z} imagery does not exist"
            f" (zoom {max(0, base_z - MAX_LEVELS)}..{base_z - 1}, x and y in 0..2**z-1)"
        )
    n_base, current = _stored(cache, source_id, base_z, z, x, y)
    if n_base == 0 or current is not None:
        return current
    with _build_lock:
        return _build(cache, source_id, base_z, z, x, y)


def build_overviews(
    cache: TileCache,
    source_id: str,
    base_z: int,
    min_z: int,
    *,
    stop: Callable[[], bool] = lambda: False,
    base_tiles: Iterable[tuple[int, int]] | None = None,
) -> int:
    """Build (or refresh) every overview of a source from ``base_z - 1`` down to ``min_z``, level by level, so
    each tile is decoded once (``base_tiles``: only the overviews above these base tiles; default all cached ones).
    Returns how many tiles it went through; stops early when ``stop()`` is true."""
    tiles = parent_tiles(cache.ok_tiles(source_id, base_z) if base_tiles is None else base_tiles)
    done = 0
    for z in range(base_z - 1, max(min_z, base_z - MAX_LEVELS, 0) - 1, -1):
        for x, y in sorted(tiles):
            if stop():
                return done
            overview_tile(cache, source_id, base_z, z, x, y)
            done += 1
        tiles = parent_tiles(tiles)
    log.info("overviews of %s (zoom %d) built down to zoom %d: %d tiles", source_id, base_z, min_z, done)
    return done
