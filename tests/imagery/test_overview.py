"""Overview tiles: lower zooms built from cached tiles (2x2 -> 1, recursively), stored, refreshed when stale."""

from __future__ import annotations

import io

import mercantile
import numpy as np
import pytest
from PIL import Image

from amberwatch.errors import InvalidInputError
from amberwatch.imagery import overview
from amberwatch.imagery.overview import build_overviews, overview_min_zoom, overview_tile
from amberwatch.imagery.types import LngLatBbox
from tests.imagery.conftest import uniform_png

SRC = "drone"
BASE = 17
X0, Y0 = 4 * 18_000, 4 * 11_000  # a z17 tile at a multiple of 4: its 4 x 4 block is one z15 tile


def put_block(cache, colours: dict[tuple[int, int], tuple[int, int, int]]) -> None:
    """Uniform base tiles at (X0 + dx, Y0 + dy)."""
    for (dx, dy), rgb in colours.items():
        cache.put(SRC, BASE, X0 + dx, Y0 + dy, uniform_png(rgb), content_type="image/png")


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGBA"))


def test_zoom_15_tile_is_the_4x4_block_downsampled(cache):
    colours = {(dx, dy): (40 * dx, 40 * dy, 200) for dx in range(4) for dy in range(4)}
    put_block(cache, colours)
    data, content_type = overview_tile(cache, SRC, BASE, 15, X0 // 4, Y0 // 4)
    assert content_type == "image/jpeg"  # fully covered: no transparency to keep
    px = pixels(data)
    assert px.shape == (256, 256, 4)
    for (dx, dy), rgb in colours.items():  # each base tile became a 64 px square of its colour
        centre = px[dy * 64 + 32, dx * 64 + 32, :3].astype(int)
        assert np.abs(centre - rgb).max() <= 6, (dx, dy, centre, rgb)


def test_partly_covered_tile_keeps_the_rest_transparent(cache):
    put_block(cache, {(0, 0): (250, 0, 0)})
    data, content_type = overview_tile(cache, SRC, BASE, 16, X0 // 2, Y0 // 2)
    assert content_type == "image/png"
    px = pixels(data)
    assert tuple(px[10, 10]) == (250, 0, 0, 255)
    assert px[200, 200, 3] == 0 and px[10, 200, 3] == 0


def test_no_imagery_under_a_tile_gives_none_and_empty_tiles_do_not_count(cache):
    cache.put(SRC, BASE, X0, Y0, None, status="empty")
    assert overview_tile(cache, SRC, BASE, 15, X0 // 4, Y0 // 4) is None
    assert overview_tile(cache, "other", BASE, 12, X0 // 32, Y0 // 32) is None


def test_zoom_12_over_a_few_tiles_is_not_blank(cache):
    put_block(cache, {(1, 1): (200, 180, 120), (2, 1): (60, 90, 45)})
    data, _ = overview_tile(cache, SRC, BASE, 12, X0 >> 5, Y0 >> 5)
    px = pixels(data)
    assert (px[..., 3] == 255).sum() == 2 * 8 * 8  # each base tile is 8 x 8 px at zoom 12
    assert len({tuple(p) for p in px[px[..., 3] == 255][:, :3]}) >= 2


def test_stored_overview_is_reused_and_rebuilt_when_the_cache_grows(cache, monkeypatch):
    put_block(cache, {(0, 0): (250, 0, 0)})
    first, _ = overview_tile(cache, SRC, BASE, 15, X0 // 4, Y0 // 4)
    decoded = []
    real = overview._decode
    monkeypatch.setattr(overview, "_decode", lambda data: decoded.append(1) or real(data))
    assert overview_tile(cache, SRC, BASE, 15, X0 // 4, Y0 // 4)[0] == first
    assert decoded == []  # served from the store
    put_block(cache, {(3, 3): (0, 0, 250)})  # a later scan adds a tile: the stored one is stale
    again, _ = overview_tile(cache, SRC, BASE, 15, X0 // 4, Y0 // 4)
    assert tuple(pixels(again)[255, 255][:3]) == (0, 0, 250) and decoded


def test_unreadable_base_tile_is_left_out(cache):
    put_block(cache, {(0, 0): (250, 0, 0)})
    cache.put(SRC, BASE, X0 + 1, Y0, b"not an image", content_type="image/png")
    data, _ = overview_tile(cache, SRC, BASE, 16, X0 // 2, Y0 // 2)
    px = pixels(data)
    assert tuple(px[10, 10]) == (250, 0, 0, 255) and px[10, 200, 3] == 0


@pytest.mark.parametrize(("z", "x"), [(17, X0), (18, X0), (4, 0), (15, 2**15)])
def test_bad_overview_zoom_or_index_is_refused(cache, z, x):
    with pytest.raises(InvalidInputError, match=f"overview tile {z}/{x}/"):
        overview_tile(cache, SRC, BASE, z, x, 0)


def test_build_overviews_level_by_level_then_serves_from_the_store(cache, monkeypatch):
    put_block(cache, {(dx, dy): (30 * dx, 30 * dy, 90) for dx in range(4) for dy in range(4)})
    assert build_overviews(cache, SRC, BASE, 12) == 4 + 1 + 1 + 1 + 1  # z16: 4 tiles, z15..z12: one each
    monkeypatch.setattr(overview, "_decode", lambda data: pytest.fail("rebuilt a stored overview"))
    for z in range(12, 17):
        assert overview_tile(cache, SRC, BASE, z, X0 >> (BASE - z), Y0 >> (BASE - z)) is not None
    assert build_overviews(cache, SRC, BASE, 12, stop=lambda: True) == 0


def test_min_zoom_reaches_five_levels_down_or_where_the_area_fits_in_2x2_tiles():
    small = mercantile.bounds(X0, Y0, BASE)
    assert overview_min_zoom(BASE, LngLatBbox(small.west, small.south, small.east, small.north)) == 12
    assert overview_min_zoom(BASE, None) == 12
    belt = LngLatBbox(26.5, 50.8, 28.5, 51.6)  # ~140 x 90 km
    z = overview_min_zoom(BASE, belt)
    assert 7 <= z <= 9
    assert overview_min_zoom(BASE, LngLatBbox(-170, -80, 170, 80)) == BASE - overview.MAX_LEVELS
