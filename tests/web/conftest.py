"""Fixtures of the web tests.

A real project DB (scan, detections, grids, users) with a real PNG tile cache, and a live server.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mercantile
import numpy as np
import pytest

from amberwatch.db import connect, utc_now_iso
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.decode import encode_jpeg, encode_png
from amberwatch.project import tile_cache_path
from amberwatch.results.store import TileRow, ensure_schema, write_tiles
from amberwatch.review.schema import ensure_schema as ensure_web_schema
from amberwatch.web.users import add_user

SOURCE_ID = "test-imagery"
ZOOM = 17
CENTER_LON, CENTER_LAT = 26.90, 51.32
THRESHOLD = 0.5
EMBEDDING_DIMS = 64
# Tiles (dx, dy from the centre tile) that look like pits in the embeddings but hold no detection; the last two
# touch, so a similarity search merges them into one place. Only those inside the fixture's grid are used.
HIDDEN_PITS = [(-3, -3), (3, -3), (-3, 3), (2, 3), (3, 3)]


def imagery_tile(rng: np.random.Generator, tx: int, ty: int) -> np.ndarray:
    """A 256x256 RGB tile that looks like fields and forest with sandy pits (for screenshots)."""
    yy, xx = np.mgrid[0:256, 0:256]
    base = np.where(((xx // 64 + tx + (yy // 80) + ty) % 3)[..., None] == 0, [60, 90, 45], [120, 140, 80]).astype(
        np.float64
    )
    base += rng.normal(0, 9, (256, 256, 1))
    for _ in range(3):
        cx, cy, r = rng.integers(30, 226), rng.integers(30, 226), rng.integers(8, 22)
        pit = (xx - cx) ** 2 + (yy - cy) ** 2 < r**2
        base[pit] = np.array([215, 200, 160]) + rng.normal(0, 12, (int(pit.sum()), 1))
    return np.clip(base, 0, 255).astype(np.uint8)


def square(lon: float, lat: float, half_deg: float) -> dict:
    """A GeoJSON square polygon around a point."""
    w, e, s, n = lon - half_deg * 1.6, lon + half_deg * 1.6, lat - half_deg, lat + half_deg
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


@dataclass
class Project:
    """A project DB built for a test: paths, ids and tokens."""

    db_path: Path
    cache_path: Path
    scan_id: int
    detection_ids: list[int]
    reviewer_token: str
    reader_token: str
    tiles: list[tuple[int, int, int]]
    pit_tiles: set[tuple[int, int, int]]  # tiles whose embeddings point the pits' way (under detections, hidden)
    hidden_pits: list[tuple[int, int, int]]


def insert_detections(
    conn, scan_id: int, rows: list[tuple[float, float, float, float]], thumbnail: bytes | None
) -> list[int]:
    """Insert detections (lon, lat, half size in degrees, probability); return their ids."""
    ids = []
    conn.execute("BEGIN")
    for lon, lat, half, prob in rows:
        geom = square(lon, lat, half)
        ring = geom["coordinates"][0]
        area_ha = (half * 2 * 111_320) * (half * 3.2 * 111_320 * 0.624) / 10_000
        cur = conn.execute(
            "INSERT INTO detections (scan_id, geometry_geojson, centroid_lon, centroid_lat, west, south, east, north,"
            " area_ha, mean_prob, max_prob, capture_date, model_version, thumbnail, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                scan_id,
                json.dumps(geom),
                lon,
                lat,
                ring[0][0],
                ring[0][1],
                ring[1][0],
                ring[2][1],
                area_ha,
                prob,
                min(prob + 0.1, 1.0),
                "2018-05-12",
                "0",
                thumbnail,
                utc_now_iso(),
            ),
        )
        ids.append(int(cur.lastrowid))
    conn.execute("COMMIT")
    return ids


def tile_embeddings(
    tiles: list[tuple[int, int, int]], pits: set[tuple[int, int, int]], seed: int = 11
) -> dict[tuple[int, int, int], bytes]:
    """float16 embeddings: pit tiles near one direction, the other tiles near another, each with some noise."""
    rng = np.random.default_rng(seed)
    pit, other = (v / np.linalg.norm(v) for v in rng.normal(size=(2, EMBEDDING_DIMS)))
    out = {}
    for t in tiles:
        base, noise = (pit, 0.04) if t in pits else (other, 0.12)
        out[t] = (base + rng.normal(0, noise, EMBEDDING_DIMS)).astype(np.float16).tobytes()
    return out


def detection_tiles(spots: list[tuple[float, float, float, float]]) -> set[tuple[int, int, int]]:
    """The tiles under detections (lon, lat, half size, probability) drawn as by ``square``."""
    out = set()
    for lon, lat, half, _ in spots:
        for t in mercantile.tiles(lon - half * 1.6, lat - half, lon + half * 1.6, lat + half, ZOOM):
            out.add((t.z, t.x, t.y))
    return out


def build_project(tmp_path: Path, *, extra_detections: int = 0, grid: int = 3) -> Project:
    """Scan + detections + probability grids + embeddings + cached PNG tiles + a reviewer and a reader.

    All in real SQLite files; the scan covers ``grid`` x ``grid`` tiles around the centre (odd ``grid``).
    """
    rng = np.random.default_rng(7)
    db_path = tmp_path / "project.db"
    conn = connect(db_path)
    ensure_schema(conn)
    ensure_web_schema(conn)
    center = mercantile.tile(CENTER_LON, CENTER_LAT, ZOOM)
    r = grid // 2
    offsets = range(-r, r + 1)
    tiles = [(ZOOM, center.x + dx, center.y + dy) for dx in offsets for dy in offsets]
    cache_path = tile_cache_path(db_path)
    with TileCache(cache_path) as cache:
        cache.register_source(SOURCE_ID, "http://example.invalid/{z}/{x}/{y}.png")
        for z, x, y in tiles:
            cache.put(
                SOURCE_ID,
                z,
                x,
                y,
                encode_png(imagery_tile(rng, x, y)),
                content_type="image/png",
                capture_date="2018-05-12",
            )
    top_left = mercantile.bounds(center.x - r, center.y - r, ZOOM)
    bottom_right = mercantile.bounds(center.x + r, center.y + r, ZOOM)
    w, s, e, n = top_left.west, bottom_right.south, bottom_right.east, top_left.north
    aoi = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    cur = conn.execute(
        "INSERT INTO scans (name, aoi_geojson, imagery, imagery_source_id, zoom, model_version, model_threshold,"
        " status, started_at, finished_at, tiles_total, tiles_done, area_scanned_km2)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, 'finished', ?, ?, ?, ?, ?)",
        (
            "klesiv",
            json.dumps(aoi),
            "http://example.invalid/{z}/{x}/{y}.png",
            SOURCE_ID,
            ZOOM,
            "0",
            THRESHOLD,
            utc_now_iso(),
            utc_now_iso(),
            len(tiles),
            len(tiles),
            0.54,
        ),
    )
    scan_id = int(cur.lastrowid)
    probs = [rng.integers(60, 200, 64, dtype=np.uint8) for _ in tiles]
    thumb = encode_jpeg(imagery_tile(rng, 0, 0)[64:192, 64:192])
    spots = [
        (CENTER_LON + dx, CENTER_LAT + dy, 0.00025 * (1 + i % 3), p)
        for i, (dx, dy, p) in enumerate(
            [
                (0.0, 0.0, 0.93),
                (0.0012, 0.0007, 0.71),
                (-0.0013, -0.0006, 0.55),
                (0.0015, -0.0009, 0.86),
                (-0.0010, 0.0010, 0.64),
            ]
        )
    ]
    hidden = [(ZOOM, center.x + dx, center.y + dy) for dx, dy in HIDDEN_PITS if max(abs(dx), abs(dy)) <= r]
    pits = detection_tiles(spots) | set(hidden)
    vectors = tile_embeddings(tiles, pits)
    rows = [
        TileRow(*t, "done", None, "2018-05-12", float(g.max()) / 255, 8, g.tobytes(), vectors[t])
        for t, g in zip(tiles, probs)
    ]
    write_tiles(conn, scan_id, rows)
    detection_ids = insert_detections(conn, scan_id, spots, thumb)
    if extra_detections:
        rnd = random.Random(3)
        extra = [
            (
                CENTER_LON + rnd.uniform(-0.6, 0.6),
                CENTER_LAT + rnd.uniform(-0.35, 0.35),
                rnd.uniform(0.0001, 0.0006),
                rnd.uniform(0.5, 0.99),
            )
            for _ in range(extra_detections)
        ]
        insert_detections(conn, scan_id, extra, None)
    reviewer = add_user(conn, "olena", reviewer=True)
    reader = add_user(conn, "reader1", reviewer=False)
    conn.close()
    return Project(db_path, cache_path, scan_id, detection_ids, reviewer, reader, tiles, pits, hidden)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A small real project: one scan, five detections with thumbnails, nine cached tiles, two users."""
    return build_project(tmp_path)


@pytest.fixture
def wide_project(tmp_path: Path) -> Project:
    """The small project over 7 x 7 tiles, with pit-like tiles away from the detections (for similarity search)."""
    return build_project(tmp_path, grid=7)


@pytest.fixture
def client(project: Project) -> Iterator[object]:
    """An in-process TestClient of the app over the project."""
    from fastapi.testclient import TestClient

    from amberwatch.web.app import create_app

    with TestClient(create_app(project.db_path, project.cache_path, feedback_limit_per_hour=5)) as c:
        yield c


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """The app served by uvicorn in a background thread on 127.0.0.1."""

    def __init__(self, app: object, **config: object) -> None:
        """``config``: more uvicorn.Config options (e.g. ``web.commands.proxy_options``, as ``serve`` passes)."""
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", **config)  # type: ignore[arg-type]
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start within 20 s")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live(project: Project) -> Iterator[LiveServer]:
    """The app over the small project, live on a free port."""
    from amberwatch.web.app import create_app

    with LiveServer(create_app(project.db_path, project.cache_path)) as server:
        yield server


def api_routes(app: object) -> list[tuple[str, set[str], object]]:
    """(path, methods, APIRoute) of every FastAPI route of the app, however its routers were included."""
    from fastapi.routing import APIRoute, iter_route_contexts

    out = []
    for ctx in iter_route_contexts(app.routes):  # type: ignore[attr-defined]
        route = ctx.original_route
        if isinstance(route, APIRoute):
            out.append((str(ctx.path), set(ctx.methods or route.methods), route))
    return out


def add_scan(project: Project, source_id: str, credit: str, shift: int) -> tuple[int, list[int]]:
    """Another finished scan ``shift`` tiles east of the first, over its own cached imagery and credit.

    Returns (scan id, detection ids); the scan covers the same 3 x 3 (or ``grid``) tiles, moved east.
    """
    rng = np.random.default_rng(shift)
    tiles = [(z, x + shift, y) for z, x, y in project.tiles]
    with TileCache(project.cache_path) as cache:
        cache.register_source(source_id, f"http://example.invalid/{source_id}/{{z}}/{{x}}/{{y}}.png")
        for z, x, y in tiles:
            png = encode_png(imagery_tile(rng, x, y))
            cache.put(source_id, z, x, y, png, content_type="image/png", capture_date="2019-06-01")
    xs, ys = [t[1] for t in tiles], [t[2] for t in tiles]
    top_left, bottom_right = mercantile.bounds(min(xs), min(ys), ZOOM), mercantile.bounds(max(xs), max(ys), ZOOM)
    w, s, e, n = top_left.west, bottom_right.south, bottom_right.east, top_left.north
    aoi = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    conn = connect(project.db_path)
    cur = conn.execute(
        "INSERT INTO scans (name, aoi_geojson, imagery, imagery_source_id, zoom, model_version, model_threshold,"
        " status, started_at, finished_at, tiles_total, tiles_done, area_scanned_km2, params_json)"
        " VALUES (?, ?, ?, ?, ?, '0', ?, 'finished', ?, ?, ?, ?, 0.54, ?)",
        (
            f"scan-{source_id}",
            json.dumps(aoi),
            f"/data/{source_id}",
            source_id,
            ZOOM,
            THRESHOLD,
            utc_now_iso(),
            utc_now_iso(),
            len(tiles),
            len(tiles),
            json.dumps({"imagery_credit": credit}),
        ),
    )
    scan_id = int(cur.lastrowid)
    lon, lat = (w + e) / 2, (s + n) / 2
    ids = insert_detections(conn, scan_id, [(lon, lat, 0.0003, 0.9), (lon + 0.0012, lat, 0.0002, 0.7)], None)
    conn.close()
    return scan_id, ids


def reject_as_not_mining(project: Project, detection_id: int, verdict: str = "not_mining") -> None:
    """A reader flags the detection (``verdict``) and the reviewer accepts the flag."""
    from amberwatch.review.feedback import decide_feedback, record_feedback

    conn = connect(project.db_path)
    with TileCache(project.cache_path) as cache:
        fb = record_feedback(conn, detection_id, verdict, "quarry", None, client="test-client")
        decide_feedback(conn, cache, int(fb["id"]), "accept", "olena")
    conn.close()
