"""Scanning Esri World Imagery Wayback releases (the fake on 127.0.0.1): two releases, two scans, one timeline."""

from __future__ import annotations

import json
import sqlite3
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from amberwatch.cli import main
from tests.scan.conftest import put_image_tiles, texty_image, tile_origin, tiles_bbox, write_aoi


def _scan(aoi, spec: str, db) -> None:
    args = ["scan", "--aoi", str(aoi), "--imagery", spec, "--zoom", "18", "--db", str(db), "--workers", "1"]
    result = CliRunner().invoke(main, [*args, "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_two_wayback_releases_give_two_scans_and_the_timeline_shows_the_new_pits(wayback, tmp_path):
    x0, y0 = tile_origin()
    wayback.add_release(16749, "2019-06-26", captured="2019-04-11")
    wayback.add_release(20399, "2023-06-26", captured="2023-05-02")
    put_image_tiles(SimpleNamespace(tiles=wayback.changes[16749]), texty_image("negative1"), x0, y0, 3, 3)
    put_image_tiles(SimpleNamespace(tiles=wayback.changes[20399]), texty_image("positive1"), x0, y0, 3, 3)
    aoi, db = write_aoi(tmp_path / "aoi.geojson", tiles_bbox(x0, y0, 3, 3)), tmp_path / "p.db"
    _scan(aoi, "wayback:2019-06-26", db)
    _scan(aoi, "wayback:20399", db)  # by release number: the same release date, the same kind of id

    with sqlite3.connect(db) as conn:
        scans = conn.execute("SELECT imagery, imagery_source_id, imagery_date FROM scans ORDER BY id").fetchall()
        tile_dates = conn.execute("SELECT DISTINCT scan_id, capture_date FROM scan_tiles ORDER BY scan_id").fetchall()
        detection_dates = {d for (d,) in conn.execute("SELECT DISTINCT capture_date FROM detections")}
    assert [(s[0], s[2]) for s in scans] == [("wayback:2019-06-26", "2019-06-26"), ("wayback:2023-06-26", "2023-06-26")]
    assert scans[0][1].split("@")[0] == scans[1][1].split("@")[0] and scans[1][1].endswith("@2023-06-26")
    assert [d for _, d in tile_dates] == ["2019-04-11", "2023-05-02"], "each tile keeps its metadata capture date"
    assert detection_dates == {"2023-05-02"}, "a detection takes the capture date of its tiles"
    assert len(wayback.paths("/config/")) == 1, "the release list is fetched once for both scans and their workers"

    result = CliRunner().invoke(main, ["timeline", "--db", str(db), "--aoi", str(aoi), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dates"] == ["2019-06-26", "2023-06-26"] and data["sites"]
    for site in data["sites"]:
        assert site["status"] == "new" and site["area_ha"]["2019-06-26"] == 0 and site["area_ha"]["2023-06-26"] > 0
