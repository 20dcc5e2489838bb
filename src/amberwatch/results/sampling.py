"""Stratified random sample of a scan's map units: allocation, drawing, storage and export.

Drawing is two streaming passes over ``scan_tiles`` inside one read transaction: pass one counts
the cells of each stratum (``map_units.survey_strata``); then ``n_h`` distinct random positions
``0..N_h-1`` are drawn per stratum and pass two walks the tiles in the same (z, x, y) order,
turning positions into cells. Memory is O(sample size + tiles with mining), not O(cells).
The same seed on the same scan gives the same sample.
"""

from __future__ import annotations

import csv
import io
import json
import math
import secrets
import sqlite3
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from amberwatch.db import utc_now_iso
from amberwatch.errors import AmberwatchWarning, DatabaseError, InvalidInputError, NotFoundError
from amberwatch.results.area_estimate import sample_size_for_target_se
from amberwatch.results.area_schema import ensure_area_schema
from amberwatch.results.map_units import (
    BUFFER,
    MAPPING_RULE,
    MINING,
    NOT_MINING,
    STRATA,
    STRATUM_MAP_CLASS,
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


@dataclass
class StratumPlan:
    """One stratum of a sample: its map class, size in cells and hectares, and units drawn."""

    stratum: str
    map_class: str
    cell_count: int
    area_ha: float
    n_units: int


@dataclass
class Sample:
    """A stored sample (one row of area_samples with its strata)."""

    sample_id: int
    scan_id: int
    seed: int
    allocation: str
    n_requested: int
    buffer_m: float | None
    model_threshold: float
    mapping_rule: str
    total_cells: int
    total_area_ha: float
    created_at: str
    strata: list[StratumPlan] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        d = dict(self.__dict__)
        d["strata"] = [dict(s.__dict__) for s in self.strata]
        return d


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
    acc = {**DEFAULT_ANTICIPATED_ACCURACY, **(anticipated_accuracy or {})}
    if method == "proportional":
        score = {s: float(areas_ha[s]) for s in strata}
    elif method == "equal":
        score = {s: 1.0 for s in strata}
    else:
        score = {s: float(areas_ha[s]) * math.sqrt(acc[s] * (1 - acc[s])) for s in strata}

    fixed: dict[str, int] = {}
    while True:
        free = [s for s in strata if s not in fixed]
        remaining = n - sum(fixed.values())
        if not free:
            break
        total_score = sum(score[s] for s in free)
        ideal = {
            s: remaining * (score[s] / total_score if total_score > 0 else 1 / len(free)) for s in free
        }
        low = {s: lo[s] for s in free if ideal[s] < lo[s]}
        high = {s: cell_counts[s] for s in free if ideal[s] > cell_counts[s]}
        if not low and not high:
            floors = {s: int(math.floor(ideal[s])) for s in free}
            left = remaining - sum(floors.values())
            for s in sorted(free, key=lambda s: (floors[s] - ideal[s], strata.index(s)))[:left]:
                floors[s] += 1
            fixed.update(floors)
            break
        fixed.update(low or high)
    # Strata pinned at their minimum may still have room if the others filled up: top them up.
    short = n - sum(fixed.values())
    for s in sorted(strata, key=lambda s: -score[s]):
        extra = min(short, cell_counts[s] - fixed[s])
        fixed[s] += extra
        short -= extra
    return {s: fixed.get(s, 0) for s in cell_counts}


def parse_accuracy_option(text: str | None) -> dict[str, float]:
    """Parse ``mining=0.7,buffer=0.8,not_mining=0.98`` into a dict (None/empty: {})."""
    out: dict[str, float] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in STRATA:
            raise InvalidInputError(
                f"anticipated accuracy {part.strip()!r} must be <stratum>=<0..1> with stratum in {list(STRATA)}"
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
    acc = {**DEFAULT_ANTICIPATED_ACCURACY, **(anticipated_accuracy or {})}

    conn.execute("BEGIN")  # one read snapshot for both passes
    try:
        status = load_scan(conn, scan_id)["status"]
        if status != "finished":
            warnings.warn(
                f"scan {scan_id} is {status!r}, not finished: the sample covers only its tiles done so far",
                AmberwatchWarning,
                stacklevel=2,
            )
        survey = survey_strata(conn, scan_id, buffer_m)
        present = survey.strata_present()
        if target_se is not None:
            weights = [survey.area_ha[s] / survey.total_area_ha for s in present]
            n = sample_size_for_target_se([acc[s] for s in present], weights, target_se)
            n = max(n, sum(min(min_per_stratum, survey.cell_counts[s]) for s in present))
            n = min(n, survey.total_cells)
        assert n is not None
        sizes = allocate(n, survey.area_ha, survey.cell_counts, allocation, acc, min_per_stratum)
        rng = np.random.default_rng(seed)
        positions = {
            s: np.sort(rng.choice(survey.cell_counts[s], size=sizes[s], replace=False)) for s in present
        }
        units = _locate_units(conn, survey, positions)
    finally:
        conn.execute("COMMIT")
    order = rng.permutation(len(units))  # review order mixes strata (reviewers should not infer the map)
    units = [units[i] for i in order]

    strata = [
        StratumPlan(s, STRATUM_MAP_CLASS[s], survey.cell_counts[s], survey.area_ha[s], sizes[s]) for s in present
    ]
    threshold = survey.threshold
    created = utc_now_iso()
    params = {"min_per_stratum": min_per_stratum, "anticipated_accuracy": acc, "target_se": target_se}
    conn.execute("BEGIN IMMEDIATE")
    try:
        cur = conn.execute(
            "INSERT INTO area_samples (scan_id, created_at, seed, allocation, n_requested, buffer_m,"
            " model_threshold, mapping_rule, total_cells, total_area_ha, params_json)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (scan_id, created, seed, allocation, n, survey.buffer_m, threshold, MAPPING_RULE,
             survey.total_cells, survey.total_area_ha, json.dumps(params)),
        )
        sample_id = int(cur.lastrowid)
        conn.executemany(
            "INSERT INTO area_sample_strata (sample_id, stratum, map_class, cell_count, area_ha, n_units)"
            " VALUES (?,?,?,?,?,?)",
            [(sample_id, p.stratum, p.map_class, p.cell_count, p.area_ha, p.n_units) for p in strata],
        )
        conn.executemany(
            "INSERT INTO area_sample_units (sample_id, stratum, map_class, z, x, y, cell_row, cell_col,"
            " grid_cells, west, south, east, north, area_ha, map_prob) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [(sample_id, *u) for u in units],
        )
        conn.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        conn.execute("ROLLBACK")
        raise DatabaseError(f"cannot store the sample of scan {scan_id}: {exc}") from exc
    return Sample(sample_id, scan_id, seed, allocation, n, survey.buffer_m, threshold, MAPPING_RULE,
                  survey.total_cells, survey.total_area_ha, created, strata)


def _locate_units(conn: sqlite3.Connection, survey: StrataSurvey, positions: dict[str, np.ndarray]) -> list[tuple]:
    """Pass two: walk the tiles in pass-one order and turn per-stratum positions into cells."""
    offset = {s: 0 for s in STRATA}
    cursor = {s: 0 for s in STRATA}  # index of the next unplaced position per stratum
    units: list[tuple] = []
    for tile in iter_done_tiles(conn, survey.scan_id):
        codes = survey.stratum_codes(tile).ravel()
        g = tile.grid_cells
        edges = None
        for s, pos in positions.items():
            k = STRATA.index(s)
            in_tile = int(np.count_nonzero(codes == k))
            end = offset[s] + in_tile
            stop = int(np.searchsorted(pos, end, side="left"))
            if stop > cursor[s]:
                flat = np.flatnonzero(codes == k)[pos[cursor[s]:stop] - offset[s]]
                if edges is None:
                    edges = cell_edges_deg(tile.z, tile.x, tile.y, g)
                    areas = row_areas_ha(tile.z, tile.y, g)
                lon, lat = edges
                for f in flat.tolist():
                    r, c = divmod(f, g)
                    units.append((
                        s, STRATUM_MAP_CLASS[s], tile.z, tile.x, tile.y, r, c, g,
                        float(lon[c]), float(lat[r + 1]), float(lon[c + 1]), float(lat[r]),
                        float(areas[r]), int(tile.grid[r, c]) / 255.0,
                    ))
                cursor[s] = stop
            offset[s] = end
    for s, pos in positions.items():
        if offset[s] != survey.cell_counts[s] or cursor[s] != len(pos):
            raise DatabaseError(
                f"scan {survey.scan_id} changed while sampling: stratum {s!r} had {survey.cell_counts[s]} "
                f"cells in the first pass and {offset[s]} in the second"
            )
    return units


def load_sample(conn: sqlite3.Connection, sample_id: int) -> Sample:
    """A stored sample with its strata, or NotFoundError."""
    ensure_area_schema(conn)
    row = conn.execute("SELECT * FROM area_samples WHERE id = ?", (sample_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"area sample {sample_id} does not exist")
    strata = [
        StratumPlan(r["stratum"], r["map_class"], r["cell_count"], r["area_ha"], r["n_units"])
        for r in conn.execute(
            "SELECT * FROM area_sample_strata WHERE sample_id = ? ORDER BY"
            " CASE stratum WHEN 'mining' THEN 0 WHEN 'buffer' THEN 1 ELSE 2 END, stratum",
            (sample_id,),
        )
    ]
    return Sample(row["id"], row["scan_id"], row["seed"], row["allocation"], row["n_requested"], row["buffer_m"],
                  row["model_threshold"], row["mapping_rule"], row["total_cells"], row["total_area_ha"],
                  row["created_at"], strata)


def latest_sample_id(conn: sqlite3.Connection, scan_id: int) -> int:
    """Id of the most recent sample of a scan, or NotFoundError."""
    ensure_area_schema(conn)
    row = conn.execute("SELECT MAX(id) FROM area_samples WHERE scan_id = ?", (scan_id,)).fetchone()
    if row[0] is None:
        raise NotFoundError(f"scan {scan_id} has no area sample; draw one with 'amberwatch area sample'")
    return int(row[0])


_EXPORT_COLUMNS = (
    "unit_id", "reference_class", "sample_id", "stratum", "map_class", "map_prob", "lon", "lat",
    "west", "south", "east", "north", "z", "x", "y", "cell_row", "cell_col", "grid_cells", "area_ha",
    "reviewed_by", "reviewed_at",
)
_MAP_COLUMNS = ("stratum", "map_class", "map_prob")


def sample_units(conn: sqlite3.Connection, sample_id: int) -> list[dict]:
    """All units of a sample as dicts (in review order), with their centre lon/lat."""
    load_sample(conn, sample_id)
    out = []
    for r in conn.execute("SELECT * FROM area_sample_units WHERE sample_id = ? ORDER BY unit_id", (sample_id,)):
        d = dict(r)
        d["lon"] = (d["west"] + d["east"]) / 2
        d["lat"] = (d["south"] + d["north"]) / 2
        out.append(d)
    return out


def export_sample(conn: sqlite3.Connection, sample_id: int, fmt: str = "geojson", *, blind: bool = False) -> str:
    """The sample as GeoJSON (cell squares) or CSV (``unit_id,reference_class,...``, the review template).

    ``blind`` leaves out the map class and probability, so reviewers label without seeing the map.
    """
    if fmt not in EXPORT_FORMATS:
        raise InvalidInputError(f"export format {fmt!r} is not one of {list(EXPORT_FORMATS)}")
    units = sample_units(conn, sample_id)
    columns = [c for c in _EXPORT_COLUMNS if not (blind and c in _MAP_COLUMNS)]
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
        features.append({
            "type": "Feature",
            "id": u["unit_id"],
            "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
            "properties": {c: u[c] for c in columns if c not in ("west", "south", "east", "north")},
        })
    return json.dumps({"type": "FeatureCollection", "features": features}, separators=(",", ":"))
