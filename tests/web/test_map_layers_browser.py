"""Issue 14 (3, 4, 5) in headless Chromium at 1440x900: totals respect reviews, "All scans" shows every scan's
imagery and credit, and a page load asks only for tiles the cache holds (no console error, no 404)."""

from __future__ import annotations

import json

import mercantile
import pytest

from amberwatch.db import connect
from amberwatch.results.store import query_detections
from amberwatch.web.app import create_app
from tests.fixtures.browser import artifacts_dir
from tests.web.conftest import SOURCE_ID, ZOOM, LiveServer, add_scan, build_project, reject_as_not_mining
from tests.web.test_browser import console_errors, offline, wait_ready

pytestmark = pytest.mark.browser

LOADED_TILES = """() => [...document.querySelectorAll('.leaflet-tile-loaded')].map((i) => {
    const m = /\\/tiles\\/([^/]+)\\/(\\d+)\\/(\\d+)\\/(\\d+)$/.exec(new URL(i.src).pathname);
    return m ? [decodeURIComponent(m[1]), Number(m[2]), Number(m[3]), Number(m[4])] : null; }).filter(Boolean)"""


def at_zoom(tiles, z: int) -> set[tuple[int, int, int]]:
    """The tiles at zoom ``z`` (<= ZOOM) over zoom-ZOOM tiles: what the map shows there (overviews below ZOOM)."""
    return {(z, x >> (ZOOM - z), y >> (ZOOM - z)) for _, x, y in tiles}


def map_zoom(page) -> int:
    """The zoom the imagery is drawn at: the map's, capped at the scan's zoom (tiles are scaled up above it)."""
    return min(ZOOM, page.evaluate("window.amberwatch.map.getZoom()"))


def open_map(page, url: str) -> tuple[list[str], list[str]]:
    """Load the map at 1440x900 offline; wait until its sites and tiles are in and the network is idle."""
    page.set_viewport_size({"width": 1440, "height": 900})
    outside = offline(page, url.split("/?")[0])
    errors = console_errors(page)
    page.goto(url)
    wait_ready(page)
    page.wait_for_function("() => document.querySelectorAll('.leaflet-tile-loaded').length >= 4")
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(300)
    return outside, errors


def test_map_load_makes_no_failed_request_and_no_console_error(page, live, project):
    tile_requests: list[str] = []
    page.on("request", lambda r: tile_requests.append(r.url) if "/tiles/" in r.url else None)
    outside, errors = open_map(page, live.url + "/")
    loaded = {tuple(t) for t in page.evaluate(LOADED_TILES)}
    expected = at_zoom(project.tiles, map_zoom(page))  # the cached tiles, or the overviews over them
    assert loaded == {(SOURCE_ID, *t) for t in expected}  # the whole scanned area shown, and only it
    assert len(tile_requests) == len(expected)
    page.evaluate("window.amberwatch.map.setZoom(window.amberwatch.map.getZoom() - 1, {animate: false})")
    page.wait_for_load_state("networkidle")
    assert errors == [] and outside == []


def test_totals_leave_out_a_site_reviewed_as_not_mining(page, tmp_path):
    project = build_project(tmp_path)
    rejected = project.detection_ids[0]
    reject_as_not_mining(project, rejected)
    kept = sum(r.area_ha for r in query_detections(connect(project.db_path), ids=project.detection_ids[1:]))
    with LiveServer(create_app(project.db_path, project.cache_path)) as live:
        outside, errors = open_map(page, live.url + "/")
        assert page.locator("#t-sites").inner_text() == "4"
        assert page.locator("#t-ha").inner_text() == page.evaluate("(x) => window.aw.ha(x)", kept)
        assert page.locator("#t-removed").is_visible()
        assert page.locator("#t-removed").inner_text() == "1 removed after review (not mining)"
        assert "4 sites" in page.locator("#scan-select").inner_text()
        page.screenshot(path=str(artifacts_dir() / "web_map_totals_after_review.png"))
        page.locator("#f-prob").fill("0.95")  # the filters leave no site: no removed one either
        page.locator("#f-prob").dispatch_event("change")
        assert page.locator("#t-sites").inner_text() == "0" and page.locator("#t-removed").is_hidden()
        assert errors == [] and outside == []


def test_all_scans_shows_each_scans_imagery_under_its_sites_and_credits_each(page, tmp_path):
    project = build_project(tmp_path)
    conn = connect(project.db_path)
    params = json.dumps({"imagery_credit": "Drone survey A © 2018"})
    conn.execute("UPDATE scans SET params_json = ? WHERE id = ?", (params, project.scan_id))
    other, _ = add_scan(project, "second-imagery", "Aerial survey B © 2019", shift=4)
    sources = {project.scan_id: SOURCE_ID, other: "second-imagery"}
    with LiveServer(create_app(project.db_path, project.cache_path)) as live:
        outside, errors = open_map(page, live.url + "/?scan=all")
        assert page.locator("#scan-select").input_value() == "all"
        page.wait_for_function(
            "(n) => new Set([...document.querySelectorAll('.leaflet-tile-loaded')].map(i => i.src"
            ".split('/tiles/')[1].split('/')[0])).size === n",
            arg=2,
        )
        loaded = {tuple(t) for t in page.evaluate(LOADED_TILES)}
        z = map_zoom(page)
        for d in query_detections(conn):
            t = mercantile.tile(d.centroid_lon, d.centroid_lat, z)
            assert (sources[d.scan_id], z, t.x, t.y) in loaded, f"no imagery of its scan under site {d.id}"
        credit = page.locator(".leaflet-control-attribution").inner_text()
        assert "Drone survey A © 2018" in credit and "Aerial survey B © 2019" in credit
        page.screenshot(path=str(artifacts_dir() / "web_map_all_scans.png"))
        page.locator("#scan-select").select_option(str(other))  # one scan: its imagery and credit only
        page.wait_for_function(
            "() => !document.querySelector('.leaflet-control-attribution').textContent.includes('Drone survey A')"
        )
        assert "Aerial survey B © 2019" in page.locator(".leaflet-control-attribution").inner_text()
        page.wait_for_load_state("networkidle")
        assert errors == [] and outside == []
