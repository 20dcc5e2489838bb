"""The story on a phone (390x844, touch): one finger scrolls the page past the map, two fingers move it; the caption
shown after tapping a fragment fits the screen."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.browser import artifacts_dir
from tests.story.conftest import StoryFixture, static_server

pytestmark = pytest.mark.browser


def _phone(browser, url: str):
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True, reduced_motion="reduce"
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_function("() => window.amberStory && window.amberStory.map")
    return context, page, errors


def _touch(cdp, kind: str, points: list[tuple[float, float]]) -> None:
    cdp.send(
        "Input.dispatchTouchEvent",
        {"type": kind, "touchPoints": [{"x": x, "y": y, "id": i} for i, (x, y) in enumerate(points)]},
    )


def _swipe(cdp, starts: list[tuple[float, float]], dy: float, steps: int = 10) -> None:
    """Fingers down at ``starts``, moved by dy (negative: up, to scroll down), lifted."""
    _touch(cdp, "touchStart", starts)
    for i in range(1, steps + 1):
        _touch(cdp, "touchMove", [(x, y + dy * i / steps) for x, y in starts])
    _touch(cdp, "touchEnd", [])


def _center(page) -> tuple[float, float]:
    c = page.evaluate("() => { const c = window.amberStory.map.getCenter(); return [c.lat, c.lng]; }")
    return float(c[0]), float(c[1])


def test_one_finger_scrolls_the_page_past_the_map(browser, built_story: Path) -> None:
    with static_server(built_story) as url:
        context, page, errors = _phone(browser, url)
        try:
            cdp = context.new_cdp_session(page)
            page.evaluate("document.getElementById('story-map').scrollIntoView({block: 'end'})")
            page.wait_for_function("() => document.documentElement.getAttribute('data-story-arrived') === 'true'")
            page.evaluate("window.scrollBy(0, -300)")  # the map's lower part below the screen, the page to go
            page.wait_for_timeout(200)
            height = page.evaluate("() => document.getElementById('story-map').getBoundingClientRect().height")
            assert height <= 0.6 * 844, height  # not 70 % of the screen
            start = _center(page)
            end = page.evaluate("() => document.documentElement.scrollHeight - innerHeight")
            for _ in range(12):
                rect = page.evaluate("() => document.getElementById('story-map').getBoundingClientRect().toJSON()")
                top, bottom = max(rect["top"], 0), min(rect["bottom"], 844)
                if bottom - top < 120:
                    break
                _swipe(cdp, [(195, bottom - 20)], -(bottom - top - 60))  # one finger, over the map only
                page.wait_for_timeout(250)
            assert page.evaluate("() => scrollY") >= end - 2  # to the end by one-finger swipes over the map
            assert _center(page) == pytest.approx(start, abs=1e-9)
            # Two fingers move the map.
            page.evaluate("document.getElementById('story-map').scrollIntoView({block: 'center'})")
            page.wait_for_timeout(300)
            rect = page.evaluate("() => document.getElementById('story-map').getBoundingClientRect().toJSON()")
            cy = (rect["top"] + rect["bottom"]) / 2
            _swipe(cdp, [(150, cy - 60), (240, cy - 60)], 120)
            page.wait_for_timeout(400)
            assert _center(page)[0] > start[0] + 1e-5  # dragged down: the map shows what lies north
            assert page.locator(".map-touch-note").is_visible()  # the map says how to move it
            assert errors == []
        finally:
            context.close()


def test_caption_after_tapping_a_fragment_fits_the_phone(browser, built_story: Path, story_data: StoryFixture) -> None:
    with static_server(built_story) as url:
        context, page, errors = _phone(browser, url)
        try:
            for target in story_data.cached_ids[:4]:
                page.tap(f'.frag[data-site="{target}"] .frag-btn')
                page.wait_for_function(
                    f"() => document.documentElement.getAttribute('data-map-site') === '{target}'", timeout=15_000
                )
                page.wait_for_selector(".leaflet-tooltip.site-tip")
                page.wait_for_timeout(200)
                sizes = page.evaluate(
                    """() => ({scroll: document.documentElement.scrollWidth,
                       client: document.documentElement.clientWidth,
                       tips: [...document.querySelectorAll('.leaflet-tooltip.site-tip')].map(t => {
                           const r = t.getBoundingClientRect(); return [r.left, r.right]; })})"""
                )
                assert sizes["scroll"] <= sizes["client"], sizes
                assert sizes["tips"] and all(left >= 0 and right <= 390 for left, right in sizes["tips"]), sizes
            page.screenshot(path=str(artifacts_dir() / "story-phone-caption-390.png"))
            assert errors == []
        finally:
            context.close()
