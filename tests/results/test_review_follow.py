"""Reviews follow the site: a decision on one date's detection holds for the same place at another date of the
AOI (IoU >= 0.5, or mostly inside the reviewed outline), not for an outline that grew well beyond it."""

from __future__ import annotations

import json

from shapely.geometry import box

from amberwatch.results.export import export_detections
from amberwatch.results.public import (
    ReviewState,
    get_public_detection,
    public_detections,
    removed_totals,
)
from amberwatch.results.timeline import load_timeline
from tests.results.timeline_db import AOI, add_scan, open_db, tile_box

OTHER_AOI = '{"type":"Polygon","coordinates":[[[26.9,51.3],[26.92,51.3],[26.92,51.32],[26.9,51.3]]]}'


def _grown(geom, factor: float):
    """The box scaled about its south-west corner so its area is ``factor`` times as large."""
    w, s, e, n = geom.bounds
    k = factor**0.5
    return box(w, s, w + (e - w) * k, s + (n - s) * k)


def _two_dates(tmp_path):
    """2019: sites A (tile 0, 0) and B (tile 2, 2); 2021: A again (shifted a little), B grown to 3x its area."""
    conn = open_db(tmp_path / "p.db")
    a, b = tile_box(0, 0), tile_box(2, 2, inset=0.3)
    first = add_scan(conn, "2019-06-26", [(a, 1.0), (b, 0.5)])
    shifted = box(*(v + d for v, d in zip(a.bounds, (2e-5, 0, 2e-5, 0))))
    second = add_scan(conn, "2021-06-26", [(shifted, 1.0), (_grown(b, 3.0), 1.5)])
    ids = {s: [d.id for d in public_detections(conn, {}, scan_id=s, places=False)] for s in (first, second)}
    return conn, first, second, ids


def test_a_not_mining_on_2019_hides_the_same_place_in_2021_but_not_a_grown_outline(tmp_path):
    conn, first, second, ids = _two_dates(tmp_path)
    (a19, b19), (a21, b21) = ids[first], ids[second]
    reviews = {a19: ReviewState("not_mining"), b19: ReviewState("not_mining")}
    assert [d.id for d in public_detections(conn, reviews, scan_id=second, places=False)] == [b21]
    marked = {d.id: d for d in public_detections(conn, reviews, include_removed=True, places=False)}
    inherited = marked[a21]
    assert inherited.review.removed and inherited.review_from is not None
    assert (inherited.review_from.detection_id, inherited.review_from.imagery_date) == (a19, "2019-06-26")
    assert inherited.review_from.iou > 0.5
    props = json.loads(inherited.feature_json())["properties"]
    assert props["review"] == "not_mining" and props["review_from"]["detection_id"] == a19
    assert marked[b21].review.verdict is None and marked[b21].review_from is None  # grew to 3x: not covered
    assert marked[a19].review_from is None  # its own decision, not inherited
    assert removed_totals(conn, reviews) == {first: (2, 1.5), second: (1, 1.0)}
    one = get_public_detection(conn, a21, ReviewState(), reviews)
    assert one.review.removed and one.review_from.detection_id == a19


def test_timeline_and_export_leave_out_the_followed_site(tmp_path):
    conn, first, second, ids = _two_dates(tmp_path)
    (a19, _), _ = ids[first], ids[second]
    timeline = load_timeline(conn, {a19: ReviewState("not_mining")})
    assert [dict(s.area_ha) for s in timeline.sites] == [{"2019-06-26": 0.5, "2021-06-26": 1.5}]
    out = tmp_path / "out.geojson"
    assert export_detections(conn, "geojson", out, reviews={a19: ReviewState("not_mining")}, scan_id=second) == 1


def test_confirmations_follow_and_an_own_decision_wins(tmp_path):
    conn, first, second, ids = _two_dates(tmp_path)
    (a19, _), (a21, b21) = ids[first], ids[second]
    reviews = {a21: ReviewState(None, 2), b21: ReviewState("not_mining")}
    reviews[a19] = ReviewState("confirmed")
    by_id = {d.id: d for d in public_detections(conn, reviews, include_removed=True, places=False)}
    assert by_id[a21].confirmed and by_id[a21].review.pending == 2 and by_id[a21].review_from.detection_id == a19
    # a decision on 2021 holds back in time too: 2019's outline of B lies wholly inside the reviewed grown one
    _, b19 = ids[first]
    assert by_id[b19].review.removed and by_id[b19].review_from.imagery_date == "2021-06-26"
    reviews[a21] = ReviewState("not_mining")  # decided itself: no inheritance
    assert {d.id for d in public_detections(conn, reviews, scan_id=second, places=False)} == set()


def test_a_piece_inside_the_reviewed_outline_follows_and_other_aois_and_undated_scans_do_not(tmp_path):
    conn = open_db(tmp_path / "p.db")
    whole = tile_box(0, 0)
    first = add_scan(conn, "2019", [(whole, 1.0)])
    piece = add_scan(conn, "2021", [(tile_box(0, 0, inset=0.35), 0.1)])  # IoU 0.09, wholly inside
    other = add_scan(conn, "2022", [(whole, 1.0)], aoi=OTHER_AOI)
    undated = add_scan(conn, None, [(whole, 1.0)])
    (src,) = [d.id for d in public_detections(conn, {}, scan_id=first, places=False)]
    shown = {d.scan_id for d in public_detections(conn, {src: ReviewState("not_mining")}, places=False)}
    assert shown == {other, undated} and piece not in shown
    assert AOI != OTHER_AOI
