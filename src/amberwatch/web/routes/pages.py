"""The HTML pages: map, reviewer queue and labelling page (static HTML; all data comes from the JSON API)."""

from __future__ import annotations

import html
import re
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

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


def render_page(name: str) -> str:
    """A page template's HTML with its partials included (pages share the reviewer sign-in header)."""
    return _INCLUDE.sub(_expand, (TEMPLATES_DIR / name).read_text(encoding="utf-8"))


def _page(name: str) -> HTMLResponse:
    return HTMLResponse(render_page(name), headers={"cache-control": "no-cache"})


@router.get("/", include_in_schema=False)
def map_page() -> HTMLResponse:
    """The interactive map."""
    return _page("map.html")


@router.get("/review", include_in_schema=False)
def review_page() -> HTMLResponse:
    """The reviewer queue."""
    return _page("review.html")


@router.get("/label", include_in_schema=False)
def label_page() -> HTMLResponse:
    """The labelling page."""
    return _page("label.html")


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> Response:
    """No icon (204), so browsers don't log a 404 on every page."""
    return Response(status_code=204)
