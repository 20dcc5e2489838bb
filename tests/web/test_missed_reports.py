"""Issue 30 item 1: readers report mining the map missed; reviewers accept (a mining example, its tiles queued for
labelling) or reject. In-process API tests over a real SQLite project and a real PNG tile cache."""

from __future__ import annotations

import math
import sqlite3

import mercantile
import numpy as np

from amberwatch.db import connect
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.decode import decode_image
from amberwatch.imagery.tiles import lnglat_to_world_px
from amberwatch.labels.store import ExampleStore
from amberwatch.review.chips import point_bbox
from tests.web.conftest import CENTER_LAT, CENTER_LON, SOURCE_ID, ZOOM

M_PER_DEG = 111_320.0


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def east(metres: float) -> tuple[float, float]:
    """A point ``metres`` east of the middle of the fixture's centre tile (its 3 x 3 tiles are the scan's area)."""
    b = mercantile.bounds(mercantile.tile(CENTER_LON, CENTER_LAT, ZOOM))
    lon, lat = (b.west + b.east) / 2, (b.south + b.north) / 2
    return lon + metres / (M_PER_DEG * math.cos(math.radians(lat))), lat


def report(client, scan_id: int, point: tuple[float, float], note: str | None = None, expect: int = 201) -> dict:
    r = client.post(f"/api/scans/{scan_id}/reports", json={"lon": point[0], "lat": point[1], "note": note})
    assert r.status_code == expect, r.text
    return r.json()


def rows(project, sql: str, args: tuple = ()) -> list[tuple]:
    conn = connect(project.db_path)
    try:
        return [tuple(r) for r in conn.execute(sql, args)]
    finally:
        conn.close()


def test_a_report_is_stored_and_a_second_one_nearby_replaces_it(client, project):
    first = report(client, project.scan_id, east(0), note="fresh pits by the road")
    assert (first["status"], first["note"], first["replaced"]) == ("pending", "fresh pits by the road", [])
    assert first["scan_id"] == project.scan_id and "reader_hash" not in first and "client_hash" not in first
    second = report(client, project.scan_id, east(30))  # within 50 m: the reader moves their report
    assert second["replaced"] == [first["id"]]
    third = report(client, project.scan_id, east(-120))  # another place: a report of its own
    assert third["replaced"] == []
    client.cookies.clear()  # another reader (a new aw_reader cookie) at the same point
    other = report(client, project.scan_id, east(30))
    assert other["replaced"] == []
    stored = rows(project, "SELECT id, status, superseded_by, reader_hash IS NOT NULL FROM web_reports ORDER BY id")
    assert stored == [
        (first["id"], "superseded", second["id"], 1),
        (second["id"], "pending", None, 1),
        (third["id"], "pending", None, 1),
        (other["id"], "pending", None, 1),
    ]
    queue = client.get("/api/reports", headers=auth(project.reviewer_token)).json()
    assert [r["id"] for r in queue["reports"]] == [second["id"], third["id"], other["id"]]
    assert queue["pending"] == {"reports": 3} and queue["reports"][0]["place"]
    assert client.get("/api/reports").status_code == 401


def test_reports_share_the_readers_hourly_limit_with_flags(client, project):
    r = client.post(f"/api/detections/{project.detection_ids[0]}/feedback", json={"verdict": "confirmed"})
    assert r.status_code == 201, r.text
    for metres in (-200, -120, -40, 40):  # the client fixture takes 5 corrections an hour from one reader
        report(client, project.scan_id, east(metres))
    refused = report(client, project.scan_id, east(110), expect=429)
    assert "reader" in refused["error"] and "limit 5" in refused["error"]


def test_a_report_outside_the_area_or_without_imagery_is_refused(client, project):
    outside = report(client, project.scan_id, east(2000), expect=422)
    assert "outside the area scan" in outside["error"]
    assert "lat" in report(client, project.scan_id, (east(0)[0], 95.0), expect=422)["error"]
    assert report(client, 999, east(0), expect=404)["error"]
    centre = mercantile.tile(CENTER_LON, CENTER_LAT, ZOOM)
    with sqlite3.connect(project.cache_path) as cache:  # the centre tile was never fetched
        cache.execute("DELETE FROM tiles WHERE z = ? AND x = ? AND y = ?", (ZOOM, centre.x, centre.y))
    missing = report(client, project.scan_id, east(0), expect=422)
    assert "no imagery" in missing["error"] and f"scan {project.scan_id}" in missing["error"]
    assert rows(project, "SELECT COUNT(*) FROM web_reports") == [(0,)]


def expected_chip(project, lon: float, lat: float) -> np.ndarray:
    """The point's chip cut by hand from the decoded cached tiles: a square of about 120 m centred on it."""
    box = point_bbox(lon, lat)
    x0, y0 = lnglat_to_world_px(box.west_deg, box.north_deg, ZOOM)
    x1, y1 = lnglat_to_world_px(box.east_deg, box.south_deg, ZOOM)
    x0, y0, x1, y1 = math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1)  # whole pixels covering it
    centre = mercantile.tile(lon, lat, ZOOM)
    mosaic = np.zeros((768, 768, 3), np.uint8)
    with TileCache(project.cache_path) as cache:
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                tile = cache.get(SOURCE_ID, ZOOM, centre.x + dx, centre.y + dy)
                pixels = decode_image(tile.image, "tile")
                mosaic[(dy + 1) * 256 : (dy + 2) * 256, (dx + 1) * 256 : (dx + 2) * 256] = pixels[..., :3]
    ox, oy = (centre.x - 1) * 256, (centre.y - 1) * 256
    return mosaic[y0 - oy : y1 - oy, x0 - ox : x1 - ox]


def test_accepting_a_report_makes_a_mining_example_and_queues_its_neighbours(client, project):
    point = east(10)
    sent = report(client, project.scan_id, point, note="pits")
    assert client.get(sent["chip_url"]).status_code == 401  # where a reader reported is for reviewers only
    chip = client.get(sent["chip_url"], headers=auth(project.reviewer_token))
    assert chip.status_code == 200 and chip.headers["content-type"] == "image/jpeg"
    assert min(decode_image(chip.content, "view").shape[:2]) >= 256
    assert client.post(f"/api/reports/{sent['id']}/accept").status_code == 401  # readers cannot decide

    r = client.post(f"/api/reports/{sent['id']}/accept", headers=auth(project.reviewer_token))
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "accepted" and done["example_id"] and done["remaining"] == {"reports": 0}
    conn = connect(project.db_path)
    store = ExampleStore(conn)
    ex = store.get(done["example_id"])
    assert (ex.label, ex.source, ex.source_image, ex.status) == ("mining", "review", f"report-{sent['id']}", "active")
    assert ex.lon == point[0] and ex.lat == point[1]
    pixels = store.pixels(ex.id)
    want = expected_chip(project, *point)
    side_px = 120 / (156_543.03 * math.cos(math.radians(CENTER_LAT)) / 2**ZOOM)
    assert abs(pixels.shape[0] - side_px) <= 3 and abs(pixels.shape[1] - side_px) <= 3
    assert pixels.shape == want.shape and np.array_equal(pixels, want)
    conn.close()

    centre = mercantile.tile(*point, ZOOM)
    around = [(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if dx or dy]
    neighbours = {f"t{project.scan_id}/{ZOOM}/{centre.x + dx}/{centre.y + dy}" for dx, dy in around}
    assert set(done["queued"]) == neighbours
    assert set(rows(project, "SELECT item_key, source FROM web_label_queue")) == {(k, "report") for k in neighbours}
    again = client.post(f"/api/reports/{sent['id']}/reject", headers=auth(project.reviewer_token))
    assert again.status_code == 409 and "already accepted" in again.json()["error"]

    undone = client.post(f"/api/reports/{sent['id']}/undo", headers=auth(project.reviewer_token)).json()
    assert (undone["status"], undone["example_id"]) == ("pending", None)
    assert rows(project, "SELECT status FROM examples WHERE id = ?", (done["example_id"],)) == [("excluded",)]


def test_rejecting_a_report_makes_nothing(client, project):
    sent = report(client, project.scan_id, east(-40))
    r = client.post(f"/api/reports/{sent['id']}/reject", headers=auth(project.reviewer_token))
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["example_id"]) == ("rejected", None)
    assert rows(project, "SELECT COUNT(*) FROM examples") == [(0,)]
    assert rows(project, "SELECT COUNT(*) FROM web_label_queue") == [(0,)]
    rejected = client.get("/api/reports?status=rejected", headers=auth(project.reviewer_token)).json()["reports"]
    assert [x["id"] for x in rejected] == [sent["id"]]
