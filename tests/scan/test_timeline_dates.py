"""Issue 28's done-when: one AOI and URL template scanned at two dates, a pit field appearing between them."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from amberwatch.cli import main
from tests.scan.conftest import put_image_tiles, texty_image, tile_origin, tiles_bbox, write_aoi


def _scan(aoi, url: str, db, date: str) -> None:
    args = ["scan", "--aoi", str(aoi), "--imagery", url, "--zoom", "18", "--db", str(db), "--workers", "1"]
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
