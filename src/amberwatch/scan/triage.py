"""``scan --triage-zoom 17``: a coarse pass with the triage model chooses the fine tiles the accurate model scans.

Pass 1 scans the AOI at the triage zoom with the triage model (a scan of its own, marked ``triage``, resumable,
without detections). Pass 2 scans at the fine zoom only the AOI's tiles near coarse cells that reach the triage
model's threshold (every cell of a failed coarse tile), by a ``KeepRule``, with the accurate model, and builds
detections as any scan. Both passes are ordinary engine runs (local pool or Dask).

The fine pass's context (the tiles around its tiles that its backbone passes read) is, by ``--triage-context``:
``exact``, read at the fine zoom (every grid the full scan's); or ``coarse``, read at the fine zoom only around
scanned tiles the triage pass saw warm (``warm_fine_tiles``), elsewhere cut from the triage pass's cached tiles,
upsampled: fewer requests, grids close to the full scan's (RESULTS 25).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import numpy as np

from amberwatch.errors import InvalidInputError
from amberwatch.imagery.aoi import AOI
from amberwatch.project import Project
from amberwatch.results.store import TileRow, get_scan, tiles_to_look_closer
from amberwatch.scan.engine import CoarseWarmth, ScanOutcome, ScanSettings, plan_scan, resolve_triage_model, run_scan
from amberwatch.scan.tiling import iter_units


@dataclass(frozen=True)
class TriageOutcome:
    """Both passes of a triaged scan: the coarse triage scan, the fine scan, and the fine tiles triage skipped."""

    triage: ScanOutcome
    fine: ScanOutcome
    fine_tiles_aoi: int  # the AOI's tiles at the fine zoom
    fine_tiles_kept: int  # scanned at the fine zoom: the keep rule's and the free ones
    triage_threshold: float
    fine_tiles_free: int = 0  # of the kept: those whose grids came free with the rule's (worker.free_tiles)

    @property
    def fine_tiles_skipped(self) -> int:
        """Fine tiles of the AOI triage left out."""
        return self.fine_tiles_aoi - self.fine_tiles_kept


def hot_cells(tiles: Iterable[TileRow], threshold: float, cells_per_tile: int) -> tuple[np.ndarray, np.ndarray]:
    """(columns, rows) on the coarse zoom's grid of cells of the triage tiles' cells that may reach ``threshold``:
    every cell of a failed tile (or one without a grid), whose content is unknown."""
    g = cells_per_tile
    min_level = threshold * 255.0 - 0.5  # stored levels are rounded: this one may hold a probability at threshold
    every = np.divmod(np.arange(g * g), g)
    cols, rows = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for t in tiles:
        if t.status == "done" and t.grid is not None:
            r, c = np.nonzero(np.frombuffer(t.grid, np.uint8).reshape(g, g) >= min_level)
        else:
            r, c = every
        cols.append(t.x * g + c.astype(np.int64))
        rows.append(t.y * g + r.astype(np.int64))
    return np.concatenate(cols), np.concatenate(rows)


def fine_tiles_near(
    cols: np.ndarray, rows: np.ndarray, cells_per_tile: int, zoom_delta: int, zoom: int, ring_cells: int
) -> set[tuple[int, int]]:
    """Tiles (x, y) at ``zoom`` that overlap the coarse cells (cols, rows) grown by ``ring_cells`` cells each way
    (coarse cells of ``cells_per_tile`` per tile, ``zoom_delta`` zooms above ``zoom``); only those the world holds."""
    f, g, n = 1 << zoom_delta, cells_per_tile, 1 << zoom
    spans = np.unique(
        np.stack(
            [
                ((cols - ring_cells) * f) // g,
                ((cols + ring_cells + 1) * f - 1) // g,
                ((rows - ring_cells) * f) // g,
                ((rows + ring_cells + 1) * f - 1) // g,
            ],
            axis=1,
        ).reshape(-1, 4),
        axis=0,
    )
    x_lo, x_hi, y_lo, y_hi = spans.T
    kept: set[tuple[int, int]] = set()
    for i in range(int((x_hi - x_lo).max(initial=-1)) + 1):
        for j in range(int((y_hi - y_lo).max(initial=-1)) + 1):
            x, y = x_lo + i, y_lo + j
            ok = (x <= x_hi) & (y <= y_hi) & (x >= 0) & (y >= 0) & (x < n) & (y < n)
            kept.update(zip(x[ok].tolist(), y[ok].tolist(), strict=True))
    return kept


@dataclass(frozen=True)
class KeepRule:
    """Which fine tiles triage keeps: those within ``ring_cells`` coarse cells of a cell reaching the triage model's
    (recall-first) threshold, and within ``seed_ring_cells`` of a cell reaching ``seed_threshold`` (a likely field,
    whose other tiles triage may score low). A failed coarse tile counts as reaching both. The default (round 19) is
    the cheapest rule found within 2 % of the full scan's hectares on both measured regions, counting the free tiles
    the fine pass adds (``worker.free_tiles``), which bring in most of a field's tiles the narrow seed ring leaves."""

    ring_cells: int = 4
    seed_threshold: float = 0.3
    seed_ring_cells: int = 8

    @classmethod
    def from_params(cls, triage: dict) -> KeepRule:
        """The rule a fine pass's ``ScanParams.triage`` records (a pass from before round 15, kept by whole coarse
        tiles, gets today's rule)."""
        if "ring_cells" not in triage:
            return cls()
        return cls(int(triage["ring_cells"]), float(triage["seed_threshold"]), int(triage["seed_ring_cells"]))

    def key(self) -> str:
        """The rule in the fine pass's identity key."""
        return f"cells-ring{self.ring_cells}-seed{self.seed_threshold:g}-ring{self.seed_ring_cells}"


DEFAULT_KEEP_RULE = KeepRule()
CONTEXTS = ("exact", "coarse")  # --triage-context: the fine pass's context read at its zoom, or mostly upsampled
DEFAULT_CONTEXT = "coarse"  # 37.7 % of the full scan's requests against 47.0 %, the same pit hectares (round 26)
WARM_LEVEL = 1  # a stored coarse cell level (0..255) from which the fine tiles under it are warm: any non-zero cell


def warm_tiles(
    coarse: Iterable[TileRow], cells_per_tile: int, zoom_delta: int, zoom: int
) -> frozenset[tuple[int, int]]:
    """The tiles at ``zoom`` under the ``coarse`` tiles' cells (``zoom_delta`` zooms up) of level WARM_LEVEL or more,
    and under every cell of a failed one: a fine pass with a coarse context reads the ring of those it scans."""
    cols, rows = hot_cells(coarse, WARM_LEVEL / 255.0, cells_per_tile)
    return frozenset(fine_tiles_near(cols, rows, cells_per_tile, zoom_delta, zoom, 0))


def warm_fine_tiles(conn: sqlite3.Connection, triage_scan_id: int, zoom: int) -> frozenset[tuple[int, int]]:
    """``warm_tiles`` at ``zoom`` of a finished triage pass."""
    coarse = get_scan(conn, triage_scan_id)
    tiles = tiles_to_look_closer(conn, triage_scan_id, (WARM_LEVEL - 0.5) / 255.0)  # those that may hold one
    return warm_tiles(tiles, int(coarse.params.cells_per_tile), zoom - coarse.zoom, zoom)


def kept_fine_tiles(
    hot: Iterable[TileRow],
    threshold: float,
    cells_per_tile: int,
    triage_zoom: int,
    zoom: int,
    aoi: AOI,
    rule: KeepRule = DEFAULT_KEEP_RULE,
) -> frozenset[tuple[int, int]]:
    """The AOI's tiles at ``zoom`` that ``rule`` keeps around the cells of the triage tiles ``hot`` (each ring
    reaches only toward the sides where such cells lie)."""
    hot = list(hot)
    delta = zoom - triage_zoom
    near = fine_tiles_near(*hot_cells(hot, threshold, cells_per_tile), cells_per_tile, delta, zoom, rule.ring_cells)
    seeds = hot_cells(hot, max(threshold, rule.seed_threshold), cells_per_tile)
    near |= fine_tiles_near(*seeds, cells_per_tile, delta, zoom, rule.seed_ring_cells)
    kept = set()
    for unit in iter_units(aoi.geometry, zoom):
        kept.update(t for t in unit.tiles if t in near)
    return frozenset(kept)


def run_triage_scan(
    aoi: AOI,
    imagery: str,
    zoom: int,
    db: Project | str | os.PathLike[str],
    settings: ScanSettings,
    *,
    triage_zoom: int,
    triage_model: str | None = None,
    rule: KeepRule = DEFAULT_KEEP_RULE,
    context: str = DEFAULT_CONTEXT,
    on_event: Callable[[str], None] | None = None,
    on_warnings: Callable[[dict[str, int]], None] | None = None,
) -> TriageOutcome:
    """Scan the AOI at ``triage_zoom`` with the triage model (default: the bundled one), then at ``zoom`` only the
    tiles triage kept, with the scan's model and its ``context`` (one of CONTEXTS) -> both outcomes and the tiles
    skipped."""
    if not 0 <= triage_zoom < zoom:
        raise InvalidInputError(f"--triage-zoom {triage_zoom} must be below the scan's --zoom {zoom}")
    if context not in CONTEXTS:
        raise InvalidInputError(f"--triage-context {context!r} is not one of {', '.join(CONTEXTS)}")
    say = on_event or (lambda _msg: None)
    model = triage_model or resolve_triage_model(db, settings.model_path)
    coarse_settings = replace(
        settings,
        model_path=model,
        name=f"{settings.name or aoi.name} (triage z{triage_zoom})",
        triage={"key": "triage", "role": "triage"},
        only_tiles=None,
    )
    with Project.using(db) as project:
        say(f"triage: pass 1 at zoom {triage_zoom} with {model}")
        coarse = run_scan(aoi, imagery, triage_zoom, project, coarse_settings, on_event=say, on_warnings=on_warnings)
        total = plan_scan(aoi, zoom, max_tiles=settings.max_tiles).tiles
        chosen = choose_fine_tiles(project.conn, coarse.scan_id, aoi, zoom, rule, total, context)
        kept, threshold = chosen.kept, chosen.threshold
        say(
            f"triage: {chosen.hot} of {coarse.tiles_total} zoom-{triage_zoom} tiles reach {threshold:.3f}: "
            f"{len(kept):,} of {total:,} zoom-{zoom} tiles kept ({rule.key()}), with those whose grids come free "
            "with theirs"
        )
        fine_settings = replace(settings, triage=chosen.params, only_tiles=kept, free_tiles=True)
        if context == "coarse":
            warm = warm_fine_tiles(project.conn, coarse.scan_id, zoom)
            fine_settings = replace(fine_settings, coarse_context=CoarseWarmth(triage_zoom, warm))
        fine = run_scan(aoi, imagery, zoom, project, fine_settings, on_event=say, on_warnings=on_warnings)
    return TriageOutcome(coarse, fine, total, fine.tiles_total, threshold, fine.tiles_total - len(kept))


@dataclass(frozen=True)
class FineTiles:
    """What a finished triage pass chose: the fine tiles to scan and the fine pass's ``ScanParams.triage``."""

    kept: frozenset[tuple[int, int]]
    hot: int  # coarse tiles with a cell at or above the threshold, or failed
    threshold: float
    params: dict


def choose_fine_tiles(
    conn: sqlite3.Connection,
    triage_scan_id: int,
    aoi: AOI,
    zoom: int,
    rule: KeepRule,
    total: int,
    context: str = DEFAULT_CONTEXT,
) -> FineTiles:
    """The AOI's tiles at ``zoom`` a finished triage pass keeps by ``rule`` (``total``: the AOI's tiles there), for a
    triaged scan and for a rescan that triages again (``scan.rescan``); ``context`` goes in the fine pass's params."""
    coarse = get_scan(conn, triage_scan_id)
    threshold, cells = float(coarse.model_threshold), int(coarse.params.cells_per_tile)
    hot = list(tiles_to_look_closer(conn, triage_scan_id, threshold))
    kept = kept_fine_tiles(hot, threshold, cells, coarse.zoom, zoom, aoi, rule)
    params = _fine_params(triage_scan_id, coarse.zoom, threshold, rule, total, len(kept), context)
    return FineTiles(kept, len(hot), threshold, params)


def _fine_params(
    scan_id: int, triage_zoom: int, threshold: float, rule: KeepRule, total: int, kept: int, context: str
) -> dict:
    """ScanParams.triage of the fine pass: its identity key (the triage scan, zoom, threshold, keep rule, context)
    and counts.

    The key names the keep rule: a layer kept by another rule (before round 15: whole coarse tiles and a ring of one
    coarse tile, ``ring1``) never resumes into this one; nor does one whose blocks framed the bounding box of their
    kept tiles (before round 17: grids unlike the full scan's), which ``full-frames`` tells apart, nor one without
    the free tiles (before round 19), ``free``; a coarse context adds ``coarse-context`` (its grids differ from an
    exact one's). The engine adds the free tiles to the counts (``tiles_free``)."""
    key = f"after-triage:{scan_id}:z{triage_zoom}:t{threshold:.6f}:{rule.key()}:full-frames:free"
    return {
        "key": key + (":coarse-context" if context == "coarse" else ""),
        "role": "after",
        "scan_id": scan_id,
        "zoom": triage_zoom,
        "threshold": round(threshold, 6),
        "ring_cells": rule.ring_cells,
        "seed_threshold": rule.seed_threshold,
        "seed_ring_cells": rule.seed_ring_cells,
        "tiles_aoi": total,
        "tiles_kept": kept,
        "tiles_skipped": total - kept,
        "context": context,
    }
