"""Stream the web-map tiles covering an AOI, grouped into work units, without holding them all in memory.

Tiles are found by a quadtree descent from the smallest tile holding the AOI: a quad wholly inside
the AOI yields all its descendants without geometry tests, a quad outside is pruned, and only quads
on the boundary are split further. A tile whose square merely touches the AOI edge is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import mercantile
import shapely
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

DEFAULT_UNIT_ZOOM_DELTA = 3  # a unit is a parent tile 3 levels up: 8 x 8 = 64 tiles


@dataclass(frozen=True)
class Unit:
    """A unit of work: the tiles of one parent tile (at ``zoom - delta``) that lie in the AOI."""

    parent: tuple[int, int, int]  # (x, y, z) of the parent tile
    zoom: int
    tiles: tuple[tuple[int, int], ...]  # (x, y) at ``zoom``, row-major

    @property
    def size_tiles(self) -> int:
        """Tiles per side of the parent block."""
        return 1 << (self.zoom - self.parent[2])

    @property
    def origin_xy(self) -> tuple[int, int]:
        """(x, y) at ``zoom`` of the block's top-left tile."""
        n = self.size_tiles
        return (self.parent[0] * n, self.parent[1] * n)


def _prepared(geometry: BaseGeometry) -> BaseGeometry:
    shapely.prepare(geometry)  # in place; speeds up the many predicate calls
    return geometry


def _covers_area(geometry: BaseGeometry, tile: mercantile.Tile) -> int:
    """0 = outside (or only touching), 1 = partly inside, 2 = wholly inside."""
    square = box(*mercantile.bounds(tile))
    if not shapely.intersects(geometry, square) or shapely.touches(geometry, square):
        return 0
    return 2 if shapely.contains(geometry, square) else 1


def _root_tiles(geometry: BaseGeometry, zoom: int) -> list[mercantile.Tile]:
    west, south, east, north = geometry.bounds
    root = mercantile.bounding_tile(west, south, east, north)
    if root.z > zoom:
        root = mercantile.parent(root, zoom=zoom)
    return [root]


def iter_quads(geometry: BaseGeometry, zoom: int) -> Iterator[tuple[mercantile.Tile, bool]]:
    """Yield (tile at ``zoom``, wholly_inside) for every tile whose square overlaps the geometry."""
    _prepared(geometry)
    stack = [(t, False) for t in reversed(_root_tiles(geometry, zoom))]
    while stack:
        tile, inside = stack.pop()
        state = 2 if inside else _covers_area(geometry, tile)
        if state == 0:
            continue
        if tile.z == zoom:
            yield tile, state == 2
            continue
        stack.extend((child, state == 2) for child in reversed(mercantile.children(tile)))


def count_tiles(geometry: BaseGeometry, zoom: int, *, stop_after: int | None = None) -> int:
    """Exact number of tiles at ``zoom`` overlapping the geometry, counted without enumerating inner quads.

    With ``stop_after`` the count stops early once it exceeds that number (for size limits).
    """
    _prepared(geometry)
    total = 0
    stack = list(_root_tiles(geometry, zoom))
    while stack:
        tile = stack.pop()
        state = _covers_area(geometry, tile)
        if state == 0:
            continue
        if state == 2:
            total += 4 ** (zoom - tile.z)
        elif tile.z == zoom:
            total += 1
        else:
            stack.extend(mercantile.children(tile))
        if stop_after is not None and total > stop_after:
            return total
    return total


def iter_units(geometry: BaseGeometry, zoom: int, *, unit_zoom_delta: int = DEFAULT_UNIT_ZOOM_DELTA) -> Iterator[Unit]:
    """Stream work units (parent tiles with their child tiles inside the AOI), in quadtree order."""
    delta = max(0, min(unit_zoom_delta, zoom))
    for parent, inside in iter_quads(geometry, zoom - delta):
        n = 1 << delta
        x0, y0 = parent.x * n, parent.y * n
        if inside:
            tiles = tuple((x0 + i, y0 + j) for j in range(n) for i in range(n))
        else:
            tiles = _tiles_in(geometry, zoom, x0, y0, n)
        if tiles:
            yield Unit(parent=(parent.x, parent.y, parent.z), zoom=zoom, tiles=tiles)


def _tiles_in(geometry: BaseGeometry, zoom: int, x0: int, y0: int, n: int) -> tuple[tuple[int, int], ...]:
    xy = [(x0 + i, y0 + j) for j in range(n) for i in range(n)]
    squares = [box(*mercantile.bounds(x, y, zoom)) for x, y in xy]
    hit = shapely.intersects(geometry, squares) & ~shapely.touches(geometry, squares)
    return tuple(t for t, h in zip(xy, hit) if h)


def iter_tiles(geometry: BaseGeometry, zoom: int) -> Iterator[tuple[int, int, int]]:
    """Stream every (z, x, y) tile overlapping the geometry."""
    for unit in iter_units(geometry, zoom):
        for x, y in unit.tiles:
            yield (zoom, x, y)
