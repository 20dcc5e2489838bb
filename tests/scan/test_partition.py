"""A tile's grid depends on the imagery and the AOI only: not on the unit size, the workers, the runner or resuming.

The AOI (6 x 6 tiles of real Texty imagery) cuts units partially: it crosses a boundary of the 8 x 8-tile units
that is not one of the 16 x 16-tile units, so the two unit sizes split it differently.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from amberwatch.imagery.aoi import aoi_from_bbox
from amberwatch.scan.engine import ScanSettings, run_scan
from tests.fixtures.tileserver import TileServer
from tests.scan.conftest import ZOOM, bbox_arg, put_mosaic_tiles, tile_origin, tiles_bbox


def tile_grids(db: Path, scan_id: int) -> dict[tuple[int, int], tuple]:
    """(x, y) -> (status, max_prob, grid bytes, embedding bytes) of a scan's tiles."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT x, y, status, max_prob, grid, embedding FROM scan_tiles WHERE scan_id = ?", (scan_id,)
        ).fetchall()
    finally:
        conn.close()
    return {(x, y): rest for x, y, *rest in rows}


def detections(db: Path, scan_id: int) -> list[tuple]:
    """A scan's detections: outline, hectares and probabilities."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT geometry_geojson, area_ha, mean_prob, max_prob FROM detections WHERE scan_id = ?"
            " ORDER BY centroid_lon, centroid_lat",
            (scan_id,),
        ).fetchall()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def area() -> Iterator[tuple[TileServer, int, int]]:
    """The served imagery (every tile of the blocks around the AOI, and their ring) and the AOI's corner."""
    server = TileServer().start()
    x, y = tile_origin((-80, 40))
    x0, y0 = x // 16 * 16 + 5, y // 16 * 16 + 13  # AOI x0..x0+5 crosses an 8-tile line, y0..y0+5 a 16-tile one
    put_mosaic_tiles(server, x0 - 6, y0 - 6, 18, 18)
    try:
        yield server, x0, y0
    finally:
        server.stop()


def scan(area, tmp_path: Path, name: str, aoi=None, **settings) -> tuple[object, dict, list]:
    """Scan the AOI (default: the 6 x 6 tiles) in a new DB, from a tile cache shared by the test's scans."""
    server, x0, y0 = area
    aoi = aoi or aoi_from_bbox(bbox_arg(tiles_bbox(x0, y0, 6, 6)))
    db = tmp_path / f"{name}.db"
    settings = {"cache_path": str(tmp_path / "tiles.mbtiles"), "progress": False, **settings}
    out = run_scan(aoi, server.url, ZOOM, db, ScanSettings(**settings))
    return out, tile_grids(db, out.scan_id), detections(db, out.scan_id)


@pytest.mark.slow
def test_unit_size_workers_and_resuming_give_the_same_grids(area, tmp_path):
    server, x0, y0 = area
    ref, ref_grids, ref_found = scan(area, tmp_path, "units8", workers=1, unit_zoom_delta=3)
    assert ref.tiles_done == 36 and ref.detections > 0, "the real positive images should give detections"

    _, grids, found = scan(area, tmp_path, "units16", workers=2, unit_zoom_delta=4)
    assert grids == ref_grids and found == ref_found

    # A failed read fails its tile and the 8 around it; the resumed run redoes those 9 as an unbroken scan would.
    # Their block's other tiles were scored with zeros in its place, as for no imagery: nearly the same grids.
    bad = (x0 + 4, y0 + 4)
    server.faults[(ZOOM, *bad)] = ["500", "500"]
    server.retry_after_s = 0
    fresh = {"cache_path": str(tmp_path / "resumed.mbtiles"), "source_options": {"max_retries": 1}}
    first, _, _ = scan(area, tmp_path, "resumed", workers=1, unit_zoom_delta=4, **fresh)
    assert first.tiles_failed == 9 and first.tiles_done == 27
    second, grids, found = scan(area, tmp_path, "resumed", workers=1, unit_zoom_delta=4, **fresh)
    assert second.resumed and second.tiles_processed_now == 9 and second.tiles_failed == 0
    near = {(bad[0] + dx, bad[1] + dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)}
    assert {xy: grids[xy] for xy in near} == {xy: ref_grids[xy] for xy in near}
    worst = max(
        int(np.abs(np.frombuffer(grids[xy][2], np.uint8).astype(int) - np.frombuffer(ref_grids[xy][2], np.uint8)).max())
        for xy in grids
    )
    print(f"largest grid change beyond the failed tile's ring: {worst} / 255")
    assert worst <= 13 and len(found) == len(ref_found)


@pytest.mark.slow
def test_dask_with_other_units_gives_the_same_grids(area, tmp_path):
    _, local, local_found = scan(area, tmp_path, "local", workers=1, unit_zoom_delta=3)
    _, dask, dask_found = scan(area, tmp_path, "dask", dask="local", workers=2, unit_zoom_delta=4)
    assert len(dask) == 36 and dask == local and dask_found == local_found


def test_units_smaller_than_a_block_are_refused(tmp_path):
    from amberwatch.errors import InvalidInputError

    aoi = aoi_from_bbox(bbox_arg(tiles_bbox(*tile_origin(), 2, 2)))
    with pytest.raises(InvalidInputError, match="unit_zoom_delta 2 is too small"):
        run_scan(aoi, "http://127.0.0.1:9/{z}/{x}/{y}.png", ZOOM, tmp_path / "p.db", ScanSettings(unit_zoom_delta=2))
