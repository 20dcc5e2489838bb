"""render_bbox mosaics and the read-only cached source used by the web app and the story."""

from __future__ import annotations

import numpy as np
import pytest

from amberwatch.errors import InvalidInputError
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.mosaic import open_cached_source, render_bbox
from amberwatch.imagery.open import open_source
from amberwatch.imagery.tiles import tile_lnglat_bbox
from amberwatch.imagery.types import LngLatBbox

from .conftest import tile_png

Z, X, Y = 18, 150000, 86000


def _serve_block(tile_server) -> None:
    for dx in range(2):
        for dy in range(2):
            tile_server.tiles[(Z, X + dx, Y + dy)] = tile_png(10 * dx + dy)


def _block_bbox() -> LngLatBbox:
    a, b = tile_lnglat_bbox(Z, X, Y), tile_lnglat_bbox(Z, X + 1, Y + 1)
    return LngLatBbox(a.west_deg, b.south_deg, b.east_deg, a.north_deg)


def test_render_bbox_stitches_tiles_in_place(tile_server, cache: TileCache) -> None:
    _serve_block(tile_server)
    with open_source(tile_server.url, cache=cache, capture_date="2018-05-01") as src:
        img = render_bbox(src, _block_bbox(), Z)
    assert img.pixels.shape == (512, 512, 3)
    assert tuple(img.pixels[0, 0]) == (0, 7, 9)  # tile (X, Y) top-left
    assert tuple(img.pixels[0, 256]) == (10, 7, 9)  # tile (X+1, Y)
    assert tuple(img.pixels[256, 0]) == (1, 7, 9)  # tile (X, Y+1)
    assert str(img.capture_date) == "2018-05-01"
    assert abs(img.bbox.west_deg - _block_bbox().west_deg) < 1e-9


def test_render_bbox_crops_and_shrinks(tile_server, cache: TileCache) -> None:
    _serve_block(tile_server)
    full = _block_bbox()
    # The middle half of the 2x2 block: 256x256 px centred on the shared corner.
    w, e = full.west_deg, full.east_deg
    s, n = full.south_deg, full.north_deg
    quarter = LngLatBbox(w + (e - w) / 4, s + (n - s) / 4, e - (e - w) / 4, n - (n - s) / 4)
    with open_source(tile_server.url, cache=cache) as src:
        crop = render_bbox(src, quarter, Z)
        small = render_bbox(src, full, Z, max_px=128)
    assert abs(crop.pixels.shape[0] - 256) <= 2 and abs(crop.pixels.shape[1] - 256) <= 2
    assert small.pixels.shape == (128, 128, 3)
    assert small.resolution_m_per_px == pytest.approx(crop.resolution_m_per_px * 4, rel=0.01)


def test_cached_source_reads_without_network(tile_server, cache: TileCache) -> None:
    _serve_block(tile_server)
    with open_source(tile_server.url, cache=cache) as src:
        live = render_bbox(src, _block_bbox(), Z)
        source_id = src.source_id
    n = len(tile_server.requests)
    tile_server.stop()
    offline = open_cached_source(cache, source_id)
    assert offline.spec == tile_server.url and (offline.min_zoom, offline.max_zoom) == (Z, Z)
    again = render_bbox(offline, _block_bbox(), Z)
    assert np.array_equal(again.pixels, live.pixels)
    assert offline.read_tile(Z, X + 5, Y) is None  # never fetched: black in a mosaic, no network
    assert len(tile_server.requests) == n


def test_render_bbox_refuses_huge_requests(tile_server, cache: TileCache) -> None:
    with (
        open_source(tile_server.url, cache=cache) as src,
        pytest.raises(InvalidInputError, match="tiles at zoom 18"),
    ):
        render_bbox(src, LngLatBbox(25.0, 50.0, 26.0, 51.0), 18)


def test_render_bbox_failed_tiles_are_black_and_reported(tile_server, cache: TileCache) -> None:
    _serve_block(tile_server)
    tile_server.faults[(Z, X + 1, Y + 1)] = ["500"] * 5
    with open_source(tile_server.url, cache=cache, max_retries=1) as src:
        src.backoff_base_s = 0.01
        img = render_bbox(src, _block_bbox(), Z)
    assert (img.pixels[256:, 256:] == 0).all() and img.pixels[:256, :256].any()
    assert len(img.warnings) == 1 and "x=150001 y=86001" in img.warnings[0]
    assert cache.get(src.source_id, Z, X + 1, Y + 1) is None  # failures are never cached
