"""The web API in-process against a real SQLite project.

Covers map data, tiles, corrections, reviewers, labelling and security.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from amberwatch.db import connect
from amberwatch.imagery.decode import decode_image
from amberwatch.labels.store import ExampleStore
from tests.web.conftest import SOURCE_ID


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def flag(client, detection_id: int, **body) -> object:
    body = {"verdict": "not_mining", "category": "quarry", "comment": "a sand quarry", **body}
    return client.post(f"/api/detections/{detection_id}/feedback", json=body)


def test_map_page_is_self_contained(client):
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert not re.search(r"""(src|href)=["'](https?:)?//""", r.text), "external script/style URL in the map page"
    for asset in re.findall(r"""(?:src|href)=["'](/(?:vendor|static)/[^"']+)""", r.text):
        assert client.get(asset).status_code == 200, asset
    assert client.get("/vendor/leaflet/images/layers.png").status_code == 200
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "img-src 'self' data: blob:" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "access-control-allow-origin" not in r.headers


def test_feedback_rate_limit_follows_x_forwarded_for_behind_a_trusted_proxy(project):
    """``serve`` runs uvicorn's proxy-header middleware: readers behind one proxy are limited one by one."""
    from fastapi.testclient import TestClient
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    from amberwatch.web.app import create_app

    app = ProxyHeadersMiddleware(
        create_app(project.db_path, project.cache_path, feedback_limit_per_hour=2), trusted_hosts="*"
    )
    did = project.detection_ids[0]
    with TestClient(app) as proxied:

        def post(reader_ip: str) -> int:
            return proxied.post(
                f"/api/detections/{did}/feedback", json={"verdict": "confirmed"}, headers={"X-Forwarded-For": reader_ip}
            ).status_code

        assert [post("203.0.113.5") for _ in range(3)] == [201, 201, 429]
        proxied.cookies.clear()  # another person (no reader cookie yet) behind another address
        assert post("198.51.100.7") == 201


def test_readers_behind_one_address_have_their_own_answers_and_limits(project):
    """A reader is their cookie: two people behind one NAT neither see nor replace each other's answer, nor share
    a limit; the address keeps a coarse cap (``per_address_hour``, by default 20 readers' worth)."""
    from fastapi.testclient import TestClient

    from amberwatch.review.feedback import FeedbackLimits
    from amberwatch.web.app import create_app

    limits = FeedbackLimits(per_client_hour=2, per_address_hour=4)
    assert FeedbackLimits(per_client_hour=3).address_hour == 60
    did = project.detection_ids[0]
    app = create_app(project.db_path, project.cache_path, feedback_limits=limits)
    with TestClient(app) as anna, TestClient(app) as ben, TestClient(app) as carl:
        first = anna.get("/")
        cookie = first.headers["set-cookie"]
        assert cookie.startswith("aw_reader=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert "set-cookie" not in anna.get("/").headers  # set once, on the first visit
        assert flag(anna, did, verdict="confirmed").status_code == 201
        assert ben.get(f"/api/detections/{did}/feedback/mine").json()["feedback"] is None
        mine = flag(ben, did)
        assert mine.status_code == 201 and mine.json()["replaced"] == []
        assert anna.get(f"/api/detections/{did}/feedback/mine").json()["feedback"]["verdict"] == "confirmed"
        assert flag(anna, did).json()["replaced"] != []  # "Change my answer": Anna's own flag only
        assert ben.get(f"/api/detections/{did}/feedback/mine").json()["feedback"]["category"] == "quarry"
        assert flag(anna, project.detection_ids[1]).status_code == 429  # Anna's limit: 2 an hour
        assert flag(ben, project.detection_ids[1]).status_code == 201  # Ben's own limit
        r = flag(carl, project.detection_ids[2])
        assert r.status_code == 429 and "address" in r.json()["error"]  # four from one address in all


def test_flags_from_before_reader_cookies_stay_their_addresss(project, client):
    """A flag keyed by the address hash (before readers had cookies) is still read, and replaced, from there."""
    from amberwatch.review.feedback import client_hash, record_feedback
    from amberwatch.web.schema import client_salt

    did = project.detection_ids[0]
    conn = connect(project.db_path)
    old = client_hash(client_salt(conn), "testclient")  # TestClient's address
    record_feedback(conn, did, "not_mining", "quarry", None, client=old)
    conn.close()
    assert client.get(f"/api/detections/{did}/feedback/mine").json()["feedback"]["category"] == "quarry"
    assert flag(client, did, verdict="confirmed").json()["replaced"] != []


@pytest.mark.parametrize(("path", "heading"), [("/label", "Label chips"), ("/review", "Reviewer queue")])
def test_reviewer_pages_include_the_shared_sign_in_header(client, path, heading):
    r = client.get(path)
    assert r.status_code == 200 and r.text.startswith("<!doctype html>")
    assert f"<h1>{heading}</h1>" in r.text and 'id="token-form"' in r.text
    assert "{{" not in r.text and "<!--include" not in r.text


def test_openapi_served_but_no_cdn_docs(client):
    spec = client.get("/openapi.json").json()
    assert "/api/detections" in spec["paths"] and "/api/detections/{detection_id}/feedback" in spec["paths"]
    assert client.get("/docs").status_code == 404


def test_detections_geojson_and_filters(client, project):
    fc = client.get("/api/detections").json()
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 5
    f = fc["features"][0]
    assert f["id"] == project.detection_ids[0] and f["geometry"]["type"] == "Polygon"
    assert {"area_ha", "mean_prob", "capture_date", "review", "pending"} <= set(f["properties"])
    assert len(client.get(f"/api/detections?scan={project.scan_id}&min_prob=0.8").json()["features"]) == 2
    inside = client.get("/api/detections?bbox=26.89995,51.31995,26.90005,51.32005").json()["features"]
    assert [g["id"] for g in inside] == [project.detection_ids[0]]
    bad = client.get("/api/detections?bbox=1,2,3")
    assert bad.status_code == 422 and bad.json() == {"error": bad.json()["error"], "status": 422}
    assert "'1,2,3'" in bad.json()["error"]
    assert client.get("/api/detections?scan=999").json() == {"error": "scan 999 does not exist", "status": 404}


def test_scans_listing(client, project):
    scans = client.get("/api/scans").json()["scans"]
    assert scans[0]["id"] == project.scan_id and scans[0]["model_version"] == "0"
    assert scans[0]["detections"] == 5 and scans[0]["area_scanned_km2"] == 0.54 and len(scans[0]["bounds"]) == 4


def test_tiles_from_cache_and_404(client, project):
    z, x, y = project.tiles[0]
    r = client.get(f"/tiles/{SOURCE_ID}/{z}/{x}/{y}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert decode_image(r.content).shape == (256, 256, 3)
    missing = client.get(f"/tiles/{SOURCE_ID}/{z}/{x + 50}/{y}")
    assert missing.status_code == 404 and missing.json()["status"] == 404 and str(x + 50) in missing.json()["error"]


def test_thumbnail_and_chip(client, project):
    did = project.detection_ids[0]
    thumb = client.get(f"/api/detections/{did}/thumbnail.jpg")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    chip = client.get(f"/api/detections/{did}/chip.jpg")
    assert chip.status_code == 200 and decode_image(chip.content).mean() > 20  # real imagery, not black
    assert client.get("/api/detections/999/thumbnail.jpg").status_code == 404


def test_feedback_is_stored_with_hashed_client(client, project):
    r = flag(client, project.detection_ids[1], comment="<script>alert(1)</script>")
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "pending" and r.json()["comment"] == "<script>alert(1)</script>"
    conn = connect(project.db_path)
    row = conn.execute("SELECT * FROM web_feedback").fetchone()
    assert re.fullmatch(r"[0-9a-f]{64}", row["client_hash"]) and "testclient" not in row["client_hash"]
    assert row["created_at"] and row["lon"] is not None
    assert flag(client, project.detection_ids[1], verdict="confirmed", category=None).status_code == 201
    feature = client.get(f"/api/detections/{project.detection_ids[1]}").json()
    assert feature["properties"]["pending"] == 1  # the reader's second flag replaced the first


def test_feedback_validation(client, project):
    did = project.detection_ids[0]
    r = flag(client, did, verdict="maybe")
    assert r.status_code == 422 and "'maybe'" in r.json()["error"]
    r = flag(client, did, category="volcano")
    assert r.status_code == 422 and "'volcano'" in r.json()["error"]
    r = flag(client, did, verdict="confirmed", category="volcano")
    assert r.status_code == 422 and "'volcano'" in r.json()["error"]
    r = flag(client, did, verdict="confirmed", category="quarry")
    assert r.status_code == 201 and r.json()["category"] is None
    assert flag(client, did, category=None).json()["category"] == "other"
    r = flag(client, did, comment=12)
    assert r.status_code == 422 and r.json()["status"] == 422
    r = flag(client, did, comment="x" * 2001)
    assert r.status_code == 413 and r.json()["status"] == 413
    r = client.post(
        f"/api/detections/{did}/feedback",
        content=json.dumps({"verdict": "confirmed", "comment": "y" * 17000}),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413 and r.json()["status"] == 413
    r = client.post(f"/api/detections/{did}/feedback", data={"verdict": "confirmed"})
    assert r.status_code == 415 and r.json()["status"] == 415
    r = client.post(
        f"/api/detections/{did}/feedback", content="{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["status"] == 422
    r = client.post(f"/api/detections/{did}/feedback", json={"category": "quarry"})
    assert r.status_code == 422 and "verdict" in r.json()["error"]
    assert flag(client, 999).json() == {"error": "detection 999 does not exist", "status": 404}


def test_feedback_rate_limited_per_client(client, project):
    did = project.detection_ids[0]
    for _ in range(5):  # the fixture's app allows 5 per hour
        assert flag(client, did).status_code == 201
    r = flag(client, did)
    assert r.status_code == 429 and r.json()["status"] == 429 and "limit 5" in r.json()["error"]
    other = client.post(
        f"/api/detections/{did}/feedback", json={"verdict": "confirmed"}, headers={"User-Agent": "another browser"}
    )
    assert other.status_code == 429  # the limit keys on the address only (over HTTP: tests/web/test_hardening.py)


def test_reviewer_endpoints_need_reviewer_token(client, project):
    assert client.get("/api/feedback?status=pending").status_code == 401
    assert client.get("/api/feedback?status=pending").json()["status"] == 401
    assert client.get("/api/feedback", headers=auth("wrong")).status_code == 401
    r = client.get("/api/feedback?status=pending", headers=auth(project.reader_token))
    assert r.status_code == 403 and "'reader1'" in r.json()["error"]
    assert client.post("/api/feedback/1/accept").status_code == 401
    assert client.get("/api/feedback?status=pending", headers=auth(project.reviewer_token)).status_code == 200
    assert client.get("/api/label/queue", headers=auth(project.reader_token)).status_code == 403


def test_accept_makes_labelled_example_and_map_shows_it(client, project):
    did = project.detection_ids[2]
    fid = flag(client, did, category="field").json()["id"]
    fid2 = flag(client, project.detection_ids[0], verdict="confirmed", category=None).json()["id"]
    fid3 = flag(client, project.detection_ids[3]).json()["id"]
    queue = client.get("/api/feedback?status=pending", headers=auth(project.reviewer_token)).json()
    assert [f["id"] for f in queue["feedback"]] == [fid, fid2, fid3]
    out = client.post(f"/api/feedback/{fid}/accept", headers=auth(project.reviewer_token)).json()
    assert out["status"] == "accepted" and out["reviewed_by"] == "olena" and out["example_id"]
    out2 = client.post(f"/api/feedback/{fid2}/accept", headers=auth(project.reviewer_token)).json()
    rejected = client.post(f"/api/feedback/{fid3}/reject", headers=auth(project.reviewer_token)).json()
    assert rejected["status"] == "rejected" and rejected["example_id"] is None
    again = client.post(f"/api/feedback/{fid}/accept", headers=auth(project.reviewer_token))
    assert again.status_code == 409 and "already accepted" in again.json()["error"]

    store = ExampleStore(connect(project.db_path))
    ex = store.get(out["example_id"])
    assert (ex.label, ex.category, ex.source, ex.added_by, ex.imagery_date) == (
        "not_mining",
        "field",
        "review",
        "olena",
        "2018-05-12",
    )
    assert abs(ex.lat - 51.3194) < 0.001 and ex.width > 32
    assert store.pixels(ex.id).mean() > 20
    assert store.get(out2["example_id"]).label == "mining"
    props = {f["id"]: f["properties"] for f in client.get("/api/detections").json()["features"]}
    assert props[did]["review"] == "not_mining" and props[project.detection_ids[0]]["review"] == "confirmed"
    assert props[project.detection_ids[3]]["review"] is None and props[project.detection_ids[3]]["pending"] == 0
    assert client.get("/api/feedback?status=pending", headers=auth(project.reviewer_token)).json()["count"] == 0


def test_accept_falls_back_to_thumbnail_without_cached_imagery(client, project):
    conn = connect(project.db_path)
    conn.execute("UPDATE scans SET imagery_source_id = 'not-cached'")
    fid = flag(client, project.detection_ids[0]).json()["id"]
    out = client.post(f"/api/feedback/{fid}/accept", headers=auth(project.reviewer_token)).json()
    assert ExampleStore(conn).pixels(out["example_id"]).shape == (128, 128, 3)


def test_label_queue_most_uncertain_first_and_undo(client, project):
    h = auth(project.reviewer_token)
    q = client.get("/api/label/queue?limit=10", headers=h).json()
    items = q["items"]
    assert q["scan_id"] == project.scan_id and len(items) == 10 and q["labelled"] == 0
    dist = [abs(i["prob"] - q["threshold"]) for i in items]
    assert dist == sorted(dist)
    cell = next(i for i in items if i["kind"] == "cell")
    chip = client.get(cell["chip_url"], headers=h)
    assert chip.status_code == 200 and decode_image(chip.content).mean() > 20
    r = client.post("/api/label", json={"key": cell["key"], "label": "not_mining", "category": "field"}, headers=h)
    assert r.status_code == 201 and r.json()["created"]
    ex = ExampleStore(connect(project.db_path)).get(r.json()["example_id"])
    assert (ex.label, ex.source, ex.category, ex.added_by) == ("not_mining", "label-page", "field", "olena")
    skip = client.post("/api/label", json={"key": items[1]["key"], "label": "skip"}, headers=h).json()
    q2 = client.get("/api/label/queue?limit=10", headers=h).json()
    assert q2["labelled"] == 2 and cell["key"] not in [i["key"] for i in q2["items"]]
    assert client.post(f"/api/label/{r.json()['action_id']}/undo", headers=h).json()["undone"]
    assert client.post(f"/api/label/{skip['action_id']}/undo", headers=h).status_code == 200
    assert ExampleStore(connect(project.db_path)).get(ex.id).status == "excluded"
    assert client.get("/api/label/queue?limit=10", headers=h).json()["items"][0]["key"] == items[0]["key"]
    again = client.post("/api/label", json={"key": cell["key"], "label": "not_mining"}, headers=h).json()
    assert again["example_id"] == ex.id and ExampleStore(connect(project.db_path)).get(ex.id).status == "active"
    bad = client.post("/api/label", json={"key": "x1", "label": "mining"}, headers=h)
    assert bad.status_code == 422 and "'x1'" in bad.json()["error"]
    bad = client.post("/api/label", json={"key": cell["key"], "label": "perhaps"}, headers=h)
    assert bad.status_code == 422 and "'perhaps'" in bad.json()["error"]


def test_unknown_route_and_method_are_json(client):
    assert client.get("/api/nothing").json() == {"error": "Not Found", "status": 404}
    r = client.delete("/api/detections")
    assert r.status_code == 405 and r.json()["status"] == 405


def test_pixels_of_review_example_are_rgb(client, project):
    fid = flag(client, project.detection_ids[4], verdict="confirmed", category=None).json()["id"]
    out = client.post(f"/api/feedback/{fid}/accept", headers=auth(project.reviewer_token)).json()
    px = ExampleStore(connect(project.db_path)).pixels(out["example_id"])
    assert px.dtype == np.uint8 and px.ndim == 3


def test_label_area_sample_units_blind_through_area_review(client, project):
    from amberwatch.results.area_review import pending_units
    from amberwatch.results.sampling import draw_sample, sample_units

    conn = connect(project.db_path)
    sample = draw_sample(conn, project.scan_id, 6, allocation="equal", seed=1)
    h = auth(project.reviewer_token)
    q = client.get(f"/api/label/queue?sample={sample.sample_id}", headers=h).json()
    assert q["sample_id"] == sample.sample_id and q["scan_id"] == project.scan_id and q["labelled"] == 0
    assert len(q["items"]) == 6 and all(i["kind"] == "unit" and i["prob"] is None for i in q["items"])
    first, second = q["items"][0], q["items"][1]
    assert decode_image(client.get(first["chip_url"], headers=h).content).mean() > 20
    r = client.post("/api/label", json={"key": first["key"], "label": "mining"}, headers=h)
    assert r.status_code == 201 and r.json()["example_id"] is None  # a reference label, not a training example
    client.post("/api/label", json={"key": second["key"], "label": "skip"}, headers=h)
    unit_id = int(first["key"].split("/")[1])
    assert {u["unit_id"]: u["reference_class"] for u in sample_units(conn, sample.sample_id)}[unit_id] == "mining"
    assert len(pending_units(conn, sample.sample_id)) == 5
    q2 = client.get(f"/api/label/queue?sample={sample.sample_id}", headers=h).json()
    assert q2["labelled"] == 1 and q2["items"][-1]["key"] == second["key"]  # skipped units come last
    assert ExampleStore(conn).examples(status=None) == []
    missing = client.post("/api/label", json={"key": f"u{sample.sample_id}/99999", "label": "mining"}, headers=h)
    assert missing.status_code == 404 and "99999" in missing.json()["error"]
    assert client.get("/api/label/queue?sample=777", headers=h).status_code == 404


def test_label_no_imagery_takes_a_sample_unit_out_and_draws_another(client, project):
    from amberwatch.results.area_review import pending_units
    from amberwatch.results.sampling import draw_sample, sample_units

    conn = connect(project.db_path)
    sample = draw_sample(conn, project.scan_id, 6, allocation="equal", seed=1)
    h = auth(project.reviewer_token)
    first = client.get(f"/api/label/queue?sample={sample.sample_id}", headers=h).json()["items"][0]
    r = client.post("/api/label", json={"key": first["key"], "label": "no_imagery"}, headers=h)
    assert r.status_code == 201 and r.json()["example_id"] is None
    new_key = r.json()["replacement_key"]
    units = {u["unit_id"]: u for u in sample_units(conn, sample.sample_id)}
    old, new = units[int(first["key"].split("/")[1])], units[int(new_key.split("/")[1])]
    assert old["reference_class"] == "no_imagery" and new["reference_class"] is None
    assert new["stratum"] == old["stratum"] and len(units) == 7
    assert (new["x"], new["y"], new["cell_row"], new["cell_col"]) not in {
        (u["x"], u["y"], u["cell_row"], u["cell_col"]) for uid, u in units.items() if uid != new["unit_id"]
    }
    keys = [i["key"] for i in client.get(f"/api/label/queue?sample={sample.sample_id}", headers=h).json()["items"]]
    assert new_key in keys and first["key"] not in keys and len(pending_units(conn, sample.sample_id)) == 6
    cell = client.get("/api/label/queue", headers=h).json()["items"][0]["key"]
    refused = client.post("/api/label", json={"key": cell, "label": "no_imagery"}, headers=h)
    assert refused.status_code == 422 and "area sample units only" in refused.json()["error"]


def test_label_page_checks_imported_examples(client, project, tmp_path):
    conn = connect(project.db_path)
    store = ExampleStore(conn)
    rng = np.random.default_rng(0)
    ids = [
        store.add(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8), label, source="import")[0]
        for label in ("mining", "not_mining", "mining")
    ]
    h = auth(project.reviewer_token)
    q = client.get("/api/label/queue?examples=import", headers=h).json()
    assert [i["key"] for i in q["items"]] == [f"e{i}" for i in ids] and q["items"][0]["outline"] is None
    assert decode_image(client.get(q["items"][0]["chip_url"], headers=h).content).shape == (40, 40, 3)
    agree = client.post("/api/label", json={"key": f"e{ids[0]}", "label": "mining"}, headers=h).json()
    disagree = client.post("/api/label", json={"key": f"e{ids[1]}", "label": "mining"}, headers=h).json()
    assert store.get(ids[0]).status == "active"
    ex = store.get(ids[1])
    assert ex.status == "excluded" and "olena" in ex.exclude_reason and ex.label == "not_mining"
    q2 = client.get("/api/label/queue?examples=import", headers=h).json()
    assert [i["key"] for i in q2["items"]] == [f"e{ids[2]}"] and q2["labelled"] == 2
    client.post(f"/api/label/{disagree['action_id']}/undo", headers=h)
    assert store.get(ids[1]).status == "active" and agree["example_id"] == ids[0]


def test_large_responses_are_compressed(client):
    r = client.get("/vendor/leaflet/leaflet.js", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
    assert r.headers["content-security-policy"].startswith("default-src 'self'")
