"""Issue 28 item 4 in headless Chromium at 390x844 and 1440x900: the map's date control switches the imagery and
the sites, a site's popup has its area-by-date chart and status, the before/after view shows two dates, the
"new since" / "growing" filters change the sites shown, and a flag posted on the 2019 layer carries 2019.

Every page may only reach the app (no other origin), logs no console error, and axe finds nothing serious.
Screenshots of the date control and the before/after view go to artifacts/screenshots and /work/notes/screens.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from amberwatch.web.app import create_app
from tests.fixtures.axe import SIZES, assert_no_serious_violations
from tests.fixtures.browser import artifacts_dir
from tests.web.conftest import LiveServer
from tests.web.dated import DATES, DatedProject, build_dated_project
from tests.web.test_browser import console_errors, offline, wait_ready

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTES_SCREENS = Path("/work/notes/screens")
# The imagery source of each loaded tile in a container: "dated@<date>".
TILE_SOURCES = """(sel) => [...new Set([...document.querySelectorAll(sel + ' .leaflet-tile-loaded')]
    .map((i) => decodeURIComponent(new URL(i.src).pathname.split('/')[2])))].sort()"""


def screenshot(page, name: str, **options: object) -> None:
    """Save a screenshot to artifacts/screenshots and, where the notes folder exists, to /work/notes/screens."""
    page.screenshot(path=str(artifacts_dir() / f"{name}.png"), **options)
    if NOTES_SCREENS.parent.is_dir():
        NOTES_SCREENS.mkdir(exist_ok=True)
        page.screenshot(path=str(NOTES_SCREENS / f"{name}.png"), **options)


@pytest.fixture(scope="module")
def dated_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DatedProject, LiveServer]]:
    project = build_dated_project(tmp_path_factory.mktemp("dated"))
    with LiveServer(create_app(project.db_path, project.cache_path)) as live:
        yield project, live


@pytest.fixture(params=sorted(SIZES))
def sized(request: pytest.FixtureRequest, browser, dated_site) -> Iterator[tuple[object, str, list[str]]]:
    """(page, size name, console errors) of a page that may only reach the live app."""
    context = browser.new_context(**SIZES[request.param])
    page = context.new_page()
    outside = offline(page, dated_site[1].url)
    errors = console_errors(page)
    try:
        yield page, request.param, errors
        assert outside == [], f"requests outside the app: {outside}"
        assert errors == [], errors
    finally:
        context.close()


def open_map(page, url: str) -> None:
    page.goto(url)
    wait_ready(page)
    page.wait_for_function("() => document.querySelectorAll('#map .leaflet-tile-loaded').length >= 4")
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(300)


def choose_date(page, date: str) -> None:
    page.locator(f"#dates input[value='{date}']").check()
    shown = "(d) => window.amberwatch.ready && document.querySelector('#dates input:checked').value === d"
    page.wait_for_function(shown, arg=date)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(300)


def open_site(page, detection_id: int) -> object:
    page.evaluate("(id) => { location.hash = 'd=' + id; }", detection_id)
    popup = page.locator(f".leaflet-popup .popup[data-id='{detection_id}']")
    popup.wait_for()
    page.wait_for_timeout(400)  # autopan
    return popup


def test_date_control_switches_imagery_and_sites(sized, dated_site):
    page, size, _ = sized
    project, live = dated_site
    open_map(page, live.url + "/")
    radios = page.locator("#dates input[type=radio]")
    assert [radios.nth(i).get_attribute("value") for i in range(radios.count())] == list(DATES)
    assert page.locator("#dates input:checked").get_attribute("value") == DATES[-1]  # the latest scan first
    assert page.evaluate(TILE_SOURCES, "#map") == [f"dated@{DATES[-1]}"]
    assert page.evaluate("window.amberwatch.count") == 4
    choose_date(page, "2019-06-26")
    assert page.locator("#scan-select").input_value() == str(project.scan_ids["2019-06-26"])
    assert page.evaluate("window.amberwatch.count") == 3  # the new site is not there yet
    assert page.evaluate(TILE_SOURCES, "#map") == ["dated@2019-06-26"]
    assert f"scan={project.scan_ids['2019-06-26']}" in page.url
    assert_no_serious_violations(page, f"date control ({size})")
    screenshot(page, f"mapdates-date-control-{size}")


def test_popup_chart_and_before_after_view(sized, dated_site):
    page, size, _ = sized
    project, live = dated_site
    open_map(page, live.url + "/")
    popup = open_site(page, project.detections["growing"]["2023-06-26"])
    assert popup.locator(".status-words").inner_text() == "Growing: larger on 2023-06-26 than on 2021-06-26"
    chart = popup.locator("svg.area-chart")
    assert chart.locator("g.bar").count() == 3 and chart.locator("g.bar.shown").get_attribute("data-date") == DATES[-1]
    assert "2019-06-26: 0.09 ha" in chart.get_attribute("aria-label")
    popup.locator("button.open-compare").click()
    page.wait_for_selector("#compare[data-ready]")
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(500)
    panes = page.locator("#compare .pane")
    assert [panes.nth(k).get_attribute("data-date") for k in range(2)] == ["2019-06-26", "2023-06-26"]
    assert page.evaluate(TILE_SOURCES, "#compare .pane:nth-child(1)") == ["dated@2019-06-26"]
    assert page.evaluate(TILE_SOURCES, "#compare .pane:nth-child(2)") == ["dated@2023-06-26"]
    assert page.locator("#compare .pane path.leaflet-interactive, #compare .pane svg path").count() >= 2  # outlines
    assert panes.nth(0).locator(".pane-area").inner_text() == "0.09 ha found"
    boxes = [panes.nth(k).locator(".pane-map").bounding_box() for k in range(2)]
    viewport = page.viewport_size
    for b in boxes:
        assert b["width"] > 150 and b["height"] > 150 and b["x"] + b["width"] <= viewport["width"] + 1
    if size == "phone":  # stacked
        assert boxes[1]["y"] >= boxes[0]["y"] + boxes[0]["height"]
    else:  # side by side
        assert boxes[1]["x"] >= boxes[0]["x"] + boxes[0]["width"] and abs(boxes[1]["y"] - boxes[0]["y"]) < 2
    assert_no_serious_violations(page, f"before/after view ({size})")
    screenshot(page, f"mapdates-before-after-{size}")
    page.keyboard.press("Escape")
    assert page.locator("#compare").is_hidden()


def test_charts_say_no_imagery_and_zero(sized, dated_site):
    page, _, _ = sized
    project, live = dated_site
    open_map(page, live.url + "/")
    gap = open_site(page, project.detections["gap"]["2023-06-26"])
    assert "2021-06-26: no imagery" in gap.locator("svg.area-chart").get_attribute("aria-label")
    assert gap.locator("svg.area-chart g.bar[data-date='2021-06-26'] text.value").text_content() == "no imagery"
    new = open_site(page, project.detections["new"]["2023-06-26"])
    assert new.locator(".status-words").inner_text() == "New since 2021-06-26"
    assert new.locator("svg.area-chart g.bar[data-date='2019-06-26'] text.value").text_content() == "0"
    new.locator("button.open-compare").click()
    page.wait_for_selector("#compare[data-ready]")
    before = page.locator("#compare .pane").nth(0)
    assert before.get_attribute("data-date") == "2021-06-26"
    assert before.locator(".pane-area").inner_text() == "nothing found (0 ha) · dashed: its outline on 2023-06-26"


def shown_sites(page) -> int:
    page.wait_for_function("() => window.amberwatch.ready")
    return page.locator("#site-list li").count()


def test_new_since_and_growing_filters_change_the_sites_shown(browser, dated_site):
    project, live = dated_site
    context = browser.new_context(**SIZES["desktop"])
    page = context.new_page()
    outside, errors = offline(page, live.url), console_errors(page)
    open_map(page, live.url + "/")
    assert page.locator("#f-change-row").is_visible() and shown_sites(page) == 4
    page.locator("#f-change").select_option("growing")
    assert shown_sites(page) == 1
    assert page.locator("#site-list button").get_attribute("data-id") == str(project.detections["growing"][DATES[-1]])
    page.locator("#f-change").select_option("new:2021-06-26")
    assert shown_sites(page) == 1
    assert page.locator("#site-list button").get_attribute("data-id") == str(project.detections["new"][DATES[-1]])
    page.locator("#f-change").select_option("")
    assert shown_sites(page) == 4
    choose_date(page, "2019-06-26")  # "new since 2019" on the 2019 layer shows the latest date's new sites
    page.locator("#f-change").select_option("new:2019-06-26")
    page.wait_for_function(
        "() => window.amberwatch.ready && document.querySelector('#dates input:checked').value === '2023-06-26'"
    )
    assert shown_sites(page) == 1
    context.close()
    assert outside == [] and errors == []


def test_a_flag_posted_from_the_2019_layer_carries_2019(sized, dated_site):
    page, size, _ = sized
    project, live = dated_site
    open_map(page, live.url + "/")
    choose_date(page, "2019-06-26")
    site = "stable" if size == "desktop" else "growing"  # one reader (127.0.0.1): one site per size
    did = project.detections[site]["2019-06-26"]
    popup = open_site(page, did)
    with page.expect_response(lambda r: r.url.endswith("/feedback") and r.request.method == "POST") as sent:
        popup.locator("button.confirm").click()
    assert sent.value.ok and sent.value.json()["imagery_date"] == "2019-06-26"
    assert sent.value.request.post_data_json["imagery_date"] == "2019-06-26"
    page.goto(live.url + "/review")
    page.locator("#token").fill(project.reviewer_token)
    page.locator("#token").press("Enter")
    card = page.locator(f".card[data-id='{did}']")
    card.wait_for()
    assert "flagged on the imagery of 2019-06-26" in card.locator(".facts").inner_text()
