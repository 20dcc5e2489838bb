"""Issue 14 (wanted 5): one flag per reader per site, the reviewer queue grouped per site, decisions per site.

In-process API tests over a real SQLite project, and the migration of a project whose flags predate them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from amberwatch.db import connect, migrate, schema_version, utc_now_iso
from amberwatch.imagery.decode import decode_image
from amberwatch.labels.store import ExampleStore
from amberwatch.labels.store import ensure_schema as ensure_labels_schema
from amberwatch.results.store import ensure_schema as ensure_results_schema
from amberwatch.review.feedback import FeedbackLimits, record_feedback, review_states
from amberwatch.review.schema import MIGRATIONS
from amberwatch.web.app import create_app
from amberwatch.web.users import add_user
from tests.web.conftest import CENTER_LAT, CENTER_LON, insert_detections

HUGE = 2**63


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def flag(client, detection_id: int, verdict: str = "not_mining", category: str | None = "quarry", **more) -> dict:
    r = client.post(f"/api/detections/{detection_id}/feedback", json={"verdict": verdict, "category": category, **more})
    assert r.status_code == 201, r.text
    return r.json()


def others_flag(project, detection_id: int, reader: str, verdict: str, category: str | None, comment=None) -> int:
    """A flag from another reader (another client address), straight through review.feedback."""
    conn = connect(project.db_path)
    try:
        return int(record_feedback(conn, detection_id, verdict, category, comment, client=reader)["id"])
    finally:
        conn.close()


def sites(client, token: str) -> dict:
    r = client.get("/api/feedback/sites", headers=auth(token))
    assert r.status_code == 200, r.text
    return r.json()


def test_a_readers_second_flag_replaces_their_first(client, project):
    did = project.detection_ids[1]
    assert client.get(f"/api/detections/{did}/feedback/mine").json() == {"feedback": None}
    first = flag(client, did, comment="a sand quarry")
    assert first["replaced"] == [] and first["status"] == "pending"
    second = flag(client, did, verdict="confirmed", category=None)
    assert second["replaced"] == [first["id"]] and second["id"] != first["id"]
    mine = client.get(f"/api/detections/{did}/feedback/mine").json()["feedback"]
    assert (mine["id"], mine["verdict"], mine["status"]) == (second["id"], "confirmed", "pending")
    assert "client" not in mine and "reader_hash" not in mine

    conn = connect(project.db_path)
    rows = conn.execute("SELECT id, status, superseded_by FROM web_feedback ORDER BY id").fetchall()
    assert [tuple(r) for r in rows] == [(first["id"], "superseded", second["id"]), (second["id"], "pending", None)]
    queue = client.get("/api/feedback?status=pending", headers=auth(project.reviewer_token)).json()
    assert [f["id"] for f in queue["feedback"]] == [second["id"]]
    assert review_states(conn)[did] == (None, 1)
    assert client.get(f"/api/detections/{did}").json()["properties"]["pending"] == 1

    other = others_flag(project, did, "another-reader", "not_mining", "field")  # another reader: a flag of its own
    site = sites(client, project.reviewer_token)["sites"][0]
    assert site["flag_ids"] == [second["id"], other] and site["counts"] == {"not_mining": 1, "confirmed": 1}

    assert client.get("/api/detections/999/feedback/mine").status_code == 404
    assert client.get(f"/api/detections/{HUGE}/feedback/mine").status_code == 422


def test_a_flag_after_a_decision_is_new_and_the_old_answer_stays_decided(client, project):
    did = project.detection_ids[0]
    first = flag(client, did)
    out = client.post(f"/api/feedback/sites/{did}/reject", headers=auth(project.reviewer_token)).json()
    assert out["rejected"] == [first["id"]]
    mine = client.get(f"/api/detections/{did}/feedback/mine").json()["feedback"]
    assert (mine["id"], mine["status"]) == (first["id"], "rejected")
    again = flag(client, did, comment="still a quarry")
    assert again["replaced"] == [] and again["status"] == "pending"
    assert client.get(f"/api/detections/{did}/feedback/mine").json()["feedback"]["id"] == again["id"]


def test_replacing_a_flag_passes_the_queue_caps_but_not_the_readers_hourly_limit(project):
    limits = FeedbackLimits(per_client_hour=4, pending_per_detection=1, pending_per_hour=1)
    with TestClient(create_app(project.db_path, project.cache_path, feedback_limits=limits)) as c:
        did = project.detection_ids[2]
        codes = [
            c.post(f"/api/detections/{did}/feedback", json={"verdict": v}).status_code
            for v in ("confirmed", "not_mining", "confirmed", "not_mining", "confirmed")
        ]
    assert codes == [201, 201, 201, 201, 429]  # each answer replaces the last: the queue holds one flag throughout
    pending = connect(project.db_path).execute("SELECT verdict FROM web_feedback WHERE status = 'pending'")
    assert [r[0] for r in pending] == ["not_mining"]


def test_the_queue_is_grouped_per_site_with_counts_categories_and_notes(client, project):
    a, b = project.detection_ids[1], project.detection_ids[3]
    f1 = others_flag(project, a, "r1", "not_mining", "quarry", "sand pit by the road")
    f2 = others_flag(project, b, "r2", "confirmed", None)
    f3 = others_flag(project, a, "r3", "not_mining", "field", "a ploughed field")
    f4 = others_flag(project, a, "r4", "not_mining", "quarry")
    f5 = others_flag(project, a, "r5", "confirmed", None, "fresh amber pits")
    data = sites(client, project.reviewer_token)
    assert data["count"] == 2 and data["flags"] == 5 and data["pending"] == {"sites": 2, "flags": 5}
    site_a, site_b = data["sites"]
    assert site_a["detection_id"] == a and site_b["detection_id"] == b  # the site flagged first comes first
    assert site_a["counts"] == {"not_mining": 3, "confirmed": 1}
    assert site_a["categories"] == {"quarry": 2, "field": 1}
    assert site_a["flag_ids"] == [f1, f3, f4, f5] and site_b["flag_ids"] == [f2]
    assert [f["comment"] for f in site_a["flags"]] == [
        "sand pit by the road",
        "a ploughed field",
        None,
        "fresh amber pits",
    ]
    assert "Klesiv" in site_a["place"] and site_a["area_ha"] > 0 and site_a["detection_exists"]
    assert site_a["chip_url"] == f"/api/detections/{a}/chip-outline.jpg"
    assert client.get("/api/feedback/summary", headers=auth(project.reviewer_token)).json() == {"sites": 2, "flags": 5}
    assert len(sites(client, project.reviewer_token)["sites"]) == 2
    one = client.get("/api/feedback/sites?limit=1", headers=auth(project.reviewer_token)).json()
    assert [s["detection_id"] for s in one["sites"]] == [a] and len(one["sites"][0]["flags"]) == 4


def test_deciding_a_site_decides_all_its_flags_with_one_example(client, project):
    a, b = project.detection_ids[1], project.detection_ids[3]
    f1 = others_flag(project, a, "r1", "not_mining", "field", "a field")
    f2 = others_flag(project, a, "r2", "not_mining", "quarry")
    f3 = others_flag(project, a, "r3", "not_mining", "quarry")
    f4 = others_flag(project, a, "r4", "confirmed", None)
    f5 = others_flag(project, b, "r5", "not_mining", "road")
    h = auth(project.reviewer_token)
    mixed = client.post(f"/api/feedback/sites/{a}/reject", headers=h)
    assert mixed.status_code == 422 and "disagree" in mixed.json()["error"]
    unsure = client.post(f"/api/feedback/sites/{a}/accept", headers=h)
    assert unsure.status_code == 422 and "say which verdict" in unsure.json()["error"]
    wrong = client.post(f"/api/feedback/sites/{a}/accept", json={"verdict": "maybe"}, headers=h)
    assert wrong.status_code == 422 and "'maybe'" in wrong.json()["error"]

    body = {"verdict": "not_mining", "flag_ids": [f1, f2, f3, f4]}
    out = client.post(f"/api/feedback/sites/{a}/accept", json=body, headers=h).json()
    assert (out["status"], out["verdict"], out["accepted"], out["rejected"]) == (
        "accepted",
        "not_mining",
        [f1, f2, f3],
        [f4],
    )
    assert out["remaining"] == {"sites": 1, "flags": 1}
    ex = ExampleStore(connect(project.db_path)).get(out["example_id"])
    assert (ex.label, ex.category, ex.source, ex.added_by) == ("not_mining", "quarry", "review", "olena")
    assert ExampleStore(connect(project.db_path)).pixels(ex.id).shape[0] < 256  # the training chip, no outline
    again = client.post(f"/api/feedback/sites/{a}/accept", json=body, headers=h)
    assert again.status_code == 409 and f"detection {a}" in again.json()["error"]

    rejected = client.post(f"/api/feedback/sites/{b}/reject", headers=h).json()
    assert rejected["status"] == "rejected" and rejected["rejected"] == [f5] and rejected["example_id"] is None
    assert rejected["remaining"] == {"sites": 0, "flags": 0}
    conn = connect(project.db_path)
    statuses = dict(conn.execute("SELECT id, status FROM web_feedback").fetchall())
    assert statuses == {f1: "accepted", f2: "accepted", f3: "accepted", f4: "rejected", f5: "rejected"}
    example_ids = {r[0] for r in conn.execute("SELECT example_id FROM web_feedback WHERE status = 'accepted'")}
    assert example_ids == {ex.id} and len(ExampleStore(conn).examples()) == 1
    assert review_states(conn)[a] == ("not_mining", 0)
    assert sites(client, project.reviewer_token)["sites"] == []


def test_a_site_that_changed_since_the_queue_loaded_is_not_decided(client, project):
    did = project.detection_ids[2]
    first = others_flag(project, did, "r1", "not_mining", "quarry")
    seen = sites(client, project.reviewer_token)["sites"][0]["flag_ids"]
    others_flag(project, did, "r2", "confirmed", None)  # a reader flags meanwhile
    h = auth(project.reviewer_token)
    stale = client.post(f"/api/feedback/sites/{did}/accept", json={"flag_ids": seen}, headers=h)
    assert stale.status_code == 409 and "changed since the queue was loaded" in stale.json()["error"]
    assert seen == [first]
    assert connect(project.db_path).execute("SELECT COUNT(*) FROM web_feedback WHERE status = 'pending'").fetchone()[0]
    assert ExampleStore(connect(project.db_path)).examples(status=None) == []


def test_site_endpoints_are_for_reviewers_and_refuse_odd_ids(client, project):
    did = project.detection_ids[0]
    others_flag(project, did, "r1", "confirmed", None)
    for method, path in [
        ("GET", "/api/feedback/sites"),
        ("GET", "/api/feedback/summary"),
        ("POST", f"/api/feedback/sites/{did}/accept"),
        ("POST", f"/api/feedback/sites/{did}/reject"),
    ]:
        assert client.request(method, path).status_code == 401, path
        assert client.request(method, path, headers=auth(project.reader_token)).status_code == 403, path
    h = auth(project.reviewer_token)
    for path in (f"/api/feedback/sites/{HUGE}/accept", f"/api/detections/{HUGE}/chip-outline.jpg"):
        r = client.request("POST" if "sites" in path else "GET", path, headers=h)
        assert r.status_code == 422 and r.json()["status"] == 422
    none = client.post("/api/feedback/sites/999/accept", headers=h)
    assert none.status_code == 409 and "no flags awaiting review" in none.json()["error"]
    assert client.get("/api/feedback/sites?status=maybe", headers=h).status_code == 422


def cyan(pixels: np.ndarray) -> np.ndarray:
    """Where the pixels are the outline's cyan (JPEG-blurred)."""
    r, g, b = (pixels[..., i].astype(int) for i in range(3))
    return (r < 90) & (g > 170) & (b > 190)


def test_review_chips_outline_the_detection_at_native_resolution(client, project):
    did = project.detection_ids[0]
    outlined = decode_image(client.get(f"/api/detections/{did}/chip-outline.jpg").content)
    plain = decode_image(client.get(f"/api/detections/{did}/chip.jpg").content)
    assert outlined.shape[0] >= 256 and outlined.shape[1] >= 256  # shown at 1x-2x on the review page
    assert cyan(outlined).sum() > 200 and cyan(plain).sum() == 0
    # The outline surrounds the centre of the chip, where the detection is.
    rows = np.nonzero(cyan(outlined).any(axis=1))[0]
    cols = np.nonzero(cyan(outlined).any(axis=0))[0]
    assert rows.min() < outlined.shape[0] / 2 < rows.max() and cols.min() < outlined.shape[1] / 2 < cols.max()
    assert client.get("/api/detections/999/chip-outline.jpg").status_code == 404


# -- migrating a project whose flags came before one-flag-per-reader ---------------------------------------------


def old_project(tmp_path: Path) -> tuple[Path, str, list[int]]:
    """A project DB at web schema v3 with flags: two pending duplicates from one reader, a decided one."""
    db = tmp_path / "old.db"
    conn = connect(db)
    ensure_results_schema(conn)
    ensure_labels_schema(conn)
    migrate(conn, "web", MIGRATIONS[:3])
    cur = conn.execute(
        "INSERT INTO scans (name, aoi_geojson, imagery, imagery_source_id, zoom, model_version, model_threshold,"
        " status, started_at, finished_at, tiles_total, tiles_done, area_scanned_km2)"
        " VALUES ('old', ?, 'x', 'src', 17, '0', 0.5, 'finished', ?, ?, 1, 1, 0.1)",
        (json.dumps({"type": "Point", "coordinates": [CENTER_LON, CENTER_LAT]}), utc_now_iso(), utc_now_iso()),
    )
    ids = insert_detections(conn, int(cur.lastrowid), [(CENTER_LON, CENTER_LAT, 0.0003, 0.8)], None)
    rows = [
        ("not_mining", "quarry", "first try", "reader-a", "pending"),
        ("not_mining", "field", "second try", "reader-a", "pending"),
        ("confirmed", None, None, "reader-b", "rejected"),
    ]
    for verdict, category, comment, client, status in rows:
        conn.execute(
            "INSERT INTO web_feedback (detection_id, scan_id, lon, lat, verdict, category, comment, client_hash,"
            " created_at, status) VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?)",
            (ids[0], CENTER_LON, CENTER_LAT, verdict, category, comment, client, utc_now_iso(), status),
        )
    token = add_user(conn, "olena", reviewer=True)
    conn.close()
    return db, token, ids


def test_an_old_project_migrates_without_losing_a_flag(tmp_path):
    db, token, (did,) = old_project(tmp_path)
    before = [tuple(r) for r in connect(db).execute("SELECT * FROM web_feedback ORDER BY id")]
    with TestClient(create_app(db, tmp_path / "old-tiles.mbtiles")) as c:
        conn = connect(db)
        assert schema_version(conn, "web") == len(MIGRATIONS)
        after = conn.execute("SELECT * FROM web_feedback ORDER BY id").fetchall()
        assert [tuple(r)[: len(before[0])] for r in after] == before  # every flag, unchanged
        assert [(r["reader_hash"], r["superseded_by"]) for r in after] == [
            ("reader-a", None),
            ("reader-a", None),
            ("reader-b", None),
        ]
        data = c.get("/api/feedback/sites", headers=auth(token)).json()
        assert [(s["detection_id"], s["flag_ids"]) for s in data["sites"]] == [(did, [1, 2])]
        # The reader's next flag replaces both of their old pending ones.
        new = record_feedback(conn, did, "confirmed", None, None, client="reader-a")
        assert new["replaced"] == [1, 2]
        statuses = [r[0] for r in conn.execute("SELECT status FROM web_feedback ORDER BY id")]
        assert statuses == ["superseded", "superseded", "rejected", "pending"]


@pytest.mark.parametrize("status", ["pending", "all"])
def test_the_one_by_one_queue_still_lists_flags(client, project, status):
    first = flag(client, project.detection_ids[0])
    second = flag(client, project.detection_ids[0], verdict="confirmed", category=None)
    items = client.get(f"/api/feedback?status={status}", headers=auth(project.reviewer_token)).json()["feedback"]
    expected = [second["id"]] if status == "pending" else [first["id"], second["id"]]
    assert [f["id"] for f in items] == expected


# -- the page, in headless Chromium on a phone and a desktop ------------------------------------------------------

OUTLINE_AND_SCALE = """(img) => { const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const g = c.getContext('2d'); g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let cyan = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] < 90 && d[i + 1] > 170 && d[i + 2] > 190) cyan++;
    return {cyan, natural: img.naturalWidth, shown: img.getBoundingClientRect().width}; }"""


def rgb(css: str) -> tuple[int, ...]:
    return tuple(int(v) for v in css[css.index("(") + 1 : css.index(")")].split(",")[:3])


def assert_neutral(css_colour: str) -> None:
    """Grey-ish, not the error pink/red (#a33): no channel far above the others."""
    r, g, b = rgb(css_colour)
    assert max(r, g, b) - min(r, g, b) <= 40 and not (r > g + 40), css_colour


def count_text(page) -> str:
    return page.locator("#queue-msg").inner_text()


@pytest.mark.browser
@pytest.mark.parametrize("size", ["phone", "desktop"])
def test_review_page_groups_sites_outlines_them_and_counts_live(browser, live, project, size):
    from tests.fixtures.browser import artifacts_dir
    from tests.web.test_browser import console_errors, offline
    from tests.web.test_label_page import sign_in_after_a_stale_token
    from tests.web.test_responsive import DESKTOP, NO_HORIZONTAL_OVERFLOW, PHONE, assert_inside_viewport

    a, b, c, later = (
        project.detection_ids[1],
        project.detection_ids[2],
        project.detection_ids[3],
        project.detection_ids[0],
    )
    others_flag(project, a, "r1", "not_mining", "quarry", "sand pit by the road")
    others_flag(project, a, "r2", "not_mining", "field")
    others_flag(project, a, "r3", "confirmed", None, "fresh amber pits")
    others_flag(project, b, "r4", "not_mining", "quarry")
    others_flag(project, c, "r5", "confirmed", None)
    context = browser.new_context(viewport=PHONE if size == "phone" else DESKTOP, device_scale_factor=1)
    page = context.new_page()
    try:
        outside = offline(page, live.url)
        errors = console_errors(page)
        sign_in_after_a_stale_token(page, live.url + "/review", project.reviewer_token)
        errors.clear()  # the stale token's 401 was the point
        page.locator(".card").nth(2).wait_for()
        assert page.locator(".card").count() == 3 and count_text(page) == "3 sites to review (5 flags)"
        page.wait_for_function("() => [...document.querySelectorAll('.card img')].every((i) => i.naturalWidth > 0)")
        for i in range(3):
            img = page.locator(".card .chip img").nth(i)
            img.scroll_into_view_if_needed()
            seen = img.evaluate(OUTLINE_AND_SCALE)
            assert seen["cyan"] > 100, seen  # the detection's outline is drawn on the chip
            assert seen["natural"] >= 256 and seen["shown"] <= 2 * seen["natural"] + 0.5, seen
        card_a = page.locator(f".card[data-id='{a}']")
        assert card_a.locator("h2").inner_text() == "Readers disagree: 2 readers say not mining, 1 says mining"
        assert "sand pit by the road" in card_a.inner_text() and "Klesiv" in card_a.inner_text()
        assert page.evaluate(NO_HORIZONTAL_OVERFLOW), "/review scrolls sideways"
        page.evaluate("window.scrollTo(0, 0)")
        assert_inside_viewport(page.locator(".card").first.locator(".actions button"), "review button")
        page.screenshot(path=str(artifacts_dir() / f"web_review_sites_{size}.png"), full_page=True)

        card_b = page.locator(f".card[data-id='{b}']")
        card_b.locator("button.accept").click()
        page.wait_for_function(f"() => document.querySelector(\".card[data-id='{b}']\").dataset.status === 'accepted'")
        assert count_text(page) == "2 sites to review (4 flags)"
        outcome = card_b.locator(".outcome")
        assert outcome.inner_text().startswith("Decided: not mining")
        assert_neutral(outcome.evaluate("(e) => getComputedStyle(e).color"))
        assert_neutral(outcome.evaluate("(e) => getComputedStyle(e).backgroundColor"))

        card_a.get_by_role("button", name="Agree: not mining").click()
        page.wait_for_function(f"() => document.querySelector(\".card[data-id='{a}']\").dataset.status === 'accepted'")
        assert count_text(page) == "1 site to review (1 flag)"
        assert "1 other flag discarded" in card_a.locator(".outcome").inner_text()

        others_flag(project, later, "r6", "not_mining", "road")  # a reader flags another site meanwhile
        page.evaluate("window.amberwatchReview.poll()")
        page.wait_for_function("() => document.getElementById('queue-msg').textContent.startsWith('2 sites')")
        page.get_by_role("button", name="Show new flags").click()
        page.locator(f".card[data-id='{later}']").wait_for()
        assert page.locator(".card").count() == 2 and page.locator("#queue-new").is_hidden()
        page.screenshot(path=str(artifacts_dir() / f"web_review_decided_{size}.png"))
        assert outside == [] and errors == []
    finally:
        context.close()


@pytest.mark.parametrize(("capture_date", "stored"), [("2019", None), ("2019-06", None), ("2015-10-05", "2015-10-05")])
def test_accepting_a_flag_on_a_detection_dated_by_year_or_month_stores_no_example_date(
    client, project, capture_date, stored
):
    """A detection dated by its scan's imagery date may hold '2019': the example takes no date rather than failing."""
    did = project.detection_ids[0]
    with connect(project.db_path) as conn:
        conn.execute("UPDATE detections SET capture_date = ? WHERE id = ?", (capture_date, did))
    flag(client, did, verdict="confirmed", category=None)
    out = client.post(f"/api/feedback/sites/{did}/accept", json={}, headers=auth(project.reviewer_token))
    assert out.status_code == 200, out.text
    assert ExampleStore(connect(project.db_path)).get(out.json()["example_id"]).imagery_date == stored


def test_labelling_a_detection_dated_by_year_stores_no_example_date(client, project):
    """The label page's examples take their date the same way as accepted flags'."""
    did = project.detection_ids[0]
    with connect(project.db_path) as conn:
        conn.execute("UPDATE detections SET capture_date = '2019' WHERE id = ?", (did,))
    r = client.post("/api/label", json={"key": f"d{did}", "label": "mining"}, headers=auth(project.reviewer_token))
    assert r.status_code == 201, r.text
    assert ExampleStore(connect(project.db_path)).get(r.json()["example_id"]).imagery_date is None
