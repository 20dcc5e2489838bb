"""A scan's imagery as one PMTiles v3 archive: the cached base tiles as they were fetched, and the overviews above them
(built and kept by ``imagery.overview``, the map's own) down to the zoom where the scanned area fits a few tiles.

``PMTilesSink`` is an ``imagery.pyramid.TileSink`` writing through the ``pmtiles`` package; tiles go in in tile-id
order, so the archive is clustered. A static viewer reads it by HTTP range requests (``assets/pmtiles-layer.js``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pmtiles.tile import Compression, TileType, zxy_to_tileid
from pmtiles.writer import Writer

from amberwatch.errors import NotFoundError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.overview import build_overviews, overview_min_zoom
from amberwatch.imagery.pyramid import parent_tiles
from amberwatch.imagery.tiles import lnglat_to_tile
from amberwatch.imagery.types import LngLatBbox

TileXY = tuple[int, int]
_E7 = 10_000_000


def tile_type(data: bytes) -> TileType:
    """The PMTiles tile type of an encoded tile, from its first bytes."""
    if data[:3] == b"\xff\xd8\xff":
        return TileType.JPEG
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return TileType.PNG
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return TileType.WEBP
    return TileType.UNKNOWN


@dataclass
class PMTilesSink:
    """Tiles written into a PMTiles archive at ``path``; ``close`` writes the header, directories and metadata.

    ``put`` takes tiles in ascending tile id (``pmtiles.tile.zxy_to_tileid``) for a clustered archive."""

    path: Path
    bounds: LngLatBbox
    metadata: dict[str, Any]
    center_zoom: int = 0
    types: set[TileType] = field(default_factory=set)
    count: int = 0

    def __post_init__(self) -> None:
        self._file = open(self.path, "wb")  # noqa: SIM115 (closed by close)
        self._writer = Writer(self._file)

    def put(self, z: int, x: int, y: int, data: bytes) -> None:
        """Add tile (z, x, y)."""
        self._writer.write_tile(zxy_to_tileid(z, x, y), data)
        self.types.add(tile_type(data))
        self.count += 1

    def close(self) -> None:
        """Write the header (one tile type when all tiles share it, else unknown) and metadata; close the file."""
        try:
            if self.count:
                self._writer.finalize(self._header(), self.metadata)
        finally:
            self._file.close()

    def _header(self) -> dict[str, Any]:
        lon, lat = self.bounds.center_deg
        (kind,) = self.types if len(self.types) == 1 else (TileType.UNKNOWN,)
        return {
            "tile_type": kind,
            "tile_compression": Compression.NONE,
            "min_lon_e7": round(self.bounds.west_deg * _E7),
            "min_lat_e7": round(self.bounds.south_deg * _E7),
            "max_lon_e7": round(self.bounds.east_deg * _E7),
            "max_lat_e7": round(self.bounds.north_deg * _E7),
            "center_zoom": self.center_zoom,
            "center_lon_e7": round(lon * _E7),
            "center_lat_e7": round(lat * _E7),
        }


@dataclass(frozen=True)
class ArchiveSummary:
    """What an imagery archive holds: its zooms, tile count and tile formats."""

    path: Path
    min_zoom: int
    max_zoom: int
    n_tiles: int
    formats: tuple[str, ...]


def tiles_in_bounds(cache: TileCache, source_id: str, z: int, bounds: LngLatBbox) -> list[TileXY]:
    """The cached 'ok' tiles of a source at zoom ``z`` within the bounds' tile range."""
    _, x0, y0 = lnglat_to_tile(bounds.west_deg, bounds.north_deg, z)
    _, x1, y1 = lnglat_to_tile(bounds.east_deg, bounds.south_deg, z)
    return sorted((x, y) for x, y in cache.ok_tiles(source_id, z) if x0 <= x <= x1 and y0 <= y <= y1)


def pyramid_keys(base: Iterable[TileXY], base_z: int, min_z: int) -> list[tuple[int, int, int]]:
    """(z, x, y) of the base tiles and every overview above them down to ``min_z``, in ascending tile id."""
    keys, level = [], set(base)
    for z in range(base_z, min_z - 1, -1):
        if z < base_z:
            level = parent_tiles(level)
        keys.extend((z, x, y) for x, y in level)
    return sorted(keys, key=lambda k: zxy_to_tileid(*k))


def _tile_bytes(cache: TileCache, source_id: str, base_z: int, z: int, x: int, y: int) -> bytes | None:
    """A base tile as cached, or a stored overview tile."""
    if z == base_z:
        row = cache.get(source_id, z, x, y)
        return None if row is None else row.image
    overview = cache.get_overview(source_id, base_z, z, x, y)
    return None if overview is None else overview.data


def write_imagery_archive(
    cache: TileCache, source_id: str, base_z: int, bounds: LngLatBbox, path: Path, metadata: dict[str, Any]
) -> ArchiveSummary:
    """Write a source's cached ``base_z`` imagery within ``bounds`` and its overviews as one PMTiles archive.

    NotFoundError naming the source when the cache holds none of its imagery there."""
    base = tiles_in_bounds(cache, source_id, base_z, bounds)
    if not base:
        raise NotFoundError(f"the tile cache holds no imagery of source {source_id!r} at zoom {base_z} in {bounds}")
    min_z = overview_min_zoom(base_z, bounds)
    build_overviews(cache, source_id, base_z, min_z, base_tiles=base)
    meta = {**metadata, "minzoom": min_z, "maxzoom": base_z, "bounds": list(bounds.as_tuple())}
    sink = PMTilesSink(path, bounds, meta, center_zoom=min(min_z + 1, base_z))
    try:
        for z, x, y in pyramid_keys(base, base_z, min_z):
            data = _tile_bytes(cache, source_id, base_z, z, x, y)
            if data is not None:
                sink.put(z, x, y, data)
    finally:
        sink.close()
    formats = tuple(sorted(t.name.lower() for t in sink.types))
    return ArchiveSummary(path, min_z, base_z, sink.count, formats)
