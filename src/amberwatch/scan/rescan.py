"""Re-classify a finished scan with another model version from the tile cache only, into a new result layer.

The new layer is a ``scans`` row with ``parent_scan_id`` set, the same AOI, imagery and zoom, its own
``scan_tiles`` grids and detections. Tiles are classified by the scan's own unit worker
(``amberwatch.scan.worker.process_unit``) over a read-only cache source, so the imagery is never
fetched again and every tile sees exactly the input an ordinary scan would give it.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from amberwatch.db import connect, utc_now_iso
from amberwatch.errors import ConflictError, NotFoundError
from amberwatch.imagery.cache import TileCache, default_cache_path

_INSERT_TILE = (
    "INSERT INTO scan_tiles (scan_id, z, x, y, status, attempts, error, capture_date, max_prob, grid_cells, grid,"
    " processed_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?)"
)


@dataclass
class RescanOutcome:
    """Summary of a rescan: the new layer and what it holds."""

    scan_id: int
    parent_scan_id: int
    model_version: str
    tiles_rescanned: int
    tiles_missing_from_cache: int
    tiles_copied: int  # empty/failed tiles of the parent carried over as they were
    detections: int
    detections_area_ha: float
    seconds: float


def _parent_scan(conn: sqlite3.Connection, scan_id: int) -> sqlite3.Row:
    row = conn.execute("SELECT * FROM scans WHERE id = ?", (int(scan_id),)).fetchone()
    if row is None:
        raise NotFoundError(f"scan {scan_id} does not exist")
    if row["status"] != "finished":
        raise ConflictError(
            f"scan {scan_id} is {row['status']!r}, not finished: finish it (run the same scan command again) first"
        )
    return row


def _seed_cached_source(context, cache: TileCache, source_id: str) -> None:
    """Make the worker of this process read the context's imagery from the cache only."""
    from amberwatch.imagery.mosaic import open_cached_source
    from amberwatch.scan.worker import remember_source

    # A cache-only source under the context's key means process_unit can never reach the network.
    remember_source(context, cache, open_cached_source(cache, source_id))


def rescan(
    db_path: str | os.PathLike[str],
    scan_id: int,
    model_version: int | str,
    *,
    cache_path: str | os.PathLike[str] | None = None,
    min_area_ha: float | None = None,
    on_event: Callable[[str], None] | None = None,
) -> RescanOutcome:
    """Re-classify finished scan SCAN with a registered model version into a new result layer."""
    from amberwatch.model.registry import ModelRegistry
    from amberwatch.results.detections import rebuild_detections
    from amberwatch.results.schema import ensure_schema
    from amberwatch.scan.aoi import aoi_from_geojson
    from amberwatch.scan.engine import DEFAULT_MIN_AREA_HA, model_tile_px, update_scan_counts
    from amberwatch.scan.tiling import DEFAULT_UNIT_ZOOM_DELTA
    from amberwatch.scan.worker import ScanContext, release, remember_model

    say = on_event or (lambda _msg: None)
    started = time.perf_counter()
    db_path = Path(db_path)
    conn = connect(db_path, create=False)
    try:
        ensure_schema(conn)
        parent = _parent_scan(conn, scan_id)
        params = json.loads(parent["params_json"] or "{}")
        registry = ModelRegistry(conn, db_path)
        info = registry.get(model_version)
        clf = registry.load(info.version)
        version = str(info.version)
        model_path = str(info.path) if info.version != 0 and info.path else None

        cache_file = Path(cache_path or params.get("cache_path") or default_cache_path(db_path))
        if not cache_file.exists():
            raise NotFoundError(f"tile cache {str(cache_file)!r} of scan {scan_id} does not exist; a rescan needs it")
        cache_file = cache_file.resolve()

        aoi = aoi_from_geojson(json.loads(parent["aoi_geojson"]), name=parent["name"] or f"scan {scan_id}")
        zoom = int(parent["zoom"])
        from amberwatch.imagery.types import ground_resolution_m_per_px

        tile_res = float(params.get("tile_resolution_m_per_px")
                         or ground_resolution_m_per_px(float(aoi.geometry.centroid.y), zoom))
        tile_px = model_tile_px(tile_res, clf.resolution_m_per_px, clf.cell_px)
        margin_px = int(math.ceil(clf.context_px / clf.cell_px) * clf.cell_px)
        source_id = parent["imagery_source_id"]
        context = ScanContext(
            imagery=f"cache:{source_id}", cache_path=str(cache_file), model_path=model_path, model_version=version,
            zoom=zoom, tile_px=tile_px, margin_px=margin_px, cell_px=clf.cell_px, block_tiles=clf.block_tiles,
        )
        min_area = float(min_area_ha if min_area_ha is not None else params.get("min_area_ha", DEFAULT_MIN_AREA_HA))
        unit_delta = int(params.get("unit_zoom_delta", DEFAULT_UNIT_ZOOM_DELTA))
        new_params = {
            **params,
            "tile_px": tile_px, "margin_px": margin_px, "cell_px": clf.cell_px,
            "cells_per_tile": context.cells_per_tile, "model_resolution_m_per_px": clf.resolution_m_per_px,
            "tile_resolution_m_per_px": tile_res, "model_path": model_path, "cache_path": str(cache_file),
            "min_area_ha": min_area, "unit_zoom_delta": unit_delta, "rescan_of": int(scan_id),
        }

        parent_tiles = {
            (int(r["x"]), int(r["y"])): r
            for r in conn.execute("SELECT * FROM scan_tiles WHERE scan_id = ? AND z = ?", (int(scan_id), zoom))
        }
        done = {xy for xy, r in parent_tiles.items() if r["status"] == "done"}

        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute(
                "INSERT INTO scans (name, aoi_geojson, imagery, imagery_source_id, zoom, model_version,"
                " model_threshold, parent_scan_id, status, params_json, started_at, tiles_total)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                (f"{parent['name'] or 'scan ' + str(scan_id)} (model v{version})", parent["aoi_geojson"],
                 parent["imagery"], source_id, zoom, version, clf.threshold, int(scan_id), json.dumps(new_params),
                 utc_now_iso(), parent["tiles_total"]),
            )
            new_id = int(cur.lastrowid)
            now = utc_now_iso()
            copied = [
                (new_id, zoom, x, y, r["status"],
                 r["error"] if r["status"] == "failed" else None, r["capture_date"], None, None, None, now)
                for (x, y), r in parent_tiles.items() if r["status"] != "done"
            ]
            conn.executemany(_INSERT_TILE, copied)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        say(f"scan {new_id}: rescan of scan {scan_id} with model v{version}, {len(done):,} tiles from the cache")

        rescanned = missing = 0
        cache = TileCache(cache_file)
        try:
            _seed_cached_source(context, cache, source_id)
            remember_model(model_path, version, clf)
            rescanned, missing = _classify_tiles(conn, new_id, aoi, zoom, unit_delta, done, context, cache_file)
        except BaseException:
            conn.execute("UPDATE scans SET status = 'failed', finished_at = ? WHERE id = ?", (utc_now_iso(), new_id))
            raise
        finally:
            release()  # closes the seeded source and the cache
        say(f"scan {new_id}: building detections")
        rebuild_detections(conn, new_id, min_area_ha=min_area, cache_path=str(cache_file))
        update_scan_counts(conn, new_id)
        conn.execute("UPDATE scans SET status = 'finished', finished_at = ? WHERE id = ?", (utc_now_iso(), new_id))
        det = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(area_ha), 0) FROM detections WHERE scan_id = ?", (new_id,)
        ).fetchone()
        return RescanOutcome(
            scan_id=new_id, parent_scan_id=int(scan_id), model_version=version, tiles_rescanned=rescanned,
            tiles_missing_from_cache=missing, tiles_copied=len(copied), detections=int(det[0]),
            detections_area_ha=float(det[1]), seconds=round(time.perf_counter() - started, 2),
        )
    finally:
        conn.close()


def _classify_tiles(conn: sqlite3.Connection, new_id: int, aoi, zoom: int, unit_delta: int, done: set,
                    context, cache_file: Path) -> tuple[int, int]:
    """Run the scan worker over the parent's done tiles, unit by unit; (tiles rescanned, tiles missing from cache)."""
    from amberwatch.scan.tiling import iter_units
    from amberwatch.scan.worker import process_unit

    rescanned = missing = 0
    for unit in iter_units(aoi.geometry, zoom, unit_zoom_delta=unit_delta):
        todo = tuple(t for t in unit.tiles if t in done)
        if not todo:
            continue
        result = process_unit(unit, context, todo)
        rows = []
        for t in result.tiles:
            status, error = t.status, t.error
            if status == "empty":  # was 'done' in the parent: its imagery is gone from the cache
                status, error = "failed", f"tile {zoom}/{t.x}/{t.y} is not in the tile cache {str(cache_file)!r}"
                missing += 1
            elif status == "done":
                rescanned += 1
            rows.append((new_id, t.z, t.x, t.y, status, error, t.capture_date, t.max_prob, t.grid_cells, t.grid,
                         utc_now_iso()))
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_INSERT_TILE, rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return rescanned, missing
