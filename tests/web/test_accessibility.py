"""Issue 14: axe-core finds no serious or critical WCAG 2 A/AA violation on the map, its popup, /review and /label.

Each page is checked on a phone (390x844) and on a desktop (1440x900) and saved as
artifacts/screenshots/<page>-<phone|desktop>.png before the check, so a failure can be looked at.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from amberwatch.db import connect
from amberwatch.review.feedback import record_feedback
from amberwatch.web.app import create_app
from tests.fixtures.axe import SIZES, assert_no_serious_violations, screenshot_and_check
from tests.web.conftest import LiveServer, Project, build_project
from tests.web.test_browser import click_detection, offline, wait_ready

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def a11y_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, LiveServer]]:
    """The small project with two reader flags awaiting review, live for the whole module (the pages only read)."""
    project = build_project(tmp_path_factory.mktemp("a11y"))
    conn = connect(project.db_path)
    record_feedback(conn, project.detection_ids[1], "not_mining", "quarry", "A sand quarry, not amber.", client="a")
    record_feedback(conn, project.detection_ids[2], "confirmed", None, None, client="b")
    conn.close()
    with LiveServer(create_app(project.db_path, project.cache_path)) as live:
        yield project, live


@pytest.fixture(params=sorted(SIZES))
def sized_page(request: pytest.FixtureRequest, browser, a11y_site) -> Iterator[tuple[object, str]]:
    """A page of the given size that may only reach the live app: (page, 'phone' or 'desktop')."""
    context = browser.new_context(**SIZES[request.param])
    page = context.new_page()
    outside = offline(page, a11y_site[1].url)
    try:
        yield page, request.param
        assert outside == [], f"requests outside the app: {outside}"
    finally:
        context.close()


def open_map(page, url: str) -> None:
    """The map with its sites and imagery drawn."""
    page.goto(url + "/")
    wait_ready(page)
    page.wait_for_function("() => document.querySelectorAll('.leaflet-tile-loaded').length >= 4")
    page.wait_for_timeout(400)  # tile fade-in


def sign_in(page, url: str, path: str, token: str) -> None:
    """Open a reviewer page and sign in with the token."""
    page.goto(url + path)
    page.locator("#token").fill(token)
    page.locator("#token").press("Enter")


def assert_one_main_and_no_skipped_heading(page) -> None:
    """axe's best-practice pair the WCAG rules leave out: one <main> landmark, heading levels that never skip."""
    assert page.locator("main").count() == 1
    levels = page.eval_on_selector_all("h1, h2, h3, h4, h5, h6", "hs => hs.map(h => Number(h.tagName[1]))")
    assert levels and levels[0] == 1, levels
    assert all(b <= a + 1 for a, b in itertools.pairwise(levels)), levels


def test_map(sized_page, a11y_site):
    page, size = sized_page
    open_map(page, a11y_site[1].url)
    screenshot_and_check(page, f"map-{size}")


def test_map_sheet_open_on_phone(browser, a11y_site):
    """On a phone the filters and the site list sit in a bottom sheet, hidden (and so unchecked) until opened."""
    context = browser.new_context(**SIZES["phone"])
    page = context.new_page()
    try:
        open_map(page, a11y_site[1].url)
        page.locator("#panel-toggle").tap()
        page.locator("#site-list button.site").first.wait_for(state="visible")
        page.wait_for_timeout(300)  # the sheet's slide-in
        screenshot_and_check(page, "map-sheet-phone")
    finally:
        context.close()


def test_map_with_popup_open(sized_page, a11y_site):
    page, size = sized_page
    project, live = a11y_site
    open_map(page, live.url)
    did = project.detection_ids[0]
    click_detection(page, did)
    popup = page.locator(f".leaflet-popup .popup[data-id='{did}']")
    popup.wait_for()
    page.wait_for_function("() => document.querySelector('.popup img.thumb').naturalWidth > 0")
    popup.locator("summary").click()  # the flag form, so its controls are checked too
    page.wait_for_timeout(600)  # autopan after the popup grows
    screenshot_and_check(page, f"map-popup-{size}")


def test_review_queue(sized_page, a11y_site):
    page, size = sized_page
    project, live = a11y_site
    sign_in(page, live.url, "/review", project.reviewer_token)
    page.locator(".card").nth(1).wait_for()
    page.wait_for_function("() => [...document.querySelectorAll('.card img')].every(i => i.naturalWidth > 0)")
    screenshot_and_check(page, f"review-{size}")
    assert_one_main_and_no_skipped_heading(page)


def test_label(sized_page, a11y_site):
    page, size = sized_page
    project, live = a11y_site
    sign_in(page, live.url, "/label", project.reviewer_token)
    page.wait_for_function("() => document.body.dataset.chip && document.getElementById('chip').naturalWidth > 0")
    screenshot_and_check(page, f"label-{size}")
    assert_one_main_and_no_skipped_heading(page)


def test_axe_reports_a_known_violation(page):
    """The check itself works: an unlabelled image button and grey-on-grey text fail with their rule ids."""
    page.set_content(
        '<html lang="en"><title>t</title><main><input type="image" src="data:,">'
        '<p style="color:#bbb;background:#ccc">faint text</p></main></html>'
    )
    with pytest.raises(AssertionError) as failure:
        assert_no_serious_violations(page, "a bad page")
    message = str(failure.value)
    assert "input-image-alt (critical)" in message and "color-contrast (serious)" in message
    assert '    input: <input type="image"' in message  # the failing node: its selector and HTML
