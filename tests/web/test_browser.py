"""The pages in headless Chromium against a live server.

Map -> flag -> review -> example store; labelling by keyboard; 10,000 detections.
"""

from __future__ import annotations

import pytest

from amberwatch.db import connect
from amberwatch.labels.store import ExampleStore
from amberwatch.web.app import create_app
from tests.fixtures.browser import artifacts_dir
from tests.web.conftest import LiveServer, build_project

pytestmark = pytest.mark.browser

XSS = '<img src=x onerror="window.pwned=1">'


def offline(page, base_url: str) -> list[str]:
    """Abort (and record) every request that does not go to the app: the pages must work offline."""
    outside: list[str] = []

    def handle(route):
        if route.request.url.startswith(base_url) or route.request.url.startswith("data:"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", handle)
    return outside


def console_errors(page) -> list[str]:
    """Console errors, uncaught exceptions and failed responses (HTTP >= 400, e.g. tiles outside the cache)."""
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    def on_console(msg) -> None:
        if msg.type == "error":
            errors.append(f"{msg.text} ({(msg.location or {}).get('url')})")

    def on_response(response) -> None:
        if response.status >= 400:
            errors.append(f"HTTP {response.status} {response.url}")

    page.on("console", on_console)
    page.on("response", on_response)
    return errors


def wait_ready(page) -> None:
    page.wait_for_function("() => window.amberwatch && window.amberwatch.ready", timeout=60_000)
    assert page.locator("#search-msg").inner_text() == ""


def click_detection(page, detection_id: int) -> None:
    """Click the map where a detection is drawn."""
    pt = page.evaluate(
        """(id) => { const m = window.amberwatch.map;
             const f = [...document.querySelectorAll('#site-list button')].find(b => b.dataset.id == String(id));
             return fetch('/api/detections/' + id).then(r => r.json()).then(g => {
               const p = m.latLngToContainerPoint([g.properties.lat, g.properties.lon]);
               const r = document.getElementById('map').getBoundingClientRect();
               return {x: r.left + p.x, y: r.top + p.y}; }); }""",
        detection_id,
    )
    page.mouse.click(pt["x"], pt["y"])


def test_flag_review_accept_flow(page, live, project):
    outside = offline(page, live.url)
    errors = console_errors(page)
    page.goto(live.url + "/")
    wait_ready(page)
    assert page.locator("#t-sites").inner_text() == "5"
    assert page.locator("#site-list li").count() == 5
    page.wait_for_function("() => document.querySelectorAll('.leaflet-tile-loaded').length >= 4")
    page.screenshot(path=str(artifacts_dir() / "web_map.png"))
    page.locator("#f-prob").fill("0.8")
    page.locator("#f-prob").dispatch_event("change")
    assert page.locator("#t-sites").inner_text() == "2" and page.locator("#site-list li").count() == 2
    page.locator("#f-prob").fill("0")
    page.locator("#f-prob").dispatch_event("change")
    page.locator("#f-to").fill("2017-12-31")
    page.locator("#f-to").dispatch_event("change")
    assert page.locator("#t-sites").inner_text() == "0"
    page.locator("#f-to").fill("")
    page.locator("#f-to").dispatch_event("change")
    page.locator("#basemap").select_option("plain")
    assert page.locator(".leaflet-tile").count() == 0
    page.locator("#basemap").select_option("imagery")
    page.wait_for_function("() => document.querySelectorAll('.leaflet-tile-loaded').length >= 4")
    wait_ready(page)
    assert page.locator("#t-sites").inner_text() == "5"

    did = project.detection_ids[1]
    click_detection(page, did)
    popup = page.locator(f".leaflet-popup .popup[data-id='{did}']")
    popup.wait_for()
    page.wait_for_function("() => document.querySelector('.popup img.thumb').naturalWidth > 0")
    assert "ha" in popup.inner_text() and "51.32" in popup.inner_text() and "2018-05-12" in popup.inner_text()
    assert popup.locator("input.share").input_value().endswith(f"#d={did}")
    popup.locator("summary").click()
    popup.locator("select[name=category]").select_option("quarry")
    popup.locator("textarea[name=comment]").fill(XSS)
    popup.locator("button.not-mining").click()
    page.wait_for_function("() => document.querySelector('.popup .msg').textContent.startsWith('Thanks — sent')")
    assert "awaiting review" in popup.locator(".review-line").inner_text()
    page.screenshot(path=str(artifacts_dir() / "web_popup_flagged.png"))

    page.goto(live.url + "/review")
    page.locator("#token").fill(project.reviewer_token)
    page.locator("#token-form button").click()
    card = page.locator(".card").first
    card.wait_for()
    assert card.locator(".comment").inner_text() == XSS  # shown as text, never as markup
    assert card.locator(".comment img").count() == 0
    page.wait_for_function("() => document.querySelector('.card img').naturalWidth > 0")
    page.screenshot(path=str(artifacts_dir() / "web_review_queue.png"))
    card.locator("button.accept").click()
    page.wait_for_function("() => document.querySelector('.card').dataset.status === 'accepted'")
    assert page.evaluate("sessionStorage.getItem('amberwatch.reviewerToken')") == project.reviewer_token

    examples = ExampleStore(connect(project.db_path)).examples()
    assert [(e.label, e.category, e.source, e.added_by) for e in examples] == [
        ("not_mining", "quarry", "review", "olena")
    ]

    page.goto(f"{live.url}/#d={did}")  # the share link reopens the site
    page.locator(f".leaflet-popup .popup[data-id='{did}']").wait_for()
    assert page.locator(".popup .review-line").inner_text() == "Reviewed: not mining"
    wait_ready(page)
    page.wait_for_function("() => document.querySelector('.popup img.thumb').naturalWidth > 0")
    page.wait_for_function("() => document.querySelectorAll('.leaflet-tile-loaded').length >= 4")
    page.wait_for_timeout(400)  # popup fade-in
    page.screenshot(path=str(artifacts_dir() / "web_shared_reviewed.png"))

    page.locator("#search").fill("51.32, 26.90")
    page.locator("#search-form button").click()
    page.wait_for_function("() => Math.abs(window.amberwatch.map.getCenter().lat - 51.32) < 0.001", timeout=10_000)
    assert page.evaluate("window.pwned") is None
    assert outside == [] and errors == []


def test_label_three_chips_with_keyboard(page, live, project):
    outside = offline(page, live.url)
    page.goto(live.url + "/label")
    page.locator("#token").fill(project.reviewer_token)
    page.locator("#token").press("Enter")
    page.wait_for_function("() => document.body.dataset.chip")
    page.wait_for_function("() => document.getElementById('chip').naturalWidth > 0")
    page.screenshot(path=str(artifacts_dir() / "web_label.png"))
    assert not page.locator("#btn-i").is_visible()  # "no imagery" is for area sample units only
    seen = []
    for key in ("y", "n", "y"):
        seen.append(page.evaluate("document.body.dataset.chip"))
        page.keyboard.press(key)
        page.wait_for_function("(k) => document.body.dataset.chip !== k", arg=seen[-1])
    page.wait_for_function("() => document.getElementById('progress').textContent.startsWith('3 labelled')")
    page.keyboard.press("s")
    page.wait_for_function("(k) => document.body.dataset.chip !== k", arg=page.evaluate("document.body.dataset.chip"))
    page.keyboard.press("u")  # undo the skip ...
    page.keyboard.press("u")  # ... and the third label
    page.wait_for_function("(k) => document.body.dataset.chip === k", arg=seen[2])
    assert page.locator("#progress").inner_text().startswith("2 labelled")
    store = ExampleStore(connect(project.db_path))
    labelled = store.examples(status=None)
    assert [(e.label, e.source, e.status) for e in labelled] == [
        ("mining", "label-page", "active"),
        ("not_mining", "label-page", "active"),
        ("mining", "label-page", "excluded"),
    ]
    assert len(set(seen)) == 3 and outside == []


@pytest.mark.slow
def test_map_with_10000_detections(page, tmp_path):
    project = build_project(tmp_path, extra_detections=10_000 - 5)
    with LiveServer(create_app(project.db_path, project.cache_path)) as live:
        outside = offline(page, live.url)
        page.goto(live.url + "/")
        wait_ready(page)
        load_ms = page.evaluate("window.amberwatch.loadMs")
        fit_zoom = page.evaluate("window.amberwatch.map.getZoom()")
        assert page.evaluate("window.amberwatch.count") == 10_000
        assert page.locator("#t-sites").inner_text() == "10,000"
        page.screenshot(path=str(artifacts_dir() / "web_map_10000.png"))
        pan = """async () => {
            const m = window.amberwatch.map; let frames = 0, running = true;
            const tick = () => { frames++; if (running) requestAnimationFrame(tick); };
            requestAnimationFrame(tick);
            const t0 = performance.now();
            for (const [dx, dy] of [[300, 0], [0, 200], [-300, 0], [0, -200], [250, 150], [-250, -150]]) {
                m.panBy([dx, dy], {animate: true, duration: 0.4});
                await new Promise(r => setTimeout(r, 450));
            }
            running = false;
            return frames / ((performance.now() - t0) / 1000);
        }"""
        fps_clusters = page.evaluate(pan)
        page.evaluate("window.amberwatch.map.setView([51.32, 26.90], 15, {animate: false})")
        page.wait_for_timeout(300)
        fps_polygons = page.evaluate(pan)
        page.screenshot(path=str(artifacts_dir() / "web_map_10000_z15.png"))
        print(
            f"\n10,000 detections: map ready {load_ms} ms after navigation; "
            f"pan {fps_clusters:.0f} fps with clusters (zoom {fit_zoom}), "
            f"{fps_polygons:.0f} fps with polygons (zoom 15)"
        )
        assert outside == []
        assert load_ms < 15_000
        assert fps_clusters >= 10 and fps_polygons >= 10


def test_label_area_sample_units(page, live, project):
    from amberwatch.results.sampling import draw_sample, sample_units

    conn = connect(project.db_path)
    sample = draw_sample(conn, project.scan_id, 4, allocation="equal", seed=2)
    outside = offline(page, live.url)
    page.goto(f"{live.url}/label?sample={sample.sample_id}")
    page.locator("#token").fill(project.reviewer_token)
    page.locator("#token").press("Enter")
    page.wait_for_function("() => document.body.dataset.chip && document.getElementById('chip').naturalWidth > 0")
    assert "blind review" in page.locator("#chip-info").inner_text()
    page.screenshot(path=str(artifacts_dir() / "web_label_sample.png"))
    key = page.evaluate("document.body.dataset.chip")
    page.keyboard.press("n")
    page.wait_for_function("(k) => document.body.dataset.chip !== k", arg=key)
    assert f"in area sample #{sample.sample_id}" in page.locator("#progress").inner_text()
    assert page.locator("#btn-i").is_visible()  # "no imagery" is offered for sample units
    second = page.evaluate("document.body.dataset.chip")
    page.keyboard.press("i")
    page.wait_for_function("(k) => document.body.dataset.chip !== k", arg=second)
    page.wait_for_function("() => document.getElementById('history').textContent.includes('another unit drawn')")
    refs = {f"u{sample.sample_id}/{u['unit_id']}": u["reference_class"] for u in sample_units(conn, sample.sample_id)}
    assert refs[key] == "not_mining" and refs[second] == "no_imagery" and len(refs) == 5 and outside == []


def test_map_credits_the_imagery_without_local_paths_and_offers_every_category(page, tmp_path):
    """Issue 15 (11, 12): the attribution and layer list show a name and a credit, never the scan's local paths."""
    import json

    from amberwatch.labels.store import CATEGORIES

    project = build_project(tmp_path)
    conn = connect(project.db_path)
    params = {"cache_path": str(project.cache_path), "imagery_credit": "Drone survey © Example NGO 2018"}
    conn.execute(
        "UPDATE scans SET name = ?, imagery = ?, params_json = ? WHERE id = ?",
        (str(tmp_path / "aois" / "klesiv.geojson"), str(tmp_path / "tiles"), json.dumps(params), project.scan_id),
    )
    with LiveServer(create_app(project.db_path, project.cache_path)) as live:
        outside = offline(page, live.url)
        page.goto(live.url + "/")
        wait_ready(page)
        page.wait_for_function("() => document.querySelectorAll('.leaflet-tile-loaded').length >= 4")
        credit = page.locator(".leaflet-control-attribution").inner_text()
        layers = page.locator("#scan-select").inner_text()
        assert "Drone survey © Example NGO 2018" in credit and "Around Klesiv" in layers
        for text in (credit, layers, page.content()):
            assert str(tmp_path) not in text and ".geojson" not in text
        click_detection(page, project.detection_ids[1])
        page.locator(".leaflet-popup .popup select[name=category]").wait_for(state="attached")
        options = page.locator(".leaflet-popup .popup select[name=category] option").evaluate_all(
            "(os) => os.map((o) => o.value)"
        )
        assert options == list(CATEGORIES) and outside == []
