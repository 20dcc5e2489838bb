"""Fixtures of the story tests: a real project DB with detections and a tile cache of real imagery."""

from __future__ import annotations

import contextlib
import functools
import http.server
import itertools
import json
import math
import threading
from collections.abc import Iterator
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


# -- a project scanned at two imagery dates: the same tiles hold forest in 2019 and pits in 2023 ---------------------
THEN, NOW = "2019-06-26", "2023-06-26"
DATED_BASE = "xyz-story-dated"
# Patch A: forest (negative1) then, pits (positive1) now. Patch B: the pits of positive2 at both dates.
DATED_PATCHES = {"A": (26.900, 51.300), "B": (26.915, 51.296)}
DATED_IMAGERY = {THEN: {"A": "negative1.png", "B": "positive2.png"}, NOW: {"A": "positive1.png", "B": "positive2.png"}}
# Sites by date: (patch, share across, share down, side_m). A1, A2 are new; B1 grows; B2 stays the same.
DATED_SITES = {
    THEN: {"B1": ("B", 0.4, 0.45, 60), "B2": ("B", 0.7, 0.7, 80)},
    NOW: {
        "A1": ("A", 0.45, 0.5, 130),
        "A2": ("A", 0.72, 0.3, 50),
        "B1": ("B", 0.4, 0.45, 110),
        "B2": ("B", 0.7, 0.7, 82),
    },
}


@dataclass(frozen=True)
class DatedFixture:
    """A project scanned at THEN and NOW: DB path, scan id and hectares of each site by date, detection ids at NOW."""

    db: Path
    scan_ids: dict[str, int]
    area_ha: dict[str, dict[str, float]]
    now_ids: dict[str, int]


def _dated_scan(conn, date: str, source_id: str, tiles: list[tuple[int, int]]) -> int:
    from amberwatch.results.records import ScanParams
    from amberwatch.results.store import NewScan, TileRow, create_scan, set_scan_status, write_tiles

    aoi = json.dumps(
        {
            "type": "Polygon",
            "coordinates": [[[26.85, 51.25], [26.95, 51.25], [26.95, 51.35], [26.85, 51.35], [26.85, 51.25]]],
        }
    )
    new = NewScan(
        f"dated {date}",
        aoi,
        "http://127.0.0.1/{z}/{x}/{y}.png",
        source_id,
        ZOOM,
        "test-1",
        0.5,
        ScanParams(imagery_credit="Fixture imagery"),
        len(tiles),
        imagery_date=date,
    )
    scan_id = create_scan(conn, new)
    write_tiles(conn, scan_id, [TileRow(ZOOM, x, y, "done", max_prob=0.1) for x, y in tiles])
    set_scan_status(conn, scan_id, "finished")
    return scan_id


def make_dated_db(folder: Path) -> DatedFixture:
    """dated.db: two finished scans of one AOI at THEN and NOW, their detections and dated imagery in the cache."""
    from amberwatch.imagery.types import dated_source_id
    from amberwatch.results.store import DetectionRow, replace_detections

    db_path = folder / "dated.db"
    conn = connect(db_path)
    ensure_schema(conn)
    cache = TileCache(tile_cache_path(db_path))
    origins = {k: mercantile.tile(lon, lat, ZOOM) for k, (lon, lat) in DATED_PATCHES.items()}
    tiles = [(t.x + dx, t.y + dy) for t in origins.values() for dy in range(4) for dx in range(4)]
    scan_ids, areas, now_ids = {}, {}, {}
    for date, imagery in DATED_IMAGERY.items():
        source_id = dated_source_id(DATED_BASE, date)
        cache.register_source(source_id, "fixture", base_source_id=DATED_BASE, imagery_date=date)
        for patch, name in imagery.items():
            pixels, t0 = _patch_pixels(name), origins[patch]
            for dy, dx in itertools.product(range(4), range(4)):
                tile = encode_png(pixels[dy * 256 : dy * 256 + 256, dx * 256 : dx * 256 + 256])
                cache.put(source_id, ZOOM, t0.x + dx, t0.y + dy, tile, content_type="image/png", capture_date=date)
        scan_ids[date] = _dated_scan(conn, date, source_id, tiles)
        rows = []
        for name, (patch, fx, fy, side) in DATED_SITES[date].items():
            ul = mercantile.bounds(origins[patch].x, origins[patch].y, ZOOM)
            lr = mercantile.bounds(origins[patch].x + 3, origins[patch].y + 3, ZOOM)
            lon, lat = ul.west + (lr.east - ul.west) * fx, ul.north - (ul.north - lr.south) * fy
            ring = _polygon(lon, lat, side, seed=sum(map(ord, name)))
            xs, ys = [p[0] for p in ring], [p[1] for p in ring]
            areas.setdefault(name, {})[date] = _ring_area_ha(ring, lat)
            geometry = json.dumps({"type": "Polygon", "coordinates": [ring]})
            rows.append(
                DetectionRow(
                    geometry,
                    lon,
                    lat,
                    (min(xs), min(ys), max(xs), max(ys)),
                    areas[name][date],
                    0.8,
                    0.9,
                    date,
                    "test-1",
                    None,
                )
            )
        replace_detections(conn, scan_ids[date], rows)
    for row in conn.execute("SELECT id, centroid_lon FROM detections WHERE scan_id = ? ORDER BY id", (scan_ids[NOW],)):
        now_ids[list(DATED_SITES[NOW])[len(now_ids)]] = int(row[0])
    cache.close()
    conn.close()
    return DatedFixture(db_path, scan_ids, areas, now_ids)


@pytest.fixture(scope="session")
def dated_data(tmp_path_factory: pytest.TempPathFactory) -> DatedFixture:
    """The two-date project shared by the change tests (read-only for them)."""
    return make_dated_db(tmp_path_factory.mktemp("story-dated"))


@pytest.fixture(scope="session")
def dated_story(dated_data: DatedFixture, tmp_path_factory: pytest.TempPathFactory):
    """The dated project's story (the largest site as a fragment, the two default pairs): its build result."""
    folder = tmp_path_factory.mktemp("dated-story")
    article = write_article(folder, "largest 1")
    from amberwatch.story.builder import build_story

    return build_story(article, dated_data.db, folder / "site")


@contextlib.contextmanager
def static_server(folder: Path) -> Iterator[str]:
    """A built story folder served by a plain static HTTP server on 127.0.0.1: its index URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()
