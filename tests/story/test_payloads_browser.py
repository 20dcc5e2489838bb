"""Hostile article HTML in headless Chromium: no payload runs, nothing loads from another origin, the page works.

The story is opened from disk (file://) and from a static HTTP server on 127.0.0.1; requests to other hosts are
recorded and aborted (tests never go online).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from amberwatch.errors import AmberwatchWarning
from tests.story.conftest import StoryFixture, static_server, write_article

pytestmark = pytest.mark.browser

PAYLOADS = """
<script>window.pwned = 'script';</script>

<p>Image <img src="missing.png" onerror="window.pwned = 'onerror'"> and <svg onload="window.pwned = 'svg'"></svg>.</p>

<iframe src="javascript:parent.pwned = 'iframe'"></iframe>

<object data="//other.host/object.swf"></object>
<embed src="//other.host/embed.swf">

<p><a class="payload" href="javascript:window.pwned = 'link'">PAYLOAD js link</a>
<a class="payload" href="JaVa&#x09;ScRiPt:window.pwned = 'encoded link'">PAYLOAD encoded js link</a>
<a class="payload" href="data:text/html,&lt;script&gt;alert(1)&lt;/script&gt;">PAYLOAD data link</a>
<a class="payload" href="//other.host/page">PAYLOAD protocol-relative link</a>
<a class="payload" href="&#47;&#47;other.host/encoded">PAYLOAD encoded protocol-relative link</a>
<img src="//other.host/pixel.png" alt="pixel">
<img src="data:image/svg+xml,&lt;svg onload='window.pwned=1'/&gt;" alt="data image"></p>

<p style="background-image: url(&#47;&#47;other.host/style.png)">Styled paragraph.</p>
<p style="background-image: url(&#x2F;&#x2F;other.host/hex.png)">Hex-styled paragraph.</p>

<form action="//other.host/form"><button class="payload">PAYLOAD form</button></form>

<base href="//other.host/">

Markdown links: [PAYLOAD md link](javascript:window.pwned='md'), ![md image](//other.host/md.png),
[notes](notes.html#part-2) and [write to us](mailto:desk@example.org).
"""

CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation',
    e => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));
"""


@pytest.fixture(scope="module")
def hostile_story(story_data: StoryFixture, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A story whose article body holds every payload of issue 26: its built folder."""
    folder = tmp_path_factory.mktemp("hostile-story")
    article = write_article(folder, list(story_data.cached_ids[:4]))
    article.write_text(article.read_text("utf-8").replace("The map at the end", PAYLOADS + "\nThe map at the end"))
    from amberwatch.story.builder import build_story

    with pytest.warns(AmberwatchWarning, match="external address"):
        build_story(article, story_data.db, folder / "site")
    return folder / "site"


@pytest.fixture(scope="module")
def static_host(hostile_story: Path) -> Iterator[str]:
    """The hostile story served by a plain static HTTP server on 127.0.0.1: its index URL."""
    with static_server(hostile_story) as url:
        yield url


def _same_origin(url: str, page_url: str) -> bool:
    """True for the page's own origin (file:// without a host counts as the folder) and data: images."""
    u, p = urlsplit(url), urlsplit(page_url)
    return u.scheme == "data" or (u.scheme == p.scheme and u.netloc == p.netloc)


@pytest.mark.parametrize("where", ["file", "http"])
def test_no_payload_runs_and_nothing_leaves_the_origin(
    browser, hostile_story: Path, static_host: str, story_data: StoryFixture, where: str
) -> None:
    url = (hostile_story / "index.html").as_uri() if where == "file" else static_host
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    requests: list[str] = []
    context.on("request", lambda req: requests.append(req.url))
    # Anything for another host is aborted (recorded above): tests never go online.
    context.route(lambda u: not _same_origin(u, url), lambda route: route.abort())
    context.add_init_script(CSP_VIOLATIONS)
    page = context.new_page()
    errors: list[str] = []
    dialogs: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        page.goto(url)
        page.wait_for_function("() => window.amberStory && window.amberStory.map")
        page.evaluate(
            "() => [...document.querySelectorAll('.story-body a, .story-body button')]"
            ".filter(a => a.textContent.includes('PAYLOAD')).forEach(a => a.click())"
        )
        page.evaluate("document.getElementById('story-map').scrollIntoView({block: 'center'})")
        page.wait_for_timeout(500)
        assert page.url == url  # no link or form took the page away
        assert page.evaluate("() => typeof window.pwned") == "undefined"
        assert dialogs == []
        assert [u for u in requests if not _same_origin(u, url)] == []
        # The page works under its CSP: nothing of its own was blocked, fragments and map are there.
        assert page.evaluate("() => window.__cspViolations") == []
        assert errors == []
        assert page.locator(".frag").count() == 4
        target = story_data.cached_ids[1]
        page.click(f'.frag[data-site="{target}"] .frag-btn')
        page.wait_for_function(
            f"() => document.documentElement.getAttribute('data-map-site') === '{target}'", timeout=15_000
        )
        assert page.locator(".leaflet-tile-loaded").count() > 0
        # Safe links keep working.
        hrefs = page.evaluate("() => [...document.querySelectorAll('.story-body a[href]')].map(a => a.href)")
        assert hrefs == [re.sub(r"index\.html$", "notes.html#part-2", url), "mailto:desk@example.org"]
    finally:
        context.close()


def test_csp_blocks_what_a_sanitiser_would_miss(browser, hostile_story: Path, tmp_path: Path) -> None:
    """Defence in depth: an inline script and an outside image written into the page after the build stay inert."""
    page_file = tmp_path / "index.html"
    text = (hostile_story / "index.html").read_text("utf-8")
    text = text.replace(
        "</main>",
        '<script>window.pwned = \'inline\'</script><img src="http://other.host/x.png" onerror="window.pwned=2"></main>',
    )
    for sub in ("assets", "fragments", "tiles", "data.js"):
        (tmp_path / sub).symlink_to(hostile_story / sub)
    page_file.write_text(text, "utf-8")
    context = browser.new_context()
    routed: list[str] = []  # requests that reached the network (a CSP-blocked one is reported but never sent)
    context.route(re.compile(r"^https?://"), lambda route: (routed.append(route.request.url), route.abort()))
    context.add_init_script(CSP_VIOLATIONS)
    page = context.new_page()
    try:
        page.goto(page_file.as_uri())
        page.wait_for_function("() => window.amberStory && window.amberStory.map")
        page.wait_for_timeout(300)
        assert page.evaluate("() => typeof window.pwned") == "undefined"
        assert routed == []
        violations = page.evaluate("() => window.__cspViolations")
        assert "img-src http://other.host/x.png" in violations
        assert any(v.startswith("script-src") for v in violations)
    finally:
        context.close()
