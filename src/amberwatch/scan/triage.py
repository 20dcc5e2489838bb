"""``scan --triage-zoom 17``: a coarse pass with the triage model chooses the fine tiles the accurate model scans.

Pass 1 scans the AOI at the triage zoom with the triage model (a scan of its own, marked ``triage``, resumable,
without detections). Pass 2 scans at the fine zoom only the AOI's tiles under coarse tiles whose max probability
reaches the triage model's threshold (and coarse tiles that failed), with a ring of coarse neighbours, with the
accurate model, and builds detections as any scan. Both passes are ordinary engine runs (local pool or Dask).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace

from amberwatch.errors import InvalidInputError
from amberwatch.imagery.aoi import AOI
from amberwatch.project import Project
from amberwatch.results.store import get_scan, tiles_to_look_closer
from amberwatch.scan.engine import ScanOutcome, ScanSettings, plan_scan, resolve_triage_model, run_scan
from amberwatch.scan.tiling import iter_units

DEFAULT_RING_TILES = 1  # coarse neighbours kept around each coarse tile above the threshold


@dataclass(frozen=True)
class TriageOutcome:
    """Both passes of a triaged scan: the coarse triage scan, the fine scan, and the fine tiles triage skipped."""

    triage: ScanOutcome
    fine: ScanOutcome
    fine_tiles_aoi: int  # the AOI's tiles at the fine zoom
    fine_tiles_kept: int
    triage_threshold: float

    @property
    def fine_tiles_skipped(self) -> int:
        """Fine tiles of the AOI triage left out."""
        return self.fine_tiles_aoi - self.fine_tiles_kept


def kept_fine_tiles(
    hot: list[tuple[int, int]], triage_zoom: int, zoom: int, aoi: AOI, ring_tiles: int = DEFAULT_RING_TILES
) -> frozenset[tuple[int, int]]:
    """The AOI's tiles at ``zoom`` under the coarse tiles ``hot`` and their ring of ``ring_tiles`` neighbours."""
    n, factor = 1 << triage_zoom, 1 << (zoom - triage_zoom)
    near = {
        (x + dx, y + dy)
        for x, y in hot
        for dx in range(-ring_tiles, ring_tiles + 1)
        for dy in range(-ring_tiles, ring_tiles + 1)
        if 0 <= x + dx < n and 0 <= y + dy < n
    }
    kept = set()
    for unit in iter_units(aoi.geometry, zoom):
        kept.update(t for t in unit.tiles if (t[0] // factor, t[1] // factor) in near)
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
    ring_tiles: int = DEFAULT_RING_TILES,
    on_event: Callable[[str], None] | None = None,
    on_warnings: Callable[[dict[str, int]], None] | None = None,
) -> TriageOutcome:
    """Scan the AOI at ``triage_zoom`` with the triage model (default: the one that goes with the scan's model), then
    at ``zoom`` only the tiles triage kept, with the scan's model -> both outcomes and the tiles skipped."""
    if not 0 <= triage_zoom < zoom:
        raise InvalidInputError(f"--triage-zoom {triage_zoom} must be below the scan's --zoom {zoom}")
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
        chosen = choose_fine_tiles(project.conn, coarse.scan_id, aoi, zoom, ring_tiles, total)
        kept, threshold = chosen.kept, chosen.threshold
        say(
            f"triage: {chosen.hot} of {coarse.tiles_total} zoom-{triage_zoom} tiles reach {threshold:.3f}: "
            f"{len(kept):,} of {total:,} zoom-{zoom} tiles to scan, {total - len(kept):,} skipped"
        )
        fine_settings = replace(settings, triage=chosen.params, only_tiles=kept)
        fine = run_scan(aoi, imagery, zoom, project, fine_settings, on_event=say, on_warnings=on_warnings)
    return TriageOutcome(coarse, fine, total, len(kept), threshold)


@dataclass(frozen=True)
class FineTiles:
    """What a finished triage pass chose: the fine tiles to scan and the fine pass's ``ScanParams.triage``."""

    kept: frozenset[tuple[int, int]]
    hot: int  # coarse tiles at or above the threshold, or failed
    threshold: float
    params: dict


def choose_fine_tiles(
    conn: sqlite3.Connection, triage_scan_id: int, aoi: AOI, zoom: int, ring_tiles: int, total: int
) -> FineTiles:
    """The AOI's tiles at ``zoom`` a finished triage pass keeps (``total``: the AOI's tiles there), for a triaged scan
    and for a rescan that triages again (``scan.rescan``)."""
    coarse = get_scan(conn, triage_scan_id)
    threshold = float(coarse.model_threshold)
    hot = tiles_to_look_closer(conn, triage_scan_id, threshold)
    kept = kept_fine_tiles(hot, coarse.zoom, zoom, aoi, ring_tiles)
    params = _fine_params(triage_scan_id, coarse.zoom, threshold, ring_tiles, total, len(kept))
    return FineTiles(kept, len(hot), threshold, params)


def _fine_params(scan_id: int, triage_zoom: int, threshold: float, ring: int, total: int, kept: int) -> dict:
    """ScanParams.triage of the fine pass: its identity key (the triage scan, zoom, threshold, ring) and counts."""
    return {
        "key": f"after-triage:{scan_id}:z{triage_zoom}:t{threshold:.6f}:ring{ring}",
        "role": "after",
        "scan_id": scan_id,
        "zoom": triage_zoom,
        "threshold": round(threshold, 6),
        "ring_tiles": ring,
        "tiles_aoi": total,
        "tiles_kept": kept,
        "tiles_skipped": total - kept,
    }
