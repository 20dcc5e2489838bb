"""The same URL template at two imagery dates: two scans, two cache entries per tile; each date resumes its own."""

from __future__ import annotations

import sqlite3

import pytest
from click.testing import CliRunner

from amberwatch.cli import main
from amberwatch.imagery.aoi import aoi_from_bbox
from amberwatch.project import tile_cache_path
from amberwatch.scan.engine import ScanSettings, run_scan
from tests.fixtures.old_project.make import SIDE, X0, Y0, ZOOM, bbox_text, serve, synthetic_tile


def _settings(imagery_date: str | None) -> ScanSettings:
    return ScanSettings(workers=1, progress=False, min_area_ha=0.0, imagery_date=imagery_date)


@pytest.mark.slow
def test_same_template_at_two_imagery_dates_gives_two_scans_and_two_cache_entries_per_tile(tile_server, tmp_path):
    serve(tile_server)
    aoi, db = aoi_from_bbox(bbox_text()), tmp_path / "dates.db"
    first = run_scan(aoi, tile_server.url, ZOOM, db, _settings("2018-06"))
    for z, x, y in list(tile_server.tiles):  # the server's imagery changes, at the same URLs (as Wayback's does)
        tile_server.tiles[(z, x, y)] = synthetic_tile(x + 1000, y)
    second = run_scan(aoi, tile_server.url, ZOOM, db, _settings("2024-06"))
    assert not second.resumed and second.scan_id != first.scan_id
    assert second.tiles_done == first.tiles_done == SIDE * SIDE

    requests = len(tile_server.tile_requests())
    again = run_scan(aoi, tile_server.url, ZOOM, db, _settings("2018-06"))
    assert again.resumed and again.scan_id == first.scan_id and again.tiles_processed_now == 0
    assert len(tile_server.tile_requests()) == requests

    with sqlite3.connect(tile_cache_path(db)) as cache:
        for x in range(X0, X0 + SIDE):
            for y in range(Y0, Y0 + SIDE):
                rows = cache.execute("SELECT source_id, data FROM tiles WHERE z = ? AND x = ? AND y = ?", (ZOOM, x, y))
                ids, blobs = zip(*rows.fetchall(), strict=True)
                assert sorted(i.split("@")[1] for i in ids) == ["2018-06", "2024-06"] and len(set(blobs)) == 2
    with sqlite3.connect(db) as conn:
        scans = conn.execute("SELECT id, imagery, imagery_date FROM scans ORDER BY id").fetchall()
    assert scans == [(first.scan_id, tile_server.url, "2018-06"), (second.scan_id, tile_server.url, "2024-06")]

    undated = run_scan(aoi, tile_server.url, ZOOM, db, _settings(None))  # undated is a ref of its own
    assert not undated.resumed and undated.scan_id not in (first.scan_id, second.scan_id)


def test_a_date_the_source_has_no_imagery_for_is_a_one_line_error_naming_it(tile_server, tmp_path):
    db = tmp_path / "d.db"
    template = tile_server.url.replace("{z}", "{date}/{z}")  # the server holds no tile at all: every read is a 404
    args = ["scan", "--bbox", bbox_text(), "--imagery", template, "--zoom", str(ZOOM), "--db", str(db)]
    result = CliRunner().invoke(main, [*args, "--workers", "1", "--no-progress", "--imagery-date", "2017-01-01"])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(lines) == 1 and "'2017-01-01'" in lines[0] and "no imagery" in lines[0]
    assert "Traceback" not in result.output
