"""Imagery identity with dates: ImageryRef, dated source ids, the cache's per-date entries, its migration and name."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from amberwatch.db import connect, migrate
from amberwatch.errors import InvalidInputError
from amberwatch.imagery.cache import MIGRATIONS, TileCache
from amberwatch.imagery.open import open_ref, open_source
from amberwatch.imagery.sources import spec_hash
from amberwatch.imagery.types import ImageryRef, check_imagery_date
from amberwatch.project import tile_cache_path

from .conftest import tile_png
from .test_local import write_utm_geotiff

TILE = (18, 150000, 87000)


@pytest.mark.parametrize("text", ["2018", "2018-06", "2018-06-30", "wayback-13161", "r2019.06_b"])
def test_imagery_dates_and_release_names_are_accepted(text):
    assert check_imagery_date(f" {text} ") == text


@pytest.mark.parametrize("text", ["2018-13", "2018-02-30", "2018-6", "2018.06", "2018/06", "a b", "-x", "x" * 65])
def test_bad_imagery_dates_are_refused_naming_the_value(text):
    with pytest.raises(InvalidInputError, match="imagery date"):
        ImageryRef("http://127.0.0.1/{z}/{x}/{y}.png", imagery_date=text)


def test_undated_source_id_is_the_template_hash_as_before_and_a_date_makes_another(tile_server):
    undated = open_source(tile_server.url)
    dated = open_ref(ImageryRef(tile_server.url, imagery_date="2018-06"))
    later = open_ref(ImageryRef(tile_server.url, imagery_date="2024-06"))
    try:
        assert undated.source_id == "xyz-" + spec_hash(tile_server.url)  # old caches and scans keep matching
        assert undated.imagery_date is None
        assert dated.source_id == undated.source_id + "@2018-06" and dated.imagery_date == "2018-06"
        assert len({undated.source_id, dated.source_id, later.source_id}) == 3
    finally:
        for source in (undated, dated, later):
            source.close()


def test_same_template_at_two_dates_caches_each_tile_twice(tile_server, cache):
    """The server changes its imagery between the two dates (as Wayback does): each date keeps its own tile."""
    tile_server.tiles[TILE] = tile_png(1)
    with open_ref(ImageryRef(tile_server.url, imagery_date="2018-06"), cache=cache) as first:
        old = first.read_tile(*TILE)
    tile_server.tiles[TILE] = tile_png(2)
    with open_ref(ImageryRef(tile_server.url, imagery_date="2024-06"), cache=cache) as second:
        new = second.read_tile(*TILE)
    with open_ref(ImageryRef(tile_server.url, imagery_date="2018-06"), cache=cache) as again:
        assert (again.read_tile(*TILE).pixels == old.pixels).all()  # from the cache, not the server's new tile
    assert len(tile_server.tile_requests()) == 2
    assert not (old.pixels == new.pixels).all()
    assert cache.count(first.source_id) == cache.count(second.source_id) == 1
    base = first.source_id.split("@")[0]
    assert cache.imagery_dates(base) == {first.source_id: "2018-06", second.source_id: "2024-06"}


def test_cache_migration_makes_old_sources_the_undated_ref_of_themselves(tmp_path, tile_server):
    path = tmp_path / "old-tiles.mbtiles"
    conn = connect(path)
    migrate(conn, "tile_cache", MIGRATIONS[:2])  # the cache as the previous release made it
    old_id = "xyz-" + spec_hash(tile_server.url)
    conn.execute("INSERT INTO sources (source_id, spec, attribution) VALUES (?, ?, NULL)", (old_id, tile_server.url))
    conn.execute(
        "INSERT INTO tiles (source_id, z, x, y, status, data, content_type, capture_date, fetched_at)"
        " VALUES (?, ?, ?, ?, 'ok', ?, 'image/png', NULL, '2024-01-01T00:00:00+00:00')",
        (old_id, *TILE, tile_png(3)),
    )
    conn.close()
    with TileCache(path) as cache:
        assert cache.imagery_dates(old_id) == {old_id: None}
        with open_source(tile_server.url, cache=cache) as source:
            assert source.read_tile(*TILE) is not None  # the old entry serves the undated source
    assert tile_server.tile_requests() == []


def test_the_cache_is_named_sqlite_and_an_old_project_keeps_its_mbtiles_named_cache(tmp_path):
    assert tile_cache_path(tmp_path / "new.db") == tmp_path / "new-tiles.sqlite"
    old = tmp_path / "old-tiles.mbtiles"
    sqlite3.connect(old).close()
    assert tile_cache_path(tmp_path / "old.db") == old  # used where it is, not renamed
    (tmp_path / "old-tiles.sqlite").touch()
    assert tile_cache_path(tmp_path / "old.db") == tmp_path / "old-tiles.sqlite"


def test_a_geotiff_fills_in_its_own_date_without_changing_its_source_id(tmp_path: Path):
    tif = write_utm_geotiff(tmp_path / "dated.tif", TIFFTAG_DATETIME="2019:07:14 10:00:00")
    with open_source(str(tif)) as own, open_source(str(tif), imagery_date="2020") as given:
        assert own.imagery_date == "2019-07-14"
        assert own.source_id.startswith("geotiff-") and "@" not in own.source_id
        assert given.imagery_date == "2020" and given.source_id == own.source_id + "@2020"
