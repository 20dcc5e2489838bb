"""Rescan a finished scan from the tile cache with another model version (no HTTP), then diff the layers."""

from __future__ import annotations

import json

import mercantile
import numpy as np
import pytest
from click.testing import CliRunner

from amberwatch.cli import main
from amberwatch.db import connect
from amberwatch.errors import ConflictError, NotFoundError
from amberwatch.imagery.aoi import aoi_from_bbox
from amberwatch.imagery.decode import encode_png
from amberwatch.model.registry import ModelRegistry
from amberwatch.scan.engine import ScanSettings, run_scan
from amberwatch.scan.rescan import rescan

from .conftest import make_classifier

LON, LAT, ZOOM = 26.0003, 51.0003, 18


@pytest.fixture
def scanned(tile_server, db_path, rng):
    """A finished scan (model v1, random weights) of a one-tile AOI served over HTTP; v2 'never mining', v3 'always'."""
    centre = mercantile.tile(LON, LAT, ZOOM)
    for dx in (-2, -1, 0, 1, 2):
        for dy in (-2, -1, 0, 1, 2):
            img = np.clip(rng.normal((70, 100, 45), 25, (256, 256, 3)), 0, 255).astype(np.uint8)
            tile_server.tiles[(ZOOM, centre.x + dx, centre.y + dy)] = encode_png(img)
    with ModelRegistry.open(db_path) as reg:
        reg.register(make_classifier(seed=5))
        reg.register(make_classifier(bias=-10.0))
        reg.register(make_classifier(bias=10.0))
        reg.promote(1)
    b = mercantile.bounds(centre)
    aoi = aoi_from_bbox(f"{b.west + 1e-5},{b.south + 1e-5},{b.east - 1e-5},{b.north - 1e-5}")
    out = run_scan(aoi, tile_server.url, ZOOM, db_path, ScanSettings(workers=1, progress=False))
    assert out.tiles_done == 1
    return out.scan_id


def _tiles(conn, scan_id):
    return {
        (r["x"], r["y"]): (r["status"], r["grid_cells"], bytes(r["grid"]) if r["grid"] else None)
        for r in conn.execute("SELECT * FROM scan_tiles WHERE scan_id = ?", (scan_id,))
    }


def test_rescan_reads_only_the_cache_and_reproduces_the_same_model(scanned, tile_server, db_path):
    requests_before = len(tile_server.requests)
    assert requests_before > 0

    same = rescan(db_path, scanned, 1)
    never = rescan(db_path, scanned, "v2")
    assert len(tile_server.requests) == requests_before  # not one HTTP request

    conn = connect(db_path)
    parent = conn.execute("SELECT * FROM scans WHERE id = ?", (scanned,)).fetchone()
    for out, version in ((same, "1"), (never, "2")):
        row = conn.execute("SELECT * FROM scans WHERE id = ?", (out.scan_id,)).fetchone()
        assert row["parent_scan_id"] == scanned and row["model_version"] == version and row["status"] == "finished"
        for col in ("aoi_geojson", "imagery", "imagery_source_id", "zoom", "tiles_total"):
            assert row[col] == parent[col]
        assert row["tiles_done"] == parent["tiles_done"] == 1
    # The same model over the cache sees exactly the scan's input: identical grids.
    assert _tiles(conn, same.scan_id) == _tiles(conn, scanned)
    assert never.detections == 0 and never.tiles_rescanned == 1
    grid = _tiles(conn, never.scan_id)
    assert all(g[2] == bytes(len(g[2])) for g in grid.values() if g[2])  # P ~ 0 everywhere
    conn.close()


def test_rescan_then_diff_cli(scanned, tile_server, db_path, tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["rescan", str(scanned), "--model", "3", "--db", str(db_path)])
    assert res.exit_code == 0, res.output
    assert "model v3" in res.output
    conn = connect(db_path)
    all_id = conn.execute("SELECT MAX(id) FROM scans").fetchone()[0]
    res = runner.invoke(main, ["rescan", str(all_id), "--model", "2", "--db", str(db_path)])
    assert res.exit_code == 0, res.output
    none_id = conn.execute("SELECT MAX(id) FROM scans").fetchone()[0]
    area_all = conn.execute("SELECT SUM(area_ha) FROM detections WHERE scan_id = ?", (all_id,)).fetchone()[0]
    conn.close()
    assert area_all > 0.5  # the whole ~1 ha tile is one detection

    out = tmp_path / "diff.geojson"
    res = runner.invoke(main, ["scan", "diff", str(all_id), str(none_id), "--db", str(db_path), "--geojson", str(out)])
    assert res.exit_code == 0, res.output
    assert "removed" in res.output
    gj = json.loads(out.read_text())
    assert [f["properties"]["change"] for f in gj["features"]] == ["removed"]
    assert gj["properties"]["area_before_ha"] == pytest.approx(area_all, rel=1e-3)
    assert gj["properties"]["area_after_ha"] == 0

    res = runner.invoke(main, ["scan", "diff", str(none_id), str(all_id), "--db", str(db_path), "--json"])
    assert json.loads(res.output)["by_kind"]["added"]["sites"] == 1


def test_rescan_errors(scanned, db_path, tmp_path):
    with pytest.raises(NotFoundError, match="scan 42"):
        rescan(db_path, 42, 1)
    with pytest.raises(NotFoundError, match="model version 9"):
        rescan(db_path, scanned, 9)
    with pytest.raises(NotFoundError, match=r"nope.mbtiles"):
        rescan(db_path, scanned, 2, cache_path=tmp_path / "nope.mbtiles")
    conn = connect(db_path)
    conn.execute("UPDATE scans SET status = 'running' WHERE id = ?", (scanned,))
    conn.close()
    with pytest.raises(ConflictError, match="not finished"):
        rescan(db_path, scanned, 2)
    res = CliRunner().invoke(main, ["rescan", "1", "--db", str(db_path)])
    assert res.exit_code == 2  # --model is required


def test_web_layer_selector_lists_rescan_layers(scanned, db_path):
    from fastapi.testclient import TestClient

    from amberwatch.project import tile_cache_path
    from amberwatch.web.app import create_app

    out = rescan(db_path, scanned, 3)
    with TestClient(create_app(db_path, tile_cache_path(db_path))) as client:
        scans = client.get("/api/scans").json()["scans"]
        layer = next(s for s in scans if s["id"] == out.scan_id)
        assert layer["parent_scan_id"] == scanned and layer["model_version"] == "3"
        assert layer["detections"] == out.detections == 1 and layer["status"] == "finished"
        fc = client.get(f"/api/detections?scan={out.scan_id}").json()
        assert [f["properties"]["model_version"] for f in fc["features"]] == ["3"]
        thumb = client.get(f"/api/detections/{fc['features'][0]['id']}/thumbnail.jpg")
        assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"


@pytest.mark.slow
def test_rescan_keeps_the_parent_s_precision_when_the_new_model_allows_it(tile_server, db_path, rng):
    """A default scan with the bundled model runs int8; a rescan with it stays int8, one with a CNN runs fp32."""
    centre = mercantile.tile(LON, LAT, ZOOM)
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            img = np.clip(rng.normal((70, 100, 45), 25, (256, 256, 3)), 0, 255).astype(np.uint8)
            tile_server.tiles[(ZOOM, centre.x + dx, centre.y + dy)] = encode_png(img)
    with ModelRegistry.open(db_path) as reg:
        reg.register(make_classifier(seed=5))  # v1: a CNN, no int8 backbone
    b = mercantile.bounds(centre)
    aoi = aoi_from_bbox(f"{b.west + 1e-5},{b.south + 1e-5},{b.east - 1e-5},{b.north - 1e-5}")
    first = run_scan(aoi, tile_server.url, ZOOM, db_path, ScanSettings(workers=1, progress=False))
    same, cnn = rescan(db_path, first.scan_id, 0), rescan(db_path, first.scan_id, 1)
    conn = connect(db_path)
    int8 = {
        r["id"]: json.loads(r["params_json"])["int8"]
        for r in conn.execute("SELECT id, params_json FROM scans ORDER BY id")
    }
    conn.close()
    assert int8 == {first.scan_id: True, same.scan_id: True, cnn.scan_id: False}
