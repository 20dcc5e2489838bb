"""Issue 28's done-when: one AOI and URL template scanned at two dates, a pit field appearing between them."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from amberwatch.cli import main
from amberwatch.project import Project
from amberwatch.results.store import scan_layers
from amberwatch.scan.rescan import rescan
from tests.scan.conftest import put_image_tiles, texty_image, tile_origin, tiles_bbox, write_aoi


def _scan(aoi, url: str, db, date: str, *extra: str) -> None:
    how = extra or ("--workers", "1")
    args = ["scan", "--aoi", str(aoi), "--imagery", url, "--zoom", "18", "--db", str(db), *how]
    result = CliRunner().invoke(main, [*args, "--no-progress", "--imagery-date", date], catch_exceptions=False)
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_a_pit_field_appearing_between_two_dates_is_new_with_zero_hectares_before(tile_server, tmp_path):
    x0, y0 = tile_origin()
    put_image_tiles(tile_server, texty_image("negative1"), x0, y0, 3, 3)  # 2019: no mining there
    aoi, db = write_aoi(tmp_path / "aoi.geojson", tiles_bbox(x0, y0, 3, 3)), tmp_path / "p.db"
    _scan(aoi, tile_server.url, db, "2019-06-26")
    put_image_tiles(tile_server, texty_image("positive1"), x0, y0, 3, 3)  # same URLs, the pits of positive1
    _scan(aoi, tile_server.url, db, "2023-06-26")

    result = CliRunner().invoke(main, ["timeline", "--db", str(db), "--aoi", str(aoi), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dates"] == ["2019-06-26", "2023-06-26"]
    assert data["sites"], "the pit field of positive1 must be found at the later date"
    for site in data["sites"]:
        assert site["status"] == "new" and site["first_seen"] == site["last_seen"] == "2023-06-26"
        assert site["area_ha"]["2019-06-26"] == 0 and site["area_ha"]["2023-06-26"] > 0


@pytest.mark.slow
def test_dask_scans_and_rescans_keep_each_date_apart(tile_server, tmp_path):
    """The later date scanned on a Dask LocalCluster; each date rescanned from its own cache entries alone."""
    x0, y0 = tile_origin()
    put_image_tiles(tile_server, texty_image("negative1"), x0, y0, 3, 3)
    aoi, db = write_aoi(tmp_path / "aoi.geojson", tiles_bbox(x0, y0, 3, 3)), tmp_path / "p.db"
    _scan(aoi, tile_server.url, db, "2019-06-26")
    put_image_tiles(tile_server, texty_image("positive1"), x0, y0, 3, 3)
    _scan(aoi, tile_server.url, db, "2023-06-26", "--dask", "local", "--workers", "2")

    with Project(db) as project:
        early, late = sorted(scan_layers(project.connection()), key=lambda layer: layer.scan.imagery_date)
    assert (early.scan.imagery_date, late.scan.imagery_date) == ("2019-06-26", "2023-06-26")
    requests = len(tile_server.tile_requests())
    redone = {la.scan.imagery_date: rescan(db, la.scan.id, la.scan.model_version) for la in (early, late)}
    assert len(tile_server.tile_requests()) == requests  # from the cache, each date its own entries
    assert redone["2019-06-26"].detections == early.detections == 0
    assert redone["2023-06-26"].detections == late.detections > 0
    assert redone["2023-06-26"].detections_area_ha == pytest.approx(late.hectares)
    with Project(db) as project:
        dates = {layer.scan.id: layer.scan.imagery_date for layer in scan_layers(project.connection())}
    assert [dates[redone[d].scan_id] for d in ("2019-06-26", "2023-06-26")] == ["2019-06-26", "2023-06-26"]
