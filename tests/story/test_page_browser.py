"""The built story page in headless Chromium from disk (file://): layout, click-to-site, keyboard, motion."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from tests.fixtures.browser import artifacts_dir
from tests.story.conftest import StoryFixture

pytestmark = pytest.mark.browser


def _open(browser, site: Path, width: int, height: int, *, reduced_motion: bool = False):
    context = browser.new_context(
        viewport={"width": width, "height": height}, reduced_motion="reduce" if reduced_motion else "no-preference"
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    page.goto((site / "index.html").as_uri())
    page.wait_for_function("() => window.amberStory && window.amberStory.map")
    return context, page, errors, requests


def _load_all_images(page) -> None:
    """Scroll through the page so every lazy fragment loads, then wait for them."""
    height = page.evaluate("() => document.documentElement.scrollHeight")
    for y in range(0, height, 500):
        page.evaluate(f"window.scrollTo(0, {y})")
        page.wait_for_timeout(30)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.frag img')].every(i => i.complete && i.naturalWidth > 0)",
        timeout=10_000,
    )
    page.evaluate("() => Promise.all([...document.querySelectorAll('.frag img')].map(i => i.decode()))")


def _boxes(page) -> list[dict]:
    return page.evaluate(
        """() => [...document.querySelectorAll('.frag-grid')].map(g => {
            const gb = g.getBoundingClientRect();
            return {grid: {x: gb.x, y: gb.y + scrollY, w: gb.width, h: gb.height},
                    gap: parseFloat(getComputedStyle(g).columnGap),
                    items: [...g.querySelectorAll('.frag')].map(f => {
                        const b = f.getBoundingClientRect();
                        return {id: f.dataset.site, x: b.x, y: b.y + scrollY, w: b.width, h: b.height};
                    })};
        })"""
    )


@pytest.mark.parametrize(("width", "height", "name"), [(1280, 800, "desktop"), (390, 844, "phone")])
def test_fragments_packed_without_overlap(browser, built_story: Path, width: int, height: int, name: str) -> None:
    context, page, errors, requests = _open(browser, built_story, width, height)
    try:
        _load_all_images(page)
        blocks = _boxes(page)
        assert len(blocks) >= 2
        for block in blocks:
            g, gap = block["grid"], block["gap"]
            assert g["w"] <= width
            area = 0.0
            for it in block["items"]:
                assert it["w"] > 40 and it["h"] > 40, it
                # Inside the block.
                assert it["x"] >= g["x"] - 0.5 and it["x"] + it["w"] <= g["x"] + g["w"] + 0.5
                assert it["y"] >= g["y"] - 0.5 and it["y"] + it["h"] <= g["y"] + g["h"] + 0.5
                area += (it["w"] + gap) * (it["h"] + gap)
            for a, b in itertools.combinations(block["items"], 2):
                ox = min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"])
                oy = min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"])
                assert ox <= 0.5 or oy <= 0.5, (a, b)
            # No holes: the items (with their gutters) cover the block.
            assert area == pytest.approx((g["w"] + gap) * (g["h"] + gap), rel=0.01)
        # Text column readable: not wider than ~75 characters of body text.
        text_width = page.evaluate("() => document.querySelector('.story-body p').getBoundingClientRect().width")
        assert text_width <= min(width, 720)
        page.evaluate("window.scrollTo(0, 0)")
        _load_all_images(page)
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(300)
        page.screenshot(path=str(artifacts_dir() / f"story-{name}-{width}.png"), full_page=True)
        assert errors == []
        assert all(u.startswith(("file://", "data:")) for u in requests), [
            u for u in requests if not u.startswith(("file://", "data:"))
        ]
    finally:
        context.close()


def _center(page) -> tuple[float, float]:
    c = page.evaluate("() => { const c = window.amberStory.map.getCenter(); return [c.lat, c.lng]; }")
    return float(c[0]), float(c[1])


def _wait_for_site(page, site_id: int) -> None:
    page.wait_for_function(
        f"() => document.documentElement.getAttribute('data-map-site') === '{site_id}'", timeout=15_000
    )


def _site_center(page, site_id: int) -> tuple[float, float]:
    c = page.evaluate(f"() => window.amberStory.data.fragments.find(f => f.id === {site_id}).center")
    return float(c[0]), float(c[1])


def test_click_flies_map_to_site(browser, built_story: Path, story_data: StoryFixture) -> None:
    context, page, errors, _ = _open(browser, built_story, 1280, 800)
    try:
        target = story_data.cached_ids[3]
        start = _center(page)
        page.click(f'.frag[data-site="{target}"] .frag-btn')
        _wait_for_site(page, target)
        lat, lon = _center(page)
        want = _site_center(page, target)
        assert math.isclose(lat, want[0], abs_tol=2e-4) and math.isclose(lon, want[1], abs_tol=2e-4)
        assert (lat, lon) != start
        assert page.evaluate("() => window.amberStory.map.getZoom()") >= 16
        # The map is on screen and the fragments have landed on it as markers.
        rect = page.evaluate("() => document.getElementById('story-map').getBoundingClientRect().toJSON()")
        assert rect["top"] < 800 and rect["bottom"] > 0
        assert page.evaluate("() => document.querySelectorAll('.site-marker').length") == len(story_data.cached_ids) + 1
        assert page.evaluate("() => document.querySelectorAll('.fly-clone').length") == 0
        page.screenshot(path=str(artifacts_dir() / "story-map-after-click-1280.png"))
        # The back button returns to the fragment.
        page.click(".back-to-text")
        page.wait_for_function(
            f"() => document.activeElement && document.activeElement.closest('.frag[data-site=\"{target}\"]')"
        )
        assert errors == []
    finally:
        context.close()


def test_keyboard_enter_and_space_show_site(browser, built_story: Path, story_data: StoryFixture) -> None:
    context, page, errors, _ = _open(browser, built_story, 390, 844, reduced_motion=True)
    try:
        page.keyboard.press("Tab")  # skip link
        page.keyboard.press("Tab")  # first fragment
        first = page.evaluate("() => document.activeElement.closest('.frag').dataset.site")
        assert first == str(story_data.cached_ids[0])
        ring = page.evaluate("() => getComputedStyle(document.activeElement, '::after').boxShadow")
        assert "inset" in ring  # a visible focus ring drawn over the image
        page.keyboard.press("Enter")
        _wait_for_site(page, int(first))
        lat, lon = _center(page)
        want = _site_center(page, int(first))
        assert math.isclose(lat, want[0], abs_tol=2e-4) and math.isclose(lon, want[1], abs_tol=2e-4)
        # With reduced motion no clones fly; the markers simply appear.
        assert page.evaluate("() => document.documentElement.getAttribute('data-story-arrival')") == "instant"
        assert page.evaluate("() => document.querySelectorAll('.fly-clone, .fly-layer').length") == 0
        assert page.evaluate("() => document.querySelectorAll('.site-marker').length") > 0
        page.screenshot(path=str(artifacts_dir() / "story-map-after-enter-390.png"))
        second = story_data.cached_ids[5]
        page.focus(f'.frag[data-site="{second}"] .frag-btn')
        page.keyboard.press("Space")
        _wait_for_site(page, second)
        assert math.isclose(_center(page)[0], _site_center(page, second)[0], abs_tol=2e-4)
        assert errors == []
    finally:
        context.close()


def test_scrolling_to_map_flies_fragments_in(browser, built_story: Path) -> None:
    context, page, errors, _ = _open(browser, built_story, 1280, 800)
    try:
        assert page.evaluate("() => document.querySelectorAll('.site-marker').length") == 0
        page.evaluate("document.getElementById('story-map').scrollIntoView({block: 'center'})")
        page.wait_for_function("() => document.querySelectorAll('.fly-clone').length > 0", timeout=5_000)
        assert page.evaluate("() => document.documentElement.getAttribute('data-story-arrival')") == "animated"
        page.wait_for_timeout(500)
        page.screenshot(path=str(artifacts_dir() / "story-fly-in-1280.png"))
        page.wait_for_function(
            "() => document.documentElement.getAttribute('data-story-arrived') === 'true'", timeout=10_000
        )
        assert page.evaluate("() => document.querySelectorAll('.fly-clone').length") == 0
        assert page.evaluate("() => document.querySelectorAll('.site-marker').length") > 0
        # Exported tiles load from disk at the start view.
        page.wait_for_timeout(400)
        loaded = page.evaluate(
            "() => [...document.querySelectorAll('.leaflet-tile-loaded')].filter(t => t.src.includes('/tiles/')).length"
        )
        assert loaded > 0
        page.screenshot(path=str(artifacts_dir() / "story-map-landed-1280.png"))
        assert errors == []
    finally:
        context.close()


def test_many_sites_on_a_canvas(browser, story_data: StoryFixture, tmp_path: Path) -> None:
    import shutil

    from amberwatch.db import connect
    from amberwatch.story.builder import build_story
    from tests.story.conftest import _insert, _polygon, write_article

    db = tmp_path / "many.db"
    shutil.copyfile(story_data.db, db)
    shutil.copyfile(story_data.cache, tmp_path / "many-tiles.mbtiles")
    conn = connect(db)
    conn.execute("BEGIN")
    for i in range(1500):
        lat, lon = 51.2 + (i // 40) * 0.004, 26.8 + (i % 40) * 0.006
        _insert(conn, _polygon(lon, lat, 40, seed=i), lat, lon, 0.51, thumb=None)
    conn.execute("COMMIT")
    conn.close()
    article = write_article(tmp_path, list(story_data.cached_ids[:4]))
    result = build_story(article, db, tmp_path / "site")
    assert result.n_map_sites == 1512
    context, page, errors, _ = _open(browser, tmp_path / "site", 1280, 800)
    try:
        assert page.evaluate("() => document.querySelectorAll('#story-map canvas').length") == 1
        target = story_data.cached_ids[2]
        page.click(f'.frag[data-site="{target}"] .frag-btn')
        _wait_for_site(page, target)
        assert math.isclose(_center(page)[0], _site_center(page, target)[0], abs_tol=2e-4)
        assert errors == []
    finally:
        context.close()


def test_basemap_under_the_imagery_only_when_asked(browser, story_data: StoryFixture, tmp_path: Path) -> None:
    """With `basemap:` the map asks the preset's server for tiles (aborted here: tests never go online), under the
    exported imagery; the page still works. Without it, nothing leaves the folder (see the packing test above)."""
    import re

    from amberwatch.story.builder import build_story
    from tests.story.conftest import write_article

    article = write_article(tmp_path, list(story_data.cached_ids[:4]))
    article.write_text(article.read_text("utf-8").replace("byline:", "basemap: OpenStreetMap.Mapnik\nbyline:"), "utf-8")
    build_story(article, story_data.db, tmp_path / "site")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    blocked: list[str] = []

    def abort(route) -> None:
        blocked.append(route.request.url)
        route.abort()

    context.route(re.compile(r"^https?://"), abort)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto((tmp_path / "site" / "index.html").as_uri())
        page.wait_for_function("() => window.amberStory && window.amberStory.map")
        page.evaluate("document.getElementById('story-map').scrollIntoView({block: 'center'})")
        page.wait_for_function("() => document.querySelectorAll('.story-basemap img').length > 0", timeout=10_000)
        page.wait_for_timeout(300)
        assert blocked and all(re.match(r"https://tile\.openstreetmap\.org/\d+/\d+/\d+\.png$", u) for u in blocked)
        # The basemap sits under the exported imagery, and the imagery still loads from disk.
        z_basemap = page.evaluate("() => +getComputedStyle(document.querySelector('.story-basemap')).zIndex")
        loaded = page.evaluate(
            "() => [...document.querySelectorAll('.leaflet-tile-loaded')].filter(t => t.src.includes('/tiles/'))"
            ".map(t => +getComputedStyle(t.parentElement.parentElement).zIndex)"
        )
        assert loaded and all(z > z_basemap for z in loaded)
        credit = page.evaluate("() => document.querySelector('.leaflet-control-attribution').textContent")
        assert "© OpenStreetMap contributors" in credit and "Sites: amberwatch" in credit
        assert errors == []
    finally:
        context.close()
