"""scan --triage-zoom: the fine tiles triage keeps, its scans' identities, and a served pyramid of real imagery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import replace

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
from tests.scan.conftest import CENTER, TEXTY, bbox_arg, put_mosaic_tiles, tile_origin, tiles_bbox

HECTARE_TOLERANCE = 0.02  # triage's hectares on the pit fields within 2 % of the full scan's there (issue 31)


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


def test_warm_tiles_are_those_under_any_non_zero_coarse_cell_or_a_failed_tile_and_their_ring_is_read_fine():
    from amberwatch.scan.triage import warm_tiles
    from amberwatch.scan.worker import fine_context_tiles

    assert warm_tiles([_coarse(502, 1002)], 16, 1, 18) == frozenset()  # every cell at level 0: cold
    assert warm_tiles([_coarse(502, 1002, {(9, 2): 1})], 16, 1, 18) == {(1005, 2004)}  # level 1: warm
    assert warm_tiles([_coarse(502, 1002, status="failed")], 16, 1, 18) == {
        (x, y) for x in (1004, 1005) for y in (2004, 2005)
    }
    scanned = frozenset({(1004, 2004), (1010, 2010)})
    read = fine_context_tiles(scanned, frozenset({(1004, 2004), (1005, 2004)}), 18)
    assert read == {(x, y) for x in range(1003, 1006) for y in range(2003, 2006)} | {(1010, 2010)}


def test_the_cli_offers_the_triage_contexts_of_the_library():
    from amberwatch.scan.commands import scan_group
    from amberwatch.scan.triage import CONTEXTS, DEFAULT_CONTEXT

    option = next(o for o in scan_group.params if o.name == "triage_context")
    assert tuple(option.type.choices) == CONTEXTS and option.default == DEFAULT_CONTEXT


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


def _one_block_scanned_in_full(tile_server, tmp_path, column_px: int) -> tuple:
    """One 8 x 8-tile block of the tile grid with real imagery all round it, scanned in full into full.db ->
    (x0, y0, its AOI, the settings, the full scan's grids, the tile requests so far)."""
    x0, y0 = tile_origin((column_px, 0))
    x0, y0 = x0 // 8 * 8, y0 // 8 * 8
    put_mosaic_tiles(tile_server, x0 - 1, y0 - 1, 10, 10)
    aoi = aoi_from_bbox(bbox_arg(tiles_bbox(x0, y0, 8, 8)))
    settings = ScanSettings(workers=1, progress=False)
    run_scan(aoi, tile_server.url, 18, tmp_path / "full.db", settings)
    return x0, y0, aoi, settings, _grids(tmp_path / "full.db")["tiles"], len(tile_server.tile_requests())


@pytest.mark.slow
def test_a_fine_pass_gives_its_tiles_the_full_scans_grids_running_and_reading_only_what_it_needs(tile_server, tmp_path):
    from dataclasses import replace

    x0, y0, aoi, settings, full, mark = _one_block_scanned_in_full(tile_server, tmp_path, 160)
    # Two far corners of the block: cut to them, the block would frame their bounding box, the first tile at its
    # corner with nothing beyond the margin where the full scan had imagery.
    kept = frozenset({(x0 + 1, y0 + 1), (x0 + 6, y0 + 7)})
    fine = replace(settings, only_tiles=kept, triage={"key": "after-triage:test", "role": "after"})
    run_scan(aoi, tile_server.url, 18, tmp_path / "fine.db", fine)
    mine = _grids(tmp_path / "fine.db")["tiles"]
    assert [row for row in full if (row[1], row[2]) in kept] == mine and len(mine) == 2
    # 2 of the frame's 3 x 3 backbone passes ran, and they read 2 x 4 x 4 of the 10 x 10 tiles the full scan read.
    assert _requests_at(tile_server, 18, mark) == 32 and _requests_at(tile_server, 18) - 32 == 100


@pytest.mark.slow
def test_a_fine_pass_adds_the_tiles_its_passes_give_free_with_the_full_scans_grids_and_no_more_reads(
    tile_server, tmp_path
):
    from amberwatch.results.store import get_scan

    x0, y0, aoi, settings, full, mark = _one_block_scanned_in_full(tile_server, tmp_path, 176)
    kept = frozenset({(x0 + 1, y0 + 1), (x0 + 6, y0 + 7)})  # 2 of the block's 3 x 3 passes, reading 32 tiles
    triage = {"key": "after-triage:test", "role": "after", "tiles_aoi": 64, "tiles_kept": 2, "tiles_skipped": 62}
    fine = replace(settings, only_tiles=kept, free_tiles=True, triage=triage)
    out = run_scan(aoi, tile_server.url, 18, tmp_path / "fine.db", fine)
    mine = _grids(tmp_path / "fine.db")["tiles"]
    scanned = {(x, y) for _z, x, y, _status, _grid in mine}
    assert kept < scanned and len(scanned) == out.tiles_total > 2
    assert [row for row in full if (row[1], row[2]) in scanned] == mine  # the full scan's grids, byte for byte
    assert _requests_at(tile_server, 18, mark) == 32  # what the 2 tiles alone read
    conn = connect(tmp_path / "fine.db")
    params = get_scan(conn, out.scan_id).params.triage
    conn.close()
    assert (params["tiles_kept"], params["tiles_free"], params["tiles_skipped"]) == (
        len(scanned),
        len(scanned) - 2,
        64 - len(scanned),
    )


def _served_region(tile_server) -> tuple:
    """The region on the server -> (region, AOI of its z18 tiles)."""
    if not (TEXTY / "tiles").is_dir():
        pytest.skip(f"Texty data not found at {TEXTY}")
    t = mercantile.tile(*CENTER, 18)
    x0, y0 = t.x & ~1, t.y & ~1
    region = build_region(TEXTY, x0, y0)
    tile_server.tiles.update(region.tiles)
    return region, aoi_from_bbox(bbox_arg(tiles_bbox(x0, y0, region.side, region.side)))


def pit_field_hectares(db, region, scan_id: int | None = None) -> float:
    """Hectares of a project's detections (of one scan's, with ``scan_id``) that touch the region's pit-field tiles."""
    fields = unary_union([box(*mercantile.bounds(x, y, 18)) for x, y in region.pit_tiles])
    conn = connect(db)
    try:
        where = "" if scan_id is None else f" WHERE scan_id = {int(scan_id)}"
        rows = conn.execute("SELECT geometry_geojson, area_ha FROM detections" + where).fetchall()
    finally:
        conn.close()
    return sum(area for geojson, area in rows if shape(json.loads(geojson)).intersects(fields))


def _requests_at(tile_server, zoom: int, since: int = 0) -> int:
    return sum(1 for p in tile_server.tile_requests()[since:] if p.strip("/").split("/")[0] == str(zoom))


def _served_region_scanned_in_full(tile_server, db) -> tuple:
    """The served region scanned in full at z18 into ``db`` on 2 workers -> (region, AOI, the settings, the outcome,
    the z18 requests it made)."""
    region, aoi = _served_region(tile_server)
    settings = ScanSettings(workers=2, progress=False)
    full = run_scan(aoi, tile_server.url, 18, db, settings)
    return region, aoi, settings, full, _requests_at(tile_server, 18)


@pytest.mark.slow
def test_triage_finds_the_pit_fields_of_the_full_scan_fetching_fewer_z18_tiles(tile_server, tmp_path):
    region, aoi, settings, full, full_z18 = _served_region_scanned_in_full(tile_server, tmp_path / "full.db")
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
def test_a_coarse_context_reads_fewer_z18_tiles_and_finds_the_pit_fields_of_the_full_scan(tile_server, tmp_path):
    from click.testing import CliRunner

    from amberwatch.cli import main
    from amberwatch.results.store import get_scan

    region, aoi, settings, full, full_z18 = _served_region_scanned_in_full(tile_server, tmp_path / "full.db")
    db = tmp_path / "triage.db"
    mark = len(tile_server.tile_requests())
    bbox = bbox_arg(tiles_bbox(region.x0, region.y0, region.side, region.side))
    args = ["scan", "--bbox", bbox, "--imagery", tile_server.url, "--db", str(db), "--triage-zoom", "17"]
    result = CliRunner().invoke(main, [*args, "--triage-context", "coarse", "--workers", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    z17, coarse_z18 = _requests_at(tile_server, 17, mark), _requests_at(tile_server, 18, mark)
    conn = connect(db)
    try:
        (triage_id, _), (fine_id, _) = conn.execute("SELECT id, zoom FROM scans ORDER BY zoom").fetchall()
        coarse_params = get_scan(conn, fine_id).params.triage
    finally:
        conn.close()
    report = CliRunner().invoke(main, ["scan", "report", "--db", str(db), "--scan", str(fine_id)])
    assert f"coarse context: {coarse_params['tiles_read_fine']:,} tiles read at this zoom" in report.output
    # No other zoom-18 tile is read (two units may both fetch a tile on their edge before either caches it).
    assert coarse_params["tiles_read_fine"] <= coarse_z18 <= 1.05 * coarse_params["tiles_read_fine"]

    # The exact context reuses the triage pass (no z17 request) into a layer of its own; it reads the rest of the
    # z18 tiles under its passes (the coarse context's are in the cache).
    mark = len(tile_server.tile_requests())
    exact = run_triage_scan(aoi, tile_server.url, 18, db, settings, triage_zoom=17, context="exact")
    exact_z18 = coarse_z18 + _requests_at(tile_server, 18, mark)
    assert exact.triage.scan_id == triage_id and _requests_at(tile_server, 17, mark) == 0
    assert exact.fine.scan_id != fine_id and coarse_params["tiles_kept"] == exact.fine_tiles_kept
    print(
        f"\nfull z18: {full_z18} requests; exact context: {z17} + {exact_z18} ({(z17 + exact_z18) / full_z18:.1%}); "
        f"coarse context: {z17} + {coarse_z18} ({(z17 + coarse_z18) / full_z18:.1%})"
    )
    assert coarse_z18 < exact_z18 and z17 + coarse_z18 < 0.6 * full_z18  # round 25: 55.5 % (exact 71.9 %)
    full_pits = pit_field_hectares(tmp_path / "full.db", region)
    pits = pit_field_hectares(db, region, fine_id)
    print(f"hectares on the pit fields: full {full_pits:.2f}, coarse context {pits:.2f}")
    assert full_pits > 1.0 and pits == pytest.approx(full_pits, rel=HECTARE_TOLERANCE)
    # The grids are near the full scan's, not equal: RESULTS round 25 measured a mean level difference below 1.
    fine, whole = _tiles_of(db, fine_id), _tiles_of(tmp_path / "full.db", full.scan_id)
    diff = [
        np.abs(np.frombuffer(fine[xy][1], np.uint8) - np.frombuffer(whole[xy][1], np.uint8).astype(int)) for xy in fine
    ]
    mean = float(np.concatenate(diff).mean())
    print(f"mean level difference against the full scan's grids: {mean:.2f} of 255")
    assert all(status == "done" for status, _grid in fine.values()) and 0 < mean < 2

    again = run_triage_scan(aoi, tile_server.url, 18, db, settings, triage_zoom=17)  # the default context
    assert again.fine.scan_id == fine_id and again.fine.tiles_processed_now == 0


@pytest.mark.slow
def test_a_coarse_context_resumes_into_the_same_grids_and_dask_and_a_rescan_give_them_too(tile_server, tmp_path):
    from amberwatch.scan.rescan import rescan

    _region, aoi = _small_region(tile_server, side=16)
    one = ScanSettings(workers=1, progress=False)
    whole = run_triage_scan(aoi, tile_server.url, 18, tmp_path / "whole.db", one, triage_zoom=17, context="coarse")
    reference = _tiles_of(tmp_path / "whole.db", whole.fine.scan_id)
    assert whole.fine.tiles_total > 16

    # Killed mid-pass: half its tiles were never recorded. The same command redoes them alone, with the same grids.
    db = tmp_path / "whole.db"
    conn = connect(db)
    with conn:
        conn.execute("DELETE FROM scan_tiles WHERE scan_id = ? AND (x + y) % 2 = 0", (whole.fine.scan_id,))
    conn.close()
    lost = len(reference) - len(_tiles_of(db, whole.fine.scan_id))
    mark = len(tile_server.tile_requests())
    two = replace(one, workers=2)
    resumed = run_triage_scan(aoi, tile_server.url, 18, db, two, triage_zoom=17, context="coarse")
    assert resumed.fine.scan_id == whole.fine.scan_id and resumed.fine.tiles_processed_now == lost > 0
    assert _tiles_of(db, whole.fine.scan_id) == reference and len(tile_server.tile_requests()) == mark

    dask = ScanSettings(workers=2, progress=False, dask="local")
    on_dask = run_triage_scan(aoi, tile_server.url, 18, tmp_path / "dask.db", dask, triage_zoom=17, context="coarse")
    assert _tiles_of(tmp_path / "dask.db", on_dask.fine.scan_id) == reference

    # A rescan with the same weights (the same triage pass) reads its context as the scan did: the same grids.
    layer = rescan(tmp_path / "whole.db", whole.fine.scan_id, _register_bundled(tmp_path / "whole.db"))
    assert "of the parent" in layer.triage
    assert _tiles_of(tmp_path / "whole.db", layer.scan_id) == reference


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


def _small_region(tile_server, side: int = 12) -> tuple:
    """The served region's first ``side`` x ``side`` z18 tiles (the pit field of positive1 among them) -> (region,
    AOI)."""
    region, _aoi = _served_region(tile_server)
    return region, aoi_from_bbox(bbox_arg(tiles_bbox(region.x0, region.y0, side, side)))


def _tiles_of(db, scan_id: int) -> dict:
    conn = connect(db)
    try:
        rows = conn.execute("SELECT x, y, status, grid FROM scan_tiles WHERE scan_id = ?", (scan_id,)).fetchall()
    finally:
        conn.close()
    return {(x, y): (status, grid) for x, y, status, grid in rows}


def _register_bundled(db, triage=None) -> str:
    """Register the bundled model's weights as a new version (a 'newer model'), with a triage model or without."""
    from amberwatch.model.modelfile import BUNDLED_PATH, load
    from amberwatch.model.registry import ModelRegistry

    with ModelRegistry.open(db) as reg:
        return str(reg.register(load(BUNDLED_PATH), triage=triage).version)


@pytest.mark.slow
def test_a_rescan_of_a_triaged_layer_triages_again_only_when_its_triage_model_changes(tile_server, tmp_path):
    from amberwatch.model.modelfile import BUNDLED_TRIAGE_PATH, load
    from amberwatch.results.store import get_scan, scan_tiles_at
    from amberwatch.scan.rescan import rescan

    _region, aoi = _small_region(tile_server)
    db = tmp_path / "p.db"
    # Narrow rings (no wide seed ring, which covers this small region whole): a stricter triage keeps fewer tiles.
    narrow = KeepRule(ring_cells=2, seed_threshold=1.0, seed_ring_cells=2)
    settings = ScanSettings(workers=2, progress=False)
    both = run_triage_scan(aoi, tile_server.url, 18, db, settings, triage_zoom=17, rule=narrow)
    parent = _tiles_of(db, both.fine.scan_id)
    requests = len(tile_server.tile_requests())

    # A newer model without a triage model of its own: the parent's triage pass stands, the layer has its tiles, and
    # blocks span the kept tiles alone as in the scan (the same weights give the same grids).
    same = rescan(db, both.fine.scan_id, _register_bundled(db))
    assert "triage pass" in same.triage and "of the parent" in same.triage
    assert _tiles_of(db, same.scan_id) == parent and same.detections == both.fine.detections

    # A newer model with its own triage model (here: the bundled one with a stricter threshold): a triage pass with
    # it is made from the cached coarse tiles, and chooses fewer tiles.
    conn = connect(db)
    probs = sorted(
        p for (p,) in conn.execute("SELECT max_prob FROM scan_tiles WHERE scan_id = ?", (both.triage.scan_id,))
    )
    conn.close()
    stricter = load(BUNDLED_TRIAGE_PATH)
    stricter.threshold = probs[-1]  # the hottest coarse tile alone, and its ring
    version = _register_bundled(db, triage=stricter)
    new = rescan(db, both.fine.scan_id, version)
    assert len(tile_server.tile_requests()) == requests  # from the cache alone
    conn = connect(db)
    try:
        layer = get_scan(conn, new.scan_id)
        pass2 = get_scan(conn, layer.params.triage["scan_id"])
        kept = {(t.x, t.y) for t in scan_tiles_at(conn, new.scan_id, 18)}
        assert [s.id for s in finished_scans(conn)] == [both.fine.scan_id, same.scan_id, new.scan_id]
    finally:
        conn.close()
    assert pass2.id != both.triage.scan_id and pass2.params.triage["role"] == "triage"
    assert (pass2.zoom, pass2.model_version, pass2.parent_scan_id) == (17, f"{version}-triage", None)
    assert layer.params.triage["threshold"] == pytest.approx(stricter.threshold, abs=1e-6)
    assert 0 < len(kept) == layer.params.triage["tiles_kept"] < len(parent) and new.tiles_missing_from_cache == 0
    assert kept <= set(parent) and "made now from the cached coarse tiles" in new.triage

    # That triage pass is one like any: a second rescan, and a triaged scan with that model, reuse it.
    again = rescan(db, both.fine.scan_id, version)
    assert "reused" in again.triage and f"triage pass {pass2.id} " in again.triage
    scan = run_triage_scan(
        aoi, tile_server.url, 18, db, replace(settings, model_path=version), triage_zoom=17, rule=narrow
    )
    assert (
        scan.triage.scan_id == pass2.id and scan.triage.tiles_processed_now == 0 and scan.fine_tiles_kept == len(kept)
    )


def test_a_triage_pass_is_no_layer_to_rescan(tmp_path):
    from amberwatch.errors import ConflictError
    from amberwatch.scan.rescan import rescan

    db = tmp_path / "p.db"
    conn = connect(db)
    ensure_schema(conn)
    coarse = NewScan(
        "a", '{"type": "Polygon"}', "src", "src-id", 17, "0", 0.01, ScanParams(triage={"role": "triage"}), 4
    )
    scan_id = create_scan(conn, coarse)
    set_scan_status(conn, scan_id, "finished")
    conn.close()
    with pytest.raises(ConflictError, match=f"scan {scan_id} is the triage pass"):
        rescan(db, scan_id, "0")


@pytest.mark.slow
def test_a_dated_triaged_scan_keeps_its_date_on_both_passes_and_its_fine_pass_is_that_dates_layer(
    tile_server, tmp_path
):
    from click.testing import CliRunner

    from amberwatch.cli import main
    from amberwatch.results.timeline import load_timeline

    region, _aoi = _small_region(tile_server)
    db = tmp_path / "p.db"
    bbox = bbox_arg(tiles_bbox(region.x0, region.y0, 12, 12))
    coarse_requests = []
    for date in ("2019-06-26", "2023-06-26"):
        mark = len(tile_server.tile_requests())
        args = ["scan", "--bbox", bbox, "--imagery", tile_server.url, "--db", str(db), "--triage-zoom", "17"]
        args += ["--imagery-date", date, "--workers", "2", "--no-progress"]
        result = CliRunner().invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        coarse_requests.append(_requests_at(tile_server, 17, mark))
    # Each date fetched its own coarse tiles (the date is part of the imagery's identity on both passes).
    assert min(coarse_requests) >= 36
    conn = connect(db)
    try:
        rows = conn.execute("SELECT id, zoom, imagery_date, imagery_source_id FROM scans ORDER BY id").fetchall()
        layers = [layer.scan for layer in scan_layers(conn)]
        timeline = load_timeline(conn, {}, aoi_geojson=layers[0].aoi_geojson)
    finally:
        conn.close()
    assert [(z, date) for _id, z, date, _src in rows] == [
        (17, "2019-06-26"),
        (18, "2019-06-26"),
        (17, "2023-06-26"),
        (18, "2023-06-26"),
    ]
    assert all(src.endswith("@" + date) for _id, _z, date, src in rows)
    assert sorted((s.zoom, s.imagery_date) for s in layers) == [(18, "2019-06-26"), (18, "2023-06-26")]
    assert [s.params.triage["role"] for s in layers] == ["after", "after"]
    assert timeline.dates == ("2019-06-26", "2023-06-26") and timeline.sites
    assert all(site.status == "stable" for site in timeline.sites)  # the same imagery at both dates

    # A rescan with a version that has its own triage model triages again at the layer's date, from its cache entries.
    from amberwatch.model.modelfile import BUNDLED_TRIAGE_PATH, load
    from amberwatch.results.store import get_scan
    from amberwatch.scan.rescan import rescan

    late = max(layers, key=lambda s: s.imagery_date)
    out = rescan(db, late.id, _register_bundled(db, triage=load(BUNDLED_TRIAGE_PATH)))
    conn = connect(db)
    try:
        layer = get_scan(conn, out.scan_id)
        coarse = get_scan(conn, layer.params.triage["scan_id"])
    finally:
        conn.close()
    assert "made now" in out.triage and out.tiles_missing_from_cache == 0
    assert layer.imagery_date == coarse.imagery_date == "2023-06-26"
    assert coarse.imagery_source_id == layer.imagery_source_id == late.imagery_source_id
