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

``--triage-zoom 17`` benches ``scan --triage-zoom 17`` against the full z18 scan instead, in one run, cold and warm,
on a consistent pyramid (``RegionTileServer``: z18 tiles from the Texty whole images and negative crops, pit fields
in 4 x 4-tile patches on about ``--pit-share`` of the area, z17 tiles their children halved): z18 tiles covered per
second, km²/hour, HTTP requests, found hectares and peak worker RSS of each.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import mercantile
import numpy as np
import psutil
from PIL import Image

from amberwatch.imagery.aoi import aoi_from_bbox
from amberwatch.imagery.decode import encode_png
from amberwatch.model import BUNDLED_CNN_PATH
from amberwatch.scan.engine import ScanSettings, run_scan

HALVED_KEPT = 4096  # coarser tiles the region server keeps built (memory stays bounded on any region)
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
            img = sources[i % len(sources)]
            r = rng.integers(0, img.shape[0] - 256)
            c = rng.integers(0, img.shape[1] - 256)
            tile = img[r : r + 256, c : c + 256]
            if rng.random() < 0.5:
                tile = tile[:, ::-1]
            if rng.random() < 0.5:
                tile = tile[::-1]
        else:
            base = rng.normal(100, 25, (32, 32, 3)).clip(0, 255).astype(np.uint8)
            tile = np.asarray(Image.fromarray(base).resize((256, 256), Image.Resampling.BICUBIC))
            tile = (tile.astype(np.int16) + rng.integers(-12, 12, tile.shape)).clip(0, 255).astype(np.uint8)
        pool.append(encode_png(np.ascontiguousarray(tile)))
    return pool


class PoolTileServer:
    """Serves /{z}/{x}/{y}.png from a small pool of PNGs (tile chosen by a hash of x, y)."""

    def __init__(self, pool: list[bytes], port: int = 0) -> None:
        self.pool = pool
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.requests += 1
                try:
                    z, x, y = self.path.strip("/").split(".")[0].split("/")[-3:]
                    body = server.tile_bytes(int(z), int(x), int(y))
                    status = 200
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


class RegionTileServer(PoolTileServer):
    """A synthetic region with pit fields on about ``pit_share`` of its area, consistent across zooms: each z18 tile
    is a no-pit tile (Texty negatives) or, in 4 x 4-tile patches chosen by a hash, a crop of a positive whole image;
    a tile at a coarser zoom is its four children halved (imagery.pyramid's halving), as a real server's is."""

    def __init__(self, texty: Path, pit_share: float = 0.02, seed: int = 0, port: int = 0) -> None:
        self.pits = tile_pool(texty / "tiles", size=16, seed=seed, names=("positive1", "positive2"))
        self.plain = tile_pool(texty / "tiles", size=32, seed=seed, names=("negative1", "negative2"))
        self.plain += negative_crop_tiles(texty / "negative", 8)  # look-alikes on 1 tile in 5
        self.pit_share = pit_share
        self.pit_tiles_served = 0
        self._lock = threading.Lock()
        self._halved: OrderedDict[tuple[int, int, int], bytes] = OrderedDict()  # the latest HALVED_KEPT, for memory
        super().__init__(self.plain, port)

    def is_pit(self, x: int, y: int) -> bool:
        """Whether z18 tile (x, y) lies in a pit patch (4 x 4 tiles, on about pit_share of the area)."""
        return zlib.crc32(f"{x // 4},{y // 4}".encode()) % 10_000 < self.pit_share * 10_000

    def tile_bytes(self, z: int, x: int, y: int) -> bytes:
        """The PNG of tile (z, x, y): a z18 tile, or its children halved for each zoom above."""
        if z >= ZOOM:
            pool = self.pits if self.is_pit(x, y) else self.plain
            return pool[(x * 7919 + y * 104729) % len(pool)]
        key = (z, x, y)
        with self._lock:
            if key in self._halved:
                self._halved.move_to_end(key)
                return self._halved[key]
        from amberwatch.imagery.pyramid import halve_straight

        kids = {(dx, dy): self.tile_bytes(z + 1, 2 * x + dx, 2 * y + dy) for dx in (0, 1) for dy in (0, 1)}
        images = {k: Image.open(io.BytesIO(v)).convert("RGBA") for k, v in kids.items()}
        body = encode_png(np.asarray(halve_straight(images).convert("RGB")))
        with self._lock:
            self._halved[key] = body
            while len(self._halved) > HALVED_KEPT:
                self._halved.popitem(last=False)
        return body


def negative_crop_tiles(folder: Path, n: int) -> list[bytes]:
    """PNG tiles of the n largest Texty negative crops (reflected out to 256 px when smaller)."""
    paths = sorted(folder.glob("*.png"), key=lambda p: -min(Image.open(p).size))[:n]
    out = []
    for p in paths:
        chip = np.asarray(Image.open(p).convert("RGB"))
        pad_y, pad_x = max(0, 256 - chip.shape[0]), max(0, 256 - chip.shape[1])
        chip = np.pad(chip, ((pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2), (0, 0)), "symmetric")
        out.append(encode_png(np.ascontiguousarray(chip[:256, :256])))
    return out


def triage_bench(args) -> None:
    """Full z18 against scan --triage-zoom, cold (fresh cache) then warm, on one RegionTileServer."""
    from amberwatch.scan.triage import run_triage_scan

    server = RegionTileServer(args.texty.parent, args.pit_share)
    aoi = aoi_from_bbox(square_bbox(args.tiles))
    rows = []
    started = time.perf_counter()

    def say(msg: str) -> None:
        print(f"[{time.perf_counter() - started:7.0f} s] {msg}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="amberwatch-bench-") as tmp:
        for run in ("cold", "warm"):
            for mode in ("full z18", f"triage z{args.triage_zoom}"):
                say(f"{run} {mode}")
                db = Path(tmp) / f"{mode.split()[0]}.db"
                settings = ScanSettings(workers=args.workers, progress=sys.stderr.isatty(), new=True)
                before, watcher, t0 = server.requests, WorkerRSS(), time.perf_counter()
                if mode.startswith("full"):
                    out, z18 = run_scan(aoi, server.url, ZOOM, db, settings, on_event=say), None
                else:
                    both = run_triage_scan(
                        aoi, server.url, ZOOM, db, settings, triage_zoom=args.triage_zoom, on_event=say
                    )
                    out, z18 = both.fine, both
                seconds = time.perf_counter() - t0
                watcher.stop()
                rows.append((run, mode, out, z18, seconds, server.requests - before, watcher.peak_mb))
    server.stop()
    print_triage_rows(rows, server, args)


def print_triage_rows(rows: list, server: RegionTileServer, args) -> None:
    """The triage bench's table: one line per run and mode, then triage's ratios to the full scan per run."""
    total = rows[0][2].tiles_total
    km2 = rows[0][2].area_scanned_km2
    from amberwatch.scan.tiling import iter_tiles

    aoi = aoi_from_bbox(square_bbox(args.tiles))
    pits = sum(server.is_pit(x, y) for _, x, y in iter_tiles(aoi.geometry, ZOOM))
    print(f"CPU kernels: {cpu_kernels()}; workers={args.workers}; load average {os.getloadavg()[0]:.1f}")
    print(
        f"region: {total:,} z{ZOOM} tiles = {km2:.2f} km², pit-field tiles {pits:,} ({pits / total:.1%} of the area; "
        f"asked {args.pit_share:.1%})"
    )
    print(
        "run   mode        seconds  z18 tiles covered/s  km²/hour  HTTP requests  z18 tiles scanned  found ha  "
        "peak worker RSS MB"
    )
    figures = {}
    for run, mode, out, both, seconds, requests, rss in rows:
        scanned = both.fine_tiles_kept if both else out.tiles_total
        figures[run, bool(both)] = (total / seconds, km2 / seconds * 3600, requests, rss, out.detections_area_ha)
        print(
            f"{run:5} {mode:10} {seconds:8.1f}  {total / seconds:19.1f}  {km2 / seconds * 3600:8.1f}  "
            f"{requests:13,}  {scanned:17,}  {out.detections_area_ha:8.2f}  {rss:18.0f}"
        )
        if both:
            print(
                f"      triage pass: {both.triage.tiles_total:,} z{args.triage_zoom} tiles; kept {scanned / total:.1%} "
                f"of the z{ZOOM} tiles (threshold {both.triage_threshold:.4f})"
            )
    names = ("z18 tiles covered/s", "km²/hour", "HTTP requests", "peak worker RSS", "found ha")
    for run in ("cold", "warm"):
        ratios = [t / f if f else float("nan") for t, f in zip(figures[run, True], figures[run, False], strict=True)]
        print(f"{run} triage/full: " + ", ".join(f"{n} {r:.2f}" for n, r in zip(names, ratios, strict=True)))


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
    parser.add_argument("--triage-zoom", type=int, default=None, help="bench scan --triage-zoom (17) against z18")
    parser.add_argument("--pit-share", type=float, default=0.02, help="with --triage-zoom: area share of pit fields")
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
