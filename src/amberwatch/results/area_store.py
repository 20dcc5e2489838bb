"""The owner of the area-sample tables (component ``area``): schema and every query on them.

Other modules (``sampling``, ``area_review``) call these functions and never run SQL on these tables.

- ``area_samples``: one stratified random sample of a scan's map units (seed, allocation, rule).
- ``area_sample_strata``: per stratum of a sample, its map class, cell count, area and sample size.
- ``area_sample_units``: the sampled cells with their footprint; ``reference_class`` stays NULL
  until a reviewer labels the unit (``no_imagery`` when the unit has no imagery: it leaves the sample
  and a replacement unit is added).

A change sample (``area_samples.from_scan_id`` set, migration 2) samples the cells of ``scan_id`` (the later date)
stratified by the change between the two scans' maps; each unit has a reference class at both dates:
``reference_class_from`` at the earlier scan's date and ``reference_class`` at the later one's.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from amberwatch.project import Component, migrate_component
from amberwatch.results.store import SCHEMA as RESULTS_SCHEMA

MIGRATIONS: list[str] = [
    """
    CREATE TABLE area_samples (
        id INTEGER PRIMARY KEY,
        scan_id INTEGER NOT NULL REFERENCES scans(id) ON DELETE CASCADE,
        created_at TEXT NOT NULL,
        seed INTEGER NOT NULL,
        allocation TEXT NOT NULL,           -- proportional | equal | optimal
        n_requested INTEGER NOT NULL,
        buffer_m REAL,                      -- NULL: no buffer stratum
        model_threshold REAL NOT NULL,
        mapping_rule TEXT NOT NULL,
        total_cells INTEGER NOT NULL,
        total_area_ha REAL NOT NULL,
        params_json TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX area_samples_scan ON area_samples (scan_id);
    CREATE TABLE area_sample_strata (
        sample_id INTEGER NOT NULL REFERENCES area_samples(id) ON DELETE CASCADE,
        stratum TEXT NOT NULL,              -- mining | buffer | not_mining
        map_class TEXT NOT NULL,            -- mining | not_mining
        cell_count INTEGER NOT NULL,
        area_ha REAL NOT NULL,
        n_units INTEGER NOT NULL,
        PRIMARY KEY (sample_id, stratum)
    );
    CREATE TABLE area_sample_units (
        unit_id INTEGER PRIMARY KEY,
        sample_id INTEGER NOT NULL REFERENCES area_samples(id) ON DELETE CASCADE,
        stratum TEXT NOT NULL,
        map_class TEXT NOT NULL,
        z INTEGER NOT NULL,
        x INTEGER NOT NULL,
        y INTEGER NOT NULL,
        cell_row INTEGER NOT NULL,
        cell_col INTEGER NOT NULL,
        grid_cells INTEGER NOT NULL,
        west REAL NOT NULL,
        south REAL NOT NULL,
        east REAL NOT NULL,
        north REAL NOT NULL,
        area_ha REAL NOT NULL,
        map_prob REAL NOT NULL,
        reference_class TEXT,               -- NULL until reviewed
        reviewed_by TEXT,
        reviewed_at TEXT
    );
    CREATE INDEX area_sample_units_sample ON area_sample_units (sample_id, reference_class);
    """,
    """
    ALTER TABLE area_samples ADD COLUMN from_scan_id INTEGER REFERENCES scans(id) ON DELETE CASCADE;
    ALTER TABLE area_sample_units ADD COLUMN reference_class_from TEXT;
    """,
]


SCHEMA = Component("area", MIGRATIONS, requires=(RESULTS_SCHEMA,))


def ensure_area_schema(conn: sqlite3.Connection) -> None:
    """Create or upgrade the results tables and the area-sample tables on a bare connection."""
    migrate_component(conn, SCHEMA)


# -- records ----------------------------------------------------------------------------------------------
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
    from_scan_id: int | None = None  # a change sample: the scan of the earlier date (scan_id: the later)

    @property
    def is_change(self) -> bool:
        """A sample of the change between two dates, labelled at both."""
        return self.from_scan_id is not None

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        d = dict(self.__dict__)
        d["strata"] = [dict(s.__dict__) for s in self.strata]
        return d


class NewUnit(NamedTuple):
    """A sampled cell to store (one area_sample_units row before review)."""

    stratum: str
    map_class: str
    z: int
    x: int
    y: int
    cell_row: int
    cell_col: int
    grid_cells: int
    west: float
    south: float
    east: float
    north: float
    area_ha: float
    map_prob: float


# -- area_samples and area_sample_strata ------------------------------------------------------------------
def insert_sample(conn: sqlite3.Connection, sample: Sample, params: Mapping, units: Sequence[NewUnit]) -> int:
    """Store a sample (its ``sample_id`` is ignored) with its strata and units in one transaction -> its id.

    On an error the transaction is rolled back and the sqlite3 error re-raised.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        cur = conn.execute(
            "INSERT INTO area_samples (scan_id, created_at, seed, allocation, n_requested, buffer_m,"
            " model_threshold, mapping_rule, total_cells, total_area_ha, params_json, from_scan_id)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                sample.scan_id,
                sample.created_at,
                sample.seed,
                sample.allocation,
                sample.n_requested,
                sample.buffer_m,
                sample.model_threshold,
                sample.mapping_rule,
                sample.total_cells,
                sample.total_area_ha,
                json.dumps(params),
                sample.from_scan_id,
            ),
        )
        sample_id = int(cur.lastrowid)
        conn.executemany(
            "INSERT INTO area_sample_strata (sample_id, stratum, map_class, cell_count, area_ha, n_units)"
            " VALUES (?,?,?,?,?,?)",
            [(sample_id, p.stratum, p.map_class, p.cell_count, p.area_ha, p.n_units) for p in sample.strata],
        )
        conn.executemany(_INSERT_UNIT, [(sample_id, *u) for u in units])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return sample_id


_INSERT_UNIT = (
    "INSERT INTO area_sample_units (sample_id, stratum, map_class, z, x, y, cell_row, cell_col,"
    " grid_cells, west, south, east, north, area_ha, map_prob) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def add_unit(conn: sqlite3.Connection, sample_id: int, unit: NewUnit) -> int:
    """Add one unit to a stored sample (last in review order) -> its unit id."""
    return int(conn.execute(_INSERT_UNIT, (sample_id, *unit)).lastrowid)


def find_sample(conn: sqlite3.Connection, sample_id: int) -> Sample | None:
    """A stored sample with its strata (mining, buffer, not_mining order), or None."""
    row = conn.execute("SELECT * FROM area_samples WHERE id = ?", (sample_id,)).fetchone()
    if row is None:
        return None
    strata = [
        StratumPlan(r["stratum"], r["map_class"], r["cell_count"], r["area_ha"], r["n_units"])
        for r in conn.execute(
            "SELECT * FROM area_sample_strata WHERE sample_id = ? ORDER BY CASE stratum WHEN 'mining' THEN 0"
            " WHEN 'buffer' THEN 1 WHEN 'new' THEN 0 WHEN 'stable' THEN 1 WHEN 'gone' THEN 2 ELSE 3 END, stratum",
            (sample_id,),
        )
    ]
    return Sample(
        row["id"],
        row["scan_id"],
        row["seed"],
        row["allocation"],
        row["n_requested"],
        row["buffer_m"],
        row["model_threshold"],
        row["mapping_rule"],
        row["total_cells"],
        row["total_area_ha"],
        row["created_at"],
        strata,
        row["from_scan_id"],
    )


def latest_sample_id(conn: sqlite3.Connection, scan_id: int) -> int | None:
    """Id of the most recent sample of a scan, or None."""
    row = conn.execute("SELECT MAX(id) FROM area_samples WHERE scan_id = ?", (scan_id,)).fetchone()
    return None if row[0] is None else int(row[0])


def samples_with_progress(conn: sqlite3.Connection, scan_id: int | None = None) -> list[dict]:
    """Samples (optionally of one scan) with their unit and reviewed counts, newest first."""
    rows = conn.execute(
        "SELECT s.id AS sample_id, s.scan_id, s.created_at, s.seed, s.allocation, s.buffer_m,"
        " COUNT(u.unit_id) AS units, COUNT(u.reference_class) AS reviewed"
        " FROM area_samples s LEFT JOIN area_sample_units u ON u.sample_id = s.id"
        " WHERE (? IS NULL OR s.scan_id = ?) GROUP BY s.id ORDER BY s.id DESC",
        (scan_id, scan_id),
    ).fetchall()
    return [dict(r) for r in rows]


# -- area_sample_units ------------------------------------------------------------------------------------
_PENDING_COLUMNS = "unit_id, sample_id, z, x, y, cell_row, cell_col, grid_cells, west, south, east, north, area_ha"
_MAP_CLASS_COLUMNS = ", stratum, map_class, map_prob"


def _with_centre(rows: Sequence[sqlite3.Row]) -> list[dict]:
    """Unit rows as dicts with their centre ``lon``/``lat`` added."""
    out = []
    for r in rows:
        d = dict(r)
        d["lon"] = (d["west"] + d["east"]) / 2
        d["lat"] = (d["south"] + d["north"]) / 2
        out.append(d)
    return out


def units_of_sample(conn: sqlite3.Connection, sample_id: int) -> list[dict]:
    """All units of a sample (every column) in review order, with their centre lon/lat."""
    rows = conn.execute("SELECT * FROM area_sample_units WHERE sample_id = ? ORDER BY unit_id", (sample_id,))
    return _with_centre(rows.fetchall())


def pending_units(conn: sqlite3.Connection, sample_id: int, *, include_map_class: bool = False) -> list[dict]:
    """Units of a sample without a reference class in review order, with centre lon/lat (map class optional)."""
    cols = _PENDING_COLUMNS + (_MAP_CLASS_COLUMNS if include_map_class else "")
    rows = conn.execute(
        f"SELECT {cols} FROM area_sample_units WHERE sample_id = ? AND reference_class IS NULL ORDER BY unit_id",
        (sample_id,),
    )
    return _with_centre(rows.fetchall())


def unit_ids(conn: sqlite3.Connection, sample_id: int) -> set[int]:
    """Ids of all units of a sample."""
    return {r[0] for r in conn.execute("SELECT unit_id FROM area_sample_units WHERE sample_id = ?", (sample_id,))}


def get_unit(conn: sqlite3.Connection, unit_id: int) -> dict | None:
    """One unit row (every column), or None."""
    row = conn.execute("SELECT * FROM area_sample_units WHERE unit_id = ?", (unit_id,)).fetchone()
    return None if row is None else dict(row)


def set_reference_class(
    conn: sqlite3.Connection,
    unit_id: int,
    reference_class: str,
    reviewed_by: str,
    reviewed_at: str,
    reference_from: str | None = None,
) -> dict | None:
    """Set one unit's reference class (and its earlier date's, in a change sample) -> the updated unit row, or None
    if there is no such unit."""
    cur = conn.execute(
        "UPDATE area_sample_units SET reference_class = ?, reference_class_from = COALESCE(?, reference_class_from),"
        " reviewed_by = ?, reviewed_at = ? WHERE unit_id = ?",
        (reference_class, reference_from, reviewed_by, reviewed_at, unit_id),
    )
    if cur.rowcount == 0:
        return None
    return dict(conn.execute("SELECT * FROM area_sample_units WHERE unit_id = ?", (unit_id,)).fetchone())


def set_reference_classes(
    conn: sqlite3.Connection, classes: Mapping[int, str], reviewed_by: str, reviewed_at: str
) -> None:
    """Set the reference class of many units ({unit_id: class}) in one transaction (rolled back on error)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "UPDATE area_sample_units SET reference_class = ?, reviewed_by = ?, reviewed_at = ? WHERE unit_id = ?",
            [(ref, reviewed_by, reviewed_at, uid) for uid, ref in classes.items()],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def set_change_references(
    conn: sqlite3.Connection, classes: Mapping[int, tuple[str, str]], reviewed_by: str, reviewed_at: str
) -> None:
    """Set both dates' reference classes of many units ({unit_id: (earlier, later)}) in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "UPDATE area_sample_units SET reference_class_from = ?, reference_class = ?, reviewed_by = ?,"
            " reviewed_at = ? WHERE unit_id = ?",
            [(ref_from, ref_to, reviewed_by, reviewed_at, uid) for uid, (ref_from, ref_to) in classes.items()],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def change_reference_counts(conn: sqlite3.Connection, sample_id: int) -> list[tuple[str, str, str, int]]:
    """(stratum, earlier class, later class, units) of a change sample, for units answered at both dates."""
    rows = conn.execute(
        "SELECT stratum, reference_class_from, reference_class, COUNT(*) FROM area_sample_units"
        " WHERE sample_id = ? AND reference_class IS NOT NULL AND reference_class_from IS NOT NULL"
        " GROUP BY stratum, reference_class_from, reference_class",
        (sample_id,),
    )
    return [(stratum, ref_from, ref_to, int(n)) for stratum, ref_from, ref_to, n in rows]


def review_counts(conn: sqlite3.Connection, sample_id: int) -> tuple[int, int]:
    """(units, reviewed units) of a sample."""
    total, reviewed = conn.execute(
        "SELECT COUNT(*), COUNT(reference_class) FROM area_sample_units WHERE sample_id = ?", (sample_id,)
    ).fetchone()
    return int(total), int(reviewed)


def reference_counts(conn: sqlite3.Connection, sample_id: int) -> list[tuple[str, str, int]]:
    """(stratum, reference class, reviewed units) of a sample, for every pair with reviewed units."""
    rows = conn.execute(
        "SELECT stratum, reference_class, COUNT(*) FROM area_sample_units"
        " WHERE sample_id = ? AND reference_class IS NOT NULL GROUP BY stratum, reference_class",
        (sample_id,),
    )
    return [(stratum, ref, int(n)) for stratum, ref, n in rows]
