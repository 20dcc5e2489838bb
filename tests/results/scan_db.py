"""Helpers of the detection/export tests: a real project DB with one scan and hand-made tile grids."""

from __future__ import annotations

import numpy as np

from amberwatch.db import connect, utc_now_iso
from amberwatch.results.store import ensure_schema

ZOOM = 18
CELLS = 8


def make_scan_db(
    path,
    grids: dict[tuple[int, int], np.ndarray],
    *,
    threshold: float = 0.5,
    capture_date="2015-10-05",
    imagery_date=None,
):
    """A project DB with scan 1 whose tiles (x, y) at ZOOM carry the given CELLS x CELLS probability grids."""
    conn = connect(path)
    ensure_schema(conn)
    conn.execute(
        "INSERT INTO scans (id, aoi_geojson, imagery, imagery_source_id, imagery_date, zoom, model_version,"
        " model_threshold, started_at, tiles_total) VALUES (1, '{}', 'test', 'src', ?, ?, '7', ?, ?, ?)",
        (imagery_date, ZOOM, threshold, utc_now_iso(), len(grids)),
    )
    for (x, y), probs in grids.items():
        q = np.clip(np.rint(probs * 255), 0, 255).astype(np.uint8)
        conn.execute(
            "INSERT INTO scan_tiles (scan_id, z, x, y, status, capture_date, max_prob, grid_cells, grid, processed_at)"
            " VALUES (1, ?, ?, ?, 'done', ?, ?, ?, ?, ?)",
            (ZOOM, x, y, capture_date, float(probs.max()), CELLS, q.tobytes(), utc_now_iso()),
        )
    return conn


def patch_grids(x0: int, y0: int, rows: range, cols: range, p: float = 0.9) -> dict[tuple[int, int], np.ndarray]:
    """2x2 tiles at (x0, y0) with high probability on global cell rows/cols (relative to the block)."""
    grids = {(x0 + i, y0 + j): np.full((CELLS, CELLS), 0.1) for i in range(2) for j in range(2)}
    for r in rows:
        for c in cols:
            grids[(x0 + c // CELLS, y0 + r // CELLS)][r % CELLS, c % CELLS] = p
    return grids
