"""Re-classify a finished scan with another model version from the tile cache only, into a new result layer.

The new layer is a ``scans`` row with ``parent_scan_id`` set, the same AOI, imagery and zoom, its own
``scan_tiles`` grids and detections. Tiles are classified by the scan's own unit worker
(``amberwatch.scan.worker.process_unit``) over a read-only cache source, so the imagery is never
fetched again and every tile sees exactly the input an ordinary scan would give it.

A layer scanned after triage (``scan --triage-zoom``) is rescanned after triage too. Triage depends on the triage
model, not on the accurate one: with the triage model that goes with the new version (``--triage-model`` for
another) the triage pass is the parent's when that model made it, else a finished triage pass of the same imagery
and model, else one made now from the cached coarse tiles (a triage pass like any, which later scans reuse); the
layer covers the fine tiles that pass keeps and those whose grids come free with them, as in the scan.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from amberwatch.errors import ConflictError, NotFoundError
from amberwatch.imagery.aoi import AOI, aoi_from_geojson
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.mosaic import open_cached_source
from amberwatch.imagery.types import ImageryRef, ground_resolution_m_per_px
from amberwatch.model.modelfile import load as load_model
from amberwatch.model.registry import ModelRegistry
from amberwatch.project import Project
from amberwatch.results.records import CORE_KEYS, Scan
from amberwatch.results.store import SCHEMA as RESULTS_SCHEMA
from amberwatch.results.store import (
    NewScan,
    TileRow,
    create_scan,
    detection_totals,
    find_scan,
    get_scan,
    scan_identity,
    scan_tiles_at,
    set_scan_status,
    update_scan_counts,
    write_tiles,
)
from amberwatch.scan.engine import (
    DEFAULT_MIN_AREA_HA,
    choose_precision,
    finish_scan,
    free_tile_counts,
    scan_context,
    scan_params,
)
from amberwatch.scan.tiling import DEFAULT_UNIT_ZOOM_DELTA, iter_units
from amberwatch.scan.triage import DEFAULT_CONTEXT, KeepRule, choose_fine_tiles, warm_fine_tiles
from amberwatch.scan.worker import (
    CoarseContext,
    ScanContext,
    fine_context_tiles,
    process_unit,
    release,
    remember_model,
    remember_source,
    with_free_tiles,
)


@dataclass
class RescanOutcome:
    """Summary of a rescan: the new layer and what it holds (and, after triage, which triage pass chose its tiles)."""

    scan_id: int
    parent_scan_id: int
    model_version: str
    tiles_rescanned: int
    tiles_missing_from_cache: int
    tiles_copied: int  # empty/failed tiles of the parent carried over as they were
    detections: int
    detections_area_ha: float
    seconds: float
    triage: str = ""  # after triage: the triage pass that chose the layer's tiles, in words


def _parent_scan(conn: sqlite3.Connection, scan_id: int) -> Scan:
    scan = get_scan(conn, scan_id)
    if scan.status != "finished":
        raise ConflictError(
            f"scan {scan_id} is {scan.status!r}, not finished: finish it (run the same scan command again) first"
        )
    if _triage_role(scan) == "triage":
        raise ConflictError(
            f"scan {scan_id} is the triage pass of a triaged scan (it only chooses tiles): rescan the layer scanned "
            "after it, which triages again with the new model's triage model"
        )
    return scan


def _triage_role(scan: Scan) -> str:
    """'triage' (a triage pass), 'after' (the layer scanned after one) or '' (a plain scan)."""
    return str((scan.params.triage or {}).get("role", ""))


def _cache_file(parent: Scan, cache_path, project: Project) -> Path:
    """The tile cache the parent scan filled (or the one given); NotFoundError if it is gone."""
    cache_file = Path(cache_path or parent.params.cache_path or project.tile_cache_path())
    if not cache_file.exists():
        raise NotFoundError(f"tile cache {str(cache_file)!r} of scan {parent.id} does not exist; a rescan needs it")
    return cache_file.resolve()


def rescan(
    db: Project | str | os.PathLike[str],
    scan_id: int,
    model_version: int | str,
    *,
    cache_path: str | os.PathLike[str] | None = None,
    min_area_ha: float | None = None,
    on_event: Callable[[str], None] | None = None,
    triage_model: str | os.PathLike[str] | None = None,
) -> RescanOutcome:
    """Re-classify finished scan SCAN with a registered model version into a new result layer (``db``: the
    command's open Project, or a project DB path opened for this rescan alone). A layer scanned after triage is
    triaged again with ``triage_model`` (default: the one that goes with the version) where that changes the pass."""
    say = on_event or (lambda _msg: None)
    started = time.perf_counter()
    with Project.using(db, create=False) as project:
        project.migrate(RESULTS_SCHEMA)
        conn = project.conn
        parent = _parent_scan(conn, scan_id)
        registry = project.store(ModelRegistry)
        info = registry.get(model_version)
        clf = registry.load(info.version)
        cache_file = _cache_file(parent, cache_path, project)
        layer = _plan_layer(conn, parent, clf, _model_path(info), cache_file, min_area_ha)
        triage = ""
        if _triage_role(parent) == "after":
            triage_file = triage_model or registry.triage_model(info.version).path
            layer, triage = _after_triage(conn, parent, layer, (clf, load_model(triage_file), str(triage_file)), say)
        new_id = create_scan(conn, layer.new_scan, layer.copied)
        say(
            f"scan {new_id}: rescan of scan {scan_id} with model v{info.version}, {len(layer.done):,} tiles "
            "from the cache"
        )
        rescanned, missing = _rescan_tiles(conn, new_id, layer, clf)
        finish_scan(conn, new_id, min_area_ha=layer.min_area_ha, cache_path=layer.context.cache_path, say=say)
        detections, hectares, _ = detection_totals(conn, new_id)
        return RescanOutcome(
            scan_id=new_id,
            parent_scan_id=int(scan_id),
            model_version=str(info.version),
            tiles_rescanned=rescanned,
            tiles_missing_from_cache=missing,
            tiles_copied=len(layer.copied),
            detections=detections,
            detections_area_ha=hectares,
            seconds=round(time.perf_counter() - started, 2),
            triage=triage,
        )


@dataclass
class _Layer:
    """A rescan layer made ready: its scans row, the parent's tiles to carry over and to classify again."""

    new_scan: NewScan
    copied: list[TileRow]  # empty/failed tiles of the parent, carried over as they were
    done: set[tuple[int, int]]  # (x, y) of the parent's done tiles: classified again from the cache
    aoi: AOI
    context: ScanContext
    unit_delta: int
    min_area_ha: float
    only: frozenset[tuple[int, int]] | None = None  # after triage: the kept tiles, the only ones units hold
    coarse: CoarseContext | None = None  # after a triage with a coarse context: the tiles read at the layer's zoom


def _model_path(info) -> str | None:
    """The file a registered version's workers load (None: the bundled model)."""
    return str(info.path) if info.version != 0 and info.path else None


def _plan_layer(
    conn: sqlite3.Connection, parent: Scan, clf, model_path: str | None, cache_file: Path, min_area_ha: float | None
) -> _Layer:
    """The new layer's scans row, worker context and tiles, from the parent scan and the model (``clf``, loaded from
    ``model_path``; None: the bundled one)."""
    scan_id, zoom, params = parent.id, parent.zoom, parent.params
    version = str(clf.version)
    aoi = aoi_from_geojson(json.loads(parent.aoi_geojson), name=parent.name or f"scan {scan_id}")
    tile_res = float(
        params.tile_resolution_m_per_px or ground_resolution_m_per_px(float(aoi.geometry.centroid.y), zoom)
    )
    source_id = parent.imagery_source_id
    # The parent's precision, if the new model has int8 and it passes its check on this CPU.
    int8, check = choose_precision(clf, params.int8 and clf.has_int8)
    context = scan_context(
        clf,
        imagery=ImageryRef(f"cache:{source_id}"),  # never opened: _rescan_tiles seeds the cache-only source
        cache_path=str(cache_file),
        model_path=model_path,
        model_version=version,
        zoom=zoom,
        tile_res_m_per_px=tile_res,
        int8=int8,
    )
    min_area = float(_first(min_area_ha, params.min_area_ha, DEFAULT_MIN_AREA_HA))
    unit_delta = int(_first(params.unit_zoom_delta, DEFAULT_UNIT_ZOOM_DELTA))
    framing = scan_params(context, clf, tile_res, min_area_ha=min_area, unit_zoom_delta=unit_delta, int8_check=check)
    # The parent's credit, warnings and any keys of other versions carry over; how tiles are framed does not.
    new_params = replace(params, **{k: getattr(framing, k) for k in CORE_KEYS}, rescan_of=scan_id)
    parent_tiles = scan_tiles_at(conn, scan_id, zoom)
    # Empty and failed tiles of the parent are carried over as they were (a failed one keeps its error).
    copied = [
        TileRow(zoom, t.x, t.y, t.status, t.error if t.status == "failed" else None, t.capture_date)
        for t in parent_tiles
        if t.status != "done"
    ]
    name = f"{parent.name or 'scan ' + str(scan_id)} (model v{version})"
    new_scan = NewScan(
        name,
        parent.aoi_geojson,
        parent.imagery,
        source_id,
        zoom,
        version,
        clf.threshold,
        new_params,
        parent.tiles_total,
        parent_scan_id=scan_id,
        imagery_date=parent.imagery_date,
    )
    done = {(t.x, t.y) for t in parent_tiles if t.status == "done"}
    return _Layer(new_scan, copied, done, aoi, context, unit_delta, min_area)


def _first(*values: float | None) -> float | None:
    """The first value that is not None (a stored 0 counts)."""
    return next((v for v in values if v is not None), None)


def _rescan_tiles(conn: sqlite3.Connection, new_id: int, layer: _Layer, clf) -> tuple[int, int]:
    """Classify the parent's done tiles from the cache only; a failure marks the layer failed."""
    context = layer.context
    cache = TileCache(context.cache_path)
    try:
        # A cache-only source under the context's key means process_unit can never reach the network.
        remember_source(context, cache, open_cached_source(cache, context.imagery.spec.removeprefix("cache:")))
        remember_model(context.model_path, context.model_version, clf, context.int8)
        return _classify_tiles(conn, new_id, layer, context)
    except BaseException:
        set_scan_status(conn, new_id, "failed")
        raise
    finally:
        release()  # closes the seeded source and the cache


def _classify_tiles(conn: sqlite3.Connection, new_id: int, layer: _Layer, context: ScanContext) -> tuple[int, int]:
    """Run the scan worker over the layer's tiles to classify, unit by unit (after triage, the kept tiles alone, in
    units framed as the full scan's, as in the scan); (tiles rescanned, tiles missing from cache)."""
    rescanned = missing = 0
    for unit in iter_units(layer.aoi.geometry, context.zoom, unit_zoom_delta=layer.unit_delta):
        todo = tuple(t for t in unit.tiles if t in layer.done and (layer.only is None or t in layer.only))
        if not todo:
            continue
        rows = []
        coarse = None if layer.coarse is None else layer.coarse.for_unit(unit, context.ring_tiles)
        for t in process_unit(unit, context, todo, coarse).tiles:
            if t.status == "empty":  # was 'done' in the parent: its imagery is gone from the cache
                t = replace(
                    t, status="failed", error=f"tile {t.z}/{t.x}/{t.y} is not in the tile cache {context.cache_path!r}"
                )
                missing += 1
            elif t.status == "done":
                rescanned += 1
            rows.append(t)
        write_tiles(conn, new_id, rows)
    return rescanned, missing


def _after_triage(
    conn: sqlite3.Connection, parent: Scan, layer: _Layer, models: tuple, say: Callable[[str], None]
) -> tuple[_Layer, str]:
    """The layer of a rescan of a triaged layer: the tiles kept by the triage pass of the triage model (``models``:
    the layer's model, the triage model and its file; the parent's pass, one reused, or one made from the cache), and
    those whose grids come free with them, as in the scan -> (the layer, which triage pass chose its tiles in words)."""
    clf, triage_clf, triage_file = models
    parent_triage = dict(parent.params.triage or {})
    triage_id, made = _triage_pass(conn, get_scan(conn, int(parent_triage["scan_id"])), triage_clf, triage_file, layer)
    context = str(parent_triage.get("context", DEFAULT_CONTEXT))
    if triage_id == int(parent_triage["scan_id"]):  # the same pass: the parent's tiles, as it scanned them
        kept = frozenset((t.x, t.y) for t in scan_tiles_at(conn, parent.id, parent.zoom))
        layer = replace(layer, only=kept, coarse=_coarse(conn, triage_id, context, kept, layer))
        return layer, f"triage pass {triage_id} of the parent (the same triage model)"
    total = int(parent_triage.get("tiles_aoi") or parent.tiles_total or 0)
    rule = KeepRule.from_params(parent_triage)
    chosen = choose_fine_tiles(conn, triage_id, layer.aoi, parent.zoom, rule, total, context)
    kept = with_free_tiles(layer.aoi.geometry, chosen.kept, layer.context, clf)
    copied = [t for t in layer.copied if (t.x, t.y) in kept]
    done = set(kept) - {(t.x, t.y) for t in copied}
    coarse = _coarse(conn, triage_id, context, kept, layer)
    if coarse is not None:  # read at the zoom only what the parent read there: the cache holds no other tile
        parent_kept = frozenset((t.x, t.y) for t in scan_tiles_at(conn, parent.id, parent.zoom))
        parent_fine = _coarse(conn, int(parent_triage["scan_id"]), context, parent_kept, layer).fine
        coarse = replace(coarse, fine=coarse.fine & parent_fine)
    triage = free_tile_counts(chosen.params, chosen.kept, kept, None if coarse is None else coarse.fine)
    params = replace(layer.new_scan.params, triage=triage)
    new_scan = replace(layer.new_scan, params=params, tiles_total=len(kept))
    how = "made now from the cached coarse tiles" if made else "reused"
    text = (
        f"triage pass {triage_id} ({how}, triage model {triage_clf.version}, threshold {chosen.threshold:.4f}): "
        f"{len(kept):,} of {total:,} tiles kept, {len(kept) - len(chosen.kept):,} of them free (the parent scanned "
        f"{len(layer.copied) + len(layer.done):,})"
    )
    say(text)
    return replace(layer, new_scan=new_scan, copied=copied, done=done, only=kept, coarse=coarse), text


def _coarse(
    conn: sqlite3.Connection, triage_id: int, context: str, kept: frozenset[tuple[int, int]], layer: _Layer
) -> CoarseContext | None:
    """A layer's coarse context as its scan's (``--triage-context coarse``) from triage pass ``triage_id`` and the
    layer's tiles ``kept`` (None: an exact context)."""
    if context != "coarse":
        return None
    zoom = layer.context.zoom
    fine = fine_context_tiles(kept, warm_fine_tiles(conn, triage_id, zoom), zoom, layer.context.ring_tiles)
    return CoarseContext(get_scan(conn, triage_id).zoom, fine)


def _triage_pass(conn: sqlite3.Connection, old: Scan, triage_clf, triage_file: str, fine: _Layer) -> tuple[int, bool]:
    """The finished triage pass of ``old``'s imagery, AOI and zoom with ``triage_clf``: ``old`` itself or another
    when one matches, else one made from the cached tiles of ``old`` -> (its id, whether it was made now)."""
    plan = _plan_layer(conn, old, triage_clf, triage_file, Path(fine.context.cache_path), old.params.min_area_ha)
    # A triage pass like any scan's (no parent): a later scan or rescan with the same triage model reuses it.
    new = replace(plan.new_scan, parent_scan_id=None, name=f"{old.name} (triage model {triage_clf.version})")
    found = find_scan(conn, scan_identity(new))
    if found is not None and get_scan(conn, found).status == "finished":
        return found, False
    scan_id = create_scan(conn, new, plan.copied)
    _rescan_tiles(conn, scan_id, plan, triage_clf)
    update_scan_counts(conn, scan_id)
    set_scan_status(conn, scan_id, "finished")  # a triage pass only chooses tiles: no detections of its own
    return scan_id, True
