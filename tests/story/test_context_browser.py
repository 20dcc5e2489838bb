"""Geographic context on the story map, offline: scale bar, locator, place names, zoom to the imagery's native
zoom and beyond; nothing asked from another origin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.browser import artifacts_dir
from tests.story.conftest import ZOOM, StoryFixture, static_server

pytestmark = pytest.mark.browser


def test_data_names_places_near_the_sites(built_story: Path) -> None:
    text = (built_story / "data.js").read_text("utf-8")
    data = json.loads(text[len("window.AMBER_STORY = ") :].rstrip().rstrip(";"))
    names = [p["name"] for p in data["places"]]
    assert names[0] == "Klesiv" and len(names) <= 12  # the gazetteer's nearest village first
    assert data["maxZoom"] >= ZOOM + 2
    page = (built_story / "index.html").read_text("utf-8")
    assert '<svg id="story-locator"' in page and "the sites in Ukraine" in page


@pytest.mark.parametrize(("width", "height"), [(1440, 900), (390, 844)])
def test_map_has_context_offline(browser, built_story: Path, story_data: StoryFixture, width: int, height: int) -> None:
    context = browser.new_context(viewport={"width": width, "height": height}, reduced_motion="reduce")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    with static_server(built_story) as url:
        try:
            page.goto(url)
            page.wait_for_function("() => window.amberStory && window.amberStory.map")
            page.evaluate("document.getElementById('story-map').scrollIntoView({block: 'center'})")
            page.wait_for_function("() => document.documentElement.getAttribute('data-story-arrived') === 'true'")
            assert page.locator(".leaflet-control-scale-line").first.is_visible()
            assert page.locator(".locator-control #story-locator").is_visible()
            labels = page.evaluate("() => [...document.querySelectorAll('.place-label')].map(e => e.textContent)")
            assert "Klesiv" in labels
            # Beyond the imagery's native zoom: the exported tiles are drawn overzoomed.
            target = story_data.cached_ids[0]
            page.evaluate(
                f"() => {{ const f = window.amberStory.data.fragments.find(f => f.id === {target});"
                f" window.amberStory.map.setView(f.center, {ZOOM + 1}, {{animate: false}}); }}"
            )
            page.wait_for_timeout(500)
            assert page.evaluate("() => window.amberStory.map.getZoom()") == ZOOM + 1
            loaded = page.evaluate(
                "() => [...document.querySelectorAll('.leaflet-tile-loaded')]"
                f".filter(t => t.src.includes('/tiles/{ZOOM}/')).length"
            )
            assert loaded > 0
            scale = page.evaluate("() => document.querySelector('.leaflet-control-scale-line').textContent")
            assert scale.endswith(" m")
            page.screenshot(path=str(artifacts_dir() / f"story-context-{width}.png"))
            origin = url.rsplit("/", 1)[0]
            assert all(u.startswith((origin, "data:")) for u in requests), [u for u in requests if origin not in u]
            assert not any(u.endswith("/favicon.ico") for u in requests)  # the icon is inline
            assert errors == []
        finally:
            context.close()
