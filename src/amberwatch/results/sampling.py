"""Stratified random sample of a scan's map units: allocation, drawing, storage and export.

Drawing is two streaming passes over ``scan_tiles`` inside one read transaction: pass one counts
the cells of each stratum (``map_units.survey_strata``); then ``n_h`` distinct random positions
``0..N_h-1`` are drawn per stratum and pass two walks the tiles in the same (z, x, y) order,
turning positions into cells. Memory is O(sample size + tiles with mining), not O(cells).
The same seed on the same scan gives the same sample. Cells without imagery are outside the frame, so
no unit is drawn there; a unit a labeller still finds without imagery is replaced (``draw_replacement``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import secrets
import sqlite3
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from amberwatch.db import utc_now_iso
from amberwatch.errors import AmberwatchWarning, DatabaseError, InvalidInputError, NotFoundError
from amberwatch.results import area_store
from amberwatch.results.area_estimate import sample_size_for_target_se
from amberwatch.results.area_store import NewUnit, Sample, StratumPlan, ensure_area_schema
from amberwatch.results.change_units import CHANGE_ANTICIPATED_ACCURACY, ChangeSurvey, survey_change
from amberwatch.results.map_units import (
    BUFFER,
    MAPPING_RULE,
    MINING,
    NOT_MINING,
    STRATA,
    DoneTile,
    StrataSurvey,
    cell_edges_deg,
    iter_done_tiles,
    load_scan,
    row_areas_ha,
    survey_strata,
)

ALLOCATIONS: tuple[str, ...] = ("proportional", "equal", "optimal")
# Anticipated user's accuracy per stratum for optimal (Neyman) allocation and sample-size planning.
DEFAULT_ANTICIPATED_ACCURACY: dict[str, float] = {MINING: 0.7, BUFFER: 0.8, NOT_MINING: 0.98}
DEFAULT_MIN_PER_STRATUM = 2
EXPORT_FORMATS: tuple[str, ...] = ("geojson", "csv")


def allocate(
    n: int,
    areas_ha: Mapping[str, float],
    cell_counts: Mapping[str, int],
    method: str = "proportional",
    anticipated_accuracy: Mapping[str, float] | None = None,
    min_per_stratum: int = DEFAULT_MIN_PER_STRATUM,
) -> dict[str, int]:
    """Split a total sample size over strata (proportional to area, equal, or Neyman-optimal).

    Every stratum with cells gets at least ``min_per_stratum`` units (or all its cells) and never
    more than it has; the rest follows the allocation rule, rounded by largest remainder.
    """
    if method not in ALLOCATIONS:
        raise InvalidInputError(f"allocation {method!r} is not one of {list(ALLOCATIONS)}")
    strata = [s for s in cell_counts if cell_counts[s] > 0]
    lo = _minimum_sizes(n, strata, cell_counts, min_per_stratum)
    acc = {**DEFAULT_ANTICIPATED_ACCURACY, **(anticipated_accuracy or {})}
    score = _allocation_scores(method, strata, areas_ha, acc)
    sizes = _share_by_score(n, strata, score, lo, cell_counts)
    # Strata pinned at their minimum may still have room if the others filled up: top them up.
    short = n - sum(sizes.values())
    for s in sorted(strata, key=lambda s: -score[s]):
        extra = min(short, cell_counts[s] - sizes[s])
        sizes[s] += extra
        short -= extra
    return {s: sizes.get(s, 0) for s in cell_counts}


def _minimum_sizes(n: int, strata: list[str], cell_counts: Mapping[str, int], min_per_stratum: int) -> dict[str, int]:
    """Per stratum the fewest units it must get; InvalidInputError when n cannot be allocated at all."""
    if not strata:
        raise InvalidInputError("no stratum has any map units to sample")
    total = sum(cell_counts[s] for s in strata)
    if n > total:
        raise InvalidInputError(f"sample size {n} is larger than the {total} map units of the scan")
    lo = {s: min(min_per_stratum, cell_counts[s]) for s in strata}
    if n < sum(lo.values()):
        raise InvalidInputError(
            f"sample size {n} is too small: need at least {sum(lo.values())} "
            f"({min_per_stratum} per stratum for strata {strata})"
        )
    return lo


def _allocation_scores(
    method: str, strata: list[str], areas_ha: Mapping[str, float], acc: Mapping[str, float]
) -> dict[str, float]:
    """Relative share of each stratum: its area, 1 (equal), or area x anticipated SD (Neyman)."""
    if method == "proportional":
        return {s: float(areas_ha[s]) for s in strata}
    if method == "equal":
        return {s: 1.0 for s in strata}
    return {s: float(areas_ha[s]) * math.sqrt(acc[s] * (1 - acc[s])) for s in strata}


def _share_by_score(
    n: int, strata: list[str], score: Mapping[str, float], lo: Mapping[str, int], hi: Mapping[str, int]
) -> dict[str, int]:
    """Share n by score; strata whose share falls outside [lo, hi] are pinned at that bound and the rest re-shared."""
    fixed: dict[str, int] = {}
    while True:
        free = [s for s in strata if s not in fixed]
        if not free:
            return fixed
        remaining = n - sum(fixed.values())
        total_score = sum(score[s] for s in free)
        ideal = {s: remaining * (score[s] / total_score if total_score > 0 else 1 / len(free)) for s in free}
        low = {s: lo[s] for s in free if ideal[s] < lo[s]}
        high = {s: hi[s] for s in free if ideal[s] > hi[s]}
        if not low and not high:
            fixed.update(_round_largest_remainder(remaining, ideal, strata))
            return fixed
        fixed.update(low or high)


def _round_largest_remainder(total: int, ideal: Mapping[str, float], strata: list[str]) -> dict[str, int]:
    """Round ideal shares down, then give the units left to the largest remainders (ties: stratum order)."""
    floors = {s: math.floor(ideal[s]) for s in ideal}
    left = total - sum(floors.values())
    for s in sorted(ideal, key=lambda s: (floors[s] - ideal[s], strata.index(s)))[:left]:
        floors[s] += 1
    return floors


def parse_accuracy_option(text: str | None, strata: Sequence[str] = STRATA) -> dict[str, float]:
    """Parse ``mining=0.7,buffer=0.8,not_mining=0.98`` (names among ``strata``) into a dict (None/empty: {})."""
    out: dict[str, float] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in strata:
            raise InvalidInputError(
                f"anticipated accuracy {part.strip()!r} must be <stratum>=<0..1> with stratum in {list(strata)}"
            )
        try:
            v = float(value)
        except ValueError:
            raise InvalidInputError(
                f"anticipated accuracy {part.strip()!r}: {value.strip()!r} is not a number"
            ) from None
        if not 0 <= v <= 1:
            raise InvalidInputError(f"anticipated accuracy {part.strip()!r} must be within 0..1")
        out[name] = v
    return out


def draw_sample(
    conn: sqlite3.Connection,
    scan_id: int,
    n: int | None = None,
    *,
    allocation: str = "proportional",
    seed: int | None = None,
    buffer_m: float | None = None,
    anticipated_accuracy: Mapping[str, float] | None = None,
    min_per_stratum: int = DEFAULT_MIN_PER_STRATUM,
    target_se: float | None = None,
) -> Sample:
    """Draw and store a stratified random sample of a scan's map units; return it.

    Give either ``n`` (total units) or ``target_se`` (standard error of overall accuracy, from
    which n follows by Olofsson et al. 2014 eq. 13 with the anticipated accuracies).
    """
    ensure_area_schema(conn)
    seed = _checked_seed(n, target_se, allocation, seed)
    acc = {**DEFAULT_ANTICIPATED_ACCURACY, **(anticipated_accuracy or {})}
    plan = _Plan(n, allocation, seed, acc, min_per_stratum, target_se)
    return _draw_and_store(conn, plan, lambda: _survey_scan(conn, scan_id, buffer_m))


def draw_change_sample(
    conn: sqlite3.Connection,
    from_scan_id: int,
    to_scan_id: int,
    n: int,
    *,
    allocation: str = "proportional",
    seed: int | None = None,
    anticipated_accuracy: Mapping[str, float] | None = None,
    min_per_stratum: int = DEFAULT_MIN_PER_STRATUM,
) -> Sample:
    """Draw and store a sample of the change between two dated scans of one AOI (``change_units``); return it.

    The units are cells of the later scan stratified new / stable / gone / no_mining; each is labelled at both dates.
    """
    ensure_area_schema(conn)
    seed = _checked_seed(n, None, allocation, seed)
    acc = {**CHANGE_ANTICIPATED_ACCURACY, **(anticipated_accuracy or {})}
    plan = _Plan(n, allocation, seed, acc, min_per_stratum, None)
    return _draw_and_store(conn, plan, lambda: _survey_change_scans(conn, from_scan_id, to_scan_id))


class _Plan(NamedTuple):
    """How a sample is to be drawn (checked options)."""

    n: int | None
    allocation: str
    seed: int
    acc: dict[str, float]
    min_per_stratum: int
    target_se: float | None


def _draw_and_store(conn: sqlite3.Connection, plan: _Plan, survey_of: Callable[[], Any]) -> Sample:
    """Survey (pass one), allocate, locate the drawn cells (pass two) in one read snapshot; store the sample."""
    rng = np.random.default_rng(plan.seed)
    conn.execute("BEGIN")  # one read snapshot for both passes
    try:
        survey = survey_of()
        n = plan.n
        if plan.target_se is not None:
            n = _size_for_target_se(survey, plan.acc, plan.target_se, plan.min_per_stratum)
        assert n is not None
        sizes = allocate(n, survey.area_ha, survey.cell_counts, plan.allocation, plan.acc, plan.min_per_stratum)
        positions = {
            s: np.sort(rng.choice(survey.cell_counts[s], size=sizes[s], replace=False)) for s in survey.strata_present()
        }
        units = _locate_units(conn, survey, positions)
    finally:
        conn.execute("COMMIT")
    order = rng.permutation(len(units))  # review order mixes strata (reviewers should not infer the map)
    units = [units[i] for i in order]
    sample = _sample_record(survey, sizes, survey.scan_id, plan.seed, plan.allocation, n)
    sample.from_scan_id = getattr(survey, "from_scan_id", None)
    params = {"min_per_stratum": plan.min_per_stratum, "anticipated_accuracy": plan.acc, "target_se": plan.target_se}
    try:
        sample.sample_id = area_store.insert_sample(conn, sample, params, units)
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"cannot store the sample of scan {survey.scan_id}: {exc}") from exc
    return sample


def _sample_record(survey, sizes: dict, scan_id: int, seed: int, allocation: str, n: int) -> Sample:
    """The Sample to store (id 0 until inserted) with one StratumPlan per stratum present."""
    strata = [
        StratumPlan(s, survey.map_classes[s], survey.cell_counts[s], survey.area_ha[s], sizes[s])
        for s in survey.strata_present()
    ]
    return Sample(
        0,
        scan_id,
        seed,
        allocation,
        n,
        survey.buffer_m,
        survey.threshold,
        MAPPING_RULE,
        survey.total_cells,
        survey.total_area_ha,
        utc_now_iso(),
        strata,
    )


def _checked_seed(n: int | None, target_se: float | None, allocation: str, seed: int | None) -> int:
    """Check the size and allocation options of a draw; return the seed (a fresh random one if None)."""
    if (n is None) == (target_se is None):
        raise InvalidInputError("give exactly one of a sample size n or a target standard error")
    if n is not None and n < 1:
        raise InvalidInputError(f"sample size {n} must be at least 1")
    if allocation not in ALLOCATIONS:
        raise InvalidInputError(f"allocation {allocation!r} is not one of {list(ALLOCATIONS)}")
    if seed is None:
        seed = secrets.randbits(62)
    if not 0 <= seed < 2**63:
        raise InvalidInputError(f"seed {seed} must be within 0..2^63-1")
    return seed


def _survey_scan(conn: sqlite3.Connection, scan_id: int, buffer_m: float | None) -> StrataSurvey:
    """Pass one over a scan's tiles (warning when the scan is not finished)."""
    _warn_unfinished(conn, scan_id)
    return survey_strata(conn, scan_id, buffer_m)


def _survey_change_scans(conn: sqlite3.Connection, from_scan_id: int, to_scan_id: int) -> ChangeSurvey:
    """Pass one over two scans' tiles (warning when one is not finished)."""
    survey = survey_change(conn, from_scan_id, to_scan_id)
    for scan_id in (from_scan_id, to_scan_id):
        _warn_unfinished(conn, scan_id)
    return survey


def _warn_unfinished(conn: sqlite3.Connection, scan_id: int) -> None:
    status = load_scan(conn, scan_id).status
    if status != "finished":
        warnings.warn(
            f"scan {scan_id} is {status!r}, not finished: the sample covers only its tiles done so far",
            AmberwatchWarning,
            stacklevel=6,  # the caller of draw_sample or draw_change_sample
        )


def _survey_of(conn: sqlite3.Connection, sample: Sample) -> StrataSurvey | ChangeSurvey:
    """The survey a stored sample was drawn from, as the scans are now."""
    if sample.from_scan_id is not None:
        return survey_change(conn, sample.from_scan_id, sample.scan_id)
    return survey_strata(conn, sample.scan_id, sample.buffer_m)


def _size_for_target_se(survey: StrataSurvey, acc: Mapping[str, float], target_se: float, min_per_stratum: int) -> int:
    """Sample size for a target SE of overall accuracy, within the per-stratum minimum and the cells there are."""
    present = survey.strata_present()
    weights = [survey.area_ha[s] / survey.total_area_ha for s in present]
    n = sample_size_for_target_se([acc[s] for s in present], weights, target_se)
    n = max(n, sum(min(min_per_stratum, survey.cell_counts[s]) for s in present))
    return min(n, survey.total_cells)


def _locate_units(conn: sqlite3.Connection, survey: StrataSurvey, positions: dict[str, np.ndarray]) -> list[NewUnit]:
    """Pass two: walk the tiles in pass-one order and turn per-stratum positions into cells."""
    offset = {s: 0 for s in survey.strata}
    cursor = {s: 0 for s in survey.strata}  # index of the next unplaced position per stratum
    units: list[NewUnit] = []
    for tile in iter_done_tiles(conn, survey.scan_id):
        codes = survey.stratum_codes(tile).ravel()
        cells: dict[str, np.ndarray] = {}
        for s, pos in positions.items():
            k = survey.strata.index(s)
            end = offset[s] + int(np.count_nonzero(codes == k))
            stop = int(np.searchsorted(pos, end, side="left"))
            if stop > cursor[s]:
                cells[s] = np.flatnonzero(codes == k)[pos[cursor[s] : stop] - offset[s]]
                cursor[s] = stop
            offset[s] = end
        if cells:
            units += _tile_units(tile, cells, survey.map_classes)
    for s, pos in positions.items():
        if offset[s] != survey.cell_counts[s] or cursor[s] != len(pos):
            raise DatabaseError(
                f"scan {survey.scan_id} changed while sampling: stratum {s!r} had {survey.cell_counts[s]} "
                f"cells in the first pass and {offset[s]} in the second"
            )
    return units


def _tile_units(tile: DoneTile, cells: dict[str, np.ndarray], map_classes: Mapping[str, str]) -> list[NewUnit]:
    """Sample units for the chosen cells (flat indices per stratum) of one tile, with footprint and area."""
    g = tile.grid_cells
    lon, lat = cell_edges_deg(tile.z, tile.x, tile.y, g)
    areas = row_areas_ha(tile.z, tile.y, g)
    units = []
    for s, flat in cells.items():
        for f in flat.tolist():
            r, c = divmod(f, g)
            units.append(
                NewUnit(
                    s,
                    map_classes[s],
                    tile.z,
                    tile.x,
                    tile.y,
                    r,
                    c,
                    g,
                    float(lon[c]),
                    float(lat[r + 1]),
                    float(lon[c + 1]),
                    float(lat[r]),
                    float(areas[r]),
                    int(tile.grid[r, c]) / 255.0,
                )
            )
    return units


def draw_replacement(conn: sqlite3.Connection, sample_id: int, unit_id: int) -> int | None:
    """Add a unit replacing one found without imagery: a random cell of its stratum not yet in the sample.

    Returns the new unit's id, or None when every cell of the stratum is in the sample already. Cells are
    drawn from the scan's frame as it is now (cells with imagery only), reproducibly from the sample's seed.
    """
    sample = load_sample(conn, sample_id)
    units = area_store.units_of_sample(conn, sample_id)
    stratum = next((u["stratum"] for u in units if u["unit_id"] == unit_id), None)
    if stratum is None:
        raise NotFoundError(f"unit {unit_id} is not in area sample {sample_id}")
    taken = {(u["z"], u["x"], u["y"], u["cell_row"], u["cell_col"]) for u in units}
    rng = np.random.default_rng([sample.seed, len(units)])
    conn.execute("BEGIN")  # one read snapshot for both passes
    try:
        survey = _survey_of(conn, sample)
        # One more candidate than the stratum's units in the sample: at least one is new; the first new one in
        # the random order is a uniform draw among the cells not yet taken.
        size = min(survey.cell_counts[stratum], sum(u["stratum"] == stratum for u in units) + 1)
        picks = rng.choice(survey.cell_counts[stratum], size=size, replace=False)
        located = _locate_units(conn, survey, {stratum: np.sort(picks)})
    finally:
        conn.execute("COMMIT")
    by_position = dict(zip(np.sort(picks).tolist(), located))
    for p in picks.tolist():
        u = by_position[p]
        if (u.z, u.x, u.y, u.cell_row, u.cell_col) not in taken:
            return area_store.add_unit(conn, sample_id, u)
    return None


def load_sample(conn: sqlite3.Connection, sample_id: int) -> Sample:
    """A stored sample with its strata, or NotFoundError."""
    ensure_area_schema(conn)
    sample = area_store.find_sample(conn, sample_id)
    if sample is None:
        raise NotFoundError(f"area sample {sample_id} does not exist")
    return sample


def latest_sample_id(conn: sqlite3.Connection, scan_id: int) -> int:
    """Id of the most recent sample of a scan, or NotFoundError."""
    ensure_area_schema(conn)
    sample_id = area_store.latest_sample_id(conn, scan_id)
    if sample_id is None:
        raise NotFoundError(f"scan {scan_id} has no area sample; draw one with 'amberwatch area sample'")
    return sample_id


_EXPORT_COLUMNS = (
    "unit_id",
    "reference_class",
    "sample_id",
    "stratum",
    "map_class",
    "map_prob",
    "lon",
    "lat",
    "west",
    "south",
    "east",
    "north",
    "z",
    "x",
    "y",
    "cell_row",
    "cell_col",
    "grid_cells",
    "area_ha",
    "reviewed_by",
    "reviewed_at",
)
_MAP_COLUMNS = ("stratum", "map_class", "map_prob")


def _export_columns(sample: Sample) -> tuple[str, ...]:
    """The export's columns: a change sample has ``reference_from`` and ``reference_to`` for reference_class."""
    if not sample.is_change:
        return _EXPORT_COLUMNS
    return ("unit_id", "reference_from", "reference_to", *_EXPORT_COLUMNS[2:])


def sample_units(conn: sqlite3.Connection, sample_id: int) -> list[dict]:
    """All units of a sample as dicts (in review order), with their centre lon/lat."""
    load_sample(conn, sample_id)
    return area_store.units_of_sample(conn, sample_id)


def export_sample(conn: sqlite3.Connection, sample_id: int, fmt: str = "geojson", *, blind: bool = False) -> str:
    """The sample as GeoJSON (cell squares) or CSV (``unit_id,reference_class,...``, the review template).

    ``blind`` leaves out the map class and probability, so reviewers label without seeing the map.
    """
    if fmt not in EXPORT_FORMATS:
        raise InvalidInputError(f"export format {fmt!r} is not one of {list(EXPORT_FORMATS)}")
    units = sample_units(conn, sample_id)
    columns = [c for c in _export_columns(load_sample(conn, sample_id)) if not (blind and c in _MAP_COLUMNS)]
    for u in units:  # a change sample's two answers under the names its review sheet uses
        u["reference_from"], u["reference_to"] = u.get("reference_class_from"), u["reference_class"]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for u in units:
            writer.writerow(["" if u[c] is None else u[c] for c in columns])
        return buf.getvalue()
    features = []
    for u in units:
        w, s, e, n = u["west"], u["south"], u["east"], u["north"]
        features.append(
            {
                "type": "Feature",
                "id": u["unit_id"],
                "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
                "properties": {c: u[c] for c in columns if c not in ("west", "south", "east", "north")},
            }
        )
    return json.dumps({"type": "FeatureCollection", "features": features}, separators=(",", ":"))
