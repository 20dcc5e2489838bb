"""The HTML pages: map, reviewer queue and labelling page (static HTML; all data comes from the JSON API)."""

from __future__ import annotations

import html
import re
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from amberwatch.labels.store import CATEGORIES

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


def render_page(name: str) -> str:
    """A page template's HTML with its partials included (pages share the reviewer sign-in header)."""
    text = _INCLUDE.sub(_expand, (TEMPLATES_DIR / name).read_text(encoding="utf-8"))
    for key, value in PAGE_VALUES.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def _page(name: str) -> HTMLResponse:
    return HTMLResponse(render_page(name), headers={"cache-control": "no-cache"})


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
def map_page() -> HTMLResponse:
    """The interactive map."""
    return _page("map.html")


@router.api_route("/review", methods=["GET", "HEAD"], include_in_schema=False)
def review_page() -> HTMLResponse:
    """The reviewer queue."""
    return _page("review.html")


@router.api_route("/label", methods=["GET", "HEAD"], include_in_schema=False)
def label_page() -> HTMLResponse:
    """The labelling page."""
    return _page("label.html")


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> Response:
    """No icon (204), so browsers don't log a 404 on every page."""
    return Response(status_code=204)
