"""Which z18 tiles should triage keep? Keep rules compared offline on one bench region (RESULTS round 15).

Scans a ``bench/scan.py`` RegionTileServer region (Texty imagery, pit fields on ``--pit-share``, ``--background``
as in the bench) in full at z18 and
with the triage pass at z17 (both kept in ``--dir``, resumed when run again), then for each keep rule and threshold
counts what the fine pass would cost and keep, without running it:

- kept: z18 tiles the fine pass scans (share of the AOI's);
- compute: the pixels of the fine pass's block frames (each 8 x 8-tile square of the grid classifies the bounding
  box of its kept tiles plus a 160 px margin), plus the triage pass's, as a share of the full scan's frames;
- fetch: z18 tiles the fine pass reads (frames and their ring of one tile), plus the z17 tiles, as a share of the
  full scan's;
- found: the share of the full scan's detection hectares (all, and on pit-field tiles) inside the kept tiles.

``--run RING`` then runs the real fine pass with ring RING (cells) at the shipped threshold and prints its hectares.

    PYTHONPATH=src python scripts/experiments/triage_keep.py --tiles 4096 --pit-share 0.02 --dir /tmp/tk
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import mercantile
import numpy as np
from shapely.geometry import box, shape
from shapely.ops import unary_union

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from amberwatch.db import connect
from amberwatch.imagery.aoi import aoi_from_bbox
from amberwatch.model.modelfile import BUNDLED_TRIAGE_PATH
from amberwatch.results.store import TileRow, get_scan, latest_scan_id, query_detections, tiles_to_look_closer
from amberwatch.scan.engine import ScanSettings, run_scan
from amberwatch.scan.tiling import iter_tiles
from amberwatch.scan.triage import KeepRule, fine_tiles_near, hot_cells, kept_fine_tiles, run_triage_scan
from scan import BACKGROUNDS, RegionTileServer, region_is_pit, square_bbox

TILE, MARGIN_Z18, MARGIN_Z17, BLOCK = 256, 160, 96, 8
PORT = 18731


def frames(tiles: set[tuple[int, int]], margin_px: int) -> tuple[float, set[tuple[int, int]]]:
    """(pixels classified, tiles read) of a pass over ``tiles``: per 8 x 8 square, its tiles' bounding box + margin."""
    boxes: dict[tuple[int, int], list[int]] = {}
    for x, y in tiles:
        b = boxes.setdefault((x // BLOCK, y // BLOCK), [x, y, x, y])
        b[0], b[1], b[2], b[3] = min(b[0], x), min(b[1], y), max(b[2], x), max(b[3], y)
    pixels, reads = 0.0, set()
    for x0, y0, x1, y1 in boxes.values():
        pixels += ((x1 - x0 + 1) * TILE + 2 * margin_px) * ((y1 - y0 + 1) * TILE + 2 * margin_px)
        reads.update((x, y) for x in range(x0 - 1, x1 + 2) for y in range(y0 - 1, y1 + 2))
    return pixels, reads


def scans(args, server_url: str, aoi) -> tuple[Path, Path]:
    """The full z18 scan and the triage pass (run or resumed) -> their DBs."""
    settings = ScanSettings(workers=args.workers, progress=False)
    full, coarse = args.dir / "full.db", args.dir / "triage.db"
    t0 = time.perf_counter()
    run_scan(aoi, server_url, 18, full, settings)
    t1 = time.perf_counter()
    triage = replace(settings, model_path=str(BUNDLED_TRIAGE_PATH), triage={"key": "triage", "role": "triage"})
    run_scan(aoi, server_url, 17, coarse, triage)
    print(f"full z18 scan {t1 - t0:.0f} s, triage pass {time.perf_counter() - t1:.0f} s (resumed runs: ~0)")
    return full, coarse


def detections(db: Path, share: float, scan_id: int | None = None) -> tuple[list, float, float]:
    """A scan's detections (default: the DB's latest scan's) as (geometry, ha, on a pit tile) and the totals."""
    conn = connect(db)
    rows = query_detections(conn, scan_id=scan_id or latest_scan_id(conn))
    conn.close()
    out = []
    for d in rows:
        g = shape(json.loads(d.geometry_geojson))
        tiles = [(t.x, t.y) for t in mercantile.tiles(*g.bounds, 18)]
        out.append((g, d.area_ha, any(region_is_pit(x, y, share) for x, y in tiles)))
    return out, sum(d[1] for d in out), sum(d[1] for d in out if d[2])


def found_share(kept: set, found: list, on_pits: bool) -> float:
    """Share of the detections' hectares inside the kept tiles."""
    total = kept_ha = 0.0
    for g, ha, pit in found:
        if on_pits and not pit:
            continue
        tiles = [box(*mercantile.bounds(t.x, t.y, 18)) for t in mercantile.tiles(*g.bounds, 18) if (t.x, t.y) in kept]
        inside = g.intersection(unary_union(tiles)).area / g.area if tiles else 0.0
        total, kept_ha = total + ha, kept_ha + ha * inside
    return kept_ha / total if total else 1.0


def level_count(t: TileRow, threshold: float, g: int) -> int:
    """Cells of a triage tile that may reach the threshold."""
    return int((np.frombuffer(t.grid, np.uint8) >= threshold * 255 - 0.5).sum()) if t.grid else g * g


def keep_rules(rows: list[TileRow], threshold: float, g: int, args) -> list[tuple[str, set]]:
    """(name, kept z18 tiles) of each rule compared."""

    def near(tiles: list[TileRow], ring: int, whole: bool = False) -> set:
        tiles = [TileRow(t.z, t.x, t.y, "failed") for t in tiles] if whole else tiles
        return fine_tiles_near(*hot_cells(tiles, threshold, g), g, 1, 18, ring)

    out = [("tiles ring 1 (old)", near(rows, g, True)), ("tiles ring 0", near(rows, 0, True))]
    out += [(f"cells ring {r}", near(rows, r)) for r in args.rings]
    for k in (4, 8):
        dense = [t for t in rows if level_count(t, threshold, g) >= k]
        out.append((f">={k} cells, tiles ring 1", near(dense, g, True)))
        out.append((f">={k} cells, cells ring 16", near(dense, 16)))
    for seed in (0.1, 0.3):
        for seed_ring in (16, 24, 32):
            for r in (0, 2):
                rule = KeepRule(r, seed, seed_ring)
                out.append((rule.key(), set(kept_fine_tiles(rows, threshold, g, 17, 18, args.aoi, rule))))
    return out


def analyse(args, full_db: Path, coarse_db: Path, aoi) -> None:
    """Print one line per rule and threshold."""
    aoi18 = {(x, y) for _, x, y in iter_tiles(aoi.geometry, 18)}
    aoi17 = {(x, y) for _, x, y in iter_tiles(aoi.geometry, 17)}
    full_px, full_reads = frames(aoi18, MARGIN_Z18)
    tri_px, tri_reads = frames(aoi17, MARGIN_Z17)
    found, all_ha, pit_ha = detections(full_db, args.pit_share)
    pits = sum(region_is_pit(x, y, args.pit_share) for x, y in aoi18)
    conn = connect(coarse_db)
    scan = get_scan(conn, 1)  # the triage pass: scans() makes it first, before any fine pass
    g, shipped = scan.params.cells_per_tile, float(scan.model_threshold)
    print(
        f"AOI {len(aoi18):,} z18 tiles, pit tiles {pits} ({pits / len(aoi18):.1%}); full scan {len(found)} detections "
        f"{all_ha:.2f} ha, {pit_ha:.2f} on pit tiles; triage pass = {tri_px / full_px:.1%} of the full compute, "
        f"{len(tri_reads) / len(full_reads):.1%} of its reads; shipped threshold {shipped:.4f}"
    )
    print(
        "threshold  rule                        hot z17  false-alarm hot  kept z18  compute  reads  est. speedup  found"
    )
    for threshold in sorted({shipped, *args.thresholds}):
        rows = list(tiles_to_look_closer(conn, scan.id, threshold))
        hot17 = {(t.x, t.y) for t in rows}
        false = sum(
            not any(region_is_pit(2 * x + i, 2 * y + j, args.pit_share) for i in (0, 1) for j in (0, 1))
            for x, y in hot17
        )
        rules = keep_rules(rows, threshold, g, args)
        for name, kept in rules:
            kept = kept & aoi18
            px, reads = frames(kept, MARGIN_Z18)
            compute = (px + tri_px) / full_px
            print(
                f"{threshold:9.4f}  {name:30} {len(hot17) / len(aoi17):6.1%}  {false / max(len(hot17), 1):15.1%}  "
                f"{len(kept) / len(aoi18):8.1%}  {compute:7.1%}  {(len(reads) + len(tri_reads)) / len(full_reads):5.1%}"
                f"  {1 / compute:12.2f}  {found_share(kept, found, False):9.1%}  {found_share(kept, found, True):5.1%}"
            )
    conn.close()


def main() -> None:
    """Scan (or resume), analyse, and optionally run real fine passes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=4096)
    parser.add_argument("--pit-share", type=float, default=0.02)
    parser.add_argument("--background", choices=sorted(BACKGROUNDS), default="mixed", help="as in bench/scan.py")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--texty", type=Path, default=Path(__file__).resolve().parents[3] / "shared/data/texty-amber")
    parser.add_argument("--thresholds", type=float, nargs="*", default=[0.03, 0.1, 0.3])
    parser.add_argument("--rings", type=int, nargs="*", default=[0, 2, 16, 24])
    parser.add_argument("--run", nargs="*", default=[], help="keep rules of real fine passes to run: '[2, 0.3, 24]'")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    server = RegionTileServer(args.texty, args.pit_share, args.background, port=PORT)
    aoi = args.aoi = aoi_from_bbox(square_bbox(args.tiles))
    full_db, coarse_db = scans(args, server.url, aoi)
    analyse(args, full_db, coarse_db, aoi)
    _, all_ha, pit_ha = detections(full_db, args.pit_share)
    for run in args.run:
        rule = KeepRule(*json.loads(run))
        t0 = time.perf_counter()
        settings = ScanSettings(workers=args.workers, progress=False)
        both = run_triage_scan(aoi, server.url, 18, coarse_db, settings, triage_zoom=17, rule=rule, context="exact")
        _, mine_ha, mine_pits = detections(coarse_db, args.pit_share, both.fine.scan_id)
        print(
            f"fine pass {rule.key()}: {both.fine_tiles_kept} tiles kept, {time.perf_counter() - t0:.0f} s, "
            f"{both.fine.detections_area_ha:.2f} ha ({both.fine.detections_area_ha / all_ha:.1%} of the full scan's), "
            f"on pit tiles {mine_pits:.2f} ({mine_pits / pit_ha:.1%}); stored {mine_ha:.2f} ha"
        )
    server.stop()


if __name__ == "__main__":
    main()
