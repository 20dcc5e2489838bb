"""Map units of the change between two scans of one AOI: strata new / stable / gone / no mining.

The frame is the later scan's map units (cells of its done tiles) that also have imagery in the earlier scan (a
done tile of the same zoom, grid size and a valid cell there). A cell's stratum compares the two maps (each by its
own scan's threshold, ``map_units.MAPPING_RULE``): mining at the later date only -> ``new``, at both -> ``stable``,
at the earlier only -> ``gone``, at neither -> ``no_mining``. The reference at each sampled cell is a label per date;
its change class (``change_class``) has the same four names, so each stratum lies in one map class and the
one-date estimator (``area_estimate.estimate_area``) estimates the change areas, "new" being the hectares newly dug.

Only the earlier scan's tiles with mining and their imagery masks are kept in memory (not every cell).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from amberwatch.errors import InvalidInputError
from amberwatch.results.map_units import (
    MINING,
    NO_IMAGERY_CODE,
    NOT_MINING,
    DoneTile,
    TileKey,
    iter_done_tiles,
    load_scan,
    mining_lookup,
    row_areas_ha,
)
from amberwatch.results.records import Scan

NEW, STABLE, GONE, NO_MINING = "new", "stable", "gone", "no_mining"
CHANGE_STRATA: tuple[str, ...] = (NEW, STABLE, GONE, NO_MINING)
CHANGE_MAP_CLASS: dict[str, str] = {s: s for s in CHANGE_STRATA}
# Anticipated user's accuracy per change stratum (optimal allocation): new digging is the hardest to map.
CHANGE_ANTICIPATED_ACCURACY: dict[str, float] = {NEW: 0.6, STABLE: 0.8, GONE: 0.6, NO_MINING: 0.98}
_CODE = {s: i for i, s in enumerate(CHANGE_STRATA)}


def change_class(ref_from: str, ref_to: str) -> str:
    """The change class of a pair of reference labels (earlier, later), each mining or not_mining."""
    for ref in (ref_from, ref_to):
        if ref not in (MINING, NOT_MINING):
            raise InvalidInputError(f"reference class {ref!r} is not one of {[MINING, NOT_MINING]}")
    if ref_to == MINING:
        return STABLE if ref_from == MINING else NEW
    return GONE if ref_from == MINING else NO_MINING


@dataclass(frozen=True)
class _EarlierTile:
    """What the earlier scan says about one tile: grid size, mining cells (None: none) and imagery (None: all)."""

    grid_cells: int
    mining: np.ndarray | None
    valid: np.ndarray | None


@dataclass
class ChangeSurvey:
    """Pass one over the later scan against the earlier: cells and hectares per change stratum."""

    strata: ClassVar[tuple[str, ...]] = CHANGE_STRATA
    map_classes: ClassVar[dict[str, str]] = CHANGE_MAP_CLASS
    scan_id: int  # the later scan, whose tiles are walked
    from_scan_id: int
    threshold: float  # the later scan's
    earlier: dict[TileKey, _EarlierTile]
    buffer_m: float | None = None
    cell_counts: dict[str, int] = field(default_factory=lambda: {s: 0 for s in CHANGE_STRATA})
    area_ha: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in CHANGE_STRATA})

    @property
    def total_cells(self) -> int:
        """All map units of the frame."""
        return sum(self.cell_counts.values())

    @property
    def total_area_ha(self) -> float:
        """Area of the frame in hectares."""
        return sum(self.area_ha.values())

    def strata_present(self) -> list[str]:
        """Strata with at least one cell, in the order new, stable, gone, no_mining."""
        return [s for s in CHANGE_STRATA if self.cell_counts[s] > 0]

    def stratum_codes(self, tile: DoneTile) -> np.ndarray:
        """Index into CHANGE_STRATA of every cell of a later tile; NO_IMAGERY_CODE off the frame."""
        before = self.earlier.get(tile.key)
        if before is None:
            return np.full(tile.grid.shape, NO_IMAGERY_CODE, dtype=np.uint8)
        if before.grid_cells != tile.grid_cells:
            raise InvalidInputError(
                f"tile {tile.z}/{tile.x}/{tile.y} has {before.grid_cells}x{before.grid_cells} cells in scan "
                f"{self.from_scan_id} and {tile.grid_cells}x{tile.grid_cells} in scan {self.scan_id}: "
                "their maps do not share cells"
            )
        now = mining_lookup(self.threshold)[tile.grid]
        was = before.mining if before.mining is not None else np.zeros_like(now)
        codes = np.where(now, np.where(was, _CODE[STABLE], _CODE[NEW]), np.where(was, _CODE[GONE], _CODE[NO_MINING]))
        codes = codes.astype(np.uint8)
        for valid in (tile.valid, before.valid):
            if valid is not None:
                codes[~valid] = NO_IMAGERY_CODE
        return codes


def check_change_scans(earlier: Scan, later: Scan) -> None:
    """InvalidInputError naming the scans unless they are two dated scans of one AOI and zoom, earlier first."""
    if earlier.id == later.id:
        raise InvalidInputError(f"--from-scan and --to-scan are both scan {earlier.id}: give two scans")
    if earlier.zoom != later.zoom:
        raise InvalidInputError(
            f"scans {earlier.id} (zoom {earlier.zoom}) and {later.id} (zoom {later.zoom}) mix zooms: "
            "a change sample needs two scans at one zoom"
        )
    if earlier.aoi_geojson != later.aoi_geojson:
        raise InvalidInputError(
            f"scans {earlier.id} and {later.id} cover different AOIs: a change sample needs two scans of one AOI"
        )
    for s in (earlier, later):
        if not s.imagery_date:
            raise InvalidInputError(f"scan {s.id} has no imagery date: scan the AOI again with --imagery-date")
    if str(earlier.imagery_date) >= str(later.imagery_date):
        raise InvalidInputError(
            f"scan {earlier.id} ({earlier.imagery_date}) is not earlier than scan {later.id} "
            f"({later.imagery_date}): --from-scan takes the earlier date"
        )


def survey_change(conn: sqlite3.Connection, from_scan_id: int, to_scan_id: int) -> ChangeSurvey:
    """Count the frame's cells and hectares per change stratum in one pass over each scan's done tiles."""
    earlier, later = load_scan(conn, from_scan_id), load_scan(conn, to_scan_id)
    check_change_scans(earlier, later)
    survey = ChangeSurvey(later.id, earlier.id, float(later.model_threshold), _earlier_tiles(conn, earlier))
    for tile in iter_done_tiles(conn, later.id):
        codes = survey.stratum_codes(tile)
        areas = row_areas_ha(tile.z, tile.y, tile.grid_cells)
        for s, k in _CODE.items():
            in_stratum = codes == k
            survey.cell_counts[s] += int(in_stratum.sum())
            survey.area_ha[s] += float(in_stratum.sum(axis=1) @ areas)
    if survey.total_cells == 0:
        raise InvalidInputError(
            f"scans {earlier.id} and {later.id} share no done tile with imagery at both dates: nothing to sample"
        )
    return survey


def _earlier_tiles(conn: sqlite3.Connection, scan: Scan) -> dict[TileKey, _EarlierTile]:
    """The earlier scan's done tiles: grid size, mining cells where any, imagery mask where not all."""
    lut = mining_lookup(float(scan.model_threshold))
    out = {}
    for tile in iter_done_tiles(conn, scan.id):
        mining = lut[tile.grid]
        out[tile.key] = _EarlierTile(tile.grid_cells, mining if mining.any() else None, tile.valid)
    return out
