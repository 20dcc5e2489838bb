"""Tile math round trips (Hypothesis) and zoom choice."""

from __future__ import annotations

import math

import mercantile
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from amberwatch.errors import InvalidInputError
from amberwatch.imagery.tiles import (
    MAX_MERCATOR_LAT_DEG,
    lnglat_to_tile,
    lnglat_to_world_px,
    mercator_row_lat_deg,
    quadkey_to_tile,
    tile_center_lnglat,
    tile_count_for_bbox,
    tile_lnglat_bbox,
    tile_to_quadkey,
    tiles_for_bbox,
    tms_to_xyz_y,
    world_px_to_lnglat,
    xyz_to_tms_y,
    zoom_for_resolution,
)
from amberwatch.imagery.types import LngLatBbox, ground_resolution_m_per_px


@st.composite
def tiles(draw: st.DrawFn) -> tuple[int, int, int]:
    z = draw(st.integers(0, 22))
    return (z, draw(st.integers(0, 2**z - 1)), draw(st.integers(0, 2**z - 1)))


@given(tiles())
def test_quadkey_round_trip(t: tuple[int, int, int]) -> None:
    qk = tile_to_quadkey(*t)
    assert len(qk) == t[0]
    assert quadkey_to_tile(qk) == t if t[0] > 0 else True


@given(tiles())
def test_tms_flip_is_an_involution(t: tuple[int, int, int]) -> None:
    z, _, y = t
    assert 0 <= xyz_to_tms_y(z, y) < 2**z
    assert tms_to_xyz_y(z, xyz_to_tms_y(z, y)) == y


@given(tiles())
def test_tile_bounds_contain_their_centre(t: tuple[int, int, int]) -> None:
    b = tile_lnglat_bbox(*t)
    lon, lat = tile_center_lnglat(*t)
    assert b.west_deg <= lon <= b.east_deg and b.south_deg <= lat <= b.north_deg
    assert lnglat_to_tile(lon, lat, t[0]) == t


@given(st.floats(-179.99, 179.99), st.floats(-85.0, 85.0), st.integers(0, 22))
def test_lnglat_to_tile_to_bounds_contains_point(lon: float, lat: float, z: int) -> None:
    b = tile_lnglat_bbox(*lnglat_to_tile(lon, lat, z))
    eps = 1e-9
    assert b.west_deg - eps <= lon <= b.east_deg + eps and b.south_deg - eps <= lat <= b.north_deg + eps


def test_bad_quadkey_names_it() -> None:
    with pytest.raises(InvalidInputError, match="'0124'"):
        quadkey_to_tile("0124")


def test_tiles_for_bbox_matches_count() -> None:
    bbox = LngLatBbox(26.0, 51.0, 26.01, 51.01)
    listed = list(tiles_for_bbox(bbox, 17))
    assert len(listed) == tile_count_for_bbox(bbox, 17) and len(set(listed)) == len(listed)


def test_zoom_for_resolution_texty_imagery() -> None:
    # Texty's Bing z18 crops are ~0.38 m/px at ~51N.
    assert zoom_for_resolution(0.38, 51.0) == 18
    assert abs(ground_resolution_m_per_px(51.0, 18) - 0.376) < 0.01
    with pytest.raises(InvalidInputError):
        zoom_for_resolution(0.0, 51.0)


@given(tiles())
def test_world_px_of_a_tile_corner_is_its_index_times_the_tile_size(t):
    z, x, y = t
    west, north = mercantile.ul(x, y, z)
    px, py = lnglat_to_world_px(west, north, z)
    assert px == pytest.approx(x * 256, abs=1e-6) and py == pytest.approx(y * 256, abs=1e-6)
    lng, lat = world_px_to_lnglat(px, py, z)
    assert lng == pytest.approx(west, abs=1e-9) and lat == pytest.approx(north, abs=1e-9)


@pytest.mark.parametrize(("lat", "row_px"), [(90.0, 0.0), (89.99, 0.0), (-90.0, 512.0), (-86.0, 512.0)])
def test_world_px_clamps_latitude_to_the_mercator_square(lat, row_px):
    """Beyond +/-85.0511 degrees a point lies on the world's edge (a finite pixel), never at infinity."""
    px, py = lnglat_to_world_px(0.0, lat, 1)
    assert px == 256.0 and py == pytest.approx(row_px, abs=1e-6) and math.isfinite(py)
    assert world_px_to_lnglat(0.0, py, 1)[1] == pytest.approx(math.copysign(MAX_MERCATOR_LAT_DEG, lat), abs=1e-9)


@given(tiles())
def test_row_latitude_is_mercantiles_own_float(t):
    """The tile edges mercantile.bounds gives, to the last bit, from a number or from an array."""
    z, x, y = t
    b = mercantile.bounds(x, y, z)
    assert mercator_row_lat_deg(y, 2**z) == b.north and mercator_row_lat_deg(y + 1, 2**z) == b.south
    rows = mercator_row_lat_deg(np.array([y, y + 1], dtype=np.float64), 2**z)
    assert rows.tolist() == pytest.approx([b.north, b.south], abs=1e-12)
