"""The typed records results.store returns: ScanParams round-trips params_json; scans, layers and detections."""

from __future__ import annotations

import json

import numpy as np

from amberwatch.db import connect
from amberwatch.imagery.types import LngLatBbox
from amberwatch.results.detections import rebuild_detections
from amberwatch.results.records import Detection, Scan, ScanLayer, ScanParams
from amberwatch.results.store import (
    NewScan,
    TileRow,
    add_scan_warnings,
    create_scan,
    ensure_schema,
    get_detection,
    get_scan,
    query_detections,
    reopen_scan,
    scan_layers,
    write_tiles,
)

ZOOM, X0, Y0 = 18, 149000, 87000
# A params_json as scans stored it before the records (scan.engine.scan_params' dict, credit, then warnings).
STORED = {
    "tile_px": 256,
    "margin_px": 32,
    "cell_px": 16,
    "cells_per_tile": 16,
    "block_tiles": 4,
    "model_resolution_m_per_px": 0.6,
    "tile_resolution_m_per_px": 0.59,
    "model_path": None,
    "cache_path": "/data/p-tiles.sqlite",
    "min_area_ha": 0.05,
    "unit_zoom_delta": 3,
    "int8": True,
    "int8_check": {"passed": True, "max_abs_diff": 0.01},
    "imagery_credit": "Drone © NGO",
    "warnings": {"OutsideImageryWarning": 3},
}


def test_scan_params_read_and_write_the_stored_text_unchanged():
    text = json.dumps(STORED)
    params = ScanParams.from_json(text)
    assert params.int8 is True and params.unit_zoom_delta == 3 and params.cache_path == "/data/p-tiles.sqlite"
    assert params.warnings == {"OutsideImageryWarning": 3} and params.extra == {}
    assert params.to_json() == text and ScanParams.from_json(params.to_json()) == params


def test_scan_params_keep_unknown_keys_and_read_bad_values_as_unknown():
    params = ScanParams.from_json(json.dumps({"tile_px": "256", "int8": 1, "imagery_credit": 42, "future": [1]}))
    assert params.tile_px is None and params.int8 is True and params.imagery_credit is None
    assert params.extra == {"future": [1]} and json.loads(params.to_json())["future"] == [1]
    for text in ("not json", "[1]", None, ""):
        assert ScanParams.from_json(text) == ScanParams()


def _scan(conn, params: ScanParams) -> int:
    aoi = json.dumps({"type": "Polygon", "coordinates": [[[26.9, 51.3], [26.91, 51.3], [26.91, 51.31], [26.9, 51.3]]]})
    scan = NewScan("klesiv", aoi, "/data/tiles", "folder-1", ZOOM, "3", 0.5, params, 4, imagery_date="2018-06")
    scan_id = create_scan(conn, scan)
    grid = np.full((4, 4), 10, dtype=np.uint8)
    grid[1:3, 1:3] = 240
    write_tiles(conn, scan_id, [TileRow(ZOOM, X0, Y0, "done", max_prob=0.94, grid_cells=4, grid=grid.tobytes())])
    rebuild_detections(conn, scan_id, min_area_ha=0.0, thumbnails=False)
    return scan_id


def test_the_store_returns_scans_layers_and_detections_as_records(tmp_path):
    conn = connect(tmp_path / "p.db")
    ensure_schema(conn)
    scan_id = _scan(conn, ScanParams.from_json(json.dumps(STORED)))
    empty_id = create_scan(conn, NewScan("empty", "{}", "x", "folder-1", ZOOM, "3", 0.5, ScanParams(), 0))
    scan = get_scan(conn, scan_id)
    assert isinstance(scan, Scan) and scan.params == ScanParams.from_json(json.dumps(STORED))
    assert (scan.name, scan.zoom, scan.imagery_date, scan.status) == ("klesiv", ZOOM, "2018-06", "running")
    (det,) = query_detections(conn, scan_id=scan_id)
    assert isinstance(det, Detection) and det == get_detection(conn, det.id)
    assert det.scan_id == scan_id and det.imagery_source_id == "folder-1" and det.zoom == ZOOM
    assert isinstance(det.bbox, LngLatBbox) and det.thumbnail is None and not det.has_thumbnail
    layers = scan_layers(conn)
    assert [layer.scan.id for layer in layers] == [empty_id, scan_id] and all(isinstance(x, ScanLayer) for x in layers)
    assert (layers[0].detections, layers[0].hectares, layers[0].detections_bbox) == (0, 0.0, None)
    assert layers[1].detections == 1 and layers[1].hectares == det.area_ha and layers[1].detections_bbox == det.bbox


def test_warnings_add_up_and_a_resume_keeps_keys_it_does_not_know(tmp_path):
    conn = connect(tmp_path / "p.db")
    ensure_schema(conn)
    scan_id = _scan(conn, ScanParams.from_json(json.dumps({**STORED, "future": "kept"})))
    add_scan_warnings(conn, scan_id, {"OutsideImageryWarning": 2, "CorruptTileWarning": 1})
    params = get_scan(conn, scan_id).params
    assert params.warnings == {"OutsideImageryWarning": 5, "CorruptTileWarning": 1}
    reopen_scan(conn, scan_id, params, 4)
    assert get_scan(conn, scan_id).params.extra == {"future": "kept"}
