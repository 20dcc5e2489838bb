"""Tables of scans, per-tile results and detections in the project DB (component ``results``).

- ``scans``: one row per scan run (or rescan layer), with AOI, imagery, zoom, model version, counts.
- ``scan_tiles``: one row per processed tile (the unit of resumability): status, capture date and
  the model's probability grid over the tile (uint8 0..255, row-major, ``grid_cells`` per side).
- ``detections``: merged polygons above the threshold, with area in hectares.
"""

from __future__ import annotations

import sqlite3

from amberwatch.db import migrate

MIGRATIONS: list[str] = [
    """
    CREATE TABLE scans (
        id INTEGER PRIMARY KEY,
        name TEXT,
        aoi_geojson TEXT NOT NULL,
        imagery TEXT NOT NULL,              -- URL template, preset name or local path as given
        imagery_source_id TEXT NOT NULL,    -- stable id used as the tile cache key
        zoom INTEGER NOT NULL,
        model_version TEXT NOT NULL,
        model_threshold REAL NOT NULL,
        parent_scan_id INTEGER REFERENCES scans(id),  -- set for a rescan layer
        status TEXT NOT NULL DEFAULT 'running',      -- running | finished | failed
        params_json TEXT NOT NULL DEFAULT '{}',
        started_at TEXT NOT NULL,
        finished_at TEXT,
        tiles_total INTEGER,
        tiles_done INTEGER NOT NULL DEFAULT 0,
        tiles_empty INTEGER NOT NULL DEFAULT 0,
        tiles_failed INTEGER NOT NULL DEFAULT 0,
        area_scanned_km2 REAL NOT NULL DEFAULT 0
    );
    CREATE TABLE scan_tiles (
        scan_id INTEGER NOT NULL REFERENCES scans(id) ON DELETE CASCADE,
        z INTEGER NOT NULL,
        x INTEGER NOT NULL,
        y INTEGER NOT NULL,
        status TEXT NOT NULL,               -- done | empty | failed
        attempts INTEGER NOT NULL DEFAULT 1,
        error TEXT,
        capture_date TEXT,
        max_prob REAL,
        grid_cells INTEGER,
        grid BLOB,
        processed_at TEXT NOT NULL,
        PRIMARY KEY (scan_id, z, x, y)
    );
    CREATE INDEX scan_tiles_status ON scan_tiles (scan_id, status);
    CREATE TABLE detections (
        id INTEGER PRIMARY KEY,
        scan_id INTEGER NOT NULL REFERENCES scans(id) ON DELETE CASCADE,
        geometry_geojson TEXT NOT NULL,     -- Polygon/MultiPolygon in lon/lat (RFC 7946)
        centroid_lon REAL NOT NULL,
        centroid_lat REAL NOT NULL,
        west REAL NOT NULL, south REAL NOT NULL, east REAL NOT NULL, north REAL NOT NULL,
        area_ha REAL NOT NULL,
        mean_prob REAL NOT NULL,
        max_prob REAL NOT NULL,
        capture_date TEXT,
        model_version TEXT NOT NULL,
        thumbnail BLOB,                     -- JPEG chip of the imagery the model saw
        created_at TEXT NOT NULL
    );
    CREATE INDEX detections_scan ON detections (scan_id);
    CREATE INDEX detections_bbox ON detections (west, south, east, north);
    """,
    # v2: detection ids are never reused (AUTOINCREMENT): reviews and links refer to detections by id,
    # and a rebuilt scan deletes vanished detections.
    """
    CREATE TABLE detections_v2 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        scan_id INTEGER NOT NULL REFERENCES scans(id) ON DELETE CASCADE,
        geometry_geojson TEXT NOT NULL,
        centroid_lon REAL NOT NULL,
        centroid_lat REAL NOT NULL,
        west REAL NOT NULL, south REAL NOT NULL, east REAL NOT NULL, north REAL NOT NULL,
        area_ha REAL NOT NULL,
        mean_prob REAL NOT NULL,
        max_prob REAL NOT NULL,
        capture_date TEXT,
        model_version TEXT NOT NULL,
        thumbnail BLOB,
        created_at TEXT NOT NULL
    );
    INSERT INTO detections_v2 (id, scan_id, geometry_geojson, centroid_lon, centroid_lat, west, south, east, north,
        area_ha, mean_prob, max_prob, capture_date, model_version, thumbnail, created_at)
        SELECT id, scan_id, geometry_geojson, centroid_lon, centroid_lat, west, south, east, north,
        area_ha, mean_prob, max_prob, capture_date, model_version, thumbnail, created_at FROM detections;
    DROP TABLE detections;
    ALTER TABLE detections_v2 RENAME TO detections;
    CREATE INDEX detections_scan ON detections (scan_id);
    CREATE INDEX detections_bbox ON detections (west, south, east, north);
    """,
]


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create or upgrade the scans/scan_tiles/detections tables."""
    migrate(conn, "results", MIGRATIONS)
