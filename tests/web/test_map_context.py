"""Issue 14 (2, 4, 5): the map's geographic context and public wording.

Overview tiles keep the scanned imagery visible when zoomed out, a scale bar, offline place names for sites,
an optional online basemap (``serve --basemap``; the page loads nothing from outside without it), plain words for
readers and model ids for reviewers, and a flag question up front that cannot be sent twice.
"""

from __future__ import annotations

import html
import io
import json
import re

import mercantile
import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image

from amberwatch.cli import main
from amberwatch.web.app import create_app
from amberwatch.web.layers import basemap_config
from tests.fixtures.browser import artifacts_dir
from tests.web.conftest import CENTER_LAT, CENTER_LON, SOURCE_ID, ZOOM, LiveServer
from tests.web.test_browser import click_detection, console_errors, offline, wait_ready

OSM = "OpenStreetMap.Mapnik"


def image(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGBA"))


# ---------- API ----------


def test_zoom_12_tile_over_the_cached_zoom_17_tiles_is_imagery(client):
    t = mercantile.tile(CENTER_LON, CENTER_LAT, 12)
    r = client.get(f"/tiles/{SOURCE_ID}/12/{t.x}/{t.y}?base={ZOOM}")
    assert r.status_code == 200 and r.headers["content-type"] in ("image/png", "image/jpeg")
    px = image(r.content)
    covered = px[px[..., 3] == 255][:, :3]
    assert px.shape == (256, 256, 4) and len(covered) == 9 * 8 * 8  # 3 x 3 tiles of 8 x 8 px at zoom 12
    assert covered.std() > 5  # fields and pits, not a blank square
    assert client.get(f"/tiles/{SOURCE_ID}/12/{t.x}/{t.y}").content == r.content  # base defaults to the top zoom


def test_overview_outside_the_scanned_area_or_too_far_out_is_refused(client):
    t = mercantile.tile(CENTER_LON + 1, CENTER_LAT, 14)
    assert client.get(f"/tiles/{SOURCE_ID}/14/{t.x}/{t.y}?base={ZOOM}").status_code == 404
    assert client.get(f"/tiles/unknown-source/14/{t.x}/{t.y}").status_code == 404
    far = mercantile.tile(CENTER_LON, CENTER_LAT, 3)
    r = client.get(f"/tiles/{SOURCE_ID}/3/{far.x}/{far.y}?base={ZOOM}")
    assert r.status_code == 422 and "overview tile 3/" in r.json()["error"]


def test_scans_name_their_lowest_zoom_and_sites_their_place(client):
    (layer,) = client.get("/api/scans").json()["scans"]
    assert layer["overview_min_zoom"] == ZOOM - 5
    places = [f["properties"]["place"] for f in client.get("/api/detections").json()["features"]]
    assert len(places) == 5 and all(re.fullmatch(r"(0\.\d km [NESW]{1,2} of |near |in )Klesiv", p) for p in places)
    one = client.get("/api/detections/1").json()["properties"]["place"]
    assert one in places


def test_page_config_and_csp_without_and_with_a_basemap(project):
    with TestClient(create_app(project.db_path, project.cache_path)) as c:
        page = c.get("/")
        assert 'data-basemap=""' in page.text
        assert "img-src 'self' data: blob:;" in page.headers["content-security-policy"]
    basemap = basemap_config(OSM)
    with TestClient(create_app(project.db_path, project.cache_path, basemap=basemap)) as c:
        page = c.get("/")
        config = json.loads(html.unescape(re.search(r'data-basemap="([^"]*)"', page.text).group(1)))
        assert config["url"] == "https://tile.openstreetmap.org/{z}/{x}/{y}.png" and config["name"] == OSM
        assert "OpenStreetMap" in config["attribution"]
        assert "img-src 'self' data: blob: https://tile.openstreetmap.org;" in page.headers["content-security-policy"]
        assert "tile.openstreetmap.org" in c.get("/api/scans").headers["content-security-policy"]


def test_basemap_with_subdomains_allows_them_all():
    config = basemap_config("OpenTopoMap")
    assert config["url"].startswith("https://{s}.") and config["origin"] == "https://*.tile.opentopomap.org"


@pytest.mark.parametrize(
    ("name", "why"), [("Nope.Nothing", "is not an xyzservices preset"), ("Thunderforest.OpenCycleMap", "API key")]
)
def test_serve_refuses_a_bad_basemap_naming_it(tmp_path, name, why):
    result = CliRunner().invoke(main, ["serve", "--db", str(tmp_path / "p.db"), "--basemap", name])
    assert result.exit_code == 2 and f"'{name}'" in result.output and why in result.output


# ---------- browser ----------


def tile_zooms(page) -> set[int]:
    """The zooms of the imagery tiles loaded on the page."""
    return set(
        page.evaluate(
            """() => [...document.querySelectorAll('.leaflet-tile-loaded')]
                .map((i) => /\\/tiles\\/[^/]+\\/(\\d+)\\//.exec(i.src)).filter(Boolean).map((m) => Number(m[1]))"""
        )
    )


@pytest.mark.browser
def test_zoomed_out_map_shows_the_scanned_imagery_and_a_scale_bar(page, live):
    outside = offline(page, live.url)
    errors = console_errors(page)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(live.url + "/")
    wait_ready(page)
    assert page.locator(".leaflet-control-scale-line").inner_text().endswith(("m", "km"))
    for zoom, native in ((14, {14}), (11, {12})):  # overviews down to 12, drawn smaller further out
        page.evaluate(f"window.amberwatch.map.setView([{CENTER_LAT}, {CENTER_LON}], {zoom}, {{animate: false}})")
        page.wait_for_function(
            "(z) => [...document.querySelectorAll('.leaflet-tile-loaded')].some((i) => i.src.includes(`/${z}/`))",
            arg=min(native),
        )
        page.wait_for_load_state("networkidle")
        assert tile_zooms(page) >= native
        page.screenshot(path=str(artifacts_dir() / f"web_map_zoom{zoom}.png"))
    assert "km" in page.locator(".leaflet-control-scale-line").inner_text()
    assert outside == [] and errors == []


@pytest.mark.browser
def test_basemap_lies_under_the_imagery_and_is_credited(page, project):
    png = io.BytesIO()
    Image.new("RGB", (256, 256), (230, 225, 210)).save(png, format="PNG")
    outside: list[str] = []

    def fake_osm(route):  # no internet in tests: the basemap's tiles are answered here
        outside.append(route.request.url)
        route.fulfill(status=200, body=png.getvalue(), content_type="image/png")

    page.route("https://tile.openstreetmap.org/**", fake_osm)
    with LiveServer(create_app(project.db_path, project.cache_path, basemap=basemap_config(OSM))) as live:
        errors = console_errors(page)
        page.goto(live.url + "/")
        wait_ready(page)
        page.wait_for_function("() => document.querySelectorAll('.leaflet-tile-loaded').length >= 8")
        assert page.evaluate("window.amberwatch.basemap.url") == "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
        assert outside and all(re.match(r"https://tile\.openstreetmap\.org/\d+/\d+/\d+\.png$", u) for u in outside)
        assert "OpenStreetMap" in page.locator(".leaflet-control-attribution").inner_text()
        z_imagery, z_basemap = page.evaluate(
            """() => [...document.querySelectorAll('.leaflet-tile-loaded')].reduce((acc, i) => {
                 const z = Number(getComputedStyle(i.closest('.leaflet-layer')).zIndex);
                 acc[i.src.includes('/tiles/') ? 0 : 1] = z; return acc; }, [null, null])"""
        )
        assert z_imagery > z_basemap
        page.locator("#basemap").select_option("map")  # the basemap alone
        page.wait_for_function("() => !document.querySelector('.leaflet-tile-loaded[src*=\"/tiles/\"]')")
        assert errors == []


def open_popup(page, live, detection_id: int):
    page.goto(live.url + "/")
    wait_ready(page)
    click_detection(page, detection_id)
    popup = page.locator(f".leaflet-popup .popup[data-id='{detection_id}']")
    popup.wait_for()
    return popup


@pytest.mark.browser
def test_reader_sees_plain_words_and_answers_once(page, live, project):
    outside = offline(page, live.url)
    errors = console_errors(page)
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    did = project.detection_ids[1]
    popup = open_popup(page, live, did)
    text = popup.inner_text()
    assert "Is this mining?" in text and popup.locator("button.confirm").is_visible()  # up front, not folded
    assert "Possibly mining" in text and "of Klesiv" in text and "Model confidence" in text and "71%" in text
    assert "Model\n" not in text and "max" not in text and "version" not in text
    assert "model" not in page.locator("#scan-select").inner_text().lower()
    assert "of Klesiv" in page.locator("#site-list").inner_text()
    popup.locator("button.confirm").dblclick()  # a double click sends one answer
    page.wait_for_function("() => document.querySelector('.popup .msg').textContent.startsWith('Thanks — sent')")
    assert popup.locator("button.confirm").is_disabled() and popup.locator("button.not-mining").is_disabled()
    assert popup.locator("button.confirm").get_attribute("aria-pressed") == "true"
    page.wait_for_timeout(300)
    assert len(posts) == 1
    page.screenshot(path=str(artifacts_dir() / "web_popup_answered.png"))

    page.reload()  # the reader's answer is shown again, and changing it updates it
    popup = open_popup(page, live, did)
    page.wait_for_function("() => document.querySelector('.popup .msg').textContent.startsWith('You answered: mining')")
    assert popup.locator("button.confirm").is_disabled()
    popup.locator("button.change").click()
    popup.locator("select[name=category]").select_option("quarry")
    popup.locator("button.not-mining").click()
    page.wait_for_function("() => document.querySelector('.popup .msg').textContent.includes('answer is updated')")
    assert "1 reader answer awaiting review" in popup.inner_text()
    assert len(posts) == 2 and outside == [] and errors == []


@pytest.mark.browser
def test_reviewer_sees_model_ids(page, live, project):
    page.add_init_script(f"sessionStorage.setItem('amberwatch.reviewerToken', {json.dumps(project.reviewer_token)})")
    outside = offline(page, live.url)
    popup = open_popup(page, live, project.detection_ids[0])
    assert "version 0" in popup.inner_text() and f"#{project.detection_ids[0]}" in popup.inner_text()
    assert f"#{project.scan_id} · model 0" in page.locator("#scan-select").inner_text()
    assert outside == []
