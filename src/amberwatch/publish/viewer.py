"""The static edition's viewer: the live map's own page and scripts (``web/templates/map.html``, ``web/static``) in
their static mode, with Leaflet and its marker-cluster plugin copied beside them.

``index.html`` is the map page with ``data-edition="config.json"`` on its body: ``map.js`` then reads the published
files (config.json, sites*.geojson, places.geojson, the PMTiles archives through ``assets/pmtiles-layer.js``)
instead of the API, and hides what only the live app has. The page's files are read from the web package's folder
(not imported: ``web`` is a peer of ``publish``).
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

from amberwatch.errors import AmberwatchError
from amberwatch.imagery.leaflet import copy_leaflet, copy_markercluster
from amberwatch.labels.store import CATEGORIES

WEB_DIR = Path(__file__).resolve().parents[1] / "web"
PAGE_FILES = ("common.js", "timeline.js", "map.js", "app.css", "favicon.svg")
EDITION_MARK = 'data-edition=""'
FIRST_SCRIPT = '<script src="static/common.js"></script>'
PMTILES_SCRIPTS = '<script src="assets/pmtiles.js"></script>\n<script src="assets/pmtiles-layer.js"></script>\n'


class ViewerPageError(AmberwatchError):
    """The live map's page no longer has a mark the static edition's page is made from."""

    http_status = 500


def _replace_once(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise ViewerPageError(f"web/templates/map.html: expected {old!r} once, found it {text.count(old)} times")
    return text.replace(old, new)


def viewer_page(title: str, basemap: dict | None) -> str:
    """index.html: the map page in static mode (config.json), with relative paths, the edition's title, basemap and
    PMTiles scripts."""
    text = (WEB_DIR / "templates" / "map.html").read_text("utf-8")
    for folder in ("vendor", "static"):  # the server's absolute paths, relative in a folder a host serves anywhere
        text = text.replace(f'="/{folder}/', f'="{folder}/')
    text = _replace_once(text, "{{categories}}", html.escape(" ".join(CATEGORIES)))
    text = _replace_once(text, "{{basemap}}", html.escape(json.dumps(basemap), quote=True) if basemap else "")
    text = _replace_once(text, EDITION_MARK, 'data-edition="config.json"')
    text = _replace_once(text, FIRST_SCRIPT, PMTILES_SCRIPTS + FIRST_SCRIPT)
    start, end = text.index("<title>") + len("<title>"), text.index("</title>")
    return text[:start] + html.escape(title) + text[end:]


def write_viewer(out: Path, title: str, basemap: dict | None) -> None:
    """The viewer into ``out``: index.html, the page's scripts and CSS under static/, Leaflet under vendor/."""
    (out / "static").mkdir(parents=True, exist_ok=True)
    for name in PAGE_FILES:
        shutil.copyfile(WEB_DIR / "static" / name, out / "static" / name)
    copy_leaflet(out / "vendor" / "leaflet")
    copy_markercluster(out / "vendor" / "markercluster")
    (out / "index.html").write_text(viewer_page(title, basemap), "utf-8")
