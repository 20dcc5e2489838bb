"""Map units of a scan (the cells of its probability grids), their geometry, and their strata.

A map unit is one cell of a ``scan_tiles`` grid: tile (z, x, y) is split into ``grid_cells`` x
``grid_cells`` Web Mercator squares, row 0 at the north edge, column 0 at the west edge (row-major,
like the image the model saw). Only tiles with status ``done`` have map units, and only their cells with imagery
(``valid_cells``): ground without imagery is outside the area frame.

Mapping rule: a cell is mapped **mining** when ``grid value / 255 >= scan.model_threshold``.
Optional buffer stratum: a non-mining cell whose centre lies within ``buffer_m`` metres of a mining
cell (of the same zoom and grid size; neighbouring tiles included) - where omission errors hide.

Everything streams over ``scan_tiles``; only the masks of tiles with mining cells (and of tiles in
their buffer) are kept in memory, never all cells.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import ClassVar

import numpy as np
from pyproj import Geod
from scipy import ndimage

from amberwatch.errors import DatabaseError, InvalidInputError
from amberwatch.imagery.types import EARTH_CIRCUMFERENCE_M
from amberwatch.results.records import Scan
from amberwatch.results.store import done_tiles, get_scan

MINING, BUFFER, NOT_MINING = "mining", "buffer", "not_mining"
STRATA: tuple[str, ...] = (MINING, BUFFER, NOT_MINING)
STRATUM_MAP_CLASS: dict[str, str] = {MINING: MINING, BUFFER: NOT_MINING, NOT_MINING: NOT_MINING}
REFERENCE_CLASSES: tuple[str, ...] = (MINING, NOT_MINING)
MAPPING_RULE = "grid value/255 >= model_threshold"
NO_IMAGERY = "no_imagery"  # a labeller's answer for a sample unit without imagery: it leaves the sample
NO_IMAGERY_CODE = 255  # stratum code of a cell without imagery (outside the frame)

_HALF_WORLD_M = EARTH_CIRCUMFERENCE_M / 2
_GEOD = Geod(ellps="WGS84")

TileKey = tuple[int, int, int]  # (z, x, y)


@dataclass(frozen=True)
class DoneTile:
    """A processed tile with its probability grid (uint8, grid_cells x grid_cells) and its cells with imagery."""

    z: int
    x: int
    y: int
    grid: np.ndarray
    valid: np.ndarray | None = None  # bool grid_cells x grid_cells; None: every cell has imagery

    @property
    def key(self) -> TileKey:
        """(z, x, y)."""
        return (self.z, self.x, self.y)

    @property
    def grid_cells(self) -> int:
        """Cells per side."""
        return int(self.grid.shape[0])


def cell_edges_deg(z: int, x: int, y: int, grid_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Longitudes (west to east) and latitudes (north to south) of the grid_cells+1 cell edges of a tile."""
    n = 2**z
    tile_m = EARTH_CIRCUMFERENCE_M / n
    steps = np.arange(grid_cells + 1) / grid_cells
    mx = -_HALF_WORLD_M + (x + steps) * tile_m
    my = _HALF_WORLD_M - (y + steps) * tile_m
    lon = mx / _HALF_WORLD_M * 180.0
    lat = np.degrees(2 * np.arctan(np.exp(my / _HALF_WORLD_M * math.pi)) - math.pi / 2)
    return lon, lat


def cell_bounds_deg(z: int, x: int, y: int, grid_cells: int, row: int, col: int) -> tuple[float, float, float, float]:
    """(west, south, east, north) in degrees of one cell."""
    if not (0 <= row < grid_cells and 0 <= col < grid_cells):
        raise InvalidInputError(f"cell ({row}, {col}) is outside a {grid_cells}x{grid_cells} grid")
    lon, lat = cell_edges_deg(z, x, y, grid_cells)
    return (float(lon[col]), float(lat[row + 1]), float(lon[col + 1]), float(lat[row]))


@lru_cache(maxsize=4096)
def _row_areas_ha_cached(z: int, y: int, grid_cells: int) -> tuple[float, ...]:
    lon, lat = cell_edges_deg(z, 0, y, grid_cells)
    w, e = float(lon[0]), float(lon[1])
    out = []
    for r in range(grid_cells):
        n, s = float(lat[r]), float(lat[r + 1])
        area_m2, _ = _GEOD.polygon_area_perimeter([w, e, e, w], [s, s, n, n])
        out.append(abs(area_m2) / 10_000.0)
    return tuple(out)


def row_areas_ha(z: int, y: int, grid_cells: int) -> np.ndarray:
    """Ellipsoidal (WGS84) area in hectares of one cell in each grid row of tile row y (same for all x)."""
    return np.array(_row_areas_ha_cached(z, y, grid_cells))


def cell_size_m(z: int, y: int, grid_cells: int) -> float:
    """Ground side length in metres of a cell at the centre latitude of tile row y."""
    _, lat = cell_edges_deg(z, 0, y, 2)
    return EARTH_CIRCUMFERENCE_M * math.cos(math.radians(float(lat[1]))) / (2**z * grid_cells)


def mining_lookup(threshold: float) -> np.ndarray:
    """Boolean table over the 256 grid values: True where the value maps to mining."""
    return (np.arange(256) / 255.0) >= threshold


def load_scan(conn: sqlite3.Connection, scan_id: int) -> Scan:
    """The scan of a scan id, or NotFoundError."""
    try:
        return get_scan(conn, scan_id)
    except sqlite3.OperationalError as exc:
        raise DatabaseError(f"cannot read scans from the project database: {exc}") from exc


def iter_done_tiles(conn: sqlite3.Connection, scan_id: int) -> Iterator[DoneTile]:
    """Stream the done tiles of a scan in (z, x, y) order with their decoded grids and imagery masks."""
    for tile in done_tiles(conn, scan_id):
        z, x, y, g, blob, valid = tile.z, tile.x, tile.y, tile.grid_cells, tile.grid, tile.valid_cells
        if not g or blob is None or len(blob) != g * g or (valid is not None and len(valid) != g * g):
            raise DatabaseError(
                f"scan {scan_id} tile {z}/{x}/{y} is 'done' but its grid or imagery mask is missing or not "
                f"{g}x{g} bytes ({0 if blob is None else len(blob)} bytes)"
            )
        mask = None if valid is None else np.frombuffer(valid, dtype=np.uint8).reshape(g, g) > 0
        yield DoneTile(z, x, y, np.frombuffer(blob, dtype=np.uint8).reshape(g, g), mask)


def _buffer_structure(radius_m: float, cell_m: float) -> np.ndarray:
    """Cell offsets whose centre is within radius_m of a cell's square (disk-like structuring element)."""
    r = math.ceil(radius_m / cell_m + 0.5)
    d = np.arange(-r, r + 1)
    dy, dx = np.meshgrid(d, d, indexing="ij")
    gap_x = np.maximum(np.abs(dx) - 0.5, 0.0) * cell_m
    gap_y = np.maximum(np.abs(dy) - 0.5, 0.0) * cell_m
    return np.hypot(gap_x, gap_y) <= radius_m


@dataclass
class StrataSurvey:
    """Pass one over a scan: cell counts and areas per stratum, and the masks needed to classify cells."""

    strata: ClassVar[tuple[str, ...]] = STRATA  # the stratum codes index this
    map_classes: ClassVar[dict[str, str]] = STRATUM_MAP_CLASS
    scan_id: int
    threshold: float
    buffer_m: float | None
    cell_counts: dict[str, int] = field(default_factory=lambda: {s: 0 for s in STRATA})
    area_ha: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in STRATA})
    tiles_done: int = 0
    mining_masks: dict[TileKey, np.ndarray] = field(default_factory=dict)
    buffer_masks: dict[TileKey, np.ndarray] = field(default_factory=dict)
    nodata_masks: dict[TileKey, np.ndarray] = field(default_factory=dict)  # cells without imagery (buffer only)

    @property
    def total_cells(self) -> int:
        """All map units of the scan."""
        return sum(self.cell_counts.values())

    @property
    def total_area_ha(self) -> float:
        """Area of all map units in hectares."""
        return sum(self.area_ha.values())

    def strata_present(self) -> list[str]:
        """Strata with at least one cell, in the fixed order mining, buffer, not_mining."""
        return [s for s in STRATA if self.cell_counts[s] > 0]

    def stratum_codes(self, tile: DoneTile) -> np.ndarray:
        """Index into STRATA of every cell of a tile (uint8, grid_cells x grid_cells); NO_IMAGERY_CODE off the frame."""
        codes = np.full(tile.grid.shape, STRATA.index(NOT_MINING), dtype=np.uint8)
        buf = self.buffer_masks.get(tile.key)
        if buf is not None and buf.shape == tile.grid.shape:
            codes[buf] = STRATA.index(BUFFER)
        codes[mining_lookup(self.threshold)[tile.grid]] = STRATA.index(MINING)
        if tile.valid is not None:
            codes[~tile.valid] = NO_IMAGERY_CODE
        return codes


def survey_strata(conn: sqlite3.Connection, scan_id: int, buffer_m: float | None = None) -> StrataSurvey:
    """Count map units and their area per stratum in one pass over the scan's done tiles."""
    scan = load_scan(conn, scan_id)
    if buffer_m is not None and not (math.isfinite(buffer_m) and buffer_m >= 0):
        raise InvalidInputError(f"buffer distance {buffer_m!r} m must be a non-negative number")
    survey = StrataSurvey(scan_id=scan_id, threshold=float(scan.model_threshold), buffer_m=buffer_m or None)
    lut = mining_lookup(survey.threshold)
    grid_sizes: dict[TileKey, int] = {}
    for tile in iter_done_tiles(conn, scan_id):
        survey.tiles_done += 1
        areas = row_areas_ha(tile.z, tile.y, tile.grid_cells)
        valid = np.ones(tile.grid.shape, dtype=bool) if tile.valid is None else tile.valid
        mining = lut[tile.grid] & valid
        n_mining = int(mining.sum())
        survey.cell_counts[MINING] += n_mining
        survey.cell_counts[NOT_MINING] += int(valid.sum()) - n_mining
        row_mining = mining.sum(axis=1)
        survey.area_ha[MINING] += float(row_mining @ areas)
        survey.area_ha[NOT_MINING] += float((valid.sum(axis=1) - row_mining) @ areas)
        if survey.buffer_m:
            grid_sizes[tile.key] = tile.grid_cells
            if n_mining:
                survey.mining_masks[tile.key] = mining
            if tile.valid is not None:
                survey.nodata_masks[tile.key] = ~tile.valid
    if survey.tiles_done == 0:
        raise InvalidInputError(f"scan {scan_id} has no done tiles, so no map units to sample")
    if survey.buffer_m and survey.mining_masks:
        _add_buffer(survey, grid_sizes)
    return survey


def _add_buffer(survey: StrataSurvey, grid_sizes: dict[TileKey, int]) -> None:
    """Classify the buffer cells around mining cells, moving them from not_mining to buffer."""
    radius_m = float(survey.buffer_m or 0)
    # Tiles that can hold buffer cells: done tiles within reach of a tile with mining cells.
    candidates: set[TileKey] = set()
    for z, x, y in survey.mining_masks:
        g = grid_sizes[(z, x, y)]
        k = math.ceil(_buffer_structure(radius_m, cell_size_m(z, y, g)).shape[0] / 2 / g) + 1
        for dy in range(-k, k + 1):
            for dx in range(-k, k + 1):
                key = (z, x + dx, y + dy)
                if grid_sizes.get(key) == g:
                    candidates.add(key)
    for z, x, y in sorted(candidates):
        g = grid_sizes[(z, x, y)]
        structure = _buffer_structure(radius_m, cell_size_m(z, y, g))
        k = math.ceil((structure.shape[0] // 2) / g)
        canvas = np.zeros(((2 * k + 1) * g, (2 * k + 1) * g), dtype=bool)
        for dy in range(-k, k + 1):
            for dx in range(-k, k + 1):
                m = survey.mining_masks.get((z, x + dx, y + dy))
                if m is not None and m.shape == (g, g):
                    canvas[(dy + k) * g : (dy + k + 1) * g, (dx + k) * g : (dx + k + 1) * g] = m
        if not canvas.any():
            continue
        near = ndimage.binary_dilation(canvas, structure=structure)[k * g : (k + 1) * g, k * g : (k + 1) * g]
        own = survey.mining_masks.get((z, x, y))
        buf = near & ~own if own is not None else near
        nodata = survey.nodata_masks.get((z, x, y))
        buf = buf & ~nodata if nodata is not None else buf
        n_buf = int(buf.sum())
        if n_buf:
            survey.buffer_masks[(z, x, y)] = buf
            a = float(buf.sum(axis=1) @ row_areas_ha(z, y, g))
            survey.cell_counts[BUFFER] += n_buf
            survey.cell_counts[NOT_MINING] -= n_buf
            survey.area_ha[BUFFER] += a
            survey.area_ha[NOT_MINING] -= a
