"""Benchmark ``amberwatch timeline``'s matching: 3 imagery dates of ~100,000 tiles with ~5,000 detections each.

Writes a synthetic project DB through ``results.store`` in a temp folder: three finished scans of one AOI at zoom 18
(a square block of ``--tiles`` done tiles each) whose detections are small boxes around ``--sites`` places: each
place is found at a date with some chance, growing or shrinking a little, and a share of them split in two. Then,
in a fresh process (so its peak RSS is the matching's alone), times ``results.timeline.load_timeline`` (reading the
scans, tiles and detections, matching, statuses) and reports the peak RSS over the process's start.

Baseline, measured in the same run: a naive all-pairs overlap test (every outline of one date against every outline
of another, shapely scalar ``intersects``) on a ``--subset`` of each date's detections, extrapolated to the full
counts by the square of the ratio.

Usage: python bench/timeline.py [--tiles 100000] [--sites 5000] [--subset 500] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from shapely.geometry import box, mapping

from amberwatch.db import connect
from amberwatch.imagery.tiles import world_px_to_lnglat
from amberwatch.results.records import ScanParams
from amberwatch.results.store import (
    DetectionRow,
    NewScan,
    TileRow,
    create_scan,
    ensure_schema,
    replace_detections,
    set_scan_status,
    write_tiles,
)

ZOOM, X0, Y0 = 18, 149_000, 86_000  # around 24.6 E, 51.5 N
DATES = ("2019-06-26", "2021-06-26", "2023-06-26")
AOI = '{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}'  # one AOI text shared by the three scans


def _boxes(rng: np.random.Generator, side_tiles: int, sites: int, date_index: int) -> list[tuple[object, float]]:
    """(lon/lat box, hectares) of the detections at one date: places kept with p=0.85, 10 % of them split."""
    place_rng = np.random.default_rng(12345)  # the places are the same at every date
    centres = place_rng.uniform(8, side_tiles * 256 - 8, size=(sites, 2))
    sizes = place_rng.uniform(6, 40, size=sites)  # half sides in zoom-18 pixels (~0.6 m): 7 to 50 m fields
    out = []
    for (cx, cy), half in zip(centres, sizes, strict=True):
        if rng.random() > 0.85:
            continue
        h = half * (1 + 0.15 * date_index * rng.uniform(-1, 1))
        parts = [(cx - h, cx - h * 0.05), (cx + h * 0.05, cx + h)] if rng.random() < 0.1 else [(cx - h, cx + h)]
        for x_lo, x_hi in parts:
            geom = _lonlat_box(X0 * 256 + x_lo, Y0 * 256 + cy - h, X0 * 256 + x_hi, Y0 * 256 + cy + h)
            out.append((geom, (x_hi - x_lo) * 2 * h * 0.36 / 10_000))  # ~0.6 m pixels at this latitude
    return out


def _lonlat_box(px0: float, py0: float, px1: float, py1: float):
    west, north = world_px_to_lnglat(px0, py0, ZOOM)
    east, south = world_px_to_lnglat(px1, py1, ZOOM)
    return box(west, south, east, north)


def _row(geom, area_ha: float) -> DetectionRow:
    c = geom.centroid
    return DetectionRow(json.dumps(mapping(geom)), c.x, c.y, geom.bounds, area_ha, 0.9, 0.95, None, "1", None)


def build(db: Path, tiles: int, sites: int, seed: int) -> list[list[tuple[object, float]]]:
    """Write the three scans; returns each date's (geometry, hectares)."""
    side = math.isqrt(tiles)
    rng, conn, layers = np.random.default_rng(seed), connect(db), []
    ensure_schema(conn)
    grid = [TileRow(ZOOM, X0 + i, Y0 + j, "done", grid_cells=16) for j in range(side) for i in range(side)]
    for k, date in enumerate(DATES):
        new = NewScan(date, AOI, "bench", f"bench@{date}", ZOOM, "1", 0.5, ScanParams(), len(grid), None, date)
        scan_id = create_scan(conn, new)
        write_tiles(conn, scan_id, grid)
        found = _boxes(rng, side, sites, k)
        replace_detections(conn, scan_id, [_row(g, a) for g, a in found])
        set_scan_status(conn, scan_id, "finished")
        layers.append(found)
    conn.close()
    return layers


def naive_seconds(layers: list[list[tuple[object, float]]], subset: int) -> tuple[float, int]:
    """Seconds of an all-pairs intersects test over ``subset`` outlines per date, and the pairs tested."""
    parts = [[g for g, _ in layer[:subset]] for layer in layers]
    start, pairs, overlapping = time.perf_counter(), 0, 0
    for a in range(len(parts)):
        for b in range(a + 1, len(parts)):
            for ga in parts[a]:
                for gb in parts[b]:
                    overlapping += ga.intersects(gb) and ga.intersection(gb).area > 0
            pairs += len(parts[a]) * len(parts[b])
    return time.perf_counter() - start, pairs


def match(db: str) -> None:
    """Child process: time load_timeline on the DB, print seconds, sites and peak RSS growth as JSON."""
    from amberwatch.results.timeline import load_timeline

    before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    conn = connect(db)
    start = time.perf_counter()
    t = load_timeline(conn, {})
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    statuses = {s: sum(1 for x in t.sites if x.status == s) for s in sorted({x.status for x in t.sites})}
    print(
        json.dumps(
            {
                "seconds": seconds,
                "sites": len(t.sites),
                "statuses": statuses,
                "peak_mib": peak_kib / 1024,
                "growth_mib": (peak_kib - before_kib) / 1024,
            }
        )
    )


def main() -> None:
    """Build the DB, run the matching in a child process, run the naive baseline, print both."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=100_000)
    ap.add_argument("--sites", type=int, default=5_000)
    ap.add_argument("--subset", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--match", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.match:
        match(args.match)
        return
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        start = time.perf_counter()
        layers = build(db, args.tiles, args.sites, args.seed)
        counts = [len(x) for x in layers]
        print(
            f"wrote 3 scans of {math.isqrt(args.tiles) ** 2:,} tiles, detections {counts} "
            f"in {time.perf_counter() - start:.1f} s"
        )
        child = subprocess.run(
            [sys.executable, __file__, "--match", str(db)], capture_output=True, text=True, check=True
        )
        r = json.loads(child.stdout)
        print(
            f"timeline (STRtree + connected components, reading included): {r['seconds']:.2f} s, "
            f"{r['sites']:,} sites {r['statuses']}, peak RSS {r['peak_mib']:.0f} MiB "
            f"(+{r['growth_mib']:.0f} MiB over the process's start)"
        )
        seconds, pairs = naive_seconds(layers, args.subset)
        full_pairs = counts[0] * counts[1] + counts[0] * counts[2] + counts[1] * counts[2]
        print(
            f"baseline, naive all-pairs overlap: {pairs:,} pairs in {seconds:.3f} s on {args.subset} per date; "
            f"extrapolated to {full_pairs:,} pairs: {seconds * full_pairs / pairs:.1f} s (matching only)"
        )


if __name__ == "__main__":
    main()
