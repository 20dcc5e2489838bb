"""The one sanitiser of article HTML: an explicit allow-list of tags, attributes and URL schemes (nh3).

Whatever raw HTML an article holds, the page gets only text markup, links (http, https, mailto or relative
within the folder) and images by relative path: no scripts, event handlers, frames, objects, forms, styles,
ids, ``javascript:``/``data:`` URLs or protocol-relative ``//host`` links (dropped, not rewritten to https:
the page is self-contained and shows outside addresses as text, see markup.py).
"""

from __future__ import annotations

import re

import nh3

ALLOWED_TAGS = {
    *("p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "code", "kbd", "samp"),
    *("em", "strong", "b", "i", "u", "s", "del", "ins", "mark", "small", "sub", "sup", "abbr", "cite", "q"),
    *("ul", "ol", "li", "dl", "dt", "dd", "table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption"),
    *("a", "img", "span", "div", "figure", "figcaption"),
}
# Tags removed with their content (everything else outside ALLOWED_TAGS keeps its text only).
DROPPED_WITH_CONTENT = {
    *("script", "style", "iframe", "frame", "object", "embed", "noscript", "template", "svg", "math", "textarea"),
}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "abbr": {"title"},
    "th": {"align", "colspan", "rowspan"},
    "td": {"align", "colspan", "rowspan"},
    "ol": {"start"},
    "div": {"data-amber-slot"},  # markup.py's placeholders for the fragment blocks
}
ALLOWED_CLASSES = {"span": {"ext-link", "ext-url"}}  # markup.py's external-address spans
URL_SCHEMES = {"http", "https", "mailto"}
URL_ATTRIBUTES = {"href", "src"}
IGNORED_IN_URLS_RE = re.compile(r"[\t\n\r]")  # browsers drop these anywhere in a URL
OTHER_HOST_RE = re.compile(r"^[\x00-\x20]*[/\\]{2}")  # '//host', '\\host', '/\host': another origin


def _filter_attribute(tag: str, attr: str, value: str) -> str | None:
    """Drop URLs that would reach another host without a scheme (protocol-relative, after browser clean-up)."""
    if attr in URL_ATTRIBUTES and OTHER_HOST_RE.match(IGNORED_IN_URLS_RE.sub("", value)):
        return None
    return value


def clean_article_html(html_text: str) -> str:
    """The article's rendered HTML with everything outside the allow-list removed."""
    return nh3.clean(
        html_text,
        tags=ALLOWED_TAGS,
        clean_content_tags=DROPPED_WITH_CONTENT,
        attributes=ALLOWED_ATTRIBUTES,
        attribute_filter=_filter_attribute,
        allowed_classes=ALLOWED_CLASSES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer",
        strip_comments=True,
    )
