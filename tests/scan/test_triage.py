"""scan --triage-zoom: the fine tiles triage keeps, its scans' identities, and a served pyramid of real imagery."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import mercantile
import numpy as np
import pytest
from shapely.geometry import box, shape
from shapely.ops import unary_union

from amberwatch.db import connect
from amberwatch.imagery.aoi import aoi_from_bbox
from amberwatch.results.records import ScanParams
from amberwatch.results.store import (
    NewScan,
    TileRow,
    create_scan,
    ensure_schema,
    find_scan,
    finished_scans,
    scan_identity,
    scan_layers,
    set_scan_status,
)
from amberwatch.scan.engine import ScanSettings, run_scan
from amberwatch.scan.triage import KeepRule, fine_tiles_near, hot_cells, kept_fine_tiles, run_triage_scan
from tests.fixtures.pyramid_region import build_region
from tests.scan.conftest import CENTER, TEXTY, bbox_arg, tiles_bbox

HECTARE_TOLERANCE = 0.05  # triage's hectares on the pit fields within 5 % of the full scan's there


def _coarse(x: int, y: int, hot: dict[tuple[int, int], int] = {}, status: str = "done") -> TileRow:  # noqa: B006
    """A z17 triage tile of 16 x 16 cells at level 0 but ``hot`` ((column, row) -> level 0..255)."""
    grid = np.zeros((16, 16), np.uint8)
    for (c, r), level in hot.items():
        grid[r, c] = level
    return TileRow(17, x, y, status, grid_cells=16, grid=grid.tobytes() if status == "done" else None)


def test_kept_fine_tiles_are_those_near_the_hot_cells_with_the_ring_only_toward_the_sides_they_touch():
    x0, y0 = 1000, 2000  # z18, even: z17 (500, 1000); a z18 tile is 8 x 8 of its parent's 16 x 16 cells
    aoi = aoi_from_bbox(bbox_arg(tiles_bbox(x0, y0, 10, 10)))

    def kept(tiles: list[TileRow], ring: int) -> frozenset:
        return kept_fine_tiles(tiles, 0.5, 16, 17, 18, aoi, KeepRule(ring, 1.0, ring))

    inner = [_coarse(502, 1002, {(2, 2): 200})]  # in z18 tile (1004, 2004), 2 cells from its west and north sides
    assert kept(inner, 0) == kept(inner, 2) == {(1004, 2004)}
    assert kept(inner, 3) == {(1003, 2003), (1004, 2003), (1003, 2004), (1004, 2004)}  # west, north and their corner
    east = [_coarse(502, 1002, {(7, 3): 200})]  # on the east side of (1004, 2004): its ring reaches east alone
    assert kept(east, 1) == {(1004, 2004), (1005, 2004)}
    corner = [_coarse(502, 1002, {(7, 7): 200})]  # the south-east corner cell: the three tiles around that corner
    assert kept(corner, 1) == {(1004, 2004), (1005, 2004), (1004, 2005), (1005, 2005)}
    across = [_coarse(502, 1002, {(8, 8): 200})]  # the first cell of (1005, 2005): ring 1 reaches back north-west
    assert kept(across, 1) == kept(corner, 1)
    assert kept(inner, 16) == {(x, y) for x in range(1002, 1007) for y in range(2002, 2007)}  # 2 tiles: 16 cells


def test_kept_fine_tiles_take_every_cell_of_a_failed_tile_stay_in_the_aoi_and_read_rounded_levels_safely():
    x0, y0 = 1000, 2000
    aoi = aoi_from_bbox(bbox_arg(tiles_bbox(x0, y0, 10, 10)))
    failed = [_coarse(502, 1002, status="failed")]
    assert kept_fine_tiles(failed, 0.5, 16, 17, 18, aoi, KeepRule(0, 1.0, 0)) == {
        (1004, 2004),
        (1005, 2004),
        (1004, 2005),
        (1005, 2005),
    }
    assert len(kept_fine_tiles(failed, 0.5, 16, 17, 18, aoi, KeepRule(8, 1.0, 8))) == 16
    at_aoi_corner = [_coarse(500, 1000, {(0, 0): 255})]  # its ring leaves the AOI: clipped to the AOI
    assert kept_fine_tiles(at_aoi_corner, 0.5, 16, 17, 18, aoi, KeepRule(7, 1.0, 7)) == {(x0, y0)}
    assert kept_fine_tiles(at_aoi_corner, 0.5, 16, 17, 18, aoi, KeepRule(8, 1.0, 8)) == {
        (x0 + i, y0 + j) for i in (0, 1) for j in (0, 1)
    }
    # A stored level is a rounded probability: level 3 may hold 0.011 (2.8 / 255), level 2 may not.
    assert kept_fine_tiles([_coarse(502, 1002, {(2, 2): 3})], 0.011, 16, 17, 18, aoi, KeepRule(0, 1.0, 0)) == {
        (1004, 2004)
    }
    assert (
        kept_fine_tiles([_coarse(502, 1002, {(2, 2): 2})], 0.011, 16, 17, 18, aoi, KeepRule(0, 1.0, 0)) == frozenset()
    )
    assert kept_fine_tiles([], 0.5, 16, 17, 18, aoi) == frozenset()


def test_cells_reaching_the_seed_threshold_keep_a_wider_ring_than_those_reaching_the_triage_threshold():
    aoi = aoi_from_bbox(bbox_arg(tiles_bbox(1000, 2000, 10, 10)))
    rule = KeepRule(ring_cells=0, seed_threshold=0.5, seed_ring_cells=16)  # 16 cells: two z18 tiles
    weak = [_coarse(502, 1002, {(2, 2): 64})]  # 0.25: the triage threshold (0.1), not the seed's
    assert kept_fine_tiles(weak, 0.1, 16, 17, 18, aoi, rule) == {(1004, 2004)}
    strong = [_coarse(502, 1002, {(2, 2): 200})]  # 0.78: a seed
    assert kept_fine_tiles(strong, 0.1, 16, 17, 18, aoi, rule) == {
        (x, y) for x in range(1002, 1007) for y in range(2002, 2007)
    }
    assert len(kept_fine_tiles([_coarse(502, 1002, status="failed")], 0.1, 16, 17, 18, aoi, rule)) == 6 * 6
    assert KeepRule().key() != rule.key()


def test_fine_tiles_near_hot_cells_stop_at_the_edges_of_the_world():
    cols, rows = hot_cells([_coarse(0, 0, {(0, 0): 255})], 0.5, 16)
    assert (cols.tolist(), rows.tolist()) == ([0], [0])
    assert fine_tiles_near(cols, rows, 16, 1, 18, ring_cells=20) == {(x, y) for x in range(3) for y in range(3)}
    last = (1 << 17) - 1
    cols, rows = hot_cells([_coarse(last, last, {(15, 15): 255})], 0.5, 16)
    assert fine_tiles_near(cols, rows, 16, 1, 18, ring_cells=1) == {((1 << 18) - 1, (1 << 18) - 1)}


def test_a_triage_pass_and_the_fine_pass_after_it_never_resume_a_plain_scan(tmp_path):
    conn = connect(tmp_path / "p.db")
    ensure_schema(conn)

    def scan(zoom: int, triage: dict | None) -> NewScan:
        return NewScan("a", '{"type": "Polygon"}', "src", "src-id", zoom, "0", 0.5, ScanParams(triage=triage), 4)

    plain, coarse = scan(18, None), scan(17, {"key": "triage", "role": "triage"})
    fine = scan(18, {"key": "after-triage:2:z17:t0.1:cells-ring8", "role": "after"})
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
