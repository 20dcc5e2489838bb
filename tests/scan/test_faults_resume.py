"""Failures and interruptions: failed tiles are recorded and retried, a SIGKILLed scan resumes exactly."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from amberwatch.imagery.aoi import aoi_from_bbox
from amberwatch.scan.engine import ScanSettings, run_scan
from tests.scan.conftest import ZOOM, bbox_arg, put_mosaic_tiles, tile_origin, tiles_bbox

AMBERWATCH = str(Path(sys.executable).with_name("amberwatch"))


def tile_rows(db: Path) -> dict[tuple[int, int], tuple]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT x, y, status, attempts, grid FROM scan_tiles ORDER BY y, x").fetchall()
    finally:
        conn.close()
    return {(x, y): (status, attempts, grid) for x, y, status, attempts, grid in rows}


def detections(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT geometry_geojson, round(area_ha, 6), round(mean_prob, 6), max_prob FROM detections ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


@pytest.mark.slow
def test_failed_tiles_are_recorded_and_retried_on_the_next_run(tile_server, tmp_path):
    x0, y0 = tile_origin((40, 0))
    put_mosaic_tiles(tile_server, x0, y0, 6, 6)
    missing = (x0 + 5, y0 + 5)
    del tile_server.tiles[(ZOOM, *missing)]  # 404: no imagery, not a failure
    faulty = {
        (x0, y0): ["500", "500"],
        (x0 + 5, y0): ["429", "429"],
        (x0, y0 + 5): ["timeout", "timeout"],
        (x0 + 3, y0 + 2): ["truncated", "truncated"],
    }
    for xy, faults in faulty.items():
        tile_server.faults[(ZOOM, *xy)] = list(faults)
    tile_server.retry_after_s = 0
    tile_server.timeout_s = 1.5
    aoi = aoi_from_bbox(bbox_arg(tiles_bbox(x0, y0, 6, 6)))
    db = tmp_path / "faults.db"
    settings = ScanSettings(workers=1, progress=False, source_options={"max_retries": 1, "timeout_s": 0.5})

    first = run_scan(aoi, tile_server.url, ZOOM, db, settings)
    rows = tile_rows(db)
    failed = {xy for xy, r in rows.items() if r[0] == "failed"}
    assert set(faulty) <= failed  # plus tiles that needed a failed neighbour for context
    assert rows[missing][0] == "empty"
    assert first.tiles_failed == len(failed) and first.tiles_empty == 1 and len(rows) == 36

    requests_before = len(tile_server.tile_requests())
    second = run_scan(aoi, tile_server.url, ZOOM, db, settings)
    assert second.resumed and second.scan_id == first.scan_id
    assert second.tiles_failed == 0 and second.tiles_done == 35 and second.tiles_empty == 1
    assert second.tiles_processed_now == len(failed)
    rows2 = tile_rows(db)
    for xy, (_status, attempts, _grid) in rows2.items():
        assert attempts == (2 if xy in failed else 1), xy
    # Only tiles that had failed went back to the server (a faulty tile may already have been fetched
    # as another unit's neighbour after its faults ran out); everything else came from the cache.
    refetched = tile_server.tile_requests()[requests_before:]
    assert refetched and set(refetched) <= {f"/{ZOOM}/{x}/{y}.png" for x, y in faulty}


def wait_for_tiles(db: Path, at_least: int, timeout_s: float = 60.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if db.exists():
            try:
                conn = sqlite3.connect(db, timeout=1)
                n = conn.execute("SELECT COUNT(*) FROM scan_tiles").fetchone()[0]
                conn.close()
                if n >= at_least:
                    return n
            except sqlite3.OperationalError:
                pass
        time.sleep(0.02)
    raise AssertionError(f"no tiles written to {db} within {timeout_s} s")


@pytest.mark.slow
def test_sigkill_mid_scan_then_same_command_finishes_every_tile_once(tile_server, tmp_path):
    x0, y0 = tile_origin((-40, 8))
    n = 12
    put_mosaic_tiles(tile_server, x0, y0, n, n)
    bbox = bbox_arg(tiles_bbox(x0, y0, n, n))
    db = tmp_path / "killed.db"
    cmd = [
        AMBERWATCH,
        "scan",
        "--bbox",
        bbox,
        "--imagery",
        tile_server.url,
        "--zoom",
        str(ZOOM),
        "--db",
        str(db),
        "--workers",
        "2",
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        done_before_kill = wait_for_tiles(db, 1)
        helpers = psutil.Process(proc.pid).children(recursive=True)  # forkserver and pool workers
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    _gone, alive = psutil.wait_procs(helpers, timeout=15)
    assert not alive, f"pool processes outlived the killed scan: {alive}"
    interrupted = tile_rows(db)
    assert 0 < len(interrupted) < n * n, "kill must land mid-scan"
    assert done_before_kill <= len(interrupted)

    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    rows = tile_rows(db)
    assert len(rows) == n * n
    assert all(status == "done" and attempts == 1 for status, attempts, _ in rows.values())
    for xy, row in interrupted.items():
        assert rows[xy] == row  # tiles recorded before the kill were not redone
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*), MAX(id) FROM scans").fetchone() == (1, 1)
    conn.close()

    # An uninterrupted scan of the same AOI (fresh DB and cache) gives the same grids and detections.
    clean_db = tmp_path / "clean" / "clean.db"
    clean_db.parent.mkdir()
    run_scan(aoi_from_bbox(bbox), tile_server.url, ZOOM, clean_db, ScanSettings(workers=2, progress=False))
    assert {xy: r[2] for xy, r in tile_rows(clean_db).items()} == {xy: r[2] for xy, r in rows.items()}
    assert detections(clean_db) == detections(db)


def test_rerunning_a_complete_scan_keeps_its_detections(tile_server, tmp_path):
    from tests.scan.conftest import put_image_tiles, texty_image

    x0, y0 = tile_origin((60, 0))
    put_image_tiles(tile_server, texty_image("positive1"), x0, y0, 3, 3)
    aoi = aoi_from_bbox(bbox_arg(tiles_bbox(x0, y0, 3, 3)))
    db = tmp_path / "again.db"
    settings = ScanSettings(workers=1, progress=False)
    first = run_scan(aoi, tile_server.url, ZOOM, db, settings)
    ids = [r[0] for r in sqlite3.connect(db).execute("SELECT id FROM detections ORDER BY id")]
    again = run_scan(aoi, tile_server.url, ZOOM, db, settings)
    assert again.scan_id == first.scan_id and again.tiles_processed_now == 0
    assert [r[0] for r in sqlite3.connect(db).execute("SELECT id FROM detections ORDER BY id")] == ids
    fresh = run_scan(aoi, tile_server.url, ZOOM, db, ScanSettings(workers=1, progress=False, new=True))
    assert fresh.scan_id == first.scan_id + 1 and fresh.tiles_processed_now == 9


@pytest.mark.slow
def test_precision_is_part_of_the_scan_identity(tile_server, tmp_path):
    """An fp32 scan resumes only in fp32; the int8 default starts its own layer, and --fp32 again resumes the first."""
    x0, y0 = tile_origin((44, 0))
    put_mosaic_tiles(tile_server, x0, y0, 2, 2)
    tile_server.faults[(ZOOM, x0, y0)] = ["500", "500"]
    tile_server.retry_after_s = 0
    aoi = aoi_from_bbox(bbox_arg(tiles_bbox(x0, y0, 2, 2)))
    db = tmp_path / "precision.db"
    options = {"max_retries": 1, "timeout_s": 2.0}
    fp32 = ScanSettings(workers=1, progress=False, int8=False, source_options=options)
    first = run_scan(aoi, tile_server.url, ZOOM, db, fp32)
    assert first.tiles_failed > 0
    other = run_scan(aoi, tile_server.url, ZOOM, db, ScanSettings(workers=1, progress=False, source_options=options))
    assert not other.resumed and other.scan_id == first.scan_id + 1 and other.tiles_failed == 0
    second = run_scan(aoi, tile_server.url, ZOOM, db, fp32)
    assert second.resumed and second.scan_id == first.scan_id and second.tiles_failed == 0
    with sqlite3.connect(db) as conn:
        params = [json.loads(r[0]) for r in conn.execute("SELECT params_json FROM scans ORDER BY id")]
    assert [p["int8"] for p in params] == [False, True]
    assert params[0]["int8_check"] is None and params[1]["int8_check"]["passed"] is True
