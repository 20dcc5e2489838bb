"""Fragments keep the evidence: a site at the imagery's edge gets a square centred on it, shrunk to the imagery
that exists, and a fragment cropped into a wide cell keeps the site's outline in view."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import mercantile
import numpy as np
import pytest

from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.mosaic import open_cached_source, render_bbox
from amberwatch.review.chips import nodata_mask
from amberwatch.story.builder import build_story
from amberwatch.story.nodata import Window, centred_window
from tests.story.conftest import PATCHES, SOURCE_ID, ZOOM, StoryFixture, _insert, _polygon, write_article

M_PER_DEG_LAT = 111_320.0


def _data(folder: Path) -> dict:
    text = (folder / "data.js").read_text("utf-8")
    return json.loads(text[len("window.AMBER_STORY = ") :].rstrip().rstrip(";"))


def _patch_box(i: int) -> mercantile.LngLatBbox:
    t0 = mercantile.tile(PATCHES[i][1], PATCHES[i][2], ZOOM)
    ul, lr = mercantile.bounds(t0.x, t0.y, ZOOM), mercantile.bounds(t0.x + 3, t0.y + 3, ZOOM)
    return mercantile.LngLatBbox(ul.west, lr.south, lr.east, ul.north)


def _strip(lon: float, lat: float, length_m: float, width_m: float) -> list[list[float]]:
    """An east-west pit field: a closed rectangle length_m by width_m centred on lon, lat."""
    dx = length_m / 2 / (M_PER_DEG_LAT * math.cos(math.radians(lat)))
    dy = width_m / 2 / M_PER_DEG_LAT
    corners = [(-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1)]
    return [[lon + sx * dx, lat + sy * dy] for sx, sy in corners]


@pytest.fixture(scope="module")
def edge_story(story_data: StoryFixture, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, int]:
    """A story of two sites at the edges of the real imagery: a small one 25 m inside the west edge of patch 2 and
    a 200 m pit field 30 m inside the north edge of patch 1. Its folder and the two detection ids."""
    folder = tmp_path_factory.mktemp("edge-story")
    db = folder / "edge.db"
    shutil.copyfile(story_data.db, db)
    shutil.copyfile(story_data.cache, folder / "edge-tiles.sqlite")
    from amberwatch.db import connect

    conn = connect(db)
    b2 = _patch_box(1)
    lat2 = (b2.south + b2.north) / 2
    lon2 = b2.west + 45 / (M_PER_DEG_LAT * math.cos(math.radians(lat2)))  # its 40 m outline ends 25 m from the edge
    small = _insert(conn, _polygon(lon2, lat2, 40, seed=5), lat2, lon2, 0.7, thumb=None)
    b1 = _patch_box(0)
    lon1, lat1 = (b1.west + b1.east) / 2, b1.north - 50 / M_PER_DEG_LAT  # its 40 m width ends 30 m from the edge
    strip = _insert(conn, _strip(lon1, lat1, 200, 40), lat1, lon1, 0.7, thumb=None)
    conn.close()
    build_story(write_article(folder, [strip, small]), db, folder / "site")
    return folder / "site", small, strip


def _in_image(site: list[list[float]], image: list[list[float]]) -> tuple[float, float, float, float]:
    """A site's bounds [[s, w], [n, e]] as shares of its image's bounds: left, top, right, bottom (Web Mercator)."""
    (s, w), (n, e) = site
    (si, wi), (ni, ei) = image
    x0, y1 = mercantile.xy(w, s)
    x1, y0 = mercantile.xy(e, n)
    left, bottom = mercantile.xy(wi, si)
    right, top = mercantile.xy(ei, ni)
    return (
        (x0 - left) / (right - left),
        (top - y0) / (top - bottom),
        (x1 - left) / (right - left),
        (top - y1) / (top - bottom),
    )


def test_edge_site_gets_a_centred_square_of_imagery(edge_story: tuple[Path, int, int], story_data) -> None:
    site, small, _ = edge_story
    frag = next(f for f in _data(site)["fragments"] if f["id"] == small)
    assert frag["bounds"] is not None  # cut from the imagery, not the thumbnail
    left, top, right, bottom = _in_image(frag["siteBounds"], frag["bounds"])
    assert (left + right) / 2 == pytest.approx(0.5, abs=0.02) and (top + bottom) / 2 == pytest.approx(0.5, abs=0.02)
    (s, w), (n, e) = frag["bounds"]
    width_m = mercantile.xy(e, s)[0] - mercantile.xy(w, s)[0]
    height_m = mercantile.xy(w, n)[1] - mercantile.xy(w, s)[1]
    assert width_m == pytest.approx(height_m, rel=0.03)  # square
    assert w >= _patch_box(1).west - 1e-5  # clamped to the imagery that exists (within a pixel)
    with TileCache(story_data.cache) as cache:
        source = open_cached_source(cache, SOURCE_ID)
        from amberwatch.imagery.types import LngLatBbox

        image = render_bbox(source, LngLatBbox(w, s, e, n), ZOOM, max_px=1024)
        source.close()
    assert nodata_mask(image.pixels).mean() <= 0.01  # no black band


def test_wide_cell_crops_around_the_outline(edge_story: tuple[Path, int, int]) -> None:
    site, _, strip = edge_story
    frag = next(f for f in _data(site)["fragments"] if f["id"] == strip)
    _, top, _, bottom = _in_image(frag["siteBounds"], frag["bounds"])
    assert (top + bottom) / 2 < 0.4  # the pit field sits high in its image (the imagery ends just north of it)
    layout = (site / "assets" / "layout.css").read_text("utf-8")
    rule = re.search(rf"#frag-{strip}\{{([^}}]*)\}}", layout).group(1)
    v = dict(kv.split(":") for kv in rule.split(";"))
    html = (site / "index.html").read_text("utf-8")
    w_px, h_px = map(int, re.search(rf'id="frag-{strip}".*?width="(\d+)" height="(\d+)"', html).groups())
    for prefix in ("d", "p"):
        cell = int(v[f"--{prefix}w"]) / int(v[f"--{prefix}h"])
        image = w_px / h_px
        assert cell > image * 1.2  # a wide cell: 'cover' crops the image's height
        shown = image / cell  # share of the image's height in view
        offset = float(v[f"--{prefix}oy"].rstrip("%")) / 100 * (1 - shown)
        assert offset <= top and bottom <= offset + shown, (prefix, offset, shown, top, bottom)


def test_centred_window_shrinks_to_the_imagery() -> None:
    mask = np.zeros((300, 400), dtype=bool)
    mask[:, :100] = True  # no imagery on the west
    site = Window(130, 140, 150, 160)  # 30 px from the edge
    win = centred_window(mask, site, 200)
    assert win is not None and win.x0 >= 100 and win.contains(site)
    assert (win.x0 + win.x1) / 2 == pytest.approx(140, abs=1) and (win.y0 + win.y1) / 2 == pytest.approx(150, abs=1)
    assert win.width == win.height
    assert centred_window(np.zeros_like(mask), site, 200) == Window(40, 50, 240, 250)
    assert centred_window(mask, Window(95, 140, 150, 160), 200) is None  # the site itself reaches into no-data
