"""The HTML pages: map, reviewer queue and labelling page (static HTML; all data comes from the JSON API)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from amberwatch.labels.store import CATEGORIES
from amberwatch.web.labelling import STRATEGY_WORDS

TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "templates"

router = APIRouter()


# <!--include PARTIAL key="value" ...-->: the partial's text with {{key}} replaced by the escaped value.
_INCLUDE = re.compile(r'<!--include (?P<name>[\w.-]+)(?P<args>(?: \w+="[^"]*")*)-->')
_ARG = re.compile(r'(\w+)="([^"]*)"')


def _expand(match: re.Match[str]) -> str:
    text = (TEMPLATES_DIR / match["name"]).read_text(encoding="utf-8")
    for key, value in _ARG.findall(match["args"]):
        text = text.replace("{{" + key + "}}", html.escape(value))
    return text.rstrip("\n")


# Values every page template may use: the one list of categories, for the map's correction form and the label page.
PAGE_VALUES = {
    "categories": html.escape(" ".join(CATEGORIES)),
    "category_options": "".join(f"<option>{html.escape(c)}</option>" for c in CATEGORIES),
}


def render_page(name: str, values: dict[str, str] | None = None) -> str:
    """A page template's HTML with its partials included (pages share the reviewer sign-in header).

    ``values``: more {{key}} values for this page, already escaped for HTML.
    """
    text = _INCLUDE.sub(_expand, (TEMPLATES_DIR / name).read_text(encoding="utf-8"))
    for key, value in {**PAGE_VALUES, **(values or {})}.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def _page(name: str, values: dict[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(render_page(name, values), headers={"cache-control": "no-cache"})


def basemap_value(basemap: dict | None) -> str:
    """The map page's ``data-basemap``: the basemap config as escaped JSON, or empty (offline, no basemap)."""
    if not basemap:
        return ""
    keys = ("name", "url", "subdomains", "max_zoom", "attribution")
    return html.escape(json.dumps({k: basemap[k] for k in keys}), quote=True)


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
def map_page(request: Request) -> HTMLResponse:
    """The interactive map (with the basemap ``serve --basemap`` chose, if any)."""
    return _page("map.html", {"basemap": basemap_value(getattr(request.app.state, "basemap", None))})


@router.api_route("/review", methods=["GET", "HEAD"], include_in_schema=False)
def review_page() -> HTMLResponse:
    """The reviewer queue."""
    return _page("review.html")


@router.api_route("/label", methods=["GET", "HEAD"], include_in_schema=False)
def label_page() -> HTMLResponse:
    """The labelling page (its strategy picker in the words of ``labelling.STRATEGY_WORDS``)."""
    options = "".join(f'<option value="{k}">{html.escape(w)}</option>' for k, w in STRATEGY_WORDS.items())
    return _page("label.html", {"strategy_options": options})


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> Response:
    """No icon (204), so browsers don't log a 404 on every page."""
    return Response(status_code=204)
