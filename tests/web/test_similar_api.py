"""'More like this' through the web API, in-process against a real SQLite project with tile embeddings.

The wide project's embeddings put the tiles under the detections and a few hidden tiles far from them near one
direction ("pits") and every other tile near another.
"""

from __future__ import annotations

import math

import mercantile
import pytest

from amberwatch.db import connect
from amberwatch.imagery.decode import decode_image
from amberwatch.labels.store import ExampleStore
from amberwatch.results.store import get_detection
from tests.web.conftest import ZOOM


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def wide_client(wide_project):
    from fastapi.testclient import TestClient

    from amberwatch.web.app import create_app

    with TestClient(create_app(wide_project.db_path, wide_project.cache_path)) as c:
        yield c


def tile_of(place: dict) -> tuple[int, int, int]:
    z, x, y = (int(v) for v in place["tile"].split("/"))
    return z, x, y


def key_tile(key: str) -> tuple[int, int, int]:
    z, x, y = (int(v) for v in key.split("/")[1:])
    return z, x, y


def metres(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    dx = (lon1 - lon2) * 111_320 * math.cos(math.radians(lat1))
    return math.hypot(dx, (lat1 - lat2) * 111_320)


def confirm(client, project, detection_id: int) -> None:
    """A reader confirms a detection and the reviewer accepts it."""
    fid = client.post(f"/api/detections/{detection_id}/feedback", json={"verdict": "confirmed"}).json()["id"]
    r = client.post(f"/api/feedback/{fid}/accept", headers=auth(project.reviewer_token))
    assert r.status_code == 200, r.text


def test_similar_places_rank_the_hidden_pits_first_away_from_the_query(wide_client, wide_project):
    did = wide_project.detection_ids[0]
    r = wide_client.get(f"/api/similar?detection={did}&top=6")
    assert r.status_code == 200, r.text
    data = r.json()
    places = data["places"]
    assert data["scan_id"] == wide_project.scan_id and 1 <= len(places) <= 6
    assert [p["rank"] for p in places] == list(range(1, len(places) + 1))
    assert [p["score"] for p in places] == sorted((p["score"] for p in places), reverse=True)
    det = get_detection(connect(wide_project.db_path), did)
    for p in places:
        assert metres(p["lon"], p["lat"], det.centroid_lon, det.centroid_lat) > 100
        assert {"lat", "lon", "score", "tile", "tiles", "detection_id", "chip_url"} <= set(p)
    hidden = wide_project.hidden_pits
    # The four hidden places (the last two hidden tiles touch: one place) come first; the rest look different.
    assert {tile_of(p) for p in places[:4]} <= set(hidden) and all(p["score"] > 0.8 for p in places[:4])
    assert all(p["score"] < 0.5 for p in places[4:])
    pair = [p for p in places[:4] if tile_of(p) in hidden[3:]]
    assert len(pair) == 1 and pair[0]["tiles"] >= 2
    assert all(p["detection_id"] is None for p in places[:4])
    for p in places[:2]:
        chip = wide_client.get(p["chip_url"])
        assert chip.status_code == 200 and chip.headers["content-type"] == "image/jpeg"
        assert decode_image(chip.content).mean() > 20


def test_similar_reuses_the_scan_index_and_takes_several_queries(wide_client, wide_project):
    d0, d1, d2 = wide_project.detection_ids[:3]
    first = wide_client.get(f"/api/similar?detection={d0}").json()
    assert wide_client.get(f"/api/similar?detection={d0}").json() == first
    both = wide_client.get(f"/api/similar?detection={d0}&detection={d1}&unlike={d2}&top=3").json()
    assert len(both["places"]) == 3
    assert wide_client.app.state.vectors.builds == 1


def test_similar_errors_are_json(wide_client, wide_project):
    d0 = wide_project.detection_ids[0]
    assert wide_client.get("/api/similar?detection=999").json() == {
        "error": "detection 999 does not exist",
        "status": 404,
    }
    for bad in ("top=0", "top=1000", "top=ten"):
        r = wide_client.get(f"/api/similar?detection={d0}&{bad}")
        assert r.status_code == 422 and r.json()["status"] == 422 and "top" in r.json()["error"]
    r = wide_client.get("/api/similar")
    assert r.status_code == 422 and "detection" in r.json()["error"]
    missing = wide_client.get(f"/api/scans/{wide_project.scan_id}/tiles/{ZOOM}/1/1/chip.jpg")
    assert missing.status_code == 404 and missing.json()["status"] == 404
    assert wide_client.get(f"/api/scans/{wide_project.scan_id}/tiles/3/9/9/chip.jpg").status_code == 422
    assert wide_client.get(f"/api/scans/999/tiles/{ZOOM}/1/1/chip.jpg").status_code == 404


def test_similar_on_a_scan_without_embeddings_is_404_with_the_reason(client, project):
    connect(project.db_path).execute("UPDATE scan_tiles SET embedding = NULL")
    r = client.get(f"/api/similar?detection={project.detection_ids[0]}")
    assert r.status_code == 404 and r.json()["status"] == 404
    assert f"scan {project.scan_id} kept no tile embeddings" in r.json()["error"]


def test_queue_needs_a_reviewer_and_stores_each_tile_once(wide_client, wide_project):
    tiles = [f"{z}/{x}/{y}" for z, x, y in wide_project.hidden_pits[:3]]
    body = {"scan_id": wide_project.scan_id, "tiles": tiles, "source": "similar"}
    assert wide_client.post("/api/label/queue", json=body).status_code == 401
    assert wide_client.post("/api/label/queue", json=body, headers=auth(wide_project.reader_token)).status_code == 403
    h = auth(wide_project.reviewer_token)
    r = wide_client.post("/api/label/queue", json=body, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["queued"] == 3 and r.json()["already_queued"] == 0
    again = wide_client.post("/api/label/queue", json={**body, "tiles": [*tiles, tiles[0]]}, headers=h).json()
    assert again["queued"] == 0 and again["already_queued"] == 3
    rows = connect(wide_project.db_path).execute("SELECT item_key, source, added_by FROM web_label_queue").fetchall()
    assert [tuple(r) for r in rows] == [(f"t{wide_project.scan_id}/{t}", "similar", "olena") for t in tiles]
    for bad, status in (("17/1/2/3", 422), (f"{ZOOM - 1}/1/1", 422), (f"{ZOOM}/1/1", 404)):
        r = wide_client.post("/api/label/queue", json={**body, "tiles": [bad]}, headers=h)
        assert r.status_code == status and bad in r.json()["error"]
    r = wide_client.post("/api/label/queue", json={**body, "source": "<b>"}, headers=h)
    assert r.status_code == 422 and "'<b>'" in r.json()["error"]


def test_like_mode_without_a_confirmed_site_says_so(wide_client, wide_project):
    h = auth(wide_project.reviewer_token)
    q = wide_client.get("/api/label/queue?mode=like", headers=h).json()
    assert q["mode"] == "like" and q["items"] == [] and q["confirmed"] == 0
    assert q["note"].startswith("No confirmed site yet")
    bad = wide_client.get("/api/label/queue?mode=sideways", headers=h)
    assert bad.status_code == 422 and "'sideways'" in bad.json()["error"]
    assert wide_client.get("/api/label/queue", headers=h).json()["mode"] == "uncertain"


def test_like_mode_puts_queued_tiles_first_then_tiles_like_the_confirmed_sites(wide_client, wide_project):
    h = auth(wide_project.reviewer_token)
    scan, (d0, d1) = wide_project.scan_id, wide_project.detection_ids[:2]
    confirm(wide_client, wide_project, d0)  # an accepted 'confirmed' flag ...
    assert wide_client.post("/api/label", json={"key": f"d{d1}", "label": "mining"}, headers=h).status_code == 201
    queued = [wide_project.tiles[1], wide_project.tiles[2]]  # two ordinary tiles, sent by hand
    body = {"scan_id": scan, "tiles": [f"{z}/{x}/{y}" for z, x, y in queued]}
    wide_client.post("/api/label/queue", json=body, headers=h)

    q = wide_client.get(f"/api/label/queue?mode=like&scan={scan}&limit=6", headers=h).json()
    assert q["confirmed"] == 2 and q["note"] is None and q["queued"] == 2 and len(q["items"]) == 6
    items = q["items"]
    assert [key_tile(i["key"]) for i in items[:2]] == queued
    assert all(i["kind"] == "tile" and i["key"].startswith(f"t{scan}/") for i in items)
    assert all(i["reason"].startswith("sent to the queue") for i in items[:2])
    # Then pit-like tiles, but not those under the confirmed sites: they are known already.
    conn = connect(wide_project.db_path)
    under = set()
    for did in (d0, d1):
        d = get_detection(conn, did)
        under |= {(t.z, t.x, t.y) for t in mercantile.tiles(*d.bbox.as_tuple(), ZOOM)}
    ranked = [key_tile(i["key"]) for i in items[2:]]
    assert set(ranked) <= wide_project.pit_tiles - under and len(set(ranked)) == 4
    assert all("like the confirmed sites" in i["reason"] for i in items[2:])
    gaps = [abs(i["prob"] - q["threshold"]) for i in items[2:]]
    assert gaps == sorted(gaps)  # the alike tiles nearest the threshold first: what a label is worth (round 12)
    chip = wide_client.get(items[2]["chip_url"], headers=h)
    assert chip.status_code == 200 and decode_image(chip.content).mean() > 20
    assert items[2]["prob"] is not None and 0 <= items[2]["outline"][0] < items[2]["outline"][2] <= 1

    # Labelling a tile makes a training example, like a cell, and takes it out of the queue.
    r = wide_client.post("/api/label", json={"key": items[2]["key"], "label": "mining"}, headers=h)
    assert r.status_code == 201 and r.json()["created"]
    ex = ExampleStore(connect(wide_project.db_path)).get(r.json()["example_id"])
    assert (ex.label, ex.source, ex.source_image, ex.added_by) == ("mining", "label-page", f"scan-{scan}", "olena")
    b = mercantile.bounds(*key_tile(items[2]["key"])[1:], ZOOM)
    assert b.west < ex.lon < b.east and b.south < ex.lat < b.north and ex.width >= 256
    q2 = wide_client.get(f"/api/label/queue?mode=like&scan={scan}&limit=6", headers=h).json()
    assert items[2]["key"] not in [i["key"] for i in q2["items"]]
    wide_client.post(f"/api/label/{r.json()['action_id']}/undo", headers=h)
    q3 = wide_client.get(f"/api/label/queue?mode=like&scan={scan}&limit=6", headers=h).json()
    assert items[2]["key"] in [i["key"] for i in q3["items"]]


def test_tile_keys_parse_and_name_their_tile(wide_client, wide_project):
    h = auth(wide_project.reviewer_token)
    key = f"t{wide_project.scan_id}/{ZOOM}/1/1"
    r = wide_client.post("/api/label", json={"key": key, "label": "mining"}, headers=h)
    assert r.status_code == 404 and f"{ZOOM}/1/1" in r.json()["error"]
    bad = wide_client.post("/api/label", json={"key": "t1/2/3", "label": "mining"}, headers=h)
    assert bad.status_code == 422 and "t<SCAN>/<Z>/<X>/<Y>" in bad.json()["error"]


def test_similar_places_never_return_the_query_site_or_its_own_tiles(wide_client, wide_project):
    """A site larger than the ~100 m left out around its centre: none of its own tiles, nor itself, comes back."""
    from tests.web.conftest import CENTER_LAT, CENTER_LON, insert_detections

    conn = connect(wide_project.db_path)
    (big,) = insert_detections(conn, wide_project.scan_id, [(CENTER_LON, CENTER_LAT, 0.0016, 0.9)], None)
    west, south, east, north = get_detection(conn, big).bbox.as_tuple()
    conn.close()
    r = wide_client.get(f"/api/similar?detection={big}&top=6")
    assert r.status_code == 200, r.text
    places = r.json()["places"]
    assert places
    for p in places:
        b = mercantile.bounds(*tile_of(p)[1:], ZOOM)
        touches = b.east >= west and b.west <= east and b.north >= south and b.south <= north
        assert not touches and p["detection_id"] != big, p
        assert "Klesiv" in p["place"]  # where it is, in words
