"""Tables of accuracy-assessment samples in the project DB (component ``area``).

- ``area_samples``: one stratified random sample of a scan's map units (seed, allocation, rule).
- ``area_sample_strata``: per stratum of a sample, its map class, cell count, area and sample size.
- ``area_sample_units``: the sampled cells with their footprint; ``reference_class`` stays NULL
  until a reviewer labels the unit.
"""

from __future__ import annotations

import sqlite3

from amberwatch.db import migrate
from amberwatch.results.schema import ensure_schema

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
]


def ensure_area_schema(conn: sqlite3.Connection) -> None:
    """Create or upgrade the results tables and the area-sample tables."""
    ensure_schema(conn)
    migrate(conn, "area", MIGRATIONS)
