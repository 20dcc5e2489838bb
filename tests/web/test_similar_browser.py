"""'Find similar places' on the map and the 'like the confirmed sites' queue, in headless Chromium at 1440x900."""

from __future__ import annotations

import pytest

from amberwatch.web.app import create_app
from tests.fixtures.browser import artifacts_dir
from tests.web.test_browser import click_detection, console_errors, offline, wait_ready

pytestmark = pytest.mark.browser


@pytest.fixture
def wide_live(wide_project):
    from tests.web.conftest import LiveServer

    with LiveServer(create_app(wide_project.db_path, wide_project.cache_path)) as server:
        yield server


def sign_in_on_label_page(page, base_url: str, token: str) -> None:
    page.goto(base_url + "/label")
    page.locator("#token").fill(token)
    page.locator("#token").press("Enter")
    page.wait_for_function("() => document.body.dataset.chip")


def find_similar(page, detection_id: int) -> list[dict]:
    """Open a detection's popup, search for similar places, wait for the list and chips; return the places."""
    click_detection(page, detection_id)
    popup = page.locator(f".leaflet-popup .popup[data-id='{detection_id}']")
    popup.wait_for()
    popup.get_by_role("button", name="Find similar places").click()
    page.wait_for_function("() => document.querySelectorAll('#similar-list li').length > 0")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#similar-list img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    return page.evaluate("window.amberwatch.similar.places")


def go_to_place_shows_its_popup(page, place: dict) -> None:
    """After "go to place": the place's popup, in words, fully inside the viewport."""
    from tests.web.test_responsive import assert_inside_viewport

    popup = page.locator(f".leaflet-popup .similar-popup[data-rank='{place['rank']}']")
    popup.wait_for()
    page.wait_for_timeout(600)  # the popup's auto-pan
    assert place["place"] in popup.inner_text()
    assert_inside_viewport(page.locator(".leaflet-popup-content-wrapper"), "similar place's popup")


def test_go_to_a_similar_place_on_a_phone_keeps_its_popup_on_screen(browser, wide_live, wide_project):
    from tests.web.test_responsive import PHONE

    context = browser.new_context(viewport=PHONE, device_scale_factor=1, has_touch=True, is_mobile=True)
    page = context.new_page()
    try:
        errors = console_errors(page)
        page.goto(wide_live.url + "/")
        wait_ready(page)
        page.evaluate(f"window.location.hash = '#d={wide_project.detection_ids[0]}'")
        popup = page.locator(f".leaflet-popup .popup[data-id='{wide_project.detection_ids[0]}']")
        popup.wait_for()
        popup.get_by_role("button", name="Find similar places").click()
        page.wait_for_function("() => document.querySelectorAll('#similar-list li').length > 2")
        places = page.evaluate("window.amberwatch.similar.places")
        page.locator("#similar-list li").nth(2).locator("button.place").click()
        go_to_place_shows_its_popup(page, places[2])
        page.screenshot(path=str(artifacts_dir() / "web_similar_place_phone.png"))
        assert errors == []
    finally:
        context.close()


def test_find_similar_places_and_send_them_to_labelling(page, wide_live, wide_project):
    page.set_viewport_size({"width": 1440, "height": 900})
    outside = offline(page, wide_live.url)
    errors = console_errors(page)
    sign_in_on_label_page(page, wide_live.url, wide_project.reviewer_token)

    page.goto(wide_live.url + "/")
    wait_ready(page)
    places = find_similar(page, wide_project.detection_ids[0])
    items = page.locator("#similar-list li")
    assert 1 <= items.count() <= 10 and items.count() == len(places)
    assert page.locator(".similar-pin").count() == len(places)
    assert page.locator("#similar h2").inner_text().startswith("Places like the site ")
    assert "Klesiv" in page.locator("#similar h2").inner_text()  # where it is, not its number
    assert [items.nth(i).locator(".rank").inner_text() for i in range(items.count())] == [
        str(p["rank"]) for p in places
    ]
    first = items.first.inner_text()
    assert f"{round(places[0]['score'] * 100)}% alike" in first and places[0]["place"] in first
    for text in items.all_inner_texts():
        assert "tiles" not in text and "site 1" not in text and "Klesiv" in text  # plain words for readers
    page.screenshot(path=str(artifacts_dir() / "web_similar_places.png"))

    items.nth(2).locator("button.place").click()
    go_to_place_shows_its_popup(page, places[2])
    assert "current" in (items.nth(2).get_attribute("class") or "")

    page.get_by_role("button", name="Send to labelling").click()
    page.wait_for_function("() => document.getElementById('similar-send-msg').textContent.startsWith('Sent')")
    assert f"{len(places)} new" in page.locator("#similar-send-msg").inner_text()
    page.screenshot(path=str(artifacts_dir() / "web_similar_sent.png"))

    page.get_by_role("link", name="Label them").click()
    page.wait_for_function("() => document.body.dataset.chip")
    page.wait_for_function("() => document.getElementById('chip').naturalWidth > 0")
    assert page.locator("#mode").input_value() == "like"
    assert page.locator("#mode-note").inner_text().startswith("No confirmed site yet")
    keys = page.evaluate("[window.amberwatchLabel.current, ...window.amberwatchLabel.queue].map(i => i.key)")
    assert keys == [f"t{wide_project.scan_id}/{p['tile']}" for p in places]
    assert "sent to the queue (similar) by olena" in page.locator("#chip-info").inner_text()
    page.screenshot(path=str(artifacts_dir() / "web_label_like_mode.png"))
    page.keyboard.press("y")
    page.wait_for_function("(k) => document.body.dataset.chip === k", arg=keys[1])
    assert page.locator("#progress").inner_text().startswith("1 labelled")
    assert outside == [] and errors == []


def test_clear_and_mode_selector_without_a_reviewer(page, wide_live, wide_project):
    page.set_viewport_size({"width": 1440, "height": 900})
    errors = console_errors(page)
    page.goto(wide_live.url + "/")
    wait_ready(page)
    find_similar(page, wide_project.detection_ids[1])
    assert page.locator("#similar-send").is_hidden() and page.locator("#similar-signin").is_visible()
    page.get_by_role("button", name="Clear").click()
    assert page.locator("#similar").is_hidden() and page.locator(".similar-pin").count() == 0

    sign_in_on_label_page(page, wide_live.url, wide_project.reviewer_token)
    assert page.locator("#mode").input_value() == "uncertain" and page.locator("#mode-note").is_hidden()
    page.locator("#mode").select_option("like")
    page.wait_for_url("**/label?mode=like")
    page.locator("#mode-note").wait_for()
    assert "No confirmed site yet" in page.locator("#mode-note").inner_text()
    assert "No more chips" in page.locator("#chip-info").inner_text()
    assert errors == []
