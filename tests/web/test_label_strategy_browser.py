"""The /label strategy picker in headless Chromium on a phone (390x844): it fills the queue and says what is in use."""

from __future__ import annotations

import pytest

from amberwatch.db import connect
from amberwatch.web.app import create_app
from tests.fixtures.browser import artifacts_dir
from tests.web.test_browser import console_errors, offline
from tests.web.test_responsive import NO_HORIZONTAL_OVERFLOW, PHONE, assert_inside_viewport

pytestmark = pytest.mark.browser


@pytest.fixture
def wide_live(wide_project):
    from tests.web.conftest import LiveServer

    with LiveServer(create_app(wide_project.db_path, wide_project.cache_path)) as server:
        yield server


def queued(project, source: str) -> int:
    conn = connect(project.db_path)
    n = conn.execute("SELECT COUNT(*) FROM web_label_queue WHERE source = ?", (source,)).fetchone()[0]
    conn.close()
    return int(n)


def test_the_strategy_picker_fills_the_queue_and_names_the_strategy_on_a_phone(browser, wide_live, wide_project):
    context = browser.new_context(viewport=PHONE, device_scale_factor=1, has_touch=True, is_mobile=True)
    page = context.new_page()
    try:
        outside = offline(page, wide_live.url)
        errors = console_errors(page)
        page.goto(wide_live.url + "/label")
        page.locator("#token").fill(wide_project.reviewer_token)
        page.locator("#token").press("Enter")
        page.wait_for_function("() => document.body.dataset.chip")
        assert page.locator("#strategy-in-use").inner_text().startswith("In use: the most uncertain chips")
        options = page.locator("#strategy option").all_inner_texts()
        assert options[1:] == [
            "Where the model is unsure (recommended)",
            "Like confirmed sites",
            "Spread over the area",
            "Random",
            "A mix",
        ]
        assert_inside_viewport(page.locator("#strategy"), "strategy picker")

        page.locator("#strategy").select_option("spread")
        page.wait_for_url("**/label?strategy=spread")
        page.wait_for_function("() => (document.body.dataset.chip || '').startsWith('t')")
        assert page.locator("#strategy-in-use").inner_text() == "Strategy in use: Spread over the area."
        assert page.locator("#strategy").input_value() == "spread" and page.locator("#mode-row").is_hidden()
        info = page.locator("#chip-info").inner_text()
        assert info.startswith("Whole tile") and "picked by 'Spread over the area'" in info
        assert queued(wide_project, "suggest-spread") == 30
        page.wait_for_function("() => document.getElementById('chip').naturalWidth > 0")
        assert page.evaluate(NO_HORIZONTAL_OVERFLOW)
        page.screenshot(path=str(artifacts_dir() / "web_label_strategy_phone.png"))
        first = page.evaluate("document.body.dataset.chip")
        page.locator("#btn-n").click()
        page.wait_for_function("(k) => document.body.dataset.chip !== k", arg=first)
        assert "not mining, added to the examples" in page.locator("#history li").first.inner_text()

        page.locator("#strategy").select_option("similar")
        page.wait_for_url("**/label?strategy=similar")
        page.locator("#mode-note").wait_for()
        assert "no confirmed site" in page.locator("#mode-note").inner_text()
        assert page.locator("#strategy-in-use").inner_text() == "Strategy in use: Like confirmed sites."
        page.wait_for_function("() => (document.body.dataset.chip || '').startsWith('t')")
        assert page.evaluate("document.body.dataset.chip") != first  # a labelled tile is not picked again

        page.locator("#strategy").select_option("")
        page.wait_for_url("**/label")
        page.wait_for_function("() => document.body.dataset.chip")
        assert page.locator("#mode-row").is_visible()
        assert outside == [] and errors == []
    finally:
        context.close()
