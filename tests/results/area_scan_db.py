"""Builds a small real scan in a project DB for the area-sampling tests (scans + scan_tiles grids)."""

from __future__ import annotations

import json
from pathlib import Path

import mercantile
import numpy as np

from amberwatch.db import connect, utc_now_iso
from amberwatch.results.store import ensure_schema

ZOOM = 18
GRID_CELLS = 16
THRESHOLD = 0.5
CENTRE_LON_LAT = (26.62, 51.31)  # Klesiv, Rivne oblast


def truth_and_grids(tiles_per_side: int = 4, seed: int = 7) -> tuple[dict, dict]:
    """A synthetic truth (mining pits) and a map of probabilities with omission and commission errors.

    Returns ({(z,x,y): truth bool GxG}, {(z,x,y): grid uint8 GxG}).
    """
    rng = np.random.default_rng(seed)
    t0 = mercantile.tile(*CENTRE_LON_LAT, ZOOM)
    size = tiles_per_side * GRID_CELLS
    yy, xx = np.mgrid[0:size, 0:size]
    truth = np.zeros((size, size), dtype=bool)
    for cy, cx, r in [(20, 22, 7), (44, 40, 9), (10, 52, 4), (55, 12, 5)]:
        truth |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
    prob = np.where(truth, rng.uniform(0.3, 1.0, truth.shape), rng.uniform(0.0, 0.55, truth.shape))
    grid_all = np.round(prob * 255).astype(np.uint8)
    truths, grids = {}, {}
    for ty in range(tiles_per_side):
        for tx in range(tiles_per_side):
            key = (ZOOM, t0.x + tx, t0.y + ty)
            sl = (slice(ty * GRID_CELLS, (ty + 1) * GRID_CELLS), slice(tx * GRID_CELLS, (tx + 1) * GRID_CELLS))
            truths[key] = truth[sl].copy()
            grids[key] = grid_all[sl].copy()
    return truths, grids


def build_scan_db(
    path: Path,
    grids: dict,
    *,
    extra_statuses: dict | None = None,
    valid: dict | None = None,
    imagery_date: str | None = None,
    aoi: dict | None = None,
    zoom: int = ZOOM,
) -> int:
    """Write a finished scan with the given done-tile grids (and extra empty/failed tiles); return its id.

    ``valid``: {(z, x, y): bool GxG} cells with imagery of some tiles (the others have imagery everywhere).
    """
    conn = connect(path)
    ensure_schema(conn)
    now = utc_now_iso()
    cur = conn.execute(
        "INSERT INTO scans (name, aoi_geojson, imagery, imagery_source_id, imagery_date, zoom, model_version,"
        " model_threshold, status, started_at, finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (
            "test",
            json.dumps(aoi or {"type": "Polygon", "coordinates": []}),
            "test",
            f"test@{imagery_date}" if imagery_date else "test",
            imagery_date,
            zoom,
            "v-test",
            THRESHOLD,
            "finished",
            now,
            now,
        ),
    )
    scan_id = int(cur.lastrowid)
    for (z, x, y), grid in grids.items():
        g = grid.shape[0]
        mask = (valid or {}).get((z, x, y))
        conn.execute(
            "INSERT INTO scan_tiles (scan_id, z, x, y, status, max_prob, grid_cells, grid, valid_cells, processed_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                scan_id,
                z,
                x,
                y,
                "done",
                float(grid.max()) / 255,
                g,
                grid.tobytes(),
                None if mask is None else mask.astype(np.uint8).tobytes(),
                now,
            ),
        )
    for (z, x, y), status in (extra_statuses or {}).items():
        conn.execute(
            "INSERT INTO scan_tiles (scan_id, z, x, y, status, processed_at) VALUES (?,?,?,?,?,?)",
            (scan_id, z, x, y, status, now),
        )
    conn.close()
    return scan_id
