"""The allow-list sanitiser of article HTML: payloads out, ordinary article markup kept."""

from __future__ import annotations

import pytest

from amberwatch.story.sanitize import clean_article_html

REL = ' rel="noopener noreferrer"'


@pytest.mark.parametrize(
    ("dirty", "clean"),
    [
        ("<script>window.pwned = 1</script>ok", "ok"),
        ('<img src="x.png" onerror="window.pwned = 1">', '<img src="x.png">'),
        ('<svg onload="window.pwned = 1"><script>x</script></svg>', ""),
        ('<iframe src="javascript:parent.pwned = 1"></iframe>', ""),
        ('<object data="//other.host/o.swf"></object><embed src="//other.host/e.swf">', ""),
        ('<a href="javascript:window.pwned = 1">x</a>', f"<a{REL}>x</a>"),
        ('<a href="JaVa&#x09;ScRiPt:alert(1)">x</a>', f"<a{REL}>x</a>"),
        ('<a href="data:text/html,x">x</a>', f"<a{REL}>x</a>"),
        ('<img src="data:image/png;base64,AAAA">', "<img>"),
        ('<a href="//other.host/x">x</a>', f"<a{REL}>x</a>"),
        ('<a href="&#47;&#47;other.host">x</a>', f"<a{REL}>x</a>"),
        ('<a href="/\\other.host">x</a>', f"<a{REL}>x</a>"),
        ('<img src="/&#x09;/other.host/a.png">', "<img>"),
        ('<p style="background:url(&#47;&#47;other.host/a.png)">s</p>', "<p>s</p>"),
        ('<base href="//other.host/"><link rel="stylesheet" href="//other.host/s.css">', ""),
        ('<meta http-equiv="refresh" content="0;url=//other.host">', ""),
        ('<form action="//other.host"><input name="q"><button>go</button></form>', "go"),
        ('<p id="AMBER_STORY" class="skip-link">x</p>', "<p>x</p>"),
    ],
)
def test_payloads_are_removed(dirty: str, clean: str) -> None:
    assert clean_article_html(dirty) == clean


def test_article_markup_is_kept() -> None:
    kept = (
        '<h2>Title</h2><p><em>a</em> <strong>b</strong> <code>c</code> <a href="notes.html#x" title="t"'
        f'{REL}>rel</a> <a href="mailto:desk@example.org"{REL}>mail</a> <a href="https://example.org/"{REL}>'
        'web</a></p><blockquote><p>q</p></blockquote><ul><li>i</li></ul><img src="pics/pit.jpg" alt="pit">'
        '<table><thead><tr><th align="center">h</th></tr></thead><tbody><tr><td align="right">1</td></tr></tbody>'
        '</table><div data-amber-slot="0"></div><span class="ext-link">x<span class="ext-url"> (a.org)</span></span>'
    )
    assert clean_article_html(kept) == kept
