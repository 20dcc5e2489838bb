"""AOI input: GeoJSON variants, bboxes, and a clear AOIError for every broken input."""

from __future__ import annotations

import json

import pytest
from shapely.geometry import MultiPolygon

from amberwatch.errors import AOIError, RepairedGeometryWarning
from amberwatch.imagery.aoi import aoi_from_bbox, load_aoi, read_aoi
from amberwatch.scan.engine import plan_scan

SQUARE = [[26.9, 51.32], [26.91, 51.32], [26.91, 51.33], [26.9, 51.33], [26.9, 51.32]]


def write(tmp_path, obj, name="aoi.geojson"):
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


@pytest.mark.parametrize(
    "obj",
    [
        {"type": "Polygon", "coordinates": [SQUARE]},
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [SQUARE]}},
        {
            "type": "FeatureCollection",
            "features": [
                {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [26.9, 51.3]}},
                {"type": "Feature", "properties": {}, "geometry": {"type": "MultiPolygon", "coordinates": [[SQUARE]]}},
            ],
        },
    ],
)
def test_geojson_kinds_load_to_one_valid_polygon(tmp_path, obj):
    aoi = load_aoi(write(tmp_path, obj))
    assert aoi.geometry.is_valid
    assert aoi.bounds_deg == pytest.approx((26.9, 51.32, 26.91, 51.33))


def test_two_separate_polygons_become_a_multipolygon(tmp_path):
    other = [[x + 0.1, y] for x, y in SQUARE]
    aoi = load_aoi(write(tmp_path, {"type": "MultiPolygon", "coordinates": [[SQUARE], [other]]}))
    assert isinstance(aoi.geometry, MultiPolygon)


def test_malformed_json_names_the_file(tmp_path):
    p = write(tmp_path, '{"type": "Polygon", "coordinates": [[[1, 2],', "broken.geojson")
    with pytest.raises(AOIError, match=r"broken.geojson.*not valid JSON"):
        load_aoi(p)


def test_missing_file(tmp_path):
    with pytest.raises(AOIError, match="does not exist"):
        load_aoi(tmp_path / "nope.geojson")


def test_no_polygons(tmp_path):
    p = write(
        tmp_path,
        {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "properties": {},
                    "geometry": {"type": "LineString", "coordinates": [[26.9, 51.3], [27, 51.4]]},
                },
            ],
        },
    )
    with pytest.raises(AOIError, match=r"no non-empty Polygon.*LineString"):
        load_aoi(p)


def test_empty_geometry(tmp_path):
    p = write(
        tmp_path,
        {
            "type": "FeatureCollection",
            "features": [
                {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": []}},
                {"type": "Feature", "properties": {}, "geometry": None},
            ],
        },
    )
    with pytest.raises(AOIError, match="no non-empty Polygon"):
        load_aoi(p)


def test_projected_coordinates_are_refused_naming_file_and_crs(tmp_path):
    utm = [[500000, 5680000], [501000, 5680000], [501000, 5681000], [500000, 5681000], [500000, 5680000]]
    p = write(
        tmp_path,
        {
            "type": "FeatureCollection",
            "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32635"}},
            "features": [{"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [utm]}}],
        },
        "utm.geojson",
    )
    with pytest.raises(AOIError, match=r"utm\.geojson.*\(500000, 5.68e\+06\).*EPSG::32635.*projected CRS"):
        load_aoi(p)


def test_self_intersecting_polygon_is_repaired_with_a_warning(tmp_path):
    bowtie = [[26.9, 51.32], [26.91, 51.33], [26.91, 51.32], [26.9, 51.33], [26.9, 51.32]]
    with pytest.warns(RepairedGeometryWarning, match="Self-intersection"):
        aoi = load_aoi(write(tmp_path, {"type": "Polygon", "coordinates": [bowtie]}))
    assert aoi.geometry.is_valid and aoi.geometry.area > 0


def test_zero_area_polygon(tmp_path):
    flat = [[26.9, 51.32], [26.91, 51.32], [26.92, 51.32], [26.9, 51.32]]
    with pytest.raises(AOIError):
        load_aoi(write(tmp_path, {"type": "Polygon", "coordinates": [flat]}))


def test_huge_aoi_is_refused_with_its_tile_count():
    aoi = aoi_from_bbox("24,50,28,52")
    with pytest.raises(AOIError, match=r"covers [\d,]+ tiles at zoom 18, above the limit of 500,000.*--max-tiles"):
        plan_scan(aoi, 18)
    assert plan_scan(aoi, 12, max_tiles=10_000).tiles > 100


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "27,51,26,52", "200,51,201,52"])
def test_bad_bbox(text):
    with pytest.raises(AOIError, match="bbox"):
        aoi_from_bbox(text)


def test_canonical_geojson_is_stable_across_ring_order(tmp_path):
    reversed_square = list(reversed(SQUARE))
    a = load_aoi(write(tmp_path, {"type": "Polygon", "coordinates": [SQUARE]}, "a.geojson"))
    b = load_aoi(write(tmp_path, {"type": "Polygon", "coordinates": [reversed_square]}, "b.geojson"))
    assert a.to_geojson() == b.to_geojson()


def test_read_aoi_accepts_dict_text_and_path_and_can_refuse_non_polygons(tmp_path) -> None:
    with_point = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [26.9, 51.3]}},
            {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [SQUARE]}},
        ],
    }
    path = write(tmp_path, with_point)
    for source in (with_point, json.dumps(with_point), path, str(path)):
        assert read_aoi(source).geometry.bounds == (26.9, 51.32, 26.91, 51.33)
        with pytest.raises(AOIError, match="holds a Point, not a Polygon"):
            read_aoi(source, polygons_only=True)
    with pytest.raises(AOIError, match="not valid JSON"):
        read_aoi("{oops")


@pytest.mark.parametrize(
    "text",
    [
        '{"type": "Polygon", "coordinates": ' + "[" * 50_000 + "]" * 50_000 + "}",
        '{"type": "GeometryCollection", "geometries": [' * 40
        + json.dumps({"type": "Polygon", "coordinates": [SQUARE]})
        + "]}" * 40,
    ],
    ids=["deep-json", "deep-collections"],
)
def test_deeply_nested_aoi_is_an_aoi_error_not_a_recursion_error(tmp_path, text):
    with pytest.raises(AOIError, match="nest"):
        load_aoi(write(tmp_path, text))
    with pytest.raises(AOIError, match="nest"):
        read_aoi(text)


def test_hole_outside_its_shell_is_refused_not_repaired_into_a_larger_area(tmp_path):
    hole_far_away = [[27.5, 51.5], [28.0, 51.5], [28.0, 52.0], [27.5, 52.0], [27.5, 51.5]]
    with pytest.raises(AOIError, match=r"polygon 1 \(near 26.9, 51.32\).*Hole lies outside shell.*grow"):
        load_aoi(write(tmp_path, {"type": "Polygon", "coordinates": [SQUARE, hole_far_away]}))


def test_bowtie_is_still_repaired_with_a_warning(tmp_path):
    bowtie = [[26.9, 51.32], [26.91, 51.33], [26.91, 51.32], [26.9, 51.33], [26.9, 51.32]]
    with pytest.warns(RepairedGeometryWarning):
        aoi = load_aoi(write(tmp_path, {"type": "Polygon", "coordinates": [bowtie]}))
    assert aoi.geometry.is_valid and aoi.geometry.area > 0


def test_longitude_past_180_says_so_not_projected_crs(tmp_path):
    past = [[179.5, 54.0], [180.5, 54.0], [180.5, 54.01], [179.5, 54.01], [179.5, 54.0]]
    with pytest.raises(AOIError, match=r"longitude 180.5 .*beyond ±180.*-179.5") as info:
        load_aoi(write(tmp_path, {"type": "Polygon", "coordinates": [past]}))
    assert "projected" not in str(info.value)


def test_metres_still_read_as_a_projected_crs(tmp_path):
    utm = [[500000, 6000000], [500100, 6000000], [500100, 6000100], [500000, 6000000]]
    with pytest.raises(AOIError, match="projected CRS"):
        load_aoi(write(tmp_path, {"type": "Polygon", "coordinates": [utm]}))


def test_nan_coordinates_are_named_as_not_finite(tmp_path):
    text = '{"type": "Polygon", "coordinates": [[[NaN, 51.3], [26.91, 51.32], [26.91, 51.33], [NaN, 51.3]]]}'
    with pytest.raises(AOIError, match=r"\(nan, 51.3\) that are not finite numbers"):
        load_aoi(write(tmp_path, text))
