"""Offline place names: distance, 8-way direction and the nearest GeoNames village, from the shipped gazetteer."""

from __future__ import annotations

import math

import pytest

from amberwatch.results.places import describe_place, describe_places, format_place

KLESIV = (26.89488, 51.3146)  # GeoNames 692719, ~4,600 people: not in the 1000+ lists


def _offset(lon: float, lat: float, north_km: float, east_km: float) -> tuple[float, float]:
    dlat = north_km / 111.195
    dlon = east_km / (111.195 * math.cos(math.radians(lat)))
    return lon + dlon, lat + dlat


def test_klesiv_itself_and_close_by():
    assert describe_place(*KLESIV) == "in Klesiv"
    assert describe_place(*_offset(*KLESIV, 0.3, 0.0)) == "near Klesiv"


@pytest.mark.parametrize(
    ("north_km", "east_km", "expected"),
    [
        (1.0, 1.0, "1.4 km NE of Klesiv"),
        (-1.5, 0.0, "1.5 km S of Klesiv"),
        (0.0, -1.2, "1.2 km W of Klesiv"),
        (-0.8, -0.8, "1.1 km SW of Klesiv"),
    ],
)
def test_distance_and_compass_from_the_nearest_village(north_km, east_km, expected):
    assert describe_place(*_offset(*KLESIV, north_km, east_km)) == expected


def test_every_point_of_the_amber_belt_gets_a_nearby_village_name():
    grid = [(26.5 + 0.25 * i, 50.8 + 0.1 * j) for i in range(9) for j in range(9)]
    names = describe_places(grid)
    assert all(n is not None and n.isascii() for n in names)
    # Villages of 500+ people are in the gazetteer (only ~35 in this 140 x 90 km belt), so no point is > 30 km off.
    assert all(n.startswith(("in ", "near ")) or float(n.split()[0]) < 30 for n in names)
    assert len({n.rsplit(" of ", 1)[-1] for n in names}) > 15


def test_nothing_within_50_km_and_bad_points_give_none():
    assert describe_places([(0.0, 0.0), (-150.0, -45.0), (float("nan"), 51.0), KLESIV]) == [
        None,
        None,
        None,
        "in Klesiv",
    ]
    assert describe_places([]) == []


def test_batch_matches_single():
    pts = [_offset(*KLESIV, n, e) for n, e in [(3, 4), (-7, 2), (12, -9)]]
    assert describe_places(pts) == [describe_place(*p) for p in pts]


@pytest.mark.parametrize(
    ("km", "expected"),
    [
        (0.1, "in Ozero"),
        (0.45, "near Ozero"),
        (0.5, "0.5 km N of Ozero"),
        (9.94, "9.9 km N of Ozero"),
        (9.96, "10 km N of Ozero"),
        (23.4, "23 km N of Ozero"),
    ],
)
def test_format_rounding(km, expected):
    assert format_place("Ozero", km, "N") == expected


def test_names_are_plain_ascii():
    # GeoNames keeps diacritics and typographic apostrophes in romanised names.
    from amberwatch.results.places import _ascii_name

    assert _ascii_name("Koloniya Zastav’ye") == "Koloniya Zastav'ye"
    assert _ascii_name("Sant Julià de Lòria") == "Sant Julia de Loria"


def test_places_near_sites_nearest_first() -> None:
    from amberwatch.results.places import places_near

    near = places_near([(26.900, 51.300), (26.915, 51.296)], 8.0, 10)
    assert near[0].name == "Klesiv" and abs(near[0].lat_deg - 51.31) < 0.01
    assert all(p.name != "Kyiv" for p in near)
    assert len(places_near([(26.9, 51.3)], 30.0, 3)) == 3  # at most limit
    assert places_near([], 8.0, 10) == [] and places_near([(0.0, -89.0)], 5.0, 10) == []  # nothing near the pole
