"""Issue 14 (wanted 5): the label page shows each place with its surroundings at 1x-2x, in words, without keys.

API tests in-process; the page itself in headless Chromium on a phone (390x844) and a desktop (1440x900).
"""

from __future__ import annotations

import numpy as np
import pytest

from amberwatch.db import connect
from amberwatch.imagery.decode import decode_image
from amberwatch.labels.store import ExampleStore
from tests.fixtures.browser import artifacts_dir
from tests.web.test_browser import console_errors, offline
from tests.web.test_responsive import DESKTOP, NO_HORIZONTAL_OVERFLOW, PHONE, assert_inside_viewport


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_label_views_show_the_place_and_its_surroundings_at_native_resolution(client, project):
    h = auth(project.reviewer_token)
    items = client.get("/api/label/queue?limit=6", headers=h).json()["items"]
    assert {i["kind"] for i in items} >= {"cell"}
    for it in items:
        assert "Klesiv" in it["place"], it
        view = decode_image(client.get(it["chip_url"], headers=h).content)
        assert 256 <= view.shape[1] <= 520 and abs(view.shape[0] - view.shape[1]) <= 2
        left, top, right, bottom = it["outline"]
        assert 0 < left < right < 1 and 0 < top < bottom < 1
        assert abs((left + right) / 2 - 0.5) < 0.01 and abs((top + bottom) / 2 - 0.5) < 0.01  # centred
    cell = next(i for i in items if i["kind"] == "cell")
    view = decode_image(client.get(cell["chip_url"], headers=h).content)
    assert abs((cell["outline"][2] - cell["outline"][0]) * view.shape[1] - 32) < 1.5  # a 32 px cell at native size
    # The training example stays the cell's own chip: the view is for people only.
    out = client.post("/api/label", json={"key": cell["key"], "label": "mining"}, headers=h).json()
    ex = ExampleStore(connect(project.db_path)).get(out["example_id"])
    assert ex.width < 256 and abs(ex.width - ex.height) <= 2


def test_a_whole_tile_is_shown_with_a_ring_of_its_neighbours(client, project):
    h = auth(project.reviewer_token)
    z, x, y = project.tiles[4]  # the centre tile
    client.post("/api/label/queue", json={"scan_id": project.scan_id, "tiles": [f"{z}/{x}/{y}"]}, headers=h)
    item = client.get("/api/label/queue?mode=like&limit=1", headers=h).json()["items"][0]
    assert item["kind"] == "tile"
    view = decode_image(client.get(item["chip_url"], headers=h).content)
    assert view.shape[1] in (512, 513)  # the tile's 256 px and 128 px of its neighbours on each side
    assert np.allclose(item["outline"], [0.25, 0.25, 0.75, 0.75], atol=0.01)
    assert view.mean() > 20


def sign_in_after_a_stale_token(page, url: str, token: str) -> None:
    """Sign in with a revoked token first (its error shows), then with the right one (the error goes)."""
    page.goto(url)
    page.locator("#token").fill("not-a-token")
    page.locator("#token").press("Enter")
    page.wait_for_function("() => document.getElementById('token-msg').textContent.length > 0")
    page.locator("#token").fill(token)
    page.locator("#token").press("Enter")
    page.wait_for_function("() => !document.getElementById('token-form').offsetParent")
    assert page.locator("#token-msg").inner_text() == ""


CHIP_SCALE = """() => { const img = document.getElementById('chip');
    return {natural: img.naturalWidth, shown: img.getBoundingClientRect().width}; }"""


def assert_no_key_shown(page) -> None:
    """No item key (e.g. c1/17/75330/43694/3/5) in the text of the page."""
    keys = page.evaluate(
        """() => { const s = window.amberwatchLabel;
             return [s.current, ...s.queue, ...s.done.map((d) => d.item)].filter(Boolean).map((i) => i.key); }"""
    )
    text = page.locator("body").inner_text()
    assert keys and not [k for k in keys if k in text], [k for k in keys if k in text]


@pytest.mark.browser
@pytest.mark.parametrize("size", ["phone", "desktop"])
def test_label_page_shows_sharp_views_in_words(browser, live, project, size):
    context = browser.new_context(viewport=PHONE if size == "phone" else DESKTOP, device_scale_factor=1)
    page = context.new_page()
    try:
        outside = offline(page, live.url)
        errors = console_errors(page)
        sign_in_after_a_stale_token(page, live.url + "/label", project.reviewer_token)
        errors.clear()  # the stale token's 401 was the point
        page.wait_for_function("() => document.body.dataset.chip && document.getElementById('chip').naturalWidth > 0")
        page.wait_for_timeout(100)  # the width cap after the image's load event
        scale = page.evaluate(CHIP_SCALE)
        assert scale["natural"] >= 256 and scale["shown"] <= 2 * scale["natural"] + 0.5, scale
        assert_inside_viewport(page.locator("#chip"), "label chip")
        box, chip = page.locator("#outline").bounding_box(), page.locator("#chip").bounding_box()
        assert (
            page.locator("#outline").is_visible()
            and chip["x"] < box["x"] < box["x"] + box["width"] < chip["x"] + chip["width"]
        )
        info = page.locator("#chip-info").inner_text()
        assert "Klesiv" in info and "imagery of 2018-05-12" in info
        assert_no_key_shown(page)
        page.screenshot(path=str(artifacts_dir() / f"web_label_view_{size}.png"))
        first = page.evaluate("document.body.dataset.chip")
        page.keyboard.press("y")
        page.wait_for_function("(k) => document.body.dataset.chip !== k", arg=first)
        assert "mining, added to the examples" in page.locator("#history li").first.inner_text()
        assert_no_key_shown(page)
        assert page.evaluate(NO_HORIZONTAL_OVERFLOW)
        assert outside == [] and errors == []
    finally:
        context.close()


@pytest.mark.browser
def test_a_small_stored_example_is_shown_at_most_twice_its_size(page, live, project):
    store = ExampleStore(connect(project.db_path))
    store.add(np.random.default_rng(1).integers(0, 255, (60, 60, 3), dtype=np.uint8), "mining", source="import")
    page.set_viewport_size(DESKTOP)
    page.goto(live.url + "/label?examples=import")
    page.locator("#token").fill(project.reviewer_token)
    page.locator("#token").press("Enter")
    page.wait_for_function("() => document.body.dataset.chip && document.getElementById('chip').naturalWidth > 0")
    page.wait_for_timeout(100)
    scale = page.evaluate(CHIP_SCALE)
    assert scale["natural"] == 60 and scale["shown"] <= 120.5, scale
    assert page.locator("#outline").is_hidden()
