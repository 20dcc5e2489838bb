"""The HTML pages: map, reviewer queue and labelling page (static HTML; all data comes from the JSON API)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "templates"

router = APIRouter()


def _page(name: str) -> HTMLResponse:
    return HTMLResponse((TEMPLATES_DIR / name).read_text(encoding="utf-8"), headers={"cache-control": "no-cache"})


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
