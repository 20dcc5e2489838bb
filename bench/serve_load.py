"""A bounded load test of ``amberwatch serve`` on 127.0.0.1, and the bytes of a first view: live map vs static edition.

Builds the story tests' fixture project (a real SQLite DB, 12 detections, 32 tiles of real z18 imagery from the
shared Texty data in its tile cache; ``tests.story.conftest.make_story_db``) in a temp folder and starts the real
server on it (``python -m amberwatch.cli serve --trusted-proxy 127.0.0.1``, a subprocess on a free port). Then
``--readers`` simulated readers start at once (httpx, async; each its own client, so its own cookies, and its own
``X-Forwarded-For`` address, as readers behind a CDN or proxy are told apart), each one request at a time:

- a map load: the page, ``/api/scans``, ``/api/detections?scan=N``, ``/api/places`` and ``/api/locator.svg``;
- ``--tiles`` tile requests (the cached base tiles and the overviews above them, chosen at random per reader);
- one flag (``POST /api/detections/{id}/feedback``, the detections in turn).

So at most ``--readers`` requests are in flight. It prints requests/s over the whole run and per kind the count,
p50 and p95 latency, errors (no answer or 5xx) and other non-2xx answers (429: a rate limit held).

Bytes per first view (``--viewport``, default 1440x900; the map fits the sites' bounds at zoom 16 at most, as
``static/map.js`` does): the live map's page, its scripts and styles, ``/api/scans``, ``/api/detections`` and the
first screen of tiles, against the static edition (``amberwatch publish`` of the same project): the same page and
scripts (the viewer reads static files instead of the API), ``assets/pmtiles*.js``, ``config.json``,
``sites.geojson``, ``places.geojson``, the archive's first range request (header and root directory, 16 KiB at most)
and the same first screen of tiles out of ``imagery.pmtiles``. Text is also counted gzipped (level 6), as either
host would send it; tiles as they are.

The machine's cores are shared: run it where nothing else runs for figures worth quoting.

Usage: python bench/serve_load.py [--readers 50] [--tiles 20] [--viewport 1440x900] [--seed 0]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import mercantile

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.story.conftest: the fixture project with real imagery

FIRST_RANGE_BYTES = 16_384  # what the pmtiles browser build asks for first: header and root directory
PLACES_LIMIT = 3 * 60  # static/map.js asks for 3x its label limit (at most 60 on a large screen)
MAP_MAX_FIT_ZOOM = 16  # static/map.js fits the sites' bounds with maxZoom 16
TEXT_TYPES = ("text/", "application/json", "application/geo+json", "application/javascript")


@dataclass(frozen=True)
class Fixture:
    """The project: DB path, scan id, imagery source and zoom, detection ids, tiles a reader may ask for."""

    db: Path
    scan_id: int
    source_id: str
    zoom: int
    detection_ids: tuple[int, ...]
    tiles: tuple[tuple[int, int, int], ...]
    bbox: str  # "west,south,east,north" of the scan's tiles, as the map asks for place labels


@dataclass(frozen=True)
class Answer:
    """One request: its kind, HTTP status (0: no answer) and latency in seconds."""

    kind: str
    status: int
    latency_s: float


def make_fixture(folder: Path) -> Fixture:
    """The story tests' project in ``folder``, and the tiles (base and overviews down to 5 levels up) of its scan."""
    from tests.story.conftest import SOURCE_ID, ZOOM, make_story_db

    from amberwatch.imagery.cache import TileCache
    from amberwatch.imagery.pyramid import parent_tiles

    made = make_story_db(folder)
    with TileCache(made.cache) as cache:
        level = set(cache.ok_tiles(SOURCE_ID, ZOOM))
    bounds = [mercantile.bounds(x, y, ZOOM) for x, y in level]
    bbox = ",".join(
        f"{v:.5f}"
        for v in (
            min(b.west for b in bounds) - 0.05,
            min(b.south for b in bounds) - 0.03,
            max(b.east for b in bounds) + 0.05,
            max(b.north for b in bounds) + 0.03,
        )
    )
    tiles = []
    for z in range(ZOOM, ZOOM - 6, -1):
        tiles += [(z, x, y) for x, y in sorted(level)]
        level = parent_tiles(level)
    ids = (*made.cached_ids, made.thumbnail_only_id, made.bare_id)
    return Fixture(made.db, made.scan_id, SOURCE_ID, ZOOM, ids, tuple(tiles), bbox)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(db: Path, port: int) -> subprocess.Popen:
    """``amberwatch serve`` on 127.0.0.1:port, trusting X-Forwarded-For from 127.0.0.1; returns once it answers."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "amberwatch.cli", "serve", "--db", str(db), "--port", str(port)]
    proc = subprocess.Popen([*cmd, "--trusted-proxy", "127.0.0.1"], env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/scans", timeout=5).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit("amberwatch serve did not answer within 120 s")


async def timed(answers: list[Answer], kind: str, request) -> None:
    """Await one request, recording its status and latency (status 0 when no answer came)."""
    start = time.perf_counter()
    try:
        status = (await request).status_code
    except httpx.HTTPError:
        status = 0
    answers.append(Answer(kind, status, time.perf_counter() - start))


async def reader(i: int, base: str, fx: Fixture, n_tiles: int, rng: random.Random, answers: list[Answer]) -> None:
    """One reader: a map load, ``n_tiles`` tiles, one flag; its own client (cookies) and forwarded address."""
    address = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    async with httpx.AsyncClient(base_url=base, headers={"X-Forwarded-For": address}, timeout=60) as client:
        await timed(answers, "page", client.get("/"))
        await timed(answers, "scans", client.get("/api/scans"))
        await timed(answers, "detections", client.get("/api/detections", params={"scan": fx.scan_id}))
        await timed(answers, "places", client.get("/api/places", params={"bbox": fx.bbox, "limit": PLACES_LIMIT}))
        await timed(answers, "locator", client.get("/api/locator.svg", params={"scan": fx.scan_id}))
        for z, x, y in rng.sample(fx.tiles, min(n_tiles, len(fx.tiles))):
            url = f"/tiles/{fx.source_id}/{z}/{x}/{y}"
            await timed(answers, "tile", client.get(url, params={"base": fx.zoom}))
        det = fx.detection_ids[i % len(fx.detection_ids)]
        body = {"verdict": "confirmed"}
        await timed(answers, "flag", client.post(f"/api/detections/{det}/feedback", json=body))


async def load(base: str, fx: Fixture, readers: int, n_tiles: int, seed: int) -> tuple[list[Answer], float]:
    """Every reader at once; (answers, wall seconds)."""
    answers: list[Answer] = []
    start = time.perf_counter()
    await asyncio.gather(*(reader(i, base, fx, n_tiles, random.Random(seed + i), answers) for i in range(readers)))
    return answers, time.perf_counter() - start


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile (nearest rank) of values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def report_load(answers: list[Answer], wall_s: float, readers: int) -> None:
    """requests/s over the run; per kind count, p50/p95 latency, errors and other non-2xx answers."""
    print(f"\nLoad: {readers} readers at once, each one request at a time (at most {readers} in flight)")
    print(f"{len(answers)} requests in {wall_s:.2f} s: {len(answers) / wall_s:.1f} requests/s")
    print(f"{'kind':<11} {'count':>6} {'p50 ms':>8} {'p95 ms':>8} {'errors':>7} {'non-2xx':>8}")
    for kind in ("page", "scans", "detections", "places", "locator", "tile", "flag"):
        got = [a for a in answers if a.kind == kind]
        if not got:
            continue
        ms = [a.latency_s * 1000 for a in got]
        errors = sum(1 for a in got if a.status == 0 or a.status >= 500)
        other = sum(1 for a in got if 300 <= a.status < 500)
        print(f"{kind:<11} {len(got):>6} {percentile(ms, 50):>8.1f} {percentile(ms, 95):>8.1f} {errors:>7} {other:>8}")
    codes = statistics.multimode([a.status for a in answers if not 200 <= a.status < 300]) if answers else []
    if codes:
        print(f"most common non-2xx status: {codes}")


def _zipped(data: bytes, content_type: str) -> int:
    """Bytes as sent: text gzipped at level 6, anything else as it is."""
    return len(gzip.compress(data, 6)) if content_type.startswith(TEXT_TYPES) else len(data)


def first_screen(bounds: list[float], scanned: list[float], viewport: tuple[int, int]) -> tuple[int, list]:
    """(zoom, [(x, y)]) of the tiles a first view fetches: the bounds fitted (zoom 16 at most), tiles touching the
    scanned area within the viewport."""
    from amberwatch.imagery.tiles import lnglat_to_world_px

    w, s, e, n = bounds
    z = MAP_MAX_FIT_ZOOM
    while z > 0:
        (x0, y0), (x1, y1) = lnglat_to_world_px(w, n, z), lnglat_to_world_px(e, s, z)
        if x1 - x0 <= viewport[0] and y1 - y0 <= viewport[1]:
            break
        z -= 1
    (x0, y0), (x1, y1) = lnglat_to_world_px(w, n, z), lnglat_to_world_px(e, s, z)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    (sx0, sy0), (sx1, sy1) = (
        lnglat_to_world_px(scanned[0], scanned[3], z),
        lnglat_to_world_px(scanned[2], scanned[1], z),
    )
    xs = range(int(max(cx - viewport[0] / 2, sx0) // 256), int(min(cx + viewport[0] / 2, sx1) // 256) + 1)
    ys = range(int(max(cy - viewport[1] / 2, sy0) // 256), int(min(cy + viewport[1] / 2, sy1) // 256) + 1)
    return z, [(x, y) for x in xs for y in ys]


def page_assets(html: str) -> list[str]:
    """The scripts and styles a page loads (same-origin paths)."""
    return re.findall(r'<(?:script[^>]*\bsrc|link[^>]*\bhref)="(/[^"]+\.(?:js|css))"', html)


def live_first_view(base: str, fx: Fixture, viewport: tuple[int, int]) -> tuple[dict[str, int], dict[str, int], list]:
    """(raw bytes by part, gzipped bytes by part, the first screen's tiles) of the live map's first view."""
    raw: dict[str, int] = {}
    zipped: dict[str, int] = {}
    with httpx.Client(base_url=base, headers={"Accept-Encoding": "identity"}, timeout=60) as client:

        def add(part: str, url: str, **params) -> httpx.Response:
            r = client.get(url, params=params)
            if r.status_code == 200:
                raw[part] = raw.get(part, 0) + len(r.content)
                zipped[part] = zipped.get(part, 0) + _zipped(r.content, r.headers.get("content-type", ""))
            return r

        html = add("page", "/").text
        for path in page_assets(html):
            add("page scripts and styles", path)
        layer = next(s for s in add("api", "/api/scans").json()["scans"] if s["id"] == fx.scan_id)
        add("api", "/api/detections", scan=fx.scan_id)
        add("api", "/api/places", bbox=fx.bbox, limit=PLACES_LIMIT)
        add("api", "/api/locator.svg", scan=fx.scan_id)
        z, tiles = first_screen(layer["bounds"], layer["scanned_bounds"], viewport)
        for x, y in tiles:
            add("tiles", f"/tiles/{fx.source_id}/{z}/{x}/{y}", base=fx.zoom)
    return raw, zipped, [z, tiles, html]


def static_first_view(site: Path, live: list) -> tuple[dict[str, int], dict[str, int]]:
    """(raw bytes by part, gzipped bytes by part) of the static edition's first view of the same screen."""
    from pmtiles.reader import MmapSource, Reader

    z, tiles, html = live
    raw = {"page": len(html.encode())}
    zipped = {"page": _zipped(html.encode(), "text/html")}
    for part, names in (
        ("viewer scripts (pmtiles)", ["assets/pmtiles.js", "assets/pmtiles-layer.js"]),
        ("config, sites, places, locator", ["config.json", "sites.geojson", "places.geojson", "locator.svg"]),
    ):
        data = [(site / name).read_bytes() for name in names]
        raw[part] = sum(map(len, data))
        zipped[part] = sum(_zipped(d, "text/") for d in data)
    archive = site / "imagery.pmtiles"
    with open(archive, "rb") as f:
        reader = Reader(MmapSource(f))
        found = [reader.get(z, x, y) for x, y in tiles]
    first = min(FIRST_RANGE_BYTES, archive.stat().st_size)
    raw["tiles (archive)"] = zipped["tiles (archive)"] = first + sum(len(t) for t in found if t)
    return raw, zipped


def report_bytes(live: tuple[dict, dict], static: tuple[dict, dict], shared_assets: int, z: int, n: int) -> None:
    """The two first views side by side."""
    print(f"\nBytes per first view (zoom {z}, {n} tiles on screen; text also gzipped):")
    for name, (raw, zipped) in (("live map (serve)", live), ("static edition", static)):
        parts = ", ".join(f"{k} {raw[k]:,}" for k in raw)
        print(f"  {name}: {sum(raw.values()):,} B raw, {sum(zipped.values()):,} B gzipped ({parts})")
    print(f"  the page's own scripts and styles ({shared_assets:,} B raw) are counted in both: the static viewer is")
    print("  the same map page reading the static files (after the viewer integration).")


def main() -> None:
    """Parse the options, build the project, start the server, run the load and the first views."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--readers", type=int, default=50)
    ap.add_argument("--tiles", type=int, default=20)
    ap.add_argument("--viewport", default="1440x900")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    viewport = tuple(int(v) for v in args.viewport.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        fx = make_fixture(Path(tmp))
        from amberwatch.publish.edition import publish

        site = publish(fx.db, Path(tmp) / "site").out_dir
        port = free_port()
        server = start_server(fx.db, port)
        base = f"http://127.0.0.1:{port}"
        try:
            raw, zipped, live = live_first_view(base, fx, viewport)
            answers, wall_s = asyncio.run(load(base, fx, args.readers, args.tiles, args.seed))
        finally:
            server.terminate()
            server.wait(timeout=30)
        static_raw, static_zipped = static_first_view(site, live)
    part = "page scripts and styles"
    static_raw[part], static_zipped[part] = raw.get(part, 0), zipped.get(part, 0)
    report_load(answers, wall_s, args.readers)
    report_bytes((raw, zipped), (static_raw, static_zipped), raw.get(part, 0), live[0], len(live[1]))


if __name__ == "__main__":
    main()
