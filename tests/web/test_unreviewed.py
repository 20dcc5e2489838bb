"""Sites nobody flagged: the reviewer's "Unreviewed sites" list, their own decision there, and undoing decisions."""

from __future__ import annotations

import pytest

from amberwatch.db import connect
from amberwatch.labels.store import ExampleStore
from amberwatch.review.feedback import review_states
from tests.web.test_review_queue import auth, others_flag


def unreviewed(client, project) -> list[int]:
    r = client.get("/api/review/unreviewed", headers=auth(project.reviewer_token))
    assert r.status_code == 200, r.text
    assert r.json()["scan_id"] == project.scan_id
    return [s["detection_id"] for s in r.json()["sites"]]


def areas(project, ids: list[int]) -> list[float]:
    conn = connect(project.db_path)
    found = dict(conn.execute("SELECT id, area_ha FROM detections").fetchall())
    return [found[i] for i in ids]


def test_unreviewed_sites_are_the_largest_nobody_flagged_or_decided(client, project):
    assert client.get("/api/review/unreviewed").status_code == 401
    assert client.get("/api/review/unreviewed", headers=auth(project.reader_token)).status_code == 403
    listed = unreviewed(client, project)
    assert sorted(listed) == sorted(project.detection_ids)
    assert areas(project, listed) == sorted(areas(project, listed), reverse=True)  # largest first
    flagged = listed[0]
    others_flag(project, flagged, "r1", "confirmed", None)
    assert flagged not in unreviewed(client, project)  # it waits in the readers' queue instead
    site = client.get("/api/review/unreviewed?limit=1", headers=auth(project.reviewer_token)).json()["sites"][0]
    assert site["chip_url"].endswith("/chip-outline.jpg") and "Klesiv" in (site["place"] or "")
    assert client.get("/api/review/unreviewed?scan=999", headers=auth(project.reviewer_token)).status_code == 404


@pytest.mark.parametrize("verdict", ["confirmed", "not_mining"])
def test_a_reviewer_confirms_or_rejects_a_site_directly_and_can_undo_it(client, project, verdict):
    did = project.detection_ids[2]
    path = f"/api/detections/{did}/review"
    assert client.post(path, json={"verdict": verdict}).status_code == 401
    r = client.post(path, json={"verdict": verdict, "category": "quarry"}, headers=auth(project.reviewer_token))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "accepted" and out["verdict"] == verdict and out["example_id"]
    conn = connect(project.db_path)
    assert review_states(conn)[did].verdict == verdict
    assert did not in unreviewed(client, project)
    example = ExampleStore(conn).examples()[0]
    assert (example.label, example.source, example.added_by) == (
        "mining" if verdict == "confirmed" else "not_mining",
        "review",
        "olena",
    )
    if verdict == "not_mining":  # a rejected site leaves the public map's totals
        scan = client.get("/api/scans").json()["scans"][0]
        assert scan["removed_after_review"] == 1
    again = client.post(path, json={"verdict": verdict}, headers=auth(project.reviewer_token))
    assert again.status_code == 409  # reviewed already

    undo = client.post(
        f"/api/feedback/sites/{did}/undo", json={"flag_ids": [out["id"]]}, headers=auth(project.reviewer_token)
    )
    assert undo.status_code == 200, undo.text
    assert did not in review_states(conn) and did in unreviewed(client, project)
    assert [e.status for e in ExampleStore(conn).examples(status=None)] == ["excluded"]  # out of training


def test_undo_puts_readers_flags_back_in_the_queue_and_drops_the_example(client, project):
    did = project.detection_ids[1]
    ids = [others_flag(project, did, r, "not_mining", "quarry") for r in ("r1", "r2")]
    decided = client.post(f"/api/feedback/sites/{did}/accept", json={}, headers=auth(project.reviewer_token)).json()
    assert decided["status"] == "accepted"
    conn = connect(project.db_path)
    assert review_states(conn)[did].verdict == "not_mining"
    undo = client.post(f"/api/feedback/sites/{did}/undo", json={"flag_ids": ids}, headers=auth(project.reviewer_token))
    assert undo.status_code == 200 and undo.json()["pending"] == ids
    assert review_states(conn)[did].pending == 2 and review_states(conn)[did].verdict is None
    assert ExampleStore(conn).examples() == []  # no active example: it was excluded
    twice = client.post(f"/api/feedback/sites/{did}/undo", json={"flag_ids": ids}, headers=auth(project.reviewer_token))
    assert twice.status_code == 409  # pending again: nothing to undo
    # a direct decision is refused where readers' flags wait: they go through the queue
    direct = client.post(
        f"/api/detections/{did}/review", json={"verdict": "confirmed"}, headers=auth(project.reviewer_token)
    )
    assert direct.status_code == 409 and "queue" in direct.json()["error"]


@pytest.mark.browser
def test_review_page_words_colours_undo_and_unreviewed_tab(page, live, project):
    from tests.fixtures.browser import artifacts_dir
    from tests.web.test_browser import console_errors, offline

    a, b = project.detection_ids[1], project.detection_ids[2]
    others_flag(project, a, "r1", "confirmed", None)
    others_flag(project, a, "r2", "confirmed", None)
    others_flag(project, b, "r3", "not_mining", "quarry")
    outside = offline(page, live.url)
    errors = console_errors(page)
    page.goto(live.url + "/review")
    assert "nobody" not in page.locator("header").inner_text()
    page.locator("#token").fill(project.reviewer_token)
    page.locator("#token-form button").click()
    card_a = page.locator(f".card[data-id='{a}']")
    card_a.wait_for()
    assert card_a.locator("h2").inner_text() == "2 readers say: mining"
    assert card_a.locator(".actions button").all_inner_texts() == ["Agree: mining", "Discard these flags"]
    card_b = page.locator(f".card[data-id='{b}']")
    assert card_b.locator("h2").inner_text() == "1 reader says: not mining (quarry)"
    colour = "(e) => getComputedStyle(e).backgroundColor"
    mining = card_a.locator("button.verdict-mining").evaluate(colour)
    assert mining != card_b.locator("button.verdict-not").evaluate(colour)
    assert "olena" in page.locator("header").inner_text()

    card_a.locator("button.verdict-mining").click()
    card_a.locator(".outcome button.undo").wait_for()
    assert card_a.locator(".outcome").inner_text().startswith("Decided: mining")
    card_a.locator(".outcome button.undo").click()
    page.wait_for_function(f"() => document.querySelector(\".card[data-id='{a}']\").dataset.status === 'pending'")
    assert page.locator(f".card[data-id='{a}'] .actions button").count() == 2

    page.get_by_role("tab", name="Unreviewed sites").click()
    first = page.locator("#unreviewed .card").first
    first.wait_for()
    assert "largest unreviewed" in page.locator("#unreviewed-msg").inner_text()
    shown = [int(x) for x in page.locator("#unreviewed .card").evaluate_all("(c) => c.map((n) => n.dataset.id)")]
    assert a not in shown and b not in shown and len(shown) == 3
    first.locator("select").select_option("field")
    first.locator("button.verdict-not").click()
    first.locator(".outcome button.undo").wait_for()
    assert "not mining (field)" in first.locator(".outcome").inner_text()
    page.screenshot(path=str(artifacts_dir() / "web_review_unreviewed.png"), full_page=True)
    conn = connect(project.db_path)
    assert review_states(conn)[shown[0]].verdict == "not_mining"
    page.goto(live.url + "/review?tab=unreviewed")  # where `story build`'s warning sends reviewers
    page.locator("#unreviewed .card").first.wait_for()
    assert shown[0] not in [
        int(x) for x in page.locator("#unreviewed .card").evaluate_all("(c) => c.map((n) => n.dataset.id)")
    ]
    assert outside == [] and errors == []
