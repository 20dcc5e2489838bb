"""The static edition's viewer (index.html: the live map's page in its static mode) in headless Chromium, served by
the plain static Range server: imagery from the archive, the sites, place names, no other origin, no console error;
flag buttons only with a flag endpoint, whose POST reaches a tiny CORS endpoint on 127.0.0.1.

Screenshots go to $AMBERWATCH_SCREENS (when set): publish-{phone,desktop}.png on opening, -site.png with a popup."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from amberwatch.publish.edition import Edition, PublishOptions, publish
from tests.fixtures.browser import artifacts_dir, assert_locator_shows_the_country
from tests.publish.rangeserver import range_server
from tests.story.conftest import DatedFixture, StoryFixture

pytestmark = pytest.mark.browser

VIEWPORTS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1440, "height": 900}}
DRAWN_TILES = """() => [...document.querySelectorAll('.leaflet-tile-container img')]
  .filter((img) => img.complete && img.naturalWidth > 0 && img.style.visibility !== 'hidden').length"""
# Every site's outline, visited one by one at zoom 16: the ids of the outlines drawn around each.
OUTLINES = """(sites) => {
  const seen = new Set();
  for (const site of sites) {
    amberwatch.map.setView([site.lat, site.lon], 16, {animate: false});
    for (const id of amberwatch.outlines) seen.add(id);
  }
  return [...seen].sort((a, b) => a - b);
}"""


class FlagEndpoint(http.server.BaseHTTPRequestHandler):
    """A stand-in for ``amberwatch serve``'s flag routes from another origin: CORS preflight, POST and GET answered
    with JSON, each POST recorded."""

    posts: list[tuple[str, dict]]

    def _cors(self) -> None:
        self.send_header("Access-Control-Allow-Origin", self.headers.get("Origin", "*"))
        self.send_header("Access-Control-Allow-Credentials", "true")
        self.send_header("Access-Control-Allow-Methods", "GET, POST")
        self.send_header("Access-Control-Allow-Headers", "Content-Type")

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self._cors()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_OPTIONS(self) -> None:
        """The CORS preflight of a JSON POST."""
        self.send_response(204)
        self._cors()
        self.end_headers()

    def do_GET(self) -> None:
        """A reader's earlier answer: none."""
        self._json(200, {"feedback": None})

    def do_POST(self) -> None:
        """A flag: recorded, answered as serve answers a first flag."""
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.posts.append((self.path, body))
        self._json(201, {"verdict": body["verdict"], "category": body["category"], "comment": body["comment"]})

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@contextlib.contextmanager
def flag_endpoint() -> Iterator[tuple[str, list[tuple[str, dict]]]]:
    """The endpoint on 127.0.0.1: (its URL, the POSTs it received)."""
    posts: list[tuple[str, dict]] = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("H", (FlagEndpoint,), {"posts": posts}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", posts
    finally:
        server.shutdown()
        server.server_close()


def _open(browser, base: str, viewport: dict):
    """A new page on the edition's index.html, ready (sites drawn), with its requests and console errors logged."""
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.requests, page.errors = [], []
    page.on("request", lambda r: page.requests.append(r.url))
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(base + "index.html")
    page.wait_for_function("document.body.dataset.ready === '1'", timeout=20_000)
    return context, page


def _open_first_site(page) -> None:
    """Open the popup of the largest site (from the list, as a reader would)."""
    page.evaluate("document.querySelector('#site-list button.site').click()")
    page.wait_for_selector(".leaflet-popup .popup", timeout=10_000)


@pytest.mark.parametrize("name", list(VIEWPORTS))
def test_the_edition_opens_as_the_public_map(browser, edition: Edition, name: str) -> None:
    """Imagery tiles drawn from the archive, every site listed and outlined (as many as sites.geojson holds), a
    place label visible, the locator (locator.svg: Ukraine's outline, the sites marked) in view, only the static
    server asked, no console error, no flag buttons nor live-only parts."""
    features = json.loads((edition.out_dir / "sites.geojson").read_text("utf-8"))["features"]
    with range_server(edition.out_dir) as (base, log):
        context, page = _open(browser, base, VIEWPORTS[name])
        page.wait_for_function(f"({DRAWN_TILES})() > 0", timeout=20_000)
        page.wait_for_function("amberwatch.placeLabels > 0", timeout=10_000)
        labels = [x.inner_text() for x in page.query_selector_all(".place-label span") if x.is_visible()]
        assert_locator_shows_the_country(page, "Ukraine")
        size = VIEWPORTS[name]
        page.screenshot(path=str(artifacts_dir() / f"locator-static-{size['width']}x{size['height']}.png"))
        if os.environ.get("AMBERWATCH_SCREENS"):
            page.screenshot(path=str(Path(os.environ["AMBERWATCH_SCREENS"]) / f"publish-{name}.png"))
        listed = page.evaluate("document.querySelectorAll('#site-list li').length")
        outlined = page.evaluate(OUTLINES, [f["properties"] for f in features])
        live_only = page.evaluate("document.getElementById('app-links').hidden")
        _open_first_site(page)
        if os.environ.get("AMBERWATCH_SCREENS"):
            page.wait_for_timeout(500)  # the site's tiles after the view moved
            page.screenshot(path=str(Path(os.environ["AMBERWATCH_SCREENS"]) / f"publish-{name}-site.png"))
        popup = page.evaluate(
            "({flag: !!document.querySelector('.popup .flag'), thumb: !!document.querySelector('.popup img.thumb'),"
            " similar: !!document.querySelector('.popup .find-similar'),"
            " report: !!document.getElementById('report-missed')})"
        )
        requests, errors = page.requests, page.errors
        context.close()
    assert not errors, errors
    assert listed == len(features) and outlined == sorted(f["id"] for f in features)
    assert labels, "no place label visible"
    assert live_only and popup == {"flag": False, "thumb": False, "similar": False, "report": False}, popup
    elsewhere = [u for u in requests if not u.removeprefix("blob:").startswith(base) and not u.startswith("data:")]
    assert not elsewhere, elsewhere
    assert any(path.endswith("/imagery.pmtiles") and status == 206 for path, _, status, _ in log.entries)


def test_flags_go_to_the_configured_endpoint(
    browser, project: StoryFixture, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Published with --flag-endpoint: the popup asks "Is this mining?"; "Yes, mining" POSTs JSON to the endpoint
    (another origin, CORS) and the reader is thanked."""
    with flag_endpoint() as (url, posts):
        out = tmp_path_factory.mktemp("flagged") / "site"
        publish(project.db, out, PublishOptions(flag_endpoint=url))
        with range_server(out) as (base, _):
            context, page = _open(browser, base, VIEWPORTS["desktop"])
            _open_first_site(page)
            site_id = page.evaluate("Number(document.querySelector('.popup').dataset.id)")
            reporting = page.evaluate("!!document.getElementById('report-missed')")  # reports go there too
            page.click(".popup button.confirm")
            page.wait_for_function("document.querySelector('.popup .flag .msg').textContent.startsWith('Thanks')")
            errors = page.errors
            context.close()
        shutil.rmtree(out)
    assert not errors, errors
    assert reporting
    assert len(posts) == 1
    path, body = posts[0]
    assert path == f"/api/detections/{site_id}/feedback" and body["verdict"] == "confirmed"


def test_a_dated_edition_switches_dates_from_its_files(
    browser, dated_project: DatedFixture, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A dated edition opens on its chosen date with a date control over config.json's dates; choosing the other
    date draws that date's sites and imagery from its own files (sites-DATE.geojson, imagery-DATE.pmtiles)."""
    out = tmp_path_factory.mktemp("dated-edition") / "site"
    config = publish(dated_project.db, out, PublishOptions()).config
    counts = {layer["date"]: layer["n_sites"] for layer in config["layers"]}
    (other,) = [d for d in config["dates"] if d != config["date"]]
    with range_server(out) as (base, log):
        context, page = _open(browser, base, VIEWPORTS["desktop"])
        radios = page.evaluate("[...document.querySelectorAll('#dates input')].map((i) => [i.value, i.checked])")
        first = page.evaluate("amberwatch.count")
        page.click(f"#dates input[value='{other}']")
        page.wait_for_function(f"amberwatch.ready && amberwatch.count === {counts[other]}", timeout=20_000)
        page.wait_for_function(f"({DRAWN_TILES})() > 0", timeout=20_000)
        errors = page.errors
        context.close()
    assert not errors, errors
    assert radios == [[d, d == config["date"]] for d in config["dates"]] and first == counts[config["date"]]
    served = {path for path, _, status, _ in log.entries if status in (200, 206)}
    assert {f"/sites-{other}.geojson", f"/imagery-{other}.pmtiles"} <= served, served


def test_a_dated_edition_follows_sites_over_time_from_its_files(
    browser, dated_project: DatedFixture, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """From timeline.json alone, as the live map from /api/timeline: the "new since" / "growing" filters change the
    sites listed, and a site's popup has its area-by-date chart and status ("Over time") and opens the before/after
    view of its two dates."""
    out = tmp_path_factory.mktemp("dated-timeline") / "site"
    config = publish(dated_project.db, out, PublishOptions()).config
    then, now = config["dates"]
    listed = "document.querySelectorAll('#site-list li').length"
    with range_server(out) as (base, log):
        context, page = _open(browser, base, VIEWPORTS["desktop"])
        visible = page.locator("#f-change-row").is_visible()
        shown = {"": page.evaluate(listed)}
        for choice in ("growing", f"new:{then}"):
            page.locator("#f-change").select_option(choice)
            page.wait_for_function("amberwatch.ready")
            shown[choice] = page.evaluate(listed)
        page.locator("#f-change").select_option("")
        page.evaluate("(id) => { location.hash = 'd=' + id; }", dated_project.now_ids["B1"])
        popup = page.locator(f".leaflet-popup .popup[data-id='{dated_project.now_ids['B1']}']")
        popup.wait_for(timeout=10_000)
        chart = popup.locator("svg.area-chart").get_attribute("aria-label")
        status = popup.locator(".status-words").inner_text()
        popup.locator("button.open-compare").click()
        page.wait_for_selector("#compare[data-ready]", timeout=20_000)
        panes = page.evaluate("[...document.querySelectorAll('#compare .pane')].map((p) => p.dataset.date)")
        errors = page.errors
        context.close()
    assert not errors, errors
    assert visible and shown == {"": 4, "growing": 1, f"new:{then}": 2}, shown
    assert then in chart and now in chart and status.lower().startswith("growing"), (chart, status)
    assert panes == [then, now], panes
    assert any(path == "/timeline.json" and status_ == 200 for path, _, status_, _ in log.entries)
