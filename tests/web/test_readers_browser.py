"""Readers in Chromium: persons (a cookie each) behind one address, their answers, and review-true labels."""

from __future__ import annotations

import pytest

from amberwatch.db import connect
from amberwatch.imagery.cache import TileCache
from amberwatch.review.feedback import decide_feedback, record_feedback
from tests.fixtures.browser import artifacts_dir
from tests.web.test_browser import click_detection, console_errors, offline, wait_ready

pytestmark = pytest.mark.browser


def open_site(page, url: str, detection_id: int):
    """Load the map, click the site and wait for the reader's own answer to arrive; return the popup."""
    page.goto(url + "/")
    wait_ready(page)
    with page.expect_response(lambda r: r.url.endswith(f"/api/detections/{detection_id}/feedback/mine")):
        click_detection(page, detection_id)
    popup = page.locator(f".leaflet-popup .popup[data-id='{detection_id}']")
    popup.wait_for()
    page.wait_for_timeout(100)  # the answer's promise resolves after the response
    return popup


def wait_msg(page, start: str) -> None:
    page.wait_for_function("(s) => document.querySelector('.popup .msg').textContent.startsWith(s)", arg=start)


def test_two_readers_behind_one_address_flag_the_same_site_independently(browser, live, project):
    did = project.detection_ids[1]
    anna_ctx, ben_ctx = (browser.new_context(viewport={"width": 1280, "height": 800}) for _ in range(2))
    try:
        anna, ben = anna_ctx.new_page(), ben_ctx.new_page()
        outside = offline(anna, live.url) + offline(ben, live.url)
        errors = console_errors(anna) + console_errors(ben)
        popup = open_site(anna, live.url, did)
        popup.locator("button.confirm").click()
        wait_msg(anna, "Thanks — sent")
        assert anna.evaluate("document.activeElement.classList.contains('dot')")  # focus back on the marker
        cookie = next(c for c in anna_ctx.cookies() if c["name"] == "aw_reader")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

        # Ben, same address: no answer of his yet; he taps "No", then says what it is and adds a note.
        popup = open_site(ben, live.url, did)
        assert popup.locator(".msg").inner_text() == "" and popup.locator("button.not-mining").is_enabled()
        popup.locator("button.not-mining").click()
        wait_msg(ben, "Thanks — sent")
        assert ben.evaluate("document.activeElement.name") == "category"
        popup.locator("select[name=category]").select_option("quarry")
        wait_msg(ben, "Thanks — your answer is updated: not mining (quarry)")
        popup.locator("summary").click()
        popup.locator("textarea[name=comment]").fill("a sand quarry by the road")
        popup.locator("button.send-note").click()
        wait_msg(ben, "Thanks — your answer is updated")
        assert popup.locator("button.send-note").is_hidden()
        ben.screenshot(path=str(artifacts_dir() / "web_reader_edit.png"))

        # Anna still sees her own answer and changes it: only hers changes.
        popup = open_site(anna, live.url, did)
        wait_msg(anna, "You answered: mining")
        popup.locator("button.change").click()
        popup.locator("select[name=category]").select_option("clear-cut")
        popup.locator("button.not-mining").click()
        wait_msg(anna, "Thanks — your answer is updated")
        anna.keyboard.press("Escape")
        anna.locator(".leaflet-popup").wait_for(state="detached")

        popup = open_site(ben, live.url, did)
        wait_msg(ben, "You answered: not mining (quarry)")
        assert popup.locator("textarea[name=comment]").input_value() == "a sand quarry by the road"
        assert outside == [] and errors == []
    finally:
        anna_ctx.close()
        ben_ctx.close()
    rows = connect(project.db_path).execute(
        "SELECT reader_hash, client_hash, category, comment FROM web_feedback WHERE status = 'pending' ORDER BY id"
    )
    pending = [tuple(r) for r in rows]
    assert len(pending) == 2 and pending[0][0] != pending[1][0] and pending[0][1] == pending[1][1]
    assert {(c, n) for *_, c, n in pending} == {("quarry", "a sand quarry by the road"), ("clear-cut", None)}


def test_reviewed_sites_read_as_the_review_says(page, live, project):
    """A site reviewed as not mining is grey and reads "not mining (reviewed)", never "likely mining"."""
    rejected, confirmed = project.detection_ids[0], project.detection_ids[3]  # both >= 80%: "likely mining"
    conn = connect(project.db_path)
    with TileCache(project.cache_path) as cache:
        for did, verdict in ((rejected, "not_mining"), (confirmed, "confirmed")):
            fb = record_feedback(conn, did, verdict, "quarry", None, client="a")
            decide_feedback(conn, cache, fb["id"], "accept", "olena")
    conn.close()
    page.goto(live.url + "/")
    wait_ready(page)
    items = {int(b.get_attribute("data-id")): b.inner_text() for b in page.locator("#site-list button.site").all()}
    assert "not mining (reviewed)" in items[rejected] and "likely" not in items[rejected]
    assert "mining, confirmed by a reviewer" in items[confirmed]
    assert page.locator(f"#site-list button[data-id='{rejected}'] .swatch.reviewed-no").count() == 1
    grey = page.locator(".leaflet-marker-icon.dot.reviewed-no")  # unclustered at the layer's zoom
    grey.wait_for()
    assert grey.count() == 1 and "conf-h" not in (grey.get_attribute("class") or "")
    size = grey.bounding_box()
    assert size["width"] >= 24 and size["height"] >= 24  # a tap target
    grey.focus()
    page.keyboard.press("Enter")
    popup = page.locator(f".leaflet-popup .popup[data-id='{rejected}']")
    popup.wait_for()
    assert popup.locator("h3").inner_text() == "Not mining (reviewed)"


def test_layer_picker_and_credit_never_name_the_aoi_file(page, tmp_path):
    """A scan named after its AOI file (the default) over a URL template: readers see where and when, and the credit
    "imagery provider not stated"; a signed-in reviewer also sees a warning."""
    from amberwatch.web.app import create_app
    from tests.web.conftest import LiveServer, build_project

    project = build_project(tmp_path)
    conn = connect(project.db_path)
    conn.execute(
        "UPDATE scans SET name = 'aoi', imagery = 'https://tiles.example.org/{z}/{x}/{y}.jpg' WHERE id = ?",
        (project.scan_id,),
    )
    conn.close()
    with LiveServer(create_app(project.db_path, project.cache_path)) as live:
        page.goto(live.url + "/")
        wait_ready(page)
        layers = page.locator("#scan-select").inner_text()
        credit = page.locator(".leaflet-control-attribution").inner_text()
        assert "Around Klesiv" in layers and "aoi" not in layers.lower()
        assert "imagery provider not stated" in credit and "scan aoi" not in credit
        assert page.locator("#credit-warning").is_hidden()  # readers: no reviewer's warning
        page.evaluate(f"sessionStorage.setItem('amberwatch.reviewerToken', '{project.reviewer_token}')")
        page.reload()
        wait_ready(page)
        page.locator("#credit-warning").wait_for()
        assert "Imagery provider not stated" in page.locator("#credit-warning").inner_text()


def test_phone_landing_has_a_headline_and_totals_and_big_enough_targets(browser, live, project):
    from tests.web.test_responsive import PHONE, assert_inside_viewport

    context = browser.new_context(viewport=PHONE, device_scale_factor=1, has_touch=True, is_mobile=True)
    page = context.new_page()
    try:
        errors = console_errors(page)
        page.goto(live.url + "/")
        wait_ready(page)
        line = page.locator("#summary-line")
        assert_inside_viewport(line, "landing headline")  # the collapsed sheet shows it
        text = line.inner_text()
        assert text.startswith("Surface mining seen from above: 5 sites,") and "ha" in text and "% of the area" in text
        page.screenshot(path=str(artifacts_dir() / "web_phone_landing.png"))
        page.locator("#panel-toggle").tap()
        assert "of the scanned area is affected" in page.locator("#t-share").inner_text()
        assert page.locator("#t-reviewed").inner_text() == "0 confirmed by a reviewer · 5 not reviewed yet"
        for what in ("#scan-select", "#basemap", "#f-inview", "#f-change-row select"):
            box = page.locator(what).bounding_box() if page.locator(what).is_visible() else None
            assert box is None or box["height"] >= 24, (what, box)
        assert page.locator("#f-inview").bounding_box()["width"] >= 24
        icon = page.locator("link[rel=icon]").get_attribute("href")
        assert page.request.get(live.url + icon).status == 200
        assert errors == []
    finally:
        context.close()
