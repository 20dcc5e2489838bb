"""Benchmark the scan engine end to end against a local tile server on 127.0.0.1.

Serves real imagery tiles (256 px crops of the Texty whole images when --texty points to them,
else a synthetic texture) as PNG over HTTP, then:

1. cold run: a fresh project DB and tile cache, every tile fetched over HTTP (bundled pretrained model, default
   settings: its int8 backbone);
2. warm runs: new scans over the same cache (no HTTP at all), with the bundled pretrained model (default int8,
   then ``int8=False``, i.e. scan --fp32) and, as the same-run baseline, with the CNN model v1;
3. enumeration of a ~100,000-tile AOI (dry-run count + full streamed enumeration) in a fresh
   process, with its peak RSS, next to a ~10,000-tile one to show memory does not grow with the AOI.

Prints tiles/s, km²/hour, the cold/warm ratio and peak RSS. ``--tiles N`` keeps it short.

``--triage-zoom 17`` benches ``scan --triage-zoom 17`` (with each ``--triage-context``, exact and coarse) against the
full z18 scan instead, in one run, cold and warm,
on a consistent pyramid served from pre-encoded bytes (``RegionTileServer``: a fixed pool of quads, each four z18
tiles and their z17 parent, the four halved as imagery.pyramid halves; pit fields as patches of 4 x 4 z18 tiles on
``--pit-share`` of the area, the rest ``--background``): z18 tiles covered per second, km²/hour, HTTP requests at z17
and z18, peak worker RSS, found hectares (all, and on the pit patches), CPU seconds, triage/full ratios, and the wall
time the same bench would take at 100,000 tiles on two quiet cores.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple

import mercantile
import numpy as np
import psutil
from PIL import Image

from amberwatch.imagery.aoi import aoi_from_bbox
from amberwatch.imagery.decode import encode_png
from amberwatch.imagery.pyramid import halve_straight
from amberwatch.model import BUNDLED_CNN_PATH
from amberwatch.scan.engine import ScanSettings, run_scan

PIT_QUADS, PLAIN_QUADS = 12, 40  # the region server's pool (about 40 MB of PNG, on any region)
PATCH = 4  # a pit field is a patch of PATCH x PATCH z18 tiles (2 x 2 z17 tiles)
STRATUM = 10  # pit patches are placed per square of STRATUM x STRATUM patches (the share holds on small regions)
TILE_BOXES = Path(__file__).resolve().parents[1] / "scripts" / "data" / "texty_tile_boxes.csv"
BACKGROUNDS = {
    "whole": "512 px crops of the whole images without mining (tiles/negative1, negative2): ordinary ground "
    "(fields, forest, villages)",
    "crops": "the hand-picked negative crops, four to a z17 tile: many are look-alikes (clear-cuts, sand quarries, "
    "snow), the hardest ground",
    "mixed": "whole, with one background z17 tile in 5 of crops",
}
CENTER = (26.90, 51.32)  # near Klesiv, Rivne oblast
ZOOM = 18


def tile_pool(
    texty_dir: Path | None, size: int = 48, seed: int = 0, names: tuple[str, ...] | None = None
) -> list[bytes]:
    """PNG tiles: random 256 px crops (with flips) of the Texty whole images (those called ``names``: default all),
    or a synthetic texture."""
    rng = np.random.default_rng(seed)
    sources = []
    if texty_dir and texty_dir.is_dir():
        paths = sorted(texty_dir.glob("*.png"))
        paths = [p for p in paths if names is None or p.stem in names]
        sources = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    pool = []
    for i in range(size):
        if sources:
            tile = random_crop(rng, sources[i % len(sources)], 256)
        else:
            base = rng.normal(100, 25, (32, 32, 3)).clip(0, 255).astype(np.uint8)
            tile = np.asarray(Image.fromarray(base).resize((256, 256), Image.Resampling.BICUBIC))
            tile = (tile.astype(np.int16) + rng.integers(-12, 12, tile.shape)).clip(0, 255).astype(np.uint8)
        pool.append(encode_png(np.ascontiguousarray(tile)))
    return pool


class PoolTileServer:
    """Serves /{z}/{x}/{y}.png from a small pool of PNGs (tile chosen by a hash of x, y); counts requests by zoom."""

    def __init__(self, pool: list[bytes], port: int = 0) -> None:
        self.pool = pool
        self.requests_by_zoom: Counter[int] = Counter()
        self._count_lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                try:
                    z, x, y = (int(v) for v in self.path.strip("/").split(".")[0].split("/")[-3:])
                    server.count(z)
                    body, status = server.tile_bytes(z, x, y), 200
                except ValueError:
                    body, status = b"bad", 404
                self.send_response(status)
                self.send_header("Content-Type", "image/png" if status == 200 else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{{z}}/{{x}}/{{y}}.png"

    @property
    def requests(self) -> int:
        """HTTP requests for tiles so far, all zooms."""
        return sum(self.requests_by_zoom.values())

    def count(self, z: int) -> None:
        """Count one request at zoom z."""
        with self._count_lock:
            self.requests_by_zoom[z] += 1

    def tile_bytes(self, z: int, x: int, y: int) -> bytes:
        """The PNG served for tile (z, x, y): one of the pool, by a hash of x and y."""
        return self.pool[(x * 7919 + y * 104729) % len(self.pool)]

    def stop(self) -> None:
        """Stop serving."""
        self.httpd.shutdown()
        self.httpd.server_close()


class WorkerRSS:
    """Samples the resident memory of every descendant process (the scan workers) and keeps the largest."""

    def __init__(self, every_s: float = 0.2) -> None:
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)
        self._thread.start()

    def _run(self, every_s: float) -> None:
        me = psutil.Process()
        while not self._stop.wait(every_s):
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    self.peak_mb = max(self.peak_mb, child.memory_info().rss / 2**20)

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join()


def square_bbox(n_tiles: int, zoom: int = ZOOM) -> str:
    """A W,S,E,N bbox of about n_tiles whole tiles around CENTER (slightly inset so edges do not count)."""
    side = max(1, round(math.sqrt(n_tiles)))
    t = mercantile.tile(*CENTER, zoom)
    x0, y0 = t.x - side // 2, t.y - side // 2
    west, _, _, north = mercantile.bounds(x0, y0, zoom)
    _, south, east, _ = mercantile.bounds(x0 + side - 1, y0 + side - 1, zoom)
    eps = 1e-7
    return f"{west + eps},{south + eps},{east - eps},{north - eps}"


ENUMERATE = """
import sys, time
from amberwatch.imagery.aoi import aoi_from_bbox
from amberwatch.scan.engine import plan_scan
from amberwatch.scan.tiling import iter_units

def peak_rss_kb():
    # VmHWM is this process's own high-water mark (ru_maxrss would include the parent's at fork time).
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

aoi = aoi_from_bbox(sys.argv[1])
base = peak_rss_kb()
t = time.perf_counter()
plan = plan_scan(aoi, int(sys.argv[2]), max_tiles=10**9)
count_s = time.perf_counter() - t
t = time.perf_counter()
n = sum(len(u.tiles) for u in iter_units(aoi.geometry, int(sys.argv[2])))
enum_s = time.perf_counter() - t
peak = peak_rss_kb()
print(plan.tiles, n, round(count_s, 3), round(enum_s, 3), base // 1024, peak // 1024)
"""


def enumerate_in_subprocess(n_tiles: int) -> tuple[int, int, float, float, int, int]:
    """(planned, enumerated, count_s, enumerate_s, rss_before_MB, peak_rss_MB) in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", ENUMERATE, square_bbox(n_tiles), str(ZOOM)], capture_output=True, text=True, check=True
    ).stdout.split()
    a, b, c, d, e, f = out
    return int(a), int(b), float(c), float(d), int(e), int(f)


def similar_figures(db: Path, scan_id: int) -> dict:
    """Embedding storage of a real scan, and the time to load its vectors and answer one 'similar' query."""
    import time

    from amberwatch.db import connect
    from amberwatch.results.similar import Query, load_scan_vectors, rank_places

    conn = connect(db)
    try:
        t0 = time.perf_counter()
        vectors = load_scan_vectors(conn, scan_id)
        t1 = time.perf_counter()
        rank_places(conn, vectors, Query(vectors.vectors[:1], vectors.vectors[:0]), top=10)
        t2 = time.perf_counter()
    finally:
        conn.close()
    return {
        "tiles": len(vectors),
        "bytes": vectors.vectors.shape[1] * 2,
        "load_s": t1 - t0,
        "query_s": t2 - t1,
        "db_mb": vectors.vectors.nbytes / 2**20,
    }


def cpu_kernels() -> str:
    """The x86 features this process sees (bench/avx2_only.py hides AVX-512 and VNNI), as numpy detected them."""
    from numpy._core._multiarray_umath import __cpu_features__ as cpu

    seen = [name for name in ("AVX2", "AVX512F", "AVX512VNNI") if cpu.get(name)]
    return ", ".join(seen) or "none of AVX2, AVX512F, AVX512VNNI"


class Quad(NamedTuple):
    """Four z18 tiles (PNG by (dx, dy)) and their z17 parent (the four halved), each encoded once."""

    children: dict[tuple[int, int], bytes]
    parent: bytes


def make_quad(pixels: np.ndarray) -> Quad:
    """The quad of a 512 px RGB image: its four 256 px tiles, and the image halved as imagery.pyramid halves."""
    kids = {
        (dx, dy): np.ascontiguousarray(pixels[dy * 256 : (dy + 1) * 256, dx * 256 : (dx + 1) * 256])
        for dx in (0, 1)
        for dy in (0, 1)
    }
    halved = halve_straight({k: Image.fromarray(v).convert("RGBA") for k, v in kids.items()})
    return Quad({k: encode_png(v) for k, v in kids.items()}, encode_png(np.asarray(halved.convert("RGB"))))


def random_crop(
    rng: np.random.Generator, image: np.ndarray, side_px: int, box: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """A side_px square crop of image at a random place (holding the x0, y0, x1, y1 box when given), maybe flipped."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box or (w, h, 0, 0)
    c = rng.integers(max(0, x1 - side_px), min(w - side_px, x0) + 1)
    r = rng.integers(max(0, y1 - side_px), min(h - side_px, y0) + 1)
    crop = image[r : r + side_px, c : c + side_px]
    crop = crop[:, ::-1] if rng.random() < 0.5 else crop
    return np.ascontiguousarray(crop[::-1] if rng.random() < 0.5 else crop)


def chip_tile(chip: np.ndarray) -> np.ndarray:
    """A chip as one 256 px tile: reflected out where smaller, cut at 256 px where larger."""
    pad_y, pad_x = max(0, 256 - chip.shape[0]), max(0, 256 - chip.shape[1])
    chip = np.pad(chip, ((pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2), (0, 0)), "symmetric")
    return np.ascontiguousarray(chip[:256, :256])


def rgb(path: Path) -> np.ndarray:
    """An image file as an HxWx3 uint8 array."""
    return np.asarray(Image.open(path).convert("RGB"))


def pit_quads(texty: Path, n: int, rng: np.random.Generator) -> list[Quad]:
    """n quads of pit fields: 512 px crops of positive1/positive2, each around one of their boxes labelled mining."""
    with TILE_BOXES.open() as f:
        boxes = [r for r in csv.DictReader(f) if r["label"] == "mining"]
    images = {r["image"]: rgb(texty / r["image"]) for r in boxes}
    out = []
    for i in range(n):
        r = boxes[i % len(boxes)]
        box = (int(r["x0_px"]), int(r["y0_px"]), int(r["x1_px"]), int(r["y1_px"]))
        out.append(make_quad(random_crop(rng, images[r["image"]], 512, box)))
    return out


def whole_quads(texty: Path, n: int, rng: np.random.Generator) -> list[Quad]:
    """n quads of ordinary ground: 512 px crops of the whole images without mining (negative1, negative2)."""
    images = [rgb(texty / "tiles" / f"{name}.png") for name in ("negative1", "negative2")]
    return [make_quad(random_crop(rng, images[i % 2], 512)) for i in range(n)]


def crop_quads(texty: Path, n: int, rng: np.random.Generator) -> list[Quad]:
    """n quads of the hand-picked negative crops, four different crops (at least 192 px a side) to a quad."""
    paths = [p for p in sorted((texty / "negative").glob("*.png")) if min(Image.open(p).size) >= 192]
    picked = rng.choice(len(paths), size=4 * n, replace=4 * n > len(paths))
    tiles = [chip_tile(rgb(paths[i])) for i in picked]
    rows = [np.concatenate(tiles[2 * i : 2 * i + 2], axis=1) for i in range(2 * n)]
    return [make_quad(np.concatenate(rows[2 * i : 2 * i + 2], axis=0)) for i in range(n)]


def background_quads(texty: Path, background: str, n: int, rng: np.random.Generator) -> list[Quad]:
    """The region's quads without pits for a --background choice (BACKGROUNDS)."""
    if background == "whole":
        return whole_quads(texty, n, rng)
    if background == "crops":
        return crop_quads(texty, n, rng)
    if background == "mixed":
        return whole_quads(texty, n - n // 5, rng) + crop_quads(texty, n // 5, rng)
    raise ValueError(f"background {background!r} is not one of {sorted(BACKGROUNDS)}")


def region_is_pit(x: int, y: int, pit_share: float) -> bool:
    """Whether z18 tile (x, y) lies in a pit patch (PATCH x PATCH tiles): each square of STRATUM x STRATUM patches
    holds pit_share of them (the fraction by a hash), placed by a hash, so the share holds on small regions too."""
    px, py = x // PATCH, y // PATCH
    square = zlib.crc32(f"{px // STRATUM},{py // STRATUM}".encode())
    quota = pit_share * STRATUM**2
    count = int(quota) + ((square >> 16) % 1000 < (quota % 1) * 1000)
    rank = (((px % STRATUM) * STRATUM + py % STRATUM) * 37 + square) % STRATUM**2
    return rank < count


class RegionTileServer(PoolTileServer):
    """A synthetic region, consistent across zooms 17 and 18, served from pre-encoded bytes: each z17 tile is the
    parent of a quad (four z18 tiles and the four halved) picked by a hash of (x, y) from a fixed pool; pit fields
    are patches of 2 x 2 z17 tiles of pit quads on pit_share of the area (``region_is_pit``), the rest quads of the
    ``background`` (BACKGROUNDS). Memory is the pool's, on any region."""

    def __init__(
        self,
        texty: Path,
        pit_share: float = 0.02,
        background: str = "mixed",
        seed: int = 0,
        port: int = 0,
        quads: tuple[int, int] = (PIT_QUADS, PLAIN_QUADS),
    ) -> None:
        rng = np.random.default_rng(seed)
        self.pits = pit_quads(texty, quads[0], rng)
        self.plain = background_quads(texty, background, quads[1], rng)
        self.pit_share, self.background = pit_share, background
        super().__init__([], port)

    def pool_mb(self) -> float:
        """Encoded bytes held by the quad pool, in MB."""
        return sum(len(q.parent) + sum(map(len, q.children.values())) for q in self.pits + self.plain) / 2**20

    def is_pit(self, x: int, y: int) -> bool:
        """Whether z18 tile (x, y) lies in a pit patch."""
        return region_is_pit(x, y, self.pit_share)

    def quad(self, x17: int, y17: int) -> Quad:
        """The quad shown at z17 tile (x17, y17): a pit quad in a pit patch, else a background one."""
        pool = self.pits if self.is_pit(2 * x17, 2 * y17) else self.plain
        return pool[(x17 * 7919 + y17 * 104729) % len(pool)]

    def tile_bytes(self, z: int, x: int, y: int) -> bytes:
        """The PNG of tile (z, x, y): a quad's child at z18, a quad's parent at z17 (ValueError at other zooms)."""
        if z == ZOOM:
            return self.quad(x >> 1, y >> 1).children[x & 1, y & 1]
        if z == ZOOM - 1:
            return self.quad(x, y).parent
        raise ValueError(f"zoom {z}: the region serves zooms {ZOOM - 1} and {ZOOM} only")


def pit_geometry(server: RegionTileServer, aoi) -> tuple[set[tuple[int, int]], object]:
    """(pit-patch z18 tiles in the AOI, their union as lon/lat geometry)."""
    from shapely.geometry import box
    from shapely.ops import unary_union

    from amberwatch.scan.tiling import iter_tiles

    tiles = [(x, y) for _, x, y in iter_tiles(aoi.geometry, ZOOM) if server.is_pit(x, y)]
    return set(tiles), unary_union([box(*mercantile.bounds(x, y, ZOOM)) for x, y in tiles])


def pit_figures(db: Path, scan_id: int, pits, pit_tiles: set[tuple[int, int]]) -> tuple[float, int]:
    """(hectares of a scan's detections on the pit patches, each detection's share of area inside them; pit-patch
    z18 tiles the scan classified)."""
    import json

    from shapely.geometry import shape

    from amberwatch.db import connect
    from amberwatch.results.store import query_detections, scan_tiles_at

    conn = connect(db)
    try:
        found = query_detections(conn, scan_id=scan_id)
        scanned = {(t.x, t.y) for t in scan_tiles_at(conn, scan_id, ZOOM)}
    finally:
        conn.close()
    shapes = [(shape(json.loads(d.geometry_geojson)), d.area_ha) for d in found]
    return sum(ha * g.intersection(pits).area / g.area for g, ha in shapes if g.area > 0), len(scanned & pit_tiles)


@dataclass
class BenchRow:
    """One scan of the triage bench: what it cost and what it found."""

    run: str
    mode: str
    seconds: float
    requests: dict[int, int]  # HTTP requests by zoom
    rss_mb: float
    z18_scanned: int
    found_ha: float
    pit_ha: float
    pits_scanned: int  # pit-patch z18 tiles the (fine) scan classified
    cpu_s: float  # workers + main process (the tile server's threads included)
    area_km2: float
    triage: object | None  # the TriageOutcome of a triage scan


def outcome_cpu_s(*outcomes) -> float:
    """CPU seconds of scans: their workers' and the main process's."""
    return sum(o.counters.get("worker_cpu_s", 0.0) + o.counters.get("main_cpu_s", 0.0) for o in outcomes)


def bench_one(server: RegionTileServer, aoi, db: Path, run: str, mode: str, args, say, pits: tuple) -> BenchRow:
    """Run one scan of the triage bench (full z18 or triage) and measure it."""
    from amberwatch.scan.triage import run_triage_scan

    settings = ScanSettings(workers=args.workers, progress=sys.stderr.isatty(), new=True)
    before, watcher, t0 = dict(server.requests_by_zoom), WorkerRSS(), time.perf_counter()
    if mode.startswith("full"):
        out = run_scan(aoi, server.url, ZOOM, db, settings, on_event=say)
        both, cpu_s, scanned, km2 = None, outcome_cpu_s(out), out.tiles_total, out.area_scanned_km2
    else:
        context = mode.split()[1]
        both = run_triage_scan(
            aoi, server.url, ZOOM, db, settings, triage_zoom=args.triage_zoom, context=context, on_event=say
        )
        out, cpu_s, scanned = both.fine, outcome_cpu_s(both.triage, both.fine), both.fine_tiles_kept
        km2 = both.triage.area_scanned_km2
    seconds = time.perf_counter() - t0
    watcher.stop()
    requests = {z: n - before.get(z, 0) for z, n in server.requests_by_zoom.items()}
    pit_ha, pits_scanned = pit_figures(db, out.scan_id, pits[1], pits[0])
    found_ha = out.detections_area_ha
    return BenchRow(
        run, mode, seconds, requests, watcher.peak_mb, scanned, found_ha, pit_ha, pits_scanned, cpu_s, km2, both
    )


def triage_bench(args) -> None:
    """Full z18 against scan --triage-zoom, cold (fresh cache) then warm, on one RegionTileServer."""
    server = RegionTileServer(args.texty.parent, args.pit_share, args.background)
    aoi = aoi_from_bbox(square_bbox(args.tiles))
    pits = pit_geometry(server, aoi)
    rows = []
    started = time.perf_counter()

    def say(msg: str) -> None:
        print(f"[{time.perf_counter() - started:7.0f} s] {msg}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="amberwatch-bench-") as tmp:
        for run in ("cold", "warm"):
            for mode in ("full z18", *(f"z{args.triage_zoom} {c}" for c in args.triage_context)):
                say(f"{run} {mode}")
                db = Path(tmp) / f"{mode.replace(' ', '-')}.db"
                rows.append(bench_one(server, aoi, db, run, mode, args, say, pits))
    server.stop()
    print_triage_rows(rows, server, len(pits[0]), args)


def print_region(rows: list[BenchRow], server: RegionTileServer, n_pits: int, args) -> tuple[int, float]:
    """The bench's machine and region lines -> (z18 tiles, km²) of the region."""
    full = rows[0]
    total, km2 = full.z18_scanned, full.area_km2
    print(
        f"CPU kernels: {cpu_kernels()}; workers={args.workers}; load average (1, 5, 15 min) at the end "
        + ", ".join(f"{v:.1f}" for v in os.getloadavg())
        + f" on {os.cpu_count()} cores"
    )
    print(
        f"region: {total:,} z{ZOOM} tiles = {km2:.2f} km²; background {server.background!r}: "
        f"{BACKGROUNDS[server.background]}"
    )
    print(
        f"pit patches: {n_pits:,} z{ZOOM} tiles = {n_pits / total:.2%} of the region (asked {args.pit_share:.2%}); "
        f"quad pool {len(server.pits)} pit + {len(server.plain)} background quads, {server.pool_mb():.0f} MB encoded"
    )
    return total, km2


def print_triage_rows(rows: list[BenchRow], server: RegionTileServer, n_pits: int, args) -> None:
    """The triage bench's table: one line per run and mode, triage's ratios to the full scan, the 100k estimate."""
    total, km2 = print_region(rows, server, n_pits, args)
    z17 = args.triage_zoom
    print(
        f"run   mode        seconds  z18 covered/s  km²/hour  HTTP z{z17}  HTTP z18  z18 scanned  found ha  "
        "on pits ha  peak worker RSS MB  CPU s"
    )
    for r in rows:
        print(
            f"{r.run:5} {r.mode:10} {r.seconds:8.1f}  {total / r.seconds:13.1f}  {km2 / r.seconds * 3600:8.1f}  "
            f"{r.requests.get(z17, 0):8,}  {r.requests.get(ZOOM, 0):8,}  {r.z18_scanned:11,}  {r.found_ha:8.2f}  "
            f"{r.pit_ha:10.2f}  {r.rss_mb:18.0f}  {r.cpu_s:5.0f}"
        )
        if r.triage:
            print(
                f"      triage pass: {r.triage.triage.tiles_total:,} z{z17} tiles; kept {r.z18_scanned / total:.1%} of "
                f"the z{ZOOM} tiles (threshold {r.triage.triage_threshold:.4f}), {r.pits_scanned} of the {n_pits} "
                "pit-patch tiles"
            )
    figures = {(r.run, r.mode): r for r in rows}
    for (run, mode), t in figures.items():
        if t.triage is None:
            continue
        f = figures[run, "full z18"]
        pairs = {
            "km²/hour (= z18 covered/s)": (f.seconds, t.seconds),
            "HTTP requests": (sum(t.requests.values()), sum(f.requests.values())),
            "peak worker RSS": (t.rss_mb, f.rss_mb),
            "found ha": (t.found_ha, f.found_ha),
            "on pits ha": (t.pit_ha, f.pit_ha),
            "CPU s": (t.cpu_s, f.cpu_s),
        }
        print(
            f"{run} {mode} triage/full: "
            + ", ".join(f"{k} {a / b:.3f}" if b else f"{k} - ({a:g} against 0)" for k, (a, b) in pairs.items())
        )
    print_estimate(rows, total, args)


def print_estimate(rows: list[BenchRow], total: int, args, target: int = 100_000, cores: int = 2) -> None:
    """Wall time of the same bench at ``target`` tiles on ``cores`` quiet cores, from the runs' CPU seconds."""
    parts = [(f"{r.run} {r.mode}", r.cpu_s / total * target / cores) for r in rows]
    print(
        f"estimate at --tiles {target:,} on {cores} quiet cores (CPU s per tile x tiles / {cores}; fixed costs "
        "counted per tile too, so high on small regions): "
        + ", ".join(f"{name} {s / 60:.0f} min" for name, s in parts)
        + f"; the bench {sum(s for _, s in parts) / 3600:.1f} h"
    )


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=2048, help="tiles in the scanned AOI (default 2048)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--texty",
        type=Path,
        default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "texty-amber" / "tiles",
        help="folder of Texty whole images (optional)",
    )
    parser.add_argument("--enum-tiles", type=int, default=100_000, help="AOI size for the enumeration check")
    parser.add_argument(
        "--triage-zoom", type=int, choices=(ZOOM - 1,), default=None, help="bench scan --triage-zoom 17 against z18"
    )
    parser.add_argument(
        "--triage-context",
        nargs="+",
        choices=("exact", "coarse"),
        default=["exact", "coarse"],
        help="with --triage-zoom: the triage scans' --triage-context, each benched (default: both)",
    )
    parser.add_argument("--pit-share", type=float, default=0.02, help="with --triage-zoom: area share of pit fields")
    parser.add_argument(
        "--background",
        choices=sorted(BACKGROUNDS),
        default="mixed",
        help="with --triage-zoom: the ground around the pit fields. "
        + "; ".join(f"{k}: {v}" for k, v in BACKGROUNDS.items()),
    )
    args = parser.parse_args()
    if args.triage_zoom is not None:
        triage_bench(args)
        return

    pool = tile_pool(args.texty)
    server = PoolTileServer(pool)
    aoi = aoi_from_bbox(square_bbox(args.tiles))
    with tempfile.TemporaryDirectory(prefix="amberwatch-bench-") as tmp:
        db = Path(tmp) / "bench.db"
        settings = ScanSettings(workers=args.workers, progress=False)
        watcher = WorkerRSS()
        cold = run_scan(aoi, server.url, ZOOM, db, settings)
        http_requests = server.requests
        warm = run_scan(aoi, server.url, ZOOM, db, ScanSettings(workers=args.workers, progress=False, new=True))
        warm_fp32 = run_scan(
            aoi, server.url, ZOOM, db, ScanSettings(workers=args.workers, progress=False, new=True, int8=False)
        )
        warm_cnn = run_scan(
            aoi,
            server.url,
            ZOOM,
            db,
            ScanSettings(workers=args.workers, progress=False, new=True, model_path=str(BUNDLED_CNN_PATH)),
        )
        watcher.stop()
        assert server.requests == http_requests, "warm run fetched over HTTP"
        similar = similar_figures(db, warm.scan_id)
    server.stop()

    def rate(o) -> float:
        return o.tiles_processed_now / o.seconds

    km2_per_tile = cold.area_scanned_km2 / max(cold.tiles_done, 1)
    print(f"CPU kernels: {cpu_kernels()}")
    print(
        f"imagery: {'Texty crops' if args.texty.is_dir() else 'synthetic texture'}, {len(pool)} distinct PNG tiles; "
        f"workers={args.workers}; AOI {cold.tiles_total} z{ZOOM} tiles = {cold.area_scanned_km2:.2f} km²"
    )
    print(
        f"cold (HTTP from 127.0.0.1): {cold.seconds:6.2f} s  {rate(cold):7.1f} tiles/s  "
        f"{rate(cold) * km2_per_tile * 3600:8.1f} km²/hour  ({http_requests} HTTP requests)"
    )
    print(
        f"warm (tile cache, int8):    {warm.seconds:6.2f} s  {rate(warm):7.1f} tiles/s  "
        f"{rate(warm) * km2_per_tile * 3600:8.1f} km²/hour  (fetch {warm.counters['fetch_s']:.1f} s, "
        f"predict {warm.counters['predict_s']:.1f} s summed over workers)"
    )
    print(
        f"warm, pretrained --fp32:    {warm_fp32.seconds:6.2f} s  {rate(warm_fp32):7.1f} tiles/s  "
        f"{rate(warm_fp32) * km2_per_tile * 3600:8.1f} km²/hour  (predict {warm_fp32.counters['predict_s']:.1f} s)"
    )
    print(
        f"warm, CNN v1 (baseline):    {warm_cnn.seconds:6.2f} s  {rate(warm_cnn):7.1f} tiles/s  "
        f"{rate(warm_cnn) * km2_per_tile * 3600:8.1f} km²/hour  (predict {warm_cnn.counters['predict_s']:.1f} s)"
    )
    print(
        f"cold/warm time ratio: {cold.seconds / warm.seconds:.2f}; pretrained/CNN warm tiles/s: "
        f"{rate(warm) / rate(warm_cnn):.2f}; fp32/CNN: {rate(warm_fp32) / rate(warm_cnn):.2f}; "
        f"int8/fp32: {rate(warm) / rate(warm_fp32):.2f}"
    )
    cpu_ms = (warm.counters["worker_cpu_s"] + warm.counters.get("main_cpu_s", 0.0)) / warm.tiles_processed_now * 1e3
    load = os.getloadavg()[0]
    print(
        f"warm CPU per tile: {cpu_ms:.1f} ms (workers + writer); load average during the bench {load:.1f} on "
        f"{os.cpu_count()} cores -> on {args.workers} otherwise idle cores ~{args.workers * 1e3 / cpu_ms:.0f} tiles/s"
    )
    print(f"peak RSS of one scan worker process (sampled every 0.2 s): {watcher.peak_mb:.0f} MB")
    print(
        f"detections: cold {cold.detections} ({cold.detections_area_ha:.1f} ha), "
        f"warm int8 {warm.detections} ({warm.detections_area_ha:.1f} ha), fp32 {warm_fp32.detections} "
        f"({warm_fp32.detections_area_ha:.1f} ha), CNN {warm_cnn.detections} "
        f"({warm_cnn.detections_area_ha:.1f} ha)"
    )
    print(
        f"similarity search on the warm scan: {similar['tiles']:,} tile embeddings of {similar['bytes']} bytes "
        f"({similar['db_mb']:.2f} MB in the DB); load {similar['load_s'] * 1e3:.0f} ms, one query (index + rank "
        f"top 10) {similar['query_s'] * 1e3:.0f} ms"
    )
    for n in (args.enum_tiles // 10, args.enum_tiles):
        planned, enumerated, count_s, enum_s, base_mb, peak_mb = enumerate_in_subprocess(n)
        print(
            f"enumeration of a {planned:,}-tile AOI: dry-run count {count_s:.2f} s, streamed enumeration of "
            f"{enumerated:,} tiles {enum_s:.2f} s; peak RSS {peak_mb} MB (after imports {base_mb} MB)"
        )


if __name__ == "__main__":
    main()
