"""Issue 28 item 6 in headless Chromium at 390x844 and 1440x900: ``/label?sample=N`` on a change sample shows each
unit at both dates (side by side on a desktop, stacked on a phone, each captioned with its date), blind to the map,
takes an answer per date (Shift+Y/N/I for the earlier, y/n/i for the later; buttons on a phone) and the change
estimate moves with it. Only the app is reached, no console error, and axe finds nothing serious.
Screenshots of the two-date card go to artifacts/screenshots and /work/notes/screens/label-change-<size>.png.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from amberwatch.db import connect
from amberwatch.results.area_review import pending_units, record_reference
from amberwatch.results.sampling import sample_units
from amberwatch.web.app import create_app
from tests.fixtures.axe import SIZES, assert_no_serious_violations
from tests.web.conftest import LiveServer
from tests.web.test_browser import console_errors, offline
from tests.web.test_label_change import EARLIER, LATER, ChangeProject, _estimate, build_change_project, truth
from tests.web.test_label_page import assert_no_key_shown
from tests.web.test_map_dates_browser import screenshot
from tests.web.test_responsive import NO_HORIZONTAL_OVERFLOW, assert_inside_viewport

pytestmark = [pytest.mark.browser, pytest.mark.slow]

VIEWS_LOADED = """() => document.body.dataset.chip && [...document.querySelectorAll('#pair img')]
    .every((img) => img.complete && img.naturalWidth > 0)"""


@pytest.fixture(scope="module")
def change_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ChangeProject, LiveServer]]:
    """The change sample with every unit labelled (as seen) but two of the no-mining stratum: one per page size."""
    change = build_change_project(tmp_path_factory.mktemp("change"))
    conn = connect(change.project.db_path)
    units = pending_units(conn, change.sample_id, include_map_class=True)
    left = [u["unit_id"] for u in units if u["stratum"] == "no_mining"][:2]
    for u in units:
        if u["unit_id"] not in left:
            record_reference(conn, u["unit_id"], truth(u, LATER), "setup", reference_from=truth(u, EARLIER))
    conn.close()
    with LiveServer(create_app(change.project.db_path, change.project.cache_path)) as live:
        yield change, live


@pytest.fixture(params=sorted(SIZES))
def sized(request: pytest.FixtureRequest, browser, change_site) -> Iterator[tuple[object, str]]:
    """(page, size name) of a page that may only reach the live app and must log no error."""
    context = browser.new_context(**SIZES[request.param])
    page = context.new_page()
    outside, errors = offline(page, change_site[1].url), console_errors(page)
    try:
        yield page, request.param
        assert outside == [], f"requests outside the app: {outside}"
        assert errors == [], errors
    finally:
        context.close()


def _new_ha(change: ChangeProject) -> float:
    out = _estimate(change.project.db_path, change.sample_id)
    return next(c["area_ha"] for c in out["classes"] if c["name"] == "new")


def _check_pair_layout(page, size: str) -> None:
    figures = page.locator("#pair figure")
    boxes = [figures.nth(k).locator("img").bounding_box() for k in range(2)]
    for b in boxes:
        assert b["width"] >= 250, b
    if size == "phone":  # stacked, earlier on top
        assert boxes[1]["y"] >= boxes[0]["y"] + boxes[0]["height"]
    else:  # side by side, earlier on the left
        assert boxes[1]["x"] >= boxes[0]["x"] + boxes[0]["width"] and abs(boxes[1]["y"] - boxes[0]["y"]) < 2
    assert_inside_viewport(page.locator("#pair figure"), "date view")  # both dates and their answers in view
    if size == "phone":  # the later date's answers are not under the fixed skip / undo bar
        later, bar = page.locator("#pair figure").nth(1).bounding_box(), page.locator(".keys").bounding_box()
        assert later["y"] + later["height"] <= bar["y"] + 1, (later, bar)
    assert page.evaluate(NO_HORIZONTAL_OVERFLOW)
    assert page.locator("#chip-wrap").is_hidden() and page.locator("#pair .outline").nth(1).is_visible()


def test_a_change_unit_is_labelled_at_both_dates(sized, change_site):
    page, size = sized
    change, live = change_site
    before = _new_ha(change)
    page.goto(f"{live.url}/label?sample={change.sample_id}")
    page.locator("#token").fill(change.project.reviewer_token)
    page.locator("#token").press("Enter")
    page.wait_for_function(VIEWS_LOADED)
    captions = page.locator("#pair figcaption")
    assert captions.all_inner_texts() == [f"Earlier: imagery of {EARLIER}", f"Later: imagery of {LATER}"]
    _check_pair_layout(page, size)
    body = page.locator("body").inner_text()
    assert "blind review" in body and "no_mining" not in body and "P(mining)" not in body  # the map's class is hidden
    assert f"in change sample #{change.sample_id}" in page.locator("#progress").inner_text()
    assert_no_key_shown(page)
    key = page.evaluate("document.body.dataset.chip")
    earlier_no = page.locator("#pair button[data-at=earlier][data-label=not_mining]")
    if size == "phone":
        earlier_no.tap()
    else:
        page.keyboard.press("Shift+N")
    page.wait_for_function("(b) => b.getAttribute('aria-pressed') === 'true'", arg=earlier_no.element_handle())
    assert page.evaluate("document.body.dataset.chip") == key  # saved only once both dates are answered
    assert_no_serious_violations(page, f"two-date label card ({size})")
    screenshot(page, f"label-change-{size}")
    if size == "phone":
        page.locator("#pair button[data-at=later][data-label=mining]").tap()
    else:
        page.keyboard.press("y")
    page.wait_for_function("(k) => document.body.dataset.chip !== k", arg=key)
    assert f"not mining in {EARLIER}, mining in {LATER}" in page.locator("#history li").first.inner_text()
    unit = next(u for u in sample_units(connect(change.project.db_path), change.sample_id)
                if f"u{change.sample_id}/{u['unit_id']}" == key)  # fmt: skip
    assert (unit["reference_class_from"], unit["reference_class"], unit["reviewed_by"]) == (
        "not_mining", "mining", "olena"
    )  # fmt: skip
    assert _new_ha(change) > before  # a unit newly dug in the no-mining stratum raises the hectares dug
