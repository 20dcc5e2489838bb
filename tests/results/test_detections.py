"""Detections: cells merged across tile edges, geodesic hectares, specks dropped, rebuilt idempotently."""

from __future__ import annotations

import json

import mercantile
import pytest
from pyproj import Geod, Transformer
from shapely.geometry import Polygon, shape

from amberwatch.results.detections import find_detections, geodesic_area_ha, rebuild_detections
from tests.results.scan_db import CELLS, ZOOM, make_scan_db, patch_grids

X0, Y0 = mercantile.tile(26.9, 51.32, ZOOM)[:2]


def test_patch_straddling_four_tiles_is_one_polygon(tmp_path):
    # A 4 x 4-cell patch centred on the corner shared by four tiles.
    grids = patch_grids(X0, Y0, range(CELLS - 2, CELLS + 2), range(CELLS - 2, CELLS + 2))
    conn = make_scan_db(tmp_path / "p.db", grids)
    found = find_detections(conn, 1, min_area_ha=0.0)
    assert len(found) == 1
    det = found[0]
    assert det.n_cells == 16
    assert det.geometry.geom_type == "Polygon" and len(det.geometry.exterior.coords) == 5  # one clean square
    west, south, east, north = det.geometry.bounds
    corner_lon, corner_lat = mercantile.ul(X0 + 1, Y0 + 1, ZOOM)
    assert west < corner_lon < east and south < corner_lat < north
    # 16 cells of (256/8 px * ~0.373 m)^2 ≈ 0.228 ha
    assert det.area_ha == pytest.approx(16 * (32 * 0.3733) ** 2 / 1e4, rel=0.01)
    assert det.max_prob == pytest.approx(230 / 255) and det.capture_date == "2015-10-05"
    assert det.geometry.exterior.is_ccw


@pytest.mark.parametrize(("imagery_date", "expected"), [("2019-06-26", "2019-06-26"), ("2019", "2019"), ("r5", None)])
def test_tiles_without_a_capture_date_take_the_scan_imagery_date(tmp_path, imagery_date, expected):
    grids = patch_grids(X0, Y0, range(3), range(3))
    conn = make_scan_db(tmp_path / "d.db", grids, capture_date=None, imagery_date=imagery_date)
    assert [d.capture_date for d in find_detections(conn, 1, min_area_ha=0.0)] == [expected]


def test_separate_patches_and_small_specks(tmp_path):
    grids = patch_grids(X0, Y0, range(3), range(3))
    grids[(X0 + 1, Y0 + 1)][7, 7] = 0.95  # a lone cell far from the patch
    conn = make_scan_db(tmp_path / "s.db", grids)
    assert len(find_detections(conn, 1, min_area_ha=0.0)) == 2
    # 9 cells ≈ 0.13 ha; a single cell ≈ 0.014 ha: the default 0.05 ha floor drops the speck only.
    kept = find_detections(conn, 1, min_area_ha=0.05)
    assert [d.n_cells for d in kept] == [9]


def test_threshold_is_inclusive_and_diagonal_cells_join(tmp_path):
    grids = patch_grids(X0, Y0, range(0), range(0))
    grids[(X0, Y0)][2, 2] = 0.5
    grids[(X0, Y0)][3, 3] = 0.8
    grids[(X0, Y0)][5, 5] = 0.49
    conn = make_scan_db(tmp_path / "t.db", grids, threshold=0.5)
    found = find_detections(conn, 1, min_area_ha=0.0)
    assert [d.n_cells for d in found] == [2]
    assert found[0].geometry.geom_type == "MultiPolygon"  # two squares touching at a corner


def test_rebuild_replaces_detections_in_one_go(tmp_path):
    grids = patch_grids(X0, Y0, range(CELLS - 2, CELLS + 2), range(CELLS - 2, CELLS + 2))
    conn = make_scan_db(tmp_path / "r.db", grids)
    assert rebuild_detections(conn, 1, min_area_ha=0.05, cache_path=None) == 1
    assert rebuild_detections(conn, 1, min_area_ha=0.05, cache_path=None) == 1
    rows = conn.execute(
        "SELECT scan_id, geometry_geojson, area_ha, model_version, centroid_lon, west, east FROM detections"
    ).fetchall()
    assert len(rows) == 1
    row = rows[0]
    geom = shape(json.loads(row["geometry_geojson"]))
    assert row["model_version"] == "7" and row["west"] < row["centroid_lon"] < row["east"]
    assert row["area_ha"] == pytest.approx(geodesic_area_ha(geom))


def test_area_of_a_1km_square_at_51n_matches_an_equal_area_projection():
    # A 1 km x 1 km square built in a Lambert azimuthal equal-area projection centred at 51N, 26.9E.
    laea = "+proj=laea +lat_0=51 +lon_0=26.9 +x_0=0 +y_0=0 +ellps=WGS84 +units=m"
    to_ll = Transformer.from_crs(laea, "EPSG:4326", always_xy=True)
    steps = 50
    ring = []
    for side in range(4):
        for i in range(steps):
            t = i / steps * 1000 - 500
            x, y = [(t, -500), (500, t), (-t, 500), (-500, -t)][side]
            ring.append(to_ll.transform(x, y))
    square = Polygon(ring)
    assert geodesic_area_ha(square) == pytest.approx(100.0, rel=0.005)
    area_m2, _ = Geod(ellps="WGS84").geometry_area_perimeter(square)
    assert geodesic_area_ha(square) == pytest.approx(abs(area_m2) / 1e4, rel=1e-9)


def test_traced_outline_equals_the_union_of_cell_squares():
    import numpy as np
    import shapely
    from shapely.geometry import box

    from amberwatch.results.detections import cell_lat_deg, cell_lon_deg, cells_polygon

    rng = np.random.default_rng(3)
    n = (1 << ZOOM) * CELLS
    c0, r0 = X0 * CELLS, Y0 * CELLS
    group = {(c0 + int(c), r0 + int(r)) for c, r in rng.integers(0, 12, (60, 2))}
    traced = cells_polygon(group, n)
    squares = shapely.union_all(
        [box(cell_lon_deg(c, n), cell_lat_deg(r + 1, n), cell_lon_deg(c + 1, n), cell_lat_deg(r, n)) for c, r in group]
    )
    assert traced.is_valid
    assert traced.symmetric_difference(squares).area < 1e-6 * squares.area


def test_rebuild_keeps_ids_of_unchanged_detections(tmp_path):
    grids = patch_grids(X0, Y0, range(3), range(3))
    grids[(X0 + 1, Y0 + 1)][4:7, 4:7] = 0.9
    conn = make_scan_db(tmp_path / "k.db", grids)
    assert rebuild_detections(conn, 1, min_area_ha=0.05, cache_path=None) == 2
    before = {r["id"]: r["geometry_geojson"] for r in conn.execute("SELECT id, geometry_geojson FROM detections")}
    # One site grows (new outline -> new id), the other is untouched (same id).
    import numpy as np

    grid = np.frombuffer(
        conn.execute("SELECT grid FROM scan_tiles WHERE x = ? AND y = ?", (X0 + 1, Y0 + 1)).fetchone()[0], np.uint8
    ).copy()
    grid.reshape(CELLS, CELLS)[7, 4:7] = 230
    conn.execute("UPDATE scan_tiles SET grid = ? WHERE x = ? AND y = ?", (grid.tobytes(), X0 + 1, Y0 + 1))
    assert rebuild_detections(conn, 1, min_area_ha=0.05, cache_path=None) == 2
    after = {r["id"]: r["geometry_geojson"] for r in conn.execute("SELECT id, geometry_geojson FROM detections")}
    common = set(before) & set(after)
    assert len(common) == 1 and before[common.pop()] in after.values()
    assert max(after) > max(before)


def test_schema_v2_keeps_existing_detections_and_never_reuses_ids(tmp_path):
    from amberwatch.db import connect, migrate, schema_version
    from amberwatch.results.store import MIGRATIONS, ensure_schema

    conn = connect(tmp_path / "old.db")
    migrate(conn, "results", MIGRATIONS[:1])  # a DB made before v2
    conn.execute(
        "INSERT INTO scans (id, aoi_geojson, imagery, imagery_source_id, zoom, model_version,"
        " model_threshold, started_at) VALUES (1, '{}', 'i', 's', 18, '0', 0.5, 'now')"
    )
    row = (1, '{"type":"Polygon","coordinates":[]}', 0, 0, 0, 0, 0, 0, 1.0, 0.6, 0.7, None, "0", None, "now")
    conn.execute(
        "INSERT INTO detections (scan_id, geometry_geojson, centroid_lon, centroid_lat, west, south, east,"
        " north, area_ha, mean_prob, max_prob, capture_date, model_version, thumbnail, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        row,
    )
    ensure_schema(conn)
    assert schema_version(conn, "results") == len(MIGRATIONS)
    assert [tuple(r) for r in conn.execute("SELECT id, area_ha FROM detections")] == [(1, 1.0)]
    conn.execute("DELETE FROM detections WHERE id = 1")
    cur = conn.execute(
        "INSERT INTO detections (scan_id, geometry_geojson, centroid_lon, centroid_lat, west, south,"
        " east, north, area_ha, mean_prob, max_prob, capture_date, model_version, thumbnail, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        row,
    )
    assert cur.lastrowid == 2
