"""The one locator inset (results.locator): the country holding the sites, named, among its neighbours, with the
sites' extent marked where it lies; as the story inlines it and as a standalone SVG file for the map."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from amberwatch.errors import InvalidInputError
from amberwatch.imagery.types import LngLatBbox
from amberwatch.results.locator import locator_document, locator_svg, union_bbox

SVG = "{http://www.w3.org/2000/svg}"
KLESIV = LngLatBbox(26.88, 51.32, 26.92, 51.35)  # sites near Klesiv, Rivne oblast, Ukraine
SARNY = LngLatBbox(26.58, 51.32, 26.62, 51.36)


def _aoi_centre_deg(svg: ET.Element) -> tuple[float, float]:
    """The marked extent's centre back in lon/lat, through the window the SVG states (equirectangular, linear)."""
    w, s, e, n = (float(v) for v in svg.get("data-window").split(","))
    _, _, width, height = (float(v) for v in svg.get("viewBox").split())
    rect = svg.find(f"{SVG}rect[@class='locator-aoi']")
    cx = float(rect.get("x")) + float(rect.get("width")) / 2
    cy = float(rect.get("y")) + float(rect.get("height")) / 2
    return w + cx / width * (e - w), n - cy / height * (n - s)


def test_the_locator_names_the_country_and_marks_the_sites_extent() -> None:
    doc = locator_document([KLESIV, SARNY])
    svg = ET.fromstring(doc)
    assert svg.tag == f"{SVG}svg" and svg.get("role") == "img"
    assert svg.get("aria-label") == "Locator map: the sites in Ukraine" and svg.find(f"{SVG}title").text == "Ukraine"
    home = svg.find(f"{SVG}path[@class='locator-home']").get("d")
    land = svg.find(f"{SVG}path[@class='locator-land']").get("d")
    assert home.startswith("M") and home.count("L") > 20  # an outline, not a box
    assert land.count("M") >= 4  # Ukraine's neighbours: Poland, Belarus, Russia, Moldova, Romania...
    lon, lat = _aoi_centre_deg(svg)
    extent = union_bbox([KLESIV, SARNY])
    assert lon == pytest.approx(extent.center_deg[0], abs=0.05) and lat == pytest.approx(extent.center_deg[1], abs=0.05)
    w, s, e, n = (float(v) for v in svg.get("data-window").split(","))
    assert w < 22.1 and e > 40.1 and s < 45.3 and n > 52.3  # all of Ukraine in the window


def test_the_story_inlines_it_with_its_own_id_and_no_namespace() -> None:
    inline = locator_svg(KLESIV, svg_id="story-locator")
    assert inline.startswith('<svg id="story-locator" class="locator-map"') and "xmlns" not in inline
    assert ET.fromstring(locator_document([KLESIV])).get("id") == "locator-map"


def test_no_sites_no_locator() -> None:
    assert locator_document([]) is None
    with pytest.raises(InvalidInputError, match="at least one site"):
        union_bbox([])


def test_a_vast_country_gets_a_window_around_the_sites() -> None:
    """Russia spans the antimeridian: a 30 x 20 degree window around the sites, not the whole country."""
    svg = ET.fromstring(locator_document([LngLatBbox(37.5, 55.7, 37.7, 55.8)]))
    w, s, e, n = (float(v) for v in svg.get("data-window").split(","))
    assert "Russia" in svg.get("aria-label") and e - w < 40 and n - s < 30
    lon, lat = _aoi_centre_deg(svg)
    assert lon == pytest.approx(37.6, abs=0.1) and lat == pytest.approx(55.75, abs=0.1)
