"""The map's time dimension: the sites of a scan's AOI followed across its dated scans (``results.timeline``)."""

from __future__ import annotations

import sqlite3

from fastapi import APIRouter, Depends

from amberwatch.errors import InvalidInputError
from amberwatch.results.store import finished_scans, get_scan
from amberwatch.results.timeline import load_timeline, map_json
from amberwatch.review.feedback import review_states
from amberwatch.web.deps import get_conn
from amberwatch.web.params import id_query

router = APIRouter()


@router.get("/api/timeline", summary="Sites of a scan's AOI followed across its imagery dates")
def get_timeline(
    scan: int | None = id_query("a scan of the AOI (default: the latest finished scan's AOI)"),
    conn: sqlite3.Connection = Depends(get_conn),
) -> dict:
    """The timeline object of ``amberwatch timeline --json`` for the AOI of ``scan``, plus what the map needs.

    ``scan_ids``: date -> the scan shown for that date; each site's ``detection_ids``: date -> its detection ids
    there (empty where it was not found). Fewer than two dated scans of the AOI (or scans mixing zooms or models):
    no dates and no sites, and ``notes`` saying why. Sites reviewed as not mining are left out.
    """
    if scan is not None:
        aoi: str | None = get_scan(conn, scan).aoi_geojson
    else:
        done = finished_scans(conn)
        aoi = done[-1].aoi_geojson if done else None
    if aoi is None:
        return {"dates": [], "sites": [], "scan_ids": {}, "notes": ["the project holds no finished scan"]}
    try:
        timeline = load_timeline(conn, review_states(conn), aoi_geojson=aoi)
    except InvalidInputError as exc:  # one date, undated scans, mixed zooms: the map shows no date control
        return {"dates": [], "sites": [], "scan_ids": {}, "notes": [str(exc)]}
    return map_json(conn, timeline)
