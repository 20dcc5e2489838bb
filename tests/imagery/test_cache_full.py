"""A full tile cache: the write that does not fit is a StorageFullError naming the cache; the tiles before stay."""

from __future__ import annotations

import os

import pytest

from amberwatch.errors import StorageFullError
from amberwatch.imagery.cache import TileCache
from tests.fixtures.diskfull import cap_sqlite_file


def test_a_full_tile_cache_names_itself_and_keeps_the_tiles_stored_before(tmp_path, monkeypatch):
    path = tmp_path / "full-tiles.mbtiles"
    TileCache(path).close()
    cap = cap_sqlite_file(monkeypatch, path, spare_pages=4)
    cache = TileCache(path)
    stored = []

    def fill() -> None:
        for x in range(100):
            cache.put("src", 18, x, 0, os.urandom(3000))
            stored.append(x)

    with pytest.raises(StorageFullError) as caught:
        fill()
    cache.close()
    assert f"tile cache {str(path)!r} could not be written" in str(caught.value)
    assert "work done so far is kept" in str(caught.value)
    cap.lift()
    with TileCache(path) as again:
        assert 0 < len(stored) == again.count("src")
        again.put("src", 18, 999, 0, os.urandom(3000))  # with space again, writing goes on
        assert again.count("src") == len(stored) + 1
