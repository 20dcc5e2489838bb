"""Run a scan: plan it, stream units to workers with backpressure, record tiles with one writer, build detections.

A scan is identified by (AOI, imagery source, zoom, model version): running the same command again
resumes the latest such scan, skipping tiles already 'done' or 'empty' and retrying 'failed' ones.
Workers only return results; the main process is the single writer of the project DB, and every
tile row is written idempotently (a finished tile is never overwritten).
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import math
import multiprocessing
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from amberwatch.db import connect, utc_now_iso
from amberwatch.errors import AOIError, NotFoundError, ResolutionError
from amberwatch.imagery.cache import default_cache_path
from amberwatch.imagery.types import TILE_SIZE_PX, ground_resolution_m_per_px
from amberwatch.results.schema import ensure_schema
from amberwatch.scan.aoi import AOI
from amberwatch.scan.tiling import DEFAULT_UNIT_ZOOM_DELTA, Unit, count_tiles, iter_units, tile_area_km2
from amberwatch.scan.worker import ScanContext, UnitResult, init_worker, process_unit, release, remember_model

DEFAULT_MAX_TILES = 500_000
MAX_RESOLUTION_M_PER_PX = 1.2  # coarser imagery cannot show pits the model was trained on
ESTIMATED_TILES_PER_S_NETWORK = 25.0
ESTIMATED_TILES_PER_S_CACHED = 200.0
DEFAULT_MIN_AREA_HA = 0.05
COUNTS_EVERY_S = 5.0


@dataclass
class ScanPlan:
    """What a scan will cover, before any tile is fetched."""

    zoom: int
    tiles: int
    area_km2: float
    center_lat_deg: float
    tile_resolution_m_per_px: float

    def estimated_seconds(self, tiles_per_s: float) -> float:
        """Time for all tiles at a given rate."""
        return self.tiles / max(tiles_per_s, 1e-9)


@dataclass
class ScanOutcome:
    """Summary of a finished (or interrupted) scan run."""

    scan_id: int
    resumed: bool
    tiles_total: int
    tiles_processed_now: int
    tiles_done: int
    tiles_empty: int
    tiles_failed: int
    area_scanned_km2: float
    detections: int
    detections_area_ha: float
    seconds: float
    counters: dict[str, float] = field(default_factory=dict)


def plan_scan(aoi: AOI, zoom: int, *, max_tiles: int = DEFAULT_MAX_TILES) -> ScanPlan:
    """Count the tiles of an AOI at a zoom (without listing them) and refuse AOIs above ``max_tiles``."""
    if not 0 <= int(zoom) <= 24:
        raise AOIError(f"zoom {zoom} is outside 0..24")
    n = count_tiles(aoi.geometry, zoom, stop_after=None)
    if n > max_tiles:
        raise AOIError(
            f"AOI {aoi.name!r} covers {n:,} tiles at zoom {zoom}, above the limit of {max_tiles:,}; "
            "split it or raise --max-tiles"
        )
    if n == 0:
        raise AOIError(f"AOI {aoi.name!r} covers no tiles at zoom {zoom}")
    lat = float(aoi.geometry.centroid.y)
    from pyproj import Geod

    area_m2, _ = Geod(ellps="WGS84").geometry_area_perimeter(aoi.geometry)
    return ScanPlan(
        zoom=zoom,
        tiles=n,
        area_km2=abs(area_m2) / 1e6,
        center_lat_deg=lat,
        tile_resolution_m_per_px=ground_resolution_m_per_px(lat, zoom),
    )


def choose_unit_zoom_delta(n_tiles: int, workers: int = 1) -> int:
    """Units of 16 x 16 tiles when there are enough for every worker (fewer neighbour tiles to decode), else 8 x 8."""
    return DEFAULT_UNIT_ZOOM_DELTA + 1 if n_tiles >= 512 * max(1, workers) else DEFAULT_UNIT_ZOOM_DELTA


def model_tile_px(tile_res_m_per_px: float, model_res_m_per_px: float, cell_px: int) -> int:
    """Side in model pixels of one 256 px tile resampled to the model's resolution, rounded to whole cells."""
    cells = max(1, round(TILE_SIZE_PX * tile_res_m_per_px / model_res_m_per_px / cell_px))
    return int(cells * cell_px)


def check_resolution(plan: ScanPlan, native_m_per_px: float | None, imagery: str, model_res_m_per_px: float) -> None:
    """Refuse imagery coarser than MAX_RESOLUTION_M_PER_PX (at the zoom, or natively for rasters)."""
    if plan.tile_resolution_m_per_px > MAX_RESOLUTION_M_PER_PX:
        raise ResolutionError(
            f"imagery {imagery!r} at zoom {plan.zoom} is {plan.tile_resolution_m_per_px:.2f} m/px at latitude "
            f"{plan.center_lat_deg:.2f}, coarser than the {MAX_RESOLUTION_M_PER_PX} m/px limit (the model was "
            f"trained at {model_res_m_per_px:.2f} m/px); use a higher --zoom"
        )
    if native_m_per_px is not None and native_m_per_px > MAX_RESOLUTION_M_PER_PX:
        raise ResolutionError(
            f"imagery {imagery!r} has a native resolution of {native_m_per_px:.2f} m/px, coarser than the "
            f"{MAX_RESOLUTION_M_PER_PX} m/px limit (the model was trained at {model_res_m_per_px:.2f} m/px)"
        )


@dataclass
class ScanSettings:
    """Options of a scan run."""

    workers: int | None = None  # None = os.cpu_count()
    new: bool = False
    max_tiles: int = DEFAULT_MAX_TILES
    min_area_ha: float = DEFAULT_MIN_AREA_HA
    model_path: str | None = None  # None = the project's current model (registry), else bundled
    cache_path: str | None = None  # None = beside the DB
    unit_zoom_delta: int | None = None  # None = by AOI size (see choose_unit_zoom_delta)
    max_in_flight: int | None = None  # units queued at once (default 2 x workers)
    progress: bool = True
    source_options: dict = field(default_factory=dict)
    name: str | None = None
    stop_after_units: int | None = None  # testing aid: stop early as if interrupted
    dask: str | None = None  # Dask scheduler address or 'local' (LocalCluster of `workers`); None = local pool
    worker_cache: str | None = None  # tile cache path as seen by Dask workers (see scan.dask_runner)


def resolve_model(db_path: str | os.PathLike[str], model_path: str | None):
    """(classifier, file path or None, version) of an explicit model file or of the project's current model."""
    if model_path:
        from amberwatch.model import load

        clf = load(model_path)
        return clf, str(Path(model_path).resolve()), clf.version
    try:
        from amberwatch.model.registry import ModelRegistry

        with ModelRegistry.open(db_path) as registry:
            info = registry.get(registry.current_version())
            clf = registry.load(info.version)
            path = str(info.path) if info.path else None
            return clf, path, str(info.version)
    except ImportError:  # pragma: no cover - registry not installed
        from amberwatch.model import load

        clf = load(None)
        return clf, None, clf.version


def find_scan(conn: sqlite3.Connection, aoi_geojson: str, source_id: str, zoom: int, model_version: str) -> int | None:
    """The latest scan with the same AOI, imagery, zoom and model, if any."""
    row = conn.execute(
        "SELECT id FROM scans WHERE aoi_geojson = ? AND imagery_source_id = ? AND zoom = ? AND model_version = ?"
        " AND parent_scan_id IS NULL ORDER BY id DESC LIMIT 1",
        (aoi_geojson, source_id, zoom, model_version),
    ).fetchone()
    return int(row[0]) if row else None


def run_scan(
    aoi: AOI,
    imagery: str,
    zoom: int,
    db_path: str | os.PathLike[str],
    settings: ScanSettings | None = None,
    *,
    on_event: Callable[[str], None] | None = None,
    on_warnings: Callable[[dict[str, int]], None] | None = None,
) -> ScanOutcome:
    """Scan an AOI over imagery at a zoom into the project DB (resuming a matching scan), then build detections."""
    from amberwatch.imagery.cache import TileCache
    from amberwatch.imagery.sources import open_source
    from amberwatch.results.detections import rebuild_detections

    settings = settings or ScanSettings()
    say = on_event or (lambda _msg: None)
    started = time.perf_counter()
    db_path = Path(db_path)
    plan = plan_scan(aoi, zoom, max_tiles=settings.max_tiles)
    clf, model_path, model_version = resolve_model(db_path, settings.model_path)
    cache_path = str(Path(settings.cache_path or default_cache_path(db_path)).resolve())
    source_options = tuple(sorted(settings.source_options.items()))
    cache = TileCache(cache_path)
    try:
        source = open_source(imagery, cache=cache, **settings.source_options)
        try:
            check_resolution(plan, source.native_resolution_m_per_px, source.spec, clf.resolution_m_per_px)
            source_id, source_spec = source.source_id, source.spec
        finally:
            source.close()
    finally:
        cache.close()

    tile_px = model_tile_px(plan.tile_resolution_m_per_px, clf.resolution_m_per_px, clf.cell_px)
    margin_px = int(math.ceil(clf.context_px / clf.cell_px) * clf.cell_px)
    context = ScanContext(
        imagery=imagery,
        cache_path=cache_path,
        model_path=model_path,
        model_version=model_version,
        zoom=zoom,
        tile_px=tile_px,
        margin_px=margin_px,
        cell_px=clf.cell_px,
        block_tiles=clf.block_tiles,
        source_options=source_options,
    )
    conn = connect(db_path)
    try:
        ensure_schema(conn)
        aoi_geojson = aoi.to_geojson()
        workers = max(1, int(settings.workers or os.cpu_count() or 1))
        scan_id = None if settings.new else find_scan(conn, aoi_geojson, source_id, zoom, model_version)
        resumed = scan_id is not None
        params = {
            "tile_px": tile_px,
            "margin_px": margin_px,
            "cell_px": clf.cell_px,
            "cells_per_tile": context.cells_per_tile,
            "model_resolution_m_per_px": clf.resolution_m_per_px,
            "tile_resolution_m_per_px": plan.tile_resolution_m_per_px,
            "model_path": model_path,
            "cache_path": cache_path,
            "min_area_ha": settings.min_area_ha,
            "unit_zoom_delta": settings.unit_zoom_delta or choose_unit_zoom_delta(plan.tiles, workers),
        }
        if scan_id is None:
            conn.execute("BEGIN IMMEDIATE")
            cur = conn.execute(
                "INSERT INTO scans (name, aoi_geojson, imagery, imagery_source_id, zoom, model_version, model_threshold,"
                " status, params_json, started_at, tiles_total) VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                (settings.name or aoi.name, aoi_geojson, source_spec, source_id, zoom, model_version, clf.threshold,
                 json.dumps(params), utc_now_iso(), plan.tiles),
            )
            scan_id = int(cur.lastrowid)
            conn.execute("COMMIT")
            say(f"scan {scan_id}: new, {plan.tiles:,} tiles at zoom {zoom}")
        else:
            # A resumed scan keeps its unit layout, so every tile sees exactly the same input frame.
            prev = conn.execute("SELECT status, params_json FROM scans WHERE id = ?", (scan_id,)).fetchone()
            stored = json.loads(prev["params_json"] or "{}")
            params["unit_zoom_delta"] = int(stored.get("unit_zoom_delta") or params["unit_zoom_delta"])
            if (
                prev["status"] == "finished"
                and _count_finished(conn, scan_id) >= plan.tiles
                and stored.get("min_area_ha") == settings.min_area_ha
            ):
                # Nothing to do: keep the detections (and their ids, which reviews may refer to) as they are.
                say(f"scan {scan_id}: already complete")
                stats = update_scan_counts(conn, scan_id)
                return _outcome(conn, scan_id, True, 0, stats, started, {"fetch_s": 0.0, "predict_s": 0.0, "units": 0})
            stored["min_area_ha"] = settings.min_area_ha
            conn.execute("UPDATE scans SET params_json = ? WHERE id = ?", (json.dumps(stored), scan_id))
            conn.execute(
                "UPDATE scans SET status = 'running', finished_at = NULL, tiles_total = ? WHERE id = ?",
                (plan.tiles, scan_id),
            )
            say(f"scan {scan_id}: resuming")
        already = _count_finished(conn, scan_id)
        todo_total = max(0, plan.tiles - already)
        if workers <= 1:
            remember_model(model_path, model_version, clf)
        counters = {"fetch_s": 0.0, "predict_s": 0.0, "worker_cpu_s": 0.0, "units": 0}
        main_cpu_started = time.process_time()
        writer = _TileWriter(conn, scan_id, clf.threshold)
        bar = _progress(todo_total, settings.progress, writer)
        interrupted = False
        try:
            units = _pending_units(conn, scan_id, aoi, zoom, params["unit_zoom_delta"])
            if settings.dask:
                from amberwatch.scan.dask_runner import run_units_dask

                results = run_units_dask(
                    units, context, clf, address=settings.dask, workers=settings.workers,
                    worker_cache=settings.worker_cache, max_in_flight=settings.max_in_flight,
                    total_tiles=todo_total, say=say,
                )
            else:
                results = _run_units(units, context, workers, settings.max_in_flight, settings.stop_after_units)
            last_counts = time.monotonic()
            for result in results:
                writer.write(result)
                if time.monotonic() - last_counts > COUNTS_EVERY_S:  # live counters for the map and 'scan list'
                    update_scan_counts(conn, scan_id)
                    last_counts = time.monotonic()
                counters["fetch_s"] += result.fetch_s
                counters["predict_s"] += result.predict_s
                counters["worker_cpu_s"] += result.cpu_s
                counters["units"] += 1
                if result.warnings and on_warnings is not None:
                    on_warnings(result.warnings)
                if bar is not None:
                    bar.update(len(result.tiles))
                    bar.set_postfix_str(writer.postfix(), refresh=False)
                if settings.stop_after_units is not None and counters["units"] >= settings.stop_after_units:
                    interrupted = True
                    break
        finally:
            if bar is not None:
                bar.close()
        counters["main_cpu_s"] = time.process_time() - main_cpu_started
        if interrupted:
            stats = update_scan_counts(conn, scan_id)
            return _outcome(conn, scan_id, resumed, writer.tiles_written, stats, started, counters)
        say(f"scan {scan_id}: building detections")
        rebuild_detections(conn, scan_id, min_area_ha=settings.min_area_ha, cache_path=cache_path)
        stats = update_scan_counts(conn, scan_id)
        conn.execute(
            "UPDATE scans SET status = 'finished', finished_at = ? WHERE id = ?", (utc_now_iso(), scan_id)
        )
        return _outcome(conn, scan_id, resumed, writer.tiles_written, stats, started, counters)
    finally:
        conn.close()


def _outcome(conn, scan_id, resumed, processed, stats, started, counters) -> ScanOutcome:
    det = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(area_ha), 0) FROM detections WHERE scan_id = ?", (scan_id,)
    ).fetchone()
    return ScanOutcome(
        scan_id=scan_id,
        resumed=resumed,
        tiles_total=int(stats["tiles_total"] or 0),
        tiles_processed_now=processed,
        tiles_done=stats["tiles_done"],
        tiles_empty=stats["tiles_empty"],
        tiles_failed=stats["tiles_failed"],
        area_scanned_km2=stats["area_scanned_km2"],
        detections=int(det[0]),
        detections_area_ha=float(det[1]),
        seconds=time.perf_counter() - started,
        counters=counters,
    )


def _count_finished(conn: sqlite3.Connection, scan_id: int) -> int:
    row = conn.execute(
        "SELECT COUNT(*) FROM scan_tiles WHERE scan_id = ? AND status IN ('done', 'empty')", (scan_id,)
    ).fetchone()
    return int(row[0])


def update_scan_counts(conn: sqlite3.Connection, scan_id: int) -> dict:
    """Recompute a scan's tile counters and scanned km² from its scan_tiles rows."""
    counts = {"done": 0, "empty": 0, "failed": 0}
    for row in conn.execute("SELECT status, COUNT(*) FROM scan_tiles WHERE scan_id = ? GROUP BY status", (scan_id,)):
        counts[row[0]] = int(row[1])
    area = 0.0
    for row in conn.execute(
        "SELECT z, y, COUNT(*) FROM scan_tiles WHERE scan_id = ? AND status = 'done' GROUP BY z, y", (scan_id,)
    ):
        area += tile_area_km2(int(row[0]), int(row[1])) * int(row[2])
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


def _pending_units(conn: sqlite3.Connection, scan_id: int, aoi: AOI, zoom: int, delta: int) -> Iterator[tuple[Unit, tuple]]:
    """Stream (unit, tiles still to do) skipping finished tiles, one indexed query per unit."""
    for unit in iter_units(aoi.geometry, zoom, unit_zoom_delta=delta):
        xs = [x for x, _ in unit.tiles]
        ys = [y for _, y in unit.tiles]
        finished = {
            (int(r[0]), int(r[1]))
            for r in conn.execute(
                "SELECT x, y FROM scan_tiles WHERE scan_id = ? AND z = ? AND x BETWEEN ? AND ? AND y BETWEEN ? AND ?"
                " AND status IN ('done', 'empty')",
                (scan_id, zoom, min(xs), max(xs), min(ys), max(ys)),
            )
        }
        todo = tuple(t for t in unit.tiles if t not in finished)
        if todo:
            yield unit, todo


def _run_units(
    units: Iterator[tuple[Unit, tuple]],
    context: ScanContext,
    workers: int,
    max_in_flight: int | None,
    stop_after_units: int | None,
) -> Iterator[UnitResult]:
    """Process units in this process (1 worker) or a spawn/forkserver process pool, with bounded in-flight work."""
    if workers <= 1:
        try:
            for unit, todo in units:
                yield process_unit(unit, context, todo)
        finally:
            release()
        return
    limit = max(1, max_in_flight or 2 * workers)
    methods = multiprocessing.get_all_start_methods()
    mp_context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp_context, initializer=init_worker, initargs=(1, os.getpid()))
    pending: set[cf.Future] = set()
    try:
        for unit, todo in units:
            while len(pending) >= limit:
                done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
            pending.add(pool.submit(process_unit, unit, context, todo))
        while pending:
            done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                yield fut.result()
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


class _TileWriter:
    """The single writer of scan_tiles: one transaction per unit result, idempotent per tile."""

    SQL = (
        "INSERT INTO scan_tiles (scan_id, z, x, y, status, attempts, error, capture_date, max_prob, grid_cells, grid,"
        " processed_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (scan_id, z, x, y) DO UPDATE SET status = excluded.status, attempts = scan_tiles.attempts + 1,"
        " error = excluded.error, capture_date = excluded.capture_date, max_prob = excluded.max_prob,"
        " grid_cells = excluded.grid_cells, grid = excluded.grid, processed_at = excluded.processed_at"
        " WHERE scan_tiles.status = 'failed'"
    )

    def __init__(self, conn: sqlite3.Connection, scan_id: int, threshold: float) -> None:
        self.conn = conn
        self.scan_id = scan_id
        self.threshold = threshold
        self.tiles_written = 0
        self.km2_done = 0.0
        self.hits = 0
        self.failed = 0

    def write(self, result: UnitResult) -> None:
        """Record one unit's tiles in one transaction."""
        if not result.tiles:
            return
        now = utc_now_iso()
        rows = [
            (self.scan_id, t.z, t.x, t.y, t.status, t.error, t.capture_date, t.max_prob, t.grid_cells, t.grid, now)
            for t in result.tiles
        ]
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany(self.SQL, rows)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.tiles_written += len(rows)
        for t in result.tiles:
            if t.status == "done":
                self.km2_done += tile_area_km2(t.z, t.y)
                if t.max_prob is not None and t.max_prob >= self.threshold:
                    self.hits += 1
            elif t.status == "failed":
                self.failed += 1

    def postfix(self) -> str:
        """Progress bar suffix: km² done, tiles with detections, failures."""
        text = f"{self.km2_done:.2f} km², {self.hits} tiles with detections"
        return text + (f", {self.failed} failed" if self.failed else "")


def _progress(total: int, enabled: bool, writer: _TileWriter):
    if not enabled:
        return None
    import sys

    from tqdm import tqdm

    return tqdm(total=total, unit="tile", file=sys.stderr, dynamic_ncols=True, smoothing=0.1, desc="scan")


def get_scan(conn: sqlite3.Connection, scan_id: int | None = None) -> sqlite3.Row:
    """A scan row (the latest when ``scan_id`` is None); NotFoundError naming the id."""
    ensure_schema(conn)
    if scan_id is None:
        row = conn.execute("SELECT * FROM scans ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            raise NotFoundError("the project database holds no scans yet; run 'amberwatch scan' first")
        return row
    row = conn.execute("SELECT * FROM scans WHERE id = ?", (int(scan_id),)).fetchone()
    if row is None:
        raise NotFoundError(f"scan {scan_id} does not exist")
    return row

