"""Esri World Imagery Wayback against the fake on 127.0.0.1 (tests/fixtures/wayback.py, the real formats)."""

from __future__ import annotations

import json
from datetime import date

import mercantile
import pytest
from click.testing import CliRunner

from amberwatch.cli import main
from amberwatch.errors import ImageryError, InvalidInputError, UnreachableError
from amberwatch.imagery.aoi import aoi_from_bbox
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.open import open_source
from amberwatch.imagery.wayback import local_changes
from amberwatch.project import tile_cache_path
from tests.fixtures.wayback import WaybackServer

from .conftest import tile_png

Z, X0, Y0 = 16, 38_740, 22_030  # four tiles near Klesiv


def _three_releases(wb: WaybackServer) -> None:
    """2015: all four AOI tiles; 2018: a tile outside the AOI only; 2021: one AOI tile new, one re-sent unchanged."""
    wb.add_release(9203, "2015-04-15", captured="2014-11-02")
    wb.add_release(13161, "2018-01-08", captured="2017-08-01")
    wb.add_release(13534, "2021-06-30", captured="2021-03-15")
    for i, (dx, dy) in enumerate([(0, 0), (1, 0), (0, 1), (1, 1)]):
        wb.changes[9203][(Z, X0 + dx, Y0 + dy)] = tile_png(i + 1)
    wb.changes[13161][(Z, X0 + 5, Y0)] = tile_png(50)
    wb.changes[13534][(Z, X0, Y0)] = tile_png(99)
    wb.changes[13534][(Z, X0 + 1, Y0)] = tile_png(2)  # the tilemap names it, its bytes did not change


def _aoi_bbox() -> str:
    west, _, _, north = mercantile.bounds(X0, Y0, Z)
    _, south, east, _ = mercantile.bounds(X0 + 1, Y0 + 1, Z)
    eps = 1e-7
    return f"{west + eps},{south + eps},{east - eps},{north - eps}"


def test_a_release_by_date_or_number_reads_its_own_tiles_with_capture_dates(wayback, cache: TileCache) -> None:
    _three_releases(wayback)
    with open_source("wayback:2015-04-15", cache=cache) as old, open_source("wayback:13534", cache=cache) as new:
        before, after = old.read_tile(Z, X0, Y0), new.read_tile(Z, X0, Y0)
        assert old.imagery_date == "2015-04-15" and new.imagery_date == "2021-06-30"
        assert old.source_id.split("@")[0] == new.source_id.split("@")[0]  # one source, two releases
        assert old.source_id.endswith("@2015-04-15") and new.source_id.endswith("@2021-06-30")
        assert old.spec == "wayback:2015-04-15" and new.spec == "wayback:2021-06-30"
        unchanged = new.read_tile(Z, X0, Y0 + 1)  # 2021 shows the 2015 tile where nothing changed
    assert before is not None and after is not None and unchanged is not None
    assert (before.pixels != after.pixels).any()
    assert before.capture_date == date(2014, 11, 2) and after.capture_date == date(2021, 3, 15)
    assert unchanged.capture_date == date(2014, 11, 2)
    assert cache.get(new.source_id, Z, X0, Y0).capture_date == "2021-03-15"  # kept with the tile
    assert any("/tile/13534/16/22030/38740" in p for p in wayback.paths("/tile/"))
    assert len(wayback.paths("/config/")) == 1, "the release list is fetched once, then read from the tile cache"


def test_the_kept_release_list_opens_releases_offline(wayback, cache: TileCache) -> None:
    _three_releases(wayback)
    open_source("wayback:2018-01-08", cache=cache).close()
    wayback.stop()
    with open_source("wayback:2021-06-30", cache=cache) as src:
        assert src.imagery_date == "2021-06-30"


def test_imagery_releases_lists_only_the_releases_that_changed_over_the_aoi(wayback, tmp_path) -> None:
    _three_releases(wayback)
    aoi, db = aoi_from_bbox(_aoi_bbox()), tmp_path / "p.db"
    with TileCache(tile_cache_path(db)) as cache:
        changes, sampled = local_changes(aoi, Z, cache=cache)
    assert sampled == 4
    assert [(c.release.number, c.tiles_changed) for c in changes] == [(9203, 4), (13534, 1)]
    assert changes[0].capture_dates == ("2014-11-02",) and changes[1].capture_dates == ("2021-03-15",)
    tilemaps = len(wayback.paths("/tilemap/"))
    assert tilemaps <= 4 * 3, "bounded: one tilemap request per change found, plus one, per sample tile"

    geojson = tmp_path / "aoi.geojson"
    geojson.write_text(json.dumps({"type": "Polygon", "coordinates": [list(aoi.geometry.exterior.coords)]}))
    args = ["imagery", "releases", "--aoi", str(geojson), "--zoom", str(Z), "--db", str(db)]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)["releases"]
    assert [(r["release"], r["date"], r["spec"]) for r in listed] == [
        (9203, "2015-04-15", "wayback:2015-04-15"),
        (13534, "2021-06-30", "wayback:2021-06-30"),
    ]
    text = CliRunner().invoke(main, args)
    assert text.exit_code == 0 and "2 Wayback releases changed" in text.stdout and "release 13534" in text.stdout


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        (
            "wayback:2019-06-26",
            "no Wayback release with date 2019-06-26; nearest: 2018-01-08 (release 13161), 2021-06-30 (release 13534)",
        ),
        ("wayback:13000", "no Wayback release with number 13000; nearest: 2018-01-08 (release 13161)"),
        ("wayback:2019-02-30", "Wayback release date '2019-02-30' is not a real date"),
        ("wayback:latest", "Wayback release 'latest' is neither a release date YYYY-MM-DD nor a release number"),
        ("wayback", "names no release"),
    ],
)
def test_unknown_releases_are_one_line_errors_naming_them_and_the_nearest(wayback, cache, spec, says) -> None:
    _three_releases(wayback)
    with pytest.raises(InvalidInputError) as err:
        open_source(spec, cache=cache)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_a_release_newer_than_the_kept_list_fetches_it_again(wayback, cache: TileCache) -> None:
    _three_releases(wayback)
    open_source("wayback:2015-04-15", cache=cache).close()
    wayback.add_release(14000, "2022-01-12", captured="2021-12-01")
    with open_source("wayback:2022-01-12", cache=cache) as src:
        assert src.imagery_date == "2022-01-12"
    assert len(wayback.paths("/config/")) == 2


def test_wayback_is_dated_by_its_release_only(wayback, cache: TileCache) -> None:
    _three_releases(wayback)
    with pytest.raises(InvalidInputError, match="dated by its release"):
        open_source("wayback:2015-04-15", cache=cache, imagery_date="2015-04-15")


def test_a_dead_config_endpoint_with_nothing_kept_is_a_one_line_error(monkeypatch, cache: TileCache) -> None:
    dead = WaybackServer()  # bound, never started, then closed: nothing listens on its port
    url = dead.config_url
    dead._httpd.server_close()
    monkeypatch.setenv("AMBERWATCH_WAYBACK_CONFIG_URL", url)
    with pytest.raises(UnreachableError) as err:
        open_source("wayback:2015-04-15", cache=cache)
    assert f"cannot fetch the Wayback config from {url}" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 200, "is not valid JSON"),
        (b"[1, 2]", 200, "is not an object of releases keyed by release number"),
        (json.dumps({"10": {"itemTitle": "World Imagery (Wayback 2014-02-20)"}}).encode(), 200, "is not a tile"),
        (json.dumps({"10": {"itemTitle": "World Imagery", "itemURL": "x"}}).encode(), 200, "has no date"),
        (b"busy", 503, "answered HTTP 503"),
    ],
)
def test_a_malformed_or_failing_config_is_a_one_line_error_naming_the_url(wayback, cache, body, status, says) -> None:
    wayback.config_body, wayback.config_status = body, status
    with pytest.raises(ImageryError) as err:
        open_source("wayback:2015-04-15", cache=cache)
    message = str(err.value)
    assert says in message and wayback.config_url in message and "\n" not in message
    assert cache.get_document(wayback.config_url) is None, "a bad answer is never kept"


def test_a_tile_cache_made_before_source_documents_is_upgraded_keeping_its_tiles(tmp_path) -> None:
    from amberwatch import db as project_db
    from amberwatch.imagery.cache import MIGRATIONS

    path = tmp_path / "old-tiles.sqlite"
    conn = project_db.connect(path)
    assert project_db.migrate(conn, "tile_cache", MIGRATIONS[:3]) == 3
    conn.execute(
        "INSERT INTO tiles (source_id, z, x, y, status, data, fetched_at) VALUES ('xyz-1', 3, 1, 2, 'ok', ?, 'then')",
        (tile_png(1),),
    )
    conn.close()
    with TileCache(path) as cache:  # the code's migrations: v4 added
        assert cache.get("xyz-1", 3, 1, 2) is not None and cache.get_document("http://h/c.json") is None
        cache.put_document("http://h/c.json", b"{}")
        assert cache.get_document("http://h/c.json") == b"{}"


def test_imagery_releases_offline_with_nothing_kept_is_one_error_line(monkeypatch, tmp_path) -> None:
    dead = WaybackServer()
    url = dead.config_url
    dead._httpd.server_close()
    monkeypatch.setenv("AMBERWATCH_WAYBACK_CONFIG_URL", url)
    aoi = tmp_path / "aoi.geojson"
    w, s, e, n = (float(v) for v in _aoi_bbox().split(","))
    aoi.write_text(json.dumps({"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}))
    result = CliRunner().invoke(main, ["imagery", "releases", "--aoi", str(aoi), "--db", str(tmp_path / "p.db")])
    assert result.exit_code == 1 and result.exception is not None
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: cannot fetch the Wayback config from " + url), lines
