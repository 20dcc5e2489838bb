"""Tile enumeration: exact, streamed, units partition the tiles, edges that only touch are skipped."""

from __future__ import annotations

import json
import time
import types

import mercantile
import pytest
import shapely
import shapely.geometry
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Point, box

from amberwatch.cli import main
from amberwatch.imagery.tiles import tile_area_km2
from amberwatch.scan.tiling import count_tiles, iter_tiles, iter_units


def brute_force(geometry, zoom):
    west, south, east, north = geometry.bounds
    out = set()
    for t in mercantile.tiles(west, south, east, north, zooms=zoom):
        square = box(*mercantile.bounds(t))
        if geometry.intersects(square) and not geometry.touches(square):
            out.add((zoom, t.x, t.y))
    return out


@settings(max_examples=25, deadline=None)
@given(lon=st.floats(-170, 170), lat=st.floats(-70, 70), radius=st.floats(0.0005, 0.01), zoom=st.integers(14, 18))
def test_enumeration_matches_brute_force(lon, lat, radius, zoom):
    geom = Point(lon, lat).buffer(radius, quad_segs=4)
    expected = brute_force(geom, zoom)
    got = list(iter_tiles(geom, zoom))
    assert len(got) == len(set(got))
    assert set(got) == expected
    assert count_tiles(geom, zoom) == len(expected)


def test_units_partition_the_tiles_and_stay_inside_their_parent():
    geom = Point(26.9, 51.32).buffer(0.01)
    seen = set()
    for unit in iter_units(geom, 18, unit_zoom_delta=3):
        px, py, pz = unit.parent
        assert pz == 15
        for x, y in unit.tiles:
            assert mercantile.parent(mercantile.Tile(x, y, 18), zoom=15) == mercantile.Tile(px, py, pz)
            assert (x, y) not in seen
            seen.add((x, y))
    assert len(seen) == count_tiles(geom, 18)


def test_tiles_that_only_touch_the_aoi_edge_are_skipped():
    west, south, east, north = mercantile.bounds(1000, 1000, 12)
    geom = box(west, south, east, north)  # exactly one tile; its 8 neighbours touch it
    assert list(iter_tiles(geom, 12)) == [(12, 1000, 1000)]
    assert count_tiles(geom, 14) == 16


def test_enumeration_is_a_stream():
    units = iter_units(Point(26.9, 51.32).buffer(0.5), 18)
    assert isinstance(units, types.GeneratorType)
    first = next(units)  # a large AOI yields its first unit without listing the rest
    assert 0 < len(first.tiles) <= 64


def test_count_of_a_large_aoi_is_fast_and_exact_on_inner_quads():
    geom = shapely.box(26.0, 51.0, 27.0, 51.5)
    n = count_tiles(geom, 18)
    assert 400_000 < n < 800_000


def test_tile_area_matches_ground_resolution():
    t = mercantile.tile(26.9, 51.32, 18)
    area = tile_area_km2(18, t.y)
    assert abs(area - (0.373 * 256 / 1000) ** 2) / area < 0.01


def many_squares(n: int, side_deg: float = 0.0008) -> shapely.MultiPolygon:
    """n small squares on a grid near Gdańsk, some pairs within one zoom-18 tile (spacing ~ 2 tiles)."""
    cols = int(n**0.5) + 1
    squares = [
        box(x, y, x + side_deg, y + side_deg)
        for i in range(n)
        for x, y in [(18.5 + (i % cols) * 0.003 + (i % 7) * 1e-4, 54.2 + (i // cols) * 0.002 + (i % 5) * 1e-4)]
    ]
    return shapely.union_all(squares)


def test_many_polygons_count_exactly_as_brute_force():
    geom = many_squares(400)
    expected = set().union(*(brute_force(part, 18) for part in geom.geoms))
    assert count_tiles(geom, 18) == len(expected)
    assert set(iter_tiles(geom, 18)) == expected


@pytest.mark.slow
def test_dry_run_of_50000_polygons_plans_in_under_a_minute(tmp_path):
    """Issue 26: 50,000 small polygons were still counting after 300 s; an STRtree and batched tests make it fast
    (13 s here; the bound guards against the quadratic count, not a speed target)."""
    geom = many_squares(50_000)
    path = tmp_path / "aoi.geojson"
    features = [{"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(p)} for p in geom.geoms]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    started = time.monotonic()
    result = CliRunner().invoke(main, ["scan", "--aoi", str(path), "--dry-run", "--zoom", "18"])
    elapsed_s = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert f"{count_tiles(geom, 18):,} tiles at zoom 18" in result.output
    assert elapsed_s < 60, elapsed_s
