"""Run a scan: plan it, stream units to workers with backpressure, record tiles with one writer, build detections.

A scan is identified by its ScanIdentity (AOI, imagery source at its date or release, zoom, model version,
precision): running the same command again resumes the latest such scan, skipping tiles already 'done' or
'empty' and retrying 'failed' ones. Workers only return results; the main process is the single writer of the
project DB, and every tile row is written idempotently (a finished tile is never overwritten).
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import os
import sqlite3
import time
import warnings
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from shapely.geometry import box

from amberwatch.errors import (
    AOIError,
    ImageryError,
    Int8CheckWarning,
    InvalidInputError,
    OfflineError,
    OutsideImageryWarning,
    ResolutionError,
)
from amberwatch.imagery.aoi import AOI, area_km2
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.open import open_ref
from amberwatch.imagery.types import TILE_SIZE_PX, ImageryRef, LngLatBbox, ground_resolution_m_per_px
from amberwatch.model.int8_check import Int8Check
from amberwatch.model.modelfile import BUNDLED_TRIAGE_PATH, Model
from amberwatch.model.modelfile import load as load_model
from amberwatch.model.processes import pool_context
from amberwatch.model.registry import ModelRegistry, names_a_version
from amberwatch.project import Project
from amberwatch.results.detections import rebuild_detections
from amberwatch.results.records import ScanParams
from amberwatch.results.store import SCHEMA as RESULTS_SCHEMA
from amberwatch.results.store import (
    NewScan,
    add_scan_warnings,
    count_finished_tiles,
    create_scan,
    detection_totals,
    find_scan,
    finished_tiles_in,
    get_scan,
    reopen_scan,
    scan_identity,
    set_scan_status,
    update_scan_counts,
    write_tiles,
)
from amberwatch.scan.dask_runner import run_units_dask
from amberwatch.scan.lock import scan_lock
from amberwatch.scan.tiling import DEFAULT_UNIT_ZOOM_DELTA, Unit, count_tiles, iter_units
from amberwatch.scan.worker import (
    CoarseContext,
    ScanContext,
    UnitResult,
    fine_context_tiles,
    init_worker,
    process_unit,
    release,
    remember_model,
    with_free_tiles,
)

DEFAULT_MAX_TILES = 500_000
COUNT_LIMIT_FACTOR = 100  # plans stop counting tiles past this many times the limit
CONFIRM_ABOVE_TILES = 50_000  # larger scans (~35 min over the network) start only with --yes
OFFLINE_AFTER_READS = 16  # stop when this many first tile reads all failed to resolve or connect
MAX_RESOLUTION_M_PER_PX = 1.2  # coarser imagery cannot show pits the model was trained on
ESTIMATED_TILES_PER_S_NETWORK = 25.0
ESTIMATED_TILES_PER_S_CACHED = 100.0  # bench/scan.py, warm, 2 cores, the default pretrained model (int8)
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
    tiles_at_least: bool = False  # the count stopped early: the AOI has more tiles than ``tiles``

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
    warnings: dict[str, int] = field(default_factory=dict)  # typed warning class name -> tile reads this run


def plan_scan(aoi: AOI, zoom: int, *, max_tiles: int = DEFAULT_MAX_TILES, refuse: bool = True) -> ScanPlan:
    """Count the tiles of an AOI at a zoom (without listing them) and refuse AOIs above ``max_tiles``.

    The count stops past COUNT_LIMIT_FACTOR x max_tiles (``tiles_at_least`` is then set), so a world-sized
    AOI is planned in milliseconds; with ``refuse=False`` (--dry-run) nothing is refused for its size.
    """
    if not 0 <= int(zoom) <= 24:
        raise AOIError(f"zoom {zoom} is outside 0..24")
    stop = max_tiles * COUNT_LIMIT_FACTOR
    n = count_tiles(aoi.geometry, zoom, stop_after=stop)
    if n > max_tiles and refuse:
        raise AOIError(
            f"AOI {aoi.name!r} covers {'more than ' if n > stop else ''}{min(n, stop):,} tiles at zoom {zoom}, "
            f"above the limit of {max_tiles:,}; split it or raise --max-tiles"
        )
    if n == 0:
        raise AOIError(f"AOI {aoi.name!r} covers no tiles at zoom {zoom}")
    lat = float(aoi.geometry.centroid.y)
    return ScanPlan(
        zoom=zoom,
        tiles=min(n, stop),
        area_km2=area_km2(aoi.geometry),
        center_lat_deg=lat,
        tile_resolution_m_per_px=ground_resolution_m_per_px(lat, zoom),
        tiles_at_least=n > stop,
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


def _bbox_text(bounds: tuple[float, float, float, float]) -> str:
    return ",".join(f"{v:.5f}".rstrip("0").rstrip(".") for v in bounds)


def check_coverage(aoi: AOI, bounds: LngLatBbox | None, imagery: str) -> None:
    """AOIError when an AOI lies wholly outside a local source's bounds, OutsideImageryWarning when partly: its
    tiles there would all read as 'no imagery' and the scan would end with 0 detections, saying nothing."""
    if bounds is None or bounds.west_deg >= bounds.east_deg:  # unknown, or across the antimeridian: not checked
        return
    covered = box(*bounds.as_tuple())
    inside = aoi.geometry.intersection(covered).area
    where = f"AOI {aoi.name!r} (W,S,E,N {_bbox_text(aoi.bounds_deg)})"
    theirs = f"imagery {imagery!r} (W,S,E,N {_bbox_text(bounds.as_tuple())})"
    if inside <= 0:
        w, s, e, n = aoi.bounds_deg
        swapped = box(s, w, n, e).intersection(covered).area > 0
        hint = "; are latitude and longitude swapped? (a bbox is W,S,E,N: longitudes first)" if swapped else ""
        raise AOIError(f"{where} lies wholly outside {theirs}: nothing to scan there{hint}")
    outside = 1.0 - inside / aoi.geometry.area
    if outside > 1e-6:
        warnings.warn(
            OutsideImageryWarning(f"{outside:.0%} of {where} lies outside {theirs}: no detections can come from it"),
            stacklevel=2,
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
    imagery_date: str | None = None  # the imagery's date or release (YYYY[-MM[-DD]] or a name); None = undated
    name: str | None = None  # None = the AOI file's stem
    imagery_credit: str | None = None  # credit line for the public map (presets credit themselves)
    dask: str | None = None  # Dask scheduler address or 'local' (LocalCluster of `workers`); None = local pool
    worker_cache: str | None = None  # tile cache path as seen by Dask workers (see scan.dask_runner)
    int8: bool | None = None  # the model's int8 backbone for score maps (2x faster); None: when the model has one
    triage: dict | None = None  # ScanParams.triage of a triage pass or of the fine pass after one (scan.triage)
    only_tiles: frozenset[tuple[int, int]] | None = None  # the fine pass after triage: these AOI tiles alone
    free_tiles: bool = False  # with only_tiles: and the AOI tiles whose grids come free with theirs (worker.free_tiles)
    coarse_context: CoarseWarmth | None = None  # with only_tiles: context away from warm tiles from the coarse zoom


@dataclass(frozen=True)
class CoarseWarmth:
    """A fine pass's coarse context (``--triage-context coarse``): the triage zoom, and the fine tiles its grids show
    warm (a cell over them above zero, or a failed coarse tile). The pass reads at its own zoom its scanned tiles and
    the ring of the warm ones (``worker.fine_context_tiles``), every other tile from the coarse zoom, upsampled."""

    zoom: int
    warm: frozenset[tuple[int, int]]


@dataclass(frozen=True)
class ResolvedModel:
    """The model a scan runs: the loaded classifier, its file (None: the bundled model) and its version."""

    clf: Model
    path: str | None
    version: str


def _names_a_file(model_path: str | None) -> bool:
    """Whether a --model value is a model file rather than a registered version (None: the current version)."""
    return bool(model_path) and (Path(model_path).exists() or not names_a_version(model_path))


def resolve_model(db: Project | str | os.PathLike[str], model_path: str | None) -> ResolvedModel:
    """The model of a model file, a registered version ('3') or the project's current model."""
    if _names_a_file(model_path):
        clf = load_model(model_path)
        return ResolvedModel(clf, str(Path(model_path).resolve()), clf.version)
    with Project.using(db) as project:
        registry = project.store(ModelRegistry)
        info = registry.get(model_path or registry.current_version())
        clf = registry.load(info.version)
    return ResolvedModel(clf, str(info.path) if info.path else None, str(info.version))


def resolve_triage_model(db: Project | str | os.PathLike[str], model_path: str | None) -> str:
    """The triage model file that goes with a scan's model (a file, a registered version or the current one): the
    version's own (from ``retrain``, its sha256 checked), else the bundled triage model."""
    if _names_a_file(model_path):
        return str(BUNDLED_TRIAGE_PATH)
    with Project.using(db) as project:
        registry = project.store(ModelRegistry)
        return str(registry.triage_model(model_path or registry.current_version()).path)


def scan_context(
    clf,
    *,
    imagery: ImageryRef,
    cache_path: str,
    model_path: str | None,
    model_version: str,
    zoom: int,
    tile_res_m_per_px: float,
    int8: bool = False,
) -> ScanContext:
    """What workers need to classify tiles of this imagery at this zoom with this model (tile size, margin)."""
    return ScanContext(
        imagery=imagery,
        cache_path=cache_path,
        model_path=model_path,
        model_version=model_version,
        zoom=zoom,
        tile_px=model_tile_px(tile_res_m_per_px, clf.resolution_m_per_px, clf.cell_px),
        margin_px=int(math.ceil(clf.context_px / clf.cell_px) * clf.cell_px),
        cell_px=clf.cell_px,
        # Blocks of at most 8 x 8 tiles never straddle units (8 x 8 or 16 x 16 tiles): each unit reads its own.
        block_tiles=min(clf.block_tiles, 1 << DEFAULT_UNIT_ZOOM_DELTA),
        int8=int8,
        model_sha256=getattr(clf, "file_sha256", None),  # None: a model built in memory, not read from a file
    )


def scan_params(
    context: ScanContext,
    clf,
    tile_res_m_per_px: float,
    *,
    min_area_ha: float,
    unit_zoom_delta: int,
    int8_check: Int8Check | None,
) -> ScanParams:
    """The params of a scan: how its tiles were framed and classified (the int8 check's figures included),
    and where its cache is."""
    return ScanParams(
        tile_px=context.tile_px,
        margin_px=context.margin_px,
        cell_px=context.cell_px,
        cells_per_tile=context.cells_per_tile,
        block_tiles=context.block_tiles,
        model_resolution_m_per_px=clf.resolution_m_per_px,
        tile_resolution_m_per_px=tile_res_m_per_px,
        model_path=context.model_path,
        cache_path=context.cache_path,
        min_area_ha=min_area_ha,
        unit_zoom_delta=unit_zoom_delta,
        int8=context.int8,
        int8_check=int8_check.to_dict() if int8_check is not None else None,
    )


def finish_scan(
    conn: sqlite3.Connection, scan_id: int, *, min_area_ha: float, cache_path: str | None, say: Callable[[str], None]
) -> dict:
    """Build a scan's detections from its tiles, update its counters and mark it finished -> the counters."""
    say(f"scan {scan_id}: building detections")
    rebuild_detections(conn, scan_id, min_area_ha=min_area_ha, cache_path=cache_path)
    stats = update_scan_counts(conn, scan_id)
    set_scan_status(conn, scan_id, "finished")
    return stats


def run_scan(
    aoi: AOI,
    imagery: str,
    zoom: int,
    db: Project | str | os.PathLike[str],
    settings: ScanSettings | None = None,
    *,
    on_event: Callable[[str], None] | None = None,
    on_warnings: Callable[[dict[str, int]], None] | None = None,
) -> ScanOutcome:
    """Scan an AOI over imagery at a zoom into the project (resuming a matching scan), then build detections.

    ``db`` is the command's open Project, or a project DB path opened for this scan alone.

    One process at a time runs a given scan (AOI, imagery, zoom, model): another gets ScanRunningError.
    When the first tile reads all fail to resolve or connect, the scan stops early with OfflineError
    and stays resumable.
    """
    settings = settings or ScanSettings()
    say = on_event or (lambda _msg: None)
    started = time.perf_counter()
    if not settings.dask and _workers(settings) > 1:
        start_worker_server()
    with Project.using(db) as project:
        job = _prepare(aoi, imagery, zoom, project, settings)
        new = job.new_scan
        if job.int8_check is not None:
            say(job.int8_check.summary())
        dated = f" ({new.imagery_date})" if new.imagery_date else ""
        what = f"a scan of AOI {aoi.name!r} over {new.imagery}{dated} at zoom {zoom} with model {new.model_version}"
        with scan_lock(project.path, scan_identity(new), what):
            project.migrate(RESULTS_SCHEMA)
            outcome = _run_locked(project.conn, aoi, imagery, job, settings, say, on_warnings, started)
    check_date_had_imagery(outcome, new.imagery_date, aoi)
    return outcome


def check_date_had_imagery(outcome: ScanOutcome, imagery_date: str | None, aoi: AOI) -> None:
    """ImageryError when a dated scan found no imagery on any tile: the source has nothing at that date there.

    The scan is kept (finished, nothing found): the timeline shows that date as 'no imagery' at every site.
    """
    if imagery_date is None or outcome.tiles_failed or outcome.tiles_done or not outcome.tiles_empty:
        return
    raise ImageryError(
        f"imagery date {imagery_date!r}: the source served no imagery on any of the {outcome.tiles_empty} tiles"
        f" of AOI {aoi.name!r} (scan {outcome.scan_id} is kept, empty); check the date or release"
    )


def _run_locked(
    conn: sqlite3.Connection,
    aoi: AOI,
    imagery: str,
    job: _Job,
    settings: ScanSettings,
    say: Callable[[str], None],
    on_warnings: Callable[[dict[str, int]], None] | None,
    started: float,
) -> ScanOutcome:
    """The body of run_scan, under the scan's lock: create or resume, run the units, finish."""
    scan_id, resumed, complete, unit_delta = _open_scan(conn, job, settings, say)
    if complete:
        stats = update_scan_counts(conn, scan_id)
        return _outcome(conn, scan_id, True, 0, stats, started, {"fetch_s": 0.0, "predict_s": 0.0, "units": 0})
    if job.workers <= 1:
        remember_model(job.context.model_path, job.context.model_version, job.clf, job.context.int8)
    todo_total = max(0, job.new_scan.tiles_total - count_finished_tiles(conn, scan_id))
    units = _pending_units(conn, scan_id, aoi, job.new_scan.zoom, unit_delta, job.only_tiles)
    if job.coarse is not None:
        units = _with_coarse_context(units, job.coarse, job.context.ring_tiles)
    results = _unit_results(units, job, settings, todo_total, say)
    writer = _TileWriter(conn, scan_id, job.clf.threshold)
    watch = _OfflineWatch(scan_id, imagery)
    try:
        counters = _record(conn, scan_id, results, writer, _progress(todo_total, settings.progress), on_warnings, watch)
    finally:
        results.close()  # an early stop ends the pool and closes the sources here, in this thread
        add_scan_warnings(conn, scan_id, writer.warnings)  # 'scan report' shows them, summed over runs
    if (settings.triage or {}).get("role") == "triage":  # a triage pass only chooses tiles: no detections of its own
        stats = update_scan_counts(conn, scan_id)
        set_scan_status(conn, scan_id, "finished")
    else:
        stats = finish_scan(conn, scan_id, min_area_ha=settings.min_area_ha, cache_path=job.context.cache_path, say=say)
    return _outcome(conn, scan_id, resumed, writer.tiles_written, stats, started, counters, writer.warnings)


@dataclass
class _Job:
    """A scan made ready: the model, the workers' context, the scans row to create or resume, the pool size."""

    clf: Model
    context: ScanContext
    new_scan: NewScan
    workers: int
    int8_check: Int8Check | None = None
    only_tiles: frozenset[tuple[int, int]] | None = None  # the tiles to scan (ScanSettings.only_tiles, widened)
    coarse: CoarseContext | None = None  # with ScanSettings.coarse_context: the tiles read at the scan's zoom


def _prepare(aoi: AOI, imagery: str, zoom: int, project: Project, settings: ScanSettings) -> _Job:
    """Plan the AOI, resolve the model, probe the imagery and fix how tiles are framed (nothing written yet)."""
    if settings.unit_zoom_delta is not None and settings.unit_zoom_delta < DEFAULT_UNIT_ZOOM_DELTA:
        raise InvalidInputError(  # a unit must hold whole blocks of tiles, or its tiles' scores depend on it
            f"unit_zoom_delta {settings.unit_zoom_delta} is too small: units need at least "
            f"{1 << DEFAULT_UNIT_ZOOM_DELTA} x {1 << DEFAULT_UNIT_ZOOM_DELTA} tiles (unit_zoom_delta >= "
            f"{DEFAULT_UNIT_ZOOM_DELTA})"
        )
    ref = ImageryRef(imagery, tuple(settings.source_options.items()), settings.imagery_date)  # checks the date
    plan = plan_scan(aoi, zoom, max_tiles=settings.max_tiles)
    model = resolve_model(project, settings.model_path)
    clf = model.clf
    int8, check = choose_precision(clf, settings.int8)
    cache_path = str(Path(settings.cache_path or project.tile_cache_path()).resolve())
    source_id, source_spec, imagery_date = _probe_source(ref, cache_path, plan, clf, aoi)
    tile_res = plan.tile_resolution_m_per_px
    context = scan_context(
        clf,
        imagery=ref,
        cache_path=cache_path,
        model_path=model.path,
        model_version=model.version,
        zoom=zoom,
        tile_res_m_per_px=tile_res,
        int8=int8,
    )
    workers = _workers(settings)
    delta = settings.unit_zoom_delta or choose_unit_zoom_delta(plan.tiles, workers)
    params = scan_params(
        context, clf, tile_res, min_area_ha=settings.min_area_ha, unit_zoom_delta=delta, int8_check=check
    )
    if settings.imagery_credit:  # shown on the public map instead of the imagery spec
        params = replace(params, imagery_credit=settings.imagery_credit)
    only = settings.only_tiles
    if only is not None and settings.free_tiles:
        only = with_free_tiles(aoi.geometry, only, context, clf)
    coarse = None
    if only is not None and settings.coarse_context is not None:
        fine = fine_context_tiles(only, settings.coarse_context.warm, zoom, context.ring_tiles)
        coarse = CoarseContext(settings.coarse_context.zoom, fine)
    if settings.triage is not None:
        fine_reads = None if coarse is None else coarse.fine
        params = replace(params, triage=free_tile_counts(settings.triage, settings.only_tiles, only, fine_reads))
    tiles_total = plan.tiles if only is None else len(only)
    new_scan = NewScan(
        settings.name or default_scan_name(aoi),
        aoi.to_geojson(),
        source_spec,
        source_id,
        zoom,
        model.version,
        clf.threshold,
        params,
        tiles_total,
        imagery_date=imagery_date,
    )
    return _Job(clf, context, new_scan, workers, check, only, coarse)


def free_tile_counts(
    triage: dict, chosen: frozenset | None, only: frozenset | None, fine_reads: frozenset | None = None
) -> dict:
    """A fine pass's ScanParams.triage with its kept and skipped counts including the free tiles (``only`` less
    ``chosen``), and their count; with a coarse context, the count of tiles it reads at its zoom (``fine_reads``)."""
    if chosen is None or only is None or "tiles_aoi" not in triage:
        return triage
    free, kept = len(only) - len(chosen), len(only)
    counts = {"tiles_kept": kept, "tiles_free": free, "tiles_skipped": int(triage["tiles_aoi"]) - kept}
    if fine_reads is not None:
        counts["tiles_read_fine"] = len(fine_reads)
    return {**triage, **counts}


def choose_precision(clf, asked: bool | None) -> tuple[bool, Int8Check | None]:
    """(int8?, the int8 check) for a scan: int8 when asked (default: when the model has it) and its check against
    fp32 passes on this CPU, else fp32 with an Int8CheckWarning. Asking a model without int8 is a ModelError."""
    if not (clf.has_int8 if asked is None else asked):
        return False, None
    clf.set_int8(True)  # refuses models without int8 calibration before any work starts
    check = clf.check_int8()
    if not check.passed:
        clf.set_int8(False)
        warnings.warn(f"{check.summary()}: scanning with fp32", Int8CheckWarning, stacklevel=2)
    return check.passed, check


def _workers(settings: ScanSettings) -> int:
    """Local worker processes of a scan: as asked, else one per CPU core."""
    return max(1, int(settings.workers or os.cpu_count() or 1))


def default_scan_name(aoi: AOI) -> str:
    """The AOI's name, shortened to the file stem when it is a path (public pages show scan names)."""
    name = aoi.name or "area"
    return Path(name).stem if name.lower().endswith((".geojson", ".json")) else name


def _unit_results(
    units: Iterator[tuple[Unit, tuple]], job: _Job, settings: ScanSettings, todo_total: int, say: Callable[[str], None]
) -> Generator[UnitResult, None, None]:
    """Results of the units as they finish: on a Dask cluster, or a local process pool (or this process)."""
    if settings.dask:
        return run_units_dask(
            units,
            job.context,
            job.clf,
            address=settings.dask,
            workers=settings.workers,
            worker_cache=settings.worker_cache,
            max_in_flight=settings.max_in_flight,
            total_tiles=todo_total,
            say=say,
        )
    return _run_units(units, job.context, job.workers, settings.max_in_flight)


def _probe_source(ref: ImageryRef, cache_path: str, plan: ScanPlan, clf, aoi: AOI) -> tuple[str, str, str | None]:
    """Open the imagery once to check its resolution and coverage -> (source id, spec as stored, imagery date or
    release); errors name it."""
    cache = TileCache(cache_path)
    try:
        source = open_ref(ref, cache=cache)
        try:
            check_resolution(plan, source.native_resolution_m_per_px, source.spec, clf.resolution_m_per_px)
            check_coverage(aoi, source.bounds, source.spec)
            return source.source_id, source.spec, source.imagery_date
        finally:
            source.close()
    finally:
        cache.close()


def _open_scan(
    conn: sqlite3.Connection, job: _Job, settings: ScanSettings, say: Callable[[str], None]
) -> tuple[int, bool, bool, int]:
    """Create the scan or resume the matching one -> (scan id, resumed, already complete, unit zoom delta)."""
    new = job.new_scan
    scan_id = None if settings.new else find_scan(conn, scan_identity(new))
    if scan_id is None:
        scan_id = create_scan(conn, new)
        say(f"scan {scan_id}: new, {new.tiles_total:,} tiles at zoom {new.zoom}")
        return scan_id, False, False, int(new.params.unit_zoom_delta)
    # A resumed scan keeps its unit layout (its tiles' grids do not depend on it: see scan.worker.process_unit).
    prev = get_scan(conn, scan_id)
    stored = prev.params
    if (
        prev.status == "finished"
        and count_finished_tiles(conn, scan_id) >= new.tiles_total
        and stored.min_area_ha == settings.min_area_ha
    ):
        # Nothing to do: keep the detections (and their ids, which reviews may refer to) as they are.
        say(f"scan {scan_id}: already complete")
        return scan_id, True, True, 0
    delta = int(stored.unit_zoom_delta or new.params.unit_zoom_delta)
    reopen_scan(
        conn, scan_id, replace(stored, unit_zoom_delta=delta, min_area_ha=settings.min_area_ha), new.tiles_total
    )
    say(f"scan {scan_id}: resuming")
    return scan_id, True, False, delta


def _record(
    conn: sqlite3.Connection,
    scan_id: int,
    results: Iterator[UnitResult],
    writer: _TileWriter,
    bar,
    on_warnings: Callable[[dict[str, int]], None] | None,
    watch: _OfflineWatch | None = None,
) -> dict[str, float]:
    """Write every unit result as it comes, keep live counters, report warnings -> timing counters.

    Raises OfflineError (after recording the unit and the counters) when ``watch`` sees no network.
    """
    counters = {"fetch_s": 0.0, "predict_s": 0.0, "worker_cpu_s": 0.0, "units": 0}
    main_cpu_started = time.process_time()
    last_counts = time.monotonic()
    try:
        for result in results:
            writer.write(result)
            if watch is not None and watch.offline(result):
                update_scan_counts(conn, scan_id)
                raise watch.error()
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
    finally:
        if bar is not None:
            bar.close()
    counters["main_cpu_s"] = time.process_time() - main_cpu_started
    return counters


def _outcome(conn, scan_id, resumed, processed, stats, started, counters, warned=None) -> ScanOutcome:
    detections, hectares, _ = detection_totals(conn, scan_id)
    return ScanOutcome(
        scan_id=scan_id,
        resumed=resumed,
        tiles_total=int(stats["tiles_total"] or 0),
        tiles_processed_now=processed,
        tiles_done=stats["tiles_done"],
        tiles_empty=stats["tiles_empty"],
        tiles_failed=stats["tiles_failed"],
        area_scanned_km2=stats["area_scanned_km2"],
        detections=detections,
        detections_area_ha=hectares,
        seconds=time.perf_counter() - started,
        counters=counters,
        warnings=dict(warned or {}),
    )


def _pending_units(
    conn: sqlite3.Connection,
    scan_id: int,
    aoi: AOI,
    zoom: int,
    delta: int,
    only: frozenset[tuple[int, int]] | None = None,
) -> Iterator[tuple[Unit, tuple]]:
    """Stream (unit, tiles still to do) skipping finished tiles, one indexed query per unit; with ``only`` (the fine
    pass after triage) only those tiles are to do, in units (and so blocks) framed as the full scan's."""
    for unit in iter_units(aoi.geometry, zoom, unit_zoom_delta=delta):
        wanted = unit.tiles if only is None else tuple(t for t in unit.tiles if t in only)
        if not wanted:
            continue
        xs = [x for x, _ in wanted]
        ys = [y for _, y in wanted]
        finished = finished_tiles_in(conn, scan_id, zoom, (min(xs), max(xs)), (min(ys), max(ys)))
        todo = tuple(t for t in wanted if t not in finished)
        if todo:
            yield unit, todo


def _with_coarse_context(
    units: Iterator[tuple[Unit, tuple]], coarse: CoarseContext, ring: int
) -> Iterator[tuple[Unit, tuple, CoarseContext]]:
    """The units with their share of the scan's ``CoarseContext`` (a fine pass with ``--triage-context coarse``)."""
    for unit, todo in units:
        yield unit, todo, coarse.for_unit(unit, ring)


def start_worker_server() -> None:
    """Start the forkserver of local scan workers now, importing the worker's modules (torch, ONNX Runtime, the
    model code) while this process prepares the scan: its workers then fork with them loaded, instead of each
    importing them for ~2.5 s when the first unit is ready. Does nothing without a forkserver or once it runs."""
    pool_context(["amberwatch.scan.worker"])


def _run_units(
    units: Iterator[tuple[Unit, tuple]],
    context: ScanContext,
    workers: int,
    max_in_flight: int | None,
) -> Iterator[UnitResult]:
    """Process units in this process (1 worker) or a spawn/forkserver process pool, with bounded in-flight work."""
    if workers <= 1:
        try:
            for unit, *work in units:
                yield process_unit(unit, context, *work)
        finally:
            release()
        return
    limit = max(1, max_in_flight or 2 * workers)
    pool = cf.ProcessPoolExecutor(
        max_workers=workers, mp_context=pool_context(), initializer=init_worker, initargs=(1, os.getpid())
    )
    pending: set[cf.Future] = set()
    try:
        for unit, *work in units:  # work: the tiles to do, and the unit's CoarseContext if any
            while len(pending) >= limit:
                done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
            pending.add(pool.submit(process_unit, unit, context, *work))
        while pending:
            done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                yield fut.result()
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


class _OfflineWatch:
    """Sees a scan whose first OFFLINE_AFTER_READS tile reads all failed to resolve or connect (no network)."""

    def __init__(self, scan_id: int, imagery: str, after: int = OFFLINE_AFTER_READS) -> None:
        self.scan_id = scan_id
        self.imagery = imagery
        self.after = after
        self.unreachable = 0
        self.first_error: str | None = None
        self.watching = True

    def offline(self, result: UnitResult) -> bool:
        """True once enough reads failed to connect and none gave anything else; stops watching otherwise."""
        if not self.watching:
            return False
        if result.reads_ok or result.reads_failed:
            self.watching = False  # the server answered at least once: failures are the server's, not ours
            return False
        self.unreachable += result.reads_unreachable
        if self.first_error is None:
            self.first_error = next((t.error for t in result.tiles if t.error), None)
        return self.unreachable >= self.after

    def error(self) -> OfflineError:
        """The error that stops the scan: what happened, that the scan is kept, and how to scan offline."""
        return OfflineError(
            f"no tile of imagery {self.imagery!r} could be read: the first {self.unreachable} tile requests all "
            f"failed to resolve or connect (first error: {self.first_error}). This machine looks offline, or the "
            f"server is down. Stopped early; scan {self.scan_id} is kept: run the same command again to resume "
            "it once the server is reachable. Without internet, scan local imagery instead: --imagery FILE.tif "
            "(GeoTIFF/COG), a {z}/{x}/{y} tile folder, an .mbtiles file, or tiles made from a plain image with "
            "'amberwatch imagery from-image'."
        )


class _TileWriter:
    """The single writer of scan_tiles: one transaction per unit result, idempotent per tile."""

    def __init__(self, conn: sqlite3.Connection, scan_id: int, threshold: float) -> None:
        self.conn = conn
        self.scan_id = scan_id
        self.threshold = threshold
        self.tiles_written = 0
        self.km2_done = 0.0
        self.hits = 0
        self.failed = 0
        self.warnings: dict[str, int] = {}

    def write(self, result: UnitResult) -> None:
        """Record one unit's tiles in one transaction, and count its typed warnings."""
        self.tiles_written += write_tiles(self.conn, self.scan_id, result.tiles)
        for name, count in result.warnings.items():
            self.warnings[name] = self.warnings.get(name, 0) + count
        for t in result.tiles:
            if t.status == "done":
                self.km2_done += t.scanned_km2()
                if t.max_prob is not None and t.max_prob >= self.threshold:
                    self.hits += 1
            elif t.status == "failed":
                self.failed += 1

    def postfix(self) -> str:
        """Progress bar suffix: km² done, tiles with detections, failures."""
        text = f"{self.km2_done:.2f} km², {self.hits} tiles with detections"
        return text + (f", {self.failed} failed" if self.failed else "")


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    import sys

    from tqdm import tqdm

    return tqdm(total=total, unit="tile", file=sys.stderr, dynamic_ncols=True, smoothing=0.1, desc="scan")
