"""The fine pass's context from the z17 tiles triage fetched: fewer z18 requests, approximate grids (RESULTS 21, 25).

Today (round 17) the fine pass frames every block as the full scan does and reads every z18 tile under the backbone
passes its kept tiles need, so every grid is exact but most reads are only context. Here those context pixels come
from the triage pass's z17 tiles instead (the parent's quadrant, upsampled x2 to z18 pixels by the engine's
``worker.resample``; zero new requests), and z18 is read only for:

- ``a``: the kept tiles (the keep rule's, no free tiles: those would need their own z18 reads);
- ``b``: the kept tiles and their ring of 1 (where the passes read them);
- ``a+free``: the kept tiles and the free tiles (``worker.with_free_tiles``), all scanned;
- ``b+free``: the kept and free tiles, all scanned, and their ring of 1;
- ``today``: the shipped fine pass (kept + free tiles, every tile the passes read at z18; the full scan's grids);
- ``KIND:T`` (round 25, selective context): the kept and free tiles, all scanned (as ``a+free``), and those of their
  ring-1 neighbours that look warm at z17, the rest upsampled z17. Warmth is read off the triage pass's z17 grids
  (``coarse_rows``; a failed or gridless z17 tile counts as level 255, as ``triage.hot_cells`` does) and compared
  with ``T`` as ``hot_cells`` compares levels (level >= T * 255 - 0.5), by ``KIND``:
  ``quad`` the max over the z17 cells that overlap the neighbour (its parent's quadrant); ``tile`` the max over the
  neighbour's whole z17 parent; ``growK`` the quadrant grown by K z17 cells each way (across tile edges); ``own`` the
  max over the quadrant of a scanned tile next to the neighbour (the whole ring of a warm scanned tile, whatever the
  neighbour holds); ``own+growK`` the union of two. A neighbour whose quadrant reaches the triage threshold is kept
  by the rule already, so ``quad:T`` only adds tiles for T below it.

Each variant classifies its scanned tiles as the fine pass does (``worker.process_unit``, same blocks and passes)
with the z18 set as its ``worker.CoarseContext`` (the shipped reader since round 26: z18 tiles from the full scan's
cache, every other one cut from its z17 parent in the triage pass's cache, upsampled). Counts, not timings: requests
= z18 tiles read + the triage pass's z17 requests, over the full scan's; pixels = backbone input pixels over the
full scan's (the triage pass adds its own, printed); found = hectares of detections built with the engine's code
from the variant's grids of its scanned tiles, all and on the pit fields, over the full scan's; crossing = cells of
the scanned tiles on the other side of the z18 threshold from the full scan's (lost / gained); max diff = the
largest level difference (0..255) against the full scan's grids.

Regions: ``--served DIR``: ``tests/scan/test_triage.py``'s served pyramid (full scan and triage pass via
``keep_rule.served``, run once into DIR and reused); ``--bench DIR``: ``bench/scan.py``'s region (``RegionTileServer``,
``--background whole``, ``--tiles 4096``), its full scan and triage pass run once into DIR and reused.

    PYTHONPATH=src:. python scripts/experiments/finepass_context.py --served /tmp/ctx-served
    PYTHONPATH=src:. python scripts/experiments/finepass_context.py --bench /tmp/ctx-whole --rules '[4,0.3,8]'
    PYTHONPATH=src:. python scripts/experiments/finepass_context.py --bench /tmp/ctx-whole --rules '[4,0.3,8]' \
        --variants a+free quad:0.002 tile:0.011 grow2:0.03 own:0.3
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import mercantile
import numpy as np
from scripts.experiments.keep_rule import cost, found, read_scans, served

from amberwatch.imagery.aoi import aoi_from_bbox, aoi_from_geojson
from amberwatch.imagery.cache import TileCache
from amberwatch.imagery.sources import open_cached_source
from amberwatch.imagery.types import ImageryRef
from amberwatch.model.modelfile import BUNDLED_TRIAGE_PATH, load
from amberwatch.scan import worker
from amberwatch.scan.engine import ScanSettings, run_scan, scan_context
from amberwatch.scan.tiling import iter_units
from amberwatch.scan.triage import KeepRule, kept_fine_tiles

RULES = [(4, 0.3, 8), (4, 0.3, 16), (4, 0.3, 24)]
VARIANTS = ["today", "a", "b", "a+free", "b+free"]


def bench_region(out: Path, tiles: int = 4096, background: str = "whole") -> tuple[Path, Path, set]:
    """bench/scan.py's region's full scan and triage pass (run or resumed in ``out``) -> (full DB, triage DB, pits)."""
    from bench.scan import RegionTileServer, pit_geometry, square_bbox

    out.mkdir(parents=True, exist_ok=True)
    texty = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "texty-amber"
    server = RegionTileServer(texty, 0.02, background)
    aoi = aoi_from_bbox(square_bbox(tiles))
    if not (out / "triage.db").exists():  # once: a later server's URL (another port) would make new scans
        settings = ScanSettings(workers=2, progress=False)
        run_scan(aoi, server.url, 18, out / "full.db", settings)
        triage = replace(settings, model_path=str(BUNDLED_TRIAGE_PATH), triage={"key": "triage", "role": "triage"})
        run_scan(aoi, server.url, 17, out / "triage.db", triage)
        print(f"bench region: HTTP requests by zoom {dict(server.requests_by_zoom)}", flush=True)
    server.stop()
    return out / "full.db", out / "triage.db", pit_geometry(server, aoi)[0]


def served_region(out: Path) -> tuple[Path, Path, set]:
    """``keep_rule.served``'s pyramid scans, reused once ``out`` holds them (a new server's port would make new
    scans) -> (full DB, triage DB, pit tiles)."""
    if not (out / "triage.db").exists():
        return served(out)
    from tests.scan.test_triage import CENTER, TEXTY, build_region

    t = mercantile.tile(*CENTER, 18)
    return out / "full.db", out / "triage.db", set(build_region(TEXTY, t.x & ~1, t.y & ~1).pit_tiles)


class ByZoomSource:
    """Serves z18 tiles from the full scan's cache and z17 tiles from the triage pass's (the scan's own reader,
    ``worker.read_with_coarse``, cuts and upsamples them); counts the z18 tiles read."""

    def __init__(self, fine_source, coarse_source) -> None:
        self.fine_source, self.coarse_source = fine_source, coarse_source
        self.read18: set = set()

    def reset(self) -> None:
        """Forget the counts."""
        self.read18 = set()

    def read_tiles(self, keys):
        """(key, GeoImage | None) for each (z, x, y) key: z18 from the full scan's cache, else the triage pass's."""
        for z, x, y in keys:
            if z == 18:
                self.read18.add((x, y))
                yield (z, x, y), self.fine_source.read_tile(z, x, y)
            else:
                yield (z, x, y), self.coarse_source.read_tile(z, x, y)

    def close(self) -> None:
        """Nothing to release (the caches belong to the caller)."""


def model_file(path: str | None) -> str | None:
    """The scan's model file, or the bundled one of that name when the scan ran from another (removed) worktree."""
    if path is None or Path(path).exists():
        return path
    return str(Path(BUNDLED_TRIAGE_PATH).with_name(Path(path).name))


def classify(aoi, tiles: set, context, delta: int, coarse: worker.CoarseContext | None = None) -> dict:
    """The fine pass's grids of ``tiles`` (framed as the full scan's, only the passes they need; with ``coarse``, the
    scan's coarse context) -> {(x, y): row}."""
    rows = {}
    for unit in iter_units(aoi, context.zoom, unit_zoom_delta=delta):
        todo = tuple(t for t in unit.tiles if t in tiles)
        if todo:
            share = None if coarse is None else coarse.for_unit(unit, context.ring_tiles)
            result = worker.process_unit(unit, context, todo, share)
            rows.update({(t.x, t.y): t for t in result.tiles if t.status == "done"})
    return rows


def compare(rows: dict, full_rows: dict, threshold: float) -> tuple[int, int, int]:
    """(cells lost, cells gained across the threshold, max level difference) of ``rows`` against the full scan's."""
    lost = gained = worst = 0
    level = threshold * 255
    for xy, row in rows.items():
        mine, full = np.frombuffer(row.grid, np.uint8), np.frombuffer(full_rows[xy].grid, np.uint8)
        lost += int(((full >= level) & (mine < level)).sum())
        gained += int(((full < level) & (mine >= level)).sum())
        worst = max(worst, int(np.abs(mine.astype(int) - full).max()))
    return lost, gained, worst


def by_edge_distance(rows: dict, full_rows: dict) -> str:
    """Mean and max level difference against the full scan's by a cell's distance (cells) from its tile's edge."""
    sums, maxes, counts = {}, {}, {}
    for xy, row in rows.items():
        g = int(row.grid_cells)
        diff = np.abs(
            np.frombuffer(row.grid, np.uint8).astype(int) - np.frombuffer(full_rows[xy].grid, np.uint8)
        ).reshape(g, g)
        r, c = np.indices((g, g))
        edge = np.minimum(np.minimum(r, c), np.minimum(g - 1 - r, g - 1 - c))
        for d in range(g // 2):
            sums[d] = sums.get(d, 0) + int(diff[edge == d].sum())
            counts[d] = counts.get(d, 0) + int((edge == d).sum())
            maxes[d] = max(maxes.get(d, 0), int(diff[edge == d].max()))
    return ", ".join(f"{d}: {sums[d] / counts[d]:.2f}/{maxes[d]}" for d in sorted(sums))


def ring1(tiles: set) -> set:
    """The tiles and their ring of 1 (z18)."""
    return {nb for x, y in tiles for nb in worker.neighbours(x, y, 18, 1)}


class Z17Levels:
    """The triage pass's z17 cell levels as one image over the scanned z17 tiles (-1 off the AOI, 255 for a failed
    or gridless tile), to take maxima over the cells that overlap a z18 tile."""

    def __init__(self, coarse_rows: dict, g: int) -> None:
        xs, ys = [x for x, _ in coarse_rows], [y for _, y in coarse_rows]
        self.x0, self.y0, self.g = min(xs), min(ys), g
        self.levels = np.full(((max(ys) - self.y0 + 1) * g, (max(xs) - self.x0 + 1) * g), -1, np.int16)
        for (x, y), row in coarse_rows.items():
            r, c = (y - self.y0) * g, (x - self.x0) * g
            if row.status == "done" and row.grid is not None:
                self.levels[r : r + g, c : c + g] = np.frombuffer(row.grid, np.uint8).reshape(g, g)
            else:
                self.levels[r : r + g, c : c + g] = 255

    def max_over(self, x: int, y: int, grow: int = 0) -> int:
        """The max level of the z17 cells overlapping z18 tile (x, y), the span grown by ``grow`` cells each way."""
        g = self.g
        c_lo, c_hi = (x * g) // 2 - self.x0 * g - grow, ((x + 1) * g - 1) // 2 - self.x0 * g + grow
        r_lo, r_hi = (y * g) // 2 - self.y0 * g - grow, ((y + 1) * g - 1) // 2 - self.y0 * g + grow
        h, w = self.levels.shape
        window = self.levels[max(r_lo, 0) : min(r_hi + 1, h), max(c_lo, 0) : min(c_hi + 1, w)]
        return int(window.max(initial=-1))

    def parent_max(self, x: int, y: int) -> int:
        """The max level of z18 tile (x, y)'s whole z17 parent."""
        g = self.g
        r, c = ((y >> 1) - self.y0) * g, ((x >> 1) - self.x0) * g
        window = self.levels[max(r, 0) : max(r + g, 0), max(c, 0) : max(c + g, 0)]
        return int(window.max(initial=-1))


def warm_context(variant: str, scanned: set, levels: Z17Levels) -> set:
    """The z18 set of a ``KIND:T`` variant (``KIND+KIND:T``: the union): ``scanned`` and the ring-1 neighbours whose
    z17 warmth reaches T."""
    kinds, t = variant.split(":")
    min_level = float(t) * 255.0 - 0.5  # as triage.hot_cells: a stored level may hold a probability at T
    out = set(scanned)
    for kind in kinds.split("+"):
        if kind == "own":
            for x, y in scanned:
                if levels.max_over(x, y) >= min_level:
                    out.update(worker.neighbours(x, y, 18, 1))
            continue
        for x, y in ring1(scanned) - scanned:
            if kind == "quad":
                level = levels.max_over(x, y)
            elif kind == "tile":
                level = levels.parent_max(x, y)
            elif kind.startswith("grow"):
                level = levels.max_over(x, y, int(kind[4:]))
            else:
                raise ValueError(f"unknown variant {variant}")
            if level >= min_level:
                out.add((x, y))
    return out


def main() -> None:
    """Count every variant and rule on one region."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--served", type=Path)
    parser.add_argument("--bench", type=Path)
    parser.add_argument("--tiles", type=int, default=4096, help="with --bench: the region's size in z18 tiles")
    parser.add_argument("--rules", nargs="*", default=[json.dumps(r) for r in RULES])
    parser.add_argument("--variants", nargs="*", default=VARIANTS)
    parser.add_argument("--edges", action="store_true", help="level differences by a cell's distance from tile edge")
    args = parser.parse_args()
    full_db, triage_db, pit_tiles = served_region(args.served) if args.served else bench_region(args.bench, args.tiles)
    full, full_rows, coarse, threshold, g17, hot, coarse_rows = read_scans(full_db, triage_db)
    coarse_tiles = set(coarse_rows)
    aoi = aoi_from_geojson(json.loads(full.aoi_geojson))
    full = replace(full, params=replace(full.params, model_path=model_file(full.params.model_path)))
    clf = load(full.params.model_path)
    fine_cache, coarse_cache = (TileCache(str(p.with_name(p.stem + "-tiles.sqlite"))) for p in (full_db, triage_db))
    context = scan_context(
        clf,
        imagery=ImageryRef(f"cache:{full.imagery_source_id}"),
        cache_path=str(fine_cache.path),
        model_path=full.params.model_path,
        model_version=full.model_version,
        zoom=18,
        tile_res_m_per_px=float(full.params.tile_resolution_m_per_px),
        int8=bool(full.params.int8),
    )
    source = ByZoomSource(
        open_cached_source(fine_cache, str(full.imagery_source_id)),
        open_cached_source(coarse_cache, str(coarse.imagery_source_id)),
    )
    worker.remember_source(context, fine_cache, source)
    worker.remember_model(context.model_path, context.model_version, clf, context.int8)
    delta = int(full.params.unit_zoom_delta)
    all_tiles = set(full_rows)
    full_px, full_reads = cost(aoi.geometry, all_tiles, context, clf)
    all_ha, pit_ha, _ = found(full, full_rows, all_tiles, pit_tiles)
    coarse = replace(coarse, params=replace(coarse.params, model_path=model_file(coarse.params.model_path)))
    coarse_clf = load(coarse.params.model_path)
    coarse_context = scan_context(
        coarse_clf,
        imagery=ImageryRef("unused"),
        cache_path=str(coarse_cache.path),
        model_path=coarse.params.model_path,
        model_version=coarse.model_version,
        zoom=17,
        tile_res_m_per_px=float(coarse.params.tile_resolution_m_per_px),
    )
    triage_px, triage_reads = cost(aoi.geometry, coarse_tiles, coarse_context, coarse_clf)
    n17 = len(triage_reads)
    print(
        f"{len(all_tiles)} z18 tiles, full scan {len(full_reads)} requests, {all_ha:.3f} ha ({pit_ha:.3f} on pit "
        f"fields, {len(pit_tiles)} pit tiles); triage pass {n17} z17 requests ({n17 / len(full_reads):.1%}), pixels "
        f"{triage_px / full_px:.1%}; threshold {threshold:.4f}, {len(hot)} hot z17 tiles",
        flush=True,
    )
    levels = Z17Levels(coarse_rows, g17)
    header = "rule | variant | scanned | z18 read | requests (z17 + z18) | pixels | found | on pits | crossing"
    print(f"| {header} | max diff |")
    for text in args.rules:
        rule = KeepRule(*json.loads(text))
        kept = set(kept_fine_tiles(hot, threshold, g17, 17, 18, aoi, rule))
        wide = set(worker.with_free_tiles(aoi.geometry, frozenset(kept), context, clf))
        for variant in args.variants:
            warm = ":" in variant
            scanned = wide if warm or variant in ("today", "a+free", "b+free") else kept
            px, _ = cost(aoi.geometry, scanned, context, clf)
            if variant == "today":
                coarse = None
            elif warm:
                coarse = worker.CoarseContext(17, frozenset(warm_context(variant, scanned, levels)))
            else:
                coarse = worker.CoarseContext(17, frozenset(ring1(scanned) if variant.startswith("b") else scanned))
            source.reset()
            rows = classify(aoi.geometry, scanned, context, delta, coarse)
            n18 = len(source.read18)
            ha, pits_ha, _ = found(full, rows, set(rows), pit_tiles)
            lost, gained, worst = compare(rows, full_rows, clf.threshold)
            print(
                f"| {rule.key()} | {variant} | {len(scanned)} | {n18} | {(n17 + n18) / len(full_reads):.1%} "
                f"({n17} + {n18}) | {px / full_px:.1%} | {ha / all_ha:.1%} ({ha:.3f} ha) | "
                f"{pits_ha / pit_ha:.1%} ({pits_ha:.3f} ha) | {lost} / {gained} | {worst} |",
                flush=True,
            )
            if args.edges:
                print(f"  mean/max level diff by cells from the tile's edge: {by_edge_distance(rows, full_rows)}")


if __name__ == "__main__":
    main()
