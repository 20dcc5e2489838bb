"""Where the fine pass after triage spends its pixels, and whether its kept tiles get the full scan's grids
(RESULTS round 17).

Reuses the scans ``triage_keep.py`` leaves in its ``--dir`` (``full.db``: the full z18 scan, ``triage.db``: the
triage pass and the fine passes run with ``--run``) and the full scan's tile cache, read from the cache alone.
For each fine pass's kept tiles it classifies them again in one process two ways and compares every kept tile's
grid with the full scan's:

- ``cut``: units cut to the kept tiles, so each 8 x 8 square frames the bounding box of its kept tiles (round 15);
- ``full``: units framed as the full scan's, only the model's backbone passes the kept tiles' cells need run
  (``worker.block_passes``), only the tiles those passes read read (the engine since round 17).

Counts, not timings: pixels = the backbone passes' input pixels (halos included), over the full scan's; reads =
tile reads, over the full scan's; same = kept tiles whose grid equals the full scan's byte for byte.

    PYTHONPATH=src python scripts/experiments/finepass_frames.py --dir /tmp/tk4096 --scans 2 4 3
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from shapely.geometry import shape

from amberwatch.db import connect
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.sources import open_cached_source
from amberwatch.imagery.types import ImageryRef
from amberwatch.model.modelfile import load
from amberwatch.results.store import get_scan, scan_tiles_at
from amberwatch.scan import worker
from amberwatch.scan.engine import scan_context
from amberwatch.scan.tiling import iter_units


def grids(db: Path, scan_id: int) -> dict[tuple[int, int], np.ndarray]:
    """A scan's done tiles' grids."""
    conn = connect(db)
    rows = scan_tiles_at(conn, scan_id, get_scan(conn, scan_id).zoom)
    conn.close()
    return {(t.x, t.y): np.frombuffer(t.grid, np.uint8) for t in rows if t.status == "done"}


def run(context, aoi, delta: int, kept: set, framing: str, clf) -> tuple[dict, int, int]:
    """Classify the kept tiles -> (grids, backbone input pixels, tiles read)."""
    out, pixels, reads = {}, 0, set()
    for unit in iter_units(aoi, context.zoom, unit_zoom_delta=delta):
        todo = tuple(t for t in unit.tiles if t in kept)
        if not todo:
            continue
        if framing == "cut":
            unit = replace(unit, tiles=todo)
        for block, tiles in worker.unit_blocks(unit, todo, context.block_tiles).items():
            passes = worker.block_passes(block, tiles, context, clf)
            if framing == "cut":  # round 15's engine ran every pass of the kept tiles' bounding box
                t, m = context.tile_px, context.margin_px
                passes = clf.scan_passes(block.ny * t + 2 * m, block.nx * t + 2 * m)
                reads.update(worker.block_frame_tiles(block, context))
            else:
                reads.update(worker.pass_tiles(block, passes, context))
                reads.update(nb for x, y in tiles for nb in worker.neighbours(x, y, context.zoom, context.ring_tiles))
            pixels += sum((p.reads[1] - p.reads[0]) * (p.reads[3] - p.reads[2]) for p in passes)
        result = worker.process_unit(unit, context, todo)
        out.update({(t.x, t.y): np.frombuffer(t.grid, np.uint8) for t in result.tiles if t.status == "done"})
    return out, pixels, len(reads)


def frame_counts(context, aoi, delta: int, clf) -> tuple[int, int]:
    """The full scan's backbone input pixels and tile reads."""
    pixels, reads = 0, set()
    for unit in iter_units(aoi, context.zoom, unit_zoom_delta=delta):
        for block in worker.unit_blocks(unit, unit.tiles, context.block_tiles):
            t, m = context.tile_px, context.margin_px
            passes = clf.scan_passes(block.ny * t + 2 * m, block.nx * t + 2 * m)
            pixels += sum((p.reads[1] - p.reads[0]) * (p.reads[3] - p.reads[2]) for p in passes)
            reads.update(worker.block_frame_tiles(block, context))
    return pixels, len(reads)


def main() -> None:
    """Compare both framings for each fine pass."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--scans", type=int, nargs="+", default=[2, 4, 3])
    parser.add_argument("--framings", nargs="+", default=["full", "cut"])
    parser.add_argument("--check-full", action="store_true", help="classify the whole AOI again and compare")
    args = parser.parse_args()
    full_db, triage_db = args.dir / "full.db", args.dir / "triage.db"
    conn = connect(full_db)
    full_scan = get_scan(conn, 1)
    conn.close()
    full = grids(full_db, 1)
    aoi = shape(json.loads(full_scan.aoi_geojson))
    clf = load(full_scan.params.model_path)
    cache = TileCache(str(args.dir / "full-tiles.sqlite"))
    context = scan_context(
        clf,
        imagery=ImageryRef(f"cache:{full_scan.imagery_source_id}"),
        cache_path=str(args.dir / "full-tiles.sqlite"),
        model_path=full_scan.params.model_path,
        model_version=full_scan.model_version,
        zoom=18,
        tile_res_m_per_px=float(full_scan.params.tile_resolution_m_per_px),
        int8=bool(full_scan.params.int8),
    )
    worker.remember_source(context, cache, open_cached_source(cache, str(full_scan.imagery_source_id)))
    worker.remember_model(context.model_path, context.model_version, clf, context.int8)
    delta = int(full_scan.params.unit_zoom_delta)
    full_px, full_reads = frame_counts(context, aoi, delta, clf)
    print(f"full scan: {full_px / 65536 / len(full):.3f} px per tile px, {full_reads} reads")
    if args.check_full:
        everything, _, _ = run(context, aoi, delta, set(full), "full", clf)
        print(f"full scan again: {sum(np.array_equal(everything[t], full[t]) for t in full)}/{len(full)} grids equal")
    threshold = clf.threshold * 255
    for sid in args.scans:
        kept = set(grids(triage_db, sid))
        for framing in args.framings:
            mine, px, reads = run(context, aoi, delta, kept, framing, clf)
            diff = np.array([np.abs(mine[t].astype(int) - full[t]).max() for t in kept])
            lost = sum(int(((full[t] >= threshold) & (mine[t] < threshold)).sum()) for t in kept)
            gained = sum(int(((full[t] < threshold) & (mine[t] >= threshold)).sum()) for t in kept)
            print(
                f"scan {sid} ({len(kept)} kept) {framing:4}: same {np.mean(diff == 0):.1%}, max diff p90 "
                f"{np.percentile(diff, 90):.0f} max {diff.max()}, cells lost/gained {lost}/{gained}; pixels "
                f"{px / full_px:.1%} of the full scan's ({px / 65536 / len(kept):.2f} per tile px), reads "
                f"{reads / full_reads:.1%}",
                flush=True,
            )


if __name__ == "__main__":
    main()
