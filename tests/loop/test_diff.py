"""Diff of two result layers on hand-built detections."""

from __future__ import annotations

import json

import pytest

from amberwatch.db import connect
from amberwatch.errors import NotFoundError
from amberwatch.results.diff import classify_change, diff_layers

from .conftest import insert_detection, insert_scan


@pytest.fixture
def two_layers(db_path):
    """Scan A (model 0) and its rescan B (model 2) with one site of each kind."""
    conn = connect(db_path)
    a = insert_scan(conn, model_version="0")
    b = insert_scan(conn, model_version="2", parent_scan_id=a)
    ids = {}
    # removed: only in A
    ids["a_removed"] = insert_detection(conn, a, 26.000, 51.000, 26.001, 51.001, 0.70)
    # added: only in B
    ids["b_added"] = insert_detection(conn, b, 26.005, 51.005, 26.006, 51.006, 0.40)
    # grown: overlapping, B larger
    ids["a_grown"] = insert_detection(conn, a, 26.002, 51.002, 26.003, 51.003, 0.50)
    ids["b_grown"] = insert_detection(conn, b, 26.0025, 51.002, 26.0035, 51.0035, 1.20)
    # shrunk: two A detections merged and shrunk into one B detection
    ids["a_shrunk1"] = insert_detection(conn, a, 26.007, 51.007, 26.008, 51.008, 0.60)
    ids["a_shrunk2"] = insert_detection(conn, a, 26.0082, 51.007, 26.009, 51.008, 0.60)
    ids["b_shrunk"] = insert_detection(conn, b, 26.0075, 51.0072, 26.0085, 51.0078, 0.30)
    # unchanged: same polygon, 5% more area
    ids["a_same"] = insert_detection(conn, a, 26.004, 51.000, 26.0045, 51.0005, 1.00)
    ids["b_same"] = insert_detection(conn, b, 26.004, 51.000, 26.0045, 51.0005, 1.05)
    # touching edge only: a separate site (removed A + added B)
    ids["a_touch"] = insert_detection(conn, a, 26.010, 51.000, 26.011, 51.001, 0.20)
    ids["b_touch"] = insert_detection(conn, b, 26.011, 51.000, 26.012, 51.001, 0.25)
    yield conn, a, b, ids
    conn.close()


def test_diff_kinds_areas_and_matching(two_layers):
    conn, a, b, ids = two_layers
    d = diff_layers(conn, a, b)
    assert d.model_a == "0" and d.model_b == "2"
    assert d.counts() == {"added": 2, "removed": 2, "grown": 1, "shrunk": 1, "unchanged": 1}
    by_ids = {(s.detection_ids_a, s.detection_ids_b): s for s in d.sites}
    shrunk = by_ids[((ids["a_shrunk1"], ids["a_shrunk2"]), (ids["b_shrunk"],))]
    assert shrunk.kind == "shrunk"
    assert shrunk.area_before_ha == pytest.approx(1.2) and shrunk.area_after_ha == pytest.approx(0.3)
    assert by_ids[((ids["a_grown"],), (ids["b_grown"],))].kind == "grown"
    assert by_ids[((ids["a_touch"],), ())].kind == "removed"
    assert by_ids[((), (ids["b_touch"],))].kind == "added"
    assert d.area_before_ha == pytest.approx(0.7 + 0.5 + 1.2 + 1.0 + 0.2)
    assert d.area_after_ha == pytest.approx(0.4 + 1.2 + 0.3 + 1.05 + 0.25)
    gj = d.to_geojson()
    assert len(gj["features"]) == 7
    assert {f["properties"]["change"] for f in gj["features"]} == {"added", "removed", "grown", "shrunk", "unchanged"}
    json.dumps(gj)
    table = d.table()
    assert "shrunk" in table and "total" in table


def test_diff_of_a_layer_with_itself_is_all_unchanged(two_layers):
    conn, a, _, _ = two_layers
    d = diff_layers(conn, a, a)
    assert d.counts()["unchanged"] == len(d.sites) == 6


def test_diff_unknown_scan(two_layers):
    conn, a, _, _ = two_layers
    with pytest.raises(NotFoundError, match="scan 99"):
        diff_layers(conn, a, 99)


def test_classify_change_tolerances():
    assert classify_change(0, 1) == "added"
    assert classify_change(1, 0) == "removed"
    assert classify_change(1.0, 1.09) == "unchanged"
    assert classify_change(1.0, 1.2) == "grown"
    assert classify_change(0.02, 0.025) == "unchanged"  # below the absolute tolerance
