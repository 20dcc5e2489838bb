"""Issue 14 (Broken 1): the map, /label and /review on a phone (390x844) and on a desktop (1440x900).

On a phone the map is full screen with the panel as a bottom sheet, a popup and its flag buttons fit the
viewport and a reader can flag; /label and /review fit the width. The desktop keeps its 330 px side panel.
"""

from __future__ import annotations

import pytest

from tests.fixtures.browser import artifacts_dir
from tests.web.test_browser import click_detection, console_errors, offline, wait_ready

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}

INSIDE_VIEWPORT = """(el) => { const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && r.left >= 0 && r.top >= 0
        && r.right <= window.innerWidth && r.bottom <= window.innerHeight; }"""
NO_HORIZONTAL_OVERFLOW = "() => document.documentElement.scrollWidth <= window.innerWidth"


def assert_inside_viewport(locator, what: str) -> None:
    """Every element the locator matches lies fully inside the viewport (and is not empty)."""
    assert locator.count() > 0, f"no {what}"
    for i in range(locator.count()):
        box = locator.nth(i).bounding_box()
        assert locator.nth(i).evaluate(INSIDE_VIEWPORT), f"{what} #{i} outside the viewport: {box}"


def map_share(page) -> float:
    """The share of the viewport's area the map element covers (clipped to the viewport)."""
    return page.evaluate(
        """() => { const r = document.getElementById('map').getBoundingClientRect();
             const w = Math.min(r.right, innerWidth) - Math.max(r.left, 0);
             const h = Math.min(r.bottom, innerHeight) - Math.max(r.top, 0);
             return Math.max(0, w) * Math.max(0, h) / (innerWidth * innerHeight); }"""
    )


def open_map(page, live, name: str) -> None:
    """Load the map, wait for its sites and imagery, save a screenshot."""
    page.goto(live.url + "/")
    wait_ready(page)
    page.wait_for_function("() => document.querySelectorAll('.leaflet-tile-loaded').length >= 4")
    page.wait_for_timeout(400)  # tile fade-in
    page.screenshot(path=str(artifacts_dir() / f"web_map_{name}.png"))


def flag_from_popup(page, detection_id: int, *, touch: bool) -> None:
    """Open a site's popup, check it and its flag buttons fit the viewport, flag it as not mining."""
    click_detection(page, detection_id)
    popup = page.locator(f".leaflet-popup .popup[data-id='{detection_id}']")
    popup.wait_for()
    page.wait_for_function("() => document.querySelector('.popup img.thumb').naturalWidth > 0")
    popup.locator("summary").tap() if touch else popup.locator("summary").click()
    page.wait_for_timeout(600)  # autopan after the popup grows
    assert_inside_viewport(page.locator(".leaflet-popup-content-wrapper"), "popup")
    buttons = popup.locator("button.confirm, button.not-mining")
    assert buttons.count() == 2
    assert_inside_viewport(buttons, "flag button")
    wrapper = page.locator(".leaflet-popup-content-wrapper").bounding_box()
    for i in range(2):  # visible in the popup, not scrolled out of its content
        b = buttons.nth(i).bounding_box()
        assert wrapper["y"] <= b["y"] and b["y"] + b["height"] <= wrapper["y"] + wrapper["height"]
    popup.locator("select[name=category]").select_option("quarry")
    with page.expect_response(lambda r: r.url.endswith("/feedback") and r.request.method == "POST") as sent:
        button = popup.locator("button.not-mining")
        button.tap() if touch else button.click()
    assert sent.value.ok
    page.wait_for_function("() => document.querySelector('.popup .msg').textContent.startsWith('Thanks — sent')")


def check_label_and_review(page, live, project, name: str) -> None:
    """/label (signed in) and /review: chip and buttons inside the viewport, no sideways scrolling; screenshots."""
    page.goto(live.url + "/label")
    page.locator("#token").fill(project.reviewer_token)
    page.locator("#token").press("Enter")
    page.wait_for_function("() => document.body.dataset.chip && document.getElementById('chip').naturalWidth > 0")
    assert_inside_viewport(page.locator("#chip"), "label chip")
    assert_inside_viewport(page.locator(".keys button:visible"), "label button")  # "no imagery" shows for samples
    assert page.evaluate(NO_HORIZONTAL_OVERFLOW), "/label scrolls sideways"
    page.screenshot(path=str(artifacts_dir() / f"web_label_{name}.png"))
    page.goto(live.url + "/review")  # signed in by the token kept in this tab
    page.locator(".card").first.wait_for()
    page.wait_for_function("() => document.querySelector('.card img').naturalWidth > 0")
    assert page.evaluate(NO_HORIZONTAL_OVERFLOW), "/review scrolls sideways"
    assert_inside_viewport(page.locator(".card").first.locator(".actions button"), "review button")
    page.screenshot(path=str(artifacts_dir() / f"web_review_{name}.png"))


def test_phone_map_popup_flag_label_review(browser, live, project):
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    page = context.new_page()
    try:
        outside = offline(page, live.url)
        errors = console_errors(page)
        open_map(page, live, "phone")
        assert map_share(page) >= 0.6
        assert page.evaluate(NO_HORIZONTAL_OVERFLOW)
        flag_from_popup(page, project.detection_ids[1], touch=True)
        page.screenshot(path=str(artifacts_dir() / "web_popup_phone.png"))
        page.locator(".leaflet-popup-close-button").tap()
        toggle = page.locator("#panel-toggle")
        assert_inside_viewport(toggle, "panel toggle")
        assert not page.locator("#site-list").is_visible()
        toggle.tap()  # the sheet opens over the map, with the site list
        page.locator("#site-list button.site").first.wait_for(state="visible")
        assert toggle.get_attribute("aria-expanded") == "true"
        page.screenshot(path=str(artifacts_dir() / "web_map_phone_sheet.png"))
        page.locator("#site-list button.site").first.tap()  # a site from the list: the sheet closes, the popup opens
        page.locator(".leaflet-popup .popup").wait_for()
        assert not page.locator("#site-list").is_visible()
        check_label_and_review(page, live, project, "phone")
        assert outside == [] and errors == []
    finally:
        context.close()


def test_desktop_layout_unchanged(browser, live, project):
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    try:
        outside = offline(page, live.url)
        errors = console_errors(page)
        open_map(page, live, "1440")
        assert page.locator("#panel").bounding_box()["width"] == 330
        assert page.locator("#map").bounding_box()["x"] == 330
        assert not page.locator("#panel-toggle").is_visible() and page.locator("#site-list").is_visible()
        assert map_share(page) >= 0.6
        flag_from_popup(page, project.detection_ids[1], touch=False)
        check_label_and_review(page, live, project, "1440")
        assert outside == [] and errors == []
    finally:
        context.close()
