"""Issue 30 item 1 in Chromium: a reader marks a place the map missed, a reviewer accepts it on /review, a mining
example exists (and the retrain counts it: tests/loop/test_retrain_reports.py). Phone and desktop sizes."""

from __future__ import annotations

import pytest

from amberwatch.db import connect
from amberwatch.labels.store import ExampleStore
from tests.fixtures.axe import SIZES, assert_no_serious_violations, screenshot_and_check
from tests.web.test_browser import console_errors, offline, wait_ready
from tests.web.test_missed_reports import east

pytestmark = pytest.mark.browser


def click_at(page, lon: float, lat: float) -> None:
    """Click (a phone: tap) the map at a place."""
    pt = page.evaluate(
        """([lon, lat]) => { const p = window.amberwatch.map.latLngToContainerPoint([lat, lon]);
             const r = document.getElementById('map').getBoundingClientRect();
             return {x: r.left + p.x, y: r.top + p.y}; }""",
        [lon, lat],
    )
    page.mouse.click(pt["x"], pt["y"])


@pytest.mark.parametrize("size", ["phone", "desktop"])
def test_a_reader_reports_a_missed_site_and_a_reviewer_accepts_it(browser, live, project, size):
    context = browser.new_context(**SIZES[size])
    try:
        page = context.new_page()
        outside = offline(page, live.url)
        errors = console_errors(page)
        page.goto(live.url + "/")
        wait_ready(page)
        lon, lat = east(10)
        page.evaluate("([lat, lon]) => window.amberwatch.map.setView([lat, lon], 17, {animate: false})", [lat, lon])
        button = page.locator("#report-missed")
        assert button.inner_text() == "Report mining the map missed"
        button.click()
        assert button.get_attribute("aria-pressed") == "true"
        assert page.locator("#report-hint").inner_text() == "Tap the place on the imagery where you see mining."
        click_at(page, lon, lat)
        form = page.locator(".leaflet-popup .report-form")
        form.wait_for()
        assert button.get_attribute("aria-pressed") == "false"  # one place per report
        form.locator("textarea[name=report-note]").fill("new pits east of the road")
        assert_no_serious_violations(page, f"report form ({size})")
        with page.expect_response(lambda r: r.url.endswith(f"/api/scans/{project.scan_id}/reports")) as sent:
            form.locator("button.send-report").click()
        assert sent.value.status == 201
        page.wait_for_function("() => document.querySelector('.report-form .msg').textContent.startsWith('Thanks')")
        assert form.locator(".msg").inner_text() == "Thanks — sent. A reviewer will check it."
        page.screenshot(path=str(artifacts(f"web_report_sent_{size}")))
        report_id = sent.value.json()["id"]

        page.goto(live.url + "/review")
        page.locator("#token").fill(project.reviewer_token)
        page.locator("#token-form button").click()
        page.locator("#tab-reports").click()
        card = page.locator(f".card.report[data-id='{report_id}']")
        card.wait_for()
        assert "Reported missed site" in card.inner_text() and "new pits east of the road" in card.inner_text()
        page.wait_for_function("() => document.querySelector('.card.report img').naturalWidth >= 256")
        screenshot_and_check(page, f"web_review_reports_{size}")
        card.locator("button.accept").click()
        page.wait_for_function("() => document.querySelector('.card.report').dataset.status === 'accepted'")
        assert "8 tiles around it sent to labelling" in card.locator(".outcome").inner_text()
        assert page.locator("#reports-msg").inner_text() == "No reported places to review."
        assert outside == [] and errors == []
    finally:
        context.close()
    examples = ExampleStore(connect(project.db_path)).examples()
    assert [(e.label, e.source, e.source_image) for e in examples] == [("mining", "review", f"report-{report_id}")]


def artifacts(name: str):
    from tests.fixtures.browser import artifacts_dir

    return artifacts_dir() / f"{name}.png"
