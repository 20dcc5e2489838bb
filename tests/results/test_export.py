"""Export formats: GeoJSON (RFC 7946), GeoPackage, CSV with WKT and KML, each read back."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET

import mercantile
import numpy as np
import pytest
import shapely
from click.testing import CliRunner
from shapely.geometry import shape

from amberwatch.cli import main
from amberwatch.errors import InvalidInputError
from amberwatch.results.detections import rebuild_detections
from amberwatch.results.export import export_detections
from tests.results.scan_db import CELLS, ZOOM, make_scan_db, patch_grids

X0, Y0 = mercantile.tile(26.9, 51.32, ZOOM)[:2]


@pytest.fixture
def db(tmp_path):
    """A project DB with two detections (one with a hole) in scan 1."""
    grids = patch_grids(X0, Y0, range(CELLS - 3, CELLS + 3), range(CELLS - 3, CELLS + 3))
    grids[(X0, Y0)][0:2, 0:3] = 0.8
    grids[(X0 + 1, Y0 + 1)][0, 0] = 0.1  # a hole in the middle of the big patch
    path = tmp_path / "e.db"
    conn = make_scan_db(path, grids)
    assert rebuild_detections(conn, 1, min_area_ha=0.05, cache_path=None) == 2
    conn.close()
    return path


def export(db, fmt, out):
    result = CliRunner().invoke(main, ["detections", "export", "--db", str(db), "--format", fmt, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Wrote 2 detections of scan 1" in result.output
    return out


def test_geojson_is_rfc7946(db, tmp_path):
    fc = json.loads(export(db, "geojson", tmp_path / "d.geojson").read_text())
    assert fc["type"] == "FeatureCollection" and "crs" not in fc
    assert len(fc["features"]) == 2
    holes = 0
    for f in fc["features"]:
        props = f["properties"]
        assert set(props) >= {"id", "scan_id", "area_ha", "mean_prob", "max_prob", "capture_date", "model_version"}
        assert props["area_ha"] > 0 and props["scan_id"] == 1 and props["model_version"] == "7"
        assert f["geometry"]["type"] in ("Polygon", "MultiPolygon")
        polygons = (
            [f["geometry"]["coordinates"]] if f["geometry"]["type"] == "Polygon" else f["geometry"]["coordinates"]
        )
        for rings in polygons:
            for i, ring in enumerate(rings):
                assert ring[0] == ring[-1], "rings must be closed"
                assert all(-180 <= x <= 180 and -90 <= y <= 90 for x, y in ring)
                assert shapely.LinearRing(ring).is_ccw == (i == 0), "exterior CCW, holes CW"
            holes += len(rings) - 1
        assert shape(f["geometry"]).is_valid
    assert holes == 1


def test_gpkg_reads_back_with_gdal(db, tmp_path):
    import pyogrio

    out = export(db, "gpkg", tmp_path / "d.gpkg")
    info = pyogrio.read_info(out, layer="detections")
    assert info["features"] == 2 and info["geometry_type"] == "MultiPolygon"
    assert "EPSG:4326" in info["crs"] and "area_ha" in list(info["fields"])
    meta, _fids, geoms, fields = pyogrio.raw.read(out, layer="detections")
    areas = fields[list(meta["fields"]).index("area_ha")]
    assert all(a > 0 for a in areas)
    assert all(shapely.from_wkb(g).is_valid for g in geoms)


def test_csv_has_wkt(db, tmp_path):
    rows = list(csv.DictReader(export(db, "csv", tmp_path / "d.csv").open()))
    assert len(rows) == 2
    for row in rows:
        geom = shapely.from_wkt(row["wkt"])
        assert geom.geom_type in ("Polygon", "MultiPolygon") and geom.is_valid
        assert float(row["area_ha"]) > 0


def test_kml_parses(db, tmp_path):
    root = ET.parse(export(db, "kml", tmp_path / "d.kml")).getroot()
    ns = {"k": "http://www.opengis.net/kml/2.2"}
    placemarks = root.findall(".//k:Placemark", ns)
    assert len(placemarks) == 2
    for pm in placemarks:
        names = {d.get("name"): d.findtext("k:value", namespaces=ns) for d in pm.findall(".//k:Data", ns)}
        assert float(names["area_ha"]) > 0
        coords = pm.find(".//k:outerBoundaryIs//k:coordinates", ns).text.split()
        assert coords[0] == coords[-1]


def test_export_errors(db, tmp_path):
    import sqlite3

    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    with pytest.raises(InvalidInputError, match="'shp'"):
        export_detections(conn, "shp", tmp_path / "x.shp", reviews={})
    with pytest.raises(InvalidInputError, match="does not exist"):
        export_detections(conn, "geojson", tmp_path / "missing" / "x.geojson", reviews={})
    result = CliRunner().invoke(
        main, ["detections", "export", "--db", str(db), "--scan", "9", "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 1 and "scan 9 does not exist" in result.output


def test_sites_reviewed_as_not_mining_are_not_exported(db, tmp_path):
    """An export is published: a site whose not-mining flag a reviewer accepted is left out, a pending one is not."""
    from amberwatch.db import connect
    from amberwatch.imagery.cache import TileCache
    from amberwatch.imagery.decode import encode_png
    from amberwatch.results.store import query_detections
    from amberwatch.review.feedback import decide_feedback, record_feedback
    from amberwatch.review.schema import ensure_schema

    conn = connect(db)
    ensure_schema(conn)
    removed, pending = [r.id for r in query_detections(conn, scan_id=1)]
    grey = encode_png(np.full((256, 256, 3), 120, dtype=np.uint8))
    with TileCache(tmp_path / "tiles.mbtiles") as cache:  # the accepted flag's example is cut from cached imagery
        for x in range(X0 - 1, X0 + 3):
            for y in range(Y0 - 1, Y0 + 3):
                cache.put("src", ZOOM, x, y, grey, content_type="image/png")
        flag = record_feedback(conn, removed, "not_mining", "quarry", None, client="reader-a")
        decide_feedback(conn, cache, flag["id"], "accept", "olena")
    record_feedback(conn, pending, "not_mining", "field", None, client="reader-b")
    conn.close()
    out = tmp_path / "d.geojson"
    result = CliRunner().invoke(main, ["detections", "export", "--db", str(db), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Wrote 1 detections of scan 1" in result.output
    assert [f["id"] for f in json.loads(out.read_text())["features"]] == [pending]
    rows = list(csv.DictReader(export_one(db, "csv", tmp_path / "d.csv").open()))
    assert [int(r["id"]) for r in rows] == [pending]


def export_one(db, fmt, out):
    result = CliRunner().invoke(main, ["detections", "export", "--db", str(db), "--format", fmt, "--out", str(out)])
    assert result.exit_code == 0 and "Wrote 1 detections" in result.output, result.output
    return out


def test_an_export_to_a_full_disk_is_one_line_naming_the_file(db):
    result = CliRunner().invoke(
        main, ["detections", "export", "--db", str(db), "--format", "geojson", "--out", "/dev/full"]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.count("Error:") == 1
    assert "export file '/dev/full' could not be written: no space left" in result.output
    assert "run the same command again" in result.output
