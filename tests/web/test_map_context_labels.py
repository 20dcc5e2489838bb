"""Context on the map, offline: place names from the shipped gazetteer at every zoom, a scale bar, a locator."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.fixtures.browser import artifacts_dir, assert_locator_shows_the_country
from tests.web.conftest import reject_as_not_mining
from tests.web.test_browser import console_errors, offline, wait_ready

SVG = "{http://www.w3.org/2000/svg}"


def test_places_endpoint_lists_named_places_in_a_box_most_populous_first(client):
    r = client.get("/api/places?bbox=26.5,51.1,27.3,51.5&limit=5")
    assert r.status_code == 200 and "max-age" in r.headers["cache-control"]
    places = r.json()["places"]
    names = [p["name"] for p in places]
    assert len(places) == 5 and "Klesiv" in names and "Sarny" in names
    assert [p["population"] for p in places] == sorted((p["population"] for p in places), reverse=True)
    assert all(26.5 <= p["lon"] <= 27.3 and 51.1 <= p["lat"] <= 51.5 for p in places)
    assert client.get("/api/places?bbox=1,2,3").status_code == 422
    assert client.get("/api/places?bbox=0,0,1,1").json() == {"places": []}  # the sea off Africa: nobody lives there


def test_locator_endpoint_draws_the_public_sites_country(client, project):
    """The map's locator: the country holding the public sites, named, their extent marked; 404 once reviewers
    rejected every site (the public map shows none), for an unknown scan too."""
    r = client.get("/api/locator.svg")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    svg = ET.fromstring(r.text)
    assert svg.get("role") == "img" and svg.get("aria-label") == "Locator map: the sites in Ukraine"
    assert svg.find(f"{SVG}path[@class='locator-home']").get("d")
    assert svg.find(f"{SVG}rect[@class='locator-aoi']") is not None
    assert client.get(f"/api/locator.svg?scan={project.scan_id}").text == r.text
    assert client.get("/api/locator.svg?scan=999").status_code == 404
    for detection_id in project.detection_ids:
        reject_as_not_mining(project, detection_id)
    r = client.get("/api/locator.svg")
    assert r.status_code == 404 and r.json()["error"] == "no locator for the project: no public sites"


@pytest.mark.browser
@pytest.mark.parametrize("size", [{"width": 390, "height": 844}, {"width": 1440, "height": 900}])
def test_map_shows_place_names_at_every_zoom_a_scale_and_a_locator(browser, live, size):
    context = browser.new_context(viewport=size, device_scale_factor=1)
    page = context.new_page()
    try:
        outside = offline(page, live.url)
        errors = console_errors(page)
        page.goto(live.url + "/")
        wait_ready(page)
        for zoom in (14, 12, 8, 5):
            page.evaluate(f"window.amberwatch.map.setZoom({zoom}, {{ animate: false }})")
            page.wait_for_function("() => document.querySelectorAll('.place-label').length > 0")
            labels = page.locator(".place-label").all_inner_texts()
            assert labels, zoom
            if zoom >= 12:
                assert "Klesiv" in labels, (zoom, labels)
        page.evaluate("window.amberwatch.map.setZoom(11, { animate: false })")
        page.wait_for_function("() => document.querySelector('.locator svg rect.view')")
        assert page.locator(".leaflet-control-scale-line").is_visible()
        assert_locator_shows_the_country(page, "Ukraine")
        page.wait_for_timeout(300)
        page.screenshot(path=str(artifacts_dir() / f"web_map_context_{size['width']}.png"))
        page.screenshot(path=str(artifacts_dir() / f"locator-live-{size['width']}x{size['height']}.png"))
        assert outside == [] and errors == []
    finally:
        context.close()
