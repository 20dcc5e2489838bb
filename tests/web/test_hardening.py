"""Issue 15, web side: decisions race, rate-limit bypass, private training chips, odd input, local paths, HEAD /
and the one list of categories. Real SQLite projects; the race and the rate limits over real HTTP (uvicorn)."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from amberwatch.db import connect, utc_now_iso
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.decode import decode_image
from amberwatch.labels.store import CATEGORIES, ExampleStore
from amberwatch.review.feedback import FeedbackLimits
from amberwatch.web.app import create_app
from amberwatch.web.commands import proxy_options
from tests.web.conftest import (
    CENTER_LAT,
    CENTER_LON,
    SOURCE_ID,
    LiveServer,
    api_routes,
    build_project,
    insert_detections,
)

HUGE = 2**64


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def is_json_error(r: httpx.Response, status: int) -> bool:
    return (
        r.status_code == status
        and r.headers["content-type"].startswith("application/json")
        and (r.json()["status"] == status and isinstance(r.json()["error"], str))
    )


# -- 2: accept and reject at once --------------------------------------------------------------------------------


def test_accept_and_reject_sent_at_once_one_wins_and_a_rejected_flag_adds_no_example(tmp_path):
    project = build_project(tmp_path)
    conn = connect(project.db_path)
    # One detection per round (inside the cached tiles, so each has its own chip): an accepted flag always adds
    # a new example, and an example of a rejected flag's detection can only come from the race.
    spots = [(CENTER_LON - 0.0025 + 0.00017 * i, CENTER_LAT + 0.0012 * (-1) ** i, 0.0001, 0.7) for i in range(30)]
    detections = insert_detections(conn, project.scan_id, spots, None)
    limits = FeedbackLimits(per_client_hour=1000, pending_per_detection=1000, pending_per_hour=1000)
    app = create_app(project.db_path, project.cache_path, feedback_limits=limits)
    outcomes = []
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=60) as reader:
        for i, did in enumerate(detections):
            flag = reader.post(f"/api/detections/{did}/feedback", json={"verdict": "not_mining", "category": "field"})
            fid = flag.json()["id"]
            order = ("accept", "reject") if i % 2 else ("reject", "accept")
            answers = race(live.url, [f"/api/feedback/{fid}/{d}" for d in order], project.reviewer_token)
            by_decision = dict(zip(order, answers))
            assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
            loser = next(r for r in answers if r.status_code == 409)
            assert is_json_error(loser, 409) and f"feedback {fid}" in loser.json()["error"]
            winner = next(d for d, r in by_decision.items() if r.status_code == 200)
            stored = conn.execute("SELECT status, example_id FROM web_feedback WHERE id = ?", (fid,)).fetchone()
            examples = [e for e in ExampleStore(conn).examples(status=None) if e.source_image == f"detection-{did}"]
            if winner == "accept":
                assert stored["status"] == "accepted" and [e.id for e in examples] == [stored["example_id"]]
                assert examples[0].status == "active"
            else:
                assert stored["status"] == "rejected" and stored["example_id"] is None
                assert examples == [], f"round {i}: flag {fid} rejected, yet example {examples[0].id} was added"
            outcomes.append(winner)
    accepted = conn.execute("SELECT COUNT(*) FROM web_feedback WHERE status = 'accepted'").fetchone()[0]
    assert len(ExampleStore(conn).examples(status=None)) == accepted == outcomes.count("accept")
    print(f"\n{len(outcomes)} races: accept won {outcomes.count('accept')}, reject won {outcomes.count('reject')}")


def race(base_url: str, paths: list[str], token: str) -> list[httpx.Response]:
    """POST to every path at the same moment, one connected client per thread; the answers in order."""
    clients = [httpx.Client(base_url=base_url, timeout=60, headers=auth(token)) for _ in paths]
    for c in clients:
        c.get("/api/me")  # connect first, so the two decisions leave together
    barrier = threading.Barrier(len(paths))
    answers: list[httpx.Response | None] = [None] * len(paths)

    def send(k: int) -> None:
        barrier.wait()
        answers[k] = clients[k].post(paths[k])

    threads = [threading.Thread(target=send, args=(k,)) for k in range(len(paths))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for c in clients:
        c.close()
    assert all(a is not None for a in answers)
    return answers  # type: ignore[return-value]


# -- 3: rate limits ---------------------------------------------------------------------------------------------


def test_rotating_user_agents_over_http_does_not_bypass_the_rate_limit(tmp_path):
    project = build_project(tmp_path)
    app = create_app(project.db_path, project.cache_path, feedback_limit_per_hour=5)
    did = project.detection_ids[0]
    with LiveServer(app, **proxy_options(["127.0.0.1"])) as live, httpx.Client(base_url=live.url, timeout=30) as http:
        codes = [
            http.post(
                f"/api/detections/{did}/feedback",
                json={"verdict": "confirmed"},
                headers={"User-Agent": f"Mozilla/5.0 (rotating {k}) Gecko/{k}"},
            ).status_code
            for k in range(40)
        ]
        assert codes == [201] * 5 + [429] * 35
        # Behind a trusted proxy ('serve --trusted-proxy 127.0.0.1' sets uvicorn so) each reader has its own limit.
        http.cookies.clear()  # another person: no reader cookie yet
        other = http.post(
            f"/api/detections/{did}/feedback", json={"verdict": "confirmed"}, headers={"X-Forwarded-For": "203.0.113.9"}
        )
        assert other.status_code == 201
    assert connect(project.db_path).execute("SELECT COUNT(*) FROM web_feedback").fetchone()[0] == 6


def test_forwarded_address_is_ignored_from_an_untrusted_peer(tmp_path):
    project = build_project(tmp_path)
    app = create_app(project.db_path, project.cache_path, feedback_limit_per_hour=3)
    did = project.detection_ids[0]
    with LiveServer(app, **proxy_options(["192.0.2.1"])) as live, httpx.Client(base_url=live.url) as http:
        codes = [
            http.post(
                f"/api/detections/{did}/feedback",
                json={"verdict": "confirmed"},
                headers={"X-Forwarded-For": f"198.51.100.{k}", "User-Agent": f"ua{k}"},
            ).status_code
            for k in range(6)
        ]
    assert codes == [201] * 3 + [429] * 3


def test_global_caps_keep_the_reviewer_queue_from_being_flooded(tmp_path):
    """Many addresses (a botnet, or a proxy trusting any X-Forwarded-For) still meet the global caps."""
    project = build_project(tmp_path)
    limits = FeedbackLimits(per_client_hour=100, pending_per_detection=3, pending_per_hour=7)
    app = create_app(project.db_path, project.cache_path, feedback_limits=limits)
    d0, d1, d2 = project.detection_ids[:3]
    with LiveServer(app, forwarded_allow_ips="*") as live, httpx.Client(base_url=live.url, timeout=30) as http:
        seq = iter(range(1000))

        def post(did: int) -> httpx.Response:
            k = next(seq)
            headers = {"X-Forwarded-For": f"10.0.{k // 250}.{k % 250}", "User-Agent": f"bot {k}"}
            http.cookies.clear()  # bots keep no reader cookie: each post is a new reader
            return http.post(f"/api/detections/{did}/feedback", json={"verdict": "confirmed"}, headers=headers)

        assert [post(d0).status_code for _ in range(5)] == [201, 201, 201, 429, 429]
        capped = post(d0)
        assert is_json_error(capped, 429) and f"detection {d0} already has 3" in capped.json()["error"]
        assert [post(d1).status_code for _ in range(3)] == [201] * 3
        # 6 pending now; the hourly cap (7) lets one more in, on any detection.
        assert [post(d2).status_code for _ in range(3)] == [201, 429, 429]
        full = post(d2)
        assert is_json_error(full, 429) and "reviewer queue" in full.json()["error"]
        # A reviewer working through the queue makes room on the detection, not beyond the hourly cap.
        fid = connect(project.db_path).execute("SELECT MIN(id) FROM web_feedback").fetchone()[0]
        assert http.post(f"/api/feedback/{fid}/reject", headers=auth(project.reviewer_token)).status_code == 200
        assert post(d0).status_code == 201 and post(d0).status_code == 429
    pending = connect(project.db_path).execute("SELECT COUNT(*) FROM web_feedback WHERE status = 'pending'")
    assert pending.fetchone()[0] == 7


# -- 6: training chips ------------------------------------------------------------------------------------------


def test_label_chips_need_a_reviewer_token_and_detection_chips_stay_public(client, project):
    import numpy as np

    store = ExampleStore(connect(project.db_path))
    rng = np.random.default_rng(5)
    ex_id, _ = store.add(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8), "mining", source="import")
    did = project.detection_ids[0]
    tile_key = f"t{project.scan_id}/" + "/".join(map(str, project.tiles[0]))
    for key in (f"e{ex_id}", f"e{ex_id + 1}", "e999", f"d{did}", tile_key):
        r = client.get(f"/api/label/chip.jpg?key={key}")
        assert is_json_error(r, 401), (key, r.status_code)  # no 200-or-404 oracle to enumerate ids with
    assert is_json_error(client.get(f"/api/label/chip.jpg?key=e{ex_id}", headers=auth(project.reader_token)), 403)
    ok = client.get(f"/api/label/chip.jpg?key=e{ex_id}", headers=auth(project.reviewer_token))
    assert ok.status_code == 200 and decode_image(ok.content).shape == (48, 48, 3)
    assert "no-store" in ok.headers["cache-control"]
    public = client.get(f"/api/detections/{did}/chip.jpg")
    assert public.status_code == 200 and decode_image(public.content).mean() > 20
    assert client.get(f"/api/detections/{did}/thumbnail.jpg").status_code == 200


# -- 7: odd input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/detections?scan={n}"),
        ("GET", "/api/detections/{n}"),
        ("GET", "/api/detections/{n}/thumbnail.jpg"),
        ("GET", "/api/detections/{n}/chip.jpg"),
        ("POST", "/api/detections/{n}/feedback"),
        ("POST", "/api/feedback/{n}/accept"),
        ("POST", "/api/feedback/{n}/reject"),
        ("POST", "/api/label/{n}/undo"),
        ("GET", "/api/label/queue?scan={n}"),
        ("GET", "/api/label/queue?sample={n}"),
        ("GET", "/api/label/chip.jpg?key=d{n}"),
        ("GET", "/api/similar?detection={n}"),
        ("GET", "/api/scans/{n}/tiles/17/1/1/chip.jpg"),
        ("GET", "/api/scans/1/tiles/17/{n}/1/chip.jpg"),
        ("GET", f"/tiles/{SOURCE_ID}/17/{{n}}/1"),
        ("GET", f"/tiles/{SOURCE_ID}/17/1/{{n}}.png"),
    ],
)
def test_integers_above_2_63_in_routes_give_422_json(client, project, method, path):
    body = {"verdict": "confirmed"} if path.endswith("feedback") else None
    r = client.request(method, path.format(n=HUGE), json=body, headers=auth(project.reviewer_token))
    assert is_json_error(r, 422), (r.status_code, r.text)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/detections/{did}/feedback", {"verdict": "not_mining", "category": "field", "comment": "pit \ud800"}),
        ("/api/detections/{did}/feedback", {"verdict": "not_mining", "category": "fi\udfffeld"}),
        ("/api/label", {"key": "d{did}", "label": "not_mining", "category": "\ud800"}),
        ("/api/label/queue", {"scan_id": 1, "tiles": ["17/1/\ud800"], "source": "similar"}),
        ("/api/label/queue", {"scan_id": HUGE, "tiles": ["17/1/1"]}),
    ],
)
def test_lone_surrogates_and_huge_ints_in_bodies_give_422_json(client, project, path, body):
    did = project.detection_ids[0]
    raw = json.dumps(body).replace("{did}", str(did))  # \ud800 stays an escape: valid JSON, invalid Unicode
    r = client.post(
        path.format(did=did),
        content=raw.encode("ascii"),
        headers={"Content-Type": "application/json", **auth(project.reviewer_token)},
    )
    assert is_json_error(r, 422), (r.status_code, r.text)
    assert connect(project.db_path).execute("SELECT COUNT(*) FROM web_feedback").fetchone()[0] == 0


def test_an_unexpected_crash_is_a_json_500_without_traceback(project):
    app = create_app(project.db_path, project.cache_path)

    @app.get("/api/boom")
    def boom() -> None:
        raise RuntimeError("secret internals /tmp/somewhere")

    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/api/boom")
    assert is_json_error(r, 500) and "/tmp" not in r.text and "Traceback" not in r.text


# -- 11: no local paths or keys in public output ----------------------------------------------------------------


def add_scan(conn, name: str | None, imagery: str, params: object, source_id: str = SOURCE_ID) -> int:
    aoi = json.dumps({"type": "Polygon", "coordinates": [[[26.9, 51.3], [26.91, 51.3], [26.91, 51.31], [26.9, 51.3]]]})
    cur = conn.execute(
        "INSERT INTO scans (name, aoi_geojson, imagery, imagery_source_id, zoom, model_version, model_threshold,"
        " status, params_json, started_at, finished_at, tiles_total, tiles_done, area_scanned_km2)"
        " VALUES (?, ?, ?, ?, 17, '0', 0.5, 'finished', ?, ?, ?, 0, 0, 0.0)",
        (name, aoi, imagery, source_id, params if isinstance(params, str) else json.dumps(params), utc_now_iso(), None),
    )
    return int(cur.lastrowid)


@pytest.fixture
def leaky_project(tmp_path: Path):
    """The small project scanned from local files: imagery folder, AOI path as its name, cache and model paths."""
    project = build_project(tmp_path)
    imagery = tmp_path / "imagery" / "tiles"
    aoi = tmp_path / "aois" / "klesiv-north.geojson"
    conn = connect(project.db_path)
    params = {"cache_path": str(project.cache_path), "model_path": str(tmp_path / "models" / "m.onnx"), "tile_px": 256}
    conn.execute(
        "UPDATE scans SET name = ?, imagery = ?, params_json = ? WHERE id = ?",
        (str(aoi), str(imagery), json.dumps(params), project.scan_id),
    )
    with TileCache(project.cache_path) as cache:
        cache.register_source(SOURCE_ID, str(imagery))
    return project


def public_urls(app, project) -> list[tuple[str, str]]:
    """(method, URL) of every public GET route (filled with the project's ids), the pages and some errors."""
    z, x, y = project.tiles[0]
    did = project.detection_ids[0]
    values = {"detection_id": did, "scan_id": project.scan_id, "source_id": SOURCE_ID, "z": z, "x": x, "y": y}
    values |= {"feedback_id": 1, "action_id": 1, "report_id": 1}
    urls = []
    for path, methods, _ in api_routes(app):
        if "GET" in methods:
            url = path.format(**values)
            urls.append(("GET", url + (f"?detection={did}" if url == "/api/similar" else "")))
    urls += [("HEAD", "/"), ("GET", "/openapi.json"), ("GET", "/static/map.js"), ("GET", "/api/detections/999")]
    urls += [("GET", "/tiles/x/1/1/1")]
    urls += [("GET", f"/api/scans/{project.scan_id}/tiles/{z}/{x + 9}/{y}/chip.jpg"), ("GET", "/api/nothing")]
    urls += [("POST", f"/api/detections/{did}/feedback"), ("GET", "/api/detections?scan=999")]
    return urls


def test_public_api_and_pages_never_show_a_local_path_or_an_api_key(leaky_project, tmp_path):
    conn = connect(leaky_project.db_path)
    url = "https://tiles.example.com/{z}/{x}/{y}.jpg?apikey=SECRETKEY123"
    keyed = add_scan(conn, None, url, {"api_key": "PARAMKEY4567"})
    app = create_app(leaky_project.db_path, leaky_project.cache_path)
    seen = 0
    with TestClient(app) as c:
        for method, url in public_urls(app, leaky_project):
            r = c.request(method, url, json={"verdict": "confirmed"} if method == "POST" else None)
            assert r.status_code < 500, (url, r.text)
            text = r.content.decode("utf-8", "replace")
            for secret in (str(tmp_path), "/tmp/", "SECRETKEY123", "tiles.example.com", "PARAMKEY4567"):
                assert secret not in text, f"{method} {url} shows {secret!r}"
            seen += 1
        scans = {s["id"]: s for s in c.get("/api/scans").json()["scans"]}
    assert seen >= 18
    mine = scans[leaky_project.scan_id]
    assert mine["name"] == "klesiv-north" and mine["imagery_credit"] == "imagery provider not stated"
    assert mine["credit_stated"] is False and mine["area_name"] == "Klesiv"
    assert "imagery" not in mine and scans[keyed]["name"] == f"scan {keyed}"


def test_imagery_credit_from_preset_attribution_or_stored_credit(project):
    import xyzservices

    conn = connect(project.db_path)
    esri = add_scan(conn, "kyiv", "Esri.WorldImagery", {})
    credited = add_scan(conn, "C:\\work\\rivne.geojson", "/data/ortho.tif", {"imagery_credit": " Drone\n© NGO "})
    malformed = ("not json", "[1]", {"imagery_credit": 42}, {"imagery_credit": ""})
    odd = [add_scan(conn, "x.json", "/data/a", p) for p in malformed]
    with TestClient(create_app(project.db_path, project.cache_path)) as c:
        scans = {s["id"]: s for s in c.get("/api/scans").json()["scans"]}
    assert scans[esri]["imagery_credit"] == xyzservices.providers.Esri.WorldImagery["attribution"]
    assert scans[esri]["name"] == "kyiv"
    assert scans[credited]["imagery_credit"] == "Drone © NGO" and scans[credited]["name"] == "rivne"
    assert [scans[i]["imagery_credit"] for i in odd] == ["imagery provider not stated"] * 4


def test_a_scan_from_a_url_template_is_credited_to_its_provider_never_to_the_aoi(project):
    """A template of a known provider gets its attribution; an unknown one "imagery provider not stated", flagged
    for reviewers (``credit_stated``), never "Imagery: scan aoi"."""
    conn = connect(project.db_path)
    osm = add_scan(conn, "aoi", "https://a.tile.openstreetmap.org/{z}/{x}/{y}.png", {})
    esri = add_scan(
        conn, "aoi", "https://server.arcgisonline.com/ArcGIS/rest/services/World_Imagery/MapServer/tile/{z}/{y}/{x}", {}
    )
    unknown = add_scan(conn, "aoi", "https://tiles.example.org/{z}/{x}/{y}.jpg?key=K", {})
    with TestClient(create_app(project.db_path, project.cache_path)) as c:
        scans = {s["id"]: s for s in c.get("/api/scans").json()["scans"]}
    assert "OpenStreetMap" in scans[osm]["imagery_credit"] and scans[osm]["credit_stated"] is True
    assert scans[esri]["imagery_credit"].startswith("Tiles (C) Esri")
    assert scans[unknown]["imagery_credit"] == "imagery provider not stated"
    assert scans[unknown]["credit_stated"] is False
    assert all("aoi" not in s["imagery_credit"] for s in scans.values())


# -- 12: HEAD / and one list of categories ----------------------------------------------------------------------


def test_head_answers_200_on_the_pages(live):
    with httpx.Client(base_url=live.url) as http:
        for path in ("/", "/review", "/label"):
            r = http.head(path)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html") and r.content == b""
        assert http.get("/").status_code == 200


def test_readers_and_labellers_share_one_list_of_categories(client, project):
    from amberwatch.review import feedback

    assert feedback.CATEGORIES is CATEGORIES and len(CATEGORIES) == 10
    body = client.get("/").text
    listed = re.search(r'data-categories="([^"]*)"', body)
    assert listed and listed.group(1).split() == list(CATEGORIES)
    options = re.findall(r"<option>([^<]+)</option>", client.get("/label").text)
    assert options == list(CATEGORIES)
    for category in ("road", "snow", "cloud", "forest"):  # labelling categories readers could not use before
        r = client.post(
            f"/api/detections/{project.detection_ids[1]}/feedback", json={"verdict": "not_mining", "category": category}
        )
        assert r.status_code == 201 and r.json()["category"] == category
    fid = r.json()["id"]
    out = client.post(f"/api/feedback/{fid}/accept", headers=auth(project.reviewer_token)).json()
    assert ExampleStore(connect(project.db_path)).get(out["example_id"]).category == "forest"
    bad = client.post(
        f"/api/detections/{project.detection_ids[1]}/feedback", json={"verdict": "not_mining", "category": "lava"}
    )
    assert is_json_error(bad, 422) and "forest" in bad.json()["error"]
