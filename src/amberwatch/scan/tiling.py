"""Stream the web-map tiles covering an AOI, grouped into work units, without holding them all in memory.

Tiles are found by a quadtree descent from the smallest tile holding the AOI: a quad wholly inside
the AOI yields all its descendants without geometry tests, a quad outside is pruned, and only quads
on the boundary are split further. A tile whose square merely touches the AOI edge is skipped.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import mercantile
import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from amberwatch.imagery.tiles import mercator_row_lat_deg

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


# Tiles whose state is tested in one vectorised call while counting (bounds memory, allows an early stop).
COUNT_BATCH_TILES = 4096


class _AreaIndex:
    """The AOI's polygons in an STRtree: a tile is tested only against the polygons near it.

    A valid (Multi)Polygon's parts meet at points at most, so a square overlaps the AOI's interior when it
    overlaps one part's, and lies within the AOI when it lies within one part: the same answers as testing
    the whole geometry, in time that does not grow with the number of polygons.
    """

    def __init__(self, geometry: BaseGeometry) -> None:
        self.parts = shapely.get_parts(geometry)
        shapely.prepare(self.parts)
        self.tree = shapely.STRtree(self.parts)

    def states(self, xs: np.ndarray, ys: np.ndarray, zoom: int) -> np.ndarray:
        """Per tile: 0 = outside (or only touching), 1 = partly inside, 2 = wholly inside."""
        squares = _squares(xs, ys, zoom)
        tile_idx, part_idx = self.tree.query(squares, predicate="intersects")
        parts, hit = self.parts[part_idx], squares[tile_idx]
        inner = ~shapely.touches(parts, hit)
        whole = inner & shapely.contains(parts, hit)
        state = np.zeros(len(xs), dtype=np.int8)
        np.maximum.at(state, tile_idx[inner], 1)
        np.maximum.at(state, tile_idx[whole], 2)
        return state

    def tile_states(self, tiles: list[mercantile.Tile]) -> list[int]:
        """states() of a few mercantile tiles of one zoom."""
        xs = np.array([t.x for t in tiles], dtype=np.int64)
        ys = np.array([t.y for t in tiles], dtype=np.int64)
        return self.states(xs, ys, tiles[0].z).tolist()


@functools.lru_cache(maxsize=1 << 16)
def _lat_deg(y: int, zoom: int) -> float:
    return mercator_row_lat_deg(y, 2**zoom)  # mercantile.bounds' own floats


def _squares(xs: np.ndarray, ys: np.ndarray, zoom: int) -> np.ndarray:
    """Tile squares as mercantile.bounds gives them (the same floats), built in one call."""
    z2 = math.pow(2, zoom)
    rows = np.unique(np.concatenate([ys, ys + 1]))
    lat = dict(zip(rows.tolist(), (_lat_deg(int(y), zoom) for y in rows), strict=True))
    north = np.array([lat[y] for y in ys.tolist()])
    south = np.array([lat[y + 1] for y in ys.tolist()])
    return shapely.box(xs / z2 * 360.0 - 180.0, south, (xs + 1) / z2 * 360.0 - 180.0, north)


def _root_tiles(geometry: BaseGeometry, zoom: int) -> list[mercantile.Tile]:
    west, south, east, north = geometry.bounds
    root = mercantile.bounding_tile(west, south, east, north)
    if root.z > zoom:
        root = mercantile.parent(root, zoom=zoom)
    return [root]


def iter_quads(geometry: BaseGeometry, zoom: int) -> Iterator[tuple[mercantile.Tile, bool]]:
    """Yield (tile at ``zoom``, wholly_inside) for every tile whose square overlaps the geometry."""
    index = _AreaIndex(geometry)
    roots = _root_tiles(geometry, zoom)
    stack = list(reversed(list(zip(roots, index.tile_states(roots), strict=True))))
    while stack:
        tile, state = stack.pop()
        if state == 0:
            continue
        if tile.z == zoom:
            yield tile, state == 2
            continue
        children = mercantile.children(tile)
        states = [2] * len(children) if state == 2 else index.tile_states(children)
        stack.extend(reversed(list(zip(children, states, strict=True))))


def count_tiles(geometry: BaseGeometry, zoom: int, *, stop_after: int | None = None) -> int:
    """Exact number of tiles at ``zoom`` overlapping the geometry, counted without enumerating inner quads.

    Quads are tested in vectorised batches against an STRtree of the polygons (fast for many polygons).
    With ``stop_after`` the count stops early once it exceeds that number (for size limits).
    """
    index = _AreaIndex(geometry)
    total = 0
    root = _root_tiles(geometry, zoom)[0]
    stack = [(np.array([root.x]), np.array([root.y]), root.z)]
    while stack:
        xs, ys, z = stack.pop()
        state = index.states(xs, ys, z)
        total += int(np.count_nonzero(state == 2)) * 4 ** (zoom - z)
        edge = state == 1
        if z == zoom:
            total += int(np.count_nonzero(edge))
        else:
            cx, cy = _children(xs[edge], ys[edge])
            stack.extend(
                (cx[i : i + COUNT_BATCH_TILES], cy[i : i + COUNT_BATCH_TILES], z + 1)
                for i in range(0, len(cx), COUNT_BATCH_TILES)
            )
        if stop_after is not None and total > stop_after:
            return total
    return total


def _children(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.repeat(xs * 2, 4) + np.tile([0, 1, 0, 1], len(xs)),
        np.repeat(ys * 2, 4) + np.tile([0, 0, 1, 1], len(ys)),
    )


def iter_units(geometry: BaseGeometry, zoom: int, *, unit_zoom_delta: int = DEFAULT_UNIT_ZOOM_DELTA) -> Iterator[Unit]:
    """Stream work units (parent tiles with their child tiles inside the AOI), in quadtree order."""
    delta = max(0, min(unit_zoom_delta, zoom))
    index = _AreaIndex(geometry)
    for parent, inside in iter_quads(geometry, zoom - delta):
        n = 1 << delta
        x0, y0 = parent.x * n, parent.y * n
        if inside:
            tiles = tuple((x0 + i, y0 + j) for j in range(n) for i in range(n))
        else:
            tiles = _tiles_in(index, zoom, x0, y0, n)
        if tiles:
            yield Unit(parent=(parent.x, parent.y, parent.z), zoom=zoom, tiles=tiles)


def _tiles_in(index: _AreaIndex, zoom: int, x0: int, y0: int, n: int) -> tuple[tuple[int, int], ...]:
    xy = [(x0 + i, y0 + j) for j in range(n) for i in range(n)]
    xs = np.array([x for x, _ in xy], dtype=np.int64)
    ys = np.array([y for _, y in xy], dtype=np.int64)
    hit = index.states(xs, ys, zoom) > 0
    return tuple(t for t, h in zip(xy, hit, strict=True) if h)


def iter_tiles(geometry: BaseGeometry, zoom: int) -> Iterator[tuple[int, int, int]]:
    """Stream every (z, x, y) tile overlapping the geometry."""
    for unit in iter_units(geometry, zoom):
        for x, y in unit.tiles:
            yield (zoom, x, y)
