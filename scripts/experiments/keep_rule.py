"""Keep rules and free tiles of the fine pass after triage, counted on finished scans (RESULTS round 19).

With exact fine-pass grids (round 17) the fine pass finds the full scan's detections built from the kept tiles'
grids alone, so each keep rule is judged offline from a full z18 scan and a triage pass of the same region:

- kept: the rule's tiles (``triage.kept_fine_tiles``); free: the tiles ``worker.with_free_tiles`` adds (their grids
  come with the kept tiles' backbone passes and reads);
- pixels / reads: the backbone passes' input pixels and the z18 tiles read (``worker.block_passes``, ``pass_tiles``
  and the kept tiles' ring), over the full scan's; the widened set must add none;
- found: hectares of the detections built from the full scan's grids of the kept (or kept + free) tiles, all and on
  the pit fields, against the full scan's.

Two regions: ``--dir`` holds ``triage_keep.py``'s 4,096-tile bench region (``full.db``, ``triage.db`` whose scan 1
is the triage pass, ``full-tiles.sqlite``); ``--served DIR`` builds ``tests/scan/test_triage.py``'s served pyramid
and runs (or resumes) its full scan and triage pass there. ``--check`` classifies the widened tiles again and
compares their grids with the full scan's.

    PYTHONPATH=src:. python scripts/experiments/keep_rule.py --dir /tmp/tk4096 --check
    PYTHONPATH=src:. python scripts/experiments/keep_rule.py --served /tmp/kr-served --misses
"""

from __future__ import annotations

import argparse
import json
import tempfile
import zlib
from dataclasses import replace
from pathlib import Path

import mercantile
import numpy as np
from shapely.geometry import box
from shapely.ops import unary_union

from amberwatch.db import connect
from amberwatch.imagery.aoi import aoi_from_geojson
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.sources import open_cached_source
from amberwatch.imagery.types import ImageryRef
from amberwatch.model.modelfile import BUNDLED_TRIAGE_PATH, load
from amberwatch.results.detections import find_detections
from amberwatch.results.store import NewScan, create_scan, ensure_schema, get_scan, scan_tiles_at, tiles_to_look_closer
from amberwatch.scan import worker
from amberwatch.scan.engine import ScanSettings, run_scan, scan_context
from amberwatch.scan.tiling import iter_units
from amberwatch.scan.triage import KeepRule, kept_fine_tiles

RULES = [(2, 0.3, 32), (2, 0.3, 24), (2, 0.3, 16), (2, 0.1, 24), (2, 0.1, 32), (4, 0.3, 24), (8, 0.3, 24)]


def served(out: Path) -> tuple[Path, Path, set]:
    """The served pyramid's full scan and triage pass (run or resumed) -> (full DB, triage DB, pit tiles)."""
    from tests.fixtures.tileserver import TileServer
    from tests.scan.test_triage import CENTER, TEXTY, bbox_arg, build_region, tiles_bbox

    from amberwatch.imagery.aoi import aoi_from_bbox

    out.mkdir(parents=True, exist_ok=True)
    server = TileServer().start()
    t = mercantile.tile(*CENTER, 18)
    region = build_region(TEXTY, t.x & ~1, t.y & ~1)
    server.tiles.update(region.tiles)
    aoi = aoi_from_bbox(bbox_arg(tiles_bbox(region.x0, region.y0, region.side, region.side)))
    settings = ScanSettings(workers=2, progress=False)
    run_scan(aoi, server.url, 18, out / "full.db", settings)
    triage = replace(settings, model_path=str(BUNDLED_TRIAGE_PATH), triage={"key": "triage", "role": "triage"})
    run_scan(aoi, server.url, 17, out / "triage.db", triage)
    server.stop()
    return out / "full.db", out / "triage.db", set(region.pit_tiles)


def bench_pits(share: float = 0.02):
    """triage_keep.is_pit (the RegionTileServer's hash), as a test of a z18 tile."""
    return lambda x, y: zlib.crc32(f"{x // 4},{y // 4}".encode()) % 10_000 < share * 10_000


def found(full, rows_by_xy: dict, tiles: set, pit_tiles: set) -> tuple[float, float, list]:
    """Hectares of the detections built from the full scan's grids of ``tiles`` alone -> (all, on pits, geoms)."""
    with tempfile.TemporaryDirectory() as tmp:
        conn = connect(Path(tmp) / "p.db")
        ensure_schema(conn)
        new = NewScan(
            "x",
            full.aoi_geojson,
            full.imagery,
            full.imagery_source_id,
            full.zoom,
            full.model_version,
            full.model_threshold,
            full.params,
            len(tiles),
        )
        sid = create_scan(conn, new, [rows_by_xy[t] for t in tiles if t in rows_by_xy])
        dets = find_detections(conn, sid, min_area_ha=full.params.min_area_ha)
        conn.close()
    fields = unary_union([box(*mercantile.bounds(x, y, 18)) for x, y in pit_tiles])
    on_pits = [d for d in dets if d.geometry.intersects(fields)]  # as tests/scan/test_triage.py counts them
    return sum(d.area_ha for d in dets), sum(d.area_ha for d in on_pits), dets


def cost(aoi, tiles: set, context, clf) -> tuple[int, set]:
    """(backbone input pixels, z18 tiles read) of a fine pass over ``tiles``, framed as the full scan's."""
    pixels, reads = 0, set()
    for unit in iter_units(aoi, context.zoom):
        todo = tuple(t for t in unit.tiles if t in tiles)
        if not todo:
            continue
        for block, mine in worker.unit_blocks(unit, todo, context.block_tiles).items():
            passes = worker.block_passes(block, mine, context, clf)
            pixels += sum((p.reads[1] - p.reads[0]) * (p.reads[3] - p.reads[2]) for p in passes)
            reads |= worker.pass_tiles(block, passes, context)
            reads.update(nb for x, y in mine for nb in worker.neighbours(x, y, context.zoom, context.ring_tiles))
    return pixels, reads


def misses(
    full_rows: dict, kept: set, coarse: list, threshold: float, seed: float, z18_threshold: float, pit_test
) -> None:
    """The full scan's cells at its threshold outside the kept tiles: where, and what triage scored there and nearby.

    A z17 cell covers 2 x 2 z18 cells (16 cells per tile at both zooms): z18 cell (X, Y) lies in z17 cell
    (X // 2, Y // 2); distances are in z17 cells, as the keep rule's rings."""
    level = int(np.ceil(z18_threshold * 255 - 1e-9))
    tri = {}
    for t in coarse:
        g = int(t.grid_cells or 16)
        grid = np.frombuffer(t.grid, np.uint8).reshape(g, g) if t.grid else np.full((g, g), 255, np.uint8)
        for r, c in zip(*np.nonzero(grid >= 0), strict=True):
            tri[(t.x * g + int(c), t.y * g + int(r))] = grid[r, c] / 255
    hot_xy = np.array([k for k, v in tri.items() if v >= threshold - 0.5 / 255] or [(0, 0)])
    seed_xy = np.array([k for k, v in tri.items() if v >= seed - 0.5 / 255] or [(0, 0)])
    for (x, y), row in sorted(full_rows.items()):
        if (x, y) in kept or row.grid is None:
            continue
        g = int(row.grid_cells)
        grid = np.frombuffer(row.grid, np.uint8).reshape(g, g)
        for r, c in np.argwhere(grid >= level):
            cx, cy = (x * g + int(c)) // 2, (y * g + int(r)) // 2
            d_hot = int(np.abs(hot_xy - (cx, cy)).max(axis=1).min())
            d_seed = int(np.abs(seed_xy - (cx, cy)).max(axis=1).min())
            print(
                f"  missed z18 cell ({r}, {c}) of tile ({x}, {y}){' (pit tile)' if pit_test(x, y) else ''}: "
                f"{grid[r, c] / 255:.3f}; triage there "
                f"{tri.get((cx, cy), 0.0):.4f} {d_hot} cells from a cell >= "
                f"{threshold:.3f}, {d_seed} from a seed >= {seed}"
            )


def read_scans(full_db: Path, triage_db: Path) -> tuple:
    """The full z18 scan and its tile rows by (x, y); the triage pass, its threshold, cells per tile, hot tiles and
    z17 rows by (x, y): scan 1 of each database."""
    conn = connect(full_db)
    full = get_scan(conn, 1)
    full_rows = {(t.x, t.y): t for t in scan_tiles_at(conn, 1, 18)}
    conn.close()
    conn = connect(triage_db)
    coarse = get_scan(conn, 1)
    threshold, g17 = float(coarse.model_threshold), int(coarse.params.cells_per_tile)
    hot = list(tiles_to_look_closer(conn, coarse.id, threshold))
    coarse_rows = {(t.x, t.y): t for t in scan_tiles_at(conn, coarse.id, 17)}
    conn.close()
    return full, full_rows, coarse, threshold, g17, hot, coarse_rows


def main() -> None:
    """Count each rule on a region."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--served", type=Path)
    parser.add_argument("--rules", nargs="*", default=[json.dumps(r) for r in RULES])
    parser.add_argument("--check", action="store_true", help="classify the widened tiles again, compare grids")
    parser.add_argument("--misses", action="store_true", help="list the pit cells each rule leaves out")
    args = parser.parse_args()
    if args.served:
        full_db, triage_db, pits = served(args.served)
        pit_test = lambda x, y: (x, y) in pits  # noqa: E731
    else:
        full_db, triage_db, pit_test = args.dir / "full.db", args.dir / "triage.db", bench_pits()
    full, full_rows, coarse, threshold, g17, hot, coarse_rows = read_scans(full_db, triage_db)
    aoi = aoi_from_geojson(json.loads(full.aoi_geojson))
    clf = load(full.params.model_path)
    cache_path = str(Path(full_db).with_name("full-tiles.sqlite"))
    context = scan_context(
        clf,
        imagery=ImageryRef(f"cache:{full.imagery_source_id}"),
        cache_path=cache_path,
        model_path=full.params.model_path,
        model_version=full.model_version,
        zoom=18,
        tile_res_m_per_px=float(full.params.tile_resolution_m_per_px),
        int8=bool(full.params.int8),
    )
    all_tiles = set(full_rows)
    full_px, full_reads = cost(aoi.geometry, all_tiles, context, clf)
    pit_tiles = {t for t in all_tiles if pit_test(*t)}
    all_ha, pit_ha, _ = found(full, full_rows, all_tiles, pit_tiles)
    coarse_clf = load(coarse.params.model_path)
    coarse_context = scan_context(
        coarse_clf,
        imagery=ImageryRef("unused"),
        cache_path=cache_path,
        model_path=coarse.params.model_path,
        model_version=coarse.model_version,
        zoom=17,
        tile_res_m_per_px=float(coarse.params.tile_resolution_m_per_px),
    )
    triage_px, _ = cost(aoi.geometry, set(coarse_rows), coarse_context, coarse_clf)
    print(f"triage pass: {triage_px / full_px:.1%} of the full scan's pixels")
    print(
        f"{len(all_tiles)} z18 tiles; full scan {all_ha:.3f} ha, {pit_ha:.3f} on pit fields; {len(full_reads)} reads;"
        f" triage threshold {threshold:.4f}, {len(hot)} hot z17 tiles of {len(coarse_rows)}"
    )
    for text in args.rules:
        rule = KeepRule(*json.loads(text))
        kept = set(kept_fine_tiles(hot, threshold, g17, 17, 18, aoi, rule))
        wide = set(worker.with_free_tiles(aoi.geometry, frozenset(kept), context, clf))
        for name, tiles in (("kept", kept), ("kept+free", wide)):
            px, reads = cost(aoi.geometry, tiles, context, clf)
            ha, pits_ha, _ = found(full, full_rows, tiles, pit_tiles)
            print(
                f"{rule.key():28} {name:9} {len(tiles):5} tiles ({len(tiles) / len(all_tiles):5.1%}); pixels "
                f"{px / full_px:5.1%}, reads {len(reads) / len(full_reads):5.1%} ({len(reads)}); found {ha:.3f} ha "
                f"({ha / all_ha:6.1%}), pits {pits_ha:.3f} ({pits_ha / pit_ha:6.1%})",
                flush=True,
            )
        if args.misses:
            misses(full_rows, wide, list(coarse_rows.values()), threshold, rule.seed_threshold, clf.threshold, pit_test)
        if args.check:
            check(aoi.geometry, wide, full_rows, context, clf, full)


def check(aoi, tiles: set, full_rows: dict, context, clf, full) -> None:
    """Classify ``tiles`` again from the cache as the fine pass does; count grids equal to the full scan's."""
    cache = TileCache(context.cache_path)
    worker.remember_source(context, cache, open_cached_source(cache, str(full.imagery_source_id)))
    worker.remember_model(context.model_path, context.model_version, clf, context.int8)
    same = total = 0
    for unit in iter_units(aoi, context.zoom):
        todo = tuple(t for t in unit.tiles if t in tiles)
        if todo:
            for t in worker.process_unit(unit, context, todo).tiles:
                total += 1
                same += t.grid == full_rows[(t.x, t.y)].grid
    print(f"  check: {same} of {total} grids equal to the full scan's", flush=True)


if __name__ == "__main__":
    main()
