"""The then-and-now pairs offline: the built story from a static server on 127.0.0.1 in headless Chromium."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.fixtures.browser import artifacts_dir
from tests.story.conftest import static_server

pytestmark = pytest.mark.browser

HALVES = """() => [...document.querySelectorAll('.pair')].map(p => {
    const r = e => { const b = e.getBoundingClientRect(); return {x: b.x, y: b.y, w: b.width, h: b.height}; };
    return {id: p.dataset.site, pair: r(p), halves: [...p.querySelectorAll('.pair-half')].map(r),
            images: [...p.querySelectorAll('img')].map(i => ({w: i.naturalWidth, src: i.currentSrc}))};
})"""


@pytest.mark.parametrize(("width", "height"), [(1440, 900), (390, 844)])
def test_the_pair_renders_offline_side_by_side_or_stacked(browser, dated_story, width: int, height: int) -> None:
    folder = dated_story.index_html.parent
    with static_server(folder) as url:
        origin = urlsplit(url).netloc
        context = browser.new_context(viewport={"width": width, "height": height}, reduced_motion="reduce")
        requests: list[str] = []
        context.on("request", lambda req: requests.append(req.url))
        context.route(lambda u: urlsplit(u).netloc != origin and not u.startswith("data:"), lambda r: r.abort())
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        try:
            page.goto(url)
            page.wait_for_function("() => window.amberStory && window.amberStory.map")
            page.locator(".change").scroll_into_view_if_needed()
            page.wait_for_function(
                "() => [...document.querySelectorAll('.pair img')].every(i => i.complete && i.naturalWidth > 0)",
                timeout=10_000,
            )
            pairs = page.evaluate(HALVES)
            assert [int(p["id"]) for p in pairs] == list(dated_story.pair_ids)
            for p in pairs:
                then, now = p["halves"]
                assert all(i["w"] > 0 for i in p["images"]) and len(p["images"]) == 2
                assert then["w"] > 100 and then["w"] == pytest.approx(now["w"], abs=1)
                assert now["x"] + now["w"] <= width and then["x"] >= 0  # inside the viewport
                if width >= 1000:  # side by side: one row, THEN on the left
                    assert then["y"] == pytest.approx(now["y"], abs=1) and then["x"] + then["w"] <= now["x"]
                else:  # stacked: THEN above NOW
                    assert then["x"] == pytest.approx(now["x"], abs=1) and then["y"] + then["h"] <= now["y"] + 0.5
            assert page.evaluate("() => document.documentElement.scrollWidth") <= width  # no overflow
            shot = artifacts_dir() / f"story-pair-{width}x{height}.png"
            page.locator(".change").screenshot(path=str(shot))
            # Clickable to the map like a fragment.
            page.click(f'.pair[data-site="{pairs[1]["id"]}"] .frag-btn')
            page.wait_for_function(
                f"() => document.documentElement.getAttribute('data-map-site') === '{pairs[1]['id']}'",
                timeout=15_000,
            )
            assert errors == []
            assert requests and all(urlsplit(u).netloc == origin or u.startswith("data:") for u in requests), [
                u for u in requests if urlsplit(u).netloc != origin
            ]
        finally:
            context.close()
