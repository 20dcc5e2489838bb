"""scan --triage-zoom: the fine tiles triage keeps, its scans' identities, and a served pyramid of real imagery."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import mercantile
import pytest
from shapely.geometry import box, shape
from shapely.ops import unary_union

from amberwatch.db import connect
from amberwatch.imagery.aoi import aoi_from_bbox
from amberwatch.results.records import ScanParams
from amberwatch.results.store import (
    NewScan,
    create_scan,
    ensure_schema,
    find_scan,
    finished_scans,
    scan_identity,
    scan_layers,
    set_scan_status,
)
from amberwatch.scan.engine import ScanSettings, run_scan
from amberwatch.scan.triage import kept_fine_tiles, run_triage_scan
from tests.fixtures.pyramid_region import build_region
from tests.scan.conftest import CENTER, TEXTY, bbox_arg, tiles_bbox

HECTARE_TOLERANCE = 0.05  # triage's hectares on the pit fields within 5 % of the full scan's there


def test_kept_fine_tiles_are_the_children_of_hot_tiles_and_their_ring_inside_the_aoi():
    x0, y0 = 1000, 2000  # z18, even: z17 (500, 1000)
    aoi = aoi_from_bbox(bbox_arg(tiles_bbox(x0, y0, 10, 10)))
    kept = kept_fine_tiles([(502, 1002)], 17, 18, aoi, ring_tiles=1)
    assert kept == {(x, y) for x in range(x0 + 2, x0 + 8) for y in range(y0 + 2, y0 + 8)}
    corner = kept_fine_tiles([(500, 1000)], 17, 18, aoi, ring_tiles=1)  # its ring leaves the AOI: clipped
    assert corner == {(x, y) for x in range(x0, x0 + 4) for y in range(y0, y0 + 4)}
    assert kept_fine_tiles([], 17, 18, aoi) == frozenset()


def test_a_triage_pass_and_the_fine_pass_after_it_never_resume_a_plain_scan(tmp_path):
    conn = connect(tmp_path / "p.db")
    ensure_schema(conn)

    def scan(zoom: int, triage: dict | None) -> NewScan:
        return NewScan("a", '{"type": "Polygon"}', "src", "src-id", zoom, "0", 0.5, ScanParams(triage=triage), 4)

    plain, coarse = scan(18, None), scan(17, {"key": "triage", "role": "triage"})
    fine = scan(18, {"key": "after-triage:2:z17:t0.1:ring1", "role": "after"})
    ids = [create_scan(conn, s) for s in (plain, coarse, fine)]
    assert [find_scan(conn, scan_identity(s)) for s in (plain, coarse, fine)] == ids
    assert find_scan(conn, scan_identity(scan(17, None))) is None  # a plain z17 scan is not the triage pass
    assert len({scan_identity(s).key() for s in (plain, fine)}) == 2  # nor do their locks meet
    for scan_id in ids:
        set_scan_status(conn, scan_id, "finished")
    # The triage pass is no result layer: not on the map, not a date of a timeline, never the latest result.
    assert [s.id for s in finished_scans(conn)] == [ids[0], ids[2]]
    assert [layer.scan.id for layer in scan_layers(conn)] == [ids[2], ids[0]]


def _served_region(tile_server) -> tuple:
    """The region on the server -> (region, AOI of its z18 tiles)."""
    if not (TEXTY / "tiles").is_dir():
        pytest.skip(f"Texty data not found at {TEXTY}")
    t = mercantile.tile(*CENTER, 18)
    x0, y0 = t.x & ~1, t.y & ~1
    region = build_region(TEXTY, x0, y0)
    tile_server.tiles.update(region.tiles)
    return region, aoi_from_bbox(bbox_arg(tiles_bbox(x0, y0, region.side, region.side)))


def pit_field_hectares(db, region) -> float:
    """Hectares of a project's detections that touch the region's pit-field tiles."""
    fields = unary_union([box(*mercantile.bounds(x, y, 18)) for x, y in region.pit_tiles])
    conn = connect(db)
    try:
        rows = conn.execute("SELECT geometry_geojson, area_ha FROM detections").fetchall()
    finally:
        conn.close()
    return sum(area for geojson, area in rows if shape(json.loads(geojson)).intersects(fields))


def _requests_at(tile_server, zoom: int, since: int = 0) -> int:
    return sum(1 for p in tile_server.tile_requests()[since:] if p.strip("/").split("/")[0] == str(zoom))


@pytest.mark.slow
def test_triage_finds_the_pit_fields_of_the_full_scan_fetching_fewer_z18_tiles(tile_server, tmp_path):
    region, aoi = _served_region(tile_server)
    settings = ScanSettings(workers=2, progress=False)
    full = run_scan(aoi, tile_server.url, 18, tmp_path / "full.db", settings)
    full_z18 = _requests_at(tile_server, 18)
    mark = len(tile_server.tile_requests())
    both = run_triage_scan(aoi, tile_server.url, 18, tmp_path / "triage.db", settings, triage_zoom=17)
    triage_z18, triage_z17 = _requests_at(tile_server, 18, mark), _requests_at(tile_server, 17, mark)
    print(
        f"\nfull z18: {full.detections} detections, {full.detections_area_ha:.2f} ha, {full_z18} z18 requests"
        f"\ntriage:   {both.fine.detections} detections, {both.fine.detections_area_ha:.2f} ha, {triage_z17} z17 + "
        f"{triage_z18} z18 requests; {both.fine_tiles_kept} of {both.fine_tiles_aoi} z18 tiles scanned "
        f"(threshold {both.triage_threshold:.3f}); pits on {len(region.pit_tiles)} tiles"
    )
    full_pits, triage_pits = (pit_field_hectares(tmp_path / f"{n}.db", region) for n in ("full", "triage"))
    print(f"hectares on the pit fields: full {full_pits:.2f}, triage {triage_pits:.2f}")
    assert full_pits > 1.0
    assert both.fine_tiles_skipped > 0 and triage_z18 < full_z18
    assert triage_pits == pytest.approx(full_pits, rel=HECTARE_TOLERANCE)
    assert both.fine.tiles_total == both.fine_tiles_kept

    mark = len(tile_server.tile_requests())
    again = run_triage_scan(aoi, tile_server.url, 18, tmp_path / "triage.db", settings, triage_zoom=17)
    assert (again.triage.scan_id, again.fine.scan_id) == (both.triage.scan_id, both.fine.scan_id)
    assert again.triage.tiles_processed_now == again.fine.tiles_processed_now == 0
    assert len(tile_server.tile_requests()) == mark  # nothing fetched again


@pytest.mark.slow
def test_an_interrupted_fine_pass_resumes_without_repeating_either_pass(tile_server, tmp_path):
    region, aoi = _served_region(tile_server)
    pit = min(region.pit_tiles)
    tile_server.faults[(18, *pit)] = ["500"] * 4  # the first run's fine pass fails there (and around it)
    tile_server.retry_after_s = 0
    settings = ScanSettings(workers=1, progress=False, source_options={"max_retries": 1, "timeout_s": 2})
    first = run_triage_scan(aoi, tile_server.url, 18, tmp_path / "t.db", settings, triage_zoom=17)
    assert first.fine.tiles_failed > 0
    mark = len(tile_server.tile_requests())
    second = run_triage_scan(aoi, tile_server.url, 18, tmp_path / "t.db", settings, triage_zoom=17)
    assert second.triage.scan_id == first.triage.scan_id and second.triage.tiles_processed_now == 0
    assert second.fine.scan_id == first.fine.scan_id and second.fine.resumed
    assert second.fine.tiles_processed_now == first.fine.tiles_failed and second.fine.tiles_failed == 0
    assert _requests_at(tile_server, 17, mark) == 0
    assert 0 < _requests_at(tile_server, 18, mark) <= first.fine.tiles_failed


@pytest.mark.slow
@pytest.mark.parametrize("kill_in", ["triage pass", "fine pass"])
def test_sigkill_in_either_pass_then_the_same_command_redoes_no_recorded_tile(tile_server, tmp_path, kill_in):
    from tests.scan.test_faults_resume import AMBERWATCH, tile_rows, wait_for_tiles

    region, _aoi = _served_region(tile_server)
    bbox = bbox_arg(tiles_bbox(region.x0, region.y0, region.side, region.side))
    db = tmp_path / "killed.db"
    cmd = [AMBERWATCH, "scan", "--bbox", bbox, "--imagery", tile_server.url, "--db", str(db), "--triage-zoom", "17"]
    cmd += ["--workers", "2", "--no-progress"]
    coarse_tiles = (region.side // 2) ** 2
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:  # the first unit of the triage pass, or all its tiles and a unit of the fine pass
        wait_for_tiles(db, 1 if kill_in == "triage pass" else coarse_tiles + 1, timeout_s=240)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    interrupted = tile_rows(db)  # (x, y) keys: z17 and z18 tiles never share one here
    assert 0 < len(interrupted) < coarse_tiles + region.side**2, "the kill must land mid-scan"
    mark = len(tile_server.tile_requests())
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr and "skipped" in resumed.stdout
    rows = tile_rows(db)
    assert all(attempts == 1 for _, attempts, _ in rows.values())
    assert all(rows[xy] == row for xy, row in interrupted.items())  # nothing recorded before the kill redone
    if len(interrupted) > coarse_tiles:
        assert "already complete" in resumed.stderr and _requests_at(tile_server, 17, mark) == 0


def test_the_bundled_triage_model_is_the_recipe_at_half_resolution_with_a_recall_first_threshold():
    from amberwatch.model.modelfile import BUNDLED_TRIAGE_PATH, load

    clf = load(BUNDLED_TRIAGE_PATH)
    assert clf.metadata["role"] == "triage" and clf.metadata["zoom_offset"] == -1
    assert clf.resolution_m_per_px == pytest.approx(0.76) and clf.metadata["train_config"]["window_cells"] == 7
    cv = clf.metadata["cv"]
    assert cv["min_recall_target"] == 0.8 and cv["recall"] >= 0.8 and cv["grouping"] == "0.1-degree block"
    assert clf.threshold == cv["threshold"] or abs(clf.threshold - cv["threshold"]) < 1e-4
    assert BUNDLED_TRIAGE_PATH.stat().st_size < 3_000_000


def _grids(db) -> dict:
    conn = connect(db)
    try:
        rows = conn.execute("SELECT z, x, y, status, grid FROM scan_tiles ORDER BY z, x, y").fetchall()
        found = conn.execute("SELECT round(area_ha, 6) FROM detections ORDER BY 1").fetchall()
    finally:
        conn.close()
    return {"tiles": rows, "detections": found}


@pytest.mark.slow
def test_both_passes_run_on_dask_with_the_local_pools_tiles_and_detections(tile_server, tmp_path):
    _region, aoi = _served_region(tile_server)
    local_settings = ScanSettings(workers=1, progress=False)
    local = run_triage_scan(aoi, tile_server.url, 18, tmp_path / "local.db", local_settings, triage_zoom=17)
    settings = ScanSettings(workers=2, progress=False, dask="local")
    dask = run_triage_scan(aoi, tile_server.url, 18, tmp_path / "dask.db", settings, triage_zoom=17)
    assert (dask.fine_tiles_kept, dask.fine.detections) == (local.fine_tiles_kept, local.fine.detections)
    assert _grids(tmp_path / "dask.db") == _grids(tmp_path / "local.db")


def test_a_scan_triages_with_its_models_own_triage_model_else_the_bundled_one(tmp_path):
    from amberwatch.model.modelfile import BUNDLED_PATH, BUNDLED_TRIAGE_PATH
    from amberwatch.model.registry import ModelRegistry
    from amberwatch.scan.engine import resolve_triage_model
    from tests.loop.conftest import make_classifier

    db = tmp_path / "p.db"
    with ModelRegistry.open(db) as reg:
        reg.register(make_classifier(1), triage=make_classifier(2))  # v1 with a triage model of its own (retrain)
        reg.register(make_classifier(3))  # v2 without
        own = reg.triage_model(1).path
    assert resolve_triage_model(db, "1") == str(own) and own.name == "v1-triage.pt"
    assert resolve_triage_model(db, "2") == resolve_triage_model(db, None) == str(BUNDLED_TRIAGE_PATH)  # v0 current
    assert resolve_triage_model(db, str(BUNDLED_PATH)) == str(BUNDLED_TRIAGE_PATH)  # a model file: the bundled one
    with ModelRegistry.open(db) as reg:
        reg.promote(1)
    assert resolve_triage_model(db, None) == str(own)  # the current version's
