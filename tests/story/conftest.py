"""Fixtures of the story tests: a real project DB with detections and a tile cache of real imagery."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import mercantile
import numpy as np
import pytest
from PIL import Image

from amberwatch.db import connect, utc_now_iso
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.decode import encode_jpeg, encode_png, read_image_file
from amberwatch.project import tile_cache_path
from amberwatch.results.store import ensure_schema

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / ".." / "shared" / "data" / "texty-amber"
SOURCE_ID = "story-test-source"
ZOOM = 18
# Two 4x4-tile patches of real imagery (positive1, positive2) at z18 near 51.3N 26.9E.
PATCHES = (("positive1.png", 26.900, 51.300), ("positive2.png", 26.915, 51.296))


@dataclass(frozen=True)
class StoryFixture:
    """Paths of the fixture DB and cache, the scan id and the detection ids by kind."""

    db: Path
    cache: Path
    scan_id: int
    cached_ids: tuple[int, ...]
    thumbnail_only_id: int
    bare_id: int


def _patch_pixels(name: str) -> np.ndarray:
    path = DATA / "tiles" / name
    if not path.exists():
        pytest.skip(f"real imagery {path} is absent")
    pixels = read_image_file(path)
    return np.asarray(Image.fromarray(pixels).resize((1024, 1024), Image.Resampling.BILINEAR), dtype=np.uint8)


def _polygon(lon: float, lat: float, side_m: float, seed: int) -> list[list[float]]:
    """An irregular 7-gon of about side_m across, closed, in lon/lat."""
    rng = np.random.default_rng(seed)
    m_per_deg_lat = 111_320.0
    m_per_deg_lon = 111_320.0 * math.cos(math.radians(lat))
    ring = []
    for k in range(7):
        a = 2 * math.pi * k / 7
        r = side_m / 2 * (0.75 + 0.25 * rng.random())
        ring.append([lon + r * math.cos(a) / m_per_deg_lon, lat + r * math.sin(a) / m_per_deg_lat])
    ring.append(ring[0])
    return ring


def _ring_area_ha(ring: list[list[float]], lat: float) -> float:
    mx = 111_320.0 * math.cos(math.radians(lat))
    my = 111_320.0
    s = 0.0
    for (x0, y0), (x1, y1) in itertools.pairwise(ring):
        s += (x0 * mx) * (y1 * my) - (x1 * mx) * (y0 * my)
    return abs(s) / 2 / 10_000


def make_story_db(folder: Path) -> StoryFixture:
    """Build story.db (scan + 11 detections) and its default tile cache in folder."""
    db_path = folder / "story.db"
    conn = connect(db_path)
    ensure_schema(conn)
    cache = TileCache(tile_cache_path(db_path))
    cache.register_source(SOURCE_ID, "fixture: crops of Texty's positive tiles")
    patch_boxes = []
    for name, lon, lat in PATCHES:
        pixels = _patch_pixels(name)
        t0 = mercantile.tile(lon, lat, ZOOM)
        for dy in range(4):
            for dx in range(4):
                tile = pixels[dy * 256 : dy * 256 + 256, dx * 256 : dx * 256 + 256]
                cache.put(
                    SOURCE_ID,
                    ZOOM,
                    t0.x + dx,
                    t0.y + dy,
                    encode_png(tile),
                    content_type="image/png",
                    capture_date="2015-10-05",
                )
        ul = mercantile.bounds(t0.x, t0.y, ZOOM)
        lr = mercantile.bounds(t0.x + 3, t0.y + 3, ZOOM)
        patch_boxes.append((ul.west, lr.south, lr.east, ul.north, pixels))
    cache.close()

    now = utc_now_iso()
    aoi = {
        "type": "Polygon",
        "coordinates": [[[26.85, 51.25], [26.95, 51.25], [26.95, 51.35], [26.85, 51.35], [26.85, 51.25]]],
    }
    conn.execute(
        "INSERT INTO scans (id, name, aoi_geojson, imagery, imagery_source_id, zoom, model_version, model_threshold,"
        " status, started_at, finished_at)"
        " VALUES (1, 'fixture scan', ?, 'fixture', ?, ?, 'test-1', 0.5, 'finished', ?, ?)",
        (json.dumps(aoi), SOURCE_ID, ZOOM, now, now),
    )
    rng = np.random.default_rng(7)
    sides = [150, 60, 95, 40, 120, 75, 55, 85, 45, 110]
    ids: list[int] = []
    for i, side in enumerate(sides):
        west, south, east, north, pixels = patch_boxes[i % 2]
        # Keep the fragment (detection plus margin) inside the cached patch.
        lon = west + (east - west) * (0.3 + 0.4 * rng.random())
        lat = south + (north - south) * (0.3 + 0.4 * rng.random())
        ring = _polygon(lon, lat, side, seed=i)
        ids.append(_insert(conn, ring, lat, lon, 0.55 + 0.04 * i, thumb=encode_jpeg(pixels[:200, :200])))
    # Outside the cache: one with a thumbnail, one with nothing at all.
    ring = _polygon(26.880, 51.320, 70, seed=99)
    thumb_only = _insert(
        conn, ring, 51.320, 26.880, 0.6, thumb=encode_jpeg(_patch_pixels("positive2.png")[300:556, 300:556])
    )
    ring = _polygon(26.870, 51.330, 50, seed=100)
    bare = _insert(conn, ring, 51.330, 26.870, 0.52, thumb=None)
    conn.close()
    return StoryFixture(db_path, tile_cache_path(db_path), 1, tuple(ids), thumb_only, bare)


def _insert(conn, ring: list[list[float]], lat: float, lon: float, prob: float, thumb: bytes | None) -> int:
    xs = [p[0] for p in ring]
    ys = [p[1] for p in ring]
    cur = conn.execute(
        "INSERT INTO detections (scan_id, geometry_geojson, centroid_lon, centroid_lat, west, south, east, north,"
        " area_ha, mean_prob, max_prob, capture_date, model_version, thumbnail, created_at)"
        " VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '2015-10-05', 'test-1', ?, ?)",
        (
            json.dumps({"type": "Polygon", "coordinates": [ring]}),
            lon,
            lat,
            min(xs),
            min(ys),
            max(xs),
            max(ys),
            _ring_area_ha(ring, lat),
            prob,
            min(prob + 0.2, 1.0),
            thumb,
            utc_now_iso(),
        ),
    )
    return int(cur.lastrowid)


@pytest.fixture(scope="session")
def story_data(tmp_path_factory: pytest.TempPathFactory) -> StoryFixture:
    """A project DB and tile cache shared by the story tests (read-only for them)."""
    return make_story_db(tmp_path_factory.mktemp("story-db"))


ARTICLE = """---
title: "The lunar landscape next door"
lead: "Fragments of satellite imagery show how amber diggers turned forest into craters."
byline: Amberwatch test desk
date: 2026-11-25
fragments: {fragments}
map:
  center: [51.30, 26.905]
  zoom: 14
places:
  {first}: Klesiv forest
---

Nobody here calls it mining. People say they are *going to the amber*, as if it were mushrooms.

The pits appear in spring, when the ground thaws and the water pumps start again.

From above the forest looks sick: round pale scars, each a few metres wide, filled with water.

Some sites grow for years. Others are abandoned after one season and slowly turn green.

Our model scanned the region tile by tile and found the sites shown here.

Each fragment below the text is a real detection; its caption gives the place, the date of the imagery and the area.

The map at the end shows where they all belong.
"""


def write_article(folder: Path, fragment_ids: list[int] | str, name: str = "article.md") -> Path:
    """An article file selecting the given fragments (a list of ids or 'largest N')."""
    frag = fragment_ids if isinstance(fragment_ids, str) else "[" + ", ".join(map(str, fragment_ids)) + "]"
    first = fragment_ids[0] if isinstance(fragment_ids, list) else 1
    path = folder / name
    path.write_text(ARTICLE.format(fragments=frag, first=first), "utf-8")
    return path


@pytest.fixture(scope="session")
def built_story(story_data: StoryFixture, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture story built once (all cached detections plus the thumbnail-only one): its folder."""
    folder = tmp_path_factory.mktemp("story-site")
    article = write_article(folder, [*story_data.cached_ids, story_data.thumbnail_only_id])
    from amberwatch.story.builder import build_story

    build_story(article, story_data.db, folder / "site")
    return folder / "site"
