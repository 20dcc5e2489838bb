"""The static edition's imagery in headless Chromium: a page on a plain static server (Range honoured) draws tiles
from imagery.pmtiles through assets/pmtiles-layer.js, at the imagery's zoom and at the lowest overview."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from amberwatch.publish.edition import Edition
from tests.publish.rangeserver import range_server

pytestmark = pytest.mark.browser

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>PMTiles check</title>
<link rel="stylesheet" href="leaflet/leaflet.css"></head>
<body style="margin:0"><div id="map" style="width:512px;height:512px"></div>
<script src="leaflet/leaflet.js"></script>
<script src="assets/pmtiles.js"></script>
<script src="assets/pmtiles-layer.js"></script>
<script>
function drawn() {
  return Array.from(document.querySelectorAll('.leaflet-tile-container img'))
    .filter(img => img.complete && img.naturalWidth > 0).map(img => img.naturalWidth);
}
Promise.all([fetch('config.json').then(r => r.json()), fetch('sites.geojson').then(r => r.json())])
  .then(([config, sites]) => {
    const layer = config.layers.find(l => l.date === config.date);
    const site = sites.features[0].properties;
    const map = L.map('map', {fadeAnimation: false, zoomAnimation: false})
      .setView([site.lat, site.lon], layer.max_zoom);
    const imagery = L.pmtilesLayer(layer.imagery, {
      minNativeZoom: layer.min_zoom, maxNativeZoom: layer.max_zoom, attribution: layer.credit});
    window.views = [];
    imagery.once('load', () => {
      window.views.push({zoom: map.getZoom(), widths: drawn()});
      const [w, s, e, n] = config.bounds;
      imagery.once('load', () => window.views.push({zoom: map.getZoom(), widths: drawn()}));
      map.setView([(s + n) / 2, (w + e) / 2], layer.min_zoom);
    });
    imagery.addTo(map);
  });
</script></body></html>
"""


def _site(edition: Edition, tmp_path: Path) -> Path:
    """The published folder beside the check page and Leaflet (from xstatic, as the story copies it)."""
    from xstatic.pkg import leaflet

    folder = tmp_path / "served"
    shutil.copytree(edition.out_dir, folder)
    shutil.copytree(leaflet.BASE_DIR, folder / "leaflet")
    (folder / "check.html").write_text(PAGE, "utf-8")
    return folder


def test_tiles_load_from_the_archive_by_range_requests(browser, edition: Edition, tmp_path: Path) -> None:
    """Tiles are drawn (natural width > 0) at the base zoom and the lowest overview zoom; every request stays on
    the static server; the archive is read by Range requests only (206 answers)."""
    config = json.loads((edition.out_dir / "config.json").read_text("utf-8"))
    layer = config["layers"][0]
    with range_server(_site(edition, tmp_path)) as (base, log):
        context = browser.new_context(viewport={"width": 800, "height": 600})
        page = context.new_page()
        requests, errors = [], []
        page.on("request", lambda r: requests.append((r.url, r.headers.get("range"))))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(base + "check.html")
        page.wait_for_function("window.views && window.views.length === 2", timeout=20_000)
        views = page.evaluate("window.views")
        context.close()
    assert not errors, errors
    assert [v["zoom"] for v in views] == [layer["max_zoom"], layer["min_zoom"]]
    assert all(v["widths"] and set(v["widths"]) == {256} for v in views), views
    elsewhere = [url for url, _ in requests if not url.removeprefix("blob:").startswith(base)]
    assert not elsewhere, elsewhere  # tiles are drawn from blob: URLs of the page's own origin
    archive = [(url, rng) for url, rng in requests if url.endswith("/imagery.pmtiles")]
    assert len(archive) >= 2 and all(rng and rng.startswith("bytes=") for _, rng in archive)
    served = [entry for entry in log.entries if entry[0].endswith("/imagery.pmtiles")]
    assert served and all(status == 206 for _, _, status, _ in served)
    assert sum(n for *_, n in served) < (edition.out_dir / "imagery.pmtiles").stat().st_size
