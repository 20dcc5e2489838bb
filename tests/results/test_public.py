"""The public projection of a detection: sites reviewed as not mining left out (unless asked for), review state,
place, and the map's GeoJSON feature."""

from __future__ import annotations

import json

import mercantile

from amberwatch.results.detections import rebuild_detections
from amberwatch.results.public import NOT_REVIEWED, ReviewState, get_public_detection, public_detections
from tests.results.scan_db import CELLS, ZOOM, make_scan_db, patch_grids

X0, Y0 = mercantile.tile(26.9, 51.32, ZOOM)[:2]


def _two_sites(tmp_path):
    grids = patch_grids(X0, Y0, range(CELLS - 3, CELLS + 3), range(CELLS - 3, CELLS + 3))
    grids[(X0, Y0)][0:2, 0:3] = 0.8
    conn = make_scan_db(tmp_path / "p.db", grids)
    assert rebuild_detections(conn, 1, min_area_ha=0.05, cache_path=None) == 2
    return conn


def test_removed_sites_are_left_out_unless_asked_for(tmp_path):
    conn = _two_sites(tmp_path)
    first, second = (d.id for d in public_detections(conn, {}))
    reviews = {first: ReviewState("not_mining", 0), second: ReviewState("confirmed", 2)}
    shown = public_detections(conn, reviews)
    assert [d.id for d in shown] == [second] and shown[0].confirmed and shown[0].review.pending == 2
    marked = public_detections(conn, reviews, include_removed=True)
    assert [(d.id, d.review.removed) for d in marked] == [(first, True), (second, False)]
    assert get_public_detection(conn, first, reviews[first]).review.removed


def test_map_feature_is_geojson_with_review_and_place(tmp_path):
    conn = _two_sites(tmp_path)
    det = public_detections(conn, {})[0]
    feature = json.loads(det.feature_json())
    assert feature["id"] == det.id and feature["geometry"] == det.geometry
    props = feature["properties"]
    assert props["review"] is None and props["pending"] == 0 and det.review == NOT_REVIEWED
    assert props["place"] == det.place and "Klesiv" in det.place  # the offline gazetteer's nearest village
    assert props["area_ha"] == round(det.area_ha, 4) and "imagery" not in props
    assert public_detections(conn, {}, places=False)[0].place is None
