"""The owner of the scans, scan_tiles and detections tables (component ``results``): schema and every query.

Other modules call these functions and never run SQL on these tables themselves.

- ``scans``: one row per scan run (or rescan layer), with AOI, imagery, zoom, model version, counts.
- ``scan_tiles``: one row per processed tile (the unit of resumability): status, capture date,
  the model's probability grid over the tile (uint8 0..255, row-major, ``grid_cells`` per side) and
  which of its cells have imagery (``valid_cells``, 1/0 per cell like the grid; NULL: every cell).
- ``detections``: merged polygons above the threshold, with area in hectares.

Reads return the typed records of ``results.records`` (``Scan``, ``ScanLayer``, ``Detection``) and ``TileRow``s,
never ``sqlite3.Row``s.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from amberwatch.db import utc_now_iso
from amberwatch.errors import DatabaseError, NotFoundError
from amberwatch.imagery.tiles import tile_area_km2
from amberwatch.imagery.types import LngLatBbox
from amberwatch.project import Component, Project, migrate_component
from amberwatch.results.records import Detection, Scan, ScanLayer, ScanParams

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
    # v3: each classified tile keeps a compact embedding (float16) for similarity search ("more like this").
    """
    ALTER TABLE scan_tiles ADD COLUMN embedding BLOB;
    """,
    # v4 (nodata): which cells of a done tile have imagery (uint8 1/0 per cell, row-major like the grid); NULL
    # means every cell does. Cells without imagery are left out of the scanned km² and the area sample.
    """
    ALTER TABLE scan_tiles ADD COLUMN valid_cells BLOB;
    """,
    # v5: the date or release of a scan's imagery (given with --imagery-date, or the one a GeoTIFF, tile folder or
    # MBTiles file records); NULL: undated. A given date is also part of imagery_source_id (imagery.types).
    """
    ALTER TABLE scans ADD COLUMN imagery_date TEXT;
    """,
]


SCHEMA = Component("results", MIGRATIONS)


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create or upgrade the scans/scan_tiles/detections tables on a bare connection (a Project: ``migrate``)."""
    migrate_component(conn, SCHEMA)


def open_results(db: str | os.PathLike[str] | None) -> Project:
    """The existing project DB ``db`` with the results tables ready (DatabaseError naming a missing file)."""
    project = Project.open(db, create=False)
    project.migrate(SCHEMA)
    return project


# -- scans ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NewScan:
    """What a new scans row (a scan run or a rescan layer) is created with."""

    name: str
    aoi_geojson: str
    imagery: str
    imagery_source_id: str
    zoom: int
    model_version: str
    model_threshold: float
    params: ScanParams
    tiles_total: int | None
    parent_scan_id: int | None = None
    imagery_date: str | None = None  # date or release of the imagery (None: undated)


@dataclass(frozen=True)
class ScanIdentity:
    """What makes two runs one scan, resumed by the second and locked against each other: AOI, imagery, zoom,
    model version and backbone precision. The imagery is its source id, which carries the imagery date or
    release (imagery.types.ImageryRef), so the same template at two dates gives two scans."""

    aoi_geojson: str
    imagery_source_id: str
    zoom: int
    model_version: str
    int8: bool
    triage: str = ""  # a triage pass or the fine pass after one (ScanParams.triage's key); "" for a plain scan

    def key(self) -> str:
        """The identity as one line of text (the scan lock is named by its hash)."""
        plain = f"{self.aoi_geojson}|{self.imagery_source_id}|{self.zoom}|{self.model_version}|{self.int8}"
        return f"{plain}|{self.triage}" if self.triage else plain


def scan_identity(scan: NewScan) -> ScanIdentity:
    """The identity of the scan a NewScan would create (its precision from ``params.int8``, its triage role from
    ``params.triage``)."""
    triage = str((scan.params.triage or {}).get("key", ""))
    return ScanIdentity(
        scan.aoi_geojson, scan.imagery_source_id, int(scan.zoom), scan.model_version, bool(scan.params.int8), triage
    )


def create_scan(conn: sqlite3.Connection, scan: NewScan, tiles: Sequence[TileRow] = ()) -> int:
    """Insert a running scan (and tiles carried over from a parent) in one transaction -> its id."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        cur = conn.execute(
            "INSERT INTO scans (name, aoi_geojson, imagery, imagery_source_id, zoom, model_version, model_threshold,"
            " parent_scan_id, status, params_json, started_at, tiles_total, imagery_date)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?)",
            (
                scan.name,
                scan.aoi_geojson,
                scan.imagery,
                scan.imagery_source_id,
                scan.zoom,
                scan.model_version,
                scan.model_threshold,
                scan.parent_scan_id,
                scan.params.to_json(),
                utc_now_iso(),
                scan.tiles_total,
                scan.imagery_date,
            ),
        )
        scan_id = int(cur.lastrowid)
        conn.executemany(_UPSERT_TILE, [_tile_values(scan_id, t, utc_now_iso()) for t in tiles])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return scan_id


def find_scan(conn: sqlite3.Connection, identity: ScanIdentity) -> int | None:
    """The latest scan (not a rescan layer) with this identity, if any."""
    row = conn.execute(
        "SELECT id FROM scans WHERE aoi_geojson = ? AND imagery_source_id = ? AND zoom = ? AND model_version = ?"
        " AND coalesce(json_extract(params_json, '$.int8'), 0) = ?"
        " AND coalesce(json_extract(params_json, '$.triage.key'), '') = ? AND parent_scan_id IS NULL"
        " ORDER BY id DESC LIMIT 1",
        (
            identity.aoi_geojson,
            identity.imagery_source_id,
            identity.zoom,
            identity.model_version,
            int(identity.int8),
            identity.triage,
        ),
    ).fetchone()
    return int(row[0]) if row else None


def _scan(row: sqlite3.Row) -> Scan:
    """A scans row as its record."""
    return Scan(
        id=int(row["id"]),
        name=row["name"],
        aoi_geojson=row["aoi_geojson"],
        imagery=row["imagery"],
        imagery_source_id=row["imagery_source_id"],
        imagery_date=row["imagery_date"],
        zoom=int(row["zoom"]),
        model_version=row["model_version"],
        model_threshold=row["model_threshold"],
        parent_scan_id=row["parent_scan_id"],
        status=row["status"],
        params=ScanParams.from_json(row["params_json"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        tiles_total=row["tiles_total"],
        tiles_done=row["tiles_done"],
        tiles_empty=row["tiles_empty"],
        tiles_failed=row["tiles_failed"],
        area_scanned_km2=row["area_scanned_km2"],
    )


def get_scan(conn: sqlite3.Connection, scan_id: int | None = None) -> Scan:
    """A scan (the latest when ``scan_id`` is None); NotFoundError naming the id."""
    if scan_id is None:
        row = conn.execute("SELECT * FROM scans ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            raise NotFoundError("the project database holds no scans yet; run 'amberwatch scan' first")
        return _scan(row)
    row = conn.execute("SELECT * FROM scans WHERE id = ?", (int(scan_id),)).fetchone()
    if row is None:
        raise NotFoundError(f"scan {scan_id} does not exist")
    return _scan(row)


def finished_scans(conn: sqlite3.Connection) -> list[Scan]:
    """Every finished scan (rescan layers too), oldest first; triage passes (they only choose tiles) left out."""
    return [
        _scan(r)
        for r in conn.execute(f"SELECT * FROM scans WHERE status = 'finished' AND {_NOT_TRIAGE_PASS} ORDER BY id")
    ]


# A triage pass (scan --triage-zoom) holds no detections: it is no result layer, nor a date of a timeline.
# A damaged params_json (ScanParams.from_json reads it as defaults) is no triage pass, and must not fail the query.
_NOT_TRIAGE_PASS = (
    "CASE WHEN json_valid(params_json) THEN coalesce(json_extract(params_json, '$.triage.role'), '') ELSE '' END"
    " != 'triage'"
)


def scan_exists(conn: sqlite3.Connection, scan_id: int) -> bool:
    """True when a scans row with this id exists."""
    return conn.execute("SELECT 1 FROM scans WHERE id = ?", (int(scan_id),)).fetchone() is not None


def latest_scan_id(conn: sqlite3.Connection, *, finished: bool = False) -> int | None:
    """Id of the newest scan (the most recently finished one with ``finished``), or None."""
    if finished:
        row = conn.execute(
            f"SELECT id FROM scans WHERE status = 'finished' AND {_NOT_TRIAGE_PASS}"
            " ORDER BY finished_at DESC, id DESC LIMIT 1"
        ).fetchone()
    else:
        row = conn.execute("SELECT MAX(id) FROM scans").fetchone()
    return None if row is None or row[0] is None else int(row[0])


def add_scan_warnings(conn: sqlite3.Connection, scan_id: int, counts: dict[str, int]) -> None:
    """Add a run's typed-warning counts (class name -> tile reads) to the scan's ``params.warnings``."""
    if not counts:
        return
    params = get_scan(conn, scan_id).params
    total = dict(params.warnings)
    for name, n in counts.items():
        total[name] = int(total.get(name, 0)) + int(n)
    conn.execute(
        "UPDATE scans SET params_json = ? WHERE id = ?", (replace(params, warnings=total).to_json(), int(scan_id))
    )


def reopen_scan(conn: sqlite3.Connection, scan_id: int, params: ScanParams, tiles_total: int) -> None:
    """Mark a scan running again with updated params (a resume)."""
    conn.execute(
        "UPDATE scans SET params_json = ?, status = 'running', finished_at = NULL, tiles_total = ? WHERE id = ?",
        (params.to_json(), tiles_total, int(scan_id)),
    )


def set_scan_status(conn: sqlite3.Connection, scan_id: int, status: str) -> None:
    """Set a scan 'finished' or 'failed' (with the time) or 'running'."""
    finished_at = None if status == "running" else utc_now_iso()
    conn.execute("UPDATE scans SET status = ?, finished_at = ? WHERE id = ?", (status, finished_at, int(scan_id)))


def update_scan_counts(conn: sqlite3.Connection, scan_id: int) -> dict:
    """Recompute a scan's tile counters and scanned km² from its scan_tiles rows."""
    counts = {"done": 0, "empty": 0, "failed": 0}
    for row in conn.execute("SELECT status, COUNT(*) FROM scan_tiles WHERE scan_id = ? GROUP BY status", (scan_id,)):
        counts[row[0]] = int(row[1])
    area = 0.0
    for row in conn.execute(
        "SELECT z, y, COUNT(*) FROM scan_tiles WHERE scan_id = ? AND status = 'done' AND valid_cells IS NULL"
        " GROUP BY z, y",
        (scan_id,),
    ):
        area += tile_area_km2(int(row[0]), int(row[1])) * int(row[2])
    for z, y, blob in conn.execute(
        "SELECT z, y, valid_cells FROM scan_tiles WHERE scan_id = ? AND status = 'done' AND valid_cells IS NOT NULL",
        (scan_id,),
    ):
        area += tile_area_km2(int(z), int(y)) * valid_share(blob)
    conn.execute(
        "UPDATE scans SET tiles_done = ?, tiles_empty = ?, tiles_failed = ?, area_scanned_km2 = ? WHERE id = ?",
        (counts["done"], counts["empty"], counts["failed"], area, scan_id),
    )
    total = conn.execute("SELECT tiles_total FROM scans WHERE id = ?", (scan_id,)).fetchone()[0]
    return {
        "tiles_total": total,
        "tiles_done": counts["done"],
        "tiles_empty": counts["empty"],
        "tiles_failed": counts["failed"],
        "area_scanned_km2": area,
    }


def scans_with_totals(conn: sqlite3.Connection) -> list[dict]:
    """Every scan with its headline counts and detection totals, newest first."""
    rows = conn.execute(
        "SELECT s.id, s.name, s.status, s.imagery, s.zoom, s.model_version, s.started_at, s.finished_at,"
        " s.tiles_total, s.tiles_done, s.tiles_empty, s.tiles_failed, s.area_scanned_km2,"
        " (SELECT COUNT(*) FROM detections d WHERE d.scan_id = s.id) AS detections,"
        " (SELECT COALESCE(SUM(area_ha), 0) FROM detections d WHERE d.scan_id = s.id) AS detections_area_ha"
        " FROM scans s ORDER BY s.id DESC"
    )
    return [dict(r) for r in rows]


def scan_layers(conn: sqlite3.Connection) -> list[ScanLayer]:
    """Every scan as a map layer, newest first: the scan, its detections' count, hectares and extent (triage
    passes left out)."""
    rows = conn.execute(
        "SELECT s.*, COUNT(d.id) AS n_detections, COALESCE(SUM(d.area_ha), 0.0) AS hectares,"
        " MIN(d.west) AS d_west, MIN(d.south) AS d_south, MAX(d.east) AS d_east, MAX(d.north) AS d_north"
        f" FROM scans s LEFT JOIN detections d ON d.scan_id = s.id WHERE {_NOT_TRIAGE_PASS}"
        " GROUP BY s.id ORDER BY s.id DESC"
    ).fetchall()
    return [
        ScanLayer(
            _scan(r),
            int(r["n_detections"]),
            float(r["hectares"]),
            None if r["d_west"] is None else LngLatBbox(r["d_west"], r["d_south"], r["d_east"], r["d_north"]),
        )
        for r in rows
    ]


# -- scan_tiles -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TileRow:
    """One tile's outcome as stored: status, capture date and the probability grid (uint8, row-major)."""

    z: int
    x: int
    y: int
    status: str  # done | empty | failed
    error: str | None = None
    capture_date: str | None = None
    max_prob: float | None = None
    grid_cells: int | None = None
    grid: bytes | None = None
    embedding: bytes | None = None  # float16 values (model.pretrained embeddings), None for models without them
    valid_cells: bytes | None = None  # uint8 1/0 per grid cell: has imagery; None = every cell has

    def scanned_km2(self) -> float:
        """Ground with imagery of a done tile in km² (the share of its cells that have imagery); 0 otherwise."""
        return tile_area_km2(self.z, self.y) * valid_share(self.valid_cells) if self.status == "done" else 0.0


def valid_share(valid_cells: bytes | None) -> float:
    """Share of a tile's cells with imagery from its ``valid_cells`` blob (None: all of them)."""
    if valid_cells is None:
        return 1.0
    return float(np.count_nonzero(np.frombuffer(valid_cells, dtype=np.uint8))) / max(1, len(valid_cells))


# A finished tile is never overwritten: only a failed one is retried (attempts counts the tries).
_UPSERT_TILE = (
    "INSERT INTO scan_tiles (scan_id, z, x, y, status, attempts, error, capture_date, max_prob, grid_cells, grid,"
    " embedding, valid_cells, processed_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (scan_id, z, x, y) DO UPDATE SET status = excluded.status, attempts = scan_tiles.attempts + 1,"
    " error = excluded.error, capture_date = excluded.capture_date, max_prob = excluded.max_prob,"
    " grid_cells = excluded.grid_cells, grid = excluded.grid, embedding = excluded.embedding,"
    " valid_cells = excluded.valid_cells, processed_at = excluded.processed_at"
    " WHERE scan_tiles.status = 'failed'"
)


def _tile_values(scan_id: int, t: TileRow, now: str) -> tuple:
    return (
        scan_id,
        t.z,
        t.x,
        t.y,
        t.status,
        t.error,
        t.capture_date,
        t.max_prob,
        t.grid_cells,
        t.grid,
        t.embedding,
        t.valid_cells,
        now,
    )


def write_tiles(conn: sqlite3.Connection, scan_id: int, tiles: Iterable[TileRow]) -> int:
    """Record tiles of a scan in one transaction, idempotently (finished tiles kept) -> rows given."""
    now = utc_now_iso()
    rows = [_tile_values(scan_id, t, now) for t in tiles]
    if not rows:
        return 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(_UPSERT_TILE, rows)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(rows)


def count_finished_tiles(conn: sqlite3.Connection, scan_id: int) -> int:
    """Tiles of a scan that are done or empty (never to be fetched again)."""
    row = conn.execute(
        "SELECT COUNT(*) FROM scan_tiles WHERE scan_id = ? AND status IN ('done', 'empty')", (scan_id,)
    ).fetchone()
    return int(row[0])


def finished_tiles_in(
    conn: sqlite3.Connection, scan_id: int, zoom: int, x_range: tuple[int, int], y_range: tuple[int, int]
) -> set[tuple[int, int]]:
    """(x, y) of the done or empty tiles of a scan inside a tile range (inclusive), one indexed query."""
    return {
        (int(r[0]), int(r[1]))
        for r in conn.execute(
            "SELECT x, y FROM scan_tiles WHERE scan_id = ? AND z = ? AND x BETWEEN ? AND ? AND y BETWEEN ? AND ?"
            " AND status IN ('done', 'empty')",
            (scan_id, zoom, x_range[0], x_range[1], y_range[0], y_range[1]),
        )
    }


def scan_tiles_at(conn: sqlite3.Connection, scan_id: int, zoom: int) -> list[TileRow]:
    """Every stored tile of a scan at a zoom."""
    return [
        TileRow(
            int(r["z"]),
            int(r["x"]),
            int(r["y"]),
            r["status"],
            r["error"],
            r["capture_date"],
            r["max_prob"],
            r["grid_cells"],
            r["grid"],
            r["embedding"],
            r["valid_cells"],
        )
        for r in conn.execute("SELECT * FROM scan_tiles WHERE scan_id = ? AND z = ?", (int(scan_id), zoom))
    ]


def tile_embeddings(conn: sqlite3.Connection, scan_id: int) -> tuple[np.ndarray, np.ndarray]:
    """((N, 2) int64 tile x, y; (N, dims) float16 embeddings) of a scan's done tiles that kept one."""
    xy, blobs = [], []
    for x, y, blob in conn.execute(
        "SELECT x, y, embedding FROM scan_tiles WHERE scan_id = ? AND status = 'done' AND embedding IS NOT NULL"
        " ORDER BY y, x",
        (int(scan_id),),
    ):
        xy.append((x, y))
        blobs.append(blob)
    if not blobs:
        return np.zeros((0, 2), dtype=np.int64), np.zeros((0, 0), dtype=np.float16)
    dims = {len(b) for b in blobs}
    if len(dims) != 1:
        raise DatabaseError(f"scan {scan_id}: tile embeddings of different sizes ({sorted(dims)} bytes)")
    vectors = np.frombuffer(b"".join(blobs), dtype=np.float16).reshape(len(blobs), -1)
    return np.asarray(xy, dtype=np.int64), vectors


def failed_tiles(conn: sqlite3.Connection, scan_id: int, limit: int = 20) -> list[dict]:
    """The first failed tiles of a scan (z, y, x order) with attempts and error."""
    return [
        {"z": r["z"], "x": r["x"], "y": r["y"], "attempts": r["attempts"], "error": r["error"]}
        for r in conn.execute(
            "SELECT z, x, y, attempts, error FROM scan_tiles WHERE scan_id = ? AND status = 'failed'"
            " ORDER BY z, y, x LIMIT ?",
            (scan_id, limit),
        )
    ]


def first_tile_error(conn: sqlite3.Connection, scan_id: int) -> str | None:
    """The error of one failed tile of a scan, if any failed."""
    row = conn.execute(
        "SELECT error FROM scan_tiles WHERE scan_id = ? AND status = 'failed' LIMIT 1", (scan_id,)
    ).fetchone()
    return row[0] if row else None


def tiles_to_look_closer(conn: sqlite3.Connection, scan_id: int, min_max_prob: float) -> Iterator[TileRow]:
    """A triage scan's tiles a finer pass must look at, in (z, x, y) order: done ones reaching ``min_max_prob``
    (z, x, y, grid_cells, grid) and failed ones (z, x, y only: their content is unknown)."""
    for z, x, y, status, cells, grid in conn.execute(
        "SELECT z, x, y, status, grid_cells, grid FROM scan_tiles WHERE scan_id = ? AND ((status = 'done' AND"
        " max_prob >= ?) OR status = 'failed') ORDER BY z, x, y",
        (int(scan_id), float(min_max_prob)),
    ):
        yield TileRow(int(z), int(x), int(y), status, grid_cells=cells, grid=grid)


def grid_tiles(conn: sqlite3.Connection, scan_id: int, *, min_max_prob: float = 0.0) -> Iterator[TileRow]:
    """Done tiles of a scan with a grid whose max probability reaches ``min_max_prob``, in (z, x, y) order.

    Each has z, x, y, grid_cells, grid (bytes) and capture_date (not its max_prob, embedding or valid_cells).
    """
    for z, x, y, cells, grid, date in conn.execute(
        "SELECT z, x, y, grid_cells, grid, capture_date FROM scan_tiles WHERE scan_id = ? AND status = 'done'"
        " AND grid IS NOT NULL AND grid_cells > 0 AND max_prob >= ? ORDER BY z, x, y",
        (scan_id, min_max_prob),
    ):
        yield TileRow(z, x, y, "done", capture_date=date, grid_cells=cells, grid=grid)


def done_tiles(conn: sqlite3.Connection, scan_id: int) -> Iterator[TileRow]:
    """Every done tile of a scan in (z, x, y) order: z, x, y, grid_cells, grid (possibly missing), valid_cells."""
    for z, x, y, cells, grid, valid in conn.execute(
        "SELECT z, x, y, grid_cells, grid, valid_cells FROM scan_tiles WHERE scan_id = ? AND status = 'done'"
        " ORDER BY z, x, y",
        (scan_id,),
    ):
        yield TileRow(z, x, y, "done", grid_cells=cells, grid=grid, valid_cells=valid)


def imagery_tiles(conn: sqlite3.Connection, scan_id: int) -> Iterator[TileRow]:
    """Every done tile of a scan (read with imagery) with z, x, y, grid_cells and valid_cells, without its grid."""
    for z, x, y, cells, valid in conn.execute(
        "SELECT z, x, y, grid_cells, valid_cells FROM scan_tiles WHERE scan_id = ? AND status = 'done'", (scan_id,)
    ):
        yield TileRow(z, x, y, "done", grid_cells=cells, valid_cells=valid)


def tile_grid(conn: sqlite3.Connection, scan_id: int, z: int, x: int, y: int) -> TileRow | None:
    """One stored tile with its status, grid_cells, grid and capture_date, or None."""
    row = conn.execute(
        "SELECT status, grid_cells, grid, capture_date FROM scan_tiles WHERE scan_id = ? AND z = ? AND x = ? AND y = ?",
        (scan_id, z, x, y),
    ).fetchone()
    if row is None:
        return None
    return TileRow(
        z, x, y, row["status"], capture_date=row["capture_date"], grid_cells=row["grid_cells"], grid=row["grid"]
    )


# -- detections -------------------------------------------------------------------------------------------
DETECTION_COLUMNS = (
    "d.id, d.scan_id, d.geometry_geojson, d.centroid_lon, d.centroid_lat, d.west, d.south, d.east, d.north,"
    " d.area_ha, d.mean_prob, d.max_prob, d.capture_date, d.model_version, d.created_at,"
    " d.thumbnail IS NOT NULL AS has_thumbnail, s.imagery_source_id, s.zoom"
)
_ORDERS = {
    "id": "d.id",
    "largest": "d.area_ha DESC, d.id",
    "likeliest": "d.mean_prob DESC, d.area_ha DESC, d.id",
}


def query_detections(
    conn: sqlite3.Connection,
    *,
    scan_id: int | None = None,
    ids: Sequence[int] | None = None,
    min_prob: float | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    order: str = "id",
    limit: int | None = None,
    thumbnails: bool = False,
) -> list[Detection]:
    """Detections joined with their scan's imagery id and zoom, filtered (scan, ids, mean prob, W,S,E,N bbox)."""
    where, args = [], []
    if scan_id is not None:
        where.append("d.scan_id = ?")
        args.append(int(scan_id))
    if ids is not None:
        where.append(f"d.id IN ({','.join('?' * len(ids))})")
        args += [int(i) for i in ids]
    if min_prob is not None:
        where.append("d.mean_prob >= ?")
        args.append(min_prob)
    if bbox is not None:
        w, s, e, n = bbox
        where.append("d.east >= ? AND d.west <= ? AND d.north >= ? AND d.south <= ?")
        args += [w, e, s, n]
    sql = (
        f"SELECT {DETECTION_COLUMNS}, {'d.thumbnail' if thumbnails else 'NULL AS thumbnail'}"
        " FROM detections d JOIN scans s ON s.id = d.scan_id"
    )
    sql += (" WHERE " + " AND ".join(where) if where else "") + f" ORDER BY {_ORDERS[order]}"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(int(limit))
    return [_detection(r) for r in conn.execute(sql, args)]


def _detection(row: sqlite3.Row) -> Detection:
    """A row of DETECTION_COLUMNS (and the thumbnail) as its record."""
    return Detection(
        id=int(row["id"]),
        scan_id=int(row["scan_id"]),
        geometry_geojson=row["geometry_geojson"],
        centroid_lon=float(row["centroid_lon"]),
        centroid_lat=float(row["centroid_lat"]),
        bbox=LngLatBbox(row["west"], row["south"], row["east"], row["north"]),
        area_ha=float(row["area_ha"]),
        mean_prob=float(row["mean_prob"]),
        max_prob=float(row["max_prob"]),
        capture_date=row["capture_date"],
        model_version=row["model_version"],
        created_at=row["created_at"],
        has_thumbnail=bool(row["has_thumbnail"]),
        thumbnail=None if row["thumbnail"] is None else bytes(row["thumbnail"]),
        imagery_source_id=str(row["imagery_source_id"]),
        zoom=int(row["zoom"]),
    )


def get_detection(conn: sqlite3.Connection, detection_id: int, *, thumbnail: bool = False) -> Detection:
    """One detection (as query_detections gives it); NotFoundError naming the id."""
    rows = query_detections(conn, ids=[int(detection_id)], thumbnails=thumbnail)
    if not rows:
        raise NotFoundError(f"detection {detection_id!r} does not exist")
    return rows[0]


def detection_thumbnail(conn: sqlite3.Connection, detection_id: int) -> bytes | None:
    """The stored JPEG chip of a detection (None if it has none); NotFoundError if the detection is unknown."""
    row = conn.execute("SELECT thumbnail FROM detections WHERE id = ?", (int(detection_id),)).fetchone()
    if row is None:
        raise NotFoundError(f"detection {detection_id!r} does not exist")
    return None if row["thumbnail"] is None else bytes(row["thumbnail"])


def detection_totals(conn: sqlite3.Connection, scan_id: int) -> tuple[int, float, float]:
    """(count, hectares, highest max probability) of a scan's detections."""
    row = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(area_ha), 0), COALESCE(MAX(max_prob), 0) FROM detections WHERE scan_id = ?",
        (scan_id,),
    ).fetchone()
    return int(row[0]), float(row[1]), float(row[2])


@dataclass(frozen=True)
class DetectionRow:
    """A detection to store: GeoJSON geometry text, centroid and bounds in degrees, hectares, probabilities."""

    geometry_geojson: str
    centroid_lon: float
    centroid_lat: float
    bounds: tuple[float, float, float, float]
    area_ha: float
    mean_prob: float
    max_prob: float
    capture_date: str | None
    model_version: str
    thumbnail: bytes | None


def replace_detections(conn: sqlite3.Connection, scan_id: int, found: Sequence[DetectionRow]) -> None:
    """Make a scan's detections exactly ``found`` in one transaction; unchanged outlines keep their ids."""
    now = utc_now_iso()
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Reviews and links refer to detections by id, so an outline that did not move keeps its row.
        old = {
            r["geometry_geojson"]: int(r["id"])
            for r in conn.execute("SELECT id, geometry_geojson FROM detections WHERE scan_id = ?", (scan_id,))
        }
        kept = {old[d.geometry_geojson]: d for d in found if d.geometry_geojson in old}
        gone = [i for i in old.values() if i not in kept]
        conn.executemany("DELETE FROM detections WHERE id = ?", [(i,) for i in gone])
        conn.executemany(
            "UPDATE detections SET area_ha = ?, mean_prob = ?, max_prob = ?, capture_date = ?, model_version = ?,"
            " thumbnail = COALESCE(?, thumbnail) WHERE id = ?",
            [
                (d.area_ha, d.mean_prob, d.max_prob, d.capture_date, d.model_version, d.thumbnail, i)
                for i, d in kept.items()
            ],
        )
        conn.executemany(
            "INSERT INTO detections (scan_id, geometry_geojson, centroid_lon, centroid_lat, west, south, east, north,"
            " area_ha, mean_prob, max_prob, capture_date, model_version, thumbnail, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    scan_id,
                    d.geometry_geojson,
                    d.centroid_lon,
                    d.centroid_lat,
                    *d.bounds,
                    d.area_ha,
                    d.mean_prob,
                    d.max_prob,
                    d.capture_date,
                    d.model_version,
                    d.thumbnail,
                    now,
                )
                for d in found
                if d.geometry_geojson not in old
            ],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
