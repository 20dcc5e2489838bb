"""Issue 14: axe-core finds no serious or critical WCAG 2 A/AA violation on the built story page.

Checked from disk (file://) on a phone (390x844) and a desktop (1440x900) once every fragment has loaded and the
fragments have landed on the map; artifacts/screenshots/story-<phone|desktop>.png is the whole page.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.axe import SIZES, screenshot_and_check
from tests.story.test_page_browser import _load_all_images

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("size", sorted(SIZES))
def test_story_page(browser, built_story: Path, size: str) -> None:
    context = browser.new_context(**SIZES[size], reduced_motion="reduce")  # the same page, minus 2 s of flight
    page = context.new_page()
    try:
        page.goto((built_story / "index.html").as_uri())
        page.wait_for_function("() => window.amberStory && window.amberStory.map")
        _load_all_images(page)  # scrolls to the end, which brings the fragments to the map
        page.wait_for_function(
            "() => document.documentElement.getAttribute('data-story-arrived') === 'true'", timeout=15_000
        )
        page.evaluate("window.scrollTo(0, 0)")
        screenshot_and_check(page, f"story-{size}", full_page=True)
    finally:
        context.close()
